#include "import/llama2c.h"

#include <cstring>
#include <string>

#include "import/common.h"
#include "import/llama2c_tokenizer.h"

namespace qtf::import {
namespace {

constexpr uint32_t kMagic = 0x616B3432;  // "ak42"
const char* const kFields[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};

int32_t i32_at(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

struct Header {
  int version = 0;
  bool shared = true;
  size_t offset = 28;   // where the weights start
  int64_t v[7] = {0};   // dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (positive), seq_len
};

// Reads the header; the message says what is wrong when it is not a supported llama2.c header.
Status read_header(const uint8_t* data, size_t n, Header* h) {
  if (n < 28)
    return Status::error(Err::truncated, "not a llama2.c checkpoint: %lu bytes, shorter than the 28-byte header",
                         (unsigned long)n);
  uint32_t magic;
  std::memcpy(&magic, data, 4);
  if (magic == kMagic) {
    if (n < 256)
      return Status::error(Err::truncated, "llama2.c checkpoint truncated: %lu bytes, the versioned header has 256",
                           (unsigned long)n);
    h->version = i32_at(data + 4);
    if (h->version != 1)
      return Status::error(Err::unsupported, "llama2.c checkpoint version %d is not supported: %s", h->version,
                           h->version == 2 ? "Q8_0 (int8 groups); export it as version 1 (fp32)" : "unknown");
    for (int i = 0; i < 7; ++i) h->v[i] = i32_at(data + 8 + 4 * i);
    if (data[36] > 1)
      return Status::error(Err::bad_value, "llama2.c v1 header: shared-classifier flag is %d, not 0/1", data[36]);
    h->shared = data[36] == 1;
    h->offset = 256;
  } else {
    for (int i = 0; i < 7; ++i) h->v[i] = i32_at(data + 4 * i);
    h->shared = h->v[5] > 0;
    if (h->v[5] < 0) h->v[5] = -h->v[5];
  }
  const int64_t d = h->v[0], f = h->v[1], L = h->v[2], H = h->v[3], KV = h->v[4], V = h->v[5], T = h->v[6];
  const char* problem = nullptr;
  // Vocabulary up to 2^20: the engine's limit, and what the stand-in tokenizer's characters can name.
  if (!(d >= 1 && d <= 65536 && f >= 1 && f <= (1 << 20) && L >= 1 && L <= 1024 && H >= 1 && H <= d && V >= 1 &&
        V <= (1 << 20) && T >= 1 && T <= (1 << 20)))
    problem = "sizes out of range";
  else if (d % H != 0 || KV < 1 || KV > H || H % KV != 0 || (d / H) % 2 != 0)
    problem = "heads do not divide evenly (dim % n_heads, n_heads % n_kv_heads, even head size)";
  if (problem) {
    char vals[160];
    int at = 0;
    for (int i = 0; i < 7; ++i)
      at += std::snprintf(vals + at, sizeof vals - (size_t)at, "%s%s=%lld", i ? ", " : "", kFields[i],
                          (long long)h->v[i]);
    return Status::error(Err::bad_value, "not a llama2.c checkpoint (version %d header %s): %s", h->version, vals,
                         problem);
  }
  return Status::success();
}

// The fp32 arrays in file order; name nullptr = skipped (v0's RoPE tables).
struct Array {
  const char* name;  // qtf tensor name pattern, %d = layer
  uint64_t rows, cols;  // cols 0: a vector of `rows`
  bool per_layer;
};

std::vector<Array> layout(const Header& h) {
  const uint64_t d = (uint64_t)h.v[0], f = (uint64_t)h.v[1], H = (uint64_t)h.v[3], KV = (uint64_t)h.v[4];
  const uint64_t V = (uint64_t)h.v[5], T = (uint64_t)h.v[6], hs = d / H, kv = hs * KV;
  // llama2.c: w1 = gate, w3 = up, w2 = down.
  const Array tok{"tok_emb", V, d, false}, att{"blk.%d.ln1.w", d, 0, true}, ffn{"blk.%d.ln2.w", d, 0, true},
      wq{"blk.%d.attn.q.w", d, d, true}, wk{"blk.%d.attn.k.w", kv, d, true}, wv{"blk.%d.attn.v.w", kv, d, true},
      wo{"blk.%d.attn.o.w", d, d, true}, w1{"blk.%d.ffn.gate.w", f, d, true}, w2{"blk.%d.ffn.down.w", d, f, true},
      w3{"blk.%d.ffn.up.w", f, d, true}, fin{"lnf.w", d, 0, false};
  const Array rope{nullptr, T, hs / 2, false};  // v0's freq_cos and freq_sin, skipped
  const Array v0[] = {tok, att, wq, wk, wv, wo, ffn, w1, w2, w3, fin, rope, rope};
  const Array v1[] = {att, ffn, fin, tok, wq, wk, wv, wo, w1, w2, w3};
  std::vector<Array> out;
  if (h.version == 0)
    for (const Array& a : v0) out.push_back(a);
  else
    for (const Array& a : v1) out.push_back(a);
  if (!h.shared) out.push_back({"head.w", V, d, false});
  return out;
}

uint64_t array_floats(const Array& a, uint64_t layers) {
  return (a.cols ? a.rows * a.cols : a.rows) * (a.per_layer ? layers : 1);  // < 2^57 within the header's ranges
}

}  // namespace

bool llama2c_header_plausible(const uint8_t* head, size_t n) {
  Header h;
  return read_header(head, n, &h).ok() || (n >= 256 && i32_at(head) == (int32_t)kMagic);
}

Status llama2c_to_qtf(const uint8_t* data, size_t size, const uint8_t* tokenizer, size_t tokenizer_size,
                      const char* source_name, std::vector<uint8_t>* out, const char* tokenizer_name) {
  format::Image image;
  Output o;
  o.image = &image;
  return to_vector(llama2c_to_qtf(data, size, tokenizer, tokenizer_size, source_name, o, tokenizer_name), image, out);
}

Status llama2c_to_qtf(const uint8_t* data, size_t size, const uint8_t* tokenizer, size_t tokenizer_size,
                      const char* source_name, const Output& out, const char* tokenizer_name) {
  out.image->clear();  // nothing of an earlier conversion survives an error
  Header h;
  QTF_TRY(read_header(data, size, &h));
  const std::vector<Array> arrays = layout(h);
  const uint64_t L = (uint64_t)h.v[2];
  uint64_t floats = 0;
  for (const Array& a : arrays) floats += array_floats(a, L);
  const uint64_t want = h.offset + 4 * floats;
  if (size != want)  // checked before any weight is read
    return Status::error(Err::truncated,
                         "llama2.c checkpoint size mismatch: the header (version %d, dim=%lld, hidden_dim=%lld, "
                         "n_layers=%lld, n_heads=%lld, n_kv_heads=%lld, vocab_size=%lld, seq_len=%lld, %s classifier) "
                         "needs %llu bytes, the file has %llu (%s)",
                         h.version, (long long)h.v[0], (long long)h.v[1], (long long)h.v[2], (long long)h.v[3],
                         (long long)h.v[4], (long long)h.v[5], (long long)h.v[6], h.shared ? "shared" : "separate",
                         (unsigned long long)want, (unsigned long long)size, size < want ? "truncated" : "trailing bytes");
  LlamaConfig c;
  c.d = h.v[0], c.d_ff = h.v[1], c.n_layers = h.v[2], c.n_heads = h.v[3], c.n_kv_heads = h.v[4];
  c.vocab = h.v[5], c.context = h.v[6], c.tied = h.shared;  // theta 10000, eps 1e-5 (run.c's constants)
  format::Writer w;
  add_llama_config(c, &w);
  if (tokenizer != nullptr) {
    Status st = llama2c_tokenizer(tokenizer, tokenizer_size, (int)c.vocab, &w);
    if (!st.ok())
      return Status::error(st.code(), "tokenizer %s: %s", tokenizer_name ? tokenizer_name : "", st.message());
  } else {
    add_stand_in_tokenizer(c.vocab, &w);
  }
  w.add_str("provenance.source", "llama2.c checkpoint version " + std::to_string(h.version));
  w.add_i64("provenance.source_bytes", (int64_t)size);
  w.add_str("provenance.created_by", "qtf import (engine/import/llama2c.cpp)");
  if (source_name && *source_name) w.add_str("provenance.source_file", utf8_or_escaped(source_name, std::strlen(source_name)));
  if (tokenizer && tokenizer_name && *tokenizer_name)
    w.add_str("provenance.tokenizer_file", utf8_or_escaped(tokenizer_name, std::strlen(tokenizer_name)));

  // Where each array starts, then the tensors in the Python converter's order (per layer: ln1, ln2, q, k,
  // v, o, gate, up, down).
  struct Place {
    const Array* a;
    uint64_t at;
  };
  std::vector<Place> places;
  uint64_t at = h.offset;
  for (const Array& a : arrays) {
    places.push_back({&a, at});
    at += 4 * array_floats(a, L);
  }
  auto find = [&](const char* name) -> const Place* {
    for (const Place& p : places)
      if (p.a->name && !std::strcmp(p.a->name, name)) return &p;
    return nullptr;
  };
  // Every tensor declared first (the image is laid out and allocated once), then copied straight into
  // its place: the file's floats are already the tensors' bytes (memcpy: they are unaligned there).
  std::vector<std::pair<const uint8_t*, size_t>> src;  // per declared tensor: its bytes in the checkpoint
  auto add = [&](const char* pattern, uint64_t layer) {
    const Place* p = find(pattern);
    const uint64_t n = p->a->cols ? p->a->rows * p->a->cols : p->a->rows;
    char name[64];
    std::snprintf(name, sizeof name, pattern, (int)layer);
    std::vector<uint64_t> dims = p->a->cols ? std::vector<uint64_t>{p->a->rows, p->a->cols}
                                            : std::vector<uint64_t>{p->a->rows};
    w.declare_tensor(name, format::DType::f32, dims);
    src.emplace_back(data + p->at + 4 * n * layer, (size_t)(4 * n));
  };
  add("tok_emb", 0);
  for (uint64_t l = 0; l < L; ++l)
    for (const char* n : {"blk.%d.ln1.w", "blk.%d.ln2.w", "blk.%d.attn.q.w", "blk.%d.attn.k.w", "blk.%d.attn.v.w",
                          "blk.%d.attn.o.w", "blk.%d.ffn.gate.w", "blk.%d.ffn.up.w", "blk.%d.ffn.down.w"})
      add(n, l);
  add("lnf.w", 0);
  if (!h.shared) add("head.w", 0);
  QTF_TRY(w.begin(out.image));
  for (size_t i = 0; i < src.size(); ++i) {
    std::memcpy(w.tensor_data(i), src[i].first, src[i].second);
    if (out.drop_source_pages) drop_pages(src[i].first, src[i].second);
    Status st = tensor_done(&w, i);
    if (!st.ok()) {
      out.image->clear();
      return st;
    }
  }
  return seal_verified(&w, out);
}

}  // namespace qtf::import
