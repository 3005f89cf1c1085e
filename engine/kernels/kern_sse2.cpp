// SSE2 variant: the x86-64 baseline (4 floats, no FMA). See simd_body.inc.
#include "kernels/dispatch.h"
#include "kernels/simd.h"

#if XSIMD_WITH_SSE2
#define xsimd qtf_xsimd_sse2  // this file's own copy of xsimd (simd_body.inc says why)
#include <xsimd/xsimd.hpp>

namespace qtf::kern_sse2 {
namespace {
constexpr bool kFusedFma = false;
using V4 = xsimd::batch<float, xsimd::sse2>;
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
