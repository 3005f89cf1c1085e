// Requests of `qtf serve`, from the body's bytes to checked generation parameters (or one clear error
// naming the field). No sockets here: tests/fuzz/fuzz_request.cpp drives it directly.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "chat_template.h"
#include "generation.h"
#include "runtime/tokenizer/tokenizer.h"

namespace qtf::serve {

// JSON nesting allowed in a request (arrays and objects); deeper bodies are refused before parsing.
constexpr int kMaxJsonDepth = 32;
constexpr int kMaxChoices = 16;       // n
constexpr int kMaxTopLogprobs = 20;   // top_logprobs (chat); completions' logprobs is at most 5
constexpr int kMaxLogitBias = 1024;   // logit_bias entries

struct BadRequest {
  std::string message;
  std::string param;  // the field at fault ("" when the body as a whole)
  int status = 400;
};

// What parsing needs of the server and its model.
struct RequestContext {
  const Tokenizer* tokenizer = nullptr;
  int vocab = 0, n_ctx = 0, max_tokens_cap = 4096;
  bool add_bos = false;           // tokenizer.add_bos: BOS goes first
  ChatForm chat_form = ChatForm::transcript;
  SpecialTokens special;          // bos/eos ids and the markers the vocabulary holds
};

struct ParsedRequest {
  GenRequest gen;
  int n = 1;
  bool stream = false, include_usage = false, echo = false;
  bool seeded = false;          // a seed was given: choice i uses seed + i
  std::string prompt_text;      // the prompt as text (echo; chat: the rendered prompt)
  int dropped_bytes = 0;        // prompt bytes no token covers (outside the vocabulary): left out
};

// The nesting depth of JSON text (brackets outside strings), stopping once it passes `limit`.
int json_depth(const char* text, size_t len, int limit);

// /v1/completions (chat = false) and /v1/chat/completions (chat = true).
bool parse_generation(const RequestContext& rc, const std::string& body, bool chat, ParsedRequest* out,
                      BadRequest* bad);

// /tokenize {"content": str, "add_special": bool} -> ids (and dropped bytes); /detokenize {"tokens": [id]}.
bool parse_tokenize(const RequestContext& rc, const std::string& body, std::vector<int32_t>* ids, int* dropped,
                    BadRequest* bad);
bool parse_detokenize(const RequestContext& rc, const std::string& body, std::string* text, BadRequest* bad);

// /apply-template {"messages": [...]}: the prompt text chat would run (specials as their text).
bool parse_apply_template(const RequestContext& rc, const std::string& body, std::string* prompt, BadRequest* bad);

// Encodes text (BOS first when add_bos); *dropped counts bytes no token covers. False with *bad when
// the tokenizer fails.
bool encode_text(const RequestContext& rc, const std::string& text, bool add_bos, std::vector<int32_t>* ids,
                 int* dropped, const char* param, BadRequest* bad);

}  // namespace qtf::serve
