#include "runtime/context.h"

#include <cstring>

#include "kernels/kernels.h"

namespace qtf {
namespace {

RunOptions to_run_options(const Model& m, const ContextOptions& opt) {
  RunOptions r;
  r.route = opt.route;
  r.fixed_rank = opt.fixed_rank;
  r.act_path = opt.act_path;
  r.spline = opt.spline;
  r.theta = opt.override_theta ? opt.theta : m.cfg.theta;
  r.alpha = opt.override_alpha ? opt.alpha : m.cfg.alpha;
  r.attention_samples = opt.attention_samples >= 0 ? opt.attention_samples
                        : m.cfg.attention == AttnKind::sampled ? m.cfg.attention_samples : 0;
  r.attention_seed = opt.override_seed ? opt.attention_seed : m.cfg.attention_seed;
  r.pack_tt = opt.pack_tt;
  const bool automatic = opt.act_quant == ActQuant::automatic;
  r.act_quant = opt.act_quant == ActQuant::q8 ||
                (automatic && (kern::int_dot_preferred(WType::q4) || kern::int_dot_preferred(WType::i8)));
  r.act_quant_i8 = !automatic || kern::int_dot_preferred(WType::i8);
  r.act_quant_copies = opt.act_quant == ActQuant::q8;
  r.mem_budget = opt.mem_budget;
  r.mem_copy = opt.mem_copy;
  return r;
}

int batch_of(const ContextOptions& opt) { return opt.n_batch ? opt.n_batch : kDefaultBatch; }

}  // namespace

Status validate_options(const Model& m, const ContextOptions& opt) {
  const ModelConfig& c = m.cfg;
  if (opt.n_ctx < 0 || opt.n_ctx > c.context) {
    if (c.positions == PosKind::learned)
      return Status::error(Err::invalid_argument, "context length %d is outside 1..%d (the model has learned position "
                           "embeddings for %d positions)", opt.n_ctx, c.context, c.context);
    return Status::error(Err::invalid_argument, "context length %d is outside 1..%d (the model's context length, "
                         "model.context: rotary positions past it were never trained)", opt.n_ctx, c.context);
  }
  if (opt.n_threads < 1 || opt.n_threads > kMaxThreads)
    return Status::error(Err::invalid_argument, "thread count %d is outside 1..%d", opt.n_threads, kMaxThreads);
  if (opt.n_batch < 0 || opt.n_batch > kMaxBatch)
    return Status::error(Err::invalid_argument, "batch size %d is outside 1..%d (0 = %d)", opt.n_batch, kMaxBatch,
                         kDefaultBatch);
  if (opt.route == RouteMode::all_quantum && !(c.quantum_attention && c.has_encoder()))
    return Status::error(Err::invalid_argument, "all-quantum routing needs a model with quantum attention");
  if (opt.fixed_rank < 0 || (opt.fixed_rank > 0 && !c.tensorized))
    return Status::error(Err::invalid_argument, "a fixed rank needs a tensorized model (and must be >= 1)");
  if (opt.attention_samples < -1 || opt.attention_samples > 65536)
    return Status::error(Err::invalid_argument, "attention samples %d is outside 0..65536", opt.attention_samples);
  if (opt.attention_samples > 0 && c.attention == AttnKind::quantum_kernel)
    return Status::error(Err::invalid_argument, "sampled attention replaces softmax weights; this model has quantum kernel attention");
  if (opt.n_ctx != 0 && opt.n_ctx <= c.memory_tokens)
    return Status::error(Err::invalid_argument, "context length %d leaves no room after the model's %d memory slots",
                         opt.n_ctx, c.memory_tokens);
  if (opt.mem_budget < -1)
    return Status::error(Err::invalid_argument, "memory budget %lld is negative (-1 = auto, 0 = never copy)",
                         (long long)opt.mem_budget);
  if (opt.mem_copy > kCopyQ8) return Status::error(Err::invalid_argument, "memory copy type %d is not 0..2", opt.mem_copy);
  if (opt.act_path == quantum::DaruanPath::spline && !(opt.spline.knots >= 4 && opt.spline.hi > opt.spline.lo))
    return Status::error(Err::invalid_argument, "spline grid needs >= 4 knots and hi > lo");
  return Status::success();
}

size_t Context::arena_bytes(const Model& m, const ContextOptions& opt) {
  if (!validate_options(m, opt).ok()) return 0;
  RunState s;
  return s.layout(m, to_run_options(m, opt), opt.n_ctx ? opt.n_ctx : m.cfg.context, batch_of(opt), opt.n_threads, nullptr);
}

Status Context::init(const Model* m, const ContextOptions& opt, void* arena, size_t arena_len, bool arena_is_zero) {
  if (m == nullptr || arena == nullptr) return Status::error(Err::invalid_argument, "model or arena is null");
  if (reinterpret_cast<uintptr_t>(arena) % 64 != 0)
    return Status::error(Err::misaligned, "context arena must be 64-byte aligned");
  QTF_TRY(validate_options(*m, opt));
  const int n_ctx = opt.n_ctx ? opt.n_ctx : m->cfg.context;
  const RunOptions run = to_run_options(*m, opt);
  RunState probe;
  size_t need = probe.layout(*m, run, n_ctx, batch_of(opt), opt.n_threads, nullptr);
  if (arena_len < need)
    return Status::error(Err::no_memory, "context arena is %lu bytes, needs %lu", (unsigned long)arena_len, (unsigned long)need);
  if (!arena_is_zero) std::memset(arena, 0, need);
  state_.layout(*m, run, n_ctx, batch_of(opt), opt.n_threads, arena);
  state_.prepare(*m);
  state_.workers = nullptr;
  model_ = m;
  run_ = run;
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
  // The memory slots' keys and values are constants of the model: computed once, kept as the prefix.
  n_prefix_ = m->cfg.memory_tokens;
  for (int p = 0; p < n_prefix_; p += state_.n_batch) {
    const int n = n_prefix_ - p < state_.n_batch ? n_prefix_ - p : state_.n_batch;
    forward(*m, run_, &state_, nullptr, n, p, state_.stats);
  }
  n_past_ = n_prefix_;
  n_last_ = 1;
  return Status::success();
}

Status Context::set_workers(const Workers* w) {
  if (w != nullptr && (w->threads < 1 || w->threads > state_.n_threads || (w->threads > 1 && w->run == nullptr)))
    return Status::error(Err::invalid_argument, "%d worker threads, but the context was made for %d",
                         w->threads, state_.n_threads);
  state_.workers = w;
  return Status::success();
}

Status Context::eval(int token) {
  const int32_t token32 = token;
  return eval(&token32, 1);
}

Status Context::eval(const int32_t* tokens, int n, bool logits) {
  if (model_ == nullptr) return Status::error(Err::invalid_argument, "context is not initialised");
  if (tokens == nullptr || n < 1 || n > state_.n_batch)
    return Status::error(Err::invalid_argument, "a block is 1..%d tokens (the context's batch size), not %d",
                         state_.n_batch, n);
  for (int i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= model_->cfg.vocab)
      return Status::error(Err::out_of_range, "token id %d is outside the vocabulary (0..%d)", (int)tokens[i],
                           model_->cfg.vocab - 1);
  if (n > state_.n_ctx - n_past_)
    return Status::error(Err::context_full, "context is full (%d tokens): reset it or use a longer context",
                         state_.n_ctx);
  forward(*model_, run_, &state_, tokens, n, n_past_, state_.stats, logits);
  n_past_ += n;
  n_last_ = n;
  return Status::success();
}

}  // namespace qtf
