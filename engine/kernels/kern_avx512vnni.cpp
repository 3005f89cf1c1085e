// AVX-512 VNNI variant: the AVX-512 table (kern_avx512.cpp) with its own integer kernels (docs/quantize.md
// "Integer dot products"): the quantiser of int8_body.inc and a GEMM whose 16 lanes are 16 weight rows.
// Compiled with the AVX-512 flags plus -mavx512vnni; chosen where the CPU has AVX512_VNNI besides what
// the AVX-512 variant needs (dispatch.cpp, which assembles the table).
//
// The GEMM (dense_matmul_q8), as llama.cpp's repacked Q4_0 tiles but unpacked in registers, the file's
// weights read where they lie: a tile of 16 weight rows x up to kTokens activation rows. Per weight block
// (32 values of each of the 16 rows) the rows' bytes are transposed once into 8 vectors W_j, lane r =
// row r's values 4j..4j+3 as unsigned bytes (q4: the nibbles 0..15; i8: w + 128); then per activation
// row one vpdpbusd per W_j against x's 4 values 4j..4j+3 broadcast (an embedded-broadcast load), into
// an int32 accumulator that starts at -8 (q4) or -128 (i8) times the sum of x's block, which makes it the
// block's exact dot product of the signed values in every lane; one conversion and one FMA per block
// scale it (q4: by d_w * d_x, i8: by d_x) into the row's float sum. 8 vpdpbusd per 512 multiply-adds
// where the float path takes 32 FMAs, and nothing is reduced across lanes. Every output is the same
// lane-wise sequence in any tile, so a prompt block gives the token-by-token logits bit for bit.
#include "kernels/dispatch.h"
#include "kernels/simd.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__FMA__)
#define xsimd qtf_xsimd_avx512vnni  // this file's own copy of xsimd (simd_body.inc says why)
#include <cmath>
#include <cstring>
#include <type_traits>
#include <xsimd/xsimd.hpp>

namespace qtf::kern_avx512vnni {
namespace {
using V16 = xsimd::batch<float, xsimd::avx512bw>;
using V = V16;  // the quantiser's loads
constexpr int W = 16;
#define QTF_Q8_OWN_MATMUL 1
#define QTF_Q8_ROUND_512 1
#include "kernels/int8_body.inc"

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}
inline __m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

inline int32_t block_sum(const int8_t* x) {
  const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1),
                                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
  return _mm_cvtsi128_si32(h);
}

// The transposes' permutations (constant data: nothing runs before the CPU is known to have AVX-512).
struct Index {
  alignas(64) int32_t i[16];
};
constexpr Index idx_rows4(int hi) {  // from two vectors of 2 rows x 8 dwords: 4 rows x dwords 4hi..4hi+3
  Index x{};
  for (int l = 0; l < 16; ++l) x.i[l] = (l / 4 < 2 ? (l / 4) * 8 : 16 + (l / 4 - 2) * 8) + l % 4 + 4 * hi;
  return x;
}
constexpr Index idx_rows8(int p) {  // from two vectors of 4 rows x 4 dwords: 8 rows x dwords 2p, 2p+1
  Index x{};
  for (int l = 0; l < 16; ++l) x.i[l] = (l % 8 < 4 ? (l % 8) * 4 : 16 + (l % 8 - 4) * 4) + 2 * p + l / 8;
  return x;
}
constexpr Index kA[2] = {idx_rows4(0), idx_rows4(1)}, kB[2] = {idx_rows8(0), idx_rows8(1)};
inline __m512i perm(const Index& x) { return _mm512_load_si512(x.i); }

// From 4 vectors of 4 rows x 4 dwords (rows 0-3, 4-7, 8-11, 12-15): out[j] = dword j of the 16 rows.
inline void transpose_4x4(const __m512i* z, __m512i* out) {
  for (int p = 0; p < 2; ++p) {
    const __m512i idx = perm(kB[p]);
    const __m512i lo = _mm512_permutex2var_epi32(z[0], idx, z[1]), hi = _mm512_permutex2var_epi32(z[2], idx, z[3]);
    out[2 * p] = _mm512_shuffle_i64x2(lo, hi, 0x44);
    out[2 * p + 1] = _mm512_shuffle_i64x2(lo, hi, 0xEE);
  }
}

// A weight block of the tile's 16 rows as out[0..7] (unsigned bytes, lane = row) and, q4, its scales.
// rows[r]: row r's block (its 32 i8 values, or the q4 block's 18 bytes).
inline void prep_i8(const uint8_t* const* rows, __m512i* out) {
  __m512i a[4][2];
  for (int k = 0; k < 4; ++k) {
    const __m512i z0 = _mm512_inserti64x4(_mm512_castsi256_si512(load32(rows[4 * k])), load32(rows[4 * k + 1]), 1);
    const __m512i z1 = _mm512_inserti64x4(_mm512_castsi256_si512(load32(rows[4 * k + 2])), load32(rows[4 * k + 3]), 1);
    a[k][0] = _mm512_permutex2var_epi32(z0, perm(kA[0]), z1);
    a[k][1] = _mm512_permutex2var_epi32(z0, perm(kA[1]), z1);
  }
  const __m512i flip = _mm512_set1_epi8(-128);
  for (int h = 0; h < 2; ++h) {  // dwords 0-3, then 4-7
    const __m512i z[4] = {a[0][h], a[1][h], a[2][h], a[3][h]};
    transpose_4x4(z, out + 4 * h);
  }
  for (int j = 0; j < 8; ++j) out[j] = _mm512_xor_si512(out[j], flip);
}
inline __m512i load_4x16(const uint8_t* const* rows, int r) {  // the nibbles of rows r..r+3
  __m512i z = _mm512_castsi128_si512(load16(rows[r] + 2));
  z = _mm512_inserti32x4(z, load16(rows[r + 1] + 2), 1);
  z = _mm512_inserti32x4(z, load16(rows[r + 2] + 2), 2);
  return _mm512_inserti32x4(z, load16(rows[r + 3] + 2), 3);
}
// The f16 scales of 8 rows' q4 blocks: a word inserted from memory each (vpinsrw; written through a
// stack array, GCC made ~4 instructions a row of them, 60 of a 16-row block's 144: bench/README.md
// "Decode").
inline __m128i scales8(const uint8_t* const* rows) {
  auto h = [&](int r) {
    uint16_t v;
    std::memcpy(&v, rows[r], 2);
    return (int)v;
  };
  __m128i s = _mm_cvtsi32_si128(h(0));
  s = _mm_insert_epi16(s, h(1), 1), s = _mm_insert_epi16(s, h(2), 2), s = _mm_insert_epi16(s, h(3), 3);
  s = _mm_insert_epi16(s, h(4), 4), s = _mm_insert_epi16(s, h(5), 5), s = _mm_insert_epi16(s, h(6), 6);
  return _mm_insert_epi16(s, h(7), 7);
}
inline __m512 prep_q4(const uint8_t* const* rows, __m512i* out) {
  const __m512i z[4] = {load_4x16(rows, 0), load_4x16(rows, 4), load_4x16(rows, 8), load_4x16(rows, 12)};
  __m512i n[4];
  transpose_4x4(z, n);
  const __m512i low4 = _mm512_set1_epi8(15);
  for (int j = 0; j < 4; ++j) {  // value order: low nibbles are values 0..15, high 16..31
    out[j] = _mm512_and_si512(n[j], low4);
    out[j + 4] = _mm512_and_si512(_mm512_srli_epi16(n[j], 4), low4);
  }
  return _mm512_cvtph_ps(_mm256_set_m128i(scales8(rows + 8), scales8(rows)));
}

// int8_lanes.inc's pieces: 16 rows, W_j in 8 registers, the corrections -8 (q4) / -128 (i8) x sum(x).
constexpr int kLaneRows = 16;
#ifndef QTF_VNNI_TOKENS
#define QTF_VNNI_TOKENS 8
#endif
constexpr int kLaneTokens = QTF_VNNI_TOKENS;  // registers: 8 W_j + 8 sums + a few (16: no faster)
#ifndef QTF_VNNI_PANEL_TOKENS
#define QTF_VNNI_PANEL_TOKENS 8
#endif
constexpr int kLanePanelTokens = QTF_VNNI_PANEL_TOKENS;  // over a packed panel (int8_lanes.inc)
constexpr int kLaneCorrQ4 = 8, kLaneCorrI8 = 128;
using LF = __m512;
inline LF lf_zero() { return _mm512_setzero_ps(); }
inline LF lf_set1(float v) { return _mm512_set1_ps(v); }
inline LF lf_mul(LF a, LF b) { return _mm512_mul_ps(a, b); }
inline LF lf_fmadd(LF a, LF b, LF c) { return _mm512_fmadd_ps(a, b, c); }
inline __mmask16 lanes(int n) { return (__mmask16)((1u << n) - 1); }
inline LF lf_load(const float* p, int n) { return _mm512_maskz_loadu_ps(lanes(n), p); }
inline void lf_store(float* p, int n, LF v) { _mm512_mask_storeu_ps(p, lanes(n), v); }
struct LaneW {
  __m512i w[8];
};
inline LF lane_prep_q4(const uint8_t* const* rows, LaneW* out) { return prep_q4(rows, out->w); }
inline void lane_prep_i8(const uint8_t* const* rows, LaneW* out) { prep_i8(rows, out->w); }
inline LF lane_dot(const LaneW& wb, const int8_t* x, int32_t c) {
  __m512i acc = _mm512_set1_epi32(c);
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) acc = _mm512_dpbusd_epi32(acc, wb.w[j], bcast4(x + 4 * j));
  return _mm512_cvtepi32_ps(acc);
}
#include "kernels/int8_lanes.inc"

void dense_matmul_q8(const DenseMatrix& M, const Q8Rows& X, int batch, float* Y, int64_t ldy) {
  if (M.w.type == WType::q4) lane_matmul<true>(M, X, batch, Y, ldy);
  else lane_matmul<false>(M, X, batch, Y, ldy);
}

// Constant-initialised (addresses only): no code of this file runs until the CPU is known to have VNNI.
constexpr kern::Int8Kernels kInt8 = {&quantize_q8, &dense_matmul_q8};
}  // namespace
}  // namespace qtf::kern_avx512vnni

const qtf::kern::Int8Kernels* qtf::kern::avx512vnni_int8_kernels() { return &kern_avx512vnni::kInt8; }
#else
const qtf::kern::Int8Kernels* qtf::kern::avx512vnni_int8_kernels() { return nullptr; }
#endif
