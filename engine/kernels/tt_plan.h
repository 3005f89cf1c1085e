// How a TT matvec is carried out: a plan of K contraction steps, one per core, in the cheaper of the
// two orders (right-to-left or left-to-right). Shared by the SIMD and scalar executors and by the FLOP
// count, so what is counted is what runs.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"

namespace qtf {
namespace tt {

// One step is P independent small matrix products
//   C_p[rows, Q] = A[rows, red] * B_p[red, Q],   B_p = in + p*red*Q,   C_p = out + p*rows*Q,
// where A is a strided view of one stored core: a row is (outer, inner), a reduction index is
// (outer, inner), and A[(ro, ri), (so, si)] = core[ro*row_stride[0] + ri*row_stride[1] +
// so*red_stride[0] + si*red_stride[1]]. A truncated bond is just a smaller count than its stored stride
// implies, so no core is ever repacked.
struct Step {
  Weights core;  // f32, f16 or i8 with one scale (TTMatrix)
  int row_count[2] = {0, 0};
  ptrdiff_t row_stride[2] = {0, 0};
  int red_count[2] = {0, 0};
  ptrdiff_t red_stride[2] = {0, 0};
  int64_t P = 0, Q = 0;
  // A copied once (pack_plan, e.g. per context next to the plans) into the order the SIMD kernels read
  // it, or null: then they read the core through the strides above. See pack_plan for the layouts.
  const float* packed = nullptr;
  // A in the panel layout (== packed where Q > 1): what the step reads when it runs a block of vectors
  // as columns (columns_plan: Q times the batch, so Q > 1 even where the one-vector Q is 1).
  const float* panels = nullptr;
  int rows() const { return row_count[0] * row_count[1]; }
  int red() const { return red_count[0] * red_count[1]; }
  int64_t flops() const { return 2 * P * Q * rows() * red(); }
};

enum class Order { right_to_left, left_to_right };

struct Plan {
  int K = 0;
  Order order = Order::left_to_right;
  Step steps[kMaxTTFactors];
  int64_t flops = 0;
  // The divided step packed per part for `parts` threads (pack_parts), or null: see part_plan.
  int parts = 0;
  const float* part_packed = nullptr;
};

Plan make_plan(const TTMatrix& W, int rank, int batch, Order order);
// The order with fewer FLOPs at this rank (ties go left-to-right).
Plan best_plan(const TTMatrix& W, int rank, int batch);

// Packing: A of every step copied into the order its SIMD kernel walks with one pointer, so no
// per-element stride arithmetic or broadcast address is left in the inner loops (the TT cores' factors
// are 4 to 16, so those loops are short and their overhead would weigh as much as the FMAs).
//  - Q == 1 (the reduction is the whole block): A transposed, [red][rows]. The kernel runs vectors along
//    the rows and broadcasts the P blocks' inputs: a small GEMM with no horizontal sums.
//  - Q > 1: the rows in panels of kPanelRows (the last one zero-padded), each [red][kPanelRows]. The
//    kernel broadcasts A (consecutive floats) and runs vectors along Q.
// A Q == 1 step gets both copies (`packed` and `panels`): the panels serve its block-as-columns form.
// The layout does not depend on the SIMD variant, so one packed plan serves whichever runs.
constexpr int kPanelRows = 8;
size_t packed_floats(const Step& s);     // both copies, each rounded up to 16 floats (64 bytes)
size_t packed_floats(const Plan& plan);  // every step
// Fills `dst` (packed_floats(*plan) floats, 64-byte aligned) and points the steps' `packed` and
// `panels` at it. f16 and i8 cores are widened to f32 in the copy, so every type runs the f32 kernels.
void pack_plan(Plan* plan, float* dst);

// Floats of one intermediate (per vector) at stored ranks, the largest over both orders.
int64_t max_intermediate(const TTShape& s);
// run_plan's two intermediates, and for batch > 1 also run_columns' transposed inputs and outputs.
size_t workspace_floats(const TTShape& s, int batch);

// Runs the steps, ping-ponging intermediates through the workspace; the last step writes Y, then the
// bias is added. `step` computes one Step for all P blocks.
using StepFn = void (*)(const Step& s, const float* in, float* out);
// The steps alone: `in` to `out`, the intermediates in two areas of `buffer` floats at `workspace`.
void run_steps(const Plan& plan, const float* in, float* out, float* workspace, int64_t buffer, StepFn step);
void run_plan(const Plan& plan, const TTMatrix& W, int batch, const float* X, float* Y, float* workspace,
              StepFn step);

// A block of vectors as columns. One vector's steps are small GEMMs (Q of 1 to ~100 columns, factors of
// 4 to 16), dominated by loop overhead; a block of B vectors with its vector index innermost in every
// intermediate ([.., B]) runs the same steps with Q times B columns: each step one long GEMM per block,
// with the same sums in the same order as the vector's own. columns_plan makes those steps from a
// one-vector plan (its `panels` become `packed`); run_columns transposes X [B][N] to [N][B], runs them,
// and transposes [M][B] back into Y (+ bias). Needs K >= 2 (the transposes share one workspace area).
Plan columns_plan(const Plan& one, int batch);
using TransposeFn = void (*)(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst,
                            int64_t ldd);  // ref::transpose
void run_columns(const Plan& one, const TTMatrix& W, int batch, const float* X, float* Y, float* workspace,
                 StepFn step, TransposeFn transpose);
// Whether a block of `batch` vectors runs as columns (else one vector at a time): K >= 2, every step
// packed (f32 cores of a context's plans), enough vectors to fill the SIMD columns (kColumnsMinBatch),
// and enough FLOPs per float transposed (kColumnsMinFlops per element of x and y: at low rank the
// transposes and the short reductions cost more than the wider tiles gain). run_columns takes larger
// blocks in chunks of at most kColumnsMaxBatch vectors. All measured in bench/README.md "TT prompt
// blocks".
constexpr int kColumnsMinBatch = 8;
constexpr int kColumnsMaxBatch = 16;
constexpr int kColumnsMinFlops = 256;
bool columns_pay(const TTMatrix& W, const Plan& one, int batch);

// ---- One vector over threads: parts with no barrier between their steps
// Part p of `parts` runs every step alone for a range of one index: the outermost block index of every
// step but one. Left-to-right that is i_1, an output index (the first step's outer row index, then the
// blocks' outer index): the parts write disjoint rows of y. Right-to-left it is j_1, an input index (the
// blocks' outer index, then the last step's outer reduction index): each part sums over its range of
// j_1 into a whole y, and the parts' sums are added. A part needs no other part's values, its
// intermediates are compact in its own workspace, and the columns the SIMD tiles run along (the inner
// indices) are not divided.
struct PartSplit {
  bool sums = false;  // the parts' outputs are partial sums of y (right-to-left), else rows of it
  int step = 0;       // the step whose rows (left-to-right: 0) or reduction (right-to-left: K-1) is divided
  int count = 0;      // the index's length: at most this many parts (0: the plan has fewer than 2 steps)
};
PartSplit part_split(const Plan& one);
// Part `part` of `parts` (<= part_split(one).count) of a one-vector plan: its steps (the divided step's
// from one.part_packed where pack_parts packed them for `parts`, else read in place), the range
// [lo, lo + n) of the divided index, and where its input starts in x (floats). Its output: rows
// [lo, lo + n) * M / count of y, or (sums) a whole y. False when the part is empty.
bool part_plan(const Plan& one, int part, int parts, Plan* sub, int* lo, int* n, int64_t* x_offset);
size_t part_packed_floats(const Plan& one, int parts);  // the divided step of every part, packed
void pack_parts(Plan* one, int parts, float* dst);      // fills them; sets one->parts, one->part_packed
// Floats of one part's workspace: its two intermediates and its output.
size_t part_workspace_floats(const TTShape& s);
// Workspace of tt_matmul over `threads` threads with up to `batch` vectors (a range of vectors per
// thread, or one vector at a time in parts).
size_t workspace_floats(const TTShape& s, int batch, int threads);

// One matrix of a kern::tt_matvec_parts job: y = W x + b by a one-vector plan; then, if given,
// epilogue(arg, row0, rows) on rows of the finished y, every row once: a part's own rows on its thread
// as it ends, or (parts that sum) all of y once they are added.
struct PartsJob {
  const TTMatrix* W;
  const Plan* plan;
  float* y;
  void (*epilogue)(void* arg, int64_t row0, int64_t rows) = nullptr;
  void* arg = nullptr;
};
constexpr int kMaxPartsJobs = 3;

// Columns [q_begin, Q) of one step, plain loops: the whole step where there is no SIMD, and the
// columns the SIMD tiles leave over.
void step_scalar(const Step& s, const float* in, float* out, int64_t q_begin);

}  // namespace tt

namespace kern {
// y = W x + b by a plan made beforehand (best_plan(W, rank, 1), e.g. once per context and rank): the
// same result as tt_matvec(W, rank, x, y, workspace), with the SIMD variant in use.
void tt_matvec(const TTMatrix& W, const tt::Plan& plan, const float* x, float* y, float* workspace);
// Y[b] = W X[b] + b for `batch` vectors by a one-vector plan (its blocks repeat per vector; the
// cheaper order does not depend on the batch): as tt_matmul(W, rank, X, batch, Y, workspace).
void tt_matmul(const TTMatrix& W, const tt::Plan& plan, const float* X, int batch, float* Y, float* workspace);
// The same over `w`'s threads (null: the serial form): a batch of at least one vector per thread as a
// range of vectors per thread; else one vector at a time in parts (part_plan above). `workspace`:
// tt::workspace_floats(W.shape, batch, w->threads) floats.
void tt_matmul(const TTMatrix& W, const tt::Plan& plan, const float* X, int batch, float* Y, float* workspace,
               const Workers* w);
// One vector in parts over `w`'s threads (null: one part), whatever its FLOPs: tt_matmul's form for
// fewer vectors than threads (there from kParallelFlops on). `workspace`:
// tt::workspace_floats(W.shape, 1, w->threads) floats.
void tt_matvec_parts(const TTMatrix& W, const tt::Plan& one, const float* x, float* y, float* workspace,
                     const Workers* w);
// What a tt_matvec_parts job runs after its parts, in the same job (one wake-up of the threads for a
// matvec and the work that reads its whole output): finish(finish_arg) once, on the thread that ends
// the last part (after the parts' sums and epilogues); then task(task_arg, i, thread) for i < tasks.
// Workers::run starts tasks in order, so these start only once every part is held by a running
// thread; each waits in the job for finish, never for a task after it.
struct PartsThen {
  int tasks = 0;
  void (*finish)(void* arg) = nullptr;
  void* finish_arg = nullptr;
  void (*task)(void* arg, int i, int thread) = nullptr;
  void* task_arg = nullptr;
};
// Several matrices of the same x (a block's q, k and v) as one job over the threads: all their parts
// at once, then `then` if given. `workspace`: the sum of tt::workspace_floats(shape, 1, w->threads)
// over the jobs.
void tt_matvec_parts(const tt::PartsJob* jobs, int count, const float* x, float* workspace, const Workers* w,
                     const PartsThen* then = nullptr);
}  // namespace kern
}  // namespace qtf
