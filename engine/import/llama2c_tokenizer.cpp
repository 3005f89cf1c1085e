#include "import/llama2c_tokenizer.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "import/common.h"
#include "runtime/tokenizer/tokenizer.h"

namespace qtf::import {
namespace {

int32_t load_i32(const uint8_t* p) {
  uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  int32_t r;
  std::memcpy(&r, &v, 4);
  return r;
}

bool is_byte_piece(const std::string& s) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return s.size() == 6 && s.compare(0, 3, "<0x") == 0 && hex(s[3]) && hex(s[4]) && s[5] == '>';
}

}  // namespace

Status llama2c_tokenizer(const uint8_t* data, size_t size, int vocab, format::Writer* w) {
  if (data == nullptr || size < 4) return Status::error(Err::bad_value, "llama2.c tokenizer: %zu bytes, too short for its header", size);
  const int32_t max_len = load_i32(data);
  if (max_len <= 0 || max_len > (1 << 16))
    return Status::error(Err::bad_value, "llama2.c tokenizer: max_token_length %d is not 1..65536", (int)max_len);
  // Each token takes at least 8 bytes: bound the count by the size before reserving anything.
  if (vocab <= 0 || (size_t)vocab > (size - 4) / 8)
    return Status::error(Err::bad_value, "llama2.c tokenizer: %zu bytes cannot hold the model's %d tokens (truncated, or another model's tokenizer?)",
                         size, vocab);
  std::vector<std::string> tokens;
  std::vector<double> scores;
  std::vector<int64_t> types;
  tokens.reserve((size_t)vocab);
  scores.reserve((size_t)vocab);
  types.reserve((size_t)vocab);
  int64_t bos = -1, eos = -1, unk = -1;
  std::string piece;
  size_t at = 4;
  for (int i = 0; i < vocab; ++i) {
    if (size - at < 8) return Status::error(Err::bad_value, "llama2.c tokenizer: truncated at token %d (byte %zu)", i, at);
    float score;
    std::memcpy(&score, data + at, 4);
    const int32_t len = load_i32(data + at + 4);
    at += 8;
    if (!std::isfinite(score)) return Status::error(Err::bad_value, "llama2.c tokenizer: token %d has a non-finite score", i);
    if (len < 0 || len > max_len || (size_t)len > size - at)
      return Status::error(Err::bad_value, "llama2.c tokenizer: token %d has length %d (max_token_length %d, %zu bytes left)", i,
                           (int)len, (int)max_len, size - at);
    piece.assign(reinterpret_cast<const char*>(data + at), (size_t)len);
    at += (size_t)len;
    TokenType type = TokenType::normal;
    if (piece == "\n<s>\n" && bos < 0) {  // export.py's spelling of BOS and EOS
      piece = "<s>";
      type = TokenType::control;
      bos = i;
    } else if (piece == "\n</s>\n" && eos < 0) {
      piece = "</s>";
      type = TokenType::control;
      eos = i;
    } else if (piece == "<unk>" && unk < 0) {
      type = TokenType::unknown;
      unk = i;
    } else if (is_byte_piece(piece)) {
      type = TokenType::byte;
    } else {  // export.py wrote SentencePiece's "▁" as ' ': put it back
      std::string s;
      for (char c : piece) {
        if (c == ' ') s += "\xe2\x96\x81";
        else s += c;
      }
      piece.swap(s);
    }
    tokens.push_back(escape_token(piece.data(), piece.size()));
    scores.push_back(score);
    types.push_back((int64_t)type);
  }
  if (at != size)
    return Status::error(Err::bad_value, "llama2.c tokenizer: %zu bytes after the model's %d tokens (another model's tokenizer?)",
                         size - at, vocab);
  w->add_str("tokenizer.type", "spm");
  w->add_str_array("tokenizer.tokens", tokens);
  w->add_f64_array("tokenizer.scores", scores);
  w->add_i64_array("tokenizer.token_types", types);
  w->add_i64("tokenizer.unk_id", unk);
  w->add_i64("tokenizer.bos_id", bos);
  w->add_i64("tokenizer.eos_id", eos);
  w->add_i64("tokenizer.add_bos", bos >= 0 ? 1 : 0);
  w->add_i64("tokenizer.add_space_prefix", 1);
  return Status::success();
}

}  // namespace qtf::import
