// One token through the whole model (docs/model.md), with the per-token report, and the buffers it
// runs in (RunState, laid out by run_state.cpp, the one owner of that layout).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/tt_plan.h"
#include "model/model.h"

namespace qtf {

enum class RouteMode : uint8_t { automatic = 0, all_classical = 1, all_quantum = 2 };

// Run-time switches for studying the model. Defaults run the model as trained.
struct RunOptions {
  RouteMode route = RouteMode::automatic;
  int fixed_rank = 0;  // > 0: every token runs at this rank instead of the entropy schedule
  quantum::DaruanPath act_path = quantum::DaruanPath::fourier;
  float theta = 0, alpha = 0;  // router threshold and rank slope (the model's unless overridden)
  quantum::SplineGrid spline;
  // Sampled attention (docs/qllm.md): > 0: the softmax weights of every classical head are estimated
  // from this many draws (the model's attention_samples for attention = sampled, unless overridden).
  int attention_samples = 0;
  uint64_t attention_seed = 0;
  bool pack_tt = true;  // ContextOptions::pack_tt
  // ContextOptions::act_quant resolved: the file's i8/q4 dense weights run the integer dot products
  // (q8, or auto where the variant's integer GEMM is the faster); the int8 copies of execution by cost
  // too only when asked for (q8): auto leaves them on the float path, so a copy the engine made for
  // speed adds no rounding but its own, where a user who picked a quantised file gets llama.cpp's way.
  // act_quant_i8: i8 weights too (auto under avx512 leaves them on the float path, q4 not).
  bool act_quant = false;
  bool act_quant_i8 = true;
  bool act_quant_copies = false;
  int64_t mem_budget = -1;  // ContextOptions::mem_budget (-1: auto)
  uint8_t mem_copy = 0;     // ContextOptions::mem_copy (MemCopy)
};

// ---- Execution by cost (issue 27; exec_cost.cpp, docs/runtime.md "Execution by cost") ----------------------
// A TT linear whose rank is fixed for the context may run as a dense copy made at context creation,
// in the arena, when the cost model predicts that copy is faster and the memory budget allows it.
enum class LinearPath : uint8_t {
  dense = 0,   // a dense matrix of the file
  tt,          // its TT plan (tt_matmul)
  low_rank,    // its TT plan, the TT being a low-rank A B (two cores with factors of 1: budget.py)
  dense_f32,   // a materialised f32 copy (dense_matmul)
  dense_q8,    // a materialised int8 copy, a scale per row (dense_matmul, or dense_matmul_q8 with act_quant)
};
const char* linear_path_name(LinearPath p);
// Which copies the cost model may choose from (ContextOptions::mem_copy).
enum MemCopy : uint8_t { kCopyAny = 0, kCopyF32 = 1, kCopyQ8 = 2 };

// Cost model: predicted seconds of one matvec = max(flops / F, bytes / B) + a fixed cost per call, with
// F, B and the call cost per kernel family, measured by bench/exec_cost (constants in exec_cost.cpp).
struct PathCost {
  int64_t flops = 0, bytes = 0;
  double seconds = 0;
};

struct LinearExec {
  LinearPath path = LinearPath::dense;  // how it runs in this context
  LinearPath best = LinearPath::dense;  // the cost model's pick with no budget
  int rank = 0;                         // the rank it runs at when fixed for the context (else 0)
  PathCost stored, f32, q8;             // predictions of its stored form (TT) and of the two copies
  int64_t bytes = 0;                    // arena bytes of its materialised copy (0: none)
  DenseMatrix dense;                    // the copy (path dense_f32 / dense_q8; else rows == 0)
  bool materialised() const { return path == LinearPath::dense_f32 || path == LinearPath::dense_q8; }
};

struct ExecSummary {
  int64_t budget = 0;  // bytes the copies may take (ContextOptions::mem_budget resolved)
  int64_t bytes = 0;   // bytes they take
  int64_t wanted = 0;  // bytes the cost model's picks would take with no budget
  int forced = 0;      // linears the budget kept on a path predicted slower
  int fixed_rank = 0;  // context_rank: the rank of the copies; 0: no copies (rank per token, or --rank)
  double seconds = 0, best_seconds = 0;  // predicted per token over the TT linears: as chosen, with no budget
};

// The rank every token runs the TT linears at in this context, which dense copies may be made at, or
// 0: the entropy meter picks it per token (adaptive rank with r_min < r_max), or RunOptions::fixed_rank
// forces one (a study of the TT plans by rank: they run as they are). Clamped to the stored rank.
int context_rank(const ModelConfig& c, const RunOptions& opt);
// Whether dense weights of type t run the integer dot products where act_quant is on (i8: RunOptions::
// act_quant_i8).
inline bool int_dot_type(WType t, bool i8) { return kern::int_dot_supported(t) && (t != WType::i8 || i8); }
// Bytes of the auto budget: the original's dense q8 size of the TT linears, M N + 4 M each.
int64_t auto_mem_budget(const Model& m);
// Decides how each TT linear runs in a context with these options: paths[L * 7] (plan order: q k v o up
// down gate; dense and absent linears: dense) and, when given, exec[L * 7] (all but the copies' storage,
// which RunState::layout carves). Deterministic: sizing and carving the arena decide the same.
ExecSummary plan_execution(const Model& m, const RunOptions& opt, LinearPath* paths, LinearExec* exec);

struct LayerStats {
  float S = 0;       // entanglement entropy (bits)
  float h = 0;       // hardness S / (Q/2)
  uint8_t quantum = 0;  // router decision h > theta (quantum-kernel attention when the model has it)
  uint16_t rank = 0;    // TT rank used by this layer's linears
};

struct TokenStats {
  int32_t pos = 0, token = 0;
  int64_t flops = 0;       // all FLOPs of this token (the path actually taken)
  int64_t qsim_flops = 0;  // of which: simulating circuits (encoder, kernel states, DARUAN quantum path)
  int64_t circuits = 0;    // circuit executions a QPU would need (lower bound: one per expectation set)
  int n_layers = 0;
  int64_t samples = 0;   // sampled attention: draws this token made (S per sampled head and layer)
  float sample_var = 0;  // their mean estimated variance of a head's output (docs/qllm.md)
  LayerStats layer[kMaxLayers];
};

// Whether the key feature states |phi(k)> are computed and cached: the model has quantum attention and
// the route does not rule it out. Decides both the arena layout and the forward pass.
bool keeps_key_states(const ModelConfig& c, RouteMode route);

// The buffers of the forward pass, all carved once from the context's arena by layout(). Shapes use
// d = model width, H heads of hd = d / H, T = n_ctx, L layers, SF = quantum::state_floats(Q), and
// B = n_batch, the most tokens one forward() call runs together (row i: the block's i-th token).
struct RunState {
  // The block's activations, B rows each.
  float* x = nullptr;          // [B][d] residual stream
  float* a = nullptr;          // [B][d] layer-norm output (LN1, LN2, LNf)
  float* e = nullptr;          // [B][d] a plus the entropy meter's correction: the input of q, k, v
  float* q = nullptr;          // [B][d] query, H heads of hd
  float* att = nullptr;        // [B][d] attention output, H heads of hd (the input of o)
  float* tmp = nullptr;        // [B][d] output of o or down, before its residual add
  float* hb = nullptr;         // [B][d_ff] FFN hidden: up's output, activated in place
  float* hb2 = nullptr;        // [B][d_ff] swiglu only: gate's output, then silu(gate) * up
  float* gather_in = nullptr;   // [B][max(d, d_ff)] TT models: the rows of one rank, gathered (ranks differ)
  float* gather_out = nullptr;  // [B][max(d, d_ff)] and their outputs, before they are scattered back
  float* packed_x = nullptr;    // [kern::dense_scratch_floats(rows, max(d, d_ff), B)] a block's input (rows: of
                                // the widest GEMM job, q+k+v or up+gate)
                                // rows transposed for the dense GEMMs, once for all that read it (q, k, v;
                                // up, gate: forward.cpp input_for), then their partial sums (null: B < 16,
                                // or every row shorter than 256)
  float* scores = nullptr;     // [threads][T] attention weights of one head over positions 0..pos
  float* head_var = nullptr;   // [B][H] sampled attention: each head's estimated variance (else null)
  float* phase_gain = nullptr;  // [d] cos(phi) - sin(phi) of the phase rotation (null without it)
  float* lora_mid = nullptr;    // [B][max LoRA rank] A x of the adapters (null without LoRA)
  float* lora_out = nullptr;    // [B][max(d_ff, d)] B (A x), before it is added (null without LoRA)
  // act_quant: a block's input rows quantised per block of 32 for the integer dot products of i8/q4
  // dense linears and head (kern::dense_matmul_q8), once per input (q, k and v share it); else null.
  int8_t* act_q = nullptr;      // [B][q8_blocks(max(d, d_ff)) * 32]
  bool act_quant_copies = false;  // RunOptions::act_quant_copies
  bool act_quant_i8 = true;       // RunOptions::act_quant_i8
  float* act_d = nullptr;       // [B][q8_blocks(max(d, d_ff))]
  float* logits = nullptr;     // [vocab]
  float* workspace = nullptr;  // [max tt_workspace_floats(shape, B) over the block's linears] TT scratch
  TokenStats* stats = nullptr;  // [B] the per-token report of the last forward() call
  float* query_state = nullptr;  // [threads][SF] one head's query feature state (null unless keeps_key_states)
  // What the cache keeps of every position; use the accessors below.
  float* key_cache = nullptr;    // [L][T][kv_dim]
  float* value_cache = nullptr;  // [L][T][kv_dim]
  float* key_states = nullptr;   // [L][T][H][SF] |phi(k)> per head (null unless keeps_key_states)
  float* rope = nullptr;  // [T][hd] rotary positions: each position's (cos, sin) per pair (rope_table; else null)
  float* act_tables[kMaxLayers] = {};  // per layer: DARUAN fourier coefficients or spline table (else null)
  // Made once per context from the model alone (prepare()): the TT contraction plan of each linear at
  // each run-time rank with its cores packed, and the gates of the encoders and feature states.
  tt::Plan* tt_plans = nullptr;  // [L][7: q k v o up down gate][R = model.tt.rank] (null for dense models)
  float* tt_packed = nullptr;    // the plans' cores packed for the kernels (tt::pack_plan), plan after plan
  quantum::FeatureGates* feature_gates = nullptr;  // [L][H] (null unless keeps_key_states)
  quantum::WireGates* encoder_gates = nullptr;     // [L][n_qlayers][Q] (null without an encoder)
  // Execution by cost: how each TT linear runs, [L][7] as tt_plans (null for dense models and with
  // mem_budget 0, where every TT linear runs its plans).
  LinearExec* exec = nullptr;
  ExecSummary exec_summary;
  float* dense_scratch = nullptr;  // context creation: tt_to_dense's scratch (null: nothing materialised)
  int plan_ranks = 0;                              // R
  int pack_lo = 0, pack_hi = 0;                    // the ranks whose plans are packed (context_ranks)
  int n_ctx = 0;         // T
  int n_batch = 0;       // B
  int n_threads = 1;     // threads the scratch is laid out for
  const Workers* workers = nullptr;  // the threads to split work over (null: this one); owned by the host
  int kv_dim = 0;        // floats of keys (and of values) per position and layer: n_kv_heads * hd
  int n_heads = 0;       // H
  int n_kv_heads = 0;
  int state_floats = 0;  // SF (0 without quantum parts)

  float* key_row(int l, int t) const { return key_cache + ((size_t)l * n_ctx + t) * kv_dim; }
  float* value_row(int l, int t) const { return value_cache + ((size_t)l * n_ctx + t) * kv_dim; }
  float* key_state(int l, int t, int head) const {
    return key_states + (((size_t)l * n_ctx + t) * n_heads + head) * state_floats;
  }
  const float* rope_row(int t) const { return rope + (size_t)t * (kv_dim / n_kv_heads); }
  size_t key_state_stride() const { return (size_t)n_heads * state_floats; }  // from position t to t+1

  // The plan of linear j (0..6: q k v o up down gate) of layer l at run-time rank `rank`.
  const tt::Plan& tt_plan(int l, int j, int rank) const {
    const int r = rank < 1 ? 1 : rank > plan_ranks ? plan_ranks : rank;
    return tt_plans[((size_t)l * 7 + j) * plan_ranks + r - 1];
  }

  // Points every buffer into `base` (null: only sizes) and returns the bytes needed (64-byte aligned
  // buffers). The one place that knows the buffers' sizes.
  size_t layout(const Model& m, const RunOptions& opt, int n_ctx, int n_batch, int n_threads, void* base);
  // How linear j (plan order) of layer l runs in this context; null for dense models.
  const LinearExec* linear_exec(int l, int j) const { return exec ? &exec[(size_t)l * 7 + j] : nullptr; }
  // Fills tt_plans, the materialised copies, feature_gates and the rotary table (after layout with a base).
  void prepare(const Model& m);
};

// Runs the n tokens (1..n_batch) at positions pos..pos+n-1 (pos + n <= n_ctx) through the model
// together, appending their keys/values to the cache; computes the logits of the last one. stats[i] is
// token i's report (the head's FLOPs are counted on the last token only: only its logits are made).
// Logits and reports equal those of running the tokens one at a time (up to float rounding).
// Positions are cache slots: slots below the model's memory_tokens G are its memory (docs/qllm.md),
// whose input is the memory vector whatever the token (tokens may be null when all n are memory slots).
// logits = false skips the head (s->logits left as they were; no head FLOPs counted).
void forward(const Model& m, const RunOptions& opt, RunState* s, const int32_t* tokens, int n, int pos,
             TokenStats* stats, bool logits = true);
// One token: forward(m, opt, s, &token, 1, pos, stats).
void forward(const Model& m, const RunOptions& opt, RunState* s, int token, int pos, TokenStats* stats);

}  // namespace qtf
