// Fuzzes the tokenizers with arbitrary bytes, and their construction from arbitrary vocabularies.
// Input: byte 0 picks the mode, byte 1 the output capacity (0..255 tokens), the rest is the payload.
//   mode 0/1/2: encode the payload with a fixed char / byte / bpe tokenizer;
//   mode 3: the payload's lines are a char vocabulary; mode 4: lines are bpe tokens (escaped), then a
//   line "==", then merge rules. The tokenizer is built from them and encodes the payload itself.
// Checked: ids are in range, the count is exact, and the tokens' bytes give back the input (minus the
// bytes reported as skipped; byte-complete tokenizers skip nothing).
#include <cstdio>
#include <string>
#include <vector>

#include "format/reader.h"
#include "host/writer.h"
#include "fuzz_util.h"
#include "runtime/tokenizer.h"

using namespace qtf;

namespace {

struct Built {
  std::vector<uint8_t> file;
  format::ModelFile mf;
  std::vector<uint8_t> arena;
  Tokenizer tok;
  bool ok = false;
};

bool build(const std::string& type, const std::vector<std::string>& tokens, const std::vector<std::string>& merges,
           Built* b) {
  format::Writer w;
  w.add_str("tokenizer.type", type);
  w.add_str_array("tokenizer.tokens", tokens);
  if (type == "bpe") w.add_str_array("tokenizer.merges", merges);
  b->file = w.finish();
  if (!b->mf.open(b->file.data(), b->file.size()).ok()) return false;
  const int vocab = (int)tokens.size();
  const size_t need = Tokenizer::arena_bytes(b->mf, vocab);
  if (need == 0) return false;
  b->arena.assign(need + 16, 0);
  uint8_t* p = b->arena.data();
  p += (16 - reinterpret_cast<uintptr_t>(p) % 16) % 16;
  b->ok = b->tok.init(b->mf, vocab, p, need).ok();
  return b->ok;
}

std::string hex_byte(int v) {
  char s[8];
  std::snprintf(s, sizeof s, "\\x%02x", v);
  return s;
}

Built* fixed(int kind) {
  static Built tokenizers[3];
  static bool ready = false;
  if (!ready) {
    std::vector<std::string> chars = testing::tiny_chars();
    for (const char* u : {"\xc3\xa9", "\xe2\x86\x92", "\xf0\x9f\x98\x80"}) chars.push_back(u);  // é → 😀
    std::vector<std::string> bytes;
    for (int v = 0; v < 256; ++v) bytes.push_back(hex_byte(v));
    std::vector<std::string> bpe = bytes;
    for (const char* t : {"th", "the", "\\x20t", "in", "ing", "er", "\\x20the"}) bpe.push_back(t);
    std::vector<std::string> merges = {"t h", "th e", "\\x20 t", "i n", "in g", "e r", "\\x20 the"};
    fuzz::check(build("char", chars, {}, &tokenizers[0]));
    fuzz::check(build("byte", bytes, {}, &tokenizers[1]));
    fuzz::check(build("bpe", bpe, merges, &tokenizers[2]));
    ready = true;
  }
  return &tokenizers[kind];
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at <= s.size()) {
    size_t nl = s.find('\n', at);
    if (nl == std::string::npos) nl = s.size();
    out.push_back(s.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

void encode_and_check(const Tokenizer& t, const std::string& text, int max, bool byte_complete) {
  std::vector<int32_t> ids((size_t)max);
  int n = -1, skipped = -1;
  Status st = t.encode(text.data(), text.size(), ids.data(), max, &n, &skipped);
  if (!st.ok()) {  // the only failure for a valid call: too many tokens, and then n is the count needed
    fuzz::check(st.code() == Err::out_of_range && n > max);
    return;
  }
  fuzz::check(n >= 0 && n <= max && n <= (int)text.size() && skipped >= 0);
  std::string back;
  for (int i = 0; i < n; ++i) {
    fuzz::check(ids[i] >= 0 && ids[i] < t.vocab());
    format::Str s = t.token_text(ids[i]);
    back.append(s.data, s.size);
  }
  fuzz::check(back.size() + (size_t)skipped == text.size());
  if (byte_complete) fuzz::check(skipped == 0 && back == text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int mode = data[0] % 5, max = data[1];
  const std::string payload(reinterpret_cast<const char*>(data + 2), size - 2);
  if (mode < 3) {
    encode_and_check(fixed(mode)->tok, payload, max, mode != 0);
    return 0;
  }
  std::vector<std::string> lines = split_lines(payload), tokens, merges;
  bool in_merges = false;
  for (const std::string& l : lines) {
    if (mode == 4 && l == "==") in_merges = true;
    else (in_merges ? merges : tokens).push_back(l);
  }
  Built b;
  if (build(mode == 3 ? "char" : "bpe", tokens, merges, &b)) encode_and_check(b.tok, payload, max, false);
  return 0;
}
