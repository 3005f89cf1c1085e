// Execution by cost (issue 27 part 2, docs/runtime.md "Execution by cost"): at context creation each TT
// linear whose rank is fixed for the context runs either its TT plan or a dense copy (f32, or int8 with
// a scale per row) made once into the arena, whichever the cost model predicts faster, within the
// context's memory budget for the copies.
#include <initializer_list>

#include "model/forward.h"

namespace qtf {
namespace {

// One kernel family's speed on one thread, one vector (decode): F FLOP/s, B bytes/s of weights read, and
// a fixed cost per call. Fitted by bench/exec_cost on the development machine (AMD EPYC Zen 4, AVX-512
// VNNI table, one thread pinned, 2026-12-07, the 2 cores shared: load average ~7, so +-30%): F the
// median over shapes whose weights fit in L2, B over matrices of more than 24 MiB, the call cost half
// the smallest shapes' time (docs/runtime.md "Execution by cost" has the run). TT cores never leave the
// caches in those shapes: their B is the dense one's. The choice needs the ratios between families
// more than the absolute figures.
struct Speed {
  double flops_per_s, bytes_per_s, call_s;
};
constexpr Speed kTTSpeed{81e9, 20e9, 0.22e-6};       // tt::Plan steps, factors 4-16 (ranks 4-28)
constexpr Speed kLowRankSpeed{43e9, 20e9, 0.33e-6};  // the same kernels on A B (two long thin steps)
constexpr Speed kDenseF32Speed{32e9, 20e9, 0.84e-6};  // dense_matmul, f32
constexpr Speed kDenseQ8Speed{52e9, 20e9, 0.51e-6};   // dense_matmul, i8 widened to f32

// F is fitted on matrices that stay in L2, so it already holds their reads; B (from DRAM) applies to a
// matrix larger than that (Zen 4: 1 MiB of L2 per core).
constexpr int64_t kCacheBytes = 1 << 20;

double predict(const Speed& v, int64_t flops, int64_t bytes) {
  const double compute = (double)flops / v.flops_per_s;
  const double memory = bytes > kCacheBytes ? (double)bytes / v.bytes_per_s : 0.0;
  return (compute > memory ? compute : memory) + v.call_s;
}

// A low-rank A B as budget.py writes it: two cores whose factors of 1 make them [1, M, 1, r] and
// [r, 1, N, 1] (or the transpose's [1, 1, N, r] and [r, M, 1, 1]).
bool is_low_rank(const TTShape& s) {
  return s.K == 2 && ((s.n[0] == 1 && s.m[1] == 1) || (s.m[0] == 1 && s.n[1] == 1));
}

const Linear* layer_linear(const Layer& ly, int j) {
  const Linear* all[7] = {&ly.q, &ly.k, &ly.v, &ly.o, &ly.up, &ly.down, &ly.gate};
  return all[j];
}

int64_t f32_bytes(const Linear& lin) { return 4ll * lin.rows * lin.cols; }
int64_t q8_bytes(const Linear& lin) { return (int64_t)lin.rows * lin.cols + 4ll * lin.rows; }
int64_t copy_bytes(const Linear& lin, LinearPath p) {
  return p == LinearPath::dense_f32 ? f32_bytes(lin) : p == LinearPath::dense_q8 ? q8_bytes(lin) : 0;
}

// What one matvec of `lin` costs on each path at run-time rank `rank`.
void price(const Linear& lin, int rank, LinearExec* e) {
  const tt::Plan plan = tt::best_plan(lin.tt_w, rank, 1);
  int64_t core_bytes = 0;
  for (int k = 0; k < plan.K; ++k) core_bytes += 4ll * plan.steps[k].rows() * plan.steps[k].red();  // packed f32
  const int64_t bias = lin.tt_w.bias ? lin.rows : 0, mn = (int64_t)lin.rows * lin.cols;
  e->stored.flops = plan.flops + bias;
  e->stored.bytes = core_bytes;
  e->stored.seconds = predict(is_low_rank(lin.tt_w.shape) ? kLowRankSpeed : kTTSpeed, e->stored.flops, core_bytes);
  e->f32.flops = e->q8.flops = 2 * mn + bias;
  e->f32.bytes = f32_bytes(lin);
  e->q8.bytes = q8_bytes(lin);
  e->f32.seconds = predict(kDenseF32Speed, e->f32.flops, e->f32.bytes);
  e->q8.seconds = predict(kDenseQ8Speed, e->q8.flops, e->q8.bytes);
}

double seconds_of(const LinearExec& e, LinearPath p) {
  return p == LinearPath::dense_f32 ? e.f32.seconds : p == LinearPath::dense_q8 ? e.q8.seconds : e.stored.seconds;
}

}  // namespace

const char* linear_path_name(LinearPath p) {
  switch (p) {
    case LinearPath::dense: return "dense";
    case LinearPath::tt: return "tt";
    case LinearPath::low_rank: return "low-rank";
    case LinearPath::dense_f32: return "dense-f32";
    case LinearPath::dense_q8: return "dense-q8";
  }
  return "?";
}

int context_rank(const ModelConfig& c, const RunOptions& opt) {
  // As rank_for (forward.cpp): the model's rank when it is not adaptive (or has no meter to adapt by),
  // or the one value the schedule can take. A rank forced by RunOptions::fixed_rank is a study of the
  // TT plans at that rank (FLOPs and speed by rank): no copies then.
  if (!c.tensorized || opt.fixed_rank > 0) return 0;
  const int r = !c.adaptive_rank || !c.has_encoder() ? c.tt_rank : c.r_min == c.r_max ? c.r_min : 0;
  return r > c.tt_rank ? c.tt_rank : r;
}

int64_t auto_mem_budget(const Model& m) {
  int64_t total = 0;
  for (int l = 0; l < m.cfg.n_layers; ++l)
    for (int j = 0; j < 7; ++j) {
      const Linear& lin = *layer_linear(m.layers[l], j);
      if (lin.tt) total += q8_bytes(lin);
    }
  return total;
}

// Every linear's cheapest path, then, while the copies exceed the budget, the step down (f32 -> q8 or
// TT, q8 -> TT) that loses the least predicted time per byte it frees; then any linear left slower than
// its pick takes the fastest copy that still fits. Fills paths[L * 7] and, when given, exec[L * 7] (all
// but the copies' storage, which the layout carves).
ExecSummary plan_execution(const Model& m, const RunOptions& opt, LinearPath* paths, LinearExec* exec) {
  const ModelConfig& c = m.cfg;
  const int n = c.n_layers * 7;
  ExecSummary sum;
  sum.fixed_rank = context_rank(c, opt);
  sum.budget = opt.mem_budget < 0 ? auto_mem_budget(m) : opt.mem_budget;
  // The predictions, kept per linear (a small array on the stack: no allocation at context creation).
  float secs[kMaxLayers * 7][3];
  LinearPath best[kMaxLayers * 7];
  const LinearPath options[3] = {LinearPath::tt, LinearPath::dense_f32, LinearPath::dense_q8};
  const bool f32_ok = opt.mem_copy != kCopyQ8, q8_ok = opt.mem_copy != kCopyF32;
  for (int i = 0; i < n; ++i) {
    const Linear& lin = *layer_linear(m.layers[i / 7], i % 7);
    LinearExec e;
    if (lin.tt) {
      price(lin, sum.fixed_rank > 0 ? sum.fixed_rank : c.tt_rank, &e);
      e.rank = sum.fixed_rank;
      const LinearPath stored = is_low_rank(lin.tt_w.shape) ? LinearPath::low_rank : LinearPath::tt;
      e.path = e.best = stored;
      for (int o = 0; o < 3; ++o) secs[i][o] = (float)seconds_of(e, options[o]);
      if (sum.fixed_rank > 0) {  // adaptive rank: the copy would hold one rank of several
        if (f32_ok && e.f32.seconds < seconds_of(e, e.best)) e.best = LinearPath::dense_f32;
        if (q8_ok && e.q8.seconds < seconds_of(e, e.best)) e.best = LinearPath::dense_q8;
      }
      e.path = e.best;
      sum.wanted += copy_bytes(lin, e.best);
      sum.best_seconds += seconds_of(e, e.best);
    }
    best[i] = paths[i] = e.path;
    if (exec) exec[i] = e;
  }
  auto used = [&]() {
    int64_t b = 0;
    for (int i = 0; i < n; ++i) b += copy_bytes(*layer_linear(m.layers[i / 7], i % 7), paths[i]);
    return b;
  };
  auto secs_of = [&](int i, LinearPath p) {
    return p == LinearPath::dense_f32 ? secs[i][1] : p == LinearPath::dense_q8 ? secs[i][2] : secs[i][0];
  };
  for (int64_t bytes = used(); bytes > sum.budget; bytes = used()) {
    int pick = -1;
    LinearPath to = LinearPath::tt;
    double worst = 0;
    for (int i = 0; i < n; ++i) {
      if (paths[i] != LinearPath::dense_f32 && paths[i] != LinearPath::dense_q8) continue;
      const Linear& lin = *layer_linear(m.layers[i / 7], i % 7);
      const LinearPath stored = is_low_rank(lin.tt_w.shape) ? LinearPath::low_rank : LinearPath::tt;
      const LinearPath downs[2] = {LinearPath::dense_q8, stored};
      for (const LinearPath d : downs) {
        if (d == paths[i] || (d == LinearPath::dense_q8 && !q8_ok)) continue;
        const double freed = (double)(copy_bytes(lin, paths[i]) - copy_bytes(lin, d));
        if (freed <= 0) continue;
        const double loss = ((double)secs_of(i, d) - secs_of(i, paths[i])) / freed;
        if (pick < 0 || loss < worst) pick = i, to = d, worst = loss;
      }
    }
    paths[pick] = to;  // some copy is left while bytes > budget >= 0, so pick >= 0
  }
  int64_t bytes = used();
  for (int i = 0; i < n; ++i) {
    if (paths[i] == best[i]) continue;
    const Linear& lin = *layer_linear(m.layers[i / 7], i % 7);
    for (const LinearPath p : {LinearPath::dense_f32, LinearPath::dense_q8}) {
      if (!(p == LinearPath::dense_f32 ? f32_ok : q8_ok)) continue;
      const int64_t more = copy_bytes(lin, p) - copy_bytes(lin, paths[i]);
      if (secs_of(i, p) < secs_of(i, paths[i]) && bytes + more <= sum.budget) {
        bytes += more;
        paths[i] = p;
      }
    }
  }
  for (int i = 0; i < n; ++i) {
    if (!layer_linear(m.layers[i / 7], i % 7)->tt) continue;
    sum.forced += paths[i] != best[i];
    sum.seconds += secs_of(i, paths[i]);
    if (exec) {
      exec[i].path = paths[i];
      exec[i].bytes = copy_bytes(*layer_linear(m.layers[i / 7], i % 7), paths[i]);
    }
  }
  sum.bytes = bytes;
  return sum;
}

}  // namespace qtf
