// Kernels: ref:: against first principles (the TT matrix materialized densely, known function values),
// kern:: against ref:: on random inputs, odd sizes (SIMD tails), every rank and small batches, and the
// workspace bound (a guard region after it must stay untouched). The kern:: tests run once per SIMD
// variant that this build has and this CPU runs (kernels/dispatch.h), each selected in turn.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/kernels.h"
#include "variants.h"
#include "kernels/tt_plan.h"

using namespace qtf;

namespace {

using Vec = std::vector<float>;

Vec random_vec(std::mt19937& rng, size_t n, float scale = 1.f) {
  std::uniform_real_distribution<float> u(-scale, scale);
  Vec v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// max |a - b| relative to max |b| (float32 sums of a few hundred terms: ~1e-6).
double rel_err(const float* a, const float* b, size_t n) {
  double diff = 0, mag = 1e-30;
  for (size_t i = 0; i < n; ++i) {
    diff = std::fmax(diff, std::fabs((double)a[i] - (double)b[i]));
    mag = std::fmax(mag, std::fabs((double)b[i]));
  }
  return diff / mag;
}

double max_abs(const Vec& v) {
  double m = 0;
  for (float x : v) m = std::fmax(m, std::fabs((double)x));
  return m;
}

bool all_finite(const float* a, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(a[i])) return false;
  return true;
}

// A TT matrix with random cores that owns its storage.
struct TT {
  TTShape shape;
  Vec cores[kMaxTTFactors];
  Vec bias;
  TTMatrix view() const {
    TTMatrix W;
    W.shape = shape;
    for (int k = 0; k < shape.K; ++k) W.cores[k] = cores[k].data();
    W.bias = bias.empty() ? nullptr : bias.data();
    return W;
  }
};

// m, n: factors; r: the K-1 internal stored ranks.
TT make_tt(std::mt19937& rng, std::vector<int> m, std::vector<int> n, std::vector<int> r, bool bias = true) {
  TT t;
  t.shape.K = (int)m.size();
  t.shape.r[0] = t.shape.r[t.shape.K] = 1;
  for (int k = 0; k < t.shape.K; ++k) t.shape.m[k] = m[k], t.shape.n[k] = n[k];
  for (int b = 1; b < t.shape.K; ++b) t.shape.r[b] = r[b - 1];
  for (int k = 0; k < t.shape.K; ++k)
    t.cores[k] = random_vec(rng, (size_t)t.shape.r[k] * m[k] * n[k] * t.shape.r[k + 1], 0.5f);
  if (bias) t.bias = random_vec(rng, (size_t)t.shape.rows());
  return t;
}

int max_rank(const TTShape& s) {
  int r = 1;
  for (int b = 1; b < s.K; ++b) r = s.r[b] > r ? s.r[b] : r;
  return r;
}

// W at run-time rank `rank`, built entry by entry from the definition: W[i, j] is the product of the
// core slices G_k[:, i_k, j_k, :], each masked to bond indices < min(rank, r_k). Row-major, in double.
std::vector<double> materialize(const TT& t, int rank) {
  const TTShape& s = t.shape;
  const int64_t M = s.rows(), N = s.cols();
  std::vector<double> dense((size_t)(M * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      int ik[kMaxTTFactors], jk[kMaxTTFactors];
      int64_t ii = i, jj = j;
      for (int k = s.K - 1; k >= 0; --k)
        ik[k] = (int)(ii % s.m[k]), ii /= s.m[k], jk[k] = (int)(jj % s.n[k]), jj /= s.n[k];
      std::vector<double> v(1, 1.0);  // row vector over the left bond
      for (int k = 0; k < s.K; ++k) {
        const int rl = s.r[k], rr = s.r[k + 1];
        std::vector<double> next((size_t)rr, 0.0);
        for (int a = 0; a < rl; ++a)
          for (int b = 0; b < rr; ++b) {
            const bool kept = (k == 0 || a < rank) && (k == s.K - 1 || b < rank);
            if (kept) next[b] += v[a] * t.cores[k][(((size_t)a * s.m[k] + ik[k]) * s.n[k] + jk[k]) * rr + b];
          }
        v = next;
      }
      dense[(size_t)(i * N + j)] = v[0];
    }
  return dense;
}

constexpr size_t kGuard = 64;
constexpr uint32_t kGuardBits = 0x7fc0beefu;  // a NaN: reading it would also poison the result

struct GuardedWorkspace {
  std::vector<float> buf;
  size_t size;
  explicit GuardedWorkspace(size_t floats) : buf(floats + kGuard), size(floats) {
    for (float& f : buf) std::memcpy(&f, &kGuardBits, 4);  // workspace starts as NaN too
  }
  float* data() { return buf.data(); }
  bool guard_intact() const {
    for (size_t i = size; i < buf.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &buf[i], 4);
      if (bits != kGuardBits) return false;
    }
    return true;
  }
};

Vec nan_vec(size_t n) { return Vec(n, std::nanf("")); }

using qtf::testing::for_each_variant;
using qtf::testing::variants;

}  // namespace

TEST_CASE("simd variants: reported, selectable by name, the best one by default") {
  std::string compiled, tested;
  for (int i = 0; i < kern::simd_variant_count(); ++i)
    compiled += std::string(i ? "," : "") + kern::simd_variant(i).name;
  for (const std::string& v : variants()) tested += (tested.empty() ? "" : ",") + v;
  MESSAGE("kern::simd_arch() = " << std::string(kern::simd_arch()) << "; compiled: " << compiled
                                 << "; tested on this CPU: " << tested);
  CHECK(std::string(kern::simd_arch()) == variants().back());  // widest supported is the default
  CHECK(std::string(kern::simd_available()) == tested);
  CHECK(std::string(kern::simd_variant(0).name) == "scalar");
  const Status unknown = kern::select_simd("avx1024");
  CHECK(unknown.code() == Err::invalid_argument);
  CHECK(std::string(unknown.message()).find("avx1024") != std::string::npos);
  for (const char* name : {"sse2", "avx2", "avxvnni", "avx512", "avx512vnni", "neon", "neondot"}) {
    const Status st = kern::select_simd(name);
    CHECK((st.ok() || st.code() == Err::unsupported));
    CHECK(st.ok() == (tested.find(name) != std::string::npos));
  }
  CHECK(kern::select_simd("auto").ok());
  CHECK(std::string(kern::simd_arch()) == variants().back());
}

TEST_CASE("TT shape sizes and FLOPs of the cheaper order") {
  std::mt19937 rng(1);
  TT sq = make_tt(rng, {4, 4, 8}, {4, 4, 8}, {8, 8});
  CHECK(sq.shape.rows() == 128);
  CHECK(sq.shape.cols() == 128);
  CHECK(sq.shape.params() == 4 * 4 * 8 + 8 * 4 * 4 * 8 + 8 * 8 * 8);
  // Right-to-left, by hand: core 3 2*16*(8*8)*8, core 2 2*4*8*(8*4)*(4*8), core 1 2*32*4*(4*8).
  CHECK(tt_matvec_flops(sq.shape, 8) == 16384 + 65536 + 8192);
  CHECK(tt_matvec_flops(sq.shape, 100) == tt_matvec_flops(sq.shape, 8));  // rank clamps to stored

  // m = 2x8, n = 16x4, r = 4: right-to-left costs 2*16*32*4 + 2*8*2*64 = 6144, left-to-right
  // 2*4*8*16 + 2*2*8*16 = 1536: the cheaper one is counted (and run).
  TT rect = make_tt(rng, {2, 8}, {16, 4}, {4});
  CHECK(tt_matvec_flops(rect.shape, 4) == 1536);
  // At rank 1 right-to-left: 2*16*8*4 + 2*8*2*16 = 1536; left-to-right: 2*4*2*16 + 2*2*8*4 = 384.
  CHECK(tt_matvec_flops(rect.shape, 1) == 384);
}

TEST_CASE("TT workspace: two cores hold only the intermediate of the order every rank's plan picks") {
  std::mt19937 rng(11);
  const TT cases[] = {make_tt(rng, {384, 1}, {1, 128}, {64}), make_tt(rng, {1, 128}, {384, 1}, {64}),
                      make_tt(rng, {2, 8}, {16, 4}, {4}), make_tt(rng, {8, 16}, {8, 16}, {16}),
                      make_tt(rng, {7, 3}, {5, 9}, {6})};
  for (const TT& t : cases) {
    const TTMatrix W = t.view();
    const int64_t bound = tt::max_intermediate(t.shape);
    CAPTURE(t.shape.rows());
    CAPTURE(t.shape.cols());
    for (int rank = 1; rank <= t.shape.r[1] + 1; ++rank) {
      const tt::Plan p = tt::best_plan(W, rank, 1);
      CHECK(p.order == tt::best_plan(W, t.shape.r[1], 1).order);  // the same order at every rank
      CHECK(p.steps[0].P * p.steps[0].rows() * p.steps[0].Q <= bound);
    }
  }
  // A B of 384 x 128 at rank 64 holds 64 floats between its steps, not 384 * 64 * 128.
  CHECK(tt::max_intermediate(cases[0].shape) == 64);
  CHECK(tt::max_intermediate(cases[1].shape) == 64);
}

TEST_CASE("ref TT matvec equals the materialized dense matrix at every rank") {
  std::mt19937 rng(2);
  const TT cases[] = {
      make_tt(rng, {5}, {3}, {}),
      make_tt(rng, {3, 4}, {2, 5}, {5}),
      make_tt(rng, {2, 3, 2}, {3, 2, 4}, {3, 4}),
      make_tt(rng, {2, 2, 3, 2}, {2, 3, 2, 2}, {2, 3, 2}),
      make_tt(rng, {4, 4, 8}, {4, 4, 8}, {6, 6}, false),
  };
  for (const TT& t : cases) {
    const int64_t M = t.shape.rows(), N = t.shape.cols();
    const Vec x = random_vec(rng, (size_t)N);
    for (int rank = 1; rank <= max_rank(t.shape); ++rank) {
      CAPTURE(t.shape.K);
      CAPTURE(rank);
      const std::vector<double> dense = materialize(t, rank);
      Vec expect((size_t)M);
      for (int64_t i = 0; i < M; ++i) {
        double sum = t.bias.empty() ? 0.0 : t.bias[(size_t)i];
        for (int64_t j = 0; j < N; ++j) sum += dense[(size_t)(i * N + j)] * x[(size_t)j];
        expect[(size_t)i] = (float)sum;
      }
      GuardedWorkspace ws(ref::tt_workspace_floats(t.shape, 1));
      Vec y = nan_vec((size_t)M);
      ref::tt_matvec(t.view(), rank, x.data(), y.data(), ws.data());
      CHECK(rel_err(y.data(), expect.data(), (size_t)M) < 1e-5);
      CHECK(ws.guard_intact());
    }
  }
}

TEST_CASE("kern TT matvec/matmul equal ref at every rank and batch, within the workspace") {
  // The scalar reference's products, made in the first variant's pass and held for the others (every
  // pass draws the same cases, batches and ranks in the same order).
  std::vector<Vec> refs;
  for_each_variant([&refs] {
    size_t next_ref = 0;
    std::mt19937 rng(3);
    const TT cases[] = {
        make_tt(rng, {7}, {9}, {}),                           // K = 1
        make_tt(rng, {3, 5, 7}, {7, 5, 3}, {5, 7}),           // odd everything
        make_tt(rng, {3, 5, 7}, {2, 3, 11}, {4, 3}),          // n != m
        make_tt(rng, {2, 3, 4, 5}, {5, 4, 3, 2}, {3, 5, 2}),  // K = 4
        make_tt(rng, {4, 4, 8}, {4, 4, 8}, {16, 16}),         // 128 (model)
        make_tt(rng, {8, 16}, {8, 16}, {16}),                 // 128 as 8x16
        make_tt(rng, {8, 8, 8}, {4, 4, 8}, {16, 16}),         // 128 -> 512
        make_tt(rng, {4, 4, 8}, {8, 8, 8}, {16, 16}),         // 512 -> 128
        make_tt(rng, {4, 12, 8}, {4, 12, 8}, {8, 8}),         // 384
        make_tt(rng, {8, 12, 8}, {8, 12, 8}, {12, 12}),       // 768
        make_tt(rng, {16, 24}, {4, 4}, {7}, false),           // wide Q, no bias
        make_tt(rng, {16, 16}, {16, 16}, {9}),                // factors of 16
        make_tt(rng, {32, 4}, {4, 32}, {6}),                  // factors of 32 and 4
        make_tt(rng, {2, 16, 32}, {32, 16, 2}, {3, 4}),       // 1024, both orders' shapes
        make_tt(rng, {12, 20}, {20, 12}, {5}),                // Q = 12, 20: vectors of 16/8 + 4
        make_tt(rng, {24, 1}, {1, 16}, {8}),                  // low rank A B (budget.py): factors of 1
        make_tt(rng, {1, 24}, {16, 1}, {6}),                  // the other way round
        make_tt(rng, {2, 8}, {16, 4}, {4}),                   // two cores, left to right the cheaper
    };
    int columns = 0;  // packed (plan, batch) pairs that kern::tt_matmul ran as columns
    for (const TT& t : cases) {
      const TTMatrix W = t.view();
      const size_t M = (size_t)t.shape.rows(), N = (size_t)t.shape.cols();
      // Up to 5 vectors, and blocks long enough for the columns form (tt::columns_pay), one of them
      // as one chunk of 16 (Q == 1 steps then have one 16-float vector per block), one of them in three
      // chunks (above tt::kColumnsMaxBatch) where the shape is small.
      for (int batch : {1, 2, 3, 4, 5, 9, 16, M * N <= 4096 ? 33 : 0}) {
        if (batch == 0) continue;
        const Vec X = random_vec(rng, N * batch);
        GuardedWorkspace ws(kern::tt_workspace_floats(t.shape, batch));
        Vec ref_ws(ref::tt_workspace_floats(t.shape, batch));
        const int top = max_rank(t.shape);
        for (int rank = 1; rank <= top + 1; ++rank) {
          // Every rank for one vector and for three (a block run vector by vector); the other block
          // lengths at the ranks that change the steps' shapes: 1, 2, the middle, the stored ranks and
          // above. (Every rank at every length took 3x as long, which CI's sanitizer and qemu stages
          // multiply.)
          if (batch != 1 && batch != 3 && rank > 2 && rank != top / 2 && rank < top) continue;
          CAPTURE(M);
          CAPTURE(N);
          CAPTURE(batch);
          CAPTURE(rank);
          if (next_ref == refs.size()) {
            refs.emplace_back(M * batch);
            ref::tt_matmul(W, rank, X.data(), batch, refs.back().data(), ref_ws.data());
          }
          const Vec& expect = refs[next_ref++];
          REQUIRE(expect.size() == M * batch);
          Vec y = nan_vec(M * batch);
          kern::tt_matmul(W, rank, X.data(), batch, y.data(), ws.data());
          REQUIRE(all_finite(y.data(), y.size()));
          CHECK(rel_err(y.data(), expect.data(), y.size()) < 2e-6 * std::sqrt((double)N));
          CHECK(ws.guard_intact());
          // The 512-bit TT step, compiled and tested though the dispatch does not choose it.
          if (std::string(kern::simd_arch()) == "avx512") {
            Vec y512 = nan_vec(M * batch);
            tt::run_plan(tt::best_plan(W, rank, batch), W, batch, X.data(), y512.data(), ws.data(), kern::avx512_tt_step);
            CHECK(rel_err(y512.data(), expect.data(), y512.size()) < 2e-6 * std::sqrt((double)N));
            CHECK(ws.guard_intact());
          }
          // The same by a one-vector plan made beforehand (as a context does once per rank).
          Vec yp = nan_vec(M * batch);
          kern::tt_matmul(W, tt::best_plan(W, rank, 1), X.data(), batch, yp.data(), ws.data());
          CHECK(std::memcmp(yp.data(), y.data(), y.size() * sizeof(float)) == 0);
          CHECK(ws.guard_intact());
          // With the plan's cores packed (as a context packs them): the packed kernels, all shapes.
          tt::Plan packed = tt::best_plan(W, rank, 1);
          Vec pack(tt::packed_floats(packed) + 16);
          float* pack_at = pack.data() + (16 - (reinterpret_cast<uintptr_t>(pack.data()) / sizeof(float)) % 16) % 16;
          tt::pack_plan(&packed, pack_at);
          Vec yk = nan_vec(M * batch);
          kern::tt_matmul(W, packed, X.data(), batch, yk.data(), ws.data());
          REQUIRE(all_finite(yk.data(), yk.size()));
          CHECK(rel_err(yk.data(), expect.data(), yk.size()) < 2e-6 * std::sqrt((double)N));
          CHECK(ws.guard_intact());
          columns += tt::columns_pay(W, packed, batch);
          if (batch > 1 && t.shape.K >= 2) {  // the block as columns, whether or not the rule picks it
            Vec yc = nan_vec(M * batch);
            tt::run_columns(packed, W, batch, X.data(), yc.data(), ws.data(), kern::active().tt_step,
                            kern::active().transpose);
            REQUIRE(all_finite(yc.data(), yc.size()));
            CHECK(rel_err(yc.data(), expect.data(), yc.size()) < 2e-6 * std::sqrt((double)N));
            CHECK(ws.guard_intact());
            if (std::string(kern::simd_arch()) == "avx512") {  // and its 512-bit steps everywhere
              tt::run_columns(packed, W, batch, X.data(), yc.data(), ws.data(), kern::avx512_tt_step,
                              kern::active().transpose);
              CHECK(rel_err(yc.data(), expect.data(), yc.size()) < 2e-6 * std::sqrt((double)N));
              CHECK(ws.guard_intact());
            }
          }
          if (batch == 1) {
            Vec y1 = nan_vec(M);
            kern::tt_matvec(W, rank, X.data(), y1.data(), ws.data());
            CHECK(std::memcmp(y1.data(), y.data(), M * sizeof(float)) == 0);  // matvec is matmul of one
          }
        }
      }
    }
    CHECK(columns > 0);  // the rule picks the columns form somewhere above
  });
}

TEST_CASE("TT matmul on threads: fewer vectors than threads run in parts, kern equals ref") {
  // The parts of tt::part_plan, with the divided step packed per part (as a context packs them)
  // and read in place; both orders; parts of one index value and of several; every variant. The fake pool runs
  // the tasks one after another, last first (any order must do).
  auto run_serial = [](void*, int n, void (*task)(void*, int, int), void* arg) {
    for (int i = n - 1; i >= 0; --i) task(arg, i, 0);
  };
  for_each_variant([&] {
    std::mt19937 rng(41);
    const TT cases[] = {
        make_tt(rng, {3, 5, 7}, {7, 5, 3}, {5, 7}),           // odd everything
        make_tt(rng, {2, 3, 4, 5}, {5, 4, 3, 2}, {3, 5, 2}),  // K = 4
        make_tt(rng, {8, 12, 8}, {8, 12, 8}, {12, 12}),       // 768 (left-to-right at ties)
        make_tt(rng, {8, 12, 8}, {12, 16, 16}, {8, 8}),       // 3072 -> 768 (right-to-left)
        make_tt(rng, {12, 16, 16}, {8, 12, 8}, {8, 8}),       // 768 -> 3072
        make_tt(rng, {16, 24}, {4, 4}, {7}, false),           // K = 2, no bias
        make_tt(rng, {4, 32}, {32, 4}, {6}),                  // K = 2, right-to-left
    };
    bool orders[2] = {false, false};
    for (const TT& t : cases) {
      const TTMatrix W = t.view();
      const size_t M = (size_t)t.shape.rows(), N = (size_t)t.shape.cols();
      for (int threads : {3, 5, 16}) {  // parts of uneven sizes; one row each (up to the index's length)
        const Workers pool{threads, run_serial, nullptr};
        for (int batch : {1, 2}) {
          if (batch == 2 && threads != 3) continue;
          const Vec X = random_vec(rng, N * batch);
          GuardedWorkspace ws(tt::workspace_floats(t.shape, batch, threads));
          Vec ref_ws(ref::tt_workspace_floats(t.shape, batch));
          for (int rank : {1, max_rank(t.shape)}) {
            CAPTURE(M);
            CAPTURE(N);
            CAPTURE(threads);
            CAPTURE(batch);
            CAPTURE(rank);
            Vec expect(M * batch);
            ref::tt_matmul(W, rank, X.data(), batch, expect.data(), ref_ws.data());
            tt::Plan plan = tt::best_plan(W, rank, 1);
            orders[plan.order == tt::Order::left_to_right] = true;
            const int parts = std::min(threads, tt::part_split(plan).count);
            Vec pack(tt::packed_floats(plan) + tt::part_packed_floats(plan, parts) + 16);
            float* at = pack.data() + (16 - (reinterpret_cast<uintptr_t>(pack.data()) / sizeof(float)) % 16) % 16;
            for (int packed : {0, 1}) {  // read in place; packed as a context packs it (with its parts)
              CAPTURE(packed);
              if (packed == 1) {
                tt::pack_plan(&plan, at);
                tt::pack_parts(&plan, parts, at + tt::packed_floats(plan));
              }
              Vec y = nan_vec(M * batch), yp = nan_vec(M * batch);
              kern::tt_matmul(W, plan, X.data(), batch, y.data(), ws.data(), &pool);  // parts where it pays
              for (int b = 0; b < batch; ++b)  // in parts, whatever the size
                kern::tt_matvec_parts(W, plan, X.data() + b * N, yp.data() + b * M, ws.data(), &pool);
              REQUIRE(all_finite(y.data(), y.size()));
              REQUIRE(all_finite(yp.data(), yp.size()));
              CHECK(rel_err(y.data(), expect.data(), y.size()) < 2e-6 * std::sqrt((double)N));
              CHECK(rel_err(yp.data(), expect.data(), yp.size()) < 2e-6 * std::sqrt((double)N));
              CHECK(ws.guard_intact());
            }
          }
        }
      }
    }
    CHECK(orders[0]);
    CHECK(orders[1]);
    // Several matrices of one x as one job (a block's q, k, v): here one matrix at three ranks, each
    // plan packed with its parts; four jobs run as a group of three and one.
    for (const TT& t : cases) {
      const TTMatrix W = t.view();
      const size_t M = (size_t)t.shape.rows(), N = (size_t)t.shape.cols();
      const Vec X = random_vec(rng, N);
      const int ranks[4] = {max_rank(t.shape), 1, 2, max_rank(t.shape) / 2 + 1};
      for (int threads : {2, 5}) {
        CAPTURE(M);
        CAPTURE(N);
        CAPTURE(threads);
        const Workers pool{threads, run_serial, nullptr};
        tt::Plan plans[4];
        std::vector<Vec> packs(4), expect(4), ys(4);
        tt::PartsJob jobs[4];
        for (int j = 0; j < 4; ++j) {
          plans[j] = tt::best_plan(W, ranks[j], 1);
          const int parts = std::min(threads, tt::part_split(plans[j]).count);
          packs[j].resize(tt::packed_floats(plans[j]) + tt::part_packed_floats(plans[j], parts));
          tt::pack_plan(&plans[j], packs[j].data());
          tt::pack_parts(&plans[j], parts, packs[j].data() + tt::packed_floats(plans[j]));
          Vec ref_ws(ref::tt_workspace_floats(t.shape, 1));
          expect[j].resize(M);
          ref::tt_matmul(W, ranks[j], X.data(), 1, expect[j].data(), ref_ws.data());
          ys[j] = nan_vec(M);
          jobs[j] = {&W, &plans[j], ys[j].data()};
        }
        GuardedWorkspace ws(3 * tt::workspace_floats(t.shape, 1, threads));
        kern::tt_matvec_parts(jobs, 4, X.data(), ws.data(), &pool);
        for (int j = 0; j < 4; ++j) {
          CAPTURE(j);
          REQUIRE(all_finite(ys[j].data(), M));
          CHECK(rel_err(ys[j].data(), expect[j].data(), M) < 2e-6 * std::sqrt((double)N));
        }
        CHECK(ws.guard_intact());
      }
    }
  });
}

TEST_CASE("transpose: kern equals ref, odd and wide sizes") {
  for_each_variant([] {
    std::mt19937 rng(21);
    for (int64_t rows : {1, 3, 4, 7, 16, 33})
      for (int64_t cols : {1, 4, 5, 17, 64, 771}) {
        CAPTURE(rows);
        CAPTURE(cols);
        const Vec src = random_vec(rng, (size_t)(rows * cols));
        Vec expect((size_t)(rows * cols)), dst = nan_vec((size_t)(rows * cols));
        ref::transpose(src.data(), rows, cols, cols, expect.data(), rows);
        kern::active().transpose(src.data(), rows, cols, cols, dst.data(), rows);
        CHECK(std::memcmp(dst.data(), expect.data(), dst.size() * sizeof(float)) == 0);
        CHECK(expect[(size_t)((cols - 1) * rows)] == src[(size_t)(cols - 1)]);  // the reference's own contract
        // A block of it (rows and columns from 1), into columns wider than its rows: the rest untouched.
        const int64_t r0 = rows > 1 ? 1 : 0, c0 = cols > 1 ? 1 : 0, ldd = rows + 5;
        Vec part = nan_vec((size_t)(cols * ldd)), part_ref = nan_vec((size_t)(cols * ldd));
        const float* at = src.data() + r0 * cols + c0;
        ref::transpose(at, rows - r0, cols - c0, cols, part_ref.data(), ldd);
        kern::active().transpose(at, rows - r0, cols - c0, cols, part.data(), ldd);
        CHECK(std::memcmp(part.data(), part_ref.data(), part.size() * sizeof(float)) == 0);
        CHECK(part_ref[(size_t)((cols - c0 - 1) * ldd + rows - r0 - 1)] == src[(size_t)(rows * cols - 1)]);
        CHECK(std::isnan(part_ref[(size_t)(rows - r0)]));  // past the block's rows
      }
  });
}

TEST_CASE("dense matvec/matmul, dot and axpy: kern equals ref, odd sizes") {
  for_each_variant([] {
    std::mt19937 rng(4);
    const int sizes[] = {1, 3, 16, 17, 32, 129};
    for (int rows : sizes)
      for (int cols : sizes)
        for (bool with_bias : {false, true}) {
          CAPTURE(rows);
          CAPTURE(cols);
          const Vec w = random_vec(rng, (size_t)rows * cols), bias = random_vec(rng, (size_t)rows);
          DenseMatrix D;
          D.rows = rows, D.cols = cols, D.w = w.data(), D.bias = with_bias ? bias.data() : nullptr;
          for (int batch = 1; batch <= 5; ++batch) {
            const Vec X = random_vec(rng, (size_t)cols * batch);
            Vec expect((size_t)rows * batch), y = nan_vec((size_t)rows * batch);
            ref::dense_matmul(D, X.data(), batch, expect.data());
            kern::dense_matmul(D, X.data(), batch, y.data());
            CHECK(rel_err(y.data(), expect.data(), y.size()) < 1e-5);
            if (batch == 1) {
              Vec y1 = nan_vec((size_t)rows);
              kern::dense_matvec(D, X.data(), y1.data());
              CHECK(rel_err(y1.data(), expect.data(), y1.size()) < 1e-5);
            }
          }
        }
    for (int n : {1, 3, 16, 17, 32, 129, 768}) {
      CAPTURE(n);
      const Vec a = random_vec(rng, (size_t)n), b = random_vec(rng, (size_t)n);
      const float d_ref = ref::dot(a.data(), b.data(), n), d = kern::dot(a.data(), b.data(), n);
      CHECK(std::fabs(d - d_ref) <= 1e-5f * (1.f + std::fabs(d_ref)) * std::sqrt((float)n));
      Vec y_ref = b, y = b;
      ref::axpy(-0.75f, a.data(), y_ref.data(), n);
      kern::axpy(-0.75f, a.data(), y.data(), n);
      CHECK(rel_err(y.data(), y_ref.data(), (size_t)n) < 1e-6);
    }
  });
}

TEST_CASE("layer norm, softmax, GELU, SiLU, tanh: kern equals ref, odd sizes") {
  for_each_variant([] {
    std::mt19937 rng(5);
    for (int n : {1, 3, 16, 17, 32, 129, 768}) {
      CAPTURE(n);
      const Vec x = random_vec(rng, (size_t)n, 4.f), w = random_vec(rng, (size_t)n), b = random_vec(rng, (size_t)n);
      Vec y_ref((size_t)n), y = nan_vec((size_t)n);
      ref::layer_norm(x.data(), w.data(), b.data(), 1e-5f, n, y_ref.data());
      kern::layer_norm(x.data(), w.data(), b.data(), 1e-5f, n, y.data());
      CHECK(rel_err(y.data(), y_ref.data(), (size_t)n) < 1e-5);

      for (float scale : {1.f, 60.f}) {  // 60: exp would overflow without subtracting the max
        Vec s_ref = random_vec(rng, (size_t)n, scale), s = s_ref;
        ref::softmax_inplace(s_ref.data(), n);
        kern::softmax_inplace(s.data(), n);
        REQUIRE(all_finite(s.data(), s.size()));
        CHECK(rel_err(s.data(), s_ref.data(), (size_t)n) < 1e-5);
        double total = 0;
        for (float v : s) total += v;
        CHECK(total == doctest::Approx(1.0).epsilon(1e-5));
      }

      Vec g_ref = random_vec(rng, (size_t)n, 6.f), g = g_ref, sl_ref = g_ref, sl = g_ref;
      ref::gelu_inplace(g_ref.data(), n);
      kern::gelu_inplace(g.data(), n);
      CHECK(rel_err(g.data(), g_ref.data(), (size_t)n) < 1e-5);
      ref::silu_inplace(sl_ref.data(), n);
      kern::silu_inplace(sl.data(), n);
      CHECK(rel_err(sl.data(), sl_ref.data(), (size_t)n) < 1e-5);
    }
    // tanh element by element within a few ulps of std::tanh, from tiny to saturated arguments, on the
    // short rows it runs on (Q = 2..8 angles) and long ones.
    for (int n : {1, 2, 4, 6, 8, 12, 17, 64}) {
      CAPTURE(n);
      for (float scale : {1e-3f, 1.f, 12.f}) {
        Vec t_ref = random_vec(rng, (size_t)n, scale), t = t_ref;
        ref::tanh_inplace(t_ref.data(), n);
        kern::tanh_inplace(t.data(), n);
        for (int i = 0; i < n; ++i) CHECK(std::fabs(t[i] - t_ref[i]) <= 4e-7f * std::fabs(t_ref[i]) + 1e-30f);
      }
    }
  });
}

TEST_CASE("reference values: LN statistics, GELU (erf form), SiLU") {
  for_each_variant([] {
    const float x[5] = {1.f, 2.f, 3.f, 4.f, 10.f}, one[5] = {1, 1, 1, 1, 1}, zero[5] = {0, 0, 0, 0, 0};
    float y[5];
    kern::layer_norm(x, one, zero, 0.f, 5, y);
    double mean = 0, var = 0;
    for (float v : y) mean += v / 5.0;
    for (float v : y) var += (v - mean) * (v - mean) / 5.0;  // biased: normalized output has var 1
    CHECK(mean == doctest::Approx(0.0).epsilon(1e-6));
    CHECK(var == doctest::Approx(1.0).epsilon(1e-5));

    float g[3] = {1.f, -1.f, 0.f};
    kern::gelu_inplace(g, 3);  // torch.nn.functional.gelu(torch.tensor([1., -1., 0.]))
    CHECK(g[0] == doctest::Approx(0.8413447).epsilon(1e-6));
    CHECK(g[1] == doctest::Approx(-0.1586553).epsilon(1e-6));
    CHECK(g[2] == 0.f);
    float s[2] = {1.f, -1.f};
    kern::silu_inplace(s, 2);
    CHECK(s[0] == doctest::Approx(0.7310586).epsilon(1e-6));
    CHECK(s[1] == doctest::Approx(-0.2689414).epsilon(1e-6));
  });
}

TEST_CASE("block-option kernels and attention: kern equals ref, odd sizes, every variant") {
  for_each_variant([] {
    std::mt19937 rng(19);
    for (int n : {1, 3, 16, 17, 64, 129, 172}) {
      CAPTURE(n);
      const Vec x = random_vec(rng, (size_t)n, 3.f), w = random_vec(rng, (size_t)n);
      Vec y_ref((size_t)n), y = nan_vec((size_t)n), y_alias = x;
      ref::rms_norm(x.data(), w.data(), 1e-5f, n, y_ref.data());
      kern::rms_norm(x.data(), w.data(), 1e-5f, n, y.data());
      CHECK(rel_err(y.data(), y_ref.data(), (size_t)n) < 1e-6);
      kern::rms_norm(y_alias.data(), w.data(), 1e-5f, n, y_alias.data());  // y may alias x
      CHECK(rel_err(y_alias.data(), y.data(), (size_t)n) == 0);
      Vec g_ref = random_vec(rng, (size_t)n, 6.f), g = g_ref;
      const Vec u = random_vec(rng, (size_t)n);
      ref::silu_mul(g_ref.data(), u.data(), n);
      kern::silu_mul(g.data(), u.data(), n);
      CHECK(rel_err(g.data(), g_ref.data(), (size_t)n) < 1e-5);
    }
    for (int hd : {2, 4, 6, 8, 12, 16, 24, 32, 64, 128}) {
      CAPTURE(hd);
      const int H = 3, T = 40;
      Vec table((size_t)T * hd);
      rope_table(10000.f, hd, T, table.data());
      const Vec x = random_vec(rng, (size_t)H * hd, 2.f);
      for (int pos : {0, 1, 39}) {
        Vec r_ref = x, r = x;
        ref::rope(r_ref.data(), H, hd, table.data() + pos * hd);
        kern::rope(r.data(), H, hd, table.data() + pos * hd);
        CHECK(rel_err(r.data(), r_ref.data(), r.size()) == 0);  // the same double arithmetic
      }
    }
  });
}

// attend at head sizes 1..256 (every variant takes its widest vector no longer than the head, and one more
// vector overlapping the last whole one where that does not divide it) against ref::attend. Each head is
// the last hd floats of its row and the last rows of K and V are the buffers' last, q is a buffer of hd
// floats: under ASan a load past the head fails.
// Tolerance: the two differ in the order in which a score's hd products are added (lane sums and a tree
// against a running sum), in fused multiply-adds, the vector exp and the softmax sum's order. A score's
// rounding on random data grows like sqrt(hd) eps S (S = max_j scale sum_i |q_i k_ji|); the rest is a few
// dozen eps (sums of at most kAttendBlock terms, plus one per block). out, a convex combination of the
// values, moves by about the scores' error: eps (32 + sqrt(hd) S). Over 12 seeds the worst case on sse2,
// avx2 and avx512 reached 0.47 of it; a missed or doubled product costs ~scale |q_i k_ji| >> eps S.
TEST_CASE("attention: every head size against ref, every variant") {
  std::mt19937 rng(23);
  constexpr int kMaxN = 300, kMaxHd = 256;
  const size_t stride = 2 * kMaxHd + 3;  // odd: unaligned rows
  const Vec K = random_vec(rng, kMaxN * stride), Vv = random_vec(rng, kMaxN * stride);
  struct Case {
    int hd, n;
    float spread;
    Vec q, out;  // ref's out
    double tol;
    size_t at;  // the head's first value in K and Vv
  };
  std::vector<Case> cases;
  for (int hd : {1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 72, 80, 96, 100, 112, 120, 128, 136, 160,
                 192, 200, 256})
    for (int n : {1, 2, 7, 16, 17, 33, 300})
      for (float spread : {1.f, 30.f}) {  // 30: exp would overflow without the max
        Case c{hd, n, spread, random_vec(rng, (size_t)hd, spread), Vec((size_t)hd), 0,
               (size_t)(kMaxN - n) * stride + stride - (size_t)hd};
        const float scale = 1.f / std::sqrt((float)hd);
        Vec w((size_t)n);
        ref::attend(c.q.data(), K.data() + c.at, Vv.data() + c.at, stride, n, hd, scale, w.data(), c.out.data());
        double S = 0;
        for (int j = 0; j < n; ++j) {
          double s = 0;
          for (int i = 0; i < hd; ++i) s += std::fabs((double)c.q[(size_t)i] * K[c.at + j * stride + (size_t)i]);
          S = std::max(S, s * scale);
        }
        c.tol = 0x1p-24 * (32 + std::sqrt((double)hd) * S);
        cases.push_back(std::move(c));
      }
  for_each_variant([&] {
    for (const Case& c : cases) {
      CAPTURE(c.hd);
      CAPTURE(c.n);
      CAPTURE(c.spread);
      Vec w = nan_vec((size_t)c.n), out = nan_vec((size_t)c.hd);
      kern::attend(c.q.data(), K.data() + c.at, Vv.data() + c.at, stride, c.n, c.hd, 1.f / std::sqrt((float)c.hd),
                   w.data(), out.data());
      REQUIRE(all_finite(out.data(), out.size()));
      CHECK(rel_err(out.data(), c.out.data(), out.size()) <= c.tol);
    }
  });
}

TEST_CASE("block-option refs: RMSNorm, rotary positions, SwiGLU gate against first principles") {
  std::mt19937 rng(18);
  for (int n : {1, 8, 17, 64}) {
    CAPTURE(n);
    const Vec x = random_vec(rng, (size_t)n, 3.f), w = random_vec(rng, (size_t)n);
    Vec y((size_t)n);
    ref::rms_norm(x.data(), w.data(), 1e-5f, n, y.data());
    double ss = 0;
    for (float v : x) ss += (double)v * v;
    const double inv = 1.0 / std::sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; ++i) CHECK(y[i] == doctest::Approx(w[i] * x[i] * inv).epsilon(1e-5));
    Vec in_place = x;  // y may alias x
    ref::rms_norm(in_place.data(), w.data(), 1e-5f, n, in_place.data());
    CHECK(rel_err(in_place.data(), y.data(), (size_t)n) < 1e-7);
  }

  // RoPE: pair i of head h turns by pos * theta^(-2i/hd) (complex multiplication), norms are kept, and
  // q . k of two rotated vectors depends only on the distance of their positions.
  const int H = 3, hd = 8, T = 301;
  const float theta = 10000.f;
  Vec table((size_t)T * hd);
  rope_table(theta, hd, T, table.data());
  const Vec q = random_vec(rng, H * hd), k = random_vec(rng, H * hd);
  for (int pos : {0, 1, 7, 300}) {
    CAPTURE(pos);
    Vec r = q;
    ref::rope(r.data(), H, hd, table.data() + pos * hd);
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < hd; i += 2) {
        const double a = pos * std::pow((double)theta, -(double)i / hd);
        const double re = q[h * hd + i], im = q[h * hd + i + 1];
        CHECK(r[h * hd + i] == doctest::Approx(re * std::cos(a) - im * std::sin(a)).epsilon(1e-4));
        CHECK(r[h * hd + i + 1] == doctest::Approx(re * std::sin(a) + im * std::cos(a)).epsilon(1e-4));
      }
  }
  // The table's angle is llama2.c's float32 product pos * (1 / powf(theta, i / hd)); only its cosine and
  // sine are double. At position 300 the float32 angle of pair 0 is 300 exactly; of pair 1, 300 * 0.1f.
  CHECK(table[300 * hd + 0] == (float)std::cos(300.0));
  CHECK(table[300 * hd + 3] == (float)std::sin((double)(300.f * (1.f / (float)std::pow(10000.0, 0.25)))));
  double off_exact = 0;  // and that is not the exact angle: by ~1e-6 at these positions
  for (int pos = 0; pos < T; ++pos)
    for (int i = 0; i < hd; i += 2)
      off_exact = std::max(off_exact, std::fabs(table[pos * hd + i] - std::cos(pos * std::pow(10000.0, -(double)i / hd))));
  CHECK(off_exact > 5e-7);
  auto rotated_dot = [&](int pq, int pk) {
    Vec a = q, b = k;
    ref::rope(a.data(), H, hd, table.data() + pq * hd);
    ref::rope(b.data(), H, hd, table.data() + pk * hd);
    return (double)ref::dot(a.data(), b.data(), H * hd);
  };
  CHECK(rotated_dot(5, 2) == doctest::Approx(rotated_dot(13, 10)).epsilon(1e-4));
  CHECK(rotated_dot(0, 0) == doctest::Approx((double)ref::dot(q.data(), k.data(), H * hd)).epsilon(1e-6));
  CHECK(std::fabs(rotated_dot(5, 2) - rotated_dot(5, 3)) > 1e-4);  // and it does depend on the distance

  // Attention of one head against a double evaluation, for a context longer than a few blocks.
  for (int n : {1, 5, 16, 17, 300}) {
    CAPTURE(n);
    const int stride = 3 * hd;  // other heads' values in between, as the cache rows
    const Vec qh = random_vec(rng, hd, 2.f), K = random_vec(rng, (size_t)n * stride, 2.f), Vv = random_vec(rng, (size_t)n * stride);
    Vec w((size_t)n), out(hd);
    ref::attend(qh.data(), K.data(), Vv.data(), stride, n, hd, 0.5f, w.data(), out.data());
    std::vector<double> p((size_t)n);
    double mx = -1e300, tot = 0;
    for (int j = 0; j < n; ++j) {
      double dd = 0;
      for (int c = 0; c < hd; ++c) dd += (double)qh[c] * K[j * stride + c];
      mx = std::max(mx, p[j] = dd * 0.5);
    }
    for (int j = 0; j < n; ++j) tot += (p[j] = std::exp(p[j] - mx));
    for (int c = 0; c < hd; ++c) {
      double o = 0;
      for (int j = 0; j < n; ++j) o += p[j] / tot * Vv[j * stride + c];
      CHECK(out[c] == doctest::Approx(o).epsilon(1e-5));
    }
  }

  float g[3] = {1.f, -1.f, 0.5f};
  const float u[3] = {2.f, 3.f, -4.f};
  ref::silu_mul(g, u, 3);
  CHECK(g[0] == doctest::Approx(0.7310586 * 2).epsilon(1e-6));
  CHECK(g[1] == doctest::Approx(-0.2689414 * 3).epsilon(1e-6));
  CHECK(g[2] == doctest::Approx(0.5 / (1 + std::exp(-0.5)) * -4).epsilon(1e-6));
}

namespace {

// Weights of a [rows, cols] matrix stored as `type` (i8: one scale per row when per_row, else one for
// all), owning their storage, and the f32 values they stand for (what every kernel must compute with).
struct Stored {
  WType type = WType::f32;
  bool per_row = false;
  Vec f32, scales, values;  // values: the dequantized weights
  std::vector<uint16_t> f16;
  std::vector<int8_t> i8;
  std::vector<uint8_t> q4;  // rows of q4 blocks (kernels.h)
  float scale = 1.f;
  int cols = 0;
  Weights view() const {
    switch (type) {
      case WType::f32: return Weights(f32.data());
      case WType::f16: return Weights(WType::f16, f16.data(), nullptr, 1.f);
      case WType::i8: return Weights(WType::i8, i8.data(), per_row ? scales.data() : nullptr, scale);
      case WType::q4: return Weights::q4(q4.data(), cols);
    }
    return Weights();
  }
};

uint16_t to_half(float f) {  // round to nearest (ties away: tests only need some half near f)
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int e = (int)((x >> 23) & 0xFF) - 127 + 15;
  if (e <= 0) return (uint16_t)sign;  // tiny values: zero is a fine half
  return (uint16_t)(sign | ((uint32_t)e << 10 | ((x & 0x7FFFFFu) + 0x1000u) >> 13));
}

// Row r of w as q4 blocks at `out` by GGUF Q4_0's rule (d = the value of largest magnitude / -8, each
// nibble round(v / d) + 8 clamped to 0..15, a tail block padded with 8); `values` gets what they stand for.
void q4_row(const float* w, int cols, uint8_t* out, float* values) {
  for (int c0 = 0; c0 < cols; c0 += kQ4Block, out += kQ4BlockBytes) {
    const int n = cols - c0 < kQ4Block ? cols - c0 : kQ4Block;
    float max = 0.f;
    for (int j = 0; j < n; ++j) max = std::fabs(w[c0 + j]) > std::fabs(max) ? w[c0 + j] : max;
    const uint16_t h = to_half(max / -8.f);
    const float d = f16_to_f32(h), inv = d != 0.f ? 1.f / d : 0.f;
    out[0] = (uint8_t)(h & 0xFF), out[1] = (uint8_t)(h >> 8);
    for (int j = 0; j < 16; ++j) out[2 + j] = 0x88;
    for (int j = 0; j < n; ++j) {
      const long q = std::lround(w[c0 + j] * inv), nibble = (q < -8 ? -8 : q > 7 ? 7 : q) + 8;
      uint8_t& byte = out[2 + j % 16];
      byte = j < 16 ? (uint8_t)((byte & 0xF0) | nibble) : (uint8_t)((byte & 0x0F) | nibble << 4);
      values[c0 + j] = d * (float)(nibble - 8);
    }
  }
}

Stored store(const Vec& w, int rows, int cols, WType type, bool per_row) {
  Stored s;
  s.type = type, s.per_row = per_row, s.f32 = w, s.cols = cols;
  s.values = w;
  if (type == WType::q4) {
    s.q4.resize((size_t)rows * q4_row_bytes(cols));
    for (int r = 0; r < rows; ++r)
      q4_row(w.data() + (size_t)r * cols, cols, s.q4.data() + r * q4_row_bytes(cols), s.values.data() + (size_t)r * cols);
  } else if (type == WType::f16) {
    for (size_t i = 0; i < w.size(); ++i) s.f16.push_back(to_half(w[i])), s.values[i] = f16_to_f32(s.f16[i]);
  } else if (type == WType::i8) {
    const int groups = per_row ? rows : 1;
    const size_t n = (size_t)rows * cols / groups;
    s.i8.resize(w.size());
    for (int g = 0; g < groups; ++g) {
      float amax = 0;
      for (size_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(w[g * n + i]));
      const float sc = amax / 127.f;
      (per_row ? s.scales.emplace_back(sc) : s.scale) = sc;
      for (size_t i = 0; i < n; ++i) {
        s.i8[g * n + i] = (int8_t)std::lround(w[g * n + i] / sc);
        s.values[g * n + i] = sc * (float)s.i8[g * n + i];
      }
    }
  }
  return s;
}

struct StoreKind {
  WType type;
  bool per_row;
  const char* name;
};
const StoreKind kStoreKinds[] = {{WType::f16, false, "f16"},
                                 {WType::i8, true, "i8 per row"},
                                 {WType::i8, false, "i8 one scale"},
                                 {WType::q4, false, "q4"}};  // dense only: the loader converts q4 cores

}  // namespace

TEST_CASE("stored weights: Weights::value and weights_row read f16, i8 and q4 as their f32 values") {
  std::mt19937 rng(30);
  for (int cols : {7, 70}) {  // q4: one tail block; two whole blocks and a tail
    const int rows = 5;
    const Vec w = random_vec(rng, rows * cols);
    for (const StoreKind& k : kStoreKinds) {
      const std::string kind = k.name;
      CAPTURE(kind);
      const Stored s = store(w, rows, cols, k.type, k.per_row);
      const Weights v = s.view();
      for (int r = 0; r < rows; ++r) {
        Vec row(cols), acc(cols, 1.f);
        weights_row(v, cols, r, false, row.data());
        weights_row(v, cols, r, true, acc.data());
        for (int j = 0; j < cols; ++j) {
          CHECK(v.value((int64_t)r * cols + j, r) == s.values[r * cols + j]);
          CHECK(row[j] == s.values[r * cols + j]);
          CHECK(acc[j] == 1.f + s.values[r * cols + j]);
        }
        const Weights tail = v.from((int64_t)r * cols, r);  // a sub-matrix from row r on
        CHECK(tail.value(cols - 1, 0) == s.values[r * cols + cols - 1]);
      }
      // The stored values stand for the weights: |q s - w| <= s/2 (i8), f16 relative 2^-11; q4 within its
      // block's |d| (the clamp at +7 d), |d| = max |w| / 8 <= 1/8 here.
      const float bound = k.type == WType::q4 ? 0.126f : 4e-3f;
      for (size_t i = 0; i < w.size(); ++i) CHECK(std::fabs(s.values[i] - w[i]) <= bound * (1.f + std::fabs(w[i])));
      if (k.type == WType::q4 && cols > kQ4Block) {  // a block's slice: from() on a block boundary of a row
        const Weights second = v.from(3 * (int64_t)cols + kQ4Block, 3);
        CHECK(second.value(5, 0) == s.values[3 * cols + kQ4Block + 5]);
        CHECK(second.value(cols + 1, 1) == s.values[4 * cols + kQ4Block + 1]);
      }
    }
  }
}

TEST_CASE("dense matvec/matmul on f16, i8 and q4 weights: ref equals f32 math on their values, kern equals ref") {
  std::mt19937 rng(31);
  for (const StoreKind& k : kStoreKinds) {
    const std::string kind = k.name;
    CAPTURE(kind);
    for (int rows : {1, 5, 17, 64})
      for (int cols : {1, 3, 16, 33, 129}) {
        CAPTURE(rows);
        CAPTURE(cols);
        const Vec w = random_vec(rng, (size_t)rows * cols), bias = random_vec(rng, (size_t)rows);
        const Stored s = store(w, rows, cols, k.type, k.per_row);
        DenseMatrix D, F;  // D: as stored; F: its values as f32
        D.rows = F.rows = rows, D.cols = F.cols = cols, D.w = s.view(), F.w = s.values.data();
        D.bias = F.bias = bias.data();
        for (int batch : {1, 2, 4, 7}) {
          CAPTURE(batch);
          const Vec X = random_vec(rng, (size_t)cols * batch);
          Vec expect((size_t)rows * batch), from_f32((size_t)rows * batch);
          ref::dense_matmul(D, X.data(), batch, expect.data());
          ref::dense_matmul(F, X.data(), batch, from_f32.data());
          CHECK(rel_err(expect.data(), from_f32.data(), expect.size()) < 1e-5);
          for_each_variant([&] {
            Vec y = nan_vec((size_t)rows * batch);
            kern::dense_matmul(D, X.data(), batch, y.data());
            CHECK(rel_err(y.data(), expect.data(), y.size()) < 1e-5);
          });
        }
      }
  }
}

TEST_CASE("dense matmul with scratch (broadcast form) and threads: kern equals ref, every tile and lane tail") {
  // Batches below the broadcast form's threshold (16), filling two vectors of tokens, one, the narrower
  // types' vectors and padded lanes; rows that take the 12- (6-), 4- and 1-row tiles; cols below its
  // threshold (256), past a conversion chunk (256) with a sum chunk's tail, of three reduction blocks.
  // The threaded form runs its parts one after another here (each writes its rows into Y's columns).
  std::mt19937 rng(33);
  const Workers serial{3, [](void*, int n, void (*task)(void*, int, int), void* arg) {
                         for (int i = n - 1; i >= 0; --i) task(arg, i, 0);  // any order must do
                       },
                       nullptr};
  for (const StoreKind& k :
       {StoreKind{WType::f32, false, "f32"}, kStoreKinds[0], kStoreKinds[1], kStoreKinds[2], kStoreKinds[3]}) {
    const std::string kind = k.name;
    CAPTURE(kind);
    for (int rows : {1, 13, 29})
      for (int cols : {33, 300, 2100}) {
        CAPTURE(rows);
        CAPTURE(cols);
        const Vec w = random_vec(rng, (size_t)rows * cols), bias = random_vec(rng, (size_t)rows);
        const Stored s = store(w, rows, cols, k.type, k.per_row);
        DenseMatrix D;
        D.rows = rows, D.cols = cols, D.w = s.view(), D.bias = bias.data();
        for (int batch : {1, 3, 4, 6, 13, 16, 20, 33, 37}) {
          CAPTURE(batch);
          const Vec X = random_vec(rng, (size_t)cols * batch);
          Vec expect((size_t)rows * batch);
          ref::dense_matmul(D, X.data(), batch, expect.data());
          for_each_variant([&] {
            for (const Workers* wk : {(const Workers*)nullptr, &serial}) {
              CAPTURE(wk != nullptr);
              GuardedWorkspace scratch(kern::dense_scratch_floats(rows, cols, batch));
              Vec y = nan_vec((size_t)rows * batch);
              kern::dense_matmul(D, X.data(), batch, y.data(), scratch.data(), wk);
              // |weights|, |X| <= 1: a sum's rounding error is far below cols * 1e-6 (one output may
              // cancel to near 0, so not relative to it), a wrong tile or lane is off by O(1).
              CHECK(rel_err(y.data(), expect.data(), y.size()) * max_abs(expect) < 1e-6 * cols);
              CHECK(scratch.guard_intact());
            }
          });
        }
      }
  }
}

TEST_CASE("a block's input packed once serves every matrix that reads it: the bits of packing it for each") {
  // A layer's q, k and v (GQA: fewer rows for k and v) read one packed input, then the next input is
  // packed into the same scratch (o's). Each product must be bit for bit the one of packing its input
  // for it alone, at 1, 3 and 16 threads (tilings of rows and tokens differ with the rows and threads),
  // and one packed input must not leak into the next. Batches of 16 and more through rows of 256 and
  // more columns run the broadcast form (with partial sums past 1024); 13 tokens the dot form.
  std::mt19937 rng(34);
  auto serial = [](int threads) {  // parts one after another, in reverse order (any order must do)
    return Workers{threads,
                   [](void*, int n, void (*task)(void*, int, int), void* arg) {
                     for (int i = n - 1; i >= 0; --i) task(arg, i, 0);
                   },
                   nullptr};
  };
  const Workers three = serial(3), sixteen = serial(16);
  for (const StoreKind& k : {StoreKind{WType::f32, false, "f32"}, kStoreKinds[0], kStoreKinds[2], kStoreKinds[3]}) {
    const std::string kind = k.name;
    CAPTURE(kind);
    for (int cols : {300, 1100}) {
      CAPTURE(cols);
      const int row_counts[3] = {100, 40, 29};  // q, k, v
      std::vector<Stored> stored;
      std::vector<Vec> biases;
      std::vector<DenseMatrix> M(3);
      for (int i = 0; i < 3; ++i) {
        stored.push_back(store(random_vec(rng, (size_t)row_counts[i] * cols), row_counts[i], cols, k.type, k.per_row));
        biases.push_back(random_vec(rng, (size_t)row_counts[i]));
      }
      for (int i = 0; i < 3; ++i) M[i].rows = row_counts[i], M[i].cols = cols, M[i].w = stored[i].view(), M[i].bias = biases[i].data();
      // (This case was 60% of test_kernels' time under qemu-user: 2 threads and a batch of 37 were
      // dropped from it; 3 and 16 threads cut the rows and tokens differently, 70 has a token tail.)
      for (int batch : {13, 16, 70}) {
        CAPTURE(batch);
        const Vec X = random_vec(rng, (size_t)cols * batch), X2 = random_vec(rng, (size_t)cols * batch);
        // The scalar reference's products, once (every variant and thread count is held to the same).
        std::vector<Vec> expect;
        for (const Vec* in : {&X, &X2})
          for (int i = 0; i < 3; ++i) {
            expect.emplace_back((size_t)M[i].rows * batch);
            ref::dense_matmul(M[i], in->data(), batch, expect.back().data());
          }
        for_each_variant([&] {
          std::vector<Vec> first;  // one thread's products of X, then of X2
          for (const Workers* wk : {(const Workers*)nullptr, &three, &sixteen}) {
            CAPTURE(wk ? wk->threads : 1);
            GuardedWorkspace shared(kern::dense_scratch_floats(100, cols, batch));
            std::vector<Vec> got;
            for (const Vec* in : {&X, &X2}) {
              const kern::PackedInput packed = kern::pack_input(in->data(), batch, cols, shared.data(), wk);
              CHECK((packed.xt != nullptr) == (batch >= 16));
              for (int i = 0; i < 3; ++i) {
                GuardedWorkspace own(kern::dense_scratch_floats(M[i].rows, cols, batch));
                Vec alone = nan_vec((size_t)M[i].rows * batch), y = nan_vec((size_t)M[i].rows * batch);
                kern::dense_matmul(M[i], in->data(), batch, alone.data(), own.data(), wk);
                kern::dense_matmul(M[i], packed, y.data(), wk);
                CHECK(std::memcmp(y.data(), alone.data(), y.size() * sizeof(float)) == 0);
                const Vec& want = expect[got.size()];
                CHECK(rel_err(y.data(), want.data(), y.size()) * max_abs(want) < 1e-6 * cols);
                got.push_back(y);
              }
            }
            CHECK(shared.guard_intact());
            if (first.empty()) first = got;
            for (size_t i = 0; i < got.size(); ++i)
              CHECK(std::memcmp(got[i].data(), first[i].data(), got[i].size() * sizeof(float)) == 0);
          }
        });
      }
    }
  }
}

TEST_CASE("TT matvec/matmul on f16 and i8 cores: ref equals the f32 cores' values, kern equals ref") {
  std::mt19937 rng(32);
  const TT cases[] = {
      make_tt(rng, {3, 5, 7}, {7, 5, 3}, {5, 7}),
      make_tt(rng, {4, 4, 8}, {4, 4, 8}, {8, 8}),
      make_tt(rng, {8, 12, 8}, {8, 12, 8}, {8, 8}),
      make_tt(rng, {2, 16, 32}, {32, 16, 2}, {3, 4}),
      make_tt(rng, {12, 20}, {20, 12}, {5}),
      make_tt(rng, {4, 6}, {6, 5}, {6}),  // fibres of 5 and 6: the 4-float loads
  };
  for (const StoreKind& k : {kStoreKinds[0], kStoreKinds[2]}) {  // cores: f16, i8 with one scale each
    const std::string kind = k.name;
    CAPTURE(kind);
    for (const TT& t : cases) {
      const TTShape& sh = t.shape;
      Stored st[kMaxTTFactors];
      TT values = t;  // the same TT with each core's stored values as f32
      TTMatrix W = t.view();
      for (int c = 0; c < sh.K; ++c) {
        st[c] = store(t.cores[c], 1, (int)t.cores[c].size(), k.type, false);
        values.cores[c] = st[c].values;
        W.cores[c] = st[c].view();
      }
      const TTMatrix V = values.view();
      const size_t M = (size_t)sh.rows(), N = (size_t)sh.cols();
      for (int batch : {1, 3}) {
        const Vec X = random_vec(rng, N * batch);
        Vec ws(ref::tt_workspace_floats(sh, batch));
        for (int rank = 1; rank <= max_rank(sh); rank += 2) {
          CAPTURE(M);
          CAPTURE(N);
          CAPTURE(batch);
          CAPTURE(rank);
          Vec expect(M * batch), from_f32(M * batch);
          ref::tt_matmul(W, rank, X.data(), batch, expect.data(), ws.data());
          ref::tt_matmul(V, rank, X.data(), batch, from_f32.data(), ws.data());
          CHECK(rel_err(expect.data(), from_f32.data(), expect.size()) < 1e-5);
          for_each_variant([&] {
            GuardedWorkspace gw(kern::tt_workspace_floats(sh, batch));
            Vec y = nan_vec(M * batch);
            kern::tt_matmul(W, rank, X.data(), batch, y.data(), gw.data());
            REQUIRE(all_finite(y.data(), y.size()));
            CHECK(rel_err(y.data(), expect.data(), y.size()) < 2e-6 * std::sqrt((double)N));
            CHECK(gw.guard_intact());
            if (std::string(kern::simd_arch()) == "avx512") {  // the 512-bit TT step (not dispatched)
              Vec y512 = nan_vec(M * batch);
              tt::run_plan(tt::best_plan(W, rank, batch), W, batch, X.data(), y512.data(), gw.data(),
                           kern::avx512_tt_step);
              CHECK(rel_err(y512.data(), expect.data(), y512.size()) < 2e-6 * std::sqrt((double)N));
            }
            if (batch > 1 && sh.K >= 2) {  // as columns (the converting steps; kern::tt_matmul does not pick it)
              Vec yc = nan_vec(M * batch);
              tt::run_columns(tt::best_plan(W, rank, 1), W, batch, X.data(), yc.data(), gw.data(),
                              kern::active().tt_step, kern::active().transpose);
              CHECK(rel_err(yc.data(), expect.data(), yc.size()) < 2e-6 * std::sqrt((double)N));
              CHECK(gw.guard_intact());
            }
            // Packed as a context packs it: the cores widened to f32 once, then the f32 kernels (and,
            // for a block, the columns form).
            tt::Plan packed = tt::best_plan(W, rank, 1);
            Vec pack(tt::packed_floats(packed));
            tt::pack_plan(&packed, pack.data());
            for (int step = 0; step < packed.K; ++step) REQUIRE(packed.steps[step].packed != nullptr);
            Vec yk = nan_vec(M * batch);
            kern::tt_matmul(W, packed, X.data(), batch, yk.data(), gw.data());
            REQUIRE(all_finite(yk.data(), yk.size()));
            CHECK(rel_err(yk.data(), expect.data(), yk.size()) < 2e-6 * std::sqrt((double)N));
            if (batch > 1 && sh.K >= 2) {
              tt::run_columns(packed, W, batch, X.data(), yk.data(), gw.data(), kern::active().tt_step,
                              kern::active().transpose);
              CHECK(rel_err(yk.data(), expect.data(), yk.size()) < 2e-6 * std::sqrt((double)N));
            }
            CHECK(gw.guard_intact());
          });
        }
      }
    }
  }
}
