// Fuzzes the tokenizers with arbitrary bytes, and their construction from arbitrary vocabularies.
// Input: byte 0 picks the mode (byte 0 % 10) and flags (byte 0 / 10: 1 parse_special, 2 add_special,
// 4 only the bounded stack workspace), byte 1 the output capacity (0..255 tokens), the rest is the payload.
//   mode 0/1/2: encode the payload with a fixed char / byte / bpe tokenizer;
//   mode 3: the payload's lines are a char vocabulary; mode 4: lines are bpe tokens (escaped), then a
//   line "==", then merge rules. The tokenizer is built from them and encodes the payload itself;
//   mode 5/6/7: a fixed spm / bpe with the gpt2 pre-tokenizer / bpe with the spm normalizer (all with
//   every byte token); mode 8: the lines are spm pieces (escaped; scores by line); mode 9: as 4 with the
//   gpt2 pre-tokenizer.
// Checked: ids are in range, the count is exact and within max_tokens, and the tokens' text gives back
// the input (minus the bytes reported as skipped; byte-complete tokenizers skip nothing; SentencePiece
// vocabularies give a space for the prefix and for each "▁").
#include <cstdio>
#include <string>
#include <vector>

#include "format/reader.h"
#include "host/writer.h"
#include "fuzz_util.h"
#include "runtime/tokenizer/internal.h"
#include "runtime/tokenizer/tokenizer.h"

using namespace qtf;

namespace {

struct Built {
  std::vector<uint8_t> file;
  format::ModelFile mf;
  std::vector<uint8_t> arena;
  Tokenizer tok;
  bool ok = false;
};

const char kSp[] = "\xe2\x96\x81";

bool build(const std::string& type, const std::vector<std::string>& tokens, const std::vector<std::string>& merges,
           Built* b, const std::string& variant = "") {
  format::Writer w;
  w.add_str("tokenizer.type", type);
  w.add_str_array("tokenizer.tokens", tokens);
  if (type == "bpe") w.add_str_array("tokenizer.merges", merges);
  if (variant == "gpt2") w.add_str("tokenizer.pre", "gpt2");
  if (variant == "spm") {
    w.add_str("tokenizer.normalizer", "spm");
    w.add_i64("tokenizer.byte_fallback", 1);
  }
  if (type == "spm") {
    std::vector<double> scores;
    for (size_t i = 0; i < tokens.size(); ++i) scores.push_back(-(double)i);
    w.add_f64_array("tokenizer.scores", scores);
  }
  if (type == "spm" || variant == "spm") {  // a control token to parse, BOS/EOS to add
    std::vector<int64_t> types(tokens.size(), 1);
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i].size() == 6 && tokens[i].compare(0, 3, "<0x") == 0) types[i] = 6;
    if (!types.empty()) types[0] = 3;
    w.add_i64_array("tokenizer.token_types", types);
    if (!types.empty()) {
      w.add_i64("tokenizer.bos_id", 0);
      w.add_i64("tokenizer.eos_id", 0);
      w.add_i64("tokenizer.add_bos", 1);
      w.add_i64("tokenizer.add_eos", 1);
    }
  }
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

std::vector<std::string> spm_bytes() {
  std::vector<std::string> v;
  char s[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(s, sizeof s, "<0x%02X>", b);
    v.push_back(s);
  }
  return v;
}

Built* fixed(int kind) {
  static Built tokenizers[8];
  static bool ready = false;
  if (!ready) {
    std::vector<std::string> chars = testing::tiny_chars();
    for (const char* u : {"\xc3\xa9", "\xe2\x86\x92", "\xf0\x9f\x98\x80"}) chars.push_back(u);  // é → 😀
    std::vector<std::string> bytes;
    for (int v = 0; v < 256; ++v) bytes.push_back(hex_byte(v));
    std::vector<std::string> bpe = bytes;
    for (const char* t : {"th", "the", "\\x20t", "in", "ing", "er", "\\x20the"}) bpe.push_back(t);
    std::vector<std::string> merges = {"t h", "th e", "\\x20 t", "i n", "in g", "e r", "\\x20 the"};
    std::vector<std::string> spm = {"<s>"};
    for (const std::string& b : spm_bytes()) spm.push_back(b);
    const std::string sp = kSp;
    for (const std::string& p : {sp, std::string("t"), std::string("h"), std::string("e"), sp + "t", std::string("th"),
                                 sp + "th", sp + "the", std::string("\xc3\xa9"), sp + sp})
      spm.push_back(p);
    std::vector<std::string> norm = spm;
    std::vector<std::string> norm_merges = {"t h", sp + " th", sp + "th e", sp + " t", sp + " " + sp};
    fuzz::check(build("char", chars, {}, &tokenizers[0]));
    fuzz::check(build("byte", bytes, {}, &tokenizers[1]));
    fuzz::check(build("bpe", bpe, merges, &tokenizers[2]));
    fuzz::check(build("spm", spm, {}, &tokenizers[5]));
    fuzz::check(build("bpe", bpe, merges, &tokenizers[6], "gpt2"));
    fuzz::check(build("bpe", norm, norm_merges, &tokenizers[7], "spm"));
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

// The text a SentencePiece-style tokenizer gives back: the text normalized (prefix "▁", ' ' -> "▁"), cut
// into units as the tokenizer cuts it (llama.cpp's UTF-8 lengths), each "▁" unit read as a space.
std::string sp_text(const std::string& text) {
  if (text.empty()) return "";
  std::string norm = kSp, out;
  for (char c : text) norm += c == ' ' ? std::string(kSp) : std::string(1, c);
  for (size_t i = 0; i < norm.size();) {
    size_t l = tok::lead_len((uint8_t)norm[i]);
    if (l > norm.size() - i) l = norm.size() - i;
    if (norm.compare(i, l, kSp) == 0) out += ' ';
    else out.append(norm, i, l);
    i += l;
  }
  return out;
}

void encode_and_check(const Tokenizer& t, const std::string& text, int max, bool byte_complete, int flags) {
  std::vector<int32_t> ids((size_t)max);
  std::vector<char> work(t.work_bytes(text.size()));
  EncodeOptions opt;
  opt.parse_special = flags & 1;
  opt.add_special = flags & 2;
  if (!(flags & 4)) {
    opt.work = work.data();
    opt.work_bytes = work.size();
  }
  int n = -1, skipped = -1;
  Status st = t.encode(text.data(), text.size(), ids.data(), max, &n, &skipped, opt);
  if (!st.ok()) {  // the only failure for a valid call: too many tokens, and then n is the count needed
    fuzz::check(st.code() == Err::out_of_range && n > max && (size_t)n <= Tokenizer::max_tokens(text.size()));
    return;
  }
  fuzz::check(n >= 0 && n <= max && (size_t)n <= Tokenizer::max_tokens(text.size()) && skipped >= 0);
  std::string back;
  bool special = false;
  for (int i = 0; i < n; ++i) {
    fuzz::check(ids[i] >= 0 && ids[i] < t.vocab());
    const TokenType type = t.token_type(ids[i]);
    special |= type != TokenType::normal && type != TokenType::byte;
    format::Str s = t.token_text(ids[i]);
    back.append(s.data, s.size);
  }
  const bool sp = t.sentencepiece_spaces();
  if (special || (sp && skipped)) return;  // special tokens and unks stand for text they do not spell
  if (sp) {  // pieces of a bounded workspace cut units differently only inside broken UTF-8
    if (byte_complete && (!(flags & 4) || format::utf8_valid(text.data(), text.size())))
      fuzz::check(skipped == 0 && back == sp_text(text));
    return;
  }
  fuzz::check(back.size() + (size_t)skipped == text.size());
  if (byte_complete) fuzz::check(skipped == 0 && back == text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int mode = data[0] % 10, flags = data[0] / 10, max = data[1];
  const std::string payload(reinterpret_cast<const char*>(data + 2), size - 2);
  if (mode < 3 || (mode >= 5 && mode <= 7)) {
    encode_and_check(fixed(mode)->tok, payload, max, mode != 0, flags);
    return 0;
  }
  std::vector<std::string> lines = split_lines(payload), tokens, merges;
  bool in_merges = false;
  for (const std::string& l : lines) {
    if ((mode == 4 || mode == 9) && l == "==") in_merges = true;
    else (in_merges ? merges : tokens).push_back(l);
  }
  Built b;
  const char* type = mode == 3 ? "char" : mode == 8 ? "spm" : "bpe";
  if (build(type, tokens, merges, &b, mode == 9 ? "gpt2" : "")) encode_and_check(b.tok, payload, max, false, flags);
  return 0;
}
