// The tokenizer module (engine/runtime/tokenizer/): each algorithm on small vocabularies built here, the
// real llama2.c tok512 tokenizer against run.c's ids, special tokens, decoding, hostile metadata, and
// encoding work that grows as n log n (counted, not timed).
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "format/reader.h"
#include "host/writer.h"
#include "support/json_lite.h"
#include "import/common.h"
#include "import/import.h"
#include "import/llama2c_tokenizer.h"
#include "runtime/tokenizer/internal.h"
#include "runtime/tokenizer/tokenizer.h"

using namespace qtf;

namespace doctest {
template <>
struct StringMaker<std::vector<int>> {
  static String convert(const std::vector<int>& v) {
    std::string s = "{";
    for (size_t i = 0; i < v.size() && i < 40; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return String((s + (v.size() > 40 ? ", ...}" : "}")).c_str());
  }
};
}  // namespace doctest

namespace {

const std::string kSp = "\xe2\x96\x81";  // ▁

struct Built {
  std::vector<uint8_t> file;
  format::ModelFile mf;
  std::vector<uint8_t> arena;
  Tokenizer t;
  Status st;
};

// A tokenizer from the keys `keys` writes; st holds init's answer.
std::unique_ptr<Built> build(int vocab, const std::function<void(format::Writer*)>& keys) {
  auto b = std::make_unique<Built>();
  format::Writer w;
  keys(&w);
  b->file = w.finish();
  REQUIRE(b->mf.open(b->file.data(), b->file.size()).ok());
  const size_t need = Tokenizer::arena_bytes(b->mf, vocab);
  b->arena.assign(need + 16, 0);
  uint8_t* p = b->arena.data() + (16 - reinterpret_cast<uintptr_t>(b->arena.data()) % 16) % 16;
  b->st = b->t.init(b->mf, vocab, need ? p : nullptr, need);
  return b;
}

std::vector<int> encode(const Tokenizer& t, const std::string& text, EncodeOptions opt = EncodeOptions(), int* skipped = nullptr,
                        bool workspace = true) {
  std::vector<int32_t> ids(Tokenizer::max_tokens(text.size()));
  std::vector<char> work(workspace ? t.work_bytes(text.size()) : 0);
  if (workspace) {
    opt.work = work.data();
    opt.work_bytes = work.size();
  }
  int n = 0, sk = 0;
  const Status st = t.encode(text.data(), text.size(), ids.data(), (int)ids.size(), &n, &sk, opt);
  REQUIRE(st.ok());
  if (skipped) *skipped = sk;
  return std::vector<int>(ids.begin(), ids.begin() + n);
}

std::string decode(const Tokenizer& t, const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    format::Str p = t.decode(i ? ids[i - 1] : -1, ids[i]);
    s.append(p.data, p.size);
  }
  return s;
}

std::vector<std::string> spm_byte_tokens() {
  std::vector<std::string> v;
  char s[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(s, sizeof s, "<0x%02X>", b);
    v.push_back(s);
  }
  return v;
}

// A small SentencePiece vocabulary: <unk> <s> </s>, the byte tokens 3..258, then pieces with scores.
struct SpmVocab {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<double> scores = {0, 0, 0};
  std::vector<int64_t> types = {2, 3, 3};
  explicit SpmVocab(bool bytes = true) {
    if (!bytes) return;
    for (const std::string& b : spm_byte_tokens()) {
      tokens.push_back(b);
      scores.push_back(0);
      types.push_back(6);
    }
  }
  int add(const std::string& piece, double score, int64_t type = 1) {
    tokens.push_back(piece);
    scores.push_back(score);
    types.push_back(type);
    return (int)tokens.size() - 1;
  }
  std::unique_ptr<Built> make(const std::function<void(format::Writer*)>& more = nullptr) const {
    return build((int)tokens.size(), [&](format::Writer* w) {
      w->add_str("tokenizer.type", "spm");
      w->add_str_array("tokenizer.tokens", tokens);
      w->add_f64_array("tokenizer.scores", scores);
      w->add_i64_array("tokenizer.token_types", types);
      w->add_i64("tokenizer.unk_id", 0);
      w->add_i64("tokenizer.bos_id", 1);
      w->add_i64("tokenizer.eos_id", 2);
      w->add_i64("tokenizer.add_bos", 1);
      if (more) more(w);
    });
  }
};

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::unique_ptr<Built> tok512() {
  const std::vector<uint8_t> bin = read_file(std::string(QTF_SOURCE_DIR) + "/tests/fixtures/tok512.bin");
  REQUIRE(bin.size() == 6227);
  Status conv;
  auto b = build(512, [&](format::Writer* w) { conv = import::llama2c_tokenizer(bin.data(), bin.size(), 512, w); });
  REQUIRE(conv.ok());
  REQUIRE(b->st.ok());
  return b;
}

std::vector<std::string> gpt2_words(const std::string& s) {
  std::vector<std::string> out;
  for (size_t p = 0; p < s.size();) {
    const size_t e = tok::gpt2_word_end(s.data(), s.size(), p);
    REQUIRE(e > p);
    out.push_back(s.substr(p, e - p));
    p = e;
  }
  return out;
}

}  // namespace

TEST_CASE("spm merges the highest-scoring pair first, leftmost on ties, with the dummy prefix") {
  SpmVocab v;
  const int sp = v.add(kSp, -1), a = v.add("a", -2), b = v.add("b", -3), c = v.add("c", -4);
  const int ab = v.add("ab", -5), bc = v.add("bc", -0.5), sp_a = v.add(kSp + "a", -6);
  auto t = v.make();
  REQUIRE(t->st.ok());
  CHECK(t->t.kind() == TokenizerKind::spm);
  // "abc": "▁a" (-6), "ab" (-5) and "bc" (-0.5) are candidates: bc first, then ▁a.
  CHECK(encode(t->t, "abc") == std::vector<int>{sp_a, bc});
  CHECK(encode(t->t, "ab") == std::vector<int>{sp, ab});  // "ab" (-5) beats "▁a" (-6)
  // Equal scores: the leftmost pair merges first.
  SpmVocab w;
  const int x = w.add("x", -1), xx = w.add("xx", -2);
  auto u = w.make();
  REQUIRE(u->st.ok());
  // No "▁" token: the prefix falls back to its three bytes.
  CHECK(encode(u->t, "xxx") == std::vector<int>{3 + 0xE2, 3 + 0x96, 3 + 0x81, xx, x});
  (void)a, (void)b, (void)sp_a;
  // BOS with add_special; the prefix space goes on the first word and is dropped when decoding after BOS.
  EncodeOptions o;
  o.add_special = true;
  const std::vector<int> ids = encode(t->t, "ab c", o);
  CHECK(ids == std::vector<int>{1, sp, ab, sp, c});
  CHECK(decode(t->t, ids) == "ab c");
  CHECK(encode(t->t, "").empty());
  CHECK(encode(t->t, "", o) == std::vector<int>{1});
}

TEST_CASE("spm byte fallback, unk when there are no byte tokens, and decoding of bytes") {
  SpmVocab v;
  const int sp = v.add(kSp, -1);
  auto t = v.make();
  REQUIRE(t->st.ok());
  // "é" has no piece: its UTF-8 bytes C3 A9 become <0xC3> <0xA9> (ids 3 + byte).
  const std::vector<int> ids = encode(t->t, "\xc3\xa9");
  CHECK(ids == std::vector<int>{sp, 3 + 0xC3, 3 + 0xA9});
  CHECK(decode(t->t, ids) == " \xc3\xa9");
  CHECK(t->t.token_text(3 + '\n').size == 1);
  CHECK(t->t.token_text(3 + '\n').data[0] == '\n');
  CHECK(t->t.token_text(1).size == 0);  // control tokens decode to nothing
  CHECK(t->t.token_text(0).size == 0);
  CHECK(std::string(t->t.token_piece(1).data, t->t.token_piece(1).size) == "<s>");
  CHECK(t->t.bos_id() == 1);
  CHECK(t->t.eos_id() == 2);
  CHECK(t->t.unk_id() == 0);
  CHECK(t->t.add_bos());
  // Without byte tokens an unknown character is <unk>, and a run of them is one <unk>.
  SpmVocab nb(false);
  const int nsp = nb.add(kSp, -1), q = nb.add("q", -2);
  auto u = nb.make();
  REQUIRE(u->st.ok());
  CHECK(encode(u->t, "q\xc3\xa9\xc3\xa9q") == std::vector<int>{nsp, q, 0, q});
}

TEST_CASE("the llama2.c tok512 tokenizer encodes as llama2.c's run.c") {
  // Expected ids: llama2.c (karpathy/llama2.c @ HEAD of the fetched mirror) run.c's encode(t, text,
  // bos=1, eos=0), printed by a 20-line harness that #defines TESTING, #includes run.c and calls
  // build_tokenizer("tok512.bin", 512) then encode() on each string (built with gcc -O2 outside the
  // repository).
  auto b = tok512();
  const Tokenizer& t = b->t;
  EncodeOptions o;
  o.add_special = true;
  struct Case {
    const char* text;
    std::vector<int> ids;
  };
  const Case cases[] = {
      {"Once upon a time", {1, 403, 407, 261, 378}},
      {"Hello world", {1, 346, 306, 414, 263, 304, 341}},
      {"", {1}},
      {"   two  spaces", {1, 410, 410, 410, 259, 424, 414, 410, 262, 427, 412, 331, 419}},
      {"Tom said: \"I'm here!\" \xc3\xa9 \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac",
       {1, 274, 287, 336, 467, 313, 442, 439, 423, 281, 276, 443, 436, 410, 485, 410, 243, 162, 155, 131, 410, 233, 154, 168,
        233, 159, 175}},
      {"x", {1, 410, 444}},
      {"Once upon a time, there was a little girl named Lily.",
       {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426}},
      {"She said:\n\"Don't go!\"", {1, 338, 336, 467, 13, 436, 455, 289, 439, 413, 298, 414, 443, 436}},
      {"na\xc3\xafve caf\xc3\xa9 \xf0\x9f\x98\x80", {1, 297, 412, 198, 178, 360, 280, 412, 431, 485, 410, 243, 162, 155, 131}},
      {"   two  spaces ", {1, 410, 410, 410, 259, 424, 414, 410, 262, 427, 412, 331, 419, 410}},
      {"a", {1, 261}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    CHECK(encode(t, c.text, o) == c.ids);
    CHECK(encode(t, c.text, o, nullptr, false) == c.ids);  // the stack workspace is enough for short text
    if (c.ids.size() > 1) CHECK(decode(t, c.ids) == c.text);
  }
}

TEST_CASE("the llama2.c tokenizer converter refuses damaged files with one line") {
  const std::vector<uint8_t> bin = read_file(std::string(QTF_SOURCE_DIR) + "/tests/fixtures/tok512.bin");
  REQUIRE(bin.size() == 6227);
  auto conv = [](const std::vector<uint8_t>& d, int vocab) {
    format::Writer w;
    return import::llama2c_tokenizer(d.data(), d.size(), vocab, &w);
  };
  CHECK(conv(bin, 512).ok());
  for (size_t cut : {0, 3, 4, 11, 100, 6226}) {
    CAPTURE(cut);
    const Status st = conv(std::vector<uint8_t>(bin.begin(), bin.begin() + cut), 512);
    CHECK(!st.ok());
  }
  CHECK(std::string(conv(bin, 511).message()).find("bytes after") != std::string::npos);
  CHECK(!conv(bin, 513).ok());
  CHECK(!conv(bin, 0).ok());
  CHECK(!conv(bin, 1 << 30).ok());
  std::vector<uint8_t> bad = bin;
  const float inf = 1.0f / 0.0f;
  std::memcpy(bad.data() + 4, &inf, 4);
  CHECK(std::string(conv(bad, 512).message()).find("non-finite") != std::string::npos);
  bad = bin;
  const int32_t huge = 1 << 30;
  std::memcpy(bad.data() + 8, &huge, 4);
  CHECK(std::string(conv(bad, 512).message()).find("length") != std::string::npos);
}

TEST_CASE("gpt2 pre-tokenizer: contractions, letters, numbers, punctuation and whitespace runs") {
  CHECK(gpt2_words("Hello world") == std::vector<std::string>{"Hello", " world"});
  CHECK(gpt2_words("I'm they're we've he'll she'd it's don't") ==
        std::vector<std::string>{"I", "'m", " they", "'re", " we", "'ve", " he", "'ll", " she", "'d", " it", "'s", " don", "'t"});
  CHECK(gpt2_words("'x 'S") == std::vector<std::string>{"'", "x", " '", "S"});  // only lower-case contractions
  CHECK(gpt2_words("abc123 4.5") == std::vector<std::string>{"abc", "123", " 4", ".", "5"});
  CHECK(gpt2_words("a  b") == std::vector<std::string>{"a", " ", " b"});  // \s+(?!\S): the last space joins b
  CHECK(gpt2_words("a   \n b") == std::vector<std::string>{"a", "   \n", " b"});
  CHECK(gpt2_words("end  ") == std::vector<std::string>{"end", "  "});  // trailing whitespace stays one word
  CHECK(gpt2_words("x !!? y") == std::vector<std::string>{"x", " !!?", " y"});
  CHECK(gpt2_words("\xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xd9\xa3") ==  // letters and numbers beyond ASCII
        std::vector<std::string>{"\xc3\xa9t\xc3\xa9", " \xe6\x97\xa5\xe6\x9c\xac", " \xd9\xa3"});
  CHECK(gpt2_words("a\xff\xfe b") == std::vector<std::string>{"a", "\xff\xfe", " b"});  // invalid bytes: punctuation
  CHECK(gpt2_words("\n\n") == std::vector<std::string>{"\n\n"});
}

TEST_CASE("bpe by rank over bytes, with and without the gpt2 pre-tokenizer") {
  std::vector<std::string> tokens;
  char s[8];
  for (int v = 0; v < 256; ++v) {
    std::snprintf(s, sizeof s, "\\x%02x", v);
    tokens.push_back(s);
  }
  const int th = (int)tokens.size();
  for (const char* x : {"th", "the", "\\x20t", "\\x20th", "e\\x20", "<|endoftext|>"}) tokens.push_back(x);
  const std::vector<std::string> merges = {"t h", "th e", "\\x20 t", "\\x20t h", "e \\x20"};
  auto make = [&](const char* pre) {
    return build((int)tokens.size(), [&](format::Writer* w) {
      w->add_str("tokenizer.type", "bpe");
      w->add_str_array("tokenizer.tokens", tokens);
      w->add_str_array("tokenizer.merges", merges);
      if (pre) w->add_str("tokenizer.pre", pre);
      std::vector<int64_t> types(tokens.size(), 1);
      types.back() = 3;
      w->add_i64_array("tokenizer.token_types", types);
      w->add_i64("tokenizer.eos_id", (int64_t)tokens.size() - 1);
    });
  };
  auto none = make(nullptr), gpt2 = make("gpt2");
  REQUIRE(none->st.ok());
  REQUIRE(gpt2->st.ok());
  // No pre-tokenizer: "he the": "t h" (rank 0), "th e" (1), then "e " (4) across the word boundary.
  CHECK(encode(none->t, "he the") == std::vector<int>{'h', th + 4, th + 1});
  // gpt2: words "he", " the": no merge crosses them.
  CHECK(encode(gpt2->t, "he the") == std::vector<int>{'h', 'e', ' ', th + 1});
  CHECK(encode(gpt2->t, "the thx") == std::vector<int>{th + 1, ' ', th, 'x'});  // "t h" (0) before " t" (2)
  // Special tokens: matched only with parse_special; they decode to nothing.
  const int eot = (int)tokens.size() - 1;
  EncodeOptions ps;
  ps.parse_special = true;
  CHECK(encode(gpt2->t, "the<|endoftext|>the", ps) == std::vector<int>{th + 1, eot, th + 1});
  CHECK(encode(gpt2->t, "<|endoftext|>").size() == 13);
  CHECK(gpt2->t.token_text(eot).size == 0);
  CHECK(decode(gpt2->t, encode(gpt2->t, "The  thing's 3 the\n")) == "The  thing's 3 the\n");
}

TEST_CASE("bpe with the spm normalizer: characters, byte fallback, unk, user-defined tokens") {
  // As TinyStories-656K's tokenizer.json: Prepend("▁") + Replace(" ", "▁"), BPE over characters.
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "<0x41>", kSp, "a", "b", "e", kSp + "a", "e" + kSp, "<user>"};
  std::vector<std::string> merges = {"e " + kSp, kSp + " a"};
  auto make = [&](int fallback) {
    return build((int)tokens.size(), [&](format::Writer* w) {
      w->add_str("tokenizer.type", "bpe");
      w->add_str("tokenizer.normalizer", "spm");
      w->add_str_array("tokenizer.tokens", tokens);
      w->add_str_array("tokenizer.merges", merges);
      w->add_i64_array("tokenizer.token_types", {2, 3, 3, 6, 1, 1, 1, 1, 1, 1, 4});
      w->add_i64("tokenizer.byte_fallback", fallback);
      w->add_i64("tokenizer.fuse_unk", 1);
      w->add_i64("tokenizer.unk_id", 0);
      w->add_i64("tokenizer.bos_id", 1);
      w->add_i64("tokenizer.add_bos", 1);
    });
  };
  auto t = make(1), nf = make(0);
  REQUIRE(t->st.ok());
  REQUIRE(nf->st.ok());
  EncodeOptions o;
  o.add_special = true;
  CHECK(encode(t->t, "e a", o) == std::vector<int>{1, 4, 9, 5});  // "▁e▁a": "e▁" (rank 0) before "▁a"
  CHECK(encode(t->t, "ab") == std::vector<int>{8, 6});
  CHECK(encode(t->t, "A") == std::vector<int>{4, 3});           // 'A' -> <0x41> (fallback on)
  CHECK(encode(nf->t, "A") == std::vector<int>{4, 0});          // fallback off -> <unk>
  CHECK(encode(t->t, "xyz") == std::vector<int>{4, 0});         // not all bytes have tokens: one fused <unk>
  CHECK(encode(t->t, "a<user>b") == std::vector<int>{8, 10, 4, 6});  // user-defined: always whole; prefix after it
  CHECK(decode(t->t, encode(t->t, "e a", o)) == "e a");
}

TEST_CASE("special tokens are matched only when the caller asks (control), always (user-defined)") {
  SpmVocab v;
  const int sp = v.add(kSp, -1);
  const int im = v.add("<|im|>", 0, 3), ud = v.add("<ud>", 0, 4), x = v.add("x", -2);
  auto t = v.make();
  REQUIRE(t->st.ok());
  EncodeOptions ps;
  ps.parse_special = true;
  CHECK(encode(t->t, "x<|im|>x", ps) == std::vector<int>{sp, x, im, sp, x});
  CHECK(encode(t->t, "<s>x", ps) == std::vector<int>{1, sp, x});
  const std::vector<int> plain = encode(t->t, "x<|im|>x");
  CHECK(plain.size() > 5);
  CHECK(std::find(plain.begin(), plain.end(), im) == plain.end());
  CHECK(encode(t->t, "<ud>") == std::vector<int>{ud});
}

TEST_CASE("encoding work grows as n log n: a 200 KB prompt is counted, not timed") {
  auto b = tok512();
  std::string text;
  const std::string story = "Once upon a time, there was a little girl named Lily. She loved to play outside.\n";
  while (text.size() < 200000) text += story;
  text += std::string(20000, 'a');  // one long run of a single letter: the worst case for rescans
  uint64_t steps = 0;
  EncodeOptions o;
  o.steps = &steps;
  const std::vector<int> ids = encode(b->t, text, o);
  // Each merge pops once and re-evaluates at most two pairs; a rescanning loop would take ~n^2/2 steps.
  CHECK(steps <= 4 * (uint64_t)text.size());
  CHECK(decode(b->t, ids) == " " + text);  // no BOS: the prefix space stays
  // The same text with the bounded stack workspace is still a valid encoding of it.
  EncodeOptions s;
  const std::vector<int> pieces = encode(b->t, text, s, nullptr, false);
  CHECK(decode(b->t, pieces).size() >= text.size());
}

TEST_CASE("a bounded workspace ends its pieces between characters, never inside one") {
  // A run with no space for the stack workspace to end at (the fuzzer's find): its end fell inside a
  // character, whose parts became byte tokens ("▁" spelled in the text came back as "▁", not a space).
  // 3-byte characters fill the workspace's bytes before its symbols; the leading 'a's move its end
  // to each of the character's 3 bytes.
  auto b = tok512();
  const std::string sp = "\xe2\x96\x81";
  for (int lead = 0; lead < 3; ++lead) {
    std::string text(lead, 'a');
    for (int i = 0; i < 400; ++i) text += sp;
    const std::vector<int> whole = encode(b->t, text);
    for (int id : whole) REQUIRE(b->t.token_type(id) != TokenType::byte);  // "▁" is a piece of tok512
    const std::vector<int> pieces = encode(b->t, text, EncodeOptions(), nullptr, false);
    int byte_tokens = 0;
    for (int id : pieces) byte_tokens += b->t.token_type(id) == TokenType::byte;
    CHECK(byte_tokens == 0);
    CHECK(decode(b->t, pieces) == decode(b->t, whole));
  }
}

TEST_CASE("escaping round-trips any bytes") {
  std::string all;
  for (int v = 0; v < 256; ++v) all += (char)v;
  all += "\xe2\x96\x81\\x\\\\ a";
  const std::string esc = import::escape_token(all.data(), all.size());
  REQUIRE(format::utf8_valid(esc.data(), esc.size()));
  CHECK(esc.find(' ') == std::string::npos);  // merge rules split at their one raw space
  std::vector<char> back(esc.size());
  const int m = unescape_token(esc.data(), esc.size(), back.data());
  REQUIRE(m == (int)all.size());
  CHECK(std::string(back.data(), (size_t)m) == all);
  CHECK(unescape_token("\\q", 2, back.data()) == -1);
  CHECK(unescape_token("\\x4", 3, back.data()) == -1);
}

TEST_CASE("bad tokenizer metadata: one clear error each") {
  auto spm = [](const std::function<void(format::Writer*)>& more) {
    return build(3, [&](format::Writer* w) {
      w->add_str("tokenizer.type", "spm");
      w->add_str_array("tokenizer.tokens", {"<unk>", "a", "b"});
      more(w);
    });
  };
  struct Case {
    std::function<void(format::Writer*)> keys;
    const char* says;
  };
  const Case cases[] = {
      {[](format::Writer*) {}, "tokenizer.scores"},
      {[](format::Writer* w) { w->add_f64_array("tokenizer.scores", {0, 1}); }, "2 values for 3 tokens"},
      {[](format::Writer* w) { w->add_i64_array("tokenizer.scores", {0, 1, 2}); }, "expected f64[]"},
      {[](format::Writer* w) {
         w->add_f64_array("tokenizer.scores", {0, 1, 2});
         w->add_i64_array("tokenizer.token_types", {1, 7, 1});
       },
       "token_types[1] is 7"},
      {[](format::Writer* w) {
         w->add_f64_array("tokenizer.scores", {0, 1, 2});
         w->add_i64_array("tokenizer.token_types", {1, 1});
       },
       "2 values for 3 tokens"},
      {[](format::Writer* w) {
         w->add_f64_array("tokenizer.scores", {0, 1, 2});
         w->add_i64("tokenizer.bos_id", 3);
       },
       "tokenizer.bos_id is 3"},
      {[](format::Writer* w) {
         w->add_f64_array("tokenizer.scores", {0, 1, 2});
         w->add_i64("tokenizer.unk_id", -2);
       },
       "tokenizer.unk_id is -2"},
      {[](format::Writer* w) {
         w->add_f64_array("tokenizer.scores", {0, 1, 2});
         w->add_i64("tokenizer.add_bos", 1);
       },
       "no tokenizer.bos_id"},
      {[](format::Writer* w) {
         w->add_f64_array("tokenizer.scores", {0, 1, 2});
         w->add_i64("tokenizer.add_space_prefix", 2);
       },
       "expected 0 or 1"},
      {[](format::Writer* w) {
         w->add_f64_array("tokenizer.scores", {0, 1, 2});
         w->add_str("tokenizer.pre", "gpt2");
       },
       "bpe tokenizers only"},
      {[](format::Writer* w) {
         w->add_f64_array("tokenizer.scores", {0, 1e300, 2});
       },
       "scores[1] is not a finite float"},
      {[](format::Writer* w) {
         w->add_f64_array("tokenizer.scores", {0, 1, 2});
         w->add_str("tokenizer.eos_id", "2");
       },
       "expected i64"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.says);
    auto b = spm(c.keys);
    REQUIRE(!b->st.ok());
    CHECK(std::string(b->st.message()).find(c.says) != std::string::npos);
  }
  auto bad_pre = build(2, [](format::Writer* w) {
    w->add_str("tokenizer.type", "bpe");
    w->add_str_array("tokenizer.tokens", {"a", "b"});
    w->add_str_array("tokenizer.merges", {});
    w->add_str("tokenizer.pre", "llama3");
  });
  CHECK(std::string(bad_pre->st.message()).find("'llama3' is not none or gpt2") != std::string::npos);
  auto bad_kind = build(2, [](format::Writer* w) {
    w->add_str("tokenizer.type", "wordpiece");
    w->add_str_array("tokenizer.tokens", {"a", "b"});
  });
  CHECK(std::string(bad_kind->st.message()).find("not char, byte, bpe or spm") != std::string::npos);
}

TEST_CASE("bpe with the spm normalizer equals Hugging Face tokenizers on TinyStories-656K") {
  // hf_ids.json: the ids of Hugging Face's tokenizers library (npm tokenizers 0.23.2, BOS added) for 42
  // validation stories (tests/fixtures/README.md says how it was made); the model's tokenizer.json goes
  // through the importer (engine/import/hf.cpp) into the keys this tokenizer reads.
  const std::string dir = std::string(QTF_SOURCE_DIR) + "/tests/fixtures/tinystories-656k";
  std::vector<uint8_t> image;
  REQUIRE(import::to_qtf(dir.c_str(), import::Options(), &image).ok());
  format::ModelFile mf;
  REQUIRE(mf.open(image.data(), image.size()).ok());
  Built b;
  const size_t need = Tokenizer::arena_bytes(mf, 2048);
  REQUIRE(need > 0);
  b.arena.assign(need + 16, 0);
  REQUIRE(b.t.init(mf, 2048, b.arena.data() + (16 - reinterpret_cast<uintptr_t>(b.arena.data()) % 16) % 16, need).ok());
  testing::Json doc;
  REQUIRE(testing::load_json(dir + "/hf_ids.json", &doc));
  const testing::Json& stories = doc["stories"];
  const testing::Json& ids = doc["ids"];
  REQUIRE(stories.size() == 42);
  REQUIRE(ids.size() == stories.size());
  EncodeOptions o;
  o.add_special = true;
  int equal = 0;
  for (size_t i = 0; i < stories.size(); ++i) {
    std::vector<int> want;
    for (size_t k = 0; k < ids[i].size(); ++k) want.push_back((int)ids[i][k].num);
    const std::vector<int> got = encode(b.t, stories[i].str, o);
    CAPTURE(i);
    CHECK(got == want);
    equal += got == want;
  }
  CHECK(equal == 42);
}
