// AVX-VNNI variant: the AVX2 table (kern_avx2.cpp) with its own integer kernels, for CPUs with the VEX
// (256-bit) vpdpbusd but no AVX-512 (Intel Alder Lake and later client cores, AMD Zen 5 client;
// Sapphire Rapids has it next to AVX-512, AMD Zen 4 only the EVEX form). Compiled with the AVX2 flags
// plus -mavxvnni (where the compiler knows it: else this file defines no kernels and the variant is
// absent); chosen where the CPU has AVX-VNNI (CPUID.(7,1):EAX bit 4) besides what the AVX2 variant needs
// (dispatch.cpp, which assembles the table). A test build (QTF_AVXVNNI_STANDIN) compiles it with the
// EVEX vpdpbusd instead, so that this code runs on a Zen 4 too (tools/sanitize.sh).
//
// The GEMM is int8_lanes.inc's with int8_lanes256.inc's 8-row tiles, as kern_avx2.cpp runs for q4, but
// one vpdpbusd per 4 values of the 8 rows instead of vpmaddubsw + an int16 add (+ one vpmaddwd per
// block), and i8 rows in lanes too (w + 128 unsigned, the accumulator starting at -128 * sum(x)), where
// the AVX2 variant keeps the dot tiles. Exact int32 sums, the same lane-wise float sequence in any tile.
#include "kernels/dispatch.h"
#include "kernels/simd.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && \
    (defined(__AVXVNNI__) || (defined(QTF_AVXVNNI_STANDIN) && defined(__AVX512VNNI__) && defined(__AVX512VL__)))
#define xsimd qtf_xsimd_avxvnni  // this file's own copy of xsimd (simd_body.inc says why)
#include <cmath>
#include <cstring>
#include <type_traits>
#include <xsimd/xsimd.hpp>

namespace qtf::kern_avxvnni {
namespace {
using V8 = xsimd::batch<float, xsimd::fma3<xsimd::avx2>>;
using V = V8;  // the quantiser's loads (the same bytes and scales as every variant's)
constexpr int W = 8;
#define QTF_Q8_OWN_MATMUL 1
#include "kernels/int8_body.inc"

#define QTF_LANES_VNNI 1
#include "kernels/int8_lanes256.inc"
#ifndef QTF_AVXVNNI_TOKENS
#define QTF_AVXVNNI_TOKENS 8
#endif
constexpr int kLaneTokens = QTF_AVXVNNI_TOKENS;
#ifndef QTF_AVXVNNI_PANEL_TOKENS
#define QTF_AVXVNNI_PANEL_TOKENS 8
#endif
constexpr int kLanePanelTokens = QTF_AVXVNNI_PANEL_TOKENS;  // over a packed panel (int8_lanes.inc)
#include "kernels/int8_lanes.inc"

void dense_matmul_q8(const DenseMatrix& M, const Q8Rows& X, int batch, float* Y, int64_t ldy) {
  if (M.w.type == WType::q4) lane_matmul<true>(M, X, batch, Y, ldy);
  else lane_matmul<false>(M, X, batch, Y, ldy);
}

// Constant-initialised (addresses only): no code of this file runs until the CPU is known to have it.
constexpr kern::Int8Kernels kInt8 = {&quantize_q8, &dense_matmul_q8};
}  // namespace
}  // namespace qtf::kern_avxvnni

const qtf::kern::Int8Kernels* qtf::kern::avxvnni_int8_kernels() { return &kern_avxvnni::kInt8; }
#else
const qtf::kern::Int8Kernels* qtf::kern::avxvnni_int8_kernels() { return nullptr; }
#endif
