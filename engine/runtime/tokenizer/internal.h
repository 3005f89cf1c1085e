// What the tokenizer's algorithm files share (not part of the public API): the output sink, UTF-8 and
// code point classes, and the merge engine that both BPE (by rank) and SentencePiece (by score) run.
#pragma once
#include <cstddef>
#include <cstdint>

#include "runtime/tokenizer/tokenizer.h"

namespace qtf {
namespace tok {

// Where tokens go: the caller's buffer while it has room, counted beyond it.
struct Emit {
  int32_t* out = nullptr;
  int max = 0, n = 0, skipped = 0;
  bool last_unk = false;  // the previous token is an unk that stood for unknown input
  bool fuse_unk = false;  // a run of unknown units is one unk (SentencePiece; HF BPE's fuse_unk)
  uint64_t* steps = nullptr;
  void push(int id) {
    if (n < max) out[n] = id;
    ++n;
    last_unk = false;
  }
  // Unknown input as unk (fused with an unk just before it when fuse_unk), or skipped bytes when the
  // vocabulary has no unk.
  void unknown(int unk, size_t bytes) {
    if (unk < 0) {
      skipped += (int)bytes;
      return;
    }
    if (!(fuse_unk && last_unk)) push(unk);
    last_unk = true;
  }
  void step(uint64_t k = 1) {
    if (steps) *steps += k;
  }
};

// Length of the UTF-8 sequence led by c as llama.cpp's unicode_len_utf8 counts it (no validation):
// 1 for ASCII and stray continuation bytes, else what the lead byte announces.
inline size_t lead_len(uint8_t c) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[c >> 4];
}

// The valid UTF-8 character at p (its length 1..4), or 0 when the bytes there are not one.
size_t utf8_char(const char* p, size_t avail);

enum class CpClass : uint8_t { other, letter, number, space, end };
CpClass cp_class(uint32_t cp);  // unicode.cpp (generated)

// GPT-2's pre-tokenizer ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+),
// hand-written as llama.cpp's unicode_regex_split_custom_gpt2: the end of the word that starts at pos.
size_t gpt2_word_end(const char* s, size_t n, size_t pos);

// The symbols of one segment in a caller-given workspace, and an indexed max-heap of the merge each
// symbol would make with its right neighbour: highest key first, the leftmost on ties (llama.cpp's
// llm_bigram_spm / llm_bigram_bpe order). Each merge is O(log n), so a segment costs O(n log n).
struct Symbols {
  static constexpr size_t kBytesPerSymbol = 9 * 4;
  uint32_t* start = nullptr;  // into the segment's bytes
  uint32_t* len = nullptr;
  int32_t* id = nullptr;      // the symbol's token (-1: none)
  int32_t* prev = nullptr;
  int32_t* next = nullptr;
  float* key = nullptr;       // priority of merging with next
  int32_t* result = nullptr;  // the token that merge makes
  int32_t* heap = nullptr;
  int32_t* where = nullptr;   // position in heap, -1 when absent
  int n = 0, cap = 0, heap_n = 0;

  // Carves room for cap symbols from p (4-byte aligned).
  void place(char* p, int capacity) {
    cap = capacity;
    int32_t* q = reinterpret_cast<int32_t*>(p);
    start = reinterpret_cast<uint32_t*>(q);
    len = reinterpret_cast<uint32_t*>(q + cap);
    id = q + 2 * cap;
    prev = q + 3 * cap;
    next = q + 4 * cap;
    key = reinterpret_cast<float*>(q + 5 * cap);
    result = q + 6 * cap;
    heap = q + 7 * cap;
    where = q + 8 * cap;
  }
  void clear() { n = heap_n = 0; }
  void add(uint32_t s, uint32_t l, int32_t tok) {
    start[n] = s;
    len[n] = l;
    id[n] = tok;
    prev[n] = n - 1;
    next[n] = -1;
    where[n] = -1;
    if (n > 0) next[n - 1] = n;
    ++n;
  }

  bool before(int a, int b) const { return key[a] > key[b] || (key[a] == key[b] && a < b); }
  void swap_at(int i, int j) {
    const int a = heap[i], b = heap[j];
    heap[i] = b;
    heap[j] = a;
    where[b] = i;
    where[a] = j;
  }
  void sift_up(int i) {
    while (i > 0 && before(heap[i], heap[(i - 1) / 2])) {
      swap_at(i, (i - 1) / 2);
      i = (i - 1) / 2;
    }
  }
  void sift_down(int i) {
    for (;;) {
      int best = i;
      const int l = 2 * i + 1, r = l + 1;
      if (l < heap_n && before(heap[l], heap[best])) best = l;
      if (r < heap_n && before(heap[r], heap[best])) best = r;
      if (best == i) return;
      swap_at(i, best);
      i = best;
    }
  }
  void remove(int s) {
    const int i = where[s];
    if (i < 0) return;
    where[s] = -1;
    --heap_n;
    if (i == heap_n) return;
    const int moved = heap[heap_n];
    heap[i] = moved;
    where[moved] = i;
    sift_up(i);
    sift_down(where[moved]);
  }
  // Sets (or clears, when found is false) symbol s's merge with its right neighbour.
  void set(int s, bool found, float k, int32_t res) {
    if (!found) {
      remove(s);
      return;
    }
    key[s] = k;
    result[s] = res;
    if (where[s] < 0) {
      heap[heap_n] = s;
      where[s] = heap_n++;
    }
    sift_up(where[s]);
    sift_down(where[s]);
  }

  // Runs the merges to the end. pair(left, right, &key, &result) says whether the two adjacent symbols
  // merge, with what priority into what token.
  template <class Pair>
  void merge_all(const Pair& pair, Emit* e) {
    auto update = [&](int left, int right) {  // the merge of two adjacent symbols, if they make a token
      float k = 0.f;
      int32_t res = -1;
      const bool found = pair(left, right, &k, &res);
      set(left, found, k, res);
    };
    for (int i = 0; i + 1 < n; ++i) update(i, i + 1);
    while (heap_n > 0) {
      e->step();
      const int s = heap[0], r = next[s];
      remove(s);
      remove(r);
      len[s] += len[r];
      id[s] = result[s];
      next[s] = next[r];
      if (next[r] >= 0) prev[next[r]] = s;
      len[r] = 0;
      if (prev[s] >= 0) update(prev[s], s);
      if (next[s] >= 0) update(s, next[s]);
    }
  }
};

// A workspace for one segment: the symbols, then normalized bytes (SentencePiece spaces take 3 bytes
// for one input byte and a broken character beside one can make 3 units of it, so a text of n bytes
// needs fewer than 2n + 8 symbols and 3n + 3 bytes; work_bytes() sizes it so).
struct Work {
  char* bytes = nullptr;
  size_t bytes_cap = 0;
  Symbols sym;
  static size_t units_for(size_t len) { return 2 * len + 8; }
  static size_t bytes_for(size_t len) { return 3 * len + 3; }
  static size_t size_for(size_t len) { return units_for(len) * Symbols::kBytesPerSymbol + bytes_for(len) + 8; }
  // Splits buf between symbols and bytes in the proportions above. False when it holds too little.
  bool place(void* buf, size_t n) {
    uintptr_t p = reinterpret_cast<uintptr_t>(buf), end = p + n;
    p = (p + 3) & ~uintptr_t(3);
    if (buf == nullptr || p >= end) return false;
    const size_t per = 2 * Symbols::kBytesPerSymbol + 3;  // two symbols and three bytes per text byte
    const size_t fixed = 8 * Symbols::kBytesPerSymbol + 3;
    if (end - p < fixed + 4 * per) return false;
    size_t len = (end - p - fixed) / per;
    if (len > (size_t(1) << 26)) len = size_t(1) << 26;  // symbol indices stay ints
    sym.place(reinterpret_cast<char*>(p), (int)units_for(len));
    bytes = reinterpret_cast<char*>(p + units_for(len) * Symbols::kBytesPerSymbol);
    bytes_cap = bytes_for(len);
    return true;
  }
};

}  // namespace tok

// The algorithms, one file each; friends of Tokenizer for its tables.
struct TokenizerAlgo {
  static void chars(const Tokenizer& t, const char* s, size_t n, tok::Emit* e);      // chars.cpp: char and byte
  static void bpe(const Tokenizer& t, const char* s, size_t n, bool first, tok::Emit* e, tok::Work* w);  // bpe.cpp
  static void spm(const Tokenizer& t, const char* s, size_t n, bool first, tok::Emit* e, tok::Work* w);  // spm.cpp
  // SentencePiece's normalizer: the units of s[*pos..n) ("▁" first when *prefix, which it clears; ' ' as
  // "▁"; one unit per UTF-8 character with llama.cpp's lengths), each with its token or -1, as many as the
  // workspace holds; a full one ends at the chunk's last word start. Advances *pos. spm.cpp.
  static void sp_units(const Tokenizer& t, const char* s, size_t n, size_t* pos, bool* prefix, tok::Work* w);
  // A unit (one character's bytes) that has no token: its <0xNN> byte tokens when the vocabulary has all
  // of them and falls back to bytes, else unk (fused) or skipped.
  static void fallback(const Tokenizer& t, const char* s, size_t n, bool bytes_allowed, tok::Emit* e);
};

}  // namespace qtf
