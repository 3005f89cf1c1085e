// AVX-512 VNNI variant: the AVX-512 table (kern_avx512.cpp) with its integer dot products on vpdpbusd
// (int8_body.inc, int8_x86.inc with QTF_VNNI): one instruction per block where AVX2/AVX-512BW take two
// (vpmaddubsw, vpmaddwd). Compiled with the AVX-512 flags plus -mavx512vnni; chosen where the CPU has
// AVX512_VNNI besides what the AVX-512 variant needs (dispatch.cpp). Everything else is the AVX-512
// variant's code: this file holds only the integer kernels (dispatch.cpp assembles the table).
#include "kernels/dispatch.h"
#include "kernels/simd.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__FMA__)
#define xsimd qtf_xsimd_avx512vnni  // this file's own copy of xsimd (simd_body.inc says why)
#include <cmath>
#include <cstring>
#include <xsimd/xsimd.hpp>

namespace qtf::kern_avx512vnni {
namespace {
using V16 = xsimd::batch<float, xsimd::avx512bw>;
using V8 = xsimd::batch<float, xsimd::fma3<xsimd::avx2>>;
using V = V16;  // the quantiser's loads
constexpr int W = 16;
constexpr bool kFusedFma = true;
inline V8 fmadd(const V8& a, const V8& b, const V8& c) { return _mm256_fmadd_ps(a, b, c); }
inline float q4_scale(const uint8_t* block) { return _cvtsh_ss((uint16_t)(block[0] | block[1] << 8)); }
#define QTF_VNNI 1
#include "kernels/int8_x86.inc"
#define QTF_Q8_TOKENS 4
#include "kernels/int8_body.inc"

// Constant-initialised (addresses only): no code of this file runs until the CPU is known to have VNNI.
constexpr kern::Int8Kernels kInt8 = {&quantize_q8, &dense_matmul_q8};
}  // namespace
}  // namespace qtf::kern_avx512vnni

const qtf::kern::Int8Kernels* qtf::kern::avx512vnni_int8_kernels() { return &kern_avx512vnni::kInt8; }
#else
const qtf::kern::Int8Kernels* qtf::kern::avx512vnni_int8_kernels() { return nullptr; }
#endif
