// The forward pass, one token at a time. It reads like the reference (tools/train/model.py:
// QTensorFormer.forward and Block.forward) and the contract (docs/model.md, whose step numbers the
// comments use): embed, then block(l) for every layer, then head. Speed lives in the kernels
// (kernels/, quantum/); what a token costs is counted in one place per layer, block_cost().
#include "model/forward.h"

#include <cmath>

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

int64_t linear_flops(const Linear& lin, int rank) {  // the bias add of a dense linear counts when it has one
  return lin.tt ? tt_matvec_flops(lin.tt_w.shape, rank) : 2ll * lin.rows * lin.cols + (lin.dense.bias ? lin.rows : 0);
}

int64_t angles_flops(int Q, int n) { return 2ll * Q * n + kTanhFlops * Q; }  // tanh(W x (+ b)), W [Q, n]

int64_t norm_flops(const ModelConfig& c) { return (c.norm == NormKind::rmsnorm ? kRmsNormFlops : kLayerNormFlops) * c.d; }

// What one token costs in layer l at position pos, step by step as block() runs it, from the same
// shapes the kernels get.
Cost block_cost(const Model& m, const RunOptions& opt, int l, const Path& p, int pos) {
  const ModelConfig& c = m.cfg;
  const Layer& L = m.layers[l];
  const int64_t d = c.d, H = c.n_heads, hd = c.head_dim(), Q = c.n_qubits, n = pos + 1, r = p.rank;
  Cost cost;
  cost.classical(norm_flops(c));  // 1. LN1
  if (c.has_encoder()) {                // 2-3. entropy meter: angles, circuit, e = a + W_qout z + b
    cost.classical(angles_flops(Q, d) + 2 * d * Q + 2 * d);
    cost.simulated(quantum::encoder_flops(Q, c.n_qlayers), 1);
  }
  cost.classical(linear_flops(L.q, r) + linear_flops(L.k, r) + linear_flops(L.v, r));  // 6. q, k, v
  if (c.positions == PosKind::rotary) cost.classical(kRopeFlops * (d + c.kv_dim()) / 2);
  if (p.keep_states) {  // this token's key states, per head
    cost.classical(H * angles_flops(Q, hd));
    cost.simulated(H * quantum::feature_state_flops(Q), 0);
  }
  if (p.quantum_attention) {  // per head: the query's state, n fidelities (one circuit each), beta
    cost.classical(H * (angles_flops(Q, hd) + n));
    cost.simulated(H * (quantum::feature_state_flops(Q) + n * quantum::fidelity_flops(Q)), H * n);
  } else {  // per head: n scaled dot products
    cost.classical(H * (2 * hd + 1) * n);
  }
  cost.classical(H * (kSoftmaxFlops + 2 * hd) * n);  // softmax, weighted sum of the values
  cost.classical(linear_flops(L.o, r) + d);          // o, residual
  cost.classical(norm_flops(c) + linear_flops(L.up, r) + linear_flops(L.down, r) + d);  // 7.
  if (c.activation == Activation::swiglu) {
    cost.classical(linear_flops(L.gate, r) + kSiluMulFlops * c.d_ff);
  } else if (c.activation == Activation::gelu) {
    cost.classical(kGeluFlops * c.d_ff);
  } else {
    const int64_t f = quantum::daruan_flops_per_channel(opt.act_path, L.daruan.depth) * c.d_ff;
    if (opt.act_path == quantum::DaruanPath::quantum) cost.simulated(f, c.d_ff);  // a circuit per channel
    else cost.classical(f);
  }
  return cost;
}

int64_t head_flops(const ModelConfig& c) { return norm_flops(c) + 2ll * c.vocab * c.d; }

// ---- The model ----------------------------------------------------------------------------------

void linear(const Linear& lin, int rank, const float* x, float* y, float* ws) {
  if (lin.tt) kern::tt_matvec(lin.tt_w, rank, x, y, ws);
  else kern::dense_matvec(lin.dense, x, y);
}

// u = tanh(W x + b) for a Q x n map.
void angles(const float* w, const float* b, const float* x, int Q, int n, float* u) {
  for (int i = 0; i < Q; ++i) u[i] = std::tanh(kern::dot(w + (size_t)i * n, x, n) + (b ? b[i] : 0.f));
}

// x = E_tok[token] + E_pos[pos]; with rotary positions x = E_tok[token] (positions turn q and k instead).
void embed(const Model& m, RunState* s, int token, int pos) {
  const int d = m.cfg.d;
  for (int i = 0; i < d; ++i) s->x[i] = m.tok_emb[(size_t)token * d + i];
  if (m.cfg.positions == PosKind::learned) kern::axpy(1.f, m.pos_emb + (size_t)pos * d, s->x, d);
}

// y = LN(x) with gain w and shift b, or RMSNorm(x) with gain w (model.norm).
void norm(const ModelConfig& c, const float* x, const float* w, const float* b, float* y) {
  if (c.norm == NormKind::rmsnorm) ref::rms_norm(x, w, c.ln_eps, c.d, y);
  else kern::layer_norm(x, w, b, c.ln_eps, c.d, y);
}

// 2-3. The entropy meter: u = tanh(W_enc a + b), the circuit gives z and S; e = a + W_qout z + b_qout.
// Returns S (0 and e = a without quantum parts).
float entropy_meter(const Model& m, int l, RunState* s) {
  const ModelConfig& c = m.cfg;
  const Layer& L = m.layers[l];
  const int d = c.d, Q = c.n_qubits;
  if (!c.has_encoder()) {
    for (int i = 0; i < d; ++i) s->e[i] = s->a[i];
    return 0.f;
  }
  float u[quantum::kMaxQubits], z[quantum::kMaxQubits];
  angles(L.enc_w, L.enc_b, s->a, Q, d, u);
  const float S = quantum::encoder(Q, c.n_qlayers, u, L.qparams, z);
  for (int i = 0; i < d; ++i) s->e[i] = s->a[i] + kern::dot(L.qout_w + (size_t)i * Q, z, Q) + L.qout_b[i];
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
void feature_state(const Model& m, int l, int head, const float* v, float* state) {
  const int Q = m.cfg.n_qubits, hd = m.cfg.head_dim();
  const Layer& L = m.layers[l];
  float u[quantum::kMaxQubits];
  angles(L.qk_w + (size_t)head * Q * hd, nullptr, v, Q, hd, u);
  quantum::feature_state(Q, u, L.qvar + (size_t)head * 2 * Q * 3, state);
}

// 6. One head: att[head] = sum_j w_j v_j over the cached positions j <= pos, with the weights
// w = softmax_j(beta K(q, k_j)), K the state fidelity (quantum), or softmax_j(q . k_j / sqrt(hd)).
// Grouped-query attention: query head `head` reads key/value head head / (H / n_kv_heads).
void attention(const Model& m, int l, int head, int pos, bool quantum, RunState* s) {
  const int hd = m.cfg.head_dim(), n = pos + 1, at = head * hd;
  const int kv_at = head / (m.cfg.n_heads / m.cfg.n_kv_heads) * hd;
  const size_t row = s->kv_dim;  // key_row(l, j + 1) - key_row(l, j), the same for values
  const float* q = s->q + at;
  float* w = s->scores;
  if (quantum) {
    feature_state(m, l, head, q, s->query_state);
    quantum::fidelities(m.cfg.n_qubits, s->query_state, s->key_state(l, 0, head), s->key_state_stride(), n, w);
    for (int j = 0; j < n; ++j) w[j] *= m.layers[l].beta[head];
  } else {
    const float* k = s->key_row(l, 0) + kv_at;
    const float scale = 1.0f / std::sqrt((float)hd);
    for (int j = 0; j < n; ++j) w[j] = kern::dot(q, k + j * row, hd) * scale;
  }
  kern::softmax_inplace(w, n);
  const float* v = s->value_row(l, 0) + kv_at;
  float* out = s->att + at;
  for (int i = 0; i < hd; ++i) out[i] = 0.f;
  for (int j = 0; j < n; ++j) kern::axpy(w[j], v + j * row, out, hd);
}

// act(hb) in place: GELU, or DARUAN by the chosen path; swiglu: hb2 = silu(hb2) * hb (gate times up).
void activation(const Model& m, const RunOptions& opt, int l, RunState* s) {
  float* x = s->hb;
  if (m.cfg.activation == Activation::gelu) return kern::gelu_inplace(x, m.cfg.d_ff);
  if (m.cfg.activation == Activation::swiglu) return ref::silu_mul(s->hb2, x, m.cfg.d_ff);  // into hb2
  const quantum::DaruanParams& p = m.layers[l].daruan;
  switch (opt.act_path) {
    case quantum::DaruanPath::quantum: quantum::daruan_quantum(p, x, x); break;
    case quantum::DaruanPath::fourier: quantum::daruan_fourier(p, s->act_tables[l], x, x); break;
    case quantum::DaruanPath::spline: quantum::daruan_spline(p, opt.spline, s->act_tables[l], x, x); break;
  }
}

// One transformer block (Block.forward): x = x + attention(LN1(x)), x = x + FFN(LN2(x)).
void block(const Model& m, const RunOptions& opt, int l, int pos, RunState* s, LayerStats* ls, Cost* cost) {
  const ModelConfig& c = m.cfg;
  const Layer& L = m.layers[l];
  const int d = c.d, hd = c.head_dim();
  float* ws = s->workspace;

  // 1-3. a = LN1(x); the entropy meter gives S and e.
  norm(c, s->x, L.ln1_w, L.ln1_b, s->a);
  const float S = entropy_meter(m, l, s);

  // 4-5. This token's rank and route in this layer.
  Path p;
  p.rank = rank_for(m, opt, S);
  ls->S = S;
  ls->h = c.n_qubits > 0 ? S / (c.n_qubits / 2) : 0.f;
  ls->rank = (uint16_t)p.rank;
  ls->quantum = routed_quantum(m, opt, ls->h);
  p.keep_states = keeps_key_states(c, opt.route);
  p.quantum_attention = ls->quantum && p.keep_states;

  // 6. q, k, v at rank r (k, v: n_kv_heads heads); rotary positions turn q and k; k and v (and k's
  // feature states) join the cache; attention per head; x += o.
  float* k = s->key_row(l, pos);
  linear(L.q, p.rank, s->e, s->q, ws);
  linear(L.k, p.rank, s->e, k, ws);
  linear(L.v, p.rank, s->e, s->value_row(l, pos), ws);
  if (c.positions == PosKind::rotary) {
    ref::rope_inplace(s->q, c.n_heads, hd, pos, c.rope_theta);
    ref::rope_inplace(k, c.n_kv_heads, hd, pos, c.rope_theta);
  }
  for (int h = 0; p.keep_states && h < c.n_heads; ++h) feature_state(m, l, h, k + h * hd, s->key_state(l, pos, h));
  for (int h = 0; h < c.n_heads; ++h) attention(m, l, h, pos, p.quantum_attention, s);
  linear(L.o, p.rank, s->att, s->tmp, ws);
  kern::axpy(1.f, s->tmp, s->x, d);

  // 7. x = x + Down(act(Up(LN2(x)))); swiglu: x = x + Down(silu(Gate(a)) * Up(a)), a = LN2(x).
  norm(c, s->x, L.ln2_w, L.ln2_b, s->a);
  linear(L.up, p.rank, s->a, s->hb, ws);
  if (c.activation == Activation::swiglu) linear(L.gate, p.rank, s->a, s->hb2, ws);
  activation(m, opt, l, s);
  linear(L.down, p.rank, c.activation == Activation::swiglu ? s->hb2 : s->hb, s->tmp, ws);
  kern::axpy(1.f, s->tmp, s->x, d);

  *cost += block_cost(m, opt, l, p, pos);
}

// 8. logits = W_head LNf(x)
void head(const Model& m, RunState* s) {
  const ModelConfig& c = m.cfg;
  norm(c, s->x, m.lnf_w, m.lnf_b, s->a);
  kern::dense_matvec(DenseMatrix{c.vocab, c.d, m.head_w, nullptr}, s->a, s->logits);
}

}  // namespace

void forward(const Model& m, const RunOptions& opt, RunState* s, int token, int pos, TokenStats* stats) {
  Cost cost;
  embed(m, s, token, pos);
  for (int l = 0; l < m.cfg.n_layers; ++l) block(m, opt, l, pos, s, &stats->layer[l], &cost);
  head(m, s);
  cost.classical(head_flops(m.cfg));

  stats->pos = pos;
  stats->token = token;
  stats->flops = cost.flops;
  stats->qsim_flops = cost.qsim;
  stats->circuits = cost.circuits;
  stats->n_layers = m.cfg.n_layers;
}

}  // namespace qtf
