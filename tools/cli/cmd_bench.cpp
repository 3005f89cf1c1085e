// qtf bench: tokens per second of a model, llama-bench style, with what the model holds in memory (the
// mapped file's resident pages, the heap of converted tensors) and, given --roofline, tg as a fraction of
// the limit that binds it. pp<N> runs N prompt tokens from an empty
// context; tg<N> generates N tokens greedily from an empty context. The engine runs one token at a
// time on one thread (no batched prefill), so pp and tg differ only by the sampling step. Each test's
// cost per token (FLOPs, the --profile energy estimate, mean rank, quantum share, thread-pool jobs) is counted on its
// warm-up run, with the same RunTotals as qtf run and qtf eval.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"
#include "options.h"
#include "report.h"
#include "run_totals.h"

namespace qtf::cli {
namespace {

const char kUsage[] =
    "usage: qtf bench -m MODEL [options]\n"
    "  -p, --n-prompt N        prompt tokens per pp test (default 64; 0 = skip)\n"
    "  -n, --n-gen N           generated tokens per tg test (default 128; 0 = skip)\n"
    "  -r, --repetitions N     timed repetitions of each test (default 5), after one warm-up run\n"
    "  -o, --output FMT        md (default), json or csv\n"
    "      --simd NAME         kernel variant: scalar, sse2, avx2, avxvnni, avx512, avx512vnni, neon, neondot or auto (default: auto,\n"
    "                          the best this CPU runs; also QTF_SIMD=NAME)\n"
    "      --roofline GBS,GFLOPS  the machine's read bandwidth (GB/s) and FMA peak (GFLOP/s) at these\n"
    "                          threads (bench_roofline): tg is shown as a fraction of the limit that\n"
    "                          binds it, bandwidth for dense models, FLOPs for TT models\n";

enum class Output { md, json, csv };

struct TestResult {
  std::string name;  // pp64, tg128
  int n_prompt = 0, n_gen = 0;
  std::vector<double> samples_ts;  // tokens per second of each repetition
  double mean = 0, stddev = 0;
  RunTotals cost;  // of one run (the warm-up)
  double jobs_per_token = 0;  // thread-pool hand-offs per token on the warm-up run (0 at -t 1)
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

// What every forward pass costs: counted on the warm-up run (the timed runs take the same path).
struct Counter {
  const energy::Profiles* profiles;
  const energy::Profile* profile;
  RunTotals* totals;
};

// One run of a test; returns tokens per second or a negative value on error.
double run_once(Context& ctx, int vocab, int n_prompt, int n_gen, const Counter* count = nullptr) {
  ctx.reset();
  uint32_t lcg = 12345;  // fixed pseudo-random prompt: same tokens on every run
  auto t0 = std::chrono::steady_clock::now();
  int token = 0;
  const int n = n_prompt ? n_prompt : n_gen;
  int32_t block[kMaxBatch];
  for (int i = 0; i < n;) {  // the prompt in blocks of the context's batch size; generation token by token
    const int b = n_prompt ? std::min(ctx.n_batch(), n - i) : 1;
    for (int j = 0; j < b; ++j) {
      if (n_prompt || i == 0) {
        lcg = lcg * 1664525u + 1013904223u;
        token = (int)((lcg >> 8) % (uint32_t)vocab);
      } else {
        token = argmax(ctx.logits(), vocab);
      }
      block[j] = token;
    }
    Status st = ctx.eval(block, b, !n_prompt || i + b == n);  // a prompt's logits: its last block's
    if (!st.ok()) {
      std::fprintf(stderr, "qtf bench: %s\n", st.message());
      return -1;
    }
    for (int j = 0; count && j < b; ++j) {
      const TokenStats& s = ctx.stats(j);
      count->totals->add(s, energy::estimate(*count->profiles, *count->profile, s.flops, s.qsim_flops, s.circuits).energy_j, 0);
    }
    i += b;
  }
  double s = seconds_since(t0);
  return n / (s > 0 ? s : 1e-9);
}

// This process's peak resident set in KiB. Linux's VmHWM (/proc/self/status) belongs to the address space
// made at exec; getrusage's ru_maxrss also carries the high-water mark of the image exec replaced, so a qtf
// spawned by a 1 GiB Python process (vfork + exec) reported 1 GiB. ru_maxrss where /proc is absent.
long peak_rss_kib() {
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    long kib = -1;
    while (kib < 0 && std::fgets(line, sizeof line, f))
      if (std::strncmp(line, "VmHWM:", 6) == 0) kib = std::strtol(line + 6, nullptr, 10);
    std::fclose(f);
    if (kib > 0) return kib;
  }
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;  // KiB on Linux, bytes on macOS
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

// What the output reports besides the tests.
struct Info {
  const char* path;  // as given
  const char* name;  // its file name
  double size, params;
  const char* arch;
  const ModelConfig* cfg;
  int n_ctx, reps, n_batch, n_threads;
  double load_ms;
  bool mapped;
  size_t arena_bytes;
  long peak_rss_kib;
  const char* profile;
  size_t resident_file, converted;  // model file bytes resident after the tests; heap of converted tensors
  double bw_gbs, peak_gflops;       // --roofline (0: not given)
  ExecSummary exec;                 // execution by cost: the copies' budget, bytes, forced paths
};

// A test's rate against the limit that binds it: a dense model reads every weight once per generated
// token (the file's bytes, less its few vectors and metadata: an upper estimate), so its tg is bounded
// by bandwidth; a TT model's weights stay in cache and its tg is bounded by the FMA peak. Returns the
// fraction (0 when --roofline was not given) and writes what was achieved, in GB/s or GFLOP/s.
double roofline_fraction(const Info& b, const TestResult& t, double* achieved) {
  const bool dense = !b.cfg->tensorized;
  *achieved = dense ? t.mean * b.size / 1e9 : t.mean * t.cost.per_token(t.cost.flops) / 1e9;
  const double limit = dense ? b.bw_gbs : b.peak_gflops;
  return limit > 0 ? *achieved / limit : 0;
}

void print_md(const Info& b, const std::vector<TestResult>& tests) {
  char sz[32], pc[32];
  human_size(b.size, sz, sizeof sz);
  human_count(b.params, pc, sizeof pc);
  std::printf("| model | size | params | backend | threads | test | t/s |\n");
  std::printf("| --- | ---: | ---: | --- | ---: | ---: | ---: |\n");
  for (const TestResult& t : tests)
    std::printf("| %s | %s | %s | CPU (%s) | %d | %s | %.2f ± %.2f |\n", b.name, sz, pc, b.arch, b.n_threads, t.name.c_str(), t.mean,
                t.stddev);
  std::printf("\nmodel load %.3f ms (%s), context arena %.1f KiB, peak RSS %.1f MiB; prompts in blocks of %d; %d repetitions after 1 warm-up\n",
              b.load_ms, b.mapped ? "mmap" : "read", b.arena_bytes / 1024.0, b.peak_rss_kib / 1024.0, b.n_batch, b.reps);
  char rf[32], cv[32];
  human_size((double)b.resident_file, rf, sizeof rf);
  human_size((double)b.converted, cv, sizeof cv);
  std::printf("memory: file %s, resident of it %s (%s), converted to f32 %s (the matrices are used where they lie)\n", sz,
              rf, b.mapped ? "mapped pages in RAM" : "read into RAM", cv);
  const ModelConfig& cfg = *b.cfg;
  for (const TestResult& t : tests) {
    if (t.n_gen == 0) continue;
    double achieved = 0;
    const double f = roofline_fraction(b, t, &achieved);
    std::printf("%s %s: %.2f %s", t.name.c_str(), cfg.tensorized ? "compute" : "weight reads", achieved,
                cfg.tensorized ? "GFLOP/s" : "GB/s");
    if (f > 0) std::printf(" = %.0f%% of the %s %.1f %s", 100 * f, cfg.tensorized ? "FMA peak" : "read bandwidth",
                           cfg.tensorized ? b.peak_gflops : b.bw_gbs, cfg.tensorized ? "GFLOP/s" : "GB/s");
    if (f > 1 && !cfg.tensorized) std::printf(" (more: the weights fit in the caches)");
    std::printf("\n");
  }
  for (const TestResult& t : tests) {
    const RunTotals& c = t.cost;
    std::printf("%s per token: %.0f FLOPs (%.1f%% circuit simulation), %.3e J (%s, estimate)", t.name.c_str(),
                c.per_token(c.flops), 100 * c.qsim_share(), c.per_token(c.energy_j), b.profile);
    if (cfg.tensorized) std::printf(", mean rank %.2f", c.mean_rank());
    if (cfg.has_encoder()) std::printf(", quantum share %.1f%%", 100 * c.quantum_share());
    if (b.n_threads > 1) std::printf(", %.2f thread-pool jobs", t.jobs_per_token);
    std::printf("\n");
  }
}

void print_json(const Info& b, const std::vector<TestResult>& tests) {
  std::printf("[\n");
  for (size_t i = 0; i < tests.size(); ++i) {
    const TestResult& t = tests[i];
    std::printf("  {\"model_filename\": \"");
    write_json_escaped(stdout, b.path, std::strlen(b.path));
    std::printf("\", \"model_size\": %.0f, \"model_n_params\": %.0f, \"backend\": \"CPU\", \"simd\": \"%s\", "
                "\"n_threads\": %d, \"n_batch\": %d, \"n_ctx\": %d, \"test\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, "
                "\"avg_ts\": %.4f, \"stddev_ts\": %.4f, \"samples_ts\": [",
                b.size, b.params, b.arch, b.n_threads, b.n_batch, b.n_ctx, t.name.c_str(), t.n_prompt, t.n_gen, t.mean, t.stddev);
    for (size_t j = 0; j < t.samples_ts.size(); ++j) std::printf("%s%.4f", j ? ", " : "", t.samples_ts[j]);
    const RunTotals& c = t.cost;
    double achieved = 0;
    const double frac = roofline_fraction(b, t, &achieved);
    std::printf("], \"resident_file_bytes\": %zu, \"converted_bytes\": %zu, \"roofline_achieved\": %.4f, "
                "\"roofline_fraction\": %.4f", b.resident_file, b.converted, achieved, frac);
    std::printf(", \"load_ms\": %.4f, \"mmap\": %s, \"arena_bytes\": %zu, \"peak_rss_kib\": %ld, "
                "\"flops_per_token\": %.1f, \"qsim_flops_per_token\": %.1f, \"energy_J_per_token\": %.6e, "
                "\"profile\": \"%s\", \"mean_rank\": %.4f, \"quantum_share\": %.5f, \"mem_budget_bytes\": %lld, "
                "\"copy_bytes\": %lld, \"forced_slower\": %d, \"jobs_per_token\": %.3f}%s\n",
                b.load_ms, b.mapped ? "true" : "false", b.arena_bytes, b.peak_rss_kib, c.per_token(c.flops),
                c.per_token(c.qsim_flops), c.per_token(c.energy_j), b.profile, c.mean_rank(), c.quantum_share(),
                (long long)b.exec.budget, (long long)b.exec.bytes, b.exec.forced, t.jobs_per_token,
                i + 1 < tests.size() ? "," : "");
  }
  std::printf("]\n");
}

void print_csv(const Info& b, const std::vector<TestResult>& tests) {
  std::printf("model_filename,model_size,model_n_params,backend,simd,n_threads,n_ctx,test,n_prompt,n_gen,avg_ts,"
              "stddev_ts,load_ms,mmap,arena_bytes,peak_rss_kib,flops_per_token,qsim_flops_per_token,"
              "energy_J_per_token,profile,mean_rank,quantum_share,resident_file_bytes,converted_bytes,"
              "roofline_achieved,roofline_fraction,jobs_per_token\n");
  for (const TestResult& t : tests) {
    const RunTotals& c = t.cost;
    double achieved = 0;
    const double frac = roofline_fraction(b, t, &achieved);
    std::printf("\"%s\",%.0f,%.0f,CPU,%s,%d,%d,%s,%d,%d,%.4f,%.4f,%.4f,%d,%zu,%ld,%.1f,%.1f,%.6e,%s,%.4f,%.5f,%zu,%zu,%.4f,%.4f,%.3f\n",
                b.path, b.size, b.params, b.arch, b.n_threads, b.n_ctx, t.name.c_str(), t.n_prompt, t.n_gen, t.mean, t.stddev,
                b.load_ms, b.mapped ? 1 : 0, b.arena_bytes, b.peak_rss_kib, c.per_token(c.flops), c.per_token(c.qsim_flops),
                c.per_token(c.energy_j), b.profile, c.mean_rank(), c.quantum_share(), b.resident_file, b.converted, achieved,
                frac, t.jobs_per_token);
  }
}

// Warm-up (counted) and `reps` timed runs of each test. False (error printed) when a test does not fit
// the context or a run fails.
bool measure(host::HostContext& hc, int vocab, int reps, const energy::Profiles& profiles, const energy::Profile* profile,
             std::vector<TestResult>* tests) {
  Context& ctx = hc.ctx();
  for (TestResult& t : *tests) {
    const int need = t.n_prompt + t.n_gen;
    if (need > ctx.n_ctx()) {
      std::fprintf(stderr, "qtf bench: %s needs %d positions, the context has %d\n", t.name.c_str(), need, ctx.n_ctx());
      return false;
    }
    const Counter count{&profiles, profile, &t.cost};
    const uint64_t jobs0 = hc.pool_jobs();
    if (run_once(ctx, vocab, t.n_prompt, t.n_gen, &count) < 0) return false;  // warm-up, counted
    t.jobs_per_token = (double)(hc.pool_jobs() - jobs0) / (t.n_prompt + t.n_gen);
    double sum = 0;
    for (int r = 0; r < reps; ++r) {
      double ts = run_once(ctx, vocab, t.n_prompt, t.n_gen);
      if (ts < 0) return false;
      t.samples_ts.push_back(ts);
      sum += ts;
    }
    t.mean = sum / reps;
    double var = 0;
    for (double s : t.samples_ts) var += (s - t.mean) * (s - t.mean);
    t.stddev = reps > 1 ? std::sqrt(var / (reps - 1)) : 0;
  }
  return true;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  ModelOptions mo;
  int n_prompt = 64, n_gen = 128, reps = 5;
  Output out = Output::md;
  double bw_gbs = 0, peak_gflops = 0;
  const int parsed = parse_options(argc, argv, "bench", kUsage, &mo, [&](Args& a) {
    const char* v = nullptr;
    bool ok = true;
    if (a.is("-p", "--n-prompt")) ok = a.int_value(0, 1 << 16, &n_prompt);
    else if (a.is("-n", "--n-gen")) ok = a.int_value(0, 1 << 16, &n_gen);
    else if (a.is("-r", "--repetitions")) ok = a.int_value(1, 1000, &reps);
    else if (a.is("--simd")) {
      if (!a.value(&v)) return kBadValue;
      const Status simd = kern::select_simd(v);
      if (!simd.ok()) std::fprintf(stderr, "qtf bench: --simd: %s\n", simd.message());
      ok = simd.ok();
    } else if (a.is("--roofline")) {
      if (!a.value(&v)) return kBadValue;
      if (std::sscanf(v, "%lf,%lf", &bw_gbs, &peak_gflops) != 2 || !(bw_gbs > 0) || !(peak_gflops > 0)) {
        std::fprintf(stderr, "qtf bench: --roofline expects GBS,GFLOPS (two positive numbers), got '%s'\n", v);
        return kBadValue;
      }
    } else if (a.is("-o", "--output")) {
      if (!a.value(&v)) return kBadValue;
      if (!std::strcmp(v, "md")) out = Output::md;
      else if (!std::strcmp(v, "json")) out = Output::json;
      else if (!std::strcmp(v, "csv")) out = Output::csv;
      else { std::fprintf(stderr, "qtf bench: -o expects md, json or csv, got '%s'\n", v); return kBadValue; }
    } else return kUnknown;
    return ok ? kParsed : kBadValue;
  });
  if (parsed != kConsumed) return parsed;

  auto t_load = std::chrono::steady_clock::now();
  host::LoadedModel lm;
  if (!load_model(mo, &lm)) return 1;
  const double load_ms = seconds_since(t_load) * 1e3;
  energy::Profiles profiles;
  const energy::Profile* profile;
  if (!load_profiles(mo, &profiles, &profile)) return 1;
  host::HostContext hc;
  Status st = hc.init(lm, mo.ctx);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf bench: %s\n", st.message());
    return 1;
  }
  std::vector<TestResult> tests;
  if (n_prompt > 0) tests.push_back({"pp" + std::to_string(n_prompt), n_prompt, 0, {}, 0, 0, {}});
  if (n_gen > 0) tests.push_back({"tg" + std::to_string(n_gen), 0, n_gen, {}, 0, 0, {}});
  if (!measure(hc, lm.model().cfg.vocab, reps, profiles, profile, &tests)) return 1;

  const char* slash = std::strrchr(mo.model_path, '/');
  const Info info{mo.model_path, slash ? slash + 1 : mo.model_path, (double)lm.file_size(),
                  (double)lm.model().total_params(), kern::simd_arch(), &lm.model().cfg, hc.ctx().n_ctx(), reps, hc.ctx().n_batch(), mo.ctx.n_threads,
                  load_ms, lm.mapped(), hc.arena_size(), peak_rss_kib(), profile->name,
                  lm.resident_file_bytes(), lm.converted_bytes(), bw_gbs, peak_gflops, hc.ctx().exec_summary()};
  if (out == Output::md) {
    print_md(info, tests);
    print_execution(stdout, hc.ctx());
  }
  else if (out == Output::json) print_json(info, tests);
  else print_csv(info, tests);
  return 0;
}

}  // namespace qtf::cli
