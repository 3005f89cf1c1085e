// Tokenizers stored in the model file (docs/tokenizer.md), one file per algorithm in this folder:
//   char  one Unicode character per token                          (chars.cpp)
//   byte  256 byte tokens                                          (chars.cpp)
//   bpe   merges by rank over bytes (pre-tokenizer none or gpt2), or over characters with the
//         SentencePiece-style normalizer (Hugging Face BPE with byte fallback)  (bpe.cpp)
//   spm   SentencePiece BPE by scores with <0xNN> byte fallback (llama.cpp / llama2.c)  (spm.cpp)
// vocab.cpp builds the shared tables once in O(vocab) and dispatches. Encoding takes any bytes and is
// O(n log n) in the text; input no token covers is skipped and counted (or becomes unk/byte tokens
// where the vocabulary has them), never a crash.
// Memory: one arena sized by arena_bytes() at init; encode() writes only into the caller's output and
// workspace (or a bounded stack buffer), never allocates.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/status.h"
#include "format/reader.h"

namespace qtf {

enum class TokenizerKind : uint8_t { chars = 0, bytes = 1, bpe = 2, spm = 3 };

// GGUF's token types (tokenizer.token_types).
enum class TokenType : uint8_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

struct EncodeOptions {
  bool add_special = false;    // BOS first when add_bos(), EOS last when add_eos() (llama.cpp's add_special)
  bool parse_special = false;  // control/unknown tokens spelled in the text become those tokens
                               // (user-defined tokens always do, as in llama.cpp)
  // Workspace for the merges: Tokenizer::work_bytes(len) bytes make the encoding exact for any text.
  // Smaller (or none: a stack buffer of kStackWork bytes is used) splits a run that has no pre-tokenizer
  // boundary into pieces that fit; docs/tokenizer.md says where that can differ.
  void* work = nullptr;
  size_t work_bytes = 0;
  // Optional: incremented by the merge loop's iterations (tests bound the work with it).
  uint64_t* steps = nullptr;
};

class Tokenizer {
 public:
  static constexpr size_t kStackWork = 8192;

  static size_t arena_bytes(const format::ModelFile& f, int vocab);
  Status init(const format::ModelFile& f, int vocab, void* arena, size_t arena_len);

  // Encodes text[0..len). Writes min(needed, max) ids to out; *n_out = tokens produced.
  // Err::out_of_range when more than `max` tokens are needed (then *n_out is the count needed).
  // n_skipped (optional) counts bytes of input that no token covers.
  Status encode(const char* text, size_t len, int32_t* out, int max, int* n_out, int* n_skipped,
                const EncodeOptions& opt = EncodeOptions()) const;
  // Workspace that makes encode exact for a text of len bytes (0 for kinds without merges).
  size_t work_bytes(size_t len) const;
  // At most this many tokens for a text of len bytes (with BOS/EOS when add_special): a space becomes
  // "▁", whose 3 bytes can fall back to 3 byte tokens after a broken character.
  static size_t max_tokens(size_t len) { return 3 * len + 3; }

  // The bytes a token stands for in text: "▁" as a space for SentencePiece vocabularies, a <0xNN> token
  // as its byte, control and unknown tokens empty (llama.cpp's token_to_piece). For byte-level
  // tokenizers possibly part of a UTF-8 character. Empty for a bad id.
  format::Str token_text(int id) const;
  // token_text, less the leading space of the first word after BOS (SentencePiece's dummy prefix, as
  // llama2.c's decode and the Hugging Face Strip decoder drop it).
  format::Str decode(int prev, int id) const;
  // The token as the vocabulary spells it (unescaped): "▁the", "<0x0A>", "<s>".
  format::Str token_piece(int id) const;
  TokenType token_type(int id) const;

  int vocab() const { return vocab_; }
  TokenizerKind kind() const { return kind_; }
  int bos_id() const { return bos_; }
  int eos_id() const { return eos_; }
  int unk_id() const { return unk_; }
  int pad_id() const { return pad_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  // Spaces are "▁" in the pieces (spm, and bpe with the spm normalizer): a text gets the prefix space.
  bool sentencepiece_spaces() const { return kind_ == TokenizerKind::spm || normalize_; }

 private:
  friend struct TokenizerAlgo;  // the algorithm files (runtime/tokenizer/*.cpp) read the tables below
  struct Parts;
  static Status read_parts(const format::ModelFile& f, int vocab, Parts* p);
  Status build(const Parts& p, void* arena);
  int lookup(const char* p, size_t n) const;   // token id with exactly these piece bytes, or -1
  int pair_merge(int left, int right) const;   // bpe merge rank, or -1
  int special_at(const char* s, size_t n, bool parse_special) const;  // special token spelled at s, or -1

  TokenizerKind kind_ = TokenizerKind::chars;
  int vocab_ = 0, n_merges_ = 0, n_special_ = 0, n_user_ = 0;
  int bos_ = -1, eos_ = -1, unk_ = -1, pad_ = -1;
  bool add_bos_ = false, add_eos_ = false, gpt2_ = false, normalize_ = false, space_prefix_ = false,
       byte_fallback_ = false, fuse_unk_ = false;
  size_t max_piece_ = 0;
  uint32_t* offs_ = nullptr;   // [vocab+1] into bytes_: the pieces
  char* bytes_ = nullptr;
  uint32_t* text_offs_ = nullptr;  // [vocab+1] into text_: what each token decodes to
  char* text_ = nullptr;
  uint8_t* types_ = nullptr;   // [vocab] TokenType
  float* scores_ = nullptr;    // [vocab] spm only
  int32_t* table_ = nullptr;   // open addressing: token ids by their piece bytes
  uint32_t table_mask_ = 0;
  int32_t byte_id_[256];
  int32_t* merges_ = nullptr;  // [n_merges][3]: left, right, result
  int32_t* merge_table_ = nullptr;
  uint32_t merge_mask_ = 0;
  int32_t* special_ = nullptr;  // [n_special] ids spelled in text, by first byte then longest first
  int32_t special_head_[257];   // special_[special_head_[b] .. special_head_[b+1]) start with byte b
};

// Escaping used by byte/bpe/spm token strings in the file: `\\` and `\xHH`; everything else literal.
// Returns bytes written to out (at most n, the escaped length), or -1 on a malformed escape.
int unescape_token(const char* s, size_t n, char* out);
// (The inverse, for the importers that write token strings: import::escape_token, engine/import/common.h.)

}  // namespace qtf
