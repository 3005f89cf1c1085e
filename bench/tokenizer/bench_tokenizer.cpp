// Tokenizer init (the O(vocab) build from the file's arrays) and encode (O(n log n) merges) on:
//   tok512     llama2.c's stories260K tokenizer (tests/fixtures/tok512.bin), spm, 512 tokens;
//   llama2     the Llama 2 32000-token tokenizer, when QTF_LLAMA2_TOKENIZER names its llama2.c
//              tokenizer.bin (e.g. ../shared/data/real/llama2-tokenizer/tokenizer.bin);
//   synthetic  an spm vocabulary of 32000 generated pieces (always available).
// Usage: QTF_LLAMA2_TOKENIZER=PATH bench_tokenizer [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "format/reader.h"
#include "host/session.h"
#include "host/writer.h"
#include "import/llama2c_tokenizer.h"
#include "runtime/tokenizer/tokenizer.h"

namespace {

using namespace qtf;

struct Vocab {
  std::vector<uint8_t> file;
  format::ModelFile mf;
  int vocab = 0;
  bool ok = false;
};

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::unique_ptr<Vocab> from_llama2c(const std::string& path, int vocab) {
  auto v = std::make_unique<Vocab>();
  const std::vector<uint8_t> bin = read_bytes(path);
  format::Writer w;
  if (bin.empty() || !import::llama2c_tokenizer(bin.data(), bin.size(), vocab, &w).ok()) return v;
  v->file = w.finish();
  v->vocab = vocab;
  v->ok = v->mf.open(v->file.data(), v->file.size()).ok();
  return v;
}

// 3 specials, 256 byte tokens, then pieces "▁" + letters from a fixed pseudo-random stream, unique.
std::unique_ptr<Vocab> synthetic(int vocab) {
  auto v = std::make_unique<Vocab>();
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<double> scores = {0, 0, 0};
  char s[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(s, sizeof s, "<0x%02X>", b);
    tokens.push_back(s);
    scores.push_back(0);
  }
  uint32_t x = 12345;
  for (int i = 0; (int)tokens.size() < vocab; ++i) {
    x = x * 1664525u + 1013904223u;
    std::string p = (x >> 31) ? "\xe2\x96\x81" : "";
    const int len = 1 + (int)((x >> 8) % 8);
    for (int k = 0; k < len; ++k) p += (char)('a' + (int)((x >> (k * 3 % 24)) + i + k) % 26);
    tokens.push_back(p + std::to_string(i));  // unique
    scores.push_back(-(double)i);
  }
  format::Writer w;
  w.add_str("tokenizer.type", "spm");
  w.add_str_array("tokenizer.tokens", tokens);
  w.add_f64_array("tokenizer.scores", scores);
  v->file = w.finish();
  v->vocab = vocab;
  v->ok = v->mf.open(v->file.data(), v->file.size()).ok();
  return v;
}

Vocab* get(int which) {
  static std::unique_ptr<Vocab> v[3];
  if (!v[which]) {
    if (which == 0) v[0] = from_llama2c(std::string(QTF_SOURCE_DIR) + "/tests/fixtures/tok512.bin", 512);
    if (which == 1) {
      const char* path = std::getenv("QTF_LLAMA2_TOKENIZER");
      v[1] = path ? from_llama2c(path, 32000) : std::make_unique<Vocab>();
    }
    if (which == 2) v[2] = synthetic(32000);
  }
  return v[which].get();
}

const char* const kNames[] = {"tok512", "llama2", "synthetic32000"};

void BM_init(benchmark::State& st) {
  Vocab* v = get((int)st.range(0));
  if (!v->ok) {
    st.SkipWithError("vocabulary not available (QTF_LLAMA2_TOKENIZER unset?)");
    return;
  }
  st.SetLabel(kNames[st.range(0)]);
  const size_t need = Tokenizer::arena_bytes(v->mf, v->vocab);
  host::AlignedBuffer arena;
  if (!arena.allocate(need).ok()) return;
  for (auto _ : st) {
    Tokenizer t;
    Status s = t.init(v->mf, v->vocab, arena.data(), arena.size());
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_init)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

// Encodes a story-like text of range(1) KiB; bytes/s.
void BM_encode(benchmark::State& st) {
  Vocab* v = get((int)st.range(0));
  if (!v->ok) {
    st.SkipWithError("vocabulary not available (QTF_LLAMA2_TOKENIZER unset?)");
    return;
  }
  st.SetLabel(kNames[st.range(0)]);
  host::AlignedBuffer arena;
  Tokenizer t;
  if (!arena.allocate(Tokenizer::arena_bytes(v->mf, v->vocab)).ok() ||
      !t.init(v->mf, v->vocab, arena.data(), arena.size()).ok())
    return;
  std::string text;
  const std::string story =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. "
      "One day, she saw a big, red ball in the park. \"Can I play with you?\" she asked.\n";
  while (text.size() < (size_t)st.range(1) * 1024) text += story;
  std::vector<int32_t> ids;
  for (auto _ : st) {
    Status s = host::tokenize(t, text.data(), text.size(), EncodeOptions(), &ids);
    benchmark::DoNotOptimize(s);
  }
  st.SetBytesProcessed((int64_t)st.iterations() * (int64_t)text.size());
  st.counters["tokens"] = (double)ids.size();
}
BENCHMARK(BM_encode)->Args({0, 4})->Args({0, 200})->Args({1, 4})->Args({1, 200})->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
