// SentencePiece BPE by scores (tokenizer.type spm), as llama.cpp's llm_tokenizer_spm and llama2.c's
// encode: the text is normalized ("▁" prefix, ' ' -> "▁"), split into UTF-8 characters, and the adjacent
// pair whose concatenation is the highest-scoring token is merged first (the leftmost on ties) until no
// pair is a token. A character with no token becomes its <0xNN> byte tokens, else unk.
// The normalizer is shared with bpe's `tokenizer.normalizer spm` (Hugging Face BPE, bpe.cpp).
#include <cstring>

#include "runtime/tokenizer/internal.h"

namespace qtf {
namespace {

const char kSpace[] = "\xe2\x96\x81";  // U+2581

}  // namespace

void TokenizerAlgo::sp_units(const Tokenizer& t, const char* s, size_t n, size_t* pos, bool* prefix, tok::Work* w) {
  // As llama.cpp: the whole text is normalized first (' ' -> "▁"), then cut into units by the lead bytes'
  // lengths, so a unit may hold the first byte of a "▁" after a broken character, as there.
  tok::Symbols& y = w->sym;
  y.clear();
  size_t nb = 0, unit_end = 0;  // the normalized bytes so far; where the current unit ends
  int cut_unit = -1;            // the last word start in the chunk: where a full workspace ends it
  size_t cut_pos = 0, i = *pos;
  size_t unit_pos = *pos;       // where in s the last unit begun by one of s's own bytes starts
  auto append = [&](const char* b, size_t k) {
    for (size_t j = 0; j < k; ++j, ++nb) {
      w->bytes[nb] = b[j];
      if (nb == unit_end) {  // a unit starts here
        y.add((uint32_t)nb, 0, -1);
        unit_end = nb + tok::lead_len((uint8_t)b[j]);
      }
    }
  };
  auto last_is_space = [&]() {
    return y.n > 0 && nb - y.start[y.n - 1] == 3 && std::memcmp(w->bytes + y.start[y.n - 1], kSpace, 3) == 0;
  };
  if (*prefix) {
    append(kSpace, 3);
    *prefix = false;
  }
  while (i < n) {
    const bool space = s[i] == ' ';
    if (nb + 3 > w->bytes_cap || y.n + 3 > y.cap) break;  // room for a "▁", which may start 3 units
    if (space && nb == unit_end && y.n > 0 && !last_is_space()) {
      cut_unit = y.n;
      cut_pos = i;
    }
    if (space) {
      append(kSpace, 3);
    } else {
      if (nb == unit_end) unit_pos = i;
      append(s + i, 1);
    }
    ++i;
  }
  if (i < n && cut_unit <= 0 && nb < unit_end && y.n > 1 && unit_pos > *pos) {
    // A full workspace with no word start to end at, in the middle of a character: the chunk ends before
    // it, so the character is one unit of the next chunk, as in an unbounded workspace, and not byte
    // fallback for its pieces. (Only a unit begun by a byte of s can be unfinished: a "▁" is appended
    // whole, and the bytes it spills into after a broken character are units of one byte.)
    cut_unit = y.n - 1;
    cut_pos = unit_pos;
  }
  if (i < n && cut_unit > 0) {
    nb = y.start[cut_unit];
    y.n = cut_unit;
    y.next[cut_unit - 1] = -1;
    i = cut_pos;
  }
  for (int u = 0; u < y.n; ++u) {  // lengths (the last one cut at the end of the text) and tokens
    const uint32_t end = u + 1 < y.n ? y.start[u + 1] : (uint32_t)nb;
    y.len[u] = end - y.start[u];
    y.id[u] = t.lookup(w->bytes + y.start[u], y.len[u]);
  }
  *pos = i;
}

void TokenizerAlgo::spm(const Tokenizer& t, const char* s, size_t n, bool first, tok::Emit* e, tok::Work* w) {
  tok::Symbols& y = w->sym;
  auto pair = [&](int l, int r, float* key, int32_t* res) {
    e->step();
    const size_t m = (size_t)y.len[l] + y.len[r];
    if (m > t.max_piece_) return false;
    const int id = t.lookup(w->bytes + y.start[l], m);  // adjacent symbols are adjacent bytes
    if (id < 0) return false;
    *key = t.scores_[id];
    *res = id;
    return true;
  };
  bool prefix = first && t.space_prefix_;
  size_t pos = 0;
  do {
    sp_units(t, s, n, &pos, &prefix, w);
    y.merge_all(pair, e);
    for (int i = y.n > 0 ? 0 : -1; i >= 0; i = y.next[i]) {
      if (y.id[i] >= 0) e->push(y.id[i]);
      else fallback(t, w->bytes + y.start[i], y.len[i], t.byte_fallback_, e);
    }
  } while (pos < n);
}

}  // namespace qtf
