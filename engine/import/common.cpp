#include "import/common.h"

#include <cstring>
#include <unistd.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#endif

namespace qtf::import {

void add_llama_config(const LlamaConfig& c, format::Writer* w) {
  w->add_str("qtf.arch", "qtensorformer");
  w->add_i64("model.vocab_size", c.vocab);
  w->add_i64("model.d_model", c.d);
  w->add_i64("model.n_layers", c.n_layers);
  w->add_i64("model.n_heads", c.n_heads);
  w->add_i64("model.n_kv_heads", c.n_kv_heads);
  w->add_i64("model.d_ff", c.d_ff);
  w->add_i64("model.context", c.context);
  w->add_i64("model.tensorized", 0);
  w->add_i64("model.n_qubits", 0);
  w->add_str("model.activation", "swiglu");
  w->add_i64("model.tied_embeddings", c.tied ? 1 : 0);
  w->add_f64("model.ln_eps", c.rms_eps);
  w->add_str("model.norm", "rmsnorm");
  w->add_str("model.positions", "rotary");
  w->add_f64("model.rope_theta", c.rope_theta);
  w->add_i64("model.linear_bias", c.linear_bias ? 1 : 0);
}

std::string escape_token(const char* p, size_t n) {
  std::string out;
  out.reserve(n);
  size_t i = 0;
  while (i < n) {
    const unsigned char c = (unsigned char)p[i];
    if (c == '\\') {
      out += "\\\\";
      ++i;
      continue;
    }
    // Spaces and control bytes as \xHH too: a merge rule "LEFT RIGHT" splits at its one raw space.
    const bool plain = c > 0x20 && c != 0x7F;
    // Length of the UTF-8 character starting here (1 for ASCII); format::utf8_valid judges it whole.
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (plain && len != 0 && len <= n - i && format::utf8_valid(p + i, len)) {
      out.append(p + i, len);
      i += len;
    } else {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
      ++i;
    }
  }
  return out;
}

std::string utf8_or_escaped(const char* p, size_t n) {
  return format::utf8_valid(p, n) ? std::string(p, n) : escape_token(p, n);
}

void add_stand_in_tokenizer(int64_t vocab, format::Writer* w) {
  std::vector<std::string> tokens;
  tokens.reserve((size_t)vocab);
  uint32_t cp = 0x100;
  for (int64_t i = 0; i < vocab; ++i, ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xE000;
    char b[4];
    size_t n;
    if (cp < 0x800) {
      b[0] = (char)(0xC0 | (cp >> 6)), b[1] = (char)(0x80 | (cp & 63)), n = 2;
    } else if (cp < 0x10000) {
      b[0] = (char)(0xE0 | (cp >> 12)), b[1] = (char)(0x80 | ((cp >> 6) & 63)), b[2] = (char)(0x80 | (cp & 63)), n = 3;
    } else {
      b[0] = (char)(0xF0 | (cp >> 18)), b[1] = (char)(0x80 | ((cp >> 12) & 63));
      b[2] = (char)(0x80 | ((cp >> 6) & 63)), b[3] = (char)(0x80 | (cp & 63)), n = 4;
    }
    tokens.emplace_back(b, n);
  }
  w->add_str("tokenizer.type", "char");
  w->add_str_array("tokenizer.tokens", tokens);
}

std::string base_name(const char* path) {
  const char* slash = std::strrchr(path, '/');
  std::string s = slash ? slash + 1 : path;
  if (s.empty() && slash) {  // "dir/": the directory's own name
    std::string p(path, (size_t)(slash - path));
    while (!p.empty() && p.back() == '/') p.pop_back();
    size_t k = p.rfind('/');
    s = k == std::string::npos ? p : p.substr(k + 1);
  }
  return s;
}

void permute_rotate_half(uint8_t* data, uint64_t rows, uint64_t hd, size_t row_bytes) {
  const uint64_t half = hd / 2;
  std::vector<uint8_t> head((size_t)(hd * row_bytes));
  for (uint64_t h = 0; h < rows / hd; ++h) {
    uint8_t* base = data + h * hd * row_bytes;
    std::memcpy(head.data(), base, head.size());
    for (uint64_t i = 0; i < half; ++i) {
      std::memcpy(base + (2 * i) * row_bytes, head.data() + i * row_bytes, row_bytes);
      std::memcpy(base + (2 * i + 1) * row_bytes, head.data() + (half + i) * row_bytes, row_bytes);
    }
  }
}

Status tensor_done(format::Writer* w, size_t i) {
  uint64_t first = 0;
  const format::TensorInfo t = w->tensor_info(i);
  if (const uint64_t bad = format::count_nonfinite(t, &first))
    return Status::error(Err::bad_value, "tensor '%.*s' has %llu non-finite values (NaN/Inf) after conversion, the "
                         "first at index %llu", (int)t.name.size, t.name.data, (unsigned long long)bad,
                         (unsigned long long)first);
  w->done(i);
  return Status::success();
}

Status seal_verified(format::Writer* w, const Output& out) {
  if (!w->end()) {
    out.image->clear();
    return Status::error(Err::invalid_argument, "import: a tensor of the image was never written");
  }
  format::ModelFile f;
  Status st = f.open(out.image->data(), out.image->size());
  if (!st.ok()) {
    out.image->clear();
    return Status::error(st.code(), "the converted model does not verify: %s", st.message());
  }
  if (out.file) *out.file = f;
  return st;
}

void drop_pages(const void* p, size_t n) {
#if (defined(__unix__) || defined(__APPLE__)) && defined(MADV_DONTNEED)
  static const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  if (page == 0 || (page & (page - 1)) != 0) return;
  const uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + n) & ~(page - 1);
  if (b > a) madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);  // advice: nothing to do on failure
#else
  (void)p, (void)n;
#endif
}

Status to_vector(Status st, const format::Image& image, std::vector<uint8_t>* out) {
  out->assign(image.begin(), image.end());
  return st;
}

}  // namespace qtf::import
