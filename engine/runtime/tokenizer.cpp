#include "runtime/tokenizer.h"

#include <cstring>

namespace qtf {
namespace {

uint32_t fnv1a(const char* p, size_t n, uint32_t seed = 2166136261u) {
  uint32_t h = seed;
  for (size_t i = 0; i < n; ++i) h = (h ^ (uint8_t)p[i]) * 16777619u;
  return h;
}

uint32_t pow2_at_least(uint32_t n) {
  uint32_t p = 16;
  while (p < n) p <<= 1;
  return p;
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Length of the UTF-8 sequence starting at p (1 for an invalid lead or a cut-short sequence).
size_t utf8_len(const char* p, size_t avail) {
  if (avail == 0) return 0;  // nothing to read (an empty token may end the buffer)
  uint8_t c = (uint8_t)p[0];
  size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
  if (n > avail || !format::utf8_valid(p, n)) return 0;  // invalid
  return n;
}

struct Sizes {
  size_t offs, bytes, table, merges, merge_table;
  size_t total() const { return offs + bytes + table + merges + merge_table; }
};

size_t align16(size_t n) { return (n + 15) / 16 * 16; }

Status read_kind(const format::ModelFile& f, TokenizerKind* kind) {
  format::Str t;
  QTF_TRY(f.get_str("tokenizer.type", &t));
  if (t.equals("char")) *kind = TokenizerKind::chars;
  else if (t.equals("byte")) *kind = TokenizerKind::bytes;
  else if (t.equals("bpe")) *kind = TokenizerKind::bpe;
  else return Status::error(Err::unsupported, "tokenizer.type '%.*s' is not char, byte or bpe", (int)t.size, t.data);
  return Status::success();
}

Status compute_sizes(const format::ModelFile& f, int vocab, Sizes* s, TokenizerKind* kind,
                     format::MetaEntry* tokens, format::MetaEntry* merges) {
  QTF_TRY(read_kind(f, kind));
  *s = Sizes{};
  if (!f.find_meta("tokenizer.tokens", tokens) || tokens->type != format::MetaType::str_array)
    return Status::error(Err::missing, "tokenizer.tokens (str[]) is missing");
  if ((int64_t)tokens->count != vocab)
    return Status::error(Err::bad_value, "tokenizer has %u tokens but model.vocab_size is %d", (unsigned)tokens->count, vocab);
  size_t bytes = 0;
  format::Str t;
  for (uint32_t i = 0; i < tokens->count; ++i) {
    tokens->str_at(i, &t);
    bytes += t.size;
  }
  s->offs = align16(((size_t)vocab + 1) * 4);
  s->bytes = align16(bytes + 1);
  s->table = align16((size_t)pow2_at_least(2u * (uint32_t)vocab) * 4);
  merges->count = 0;
  if (*kind == TokenizerKind::bpe) {
    if (!f.find_meta("tokenizer.merges", merges) || merges->type != format::MetaType::str_array)
      return Status::error(Err::missing, "tokenizer.merges (str[]) is missing for a bpe tokenizer");
    s->merges = align16((size_t)merges->count * 12);
    s->merge_table = align16((size_t)pow2_at_least(2u * merges->count) * 4);
  }
  return Status::success();
}

}  // namespace

int unescape_token(const char* s, size_t n, char* out) {
  size_t o = 0;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] != '\\') { out[o++] = s[i]; continue; }
    if (i + 1 < n && s[i + 1] == '\\') { out[o++] = '\\'; ++i; continue; }
    if (i + 3 < n && s[i + 1] == 'x' && hexval(s[i + 2]) >= 0 && hexval(s[i + 3]) >= 0) {
      out[o++] = (char)(hexval(s[i + 2]) * 16 + hexval(s[i + 3]));
      i += 3;
      continue;
    }
    return -1;
  }
  return (int)o;
}

size_t Tokenizer::arena_bytes(const format::ModelFile& f, int vocab) {
  Sizes s;
  TokenizerKind k = TokenizerKind::chars;
  format::MetaEntry t, m;
  if (!compute_sizes(f, vocab, &s, &k, &t, &m).ok()) return 0;
  return s.total();
}

Status Tokenizer::init(const format::ModelFile& f, int vocab, void* arena, size_t arena_len) {
  Sizes s;
  format::MetaEntry tokens, merges;
  QTF_TRY(compute_sizes(f, vocab, &s, &kind_, &tokens, &merges));
  if (arena == nullptr || arena_len < s.total() || reinterpret_cast<uintptr_t>(arena) % 16 != 0)
    return Status::error(Err::no_memory, "tokenizer arena too small or misaligned (needs %lu bytes)", (unsigned long)s.total());
  uint8_t* p = static_cast<uint8_t*>(arena);
  offs_ = reinterpret_cast<uint32_t*>(p);
  bytes_ = reinterpret_cast<char*>(p + s.offs);
  table_ = reinterpret_cast<int32_t*>(p + s.offs + s.bytes);
  merges_ = reinterpret_cast<int32_t*>(p + s.offs + s.bytes + s.table);
  merge_table_ = reinterpret_cast<int32_t*>(p + s.offs + s.bytes + s.table + s.merges);
  vocab_ = vocab;
  table_mask_ = pow2_at_least(2u * (uint32_t)vocab) - 1;
  std::memset(table_, 0xFF, (table_mask_ + 1) * 4);
  for (int b = 0; b < 256; ++b) byte_id_[b] = -1;

  const bool escaped = kind_ != TokenizerKind::chars;
  uint32_t at = 0;
  format::Str t;
  for (int i = 0; i < vocab; ++i) {
    tokens.str_at((uint32_t)i, &t);
    offs_[i] = at;
    int n = (int)t.size;
    if (escaped) n = unescape_token(t.data, t.size, bytes_ + at);
    else std::memcpy(bytes_ + at, t.data, t.size);
    if (n < 0) return Status::error(Err::bad_value, "tokenizer token %d has a malformed escape", i);
    if (kind_ == TokenizerKind::chars && (t.size == 0 || utf8_len(t.data, t.size) != t.size))
      return Status::error(Err::bad_value, "char tokenizer token %d is not exactly one character", i);
    if (lookup(bytes_ + at, (size_t)n) < 0) {  // first id wins for duplicate texts
      uint32_t h = fnv1a(bytes_ + at, (size_t)n) & table_mask_;
      while (table_[h] >= 0) h = (h + 1) & table_mask_;
      table_[h] = i;
    }
    if (n == 1 && byte_id_[(uint8_t)bytes_[at]] < 0) byte_id_[(uint8_t)bytes_[at]] = i;
    at += (uint32_t)n;
  }
  offs_[vocab] = at;

  n_merges_ = (int)merges.count;
  merge_mask_ = n_merges_ ? pow2_at_least(2u * merges.count) - 1 : 0;
  if (n_merges_) std::memset(merge_table_, 0xFF, (merge_mask_ + 1) * 4);
  char buf[512];
  for (int i = 0; i < n_merges_; ++i) {
    merges.str_at((uint32_t)i, &t);
    const char* sp = (const char*)std::memchr(t.data, ' ', t.size);
    if (sp == nullptr || t.size > sizeof buf)
      return Status::error(Err::bad_value, "bpe merge %d is not 'left right'", i);
    size_t ln = (size_t)(sp - t.data);
    int a = unescape_token(t.data, ln, buf);
    int b = a < 0 ? -1 : unescape_token(sp + 1, t.size - ln - 1, buf + a);
    if (a <= 0 || b <= 0) return Status::error(Err::bad_value, "bpe merge %d has a malformed part", i);
    int left = lookup(buf, (size_t)a), right = lookup(buf + a, (size_t)b), result = lookup(buf, (size_t)(a + b));
    if (left < 0 || right < 0 || result < 0)
      return Status::error(Err::bad_value, "bpe merge %d refers to a token not in the vocabulary", i);
    merges_[3 * i] = left;
    merges_[3 * i + 1] = right;
    merges_[3 * i + 2] = result;
    if (pair_merge(left, right) >= 0) continue;  // a repeated rule: the earlier one has priority
    uint32_t h = (uint32_t)(left * 73856093u ^ right * 19349663u) & merge_mask_;
    while (merge_table_[h] >= 0) h = (h + 1) & merge_mask_;
    merge_table_[h] = i;
  }
  for (int b = 0; kind_ == TokenizerKind::bytes && b < 256; ++b)
    if (byte_id_[b] < 0)
      return Status::error(Err::bad_value, "byte tokenizer has no token for byte 0x%02x", b);
  return Status::success();
}

int Tokenizer::lookup(const char* p, size_t n) const {
  uint32_t h = fnv1a(p, n) & table_mask_;
  for (; table_[h] >= 0; h = (h + 1) & table_mask_) {
    int id = table_[h];
    if (offs_[id + 1] - offs_[id] == n && std::memcmp(bytes_ + offs_[id], p, n) == 0) return id;
  }
  return -1;
}

int Tokenizer::pair_merge(int left, int right) const {
  if (n_merges_ == 0) return -1;
  uint32_t h = (uint32_t)(left * 73856093u ^ right * 19349663u) & merge_mask_;
  for (; merge_table_[h] >= 0; h = (h + 1) & merge_mask_) {
    int i = merge_table_[h];
    if (merges_[3 * i] == left && merges_[3 * i + 1] == right) return i;
  }
  return -1;
}

format::Str Tokenizer::token_text(int id) const {
  format::Str s;
  if (id < 0 || id >= vocab_ || offs_ == nullptr) return s;
  s.data = bytes_ + offs_[id];
  s.size = offs_[id + 1] - offs_[id];
  return s;
}

Status Tokenizer::encode(const char* text, size_t len, int32_t* out, int max, int* n_out, int* n_skipped) const {
  if (offs_ == nullptr) return Status::error(Err::invalid_argument, "tokenizer is not initialised");
  if ((text == nullptr && len > 0) || (out == nullptr && max > 0) || max < 0 || n_out == nullptr)
    return Status::error(Err::invalid_argument, "null text/output buffer");
  int n = 0, skipped = 0;
  bool overflow = false;
  for (size_t i = 0; i < len;) {
    int id = -1;
    size_t step = 1;
    if (kind_ == TokenizerKind::chars) {
      step = utf8_len(text + i, len - i);
      if (step == 0) step = 1;  // invalid byte: skipped below
      else id = lookup(text + i, step);
    } else {
      id = byte_id_[(uint8_t)text[i]];
    }
    if (id < 0) {
      skipped += (int)step;
    } else if (n < max) {
      out[n++] = id;
    } else {
      overflow = true;
      ++n;
    }
    i += step;
  }
  if (n_skipped) *n_skipped = skipped;
  if (overflow) {
    *n_out = n;
    return Status::error(Err::out_of_range, "text needs more than %d tokens", max);
  }
  if (kind_ == TokenizerKind::bpe) {  // apply merges, lowest rank first, until none applies
    for (;;) {
      int best = -1, at = -1;
      for (int i = 0; i + 1 < n; ++i) {
        int mi = pair_merge(out[i], out[i + 1]);
        if (mi >= 0 && (best < 0 || mi < best)) { best = mi; at = i; }
      }
      if (best < 0) break;
      out[at] = merges_[3 * best + 2];
      std::memmove(out + at + 1, out + at + 2, (size_t)(n - at - 2) * sizeof(int32_t));
      --n;
    }
  }
  *n_out = n;
  return Status::success();
}

}  // namespace qtf
