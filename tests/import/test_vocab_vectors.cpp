// llama.cpp's tokenizer test vectors, run on llama.cpp's own vocabulary files (tests/fixtures/llama.cpp-vocab,
// README there: provenance and MIT license): each .inp text must encode to the ids of its .out line, as
// llama.cpp's tests/test-tokenizer-0.cpp checks them (add_special false, parse_special false). The
// vocabulary goes through the GGUF importer's tokenizer path, so this checks the importer and the
// tokenizer together: llama-spm (SentencePiece-style BPE by scores, byte fallback) and gpt-2 (byte-level
// BPE by merges with the GPT-2 pre-tokenizer).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "import_support.h"

using namespace qtf;

namespace {

void check_vectors(const char* name, int min_vectors) {
  INFO(std::string(name));
  const std::string base = std::string(QTF_SOURCE_DIR) + "/tests/fixtures/llama.cpp-vocab/" + name;
  const std::vector<uint8_t> g = qtf::testing::read_bytes(base);
  REQUIRE(g.size() > 100000);
  CHECK(qtf::testing::check_vocab_vectors(g, base) >= min_vectors);
}

}  // namespace

TEST_CASE("llama.cpp's tokenizer test vectors: llama-spm") { check_vectors("ggml-vocab-llama-spm.gguf", 40); }
TEST_CASE("llama.cpp's tokenizer test vectors: gpt-2") { check_vectors("ggml-vocab-gpt-2.gguf", 40); }
