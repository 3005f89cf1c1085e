// An inference context over a loaded model: every buffer (KV cache, cached key feature states,
// activation tables, scratch) is carved from one arena sized at creation. Decoding never allocates.
// Several contexts may share one read-only Model (one per thread).
#pragma once
#include <cstddef>
#include <cstdint>

#include "model/forward.h"

namespace qtf {

// Prompt tokens per block. A block reads every dense weight once (d=768: 327 MB, ~23 ms from DRAM on one
// core, as long as 32 tokens' FLOPs at the AVX-512 peak), so 64 halves that traffic per token; the arena
// grows by ~(6 d + 3 d_ff + 2 max(d, d_ff)) floats per token of the block (d=768: 5 MiB at 64).
constexpr int kDefaultBatch = 64;
constexpr int kMaxBatch = 1024;
constexpr int kMaxThreads = 256;

// ContextOptions::act_quant.
enum class ActQuant : uint8_t { off, q8, automatic };

struct ContextOptions {
  int n_ctx = 0;  // tokens of context; 0 = the model's full context
  int n_batch = 0;  // most prompt tokens run through the model together (1..kMaxBatch); 0 = kDefaultBatch
  int n_threads = 1;  // threads the host will lend (set_workers); the arena holds their scratch (1..kMaxThreads)
  RouteMode route = RouteMode::automatic;
  int fixed_rank = 0;                 // > 0: fixed TT rank for every token
  quantum::DaruanPath act_path = quantum::DaruanPath::fourier;
  bool override_theta = false, override_alpha = false;
  float theta = 0, alpha = 0;
  quantum::SplineGrid spline;
  // Sampled attention (docs/qllm.md): -1 = the model's (S for attention = sampled, else exact);
  // 0 = exact softmax; N > 0 = estimate every classical head's weights from N draws.
  int attention_samples = -1;
  bool override_seed = false;
  uint64_t attention_seed = 0;
  // Copy every TT plan's cores once into the order the SIMD kernels read (faster decode; costs about
  // the TT cores' size per stored rank in the arena). false: the kernels read the cores in place, for
  // RAM-tight targets such as the Cortex-M firmware. Same numbers either way (tested).
  bool pack_tt = true;
  // Integer dot products for i8 and q4 dense weights (docs/quantize.md "Integer dot products"): each
  // input of those linears and of the head quantised per block of 32 (int8, a float scale per block)
  // once, then int8 x int8 dot products (q8). off: the weights widened to float against float inputs.
  // automatic: q8 for the weight types where the active kernel variant's integer GEMM is the faster
  // (kern::int_dot_preferred, measured: i8 and q4 under avx512vnni, avxvnni and avx2, q4 under avx512),
  // else off.
  ActQuant act_quant = ActQuant::automatic;
  // Execution by cost (docs/runtime.md "Execution by cost"): bytes of the arena the dense copies of TT
  // linears may take, where the cost model predicts a copy is faster (only linears whose rank is fixed
  // for the context). -1 = auto: the original's dense q8 size of those linears (M N + 4 M each);
  // 0 = never copy (every TT linear runs its plan).
  int64_t mem_budget = -1;
  // The copies it may make: kCopyAny (f32 or int8, whichever is predicted faster within the budget),
  // kCopyF32 (exact up to float rounding) or kCopyQ8 (int8 with a scale per row).
  uint8_t mem_copy = kCopyAny;
};

class Context {
 public:
  // Arena bytes a context with these options needs (0 with an error if the options are invalid).
  static size_t arena_bytes(const Model& m, const ContextOptions& opt);
  // arena: at least arena_bytes() bytes, 64-byte aligned, owned by the caller, outliving the context.
  // init zeroes it first, unless the caller says it is all zero already (fresh pages from calloc or
  // mmap): then pages the run never reaches, most of a long context's KV cache, are never touched.
  Status init(const Model* m, const ContextOptions& opt, void* arena, size_t arena_len, bool arena_is_zero = false);

  // Appends `token` at the next position and computes its logits. Err::context_full when full.
  Status eval(int token);
  // Appends n tokens (1..n_batch()) and runs them through the model as one block (prompt processing);
  // logits() are the last token's, stats(i) token i's report. Checks every id before running any.
  // logits = false: a block whose logits nobody reads (a long prompt's blocks but its last) skips the
  // head, a vocab x d matrix read for one row; logits() are then not valid until the next eval with them.
  Status eval(const int32_t* tokens, int n, bool logits = true);
  // Back to an empty sequence: the model's memory slots (a fixed prefix of the cache) stay.
  void reset() { n_past_ = n_prefix_; }
  // The threads to split the work of eval over (the host layer owns them; null: the calling thread
  // only). At most the n_threads of the options. Not while an eval runs.
  Status set_workers(const Workers* w);

  const float* logits() const { return state_.logits; }
  const TokenStats& stats() const { return state_.stats[n_last_ - 1]; }  // the last token's
  const TokenStats& stats(int i) const { return state_.stats[i]; }     // i < the last eval's n
  int n_batch() const { return state_.n_batch; }
  int n_past() const { return n_past_; }      // cache slots in use, the memory prefix included
  int n_prefix() const { return n_prefix_; }  // the model's memory slots (docs/qllm.md), always cached
  int n_ctx() const { return state_.n_ctx; }
  const Model& model() const { return *model_; }
  const RunOptions& run_options() const { return run_; }
  // How each linear runs (execution by cost): linear j (0..6: q k v o up down gate) of layer l; null
  // for a dense model or with mem_budget 0. And the summary: budget, bytes used, linears the budget
  // kept on a slower path.
  const LinearExec* linear_exec(int l, int j) const { return state_.linear_exec(l, j); }
  const ExecSummary& exec_summary() const { return state_.exec_summary; }
  // Measured max |spline - quantum| of the DARUAN tables (spline path only; else 0).
  float spline_max_error() const { return spline_error_; }

 private:
  const Model* model_ = nullptr;
  RunOptions run_;
  RunState state_;
  int n_past_ = 0;
  int n_prefix_ = 0;
  int n_last_ = 1;  // tokens of the last eval
  float spline_error_ = 0;
};

Status validate_options(const Model& m, const ContextOptions& opt);

}  // namespace qtf
