// The physical limits beside the tok/s figures (bench/README.md "Roofline"): memory read bandwidth by a
// STREAM-like pass (sum of a large array; triad a = b + s c) and the FMA peak (12 independent chains of
// vector FMAs: AVX2 and AVX-512 where the CPU has them), on 1 thread and on N threads.
//
//   bench_roofline [--threads 1,2,4,8,16] [--mib 1024]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ROOFLINE_X86 1
#endif

namespace {

using Clock = std::chrono::steady_clock;
typedef float v8 __attribute__((vector_size(32)));

double seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Sum of n floats (n a multiple of 32), four independent vector chains.
float sum_pass(const float* a, size_t n) {
  v8 s0 = {}, s1 = {}, s2 = {}, s3 = {};
  for (size_t i = 0; i < n; i += 32) {
    v8 x0, x1, x2, x3;
    std::memcpy(&x0, a + i, 32), std::memcpy(&x1, a + i + 8, 32), std::memcpy(&x2, a + i + 16, 32),
        std::memcpy(&x3, a + i + 24, 32);
    s0 += x0, s1 += x1, s2 += x2, s3 += x3;
  }
  v8 s = (s0 + s1) + (s2 + s3);
  float r = 0;
  for (int k = 0; k < 8; ++k) r += s[k];
  return r;
}

// Runs fn(thread, n_threads) on n threads at once; returns the wall time of the slowest.
template <class F>
double on_threads(int n, const F& fn) {
  std::vector<std::thread> ts;
  std::atomic<int> ready{0};
  auto t0 = Clock::now();
  std::atomic<bool> go{false};
  for (int t = 0; t < n; ++t)
    ts.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) {
      }
      fn(t, n);
    });
  while (ready.load() < n) {
  }
  t0 = Clock::now();
  go = true;
  for (auto& t : ts) t.join();
  return seconds(t0);
}

volatile float g_sink;

// GB/s of reading `bytes` (split over the threads), best of `reps`.
double read_bw(const std::vector<float>& a, size_t bytes, int threads, int reps) {
  const size_t n = bytes / sizeof(float) / 32 / threads * 32;
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    double s = on_threads(threads, [&](int t, int) { g_sink = sum_pass(a.data() + t * n, n); });
    best = std::min(best, s);
  }
  return (double)n * threads * sizeof(float) / best / 1e9;
}

// STREAM triad a = b + s c over three arrays of `floats` each (split over the threads): GB/s counting
// 3 x 4 bytes per element, best of `reps`.
double triad_bw(std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c, size_t floats,
                int threads, int reps) {
  const size_t n = floats / threads;
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    double s = on_threads(threads, [&](int t, int) {
      float* x = a.data() + t * n;
      const float *y = b.data() + t * n, *z = c.data() + t * n;
      for (size_t i = 0; i < n; ++i) x[i] = y[i] + 3.0f * z[i];
    });
    best = std::min(best, s);
  }
  return 3.0 * n * threads * sizeof(float) / best / 1e9;
}

#ifdef ROOFLINE_X86
__attribute__((target("avx2,fma"))) float fma_avx2(long iters) {
  __m256 acc[12];
  for (int k = 0; k < 12; ++k) acc[k] = _mm256_set1_ps(0.001f * k);
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.0001f);
  for (long i = 0; i < iters; ++i)
    for (int k = 0; k < 12; ++k) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
  __m256 s = acc[0];
  for (int k = 1; k < 12; ++k) s = _mm256_add_ps(s, acc[k]);  // every chain is used
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}
__attribute__((target("avx512f"))) float fma_avx512(long iters) {
  __m512 acc[12];
  for (int k = 0; k < 12; ++k) acc[k] = _mm512_set1_ps(0.001f * k);
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.0001f);
  for (long i = 0; i < iters; ++i)
    for (int k = 0; k < 12; ++k) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
  __m512 s = acc[0];
  for (int k = 1; k < 12; ++k) s = _mm512_add_ps(s, acc[k]);  // every chain is used
  float out[16];
  _mm512_storeu_ps(out, s);
  return out[0];
}
#endif

// GFLOP/s (an FMA = 2 FLOPs) of `width`-float FMAs on n threads.
double fma_peak(float (*fn)(long), int width, int threads) {
  const long iters = 20000000;
  double s = on_threads(threads, [&](int, int) { g_sink = fn(iters); });
  return 2.0 * 12 * width * (double)iters * threads / s / 1e9;
}

std::vector<int> parse_list(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p) ++p;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads = {1};
  size_t mib = 1024;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = parse_list(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--mib")) mib = std::strtoul(argv[i + 1], nullptr, 10);
  }
  const size_t big = mib << 20;
  std::vector<float> a(big / sizeof(float), 1.0f);
  std::printf("| threads | read 1 MiB GB/s | read 32 MiB GB/s | read %zu MiB GB/s | triad %zu MiB x3 GB/s |"
#ifdef ROOFLINE_X86
              " AVX2 FMA GFLOP/s | AVX-512 FMA GFLOP/s |"
#endif
              "\n|---:|---:|---:|---:|---:|"
#ifdef ROOFLINE_X86
              "---:|---:|"
#endif
              "\n",
              mib, mib / 4);
  std::vector<float> b(big / 4 / sizeof(float), 2.0f), c(big / 4 / sizeof(float), 0.5f), d(big / 4 / sizeof(float));
  for (int t : threads) {
    std::printf("| %d | %.1f | %.1f | %.1f | %.1f |", t, read_bw(a, (size_t)t << 20, t, 50),
                read_bw(a, (size_t)32 << 20, t, 10), read_bw(a, big, t, 3), triad_bw(d, b, c, b.size(), t, 3));
#ifdef ROOFLINE_X86
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = __builtin_cpu_supports("avx512f");
    if (avx2) std::printf(" %.1f |", fma_peak(fma_avx2, 8, t));
    else std::printf(" - |");
    if (avx512) std::printf(" %.1f |", fma_peak(fma_avx512, 16, t));
    else std::printf(" - |");
#endif
    std::printf("\n");
    std::fflush(stdout);
  }
  return 0;
}
