// Imports checked against outside references, with files that are not in the repository (configure with
// -DQTF_LLAMACPP_VOCAB_DIR=... and/or -DQTF_REAL_DATA_DIR=...; tests/import/CMakeLists.txt registers this
// test only then, so it never passes by skipping):
//  - llama.cpp's tokenizer test vectors for llama-spm (models/ggml-vocab-llama-spm.gguf.inp/.out, split and
//    run as llama.cpp's tests/test-tokenizer-0.cpp runs them: add_special false, parse_special false). The
//    vocab GGUF itself is made here from the Llama 2 tokenizer.model of the shared data the way llama.cpp's
//    converter makes it (pieces, scores and SentencePiece's piece types as token_type; the copy of
//    ggml-vocab-llama-spm.gguf fetched here was damaged: its invalid UTF-8 bytes replaced by U+FFFD), then
//    imported by the GGUF importer; every vector's ids must come out.
//  - stories260K (llama2.c) with its tok512 tokenizer, imported in C++: greedy from BOS prints exactly the
//    text llama2.c's doc/stories260K.md shows for `run stories260K.bin -z tok512.bin -t 0.0`.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "host/session.h"
#include "import/gguf.h"
#include "import/import.h"
#include "import_support.h"

using namespace qtf;

namespace {



// A SentencePiece tokenizer.model (protobuf ModelProto: field 1 = repeated SentencePiece {1 piece, 2 score,
// 3 type}) as a vocab-only GGUF, as llama.cpp's converter writes one (tokenizer.ggml.model "llama").
std::vector<uint8_t> spm_model_gguf(const std::vector<uint8_t>& m) {
  size_t p = 0;
  auto varint = [&](const std::vector<uint8_t>& b, size_t* at) {
    uint64_t v = 0;
    for (int shift = 0; *at < b.size() && shift < 64; shift += 7) {
      const uint8_t c = b[(*at)++];
      v |= (uint64_t)(c & 0x7F) << shift;
      if (!(c & 0x80)) break;
    }
    return v;
  };
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int32_t> types;
  while (p < m.size()) {
    const uint64_t key = varint(m, &p);
    const int field = (int)(key >> 3), wire = (int)(key & 7);
    if (wire == 0) { varint(m, &p); continue; }
    if (wire == 5) { p += 4; continue; }
    if (wire == 1) { p += 8; continue; }
    REQUIRE(wire == 2);
    const size_t len = (size_t)varint(m, &p), end = p + len;
    REQUIRE(end <= m.size());
    if (field == 1) {  // one SentencePiece
      std::string piece;
      float score = 0;
      int32_t type = 1;
      while (p < end) {
        const uint64_t k = varint(m, &p);
        if ((k >> 3) == 1 && (k & 7) == 2) {
          const size_t n = (size_t)varint(m, &p);
          piece.assign(reinterpret_cast<const char*>(m.data() + p), n);
          p += n;
        } else if ((k >> 3) == 2 && (k & 7) == 5) {
          std::memcpy(&score, m.data() + p, 4);
          p += 4;
        } else if ((k >> 3) == 3 && (k & 7) == 0) {
          type = (int32_t)varint(m, &p);
        } else {
          FAIL("unexpected field in a SentencePiece");
        }
      }
      pieces.push_back(piece), scores.push_back(score), types.push_back(type);
    }
    p = end;
  }
  qtf::testing::GgufWriter g;
  g.str("general.architecture", "llama");
  g.str("tokenizer.ggml.model", "llama");
  g.strs("tokenizer.ggml.tokens", pieces);
  g.f32s("tokenizer.ggml.scores", scores);
  g.i32s("tokenizer.ggml.token_type", types);
  g.u32("tokenizer.ggml.bos_token_id", 1);
  g.u32("tokenizer.ggml.eos_token_id", 2);
  g.u32("tokenizer.ggml.unknown_token_id", 0);
  return g.finish();
}

}  // namespace

#if defined(QTF_LLAMACPP_VOCAB_DIR) && defined(QTF_REAL_DATA_DIR)
TEST_CASE("llama.cpp's tokenizer test vectors: llama-spm (Llama 2's tokenizer.model as a vocab GGUF)") {
  {
    const char* name = "ggml-vocab-llama-spm.gguf";
    const std::string base = std::string(QTF_LLAMACPP_VOCAB_DIR) + "/" + name;
    INFO(name);
    const std::vector<uint8_t> model = qtf::testing::read_bytes(std::string(QTF_REAL_DATA_DIR) + "/llama2-tokenizer/tokenizer.model");
    REQUIRE(model.size() > 1000);
    const std::vector<uint8_t> g = spm_model_gguf(model);
    const int checked = qtf::testing::check_vocab_vectors(g, base);
    MESSAGE(std::string(name) << ": " << checked << " vectors");
    CHECK(checked > 30);
  }
}
#endif

#ifdef QTF_REAL_DATA_DIR
TEST_CASE("stories260K + tok512 imported in C++: greedy from BOS is llama2.c's documented text") {
  const std::string dir = std::string(QTF_REAL_DATA_DIR) + "/stories260K/";
  host::LoadedModel lm;
  import::Options opt;
  const std::string tok = dir + "tok512.bin";
  opt.tokenizer_path = tok.c_str();
  Status st = lm.load_any((dir + "stories260K.bin").c_str(), true, opt);
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(lm.source() == import::Source::llama2c);
  host::HostContext hc;
  REQUIRE(hc.init(lm, ContextOptions()).ok());
  const Tokenizer& tok = lm.tokenizer();
  // run.c: BOS, then argmax until BOS comes back or 256 steps; decode drops the space after BOS.
  std::string text;
  int token = tok.bos_id(), steps = 0;
  REQUIRE(token == 1);
  while (steps < 256) {
    REQUIRE(hc.ctx().eval(token).ok());
    const float* logits = hc.ctx().logits();
    int next = 0;
    for (int v = 1; v < tok.vocab(); ++v)
      if (logits[v] > logits[next]) next = v;
    ++steps;
    if (next == 1) break;
    const format::Str piece = tok.decode(token, next);
    text.append(piece.data, piece.size);
    token = next;
  }
  const std::string want =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw "
      "a big, red ball. She wanted to play with it, but it was too high.\n"
      "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want "
      "to play with your ball, but I can't find it.\"\n"
      "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n"
      "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what to do.\" Her mom said, "
      "\"Don't worry, Lily. We can help you.";
  CHECK(text == want);
}
#endif
