// Soak: a long generation session on one context, reset whenever the context is full, with peak RSS
// (getrusage) and current RSS (/proc/self/statm) and tokens/s per block. Memory must stay flat after
// the first block (everything is sized at load and context creation) and speed must stay level.
// usage: bench_soak [MODEL.qtf|tiny] [TOKENS=100000] [BLOCK=10000]
//   default model: models/shakespeare-qtf.qtf when present, else a random tiny model.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/resource.h>
#include <unistd.h>
#include <vector>

#include "host/session.h"
#include "support/tiny_model.h"

using namespace qtf;

namespace {

long peak_rss_kib() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;  // KiB on Linux
}

double cpu_seconds() {  // this process's user + system time: unaffected by other load on the machine
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

long current_rss_kib() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
  std::fclose(f);
  return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : QTF_SOURCE_DIR "/models/shakespeare-qtf.qtf";
  const long total = argc > 2 ? std::atol(argv[2]) : 100000;
  const long block = argc > 3 ? std::atol(argv[3]) : 10000;
  if (total <= 0 || block <= 0) {
    std::fprintf(stderr, "usage: bench_soak [MODEL.qtf|tiny] [TOKENS] [BLOCK]\n");
    return 2;
  }
  host::LoadedModel lm;
  std::vector<uint8_t> tiny;
  Status st;
  if (path != "tiny" && access(path.c_str(), R_OK) == 0) {
    st = lm.load_file(path.c_str());
  } else {
    path = "tiny (random, tests/support/tiny_model.h defaults)";
    tiny = testing::make_tiny_model(testing::TinyConfig{});
    st = lm.load_memory(tiny.data(), tiny.size());
  }
  if (!st.ok()) {
    std::fprintf(stderr, "bench_soak: %s\n", st.message());
    return 1;
  }
  host::HostContext hc;
  host::HostSampler hs;
  SamplerOptions so;
  so.seed = 1234;
  if (!(st = hc.init(lm, ContextOptions{})).ok() || !(st = hs.init(lm.model().cfg.vocab, so)).ok()) {
    std::fprintf(stderr, "bench_soak: %s\n", st.message());
    return 1;
  }
  Context& ctx = hc.ctx();
  Sampler& sampler = hs.get();
  const ModelConfig& c = lm.model().cfg;
  std::printf("model %s\n  d=%d L=%d vocab=%d context=%d, context arena %zu KiB\n", path.c_str(), c.d, c.n_layers,
              c.vocab, ctx.n_ctx(), hc.arena_size() / 1024);
  std::printf("%10s %10s %12s %14s %14s %8s\n", "tokens", "tok/s", "tok/cpu-s", "peak RSS KiB", "RSS KiB", "resets");

  using clock = std::chrono::steady_clock;
  int token = 0, resets = 0;
  double min_rate = 1e30, max_rate = 0;
  long first_peak = 0;
  auto t0 = clock::now();
  double cpu0 = cpu_seconds();
  for (long i = 1; i <= total; ++i) {
    if (ctx.n_past() == ctx.n_ctx()) {  // full: start over, keeping the last token as the new prompt
      ctx.reset();
      ++resets;
    }
    if (!(st = ctx.eval(token)).ok()) {
      std::fprintf(stderr, "bench_soak: token %ld: %s\n", i, st.message());
      return 1;
    }
    token = sampler.sample(ctx.logits());
    sampler.accept(token);
    if (i % block == 0) {
      const auto t1 = clock::now();
      const double cpu1 = cpu_seconds();
      const double rate = (double)block / std::chrono::duration<double>(t1 - t0).count();
      const double cpu_rate = (double)block / (cpu1 - cpu0);
      t0 = t1;
      cpu0 = cpu1;
      const long peak = peak_rss_kib();
      if (first_peak == 0) first_peak = peak;
      if (cpu_rate < min_rate) min_rate = cpu_rate;
      if (cpu_rate > max_rate) max_rate = cpu_rate;
      std::printf("%10ld %10.0f %12.0f %14ld %14ld %8d\n", i, rate, cpu_rate, peak, current_rss_kib(), resets);
      std::fflush(stdout);
    }
  }
  std::printf("peak RSS growth after the first block: %ld KiB; slowest/fastest block (CPU time): %.3f\n",
              peak_rss_kib() - first_peak, min_rate / max_rate);
  return 0;
}
