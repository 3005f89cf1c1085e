// The constants of execution by cost (engine/model/exec_cost.cpp, docs/runtime.md "Execution by cost"): one
// vector (decode) through each kernel family a linear can run as, on one thread, timed over shapes from
// in-cache to far larger than the caches, then fitted to time = max(flops / F, bytes / B) + call:
//   call: the median time of the smallest shapes; F: the median FLOP/s of the shapes whose weights fit
//   in L2 (< 512 KiB), after the call cost; B: the bytes/s of the shapes over 24 MiB.
// Families: tt (genuine TT plans, packed f32 cores as a context packs them), low-rank (two cores with
// factors of 1: budget.py's A B), dense f32 and dense q8 (int8 rows, a scale per row, widened to f32:
// dense_matmul without act_quant).
//
//   bench_exec_cost [--quick]     (QTF_SIMD picks the kernel variant)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/tt_plan.h"

using namespace qtf;

namespace {

using Clock = std::chrono::steady_clock;

struct Sample {
  double flops, bytes, seconds;
};

// Median seconds of one call of f over repeated batches lasting ~20 ms each.
template <class F>
double time_call(const F& f) {
  f();
  int reps = 1;
  for (;;) {
    const auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) f();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s > 0.02) break;
    reps *= 2;
  }
  std::vector<double> runs;
  for (int k = 0; k < 5; ++k) {
    const auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) f();
    runs.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / reps);
  }
  std::sort(runs.begin(), runs.end());
  return runs[2];
}

std::mt19937 rng(7);
std::vector<float> randoms(size_t n) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

Sample dense(int M, int N, bool q8) {
  std::vector<float> w = randoms((size_t)M * N), x = randoms(N), y(M);
  std::vector<int8_t> q((size_t)M * N);
  std::vector<float> scales(M);
  for (int r = 0; r < M; ++r) scales[r] = quantize_i8(w.data() + (size_t)r * N, N, q.data() + (size_t)r * N);
  DenseMatrix W{M, N, q8 ? Weights(WType::i8, q.data(), scales.data(), 1.f) : Weights(w.data()), nullptr};
  const double s = time_call([&] { kern::dense_matmul(W, x.data(), 1, y.data(), nullptr, nullptr); });
  return {2.0 * M * N, q8 ? (double)M * N + 4.0 * M : 4.0 * M * N, s};
}

// A TT of K cores with these factors at stored rank r, run at rank r from packed plans.
Sample tt_sample(const std::vector<int>& m, const std::vector<int>& n, int r) {
  TTMatrix W;
  W.shape.K = (int)m.size();
  std::vector<std::vector<float>> cores(m.size());
  for (int k = 0; k <= W.shape.K; ++k) W.shape.r[k] = k == 0 || k == W.shape.K ? 1 : r;
  for (int k = 0; k < W.shape.K; ++k) {
    W.shape.m[k] = m[k];
    W.shape.n[k] = n[k];
    cores[k] = randoms((size_t)W.shape.r[k] * m[k] * n[k] * W.shape.r[k + 1]);
    W.cores[k] = Weights(cores[k].data());
  }
  tt::Plan plan = tt::best_plan(W, r, 1);
  std::vector<float> packed(tt::packed_floats(plan) + 16);
  float* dst = packed.data() + (16 - (reinterpret_cast<uintptr_t>(packed.data()) / 4) % 16) % 16;  // 64-byte aligned
  tt::pack_plan(&plan, dst);
  // Slack after y and the workspace: a panel of kPanelRows may be stored whole (as in a context, whose
  // arena buffers are 64-byte aligned).
  std::vector<float> x = randoms(W.shape.cols()), y(W.shape.rows() + 64), ws(tt::workspace_floats(W.shape, 1) + 64);
  const double s = time_call([&] { kern::tt_matmul(W, plan, x.data(), 1, y.data(), ws.data()); });
  double bytes = 0;
  for (int k = 0; k < plan.K; ++k) bytes += 4.0 * plan.steps[k].rows() * plan.steps[k].red();
  return {(double)plan.flops, bytes, s};
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void fit(const char* family, const std::vector<Sample>& s) {
  std::vector<Sample> by_size = s;
  std::sort(by_size.begin(), by_size.end(), [](const Sample& a, const Sample& b) { return a.flops < b.flops; });
  std::vector<double> small, f, b;
  for (size_t i = 0; i < by_size.size() && i < 2; ++i) small.push_back(by_size[i].seconds);
  const double call = median(small) * 0.5;  // half the smallest shapes' time: the rest is their work
  for (const Sample& x : s) {
    if (x.bytes < 512 * 1024) f.push_back(x.flops / (x.seconds - call));
    if (x.bytes > 24.0 * 1024 * 1024) b.push_back(x.bytes / (x.seconds - call));
  }
  std::printf("FIT %-10s F %.3g FLOP/s  B %.3g B/s  call %.3g s  (%zu in-cache, %zu large shapes)\n", family, median(f),
              median(b), call, f.size(), b.size());
}

void show(const char* family, const char* shape, const Sample& x) {
  std::printf("%-10s %-26s %12.0f FLOPs %12.0f bytes %10.3f us  %7.2f GFLOP/s %7.2f GB/s\n", family, shape, x.flops,
              x.bytes, x.seconds * 1e6, x.flops / x.seconds / 1e9, x.bytes / x.seconds / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && !std::strcmp(argv[1], "--quick");
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (const char* v = std::getenv("QTF_SIMD")) {
    const Status st = kern::select_simd(v);
    if (!st.ok()) {
      std::fprintf(stderr, "QTF_SIMD: %s\n", st.message());
      return 2;
    }
  }
  std::printf("kernel variant %s, one thread, one vector\n", kern::simd_arch());
  const int dims[][2] = {{64, 64}, {128, 128}, {128, 512}, {512, 128}, {256, 256}, {288, 768}, {768, 768},
                         {2048, 2048}, {4096, 4096}, {4096, 8192}};
  const int n_dims = quick ? 8 : 10;
  char name[64];
  {
    struct Case {
      std::vector<int> m, n;
      const char* label;
    } cases[] = {{{4, 4, 8}, {4, 4, 8}, "128x128 [4,4,8]"},
                 {{8, 8, 8}, {4, 4, 8}, "512x128 [8,8,8][4,4,8]"},
                 {{4, 4, 8}, {8, 8, 8}, "128x512"},
                 {{8, 8, 12}, {8, 8, 12}, "768x768 [8,8,12]"},
                 {{8, 8}, {8, 8}, "64x64 [8,8]"},
                 {{16, 16, 16}, {16, 16, 16}, "4096x4096 [16,16,16]"}};
    std::vector<Sample> all;
    for (const Case& c : cases)
      for (const int r : {4, 8, 16, 28}) {
        const Sample x = tt_sample(c.m, c.n, r);
        std::snprintf(name, sizeof name, "%s r%d", c.label, r);
        show("tt", name, x);
        all.push_back(x);
      }
    fit("tt", all);
  }
  {
    std::vector<Sample> all;
    // The two largest died with bad_alloc until two-core TT workspaces were sized for the order every
    // rank picks (they had asked for M r N floats: 16 GB at 4096x4096 r256).
    const int lr[][3] = {{64, 172, 8}, {64, 172, 48}, {128, 384, 64}, {384, 128, 128}, {512, 128, 28},
                         {768, 2048, 64}, {768, 2048, 256}, {4096, 4096, 256}, {4096, 11008, 512}};
    const int n_lr = quick ? 7 : 9;
    for (int i = 0; i < n_lr; ++i) {
      const int M = lr[i][0], N = lr[i][1], r = lr[i][2];
      const Sample x = tt_sample({M, 1}, {1, N}, r);
      std::snprintf(name, sizeof name, "%dx%d r%d", M, N, r);
      show("low-rank", name, x);
      all.push_back(x);
    }
    fit("low-rank", all);
  }
  for (const bool q8 : {false, true}) {
    std::vector<Sample> all;
    for (int i = 0; i < n_dims; ++i) {
      const Sample x = dense(dims[i][0], dims[i][1], q8);
      std::snprintf(name, sizeof name, "%dx%d", dims[i][0], dims[i][1]);
      show(q8 ? "dense-q8" : "dense-f32", name, x);
      all.push_back(x);
    }
    fit(q8 ? "dense-q8" : "dense-f32", all);
  }
  return 0;
}
