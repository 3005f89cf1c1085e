// Model loading: configuration from metadata, every tensor bound and its shape checked against it.
#include "model/model.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>

namespace qtf {
namespace {

using format::DType;
using format::ModelFile;
using format::TensorInfo;

size_t round16(size_t n) { return (n + 15) / 16 * 16; }

Status get_int(const ModelFile& f, const char* key, int lo, int hi, int* out) {
  int64_t v;
  QTF_TRY(f.get_i64(key, &v));
  if (v < lo || v > hi)
    return Status::error(Err::bad_value, "metadata '%s' = %lld is outside %d..%d", key, (long long)v, lo, hi);
  *out = (int)v;
  return Status::success();
}

Status get_flag(const ModelFile& f, const char* key, bool* out) {
  int v = 0;
  QTF_TRY(get_int(f, key, 0, 1, &v));
  *out = v != 0;
  return Status::success();
}

Status get_real(const ModelFile& f, const char* key, float* out) {
  double v;
  QTF_TRY(f.get_f64(key, &v));
  if (!std::isfinite(v)) return Status::error(Err::bad_value, "metadata '%s' is not finite", key);
  *out = (float)v;
  return Status::success();
}

Status get_factors(const ModelFile& f, const char* key, int total, int* K, int* factors) {
  format::MetaEntry e;
  if (!f.find_meta(key, &e)) return Status::error(Err::missing, "metadata key '%s' is missing", key);
  if (e.type != format::MetaType::i64_array || e.count < 1 || e.count > (uint32_t)kMaxTTFactors)
    return Status::error(Err::bad_value, "metadata '%s' must be an i64[] of 1..%d factors", key, kMaxTTFactors);
  int64_t prod = 1;
  for (uint32_t i = 0; i < e.count; ++i) {
    int64_t v;
    e.i64_at(i, &v);
    if (v < 1 || v > 65536) return Status::error(Err::bad_value, "metadata '%s': factor %lld out of range", key, (long long)v);
    factors[i] = (int)v;
    prod *= v;
  }
  if (prod != total)
    return Status::error(Err::bad_value, "metadata '%s': factors multiply to %lld, expected %d", key, (long long)prod, total);
  *K = (int)e.count;
  return Status::success();
}

// An optional string option: one of `names` (index into *out), or `def` when the key is absent.
Status get_choice(const ModelFile& f, const char* key, const char* const* names, int n, int def, int* out) {
  format::MetaEntry e;
  if (!f.find_meta(key, &e)) {
    *out = def;
    return Status::success();
  }
  format::Str v;
  QTF_TRY(f.get_str(key, &v));
  for (int i = 0; i < n; ++i)
    if (v.equals(names[i])) {
      *out = i;
      return Status::success();
    }
  return Status::error(Err::bad_value, "metadata '%s' = '%.*s' is not one of %s%s%s%s%s", key, (int)v.size, v.data,
                       names[0], n > 1 ? ", " : "", n > 1 ? names[1] : "", n > 2 ? ", " : "", n > 2 ? names[2] : "");
}

// The block options of docs/llama.md (all optional; the defaults are the Q-TensorFormer block).
Status parse_block_options(const ModelFile& f, ModelConfig* c) {
  static const char* const norms[] = {"layernorm", "rmsnorm"};
  static const char* const positions[] = {"learned", "rotary"};
  int v = 0;
  QTF_TRY(get_choice(f, "model.norm", norms, 2, 0, &v));
  c->norm = (NormKind)v;
  QTF_TRY(get_choice(f, "model.positions", positions, 2, 0, &v));
  c->positions = (PosKind)v;
  double theta = 10000.0;
  QTF_TRY(f.get_f64_or("model.rope_theta", &theta));
  if (!(theta > 1.0 && theta < 1e12))
    return Status::error(Err::bad_value, "model.rope_theta = %g is not in (1, 1e12)", theta);
  c->rope_theta = (float)theta;
  if (c->positions == PosKind::rotary && c->head_dim() % 2 != 0)
    return Status::error(Err::bad_value, "rotary positions need an even head dimension (d_model %d / n_heads %d)", c->d,
                         c->n_heads);
  int64_t kv = c->n_heads;
  QTF_TRY(f.get_i64_or("model.n_kv_heads", &kv));
  if (kv < 1 || kv > c->n_heads || c->n_heads % kv != 0)
    return Status::error(Err::bad_value, "model.n_kv_heads = %lld must divide n_heads (%d)", (long long)kv, c->n_heads);
  c->n_kv_heads = (int)kv;
  if (c->quantum_attention && c->n_kv_heads != c->n_heads)
    return Status::error(Err::unsupported, "quantum attention with grouped-query attention (n_kv_heads %d < n_heads %d)",
                         c->n_kv_heads, c->n_heads);
  int64_t bias = 1;
  QTF_TRY(f.get_i64_or("model.linear_bias", &bias));
  if (bias != 0 && bias != 1)
    return Status::error(Err::bad_value, "metadata 'model.linear_bias' = %lld is outside 0..1", (long long)bias);
  c->linear_bias = bias != 0;
  if (c->tensorized) {
    format::MetaEntry e;
    if (f.find_meta("model.tt.kv_factors", &e)) {
      int K = 0;
      QTF_TRY(get_factors(f, "model.tt.kv_factors", c->kv_dim(), &K, c->kv_factors));
      if (K != c->tt_K)
        return Status::error(Err::bad_value, "model.tt.kv_factors has %d factors but model.tt.d_factors has %d", K, c->tt_K);
    } else if (c->kv_dim() == c->d) {
      for (int k = 0; k < c->tt_K; ++k) c->kv_factors[k] = c->d_factors[k];
    } else {
      return Status::error(Err::missing, "metadata key 'model.tt.kv_factors' is missing (kv_dim %d != d_model %d)",
                           c->kv_dim(), c->d);
    }
  }
  return Status::success();
}

// The QLLM / Q-Transformers options of docs/qllm.md (all optional).
Status parse_qllm_options(const ModelFile& f, ModelConfig* c) {
  int64_t v = 0;
  QTF_TRY(f.get_i64_or("model.phase_rotation", &v));
  if (v != 0 && v != 1)
    return Status::error(Err::bad_value, "metadata 'model.phase_rotation' = %lld is outside 0..1", (long long)v);
  c->phase_rotation = v != 0;
  v = 0;
  QTF_TRY(f.get_i64_or("model.memory_tokens", &v));
  if (v < 0 || v >= c->context)
    return Status::error(Err::bad_value, "model.memory_tokens = %lld must be in 0..%d (below the context)", (long long)v,
                         c->context - 1);
  c->memory_tokens = (int)v;
  double alpha = 0;
  QTF_TRY(f.get_f64_or("model.lora_alpha", &alpha));
  if (!(alpha >= 0 && alpha < 1e6))
    return Status::error(Err::bad_value, "model.lora_alpha = %g is not in [0, 1e6)", alpha);
  c->lora_alpha = (float)alpha;
  static const char* const kinds[] = {"softmax", "quantum_kernel", "sampled"};
  int kind = 0;
  QTF_TRY(get_choice(f, "model.attention", kinds, 3, c->quantum_attention ? 1 : 0, &kind));
  c->attention = (AttnKind)kind;
  if (c->attention == AttnKind::quantum_kernel && !c->quantum_attention)
    return Status::error(Err::bad_value, "model.attention = quantum_kernel needs quantum parts and model.quantum_attention = 1");
  if (c->attention != AttnKind::quantum_kernel && c->quantum_attention)
    return Status::error(Err::bad_value, "model.quantum_attention = 1 but model.attention is '%s'", kinds[kind]);
  v = 64;
  QTF_TRY(f.get_i64_or("model.attention_samples", &v));
  if (v < 1 || v > 65536)
    return Status::error(Err::bad_value, "model.attention_samples = %lld is outside 1..65536", (long long)v);
  c->attention_samples = (int)v;
  v = 0;
  QTF_TRY(f.get_i64_or("model.attention_seed", &v));
  if (v < 0) return Status::error(Err::bad_value, "model.attention_seed = %lld is negative", (long long)v);
  c->attention_seed = (uint64_t)v;
  return Status::success();
}

Status parse_config(const ModelFile& f, ModelConfig* c) {
  format::Str arch;
  QTF_TRY(f.get_str("qtf.arch", &arch));
  if (!arch.equals("qtensorformer"))
    return Status::error(Err::unsupported, "model architecture '%.*s' is not supported (expected qtensorformer)",
                         (int)arch.size, arch.data);
  QTF_TRY(get_int(f, "model.vocab_size", 1, 1 << 20, &c->vocab));
  QTF_TRY(get_int(f, "model.d_model", 1, 1 << 14, &c->d));
  QTF_TRY(get_int(f, "model.n_layers", 1, kMaxLayers, &c->n_layers));
  QTF_TRY(get_int(f, "model.n_heads", 1, kMaxHeads, &c->n_heads));
  QTF_TRY(get_int(f, "model.d_ff", 1, 1 << 16, &c->d_ff));
  QTF_TRY(get_int(f, "model.context", 1, 1 << 16, &c->context));
  if (c->d % c->n_heads != 0)
    return Status::error(Err::bad_value, "n_heads %d does not divide d_model %d", c->n_heads, c->d);
  QTF_TRY(get_flag(f, "model.tensorized", &c->tensorized));
  QTF_TRY(get_int(f, "model.n_qubits", 0, quantum::kMaxQubits, &c->n_qubits));
  if (c->n_qubits % 2 != 0)
    return Status::error(Err::bad_value, "model.n_qubits = %d must be even (0 or 2..8)", c->n_qubits);
  QTF_TRY(get_flag(f, "model.tied_embeddings", &c->tied_embeddings));
  double eps = 1e-5;
  QTF_TRY(f.get_f64_or("model.ln_eps", &eps));
  if (!(eps > 0 && eps < 1)) return Status::error(Err::bad_value, "model.ln_eps = %g is not in (0, 1)", eps);
  c->ln_eps = (float)eps;

  format::Str act;
  format::MetaEntry e;
  QTF_TRY(f.get_str("model.activation", &act));
  if (act.equals("gelu")) c->activation = Activation::gelu;
  else if (act.equals("daruan")) c->activation = Activation::daruan;
  else if (act.equals("swiglu")) c->activation = Activation::swiglu;
  else return Status::error(Err::bad_value, "model.activation '%.*s' is not gelu, daruan or swiglu", (int)act.size, act.data);
  if (c->activation == Activation::daruan) QTF_TRY(get_int(f, "model.daruan_depth", 1, 8, &c->daruan_depth));

  if (c->tensorized) {
    int K2 = 0;
    QTF_TRY(get_factors(f, "model.tt.d_factors", c->d, &c->tt_K, c->d_factors));
    QTF_TRY(get_factors(f, "model.tt.ff_factors", c->d_ff, &K2, c->ff_factors));
    if (K2 != c->tt_K)
      return Status::error(Err::bad_value, "model.tt.d_factors has %d factors but model.tt.ff_factors has %d", c->tt_K, K2);
    QTF_TRY(get_int(f, "model.tt.rank", 1, 4096, &c->tt_rank));
  } else if (f.find_meta("model.tt.rank", &e)) {  // a dense model reports its nominal rank
    QTF_TRY(get_int(f, "model.tt.rank", 0, 4096, &c->tt_rank));
  }
  if (c->has_encoder()) {
    QTF_TRY(get_int(f, "model.n_qlayers", 0, 64, &c->n_qlayers));
    QTF_TRY(get_flag(f, "model.adaptive_rank", &c->adaptive_rank));
    QTF_TRY(get_flag(f, "model.quantum_attention", &c->quantum_attention));
    QTF_TRY(get_real(f, "model.alpha", &c->alpha));
    QTF_TRY(get_real(f, "model.theta", &c->theta));
    QTF_TRY(get_int(f, "model.r_min", 1, 4096, &c->r_min));
    QTF_TRY(get_int(f, "model.r_max", c->r_min, 4096, &c->r_max));
  }
  QTF_TRY(parse_block_options(f, c));
  return parse_qllm_options(f, c);
}

// Binds tensors by name, checking shapes. Vectors and the quantum parts are f32 (a tensor stored
// otherwise is converted into the conversion buffer); matrices are read in place. `sizing`: only count
// the conversion bytes (Model::convert_bytes), binding nothing.
struct Binder {
  const ModelFile& file;
  uint8_t* conv;
  size_t conv_len, conv_used;
  bool sizing;

  Status find(const char* name, int ndim, const int64_t* shape, TensorInfo* t) {
    if (!file.find_tensor(name, t)) return Status::error(Err::missing, "tensor '%s' is missing", name);
    bool match = t->ndim == ndim;
    for (int i = 0; match && i < ndim; ++i) match = (int64_t)t->dims[i] == shape[i];
    if (!match) {
      char want[64], got[64];
      int a = 0, b = 0;
      for (int i = 0; i < ndim; ++i) a += std::snprintf(want + a, sizeof want - a, i ? "x%lld" : "%lld", (long long)shape[i]);
      for (int i = 0; i < t->ndim; ++i) b += std::snprintf(got + b, sizeof got - b, i ? "x%llu" : "%llu", (unsigned long long)t->dims[i]);
      return Status::error(Err::bad_shape, "tensor '%s' has shape %s, the config needs %s", name, got, want);
    }
    return Status::success();
  }

  // f32 in place, anything else converted.
  Status as_f32(const char* name, const TensorInfo& t, const float** out) {
    if (t.dtype == DType::f32) {
      if (reinterpret_cast<uintptr_t>(t.data) % alignof(float) != 0)
        return Status::error(Err::misaligned, "model buffer is not aligned for in-place use (tensor '%s')", name);
      *out = static_cast<const float*>(t.data);
      return Status::success();
    }
    size_t need = round16(t.elements() * sizeof(float));
    if (sizing) {
      conv_used += need;
      *out = nullptr;
      return Status::success();
    }
    if (conv == nullptr || conv_len - conv_used < need)
      return Status::error(Err::no_memory, "no conversion buffer for %s tensor '%s'", format::dtype_name(t.dtype), name);
    float* dst = reinterpret_cast<float*>(conv + conv_used);
    const uint8_t* src = static_cast<const uint8_t*>(t.values);
    const uint64_t cols = t.dims[t.ndim - 1];
    if (t.dtype == DType::q4) {  // row by row, as an embedding lookup reads it
      const Weights w = Weights::q4(t.values, (int64_t)cols);
      for (uint64_t r = 0; r < t.rows(); ++r) weights_row(w, (int64_t)cols, (int64_t)r, false, dst + r * cols);
      conv_used += need;
      *out = dst;
      return Status::success();
    }
    if (t.dtype == DType::q3) {
      for (uint64_t r = 0; r < t.rows(); ++r)
        for (uint64_t j = 0; j < cols; ++j) dst[r * cols + j] = q3_value(src + r * q3_row_bytes((int64_t)cols), (int64_t)j);
      conv_used += need;
      *out = dst;
      return Status::success();
    }
    if (t.dtype == DType::q4s || t.dtype == DType::q3s) {  // block by block, each as its q4 block
      const uint64_t nb = (cols + kQ4Block - 1) / kQ4Block;
      for (uint64_t i = 0; i < t.rows() * nb; ++i) {
        uint8_t q4[kQ4BlockBytes];
        sblocks_to_q4(src, t.dtype == DType::q3s, i, 1, q4);
        const uint64_t c0 = i % nb * kQ4Block;
        for (uint64_t j = c0; j < cols && j < c0 + kQ4Block; ++j) dst[i / nb * cols + j] = q4_value(q4, (int64_t)(j - c0));
      }
      conv_used += need;
      *out = dst;
      return Status::success();
    }
    for (uint64_t i = 0; i < t.elements(); ++i) {
      if (t.dtype == DType::f16) dst[i] = format::f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
      else if (t.dtype == DType::i8) dst[i] = t.scale * (float)(int8_t)src[i];
      else dst[i] = t.row_scales[i / cols] * (float)(int8_t)src[i];
    }
    conv_used += need;
    *out = dst;
    return Status::success();
  }

  // A q3, q4s or q3s matrix expanded to the q4 blocks of the same values in the conversion buffer
  // (kernels.h: their values are q4's), so every q4 kernel runs it: 18 resident bytes per block.
  Status as_q4(const char* name, const TensorInfo& t, Weights* out) {
    const int64_t cols = (int64_t)t.dims[t.ndim - 1];
    const size_t need = round16((size_t)t.rows() * (size_t)q4_row_bytes(cols));
    if (sizing) {
      conv_used += need;
      *out = Weights::q4(nullptr, cols);
      return Status::success();
    }
    if (conv == nullptr || conv_len - conv_used < need)
      return Status::error(Err::no_memory, "no conversion buffer for %s tensor '%s'", format::dtype_name(t.dtype), name);
    uint8_t* dst = conv + conv_used;
    const uint8_t* src = static_cast<const uint8_t*>(t.values);
    if (t.dtype == DType::q3)
      for (uint64_t r = 0; r < t.rows(); ++r) q3_row_to_q4(src + r * q3_row_bytes(cols), cols, dst + r * q4_row_bytes(cols));
    else
      sblocks_to_q4(src, t.dtype == DType::q3s, 0, t.rows() * (uint64_t)((cols + kQ4Block - 1) / kQ4Block), dst);
    conv_used += need;
    *out = Weights::q4(dst, cols);
    return Status::success();
  }

  Status get(const char* name, int ndim, const int64_t* shape, const float** out) {
    TensorInfo t;
    QTF_TRY(find(name, ndim, shape, &t));
    return as_f32(name, t, out);
  }
  Status get1(const char* name, int64_t a, const float** out) { return get(name, 1, &a, out); }
  Status get2(const char* name, int64_t a, int64_t b, const float** out) {
    int64_t s[2] = {a, b};
    return get(name, 2, s, out);
  }
  Status get3(const char* name, int64_t a, int64_t b, int64_t c, const float** out) {
    int64_t s[3] = {a, b, c};
    return get(name, 3, s, out);
  }
  Status get4(const char* name, int64_t a, int64_t b, int64_t c, int64_t d, const float** out) {
    int64_t s[4] = {a, b, c, d};
    return get(name, 4, s, out);
  }

  // A matrix read in place: f32, f16, i8 (one scale), q8 (a scale per row) or q4 (blocks). A TT core
  // (`core`) has no per-row scales or blocks in the kernels: a q8, q4, q3, q4s or q3s core is converted
  // to f32; a q3, q4s or q3s matrix to q4 blocks (as_q4).
  Status weights(const char* name, int ndim, const int64_t* shape, bool core, Weights* out) {
    TensorInfo t;
    QTF_TRY(find(name, ndim, shape, &t));
    const size_t align = t.dtype == DType::f32 ? 4 : t.dtype == DType::f16 ? 2 : 1;
    if (reinterpret_cast<uintptr_t>(t.values) % align != 0)
      return Status::error(Err::misaligned, "model buffer is not aligned for in-place use (tensor '%s')", name);
    switch (t.dtype) {
      case DType::f32: *out = Weights(WType::f32, t.values, nullptr, 1.f); return Status::success();
      case DType::f16: *out = Weights(WType::f16, t.values, nullptr, 1.f); return Status::success();
      case DType::i8: *out = Weights(WType::i8, t.values, nullptr, t.scale); return Status::success();
      case DType::q8:
        if (!core) {
          *out = Weights(WType::i8, t.values, t.row_scales, 1.f);
          return Status::success();
        }
        break;
      case DType::q4:
        if (!core) {
          *out = Weights::q4(t.values, (int64_t)t.dims[t.ndim - 1]);
          return Status::success();
        }
        break;
      case DType::q3:
      case DType::q4s:
      case DType::q3s:
        if (!core) return as_q4(name, t, out);
        break;
    }
    const float* f = nullptr;
    QTF_TRY(as_f32(name, t, &f));
    *out = Weights(f);
    return Status::success();
  }
  Status matrix(const char* name, int64_t rows, int64_t cols, Weights* out) {
    int64_t s[2] = {rows, cols};
    return weights(name, 2, s, false, out);
  }
};

// The optional LoRA pair `prefix.lora_a` [r, cols], `prefix.lora_b` [rows, r] of a linear, from `file`
// (the model's own or an adapter file); scale alpha / r. Both or neither; r from the shapes.
Status bind_lora(const ModelFile& file, const char* prefix, float alpha, Linear* lin) {
  char an[96], bn[96];
  std::snprintf(an, sizeof an, "%s.lora_a", prefix);
  std::snprintf(bn, sizeof bn, "%s.lora_b", prefix);
  TensorInfo a, b;
  const bool has_a = file.find_tensor(an, &a), has_b = file.find_tensor(bn, &b);
  if (!has_a && !has_b) return Status::success();
  if (has_a != has_b) return Status::error(Err::missing, "LoRA tensor '%s' has no partner '%s'", has_a ? an : bn, has_a ? bn : an);
  if (!(alpha > 0)) return Status::error(Err::missing, "LoRA tensors '%s' need a LoRA alpha > 0 (model.lora_alpha)", an);
  if (lin->lora_a != nullptr) return Status::error(Err::bad_value, "linear '%s' already has a LoRA adapter", prefix);
  const int64_t r = a.ndim == 2 ? (int64_t)a.dims[0] : 0;
  const int64_t most = lin->rows < lin->cols ? lin->rows : lin->cols;
  if (a.ndim != 2 || b.ndim != 2 || r < 1 || r > most || (int64_t)a.dims[1] != lin->cols ||
      (int64_t)b.dims[0] != lin->rows || (int64_t)b.dims[1] != r)
    return Status::error(Err::bad_shape, "LoRA tensors '%s' / '%s' do not fit the %d x %d linear (need [r, %d] and [%d, r], "
                         "1 <= r <= %lld)", an, bn, lin->rows, lin->cols, lin->cols, lin->rows, (long long)most);
  if (a.dtype != DType::f32 || b.dtype != DType::f32)
    return Status::error(Err::unsupported, "LoRA tensors '%s' / '%s' must be f32", an, bn);
  if (reinterpret_cast<uintptr_t>(a.data) % alignof(float) != 0 || reinterpret_cast<uintptr_t>(b.data) % alignof(float) != 0)
    return Status::error(Err::misaligned, "LoRA tensor '%s' is not aligned for in-place use", an);
  lin->lora_a = static_cast<const float*>(a.data);
  lin->lora_b = static_cast<const float*>(b.data);
  lin->lora_rank = (int)r;
  lin->lora_scale = alpha / (float)r;
  return Status::success();
}

// A linear `prefix` mapping cols -> rows: TT cores `prefix.core.k` or dense `prefix.w`, bias `prefix.b`.
Status bind_linear(Binder* b, const ModelConfig& c, const char* prefix, int rows, const int* out_f, int cols,
                   const int* in_f, Linear* lin) {
  char name[96];
  lin->rows = rows;
  lin->cols = cols;
  lin->tt = c.tensorized;
  std::snprintf(name, sizeof name, "%s.b", prefix);
  const float* bias = nullptr;
  if (c.linear_bias) QTF_TRY(b->get1(name, rows, &bias));
  else if (TensorInfo t; b->file.find_tensor(name, &t))
    return Status::error(Err::bad_value, "tensor '%s' is present but model.linear_bias is 0", name);
  if (!c.tensorized) {
    lin->dense.rows = rows;
    lin->dense.cols = cols;
    lin->dense.bias = bias;
    std::snprintf(name, sizeof name, "%s.w", prefix);
    return b->matrix(name, rows, cols, &lin->dense.w);
  }
  TTShape& s = lin->tt_w.shape;
  s.K = c.tt_K;
  s.r[0] = 1;
  for (int k = 0; k < c.tt_K; ++k) {
    s.m[k] = out_f[k];
    s.n[k] = in_f[k];
    std::snprintf(name, sizeof name, "%s.core.%d", prefix, k);
    TensorInfo t;
    if (!b->file.find_tensor(name, &t)) return Status::error(Err::missing, "tensor '%s' is missing", name);
    if (t.ndim != 4) return Status::error(Err::bad_shape, "TT core '%s' must have 4 dimensions", name);
    int64_t right = k + 1 == c.tt_K ? 1 : (int64_t)t.dims[3];
    if (right < 1 || right > c.tt_rank)
      return Status::error(Err::bad_shape, "TT core '%s' has bond rank %lld, outside 1..model.tt.rank (%d)", name,
                           (long long)t.dims[3], c.tt_rank);
    const int64_t shape[4] = {s.r[k], s.m[k], s.n[k], right};
    QTF_TRY(b->weights(name, 4, shape, true, &lin->tt_w.cores[k]));
    s.r[k + 1] = (int)right;
  }
  lin->tt_w.bias = bias;
  return Status::success();
}

}  // namespace

int64_t Linear::params() const {
  const bool has_bias = tt ? tt_w.bias != nullptr : dense.bias != nullptr;
  return (has_bias ? rows : 0) + (tt ? tt_w.shape.params() : (int64_t)rows * cols);
}

size_t Model::convert_bytes(const format::ModelFile& f) {
  size_t used = 0;
  const bool ok = bind(f, nullptr, 0, true, &used).ok();  // a file that does not bind: load() says why
  cfg = ModelConfig();
  return ok ? used : 0;
}

Status Model::load(const format::ModelFile& f, void* convert_buf, size_t convert_len) {
  size_t used = 0;
  return bind(f, convert_buf, convert_len, false, &used);
}

Status Model::bind(const format::ModelFile& f, void* convert_buf, size_t convert_len, bool sizing, size_t* used) {
  if (!f.is_open()) return Status::error(Err::invalid_argument, "model file is not open (verify it first)");
  // Reset field by field: a `*this = Model()` would put a whole Model (tens of KB) on the stack.
  cfg = ModelConfig();
  tok_emb = pos_emb = head_w = Weights();
  lnf_w = lnf_b = phase = memory = nullptr;
  lora_linears = 0;
  for (Layer& layer : layers) layer = Layer();
  file = f;
  QTF_TRY(parse_config(f, &cfg));
  const ModelConfig& c = cfg;
  Binder b{f, static_cast<uint8_t*>(convert_buf), convert_len, 0, sizing};
  const bool ln = c.norm == NormKind::layernorm;  // rmsnorm has a gain and no shift
  QTF_TRY(b.matrix("tok_emb", c.vocab, c.d, &tok_emb));
  if (c.positions == PosKind::learned) QTF_TRY(b.matrix("pos_emb", c.context, c.d, &pos_emb));
  QTF_TRY(b.get1("lnf.w", c.d, &lnf_w));
  if (ln) QTF_TRY(b.get1("lnf.b", c.d, &lnf_b));
  if (c.tied_embeddings) head_w = tok_emb;
  else QTF_TRY(b.matrix("head.w", c.vocab, c.d, &head_w));
  TensorInfo opt_t;
  if (c.phase_rotation) QTF_TRY(b.get1("phase", c.d, &phase));
  else if (f.find_tensor("phase", &opt_t))
    return Status::error(Err::bad_value, "tensor 'phase' is present but model.phase_rotation is 0");
  if (c.memory_tokens > 0) QTF_TRY(b.get2("memory", c.memory_tokens, c.d, &memory));
  else if (f.find_tensor("memory", &opt_t))
    return Status::error(Err::bad_value, "tensor 'memory' is present but model.memory_tokens is 0");

  const int Q = c.n_qubits, H = c.n_heads, hd = c.head_dim();
  char name[96], prefix[64];
  for (int l = 0; l < c.n_layers; ++l) {
    Layer& L = layers[l];
#define QTF_NAME(fmt) (std::snprintf(name, sizeof name, "blk.%d." fmt, l), name)
    QTF_TRY(b.get1(QTF_NAME("ln1.w"), c.d, &L.ln1_w));
    if (ln) QTF_TRY(b.get1(QTF_NAME("ln1.b"), c.d, &L.ln1_b));
    QTF_TRY(b.get1(QTF_NAME("ln2.w"), c.d, &L.ln2_w));
    if (ln) QTF_TRY(b.get1(QTF_NAME("ln2.b"), c.d, &L.ln2_b));
    if (c.has_encoder()) {
      QTF_TRY(b.get2(QTF_NAME("enc.w"), Q, c.d, &L.enc_w));
      QTF_TRY(b.get1(QTF_NAME("enc.b"), Q, &L.enc_b));
      if (c.n_qlayers > 0) QTF_TRY(b.get3(QTF_NAME("qparams"), c.n_qlayers, Q, 3, &L.qparams));
      QTF_TRY(b.get2(QTF_NAME("qout.w"), c.d, Q, &L.qout_w));
      QTF_TRY(b.get1(QTF_NAME("qout.b"), c.d, &L.qout_b));
      if (c.quantum_attention) {
        QTF_TRY(b.get3(QTF_NAME("qattn.w_qk"), H, Q, hd, &L.qk_w));
        QTF_TRY(b.get4(QTF_NAME("qattn.var"), H, 2, Q, 3, &L.qvar));
        QTF_TRY(b.get1(QTF_NAME("qattn.beta"), H, &L.beta));
      }
    }
    struct { const char* name; Linear* lin; int rows; const int* out_f; int cols; const int* in_f; } linears[] = {
        {"attn.q", &L.q, c.d, c.d_factors, c.d, c.d_factors},
        {"attn.k", &L.k, c.kv_dim(), c.kv_factors, c.d, c.d_factors},
        {"attn.v", &L.v, c.kv_dim(), c.kv_factors, c.d, c.d_factors},
        {"attn.o", &L.o, c.d, c.d_factors, c.d, c.d_factors},
        {"ffn.gate", &L.gate, c.d_ff, c.ff_factors, c.d, c.d_factors},
        {"ffn.up", &L.up, c.d_ff, c.ff_factors, c.d, c.d_factors},
        {"ffn.down", &L.down, c.d, c.d_factors, c.d_ff, c.ff_factors},
    };
    for (auto& li : linears) {
      if (li.lin == &L.gate && c.activation != Activation::swiglu) continue;
      std::snprintf(prefix, sizeof prefix, "blk.%d.%s", l, li.name);
      QTF_TRY(bind_linear(&b, c, prefix, li.rows, li.out_f, li.cols, li.in_f, li.lin));
      QTF_TRY(bind_lora(f, prefix, c.lora_alpha, li.lin));
      if (li.lin->lora_a) ++lora_linears;
    }
    if (c.activation == Activation::daruan) {
      quantum::DaruanParams& p = L.daruan;
      p.channels = c.d_ff;
      p.depth = c.daruan_depth;
      QTF_TRY(b.get3(QTF_NAME("ffn.daruan.theta"), c.d_ff, c.daruan_depth + 1, 2, &p.theta));
      QTF_TRY(b.get2(QTF_NAME("ffn.daruan.w"), c.d_ff, c.daruan_depth, &p.w));
      QTF_TRY(b.get2(QTF_NAME("ffn.daruan.b"), c.d_ff, c.daruan_depth, &p.b));
      QTF_TRY(b.get1(QTF_NAME("ffn.daruan.a"), c.d_ff, &p.a));
      QTF_TRY(b.get1(QTF_NAME("ffn.daruan.e"), c.d_ff, &p.e));
      QTF_TRY(b.get1(QTF_NAME("ffn.daruan.s"), c.d_ff, &p.s));
    }
#undef QTF_NAME
  }
  *used = b.conv_used;
  return Status::success();
}

namespace {

// Binds every LoRA pair of adapter `a` to m's linears; `done` lists the linears bound so far (so a
// failure can be undone).
Status bind_adapter(Model* m, const ModelFile& a, float alpha, Linear** done, int* n_done) {
  static const char* const names[] = {"attn.q", "attn.k", "attn.v", "attn.o", "ffn.gate", "ffn.up", "ffn.down"};
  uint64_t cur = 0;
  TensorInfo t;
  while (a.next_tensor(&cur, &t)) {  // every tensor must be blk.{l}.{linear}.lora_a|lora_b of this model
    char name[272], rest[272] = {0};
    std::snprintf(name, sizeof name, "%.*s", (int)t.name.size, t.name.data);
    int l = -1;
    if (std::sscanf(name, "blk.%d.%271s", &l, rest) != 2 || l < 0 || l >= m->cfg.n_layers)
      return Status::error(Err::bad_value, "adapter tensor '%s' names no layer of this model (0..%d)", name,
                           m->cfg.n_layers - 1);
    const size_t n = std::strlen(rest);
    const bool is_a = n > 7 && std::strcmp(rest + n - 7, ".lora_a") == 0;
    const bool is_b = n > 7 && std::strcmp(rest + n - 7, ".lora_b") == 0;
    if (!is_a && !is_b) return Status::error(Err::bad_value, "adapter tensor '%s' is not a .lora_a / .lora_b", name);
    rest[n - 7] = 0;
    Layer& L = m->layers[l];
    Linear* lins[] = {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down};
    Linear* lin = nullptr;
    for (int j = 0; j < 7; ++j)
      if (std::strcmp(rest, names[j]) == 0) lin = lins[j];
    if (lin == nullptr || lin->rows == 0)
      return Status::error(Err::bad_value, "adapter tensor '%s': this model has no linear '%s'", name, rest);
    char prefix[96];  // rest is one of names[]: never truncated, checked for the compiler's sake
    if (std::snprintf(prefix, sizeof prefix, "blk.%d.%s", l, rest) >= (int)sizeof prefix)
      return Status::error(Err::bad_value, "adapter tensor '%s': name too long", name);
    if (is_b) {  // bound with its partner; a lone b is an error
      std::snprintf(name, sizeof name, "%s.lora_a", prefix);
      if (TensorInfo ta; !a.find_tensor(name, &ta))
        return Status::error(Err::missing, "adapter tensor '%s.lora_b' has no partner '%s'", prefix, name);
      continue;
    }
    if (lin->lora_a != nullptr)
      return Status::error(Err::bad_value, "linear '%s' already has a LoRA adapter", prefix);
    QTF_TRY(bind_lora(a, prefix, alpha, lin));
    done[(*n_done)++] = lin;
  }
  if (*n_done == 0) return Status::error(Err::missing, "adapter file has no LoRA tensors");
  return Status::success();
}

}  // namespace

Status Model::apply_adapter(const format::ModelFile& a) {
  if (!a.is_open()) return Status::error(Err::invalid_argument, "adapter file is not open (verify it first)");
  format::Str arch;
  QTF_TRY(a.get_str("qtf.arch", &arch));
  if (!arch.equals("lora"))
    return Status::error(Err::unsupported, "adapter architecture '%.*s' is not 'lora'", (int)arch.size, arch.data);
  double alpha = 0;
  QTF_TRY(a.get_f64("lora.alpha", &alpha));
  if (!(alpha > 0 && alpha < 1e6)) return Status::error(Err::bad_value, "lora.alpha = %g is not in (0, 1e6)", alpha);
  Linear* done[7 * kMaxLayers];
  int n_done = 0;
  Status st = bind_adapter(this, a, (float)alpha, done, &n_done);
  if (!st.ok()) {  // all or nothing: the model stays as it was
    for (int i = 0; i < n_done; ++i) {
      done[i]->lora_a = done[i]->lora_b = nullptr;
      done[i]->lora_rank = 0;
      done[i]->lora_scale = 0;
    }
    return st;
  }
  lora_linears += n_done;
  return st;
}

int64_t Model::block_params() const {
  const ModelConfig& c = cfg;
  const int64_t Q = c.n_qubits, H = c.n_heads;
  int64_t p = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    const Layer& L = layers[l];
    p += (c.norm == NormKind::layernorm ? 4 : 2) * c.d;  // norms
    for (const Linear* lin : {&L.q, &L.k, &L.v, &L.o, &L.up, &L.down}) p += lin->params() + lin->lora_params();
    if (c.activation == Activation::swiglu) p += L.gate.params() + L.gate.lora_params();
    if (c.has_encoder()) p += Q * c.d + Q + c.n_qlayers * Q * 3 + c.d * Q + c.d;
    if (c.has_encoder() && c.quantum_attention) p += H * Q * c.head_dim() + H * 2 * Q * 3 + H;
    if (c.activation == Activation::daruan) p += (int64_t)c.d_ff * ((c.daruan_depth + 1) * 2 + 2 * c.daruan_depth + 3);
  }
  return p;
}

int64_t Model::total_params() const {
  const ModelConfig& c = cfg;
  int64_t p = block_params() + (int64_t)c.vocab * c.d + (c.norm == NormKind::layernorm ? 2 : 1) * c.d;
  if (c.positions == PosKind::learned) p += (int64_t)c.context * c.d;
  if (c.phase_rotation) p += c.d;
  p += (int64_t)c.memory_tokens * c.d;
  if (!c.tied_embeddings) p += (int64_t)c.vocab * c.d;
  return p;
}

}  // namespace qtf
