// qtf run: offline text generation, streamed, with the per-token report (llama.cpp CLI conventions).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"
#include "options.h"
#include "report.h"
#include "report_html.h"
#include "run_totals.h"

namespace qtf::cli {
namespace {

const char kUsage[] =
    "usage: qtf run -m MODEL [-p PROMPT | -f FILE] [-n N] [options]\n"
    "  -p, --prompt TEXT       prompt (default: a newline)\n"
    "  -f, --file FILE         read the prompt from a file\n"
    "  -n, --n-predict N       tokens to generate (default 200)\n"
    "  -s, --seed N            sampler seed (same seed, same text)\n"
    "  --rng NAME              the sampler's generator: splitmix64 (default) or runc (llama2.c run.c's\n"
    "                          xorshift*: its seeded text, e.g. with --temp 1 --top-p 0.9 --top-k 0 --min-p 0)\n"
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

struct RunArgs {
  ModelOptions mo;
  SamplerOptions so;
  std::string prompt = "\n";
  int n_predict = 200;
  bool echo = true, quiet = false;
  std::vector<std::string> stops;
  ReportFormat report = ReportFormat::none;
  const char* report_path = nullptr;
};

// Returns kConsumed or the exit code.
int parse(int argc, char** argv, RunArgs* r) {
  return parse_options(argc, argv, "run", kUsage, &r->mo, [r](Args& a) {
    const char* v = nullptr;
    bool ok = true;
    if (a.is("--no-echo")) r->echo = false;
    else if (a.is("-q", "--quiet")) r->quiet = true;
    else if (a.is("-p", "--prompt")) ok = a.value(&v) && (r->prompt = v, true);
    else if (a.is("-f", "--file")) ok = a.value(&v) && read_text_file(v, &r->prompt);
    else if (a.is("-n", "--n-predict")) ok = a.int_value(0, 1 << 30, &r->n_predict);
    else if (a.is("-s", "--seed")) {
      int seed = 0;
      ok = a.int_value(0, 2147483647, &seed);
      r->so.seed = (uint64_t)seed;
    } else if (a.is("--rng")) {
      ok = a.value(&v);
      if (ok && !std::strcmp(v, "splitmix64")) r->so.rng = Rng::splitmix64;
      else if (ok && !std::strcmp(v, "runc")) r->so.rng = Rng::runc;
      else if (ok) {
        std::fprintf(stderr, "qtf run: --rng takes splitmix64 or runc, not '%s'\n", v);
        ok = false;
      }
    } else if (a.is("--temp")) ok = a.float_value(&r->so.temperature);
    else if (a.is("--top-k")) ok = a.int_value(0, 1 << 30, &r->so.top_k);
    else if (a.is("--top-p")) ok = a.float_value(&r->so.top_p);
    else if (a.is("--min-p")) ok = a.float_value(&r->so.min_p);
    else if (a.is("--repeat-penalty")) ok = a.float_value(&r->so.repeat_penalty);
    else if (a.is("--repeat-last-n")) ok = a.int_value(0, 1 << 16, &r->so.repeat_last_n);
    else if (a.is("--stop")) ok = a.value(&v) && (r->stops.push_back(v), true);
    else if (a.is("--report")) {
      ok = a.value(&v) && a.value(&r->report_path) && parse_report_format(v, &r->report);
      if (!ok) std::fprintf(stderr, "qtf run: --report expects table|jsonl|csv|html and a FILE (or -)\n");
    } else return kUnknown;
    return ok ? kParsed : kBadValue;
  });
}

// The per-token report (--report): a row per forward pass, the HTML page written whole at the end.
struct Reporter {
  FILE* f = nullptr;
  ReportFormat fmt = ReportFormat::none;
  HtmlReport html;

  bool open(const RunArgs& r, int n_layers, const char* profile) {
    fmt = r.report;
    if (fmt == ReportFormat::none) return true;
    f = !std::strcmp(r.report_path, "-") ? stdout : std::fopen(r.report_path, "w");
    if (!f) {
      std::fprintf(stderr, "qtf run: cannot write report '%s'\n", r.report_path);
      return false;
    }
    report_header(f, fmt, n_layers, profile);
    return true;
  }
  void row(const ReportRow& row) {
    if (!f) return;
    report_row(f, fmt, row);
    if (fmt == ReportFormat::html) html.add(row);
  }
  void close(const char* model_path, const ModelConfig& c, const char* profile) {
    if (fmt == ReportFormat::html) html.write(f, model_path, c, profile);
    if (f && f != stdout) std::fclose(f);
    f = nullptr;
  }
};

// What the generation did, for the summary.
struct Generation {
  Status st;
  int n_prompt = 0, generated = 0;
  double prompt_ms = 0, gen_ms = 0;
  const char* stop_reason = "reached -n";
  RunTotals totals;  // over every forward pass (prompt and generated)
};

// Whether the generated text so far ends with one of the stop strings.
bool ends_with_stop(const std::string& tail, const std::vector<std::string>& stops) {
  for (const std::string& s : stops)
    if (tail.size() >= s.size() && tail.compare(tail.size() - s.size(), s.size(), s) == 0) return true;
  return false;
}

// Runs the prompt, then samples and streams up to n_predict tokens; every forward pass is reported
// and counted.
void generate(const RunArgs& r, Context& ctx, Sampler& sampler, const Tokenizer& tok, const int32_t* ids,
              const energy::Profiles& profiles, const energy::Profile& profile, Reporter* rep, Generation* g) {
  // Runs n tokens as one block (the prompt: up to the context's batch size; generation: 1) and reports
  // each, the block's time shared evenly among its tokens.
  auto eval = [&](const int32_t* tokens, int n, const char* phase, std::chrono::steady_clock::time_point t0,
                  bool logits = true) {
    g->st = ctx.eval(tokens, n, logits);
    if (!g->st.ok()) return false;
    const double ms = ms_since(t0) / n;
    for (int i = 0; i < n; ++i) {
      const TokenStats& s = ctx.stats(i);
      const energy::TokenCost cost = energy::estimate(profiles, profile, s.flops, s.qsim_flops, s.circuits);
      rep->row(ReportRow{phase, tok.token_text(s.token), &s, cost, ms});
      g->totals.add(s, cost.energy_j, ms);
    }
    return true;
  };
  if (r.echo) {
    std::fwrite(r.prompt.data(), 1, r.prompt.size(), stdout);
    std::fflush(stdout);
  }
  auto t_prompt = std::chrono::steady_clock::now();
  for (int i = 0; i < g->n_prompt; i += ctx.n_batch()) {
    const int n = std::min(ctx.n_batch(), g->n_prompt - i);
    if (!eval(ids + i, n, "prompt", std::chrono::steady_clock::now(), i + n == g->n_prompt)) break;
    for (int j = 0; j < n; ++j) sampler.accept(ids[i + j]);
  }
  g->prompt_ms = ms_since(t_prompt);

  std::string tail;  // recent generated text, for stop strings
  int32_t prev = g->n_prompt > 0 ? ids[g->n_prompt - 1] : -1;
  auto t_gen = std::chrono::steady_clock::now();
  while (g->st.ok() && g->generated < r.n_predict) {
    auto t0 = std::chrono::steady_clock::now();
    g->st = check_logits(ctx.logits(), ctx.model().cfg.vocab);
    if (!g->st.ok()) break;
    int32_t next = sampler.sample(ctx.logits());
    sampler.accept(next);
    // EOS ends the text; so does BOS where the tokenizer starts each text with it (a new one would begin:
    // llama2.c's run.c stops there too).
    if ((next == tok.eos_id() && next >= 0) || (next == tok.bos_id() && tok.add_bos())) {
      g->stop_reason = "end of text";
      break;
    }
    format::Str text = tok.decode(prev, next);  // SentencePiece's leading space is dropped after BOS
    prev = next;
    std::fwrite(text.data, 1, text.size, stdout);
    std::fflush(stdout);
    ++g->generated;
    tail.append(text.data, text.size);
    if (tail.size() > 4096) tail.erase(0, tail.size() - 2048);
    if (ends_with_stop(tail, r.stops)) {
      g->stop_reason = "stop string";
      break;
    }
    if (g->generated == r.n_predict || !eval(&next, 1, "gen", t0)) break;
  }
  g->gen_ms = ms_since(t_gen);
  std::printf("\n");
}

void print_summary(const ModelConfig& c, const Generation& g, const char* profile) {
  const double prompt_ms = g.prompt_ms > 0 ? g.prompt_ms : 1, gen_ms = g.gen_ms > 0 ? g.gen_ms : 1;
  std::fprintf(stderr, "\nqtf run: %s, %s kernels | prompt %d tok %.1f ms (%.1f tok/s) | generated %d tok %.1f ms (%.1f tok/s) | %s\n",
               c.tensorized ? "tt" : "dense", kern::simd_arch(), g.n_prompt, g.prompt_ms, g.n_prompt * 1000.0 / prompt_ms, g.generated,
               g.gen_ms, g.generated * 1000.0 / gen_ms, g.stop_reason);
  const RunTotals& t = g.totals;
  if (t.tokens == 0) return;
  std::fprintf(stderr, "qtf run: per token: %.0f FLOPs, %.3e J (%s, estimate)", t.per_token(t.flops),
               t.per_token(t.energy_j), profile);
  if (c.tensorized) std::fprintf(stderr, ", mean rank %.2f", t.mean_rank());
  if (c.has_encoder()) std::fprintf(stderr, ", quantum share %.1f%%", 100.0 * t.quantum_share());
  std::fprintf(stderr, "\n");
}

}  // namespace

int cmd_run(int argc, char** argv) {
  RunArgs r;
  const int parsed = parse(argc, argv, &r);
  if (parsed != kConsumed) return parsed;

  host::LoadedModel lm;
  if (!load_model(r.mo, &lm)) return 1;
  energy::Profiles profiles;
  const energy::Profile* profile;
  if (!load_profiles(r.mo, &profiles, &profile)) return 1;
  host::HostContext hc;
  host::HostSampler hs;
  Status st = hc.init(lm, r.mo.ctx);
  if (st.ok()) st = hs.init(lm.model().cfg.vocab, r.so);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf run: %s\n", st.message());
    return 1;
  }
  Context& ctx = hc.ctx();
  const Tokenizer& tok = lm.tokenizer();
  const ModelConfig& c = lm.model().cfg;

  std::vector<int32_t> ids;
  Generation g;
  int skipped = 0;
  EncodeOptions eo;
  eo.add_special = true;  // BOS first when the tokenizer says add_bos
  st = host::tokenize(tok, r.prompt.data(), r.prompt.size(), eo, &ids, &skipped);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf run: cannot tokenize the prompt: %s\n", st.message());
    return 1;
  }
  g.n_prompt = (int)ids.size();
  if (g.n_prompt > ctx.n_ctx()) {
    std::fprintf(stderr, "qtf run: the prompt needs %d tokens, more than the context (%d)\n", g.n_prompt, ctx.n_ctx());
    return 1;
  }
  if (skipped) std::fprintf(stderr, "qtf run: warning: %d prompt byte(s) have no token in this vocabulary and were skipped\n", skipped);
  if (g.n_prompt == 0) {
    std::fprintf(stderr, "qtf run: the prompt has no tokens in this model's vocabulary\n");
    return 1;
  }

  Reporter rep;
  if (!rep.open(r, c.n_layers, profile->name)) return 1;
  generate(r, ctx, hs.get(), tok, ids.data(), profiles, *profile, &rep, &g);
  rep.close(r.mo.model_path, c, profile->name);
  if (!g.st.ok() && g.st.code() != Err::context_full) {
    std::fprintf(stderr, "qtf run: %s\n", g.st.message());
    return 1;
  }
  if (g.st.code() == Err::context_full) std::fprintf(stderr, "qtf run: stopped: %s\n", g.st.message());
  if (!r.quiet) print_summary(c, g, profile->name);
  return 0;
}

}  // namespace qtf::cli
