// Fuzzes qtf serve's request path (tools/server/request.cpp): a request body's bytes to checked generation
// parameters or one clear 4xx error, as the server runs it before any generation. Each parameter set that
// comes out must be one the engine accepts (the sampler initialises, ids are in the vocabulary, the prompt
// fits the context), so a request can never reach generation with values that fail there (a 500).
// Input: [0] endpoint (bits 0-2: completions, chat, tokenize, detokenize, apply-template), chat form
// (bits 3-5), add_bos (bit 6); then the body.
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "host/session.h"
#include "request.h"

namespace {

const qtf::host::LoadedModel& model() {
  static std::vector<uint8_t> bytes = qtf::testing::make_tiny_model(qtf::fuzz::tiny_config(0));
  static qtf::host::LoadedModel m;
  static bool loaded = m.load_memory(bytes.data(), bytes.size()).ok();
  qtf::fuzz::check(loaded);
  return m;
}

void check_error(const qtf::serve::BadRequest& bad) {
  qtf::fuzz::check(!bad.message.empty() && bad.status >= 400 && bad.status < 500);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qtf::serve;
  if (size < 1) return 0;
  const qtf::host::LoadedModel& m = model();
  RequestContext rc;
  rc.tokenizer = &m.tokenizer();
  rc.vocab = m.model().cfg.vocab;
  rc.n_ctx = m.model().cfg.context;
  rc.max_tokens_cap = 64;
  rc.special.bos = 1;
  rc.special.eos = 2;
  rc.add_bos = (data[0] >> 6) & 1;
  rc.chat_form = (ChatForm)((data[0] >> 3) & 7);
  rc.special.find = [](const std::string& s) { return s == "<|im_start|>" ? 3 : -1; };
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  BadRequest bad;
  switch (data[0] & 7) {
    case 0:
    case 1: {
      ParsedRequest r;
      if (!parse_generation(rc, body, (data[0] & 7) == 1, &r, &bad)) {
        check_error(bad);
        break;
      }
      const GenRequest& g = r.gen;
      qtf::fuzz::check(!g.prompt.empty() && (int)g.prompt.size() < rc.n_ctx);
      for (int32_t id : g.prompt) qtf::fuzz::check(id >= 0 && id < rc.vocab);
      qtf::fuzz::check(g.max_tokens >= 1 && g.max_tokens <= rc.max_tokens_cap);
      qtf::fuzz::check(r.n >= 1 && r.n <= kMaxChoices && g.logprobs <= kMaxTopLogprobs);
      for (const auto& b : g.logit_bias) qtf::fuzz::check(b.first >= 0 && b.first < rc.vocab && b.second == b.second);
      for (const std::string& s : g.stop) qtf::fuzz::check(!s.empty());
      qtf::host::HostSampler sampler;
      qtf::fuzz::check(sampler.init(rc.vocab, g.sampler).ok());
      break;
    }
    case 2: {
      std::vector<int32_t> ids;
      int dropped = 0;
      if (!parse_tokenize(rc, body, &ids, &dropped, &bad)) check_error(bad);
      for (int32_t id : ids) qtf::fuzz::check(id >= 0 && id < rc.vocab);
      break;
    }
    case 3: {
      std::string text;
      if (!parse_detokenize(rc, body, &text, &bad)) check_error(bad);
      break;
    }
    default: {
      std::string prompt;
      if (!parse_apply_template(rc, body, &prompt, &bad)) check_error(bad);
      break;
    }
  }
  return 0;
}
