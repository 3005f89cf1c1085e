// The one place that decides whether the kernels are built with SIMD. xsimd's config header is safe on
// every target; the full xsimd header is included only when the target has a SIMD arch (x86 SSE2+, ARM
// NEON). On e.g. Cortex-M7 xsimd has none (and its allocator code does not build against newlib), so
// QTF_SIMD is 0 and the kernels take their scalar paths.
#pragma once
#include <xsimd/config/xsimd_config.hpp>

#if XSIMD_WITH_SSE2 || XSIMD_WITH_NEON || XSIMD_WITH_NEON64
#define QTF_SIMD 1
#include <xsimd/xsimd.hpp>
namespace qtf {
namespace simd {
using V = xsimd::batch<float>;  // default arch, chosen by the compiler flags
constexpr int W = static_cast<int>(V::size);
}  // namespace simd
}  // namespace qtf
#else
#define QTF_SIMD 0
#endif
