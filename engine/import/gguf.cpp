#include "import/gguf.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>

#include "format/format.h"
#include "host/quantize.h"
#include "import/common.h"
#include "import/third_party/ggml_iq_grids.h"
#include "kernels/kernels.h"

namespace qtf::import {
namespace {

// ---- the file's structure ------------------------------------------------------------------------

enum ValueType : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64, kValueTypes };
const char* const kValueTypeName[kValueTypes] = {"u8",  "i8",   "u16", "i16", "u32", "i32", "f32",
                                                 "bool", "str", "array", "u64", "i64", "f64"};
const uint8_t kValueSize[kValueTypes] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

constexpr uint32_t kMaxTensorName = 63;       // ggml's GGML_MAX_NAME - 1
constexpr uint64_t kMaxKeyBytes = 1u << 16;
constexpr uint64_t kMaxEntries = 1u << 20;    // metadata entries and tensors (real files: hundreds)
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;          // key length, a key byte, type, a value byte
constexpr uint64_t kMinTensorBytes = 8 + 1 + 4 + 8 + 4 + 8;  // name length, a byte, n_dims, a dim, type, offset

struct Kv {
  std::string_view key;
  uint32_t type = 0;   // ValueType
  uint32_t elem = 0;   // arrays: the element type
  uint64_t count = 1;  // arrays: the element count
  size_t value = 0;    // offset of the value (arrays: of the first element)
};

struct Tensor {
  std::string_view name;
  uint32_t type = 0;
  int ndim = 0;
  uint64_t ne[4] = {1, 1, 1, 1};  // ggml order: ne[0] varies fastest
  uint64_t elements = 0, nbytes = 0, offset = 0;
  const uint8_t* data = nullptr;
  bool used = false;
};

class Cursor {
 public:
  Cursor(const uint8_t* p, size_t size) : p_(p), size_(size) {}
  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }
  Status need(uint64_t n, const char* what) const {
    if (n <= left()) return Status::success();
    return Status::error(Err::truncated, "GGUF truncated: %s at byte %lu needs %llu bytes, the file has %lu left",
                         what, (unsigned long)pos_, (unsigned long long)n, (unsigned long)left());
  }
  Status u32(uint32_t* v, const char* what) {
    QTF_TRY(need(4, what));
    std::memcpy(v, p_ + pos_, 4);
    pos_ += 4;
    return Status::success();
  }
  Status u64(uint64_t* v, const char* what) {
    QTF_TRY(need(8, what));
    std::memcpy(v, p_ + pos_, 8);
    pos_ += 8;
    return Status::success();
  }
  Status str(std::string_view* s, const char* what) {
    uint64_t n;
    QTF_TRY(u64(&n, what));
    if (n > left())
      return Status::error(Err::truncated, "GGUF: %s: a string of %llu bytes at byte %lu runs past the end of the file "
                           "(%lu bytes)", what, (unsigned long long)n, (unsigned long)pos_, (unsigned long)size_);
    *s = std::string_view(reinterpret_cast<const char*>(p_ + pos_), (size_t)n);
    pos_ += (size_t)n;
    return Status::success();
  }
  void skip(uint64_t n) { pos_ += (size_t)n; }  // after need()

 private:
  const uint8_t* p_;
  size_t size_, pos_ = 0;
};

// Names of ggml's types (for messages), by id; removed ids are empty.
const char* const kGgmlNames[] = {"F32",  "F16",    "Q4_0",   "Q4_1",    "",      "",      "Q5_0",  "Q5_1",
                                  "Q8_0", "Q8_1",   "Q2_K",   "Q3_K",    "Q4_K",  "Q5_K",  "Q6_K",  "Q8_K",
                                  "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
                                  "I8",   "I16",    "I32",    "I64",     "F64",   "IQ1_M", "BF16",  "",
                                  "",     "",       "TQ1_0",  "TQ2_0"};
constexpr uint32_t kGgmlNameCount = sizeof kGgmlNames / sizeof kGgmlNames[0];

class Gguf {
 public:
  Status parse(const uint8_t* data, size_t size);
  uint32_t version = 0;
  uint64_t alignment = 32;
  std::vector<Kv> kvs;
  std::vector<Tensor> tensors;
  const uint8_t* base = nullptr;

  const Kv* find(std::string_view key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kvs[it->second];
  }
  Tensor* tensor(std::string_view name) {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors[it->second];
  }
  // Element i of an array of fixed-size elements, or the scalar (i = 0), as int64 / double.
  bool int_at(const Kv& kv, uint64_t i, int64_t* out) const;
  bool float_at(const Kv& kv, uint64_t i, double* out) const;
  // The strings of a string array, in order (validated at parse).
  std::vector<std::string_view> strings(const Kv& kv) const;

 private:
  Status parse_value(Cursor* c, Kv* kv);
  std::unordered_map<std::string_view, size_t> kv_index_, tensor_index_;
};

Status Gguf::parse_value(Cursor* c, Kv* kv) {
  char what[96];
  std::snprintf(what, sizeof what, "the value of '%.*s'", (int)std::min<size_t>(kv->key.size(), 48), kv->key.data());
  if (kv->type == ARR) {
    QTF_TRY(c->u32(&kv->elem, what));
    QTF_TRY(c->u64(&kv->count, what));
    if (kv->elem == ARR)
      return Status::error(Err::unsupported, "GGUF: metadata '%s' is an array of arrays (not supported)", what + 14);
    if (kv->elem >= kValueTypes)
      return Status::error(Err::bad_dtype, "GGUF: metadata %s: unknown array element type %u", what + 4, kv->elem);
    kv->value = c->pos();
    if (kv->elem == STR) {
      if (kv->count > c->left() / 8)
        return Status::error(Err::truncated, "GGUF: metadata %s: %llu strings cannot fit in the %lu bytes left",
                             what + 4, (unsigned long long)kv->count, (unsigned long)c->left());
      std::string_view s;
      for (uint64_t i = 0; i < kv->count; ++i) QTF_TRY(c->str(&s, what));
      return Status::success();
    }
    const uint64_t size = kValueSize[kv->elem];
    if (kv->count > c->left() / size)
      return Status::error(Err::truncated, "GGUF: metadata %s: %llu %s values cannot fit in the %lu bytes left",
                           what + 4, (unsigned long long)kv->count, kValueTypeName[kv->elem], (unsigned long)c->left());
    c->skip(kv->count * size);
    return Status::success();
  }
  if (kv->type >= kValueTypes)
    return Status::error(Err::bad_dtype, "GGUF: metadata %s: unknown value type %u", what + 4, kv->type);
  kv->value = c->pos();
  if (kv->type == STR) {
    std::string_view s;
    return c->str(&s, what);
  }
  QTF_TRY(c->need(kValueSize[kv->type], what));
  c->skip(kValueSize[kv->type]);
  return Status::success();
}

Status Gguf::parse(const uint8_t* data, size_t size) {
  base = data;
  Cursor c(data, size);
  QTF_TRY(c.need(4, "the magic"));
  if (std::memcmp(data, "GGUF", 4) != 0) return Status::error(Err::bad_magic, "not a GGUF file (no GGUF magic)");
  c.skip(4);
  QTF_TRY(c.u32(&version, "the version"));
  if (version == 1)
    return Status::error(Err::bad_version, "GGUF version 1 is not supported (versions 2 and 3 are): convert the model "
                         "again with a current llama.cpp");
  if ((version & 0xFFFF) == 0 && version != 0)
    return Status::error(Err::bad_version, "GGUF version %u: a big-endian file? qtf reads little-endian GGUF", version);
  if (version != 2 && version != 3)
    return Status::error(Err::bad_version, "GGUF version %u is not supported (versions 2 and 3 are)", version);
  uint64_t n_tensors, n_kv;
  QTF_TRY(c.u64(&n_tensors, "the tensor count"));
  QTF_TRY(c.u64(&n_kv, "the metadata count"));
  // Bound the counts by what the file can hold before anything is reserved for them.
  if (n_kv > kMaxEntries || n_kv > c.left() / kMinKvBytes)
    return Status::error(Err::out_of_range, "GGUF header: %llu metadata entries cannot fit in a file of %lu bytes",
                         (unsigned long long)n_kv, (unsigned long)size);
  if (n_tensors > kMaxEntries || n_tensors > c.left() / kMinTensorBytes)
    return Status::error(Err::out_of_range, "GGUF header: %llu tensors cannot fit in a file of %lu bytes",
                         (unsigned long long)n_tensors, (unsigned long)size);
  kvs.resize((size_t)n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    Kv& kv = kvs[i];
    char what[64];
    std::snprintf(what, sizeof what, "the key of metadata entry %llu", (unsigned long long)i);
    QTF_TRY(c.str(&kv.key, what));
    if (kv.key.empty() || kv.key.size() > kMaxKeyBytes)
      return Status::error(Err::bad_value, "GGUF: metadata entry %llu has a key of %lu bytes (1..%llu)",
                           (unsigned long long)i, (unsigned long)kv.key.size(), (unsigned long long)kMaxKeyBytes);
    std::snprintf(what, sizeof what, "the type of metadata entry %llu", (unsigned long long)i);
    QTF_TRY(c.u32(&kv.type, what));
    QTF_TRY(parse_value(&c, &kv));
    if (!kv_index_.emplace(kv.key, i).second)
      return Status::error(Err::duplicate_name, "GGUF: metadata key '%.*s' appears twice",
                           (int)std::min<size_t>(kv.key.size(), 64), kv.key.data());
  }
  if (const Kv* a = find("general.alignment")) {
    int64_t v = 0;
    if (a->type != U32 || !int_at(*a, 0, &v) || v == 0 || (v & (v - 1)) != 0)
      return Status::error(Err::bad_value, "GGUF: general.alignment must be a u32 power of two (found a %s%s)",
                           a->type < kValueTypes ? kValueTypeName[a->type] : "?",
                           a->type == U32 ? " that is not a power of two" : "");
    alignment = (uint64_t)v;
  }
  tensors.resize((size_t)n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    Tensor& t = tensors[i];
    char what[96];
    std::snprintf(what, sizeof what, "the name of tensor %llu", (unsigned long long)i);
    QTF_TRY(c.str(&t.name, what));
    if (t.name.empty() || t.name.size() > kMaxTensorName)
      return Status::error(Err::bad_value, "GGUF: tensor %llu has a name of %lu bytes (1..%u)", (unsigned long long)i,
                           (unsigned long)t.name.size(), kMaxTensorName);
    const int nl = (int)t.name.size();
    const char* nm = t.name.data();
    std::snprintf(what, sizeof what, "tensor '%.*s'", nl, nm);
    uint32_t n_dims;
    QTF_TRY(c.u32(&n_dims, what));
    if (n_dims < 1 || n_dims > 4)
      return Status::error(Err::bad_shape, "GGUF: tensor '%.*s' has %u dimensions (1..4)", nl, nm, n_dims);
    t.ndim = (int)n_dims;
    t.elements = 1;
    for (uint32_t j = 0; j < n_dims; ++j) {
      QTF_TRY(c.u64(&t.ne[j], what));
      if (t.ne[j] == 0 || t.ne[j] > (uint64_t)INT64_MAX)
        return Status::error(Err::bad_shape, "GGUF: tensor '%.*s' dimension %u is %llu", nl, nm, j,
                             (unsigned long long)t.ne[j]);
      if (!mul_u64(t.elements, t.ne[j], &t.elements) || t.elements > (uint64_t)INT64_MAX)
        return Status::error(Err::overflow, "GGUF: tensor '%.*s': its element count overflows", nl, nm);
    }
    QTF_TRY(c.u32(&t.type, what));
    uint32_t block = 0, block_bytes = 0;
    ggml_block(t.type, &block, &block_bytes);
    if (block == 0) {
      const char* tn = ggml_type_name(t.type);
      return Status::error(Err::unsupported, "GGUF: tensor '%.*s' has type %s (%u), which qtf does not import "
                           "(F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K, IQ1_S, IQ1_M, IQ2_XXS, "
                           "IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS)", nl, nm, tn, t.type);
    }
    if (t.ne[0] % block != 0)
      return Status::error(Err::bad_shape, "GGUF: tensor '%.*s' (%s) has rows of %llu values, not a multiple of its "
                           "block of %u", nl, nm, ggml_type_name(t.type), (unsigned long long)t.ne[0], block);
    if (!mul_u64(t.elements / block, block_bytes, &t.nbytes))
      return Status::error(Err::overflow, "GGUF: tensor '%.*s': its byte size overflows", nl, nm);
    QTF_TRY(c.u64(&t.offset, what));
    if (!tensor_index_.emplace(t.name, i).second)
      return Status::error(Err::duplicate_name, "GGUF: tensor '%.*s' appears twice", nl, nm);
  }
  // The data section starts at the next multiple of the alignment; each offset is relative to it.
  const uint64_t data_start = (c.pos() + alignment - 1) / alignment * alignment;
  for (Tensor& t : tensors) {
    const int nl = (int)t.name.size();
    uint64_t start, end;
    if (t.offset % alignment != 0)
      return Status::error(Err::misaligned, "GGUF: tensor '%.*s' offset %llu is not a multiple of the alignment %llu",
                           nl, t.name.data(), (unsigned long long)t.offset, (unsigned long long)alignment);
    if (!add_u64(data_start, t.offset, &start) || !add_u64(start, t.nbytes, &end) || end > size)
      return Status::error(Err::truncated, "GGUF: tensor '%.*s' (%llu bytes at data offset %llu) runs past the end of "
                           "the file (%lu bytes)", nl, t.name.data(), (unsigned long long)t.nbytes,
                           (unsigned long long)t.offset, (unsigned long)size);
    t.data = data + start;
  }
  return Status::success();
}

bool Gguf::int_at(const Kv& kv, uint64_t i, int64_t* out) const {
  const uint32_t type = kv.type == ARR ? kv.elem : kv.type;
  if (i >= kv.count) return false;
  if (type >= kValueTypes || kValueSize[type] == 0 || type == F32 || type == F64) return false;
  const uint8_t* p = base + kv.value + i * kValueSize[type];
  switch (type) {
    case U8: case BOOL: *out = p[0]; return true;
    case I8: *out = (int8_t)p[0]; return true;
    case U16: { uint16_t v; std::memcpy(&v, p, 2); *out = v; return true; }
    case I16: { int16_t v; std::memcpy(&v, p, 2); *out = v; return true; }
    case U32: { uint32_t v; std::memcpy(&v, p, 4); *out = v; return true; }
    case I32: { int32_t v; std::memcpy(&v, p, 4); *out = v; return true; }
    case U64: { uint64_t v; std::memcpy(&v, p, 8); if (v > (uint64_t)INT64_MAX) return false; *out = (int64_t)v; return true; }
    case I64: { std::memcpy(out, p, 8); return true; }
    default: return false;
  }
}

bool Gguf::float_at(const Kv& kv, uint64_t i, double* out) const {
  const uint32_t type = kv.type == ARR ? kv.elem : kv.type;
  if (i >= kv.count) return false;
  if (type == F32) {
    float v;
    std::memcpy(&v, base + kv.value + 4 * i, 4);
    *out = v;
    return true;
  }
  if (type == F64) {
    std::memcpy(out, base + kv.value + 8 * i, 8);
    return true;
  }
  int64_t v;
  if (!int_at(kv, i, &v)) return false;
  *out = (double)v;
  return true;
}

std::vector<std::string_view> Gguf::strings(const Kv& kv) const {
  std::vector<std::string_view> out;
  if (kv.type != ARR || kv.elem != STR) return out;
  out.reserve((size_t)kv.count);
  const uint8_t* p = base + kv.value;
  for (uint64_t i = 0; i < kv.count; ++i) {
    uint64_t n;
    std::memcpy(&n, p, 8);
    out.emplace_back(reinterpret_cast<const char*>(p + 8), (size_t)n);
    p += 8 + n;
  }
  return out;
}

// ---- typed metadata -------------------------------------------------------------------------------

std::string_view as_str(const Gguf& g, const Kv& kv) {
  uint64_t n;
  std::memcpy(&n, g.base + kv.value, 8);
  return std::string_view(reinterpret_cast<const char*>(g.base + kv.value + 8), (size_t)n);
}

// An integer key (a scalar, or a per-layer array whose values are all equal: qtf's layers share one
// shape) in [lo, hi]. Absent: *out unchanged, or an error when required.
Status get_int(const Gguf& g, const std::string& key, bool required, int64_t lo, int64_t hi, int64_t* out) {
  const Kv* kv = g.find(key);
  if (!kv) {
    if (required) return Status::error(Err::missing, "GGUF: metadata '%s' is missing", key.c_str());
    return Status::success();
  }
  int64_t v;
  if (kv->count == 0 || !g.int_at(*kv, 0, &v))
    return Status::error(Err::bad_value, "GGUF: metadata '%s' is not an integer", key.c_str());
  for (uint64_t i = 1; i < kv->count; ++i) {
    int64_t w;
    if (!g.int_at(*kv, i, &w) || w != v)
      return Status::error(Err::unsupported, "GGUF: metadata '%s' differs between layers (qtf's layers share one shape)",
                           key.c_str());
  }
  if (v < lo || v > hi)
    return Status::error(Err::out_of_range, "GGUF: metadata '%s' = %lld is out of range [%lld, %lld]", key.c_str(),
                         (long long)v, (long long)lo, (long long)hi);
  *out = v;
  return Status::success();
}

Status get_float(const Gguf& g, const std::string& key, bool required, double* out) {
  const Kv* kv = g.find(key);
  if (!kv) {
    if (required) return Status::error(Err::missing, "GGUF: metadata '%s' is missing", key.c_str());
    return Status::success();
  }
  double v;
  if (kv->type == ARR || !g.float_at(*kv, 0, &v) || !std::isfinite(v))
    return Status::error(Err::bad_value, "GGUF: metadata '%s' is not a finite number", key.c_str());
  *out = v;
  return Status::success();
}

// A string key; absent: *present = false.
Status get_str(const Gguf& g, const std::string& key, std::string_view* out, bool* present) {
  const Kv* kv = g.find(key);
  *present = kv != nullptr;
  if (!kv) return Status::success();
  if (kv->type != STR) return Status::error(Err::bad_value, "GGUF: metadata '%s' is not a string", key.c_str());
  *out = as_str(g, *kv);
  return Status::success();
}

Status get_bool(const Gguf& g, const std::string& key, bool* out) {
  const Kv* kv = g.find(key);
  if (!kv) return Status::success();
  int64_t v;
  if (kv->type == ARR || !g.int_at(*kv, 0, &v))
    return Status::error(Err::bad_value, "GGUF: metadata '%s' is not a bool", key.c_str());
  *out = v != 0;
  return Status::success();
}

std::string shown(std::string_view s) {  // for messages: at most 48 bytes, escaped
  return escape_token(s.data(), std::min<size_t>(s.size(), 48));
}

// ---- the tokenizer -------------------------------------------------------------------------------

// GPT-2's byte-to-unicode map, inverted: code point -> byte, -1 where no byte maps.
struct Gpt2Bytes {
  int16_t byte_of[324];
  Gpt2Bytes() {
    std::fill(byte_of, byte_of + 324, (int16_t)-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      byte_of[printable ? b : next++] = (int16_t)b;
    }
  }
  // The raw bytes a GPT-2 token spells, or false when it has a character outside the map (or bad UTF-8).
  bool decode(std::string_view s, std::string* out) const {
    out->clear();
    size_t i = 0;
    while (i < s.size()) {
      const unsigned char c = (unsigned char)s[i];
      uint32_t cp;
      size_t len;
      if (c < 0x80) cp = c, len = 1;
      else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3F), len = 2;
      else return false;  // every code point of the map is below U+0800
      if (len == 2 && !format::utf8_valid(s.data() + i, 2)) return false;
      if (cp >= 324 || byte_of[cp] < 0) return false;
      out->push_back((char)byte_of[cp]);
      i += len;
    }
    return true;
  }
};

enum TokenType { kNormal = 1, kUnknownType = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

Status tokenizer(const Gguf& g, format::Writer* w, int* vocab_out) {
  std::string_view model, pre;
  bool has_model = false, has_pre = false;
  QTF_TRY(get_str(g, "tokenizer.ggml.model", &model, &has_model));
  QTF_TRY(get_str(g, "tokenizer.ggml.pre", &pre, &has_pre));
  if (!has_model) return Status::error(Err::missing, "GGUF: no tokenizer (tokenizer.ggml.model is missing)");
  const bool spm = model == "llama", gpt2 = model == "gpt2";
  if (!spm && !gpt2)
    return Status::error(Err::unsupported, "GGUF: tokenizer model '%s' is not supported (llama, gpt2)",
                         shown(model).c_str());
  // llama.cpp's pre-tokenizers with GPT-2's regex.
  static const char* const kGpt2Pre[] = {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
                                         "jina-v2-de", "a.x-4.0"};
  if (gpt2 && !(has_pre && std::find(std::begin(kGpt2Pre), std::end(kGpt2Pre), pre) != std::end(kGpt2Pre)))
    return Status::error(Err::unsupported, "GGUF: gpt2 tokenizer with pre-tokenizer '%s' is not supported (qtf has "
                         "GPT-2's: gpt-2)", has_pre ? shown(pre).c_str() : "(none)");
  const Kv* tok_kv = g.find("tokenizer.ggml.tokens");
  if (!tok_kv || tok_kv->type != ARR || tok_kv->elem != STR)
    return Status::error(Err::missing, "GGUF: tokenizer.ggml.tokens is missing or not a string array");
  const uint64_t n = tok_kv->count;
  if (n < 1 || n > (1u << 20))
    return Status::error(Err::out_of_range, "GGUF: %llu tokens (1..%u)", (unsigned long long)n, 1u << 20);
  const Kv* types_kv = g.find("tokenizer.ggml.token_type");
  const Kv* scores_kv = g.find("tokenizer.ggml.scores");
  if (types_kv && (types_kv->type != ARR || types_kv->count != n || types_kv->elem == STR))
    return Status::error(Err::bad_value, "GGUF: tokenizer.ggml.token_type is not an integer array of %llu",
                         (unsigned long long)n);
  if (scores_kv && (scores_kv->type != ARR || scores_kv->count != n || scores_kv->elem == STR))
    return Status::error(Err::bad_value, "GGUF: tokenizer.ggml.scores is not a number array of %llu",
                         (unsigned long long)n);
  std::vector<int64_t> types((size_t)n, kNormal);
  if (types_kv)
    for (uint64_t i = 0; i < n; ++i)
      if (!g.int_at(*types_kv, i, &types[i]) || types[i] < 0 || types[i] > 6)
        return Status::error(Err::bad_value, "GGUF: token %llu has token_type %lld (0..6)", (unsigned long long)i,
                             (long long)types[i]);

  static const Gpt2Bytes map;
  const std::vector<std::string_view> raw = g.strings(*tok_kv);
  std::vector<std::string> tokens((size_t)n);
  std::string bytes;
  for (uint64_t i = 0; i < n; ++i) {
    std::string_view t = raw[i];
    // GPT-2's tokens spell bytes as characters; control and user-defined tokens are text as they are.
    if (gpt2 && types[i] != kControl && types[i] != kUserDefined && map.decode(t, &bytes)) t = bytes;
    tokens[i] = escape_token(t.data(), t.size());
    if (tokens[i].size() > format::kMaxStringBytes)
      return Status::error(Err::out_of_range, "GGUF: token %llu is too long", (unsigned long long)i);
  }
  w->add_str("tokenizer.type", spm ? "spm" : "bpe");
  w->add_str_array("tokenizer.tokens", tokens);
  tokens = std::vector<std::string>();
  if (spm || scores_kv) {
    std::vector<double> scores((size_t)n, 0.0);  // absent: all 0, as llama.cpp reads it
    if (scores_kv)
      for (uint64_t i = 0; i < n; ++i)
        if (!g.float_at(*scores_kv, i, &scores[i]) || !std::isfinite(scores[i]))
          return Status::error(Err::bad_value, "GGUF: token %llu has a score that is not a finite number",
                               (unsigned long long)i);
    w->add_f64_array("tokenizer.scores", scores);
  }
  w->add_i64_array("tokenizer.token_types", types);
  if (gpt2) {
    w->add_str("tokenizer.pre", "gpt2");
    const Kv* merges_kv = g.find("tokenizer.ggml.merges");
    if (!merges_kv || merges_kv->type != ARR || merges_kv->elem != STR)
      return Status::error(Err::missing, "GGUF: gpt2 tokenizer without tokenizer.ggml.merges (a string array)");
    if (merges_kv->count > format::kMaxArrayCount)
      return Status::error(Err::out_of_range, "GGUF: %llu merges (at most %u)", (unsigned long long)merges_kv->count,
                           format::kMaxArrayCount);
    const std::vector<std::string_view> rules = g.strings(*merges_kv);
    std::vector<std::string> merges;
    merges.reserve(rules.size());
    std::string left, right;
    for (size_t i = 0; i < rules.size(); ++i) {
      const std::string_view r = rules[i];
      const size_t space = r.size() > 1 ? r.find(' ', 1) : std::string_view::npos;  // as llama.cpp splits it
      if (space == std::string_view::npos || !map.decode(r.substr(0, space), &left) ||
          !map.decode(r.substr(space + 1), &right))
        return Status::error(Err::bad_value, "GGUF: merge %lu '%s' is not two GPT-2 byte strings split by a space",
                             (unsigned long)i, shown(r).c_str());
      merges.push_back(escape_token(left.data(), left.size()) + " " + escape_token(right.data(), right.size()));
    }
    w->add_str_array("tokenizer.merges", merges);
  }
  // Special ids and flags, with llama.cpp's defaults for each model; ids past the vocabulary are ignored
  // (llama.cpp warns and keeps its default).
  struct Id {
    const char* gguf;
    const char* qtf;
    int64_t value;
  } ids[] = {{"tokenizer.ggml.bos_token_id", "tokenizer.bos_id", spm ? 1 : 11},
             {"tokenizer.ggml.eos_token_id", "tokenizer.eos_id", spm ? 2 : 11},
             {"tokenizer.ggml.unknown_token_id", "tokenizer.unk_id", spm ? 0 : -1},
             {"tokenizer.ggml.padding_token_id", "tokenizer.pad_id", -1}};
  for (Id& id : ids) {
    int64_t v = -1;
    QTF_TRY(get_int(g, id.gguf, false, INT64_MIN, INT64_MAX, &v));
    if (v >= 0 && (uint64_t)v < n) id.value = v;
    if (id.value >= (int64_t)n) id.value = -1;
    w->add_i64(id.qtf, id.value);
  }
  bool add_bos = spm, add_eos = false, add_space_prefix = spm;
  QTF_TRY(get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos));
  QTF_TRY(get_bool(g, "tokenizer.ggml.add_eos_token", &add_eos));
  QTF_TRY(get_bool(g, "tokenizer.ggml.add_space_prefix", &add_space_prefix));
  w->add_i64("tokenizer.add_bos", add_bos ? 1 : 0);
  w->add_i64("tokenizer.add_eos", add_eos ? 1 : 0);
  if (spm) w->add_i64("tokenizer.add_space_prefix", add_space_prefix ? 1 : 0);
  std::string_view tmpl;
  bool has_tmpl = false;
  QTF_TRY(get_str(g, "tokenizer.chat_template", &tmpl, &has_tmpl));
  if (has_tmpl) {
    if (tmpl.size() > format::kMaxStringBytes || !format::utf8_valid(tmpl.data(), tmpl.size()))
      return Status::error(Err::bad_value, "GGUF: tokenizer.chat_template is longer than %u bytes or not UTF-8",
                           format::kMaxStringBytes);
    w->add_str("tokenizer.chat_template", std::string(tmpl));
  }
  *vocab_out = (int)n;
  return Status::success();
}

// ---- the model -----------------------------------------------------------------------------------

// The types a file stores in 4 bits a weight or fewer (--gguf-q4 makes them q4).
bool at_most_4_bits(uint32_t type) {
  switch (type) {
    case kQ4_1: case kQ2_K: case kQ3_K: case kQ4_K: case kIQ1_S: case kIQ1_M: case kIQ2_XXS: case kIQ2_XS:
    case kIQ2_S: case kIQ3_XXS: case kIQ3_S: case kIQ4_NL: case kIQ4_XS: return true;
    default: return false;
  }
}

struct Converter {
  Gguf& g;
  format::Writer& w;
  std::string arch;
  bool neox = false;  // qwen2: rotate-half q/k rows (llama.cpp's NEOX rope), permuted to interleaved pairs
  int64_t head_dim = 0;
  bool dequantize_f32 = false;  // Output::dequantize_f32: quantized matrices (but Q4_0) to f32, not q8
  bool requantize_q4 = false;   // Output::requantize_q4: those to q4 instead

  // The GGUF tensor `name` with the qtf shape dims (row-major: ggml's ne reversed), or an error.
  Status take(const std::string& name, std::vector<uint64_t> dims, Tensor** out) {
    Tensor* t = g.tensor(name);
    if (!t) return Status::error(Err::missing, "GGUF: tensor '%s' is missing", name.c_str());
    bool same = t->ndim == (int)dims.size();
    for (size_t i = 0; same && i < dims.size(); ++i) same = t->ne[dims.size() - 1 - i] == dims[i];
    if (!same) {
      char want[96] = "", got[96] = "";
      for (size_t i = 0; i < dims.size(); ++i)
        std::snprintf(want + std::strlen(want), sizeof want - std::strlen(want), "%s%llu", i ? ", " : "",
                      (unsigned long long)dims[dims.size() - 1 - i]);
      for (int i = 0; i < t->ndim; ++i)
        std::snprintf(got + std::strlen(got), sizeof got - std::strlen(got), "%s%llu", i ? ", " : "",
                      (unsigned long long)t->ne[i]);
      return Status::error(Err::bad_shape, "GGUF: tensor '%s' has shape [%s], the %s header needs [%s]", name.c_str(),
                           got, arch.c_str(), want);
    }
    t->used = true;
    *out = t;
    return Status::success();
  }

  // What each qtf tensor is made of, in file order: declared first (the image is laid out and allocated
  // once all are known), written in place afterwards.
  struct Planned {
    const Tensor* src;  // null: zeros (a bias the file does not have)
    size_t index;       // in the writer
    enum Kind { copy, to_f32, to_q8, to_q4, zeros } kind;
    bool permute;       // q/k of a rotate-half architecture
    uint64_t rows;
  };
  std::vector<Planned> plan;

  // Plans tensor t as qtf tensor `name`: F16 kept as f16, Q4_0 matrices as q4 (both copied as they are),
  // the other quantized matrices requantized to q8 (a scale per row: a quarter of f32's memory, the loss
  // in docs/llama.md), or to q4 with requantize_q4, unless dequantize_f32; everything else dequantized to
  // f32; rotary_rows: q/k, whose rows are permuted for a rotate-half architecture.
  void put(const Tensor& t, const std::string& name, const std::vector<uint64_t>& dims, bool rotary_rows) {
    const bool permute = neox && rotary_rows;
    const bool quantized = t.type != kF32 && t.type != kF16 && t.type != kBF16;
    if (t.type == kQ4_0 && dims.size() == 2)  // GGUF's Q4_0 blocks are qtf's q4 (docs/format.md)
      plan.push_back({&t, w.declare_tensor(name, format::DType::q4, dims), Planned::copy, permute, dims[0]});
    else if (quantized && dims.size() == 2 && !dequantize_f32) {
      // q4 only for what the file stores in 4 bits or fewer: its author's 5-8-bit tensors (llama.cpp's
      // recipes keep the embedding and classifier there) stay q8.
      const bool q4 = requantize_q4 && at_most_4_bits(t.type);
      plan.push_back({&t, w.declare_tensor(name, q4 ? format::DType::q4 : format::DType::q8, dims),
                      q4 ? Planned::to_q4 : Planned::to_q8, permute, dims[0]});
    }
    else if (t.type == kF16)
      plan.push_back({&t, w.declare_tensor(name, format::DType::f16, dims), Planned::copy, permute, dims[0]});
    else
      plan.push_back({&t, w.declare_tensor(name, format::DType::f32, dims), Planned::to_f32, permute, dims[0]});
  }
  // q8's layout (format.h): the rows' f32 scales, then the rows' int8 values. Row by row through one row
  // of floats; with permute, row r is taken from the source row the rotate-half permutation puts there
  // (permute_rotate_half's order). A NaN or Inf value (a damaged block scale) is refused here: rounding
  // to int8 would hide it from tensor_done's scan.
  // With q4 (requantize_q4), each row's blocks of 18 bytes in place of the scale and int8 values.
  Status requantize(const Tensor& t, uint64_t rows, bool permute, bool q4, uint8_t* dst) {
    const uint64_t cols = t.elements / rows, row_bytes = t.nbytes / rows;  // rows hold whole blocks (parse)
    const uint64_t q4_row_bytes = (cols + 31) / 32 * 18;
    std::vector<float> row((size_t)cols);
    float* scales = reinterpret_cast<float*>(dst);
    int8_t* q = reinterpret_cast<int8_t*>(dst + 4 * rows);
    const uint64_t hd = (uint64_t)head_dim, half = hd / 2;
    for (uint64_t r = 0; r < rows; ++r) {
      uint64_t from = r;
      if (permute) from = r - r % hd + (r % 2 == 0 ? (r % hd) / 2 : half + (r % hd) / 2);
      dequantize(t.type, t.data + from * row_bytes, cols, row.data());
      for (uint64_t c = 0; c < cols; ++c)
        if (!std::isfinite(row[c]))
          return Status::error(Err::bad_value, "tensor '%.*s' has non-finite values (NaN/Inf) after conversion, the "
                               "first at index %llu", (int)t.name.size(), t.name.data(),
                               (unsigned long long)(from * cols + c));
      if (q4) {  // the values are finite (above), so only a block scale past f16's range can fail
        if (!host::quantize_q4_row(row.data(), (int64_t)cols, host::Q4Scale::search, dst + r * q4_row_bytes))
          return Status::error(Err::bad_value, "tensor '%.*s' row %llu: a value too large for q4's f16 block scales",
                               (int)t.name.size(), t.name.data(), (unsigned long long)from);
        continue;
      }
      const float s = quantize_i8(row.data(), (size_t)cols, q + r * cols);
      std::memcpy(scales + r, &s, 4);
    }
    return Status::success();
  }
  void put_zeros(const std::string& name, uint64_t n) {
    plan.push_back({nullptr, w.declare_tensor(name, format::DType::f32, {n}), Planned::zeros, false, n});
  }

  // Every planned tensor converted straight into the image (one write per value), checked and folded
  // into the checksum; the source's pages dropped once read when it is a file mapping.
  Status write(const Output& out) {
    QTF_TRY(w.begin(out.image));
    for (const Planned& p : plan) {
      uint8_t* dst = w.tensor_data(p.index);
      const uint64_t n = w.tensor_size(p.index);
      if (p.kind == Planned::copy && n != p.src->nbytes) {  // equal by construction (rows of whole blocks)
        out.image->clear();
        return Status::error(Err::bad_shape, "GGUF: tensor '%.*s' has %llu bytes, its qtf copy %llu",
                             (int)p.src->name.size(), p.src->name.data(), (unsigned long long)p.src->nbytes,
                             (unsigned long long)n);
      }
      if (p.kind == Planned::zeros) std::memset(dst, 0, (size_t)n);
      else if (p.kind == Planned::copy) std::memcpy(dst, p.src->data, (size_t)n);
      else if (p.kind == Planned::to_q8 || p.kind == Planned::to_q4) {
        Status st = requantize(*p.src, p.rows, p.permute, p.kind == Planned::to_q4, dst);
        if (!st.ok()) {
          out.image->clear();
          return st;
        }
      } else dequantize(p.src->type, p.src->data, p.src->elements, reinterpret_cast<float*>(dst));  // 64-byte aligned
      if (p.permute && p.kind != Planned::to_q8 && p.kind != Planned::to_q4)  // requantize took rows permuted
        permute_rotate_half(dst, p.rows, (uint64_t)head_dim, (size_t)(n / p.rows));
      if (p.src && out.drop_source_pages) drop_pages(p.src->data, (size_t)p.src->nbytes);
      Status st = tensor_done(&w, p.index);
      if (!st.ok()) {
        out.image->clear();
        return st;
      }
    }
    return seal_verified(&w, out);
  }
};

}  // namespace

const char* ggml_type_name(uint32_t type) {
  return type < kGgmlNameCount && kGgmlNames[type][0] ? kGgmlNames[type] : "unknown";
}

void ggml_block(uint32_t type, uint32_t* values, uint32_t* bytes) {
  switch (type) {
    case kF32: *values = 1, *bytes = 4; return;
    case kF16: case kBF16: *values = 1, *bytes = 2; return;
    case kQ4_0: *values = 32, *bytes = 2 + 16; return;        // f16 d, 32 nibbles
    case kQ4_1: *values = 32, *bytes = 2 + 2 + 16; return;    // f16 d, f16 m, 32 nibbles
    case kQ5_0: *values = 32, *bytes = 2 + 4 + 16; return;    // f16 d, 32 fifth bits, 32 nibbles
    case kQ5_1: *values = 32, *bytes = 2 + 2 + 4 + 16; return;  // f16 d, f16 m, fifth bits, nibbles
    case kQ8_0: *values = 32, *bytes = 2 + 32; return;        // f16 d, 32 int8
    case kQ2_K: *values = 256, *bytes = 16 + 64 + 2 + 2; return;  // 4-bit scales/mins, 2-bit q, f16 d, dmin
    case kQ3_K: *values = 256, *bytes = 32 + 64 + 12 + 2; return;  // high bits, low 2 bits, 6-bit scales, f16 d
    case kQ4_K: *values = 256, *bytes = 2 + 2 + 12 + 128; return;  // f16 d, dmin, 6-bit scales/mins, nibbles
    case kQ5_K: *values = 256, *bytes = 2 + 2 + 12 + 32 + 128; return;  // as Q4_K, plus 32 bytes of fifth bits
    case kQ6_K: *values = 256, *bytes = 128 + 64 + 16 + 2; return;  // low 4 bits, high 2 bits, int8 scales, f16 d
    case kIQ4_NL: *values = 32, *bytes = 2 + 16; return;  // f16 d, 32 nibbles indexing a non-linear grid
    case kIQ3_XXS: *values = 256, *bytes = 2 + 64 + 32; return;  // f16 d, grid indices, scales and signs
    case kIQ3_S: *values = 256, *bytes = 2 + 64 + 8 + 32 + 4; return;  // d, indices, 9th bits, signs, scales
    case kIQ2_XXS: *values = 256, *bytes = 2 + 64; return;  // f16 d, 8 bytes a sub-block: indices, signs, scale
    case kIQ2_XS: *values = 256, *bytes = 2 + 64 + 8; return;  // f16 d, u16 index + signs each, 4-bit scales
    case kIQ2_S: *values = 256, *bytes = 2 + 64 + 8 + 8; return;  // f16 d, indices, signs, 10th/9th bits, scales
    case kIQ1_S: *values = 256, *bytes = 2 + 32 + 16; return;  // f16 d, indices, u16 high bits/scale/delta sign
    case kIQ1_M: *values = 256, *bytes = 32 + 16 + 8; return;  // indices, high bits + delta signs, scales (+ d)
    case kIQ4_XS: *values = 256, *bytes = 2 + 2 + 4 + 128; return;  // f16 d, 6-bit scales (2 + 4 bits), nibbles
    default: *values = 0, *bytes = 0; return;
  }
}

namespace {
float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return format::f16_to_f32(h);
}
// IQ4_NL's and IQ4_XS's 16 levels (ggml-common.h kvalues_iq4nl): denser near zero than a uniform grid.
constexpr int8_t kIq4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
// IQ3 kinds: 8 values from two grid entries of 4 (byte j of an entry: value j), value k negated where bit k
// of `signs` is set, each times db, in ggml's order of operations.
void iq3_eight(float db, uint32_t g1, uint32_t g2, uint32_t signs, float* y) {
  for (int j = 0; j < 4; ++j) {
    y[j] = db * (float)((g1 >> (8 * j)) & 0xFF) * ((signs >> j) & 1 ? -1.f : 1.f);
    y[j + 4] = db * (float)((g2 >> (8 * j)) & 0xFF) * ((signs >> (j + 4)) & 1 ? -1.f : 1.f);
  }
}
// IQ2 kinds: 8 values from one grid entry of 8, value k negated where bit k of `signs` is set, times db.
void iq2_eight(float db, uint64_t g, uint32_t signs, float* y) {
  for (int j = 0; j < 8; ++j) y[j] = db * (float)((g >> (8 * j)) & 0xFF) * ((signs >> j) & 1 ? -1.f : 1.f);
}
// IQ1 kinds: 8 values from one entry of int8 (-1, 0, 1), each plus delta, times dl.
void iq1_eight(float dl, uint64_t g, float delta, float* y) {
  for (int j = 0; j < 8; ++j) y[j] = dl * ((float)(int8_t)((g >> (8 * j)) & 0xFF) + delta);
}
constexpr float kIq1Delta = 0.125f;  // ggml's IQ1S_DELTA (and IQ1M_DELTA)
uint32_t u16_at(const uint8_t* p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
// IQ2_XXS's, IQ2_XS's and IQ3_XXS's 7 stored sign bits of 8 values, the 8th making their count even
// (ggml's ksigns_iq2xs table).
uint32_t even_signs(uint32_t seven) {
  uint32_t p = seven ^ (seven >> 4);
  p ^= p >> 2;
  p ^= p >> 1;
  return seven | (p & 1) << 7;
}
}  // namespace

bool dequantize(uint32_t type, const uint8_t* src, uint64_t n, float* dst) {
  switch (type) {
    case kF32: std::memcpy(dst, src, 4 * n); return true;
    case kF16:
      for (uint64_t i = 0; i < n; ++i) dst[i] = half(src + 2 * i);
      return true;
    case kBF16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, src + 2 * i, 2);
        const uint32_t bits = (uint32_t)b << 16;
        std::memcpy(dst + i, &bits, 4);
      }
      return true;
    case kQ8_0:  // x = d * q
      for (uint64_t b = 0; b < n / 32; ++b, src += 34, dst += 32) {
        const float d = half(src);
        for (int j = 0; j < 32; ++j) dst[j] = (float)(int8_t)src[2 + j] * d;
      }
      return true;
    case kQ4_0:  // byte j: low nibble is value j, high nibble value j + 16; x = d * (q - 8)
      for (uint64_t b = 0; b < n / 32; ++b, src += 18, dst += 32) {
        const float d = half(src);
        for (int j = 0; j < 16; ++j) {
          dst[j] = (float)((src[2 + j] & 0xF) - 8) * d;
          dst[j + 16] = (float)((src[2 + j] >> 4) - 8) * d;
        }
      }
      return true;
    case kQ4_1:  // x = d * q + m
    case kQ5_0:  // x = d * (q - 16), q's fifth bit j in bit j of qh
    case kQ5_1:  // x = d * q + m, q with its fifth bit
      for (uint64_t b = 0; b < n / 32; ++b, dst += 32) {
        const float d = half(src), m = type == kQ5_0 ? 0.f : half(src + 2);
        const int zero = type == kQ5_0 ? 16 : 0;  // as ggml: the integer centred first, then scaled
        src += type == kQ5_0 ? 2 : 4;
        uint32_t qh = 0;
        if (type != kQ4_1) std::memcpy(&qh, src, 4), src += 4;
        for (int j = 0; j < 16; ++j) {
          const int lo = (int)((src[j] & 0xFu) | (((qh >> j) & 1u) << 4)) - zero;
          const int hi = (int)((src[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - zero;
          // Q5_0 adds no m: ggml's 0 * (negative d) is -0.f, which + 0.f would turn into +0.f.
          dst[j] = type == kQ5_0 ? (float)lo * d : (float)lo * d + m;
          dst[j + 16] = type == kQ5_0 ? (float)hi * d : (float)hi * d + m;
        }
        src += 16;
      }
      return true;
    case kQ4_K:  // 8 sub-blocks of 32: x = d * sc * q - dmin * m, sc and m 6-bit, packed in 12 bytes
    case kQ5_K:  // the same with a fifth bit per value: bit s of qh[l] for value l of sub-block s
      for (uint64_t b = 0; b < n / 256; ++b, src += type == kQ4_K ? 144 : 176) {
        const float d = half(src), dmin = half(src + 2);
        const uint8_t* sc = src + 4;
        const uint8_t* qh = type == kQ5_K ? src + 16 : nullptr;
        const uint8_t* q = src + (type == kQ5_K ? 48 : 16);
        for (int s = 0; s < 8; ++s) {
          uint8_t scale, min;
          if (s < 4) {
            scale = sc[s] & 63, min = sc[s + 4] & 63;
          } else {
            scale = (uint8_t)((sc[s + 4] & 0xF) | ((sc[s - 4] >> 6) << 4));
            min = (uint8_t)((sc[s + 4] >> 4) | ((sc[s] >> 6) << 4));
          }
          const float dl = d * scale, ml = dmin * min;
          // Sub-blocks 2k and 2k+1 share 32 bytes: low nibbles, then high nibbles.
          const uint8_t* qs = q + 32 * (s / 2);
          for (int l = 0; l < 32; ++l) {
            const int v = ((s % 2 == 0) ? (qs[l] & 0xF) : (qs[l] >> 4)) | (qh ? ((qh[l] >> s) & 1) << 4 : 0);
            *dst++ = dl * (float)v - ml;
          }
        }
      }
      return true;
    case kQ2_K:  // 16 sub-blocks of 16: x = d * (sc & 15) * q - dmin * (sc >> 4), q 2-bit
    case kQ3_K:  // 16 sub-blocks of 16: x = d * (sc - 32) * (q - 4 * !high bit), q 2-bit, sc 6-bit
      for (uint64_t b = 0; b < n / 256; ++b, src += type == kQ2_K ? 84 : 110, dst += 256) {
        // Both store the 2 low bits of values 128h + 32k + l (l < 32) at bits 2k of byte 32h + l of qs.
        const uint8_t* qs = src + (type == kQ2_K ? 16 : 32);
        int scale[16], min[16] = {0};
        float d, dmin = 0;
        if (type == kQ2_K) {
          for (int s = 0; s < 16; ++s) scale[s] = src[s] & 15, min[s] = src[s] >> 4;
          d = half(src + 80), dmin = half(src + 82);
        } else {  // 12 bytes: low 4 bits of scale s in byte s % 8 (high nibble for s >= 8), top 2 in byte 8 + s % 4
          const uint8_t* sc = src + 96;
          for (int s = 0; s < 16; ++s)
            scale[s] = (((sc[s % 8] >> (s < 8 ? 0 : 4)) & 15) | (((sc[8 + s % 4] >> (2 * (s / 4))) & 3) << 4)) - 32;
          d = half(src + 108);
        }
        for (int i = 0; i < 256; ++i) {
          const int h = i / 128, k = (i % 128) / 32, l = i % 32, s = i / 16;
          int q = (qs[32 * h + l] >> (2 * k)) & 3;
          if (type == kQ3_K && !((src[l] >> (4 * h + k)) & 1)) q -= 4;  // hmask: bit 4h + k of byte l
          dst[i] = d * (float)scale[s] * (float)q - dmin * (float)min[s];
        }
      }
      return true;
    case kIQ4_NL:  // blocks of 32 as Q4_0 (byte j: values j and j + 16), the nibble indexing kIq4Levels
      for (uint64_t b = 0; b < n / 32; ++b, src += 18, dst += 32) {
        const float d = half(src);
        for (int j = 0; j < 16; ++j) {
          dst[j] = d * (float)kIq4Levels[src[2 + j] & 0xF];
          dst[j + 16] = d * (float)kIq4Levels[src[2 + j] >> 4];
        }
      }
      return true;
    case kIQ3_XXS:  // 8 sub-blocks of 32: a u32 of 4 x 7 sign bits and a 4-bit scale, 8 grid indices of 4 values
      for (uint64_t b = 0; b < n / 256; ++b, src += 98) {
        const float d = half(src);
        const uint8_t* qs = src + 2;
        for (int s = 0; s < 8; ++s, qs += 8) {
          const uint8_t* a = src + 66 + 4 * s;
          const uint32_t aux = (uint32_t)a[0] | (uint32_t)a[1] << 8 | (uint32_t)a[2] << 16 | (uint32_t)a[3] << 24;
          const float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
          for (int l = 0; l < 4; ++l, dst += 8)
            iq3_eight(db, ggml_tables::kIq3xxsGrid[qs[2 * l]], ggml_tables::kIq3xxsGrid[qs[2 * l + 1]],
                      even_signs((aux >> (7 * l)) & 127), dst);
        }
      }
      return true;
    case kIQ3_S:  // 8 sub-blocks of 32: 9-bit grid indices (8 bits in qs, the 9th in qh), a sign bit per value,
                  // 4-bit scales in pairs: db = d * (1 + 2 * scale)
      for (uint64_t b = 0; b < n / 256; ++b, src += 110) {
        const float d = half(src);
        const uint8_t *qs = src + 2, *qh = src + 66, *signs = src + 74, *scales = src + 106;
        for (int s = 0; s < 8; ++s, qs += 8, signs += 4) {
          const int sc = s % 2 == 0 ? scales[s / 2] & 0xF : scales[s / 2] >> 4;
          const float db = d * (float)(1 + 2 * sc);
          for (int l = 0; l < 4; ++l, dst += 8) {
            const uint32_t i1 = qs[2 * l] | ((qh[s] << (8 - 2 * l)) & 256);
            const uint32_t i2 = qs[2 * l + 1] | ((qh[s] << (7 - 2 * l)) & 256);
            iq3_eight(db, ggml_tables::kIq3sGrid[i1], ggml_tables::kIq3sGrid[i2], signs[l], dst);
          }
        }
      }
      return true;
    case kIQ2_XXS:  // 8 sub-blocks of 32 in 8 bytes: 4 grid indices, then a u32 of 4 x 7 sign bits and a scale
      for (uint64_t b = 0; b < n / 256; ++b, src += 66) {
        const float d = half(src);
        for (int s = 0; s < 8; ++s) {
          const uint8_t* q = src + 2 + 8 * s;
          const uint32_t aux = u16_at(q + 4) | u16_at(q + 6) << 16;
          const float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
          for (int l = 0; l < 4; ++l, dst += 8)
            iq2_eight(db, ggml_tables::kIq2xxsGrid[q[l]], even_signs((aux >> (7 * l)) & 127), dst);
        }
      }
      return true;
    case kIQ2_XS:  // 8 sub-blocks of 32: 4 u16 (9-bit index, 7 sign bits) and a byte of two 4-bit scales
      for (uint64_t b = 0; b < n / 256; ++b, src += 74) {
        const float d = half(src);
        for (int s = 0; s < 8; ++s) {
          const uint8_t sc = src[66 + s];
          const float db[2] = {d * (0.5f + (float)(sc & 0xF)) * 0.25f, d * (0.5f + (float)(sc >> 4)) * 0.25f};
          for (int l = 0; l < 4; ++l, dst += 8) {
            const uint32_t q = u16_at(src + 2 + 2 * (4 * s + l));
            iq2_eight(db[l / 2], ggml_tables::kIq2xsGrid[q & 511], even_signs(q >> 9), dst);
          }
        }
      }
      return true;
    case kIQ2_S:  // 8 sub-blocks of 32: 10-bit indices (8 bits in qs, 2 in qh), a sign byte per 8 values
      for (uint64_t b = 0; b < n / 256; ++b, src += 82) {
        const float d = half(src);
        const uint8_t *qs = src + 2, *signs = src + 34, *qh = src + 66, *scales = src + 74;
        for (int s = 0; s < 8; ++s, qs += 4, signs += 4) {
          const float db[2] = {d * (0.5f + (float)(scales[s] & 0xF)) * 0.25f,
                               d * (0.5f + (float)(scales[s] >> 4)) * 0.25f};
          for (int l = 0; l < 4; ++l, dst += 8)
            iq2_eight(db[l / 2], ggml_tables::kIq2sGrid[qs[l] | ((qh[s] << (8 - 2 * l)) & 0x300)], signs[l], dst);
        }
      }
      return true;
    case kIQ1_S:  // 8 sub-blocks of 32: 11-bit indices (8 bits in qs, 3 in a u16 that also holds a 3-bit
                  // scale and the delta's sign): dl = d * (2 * scale + 1), x = dl * (grid + delta)
      for (uint64_t b = 0; b < n / 256; ++b, src += 50) {
        const float d = half(src);
        for (int s = 0; s < 8; ++s) {
          const uint32_t qh = u16_at(src + 34 + 2 * s);
          const float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
          const float delta = qh & 0x8000 ? -kIq1Delta : kIq1Delta;
          for (int l = 0; l < 4; ++l, dst += 8)
            iq1_eight(dl, ggml_tables::kIq1sGrid[src[2 + 4 * s + l] | (((qh >> (3 * l)) & 7) << 8)], delta, dst);
        }
      }
      return true;
    case kIQ1_M:  // IQ1_S's grid; per 8 values 3 high index bits and a delta sign (qh), 3-bit scales per 16
                  // values, the f16 d from the scales' top nibbles
      for (uint64_t b = 0; b < n / 256; ++b, src += 56) {
        const uint8_t *qs = src, *qh = src + 32, *scb = src + 48;
        const uint32_t sc[4] = {u16_at(scb), u16_at(scb + 2), u16_at(scb + 4), u16_at(scb + 6)};
        const float d = format::f16_to_f32((uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) |
                                                      ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000)));
        for (int s = 0; s < 8; ++s, qs += 4, qh += 2) {
          const float dl1 = d * (float)(2 * ((sc[s / 2] >> (6 * (s % 2))) & 7) + 1);
          const float dl2 = d * (float)(2 * ((sc[s / 2] >> (6 * (s % 2) + 3)) & 7) + 1);
          const uint32_t idx[4] = {qs[0] | ((qh[0] << 8) & 0x700u), qs[1] | ((qh[0] << 4) & 0x700u),
                                   qs[2] | ((qh[1] << 8) & 0x700u), qs[3] | ((qh[1] << 4) & 0x700u)};
          const float delta[4] = {qh[0] & 0x08 ? -kIq1Delta : kIq1Delta, qh[0] & 0x80 ? -kIq1Delta : kIq1Delta,
                                  qh[1] & 0x08 ? -kIq1Delta : kIq1Delta, qh[1] & 0x80 ? -kIq1Delta : kIq1Delta};
          for (int l = 0; l < 4; ++l, dst += 8) iq1_eight(l < 2 ? dl1 : dl2, ggml_tables::kIq1sGrid[idx[l]], delta[l], dst);
        }
      }
      return true;
    case kIQ4_XS:  // 8 sub-blocks of 32, each an IQ4_NL block whose scale is d * (6-bit ls - 32)
      for (uint64_t b = 0; b < n / 256; ++b, src += 136) {
        const float d = half(src);
        const uint16_t hi = (uint16_t)(src[2] | (src[3] << 8));
        const uint8_t* q = src + 8;
        for (int s = 0; s < 8; ++s, q += 16, dst += 32) {
          const int ls = ((src[4 + s / 2] >> (4 * (s % 2))) & 15) | (((hi >> (2 * s)) & 3) << 4);
          const float dl = d * (float)(ls - 32);
          for (int j = 0; j < 16; ++j) {
            dst[j] = dl * (float)kIq4Levels[q[j] & 0xF];
            dst[j + 16] = dl * (float)kIq4Levels[q[j] >> 4];
          }
        }
      }
      return true;
    case kQ6_K:  // 16 sub-blocks of 16: x = d * sc * (q - 32), q = 4 low bits | 2 high bits << 4
      for (uint64_t b = 0; b < n / 256; ++b, src += 210, dst += 256) {
        const uint8_t* ql = src;
        const uint8_t* qh = src + 128;
        const int8_t* sc = reinterpret_cast<const int8_t*>(src + 192);
        const float d = half(src + 208);
        for (int half128 = 0; half128 < 2; ++half128) {
          float* y = dst + 128 * half128;
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
          }
          ql += 64, qh += 32, sc += 8;
        }
      }
      return true;
    default: return false;
  }
}

Status gguf_tokenizer(const uint8_t* data, size_t size, format::Writer* w, int* vocab) {
  Gguf g;
  QTF_TRY(g.parse(data, size));
  return tokenizer(g, w, vocab);
}

Status gguf_to_qtf(const uint8_t* data, size_t size, const char* source_name, std::vector<uint8_t>* out) {
  format::Image image;
  Output o;
  o.image = &image;
  return to_vector(gguf_to_qtf(data, size, source_name, o), image, out);
}

Status gguf_to_qtf(const uint8_t* data, size_t size, const char* source_name, const Output& out) {
  out.image->clear();  // nothing of an earlier conversion survives an error
  Gguf g;
  QTF_TRY(g.parse(data, size));
  std::string_view arch_sv;
  bool has_arch = false;
  QTF_TRY(get_str(g, "general.architecture", &arch_sv, &has_arch));
  if (!has_arch) return Status::error(Err::missing, "GGUF: general.architecture is missing");
  const std::string arch(arch_sv);
  if (arch != "llama" && arch != "qwen2")
    return Status::error(Err::unsupported, "GGUF architecture '%s' is not supported (llama, qwen2)", shown(arch_sv).c_str());
  if (g.tensors.empty()) return Status::error(Err::missing, "GGUF: no tensors (a vocab-only file?)");

  LlamaConfig c;
  const std::string k = arch + ".";
  QTF_TRY(get_int(g, k + "embedding_length", true, 1, 1 << 16, &c.d));
  QTF_TRY(get_int(g, k + "block_count", true, 1, 1 << 12, &c.n_layers));
  QTF_TRY(get_int(g, k + "feed_forward_length", true, 1, 1 << 20, &c.d_ff));
  QTF_TRY(get_int(g, k + "attention.head_count", true, 1, c.d, &c.n_heads));
  c.n_kv_heads = c.n_heads;
  QTF_TRY(get_int(g, k + "attention.head_count_kv", false, 1, c.n_heads, &c.n_kv_heads));
  int64_t ctx = 2048;
  QTF_TRY(get_int(g, k + "context_length", true, 1, INT64_MAX, &ctx));
  c.context = std::min<int64_t>(ctx, 1 << 16);  // the engine's longest context
  QTF_TRY(get_float(g, k + "attention.layer_norm_rms_epsilon", true, &c.rms_eps));
  QTF_TRY(get_float(g, k + "rope.freq_base", false, &c.rope_theta));
  if (c.d % c.n_heads != 0 || c.n_heads % c.n_kv_heads != 0 || (c.d / c.n_heads) % 2 != 0)
    return Status::error(Err::bad_value, "GGUF: heads do not divide evenly (embedding %lld, %lld heads, %lld kv heads; "
                         "the head size must be even)", (long long)c.d, (long long)c.n_heads, (long long)c.n_kv_heads);
  const int64_t hd = c.d / c.n_heads;
  for (const char* key : {"rope.dimension_count", "attention.key_length", "attention.value_length"}) {
    int64_t v = hd;
    QTF_TRY(get_int(g, k + key, false, 0, INT64_MAX, &v));
    if (v != hd)
      return Status::error(Err::unsupported, "GGUF: %s%s = %lld, not the head size %lld (not supported)", k.c_str(), key,
                           (long long)v, (long long)hd);
  }
  int64_t experts = 0;
  QTF_TRY(get_int(g, k + "expert_count", false, 0, INT64_MAX, &experts));
  if (experts > 0)
    return Status::error(Err::unsupported, "GGUF: a mixture of %lld experts is not supported", (long long)experts);
  // Rope scaling: qtf's rotary has none, so only a factor of 1 (whatever the type) imports.
  double factor = 0, attn_factor = 1;
  QTF_TRY(get_float(g, k + "rope.scale_linear", false, &factor));
  QTF_TRY(get_float(g, k + "rope.scaling.factor", false, &factor));
  QTF_TRY(get_float(g, k + "rope.scaling.attn_factor", false, &attn_factor));
  std::string_view scaling = "linear";
  bool has_scaling = false;
  QTF_TRY(get_str(g, k + "rope.scaling.type", &scaling, &has_scaling));
  if ((factor != 0 && factor != 1) || attn_factor != 1)
    return Status::error(Err::unsupported, "GGUF: rope scaling '%s' with factor %g (attention factor %g) is not "
                         "supported: qtf's rotary positions have no scaling", shown(scaling).c_str(), factor, attn_factor);
  if (!(c.rope_theta > 1 && c.rope_theta < 1e12))
    return Status::error(Err::bad_value, "GGUF: %srope.freq_base = %g is not in (1, 1e12)", k.c_str(), c.rope_theta);
  if (g.tensor("rope_freqs.weight"))
    return Status::error(Err::unsupported, "GGUF: rope frequency factors (rope_freqs.weight, Llama 3.1-style scaling) "
                         "are not supported");

  // The embedding. A file with output.weight but no token_embd.weight is a tied model whose checkpoint
  // kept only the classifier (convert_hf_to_gguf.py maps a lone lm_head.weight to output.weight, as with
  // TinyStories-656K): the one matrix is both, so it is imported as the tied embedding. (llama.cpp
  // refuses such a file: its llama loader requires token_embd.weight.)
  const char* emb_name = "token_embd.weight";
  if (!g.tensor(emb_name) && g.tensor("output.weight")) emb_name = "output.weight";
  Tensor* emb = g.tensor(emb_name);
  if (!emb || emb->ndim != 2)
    return Status::error(Err::missing, "GGUF: tensor 'token_embd.weight' (or, for a tied model, 'output.weight') is "
                         "missing or not a matrix");
  c.vocab = (int64_t)emb->ne[1];
  const bool emb_from_output = emb_name != std::string("token_embd.weight");
  c.tied = emb_from_output || g.tensor("output.weight") == nullptr;
  const int64_t kv = c.n_kv_heads * hd;
  // Biases: qwen2's q/k/v (or any linear's). model.linear_bias is all-or-nothing, so when any is present
  // every linear gets one and the missing ones are zeros (the same outputs).
  static const char* const kLinears[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                          "ffn_down"};
  static const char* const kQtfLinears[7] = {"attn.q", "attn.k", "attn.v", "attn.o", "ffn.gate", "ffn.up",
                                             "ffn.down"};
  const int64_t rows_of[7] = {c.d, kv, kv, c.d, c.d_ff, c.d_ff, c.d};
  const int64_t cols_of[7] = {c.d, c.d, c.d, c.d, c.d, c.d, c.d_ff};
  for (int64_t l = 0; l < c.n_layers && !c.linear_bias; ++l)
    for (const char* lin : kLinears)
      if (g.tensor("blk." + std::to_string(l) + "." + lin + ".bias")) c.linear_bias = true;

  format::Writer w;
  add_llama_config(c, &w);
  int n_tokens = 0;
  QTF_TRY(tokenizer(g, &w, &n_tokens));
  if (n_tokens != c.vocab)
    return Status::error(Err::bad_shape, "GGUF: %d tokens, but %s has %lld rows", n_tokens, emb_name,
                         (long long)c.vocab);
  w.add_str("provenance.source", "GGUF v" + std::to_string(g.version) + ", architecture " + arch);
  w.add_i64("provenance.source_bytes", (int64_t)size);
  w.add_str("provenance.created_by", "qtf import (engine/import/gguf.cpp)");
  if (source_name && *source_name) w.add_str("provenance.source_file", utf8_or_escaped(source_name, std::strlen(source_name)));
  std::string_view name;
  bool has_name = false;
  if (get_str(g, "general.name", &name, &has_name).ok() && has_name)
    w.add_str("provenance.general_name", utf8_or_escaped(name.data(), std::min<size_t>(name.size(), 1024)));
  if (ctx != c.context) w.add_i64("provenance.gguf_context_length", ctx);
  if (emb_from_output) w.add_str("provenance.gguf_embedding", "output.weight (no token_embd.weight: tied)");

  Converter cv{g, w, arch, arch == "qwen2", hd, out.dequantize_f32, out.requantize_q4, {}};
  const uint64_t d = (uint64_t)c.d;
  Tensor* t = nullptr;
  QTF_TRY(cv.take(emb_name, {(uint64_t)c.vocab, d}, &t));
  cv.put(*t, "tok_emb", {(uint64_t)c.vocab, d}, false);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";  // the same prefix in both files
    QTF_TRY(cv.take(p + "attn_norm.weight", {d}, &t));
    cv.put(*t, p + "ln1.w", {d}, false);
    QTF_TRY(cv.take(p + "ffn_norm.weight", {d}, &t));
    cv.put(*t, p + "ln2.w", {d}, false);
    for (int i = 0; i < 7; ++i) {
      const uint64_t rows = (uint64_t)rows_of[i], cols = (uint64_t)cols_of[i];
      const bool rotary = i < 2;  // q and k
      QTF_TRY(cv.take(p + kLinears[i] + ".weight", {rows, cols}, &t));
      cv.put(*t, p + kQtfLinears[i] + ".w", {rows, cols}, rotary);
      if (!c.linear_bias) continue;
      const std::string bias = p + kLinears[i] + ".bias";
      if (g.tensor(bias)) {
        QTF_TRY(cv.take(bias, {rows}, &t));
        cv.put(*t, p + kQtfLinears[i] + ".b", {rows}, rotary);
      } else {
        cv.put_zeros(p + kQtfLinears[i] + ".b", rows);
      }
    }
  }
  QTF_TRY(cv.take("output_norm.weight", {d}, &t));
  cv.put(*t, "lnf.w", {d}, false);
  if (!c.tied) {
    QTF_TRY(cv.take("output.weight", {(uint64_t)c.vocab, d}, &t));
    cv.put(*t, "head.w", {(uint64_t)c.vocab, d}, false);
  }
  for (const Tensor& u : g.tensors)
    if (!u.used)
      return Status::error(Err::unsupported, "GGUF: tensor '%.*s' is not part of the %s block qtf imports",
                           (int)u.name.size(), u.name.data(), arch.c_str());
  return cv.write(out);
}

}  // namespace qtf::import
