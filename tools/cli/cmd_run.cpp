// qtf run: offline text generation, streamed, with the per-token report (llama.cpp CLI conventions).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"
#include "options.h"
#include "report.h"
#include "report_html.h"

namespace qtf::cli {
namespace {

const char kUsage[] =
    "usage: qtf run -m MODEL [-p PROMPT | -f FILE] [-n N] [options]\n"
    "  -p, --prompt TEXT       prompt (default: a newline)\n"
    "  -f, --file FILE         read the prompt from a file\n"
    "  -n, --n-predict N       tokens to generate (default 200)\n"
    "  -s, --seed N            sampler seed (same seed, same text)\n"
    "  --temp X                temperature, 0 = greedy (default 0.8)\n"
    "  --top-k N, --top-p X, --min-p X      (defaults 40, 0.95, 0.05; 0/1/0 = off)\n"
    "  --repeat-penalty X, --repeat-last-n N (defaults 1.0 = off, 64)\n"
    "  --stop TEXT             stop when the generated text ends with TEXT (repeatable)\n"
    "  --report FMT FILE       per-token report: FMT table|jsonl|csv|html, FILE or - for stdout\n"
    "  --no-echo               do not print the prompt\n"
    "  -q, --quiet             no timing summary\n";

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

bool read_text_file(const char* path, std::string* out) {
  host::FileBytes f;
  Status st = f.open(path, false);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf: %s\n", st.message());
    return false;
  }
  out->assign(reinterpret_cast<const char*>(f.data()), f.size());
  return true;
}

}  // namespace

int cmd_run(int argc, char** argv) {
  ModelOptions mo;
  SamplerOptions so;
  std::string prompt = "\n";
  int n_predict = 200;
  bool echo = true, quiet = false;
  std::vector<std::string> stops;
  ReportFormat report = ReportFormat::none;
  const char* report_path = nullptr;

  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const int shared = parse_shared_option(argc, argv, &i, &mo, kUsage);
    if (shared == kConsumed) continue;
    if (shared != kNotShared) return shared;
    if (!std::strcmp(a, "--no-echo")) { echo = false; continue; }
    if (!std::strcmp(a, "-q") || !std::strcmp(a, "--quiet")) { quiet = true; continue; }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "qtf run: unknown option or missing value: '%s'\n%s", a, kUsage);
      return 2;
    }
    const char* v = argv[++i];
    bool ok = true;
    if (!std::strcmp(a, "-p") || !std::strcmp(a, "--prompt")) prompt = v;
    else if (!std::strcmp(a, "-f") || !std::strcmp(a, "--file")) ok = read_text_file(v, &prompt);
    else if (!std::strcmp(a, "-n") || !std::strcmp(a, "--n-predict")) ok = parse_int(a, v, 0, 1 << 30, &n_predict);
    else if (!std::strcmp(a, "-s") || !std::strcmp(a, "--seed")) {
      int s;
      ok = parse_int(a, v, 0, 2147483647, &s);
      so.seed = (uint64_t)s;
    } else if (!std::strcmp(a, "--temp")) ok = parse_float(a, v, &so.temperature);
    else if (!std::strcmp(a, "--top-k")) ok = parse_int(a, v, 0, 1 << 30, &so.top_k);
    else if (!std::strcmp(a, "--top-p")) ok = parse_float(a, v, &so.top_p);
    else if (!std::strcmp(a, "--min-p")) ok = parse_float(a, v, &so.min_p);
    else if (!std::strcmp(a, "--repeat-penalty")) ok = parse_float(a, v, &so.repeat_penalty);
    else if (!std::strcmp(a, "--repeat-last-n")) ok = parse_int(a, v, 0, 1 << 16, &so.repeat_last_n);
    else if (!std::strcmp(a, "--stop")) stops.push_back(v);
    else if (!std::strcmp(a, "--report")) {
      ok = parse_report_format(v, &report) && i + 1 < argc;
      if (!ok) std::fprintf(stderr, "qtf run: --report expects table|jsonl|csv|html and a FILE (or -)\n");
      else report_path = argv[++i];
    } else {
      std::fprintf(stderr, "qtf run: unknown option '%s'\n%s", a, kUsage);
      return 2;
    }
    if (!ok) return 2;
  }

  host::LoadedModel lm;
  if (!load_model(mo, &lm)) return 1;
  energy::Profiles profiles;
  const energy::Profile* profile;
  if (!load_profiles(mo, &profiles, &profile)) return 1;
  host::HostContext hc;
  host::HostSampler hs;
  Status st = hc.init(lm, mo.ctx);
  if (st.ok()) st = hs.init(lm.model().cfg.vocab, so);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf run: %s\n", st.message());
    return 1;
  }
  Context& ctx = hc.ctx();
  Sampler& sampler = hs.get();
  const Tokenizer& tok = lm.tokenizer();

  std::vector<int32_t> ids((size_t)ctx.n_ctx());
  int n_ids = 0, skipped = 0;
  st = tok.encode(prompt.data(), prompt.size(), ids.data(), ctx.n_ctx(), &n_ids, &skipped);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf run: the prompt needs %d tokens, more than the context (%d)\n", n_ids, ctx.n_ctx());
    return 1;
  }
  if (skipped) std::fprintf(stderr, "qtf run: warning: %d prompt byte(s) have no token in this vocabulary and were skipped\n", skipped);
  if (n_ids == 0) {
    std::fprintf(stderr, "qtf run: the prompt has no tokens in this model's vocabulary\n");
    return 1;
  }

  FILE* rf = nullptr;
  if (report != ReportFormat::none) {
    rf = !std::strcmp(report_path, "-") ? stdout : std::fopen(report_path, "w");
    if (!rf) {
      std::fprintf(stderr, "qtf run: cannot write report '%s'\n", report_path);
      return 1;
    }
    report_header(rf, report, lm.model().cfg.n_layers, profile->name);
  }
  HtmlReport html;
  auto emit = [&](const char* phase, double ms) {
    if (!rf) return;
    const TokenStats& s = ctx.stats();
    ReportRow row{phase, tok.token_text(s.token), &s,
                  energy::estimate(profiles, *profile, s.flops, s.qsim_flops, s.circuits), ms};
    report_row(rf, report, row);
    if (report == ReportFormat::html) html.add(row);
  };
  // Run-level totals for the summary.
  double energy_j = 0;
  int64_t flops = 0, quantum_layers = 0, rank_sum = 0, layer_tokens = 0;
  auto tally = [&]() {
    const TokenStats& s = ctx.stats();
    flops += s.flops;
    energy_j += energy::estimate(profiles, *profile, s.flops, s.qsim_flops, s.circuits).energy_j;
    for (int l = 0; l < s.n_layers; ++l) {
      quantum_layers += s.layer[l].quantum;
      rank_sum += s.layer[l].rank;
      ++layer_tokens;
    }
  };

  if (echo) {
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    std::fflush(stdout);
  }
  auto t_prompt = std::chrono::steady_clock::now();
  for (int i = 0; i < n_ids; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    st = ctx.eval(ids[i]);
    if (!st.ok()) break;
    sampler.accept(ids[i]);
    emit("prompt", ms_since(t0));
    tally();
  }
  double prompt_ms = ms_since(t_prompt);

  std::string tail;  // recent generated text, for stop strings
  int generated = 0;
  const char* stop_reason = "reached -n";
  auto t_gen = std::chrono::steady_clock::now();
  while (st.ok() && generated < n_predict) {
    auto t0 = std::chrono::steady_clock::now();
    int next = sampler.sample(ctx.logits());
    sampler.accept(next);
    format::Str text = tok.token_text(next);
    std::fwrite(text.data, 1, text.size, stdout);
    std::fflush(stdout);
    ++generated;
    tail.append(text.data, text.size);
    if (tail.size() > 4096) tail.erase(0, tail.size() - 2048);
    bool stop = false;
    for (const std::string& s : stops)
      stop |= tail.size() >= s.size() && tail.compare(tail.size() - s.size(), s.size(), s) == 0;
    if (stop) { stop_reason = "stop string"; break; }
    if (generated == n_predict) break;
    st = ctx.eval(next);
    if (st.ok()) {
      emit("gen", ms_since(t0));
      tally();
    }
  }
  double gen_ms = ms_since(t_gen);
  std::printf("\n");
  if (report == ReportFormat::html) html.write(rf, mo.model_path, lm.model().cfg, profile->name);
  if (rf && rf != stdout) std::fclose(rf);
  if (!st.ok() && st.code() != Err::context_full) {
    std::fprintf(stderr, "qtf run: %s\n", st.message());
    return 1;
  }
  if (st.code() == Err::context_full)
    std::fprintf(stderr, "qtf run: stopped: %s\n", st.message());
  if (!quiet) {
    const int evals = ctx.n_past();
    std::fprintf(stderr, "\nqtf run: %s, %s kernels | prompt %d tok %.1f ms (%.1f tok/s) | generated %d tok %.1f ms (%.1f tok/s) | %s\n",
                 lm.model().cfg.tensorized ? "tt" : "dense", kern::simd_arch(), n_ids, prompt_ms, n_ids * 1000.0 / (prompt_ms > 0 ? prompt_ms : 1),
                 generated, gen_ms, generated * 1000.0 / (gen_ms > 0 ? gen_ms : 1), stop_reason);
    if (evals > 0) {
      std::fprintf(stderr, "qtf run: per token: %.0f FLOPs, %.3e J (%s, estimate)", (double)flops / evals,
                   energy_j / evals, profile->name);
      if (lm.model().cfg.tensorized)
        std::fprintf(stderr, ", mean rank %.2f", layer_tokens ? (double)rank_sum / layer_tokens : 0.0);
      if (lm.model().cfg.has_encoder())
        std::fprintf(stderr, ", quantum share %.1f%%", layer_tokens ? 100.0 * quantum_layers / layer_tokens : 0.0);
      std::fprintf(stderr, "\n");
    }
  }
  return 0;
}

}  // namespace qtf::cli
