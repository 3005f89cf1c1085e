// Fuzzes the prompt path through the C API, as an app would drive it: context and sampler parameters,
// the prompt text and the token ids all come from the fuzzer (ids may be anything, so out-of-range ids,
// a full context and reset are all exercised). Two tiny models: every feature on, and the dense baseline.
// Input layout (short inputs are zero-padded):
//   [0] model (bit 0), route, act path, flags   [1] fixed rank   [2] n_ctx   [3] prompt length
//   [4..7] theta  [8..11] alpha  [12..15] temperature  [16..19] top_p  [20..23] repeat penalty (raw f32)
//   [24] top_k  [25] repeat_last_n  then the prompt bytes, then int32 token ids (at most 12 decoded).
#include <cmath>
#include <cstring>
#include <vector>

#include "capi/qtf.h"
#include "fuzz_util.h"

namespace {

constexpr size_t kHeader = 26;
constexpr int kMaxSteps = 12;

qtf_model* model(int which) {
  static std::vector<uint8_t> bytes[2];
  static qtf_model* models[2] = {nullptr, nullptr};
  if (!models[which]) {
    bytes[which] = qtf::testing::make_tiny_model(qtf::fuzz::tiny_config(which));
    qtf::fuzz::check(qtf_model_load_memory(bytes[which].data(), bytes[which].size(), &models[which]) == QTF_OK);
  }
  return models[which];
}

float f32_at(const uint8_t* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

void check_logits(const qtf_context* ctx, int vocab) {
  const float* l = qtf_get_logits(ctx);
  qtf::fuzz::check(l != nullptr);
  for (int i = 0; i < vocab; ++i) qtf::fuzz::check(std::isfinite(l[i]));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint8_t h[kHeader] = {0};
  std::memcpy(h, data, size < kHeader ? size : kHeader);
  const uint8_t* rest = data + (size < kHeader ? size : kHeader);
  size_t rest_len = size < kHeader ? 0 : size - kHeader;

  qtf_model* m = model(h[0] & 1);
  qtf_model_info info;
  qtf::fuzz::check(qtf_model_get_info(m, &info) == QTF_OK);

  qtf_context_params cp = qtf_context_default_params();
  cp.route = (qtf_route)((h[0] >> 1) % 4);  // 3 is out of range on purpose
  cp.act_path = (qtf_act_path)((h[0] >> 3) % 4);
  cp.override_theta = (h[0] >> 5) & 1;
  cp.override_alpha = (h[0] >> 6) & 1;
  cp.fixed_rank = (int8_t)h[1];
  cp.n_ctx = (int8_t)h[2];
  cp.theta = f32_at(h + 4);
  cp.alpha = f32_at(h + 8);
  qtf_context* ctx = nullptr;
  if (qtf_context_new(m, &cp, &ctx) != QTF_OK) {
    qtf::fuzz::check(ctx == nullptr && qtf_last_error()[0] != 0);
    return 0;
  }
  qtf_sampler_params sp = qtf_sampler_default_params();
  sp.temperature = f32_at(h + 12);
  sp.top_p = f32_at(h + 16);
  sp.repeat_penalty = f32_at(h + 20);
  sp.top_k = (int8_t)h[24];
  sp.repeat_last_n = h[25];
  qtf_sampler* smp = nullptr;
  if (qtf_sampler_new(m, &sp, &smp) != QTF_OK) smp = nullptr;  // bad options are refused; decode anyway

  // The prompt: tokenize, then decode as much as fits.
  const size_t plen = h[3] < rest_len ? h[3] : rest_len;
  int32_t toks[64];
  int32_t n = 0;
  qtf_status st = qtf_tokenize(m, reinterpret_cast<const char*>(rest), plen, toks, 64, &n);
  qtf::fuzz::check(st == QTF_OK || (st == QTF_ERR_OUT_OF_RANGE && n > 64));
  if (n > 64) n = 64;
  if (n > qtf_context_n_ctx(ctx)) n = qtf_context_n_ctx(ctx);
  if (n > 0 && qtf_decode(ctx, toks, n) == QTF_OK) check_logits(ctx, info.vocab_size);

  // Token ids straight from the fuzzer; sample after each accepted one.
  rest += plen;
  rest_len -= plen;
  for (int step = 0; step < kMaxSteps && rest_len >= 4; ++step, rest += 4, rest_len -= 4) {
    int32_t id;
    std::memcpy(&id, rest, 4);
    st = qtf_decode(ctx, &id, 1);
    if (id < 0 || id >= info.vocab_size) {
      qtf::fuzz::check(st == QTF_ERR_OUT_OF_RANGE);
      continue;
    }
    if (st == QTF_ERR_CONTEXT_FULL) {
      qtf::fuzz::check(qtf_context_n_past(ctx) == qtf_context_n_ctx(ctx));
      qtf_context_reset(ctx);
      qtf::fuzz::check(qtf_get_logits(ctx) == nullptr);
      continue;
    }
    qtf::fuzz::check(st == QTF_OK);
    check_logits(ctx, info.vocab_size);
    qtf_token_stats ts;
    qtf_layer_stats ls[4];
    qtf::fuzz::check(qtf_get_token_stats(ctx, &ts, ls, 4) == QTF_OK && ts.token == id);
    if (smp) {
      int32_t next = -1;
      qtf::fuzz::check(qtf_sample(smp, ctx, &next) == QTF_OK && next >= 0 && next < info.vocab_size);
      const char* text;
      size_t len;
      qtf::fuzz::check(qtf_token_text(m, next, &text, &len) == QTF_OK);
    }
  }
  qtf_sampler_free(smp);
  qtf_context_free(ctx);
  return 0;
}
