// BPE by merge rank (tokenizer.type bpe): the units are merged pairwise, the pair with the lowest rank in
// tokenizer.merges first (the leftmost on ties), as llama.cpp's llm_tokenizer_bpe and Hugging Face's BPE.
// Units: the text's bytes (pre none: the whole text at once; pre gpt2: each word of GPT-2's
// pre-tokenizer on its own), or with normalizer spm the UTF-8 characters of the SentencePiece-normalized
// text (spm.cpp's sp_units), where a character with no token falls back to its <0xNN> tokens
// (byte_fallback) or unk.
#include "runtime/tokenizer/internal.h"

namespace qtf {
namespace tok {
namespace {

struct Cp {
  uint32_t cp;
  size_t len;
  CpClass cls;
};

// The code point at pos (invalid UTF-8: one byte of class other, as llama.cpp's U+FFFD stand-in is).
Cp cp_at(const char* s, size_t n, size_t pos) {
  if (pos >= n) return {0xFFFFFFFFu, 0, CpClass::end};
  const uint8_t c = (uint8_t)s[pos];
  if (c < 0x80) return {c, 1, cp_class(c)};
  const size_t l = utf8_char(s + pos, n - pos);
  if (l == 0) return {0xFFFDu, 1, CpClass::other};
  uint32_t cp = c & (l == 2 ? 0x1F : l == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < l; ++k) cp = (cp << 6) | ((uint8_t)s[pos + k] & 0x3F);
  return {cp, l, cp_class(cp)};
}

}  // namespace

size_t gpt2_word_end(const char* s, size_t n, size_t pos) {
  const Cp c = cp_at(s, n, pos);
  // 's|'t|'re|'ve|'m|'ll|'d
  if (c.cp == '\'' && pos + 1 < n) {
    const char a = s[pos + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 2;
    if (pos + 2 < n) {
      const char b = s[pos + 2];
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return pos + 3;
    }
  }
  const bool sp = c.cp == ' ';
  const CpClass k = sp ? cp_at(s, n, pos + 1).cls : c.cls;
  // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional space, then a run of one class
  if (k == CpClass::letter || k == CpClass::number || k == CpClass::other) {
    size_t p = pos + (sp ? 1 : 0);
    for (Cp d = cp_at(s, n, p); d.cls == k; d = cp_at(s, n, p)) p += d.len;
    return p;
  }
  // \s+(?!\S) and \s+: a whitespace run; followed by more text, it leaves its last character to the next word
  size_t p = pos, last = pos, count = 0;
  for (Cp d = cp_at(s, n, p); d.cls == CpClass::space; d = cp_at(s, n, p)) {
    last = p;
    p += d.len;
    ++count;
  }
  if (count > 1 && p < n) return last;
  if (count > 0) return p;
  return pos + c.len;  // no rule matched (not reached: every class is one of the above)
}

}  // namespace tok

void TokenizerAlgo::bpe(const Tokenizer& t, const char* s, size_t n, bool first, tok::Emit* e, tok::Work* w) {
  tok::Symbols& y = w->sym;
  auto pair = [&](int l, int r, float* key, int32_t* res) {
    e->step();
    const int rank = t.pair_merge(y.id[l], y.id[r]);
    if (rank < 0) return false;
    *key = -(float)rank;  // lower rank first; ranks < 2^24 are exact in a float
    *res = t.merges_[3 * rank + 2];
    return true;
  };
  auto flush = [&](const char* base, bool bytes_allowed) {
    y.merge_all(pair, e);
    for (int i = y.n > 0 ? 0 : -1; i >= 0; i = y.next[i]) {
      if (y.id[i] >= 0) e->push(y.id[i]);
      else fallback(t, base + y.start[i], y.len[i], bytes_allowed, e);
    }
  };
  if (t.normalize_) {
    bool prefix = first && t.space_prefix_;
    size_t pos = 0;
    do {
      sp_units(t, s, n, &pos, &prefix, w);
      flush(w->bytes, t.byte_fallback_);
    } while (pos < n);
    return;
  }
  for (size_t pos = 0; pos < n;) {
    const size_t end = t.gpt2_ ? tok::gpt2_word_end(s, n, pos) : n;
    while (pos < end) {  // the word, in pieces the workspace holds (one, given work_bytes(n))
      const size_t stop = end - pos > (size_t)y.cap ? pos + (size_t)y.cap : end;
      y.clear();
      for (size_t i = pos; i < stop; ++i) y.add((uint32_t)(i - pos), 1, t.byte_id_[(uint8_t)s[i]]);
      flush(s + pos, false);
      pos = stop;
    }
  }
}

}  // namespace qtf
