// The one SIMD dispatch point: a table of function pointers per kernel variant (ggml/XNNPACK style).
//
// Each SIMD variant is one translation unit (kern_sse2.cpp, kern_avx2.cpp, kern_avx512.cpp,
// kern_neon.cpp) that includes simd_body.inc once, compiled with its own flags (CMake sets them per
// file) into its own namespace, using xsimd::batch<float, Arch> with an explicit Arch. The scalar
// variant is made of the reference kernels and is always present. The kern:: and quantum:: entry
// points call through the active table, picked once per process: the best variant this CPU runs,
// unless select_simd() chose another (the host layer maps QTF_SIMD / --simd onto it).
#pragma once
#include <cstddef>

#include "kernels/kernels.h"
#include "kernels/tt_plan.h"

namespace qtf {
namespace quantum {
struct DaruanParams;
}

namespace kern {

struct Table {
  const char* name;  // "scalar", "sse2", "avx2", "avxvnni", "avx512", "avx512vnni", "neon", "neondot"
  int width;         // floats per (widest) vector; 1 for scalar
  void (*tt_step)(const tt::Step& s, const float* in, float* out);
  void (*transpose)(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd);  // ref::
  // Y[b * ldy + r] = (W X[b])[r] + bias[r]. Xt: X transposed by kern::pack_input (the broadcast-form
  // GEMM): batch_lanes(batch) lanes from Xt read per reduction index, ldx floats apart (a token tile of
  // a packed block reads its lanes in place); `partial` of batch_lanes(batch) floats per row of W for
  // the sums between reduction blocks (W.cols > kGemmKBlock). Xt null: the dot form, reading X (the
  // scalar variant always reads X).
  void (*dense_matmul)(const DenseMatrix& W, const float* X, int batch, float* Y, int64_t ldy, const float* Xt,
                       int64_t ldx, float* partial);
  float (*dot)(const float* a, const float* b, int n);
  void (*axpy)(float a, const float* x, float* y, int n);
  void (*layer_norm)(const float* x, const float* w, const float* b, float eps, int n, float* y);
  void (*softmax_inplace)(float* x, int n);
  void (*gelu_inplace)(float* x, int n);
  void (*silu_inplace)(float* x, int n);
  void (*tanh_inplace)(float* x, int n);
  // quantum::fidelities and quantum::daruan_fourier (same contracts).
  void (*fidelities)(int Q, const float* query, const float* keys, size_t key_stride, int n, float* out);
  void (*daruan_fourier)(const quantum::DaruanParams& p, const float* storage, const float* x, float* y);
  // The block options (docs/llama.md) and one head of classical attention.
  void (*rms_norm)(const float* x, const float* w, float eps, int n, float* y);
  void (*rope)(float* x, int n_heads, int head_dim, const float* cs);
  void (*silu_mul)(float* g, const float* u, int n);
  void (*attend)(const float* q, const float* k, const float* v, size_t stride, int n, int hd, float scale, float* w,
                 float* out);
  // Integer dot products with activations quantised per block of 32 (int8_body.inc; ref:: contracts).
  void (*quantize_q8)(const float* x, int n, int8_t* q, float* d);
  void (*dense_matmul_q8)(const DenseMatrix& W, const Q8Rows& X, int batch, float* Y, int64_t ldy);
};

// Every variant compiled into this build, scalar first, widest last (whether or not this CPU runs it).
int simd_variant_count();
const Table& simd_variant(int i);
// Whether this CPU (and OS) can run variant `t`.
bool simd_supported(const Table& t);
// The table in use (the best supported variant until select_simd picks another).
const Table& active();

// The AVX2 variant's TT step (kern_avx2.cpp), which the AVX-512 table also runs for unpacked steps:
// there the 512-bit step was slower than the 256-bit one on most bench shapes (bench/README.md).
void avx2_tt_step(const tt::Step& s, const float* in, float* out);
// The 512-bit TT step itself (kern_avx512.cpp), packed or not; the AVX-512 table runs it for packed
// steps only. Only on CPUs with AVX-512.
void avx512_tt_step(const tt::Step& s, const float* in, float* out);

// Defined by each kern_<arch>.cpp: its table, or null where this build has no such variant.
const Table* table_sse2();
const Table* table_avx2();
const Table* table_avx512();
// The AVX-512 table with the integer dot products on VNNI (vpdpbusd): built in dispatch.cpp from
// table_avx512() and the two kernels kern_avx512vnni.cpp defines (null where not compiled). The table is
// assembled in baseline code: compiled with the AVX-512 flags, even copying it uses zmm registers,
// which a CPU without AVX-512 cannot run, and every CPU lists the variants.
const Table* table_avx512vnni();
struct Int8Kernels {
  void (*quantize_q8)(const float* x, int n, int8_t* q, float* d);
  void (*dense_matmul_q8)(const DenseMatrix& W, const Q8Rows& X, int batch, float* Y, int64_t ldy);
};
const Int8Kernels* avx512vnni_int8_kernels();
// The AVX2 table with the integer dot products on AVX-VNNI (VEX vpdpbusd; kern_avxvnni.cpp), assembled
// the same way, for CPUs with AVX-VNNI but no AVX-512.
const Table* table_avxvnni();
const Int8Kernels* avxvnni_int8_kernels();
const Table* table_neon();
// The NEON table with sdot integer dot products (aarch64; kern_neondot.cpp), assembled the same way.
const Table* table_neondot();
const Int8Kernels* neondot_int8_kernels();

}  // namespace kern
}  // namespace qtf
