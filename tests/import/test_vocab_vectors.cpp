// llama.cpp's tokenizer test vectors, run on llama.cpp's own vocabulary files (tests/fixtures/llama.cpp-vocab,
// README there: provenance and MIT license): each .inp text must encode to the ids of its .out line, as
// llama.cpp's tests/test-tokenizer-0.cpp checks them (add_special false, parse_special false). The
// vocabulary goes through the GGUF importer's tokenizer path, so this checks the importer and the
// tokenizer together: llama-spm (SentencePiece-style BPE by scores, byte fallback) and gpt-2 (byte-level
// BPE by merges with the GPT-2 pre-tokenizer).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "host/writer.h"
#include "host/session.h"
#include "import/gguf.h"
#include "import_support.h"

using namespace qtf;

namespace {

void check_vectors(const char* name, int min_vectors) {
  INFO(std::string(name));
  const std::string base = std::string(QTF_SOURCE_DIR) + "/tests/fixtures/llama.cpp-vocab/" + name;
  const std::vector<uint8_t> g = qtf::testing::read_bytes(base);
  REQUIRE(g.size() > 100000);
  format::Writer w;
  int vocab = 0;
  Status st = import::gguf_tokenizer(g.data(), g.size(), &w, &vocab);
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
  for (const auto& [text, want] : qtf::testing::vocab_vectors(base)) {
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
  MESSAGE(std::string(name) << ": " << equal << " of " << checked << " vectors equal");
  CHECK(checked >= min_vectors);
}

}  // namespace

TEST_CASE("llama.cpp's tokenizer test vectors: llama-spm") { check_vectors("ggml-vocab-llama-spm.gguf", 40); }
TEST_CASE("llama.cpp's tokenizer test vectors: gpt-2") { check_vectors("ggml-vocab-gpt-2.gguf", 40); }
