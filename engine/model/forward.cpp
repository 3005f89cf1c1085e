// The forward pass, one token at a time. It reads like the reference (tools/train/model.py:
// QTensorFormer.forward and Block.forward) and the contract (docs/model.md, whose step numbers the
// comments use): embed, then block(l) for every layer, then head. Speed lives in the kernels
// (kernels/, quantum/); what a token costs is counted in one place per layer, block_cost().
#include "model/forward.h"

#include <cmath>
#include <cstring>

namespace qtf {
namespace {

// The path one token takes through one layer: decided by the entropy meter (steps 4-5).
struct Path {
  int rank = 0;                    // TT rank of the layer's linears
  bool keep_states = false;        // compute and cache |phi(k)> of this token's key (keeps_key_states)
  bool quantum_attention = false;  // routed quantum and the model has quantum attention to route to
};

// ---- Cost: FLOPs of the path taken (a real multiply-add = 2, a complex one 8) ----------------------

// Prices of the elementwise work; the big terms come from the kernels' and circuits' own counters.
constexpr int64_t kLayerNormFlops = 8;  // per element: mean, variance, normalise, scale+shift
constexpr int64_t kRmsNormFlops = 4;    // per element: square-sum, normalise, scale
constexpr int64_t kRopeFlops = 6;       // per rotated pair (its angle's sin/cos are shared by the heads)
constexpr int64_t kSiluMulFlops = 12;   // per element: exp, divide, two multiplies
constexpr int64_t kGeluFlops = 10;      // per element, erf by its polynomial
constexpr int64_t kTanhFlops = 10;
constexpr int64_t kSoftmaxFlops = 4;    // per score: max, exp, sum, divide

struct Cost {
  int64_t flops = 0, qsim = 0, circuits = 0;
  void classical(int64_t f) { flops += f; }
  void simulated(int64_t f, int64_t n_circuits) {  // circuit simulation: also counted in qsim
    flops += f;
    qsim += f;
    circuits += n_circuits;
  }
  Cost& operator+=(const Cost& o) {
    flops += o.flops;
    qsim += o.qsim;
    circuits += o.circuits;
    return *this;
  }
};

// The dense matrix linear j (0..6: q k v o up down gate) of layer l runs as: the file's, or the
// context's copy of its TT (execution by cost, exec_cost.cpp); null: it runs its TT plan.
const DenseMatrix* dense_form(const RunState* s, const Linear& lin, int l, int j) {
  if (!lin.tt) return &lin.dense;
  const LinearExec* e = s->linear_exec(l, j);
  return e && e->materialised() ? &e->dense : nullptr;
}

// Linear j of layer l at the path's rank: its plan's FLOPs when it runs as TT; the bias add of a dense
// matrix counts when it has one.
int64_t linear_flops(const RunState& s, const Linear& lin, int l, int j, int rank) {
  const int64_t lora = lin.lora_a ? 2ll * lin.lora_rank * (lin.rows + lin.cols) + lin.rows : 0;  // B (A x), added
  const DenseMatrix* dense = dense_form(&s, lin, l, j);
  return lora + (dense ? 2ll * lin.rows * lin.cols + (dense->bias ? lin.rows : 0) : s.tt_plan(l, j, rank).flops);
}

int64_t ceil_log2(int64_t n) {
  int64_t k = 0;
  while ((1ll << k) < n) ++k;
  return k;
}

int64_t angles_flops(int Q, int n) { return 2ll * Q * n + kTanhFlops * Q; }  // tanh(W x (+ b)), W [Q, n]

int64_t norm_flops(const ModelConfig& c) { return (c.norm == NormKind::rmsnorm ? kRmsNormFlops : kLayerNormFlops) * c.d; }

// The per-token steps of block(), each what one token costs in it (the linears are linear_flops): the
// report adds them up (block_cost), and block() runs a step on one thread when all its tokens together
// cost less than kParallelFlops.

// 1-5. LN1 and the entropy meter: angles, circuit, e = a + W_qout z + b.
Cost meter_cost(const ModelConfig& c) {
  const int64_t d = c.d, Q = c.n_qubits;
  Cost cost;
  cost.classical(norm_flops(c));
  if (c.has_encoder()) {
    cost.classical(angles_flops(Q, d) + 2 * d * Q + 2 * d);
    cost.simulated(quantum::encoder_flops(Q, c.n_qlayers), 1);
  }
  return cost;
}

int64_t rope_flops(const ModelConfig& c) {  // q and k turned
  return c.positions == PosKind::rotary ? kRopeFlops * (c.d + c.kv_dim()) / 2 : 0;
}

// This token's key feature states, per head (when the path keeps them).
Cost key_states_cost(const ModelConfig& c) {
  Cost cost;
  cost.classical(c.n_heads * angles_flops(c.n_qubits, c.head_dim()));
  cost.simulated(c.n_heads * quantum::feature_state_flops(c.n_qubits), 0);
  return cost;
}

// 6. Attention of the token at position pos over the positions up to its own, every head.
Cost attention_cost(const ModelConfig& c, const RunOptions& opt, const Path& p, int pos) {
  const int64_t H = c.n_heads, hd = c.head_dim(), Q = c.n_qubits, n = pos + 1;
  Cost cost;
  if (p.quantum_attention) {  // per head: the query's state, n fidelities (one circuit each), beta
    cost.classical(H * (angles_flops(Q, hd) + n));
    cost.simulated(H * (quantum::feature_state_flops(Q) + n * quantum::fidelity_flops(Q)), H * n);
  } else {  // per head: n scaled dot products
    cost.classical(H * (2 * hd + 1) * n);
  }
  const int64_t S = opt.attention_samples;
  if (S > 0 && !p.quantum_attention)  // softmax, prefix sums, S searches, the mix of S values and its variance
    cost.classical(H * ((kSoftmaxFlops + 1) * n + 2 * ceil_log2(n) * S + 2 * hd * S + 3 * hd));
  else
    cost.classical(H * (kSoftmaxFlops + 2 * hd) * n);  // softmax, weighted sum of the values
  return cost;
}

// 7. The activation of one token's FFN hidden row.
Cost activation_cost(const Model& m, const RunOptions& opt, int l) {
  const ModelConfig& c = m.cfg;
  Cost cost;
  if (c.activation == Activation::swiglu) {
    cost.classical(kSiluMulFlops * c.d_ff);
  } else if (c.activation == Activation::gelu) {
    cost.classical(kGeluFlops * c.d_ff);
  } else {
    const int64_t f = quantum::daruan_flops_per_channel(opt.act_path, m.layers[l].daruan.depth) * c.d_ff;
    if (opt.act_path == quantum::DaruanPath::quantum) cost.simulated(f, c.d_ff);  // a circuit per channel
    else cost.classical(f);
  }
  return cost;
}

// What one token costs in layer l at position pos, step by step as block() runs it, from the same
// shapes the kernels get.
Cost block_cost(const Model& m, const RunOptions& opt, const RunState& s, int l, const Path& p, int pos) {
  const ModelConfig& c = m.cfg;
  const Layer& L = m.layers[l];
  const int64_t d = c.d, r = p.rank;
  Cost cost = meter_cost(c);  // 1-5.
  cost.classical(linear_flops(s, L.q, l, 0, r) + linear_flops(s, L.k, l, 1, r) + linear_flops(s, L.v, l, 2, r));  // 6.
  cost.classical(rope_flops(c));
  if (p.keep_states) cost += key_states_cost(c);
  cost += attention_cost(c, opt, p, pos);
  cost.classical(linear_flops(s, L.o, l, 3, r) + d);  // o, residual
  cost.classical(norm_flops(c) + linear_flops(s, L.up, l, 4, r) + linear_flops(s, L.down, l, 5, r) + d);  // 7.
  if (c.activation == Activation::swiglu) cost.classical(linear_flops(s, L.gate, l, 6, r));
  cost += activation_cost(m, opt, l);
  return cost;
}

// The embedding of one token as block() prices its steps (kParallelFlops): its row of a table too big to
// stay in the caches, priced as 8 FLOPs a value (about what a cold read of it costs), so a prompt
// block's lookups run on the threads and one token's on its own.
int64_t embed_flops(const ModelConfig& c) { return 8ll * c.d; }

int64_t head_flops(const ModelConfig& c) { return norm_flops(c) + 2ll * c.vocab * c.d; }

// ---- The model ----------------------------------------------------------------------------------
// A block of n tokens (1 while generating, up to RunState::n_batch for a prompt) goes through every
// layer together: row i of each activation buffer is the token at position pos + i. The linears run
// over all rows at once (one pass over the weights); everything per token (the entropy meter, its
// rank and route, attention over the positions before it) runs row by row.

// Whether a linear running as `dense` (dense_form) runs the integer dot products (a context with
// act_quant, i8 or q4 dense weights).
bool int_dot(const RunState* s, const Linear& lin, const DenseMatrix* dense) {
  return s->act_q && dense && int_dot_type(dense->w.type, s->act_quant_i8) && (dense == &lin.dense || s->act_quant_copies);
}

// A block's input as every linear that reads it takes it (q, k and v read one; up and gate another):
// X's rows, quantised once (q8) for those of them that run the integer dot products and packed once
// (packed) for the dense ones that run the float GEMM. Both live in the context's scratch (act_q/act_d,
// packed_x): the next input made replaces them.
struct Input {
  const float* X = nullptr;
  Q8Rows q8;                 // q8.q null: none of its linears runs the integer dot products
  kern::PackedInput packed;  // dot form (packed.xt null) where none runs the float GEMM
};

// The input X (n rows of `cols` floats) of the `count` linears of layer l (plan indices `which`), its
// rows made first by `rows` (if given) in the job that packs or quantises them.
Input input_for(RunState* s, const Linear* const* lins, const int* which, int count, int l, int n, const float* X,
                int cols, const kern::RowMaker* rows) {
  bool quantise = false, pack = false;
  for (int j = 0; j < count; ++j) {
    const DenseMatrix* dense = dense_form(s, *lins[j], l, which[j]);
    const bool q = int_dot(s, *lins[j], dense);
    quantise = quantise || q;
    pack = pack || (dense && !q);
  }
  Input in;
  in.X = X;
  const kern::RowMaker* pack_rows = quantise && !pack ? nullptr : rows;  // else quantize_q8_rows makes them
  in.packed = kern::pack_input(X, n, cols, pack ? s->packed_x : nullptr, s->workers, pack_rows);
  if (quantise) {
    kern::quantize_q8_rows(X, n, cols, s->act_q, s->act_d, s->workers, pack ? nullptr : rows);
    in.q8 = Q8Rows{s->act_q, s->act_d, q8_blocks(cols)};
  }
  return in;
}

// Y[i] = W X[i] for the n rows, each at its token's rank in layer l. Rows of one rank run as one
// matmul; when the ranks differ, the rows of each rank are gathered (in order) and scattered back.
// Linear `which` (0..6: q k v o up down gate) of layer l: TT linears run the context's plan for the rank.
void base_linear(const Linear& lin, int which, const TokenStats* ts, int l, int n, const Input& in, float* Y,
                 RunState* s) {
  const DenseMatrix* dense = dense_form(s, lin, l, which);
  if (int_dot(s, lin, dense)) return kern::dense_matmul_q8(*dense, in.q8, n, Y, s->workers);
  if (dense) return kern::dense_matmul(*dense, in.packed, Y, s->workers);
  const float* X = in.X;
  auto rank = [&](int i) { return (int)ts[i].layer[l].rank; };
  int i0 = 0;
  while (i0 < n && rank(i0) == rank(0)) ++i0;
  if (i0 == n) return kern::tt_matmul(lin.tt_w, s->tt_plan(l, which, rank(0)), X, n, Y, s->workspace, s->workers);
  const size_t in_cols = lin.cols, out = lin.rows;
  for (int i = 0; i < n; ++i) {
    bool seen = false;
    for (int j = 0; j < i; ++j) seen = seen || rank(j) == rank(i);
    if (seen) continue;
    int g = 0;
    for (int j = i; j < n; ++j)
      if (rank(j) == rank(i)) std::memcpy(s->gather_in + g++ * in_cols, X + j * in_cols, in_cols * sizeof(float));
    kern::tt_matmul(lin.tt_w, s->tt_plan(l, which, rank(i)), s->gather_in, g, s->gather_out, s->workspace, s->workers);
    g = 0;
    for (int j = i; j < n; ++j)
      if (rank(j) == rank(i)) std::memcpy(Y + j * out, s->gather_out + g++ * out, out * sizeof(float));
  }
}

// Y[i] += (alpha/r) B (A X[i]): the linear's LoRA adapter, if any (docs/qllm.md).
void lora(const Linear& lin, int n, const float* X, float* Y, RunState* s) {
  if (lin.lora_a == nullptr) return;
  kern::dense_matmul(DenseMatrix{lin.lora_rank, lin.cols, lin.lora_a, nullptr}, X, n, s->lora_mid);
  kern::dense_matmul(DenseMatrix{lin.rows, lin.lora_rank, lin.lora_b, nullptr}, s->lora_mid, n, s->lora_out);
  kern::axpy(lin.lora_scale, s->lora_out, Y, n * lin.rows);
}

// The linear and its LoRA adapter: Y[i] = W X[i] + b + (alpha/r) B (A X[i]), X made for it by input_for.
void linear(const Linear& lin, int which, const TokenStats* ts, int l, int n, const Input& X, float* Y, RunState* s) {
  base_linear(lin, which, ts, l, n, X, Y, s);
  lora(lin, n, X.X, Y, s);
}

// The linears of one input as one GEMM job over the threads (kern::dense_matmuls: one hand-off and one
// wait instead of `count`, the same numbers), `tiles` run on each output tile as it is made: where all
// are dense matrices without adapters, all integer or all float. False: nothing done.
bool gemms(const Linear* const* lins, const int* which, int count, int l, int n, const Input& in, float* const* ys,
           RunState* s, const kern::TileThen* tiles) {
  const DenseMatrix* Ms[kern::kMaxGemms];
  bool q = false;
  for (int j = 0; j < count; ++j) {
    Ms[j] = dense_form(s, *lins[j], l, which[j]);
    if (Ms[j] == nullptr || lins[j]->lora_a) return false;
    const bool qj = int_dot(s, *lins[j], Ms[j]);
    if (j > 0 && qj != q) return false;
    q = qj;
  }
  if (q) kern::dense_matmuls_q8(Ms, count, in.q8, n, ys, s->workers, tiles);
  else kern::dense_matmuls(Ms, count, in.packed, ys, s->workers, tiles);
  return true;
}

// What linears() ran besides the linears: the caller runs what it did not.
enum class Ran { linears, tiles, parts_then };

// Ys[j] = linear `which[j]` of layer l (X), for `count` (<= 3) linears of one input: q, k and v; up
// and gate; o or down alone. Dense: one GEMM job for them all (gemms), with `tiles` on its output tiles
// (Ran::tiles). One token on threads through TT plans (no dense copies) runs the matvecs' parts as one
// job (kern::tt_matvec_parts: one wake-up of the threads instead of `count`, the same numbers), and
// `then` (if given) in that job after them (Ran::parts_then). Else one by one from one input_for (X
// quantised and packed once for them all): Ran::linears. `rows` (if given) makes X's rows first: in the
// job that packs or quantises them where the linears are dense, else (a TT linear reads the ranks the
// rows' entropy meter decides) as a job of its own.
Ran linears(const Linear* const* lins, const int* which, int count, const TokenStats* ts, int l, int n,
            const float* X, float* const* ys, RunState* s, const kern::PartsThen* then = nullptr,
            const kern::TileThen* tiles = nullptr, const kern::RowMaker* rows = nullptr) {
  bool dense = true;
  for (int j = 0; j < count; ++j) dense = dense && dense_form(s, *lins[j], l, which[j]) != nullptr;
  if (!dense) {  // made here, as a job of their own
    kern::make_rows(rows, n, s->workers);
    rows = nullptr;
  }
  bool together = count > 1 && n == 1 && s->workers && s->workers->threads > 1;  // one alone: tt_matmul's own split
  int64_t flops = 0;
  for (int j = 0; together && j < count; ++j) {
    together = dense_form(s, *lins[j], l, which[j]) == nullptr;
    if (together) flops += s->tt_plan(l, which[j], ts[0].layer[l].rank).flops;
  }
  if (!together || flops < kParallelFlops) {
    const Input in = input_for(s, lins, which, count, l, n, X, lins[0]->cols, rows);
    if (gemms(lins, which, count, l, n, in, ys, s, tiles)) return tiles ? Ran::tiles : Ran::linears;
    for (int j = 0; j < count; ++j) linear(*lins[j], which[j], ts, l, n, in, ys[j], s);
    return Ran::linears;
  }
  tt::PartsJob jobs[3];
  for (int j = 0; j < count; ++j) jobs[j] = {&lins[j]->tt_w, &s->tt_plan(l, which[j], ts[0].layer[l].rank), ys[j]};
  auto finish = [&] {  // the adapters, then the caller's finish, on the thread that ends the last part
    for (int j = 0; j < count; ++j) lora(*lins[j], n, X, ys[j], s);
    if (then && then->finish) then->finish(then->finish_arg);
  };
  kern::PartsThen after = then ? *then : kern::PartsThen{};
  after.finish = [](void* f) { (*static_cast<decltype(finish)*>(f))(); };
  after.finish_arg = &finish;
  kern::tt_matvec_parts(jobs, count, X, s->workspace, s->workers, &after);
  return then ? Ran::parts_then : Ran::linears;
}

// x += linear(X), the residual stream's n rows (o, down): each output tile added as the GEMM makes it
// where the linear runs as one dense GEMM (no pass of its own, and none on one thread), else after it.
void add_linear(const Linear& lin, int which, const TokenStats* ts, int l, int n, const float* X, RunState* s) {
  const size_t d = lin.rows;
  auto add = [&](int, int r0, int r1, int b0, int b1) {
    for (int i = b0; i < b1; ++i) kern::axpy(1.f, s->tmp + i * d + r0, s->x + i * d + r0, r1 - r0);
  };
  const Linear* lins[1] = {&lin};
  float* const out[1] = {s->tmp};
  const kern::TileThen tiles = kern::tile_then(add);
  if (linears(lins, &which, 1, ts, l, n, X, out, s, nullptr, &tiles) != Ran::tiles) add(0, 0, (int)d, 0, n);
}

// Rotary positions on rows [r0, r1) (even) of the q or k rows of tokens [b0, b1) (X: the block's first
// row, rows ld floats apart; token b at position pos + b): a GEMM's output tile (kern::TileThen), head by
// head. Each pair turns on its own, so it gets the same bits however the rows are cut.
void rope_rows(const RunState* s, int hd, float* X, size_t ld, int r0, int r1, int b0, int b1, int pos) {
  for (int i = b0; i < b1; ++i)
    for (int r = r0; r < r1;) {
      const int end = (r / hd + 1) * hd < r1 ? (r / hd + 1) * hd : r1;  // this head's rows in the tile
      kern::rope(X + i * ld + r, 1, end - r, s->rope_row(pos + i) + r % hd);
      r = end;
    }
}

// u = tanh(W x + b) for a Q x n map.
void angles(const float* w, const float* b, const float* x, int Q, int n, float* u) {
  for (int i = 0; i < Q; ++i) u[i] = kern::dot(w + (size_t)i * n, x, n) + (b ? b[i] : 0.f);
  kern::tanh_inplace(u, Q);
}

// The block input at cache slot `slot`. Memory slots (slot < G, docs/qllm.md): x = M[slot]. A token:
// x = E_tok[token] + E_pos[slot - G] (rotary positions: E_tok[token] alone; they turn q and k instead),
// then the phase gain x_c *= cos(phi_c) - sin(phi_c) when the model has it.
void embed(const Model& m, const RunState* s, int token, int slot, float* x) {
  const int d = m.cfg.d, G = m.cfg.memory_tokens;
  if (slot < G) {
    for (int i = 0; i < d; ++i) x[i] = m.memory[(size_t)slot * d + i];
    return;
  }
  weights_row(m.tok_emb, d, token, false, x);
  if (m.cfg.positions == PosKind::learned) weights_row(m.pos_emb, d, slot - G, true, x);
  for (int i = 0; s->phase_gain && i < d; ++i) x[i] *= s->phase_gain[i];
}

// y = LN(x) with gain w and shift b, or RMSNorm(x) with gain w (model.norm).
void norm(const ModelConfig& c, const float* x, const float* w, const float* b, float* y) {
  if (c.norm == NormKind::rmsnorm) kern::rms_norm(x, w, c.ln_eps, c.d, y);
  else kern::layer_norm(x, w, b, c.ln_eps, c.d, y);
}

// 2-3. The entropy meter of one token: u = tanh(W_enc a + b), the circuit gives z and S;
// e = a + W_qout z + b_qout. Returns S (0 and e = a without quantum parts).
float entropy_meter(const Model& m, const RunState* s, int l, const float* a, float* e) {
  const ModelConfig& c = m.cfg;
  const Layer& L = m.layers[l];
  const int d = c.d, Q = c.n_qubits;
  if (!c.has_encoder()) {
    for (int i = 0; i < d; ++i) e[i] = a[i];
    return 0.f;
  }
  float u[quantum::kMaxQubits], z[quantum::kMaxQubits];
  angles(L.enc_w, L.enc_b, a, Q, d, u);
  const float S = quantum::encoder(Q, c.n_qlayers, u, s->encoder_gates + (size_t)l * c.n_qlayers * Q, z);
  kern::dense_matvec(DenseMatrix{d, Q, L.qout_w, L.qout_b}, z, e);
  kern::axpy(1.f, a, e, d);
  return S;
}

// 4. Rank r = clamp(r_min + floor(alpha S), r_min, r_max) (or fixed).
int rank_for(const Model& m, const RunOptions& opt, float S) {
  const ModelConfig& c = m.cfg;
  if (opt.fixed_rank > 0) return opt.fixed_rank;
  if (!c.adaptive_rank || !c.has_encoder()) return c.tt_rank;
  // Clamped as a float: alpha may be huge or NaN (an override, or a file's f64), and converting an
  // out-of-range float to int is undefined behaviour.
  const float r = (float)c.r_min + std::floor(opt.alpha * S);
  return !(r >= (float)c.r_min) ? c.r_min : r > (float)c.r_max ? c.r_max : (int)r;
}

// 5. The router's decision h > theta (reported even when the model has no quantum attention).
bool routed_quantum(const Model& m, const RunOptions& opt, float h) {
  if (!m.cfg.has_encoder()) return false;
  if (opt.route != RouteMode::automatic) return opt.route == RouteMode::all_quantum;
  return h > opt.theta;
}

// |phi(v)> of one head: u = tanh(W_qk[head] v), then the kernel feature-state circuit.
void feature_state(const Model& m, const RunState* s, int l, int head, const float* v, float* state) {
  const int Q = m.cfg.n_qubits, hd = m.cfg.head_dim();
  const Layer& L = m.layers[l];
  float u[quantum::kMaxQubits];
  angles(L.qk_w + (size_t)head * Q * hd, nullptr, v, Q, hd, u);
  quantum::feature_state(Q, u, s->feature_gates[(size_t)l * m.cfg.n_heads + head], state);
}

// Sampled attention's draws (docs/qllm.md): SplitMix64, one stream per (seed, layer, head, slot).
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// out = (1/S) sum_s v[j_s], j_s drawn from the weights w[0..n) (turned into their prefix sums in place).
// Returns the estimated variance of out, trace over hd (0 for S = 1).
float sampled_mix(float* w, int n, const float* v, size_t row, int hd, int S, uint64_t seed, int l, int head,
                  int slot, float* out) {
  float acc = 0.f;
  for (int j = 0; j < n; ++j) w[j] = acc += w[j];
  uint64_t state = mix64(seed ^ mix64(((uint64_t)l << 48) + ((uint64_t)head << 32) + (uint64_t)slot));
  float sumsq = 0.f;
  for (int k = 0; k < S; ++k) {
    state += 0x9E3779B97F4A7C15ull;
    const float u = (float)(mix64(state) >> 40) * (1.0f / 16777216.0f);
    int lo = 0, hi = n;  // the smallest j with u < w[j]
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (u < w[mid]) hi = mid;
      else lo = mid + 1;
    }
    const float* vj = v + (size_t)(lo < n ? lo : n - 1) * row;
    kern::axpy(1.f, vj, out, hd);
    sumsq += kern::dot(vj, vj, hd);
  }
  const float inv = 1.f / (float)S;
  for (int i = 0; i < hd; ++i) out[i] *= inv;
  if (S < 2) return 0.f;
  const float var = (sumsq - (float)S * kern::dot(out, out, hd)) / ((float)S * (float)(S - 1));
  return var > 0.f ? var : 0.f;
}

// 6. One head of the token at position pos: att[head] = sum_j w_j v_j over the cached positions
// j <= pos, with the weights w = softmax_j(beta K(q, k_j)), K the state fidelity (quantum), or
// softmax_j(q . k_j / sqrt(hd)). q and att are that token's rows. Grouped-query attention: query head
// `head` reads key/value head head / (H / n_kv_heads).
// Sampled attention (opt.attention_samples > 0, classical heads) replaces the weighted sum by the
// estimate from S draws and writes the head's variance to *var.
void attention(const Model& m, const RunOptions& opt, int l, int head, int pos, bool quantum, const float* q_row,
               float* att_row, const RunState* s, int thread, float* var) {
  const int hd = m.cfg.head_dim(), n = pos + 1, at = head * hd;
  const int kv_at = head / (m.cfg.n_heads / m.cfg.n_kv_heads) * hd;
  const size_t row = s->kv_dim;  // key_row(l, j + 1) - key_row(l, j), the same for values
  const float* q = q_row + at;
  float* w = s->scores + (size_t)thread * s->n_ctx;  // this thread's scratch
  const float* k = s->key_row(l, 0) + kv_at;
  const float* v = s->value_row(l, 0) + kv_at;
  float* out = att_row + at;
  const float scale = 1.0f / std::sqrt((float)hd);
  if (!quantum && opt.attention_samples == 0) return kern::attend(q, k, v, row, n, hd, scale, w, out);
  if (quantum) {
    float* state = s->query_state + (size_t)thread * s->state_floats;
    feature_state(m, s, l, head, q, state);
    quantum::fidelities(m.cfg.n_qubits, state, s->key_state(l, 0, head), s->key_state_stride(), n, w);
    for (int j = 0; j < n; ++j) w[j] *= m.layers[l].beta[head];
  } else {
    for (int j = 0; j < n; ++j) w[j] = kern::dot(q, k + j * row, hd) * scale;
  }
  kern::softmax_inplace(w, n);
  for (int i = 0; i < hd; ++i) out[i] = 0.f;
  if (opt.attention_samples > 0 && !quantum) {
    *var = sampled_mix(w, n, v, row, hd, opt.attention_samples, opt.attention_seed, l, head, pos, out);
    return;
  }
  for (int j = 0; j < n; ++j) kern::axpy(w[j], v + j * row, out, hd);
}

// act(h) in place on channels [c0, c1) of one token's FFN hidden row (c0 a multiple of
// kDaruanChannelBlock): GELU, or DARUAN by the chosen path; swiglu: h2 = silu(h2) * h (gate times up).
void activation(const Model& m, const RunOptions& opt, int l, int c0, int c1, float* h, float* h2,
                const float* table) {
  float* x = h + c0;
  if (m.cfg.activation == Activation::gelu) return kern::gelu_inplace(x, c1 - c0);
  if (m.cfg.activation == Activation::swiglu) return kern::silu_mul(h2 + c0, x, c1 - c0);  // into h2
  const quantum::DaruanParams p = quantum::daruan_slice(m.layers[l].daruan, c0, c1);
  switch (opt.act_path) {
    case quantum::DaruanPath::quantum: quantum::daruan_quantum(p, x, x); break;
    case quantum::DaruanPath::fourier:
      quantum::daruan_fourier(p, table + quantum::daruan_fourier_offset(c0, p.depth), x, x);
      break;
    case quantum::DaruanPath::spline:
      quantum::daruan_spline(p, opt.spline, table + quantum::daruan_spline_floats(c0, opt.spline), x, x);
      break;
  }
}

// hb = act(Up a) of one token on threads through a TT up (no gate, no adapter): each part of the matvec
// runs the activation on its own rows as it ends (kern::tt_matvec_parts' epilogue), so the activation
// needs no pass of its own over the threads. False (nothing done) where that does not apply: parts
// that sum (a right-to-left plan), parts whose rows do not start at whole activation blocks, or too
// little work to split.
bool up_with_activation(const Model& m, const RunOptions& opt, const TokenStats* ts, int l, int n, RunState* s,
                        const kern::RowMaker* ln2_rows) {
  const Linear& up = m.layers[l].up;
  if (n != 1 || !s->workers || s->workers->threads < 2 || dense_form(s, up, l, 4) || up.lora_a ||
      m.cfg.activation == Activation::swiglu)
    return false;
  const tt::Plan& plan = s->tt_plan(l, 4, ts[0].layer[l].rank);
  const tt::PartSplit split = tt::part_split(plan);  // parts that sum would leave it all to one thread
  if (split.sums || split.count < 2 || plan.flops < kParallelFlops ||
      (up.rows / split.count) % quantum::kDaruanChannelBlock != 0)
    return false;
  struct Act {
    const Model* m;
    const RunOptions* opt;
    int l;
    RunState* s;
  } act{&m, &opt, l, s};
  tt::PartsJob job{&up.tt_w, &plan, s->hb};
  job.arg = &act;
  job.epilogue = [](void* arg, int64_t row0, int64_t rows) {
    const Act& a = *static_cast<const Act*>(arg);
    for (int64_t c0 = row0; c0 < row0 + rows; c0 += quantum::kDaruanChannelBlock) {
      const int64_t c1 = c0 + quantum::kDaruanChannelBlock < row0 + rows ? c0 + quantum::kDaruanChannelBlock : row0 + rows;
      activation(*a.m, *a.opt, a.l, (int)c0, (int)c1, a.s->hb, nullptr, a.s->act_tables[a.l]);
    }
  };
  kern::make_rows(ln2_rows, n, s->workers);
  kern::tt_matvec_parts(&job, 1, s->a, s->workspace, s->workers);
  return true;
}

// The path of a token through layer l, from what its entropy meter decided.
Path path_of(const ModelConfig& c, const RunOptions& opt, const LayerStats& ls) {
  Path p;
  p.rank = ls.rank;
  p.keep_states = keeps_key_states(c, opt.route);
  p.quantum_attention = ls.quantum && p.keep_states;
  return p;
}

// One transformer block (Block.forward) for the n tokens at positions pos..pos+n-1:
// x = x + attention(LN1(x)), x = x + FFN(LN2(x)).
void block(const Model& m, const RunOptions& opt, int l, int pos, int n, RunState* s, TokenStats* ts) {
  const ModelConfig& c = m.cfg;
  const Layer& L = m.layers[l];
  const size_t d = c.d, hd = c.head_dim(), kv = s->kv_dim, ff = c.d_ff;
  const bool swiglu = c.activation == Activation::swiglu;
  const Workers* w = s->workers;  // each step split over them when its tokens cost kParallelFlops or more

  // 1-5. Per token: a = LN1(x); the entropy meter gives S and e; S gives the rank and the route. Made
  // row by row where q, k and v's input is packed or quantised (linears).
  auto meter = [&](int i) {
    norm(c, s->x + i * d, L.ln1_w, L.ln1_b, s->a + i * d);
    const float S = entropy_meter(m, s, l, s->a + i * d, s->e + i * d);
    LayerStats* ls = &ts[i].layer[l];
    ls->S = S;
    ls->rank = (uint16_t)rank_for(m, opt, S);
    ls->h = c.n_qubits > 0 ? S / (c.n_qubits / 2) : 0.f;
    ls->quantum = routed_quantum(m, opt, ls->h);
  };
  const kern::RowMaker meter_rows = kern::row_maker(meter, n * meter_cost(c).flops);

  // 6. q, k, v at each token's rank (k, v: n_kv_heads heads); rotary positions turn q and k; k and v
  // (and k's feature states) join the cache; attention per token and head, over the positions up to
  // its own; x += o.
  float* k = s->key_row(l, pos);  // the n tokens' cache rows follow each other
  const bool rotary = c.positions == PosKind::rotary;
  auto rope = [&](const Workers* on) {
    if (rotary)
      parallel_for(on, n, n * rope_flops(c), [&](int i, int) {
        kern::rope(s->q + i * d, c.n_heads, (int)hd, s->rope_row(pos + i));
        kern::rope(k + i * kv, c.n_kv_heads, (int)hd, s->rope_row(pos + i));
      });
  };
  // Key feature states per (token, head). A block's tokens attend over each other's: all of them
  // first, as a job of their own. One token attends only over its own: each head's state is made in its
  // attention task, on the thread that uses it.
  const bool states = keeps_key_states(c, opt.route), states_first = states && n > 1;
  auto head = [&](int task, int thread) {  // every (token, head)
    const int i = task / c.n_heads, h = task % c.n_heads;
    if (states && !states_first) feature_state(m, s, l, h, k + i * kv + h * hd, s->key_state(l, pos + i, h));
    const Path p = path_of(c, opt, ts[i].layer[l]);
    float* var = s->head_var ? s->head_var + (size_t)task : nullptr;
    attention(m, opt, l, h, pos + i, p.quantum_attention, s->q + i * d, s->att + i * d, s, thread, var);
  };
  // One token through TT parts: rope (on the thread that ends the last part) and the heads run in
  // q/k/v's job, after its parts (one wake-up of the threads instead of two).
  auto rope_here = [&] { rope(nullptr); };
  kern::PartsThen then{n * c.n_heads, [](void* f) { (*static_cast<decltype(rope_here)*>(f))(); }, &rope_here,
                       [](void* f, int i, int t) { (*static_cast<decltype(head)*>(f))(i, t); }, &head};
  // One GEMM job for q, k and v: rope on q's and k's output tiles as they are made.
  auto rope_tile = [&](int j, int r0, int r1, int b0, int b1) {
    if (j < 2) rope_rows(s, (int)hd, j == 0 ? s->q : k, j == 0 ? d : kv, r0, r1, b0, b1, pos);
  };
  const kern::TileThen rope_tiles = kern::tile_then(rope_tile);
  const Linear* qkv[3] = {&L.q, &L.k, &L.v};
  const int qkv_which[3] = {0, 1, 2};
  float* const qkv_out[3] = {s->q, k, s->value_row(l, pos)};
  const Ran ran =
      linears(qkv, qkv_which, 3, ts, l, n, s->e, qkv_out, s, &then, rotary ? &rope_tiles : nullptr, &meter_rows);
  if (ran != Ran::parts_then) {
    if (ran != Ran::tiles) rope(w);
    if (states_first)
      parallel_for(w, n * c.n_heads, n * key_states_cost(c).flops, [&](int task, int) {
        const int i = task / c.n_heads, h = task % c.n_heads;
        feature_state(m, s, l, h, k + i * kv + h * hd, s->key_state(l, pos + i, h));
      });
    int64_t attention_flops = states && !states_first ? key_states_cost(c).flops : 0;
    for (int i = 0; w && w->threads > 1 && i < n; ++i)  // priced only where there are threads to decide for
      attention_flops += attention_cost(c, opt, path_of(c, opt, ts[i].layer[l]), pos + i).flops;
    // In runs of (token, head) pairs, the last tokens (the most positions, the longest tasks) first.
    const int pairs = n * c.n_heads;
    parallel_for_runs(w, pairs, attention_flops, [&](int task, int thread) { head(pairs - 1 - task, thread); });
  }
  for (int i = 0; s->head_var && i < n; ++i)  // the report: draws and variance of the sampled heads
    for (int h = 0; h < c.n_heads; ++h)
      if (!path_of(c, opt, ts[i].layer[l]).quantum_attention) {
        ts[i].samples += opt.attention_samples;
        ts[i].sample_var += s->head_var[(size_t)i * c.n_heads + h];
      }
  add_linear(L.o, 3, ts, l, n, s->att, s);

  // 7. x = x + Down(act(Up(LN2(x)))); swiglu: x = x + Down(silu(Gate(a)) * Up(a)), a = LN2(x).
  // a = LN2(x) row by row where up's (and gate's) input is packed or quantised.
  auto ln2 = [&](int i) { norm(c, s->x + i * d, L.ln2_w, L.ln2_b, s->a + i * d); };
  const kern::RowMaker ln2_rows = kern::row_maker(ln2, n * norm_flops(c));
  if (!up_with_activation(m, opt, ts, l, n, s, &ln2_rows)) {
    const Linear* up_gate[2] = {&L.up, &L.gate};
    const int up_gate_which[2] = {4, 6};
    float* const up_gate_out[2] = {s->hb, s->hb2};
    // One GEMM job for up and gate: a task makes the same tile of both, then its SwiGLU gate.
    auto gate_tile = [&](int, int r0, int r1, int b0, int b1) {  // hb2 = silu(gate) * up
      for (int i = b0; i < b1; ++i) kern::silu_mul(s->hb2 + i * ff + r0, s->hb + i * ff + r0, r1 - r0);
    };
    const kern::TileThen gate_tiles = kern::tile_then(gate_tile, true);
    if (linears(up_gate, up_gate_which, swiglu ? 2 : 1, ts, l, n, s->a, up_gate_out, s, nullptr,
                swiglu ? &gate_tiles : nullptr, &ln2_rows) != Ran::tiles) {
      const int act_blocks = (int)((ff + quantum::kDaruanChannelBlock - 1) / quantum::kDaruanChannelBlock);
      parallel_for(w, n * act_blocks, n * activation_cost(m, opt, l).flops, [&](int task, int) {  // (token, channels)
        const int i = task / act_blocks, c0 = task % act_blocks * quantum::kDaruanChannelBlock;
        const int c1 = c0 + quantum::kDaruanChannelBlock < (int)ff ? c0 + quantum::kDaruanChannelBlock : (int)ff;
        activation(m, opt, l, c0, c1, s->hb + i * ff, swiglu ? s->hb2 + i * ff : nullptr, s->act_tables[l]);
      });
    }
  }
  add_linear(L.down, 5, ts, l, n, swiglu ? s->hb2 : s->hb, s);

  for (int i = 0; i < n; ++i) {
    const Cost cost = block_cost(m, opt, *s, l, path_of(c, opt, ts[i].layer[l]), pos + i);
    ts[i].flops += cost.flops;
    ts[i].qsim_flops += cost.qsim;
    ts[i].circuits += cost.circuits;
  }
}

// 8. logits = W_head LNf(x) of one token's row x.
void head(const Model& m, const float* x, RunState* s) {
  const ModelConfig& c = m.cfg;
  norm(c, x, m.lnf_w, m.lnf_b, s->a);
  const DenseMatrix W{c.vocab, c.d, m.head_w, nullptr};
  if (s->act_q && int_dot_type(m.head_w.type, s->act_quant_i8)) {
    kern::quantize_q8(s->a, c.d, s->act_q, s->act_d);
    return kern::dense_matmul_q8(W, Q8Rows{s->act_q, s->act_d, q8_blocks(c.d)}, 1, s->logits, s->workers);
  }
  kern::dense_matmul(W, s->a, 1, s->logits, nullptr, s->workers);
}

}  // namespace

void forward(const Model& m, const RunOptions& opt, RunState* s, const int32_t* tokens, int n, int pos,
             TokenStats* stats, bool logits) {
  const ModelConfig& c = m.cfg;
  parallel_for(s->workers, n, n * embed_flops(c), [&](int i, int) {
    TokenStats& t = stats[i];
    t.pos = pos + i;
    t.token = tokens ? tokens[i] : -1;  // null: memory slots
    t.flops = t.qsim_flops = t.circuits = t.samples = 0;
    t.sample_var = 0;
    t.n_layers = c.n_layers;
    embed(m, s, t.token, pos + i, s->x + (size_t)i * c.d);
    if (c.phase_rotation && pos + i >= c.memory_tokens) t.flops += c.d;  // the phase gain
  });
  for (int l = 0; l < c.n_layers; ++l) block(m, opt, l, pos, n, s, stats);
  for (int i = 0; i < n; ++i)  // mean over the sampled (layer, head) pairs
    if (stats[i].samples > 0) stats[i].sample_var /= (float)(stats[i].samples / opt.attention_samples);
  if (!logits) return;
  head(m, s->x + (size_t)(n - 1) * c.d, s);
  stats[n - 1].flops += head_flops(c);  // only the last token's logits are computed
}

void forward(const Model& m, const RunOptions& opt, RunState* s, int token, int pos, TokenStats* stats) {
  const int32_t t = token;
  forward(m, opt, s, &t, 1, pos, stats);
}

}  // namespace qtf
