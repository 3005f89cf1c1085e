#include "import/hf.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "format/format.h"
#include "host/file.h"
#include "import/common.h"
#include "import/safetensors.h"

namespace qtf::import {
namespace {

using json::Type;
using json::Value;

std::string shown(std::string_view s) { return std::string(s.substr(0, 80)); }

// ---------------------------------------------------------------------------------------------------
// config.json keys, each checked for presence, type and range, with one line naming the key.

Status want_int(const Value& obj, const char* key, int64_t lo, int64_t hi, int64_t* out, const int64_t* dflt = nullptr) {
  Value v = obj.get(key);
  if (!v.exists() || v.is_null()) {
    if (dflt) {
      *out = *dflt;
      return Status::success();
    }
    return Status::error(Err::missing, "config.json: '%s' is missing", key);
  }
  int64_t x = 0;
  if (!v.integer(&x))
    return Status::error(Err::bad_value, "config.json: '%s' must be an integer (found %s)", key,
                         v.is(Type::number) ? "a fraction" : json::type_name(v.type()));
  if (x < lo || x > hi)
    return Status::error(Err::out_of_range, "config.json: '%s' = %lld is outside [%lld, %lld]", key, (long long)x,
                         (long long)lo, (long long)hi);
  *out = x;
  return Status::success();
}

Status want_num(const Value& obj, const char* key, double lo, double hi, double* out, const double* dflt = nullptr) {
  Value v = obj.get(key);
  if (!v.exists() || v.is_null()) {
    if (dflt) {
      *out = *dflt;
      return Status::success();
    }
    return Status::error(Err::missing, "config.json: '%s' is missing", key);
  }
  if (!v.is(Type::number))
    return Status::error(Err::bad_value, "config.json: '%s' must be a number (found %s)", key, json::type_name(v.type()));
  double x = v.number();
  if (!(x > lo && x < hi))
    return Status::error(Err::out_of_range, "config.json: '%s' = %g is outside (%g, %g)", key, x, lo, hi);
  *out = x;
  return Status::success();
}

Status want_bool(const Value& obj, const char* key, bool dflt, bool* out) {
  Value v = obj.get(key);
  if (!v.exists() || v.is_null()) {
    *out = dflt;
    return Status::success();
  }
  if (!v.is(Type::boolean))
    return Status::error(Err::bad_value, "config.json: '%s' must be true or false (found %s)", key, json::type_name(v.type()));
  *out = v.boolean();
  return Status::success();
}

// An optional token id: an integer, or the first of a list (generation_config's eos_token_id).
int64_t token_id_of(const Value& v) {
  int64_t x = -1;
  if (v.is(Type::array)) return token_id_of(v.first());
  return v.integer(&x) && x >= 0 ? x : -1;
}

// ---------------------------------------------------------------------------------------------------
// Tokenizer pieces

// GPT-2's byte-level alphabet: byte b is written as the character byte_char(b); the reverse map
// un-maps a ByteLevel token into its raw bytes.
uint32_t byte_char(int b) {
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (uint32_t)b;
  int n = 0;
  for (int k = 0; k < b; ++k)
    if (!((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255))) ++n;
  return 256u + (uint32_t)n;
}

// Decodes one UTF-8 character at s[i] (the text is valid UTF-8: it came through the JSON reader).
uint32_t next_char(std::string_view s, size_t* i) {
  uint8_t c = (uint8_t)s[*i];
  size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
  uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
  for (size_t k = 1; k < n && *i + k < s.size(); ++k) cp = cp << 6 | ((uint8_t)s[*i + k] & 0x3F);
  *i += n;
  return cp;
}

bool unmap_byte_level(std::string_view tok, const int16_t* rev, std::string* out) {
  out->clear();
  for (size_t i = 0; i < tok.size();) {
    uint32_t cp = next_char(tok, &i);
    if (cp >= 512 || rev[cp] < 0) return false;
    out->push_back((char)rev[cp]);
  }
  return true;
}

// A token given as a string or as an AddedToken object {"content": ...} (tokenizer_config.json).
std::string_view token_content(const Value& v) {
  if (v.is(Type::string)) return v.str();
  if (v.is(Type::object)) return v.get("content").str();
  return {};
}

const char* kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's space

bool is_string(const Value& v, const char* s) { return v.is(Type::string) && v.str() == s; }

enum TokenType : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

bool is_byte_piece(std::string_view t) {  // <0xNN>
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); };
  return t.size() == 6 && t[0] == '<' && t[1] == '0' && t[2] == 'x' && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

// ---------------------------------------------------------------------------------------------------
// Files

// JSON files are mapped, not read: an oversized one is refused by the reader's limits without being loaded.
Status read_json(const std::string& dir, const char* name, bool required, host::FileBytes* bytes, json::Document* doc,
                 bool* found) {
  *found = false;
  Status s = bytes->open((dir + "/" + name).c_str(), true);
  if (!s.ok()) {
    if (!required && s.code() == Err::io) return Status::success();
    return s;
  }
  QTF_TRY(doc->parse(reinterpret_cast<const char*>(bytes->data()), bytes->size(), name));
  if (!doc->root().is(Type::object)) return Status::error(Err::bad_value, "%s: not a JSON object", name);
  *found = true;
  return Status::success();
}

// ---------------------------------------------------------------------------------------------------
// Weights

struct Weights {
  const SafetensorsSet* st;
  const HfConfig* cfg;
  format::Writer* w;
  std::vector<std::string> used;
  // What each qtf tensor is made of, in file order: declared first (the image is laid out and allocated
  // once all are known), written in place afterwards. F16 matrices stay f16 (read in place by the
  // kernels); everything else becomes f32.
  struct Planned {
    const StTensor* src;  // null: zeros (a bias the model does not have)
    size_t index;         // in the writer
    int64_t permute_heads;
    uint64_t rows;
  };
  std::vector<Planned> plan;

  // Plans HF tensor `from` as `to` with shape dims ([rows, cols] or [n]); permute_heads > 0 permutes
  // rows from rotate-half to adjacent pairs in that many heads. missing_zero: absent -> zeros.
  Status take(const std::string& from, const std::string& to, std::vector<uint64_t> dims, int64_t permute_heads = 0,
              bool missing_zero = false) {
    const StTensor* t = st->find(from);
    if (t == nullptr) {
      if (!missing_zero) return Status::error(Err::missing, "%s: tensor '%s' is missing", cfg->arch.c_str(), from.c_str());
      plan.push_back({nullptr, w->declare_tensor(to, format::DType::f32, dims), 0, dims[0]});
      return Status::success();
    }
    used.push_back(from);
    bool same = t->shape.size() == dims.size();
    for (size_t k = 0; same && k < dims.size(); ++k) same = t->shape[k] == dims[k];
    if (!same) {
      std::string want, got;
      for (uint64_t d : dims) want += (want.empty() ? "" : ", ") + std::to_string(d);
      for (uint64_t d : t->shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
      return Status::error(Err::bad_shape, "%s: tensor '%s' has shape [%s], config.json implies [%s]", t->file.c_str(),
                           from.c_str(), got.c_str(), want.c_str());
    }
    const bool keep_f16 = t->type == StType::f16 && dims.size() == 2;
    plan.push_back({t, w->declare_tensor(to, keep_f16 ? format::DType::f16 : format::DType::f32, dims), permute_heads,
                    dims[0]});
    return Status::success();
  }

  // Every planned tensor converted straight into the image, checked and folded into the checksum.
  Status write(const Output& out) {
    QTF_TRY(w->begin(out.image));
    for (const Planned& p : plan) {
      uint8_t* dst = w->tensor_data(p.index);
      const uint64_t n = w->tensor_size(p.index);
      Status r;
      if (!p.src) std::memset(dst, 0, (size_t)n);
      else if (w->tensor_info(p.index).dtype == format::DType::f16) std::memcpy(dst, p.src->data, (size_t)n);
      else r = st_to_f32(*p.src, reinterpret_cast<float*>(dst));  // 64-byte aligned
      if (r.ok() && p.permute_heads > 0)
        permute_rotate_half(dst, p.rows, p.rows / (uint64_t)p.permute_heads, (size_t)(n / p.rows));
      if (p.src && out.drop_source_pages) drop_pages(p.src->data, (size_t)p.src->bytes);
      if (r.ok()) r = tensor_done(w, p.index);
      if (!r.ok()) {
        out.image->clear();
        return r;
      }
    }
    return seal_verified(w, out);
  }
};

Status convert_weights(const SafetensorsSet& st, const HfConfig& c, format::Writer* w, const Output& out) {
  Weights W{&st, &c, w, {}, {}};
  const uint64_t d = (uint64_t)c.d, ff = (uint64_t)c.d_ff, V = (uint64_t)c.vocab, hd = d / (uint64_t)c.n_heads,
                 kv = hd * (uint64_t)c.n_kv_heads;
  const bool bias = c.qkv_bias || c.o_bias || c.mlp_bias;  // the engine's biases are all or none
  // Tied models may store the embedding under either name (TinyStories-656K keeps lm_head.weight only).
  std::string emb = "model.embed_tokens.weight";
  if (c.tied && !st.find(emb) && st.find("lm_head.weight")) emb = "lm_head.weight";
  QTF_TRY(W.take(emb, "tok_emb", {V, d}));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".", q = "blk." + std::to_string(l) + ".";
    struct Lin {
      const char *hf, *qtf;
      uint64_t out, in;
      int64_t heads;
      bool has_bias;
    } lins[] = {{"self_attn.q_proj", "attn.q", d, d, c.n_heads, c.qkv_bias},
                {"self_attn.k_proj", "attn.k", kv, d, c.n_kv_heads, c.qkv_bias},
                {"self_attn.v_proj", "attn.v", kv, d, 0, c.qkv_bias},
                {"self_attn.o_proj", "attn.o", d, d, 0, c.o_bias},
                {"mlp.gate_proj", "ffn.gate", ff, d, 0, c.mlp_bias},
                {"mlp.up_proj", "ffn.up", ff, d, 0, c.mlp_bias},
                {"mlp.down_proj", "ffn.down", d, ff, 0, c.mlp_bias}};
    QTF_TRY(W.take(p + "input_layernorm.weight", q + "ln1.w", {d}));
    QTF_TRY(W.take(p + "post_attention_layernorm.weight", q + "ln2.w", {d}));
    for (const Lin& L : lins) {
      QTF_TRY(W.take(p + L.hf + ".weight", q + L.qtf + ".w", {L.out, L.in}, L.heads));
      if (L.has_bias) QTF_TRY(W.take(p + L.hf + ".bias", q + L.qtf + ".b", {L.out}, L.heads));
      else if (bias) QTF_TRY(W.take(p + L.hf + ".bias", q + L.qtf + ".b", {L.out}, 0, /*missing_zero=*/true));
    }
  }
  QTF_TRY(W.take("model.norm.weight", "lnf.w", {d}));
  if (!c.tied) QTF_TRY(W.take("lm_head.weight", "head.w", {V, d}));
  else if (st.find("lm_head.weight")) W.used.push_back("lm_head.weight");  // the same matrix, tied at load by HF
  // Every tensor must have been understood: an unexpected one means the model is not what config.json says.
  std::sort(W.used.begin(), W.used.end());
  for (const StTensor& t : st.tensors()) {
    if (std::binary_search(W.used.begin(), W.used.end(), t.name)) continue;
    const std::string& n = t.name;
    const std::string buffer = "self_attn.rotary_emb.inv_freq";  // a constant older exports saved; unused
    if (n.size() >= buffer.size() && n.compare(n.size() - buffer.size(), buffer.size(), buffer) == 0) continue;
    return Status::error(Err::unsupported, "%s: tensor '%s' is not part of a %s as config.json describes it",
                         t.file.c_str(), shown(n).c_str(), c.arch.c_str());
  }
  return W.write(out);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------

Status hf_read_config(const char* text, size_t len, HfConfig* c) {
  json::Document doc;
  json::Limits lim;
  lim.max_bytes = 1u << 20;
  QTF_TRY(doc.parse(text, len, "config.json", lim));
  Value r = doc.root();
  if (!r.is(Type::object)) return Status::error(Err::bad_value, "config.json: not a JSON object");
  *c = HfConfig();
  Value arch = r.get("architectures");
  if (!arch.is(Type::array) || arch.size() != 1 || !arch.first().is(Type::string))
    return Status::error(Err::missing, "config.json: 'architectures' must list one architecture");
  c->arch = shown(arch.first().str());
  const bool llama = c->arch == "LlamaForCausalLM", mistral = c->arch == "MistralForCausalLM";
  c->qwen2 = c->arch == "Qwen2ForCausalLM";
  if (!llama && !mistral && !c->qwen2)
    return Status::error(Err::unsupported,
                         "config.json: architecture '%s' is not supported (LlamaForCausalLM, MistralForCausalLM, "
                         "Qwen2ForCausalLM)", c->arch.c_str());
  Value act = r.get("hidden_act");
  if (!is_string(act, "silu"))
    return Status::error(Err::unsupported, "config.json: hidden_act '%s' is not supported (silu only)",
                         act.is(Type::string) ? shown(act.str()).c_str() : json::type_name(act.type()));
  QTF_TRY(want_int(r, "hidden_size", 1, 1 << 14, &c->d));
  QTF_TRY(want_int(r, "intermediate_size", 1, 1 << 16, &c->d_ff));
  QTF_TRY(want_int(r, "num_hidden_layers", 1, 1024, &c->n_layers));
  QTF_TRY(want_int(r, "num_attention_heads", 1, 1024, &c->n_heads));
  QTF_TRY(want_int(r, "num_key_value_heads", 1, 1024, &c->n_kv_heads, &c->n_heads));
  QTF_TRY(want_int(r, "vocab_size", 1, 1 << 20, &c->vocab));
  QTF_TRY(want_int(r, "max_position_embeddings", 1, int64_t(1) << 40, &c->max_positions));
  c->context = std::min<int64_t>(c->max_positions, 1 << 16);
  QTF_TRY(want_num(r, "rms_norm_eps", 0.0, 1.0, &c->eps));
  const double theta = 10000.0;
  QTF_TRY(want_num(r, "rope_theta", 1.0, 1e12, &c->rope_theta, &theta));
  QTF_TRY(want_bool(r, "tie_word_embeddings", false, &c->tied));
  if (c->d % c->n_heads != 0)
    return Status::error(Err::bad_value, "config.json: hidden_size %lld is not a multiple of num_attention_heads %lld",
                         (long long)c->d, (long long)c->n_heads);
  const int64_t hd = c->d / c->n_heads;
  if (hd % 2 != 0) return Status::error(Err::unsupported, "config.json: head size %lld is odd (rotary needs pairs)", (long long)hd);
  if (c->n_heads % c->n_kv_heads != 0)
    return Status::error(Err::bad_value, "config.json: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                         (long long)c->n_heads, (long long)c->n_kv_heads);
  int64_t head_dim = hd;
  QTF_TRY(want_int(r, "head_dim", 1, 1 << 14, &head_dim, &hd));
  if (head_dim != hd)
    return Status::error(Err::unsupported, "config.json: head_dim %lld differs from hidden_size / num_attention_heads = %lld",
                         (long long)head_dim, (long long)hd);
  // Rotary scaling: the engine turns pairs by t * theta^(-2i/hd) and nothing else.
  Value rs = r.get("rope_scaling");
  if (rs.exists() && !rs.is_null()) {
    Value kind = rs.get("rope_type").exists() ? rs.get("rope_type") : rs.get("type");
    if (!is_string(kind, "default"))
      return Status::error(Err::unsupported,
                           "config.json: rope_scaling '%s' is not supported (the engine has plain rotary positions)",
                           kind.is(Type::string) ? shown(kind.str()).c_str() : "?");
  }
  double partial = 1.0;
  const double one = 1.0;
  QTF_TRY(want_num(r, "partial_rotary_factor", 0.0, 2.0, &partial, &one));
  if (partial != 1.0) return Status::error(Err::unsupported, "config.json: partial_rotary_factor %g is not supported", partial);
  // Sliding-window attention would need a mask the engine does not have.
  bool sliding = false;
  QTF_TRY(want_bool(r, "use_sliding_window", false, &sliding));
  if (sliding) return Status::error(Err::unsupported, "config.json: use_sliding_window is not supported");
  if (mistral) {
    Value sw = r.get("sliding_window");
    int64_t win = 0;
    if (sw.exists() && !sw.is_null() && !(sw.integer(&win) && win >= c->context))
      return Status::error(Err::unsupported, "config.json: sliding_window attention is not supported");
  }
  if (c->qwen2) {
    c->qkv_bias = true;  // Qwen2's q, k and v projections always have biases
  } else {
    bool attention_bias = false;
    QTF_TRY(want_bool(r, "attention_bias", false, &attention_bias));
    c->qkv_bias = c->o_bias = attention_bias;
    QTF_TRY(want_bool(r, "mlp_bias", false, &c->mlp_bias));
  }
  c->bos_id = token_id_of(r.get("bos_token_id"));
  c->eos_id = token_id_of(r.get("eos_token_id"));
  c->pad_id = token_id_of(r.get("pad_token_id"));
  return Status::success();
}

Status hf_tokenizer_meta(const Value& tj, const Value& tc, const Value& gc, const HfConfig& cfg, format::Writer* w) {
  const char* F = "tokenizer.json";
  Value model = tj.get("model");
  Value mtype = model.get("type");
  if (!is_string(mtype, "BPE"))
    return Status::error(Err::unsupported, "%s: model type '%s' is not supported (BPE only)", F,
                         mtype.is(Type::string) ? shown(mtype.str()).c_str() : "?");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix", "dropout"}) {
    Value v = model.get(k);
    if (v.exists() && !v.is_null() && !(v.is(Type::string) && v.str().empty()))
      return Status::error(Err::unsupported, "%s: BPE option '%s' is not supported", F, k);
  }
  bool ignore_merges = model.get("ignore_merges").boolean();
  if (ignore_merges) return Status::error(Err::unsupported, "%s: BPE option 'ignore_merges' is not supported", F);

  // Normalizer and pre-tokenizer -> tokenizer.normalizer / tokenizer.pre.
  std::string normalizer = "none", pre = "none";
  int64_t space_prefix = 0;
  Value norm = tj.get("normalizer"), pt = tj.get("pre_tokenizer");
  auto is_prepend = [&](const Value& n) { return is_string(n.get("type"), "Prepend") && is_string(n.get("prepend"), kSpace); };
  auto is_replace = [&](const Value& n) {
    return is_string(n.get("type"), "Replace") && is_string(n.get("pattern").get("String"), " ") &&
           is_string(n.get("content"), kSpace);
  };
  if (norm.exists() && !norm.is_null()) {
    Value a = norm.get("normalizers").first(), b = a.next();
    if (is_string(norm.get("type"), "Sequence") && norm.get("normalizers").size() == 2 && is_prepend(a) && is_replace(b)) {
      normalizer = "spm";
      space_prefix = 1;
    } else if (is_replace(norm) || (is_string(norm.get("type"), "Sequence") && norm.get("normalizers").size() == 1 && is_replace(a))) {
      normalizer = "spm";
    } else {
      Value t = norm.get("type");
      return Status::error(Err::unsupported,
                           "%s: normalizer '%s' is not supported (Prepend(\xe2\x96\x81) + Replace(' ', \xe2\x96\x81), or none)",
                           F, t.is(Type::string) ? shown(t.str()).c_str() : "?");
    }
  }
  bool byte_level = false;
  if (pt.exists() && !pt.is_null()) {
    Value t = pt.get("type");
    if (is_string(t, "ByteLevel") && normalizer == "none") {
      if (pt.get("add_prefix_space").boolean())
        return Status::error(Err::unsupported, "%s: ByteLevel add_prefix_space is not supported", F);
      if (pt.get("use_regex").exists() && !pt.get("use_regex").boolean())
        return Status::error(Err::unsupported, "%s: ByteLevel without its regex is not supported", F);
      pre = "gpt2";
      byte_level = true;
    } else if (is_string(t, "Metaspace") && normalizer == "none" && is_string(pt.get("replacement"), kSpace) &&
               !pt.get("split").boolean()) {
      // Metaspace without splitting is the same as the Prepend + Replace normalizer.
      normalizer = "spm";
      Value scheme = pt.get("prepend_scheme");
      space_prefix = scheme.exists() ? !is_string(scheme, "never") : pt.get("add_prefix_space").boolean();
    } else {
      return Status::error(Err::unsupported, "%s: pre_tokenizer '%s' is not supported (ByteLevel, Metaspace without "
                           "split, or none)", F, t.is(Type::string) ? shown(t.str()).c_str() : "?");
    }
  }
  int16_t rev[512];
  std::fill(rev, rev + 512, (int16_t)-1);
  for (int b = 0; b < 256; ++b) rev[byte_char(b)] = (int16_t)b;

  // Tokens: the BPE vocabulary, then the added tokens; ids must fit the model's vocabulary.
  const int64_t V = cfg.vocab;
  std::vector<std::string> tokens((size_t)V);
  std::vector<int64_t> types((size_t)V, 0);
  Value vocab = model.get("vocab");
  if (!vocab.is(Type::object)) return Status::error(Err::missing, "%s: model.vocab is missing", F);
  std::string raw;
  const bool byte_fallback = model.get("byte_fallback").boolean();
  for (Value e = vocab.first(); e.exists(); e = e.next()) {
    int64_t id = -1;
    if (!e.integer(&id) || id < 0)
      return Status::error(Err::bad_value, "%s: vocab entry '%s' has no valid id", F, shown(e.key()).c_str());
    if (id >= V)
      return Status::error(Err::out_of_range, "%s: token id %lld is beyond config.json's vocab_size %lld", F,
                           (long long)id, (long long)V);
    if (types[(size_t)id] != 0) return Status::error(Err::duplicate_name, "%s: token id %lld appears twice", F, (long long)id);
    if (e.key().empty()) return Status::error(Err::bad_value, "%s: token id %lld is empty", F, (long long)id);
    if (byte_level) {
      if (!unmap_byte_level(e.key(), rev, &raw))
        return Status::error(Err::bad_value, "%s: token '%s' is not in GPT-2's byte-level alphabet", F, shown(e.key()).c_str());
    } else {
      raw = std::string(e.key());
    }
    tokens[(size_t)id] = raw;
    types[(size_t)id] = byte_fallback && is_byte_piece(e.key()) ? kByte : kNormal;
  }
  Value added = tj.get("added_tokens");
  for (Value a = added.first(); a.exists(); a = a.next()) {
    int64_t id = -1;
    std::string_view content = a.get("content").str();
    if (!a.get("id").integer(&id) || id < 0 || content.empty())
      return Status::error(Err::bad_value, "%s: an added token has no valid id or content", F);
    if (id >= V)
      return Status::error(Err::out_of_range, "%s: added token id %lld is beyond config.json's vocab_size %lld", F,
                           (long long)id, (long long)V);
    tokens[(size_t)id] = std::string(content);  // added tokens are raw text, not byte-mapped
    types[(size_t)id] = a.get("special").boolean() ? kControl : kUserDefined;
  }
  for (int64_t id = 0; id < V; ++id)
    if (types[(size_t)id] == 0) {  // ids the tokenizer does not use (a padded embedding)
      tokens[(size_t)id] = "[PAD" + std::to_string(id) + "]";
      types[(size_t)id] = kUnused;
    }
  // Ids by text (first wins), for special tokens named by content.
  std::vector<std::pair<std::string_view, int64_t>> by_text;
  by_text.reserve((size_t)V);
  for (int64_t id = 0; id < V; ++id) by_text.emplace_back(tokens[(size_t)id], id);
  std::stable_sort(by_text.begin(), by_text.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  auto id_of = [&](std::string_view s) -> int64_t {
    auto it = std::lower_bound(by_text.begin(), by_text.end(), s, [](const auto& a, std::string_view k) { return a.first < k; });
    return it != by_text.end() && it->first == s ? it->second : -1;
  };
  int64_t unk = -1;
  Value unk_tok = model.get("unk_token");
  if (unk_tok.is(Type::string)) {
    unk = id_of(unk_tok.str());
    if (unk < 0) return Status::error(Err::bad_value, "%s: unk_token '%s' is not in the vocabulary", F, shown(unk_tok.str()).c_str());
    types[(size_t)unk] = kUnknown;
  }

  // Merges: "a b" strings or [a, b] pairs.
  std::vector<std::string> merges;
  Value mv = model.get("merges");
  merges.reserve(mv.size());
  std::string left, right;
  for (Value m = mv.first(); m.exists(); m = m.next()) {
    std::string_view a, b;
    if (m.is(Type::string)) {
      std::string_view s = m.str();
      size_t sp = s.find(' ');
      if (sp == s.npos || s.find(' ', sp + 1) != s.npos)
        return Status::error(Err::bad_value, "%s: merge '%s' is not 'left right'", F, shown(s).c_str());
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is(Type::array) && m.size() == 2 && m.first().is(Type::string) && m.first().next().is(Type::string)) {
      a = m.first().str();
      b = m.first().next().str();
    } else {
      return Status::error(Err::bad_value, "%s: a merge is neither 'left right' nor [left, right]", F);
    }
    if (a.empty() || b.empty()) return Status::error(Err::bad_value, "%s: a merge has an empty part", F);
    if (byte_level) {
      if (!unmap_byte_level(a, rev, &left) || !unmap_byte_level(b, rev, &right))
        return Status::error(Err::bad_value, "%s: merge '%s %s' is not in GPT-2's byte-level alphabet", F, shown(a).c_str(),
                             shown(b).c_str());
    } else {
      left = std::string(a);
      right = std::string(b);
    }
    merges.push_back(escape_token(left.data(), left.size()) + " " + escape_token(right.data(), right.size()));
  }

  // Special tokens and BOS/EOS: tokenizer_config.json names them by content; generation_config.json and
  // config.json by id.
  auto special = [&](const char* key, int64_t from_gen, int64_t from_cfg) -> int64_t {
    std::string_view content = token_content(tc.get(key));
    if (!content.empty() && id_of(content) >= 0) return id_of(content);
    return from_gen >= 0 ? from_gen : from_cfg;
  };
  const int64_t bos = special("bos_token", token_id_of(gc.get("bos_token_id")), cfg.bos_id);
  const int64_t eos = special("eos_token", token_id_of(gc.get("eos_token_id")), cfg.eos_id);
  const int64_t pad = special("pad_token", token_id_of(gc.get("pad_token_id")), cfg.pad_id);
  for (int64_t id : {bos, eos, pad})
    if (id >= V) return Status::error(Err::out_of_range, "special token id %lld is beyond vocab_size %lld", (long long)id, (long long)V);
  // add_bos: tokenizer_config.json's add_bos_token, else whether the post-processor puts a special token first.
  int64_t add_bos = 0, add_eos = 0;
  Value single = tj.get("post_processor").get("single");
  if (is_string(tj.get("post_processor").get("type"), "TemplateProcessing") && single.size() > 0) {
    add_bos = single.first().get("SpecialToken").exists() ? 1 : 0;
    Value last = single.first();
    for (Value v = last; v.exists(); v = v.next()) last = v;
    add_eos = single.size() > 1 && last.get("SpecialToken").exists() ? 1 : 0;
  }
  if (tc.get("add_bos_token").is(Type::boolean)) add_bos = tc.get("add_bos_token").boolean();
  if (tc.get("add_eos_token").is(Type::boolean)) add_eos = tc.get("add_eos_token").boolean();
  if (add_bos && bos < 0) return Status::error(Err::missing, "tokenizer adds BOS but no bos token is named");

  std::vector<std::string> escaped;
  escaped.reserve(tokens.size());
  for (const std::string& t : tokens) escaped.push_back(escape_token(t.data(), t.size()));
  w->add_str("tokenizer.type", "bpe");
  w->add_str_array("tokenizer.tokens", escaped);
  w->add_str_array("tokenizer.merges", merges);
  w->add_i64_array("tokenizer.token_types", types);
  w->add_str("tokenizer.pre", pre);
  w->add_str("tokenizer.normalizer", normalizer);
  if (normalizer == "spm") w->add_i64("tokenizer.add_space_prefix", space_prefix);
  w->add_i64("tokenizer.byte_fallback", byte_fallback ? 1 : 0);
  // HF BPE joins a run of unknown characters into one <unk> (fuse_unk).
  w->add_i64("tokenizer.fuse_unk", model.get("fuse_unk").boolean() ? 1 : 0);
  w->add_i64("tokenizer.unk_id", unk);
  w->add_i64("tokenizer.bos_id", bos);
  w->add_i64("tokenizer.eos_id", eos);
  w->add_i64("tokenizer.pad_id", pad);
  w->add_i64("tokenizer.add_bos", add_bos);
  w->add_i64("tokenizer.add_eos", add_eos);
  Value tmpl = tc.get("chat_template");
  std::string_view chat;
  if (tmpl.is(Type::string)) chat = tmpl.str();
  for (Value t = tmpl.first(); tmpl.is(Type::array) && t.exists(); t = t.next())  // [{name, template}]
    if (chat.empty() || is_string(t.get("name"), "default")) chat = t.get("template").str();
  if (!chat.empty()) {
    if (chat.size() > format::kMaxStringBytes) return Status::error(Err::out_of_range, "tokenizer_config.json: chat_template too long");
    w->add_str("tokenizer.chat_template", std::string(chat));
  }
  return Status::success();
}

Status hf_dir_to_qtf(const char* dir_c, std::vector<uint8_t>* out) {
  if (out == nullptr) return Status::error(Err::invalid_argument, "hf import: null argument");
  format::Image image;
  Output o;
  o.image = &image;
  return to_vector(hf_dir_to_qtf(dir_c, o), image, out);
}

Status hf_dir_to_qtf(const char* dir_c, const Output& out) {
  if (dir_c == nullptr || out.image == nullptr) return Status::error(Err::invalid_argument, "hf import: null argument");
  out.image->clear();
  std::string dir(dir_c);
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  host::FileBytes cfg_bytes, tok_bytes, tc_bytes, gc_bytes;
  json::Document cfg_doc, tok_doc, tc_doc, gc_doc;
  bool found = false, have_tc = false, have_gc = false;
  QTF_TRY(cfg_bytes.open((dir + "/config.json").c_str(), true));
  HfConfig cfg;
  QTF_TRY(hf_read_config(reinterpret_cast<const char*>(cfg_bytes.data()), cfg_bytes.size(), &cfg));
  QTF_TRY(read_json(dir, "tokenizer.json", true, &tok_bytes, &tok_doc, &found));
  QTF_TRY(read_json(dir, "tokenizer_config.json", false, &tc_bytes, &tc_doc, &have_tc));
  QTF_TRY(read_json(dir, "generation_config.json", false, &gc_bytes, &gc_doc, &have_gc));
  SafetensorsSet st;
  QTF_TRY(st.open_dir(dir));

  format::Writer w;
  LlamaConfig lc;
  lc.vocab = cfg.vocab, lc.d = cfg.d, lc.n_layers = cfg.n_layers, lc.n_heads = cfg.n_heads;
  lc.n_kv_heads = cfg.n_kv_heads, lc.d_ff = cfg.d_ff, lc.context = cfg.context;
  lc.rope_theta = cfg.rope_theta, lc.rms_eps = cfg.eps, lc.tied = cfg.tied;
  lc.linear_bias = cfg.qkv_bias || cfg.o_bias || cfg.mlp_bias;
  add_llama_config(lc, &w);
  QTF_TRY(hf_tokenizer_meta(tok_doc.root(), have_tc ? tc_doc.root() : Value(), have_gc ? gc_doc.root() : Value(), cfg, &w));
  w.add_str("provenance.source", "Hugging Face directory " + utf8_or_escaped(base_name(dir_c).data(), base_name(dir_c).size()));
  w.add_str("provenance.hf_architecture", cfg.arch);
  w.add_i64("provenance.hf_max_position_embeddings", cfg.max_positions);
  w.add_str("provenance.created_by", "qtf import (engine/import/hf.cpp)");
  Output o = out;
  o.drop_source_pages = st.mapped();  // the safetensors files are mapped: drop their pages once read
  return convert_weights(st, cfg, &w, o);
}

}  // namespace qtf::import
