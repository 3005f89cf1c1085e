// AVX2 + FMA (+ F16C) variant (8 floats; 4-float vectors for the narrower TT steps). Compiled with -mavx2 -mfma -mf16c
// (engine/kernels/CMakeLists.txt); chosen only where the CPU and OS support both. See simd_body.inc.
#include "kernels/dispatch.h"
#include "kernels/simd.h"

#if defined(__AVX2__) && defined(__FMA__)
#define xsimd qtf_xsimd_avx2  // this file's own copy of xsimd (simd_body.inc says why)
#include <cstring>
#include <xsimd/xsimd.hpp>

namespace qtf::kern_avx2 {
namespace {
constexpr bool kFusedFma = true;
using V8 = xsimd::batch<float, xsimd::fma3<xsimd::avx2>>;
using V4 = xsimd::batch<float, xsimd::sse4_2>;
inline V4 fmadd(const V4& a, const V4& b, const V4& c) { return _mm_fmadd_ps(a, b, c); }  // xsimd: mul+add
// i8 and f16 weights as floats (F16C converts halves; every AVX2 CPU has it, and dispatch checks).
#include "kernels/widen_x86.inc"
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
