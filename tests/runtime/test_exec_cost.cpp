// Execution by cost (engine/model/exec_cost.cpp, docs/runtime.md "Execution by cost"): TT matrices made dense
// (tt_to_dense), the contexts' choice between a TT plan and a dense copy under the memory budget, and
// the copies' logits against the TT plans'.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "host/session.h"
#include "kernels/kernels.h"
#include "kernels/tt_plan.h"
#include "support/model_files.h"

using namespace qtf;

namespace {

struct Diff {
  double worst_rel = 0, mean_kl = 0;
  int same = 0, tokens = 0;
};

std::vector<double> log_softmax(const float* x, int n) {
  double mx = x[0], sum = 0;
  for (int i = 1; i < n; ++i) mx = std::max(mx, (double)x[i]);
  for (int i = 0; i < n; ++i) sum += std::exp(x[i] - mx);
  std::vector<double> out((size_t)n);
  for (int i = 0; i < n; ++i) out[(size_t)i] = x[i] - mx - std::log(sum);
  return out;
}

// The two contexts over the same pseudo-random tokens, token by token: the largest logit difference
// relative to the largest logit, the mean KL(a || b) and top-1 agreement.
Diff compare(const host::LoadedModel& lm, const ContextOptions& a_opt, const ContextOptions& b_opt, int n_tokens) {
  const ModelConfig& c = lm.model().cfg;
  host::HostContext a, b;
  REQUIRE(a.init(lm, a_opt).ok());
  REQUIRE(b.init(lm, b_opt).ok());
  Diff d;
  uint32_t lcg = 23;
  for (int i = 0; i < n_tokens; ++i) {
    const int32_t t = (int32_t)(((lcg = lcg * 1664525u + 1013904223u) >> 8) % (uint32_t)c.vocab);
    REQUIRE(a.ctx().eval(t).ok());
    REQUIRE(b.ctx().eval(t).ok());
    const float *x = a.ctx().logits(), *y = b.ctx().logits();
    double diff = 0, mag = 1e-30;
    for (int v = 0; v < c.vocab; ++v) diff = std::max(diff, std::fabs((double)x[v] - y[v])), mag = std::max(mag, std::fabs((double)x[v]));
    d.worst_rel = std::max(d.worst_rel, diff / mag);
    const std::vector<double> p = log_softmax(x, c.vocab), q = log_softmax(y, c.vocab);
    double kl = 0;
    for (int v = 0; v < c.vocab; ++v) kl += std::exp(p[(size_t)v]) * (p[(size_t)v] - q[(size_t)v]);
    d.mean_kl += kl / n_tokens;
    d.same += std::max_element(p.begin(), p.end()) == p.begin() + (std::max_element(q.begin(), q.end()) - q.begin());
    for (int l = 0; l < c.n_layers; ++l) REQUIRE(a.ctx().stats().layer[l].rank == b.ctx().stats().layer[l].rank);
  }
  d.tokens = n_tokens;
  return d;
}

int copies(const Context& ctx) {
  int n = 0;
  for (int l = 0; l < ctx.model().cfg.n_layers; ++l)
    for (int j = 0; j < 7; ++j) n += ctx.linear_exec(l, j) && ctx.linear_exec(l, j)->materialised();
  return n;
}

// A random TT matrix with these factors and stored bond rank, cores of type `type`.
struct RandomTT {
  TTMatrix W;
  std::vector<std::vector<float>> f32;
  std::vector<std::vector<int8_t>> i8;
  RandomTT(const std::vector<int>& m, const std::vector<int>& n, int rank, WType type, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.f, 1.f);
    W.shape.K = (int)m.size();
    f32.resize(m.size());
    i8.resize(m.size());
    for (int k = 0; k <= W.shape.K; ++k) W.shape.r[k] = k == 0 || k == W.shape.K ? 1 : rank;
    for (int k = 0; k < W.shape.K; ++k) {
      W.shape.m[k] = m[(size_t)k];
      W.shape.n[k] = n[(size_t)k];
      const size_t size = (size_t)W.shape.r[k] * m[(size_t)k] * n[(size_t)k] * W.shape.r[k + 1];
      for (size_t i = 0; i < size; ++i) f32[(size_t)k].push_back(g(rng));
      if (type == WType::i8) {
        i8[(size_t)k].resize(size);
        const float s = quantize_i8(f32[(size_t)k].data(), size, i8[(size_t)k].data());
        W.cores[k] = Weights(WType::i8, i8[(size_t)k].data(), nullptr, s);
      } else {
        W.cores[k] = Weights(f32[(size_t)k].data());
      }
    }
  }
};

}  // namespace

TEST_CASE("tt_to_dense: the dense matrix of a TT at a run-time rank, column by column as ref::tt_matvec") {
  struct Case {
    std::vector<int> m, n;
    int stored, rank;
    WType type;
  } cases[] = {{{12}, {20}, 1, 1, WType::f32},            // one core: the core itself
               {{4, 4, 8}, {4, 4, 8}, 6, 6, WType::f32},  // a TT of the shipped models' d
               {{4, 4, 8}, {8, 8, 8}, 6, 3, WType::f32},  // truncated bonds
               {{24, 1}, {1, 40}, 5, 5, WType::i8},       // budget.py's low rank A B, int8 cores
               {{1, 24}, {40, 1}, 5, 4, WType::i8},
               {{2, 3, 2, 2}, {3, 2, 2, 3}, 4, 4, WType::f32}};
  for (const Case& c : cases) {
    RandomTT t(c.m, c.n, c.stored, c.type, 5);
    const TTMatrix& W = t.W;
    const int64_t M = W.shape.rows(), N = W.shape.cols();
    INFO("M " << M << " N " << N << " rank " << c.rank);
    std::vector<float> dense((size_t)(M * N)), scratch(tt_dense_scratch_floats(W.shape, c.rank));
    tt_to_dense(W, c.rank, scratch.data(), dense.data(), nullptr, nullptr);
    std::vector<float> x((size_t)N), y((size_t)M), ws(ref::tt_workspace_floats(W.shape, 1));
    float worst = 0, mag = 0;
    for (int64_t j = 0; j < N; ++j) {
      std::fill(x.begin(), x.end(), 0.f);
      x[(size_t)j] = 1.f;
      ref::tt_matvec(W, c.rank, x.data(), y.data(), ws.data());
      for (int64_t i = 0; i < M; ++i) {
        worst = std::max(worst, std::fabs(y[(size_t)i] - dense[(size_t)(i * N + j)]));
        mag = std::max(mag, std::fabs(y[(size_t)i]));
      }
    }
    CHECK(mag > 0);
    CHECK(worst <= 1e-5f * mag);
    // int8 rows: every value within half a step of its row's scale of the f32 matrix.
    std::vector<int8_t> q((size_t)(M * N));
    std::vector<float> scales((size_t)M);
    tt_to_dense(W, c.rank, scratch.data(), nullptr, q.data(), scales.data());
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j)
        REQUIRE(std::fabs(scales[(size_t)i] * q[(size_t)(i * N + j)] - dense[(size_t)(i * N + j)]) <=
                0.5f * scales[(size_t)i] * 1.0001f + 1e-6f);
  }
}

TEST_CASE("execution by cost: budget 0 copies nothing; f32 copies give the TT logits; adaptive rank keeps TT") {
  int fixed = 0, adaptive = 0;
  for (const std::string& f : test::fixture_and_shipped_models()) {
    host::LoadedModel lm;
    REQUIRE(lm.load_file(f.c_str()).ok());
    const ModelConfig& c = lm.model().cfg;
    if (!c.tensorized) continue;
    INFO(f);
    ContextOptions none;
    none.n_ctx = std::min(c.context, 24);
    none.mem_budget = 0;
    ContextOptions f32 = none;
    f32.mem_budget = int64_t(1) << 40;
    f32.mem_copy = kCopyF32;
    host::HostContext h0, h1;
    REQUIRE(h0.init(lm, none).ok());
    REQUIRE(h1.init(lm, f32).ok());
    CHECK(copies(h0.ctx()) == 0);
    CHECK(h0.ctx().linear_exec(0, 0) == nullptr);  // budget 0: no record in the arena either
    CHECK(h0.ctx().exec_summary().bytes == 0);
    const bool is_fixed = !c.adaptive_rank || !c.has_encoder() || c.r_min == c.r_max;
    CHECK((h1.ctx().exec_summary().fixed_rank > 0) == is_fixed);
    if (!is_fixed) {  // the rank is chosen per token: never copied, whatever the budget
      CHECK(copies(h1.ctx()) == 0);
      ++adaptive;
      continue;
    }
    ++fixed;
    ContextOptions ranked = f32;  // a rank forced by --rank: a study of the TT plans, no copies
    ranked.fixed_rank = 1;
    host::HostContext h2;
    REQUIRE(h2.init(lm, ranked).ok());
    CHECK(copies(h2.ctx()) == 0);
    // Every copy is f32 and the copies together fit; what they run gives the plans' logits.
    for (int l = 0; l < c.n_layers; ++l)
      for (int j = 0; j < 7; ++j) {
        const LinearExec* e = h1.ctx().linear_exec(l, j);
        CHECK((e->path == LinearPath::dense_f32 || !e->materialised()));
        if (e->materialised()) CHECK(e->f32.seconds < e->stored.seconds);
      }
    const Diff d = compare(lm, none, f32, none.n_ctx - c.memory_tokens);
    MESSAGE(f << ": " << copies(h1.ctx()) << " f32 copies, max |logit diff| / max |logit| " << d.worst_rel);
    CHECK(d.worst_rel < 1e-4);
  }
  CHECK(fixed >= 3);
  CHECK(adaptive >= 3);
}

TEST_CASE("execution by cost: shakespeare-tt2 (rank 28) runs q8 copies by default, within q8's bounds") {
  host::LoadedModel lm;
  REQUIRE(lm.load_file((std::string(QTF_SOURCE_DIR) + "/models/shakespeare-tt2.qtf").c_str()).ok());
  const ModelConfig& c = lm.model().cfg;
  ContextOptions tt, automatic;
  tt.n_ctx = automatic.n_ctx = 64;
  tt.mem_budget = 0;
  host::HostContext h;
  REQUIRE(h.init(lm, automatic).ok());
  const ExecSummary& sum = h.ctx().exec_summary();
  // The auto budget is the original's q8 size of the 18 linears: every one fits as an int8 copy, and
  // the cost model predicts each faster than its rank-28 TT.
  CHECK(sum.budget == auto_mem_budget(lm.model()));
  CHECK(copies(h.ctx()) == 6 * c.n_layers);
  CHECK(sum.bytes <= sum.budget);
  CHECK(sum.forced == 0);
  // q8 as `qtf quantize` (test_quantize's bounds of a q8 model against its f32 original).
  const Diff d = compare(lm, tt, automatic, tt.n_ctx);
  MESSAGE("tt2: q8 copies vs TT: max |logit diff| / max |logit| " << d.worst_rel << ", mean KL " << d.mean_kl
                                                                  << ", top-1 same " << d.same << "/" << d.tokens);
  CHECK(d.worst_rel < 0.08);
  CHECK(d.mean_kl < 5e-3);
  CHECK(d.same >= d.tokens * 85 / 100);

  // A budget smaller than the copies: some linears stay TT, the copies fit, and the summary says the
  // budget forced them.
  ContextOptions tight = automatic;
  tight.mem_budget = 64 * 1024;
  host::HostContext t;
  REQUIRE(t.init(lm, tight).ok());
  CHECK(t.ctx().exec_summary().bytes <= tight.mem_budget);
  CHECK(copies(t.ctx()) > 0);
  CHECK(copies(t.ctx()) < 6 * c.n_layers);
  CHECK(t.ctx().exec_summary().forced == 6 * c.n_layers - copies(t.ctx()));
  CHECK(t.ctx().exec_summary().seconds > t.ctx().exec_summary().best_seconds);
  // The arena with the copies is the smaller: the packed cores of all 28 ranks they replace are not made.
  CHECK(Context::arena_bytes(lm.model(), tt) > Context::arena_bytes(lm.model(), automatic));

  ContextOptions bad = automatic;
  bad.mem_budget = -2;
  CHECK(Context::arena_bytes(lm.model(), bad) == 0);
}

// The TT plans are packed (ContextOptions::pack_tt) only at the ranks a token of the context can take
// (its fixed rank, or the schedule's [r_min, r_max]), and a rank above every stored bond rank shares the
// packing of the first such rank: packing every rank 1..R made a fixed-rank rank-128 low-rank file's
// context 1.9 GB. The arena with packing exceeds the one without by at most those ranks' packed cores.
TEST_CASE("packed TT plans: only the ranks the context runs") {
  int checked = 0;
  for (const std::string& f : test::fixture_and_shipped_models()) {
    host::LoadedModel lm;
    REQUIRE(lm.load_file(f.c_str()).ok());
    const Model& m = lm.model();
    const ModelConfig& c = m.cfg;
    if (!c.tensorized) continue;
    INFO(f);
    for (int forced : {0, 1}) {
      ContextOptions packed;
      packed.n_ctx = std::min(c.context, 16);
      packed.mem_budget = 0;  // the plans, not copies
      packed.fixed_rank = forced;
      ContextOptions in_place = packed;
      in_place.pack_tt = false;
      const bool fixed = forced > 0 || !c.adaptive_rank || !c.has_encoder();
      const int lo = forced ? 1 : fixed ? c.tt_rank : std::max(1, c.r_min);
      const int hi = forced ? 1 : fixed ? c.tt_rank : std::min(c.tt_rank, c.r_max);
      size_t most = 0;  // the packed plans of ranks lo..hi, each rounded up to the arena's 64 bytes
      for (int l = 0; l < c.n_layers; ++l) {
        const Layer& ly = m.layers[l];
        for (const Linear* lin : {&ly.q, &ly.k, &ly.v, &ly.o, &ly.up, &ly.down, &ly.gate})
          for (int r = lo; lin->tt && r <= hi; ++r)
            most += tt::packed_floats(tt::best_plan(lin->tt_w, r, 1)) * sizeof(float) + 64;
      }
      const size_t with = Context::arena_bytes(m, packed), without = Context::arena_bytes(m, in_place);
      CHECK(with > without);
      CHECK(with - without <= most);
      ++checked;
    }
  }
  CHECK(checked >= 16);
}

// --act-quant auto (the default) runs the file's own i8/q4 weights on the integer dot products where that
// is the faster path, never the int8 copies execution by cost makes: those stay on the float path (their
// own rounding only) unless q8 is asked for.
TEST_CASE("execution by cost: auto act-quant leaves the int8 copies on the float path; q8 takes them") {
  host::LoadedModel lm;
  REQUIRE(lm.load_file((std::string(QTF_SOURCE_DIR) + "/models/shakespeare-tt2.qtf").c_str()).ok());
  ContextOptions automatic, off, q8;
  automatic.n_ctx = off.n_ctx = q8.n_ctx = 32;
  automatic.mem_copy = off.mem_copy = q8.mem_copy = kCopyQ8;
  automatic.act_quant = ActQuant::automatic;
  off.act_quant = ActQuant::off;
  q8.act_quant = ActQuant::q8;
  host::HostContext h;
  REQUIRE(h.init(lm, automatic).ok());
  REQUIRE(copies(h.ctx()) > 0);
  const Diff same = compare(lm, automatic, off, 24);
  CHECK(same.worst_rel == 0.0);
  const Diff quantised = compare(lm, off, q8, 24);
  CHECK(quantised.worst_rel > 0.0);
  CHECK(quantised.mean_kl < 0.01);
}
