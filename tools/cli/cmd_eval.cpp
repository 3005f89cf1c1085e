// qtf eval: perplexity of a model on a text file, computed by the engine itself; --ablate runs the
// same text under each run-time switch, --sweep maps the quality-versus-cost frontier of theta x alpha.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"
#include "options.h"
#include "progress.h"
#include "report.h"
#include "run_totals.h"

namespace qtf::cli {
namespace {

const char kUsage[] =
    "usage: qtf eval -m MODEL -f TEXT [options]\n"
    "  -f, --file FILE         text to score (tokenized with the model's tokenizer)\n"
    "  --max-tokens N          score only the first N tokens of the text (default 2000; 0 = all); the text is\n"
    "                          tokenized only as far as they need\n"
    "  --stride N              windows start every N tokens (default: the context, i.e. chunked windows);\n"
    "                          with N < context each window re-reads context and scores only its last N tokens\n"
    "  --json                  print the result as one JSON object\n"
    "  --ablate                run the text under each run-time switch and print the ablation table\n"
    "  --sweep                 evaluate every theta x alpha pair; write the frontier as CSV and SVG\n"
    "  --thetas LIST, --alphas LIST   sweep grids (default 0.1,0.3,0.5,0.7,0.9 and 0.5,1,2,4)\n"
    "  -o, --output PREFIX     --ablate writes PREFIX-ablation.csv; --sweep writes PREFIX-sweep.{csv,svg}\n"
    "                          (default prefix: qtf)\n"
    "  --doc-sep STR           with a tokenizer that adds BOS: documents are separated by STR (default\n"
    "                          <|endoftext|>), each stripped of surrounding whitespace and scored after its BOS\n";

// The text's tokens. A tokenizer that starts texts with BOS (tokenizer.add_bos) sees each document on its
// own, stripped, after a BOS, as llama2.c's tinystories.py prepared its training data; the documents'
// tokens are then concatenated and windowed like any text. Otherwise the whole text at once.
// *n_docs: documents (0 when the text was not split).
// need > 0: only the tokens the evaluation will use are wanted, so tokenizing stops early: after the
// document that brings the count to `need`, or (whole text) after a prefix cut at a line end that gives
// kMargin tokens more than needed (the first `need` tokens are then those of the whole text: a cut
// changes tokens only next to it). *complete: the whole text was tokenized.
constexpr size_t kMargin = 512;
Status tokenize_documents(const Tokenizer& tok, const char* text, size_t len, const char* sep, size_t need,
                          std::vector<int32_t>* ids, int* skipped, int* n_docs, bool* complete) {
  ids->clear();
  *skipped = 0;
  *n_docs = 0;
  *complete = true;
  if (!tok.add_bos()) {
    if (need == 0) return host::tokenize(tok, text, len, EncodeOptions(), ids, skipped);
    size_t guess = 64 * (need + kMargin);  // bytes; grows until the prefix holds enough tokens
    for (;;) {
      size_t cut = guess < len ? guess : len;
      while (cut < len && text[cut - 1] != '\n') ++cut;  // a whole line
      QTF_TRY(host::tokenize(tok, text, cut, EncodeOptions(), ids, skipped));
      if (cut == len) return Status::success();
      if (ids->size() >= need + kMargin) {
        *complete = false;
        return Status::success();
      }
      guess = cut * 2;
    }
  }
  const std::string all(text, len), s(sep);
  EncodeOptions bos;
  bos.add_special = true;
  std::vector<int32_t> doc;
  for (size_t at = 0; at <= all.size();) {
    size_t end = s.empty() ? std::string::npos : all.find(s, at);
    if (end == std::string::npos) end = all.size();
    size_t a = at, b = end;
    while (a < b && std::isspace((unsigned char)all[a])) ++a;
    while (b > a && std::isspace((unsigned char)all[b - 1])) --b;
    if (b > a) {
      int sk = 0;
      QTF_TRY(host::tokenize(tok, all.data() + a, b - a, bos, &doc, &sk));
      ids->insert(ids->end(), doc.begin(), doc.end());
      *skipped += sk;
      ++*n_docs;
    }
    at = end + s.size();
    if (end == all.size()) break;
    if (need > 0 && ids->size() >= need) {  // documents are tokenized on their own: the rest is not needed
      *complete = false;
      break;
    }
  }
  return Status::success();
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Totals of one pass over the text. Costs (RunTotals, as qtf run and bench count them) are per forward
// pass; the loss is per scored token.
struct EvalResult : RunTotals {
  double nll = 0;  // sum of -log p(target), nats
  int64_t scored = 0;
  int64_t scored_bytes = 0;  // bytes of the scored targets' text: bits per byte is the unit across tokenizers
  int64_t samples = 0;       // sampled attention: draws made, and the sum of the tokens' mean variances
  double sample_var = 0;
  std::vector<std::vector<int64_t>> rank_hist;  // [layer][rank]: tokens that ran at that rank
  float spline_error = 0;

  double loss() const { return scored ? nll / (double)scored : NAN; }
  double ppl() const { return std::exp(loss()); }
  // nats over every scored byte, in bits (a tokenizer that makes longer tokens is not favoured)
  double bits_per_byte() const { return scored_bytes ? nll / std::log(2.0) / (double)scored_bytes : NAN; }
};

// Everything a pass needs besides its switches.
struct EvalJob {
  const host::LoadedModel* model;
  const energy::Profiles* profiles;
  const energy::Profile* profile;
  const int32_t* ids;
  int n_ids;
  int stride;  // 0: the context length
  const char* label;  // shown on the progress bar
  Progress* progress = nullptr;  // shared by the passes of one command (progress.h)
};

// -log softmax(logits)[target], in double.
double token_nll(const float* logits, int vocab, int target) {
  float mx = logits[0];
  for (int i = 1; i < vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp((double)logits[i] - mx);
  return std::log(sum) + mx - (double)logits[target];
}

// Scores every token once: windows of the context length start every `stride` tokens; a window scores
// the targets no earlier window scored (all of them when stride == context: chunked evaluation).
bool evaluate(const EvalJob& job, const ContextOptions& opt, EvalResult* out) {
  host::HostContext hc;
  Status st = hc.init(*job.model, opt);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf eval: %s\n", st.message());
    return false;
  }
  Context& ctx = hc.ctx();
  const int T = ctx.n_ctx() - ctx.n_prefix(), V = job.model->model().cfg.vocab;  // memory slots stay cached
  const int S = job.stride > 0 && job.stride < T ? job.stride : T;
  if (job.progress) job.progress->stage(job.label);
  EvalResult r;
  r.spline_error = ctx.spline_max_error();
  for (int b = 0; b + 1 < job.n_ids; b += S) {
    const int end = std::min(b + T, job.n_ids);
    const int first_target = b == 0 ? 1 : b + T - S;  // earlier windows scored the targets before it
    ctx.reset();
    for (int j = b; j + 1 < end; ++j) {
      auto t0 = std::chrono::steady_clock::now();
      st = ctx.eval(job.ids[j]);
      double ms = ms_since(t0);
      if (!st.ok()) {
        std::fprintf(stderr, "\nqtf eval: %s\n", st.message());
        return false;
      }
      const TokenStats& s = ctx.stats();
      r.add(s, energy::estimate(*job.profiles, *job.profile, s.flops, s.qsim_flops, s.circuits).energy_j, ms);
      if (r.rank_hist.size() < (size_t)s.n_layers) r.rank_hist.resize(s.n_layers);
      for (int l = 0; l < s.n_layers; ++l) {
        std::vector<int64_t>& h = r.rank_hist[l];
        if (h.size() <= (size_t)s.layer[l].rank) h.resize((size_t)s.layer[l].rank + 1, 0);
        ++h[s.layer[l].rank];
      }
      if (s.samples > 0) {
        r.samples += s.samples;
        r.sample_var += s.sample_var;
      }
      if (j + 1 >= first_target) {
        r.nll += token_nll(ctx.logits(), V, job.ids[j + 1]);
        ++r.scored;
        r.scored_bytes += job.model->tokenizer().token_text(job.ids[j + 1]).size;
      }
      if (job.progress && job.progress->due(r.scored)) {
        char note[32];
        std::snprintf(note, sizeof note, "loss %.4f", r.loss());
        job.progress->update(r.scored, note);
      }
    }
    if (end == job.n_ids) break;
  }
  if (job.progress) {  // the final line shows the final loss, not the last periodic one
    char note[32];
    std::snprintf(note, sizeof note, "loss %.4f", r.loss());
    job.progress->update(r.scored, note);
  }
  *out = r;
  return true;
}

bool parse_list(const char* flag, const char* s, std::vector<float>* out) {
  out->clear();
  std::string item;
  for (const char* p = s;; ++p) {
    if (*p == ',' || *p == 0) {
      float v;
      if (!parse_float(flag, item.c_str(), &v)) return false;
      out->push_back(v);
      item.clear();
      if (*p == 0) break;
    } else {
      item.push_back(*p);
    }
  }
  return !out->empty();
}

// Keeps JSON/CSV valid when a value is not finite (a model that diverges).
void put_num(FILE* f, const char* fmt, double v) {
  if (std::isfinite(v)) std::fprintf(f, fmt, v);
  else std::fputs("null", f);
}

// Share of tokens per run-time rank, per layer, and a warning when stored TT bond components are never
// used: a layer whose highest selected rank is below its largest stored bond rank carries dead weight.
void print_rank_use(const Model& m, const EvalResult& r) {
  for (size_t l = 0; l < r.rank_hist.size(); ++l) {
    const std::vector<int64_t>& h = r.rank_hist[l];
    int64_t n = 0;
    for (int64_t v : h) n += v;
    std::printf("rank hist   layer %zu:", l);
    for (size_t k = 0; k < h.size(); ++k)
      if (h[k]) std::printf(" %zu:%.1f%%", k, 100.0 * (double)h[k] / (double)(n ? n : 1));
    std::printf("\n");
    int stored = 0;
    const Layer& L = m.layers[l];
    for (const Linear* lin : {&L.q, &L.k, &L.v, &L.o, &L.up, &L.down})
      for (int k = 1; k < lin->tt_w.shape.K; ++k) stored = std::max(stored, lin->tt_w.shape.r[k]);
    const int used = h.empty() ? 0 : (int)h.size() - 1;
    if (used < stored)
      std::printf("unused      layer %zu: stored bond ranks go up to %d but no token selected a rank above %d: "
                  "components %d..%d are never used on this text (dead weight; see tools/train/compress.py)\n",
                  l, stored, used, used + 1, stored);
  }
}

void print_summary(const EvalJob& job, const ModelOptions& mo, int n_ctx, int text_tokens, const EvalResult& r,
                   bool json) {
  const ModelConfig& c = job.model->model().cfg;
  const double flops = r.per_token(r.flops), qshare = r.qsim_share();
  if (json) {
    std::printf("{\"model\":\"");
    write_json_escaped(stdout, mo.model_path, std::strlen(mo.model_path));
    std::printf("\",\"text_tokens\":");  // null: the text was tokenized only as far as --max-tokens needs
    if (text_tokens >= 0) std::printf("%d", text_tokens);
    else std::printf("null");
    std::printf(",\"tokens\":%d,\"n_ctx\":%d,\"stride\":%d,\"scored\":%lld,\"loss\":", job.n_ids, n_ctx, job.stride > 0 && job.stride < n_ctx ? job.stride : n_ctx,
                (long long)r.scored);
    put_num(stdout, "%.6f", r.loss());
    std::printf(",\"perplexity\":");
    put_num(stdout, "%.6f", r.ppl());
    std::printf(",\"scored_bytes\":%lld,\"bits_per_byte\":", (long long)r.scored_bytes);
    put_num(stdout, "%.6f", r.bits_per_byte());
    std::printf(",\"params\":%lld,\"attention_samples\":%lld,\"sample_var\":%.6e", (long long)job.model->model().total_params(),
                (long long)(r.tokens ? r.samples / r.tokens : 0), r.tokens ? r.sample_var / (double)r.tokens : 0.0);
    std::printf(",\"flops_per_token\":%.1f,\"qsim_flops_per_token\":%.1f,\"energy_J_per_token\":%.6e,"
                "\"profile\":\"%s\",\"time_ms_per_token\":%.5f,\"mean_rank\":%.4f,\"quantum_share\":%.5f,"
                "\"spline_max_error\":%.3e",
                flops, r.per_token(r.qsim_flops), r.per_token(r.energy_j), job.profile->name,
                r.per_token(r.time_ms), r.mean_rank(), r.quantum_share(), (double)r.spline_error);
    std::printf(",\"rank_hist\":[");  // per layer: tokens per run-time rank (index = rank)
    for (size_t l = 0; l < r.rank_hist.size(); ++l) {
      std::printf(l ? ",[" : "[");
      for (size_t k = 0; k < r.rank_hist[l].size(); ++k) std::printf(k ? ",%lld" : "%lld", (long long)r.rank_hist[l][k]);
      std::printf("]");
    }
    std::printf("]}\n");
    return;
  }
  std::printf("model       %s (%s, %lld params)\n", mo.model_path, c.tensorized ? "tensor-train" : "dense",
              (long long)job.model->model().total_params());
  if (text_tokens >= 0) std::printf("text        %d of %d tokens", job.n_ids, text_tokens);
  else std::printf("text        the first %d tokens (the text tokenized only as far as needed)", job.n_ids);
  std::printf(", windows of %d (stride %d), %lld scored\n",
              n_ctx, job.stride > 0 && job.stride < n_ctx ? job.stride : n_ctx, (long long)r.scored);
  std::printf("loss        %.4f nats/token\n", r.loss());
  std::printf("perplexity  %.4f\n", r.ppl());
  std::printf("bits/byte   %.4f (%lld bytes scored)\n", r.bits_per_byte(), (long long)r.scored_bytes);
  if (r.samples > 0)
    std::printf("sampled     %.0f draws per token, mean estimated head variance %.3e\n",
                (double)r.samples / (double)r.tokens, r.sample_var / (double)r.tokens);
  std::printf("per token   %.0f FLOPs (%.1f%% circuit simulation), %.3e J (%s, estimate), %.4f ms measured\n",
              flops, 100 * qshare, r.per_token(r.energy_j), job.profile->name, r.per_token(r.time_ms));
  if (c.tensorized || c.has_encoder())  // the dense baseline has neither run-time ranks nor a router
    std::printf("ranks       mean %.3f; quantum route share %.1f%%\n", r.mean_rank(), 100 * r.quantum_share());
  if (c.tensorized) print_rank_use(job.model->model(), r);
  if (r.spline_error > 0) std::printf("spline      max |spline - quantum| = %.3e\n", (double)r.spline_error);
}

// ---- --ablate ----

struct Variant {
  std::string name;
  ContextOptions opt;
};

std::vector<Variant> ablation_variants(const ModelConfig& c, const ContextOptions& base, bool switched) {
  std::vector<Variant> v;
  v.push_back({switched ? "given switches" : "as trained", base});
  auto add = [&](const std::string& name, auto change) {
    Variant x{name, base};
    change(&x.opt);
    v.push_back(x);
  };
  if (c.has_encoder()) {
    add("all classical", [](ContextOptions* o) { o->route = RouteMode::all_classical; });
    if (c.quantum_attention) add("all quantum", [](ContextOptions* o) { o->route = RouteMode::all_quantum; });
  }
  if (c.tensorized) {
    const int lo = c.adaptive_rank ? c.r_min : c.tt_rank, hi = c.adaptive_rank ? c.r_max : c.tt_rank;
    const std::string rank = "fixed rank ";
    add(rank + std::to_string(lo) + (c.adaptive_rank ? " (r_min)" : " (stored)"),
        [&](ContextOptions* o) { o->fixed_rank = lo; });
    if (hi != lo) add(rank + std::to_string(hi) + " (r_max)", [&](ContextOptions* o) { o->fixed_rank = hi; });
  }
  if (c.activation == Activation::daruan) {
    add("DARUAN fourier", [](ContextOptions* o) { o->act_path = quantum::DaruanPath::fourier; });
    add("DARUAN spline", [](ContextOptions* o) { o->act_path = quantum::DaruanPath::spline; });
    add("DARUAN quantum", [](ContextOptions* o) { o->act_path = quantum::DaruanPath::quantum; });
  }
  return v;
}

int run_ablation(const EvalJob& base_job, const ModelOptions& mo, const char* prefix, bool write_csv) {
  const ModelConfig& c = base_job.model->model().cfg;
  const ContextOptions& b = mo.ctx;
  const bool switched = b.route != RouteMode::automatic || b.fixed_rank || b.act_path != quantum::DaruanPath::fourier ||
                        b.override_theta || b.override_alpha;
  std::vector<Variant> variants = ablation_variants(c, b, switched);
  std::vector<EvalResult> results(variants.size());
  Progress progress("qtf eval --ablate", (int64_t)variants.size() * (base_job.n_ids - 1));
  for (size_t i = 0; i < variants.size(); ++i) {
    EvalJob job = base_job;
    job.progress = &progress;
    job.label = variants[i].name.c_str();
    if (!evaluate(job, variants[i].opt, &results[i])) return 1;
  }
  progress.finish();
  const double ref = results[0].loss();
  std::printf("| switch | loss | d loss | ppl | bits/byte | mean rank | quantum share | FLOPs/token | circuit sim | energy/token (%s) | time/token |\n",
              base_job.profile->name);
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (size_t i = 0; i < variants.size(); ++i) {
    const EvalResult& r = results[i];
    std::printf("| %s | %.4f | %+.4f | %.3f | %.4f | %.2f | %.1f%% | %.0f | %.1f%% | %.3e J | %.4f ms |\n",
                variants[i].name.c_str(), r.loss(), r.loss() - ref, r.ppl(), r.bits_per_byte(), r.mean_rank(), 100 * r.quantum_share(),
                r.per_token(r.flops), 100 * r.qsim_share(), r.per_token(r.energy_j),
                r.per_token(r.time_ms));
  }
  std::printf("\n%d tokens, %lld scored per row; loss in nats/token; energy is FLOPs x %s's fJ/FLOP (an estimate), "
              "time is measured.\n",
              base_job.n_ids, (long long)results[0].scored, base_job.profile->name);
  if (!write_csv) return 0;
  std::string path = std::string(prefix) + "-ablation.csv";
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "qtf eval: cannot write '%s'\n", path.c_str());
    return 1;
  }
  std::fprintf(f, "switch,loss,perplexity,mean_rank,quantum_share,flops_per_token,qsim_flops_per_token,"
                  "energy_J_per_token,time_ms_per_token,scored\n");
  for (size_t i = 0; i < variants.size(); ++i) {
    const EvalResult& r = results[i];
    std::fprintf(f, "\"%s\",", variants[i].name.c_str());
    put_num(f, "%.6f", r.loss());
    std::fputc(',', f);
    put_num(f, "%.6f", r.ppl());
    std::fprintf(f, ",%.5f,%.5f,%.1f,%.1f,%.6e,%.5f,%lld\n", r.mean_rank(), r.quantum_share(), r.per_token(r.flops),
                 r.per_token(r.qsim_flops), r.per_token(r.energy_j), r.per_token(r.time_ms), (long long)r.scored);
  }
  std::fclose(f);
  std::fprintf(stderr, "qtf eval: wrote %s\n", path.c_str());
  return 0;
}

// ---- --sweep ----

struct SweepPoint {
  float theta = 0, alpha = 0;
  bool trained = false;  // the model's own theta/alpha, the reference point
  EvalResult r;
  bool pareto = false;
};

// A point is on the front when no other point is at least as good in both loss and FLOPs and better in one.
void mark_pareto(std::vector<SweepPoint>* pts) {
  for (SweepPoint& p : *pts) {
    p.pareto = std::isfinite(p.r.loss());
    for (const SweepPoint& q : *pts) {
      const double pf = p.r.per_token(p.r.flops), qf = q.r.per_token(q.r.flops);
      if (!std::isfinite(q.r.loss())) continue;
      if (qf <= pf && q.r.loss() <= p.r.loss() && (qf < pf || q.r.loss() < p.r.loss())) p.pareto = false;
    }
  }
}

// Round axis steps: 1, 2 or 5 times a power of ten, about `n` of them over [lo, hi].
double nice_step(double lo, double hi, int n) {
  double raw = (hi - lo) / n, p = std::pow(10.0, std::floor(std::log10(raw))), m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

// Axis tick label: 3 significant digits with k/M suffixes.
void tick_label(double v, char* out, size_t n) {
  const double a = std::fabs(v);
  if (a >= 1e6) std::snprintf(out, n, "%.3gM", v / 1e6);
  else if (a >= 1e3) std::snprintf(out, n, "%.3gk", v / 1e3);
  else std::snprintf(out, n, "%.3g", v);
}

// Hand-written SVG scatter: FLOPs/token (x) against loss (y); the Pareto front joined and marked.
void write_svg(FILE* f, const std::vector<SweepPoint>& pts, const char* title) {
  const double W = 760, H = 480, L = 80, R = 180, Tm = 50, B = 60;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const SweepPoint& p : pts) {
    if (!std::isfinite(p.r.loss())) continue;
    x0 = std::min(x0, p.r.per_token(p.r.flops));
    x1 = std::max(x1, p.r.per_token(p.r.flops));
    y0 = std::min(y0, p.r.loss());
    y1 = std::max(y1, p.r.loss());
  }
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  // Pad the ranges so no point sits on the frame (and a degenerate range still has width).
  double px = (x1 - x0) * 0.08 + std::fabs(x1) * 1e-3 + 1e-9, py = (y1 - y0) * 0.08 + std::fabs(y1) * 1e-3 + 1e-9;
  x0 -= px, x1 += px, y0 -= py, y1 += py;
  auto X = [&](double v) { return L + (v - x0) / (x1 - x0) * (W - L - R); };
  auto Y = [&](double v) { return H - B - (v - y0) / (y1 - y0) * (H - Tm - B); };
  std::fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                  "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
  std::fprintf(f, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H);
  std::fprintf(f, "<text x=\"%.0f\" y=\"24\" font-size=\"15\" font-weight=\"bold\">", L);
  for (const char* c = title; *c; ++c) {  // XML-escape the title (a file path)
    if (*c == '&') std::fputs("&amp;", f);
    else if (*c == '<') std::fputs("&lt;", f);
    else if (*c == '>') std::fputs("&gt;", f);
    else std::fputc(*c, f);
  }
  std::fprintf(f, "</text>\n");
  std::fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n", L, Tm,
               W - L - R, H - Tm - B);
  const double sx = nice_step(x0, x1, 6), sy = nice_step(y0, y1, 6);
  char label[32];
  for (double v = std::ceil(x0 / sx) * sx; v <= x1; v += sx) {
    tick_label(v, label, sizeof label);
    std::fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", X(v), Tm, X(v), H - B);
    std::fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", X(v), H - B + 16, label);
  }
  for (double v = std::ceil(y0 / sy) * sy; v <= y1; v += sy) {
    tick_label(v, label, sizeof label);
    std::fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, Y(v), W - R, Y(v));
    std::fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", L - 6, Y(v) + 4, label);
  }
  std::fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">FLOPs per token</text>\n", (L + W - R) / 2, H - 18);
  std::fprintf(f, "<text transform=\"translate(20 %.1f) rotate(-90)\" text-anchor=\"middle\">loss (nats/token)</text>\n",
               (Tm + H - B) / 2);
  // The front as a staircase from cheapest to best.
  std::vector<const SweepPoint*> front;
  for (const SweepPoint& p : pts)
    if (p.pareto) front.push_back(&p);
  std::sort(front.begin(), front.end(),
            [](const SweepPoint* a, const SweepPoint* b) { return a->r.per_token(a->r.flops) < b->r.per_token(b->r.flops); });
  if (!front.empty()) {
    std::fprintf(f, "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" points=\"");
    for (size_t i = 0; i < front.size(); ++i) {
      double fx = X(front[i]->r.per_token(front[i]->r.flops)), fy = Y(front[i]->r.loss());
      if (i) std::fprintf(f, " %.1f,%.1f", fx, Y(front[i - 1]->r.loss()));
      std::fprintf(f, " %.1f,%.1f", fx, fy);
    }
    std::fprintf(f, "\"/>\n");
  }
  for (const SweepPoint& p : pts) {
    if (!std::isfinite(p.r.loss())) continue;
    double px_ = X(p.r.per_token(p.r.flops)), py_ = Y(p.r.loss());
    const char* fill = p.pareto ? "#d62728" : "#1f77b4";
    if (p.trained)
      std::fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"none\" stroke=\"black\" stroke-width=\"2\"/>\n",
                   px_ - 5, py_ - 5);
    std::fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\" fill-opacity=\"0.8\"><title>theta %g alpha %g%s: "
                    "loss %.4f, %.0f FLOPs/token, mean rank %.2f, quantum share %.1f%%</title></circle>\n",
                 px_, py_, p.pareto ? 5 : 4, fill, p.theta, p.alpha, p.trained ? " (as trained)" : "", p.r.loss(),
                 p.r.per_token(p.r.flops), p.r.mean_rank(), 100 * p.r.quantum_share());
  }
  // Front points are numbered on the plot (points with equal cost and loss share a number) and listed
  // beside it: close points would make inline labels overlap.
  int number = 0;
  double ly = Tm + 100;
  std::fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">front (cheapest first)</text>\n", W - R + 10, ly);
  for (size_t i = 0; i < front.size(); ++i) {
    const SweepPoint& p = *front[i];
    const double fl = p.r.per_token(p.r.flops);
    const bool same = i > 0 && fl == front[i - 1]->r.per_token(front[i - 1]->r.flops) && p.r.loss() == front[i - 1]->r.loss();
    if (!same) {
      ++number;
      std::fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" font-weight=\"bold\" fill=\"#d62728\">%d</text>\n",
                   X(fl) - 4, Y(p.r.loss()) + 18, number);
    }
    tick_label(fl, label, sizeof label);
    ly += 15;
    std::fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">%d: &#952;%g &#945;%g  %.4f @ %s</text>\n", W - R + 10, ly,
                 number, p.theta, p.alpha, p.r.loss(), label);
  }
  const double lx = W - R + 15;
  std::fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#d62728\"/><text x=\"%.1f\" y=\"%.1f\">Pareto front</text>\n",
               lx, Tm + 10, lx + 10, Tm + 14);
  std::fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#1f77b4\"/><text x=\"%.1f\" y=\"%.1f\">dominated</text>\n",
               lx, Tm + 30, lx + 10, Tm + 34);
  std::fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"none\" stroke=\"black\" stroke-width=\"2\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\">as trained</text>\n", lx - 5, Tm + 45, lx + 10, Tm + 54);
  std::fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#555\">&#952; theta, &#945; alpha</text>\n", lx - 5,
               Tm + 76);
  std::fprintf(f, "</svg>\n");
}

int run_sweep(const EvalJob& base_job, const ModelOptions& mo, const std::vector<float>& thetas,
              const std::vector<float>& alphas, const char* prefix) {
  const ModelConfig& c = base_job.model->model().cfg;
  // The model's own setting is always a point (added first when the grid lacks it).
  std::vector<SweepPoint> pts(1);
  pts[0].theta = c.theta, pts[0].alpha = c.alpha, pts[0].trained = true;
  for (float t : thetas)
    for (float a : alphas) {
      if (t == c.theta && a == c.alpha) continue;
      SweepPoint p;
      p.theta = t, p.alpha = a;
      pts.push_back(p);
    }
  Progress progress("qtf eval --sweep", (int64_t)pts.size() * (base_job.n_ids - 1));
  for (SweepPoint& p : pts) {
    ContextOptions o = mo.ctx;
    o.override_theta = o.override_alpha = true;
    o.theta = p.theta, o.alpha = p.alpha;
    char label[48];
    std::snprintf(label, sizeof label, "theta %g alpha %g", p.theta, p.alpha);
    EvalJob job = base_job;
    job.label = label;
    job.progress = &progress;
    if (!evaluate(job, o, &p.r)) return 1;
  }
  progress.finish();
  mark_pareto(&pts);
  std::string csv = std::string(prefix) + "-sweep.csv", svg = std::string(prefix) + "-sweep.svg";
  FILE* f = std::fopen(csv.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "qtf eval: cannot write '%s'\n", csv.c_str());
    return 1;
  }
  std::fprintf(f, "theta,alpha,trained,loss,perplexity,mean_rank,quantum_share,flops_per_token,qsim_flops_per_token,"
                  "energy_J_per_token,time_ms_per_token,pareto\n");
  std::printf("| theta | alpha | loss | mean rank | quantum share | FLOPs/token | energy/token (%s) | time/token | Pareto |\n",
              base_job.profile->name);
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|:---:|\n");
  for (const SweepPoint& p : pts) {
    const EvalResult& r = p.r;
    std::fprintf(f, "%g,%g,%d,", p.theta, p.alpha, p.trained ? 1 : 0);
    put_num(f, "%.6f", r.loss());
    std::fputc(',', f);
    put_num(f, "%.6f", r.ppl());
    std::fprintf(f, ",%.5f,%.5f,%.1f,%.1f,%.6e,%.5f,%d\n", r.mean_rank(), r.quantum_share(), r.per_token(r.flops),
                 r.per_token(r.qsim_flops), r.per_token(r.energy_j), r.per_token(r.time_ms), p.pareto ? 1 : 0);
    std::printf("| %g%s | %g | %.4f | %.2f | %.1f%% | %.0f | %.3e J | %.4f ms | %s |\n", p.theta,
                p.trained ? " (trained)" : "", p.alpha, r.loss(), r.mean_rank(), 100 * r.quantum_share(),
                r.per_token(r.flops), r.per_token(r.energy_j), r.per_token(r.time_ms), p.pareto ? "yes" : "");
  }
  std::fclose(f);
  f = std::fopen(svg.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "qtf eval: cannot write '%s'\n", svg.c_str());
    return 1;
  }
  std::string title = std::string(mo.model_path) + ": loss vs FLOPs/token over theta x alpha (" +
                      std::to_string(base_job.n_ids) + " tokens)";
  write_svg(f, pts, title.c_str());
  std::fclose(f);
  std::fprintf(stderr, "qtf eval: wrote %s and %s\n", csv.c_str(), svg.c_str());
  return 0;
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  ModelOptions mo;
  const char* text_path = nullptr;
  const char* prefix = "qtf";
  bool prefix_given = false, json = false, ablate = false, sweep = false;
  const char* doc_sep = "<|endoftext|>";
  int max_tokens = 2000, stride = 0;
  std::vector<float> thetas{0.1f, 0.3f, 0.5f, 0.7f, 0.9f}, alphas{0.5f, 1.f, 2.f, 4.f};

  const int parsed = parse_options(argc, argv, "eval", kUsage, &mo, [&](Args& a) {
    const char* v = nullptr;
    bool ok = true;
    if (a.is("--json")) json = true;
    else if (a.is("--ablate")) ablate = true;
    else if (a.is("--sweep")) sweep = true;
    else if (a.is("-f", "--file")) ok = a.value(&text_path);
    else if (a.is("--max-tokens")) ok = a.int_value(0, 1 << 30, &max_tokens);
    else if (a.is("--stride")) ok = a.int_value(1, 1 << 16, &stride);
    else if (a.is("--thetas")) ok = a.value(&v) && parse_list(a.flag(), v, &thetas);
    else if (a.is("--alphas")) ok = a.value(&v) && parse_list(a.flag(), v, &alphas);
    else if (a.is("-o", "--output")) ok = prefix_given = a.value(&prefix);
    else if (a.is("--doc-sep")) ok = a.value(&doc_sep);
    else return kUnknown;
    return ok ? kParsed : kBadValue;
  });
  if (parsed != kConsumed) return parsed;
  if (!text_path) {
    std::fprintf(stderr, "qtf eval: no text given (-f FILE)\n%s", kUsage);
    return 2;
  }

  host::LoadedModel lm;
  if (!load_model(mo, &lm)) return 1;
  energy::Profiles profiles;
  const energy::Profile* profile;
  if (!load_profiles(mo, &profiles, &profile)) return 1;
  Status st = validate_options(lm.model(), mo.ctx);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf eval: %s\n", st.message());
    return 1;
  }

  host::FileBytes text;
  st = text.open(text_path, false);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf eval: %s\n", st.message());
    return 1;
  }
  std::vector<int32_t> ids;
  int skipped = 0, n_docs = 0;
  bool complete = true;
  st = tokenize_documents(lm.tokenizer(), reinterpret_cast<const char*>(text.data()), text.size(), doc_sep,
                          (size_t)max_tokens, &ids, &skipped, &n_docs, &complete);
  int n_ids = (int)ids.size();
  if (!st.ok()) {
    std::fprintf(stderr, "qtf eval: cannot tokenize the text: %s\n", st.message());
    return 1;
  }
  if (skipped)
    std::fprintf(stderr, "qtf eval: warning: %d byte(s) of the text have no token in this vocabulary and were skipped\n",
                 skipped);
  if (n_docs > 0)
    std::fprintf(stderr, "qtf eval: %d documents%s, each after BOS\n", n_docs, complete ? "" : " (enough for --max-tokens)");
  const int text_tokens = complete ? n_ids : -1;  // -1: the text was tokenized only as far as needed
  if (max_tokens > 0 && n_ids > max_tokens) n_ids = max_tokens;
  if (n_ids < 2) {
    std::fprintf(stderr, "qtf eval: the text has fewer than 2 tokens to score\n");
    return 1;
  }

  EvalJob job{&lm, &profiles, profile, ids.data(), n_ids, stride, "eval"};
  const int n_ctx = mo.ctx.n_ctx ? mo.ctx.n_ctx : lm.model().cfg.context;
  if (ablate || sweep) {
    if (ablate && run_ablation(job, mo, prefix, prefix_given)) return 1;
    if (sweep && run_sweep(job, mo, thetas, alphas, prefix)) return 1;
    return 0;
  }
  EvalResult r;
  Progress progress("qtf eval", n_ids - 1);
  job.progress = &progress;
  if (!evaluate(job, mo.ctx, &r)) return 1;
  progress.finish();
  print_summary(job, mo, n_ctx, text_tokens, r, json);
  return 0;
}

}  // namespace qtf::cli
