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
#include "kernels/int8_body.inc"

constexpr int kRows = 16;           // weight rows per tile: one per 32-bit lane
#ifndef QTF_VNNI_TOKENS
#define QTF_VNNI_TOKENS 8
#endif
constexpr int kTokens = QTF_VNNI_TOKENS;  // activation rows per tile (registers: 8 W + kTokens sums)
constexpr int64_t kCorrections = 4096;  // int32 block corrections on the stack per chunk of activation rows

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}
inline __m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// out[b] = -c * (the sum of block b's 32 values), for n blocks at x.
void block_corrections(const int8_t* x, int64_t n, int c, int32_t* out) {
  for (int64_t b = 0; b < n; ++b) {
    const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1),
                                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + b * kQ8Block)));
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
    out[b] = -c * _mm_cvtsi128_si32(h);
  }
}

// The transposes' permutations. z = [4 rows x 4 dwords] pairs -> [8 rows x dword 2p' | 8 rows x 2p'+1].
inline __m512i idx_rows4(int hi) {  // from two vectors of 2 rows x 8 dwords: 4 rows x dwords 4hi..4hi+3
  alignas(64) int32_t i[16];
  for (int l = 0; l < 16; ++l) i[l] = (l / 4 < 2 ? (l / 4) * 8 : 16 + (l / 4 - 2) * 8) + l % 4 + 4 * hi;
  return _mm512_load_si512(i);
}
inline __m512i idx_rows8(int p) {  // from two vectors of 4 rows x 4 dwords: 8 rows x dwords 2p, 2p+1
  alignas(64) int32_t i[16];
  for (int l = 0; l < 16; ++l) {
    const int row = l % 8, d = 2 * p + l / 8;
    i[l] = (row < 4 ? row * 4 : 16 + (row - 4) * 4) + d;
  }
  return _mm512_load_si512(i);
}
struct Perms {
  __m512i a0 = idx_rows4(0), a1 = idx_rows4(1), b0 = idx_rows8(0), b1 = idx_rows8(1);
};

// From 4 vectors of 4 rows x 4 dwords (rows 0-3, 4-7, 8-11, 12-15): out[j] = dword j of the 16 rows.
inline void transpose_4x4(const __m512i* z, const Perms& P, __m512i* out) {
  for (int p = 0; p < 2; ++p) {
    const __m512i idx = p ? P.b1 : P.b0;
    const __m512i lo = _mm512_permutex2var_epi32(z[0], idx, z[1]), hi = _mm512_permutex2var_epi32(z[2], idx, z[3]);
    out[2 * p] = _mm512_shuffle_i64x2(lo, hi, 0x44);
    out[2 * p + 1] = _mm512_shuffle_i64x2(lo, hi, 0xEE);
  }
}

// A weight block of the tile's 16 rows as out[0..7] (unsigned bytes, lane = row) and, q4, its scales.
// rows[r]: row r's block (its 32 i8 values, or the q4 block's 18 bytes).
inline void prep_i8(const uint8_t* const* rows, const Perms& P, __m512i* out) {
  __m512i a[4][2];
  for (int k = 0; k < 4; ++k) {
    const __m512i z0 = _mm512_inserti64x4(_mm512_castsi256_si512(load32(rows[4 * k])), load32(rows[4 * k + 1]), 1);
    const __m512i z1 = _mm512_inserti64x4(_mm512_castsi256_si512(load32(rows[4 * k + 2])), load32(rows[4 * k + 3]), 1);
    a[k][0] = _mm512_permutex2var_epi32(z0, P.a0, z1);
    a[k][1] = _mm512_permutex2var_epi32(z0, P.a1, z1);
  }
  const __m512i flip = _mm512_set1_epi8(-128);
  for (int h = 0; h < 2; ++h) {  // dwords 0-3, then 4-7
    const __m512i z[4] = {a[0][h], a[1][h], a[2][h], a[3][h]};
    transpose_4x4(z, P, out + 4 * h);
  }
  for (int j = 0; j < 8; ++j) out[j] = _mm512_xor_si512(out[j], flip);
}
inline __m512i load_4x16(const uint8_t* const* rows, int r) {  // the nibbles of rows r..r+3
  __m512i z = _mm512_castsi128_si512(load16(rows[r] + 2));
  z = _mm512_inserti32x4(z, load16(rows[r + 1] + 2), 1);
  z = _mm512_inserti32x4(z, load16(rows[r + 2] + 2), 2);
  return _mm512_inserti32x4(z, load16(rows[r + 3] + 2), 3);
}
inline __m512 prep_q4(const uint8_t* const* rows, const Perms& P, __m512i* out) {
  const __m512i z[4] = {load_4x16(rows, 0), load_4x16(rows, 4), load_4x16(rows, 8), load_4x16(rows, 12)};
  __m512i n[4];
  transpose_4x4(z, P, n);
  const __m512i low4 = _mm512_set1_epi8(15);
  for (int j = 0; j < 4; ++j) {  // value order: low nibbles are values 0..15, high 16..31
    out[j] = _mm512_and_si512(n[j], low4);
    out[j + 4] = _mm512_and_si512(_mm512_srli_epi16(n[j], 4), low4);
  }
  alignas(32) uint16_t h[kRows];
  for (int r = 0; r < kRows; ++r) std::memcpy(&h[r], rows[r], 2);
  return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(h)));
}

// F[t] += the tile's 16 rows x activation rows t < TB, over all nb blocks. w: the rows' first bytes
// (ldw apart, `valid` of them; the others repeat the last), x: TB rows ldq bytes apart, their scales nb
// floats apart and their corrections (block_corrections) nb apart.
template <int TB, bool kQ4, bool kTable>
inline void tile(const uint8_t* w, int64_t ldw, int valid, int cols, const int8_t* xq, int64_t ldq, const float* xd,
          const int32_t* corr, int64_t nb, const Perms& P, __m512* F) {
  const uint8_t* rows[kRows];
  for (int r = 0; r < kRows; ++r) rows[r] = w + (r < valid ? r : valid - 1) * ldw;
  for (int t = 0; t < TB; ++t) F[t] = _mm512_setzero_ps();
  const int64_t full = kQ4 ? nb : cols / kQ8Block;
  auto block = [&](const __m512i* Wv, __m512 dw, int64_t b) {
#pragma GCC unroll 16
    for (int t = 0; t < TB; ++t) {
      const int8_t* x = xq + t * ldq + b * kQ8Block;
      int32_t c;
      if constexpr (kTable) c = corr[t * nb + b];
      else block_corrections(x, 1, kQ4 ? 8 : 128, &c);  // rows too long for the table
      __m512i acc = _mm512_set1_epi32(c);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) acc = _mm512_dpbusd_epi32(acc, Wv[j], bcast4(x + 4 * j));
      const __m512 s = kQ4 ? _mm512_mul_ps(dw, _mm512_set1_ps(xd[t * nb + b])) : _mm512_set1_ps(xd[t * nb + b]);
      F[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), s, F[t]);
    }
  };
  for (int64_t b = 0; b < full; ++b) {
    const uint8_t* p[kRows];
    for (int r = 0; r < kRows; ++r) p[r] = rows[r] + b * (kQ4 ? kQ4BlockBytes : kQ8Block);
    __m512i Wv[8];
    __m512 dw = _mm512_setzero_ps();
    if constexpr (kQ4) dw = prep_q4(p, P, Wv);
    else prep_i8(p, P, Wv);
    block(Wv, dw, b);
  }
  if constexpr (!kQ4) {
    if (full < nb) {  // an i8 row's last, partial block: copied into zeros (no load past the row)
      alignas(32) uint8_t buf[kRows][kQ8Block] = {};
      const uint8_t* p[kRows];
      const int len = cols - (int)full * kQ8Block;
      for (int r = 0; r < kRows; ++r) {
        std::memcpy(buf[r], rows[r] + full * kQ8Block, (size_t)len);
        p[r] = buf[r];
      }
      __m512i Wv[8];
      prep_i8(p, P, Wv);
      block(Wv, _mm512_setzero_ps(), full);
    }
  }
}

template <bool kQ4>
void matmul(const DenseMatrix& M, const Q8Rows& X, int batch, float* Y, int64_t ldy) {
  const int cols = M.cols;
  const int64_t ldw = kQ4 ? q4_row_bytes(cols) : cols, nb = X.blocks, ldq = nb * kQ8Block;
  const uint8_t* w = static_cast<const uint8_t*>(M.w.data);
  const Perms P;
  int32_t corr[kCorrections];
  const int64_t fit = kCorrections / nb;
  const int chunk = (int)(fit > kTokens ? fit / kTokens * kTokens : fit > 0 ? fit : 1);
  // Rows of more than kCorrections blocks (131072 values) fit no table: their corrections come per block.
  const bool table = nb <= kCorrections;
  for (int c0 = 0; c0 < batch; c0 += chunk) {
    const int cn = batch - c0 < chunk ? batch - c0 : chunk;
    for (int t = 0; table && t < cn; ++t) block_corrections(X.q + (c0 + t) * ldq, nb, kQ4 ? 8 : 128, corr + t * nb);
    for (int r0 = 0; r0 < M.rows; r0 += kRows) {
      const int valid = M.rows - r0 < kRows ? M.rows - r0 : kRows;
      const __mmask16 m = (__mmask16)((1u << valid) - 1);
      const __m512 bias = M.bias ? _mm512_maskz_loadu_ps(m, M.bias + r0) : _mm512_setzero_ps();
      const __m512 scale = kQ4 ? _mm512_set1_ps(1.f)
                               : M.w.scales ? _mm512_maskz_loadu_ps(m, M.w.scales + r0) : _mm512_set1_ps(M.w.scale);
      auto run = [&](auto tb, int t0) {
        constexpr int TB = decltype(tb)::value;
        __m512 F[TB];
        const int b = c0 + t0;
        if (table) tile<TB, kQ4, true>(w + r0 * ldw, ldw, valid, cols, X.q + b * ldq, ldq, X.d + b * nb, corr + t0 * nb, nb, P, F);
        else tile<TB, kQ4, false>(w + r0 * ldw, ldw, valid, cols, X.q + b * ldq, ldq, X.d + b * nb, nullptr, nb, P, F);
        // i8: times the row's scale plus the bias in one rounding (as every other variant on FMA targets)
        for (int t = 0; t < TB; ++t) _mm512_mask_storeu_ps(Y + (b + t) * ldy + r0, m, _mm512_fmadd_ps(F[t], scale, bias));
      };
      int t0 = 0;
      for (; t0 + kTokens <= cn; t0 += kTokens) run(std::integral_constant<int, kTokens>(), t0);
      if constexpr (kTokens > 8)
        for (; t0 + 8 <= cn; t0 += 8) run(std::integral_constant<int, 8>(), t0);
      for (; t0 + 4 <= cn; t0 += 4) run(std::integral_constant<int, 4>(), t0);
      for (; t0 < cn; ++t0) run(std::integral_constant<int, 1>(), t0);
    }
  }
}

void dense_matmul_q8(const DenseMatrix& M, const Q8Rows& X, int batch, float* Y, int64_t ldy) {
  if (M.w.type == WType::q4) matmul<true>(M, X, batch, Y, ldy);
  else matmul<false>(M, X, batch, Y, ldy);
}

// Constant-initialised (addresses only): no code of this file runs until the CPU is known to have VNNI.
constexpr kern::Int8Kernels kInt8 = {&quantize_q8, &dense_matmul_q8};
}  // namespace
}  // namespace qtf::kern_avx512vnni

const qtf::kern::Int8Kernels* qtf::kern::avx512vnni_int8_kernels() { return &kern_avx512vnni::kInt8; }
#else
const qtf::kern::Int8Kernels* qtf::kern::avx512vnni_int8_kernels() { return nullptr; }
#endif
