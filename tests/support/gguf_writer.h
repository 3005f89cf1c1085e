// A small GGUF writer for tests (llama.cpp's format, docs: ggml/docs/gguf.md): metadata of every value
// type, tensors of raw bytes, the data section aligned. Deliberately loose: tests also use it to make
// hostile files (wrong counts, offsets, types), patching the bytes afterwards.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace qtf::testing {

class GgufWriter {
 public:
  enum Type : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 };
  uint32_t version = 3;
  uint64_t alignment = 32;  // how the data section is laid out (general.alignment is a key of its own)

  void u32(const std::string& k, uint32_t v) { key(k, U32), put(v, 4); }
  void i32(const std::string& k, int32_t v) { key(k, I32), put((uint32_t)v, 4); }
  void u64(const std::string& k, uint64_t v) { key(k, U64), put(v, 8); }
  void f32(const std::string& k, float v) { key(k, F32), put(bits(v), 4); }
  void boolean(const std::string& k, bool v) { key(k, BOOL), put(v ? 1 : 0, 1); }
  void str(const std::string& k, const std::string& v) { key(k, STR), put_str(v); }
  void strs(const std::string& k, const std::vector<std::string>& v) {
    key(k, ARR), put(STR, 4), put(v.size(), 8);
    for (const std::string& s : v) put_str(s);
  }
  void f32s(const std::string& k, const std::vector<float>& v) {
    key(k, ARR), put(F32, 4), put(v.size(), 8);
    for (float x : v) put(bits(x), 4);
  }
  void i32s(const std::string& k, const std::vector<int32_t>& v) {
    key(k, ARR), put(I32, 4), put(v.size(), 8);
    for (int32_t x : v) put((uint32_t)x, 4);
  }
  void u32s(const std::string& k, const std::vector<uint32_t>& v) {
    key(k, ARR), put(U32, 4), put(v.size(), 8);
    for (uint32_t x : v) put(x, 4);
  }
  // A tensor: ne in ggml order (ne[0] varies fastest), type a ggml type id, bytes as stored.
  void tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, const void* data, size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    tensors_.push_back({name, ne, type, std::vector<uint8_t>(p, p + n)});
  }
  // The file; table_end (optional): where the tensor table ends (the data section starts at its next
  // multiple of the alignment).
  std::vector<uint8_t> finish(size_t* table_end = nullptr) const {
    std::vector<uint8_t> out;
    auto put_to = [&](uint64_t v, int n) {
      for (int i = 0; i < n; ++i) out.push_back((uint8_t)(v >> (8 * i)));
    };
    out.reserve(64 + kv_.size());
    put_to(0x46554747, 4);  // "GGUF"
    put_to(version, 4);
    put_to(tensors_.size(), 8);
    put_to(n_kv_, 8);
    out.insert(out.end(), kv_.begin(), kv_.end());
    uint64_t offset = 0;
    std::vector<uint64_t> offsets;
    for (const T& t : tensors_) {
      put_to(t.name.size(), 8);
      out.insert(out.end(), t.name.begin(), t.name.end());
      put_to(t.ne.size(), 4);
      for (uint64_t d : t.ne) put_to(d, 8);
      put_to(t.type, 4);
      put_to(offset, 8);
      offsets.push_back(offset);
      offset = (offset + t.bytes.size() + alignment - 1) / alignment * alignment;
    }
    if (table_end) *table_end = out.size();
    const size_t data = (out.size() + alignment - 1) / alignment * alignment;
    if (!tensors_.empty()) out.resize(data, 0);
    for (size_t i = 0; i < tensors_.size(); ++i) {
      out.resize(data + offsets[i], 0);
      out.insert(out.end(), tensors_[i].bytes.begin(), tensors_[i].bytes.end());
    }
    return out;
  }

 private:
  struct T {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::vector<uint8_t> bytes;
  };
  static uint32_t bits(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
  }
  void put(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) kv_.push_back((uint8_t)(v >> (8 * i)));
  }
  void put_str(const std::string& s) {
    put(s.size(), 8);
    kv_.insert(kv_.end(), s.begin(), s.end());
  }
  void key(const std::string& k, uint32_t type) {
    put_str(k);
    put(type, 4);
    ++n_kv_;
  }
  std::vector<uint8_t> kv_;
  uint64_t n_kv_ = 0;
  std::vector<T> tensors_;
};

// A small valid Llama-family GGUF (gpt2 tokenizer of V tokens): d 32, 1 layer, 2 heads (1 kv head),
// d_ff 256 so that ffn_down's rows fit a K-quant block; matrices of ggml type `type` (ffn_down: k_type),
// vectors F32. Block bytes follow a fixed pattern (below 0x3c: every f16 scale finite). For seeds and
// tests that need any valid file, not particular values.
inline std::vector<uint8_t> tiny_llama_gguf(uint32_t type, uint32_t k_type, const char* arch = "llama",
                                            bool tied = false, uint32_t V = 16) {
  const uint64_t d = 32, ff = 256, kv = 16;
  auto bytes_of = [](uint32_t t, uint64_t n) -> uint64_t {
    switch (t) {
      case 0: return 4 * n;
      case 1: case 30: return 2 * n;
      case 2: case 20: return n / 32 * 18;  // Q4_0, IQ4_NL
      case 8: return n / 32 * 34;
      case 10: return n / 256 * 84;   // Q2_K
      case 11: return n / 256 * 110;  // Q3_K
      case 12: return n / 256 * 144;
      case 14: return n / 256 * 210;
      case 23: return n / 256 * 136;  // IQ4_XS
      case 18: return n / 256 * 98;   // IQ3_XXS
      case 16: return n / 256 * 66;   // IQ2_XXS
      case 17: return n / 256 * 74;   // IQ2_XS
      case 22: return n / 256 * 82;   // IQ2_S
      case 19: return n / 256 * 50;   // IQ1_S
      case 29: return n / 256 * 56;   // IQ1_M
      case 21: return n / 256 * 110;  // IQ3_S
      default: return n;
    }
  };
  GgufWriter g;
  const std::string a = std::string(arch) + ".";
  g.str("general.architecture", arch);
  g.u32(a + "context_length", 64);
  g.u32(a + "embedding_length", (uint32_t)d);
  g.u32(a + "block_count", 1);
  g.u32(a + "feed_forward_length", (uint32_t)ff);
  g.u32(a + "attention.head_count", 2);
  g.u32(a + "attention.head_count_kv", 1);
  g.f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  g.str("tokenizer.ggml.model", "gpt2");
  g.str("tokenizer.ggml.pre", "gpt-2");
  std::vector<std::string> toks = {"<|endoftext|>", "\xc4\xa0", "a", "b", "\xc4\xa0" "a"};
  for (uint32_t i = (uint32_t)toks.size(); i < V; ++i) toks.push_back(std::string(1, (char)('c' + i)));
  toks.resize(V);
  g.strs("tokenizer.ggml.tokens", toks);
  g.strs("tokenizer.ggml.merges", {"\xc4\xa0 a"});
  auto add = [&](const std::string& name, std::vector<uint64_t> ne, uint32_t t) {
    uint64_t n = 1;
    for (uint64_t x : ne) n *= x;
    std::vector<uint8_t> b((size_t)bytes_of(t, n));
    for (size_t i = 0; i < b.size(); ++i) b[i] = (uint8_t)(t == 0 ? (i % 4 == 3 ? 0x3c : 0) : (i * 37 + 11) % 0x3c);  // f16 scales finite
    g.tensor(name, ne, t, b.data(), b.size());
  };
  add("token_embd.weight", {d, V}, type);
  add("blk.0.attn_norm.weight", {d}, 0);
  add("blk.0.ffn_norm.weight", {d}, 0);
  add("blk.0.attn_q.weight", {d, d}, type);
  add("blk.0.attn_k.weight", {d, kv}, type);
  add("blk.0.attn_v.weight", {d, kv}, type);
  if (std::string(arch) == "qwen2") add("blk.0.attn_q.bias", {d}, 0), add("blk.0.attn_k.bias", {kv}, 0);
  add("blk.0.attn_output.weight", {d, d}, type);
  add("blk.0.ffn_gate.weight", {d, ff}, type);
  add("blk.0.ffn_up.weight", {d, ff}, type);
  add("blk.0.ffn_down.weight", {ff, d}, k_type);
  add("output_norm.weight", {d}, 0);
  if (!tied) add("output.weight", {d, V}, type);
  return g.finish();
}

}  // namespace qtf::testing
