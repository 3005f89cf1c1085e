// NEON variant (4 floats): aarch64 (xsimd's neon64) or armv7 built with -mfpu=neon. Compiled with the
// target's own flags: present only where the toolchain enables NEON. See simd_body.inc.
#include "kernels/dispatch.h"
#include "kernels/simd.h"

#if XSIMD_WITH_NEON64 || XSIMD_WITH_NEON
#define xsimd qtf_xsimd_neon  // this file's own copy of xsimd (simd_body.inc says why)
#include <cstring>
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
// i8 and f16 weights as floats: four bytes widened twice; halves by the aarch64 conversion (32-bit ARM
// needs the fp16 extension for it: one by one there).
inline V4 widen(const int8_t* p, V4*) {
  int32_t bits;
  std::memcpy(&bits, p, 4);
  const int16x8_t h = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(bits)));
  return vcvtq_f32_s32(vmovl_s16(vget_low_s16(h)));
}
inline float half_to_float(uint16_t h) { return qtf::f16_to_f32(h); }
inline V4 widen(const uint16_t* p, V4*) {
#if XSIMD_WITH_NEON64
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
#else
  alignas(16) float f[4];
  for (int i = 0; i < 4; ++i) f[i] = half_to_float(p[i]);
  return V4::load_aligned(f);
#endif
}
// A q4 block: low nibbles are values 0..15, high nibbles 16..31; nibble - 8 in bytes, widened twice.
inline void widen_q4(const uint8_t* p, V4* out) {
  const uint8x16_t v = vld1q_u8(p);
  const int8x16_t eight = vdupq_n_s8(8);
  const int8x16_t halves[2] = {vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15))), eight),
                               vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight)};
  for (int h = 0; h < 2; ++h) {
    const int16x8_t a = vmovl_s8(vget_low_s8(halves[h])), b = vmovl_s8(vget_high_s8(halves[h]));
    out[4 * h] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(a)));
    out[4 * h + 1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(a)));
    out[4 * h + 2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(b)));
    out[4 * h + 3] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(b)));
  }
}
#include "kernels/int8_neon.inc"
#if !XSIMD_WITH_NEON64
#define QTF_Q8_SCALAR_ROUND 1  // armv7 NEON has no vector round to nearest even
#endif
}  // namespace
}  // namespace qtf::kern_neon

#define QTF_NS kern_neon
#define QTF_VARIANT_NAME "neon"
#define QTF_VECTORS V4
#if XSIMD_WITH_NEON64
#define QTF_VECTOR_REGISTERS 32
#endif
#include "kernels/simd_body.inc"

const qtf::kern::Table* qtf::kern::table_neon() { return &kern_neon::kTable; }
#else
const qtf::kern::Table* qtf::kern::table_neon() { return nullptr; }
#endif
