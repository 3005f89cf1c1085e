// Batched prompt processing (Context::eval of a block, qtf_decode of n > 1) gives the logits and the
// per-token report of running the same tokens one at a time: every fixture and shipped model, blocks
// of uneven sizes, and generation afterwards (the KV cache the block wrote is the same); also with the
// work split over threads (ContextOptions::n_threads).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "host/quantize.h"
#include "import/llama2c.h"
#include "host/session.h"
#include "kernels/kernels.h"
#include "kernels/tt_plan.h"
#include "support/model_files.h"
#include "support/tiny_model.h"

using namespace qtf;

namespace {

float max_abs_diff(const float* a, const float* b, int n, float* scale) {
  float m = 0, s = 1;
  for (int i = 0; i < n; ++i) {
    m = std::max(m, std::fabs(a[i] - b[i]));
    s = std::max(s, std::fabs(a[i]));
  }
  *scale = s;
  return m;
}

// Runs `prompt` token by token and in the given blocks (then `n_gen` greedy tokens in both), checking
// logits after every block and every token's report; the blocks run on `threads` threads.
void compare(const host::LoadedModel& lm, ContextOptions opt, const std::vector<int32_t>& prompt,
             const std::vector<int>& blocks, int n_gen, int threads = 1) {
  const ModelConfig& c = lm.model().cfg;
  ContextOptions one = opt, many = opt;
  one.n_batch = 1;
  many.n_batch = *std::max_element(blocks.begin(), blocks.end());
  many.n_threads = threads;
  host::HostContext a, b;
  REQUIRE(a.init(lm, one).ok());
  REQUIRE(b.init(lm, many).ok());
  const int n = (int)prompt.size();
  std::vector<float> logits((size_t)n * c.vocab);
  std::vector<TokenStats> stats(n);
  for (int i = 0; i < n; ++i) {
    REQUIRE(a.ctx().eval(prompt[i]).ok());
    std::copy(a.ctx().logits(), a.ctx().logits() + c.vocab, logits.begin() + (size_t)i * c.vocab);
    stats[i] = a.ctx().stats();
  }
  int at = 0;
  for (size_t k = 0; at < n; ++k) {
    const int len = std::min(blocks[k % blocks.size()], n - at);
    REQUIRE(b.ctx().eval(prompt.data() + at, len).ok());
    float scale = 1;
    const float diff = max_abs_diff(b.ctx().logits(), &logits[(size_t)(at + len - 1) * c.vocab], c.vocab, &scale);
    INFO("block at " << at << " of " << len << " tokens");
    CHECK(diff <= 1e-5f * scale);
    for (int i = 0; i < len; ++i) {
      const TokenStats& s = b.ctx().stats(i);
      const TokenStats& r = stats[at + i];
      CHECK(s.pos == r.pos);
      CHECK(s.token == r.token);
      CHECK(s.qsim_flops == r.qsim_flops);
      CHECK(s.circuits == r.circuits);
      for (int l = 0; l < c.n_layers; ++l) {
        CHECK(s.layer[l].rank == r.layer[l].rank);
        CHECK(s.layer[l].quantum == r.layer[l].quantum);
        CHECK(std::fabs(s.layer[l].S - r.layer[l].S) <= 1e-4f);
      }
    }
    at += len;
  }
  CHECK(b.ctx().n_past() == b.ctx().n_prefix() + n);
  for (int g = 0; g < n_gen; ++g) {  // the cache the blocks wrote serves the next tokens alike
    const int32_t next = (int32_t)(std::max_element(a.ctx().logits(), a.ctx().logits() + c.vocab) - a.ctx().logits());
    REQUIRE(a.ctx().eval(next).ok());
    REQUIRE(b.ctx().eval(&next, 1).ok());
    float scale = 1;
    const float diff = max_abs_diff(b.ctx().logits(), a.ctx().logits(), c.vocab, &scale);
    CHECK(diff <= 1e-5f * scale);
  }
}

}  // namespace

TEST_CASE("a prompt run in blocks (and on threads) gives the token-by-token logits and reports, on every model") {
  const std::vector<std::string> files = test::fixture_and_shipped_models();
  REQUIRE(files.size() >= 8);
  for (const std::string& f : files) {
    INFO(f);
    host::LoadedModel lm;
    REQUIRE(lm.load_file(f.c_str()).ok());
    const ModelConfig& c = lm.model().cfg;
    ContextOptions opt;
    opt.n_ctx = std::min(c.context, 48);
    std::vector<int32_t> prompt((size_t)opt.n_ctx - 6 - c.memory_tokens);  // memory slots take cache room
    uint32_t lcg = 7;
    for (int32_t& t : prompt) t = (int32_t)(((lcg = lcg * 1664525u + 1013904223u) >> 8) % (uint32_t)c.vocab);
    compare(lm, opt, prompt, {1, 5, 16, 3, 16}, 6);
    compare(lm, opt, prompt, {16, 1, 7}, 4, 3);  // split over 3 threads
    if (c.quantum_attention && c.has_encoder()) {  // both routes of every token
      opt.route = RouteMode::all_quantum;
      compare(lm, opt, prompt, {16}, 2);
    }
    if (c.tensorized) {  // every token at one rank: the linears run as single matmuls
      opt.route = RouteMode::automatic;
      opt.fixed_rank = 2;
      compare(lm, opt, prompt, {16}, 2);
    }
  }
}

TEST_CASE("linears that share a packed input (q, k, v) and those with their own (o, down) get theirs, layer after layer") {
  // d = 256 and blocks of 16 or more tokens: every linear's input is packed for the broadcast form
  // (dense_matmul's scratch), q, k and v sharing one (kern::pack_input), then o's, up's and down's
  // replacing it in the same scratch. A packed input reused where another was due (o reading q's, a
  // layer reading the last layer's) moves the logits by O(1), not within 1e-5 of the token-by-token
  // ones. Also int8 weights widened in the GEMM (act-quant off) and their integer form (q8).
  testing::TinyConfig tc;
  tc.tensorized = false, tc.n_qubits = 0, tc.activation = "gelu", tc.quantum_attention = false;
  tc.adaptive_rank = false;
  tc.d = 256, tc.n_heads = 4, tc.d_ff = 1056, tc.n_layers = 3, tc.context = 64, tc.scale = 0.2f;
  const std::vector<uint8_t> f32 = testing::make_tiny_model(tc);
  std::vector<uint8_t> copy(f32.size() + 64), q8;  // quantize_model reads a 64-byte aligned copy
  uint8_t* at = copy.data() + (64 - reinterpret_cast<uintptr_t>(copy.data()) % 64) % 64;
  std::memcpy(at, f32.data(), f32.size());
  host::QuantizeReport rep;
  REQUIRE(host::quantize_model(at, f32.size(), host::QuantType::q8, &q8, &rep).ok());
  for (int kind = 0; kind < 3; ++kind) {  // f32; q8 widened; q8 integer dot products
    INFO("kind " << kind);
    const std::vector<uint8_t>& bytes = kind == 0 ? f32 : q8;
    host::LoadedModel lm;
    REQUIRE(lm.load_memory(bytes.data(), bytes.size()).ok());
    ContextOptions opt;
    opt.n_ctx = 64;
    opt.act_quant = kind == 2 ? ActQuant::q8 : ActQuant::off;
    std::vector<int32_t> prompt(50);
    uint32_t lcg = 11;
    for (int32_t& t : prompt) t = (int32_t)(((lcg = lcg * 1664525u + 1013904223u) >> 8) % 90u);
    compare(lm, opt, prompt, {20, 1, 29}, 3);
    compare(lm, opt, prompt, {33, 17}, 3, 3);  // split over 3 threads
  }
}

TEST_CASE("a block run without logits (a prompt's blocks but its last) skips the head and changes nothing else") {
  for (const std::string& f : test::fixture_and_shipped_models()) {
    INFO(f);
    host::LoadedModel lm;
    REQUIRE(lm.load_file(f.c_str()).ok());
    const ModelConfig& c = lm.model().cfg;
    ContextOptions opt;
    opt.n_ctx = std::min(c.context, 40);
    opt.n_batch = 8;
    host::HostContext a, b;
    REQUIRE(a.init(lm, opt).ok());
    REQUIRE(b.init(lm, opt).ok());
    std::vector<int32_t> p(16);
    for (size_t i = 0; i < p.size(); ++i) p[i] = (int32_t)((i * 7 + 3) % (size_t)c.vocab);
    REQUIRE(a.ctx().eval(p.data(), 8).ok());
    const double with_head = a.ctx().stats(7).flops;
    REQUIRE(b.ctx().eval(p.data(), 8, false).ok());
    CHECK(b.ctx().stats(7).flops < with_head);  // the head's FLOPs are not counted: it did not run
    CHECK(b.ctx().stats(6).flops == a.ctx().stats(6).flops);
    REQUIRE(a.ctx().eval(p.data() + 8, 8).ok());
    REQUIRE(b.ctx().eval(p.data() + 8, 8).ok());
    CHECK(std::memcmp(a.ctx().logits(), b.ctx().logits(), sizeof(float) * (size_t)c.vocab) == 0);
  }
}

TEST_CASE("blocks are checked before they run") {
  host::LoadedModel lm;
  REQUIRE(lm.load_file((std::string(QTF_SOURCE_DIR) + "/tests/fixtures/dense.qtf").c_str()).ok());
  ContextOptions opt;
  opt.n_batch = 4;
  opt.n_ctx = 6;
  host::HostContext h;
  REQUIRE(h.init(lm, opt).ok());
  const int32_t ok[4] = {1, 2, 3, 4}, bad[3] = {1, -1, 2};
  CHECK(h.ctx().eval(ok, 5).code() == Err::invalid_argument);  // longer than the batch size
  CHECK(h.ctx().eval(ok, 0).code() == Err::invalid_argument);
  CHECK(h.ctx().eval(bad, 3).code() == Err::out_of_range);
  CHECK(h.ctx().n_past() == 0);
  REQUIRE(h.ctx().eval(ok, 4).ok());
  CHECK(h.ctx().eval(ok, 3).code() == Err::context_full);  // 4 + 3 > 6: nothing runs
  CHECK(h.ctx().n_past() == 4);
  opt.n_batch = kMaxBatch + 1;
  CHECK(!h.init(lm, opt).ok());
}

TEST_CASE("TT cores read in place (pack_tt off) give the packed logits and ranks, in a smaller arena") {
  int tested = 0;
  for (const std::string& f : test::fixture_and_shipped_models()) {
    host::LoadedModel lm;
    REQUIRE(lm.load_file(f.c_str()).ok());
    const ModelConfig& c = lm.model().cfg;
    if (!c.tensorized) continue;
    INFO(f);
    ContextOptions packed, in_place;
    packed.n_ctx = in_place.n_ctx = std::min(c.context, 24);
    in_place.pack_tt = false;
    packed.mem_budget = in_place.mem_budget = 0;  // every TT linear runs its plans (no dense copies)
    CHECK(Context::arena_bytes(lm.model(), in_place) < Context::arena_bytes(lm.model(), packed));
    host::HostContext a, b;
    REQUIRE(a.init(lm, packed).ok());
    REQUIRE(b.init(lm, in_place).ok());
    uint32_t lcg = 11;
    for (int i = 0; i + c.memory_tokens < packed.n_ctx; ++i) {
      const int32_t t = (int32_t)(((lcg = lcg * 1664525u + 1013904223u) >> 8) % (uint32_t)c.vocab);
      REQUIRE(a.ctx().eval(t).ok());
      REQUIRE(b.ctx().eval(t).ok());
      float scale = 1;
      const float diff = max_abs_diff(b.ctx().logits(), a.ctx().logits(), c.vocab, &scale);
      CHECK(diff <= 1e-5f * scale);
      for (int l = 0; l < c.n_layers; ++l) CHECK(b.ctx().stats().layer[l].rank == a.ctx().stats().layer[l].rank);
    }
    ++tested;
  }
  CHECK(tested >= 4);
}

TEST_CASE("one token on threads through TT matrices big enough to split: q, k, v as one job, the activation on up's parts") {
  // d = 128 and d_ff = 1024 at rank 8: q, k, v and up are worth splitting (kParallelFlops), and up's
  // parts (left-to-right, 4 of 256 rows) start at whole activation blocks, so each part runs the
  // activation on its rows (forward.cpp: qkv, up_with_activation). Their logits are those of one
  // thread, for every activation; pack_tt off reads the divided steps in place.
  for (const char* act : {"daruan", "gelu"}) {
    for (bool pack : {true, false}) {
      INFO(act << (pack ? " packed" : " in place"));
      testing::TinyConfig tc;
      tc.d = 128, tc.n_heads = 4, tc.d_ff = 1024, tc.n_layers = 2, tc.context = 24;
      tc.d_factors = {4, 4, 8}, tc.ff_factors = {4, 16, 16};
      tc.tt_rank = 8, tc.r_max = 8, tc.adaptive_rank = false;
      tc.activation = act;
      tc.scale = 0.2f;
      const std::vector<uint8_t> bytes = testing::make_tiny_model(tc);
      host::LoadedModel lm;
      REQUIRE(lm.load_memory(bytes.data(), bytes.size()).ok());
      const Layer& L = lm.model().layers[0];
      REQUIRE(L.up.tt);
      const tt::Plan up = tt::best_plan(L.up.tt_w, 8, 1), q = tt::best_plan(L.q.tt_w, 8, 1);
      const tt::PartSplit split = tt::part_split(up);
      REQUIRE(!split.sums);  // the conditions of the fused paths hold, so the test runs them
      REQUIRE(split.count == 4);
      REQUIRE(up.flops >= kParallelFlops);
      REQUIRE(3 * q.flops >= kParallelFlops);
      ContextOptions opt;
      opt.n_ctx = 24;
      opt.pack_tt = pack;
      std::vector<int32_t> prompt(12);
      uint32_t lcg = 5;
      for (int32_t& t : prompt) t = (int32_t)(((lcg = lcg * 1664525u + 1013904223u) >> 8) % 90u);
      compare(lm, opt, prompt, {1}, 6, 3);  // every token alone, on 3 threads
    }
  }
}

namespace {

// A random llama2.c checkpoint (version 0, shared classifier) of d, hidden f, L layers, H heads, KV
// key/value heads, vocabulary V and context T, converted to a .qtf image.
std::vector<uint8_t> random_llama(int d, int f, int L, int H, int KV, int V, int T) {
  std::vector<uint8_t> ckpt;
  auto put = [&](size_t n, float scale, float mean = 0.f) {
    static std::mt19937 rng(3);
    std::normal_distribution<float> nd(mean, scale);
    for (size_t i = 0; i < n; ++i) {
      const float v = scale > 0 ? nd(rng) : mean;
      const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
      ckpt.insert(ckpt.end(), p, p + 4);
    }
  };
  const int32_t hdr[7] = {d, f, L, H, KV, V, T};
  ckpt.insert(ckpt.end(), reinterpret_cast<const uint8_t*>(hdr), reinterpret_cast<const uint8_t*>(hdr) + sizeof hdr);
  const size_t kv = (size_t)d / H * KV;
  put((size_t)V * d, 1.f);                                              // tok_emb
  put((size_t)L * d, 0.1f, 1.f);                                        // ln1
  put((size_t)L * d * d, 1.f / std::sqrt((float)d));                    // q
  put((size_t)L * d * kv, 1.f / std::sqrt((float)d));                   // k
  put((size_t)L * d * kv, 1.f / std::sqrt((float)d));                   // v
  put((size_t)L * d * d, 1.f / std::sqrt((float)d));                    // o
  put((size_t)L * d, 0.1f, 1.f);                                        // ln2
  put((size_t)L * f * d, 1.f / std::sqrt((float)d));                    // gate (w1)
  put((size_t)L * d * f, 1.f / std::sqrt((float)f));                    // down (w2)
  put((size_t)L * f * d, 1.f / std::sqrt((float)d));                    // up (w3)
  put((size_t)d, 0.1f, 1.f);                                            // lnf
  put((size_t)2 * T * (d / H / 2), 0.f, 0.5f);                          // run.c's RoPE tables: skipped
  std::vector<uint8_t> out;
  REQUIRE(import::llama2c_to_qtf(ckpt.data(), ckpt.size(), nullptr, 0, "random.bin", &out).ok());
  return out;
}

}  // namespace

TEST_CASE("a Llama block on 1, 2, 3, 4 and 7 threads: the same logits bit for bit, f32, q8 and q4 weights") {
  // The prompt's GEMMs of one input run as one job, work on their output tiles on the thread that made
  // them (kern::TileThen): q, k and v together with rotary positions on q's and k's tiles, up and gate
  // with the SwiGLU gate, o and down with the residual add. Tile edges follow the thread count, so each
  // of those must give every element the same bits however the rows are cut. Shapes: heads of 88 (12
  // rows of a float tile and 16 of an integer one straddle heads), grouped keys (q, k, v of different
  // rows), a hidden size that is not a multiple of 16 (the SwiGLU's padded tail), and d = 1056 > the
  // GEMM's reduction block (q, k, v's partial sums side by side in the scratch).
  struct Shape {
    int d, f, H, KV;
  };
  for (const Shape sh : {Shape{264, 712, 3, 1}, Shape{1056, 200, 12, 4}}) {
    const std::vector<uint8_t> f32 = random_llama(sh.d, sh.f, 2, sh.H, sh.KV, 96, 48);
    std::vector<uint8_t> copy(f32.size() + 64), q8, q4;  // quantize_model reads a 64-byte aligned copy
    uint8_t* at = copy.data() + (64 - reinterpret_cast<uintptr_t>(copy.data()) % 64) % 64;
    std::memcpy(at, f32.data(), f32.size());
    host::QuantizeReport rep;
    REQUIRE(host::quantize_model(at, f32.size(), host::QuantType::q8, &q8, &rep).ok());
    REQUIRE(host::quantize_model(at, f32.size(), host::QuantType::q4, &q4, &rep).ok());
    for (int kind = 0; kind < 4; ++kind) {  // f32; q8 widened; q8 integer dot products; q4 integer
      INFO("d " << sh.d << ", kind " << kind);
      const std::vector<uint8_t>& bytes = kind == 0 ? f32 : kind == 3 ? q4 : q8;
      host::LoadedModel lm;
      REQUIRE(lm.load_memory(bytes.data(), bytes.size()).ok());
      const ModelConfig& c = lm.model().cfg;
      REQUIRE(c.activation == Activation::swiglu);
      REQUIRE(c.positions == PosKind::rotary);
      REQUIRE(c.head_dim() == 88);
      ContextOptions opt;
      opt.n_ctx = 48;
      opt.act_quant = kind >= 2 ? ActQuant::q8 : ActQuant::off;
      std::vector<int32_t> prompt(41);
      uint32_t lcg = 13;
      for (int32_t& t : prompt) t = (int32_t)(((lcg = lcg * 1664525u + 1013904223u) >> 8) % (uint32_t)c.vocab);
      std::vector<float> first;  // one thread's logits after each block, then after a generated token
      for (int threads : {1, 2, 3, 4, 7}) {
        INFO(threads << " threads");
        ContextOptions o = opt;
        o.n_batch = 33;
        o.n_threads = threads;
        host::HostContext hc;
        REQUIRE(hc.init(lm, o).ok());
        std::vector<float> got;
        for (int at_tok = 0; at_tok < (int)prompt.size(); at_tok += 33) {
          const int len = std::min(33, (int)prompt.size() - at_tok);
          REQUIRE(hc.ctx().eval(prompt.data() + at_tok, len).ok());
          got.insert(got.end(), hc.ctx().logits(), hc.ctx().logits() + c.vocab);
        }
        const int32_t next = 5;
        REQUIRE(hc.ctx().eval(&next, 1).ok());
        got.insert(got.end(), hc.ctx().logits(), hc.ctx().logits() + c.vocab);
        if (threads == 1) first = got;
        REQUIRE(got.size() == first.size());
        CHECK(std::memcmp(got.data(), first.data(), got.size() * sizeof(float)) == 0);
      }
      compare(lm, opt, prompt, {33, 8}, 2, 3);  // and the token-by-token logits, within test_batch's 1e-5
    }
  }
}
