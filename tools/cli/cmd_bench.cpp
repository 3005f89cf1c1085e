// qtf bench: tokens per second of a model, llama-bench style. pp<N> runs N prompt tokens from an empty
// context; tg<N> generates N tokens greedily from an empty context. The engine runs one token at a
// time on one thread (no batched prefill), so pp and tg differ only by the sampling step.
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"
#include "options.h"
#include "report.h"

namespace qtf::cli {
namespace {

const char kUsage[] =
    "usage: qtf bench -m MODEL [options]\n"
    "  -p, --n-prompt N        prompt tokens per pp test (default 64; 0 = skip)\n"
    "  -n, --n-gen N           generated tokens per tg test (default 128; 0 = skip)\n"
    "  -r, --repetitions N     timed repetitions of each test (default 5), after one warm-up run\n"
    "  -o, --output FMT        md (default), json or csv\n"
    "      --simd NAME         kernel variant: scalar, sse2, avx2, avx512, neon or auto (default: auto,\n"
    "                          the best this CPU runs; also QTF_SIMD=NAME)\n";

enum class Output { md, json, csv };

struct TestResult {
  std::string name;  // pp64, tg128
  int n_prompt = 0, n_gen = 0;
  std::vector<double> samples_ts;  // tokens per second of each repetition
  double mean = 0, stddev = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int argmax(const float* x, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

// One run of a test; returns tokens per second or a negative value on error.
double run_once(Context& ctx, int vocab, int n_prompt, int n_gen) {
  ctx.reset();
  uint32_t lcg = 12345;  // fixed pseudo-random prompt: same tokens on every run
  auto t0 = std::chrono::steady_clock::now();
  int token = 0;
  const int n = n_prompt ? n_prompt : n_gen;
  for (int i = 0; i < n; ++i) {
    if (n_prompt || i == 0) {
      lcg = lcg * 1664525u + 1013904223u;
      token = (int)((lcg >> 8) % (uint32_t)vocab);
    } else {
      token = argmax(ctx.logits(), vocab);
    }
    Status st = ctx.eval(token);
    if (!st.ok()) {
      std::fprintf(stderr, "qtf bench: %s\n", st.message());
      return -1;
    }
  }
  double s = seconds_since(t0);
  return n / (s > 0 ? s : 1e-9);
}

void human_size(double bytes, char* out, size_t n) {
  if (bytes >= 1 << 30) std::snprintf(out, n, "%.2f GiB", bytes / (1 << 30));
  else if (bytes >= 1 << 20) std::snprintf(out, n, "%.2f MiB", bytes / (1 << 20));
  else std::snprintf(out, n, "%.2f KiB", bytes / 1024);
}

void human_count(double v, char* out, size_t n) {
  if (v >= 1e9) std::snprintf(out, n, "%.2f B", v / 1e9);
  else if (v >= 1e6) std::snprintf(out, n, "%.2f M", v / 1e6);
  else std::snprintf(out, n, "%.2f K", v / 1e3);
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  ModelOptions mo;
  int n_prompt = 64, n_gen = 128, reps = 5;
  Output out = Output::md;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const int shared = parse_shared_option(argc, argv, &i, &mo, kUsage);
    if (shared == kConsumed) continue;
    if (shared != kNotShared) return shared;
    if (i + 1 >= argc) {
      std::fprintf(stderr, "qtf bench: unknown option or missing value: '%s'\n%s", a, kUsage);
      return 2;
    }
    const char* v = argv[++i];
    bool ok = true;
    if (!std::strcmp(a, "-p") || !std::strcmp(a, "--n-prompt")) ok = parse_int(a, v, 0, 1 << 16, &n_prompt);
    else if (!std::strcmp(a, "-n") || !std::strcmp(a, "--n-gen")) ok = parse_int(a, v, 0, 1 << 16, &n_gen);
    else if (!std::strcmp(a, "-r") || !std::strcmp(a, "--repetitions")) ok = parse_int(a, v, 1, 1000, &reps);
    else if (!std::strcmp(a, "--simd")) {
      const Status simd = kern::select_simd(v);
      if (!simd.ok()) {
        std::fprintf(stderr, "qtf bench: --simd: %s\n", simd.message());
        return 2;
      }
    } else if (!std::strcmp(a, "-o") || !std::strcmp(a, "--output")) {
      if (!std::strcmp(v, "md")) out = Output::md;
      else if (!std::strcmp(v, "json")) out = Output::json;
      else if (!std::strcmp(v, "csv")) out = Output::csv;
      else { std::fprintf(stderr, "qtf bench: -o expects md, json or csv, got '%s'\n", v); return 2; }
    } else {
      std::fprintf(stderr, "qtf bench: unknown option '%s'\n%s", a, kUsage);
      return 2;
    }
    if (!ok) return 2;
  }

  auto t_load = std::chrono::steady_clock::now();
  host::LoadedModel lm;
  if (!load_model(mo, &lm)) return 1;
  const double load_ms = seconds_since(t_load) * 1e3;
  host::HostContext hc;
  Status st = hc.init(lm, mo.ctx);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf bench: %s\n", st.message());
    return 1;
  }
  Context& ctx = hc.ctx();
  const int vocab = lm.model().cfg.vocab;

  std::vector<TestResult> tests;
  if (n_prompt > 0) tests.push_back({"pp" + std::to_string(n_prompt), n_prompt, 0, {}, 0, 0});
  if (n_gen > 0) tests.push_back({"tg" + std::to_string(n_gen), 0, n_gen, {}, 0, 0});
  for (TestResult& t : tests) {
    const int need = t.n_prompt + t.n_gen;
    if (need > ctx.n_ctx()) {
      std::fprintf(stderr, "qtf bench: %s needs %d positions, the context has %d\n", t.name.c_str(), need, ctx.n_ctx());
      return 1;
    }
    if (run_once(ctx, vocab, t.n_prompt, t.n_gen) < 0) return 1;  // warm-up
    double sum = 0;
    for (int r = 0; r < reps; ++r) {
      double ts = run_once(ctx, vocab, t.n_prompt, t.n_gen);
      if (ts < 0) return 1;
      t.samples_ts.push_back(ts);
      sum += ts;
    }
    t.mean = sum / reps;
    double var = 0;
    for (double s : t.samples_ts) var += (s - t.mean) * (s - t.mean);
    t.stddev = reps > 1 ? std::sqrt(var / (reps - 1)) : 0;
  }

  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const long peak_rss_kib = ru.ru_maxrss;  // Linux reports KiB
  const char* path = mo.model_path;
  const char* slash = std::strrchr(path, '/');
  const char* name = slash ? slash + 1 : path;
  const double size = (double)lm.file_size(), params = (double)lm.model().total_params();
  const char* arch = kern::simd_arch();

  if (out == Output::md) {
    char sz[32], pc[32];
    human_size(size, sz, sizeof sz);
    human_count(params, pc, sizeof pc);
    std::printf("| model | size | params | backend | threads | test | t/s |\n");
    std::printf("| --- | ---: | ---: | --- | ---: | ---: | ---: |\n");
    for (const TestResult& t : tests)
      std::printf("| %s | %s | %s | CPU (%s) | 1 | %s | %.2f ± %.2f |\n", name, sz, pc, arch, t.name.c_str(), t.mean,
                  t.stddev);
    std::printf("\nmodel load %.3f ms (%s), context arena %.1f KiB, peak RSS %.1f MiB; %d repetitions after 1 warm-up\n",
                load_ms, lm.mapped() ? "mmap" : "read", hc.arena_size() / 1024.0, peak_rss_kib / 1024.0, reps);
  } else if (out == Output::json) {
    std::printf("[\n");
    for (size_t i = 0; i < tests.size(); ++i) {
      const TestResult& t = tests[i];
      std::printf("  {\"model_filename\": \"");
      write_json_escaped(stdout, path, std::strlen(path));
      std::printf("\", \"model_size\": %.0f, \"model_n_params\": %.0f, \"backend\": \"CPU\", \"simd\": \"%s\", "
                  "\"n_threads\": 1, \"n_ctx\": %d, \"test\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, "
                  "\"avg_ts\": %.4f, \"stddev_ts\": %.4f, \"samples_ts\": [",
                  size, params, arch, ctx.n_ctx(), t.name.c_str(), t.n_prompt, t.n_gen, t.mean, t.stddev);
      for (size_t j = 0; j < t.samples_ts.size(); ++j) std::printf("%s%.4f", j ? ", " : "", t.samples_ts[j]);
      std::printf("], \"load_ms\": %.4f, \"mmap\": %s, \"arena_bytes\": %zu, \"peak_rss_kib\": %ld}%s\n", load_ms,
                  lm.mapped() ? "true" : "false", hc.arena_size(), peak_rss_kib, i + 1 < tests.size() ? "," : "");
    }
    std::printf("]\n");
  } else {
    std::printf("model_filename,model_size,model_n_params,backend,simd,n_threads,n_ctx,test,n_prompt,n_gen,avg_ts,"
                "stddev_ts,load_ms,mmap,arena_bytes,peak_rss_kib\n");
    for (const TestResult& t : tests)
      std::printf("\"%s\",%.0f,%.0f,CPU,%s,1,%d,%s,%d,%d,%.4f,%.4f,%.4f,%d,%zu,%ld\n", path, size, params, arch,
                  ctx.n_ctx(), t.name.c_str(), t.n_prompt, t.n_gen, t.mean, t.stddev, load_ms, lm.mapped() ? 1 : 0,
                  hc.arena_size(), peak_rss_kib);
  }
  return 0;
}

}  // namespace qtf::cli
