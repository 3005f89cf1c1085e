// NEON variant (4 floats): aarch64 (xsimd's neon64) or armv7 built with -mfpu=neon. Compiled with the
// target's own flags: present only where the toolchain enables NEON. See simd_body.inc.
#include "kernels/dispatch.h"
#include "kernels/simd.h"

#if XSIMD_WITH_NEON64 || XSIMD_WITH_NEON
#define xsimd qtf_xsimd_neon  // this file's own copy of xsimd (simd_body.inc says why)
#include <xsimd/xsimd.hpp>

namespace qtf::kern_neon {
namespace {
#if XSIMD_WITH_NEON64
using V4 = xsimd::batch<float, xsimd::neon64>;
constexpr bool kFusedFma = true;  // vfmaq_f32
#else
using V4 = xsimd::batch<float, xsimd::neon>;
#if defined(__ARM_FEATURE_FMA)
constexpr bool kFusedFma = true;  // vfmaq_f32 (e.g. -mfpu=neon-vfpv4)
#else
constexpr bool kFusedFma = false;  // xsimd 8.1 falls back to multiply, then add
#endif
#endif
}  // namespace
}  // namespace qtf::kern_neon

#define QTF_NS kern_neon
#define QTF_VARIANT_NAME "neon"
#define QTF_VECTORS V4
#include "kernels/simd_body.inc"

const qtf::kern::Table* qtf::kern::table_neon() { return &kern_neon::kTable; }
#else
const qtf::kern::Table* qtf::kern::table_neon() { return nullptr; }
#endif
