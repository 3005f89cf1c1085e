// Tokenizers stored in the model file (docs/tokenizer.md): `char` (one Unicode character per token),
// `byte` (256 byte tokens) and byte-level `bpe` (merges over bytes). Encoding takes any bytes: invalid
// UTF-8 or characters outside the vocabulary are skipped and counted, never a crash.
// Memory: one arena sized by arena_bytes(); encode() writes only into the caller's output.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/status.h"
#include "format/reader.h"

namespace qtf {

enum class TokenizerKind : uint8_t { chars = 0, bytes = 1, bpe = 2 };

class Tokenizer {
 public:
  static size_t arena_bytes(const format::ModelFile& f, int vocab);
  Status init(const format::ModelFile& f, int vocab, void* arena, size_t arena_len);

  // Encodes text[0..len). Writes min(needed, max) ids to out; *n_out = tokens produced.
  // Err::out_of_range when more than `max` tokens would be needed. n_skipped (optional) counts bytes
  // of input that no token covers (invalid UTF-8 or unknown characters).
  Status encode(const char* text, size_t len, int32_t* out, int max, int* n_out, int* n_skipped) const;

  // The bytes of a token (for bpe/byte possibly part of a UTF-8 character). Empty for a bad id.
  format::Str token_text(int id) const;
  int vocab() const { return vocab_; }
  TokenizerKind kind() const { return kind_; }

 private:
  int lookup(const char* p, size_t n) const;  // token id with exactly these bytes, or -1
  int pair_merge(int left, int right) const;  // merge index, or -1

  TokenizerKind kind_ = TokenizerKind::chars;
  int vocab_ = 0, n_merges_ = 0;
  uint32_t* offs_ = nullptr;   // [vocab+1] into bytes_
  char* bytes_ = nullptr;
  int32_t* table_ = nullptr;   // open addressing: token ids by their bytes
  uint32_t table_mask_ = 0;
  int32_t byte_id_[256];
  int32_t* merges_ = nullptr;  // [n_merges][3]: left, right, result
  int32_t* merge_table_ = nullptr;
  uint32_t merge_mask_ = 0;
};

// Escaping used by byte/bpe token strings in the file: `\\` and `\xHH`; everything else literal.
// Returns bytes written to out (at most n, the escaped length), or -1 on a malformed escape.
int unescape_token(const char* s, size_t n, char* out);

}  // namespace qtf
