#include "report_html.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "format/format.h"

namespace qtf::cli {
namespace {

struct Rgb {
  int r, g, b;
};

// Colour ramps (ColorBrewer YlOrRd, Blues, Purples), light to dark, light enough for black text.
const Rgb kEntropyRamp[] = {{255, 255, 229}, {254, 217, 118}, {253, 141, 60}, {240, 59, 32}};
const Rgb kRankRamp[] = {{247, 251, 255}, {198, 219, 239}, {107, 174, 214}, {49, 130, 189}};
const Rgb kRouteRamp[] = {{252, 251, 253}, {218, 218, 235}, {158, 154, 200}, {117, 107, 177}};

Rgb ramp(const Rgb (&stops)[4], double t) {
  t = std::isfinite(t) ? std::min(1.0, std::max(0.0, t)) : 0;
  const double x = t * 3;
  const int i = std::min(2, (int)x);
  const double u = x - i;
  const Rgb &a = stops[i], &b = stops[i + 1];
  return {(int)std::lround(a.r + (b.r - a.r) * u), (int)std::lround(a.g + (b.g - a.g) * u),
          (int)std::lround(a.b + (b.b - a.b) * u)};
}

void put_rgb(FILE* f, Rgb c) { std::fprintf(f, "#%02x%02x%02x", c.r, c.g, c.b); }

void put_gradient(FILE* f, const Rgb (&stops)[4]) {
  std::fputs("linear-gradient(to right", f);
  for (const Rgb& c : stops) {
    std::fputc(',', f);
    put_rgb(f, c);
  }
  std::fputc(')', f);
}

// HTML-escapes s; in_attr keeps newlines literal (the tooltip shows them), else a newline token is
// drawn as a visible return mark followed by the real line break.
void put_escaped(FILE* f, const char* s, size_t n, bool in_attr) {
  const bool valid = format::utf8_valid(s, n);
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = (unsigned char)s[i];
    if (c == '&') std::fputs("&amp;", f);
    else if (c == '<') std::fputs("&lt;", f);
    else if (c == '>') std::fputs("&gt;", f);
    else if (c == '"') std::fputs("&quot;", f);
    else if (c == '\n') std::fputs(in_attr ? "\\n" : "<span class=\"nl\">&#8629;</span>\n", f);
    else if (c < 0x20 || (c >= 0x80 && !valid)) std::fprintf(f, "\\x%02x", c);
    else std::fputc(c, f);
  }
}

const char kStyle[] = R"(
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}
.meta{color:#555;font-size:13px;margin-bottom:12px}
.controls{margin:8px 0;font-size:14px}
.controls label{margin-right:14px}
.legend{display:none;align-items:center;gap:8px;font-size:13px;margin:6px 0 4px}
.key{font-size:13px;margin:0 0 14px;color:#444}
body[data-mode=entropy] .legend[data-for=entropy],body[data-mode=rank] .legend[data-for=rank],
body[data-mode=route] .legend[data-for=route]{display:flex}
.bar{width:220px;height:14px;border:1px solid #999}
.uline{border-bottom:3px solid #54278f;padding:0 4px}
.text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:15px;line-height:1.9;white-space:pre-wrap;
  border:1px solid #ddd;padding:12px;border-radius:4px}
.t{position:relative;border-bottom:3px solid transparent}
body[data-mode=entropy] .t{background:var(--s)}
body[data-mode=rank] .t{background:var(--r)}
body[data-mode=route] .t{background:var(--q)}
.t.qr{border-bottom-color:#54278f}
.t.p{opacity:.75;font-style:italic}
.nl{color:#999}
.t:hover{outline:1px solid #000}
.t:hover::after{content:attr(data-tip);position:absolute;left:0;top:1.8em;z-index:10;white-space:pre;
  background:#222;color:#fff;font-size:12px;line-height:1.35;padding:6px 8px;border-radius:4px;font-style:normal}
table{border-collapse:collapse;font-size:13px;margin-top:16px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f4f4f4}
)";

}  // namespace

void HtmlReport::add(const ReportRow& row) {
  tokens_.push_back({std::string(row.text.data, row.text.size), !std::strcmp(row.phase, "prompt"), *row.stats,
                     row.cost, row.time_ms});
}

void HtmlReport::write(FILE* f, const char* model_path, const ModelConfig& c, const char* profile) const {
  const int L = c.n_layers;
  // Per-token means over layers; the colour scales span the range seen in this run (the entropy can
  // reach Q/2 bits, but a trained model's tokens use a narrow band of it, which a full scale would hide).
  std::vector<double> mean_s(tokens_.size()), mean_r(tokens_.size()), share_q(tokens_.size());
  double s_lo = 1e300, s_hi = -1e300, r_lo = 1e300, r_hi = -1e300;
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const TokenStats& s = tokens_[i].stats;
    for (int l = 0; l < s.n_layers; ++l) mean_s[i] += s.layer[l].S, mean_r[i] += s.layer[l].rank, share_q[i] += s.layer[l].quantum;
    if (s.n_layers) mean_s[i] /= s.n_layers, mean_r[i] /= s.n_layers, share_q[i] /= s.n_layers;
    s_lo = std::min(s_lo, mean_s[i]), s_hi = std::max(s_hi, mean_s[i]);
    r_lo = std::min(r_lo, mean_r[i]), r_hi = std::max(r_hi, mean_r[i]);
  }
  if (tokens_.empty()) s_lo = s_hi = r_lo = r_hi = 0;
  auto unit = [](double v, double lo, double hi) { return hi > lo ? (v - lo) / (hi - lo) : 0.0; };

  // Run totals and per-layer summaries.
  double flops = 0, qsim = 0, energy_j = 0, ms = 0;
  int n_prompt = 0, n_gen = 0;
  std::vector<double> layer_s(L, 0), layer_h(L, 0), layer_q(L, 0);
  std::vector<std::vector<int>> rank_hist(L);
  for (const Token& t : tokens_) {
    (t.prompt ? n_prompt : n_gen)++;
    flops += (double)t.stats.flops, qsim += (double)t.stats.qsim_flops, energy_j += t.cost.energy_j, ms += t.time_ms;
    for (int l = 0; l < L; ++l) {
      const LayerStats& s = t.stats.layer[l];
      layer_s[l] += s.S, layer_h[l] += s.h, layer_q[l] += s.quantum;
      if ((int)rank_hist[l].size() <= s.rank) rank_hist[l].resize(s.rank + 1, 0);
      rank_hist[l][s.rank]++;
    }
  }
  const double n = tokens_.empty() ? 1 : (double)tokens_.size();

  std::fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>qtf report: ");
  put_escaped(f, model_path, std::strlen(model_path), false);
  std::fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body data-mode=\"entropy\">\n<h1>qtf run report</h1>\n", kStyle);
  std::fprintf(f, "<div class=\"meta\">");
  put_escaped(f, model_path, std::strlen(model_path), false);
  std::fprintf(f, ": d=%d, L=%d, H=%d, %s, Q=%d, ranks %d..%d, theta %.3g, alpha %.3g, %s<br>\n", c.d, L, c.n_heads,
               c.tensorized ? "tensor-train" : "dense", c.n_qubits, c.adaptive_rank ? c.r_min : c.tt_rank,
               c.adaptive_rank ? c.r_max : c.tt_rank, c.theta, c.alpha,
               c.activation == Activation::daruan ? "DARUAN" : "GELU");
  std::fprintf(f, "%d prompt + %d generated tokens; per token: %.0f FLOPs (%.1f%% circuit simulation), %.3e J "
                  "(%s, estimate), %.3f ms measured</div>\n",
               n_prompt, n_gen, flops / n, flops > 0 ? 100 * qsim / flops : 0.0, energy_j / n, profile, ms / n);

  std::fprintf(f, "<div class=\"controls\">colour by: "
                  "<label><input type=\"radio\" name=\"mode\" value=\"entropy\" checked> entanglement entropy</label>"
                  "<label><input type=\"radio\" name=\"mode\" value=\"rank\"> TT rank</label>"
                  "<label><input type=\"radio\" name=\"mode\" value=\"route\"> quantum route share</label></div>\n");
  auto legend = [&](const char* mode, const Rgb(&stops)[4], const char* lo, const char* hi, const char* what) {
    std::fprintf(f, "<div class=\"legend\" data-for=\"%s\"><span>%s</span><span class=\"bar\" style=\"background:", mode, lo);
    put_gradient(f, stops);
    std::fprintf(f, "\"></span><span>%s</span><span>%s</span></div>\n", hi, what);
  };
  char lo[48], hi[48], what[96];
  std::snprintf(lo, sizeof lo, "%.3f", s_lo);
  std::snprintf(hi, sizeof hi, "%.3f bits", s_hi);
  std::snprintf(what, sizeof what, "mean S over layers (range in this run; at most %d bits)", c.n_qubits / 2);
  legend("entropy", kEntropyRamp, lo, hi, what);
  std::snprintf(lo, sizeof lo, "%.2f", r_lo);
  std::snprintf(hi, sizeof hi, "%.2f", r_hi);
  legend("rank", kRankRamp, lo, hi, "mean TT rank over layers (range in this run)");
  legend("route", kRouteRamp, "0", "1", "share of layers routed quantum");
  std::fprintf(f, "<div class=\"key\"><span class=\"uline\">underlined</span> routed to quantum attention in &ge; 1 "
                  "layer; prompt tokens in italics; hover a token for its per-layer S, h, rank, route and cost</div>\n");

  std::fprintf(f, "<div class=\"text\">");
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const Token& t = tokens_[i];
    const TokenStats& s = t.stats;
    std::fprintf(f, "<span class=\"t%s%s\" style=\"--s:", share_q[i] > 0 ? " qr" : "", t.prompt ? " p" : "");
    put_rgb(f, ramp(kEntropyRamp, unit(mean_s[i], s_lo, s_hi)));
    std::fputs(";--r:", f);
    put_rgb(f, ramp(kRankRamp, unit(mean_r[i], r_lo, r_hi)));
    std::fputs(";--q:", f);
    put_rgb(f, ramp(kRouteRamp, share_q[i]));
    std::fprintf(f, "\" data-tip=\"pos %d  id %d  &quot;", s.pos, s.token);
    put_escaped(f, t.text.data(), t.text.size(), true);
    std::fprintf(f, "&quot;  %s\nlayer  S      h      rank  route", t.prompt ? "prompt" : "generated");
    for (int l = 0; l < s.n_layers; ++l)
      std::fprintf(f, "\nL%-4d  %.3f  %.3f  %-4d  %s", l, s.layer[l].S, s.layer[l].h, s.layer[l].rank,
                   s.layer[l].quantum ? "quantum" : "classical");
    std::fprintf(f, "\n%lld FLOPs (%lld circuit sim)\n%.3e J  %.4f ms\">", (long long)s.flops, (long long)s.qsim_flops,
                 t.cost.energy_j, t.time_ms);
    put_escaped(f, t.text.data(), t.text.size(), false);
    std::fputs("</span>", f);
  }
  std::fprintf(f, "</div>\n");

  std::fprintf(f, "<table>\n<tr><th>layer</th><th>mean S (bits)</th><th>mean h</th><th>quantum share</th>"
                  "<th>ranks used</th></tr>\n");
  for (int l = 0; l < L; ++l) {
    std::fprintf(f, "<tr><td>L%d</td><td>%.3f</td><td>%.3f</td><td>%.1f%%</td><td>", l, layer_s[l] / n, layer_h[l] / n,
                 100 * layer_q[l] / n);
    bool first = true;
    for (size_t r = 0; r < rank_hist[l].size(); ++r) {
      if (!rank_hist[l][r]) continue;
      std::fprintf(f, "%sr=%zu: %.1f%%", first ? "" : ", ", r, 100 * rank_hist[l][r] / n);
      first = false;
    }
    std::fprintf(f, "</td></tr>\n");
  }
  std::fprintf(f, "</table>\n");
  std::fprintf(f, "<script>\nfor (const r of document.querySelectorAll('input[name=mode]'))\n"
                  "  r.addEventListener('change', () => { document.body.dataset.mode = r.value; });\n</script>\n");
  std::fprintf(f, "</body>\n</html>\n");
}

}  // namespace qtf::cli
