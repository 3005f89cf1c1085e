// The forward pass, one token at a time, in the order of MODEL.md. Speed lives in the kernels
// (kernels/, quantum/); this file should read like the spec.
#include "model/forward.h"

#include <cmath>

namespace qtf {
namespace {

// FLOP prices of the elementwise work (multiply-add = 2); the big terms come from the kernels.
constexpr int64_t kLayerNormFlops = 8;  // per element: mean, variance, normalise, scale+shift
constexpr int64_t kGeluFlops = 10;      // per element, erf by its polynomial
constexpr int64_t kTanhFlops = 10;
constexpr int64_t kSoftmaxFlops = 4;    // per score: max, exp, sum, divide

int64_t linear_flops(const Linear& lin, int rank) {
  return lin.tt ? tt_matvec_flops(lin.tt_w.shape, rank) : 2ll * lin.rows * lin.cols + lin.rows;
}

void linear(const Linear& lin, int rank, const float* x, float* y, float* ws) {
  if (lin.tt) kern::tt_matvec(lin.tt_w, rank, x, y, ws);
  else kern::dense_matvec(lin.dense, x, y);
}

// u = tanh(W x + b) for a Q x n map.
void angles(const float* w, const float* b, const float* x, int Q, int n, float* u) {
  for (int i = 0; i < Q; ++i) u[i] = std::tanh(kern::dot(w + (size_t)i * n, x, n) + (b ? b[i] : 0.f));
}

int rank_for(const Model& m, const RunOptions& opt, float S) {
  const ModelConfig& c = m.cfg;
  if (opt.fixed_rank > 0) return opt.fixed_rank;
  if (!c.adaptive_rank || !c.has_encoder()) return c.tt_rank;
  // Clamped as a float: alpha may be huge or NaN (an override, or a file's f64), and converting an
  // out-of-range float to int is undefined behaviour.
  const float r = (float)c.r_min + std::floor(opt.alpha * S);
  return !(r >= (float)c.r_min) ? c.r_min : r > (float)c.r_max ? c.r_max : (int)r;
}

// The router's decision (reported even when the model has no quantum attention to route to).
bool routed_quantum(const Model& m, const RunOptions& opt, float h) {
  if (!m.cfg.has_encoder()) return false;
  if (opt.route != RouteMode::automatic) return opt.route == RouteMode::all_quantum;
  return h > opt.theta;
}

void activation(const Model& m, const RunOptions& opt, const RunState& s, int l, float* x, int n, int64_t* flops,
                int64_t* qflops, int64_t* circuits) {
  if (m.cfg.activation == Activation::gelu) {
    kern::gelu_inplace(x, n);
    *flops += kGeluFlops * n;
    return;
  }
  const quantum::DaruanParams& p = m.layers[l].daruan;
  switch (opt.act_path) {
    case quantum::DaruanPath::quantum: quantum::daruan_quantum(p, x, x); break;
    case quantum::DaruanPath::fourier: quantum::daruan_fourier(p, s.act_tables[l], x, x); break;
    case quantum::DaruanPath::spline: quantum::daruan_spline(p, opt.spline, s.act_tables[l], x, x); break;
  }
  int64_t f = quantum::daruan_flops_per_channel(opt.act_path, p.depth) * n;
  *flops += f;
  if (opt.act_path == quantum::DaruanPath::quantum) {
    *qflops += f;
    *circuits += n;  // one one-qubit circuit per channel
  }
}

}  // namespace

void forward(const Model& m, const RunOptions& opt, RunState* s, int token, int pos, TokenStats* stats) {
  const ModelConfig& c = m.cfg;
  const int d = c.d, H = c.n_heads, hd = c.head_dim(), Q = c.n_qubits, T = s->n_ctx;
  const int SF = Q > 0 ? quantum::state_floats(Q) : 0;
  int64_t flops = 0, qflops = 0, circuits = 0;

  // x_0 = E_tok[token] + E_pos[pos]
  for (int i = 0; i < d; ++i) s->x[i] = m.tok_emb[(size_t)token * d + i] + m.pos_emb[(size_t)pos * d + i];

  for (int l = 0; l < c.n_layers; ++l) {
    const Layer& L = m.layers[l];
    LayerStats& ls = stats->layer[l];

    // 1. a = LN1(x)
    kern::layer_norm(s->x, L.ln1_w, L.ln1_b, c.ln_eps, d, s->a);
    flops += kLayerNormFlops * d;

    // 2-3. Entropy meter: u = tanh(W_enc a + b), circuit -> z, S; e = a + W_qout z + b_qout.
    float S = 0;
    if (c.has_encoder()) {
      float u[quantum::kMaxQubits], z[quantum::kMaxQubits];
      angles(L.enc_w, L.enc_b, s->a, Q, d, u);
      S = quantum::encoder(Q, c.n_qlayers, u, L.qparams, z);
      for (int i = 0; i < d; ++i) s->e[i] = s->a[i] + kern::dot(L.qout_w + (size_t)i * Q, z, Q) + L.qout_b[i];
      int64_t circuit = quantum::encoder_flops(Q, c.n_qlayers);
      flops += 2ll * Q * d + kTanhFlops * Q + circuit + 2ll * d * Q + 2ll * d;
      qflops += circuit;
      circuits += 1;
    } else {
      for (int i = 0; i < d; ++i) s->e[i] = s->a[i];
    }

    // 4-5. Rank and route of this token in this layer.
    const int r = rank_for(m, opt, S);
    const float h = Q > 0 ? S / (Q / 2) : 0.f;
    const bool quantum_route = routed_quantum(m, opt, h);
    ls.S = S;
    ls.h = h;
    ls.rank = (uint16_t)r;
    ls.quantum = quantum_route;

    // 6. Attention. q, k, v at rank r; k and v (and k's feature states) go to the cache.
    float* kc = s->key_cache + ((size_t)l * T + pos) * d;
    float* vc = s->value_cache + ((size_t)l * T + pos) * d;
    linear(L.q, r, s->e, s->q, s->workspace);
    linear(L.k, r, s->e, kc, s->workspace);
    linear(L.v, r, s->e, vc, s->workspace);
    flops += linear_flops(L.q, r) + linear_flops(L.k, r) + linear_flops(L.v, r);

    const bool keep_states = c.quantum_attention && c.has_encoder() && opt.route != RouteMode::all_classical;
    const bool quantum_attention = quantum_route && keep_states;
    for (int n = 0; n < H; ++n) {
      const float* qh = s->q + n * hd;
      float* out = s->att + n * hd;
      const float* key_states_n =  // null when states are not kept (no offset on a null pointer: UB)
          keep_states ? s->key_states + (((size_t)l * T) * H + n) * SF : nullptr;
      const size_t state_stride = (size_t)H * SF;
      if (keep_states) {  // |phi(k_t)> for this head, kept for later quantum queries
        float u[quantum::kMaxQubits];
        angles(L.qk_w + (size_t)n * Q * hd, nullptr, kc + n * hd, Q, hd, u);
        quantum::feature_state(Q, u, L.qvar + (size_t)n * 2 * Q * 3, s->key_states + (((size_t)l * T + pos) * H + n) * SF);
        int64_t f = quantum::feature_state_flops(Q);
        flops += 2ll * Q * hd + kTanhFlops * Q + f;
        qflops += f;
      }
      if (quantum_attention) {  // weights softmax_j(beta K(q_t, k_j)), K the state fidelity
        float u[quantum::kMaxQubits];
        angles(L.qk_w + (size_t)n * Q * hd, nullptr, qh, Q, hd, u);
        quantum::feature_state(Q, u, L.qvar + (size_t)n * 2 * Q * 3, s->query_state);
        quantum::fidelities(Q, s->query_state, key_states_n, state_stride, pos + 1, s->scores);
        for (int j = 0; j <= pos; ++j) s->scores[j] *= L.beta[n];
        int64_t f = quantum::feature_state_flops(Q) + (int64_t)(pos + 1) * quantum::fidelity_flops(Q);
        flops += 2ll * Q * hd + kTanhFlops * Q + f + (pos + 1);
        qflops += f;
        circuits += pos + 1;  // on hardware each fidelity is its own (compute-uncompute) circuit
      } else {  // weights softmax_j(q . k_j / sqrt(hd))
        const float scale = 1.0f / std::sqrt((float)hd);
        for (int j = 0; j <= pos; ++j)
          s->scores[j] = kern::dot(qh, s->key_cache + ((size_t)l * T + j) * d + n * hd, hd) * scale;
        flops += (2ll * hd + 1) * (pos + 1);
      }
      kern::softmax_inplace(s->scores, pos + 1);
      for (int i = 0; i < hd; ++i) out[i] = 0.f;
      for (int j = 0; j <= pos; ++j)
        kern::axpy(s->scores[j], s->value_cache + ((size_t)l * T + j) * d + n * hd, out, hd);
      flops += (kSoftmaxFlops + 2ll * hd) * (pos + 1);
    }
    linear(L.o, r, s->att, s->tmp, s->workspace);
    kern::axpy(1.f, s->tmp, s->x, d);  // x = x + o
    flops += linear_flops(L.o, r) + d;

    // 7. x = x + Down(act(Up(LN2(x))))
    kern::layer_norm(s->x, L.ln2_w, L.ln2_b, c.ln_eps, d, s->a);
    linear(L.up, r, s->a, s->hb, s->workspace);
    activation(m, opt, *s, l, s->hb, c.d_ff, &flops, &qflops, &circuits);
    linear(L.down, r, s->hb, s->tmp, s->workspace);
    kern::axpy(1.f, s->tmp, s->x, d);
    flops += kLayerNormFlops * d + linear_flops(L.up, r) + linear_flops(L.down, r) + d;
  }

  // 8. logits = W_head LNf(x)
  kern::layer_norm(s->x, m.lnf_w, m.lnf_b, c.ln_eps, d, s->a);
  DenseMatrix head{c.vocab, d, m.head_w, nullptr};
  kern::dense_matvec(head, s->a, s->logits);
  flops += kLayerNormFlops * d + 2ll * c.vocab * d;

  stats->pos = pos;
  stats->token = token;
  stats->flops = flops;
  stats->qsim_flops = qflops;
  stats->circuits = circuits;
  stats->n_layers = c.n_layers;
}

}  // namespace qtf
