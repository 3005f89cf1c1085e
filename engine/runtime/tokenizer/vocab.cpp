// The tokenizer's shared tables, built once from the file's arrays in O(vocab) (each array walked once,
// in order), token escaping, decoding, special tokens, and the dispatch to the algorithm files.
#include <algorithm>
#include <cstring>

#include "runtime/tokenizer/internal.h"

namespace qtf {
namespace {

uint32_t fnv1a(const char* p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) h = (h ^ (uint8_t)p[i]) * 16777619u;
  return h;
}

uint32_t pair_hash(int left, int right) { return (uint32_t)left * 73856093u ^ (uint32_t)right * 19349663u; }

uint32_t pow2_at_least(uint64_t n) {
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

size_t align16(size_t n) { return (n + 15) / 16 * 16; }

// "<0xNN>" (SentencePiece's byte pieces, upper-case hex as it writes them): the byte, else -1.
int byte_piece(const char* p, size_t n) {
  if (n != 6 || std::memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
  const int hi = hexval(p[3]), lo = hexval(p[4]);
  if (hi < 0 || lo < 0 || (p[3] >= 'a' && p[3] <= 'f') || (p[4] >= 'a' && p[4] <= 'f')) return -1;
  return hi * 16 + lo;
}

const char kSpace[] = "\xe2\x96\x81";  // U+2581, SentencePiece's space

// An optional key of one type: false when absent, an error when present with another type.
Status optional(const format::ModelFile& f, const char* key, format::MetaType type, format::MetaEntry* e, bool* found) {
  *found = f.find_meta(key, e);
  if (*found && e->type != type)
    return Status::error(Err::bad_value, "metadata '%s' is %s, expected %s", key, format::meta_type_name(e->type),
                         format::meta_type_name(type));
  return Status::success();
}

Status optional_flag(const format::ModelFile& f, const char* key, bool* v) {
  format::MetaEntry e;
  bool found;
  QTF_TRY(optional(f, key, format::MetaType::i64, &e, &found));
  if (!found) return Status::success();
  int64_t x = 0;
  e.as_i64(&x);
  if (x != 0 && x != 1) return Status::error(Err::bad_value, "%s is %lld, expected 0 or 1", key, (long long)x);
  *v = x == 1;
  return Status::success();
}

Status optional_id(const format::ModelFile& f, const char* key, int vocab, int* id) {
  format::MetaEntry e;
  bool found;
  QTF_TRY(optional(f, key, format::MetaType::i64, &e, &found));
  if (!found) return Status::success();
  int64_t x = 0;
  e.as_i64(&x);
  if (x < -1 || x >= vocab)
    return Status::error(Err::bad_value, "%s is %lld, outside the vocabulary (0..%d, or -1 for none)", key, (long long)x,
                         vocab - 1);
  *id = (int)x;
  return Status::success();
}

Status optional_choice(const format::ModelFile& f, const char* key, const char* a, const char* b, bool* is_b) {
  format::MetaEntry e;
  bool found;
  QTF_TRY(optional(f, key, format::MetaType::str, &e, &found));
  if (!found) return Status::success();
  format::Str s;
  e.as_str(&s);
  if (s.equals(b)) *is_b = true;
  else if (!s.equals(a))
    return Status::error(Err::unsupported, "%s '%.*s' is not %s or %s", key, (int)(s.size > 64 ? 64 : s.size), s.data, a, b);
  return Status::success();
}

}  // namespace

// Everything init reads from the file, checked, and the arena's layout.
struct Tokenizer::Parts {
  TokenizerKind kind = TokenizerKind::chars;
  format::MetaEntry tokens, merges, scores, types;
  bool has_scores = false, has_types = false, gpt2 = false, normalize = false, space_prefix = true,
       byte_fallback = false, fuse_unk = false, add_bos = false, add_eos = false;
  int bos = -1, eos = -1, unk = -1, pad = -1, n_special = 0;
  size_t offs = 0, bytes = 0, text = 0, types_bytes = 0, scores_bytes = 0, table = 0, merge_bytes = 0,
         merge_table = 0, special = 0;
  size_t total() const {
    return 2 * offs + bytes + text + types_bytes + scores_bytes + table + merge_bytes + merge_table + special;
  }
};

int unescape_token(const char* s, size_t n, char* out) {
  size_t o = 0;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] != '\\') {
      out[o++] = s[i];
      continue;
    }
    if (i + 1 < n && s[i + 1] == '\\') {
      out[o++] = '\\';
      ++i;
      continue;
    }
    if (i + 3 < n && s[i + 1] == 'x' && hexval(s[i + 2]) >= 0 && hexval(s[i + 3]) >= 0) {
      out[o++] = (char)(hexval(s[i + 2]) * 16 + hexval(s[i + 3]));
      i += 3;
      continue;
    }
    return -1;
  }
  return (int)o;
}

// Reads and checks every tokenizer key, and sizes the arena (one pass over the token strings).
Status Tokenizer::read_parts(const format::ModelFile& f, int vocab, Parts* p) {
  format::Str t;
  QTF_TRY(f.get_str("tokenizer.type", &t));
  if (t.equals("char")) p->kind = TokenizerKind::chars;
  else if (t.equals("byte")) p->kind = TokenizerKind::bytes;
  else if (t.equals("bpe")) p->kind = TokenizerKind::bpe;
  else if (t.equals("spm")) p->kind = TokenizerKind::spm;
  else
    return Status::error(Err::unsupported, "tokenizer.type '%.*s' is not char, byte, bpe or spm",
                         (int)(t.size > 64 ? 64 : t.size), t.data);
  if (!f.find_meta("tokenizer.tokens", &p->tokens) || p->tokens.type != format::MetaType::str_array)
    return Status::error(Err::missing, "tokenizer.tokens (str[]) is missing");
  if (vocab <= 0 || (int64_t)p->tokens.count != vocab)
    return Status::error(Err::bad_value, "tokenizer has %u tokens but model.vocab_size is %d", (unsigned)p->tokens.count, vocab);

  QTF_TRY(optional(f, "tokenizer.scores", format::MetaType::f64_array, &p->scores, &p->has_scores));
  if (p->has_scores && (int64_t)p->scores.count != vocab)
    return Status::error(Err::bad_value, "tokenizer.scores has %u values for %d tokens", (unsigned)p->scores.count, vocab);
  if (p->kind == TokenizerKind::spm && !p->has_scores)
    return Status::error(Err::missing, "tokenizer.scores (f64[]) is missing for an spm tokenizer");
  QTF_TRY(optional(f, "tokenizer.token_types", format::MetaType::i64_array, &p->types, &p->has_types));
  if (p->has_types && (int64_t)p->types.count != vocab)
    return Status::error(Err::bad_value, "tokenizer.token_types has %u values for %d tokens", (unsigned)p->types.count, vocab);

  QTF_TRY(optional_choice(f, "tokenizer.pre", "none", "gpt2", &p->gpt2));
  QTF_TRY(optional_choice(f, "tokenizer.normalizer", "none", "spm", &p->normalize));
  if ((p->gpt2 || p->normalize) && p->kind != TokenizerKind::bpe)
    return Status::error(Err::bad_value, "tokenizer.pre and tokenizer.normalizer apply to bpe tokenizers only");
  if (p->gpt2 && p->normalize)
    return Status::error(Err::bad_value, "tokenizer.pre gpt2 and tokenizer.normalizer spm do not go together");
  QTF_TRY(optional_flag(f, "tokenizer.add_space_prefix", &p->space_prefix));
  QTF_TRY(optional_flag(f, "tokenizer.byte_fallback", &p->byte_fallback));
  p->fuse_unk = p->kind == TokenizerKind::spm;
  QTF_TRY(optional_flag(f, "tokenizer.fuse_unk", &p->fuse_unk));
  QTF_TRY(optional_flag(f, "tokenizer.add_bos", &p->add_bos));
  QTF_TRY(optional_flag(f, "tokenizer.add_eos", &p->add_eos));
  QTF_TRY(optional_id(f, "tokenizer.bos_id", vocab, &p->bos));
  QTF_TRY(optional_id(f, "tokenizer.eos_id", vocab, &p->eos));
  QTF_TRY(optional_id(f, "tokenizer.unk_id", vocab, &p->unk));
  QTF_TRY(optional_id(f, "tokenizer.pad_id", vocab, &p->pad));
  if (p->add_bos && p->bos < 0) return Status::error(Err::bad_value, "tokenizer.add_bos is 1 but there is no tokenizer.bos_id");
  if (p->add_eos && p->eos < 0) return Status::error(Err::bad_value, "tokenizer.add_eos is 1 but there is no tokenizer.eos_id");

  uint64_t bytes = 0;
  format::Str s;
  uint64_t cur = 0;
  while (p->tokens.next_str(&cur, &s)) bytes += s.size;
  if (bytes >= 0xFFFFFFF0u) return Status::error(Err::bad_value, "tokenizer.tokens hold more than 4 GiB");
  p->n_special = 0;
  for (uint32_t i = 0; p->has_types && i < p->types.count; ++i) {
    int64_t v = 0;
    p->types.i64_at(i, &v);
    if (v < 1 || v > 6)
      return Status::error(Err::bad_value, "tokenizer.token_types[%u] is %lld, expected 1..6", (unsigned)i, (long long)v);
    if (v == (int)TokenType::unknown || v == (int)TokenType::control || v == (int)TokenType::user_defined) ++p->n_special;
  }
  for (uint32_t i = 0; p->has_scores && i < p->scores.count; ++i) {
    double v = 0;
    p->scores.f64_at(i, &v);
    if (!(v >= -3.4e38 && v <= 3.4e38)) return Status::error(Err::bad_value, "tokenizer.scores[%u] is not a finite float", (unsigned)i);
  }
  p->offs = align16(((size_t)vocab + 1) * 4);
  p->bytes = align16((size_t)bytes + 1);
  p->text = p->bytes;  // a token's text is never longer than its piece
  p->types_bytes = align16((size_t)vocab);
  p->scores_bytes = p->has_scores ? align16((size_t)vocab * 4) : 0;
  p->table = align16((size_t)pow2_at_least(2ull * (uint64_t)vocab) * 4);
  p->special = align16((size_t)p->n_special * 4);
  p->merges.count = 0;
  if (p->kind == TokenizerKind::bpe) {
    if (!f.find_meta("tokenizer.merges", &p->merges) || p->merges.type != format::MetaType::str_array)
      return Status::error(Err::missing, "tokenizer.merges (str[]) is missing for a bpe tokenizer");
    p->merge_bytes = align16((size_t)p->merges.count * 12);
    p->merge_table = align16((size_t)pow2_at_least(2ull * p->merges.count) * 4);
  }
  return Status::success();
}

size_t Tokenizer::arena_bytes(const format::ModelFile& f, int vocab) {
  Parts p;
  if (!read_parts(f, vocab, &p).ok()) return 0;
  return p.total();
}

Status Tokenizer::init(const format::ModelFile& f, int vocab, void* arena, size_t arena_len) {
  offs_ = nullptr;  // not usable until init succeeds
  Parts p;
  QTF_TRY(read_parts(f, vocab, &p));
  if (arena == nullptr || arena_len < p.total() || reinterpret_cast<uintptr_t>(arena) % 16 != 0)
    return Status::error(Err::no_memory, "tokenizer arena too small or misaligned (needs %lu bytes)", (unsigned long)p.total());
  Status st = build(p, arena);
  if (!st.ok()) offs_ = nullptr;
  return st;
}

Status Tokenizer::build(const Parts& p, void* arena) {
  uint8_t* a = static_cast<uint8_t*>(arena);
  auto carve = [&a](size_t n) {
    uint8_t* r = a;
    a += n;
    return r;
  };
  uint32_t* offs = reinterpret_cast<uint32_t*>(carve(p.offs));
  text_offs_ = reinterpret_cast<uint32_t*>(carve(p.offs));
  bytes_ = reinterpret_cast<char*>(carve(p.bytes));
  text_ = reinterpret_cast<char*>(carve(p.text));
  types_ = carve(p.types_bytes);
  scores_ = p.has_scores && p.kind == TokenizerKind::spm ? reinterpret_cast<float*>(carve(p.scores_bytes)) : nullptr;
  if (!scores_) carve(p.scores_bytes);
  table_ = reinterpret_cast<int32_t*>(carve(p.table));
  merges_ = reinterpret_cast<int32_t*>(carve(p.merge_bytes));
  merge_table_ = reinterpret_cast<int32_t*>(carve(p.merge_table));
  special_ = reinterpret_cast<int32_t*>(carve(p.special));

  kind_ = p.kind;
  vocab_ = (int)p.tokens.count;
  gpt2_ = p.gpt2;
  normalize_ = p.normalize;
  space_prefix_ = p.space_prefix;
  byte_fallback_ = p.byte_fallback || kind_ == TokenizerKind::spm;
  fuse_unk_ = p.fuse_unk;
  add_bos_ = p.add_bos;
  add_eos_ = p.add_eos;
  bos_ = p.bos;
  eos_ = p.eos;
  unk_ = p.unk;
  pad_ = p.pad;
  max_piece_ = 0;
  table_mask_ = pow2_at_least(2ull * (uint64_t)vocab_) - 1;
  std::memset(table_, 0xFF, (table_mask_ + 1) * 4);
  for (int b = 0; b < 256; ++b) byte_id_[b] = -1;
  const bool sp_pieces = kind_ == TokenizerKind::spm || normalize_;  // "▁" spaces and <0xNN> bytes

  // The pieces: one sequential walk of tokenizer.tokens.
  const bool escaped = kind_ != TokenizerKind::chars;
  uint32_t at = 0;
  format::Str t;
  uint64_t cur = 0;
  for (int i = 0; i < vocab_; ++i) {
    p.tokens.next_str(&cur, &t);
    offs[i] = at;
    int n = (int)t.size;
    if (escaped) n = unescape_token(t.data, t.size, bytes_ + at);
    else std::memcpy(bytes_ + at, t.data, t.size);
    if (n < 0) return Status::error(Err::bad_value, "tokenizer token %d has a malformed escape", i);
    if (kind_ == TokenizerKind::chars && (t.size == 0 || tok::utf8_char(t.data, t.size) != t.size))
      return Status::error(Err::bad_value, "char tokenizer token %d is not exactly one character", i);
    int64_t type = (int64_t)TokenType::normal;
    if (p.has_types) p.types.i64_at((uint32_t)i, &type);
    types_[i] = (uint8_t)type;
    offs_ = offs;  // lookup reads the pieces made so far
    if (lookup(bytes_ + at, (size_t)n) < 0) {  // the first id wins for duplicate pieces
      uint32_t h = fnv1a(bytes_ + at, (size_t)n) & table_mask_;
      while (table_[h] >= 0) h = (h + 1) & table_mask_;
      table_[h] = i;
    }
    if (sp_pieces) {
      const int b = byte_piece(bytes_ + at, (size_t)n);
      if (b >= 0 && byte_id_[b] < 0) byte_id_[b] = i;
      if (b >= 0 && !p.has_types) types_[i] = (uint8_t)TokenType::byte;
    } else if (n == 1 && byte_id_[(uint8_t)bytes_[at]] < 0) {
      byte_id_[(uint8_t)bytes_[at]] = i;
    }
    if ((size_t)n > max_piece_) max_piece_ = (size_t)n;
    at += (uint32_t)n;
    offs[i + 1] = at;
  }
  offs_ = offs;

  // What each token decodes to (llama.cpp's token_to_piece without special tokens).
  uint32_t tat = 0;
  for (int i = 0; i < vocab_; ++i) {
    text_offs_[i] = tat;
    const char* s = bytes_ + offs_[i];
    const size_t n = offs_[i + 1] - offs_[i];
    const TokenType type = (TokenType)types_[i];
    if (type == TokenType::control || type == TokenType::unknown || type == TokenType::unused) {
      // nothing: they stand for no text
    } else if (sp_pieces && type == TokenType::byte && byte_piece(s, n) >= 0) {
      text_[tat++] = (char)byte_piece(s, n);
    } else if (sp_pieces && type != TokenType::user_defined) {
      for (size_t k = 0; k < n;) {
        if (k + 3 <= n && std::memcmp(s + k, kSpace, 3) == 0) {
          text_[tat++] = ' ';
          k += 3;
        } else {
          text_[tat++] = s[k++];
        }
      }
    } else {
      std::memcpy(text_ + tat, s, n);
      tat += (uint32_t)n;
    }
  }
  text_offs_[vocab_] = tat;

  // Scores, stored as float: llama.cpp and llama2.c compare them in single precision.
  for (int i = 0; scores_ && i < vocab_; ++i) {
    double v = 0;
    p.scores.f64_at((uint32_t)i, &v);
    scores_[i] = (float)v;
  }

  // Special tokens spelled in text: grouped by first byte, longest first (llama.cpp tries longer ones first).
  n_special_ = 0;
  for (int i = 0; i < vocab_ && p.n_special > 0; ++i) {
    const TokenType type = (TokenType)types_[i];
    if ((type == TokenType::unknown || type == TokenType::control || type == TokenType::user_defined) &&
        offs_[i + 1] > offs_[i])
      special_[n_special_++] = i;
  }
  const uint32_t* o = offs_;
  const char* by = bytes_;
  std::sort(special_, special_ + n_special_, [o, by](int32_t x, int32_t y) {
    const uint8_t bx = (uint8_t)by[o[x]], byy = (uint8_t)by[o[y]];
    if (bx != byy) return bx < byy;
    const uint32_t lx = o[x + 1] - o[x], ly = o[y + 1] - o[y];
    return lx != ly ? lx > ly : x < y;
  });
  for (int b = 0, k = 0; b <= 256; ++b) {
    while (k < n_special_ && (uint8_t)bytes_[offs_[special_[k]]] < b) ++k;
    special_head_[b] = b == 256 ? n_special_ : k;
  }
  n_user_ = 0;
  for (int k = 0; k < n_special_; ++k) n_user_ += types_[special_[k]] == (uint8_t)TokenType::user_defined;

  // Merges: one sequential walk of tokenizer.merges.
  n_merges_ = (int)p.merges.count;
  merge_mask_ = n_merges_ ? pow2_at_least(2ull * p.merges.count) - 1 : 0;
  if (n_merges_) std::memset(merge_table_, 0xFF, (merge_mask_ + 1) * 4);
  char buf[512];
  cur = 0;
  for (int i = 0; i < n_merges_; ++i) {
    p.merges.next_str(&cur, &t);
    const char* sp = (const char*)std::memchr(t.data, ' ', t.size);
    if (sp == nullptr || t.size > sizeof buf)
      return Status::error(Err::bad_value, "bpe merge %d is not 'left right'", i);
    const size_t ln = (size_t)(sp - t.data);
    const int l = unescape_token(t.data, ln, buf);
    const int r = l < 0 ? -1 : unescape_token(sp + 1, t.size - ln - 1, buf + l);
    if (l <= 0 || r <= 0) return Status::error(Err::bad_value, "bpe merge %d has a malformed part", i);
    const int left = lookup(buf, (size_t)l), right = lookup(buf + l, (size_t)r), result = lookup(buf, (size_t)(l + r));
    if (left < 0 || right < 0 || result < 0)
      return Status::error(Err::bad_value, "bpe merge %d refers to a token not in the vocabulary", i);
    merges_[3 * i] = left;
    merges_[3 * i + 1] = right;
    merges_[3 * i + 2] = result;
    if (pair_merge(left, right) >= 0) continue;  // a repeated rule: the earlier one has priority
    uint32_t h = pair_hash(left, right) & merge_mask_;
    while (merge_table_[h] >= 0) h = (h + 1) & merge_mask_;
    merge_table_[h] = i;
  }
  for (int b = 0; kind_ == TokenizerKind::bytes && b < 256; ++b)
    if (byte_id_[b] < 0) return Status::error(Err::bad_value, "byte tokenizer has no token for byte 0x%02x", b);
  return Status::success();
}

int Tokenizer::lookup(const char* p, size_t n) const {
  uint32_t h = fnv1a(p, n) & table_mask_;
  for (; table_[h] >= 0; h = (h + 1) & table_mask_) {
    const int id = table_[h];
    if (offs_[id + 1] - offs_[id] == n && std::memcmp(bytes_ + offs_[id], p, n) == 0) return id;
  }
  return -1;
}

int Tokenizer::pair_merge(int left, int right) const {
  if (n_merges_ == 0 || left < 0 || right < 0) return -1;
  uint32_t h = pair_hash(left, right) & merge_mask_;
  for (; merge_table_[h] >= 0; h = (h + 1) & merge_mask_) {
    const int i = merge_table_[h];
    if (merges_[3 * i] == left && merges_[3 * i + 1] == right) return i;
  }
  return -1;
}

int Tokenizer::special_at(const char* s, size_t n, bool parse_special) const {
  const uint8_t b = (uint8_t)s[0];
  for (int k = special_head_[b]; k < special_head_[b + 1]; ++k) {
    const int id = special_[k];
    if (!parse_special && types_[id] != (uint8_t)TokenType::user_defined) continue;
    const size_t len = offs_[id + 1] - offs_[id];
    if (len <= n && std::memcmp(bytes_ + offs_[id], s, len) == 0) return id;
  }
  return -1;
}

format::Str Tokenizer::token_text(int id) const {
  format::Str s;
  if (id < 0 || id >= vocab_ || offs_ == nullptr) return s;
  s.data = text_ + text_offs_[id];
  s.size = text_offs_[id + 1] - text_offs_[id];
  return s;
}

format::Str Tokenizer::decode(int prev, int id) const {
  format::Str s = token_text(id);
  if (prev >= 0 && prev == bos_ && sentencepiece_spaces() && s.size > 0 && s.data[0] == ' ') {
    ++s.data;
    --s.size;
  }
  return s;
}

format::Str Tokenizer::token_piece(int id) const {
  format::Str s;
  if (id < 0 || id >= vocab_ || offs_ == nullptr) return s;
  s.data = bytes_ + offs_[id];
  s.size = offs_[id + 1] - offs_[id];
  return s;
}

TokenType Tokenizer::token_type(int id) const {
  if (id < 0 || id >= vocab_ || offs_ == nullptr) return TokenType::normal;
  return (TokenType)types_[id];
}

size_t Tokenizer::work_bytes(size_t len) const {
  if (kind_ == TokenizerKind::chars || kind_ == TokenizerKind::bytes) return 0;
  return tok::Work::size_for(len);
}

Status Tokenizer::encode(const char* text, size_t len, int32_t* out, int max, int* n_out, int* n_skipped,
                         const EncodeOptions& opt) const {
  if (offs_ == nullptr) return Status::error(Err::invalid_argument, "tokenizer is not initialised");
  if ((text == nullptr && len > 0) || (out == nullptr && max > 0) || max < 0 || n_out == nullptr)
    return Status::error(Err::invalid_argument, "null text/output buffer");
  if (len > ((size_t)INT32_MAX - 8) / 3) return Status::error(Err::invalid_argument, "text of %zu bytes is too long to encode", len);
  tok::Emit e;
  e.out = out;
  e.max = max;
  e.steps = opt.steps;
  e.fuse_unk = fuse_unk_;
  alignas(8) char stack[kStackWork];
  tok::Work w;
  const bool merges = kind_ == TokenizerKind::bpe || kind_ == TokenizerKind::spm;
  if (merges && !(opt.work && w.place(opt.work, opt.work_bytes))) w.place(stack, sizeof stack);

  auto raw = [&](size_t a, size_t b, bool first) {
    if (b <= a) return;
    if (kind_ == TokenizerKind::spm) TokenizerAlgo::spm(*this, text + a, b - a, first, &e, &w);
    else if (kind_ == TokenizerKind::bpe) TokenizerAlgo::bpe(*this, text + a, b - a, first, &e, &w);
    else TokenizerAlgo::chars(*this, text + a, b - a, &e);
  };
  if (opt.add_special && add_bos_) e.push(bos_);
  // Special tokens first split the text (llama.cpp's tokenizer_st_partition); each raw piece between
  // them is encoded on its own, and the first one, or one after a special token, gets the space prefix.
  bool first = true;
  size_t a = 0;
  if (n_special_ > 0 && (opt.parse_special || n_user_ > 0)) {
    for (size_t i = 0; i < len;) {
      const int id = special_at(text + i, len - i, opt.parse_special);
      if (id < 0) {
        ++i;
        continue;
      }
      if (i > a) {
        raw(a, i, first);
        first = false;
      }
      e.push(id);
      first = true;
      i += offs_[id + 1] - offs_[id];
      a = i;
    }
  }
  raw(a, len, first);
  if (opt.add_special && add_eos_) e.push(eos_);

  if (n_skipped) *n_skipped = e.skipped;
  *n_out = e.n;
  if (e.n > max) return Status::error(Err::out_of_range, "text needs %d tokens, more than %d", e.n, max);
  return Status::success();
}

// ---- shared by the algorithm files ----

namespace tok {

size_t utf8_char(const char* p, size_t avail) {
  if (avail == 0) return 0;
  const uint8_t c = (uint8_t)p[0];
  const size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (n == 0 || n > avail || !format::utf8_valid(p, n)) return 0;
  return n;
}

}  // namespace tok

void TokenizerAlgo::fallback(const Tokenizer& t, const char* s, size_t n, bool bytes_allowed, tok::Emit* e) {
  bool all = bytes_allowed;
  for (size_t i = 0; all && i < n; ++i) all = t.byte_id_[(uint8_t)s[i]] >= 0;
  if (all) {
    for (size_t i = 0; i < n; ++i) e->push(t.byte_id_[(uint8_t)s[i]]);
    return;
  }
  e->unknown(t.unk_, n);
}

}  // namespace qtf
