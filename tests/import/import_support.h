// Shared by the importer tests: fixture bytes, a model's tensors as floats, the tiny Llama fixture as a
// GGUF or llama2.c checkpoint, an expect-this-error check, and llama.cpp's tokenizer test vectors.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "format/format.h"
#include "format/reader.h"
#include "host/session.h"
#include "host/writer.h"
#include "import/gguf.h"
#include "support/gguf_writer.h"
#include "support/json_lite.h"

namespace qtf::testing {

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
inline std::vector<uint8_t> fixture_bytes(const char* name) {
  return read_bytes(std::string(QTF_SOURCE_DIR) + "/tests/fixtures/" + name);
}

// tests/fixtures/llama2c_tiny's reference logits at every position, against the model in `bytes`.
inline float worst_logit_error(const std::vector<uint8_t>& bytes) {
  qtf::testing::Json fx;
  REQUIRE(qtf::testing::load_json(std::string(QTF_SOURCE_DIR) + "/tests/fixtures/llama2c_tiny.json", &fx));
  host::LoadedModel lm;
  Status st = lm.load_memory(bytes.data(), bytes.size());
  REQUIRE_MESSAGE(st.ok(), st.message());
  host::HostContext hc;
  REQUIRE(hc.init(lm, ContextOptions()).ok());
  float worst = 0;
  for (size_t t = 0; t < fx["tokens"].size(); ++t) {
    REQUIRE(hc.ctx().eval((int)fx["tokens"][t].num).ok());
    for (int v = 0; v < 40; ++v)
      worst = std::fmax(worst, std::fabs(hc.ctx().logits()[v] - (float)fx["logits"][t][v].num));
  }
  return worst;
}

// Every tensor of a verified file, widened to f32 (f32, f16 and q4), with its dims.
struct Tensors {
  std::map<std::string, std::vector<float>> values;
  std::map<std::string, std::vector<uint64_t>> dims;
  std::map<std::string, format::DType> dtype;
  std::vector<std::string> order;
};
inline Tensors tensors_of(const format::ModelFile& f) {
  Tensors out;
  uint64_t cur = 0;
  format::TensorInfo t;
  while (f.next_tensor(&cur, &t)) {
    const std::string name(t.name.data, t.name.size);
    std::vector<float> v(t.elements());
    if (t.dtype == format::DType::q4) {  // rows of 18-byte blocks: f16 d, byte j = values j | j+16 << 4
      const uint64_t cols = t.dims[t.ndim - 1], blocks = (cols + 31) / 32;
      const uint8_t* b = static_cast<const uint8_t*>(t.values);
      for (uint64_t r = 0; r < t.rows(); ++r)
        for (uint64_t c = 0; c < cols; ++c) {
          const uint8_t* blk = b + (r * blocks + c / 32) * 18;
          const int nib = c % 32 < 16 ? (blk[2 + c % 32] & 15) : (blk[2 + c % 32 - 16] >> 4);
          v[r * cols + c] = (float)(nib - 8) * format::f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
        }
    }
    for (uint64_t i = 0; i < v.size() && t.dtype != format::DType::q4; ++i) {
      if (t.dtype == format::DType::f32) {
        std::memcpy(&v[i], static_cast<const uint8_t*>(t.values) + 4 * i, 4);
      } else if (t.dtype == format::DType::q8) {  // int8 values, a scale per row
        v[i] = t.row_scales[i / t.dims[t.ndim - 1]] * (float)static_cast<const int8_t*>(t.values)[i];
      } else {
        REQUIRE(t.dtype == format::DType::f16);
        uint16_t h;
        std::memcpy(&h, static_cast<const uint8_t*>(t.values) + 2 * i, 2);
        v[i] = format::f16_to_f32(h);
      }
    }
    out.values[name] = v;
    out.dims[name] = std::vector<uint64_t>(t.dims, t.dims + t.ndim);
    out.dtype[name] = t.dtype;
    out.order.push_back(name);
  }
  return out;
}

inline void expect_error(const Status& st, const char* text) {
  const std::string msg = st.message();
  INFO("expected '" << text << "' in: " << msg);
  CHECK(!st.ok());
  CHECK(msg.find(text) != std::string::npos);
  CHECK(msg.find('\n') == std::string::npos);
}

// The tests of a .inp/.out pair, split as llama.cpp's test-tokenizer-0 splits them.
inline std::vector<std::pair<std::string, std::vector<int32_t>>> vocab_vectors(const std::string& base) {
  const std::vector<uint8_t> inp = read_bytes(base + ".inp"), out = read_bytes(base + ".out");
  const std::string raw(inp.begin(), inp.end()), sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      texts.push_back(raw.substr(pos));
      break;
    }
    texts.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<std::vector<int32_t>> ids;
  std::string line;
  for (char c : std::string(out.begin(), out.end())) {
    if (c != '\n') {
      line += c;
      continue;
    }
    std::vector<int32_t> v;
    for (size_t p = 0; p < line.size();) {
      while (p < line.size() && line[p] == ' ') ++p;
      if (p < line.size()) v.push_back((int32_t)std::strtol(line.c_str() + p, nullptr, 10));
      while (p < line.size() && line[p] != ' ') ++p;
    }
    ids.push_back(v);
    line.clear();
  }
  REQUIRE(texts.size() == ids.size());
  std::vector<std::pair<std::string, std::vector<int32_t>>> tests;
  for (size_t i = 0; i < texts.size(); ++i) tests.push_back({texts[i], ids[i]});
  return tests;
}

// Checks llama.cpp's tokenizer test vectors (base + ".inp" / ".out") against the tokenizer of a
// vocabulary GGUF imported by the GGUF importer, each text encoded as llama.cpp's test-tokenizer-0 encodes
// it (add_special false, parse_special false). Returns how many vectors were checked.
inline int check_vocab_vectors(const std::vector<uint8_t>& gguf, const std::string& base) {
  format::Writer w;
  int vocab = 0;
  Status st = import::gguf_tokenizer(gguf.data(), gguf.size(), &w, &vocab);
  REQUIRE_MESSAGE(st.ok(), st.message());
  const std::vector<uint8_t> img = w.finish();
  format::ModelFile f;
  REQUIRE(f.open(img.data(), img.size()).ok());
  Tokenizer tok;
  host::AlignedBuffer arena;
  REQUIRE(arena.allocate(Tokenizer::arena_bytes(f, vocab)).ok());
  st = tok.init(f, vocab, arena.data(), arena.size());
  REQUIRE_MESSAGE(st.ok(), st.message());
  int checked = 0, equal = 0;
  for (const auto& [text, want] : vocab_vectors(base)) {
    std::vector<int32_t> got(Tokenizer::max_tokens(text.size()));
    std::vector<uint8_t> work(tok.work_bytes(text.size()) + 1);
    EncodeOptions opt;
    opt.work = work.data(), opt.work_bytes = work.size();
    int n = 0;
    REQUIRE(tok.encode(text.data(), text.size(), got.data(), (int)got.size(), &n, nullptr, opt).ok());
    got.resize((size_t)n);
    INFO("text '" << text << "'");
    CHECK(got == want);
    equal += got == want;
    ++checked;
  }
  MESSAGE(base << ": " << equal << " of " << checked << " vectors equal");
  return checked;
}

}  // namespace qtf::testing
