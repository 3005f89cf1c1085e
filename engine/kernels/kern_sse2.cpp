// SSE2 variant: the x86-64 baseline (4 floats, no FMA). See simd_body.inc.
#include "kernels/dispatch.h"
#include "kernels/simd.h"

#if XSIMD_WITH_SSE2
#define xsimd qtf_xsimd_sse2  // this file's own copy of xsimd (simd_body.inc says why)
#include <cstring>
#include <xsimd/xsimd.hpp>


namespace qtf::kern_sse2 {
namespace {
constexpr bool kFusedFma = false;
using V4 = xsimd::batch<float, xsimd::sse2>;
// Four i8 values: SSE2 has no sign-extending widen (that is SSE4.1), so each byte is copied into the
// top of its 32-bit lane and shifted down arithmetically.
inline V4 widen(const int8_t* p, V4*) {
  int32_t bits;
  std::memcpy(&bits, p, 4);
  __m128i v = _mm_cvtsi32_si128(bits);
  v = _mm_unpacklo_epi8(v, v);
  v = _mm_unpacklo_epi16(v, v);
  return _mm_cvtepi32_ps(_mm_srai_epi32(v, 24));
}
// No F16C in the x86-64 baseline: f16 values one by one.
inline float half_to_float(uint16_t h) { return qtf::f16_to_f32(h); }
inline V4 widen(const uint16_t* p, V4*) {
  alignas(16) float f[4];
  for (int i = 0; i < 4; ++i) f[i] = half_to_float(p[i]);
  return V4::load_aligned(f);
}
// A q4 block's nibbles, unsigned, widened by unpacking with zeros (no sign extension needed), then - 8.
inline void widen_q4(const uint8_t* p, V4* out) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), low4 = _mm_set1_epi8(15);
  const __m128i zero = _mm_setzero_si128(), lo = _mm_and_si128(v, low4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), low4);
  const __m128i shorts[4] = {_mm_unpacklo_epi8(lo, zero), _mm_unpackhi_epi8(lo, zero), _mm_unpacklo_epi8(hi, zero),
                             _mm_unpackhi_epi8(hi, zero)};  // values 0..7, 8..15, 16..23, 24..31
  const __m128 eight = _mm_set1_ps(8.f);
  for (int h = 0; h < 4; ++h) {
    out[2 * h] = _mm_sub_ps(_mm_cvtepi32_ps(_mm_unpacklo_epi16(shorts[h], zero)), eight);
    out[2 * h + 1] = _mm_sub_ps(_mm_cvtepi32_ps(_mm_unpackhi_epi16(shorts[h], zero)), eight);
  }
}
// Integer dot products (int8_body.inc): SSE2 has no byte multiply, so a block's 32 values are widened
// to four vectors of 8 shorts (unpack with itself, arithmetic shift) and multiplied by vpmaddwd pairs.
struct QW {
  __m128i s[4];
};
inline __m128i lo16(__m128i b) { return _mm_srai_epi16(_mm_unpacklo_epi8(b, b), 8); }
inline __m128i hi16(__m128i b) { return _mm_srai_epi16(_mm_unpackhi_epi8(b, b), 8); }
inline QW qw_bytes(__m128i a, __m128i b) { return {{lo16(a), hi16(a), lo16(b), hi16(b)}}; }
inline QW qw_i8(const int8_t* p) {
  return qw_bytes(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
}
inline QW qw_q4(const uint8_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), low4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
  return qw_bytes(_mm_sub_epi8(_mm_and_si128(v, low4), eight), _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), low4), eight));
}
inline QW qx_i8(const int8_t* x) { return qw_i8(x); }  // widened once per activation block
inline QW qx_q4(const int8_t* x) { return qw_i8(x); }
inline V4 qdot(const QW& w, const QW& v) {
  const __m128i s = _mm_add_epi32(_mm_add_epi32(_mm_madd_epi16(w.s[0], v.s[0]), _mm_madd_epi16(w.s[1], v.s[1])),
                                  _mm_add_epi32(_mm_madd_epi16(w.s[2], v.s[2]), _mm_madd_epi16(w.s[3], v.s[3])));
  return _mm_cvtepi32_ps(s);
}
using QV = V4;
}  // namespace
}  // namespace qtf::kern_sse2

#define QTF_NS kern_sse2
#define QTF_VARIANT_NAME "sse2"
#define QTF_VECTORS V4
#include "kernels/simd_body.inc"

const qtf::kern::Table* qtf::kern::table_sse2() { return &kern_sse2::kTable; }
#else
const qtf::kern::Table* qtf::kern::table_sse2() { return nullptr; }
#endif
