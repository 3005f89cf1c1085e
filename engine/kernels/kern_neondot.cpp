// NEON dot-product variant (aarch64): the NEON table with its integer dot products on sdot (two per
// block, where plain NEON takes vmull/vmlal and a pairwise add: int8_neon.inc). Compiled with
// -march=armv8.2-a+dotprod; chosen at run time where the CPU reports the extension (Linux's HWCAP
// ASIMDDP, dispatch.cpp), so one aarch64 build runs sdot on a Raspberry Pi 5 (Cortex-A76) and plain
// NEON on a Pi 3/4 (Cortex-A53/A72). This file holds only the integer kernels: dispatch.cpp assembles
// the table from the NEON one in baseline code.
#include "kernels/dispatch.h"
#include "kernels/simd.h"

#if XSIMD_WITH_NEON64 && defined(__ARM_FEATURE_DOTPROD)
#define xsimd qtf_xsimd_neondot  // this file's own copy of xsimd (simd_body.inc says why)
#include <cmath>
#include <cstring>
#include <xsimd/xsimd.hpp>

namespace qtf::kern_neondot {
namespace {
using V4 = xsimd::batch<float, xsimd::neon64>;
using V = V4;  // the quantiser's loads
constexpr int W = 4;
constexpr bool kFusedFma = true;  // vfmaq_f32
inline V4 fmadd(const V4& a, const V4& b, const V4& c) { return xsimd::fma(a, b, c); }
inline float q4_scale(const uint8_t* block) { return qtf::f16_to_f32((uint16_t)(block[0] | block[1] << 8)); }
#include "kernels/int8_neon.inc"
#include "kernels/int8_body.inc"

// Constant-initialised (addresses only): no code of this file runs until the CPU is known to have sdot.
constexpr kern::Int8Kernels kInt8 = {&quantize_q8, &dense_matmul_q8};
}  // namespace
}  // namespace qtf::kern_neondot

const qtf::kern::Int8Kernels* qtf::kern::neondot_int8_kernels() { return &kern_neondot::kInt8; }
#else
const qtf::kern::Int8Kernels* qtf::kern::neondot_int8_kernels() { return nullptr; }
#endif
