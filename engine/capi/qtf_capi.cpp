// The C API over the C++ engine (host layer): handles own their memory; errors become codes plus a
// thread-local message.
#include "qtf.h"

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

#include "host/session.h"
#include "kernels/kernels.h"

using namespace qtf;

// A model lives until its caller has freed it and its last context and sampler are gone: qtf_model_free
// drops the caller's reference only, so a binding whose garbage collector frees the model before its
// contexts (Python's `with Model(...)`) cannot leave a context using freed memory.
struct qtf_model {
  host::LoadedModel loaded;
  mutable std::atomic<int> refs{1};      // the caller's, one per context and one per sampler
  mutable std::atomic<int> contexts{0};  // live contexts: an adapter may only be applied while there are none
};
struct qtf_context {
  host::HostContext host;
  const qtf_model* owner = nullptr;
  const host::LoadedModel* model = nullptr;
  ContextOptions opt;  // as created (qtf_context_set_threads re-creates the context with more threads)
  bool has_logits = false;
};
struct qtf_sampler {
  host::HostSampler host;
  const qtf_model* owner = nullptr;
  int vocab = 0;
};

namespace {

thread_local char g_error[256] = "";

qtf_status fail(qtf_status code, const char* msg) {
  std::snprintf(g_error, sizeof g_error, "%s", msg);
  return code;
}

// An options struct that starts with its own size (qtf_load_options, qtf_context_options) into *x, which
// holds the defaults: a caller built against an older (shorter) struct gets the defaults for the fields it
// lacks; a newer caller's extra fields are ones this library does not know, refused rather than ignored.
template <class T>
qtf_status read_options(const T* in, T* x, const char* message) {
  if (!in) return QTF_OK;
  if (in->struct_size < sizeof(uint32_t) || in->struct_size > sizeof *x) return fail(QTF_ERR_INVALID_ARGUMENT, message);
  std::memcpy(x, in, in->struct_size);
  x->struct_size = sizeof *x;
  return QTF_OK;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
qtf_status failf(qtf_status code, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(g_error, sizeof g_error, fmt, ap);
  va_end(ap);
  return code;
}

qtf_status from(const Status& st) {
  if (st.ok()) {
    g_error[0] = 0;
    return QTF_OK;
  }
  qtf_status code = QTF_ERR_BAD_MODEL;
  switch (st.code()) {
    case Err::invalid_argument: code = QTF_ERR_INVALID_ARGUMENT; break;
    case Err::io: code = QTF_ERR_IO; break;
    case Err::no_memory: code = QTF_ERR_NO_MEMORY; break;
    case Err::context_full: code = QTF_ERR_CONTEXT_FULL; break;
    case Err::out_of_range: code = QTF_ERR_OUT_OF_RANGE; break;
    default: break;
  }
  return fail(code, st.message());
}

void release(const qtf_model* m) {
  if (m && m->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete m;
}

template <typename T>
qtf_status make(T** out) {
  *out = new (std::nothrow) T();
  return *out ? QTF_OK : fail(QTF_ERR_NO_MEMORY, "out of memory");
}

}  // namespace

extern "C" {

const char* qtf_last_error(void) { return g_error; }

qtf_status qtf_set_simd(const char* name) {
  if (!name) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_set_simd: null argument");
  return from(kern::select_simd(name));
}

const char* qtf_simd(void) { return kern::simd_arch(); }

qtf_status qtf_model_load_file(const char* path, int use_mmap, qtf_model** out) {
  if (!path || !out) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_model_load_file: null argument");
  qtf_load_options o = qtf_load_default_options();
  o.use_mmap = use_mmap != 0;
  return qtf_model_load_file_with(path, &o, out);
}

qtf_load_options qtf_load_default_options(void) {
  qtf_load_options o{};
  o.struct_size = sizeof o;
  o.use_mmap = 1;
  return o;
}

qtf_status qtf_model_load_file_with(const char* path, const qtf_load_options* options, qtf_model** out) {
  if (!path || !out) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_model_load_file_with: null argument");
  *out = nullptr;
  qtf_load_options x = qtf_load_default_options();
  if (qtf_status s = read_options(options, &x, "qtf_model_load_file_with: options.struct_size is not a size this library knows"))
    return s;
  if ((x.use_mmap != 0 && x.use_mmap != 1) || (x.gguf_f32 != 0 && x.gguf_f32 != 1) ||
      (x.gguf_q4 != 0 && x.gguf_q4 != 1))
    return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_model_load_file_with: use_mmap, gguf_f32 and gguf_q4 must be 0 or 1");
  import::Options io;
  io.tokenizer_path = x.tokenizer_path;
  io.gguf_dequantize_f32 = x.gguf_f32 != 0;
  io.gguf_requantize_q4 = x.gguf_q4 != 0;
  qtf_model* m;
  if (qtf_status s = make(&m)) return s;
  qtf_status s = from(m->loaded.load_any(path, x.use_mmap != 0, io));
  if (s != QTF_OK) delete m;
  else *out = m;
  return s;
}

qtf_status qtf_model_load_memory(const void* data, size_t size, qtf_model** out) {
  if (!data || !out) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_model_load_memory: null argument");
  *out = nullptr;
  qtf_model* m;
  if (qtf_status s = make(&m)) return s;
  qtf_status s = from(m->loaded.load_memory(data, size));
  if (s != QTF_OK) delete m;
  else *out = m;
  return s;
}

void qtf_model_free(qtf_model* model) { release(model); }

qtf_status qtf_model_get_info(const qtf_model* model, qtf_model_info* out) {
  if (!model || !out) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_model_get_info: null argument");
  const Model& m = model->loaded.model();
  const ModelConfig& c = m.cfg;
  *out = qtf_model_info{c.vocab, c.d, c.n_layers, c.n_heads, c.d_ff, c.context, c.n_qubits, c.tensorized,
                        c.quantum_attention, c.adaptive_rank, m.total_params(), m.block_params()};
  return QTF_OK;
}

qtf_status qtf_model_apply_adapter_file(qtf_model* model, const char* path, int use_mmap) {
  if (!model || !path) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_model_apply_adapter_file: null argument");
  if (model->contexts.load() != 0)  // their plans and arenas were made for the model without it
    return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_model_apply_adapter_file: free the model's contexts first");
  return from(model->loaded.apply_adapter_file(path, use_mmap != 0));
}

qtf_status qtf_tokenize(const qtf_model* model, const char* text, size_t len, int32_t* tokens, int32_t max_tokens,
                        int32_t* n_tokens) {
  return qtf_tokenize_ex(model, text, len, 0, tokens, max_tokens, n_tokens);
}

qtf_status qtf_tokenize_ex(const qtf_model* model, const char* text, size_t len, uint32_t flags, int32_t* tokens,
                           int32_t max_tokens, int32_t* n_tokens) {
  const char* fn = flags ? "qtf_tokenize_ex" : "qtf_tokenize";
  if (!model || !n_tokens || (!text && len) || (!tokens && max_tokens > 0) || max_tokens < 0)
    return failf(QTF_ERR_INVALID_ARGUMENT, "%s: null or negative argument", fn);
  if (flags & ~(uint32_t)(QTF_TOKENIZE_ADD_SPECIAL | QTF_TOKENIZE_PARSE_SPECIAL))
    return failf(QTF_ERR_INVALID_ARGUMENT, "%s: unknown flags 0x%x (QTF_TOKENIZE_ADD_SPECIAL, QTF_TOKENIZE_PARSE_SPECIAL)",
                fn, (unsigned)flags);
  EncodeOptions opt;
  opt.add_special = (flags & QTF_TOKENIZE_ADD_SPECIAL) != 0;
  opt.parse_special = (flags & QTF_TOKENIZE_PARSE_SPECIAL) != 0;
  std::vector<int32_t> ids;  // the exact encoding, whatever max_tokens is (host::tokenize sizes it)
  Status st = host::tokenize(model->loaded.tokenizer(), text, len, opt, &ids);
  if (!st.ok()) return from(st);
  *n_tokens = (int32_t)ids.size();
  if (ids.size() > (size_t)max_tokens)
    return failf(QTF_ERR_OUT_OF_RANGE, "%s: the text needs more than max_tokens tokens", fn);
  if (!ids.empty()) std::memcpy(tokens, ids.data(), ids.size() * sizeof(int32_t));
  return QTF_OK;
}

qtf_status qtf_token_text(const qtf_model* model, int32_t token, const char** bytes, size_t* len) {
  if (!model || !bytes || !len) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_token_text: null argument");
  const Tokenizer& t = model->loaded.tokenizer();
  if (token < 0 || token >= t.vocab()) return fail(QTF_ERR_OUT_OF_RANGE, "qtf_token_text: token id out of range");
  format::Str s = t.token_text(token);
  *bytes = s.data;
  *len = s.size;
  return QTF_OK;
}

qtf_context_params qtf_context_default_params(void) {
  qtf_context_params p{};
  p.route = QTF_ROUTE_AUTO;
  p.act_path = QTF_ACT_FOURIER;
  return p;
}

qtf_context_options qtf_context_default_options(void) {
  qtf_context_options o{};
  o.struct_size = sizeof o;
  o.pack_tt = 1;
  o.attention_samples = -1;
  o.mem_budget = -1;
  return o;
}

qtf_status qtf_context_new(const qtf_model* model, const qtf_context_params* params, qtf_context** out) {
  return qtf_context_new_with(model, params, nullptr, out);
}

qtf_status qtf_context_new_with(const qtf_model* model, const qtf_context_params* params,
                                const qtf_context_options* options, qtf_context** out) {
  if (!model || !out) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_context_new: null argument");
  *out = nullptr;
  qtf_context_options x = qtf_context_default_options();
  if (qtf_status s = read_options(options, &x, "qtf_context_new: options.struct_size is not a size this library knows"))
    return s;
  if (x.n_batch < 0 || x.n_batch > kMaxBatch || x.attention_samples < -1 || x.mem_budget < -1 || x.mem_copy < 0 ||
      x.mem_copy > kCopyQ8 || x.act_quant < QTF_ACT_QUANT_AUTO || x.act_quant > QTF_ACT_QUANT_Q8)
    return fail(QTF_ERR_INVALID_ARGUMENT,
                "qtf_context_new: n_batch, attention_samples, mem_budget, mem_copy or act_quant out of range");
  qtf_context_params p = params ? *params : qtf_context_default_params();
  // A C caller may store any int in an enum field, and loading an out-of-range value as the C++ enum
  // type is undefined behaviour: check the raw ints.
  int route, act_path;
  static_assert(sizeof route == sizeof p.route && sizeof act_path == sizeof p.act_path, "enums are int-sized");
  std::memcpy(&route, &p.route, sizeof route);
  std::memcpy(&act_path, &p.act_path, sizeof act_path);
  if (route < QTF_ROUTE_AUTO || route > QTF_ROUTE_QUANTUM || act_path < QTF_ACT_QUANTUM || act_path > QTF_ACT_SPLINE)
    return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_context_new: route or act_path out of range");
  ContextOptions o;
  o.n_ctx = p.n_ctx;
  o.route = (RouteMode)p.route;
  o.fixed_rank = p.fixed_rank;
  o.act_path = (quantum::DaruanPath)p.act_path;
  o.override_theta = p.override_theta != 0;
  o.override_alpha = p.override_alpha != 0;
  o.theta = p.theta;
  o.alpha = p.alpha;
  o.n_batch = x.n_batch;
  o.pack_tt = x.pack_tt != 0;
  o.attention_samples = x.attention_samples;
  o.override_seed = x.override_seed != 0;
  o.attention_seed = x.attention_seed;
  o.mem_budget = x.mem_budget;
  o.mem_copy = (uint8_t)x.mem_copy;
  o.act_quant = x.act_quant == QTF_ACT_QUANT_OFF ? ActQuant::off : x.act_quant == QTF_ACT_QUANT_Q8 ? ActQuant::q8
                                                                                                  : ActQuant::automatic;
  qtf_context* c;
  if (qtf_status s = make(&c)) return s;
  qtf_status s = from(c->host.init(model->loaded, o));
  if (s != QTF_OK) {
    delete c;
    return s;
  }
  c->owner = model;
  c->model = &model->loaded;
  c->opt = o;
  ++model->refs;
  ++model->contexts;
  *out = c;
  return s;
}

qtf_status qtf_context_set_threads(qtf_context* ctx, int32_t n_threads) {
  if (!ctx) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_context_set_threads: null context");
  if (n_threads < 1 || n_threads > kMaxThreads)
    return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_context_set_threads: thread count out of range");
  ContextOptions o = ctx->opt;
  o.n_threads = n_threads;
  qtf_status s = from(ctx->host.init(*ctx->model, o));
  if (s != QTF_OK) {  // keep a usable context: back to the options it had
    from(ctx->host.init(*ctx->model, ctx->opt));
    return s;
  }
  ctx->opt = o;
  ctx->has_logits = false;
  return QTF_OK;
}

void qtf_context_free(qtf_context* ctx) {
  if (!ctx) return;
  const qtf_model* owner = ctx->owner;
  --owner->contexts;
  delete ctx;
  release(owner);
}

void qtf_context_reset(qtf_context* ctx) {
  if (!ctx) return;
  ctx->host.ctx().reset();
  ctx->has_logits = false;
}

int32_t qtf_context_n_past(const qtf_context* ctx) { return ctx ? ctx->host.ctx().n_past() : 0; }
int32_t qtf_context_n_ctx(const qtf_context* ctx) { return ctx ? ctx->host.ctx().n_ctx() : 0; }
int32_t qtf_context_n_prefix(const qtf_context* ctx) { return ctx ? ctx->host.ctx().n_prefix() : 0; }
size_t qtf_context_arena_bytes(const qtf_context* ctx) { return ctx ? ctx->host.arena_size() : 0; }

qtf_status qtf_decode(qtf_context* ctx, const int32_t* tokens, int32_t n_tokens) {
  if (!ctx || (!tokens && n_tokens) || n_tokens < 0)
    return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_decode: null or negative argument");
  Context& c = ctx->host.ctx();
  for (int32_t i = 0; i < n_tokens; ++i) {  // check all ids first: nothing is half-applied
    if (tokens[i] < 0 || tokens[i] >= c.model().cfg.vocab) {
      char msg[96];
      std::snprintf(msg, sizeof msg, "qtf_decode: token %d at index %d is outside the vocabulary", tokens[i], i);
      return fail(QTF_ERR_OUT_OF_RANGE, msg);
    }
  }
  if (n_tokens > c.n_ctx() - c.n_past())
    return fail(QTF_ERR_CONTEXT_FULL, "qtf_decode: the tokens do not fit in the context; reset it");
  if (n_tokens == 0) return QTF_OK;  // zero tokens: nothing runs, nothing changes
  ctx->has_logits = false;  // the blocks before the last skip the head: no logits until the last is done
  for (int32_t i = 0; i < n_tokens; i += c.n_batch()) {  // blocks of the context's batch size
    const int32_t n = n_tokens - i < c.n_batch() ? n_tokens - i : c.n_batch();
    qtf_status s = from(c.eval(tokens + i, n, i + n == n_tokens));
    if (s != QTF_OK) return s;
  }
  ctx->has_logits = true;
  return QTF_OK;
}

const float* qtf_get_logits(const qtf_context* ctx) {
  return ctx && ctx->has_logits ? ctx->host.ctx().logits() : nullptr;
}

qtf_status qtf_get_token_stats(const qtf_context* ctx, qtf_token_stats* out, qtf_layer_stats* layers,
                               int32_t max_layers) {
  if (!ctx || !out || (!layers && max_layers > 0))
    return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_get_token_stats: null argument");
  if (!ctx->has_logits) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_get_token_stats: nothing decoded yet");
  const TokenStats& s = ctx->host.ctx().stats();
  *out = qtf_token_stats{s.pos, s.token, s.n_layers, s.flops, s.qsim_flops, s.circuits};
  for (int l = 0; l < s.n_layers && l < max_layers; ++l)
    layers[l] = qtf_layer_stats{s.layer[l].S, s.layer[l].h, s.layer[l].quantum, s.layer[l].rank};
  return QTF_OK;
}

qtf_sampler_params qtf_sampler_default_params(void) {
  SamplerOptions o;
  return qtf_sampler_params{o.temperature, o.top_k, o.top_p, o.min_p, o.repeat_penalty, o.repeat_last_n, o.seed};
}

qtf_status qtf_sampler_set_rng(qtf_sampler* sampler, qtf_rng rng) {
  if (!sampler) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_sampler_set_rng: null sampler");
  if (!sampler->host.get().set_rng(rng == QTF_RNG_RUNC ? Rng::runc : rng == QTF_RNG_SPLITMIX64 ? Rng::splitmix64 : (Rng)255))
    return failf(QTF_ERR_INVALID_ARGUMENT, "qtf_sampler_set_rng: unknown generator %d (QTF_RNG_SPLITMIX64, QTF_RNG_RUNC)",
                (int)rng);
  return QTF_OK;
}

qtf_status qtf_sampler_new(const qtf_model* model, const qtf_sampler_params* params, qtf_sampler** out) {
  if (!model || !out) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_sampler_new: null argument");
  *out = nullptr;
  qtf_sampler_params p = params ? *params : qtf_sampler_default_params();
  SamplerOptions o;
  o.temperature = p.temperature;
  o.top_k = p.top_k;
  o.top_p = p.top_p;
  o.min_p = p.min_p;
  o.repeat_penalty = p.repeat_penalty;
  o.repeat_last_n = p.repeat_last_n;
  o.seed = p.seed;
  qtf_sampler* s;
  if (qtf_status r = make(&s)) return r;
  s->vocab = model->loaded.model().cfg.vocab;
  qtf_status r = from(s->host.init(s->vocab, o));
  if (r != QTF_OK) {
    delete s;
    return r;
  }
  s->owner = model;
  ++model->refs;
  *out = s;
  return r;
}

void qtf_sampler_free(qtf_sampler* sampler) {
  if (!sampler) return;
  const qtf_model* owner = sampler->owner;
  delete sampler;
  release(owner);
}

qtf_status qtf_sample(qtf_sampler* sampler, const qtf_context* ctx, int32_t* token) {
  if (!sampler || !ctx || !token) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_sample: null argument");
  if (!ctx->has_logits) return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_sample: decode a token first");
  if (ctx->host.ctx().model().cfg.vocab != sampler->vocab)
    return fail(QTF_ERR_INVALID_ARGUMENT, "qtf_sample: sampler and context belong to different models");
  const Status finite = check_logits(ctx->host.ctx().logits(), sampler->vocab);
  if (!finite.ok()) {
    char msg[256];
    std::snprintf(msg, sizeof msg, "qtf_sample: %s", finite.message());
    return fail(QTF_ERR_BAD_MODEL, msg);
  }
  *token = sampler->host.get().sample(ctx->host.ctx().logits());
  sampler->host.get().accept(*token);
  return QTF_OK;
}

}  // extern "C"
