// Numeric kernels: one dispatch point. Every kernel has a scalar reference (namespace qtf::ref) and SIMD
// variants (xsimd: SSE2, AVX2+FMA, AVX-512 on x86, NEON on ARM), each compiled once with its own flags;
// the functions in namespace qtf::kern call the variant picked at run time (kernels/dispatch.h).
// Tests compare every variant the CPU supports against ref:: on random inputs.
// No kernel allocates: scratch comes from a caller-provided workspace.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/status.h"

namespace qtf {

constexpr int kMaxTTFactors = 4;

// Shape of a TT-matrix W in R^{M x N}: M = prod m[k], N = prod n[k] (first factor most significant),
// core k has shape [r[k], m[k], n[k], r[k+1]] (row-major), r[0] = r[K] = 1.
struct TTShape {
  int K = 0;
  int m[kMaxTTFactors] = {0};
  int n[kMaxTTFactors] = {0};
  int r[kMaxTTFactors + 1] = {0};
  int64_t rows() const;  // M
  int64_t cols() const;  // N
  int64_t params() const;  // sum of core sizes
};

// IEEE half -> float (exact).
float f16_to_f32(uint16_t h);
// float -> IEEE half, round to nearest even (overflow to Inf; Inf and NaN kept).
uint16_t f32_to_f16(float f);

// q4 (docs/format.md, dtype 4): GGUF's Q4_0 blocks along each row. A block is 32 values in 18 bytes: an
// IEEE half scale d, then 16 bytes whose byte j holds value j in its low nibble and value j + 16 in its
// high nibble; value = d * (nibble - 8). A row of `cols` values is ceil(cols / 32) blocks, the last one
// padded with nibbles 8 (zeros).
constexpr int kQ4Block = 32;
constexpr int kQ4BlockBytes = 18;
constexpr int64_t q4_row_bytes(int64_t cols) { return (cols + kQ4Block - 1) / kQ4Block * kQ4BlockBytes; }

// Value `col` of a q4 row (its first block at `row`), dequantized.
float q4_value(const uint8_t* row, int64_t col);

// q3 (docs/format.md, dtype 5): blocks of 32 values along each row in 14 bytes (3.5 bits a value): an
// IEEE half scale d, 8 bytes of low bits (byte j: bits 2i..2i+1 hold the low two bits of value j + 8i,
// i = 0..3) and 4 bytes of high bits (bit j of the little-endian 32-bit word: value j's third bit);
// value = d * (code - 4), code = low | high << 2 in 0..7. A row's last block is padded with codes 4
// (zeros). Its values are a subset of q4's (code - 4 is nibble - 8 in -4..3), so the loader expands q3
// matrices to q4 blocks exactly (q3_row_to_q4) and every q4 kernel runs them (docs/quantize.md "q3").
constexpr int kQ3Block = 32;
constexpr int kQ3BlockBytes = 14;
constexpr int64_t q3_row_bytes(int64_t cols) { return (cols + kQ3Block - 1) / kQ3Block * kQ3BlockBytes; }
// Code (0..7) of value j of a q3 block's 12 code bytes (those after its scale).
inline int q3_code_of(const uint8_t* codes, int j) {
  return (codes[j & 7] >> (2 * (j >> 3)) & 3) | (codes[8 + (j >> 3)] >> (j & 7) & 1) << 2;
}
// Code (0..7) of value j of a q3 block.
inline int q3_code(const uint8_t* block, int j) { return q3_code_of(block + 2, j); }
// Value `col` of a q3 row (its first block at `row`), dequantized.
float q3_value(const uint8_t* row, int64_t col);
// A q3 row of `cols` values as the q4 row of the same values (q4_row_bytes(cols) bytes at `out`).
void q3_row_to_q4(const uint8_t* row, int64_t cols, uint8_t* out);

// q4s, q3s (docs/format.md, dtypes 6, 7): a tensor's q4 (q3) blocks numbered row-major over the whole
// tensor, their f16 scales coded per group of 8 blocks (the last group may hold fewer): 8 header bytes
// (D, an IEEE half; then eight 6-bit two's complement sub-scales s_j in -31..31, s_j & 63 at bits
// [6j, 6j + 6) of the 48-bit little-endian integer of bytes 2..7), then each block's codes without its
// scale (q4s: 16 bytes, a q4 block's bytes 2..17; q3s: 12 bytes, a q3 block's bytes 2..13). Block j's
// scale is f16_round((float)s_j * D): 4.25 (3.25) bits a value. The loader expands them to q4 blocks
// (sblocks_to_q4), so every q4 kernel runs them (docs/quantize.md "q4s, q3s").
constexpr int kSGroup = 8;         // blocks a group
constexpr int kSGroupHeader = 8;   // bytes: D and the sub-scales
constexpr int sblock_bytes(bool q3) { return q3 ? kQ3BlockBytes - 2 : kQ4BlockBytes - 2; }
// Bytes of group g's start in a q4s (q3s) tensor (every group before it full).
constexpr uint64_t sgroup_offset(bool q3, uint64_t g) { return g * (kSGroupHeader + kSGroup * (uint64_t)sblock_bytes(q3)); }
// Sub-scale j (-32..31 as stored) of the group whose header is at `group`.
inline int sgroup_sub(const uint8_t* group, int j) {
  uint64_t bits = 0;
  for (int k = 0; k < 6; ++k) bits |= (uint64_t)group[2 + k] << (8 * k);
  const int s = (int)(bits >> (6 * j) & 63);
  return s >= 32 ? s - 64 : s;
}
// Code of value j of a q4s (q3s) block's codes at `codes`: a nibble 0..15, zero 8 (a code 0..7, zero 4).
inline int sblock_code(const uint8_t* codes, bool q3, int j) {
  return q3 ? q3_code_of(codes, j) : j < 16 ? codes[j] & 15 : codes[j - 16] >> 4;
}
// Block j's scale in the group at `group`: the f16 f16_round((float)s_j * D) (round to nearest even).
uint16_t sgroup_scale(const uint8_t* group, int j);
// Blocks first .. first + count - 1 of the q4s (`q3` false) or q3s tensor at `data` as q4 blocks of the
// same values (count * 18 bytes at `out`; a tensor's blocks 0 .. rows * ceil(cols / 32) - 1 are its q4 rows).
void sblocks_to_q4(const uint8_t* data, bool q3, uint64_t first, uint64_t count, uint8_t* out);

// Weights as the model file stores them, read in place (docs/quantize.md): f32; f16 (IEEE half); i8,
// value = scale * q, with one scale per row (`scales`) or one for all (`scales` null: `scale`); or q4
// (rows of blocks as above, `cols` values per row).
enum class WType : uint8_t { f32 = 0, f16 = 1, i8 = 2, q4 = 3 };
struct Weights {
  WType type = WType::f32;
  const void* data = nullptr;     // the values, row-major (q4: the first row's first block)
  const float* scales = nullptr;  // i8: [rows] one scale per row, or null
  float scale = 1.f;              // i8 without per-row scales
  int64_t cols = 0;               // q4: values per row (a row is q4_row_bytes(cols) bytes)
  Weights() = default;
  Weights(const float* f32) : data(f32) {}  // NOLINT: f32 weights are the common case
  Weights(WType t, const void* d, const float* row_scales, float s) : type(t), data(d), scales(row_scales), scale(s) {}
  static Weights q4(const void* blocks, int64_t cols) {
    Weights w(WType::q4, blocks, nullptr, 1.f);
    w.cols = cols;
    return w;
  }
  // The same weights from value `index` (in row `row`) on: a sub-matrix's rows, or a core's slice. q4:
  // `index` must start a block of row `row` (row * cols + a multiple of 32); whole rows always do.
  Weights from(int64_t index, int64_t row) const;
  // Value `index` of row `row`, dequantized (the scalar path; kernels read whole vectors).
  float value(int64_t index, int64_t row) const;
};

// Activations quantised per block of 32 for integer dot products with i8 and q4 weights (issue 26,
// docs/quantize.md "Integer dot products"): a row of n floats becomes q8_blocks(n) blocks of 32 int8
// values q = round_even(x * 127 / max|x|) (tail padded with zeros) and one float scale d = max|x| / 127
// per block (0 for an all-zero block), value = d * q, as llama.cpp's Q8_0 (with an f32 scale).
constexpr int kQ8Block = 32;
constexpr int64_t q8_blocks(int64_t n) { return (n + kQ8Block - 1) / kQ8Block; }
// A batch of quantised rows: row t's values at q + t * blocks * kQ8Block, its scales at d + t * blocks.
struct Q8Rows {
  const int8_t* q = nullptr;
  const float* d = nullptr;
  int64_t blocks = 0;
};

// A TT-matrix linear y = W x + b, cores stored at their full (stored) bond ranks. Cores are f32, f16 or
// i8 with one scale per core (a contraction reads a core along different axes, so no per-row scale).
struct TTMatrix {
  TTShape shape;
  Weights cores[kMaxTTFactors];
  const float* bias = nullptr;  // [M] or null
};

// Dense linear y = W x + b, W row-major [rows, cols] (any Weights type).
struct DenseMatrix {
  int rows = 0, cols = 0;
  Weights w;
  const float* bias = nullptr;  // [rows] or null
};

// Threads to split work over, supplied by the host layer (the core starts none; bare-metal builds have
// none). run(impl, n, task, arg) calls task(arg, i, thread) for every i in [0, n), spread over `threads`
// threads (thread in [0, threads): a per-thread scratch index), and returns when all are done. Tasks
// start in index order: task i only once every task before it has been claimed (kern::PartsThen).
struct Workers {
  int threads = 1;
  void (*run)(void* impl, int n_tasks, void (*task)(void* arg, int i, int thread), void* arg) = nullptr;
  void* impl = nullptr;
};

// body(i, thread) for every i in [0, n): over the workers, or inline where there are none.
template <class F>
inline void parallel_for(const Workers* w, int n, const F& body) {
  if (w == nullptr || w->threads < 2 || n < 2) {
    for (int i = 0; i < n; ++i) body(i, 0);
    return;
  }
  w->run(w->impl, n, [](void* arg, int i, int thread) { (*static_cast<const F*>(arg))(i, thread); },
         const_cast<F*>(&body));
}

// Work of fewer FLOPs than this runs on the calling thread: waking the others (and handing the data
// to their caches) costs more than it saves. For the matmul and TT step splits and the per-token steps
// of a block. 2^17 (was 2^15): on the 2-core development machine -t 2 then costs the small shipped
// models 1.1-1.7x the CPU time of -t 1 instead of 1.2-3.4x, and 2^18 lost d52's prompt speed-up.
constexpr int64_t kParallelFlops = 1 << 17;

// The same for a job of about `flops` FLOPs in all: inline below kParallelFlops.
template <class F>
inline void parallel_for(const Workers* w, int n, int64_t flops, const F& body) {
  parallel_for(flops < kParallelFlops ? nullptr : w, n, body);
}

// body(i, thread) for every i in [0, n) of a job of about `flops` FLOPs in all, the indices claimed in
// runs of consecutive ones, about kRunsPerThread runs a thread: for many small tasks (a block's (token,
// head) attention: 768 of a few microseconds at d768, 64 tokens), where claiming each alone (an atomic
// on a line every thread shares) costs a good part of what the task does on many threads.
constexpr int kRunsPerThread = 8;
template <class F>
inline void parallel_for_runs(const Workers* w, int n, int64_t flops, const F& body) {
  const int threads = w && flops >= kParallelFlops ? w->threads : 1;
  const int runs = n < kRunsPerThread * threads ? n : kRunsPerThread * threads;
  parallel_for(threads > 1 ? w : nullptr, runs, [&](int r, int thread) {
    for (int i = (int)((int64_t)n * r / runs); i < (int)((int64_t)n * (r + 1) / runs); ++i) body(i, thread);
  });
}

// FLOPs (a multiply-add = 2) of one TT matvec at run-time rank `rank` with the cost-chosen order.
int64_t tt_matvec_flops(const TTShape& s, int rank);

namespace kern {
// Name of the SIMD variant in use: "scalar", "sse2", "avx2", "avx512" or "neon".
const char* simd_arch();
// Pick the variant by name for the whole process ("auto": the best this CPU runs, the default).
// Errors: an unknown name, a variant not compiled into this build, or one this CPU cannot run. Not
// meant to be called while other threads run kernels. The environment (QTF_SIMD) is read by the host
// layer and the CLI, not here.
Status select_simd(const char* name);
// The variants this build has and this CPU runs, comma-separated, scalar first (for messages).
const char* simd_available();

// Floats of workspace one tt_matmul call with up to `batch` vectors needs (any rank <= stored).
size_t tt_workspace_floats(const TTShape& s, int batch);
// y = W x + b at run-time rank `rank` (every bond truncated to min(rank, r[k]); rank >= 1).
void tt_matvec(const TTMatrix& W, int rank, const float* x, float* y, float* workspace);
// Y[b] = W X[b] + b for `batch` vectors: X is [batch, N], Y is [batch, M], row-major.
void tt_matmul(const TTMatrix& W, int rank, const float* X, int batch, float* Y, float* workspace);

void dense_matvec(const DenseMatrix& W, const float* x, float* y);
void dense_matmul(const DenseMatrix& W, const float* X, int batch, float* Y);

// Lanes per reduction index of a batch transposed for the GEMM: the batch rounded up to 4 (the narrowest
// vector of every SIMD variant).
constexpr int64_t batch_lanes(int batch) { return (batch + 3) / 4 * 4; }
// The broadcast-form GEMM's reduction block (simd_body.inc).
constexpr int kGemmKBlock = 1024;
// Floats of `scratch` that dense_matmul below needs for `batch` vectors through [rows, cols] matrices
// (0 where the batch runs as dot products); `rows`: those of every matrix dense_matmuls runs together on
// one input (their partial sums are side by side).
size_t dense_scratch_floats(int rows, int cols, int batch);
// A block's input as the GEMMs of every dense matrix that reads it take it (a layer's q, k and v read
// one input; up and gate another): made once by pack_input, then read by each dense_matmul. In
// broadcast form (xt non-null) X transposed into the scratch, batch_lanes(batch) lanes per column, and
// after it the GEMMs' partial sums; else X's rows alone (the dot form). It points into the scratch:
// packing the next input there replaces it.
struct PackedInput {
  const float* X = nullptr;  // [batch][cols]
  int batch = 0, cols = 0;
  const float* xt = nullptr;  // [cols][batch_lanes(batch)], or null: dot form
  float* partial = nullptr;   // scratch for the sums between reduction blocks (cols > kGemmKBlock)
};
// The rows of a block's input made by a per-token step (a norm, the entropy meter) in the job that
// quantises or packs them, not a job of its own: fn(arg, i) writes row i; `flops`: all rows together
// (kParallelFlops decides for the job as a whole).
struct RowMaker {
  void (*fn)(void* arg, int i) = nullptr;
  void* arg = nullptr;
  int64_t flops = 0;
};
template <class F>
inline RowMaker row_maker(const F& f, int64_t flops) {
  return RowMaker{[](void* arg, int i) { (*static_cast<const F*>(arg))(i); }, const_cast<F*>(&f), flops};
}
// rows->fn for every row over `w`'s threads (null rows: nothing), as a job of its own.
void make_rows(const RowMaker* rows, int batch, const Workers* w);
// X's `batch` rows of `cols` floats packed into `scratch` (dense_scratch_floats(rows, cols, batch) floats
// for the widest matrix that reads it; null: no scratch, dot form), split over `w`'s threads (null: one).
// `rows` (may be null): X's rows are made first, in the same job (the pack's parts wait for them).
PackedInput pack_input(const float* X, int batch, int cols, float* scratch, const Workers* w,
                       const RowMaker* rows = nullptr);
// Y = W X for the packed X (X.cols == W.cols) over `w`'s threads (null: one thread), in tiles of rows x
// tokens (dispatch.cpp: the same bits at every thread count, and whichever matrix packed X first). In
// broadcast form each weight is broadcast against vectors of tokens (simd_body.inc); else dot products.
// The TT form is in tt_plan.h.
void dense_matmul(const DenseMatrix& W, const PackedInput& X, float* Y, const Workers* w);
// pack_input then dense_matmul: an input only this matrix reads.
void dense_matmul(const DenseMatrix& W, const float* X, int batch, float* Y, float* scratch, const Workers* w);

// Work on a GEMM's output tile on the thread that made it, while it is in that core's cache: a residual
// add, the SwiGLU gate, rotary positions (forward.cpp). fn(arg, j, r0, r1, b0, b1): rows [r0, r1) of
// tokens [b0, b1) of matrix j's output are done (one_tile: of every matrix, j = -1). Without threads
// (or a job too small to split) it is called once per matrix on the whole output. Row edges are even
// (rotary pairs stay whole), but otherwise depend on the thread count: fn must give each element the
// same bits however the rows are cut (elementwise work).
struct TileThen {
  void (*fn)(void* arg, int j, int r0, int r1, int b0, int b1) = nullptr;
  void* arg = nullptr;
  bool one_tile = false;  // all matrices have the same rows: a task makes one tile of each, then fn
};
// f(j, r0, r1, b0, b1) as a TileThen (f must outlive the GEMM call).
template <class F>
inline TileThen tile_then(const F& f, bool one_tile = false) {
  auto call = [](void* arg, int j, int r0, int r1, int b0, int b1) {
    (*static_cast<const F*>(arg))(j, r0, r1, b0, b1);
  };
  return TileThen{call, const_cast<F*>(&f), one_tile};
}
// The most matrices one dense_matmuls call runs (q, k and v).
constexpr int kMaxGemms = 3;
// Ys[j] = Ws[j] X for `count` (<= kMaxGemms) matrices of one input, as ONE job over `w`'s threads: the
// tiles of all of them, one hand-off and one wait instead of `count` (the same bits as count
// dense_matmul calls); `then` (may be null) on each tile. The dense_matmul above is count 1.
void dense_matmuls(const DenseMatrix* const* Ws, int count, const PackedInput& X, float* const* Ys, const Workers* w,
                   const TileThen* then);

// Integer dot products (docs/quantize.md "Integer dot products"). quantize_q8: row x of n floats into
// q8_blocks(n) blocks (q: that many * kQ8Block bytes, d: that many floats); every variant gives the same
// bytes and scales as ref. dense_matmul_q8: Y[b * ldy + r] = W X[b] + bias for an i8 (per-row or single
// scale) or q4 W and quantised X (X.blocks == q8_blocks(W.cols)): per block the int32 dot product of the
// int8 values times the activation block's scale (q4: times the weight block's d too), summed, then (i8)
// times the row's scale. Over `w`'s threads (null: one), in tiles of rows x tokens as dense_matmul.
bool int_dot_supported(WType t);  // i8 and q4
// Whether the active variant's integer dot products beat its float path on weights of type t, prompt
// and decode (docs/quantize.md "Integer dot products", docs/simd.md): i8 and q4 under avx512vnni,
// avxvnni and avx2; q4 only under avx512 (its i8 dot tiles lose to the 512-bit float GEMM on prompts);
// ContextOptions' automatic.
bool int_dot_preferred(WType t);
void quantize_q8(const float* x, int n, int8_t* q, float* d);
// `batch` rows of n floats, split over `w`'s threads (null: one) where the block is big enough.
// `rows` (may be null): each row made just before it is quantised, on the same thread.
void quantize_q8_rows(const float* X, int batch, int n, int8_t* q, float* d, const Workers* w = nullptr,
                      const RowMaker* rows = nullptr);
void dense_matmul_q8(const DenseMatrix& W, const Q8Rows& X, int batch, float* Y, const Workers* w);
// dense_matmuls' integer form: `count` (<= kMaxGemms) i8/q4 matrices of one quantised input in one job.
void dense_matmuls_q8(const DenseMatrix* const* Ws, int count, const Q8Rows& X, int batch, float* const* Ys,
                      const Workers* w, const TileThen* then);
float dot(const float* a, const float* b, int n);
void axpy(float a, const float* x, float* y, int n);  // y += a x
void layer_norm(const float* x, const float* w, const float* b, float eps, int n, float* y);
void softmax_inplace(float* x, int n);
void gelu_inplace(float* x, int n);  // exact erf form, as torch.nn.functional.gelu default
void silu_inplace(float* x, int n);  // x * sigmoid(x)
void tanh_inplace(float* x, int n);  // short rows too (the Q circuit angles): vectors narrower than the widest
// Block-option kernels (docs/llama.md); contracts under ref:: below.
void rms_norm(const float* x, const float* w, float eps, int n, float* y);
void rope(float* x, int n_heads, int head_dim, const float* cs);
void silu_mul(float* g, const float* u, int n);
void attend(const float* q, const float* k, const float* v, size_t stride, int n, int hd, float scale, float* w,
            float* out);
}  // namespace kern

// y = row `row` of a [rows, cols] matrix as f32 (accumulate: y += it). For embedding lookups: one row
// per token, not a hot path, so no SIMD variants.
void weights_row(const Weights& w, int64_t cols, int64_t row, bool accumulate, float* y);

// Symmetric absmax int8 of n values: q = round(v / s), s = max |v| / 127 (1 when all are 0). Returns s.
// `qtf quantize` and a context's q8 copies of TT linears (execution by cost) share it.
float quantize_i8(const float* v, size_t n, int8_t* q);

// The TT matrix W at run-time rank `rank` (every bond truncated to min(rank, r[k]), as tt_matvec) as a
// dense [M, N] row-major matrix, bias left out: f32 into `f32`, or (f32 null) int8 rows with one scale
// per row (quantize_i8) into `i8` and `scales`. The cores are contracted left to right, each sum over a
// bond in double; `scratch`: tt_dense_scratch_floats(W.shape, rank) floats. Context creation only (a
// context's materialised linears), so no SIMD variants.
size_t tt_dense_scratch_floats(const TTShape& s, int rank);
void tt_to_dense(const TTMatrix& W, int rank, float* scratch, float* f32, int8_t* i8, float* scales);

namespace ref {  // scalar references, same contracts
size_t tt_workspace_floats(const TTShape& s, int batch);
void tt_matvec(const TTMatrix& W, int rank, const float* x, float* y, float* workspace);
void tt_matmul(const TTMatrix& W, int rank, const float* X, int batch, float* Y, float* workspace);
void dense_matvec(const DenseMatrix& W, const float* x, float* y);
void dense_matmul(const DenseMatrix& W, const float* X, int batch, float* Y);
float dot(const float* a, const float* b, int n);
void axpy(float a, const float* x, float* y, int n);
void layer_norm(const float* x, const float* w, const float* b, float eps, int n, float* y);
void softmax_inplace(float* x, int n);
void gelu_inplace(float* x, int n);
void silu_inplace(float* x, int n);
void tanh_inplace(float* x, int n);
// Block-option kernels (docs/llama.md, "Precision").
// y = w * (x / sqrt(mean(x^2) + eps))  (RMSNorm; y may alias x). The mean of squares and the scale are
// double and y is rounded once: in float32 (as llama2.c) they cost ~2e-5 of stories260K's logits.
void rms_norm(const float* x, const float* w, float eps, int n, float* y);
// Rotary positions, in place, on n_heads consecutive heads of head_dim (even) values: the pair
// (2i, 2i+1) of every head turns by the angle whose cosine and sine are cs[2i], cs[2i+1] (one position's
// row of rope_table), computed in double and rounded once.
void rope(float* x, int n_heads, int head_dim, const float* cs);
// g = silu(g) * u  (the SwiGLU gate)
void silu_mul(float* g, const float* u, int n);
// One head of dot-product attention over n cached positions: w[j] = q . k_j * scale (k_j = k + j *
// stride, hd floats), softmax over j, out = sum_j softmax_j v_j (v_j = v + j * stride). w is scratch of n
// floats (left holding exp(w_j - max)). The sums over positions run in blocks of kAttendBlock, each
// block's partial sum added to the total: a long context's rounding grows with n / kAttendBlock +
// kAttendBlock, not n; the division by the softmax sum comes last.
void attend(const float* q, const float* k, const float* v, size_t stride, int n, int hd, float scale, float* w,
            float* out);
// The integer dot products' references (kern:: above): per block sum += (float)isum * scale in block
// order, isum the exact int32 dot product of the block's values, scale d_x[b] (i8) or d_w[b] * d_x[b]
// (q4, the product in float); an i8 row's sum times its scale, then the bias.
void quantize_q8(const float* x, int n, int8_t* q, float* d);
void dense_matmul_q8(const DenseMatrix& W, const Q8Rows& X, int batch, float* Y, int64_t ldy);
// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols: a [rows][cols] matrix (rows lds floats
// apart) as [cols][rows] (columns ldd floats apart): tt::run_columns' blocks (lds = cols, ldd = rows),
// a prompt block packed for the GEMM (kern::pack_input, ldd = its lanes).
void transpose(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd);
}  // namespace ref

constexpr int kAttendBlock = 16;

// The rotary table of a context: for positions 0..n_pos-1 and pairs i < head_dim / 2, cs[pos][2i] and
// cs[pos][2i+1] are the cosine and sine of the angle pos * freq_i, freq_i = 1 / theta^(2i / head_dim).
// The frequency and the angle are float32 products as llama2.c (run.c and its PyTorch model.py) defines
// them; their cosine and sine are evaluated in double and rounded once (so the table does not depend on
// the platform's cosf/sinf). cs has n_pos * head_dim floats.
void rope_table(float theta, int head_dim, int n_pos, float* cs);

}  // namespace qtf
