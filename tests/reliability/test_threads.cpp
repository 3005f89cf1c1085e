// Several threads, each with its own context and sampler, decode at once over one shared read-only
// model through the C API. Every thread must get exactly the tokens and logits of a single-threaded
// run, and its error messages must stay its own. Run under ThreadSanitizer by tools/sanitize.sh thread.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "capi/qtf.h"
#include "support/tiny_model.h"

namespace {

constexpr int kThreads = 4, kTokens = 40, kCtx = 16;

struct Trace {
  std::vector<int32_t> tokens;
  std::vector<float> logits_sum;  // one per step: the whole logits vector must match, this pins it
  std::string error;              // this thread's last error after a deliberate failure
  bool ok = false;
};

// Decodes kTokens tokens (resetting when the context is full) from a thread-specific start token.
void decode(const qtf_model* m, int thread, Trace* out) {
  qtf_context_params cp = qtf_context_default_params();
  cp.n_ctx = kCtx;
  cp.route = thread % 2 ? QTF_ROUTE_AUTO : QTF_ROUTE_QUANTUM;
  qtf_sampler_params sp = qtf_sampler_default_params();
  sp.seed = 100 + (uint64_t)thread;
  qtf_context* ctx = nullptr;
  qtf_sampler* s = nullptr;
  if (qtf_context_new(m, &cp, &ctx) != QTF_OK || qtf_sampler_new(m, &sp, &s) != QTF_OK) return;
  qtf_model_info info;
  qtf_model_get_info(m, &info);
  int32_t tok = 1 + thread;
  for (int i = 0; i < kTokens; ++i) {
    if (qtf_context_n_past(ctx) == qtf_context_n_ctx(ctx)) qtf_context_reset(ctx);
    if (qtf_decode(ctx, &tok, 1) != QTF_OK) return;
    const float* l = qtf_get_logits(ctx);
    float sum = 0;
    for (int v = 0; v < info.vocab_size; ++v) sum += l[v] * (float)(v % 7 + 1);
    out->logits_sum.push_back(sum);
    if (qtf_sample(s, ctx, &tok) != QTF_OK) return;
    out->tokens.push_back(tok);
  }
  int32_t bad = -1 - thread;
  if (qtf_decode(ctx, &bad, 1) == QTF_OK) return;
  out->error = qtf_last_error();
  qtf_sampler_free(s);
  qtf_context_free(ctx);
  out->ok = true;
}

}  // namespace

TEST_CASE("threads decoding over one shared model get exactly the single-threaded results") {
  qtf::testing::TinyConfig c;
  c.context = kCtx;
  std::vector<uint8_t> bytes = qtf::testing::make_tiny_model(c);
  qtf_model* m = nullptr;
  REQUIRE(qtf_model_load_memory(bytes.data(), bytes.size(), &m) == QTF_OK);

  std::vector<Trace> alone(kThreads), together(kThreads);
  for (int t = 0; t < kThreads; ++t) decode(m, t, &alone[t]);
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t) pool.emplace_back(decode, m, t, &together[t]);
  for (std::thread& th : pool) th.join();

  for (int t = 0; t < kThreads; ++t) {
    INFO("thread " << t);
    REQUIRE(alone[t].ok);
    REQUIRE(together[t].ok);
    CHECK(together[t].tokens == alone[t].tokens);
    CHECK(together[t].logits_sum == alone[t].logits_sum);  // bitwise: same code, same order
    CHECK(together[t].error.find("token " + std::to_string(-1 - t) + " ") != std::string::npos);
  }
  CHECK(alone[0].tokens != alone[1].tokens);  // the threads really did different work
  qtf_model_free(m);
}
