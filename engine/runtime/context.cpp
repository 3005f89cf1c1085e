#include "runtime/context.h"

#include <cstring>
#include <initializer_list>

namespace qtf {
namespace {

// One layout function used both to size the arena and to carve it, so the two can never disagree.
struct Layout {
  uint8_t* base;  // null while sizing
  size_t used = 0;
  float* take(size_t floats) {
    size_t at = (used + 63) / 64 * 64;
    used = at + floats * sizeof(float);
    return base ? reinterpret_cast<float*>(base + at) : nullptr;
  }
};

size_t layout(const Model& m, const ContextOptions& opt, int n_ctx, uint8_t* base, RunState* s) {
  const ModelConfig& c = m.cfg;
  Layout L{base};
  const size_t d = c.d, T = n_ctx, width = c.d_ff > c.d ? c.d_ff : c.d;
  s->n_ctx = n_ctx;
  s->x = L.take(d);
  s->a = L.take(d);
  s->e = L.take(d);
  s->q = L.take(d);
  s->k = L.take(d);
  s->v = L.take(d);
  s->att = L.take(d);
  s->tmp = L.take(d);
  s->hb = L.take(width);
  s->scores = L.take(T);
  s->logits = L.take(c.vocab);
  size_t ws = 0;
  if (c.tensorized) {
    for (int l = 0; l < c.n_layers; ++l) {
      const Layer& ly = m.layers[l];
      for (const Linear* lin : {&ly.q, &ly.k, &ly.v, &ly.o, &ly.up, &ly.down}) {
        size_t need = kern::tt_workspace_floats(lin->tt_w.shape, 1);
        if (need > ws) ws = need;
      }
    }
  }
  s->workspace = L.take(ws ? ws : 1);
  s->key_cache = L.take(c.n_layers * T * d);
  s->value_cache = L.take(c.n_layers * T * d);
  const bool states = c.quantum_attention && c.has_encoder() && opt.route != RouteMode::all_classical;
  const size_t SF = c.has_encoder() ? (size_t)quantum::state_floats(c.n_qubits) : 0;
  s->key_states = states ? L.take(c.n_layers * T * c.n_heads * SF) : nullptr;
  s->query_state = states ? L.take(SF) : nullptr;
  for (int l = 0; l < kMaxLayers; ++l) s->act_tables[l] = nullptr;
  if (c.activation == Activation::daruan && opt.act_path != quantum::DaruanPath::quantum) {
    size_t n = opt.act_path == quantum::DaruanPath::fourier
                   ? quantum::daruan_fourier_floats(c.d_ff, c.daruan_depth)
                   : quantum::daruan_spline_floats(c.d_ff, opt.spline);
    for (int l = 0; l < c.n_layers; ++l) s->act_tables[l] = L.take(n);
  }
  return L.used;
}

}  // namespace

Status validate_options(const Model& m, const ContextOptions& opt) {
  const ModelConfig& c = m.cfg;
  if (opt.n_ctx < 0 || opt.n_ctx > c.context)
    return Status::error(Err::invalid_argument, "context length %d is outside 1..%d (the model's learned positions)",
                         opt.n_ctx, c.context);
  if (opt.route == RouteMode::all_quantum && !(c.quantum_attention && c.has_encoder()))
    return Status::error(Err::invalid_argument, "all-quantum routing needs a model with quantum attention");
  if (opt.fixed_rank < 0 || (opt.fixed_rank > 0 && !c.tensorized))
    return Status::error(Err::invalid_argument, "a fixed rank needs a tensorized model (and must be >= 1)");
  if (opt.act_path == quantum::DaruanPath::spline && !(opt.spline.knots >= 4 && opt.spline.hi > opt.spline.lo))
    return Status::error(Err::invalid_argument, "spline grid needs >= 4 knots and hi > lo");
  return Status::success();
}

size_t Context::arena_bytes(const Model& m, const ContextOptions& opt) {
  if (!validate_options(m, opt).ok()) return 0;
  RunState s;
  return layout(m, opt, opt.n_ctx ? opt.n_ctx : m.cfg.context, nullptr, &s);
}

Status Context::init(const Model* m, const ContextOptions& opt, void* arena, size_t arena_len) {
  if (m == nullptr || arena == nullptr) return Status::error(Err::invalid_argument, "model or arena is null");
  if (reinterpret_cast<uintptr_t>(arena) % 64 != 0)
    return Status::error(Err::misaligned, "context arena must be 64-byte aligned");
  QTF_TRY(validate_options(*m, opt));
  const int n_ctx = opt.n_ctx ? opt.n_ctx : m->cfg.context;
  RunState probe;
  size_t need = layout(*m, opt, n_ctx, nullptr, &probe);
  if (arena_len < need)
    return Status::error(Err::no_memory, "context arena is %zu bytes, needs %zu", arena_len, need);
  std::memset(arena, 0, need);
  layout(*m, opt, n_ctx, static_cast<uint8_t*>(arena), &state_);
  model_ = m;
  run_.route = opt.route;
  run_.fixed_rank = opt.fixed_rank;
  run_.act_path = opt.act_path;
  run_.spline = opt.spline;
  run_.theta = opt.override_theta ? opt.theta : m->cfg.theta;
  run_.alpha = opt.override_alpha ? opt.alpha : m->cfg.alpha;
  spline_error_ = 0;
  for (int l = 0; l < m->cfg.n_layers; ++l) {
    const quantum::DaruanParams& p = m->layers[l].daruan;
    if (state_.act_tables[l] == nullptr) continue;
    if (opt.act_path == quantum::DaruanPath::fourier) {
      quantum::daruan_fourier_build(p, state_.act_tables[l]);
    } else {
      quantum::daruan_spline_build(p, opt.spline, state_.act_tables[l]);
      float err = quantum::daruan_spline_max_error(p, opt.spline, state_.act_tables[l]);
      if (err > spline_error_) spline_error_ = err;
    }
  }
  n_past_ = 0;
  return Status::success();
}

Status Context::eval(int token) {
  if (model_ == nullptr) return Status::error(Err::invalid_argument, "context is not initialised");
  if (token < 0 || token >= model_->cfg.vocab)
    return Status::error(Err::out_of_range, "token id %d is outside the vocabulary (0..%d)", token, model_->cfg.vocab - 1);
  if (n_past_ >= state_.n_ctx)
    return Status::error(Err::context_full, "context is full (%d tokens): reset it or use a longer context",
                         state_.n_ctx);
  forward(*model_, run_, &state_, token, n_past_, &stats_);
  ++n_past_;
  return Status::success();
}

}  // namespace qtf
