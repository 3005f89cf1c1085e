// Several threads, each with its own context and sampler, decode at once over one shared read-only
// model through the C API. Every thread must get exactly the tokens and logits of a single-threaded
// run, and its error messages must stay its own. Also one context on a thread pool (n_threads). Run
// under ThreadSanitizer by tools/sanitize.sh thread.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "capi/qtf.h"
#include "host/quantize.h"
#include "host/session.h"
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

// One context whose work is split over a pool of 4 threads (prompt blocks, then generation) gives the
// logits of a single-threaded context; under ThreadSanitizer this also checks the pool's hand-offs.
TEST_CASE("a context on a thread pool decodes like a single-threaded one") {
  // The fixtures, and a TT model whose matrices are big enough for one token's matvecs to run in parts
  // (q, k, v as one job; the activation on up's parts; down's parts summed): tests/runtime/test_batch.
  qtf::testing::TinyConfig tc;
  tc.d = 128, tc.n_heads = 4, tc.d_ff = 1024, tc.n_layers = 2, tc.context = 24;
  tc.d_factors = {4, 4, 8}, tc.ff_factors = {4, 16, 16};
  tc.tt_rank = 8, tc.r_max = 8, tc.adaptive_rank = false, tc.scale = 0.2f;
  const std::vector<uint8_t> parts_model = qtf::testing::make_tiny_model(tc);
  for (const char* name : {"dense", "q4_k3_daruan_adaptive_qattn_tied", "parts"}) {
    INFO(name);
    qtf::host::LoadedModel lm;
    if (std::string(name) == "parts") REQUIRE(lm.load_memory(parts_model.data(), parts_model.size()).ok());
    else REQUIRE(lm.load_file((std::string(QTF_SOURCE_DIR) + "/tests/fixtures/" + name + ".qtf").c_str()).ok());
    const int vocab = lm.model().cfg.vocab;
    qtf::ContextOptions o;
    o.n_batch = 5;
    qtf::host::HostContext one, pool;
    REQUIRE(one.init(lm, o).ok());
    o.n_threads = 4;
    REQUIRE(pool.init(lm, o).ok());
    std::vector<int32_t> prompt(8);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = (int32_t)((i * 7 + 3) % (size_t)vocab);
    for (int round = 0; round < 2; ++round) {  // the second round reuses the sleeping/spinning workers
      one.ctx().reset();
      pool.ctx().reset();
      REQUIRE(one.ctx().eval(prompt.data(), 5).ok());
      REQUIRE(one.ctx().eval(prompt.data() + 5, 3).ok());
      REQUIRE(pool.ctx().eval(prompt.data(), 5).ok());
      REQUIRE(pool.ctx().eval(prompt.data() + 5, 3).ok());
      for (int g = 0; g < 6; ++g) {
        float diff = 0;
        for (int i = 0; i < vocab; ++i) diff = std::max(diff, std::fabs(one.ctx().logits()[i] - pool.ctx().logits()[i]));
        CHECK(diff <= 1e-4f);
        const int32_t next = (int32_t)(std::max_element(one.ctx().logits(), one.ctx().logits() + vocab) - one.ctx().logits());
        REQUIRE(one.ctx().eval(next).ok());
        REQUIRE(pool.ctx().eval(next).ok());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let the workers fall asleep
    }
  }
}

// A prompt block through dense matrices, float and (act-quant) q8 / q4, on 1, 2, 3, 4 and 7 threads:
// the GEMMs split into tiles of rows x tokens (dispatch.cpp) give the same bits as one thread. Shapes
// that reach every split: 70 tokens (token tiles of 48 and 22 where the rows give too few tiles, the
// last not a multiple of 16), d = 64 (down has 64 rows: 5 row tiles of 12 for the f32 GEMM, too few at
// any thread count; 16 of 4 for the int8 one, too few at 7 threads), d_ff = 1056 (down's rows longer
// than one reduction block: partial sums per token tile; up runs as dot products, its rows only split).
TEST_CASE("a prompt block through dense matrices gives the same logits on every thread count") {
  // d = 64: only down's input (d_ff = 1056 columns) is packed for the broadcast form; d = 256: every
  // input, q, k and v sharing one packed input (kern::pack_input).
  for (int d : {64, 256}) {
  INFO("d = " << d);
  qtf::testing::TinyConfig tc;
  tc.tensorized = false, tc.n_qubits = 0, tc.activation = "gelu", tc.quantum_attention = false;
  tc.adaptive_rank = false;
  tc.d = d, tc.n_heads = 4, tc.d_ff = 1056, tc.n_layers = 2, tc.context = 80, tc.scale = 0.2f;
  const std::vector<uint8_t> f32 = qtf::testing::make_tiny_model(tc);
  for (int kind = 0; kind < 4; ++kind) {  // f32, q8, q4 (with act-quant), q8 without (float GEMM of i8)
    INFO("kind " << kind);
    std::vector<uint8_t> quantized;
    if (kind > 0) {  // from a 64-byte aligned copy, as quantize_model needs
      std::vector<uint8_t> copy(f32.size() + 64);
      uint8_t* at = copy.data() + (64 - reinterpret_cast<uintptr_t>(copy.data()) % 64) % 64;
      std::memcpy(at, f32.data(), f32.size());
      qtf::host::QuantizeReport rep;
      REQUIRE(qtf::host::quantize_model(at, f32.size(), kind == 2 ? qtf::host::QuantType::q4 : qtf::host::QuantType::q8,
                                        &quantized, &rep).ok());
    }
    const std::vector<uint8_t>& bytes = kind > 0 ? quantized : f32;
    qtf::host::LoadedModel lm;
    REQUIRE(lm.load_memory(bytes.data(), bytes.size()).ok());
    const int vocab = lm.model().cfg.vocab;
    std::vector<int32_t> prompt(70);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = (int32_t)((i * 13 + 5) % (size_t)vocab);
    std::vector<float> first;  // one thread's logits after the block, then after each generated token
    for (int threads : {1, 2, 3, 4, 7}) {
      INFO(threads << " threads");
      qtf::ContextOptions o;
      o.n_batch = (int)prompt.size();
      o.n_threads = threads;
      o.act_quant = kind == 1 || kind == 2 ? qtf::ActQuant::q8 : qtf::ActQuant::off;
      qtf::host::HostContext hc;
      REQUIRE(hc.init(lm, o).ok());
      std::vector<float> got;
      REQUIRE(hc.ctx().eval(prompt.data(), (int)prompt.size()).ok());
      for (int g = 0; g < 3; ++g) {
        got.insert(got.end(), hc.ctx().logits(), hc.ctx().logits() + vocab);
        const float* l = hc.ctx().logits();
        REQUIRE(hc.ctx().eval((int32_t)(std::max_element(l, l + vocab) - l)).ok());
      }
      if (threads == 1) first = got;
      CHECK(got == first);
    }
  }
  }
}

// The C API's qtf_context_set_threads: same logits as one thread, for a prompt (blocks) and generation.
TEST_CASE("qtf_context_set_threads decodes like one thread") {
  qtf_model* m = nullptr;
  const std::string path = std::string(QTF_SOURCE_DIR) + "/tests/fixtures/q4_k3_daruan_adaptive_qattn_tied.qtf";
  REQUIRE(qtf_model_load_file(path.c_str(), 1, &m) == QTF_OK);
  qtf_model_info info;
  qtf_model_get_info(m, &info);
  qtf_context *one = nullptr, *many = nullptr;
  REQUIRE(qtf_context_new(m, nullptr, &one) == QTF_OK);
  REQUIRE(qtf_context_new(m, nullptr, &many) == QTF_OK);
  CHECK(qtf_context_set_threads(many, 0) == QTF_ERR_INVALID_ARGUMENT);
  REQUIRE(qtf_context_set_threads(many, 3) == QTF_OK);
  const int32_t prompt[6] = {1, 5, 9, 2, 7, 3};
  REQUIRE(qtf_decode(one, prompt, 6) == QTF_OK);
  REQUIRE(qtf_decode(many, prompt, 6) == QTF_OK);
  for (int g = 0; g < 4; ++g) {
    const float *a = qtf_get_logits(one), *b = qtf_get_logits(many);
    float diff = 0;
    for (int i = 0; i < info.vocab_size; ++i) diff = std::max(diff, std::fabs(a[i] - b[i]));
    CHECK(diff <= 1e-4f);
    const int32_t next = (int32_t)(std::max_element(a, a + info.vocab_size) - a);
    REQUIRE(qtf_decode(one, &next, 1) == QTF_OK);
    REQUIRE(qtf_decode(many, &next, 1) == QTF_OK);
  }
  qtf_context_free(one);
  qtf_context_free(many);
  qtf_model_free(m);
}

// A TT model whose one-token matvecs run in parts and whose key feature states (8 heads of 8 qubits)
// pass kParallelFlops on their own; rotary: turned by rope instead of learned positions.
std::vector<uint8_t> parts_qattn_model(bool rotary = false) {
  qtf::testing::TinyConfig tc;
  tc.d = 128, tc.n_heads = 8, tc.d_ff = 1024, tc.n_layers = 2, tc.context = 40;
  tc.d_factors = {4, 4, 8}, tc.ff_factors = {4, 16, 16};
  tc.tt_rank = 8, tc.r_max = 8, tc.adaptive_rank = false, tc.scale = 0.2f;
  tc.n_qubits = 8, tc.rotary = rotary;
  return qtf::testing::make_tiny_model(tc);
}

// What one decoded token hands the pool (ThreadPool::jobs, qtf bench's "thread-pool jobs"): none on one
// thread; on four, each layer of this TT model (its one-token matvecs run in parts) wakes the pool
// three times: q, k and v with rope and attention after them in the same job (each head's key feature
// state made in its attention task), up with its activation, and down (o's matvec is below
// kParallelFlops: inline).
TEST_CASE("one decoded token's hand-offs to the pool are counted") {
  const std::vector<uint8_t> bytes = parts_qattn_model();
  qtf::host::LoadedModel lm;
  REQUIRE(lm.load_memory(bytes.data(), bytes.size()).ok());
  std::vector<int32_t> prompt(30);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = (int32_t)((i * 11 + 2) % (size_t)lm.model().cfg.vocab);
  for (int threads : {1, 4}) {
    INFO(threads << " threads");
    qtf::ContextOptions o;
    o.n_batch = 8;
    o.n_threads = threads;
    o.route = qtf::RouteMode::all_quantum;
    qtf::host::HostContext hc;
    REQUIRE(hc.init(lm, o).ok());
    for (size_t i = 0; i < prompt.size(); i += 8)
      REQUIRE(hc.ctx().eval(prompt.data() + i, (int)std::min<size_t>(8, prompt.size() - i)).ok());
    const uint64_t before = hc.pool_jobs();
    REQUIRE(hc.ctx().eval(3).ok());
    CHECK(hc.pool_jobs() - before == (threads == 1 ? 0u : 6u));
  }
}

// TT models, prompt blocks then generation, on 1, 2, 3, 4 and 7 threads: the logits of every step
// compared with ==. The fixtures at adaptive and fixed rank (a block of mixed ranks: gathered rows), a
// llama-style TT model (swiglu: up and gate of one token as one job; rope; GQA), and the model above,
// learned and rotary (one token's q/k/v, rope and attention in one job; up with its activation),
// quantum and automatic routes.
TEST_CASE("TT models give the same logits on every thread count") {
  const std::vector<uint8_t> qattn = parts_qattn_model(), qattn_rope = parts_qattn_model(true);
  for (const char* name : {"q4_k3_daruan_adaptive_qattn_tied", "q4_k2_daruan_fixedrank_noqattn_tied",
                           "llama_tt_rms_rope_swiglu_gqa_bias_untied", "parts_qattn", "parts_qattn_rope"}) {
    qtf::host::LoadedModel lm;
    if (std::string(name) == "parts_qattn") REQUIRE(lm.load_memory(qattn.data(), qattn.size()).ok());
    else if (std::string(name) == "parts_qattn_rope") REQUIRE(lm.load_memory(qattn_rope.data(), qattn_rope.size()).ok());
    else REQUIRE(lm.load_file((std::string(QTF_SOURCE_DIR) + "/tests/fixtures/" + name + ".qtf").c_str()).ok());
    const int vocab = lm.model().cfg.vocab;
    std::vector<int32_t> prompt(9);  // + 5 generated: the fixtures' 16 positions
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = (int32_t)((i * 13 + 5) % (size_t)vocab);
    for (qtf::RouteMode route : {qtf::RouteMode::automatic, qtf::RouteMode::all_quantum}) {
      if (route == qtf::RouteMode::all_quantum && !lm.model().cfg.quantum_attention) continue;
      std::vector<float> first;
      for (int threads : {1, 2, 3, 4, 7}) {
        INFO(std::string(name) << ", route " << (int)route << ", " << threads << " threads");
        qtf::ContextOptions o;
        o.n_batch = 4;
        o.n_threads = threads;
        o.route = route;
        qtf::host::HostContext hc;
        REQUIRE(hc.init(lm, o).ok());
        std::vector<float> got;
        for (size_t i = 0; i < prompt.size(); i += 4) {
          REQUIRE(hc.ctx().eval(prompt.data() + i, (int)std::min<size_t>(4, prompt.size() - i)).ok());
          got.insert(got.end(), hc.ctx().logits(), hc.ctx().logits() + vocab);
        }
        for (int g = 0; g < 5; ++g) {
          const float* l = hc.ctx().logits();
          REQUIRE(hc.ctx().eval((int32_t)(std::max_element(l, l + vocab) - l)).ok());
          got.insert(got.end(), hc.ctx().logits(), hc.ctx().logits() + vocab);
        }
        if (threads == 1) first = got;
        if (std::string(name).rfind("parts_qattn", 0) != 0) {
          CHECK(got == first);
          continue;
        }
        // Its down is a right-to-left plan: one token's parts sum, min(parts, threads) of them, so the
        // order of that sum depends on the thread count (kern::tt_matvec_parts): equal to rounding.
        float diff = 0;
        for (size_t i = 0; i < got.size(); ++i) diff = std::max(diff, std::fabs(got[i] - first[i]));
        CHECK(diff <= 1e-4f);
      }
    }
  }
}
