// Whether this build has SIMD kernel variants at all, decided from the target's baseline flags by
// xsimd's config header (safe on every target). x86 (SSE2 baseline) builds compile the SSE2, AVX2 and
// AVX-512 variants and pick one at run time; ARM builds with NEON compile the NEON variant. On e.g.
// Cortex-M7 xsimd has no arch (and its allocator code does not build against newlib): QTF_SIMD is 0
// and only the scalar variant exists. Only the kern_<arch>.cpp files include xsimd itself.
#pragma once
#include <xsimd/config/xsimd_config.hpp>

#if XSIMD_WITH_SSE2 || XSIMD_WITH_NEON || XSIMD_WITH_NEON64
#define QTF_SIMD 1
#else
#define QTF_SIMD 0
#endif
