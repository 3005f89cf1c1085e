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

// q4 rows x int8 activations as lane tiles (int8_lanes.inc; 8 rows per vector, int8_lanes256.inc),
// vpmaddubsw; i8 rows keep int8_body.inc's dot tiles (kern_avxvnni.cpp runs both in lanes on vpdpbusd).
#define QTF_Q8_LANES_Q4 1
#include "kernels/int8_lanes256.inc"
#ifndef QTF_AVX2_TOKENS
#define QTF_AVX2_TOKENS 8
#endif
constexpr int kLaneTokens = QTF_AVX2_TOKENS;  // 8 (W_j partly spilled) measured faster than 4
#ifndef QTF_AVX2_PANEL_TOKENS
#define QTF_AVX2_PANEL_TOKENS 8
#endif
constexpr int kLanePanelTokens = QTF_AVX2_PANEL_TOKENS;  // over a packed panel (int8_lanes.inc)
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
