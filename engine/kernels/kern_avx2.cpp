// AVX2 + FMA (+ F16C) variant (8 floats; 4-float vectors for the narrower TT steps). Compiled with -mavx2 -mfma -mf16c
// (engine/kernels/CMakeLists.txt); chosen only where the CPU and OS support both. See simd_body.inc.
#include "kernels/dispatch.h"
#include "kernels/simd.h"

#if defined(__AVX2__) && defined(__FMA__)
#define xsimd qtf_xsimd_avx2  // this file's own copy of xsimd (simd_body.inc says why)
#include <cstring>
#include <type_traits>
#include <xsimd/xsimd.hpp>

namespace qtf::kern_avx2 {
namespace {
constexpr bool kFusedFma = true;
using V8 = xsimd::batch<float, xsimd::fma3<xsimd::avx2>>;
using V4 = xsimd::batch<float, xsimd::sse4_2>;
inline V4 fmadd(const V4& a, const V4& b, const V4& c) { return _mm_fmadd_ps(a, b, c); }  // xsimd: mul+add
// i8 and f16 weights as floats (F16C converts halves; every AVX2 CPU has it, and dispatch checks).
#include "kernels/widen_x86.inc"
inline void widen_q4(const uint8_t* p, V8* out) {  // low nibbles: values 0..15, high: 16..31
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), low4 = _mm_set1_epi8(15);
  const __m128i lo = _mm_sub_epi8(_mm_and_si128(v, low4), _mm_set1_epi8(8));
  const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), low4), _mm_set1_epi8(8));
  out[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
  out[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
  out[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
  out[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}
#include "kernels/int8_x86.inc"

// q4 rows x int8 activations as lane tiles (int8_lanes.inc): 8 rows per vector, W_j lane r = row r's
// nibbles 4j..4j+3 (0..15, unsigned) against x's 4 values broadcast: vpmaddubsw (a pair at most 2 * 15 *
// 127), the 8 pairs' vectors summed in int16 (at most 16 * 15 * 127 = 30480: no overflow), one vpmaddwd
// by ones, plus -8 * sum(x). i8 rows keep int8_body.inc's tiles: without vpdpbusd their lanes need the
// sign trick and a vpmaddwd per 4 values, no fewer instructions than the float path.
#define QTF_Q8_LANES_Q4 1
constexpr int kLaneRows = 8;
#ifndef QTF_AVX2_TOKENS
#define QTF_AVX2_TOKENS 8
#endif
constexpr int kLaneTokens = QTF_AVX2_TOKENS;  // 8 (W_j partly spilled) measured faster than 4
constexpr int kLaneCorrQ4 = 8, kLaneCorrI8 = 0;
using LF = __m256;
inline LF lf_zero() { return _mm256_setzero_ps(); }
inline LF lf_set1(float v) { return _mm256_set1_ps(v); }
inline LF lf_mul(LF a, LF b) { return _mm256_mul_ps(a, b); }
inline LF lf_fmadd(LF a, LF b, LF c) { return _mm256_fmadd_ps(a, b, c); }
inline __m256i lanes(int n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
inline LF lf_load(const float* p, int n) { return _mm256_maskload_ps(p, lanes(n)); }
inline void lf_store(float* p, int n, LF v) { _mm256_maskstore_ps(p, lanes(n), v); }
struct LaneW {
  __m256i w[8];
};
inline int32_t block_sum(const int8_t* x) {
  const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), load32(x)), _mm256_set1_epi16(1));
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
  return _mm_cvtsi128_si32(h);
}
inline LF lane_prep_q4(const uint8_t* const* rows, LaneW* out) {
  auto pair = [&](int a) {  // rows a (low half) and a + 4 (high half)
    return _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(rows[a + 4] + 2), reinterpret_cast<const __m128i*>(rows[a] + 2));
  };
  const __m256i z0 = pair(0), z1 = pair(1), z2 = pair(2), z3 = pair(3);
  const __m256i t0 = _mm256_unpacklo_epi32(z0, z1), t1 = _mm256_unpackhi_epi32(z0, z1);
  const __m256i t2 = _mm256_unpacklo_epi32(z2, z3), t3 = _mm256_unpackhi_epi32(z2, z3);
  const __m256i n[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2), _mm256_unpacklo_epi64(t1, t3),
                        _mm256_unpackhi_epi64(t1, t3)};  // n[j] lane r: row r's bytes 4j..4j+3
  const __m256i low4 = _mm256_set1_epi8(15);
  for (int j = 0; j < 4; ++j) {  // value order: low nibbles are values 0..15, high 16..31
    out->w[j] = _mm256_and_si256(n[j], low4);
    out->w[j + 4] = _mm256_and_si256(_mm256_srli_epi16(n[j], 4), low4);
  }
  alignas(16) uint16_t h[8];
  for (int r = 0; r < 8; ++r) std::memcpy(&h[r], rows[r], 2);
  return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h)));
}
inline void lane_prep_i8(const uint8_t* const*, LaneW*) {}  // not used: i8 rows take int8_body.inc's tiles
inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}
inline LF lane_dot(const LaneW& wb, const int8_t* x, int32_t c) {
  __m256i s = _mm256_maddubs_epi16(wb.w[0], bcast4(x));
#pragma GCC unroll 8
  for (int j = 1; j < 8; ++j) s = _mm256_add_epi16(s, _mm256_maddubs_epi16(wb.w[j], bcast4(x + 4 * j)));
  return _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_madd_epi16(s, _mm256_set1_epi16(1)), _mm256_set1_epi32(c)));
}
#include "kernels/int8_lanes.inc"
}  // namespace
}  // namespace qtf::kern_avx2

#define QTF_NS kern_avx2
#define QTF_VARIANT_NAME "avx2"
#define QTF_VECTORS V8, V4
#include "kernels/simd_body.inc"

const qtf::kern::Table* qtf::kern::table_avx2() { return &kern_avx2::kTable; }
void qtf::kern::avx2_tt_step(const tt::Step& s, const float* in, float* out) { kern_avx2::tt_step(s, in, out); }
#else
const qtf::kern::Table* qtf::kern::table_avx2() { return nullptr; }
void qtf::kern::avx2_tt_step(const tt::Step& s, const float* in, float* out) { tt::step_scalar(s, in, out, 0); }
#endif
