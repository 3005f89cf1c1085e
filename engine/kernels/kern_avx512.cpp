// AVX-512 variant (avx512f/bw/dq/vl + FMA, xsimd 8.1's avx512bw arch): 16 floats; the TT steps whose
// factors are smaller take 8- and 4-float vectors (simd_body.inc). Compiled with its own flags
// (engine/kernels/CMakeLists.txt); chosen only where the CPU and OS support it.
#include "kernels/dispatch.h"
#include "kernels/simd.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && defined(__FMA__)
#define xsimd qtf_xsimd_avx512  // this file's own copy of xsimd (simd_body.inc says why)
#include <cstring>
#include <type_traits>
#include <xsimd/xsimd.hpp>

namespace qtf::kern_avx512 {
namespace {
constexpr bool kFusedFma = true;
using V16 = xsimd::batch<float, xsimd::avx512bw>;
using V8 = xsimd::batch<float, xsimd::fma3<xsimd::avx2>>;
using V4 = xsimd::batch<float, xsimd::sse4_2>;
// xsimd 8.1 has no AVX-512 fma (it falls back to x*y+z, two roundings and two instructions unless the
// compiler contracts them), nor an FMA for 4-float vectors next to AVX: these are the real ones.
inline V16 fmadd(const V16& a, const V16& b, const V16& c) { return _mm512_fmadd_ps(a, b, c); }
inline V4 fmadd(const V4& a, const V4& b, const V4& c) { return _mm_fmadd_ps(a, b, c); }
inline V16 widen(const int8_t* p, V16*) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
inline V16 widen(const uint16_t* p, V16*) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
#include "kernels/widen_x86.inc"
// A q4 block's values by table: its 16 possible values d * (k - 8) in one register, each value picked by
// its nibble (vpermps reads an index's low 4 bits: the low nibble needs no mask). Half the instructions
// of widening, converting and scaling.
#define QTF_Q4_VALUES 1
inline void q4_values(const uint8_t* block, V16* out) {
  const __m512 levels = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  const __m512 table = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss((uint16_t)(block[0] | block[1] << 8))), levels);
  const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2)));
  out[0] = _mm512_permutexvar_ps(bytes, table);
  out[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table);
}

// Not xsimd::haddp: xsimd 8.1's AVX-512 haddp returns the sums of rows 2,3 and 4,5 (and 10,11 and
// 12,13) swapped. Fold each row to 8 lanes, then two (correct) 8-row haddps.
inline V16 reduce_rows(const V16* rows) {
  V8 lo[8], hi[8];
  for (int r = 0; r < 8; ++r) {
    lo[r] = _mm256_add_ps(_mm512_castps512_ps256(rows[r]), _mm512_extractf32x8_ps(rows[r], 1));
    hi[r] = _mm256_add_ps(_mm512_castps512_ps256(rows[8 + r]), _mm512_extractf32x8_ps(rows[8 + r], 1));
  }
  const __m256 a = xsimd::haddp(lo), b = xsimd::haddp(hi);
  return _mm512_insertf32x8(_mm512_castps256_ps512(a), b, 1);
}
inline V8 fmadd(const V8& a, const V8& b, const V8& c) { return _mm256_fmadd_ps(a, b, c); }
#include "kernels/int8_x86.inc"
#define QTF_Q8_TOKENS 4  // 32 registers: 4 rows x 4 activation rows of accumulators
// q4 rows: the AVX2 variant's lane tiles (8 rows per 256-bit vector, vpmaddubsw; int8_lanes256.inc),
// here with 32 vector registers (no W_j spilled): 2x the dot tiles' speed (docs/simd.md). i8 rows keep
// the dot tiles, as fast as AVX2's.
#define QTF_Q8_LANES_Q4 1
#include "kernels/int8_lanes256.inc"
#ifndef QTF_AVX512_LANE_TOKENS
#define QTF_AVX512_LANE_TOKENS 8
#endif
constexpr int kLaneTokens = QTF_AVX512_LANE_TOKENS;
#ifndef QTF_AVX512_PANEL_TOKENS
#define QTF_AVX512_PANEL_TOKENS 8
#endif
constexpr int kLanePanelTokens = QTF_AVX512_PANEL_TOKENS;  // over a packed panel (int8_lanes.inc)
#include "kernels/int8_lanes.inc"
#define QTF_Q8_ROUND_512 1
}  // namespace
}  // namespace qtf::kern_avx512

namespace qtf::kern_avx512 {
namespace {
void tt_step_chosen(const tt::Step& s, const float* in, float* out);
}  // namespace
}  // namespace qtf::kern_avx512

#define QTF_NS kern_avx512
#define QTF_VARIANT_NAME "avx512"
#define QTF_VECTORS V16, V8, V4
#define QTF_VECTOR_REGISTERS 32
#define QTF_TT_STEP &tt_step_chosen
#include "kernels/simd_body.inc"

// TT steps, by measurement (bench/README.md, "SIMD variants"): a packed step (a context's plans) runs
// the 512-bit kernels, faster than the AVX2 ones on 27 of 28 bench rows and equal on the last (wider
// vectors for Q >= 16, 32 registers for larger tiles); an unpacked one (a plan made per call, or a
// context made with pack_tt off) runs the AVX2 variant's code: there the 512-bit step was slower on
// most shapes. Both 512-bit paths stay tested (kern::avx512_tt_step, test_kernels).
namespace qtf::kern_avx512 {
namespace {
void tt_step_chosen(const tt::Step& s, const float* in, float* out) {
  if (s.packed) tt_step(s, in, out);
  else kern::avx2_tt_step(s, in, out);
}
}  // namespace
}  // namespace qtf::kern_avx512

const qtf::kern::Table* qtf::kern::table_avx512() { return &kern_avx512::kTable; }
void qtf::kern::avx512_tt_step(const tt::Step& s, const float* in, float* out) { kern_avx512::tt_step(s, in, out); }
#else
const qtf::kern::Table* qtf::kern::table_avx512() { return nullptr; }
void qtf::kern::avx512_tt_step(const tt::Step& s, const float* in, float* out) { tt::step_scalar(s, in, out, 0); }
#endif
