#include "report.h"

#include <cstring>

#include "kernels/kernels.h"

namespace qtf::cli {

bool parse_report_format(const char* s, ReportFormat* out) {
  if (!std::strcmp(s, "table")) *out = ReportFormat::table;
  else if (!std::strcmp(s, "jsonl")) *out = ReportFormat::jsonl;
  else if (!std::strcmp(s, "csv")) *out = ReportFormat::csv;
  else if (!std::strcmp(s, "html")) *out = ReportFormat::html;
  else return false;
  return true;
}

void write_json_escaped(FILE* f, const char* s, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') std::fprintf(f, "\\%c", c);
    else if (c == '\n') std::fputs("\\n", f);
    else if (c == '\t') std::fputs("\\t", f);
    else if (c < 0x20 || c >= 0x80) {
      // Valid multi-byte UTF-8 passes through; a stray byte becomes \u00XX of its value.
      size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
      if (c >= 0x80 && len && i + len <= n && format::utf8_valid(s + i, len)) {
        std::fwrite(s + i, 1, len, f);
        i += len - 1;
      } else {
        std::fprintf(f, "\\u%04x", c);
      }
    } else {
      std::fputc(c, f);
    }
  }
}

// Token text for table/csv cells: printable, no separators.
static void write_plain(FILE* f, const format::Str& t, bool csv) {
  if (csv) std::fputc('"', f);
  for (uint32_t i = 0; i < t.size; ++i) {
    unsigned char c = (unsigned char)t.data[i];
    if (c == '\n') std::fputs("\\n", f);
    else if (c == '"' && csv) std::fputs("\"\"", f);
    else if (c < 0x20) std::fprintf(f, "\\x%02x", c);
    else std::fputc(c, f);
  }
  if (csv) std::fputc('"', f);
}

void report_header(FILE* f, ReportFormat fmt, int n_layers, const char* profile) {
  if (fmt == ReportFormat::table) {
    std::fprintf(f, "%-6s %-5s %-6s %-8s", "phase", "pos", "id", "token");
    for (int l = 0; l < n_layers; ++l) std::fprintf(f, "  L%d:S    h    r  route", l);
    std::fprintf(f, " %12s %14s %9s  (energy: %s; kernels: %s)\n", "FLOPs", "energy_J", "time_ms", profile,
                 kern::simd_arch());
  } else if (fmt == ReportFormat::csv) {
    std::fprintf(f, "phase,pos,token_id,token");
    for (int l = 0; l < n_layers; ++l) std::fprintf(f, ",L%d_S,L%d_h,L%d_rank,L%d_route", l, l, l, l);
    std::fprintf(f, ",flops,qsim_flops,circuits,energy_J,co2_g,qsim_energy_J,qpu_energy_J,time_ms,samples,sample_var\n");
  }
}

void report_row(FILE* f, ReportFormat fmt, const ReportRow& r) {
  const TokenStats& s = *r.stats;
  if (fmt == ReportFormat::table) {
    std::fprintf(f, "%-6s %-5d %-6d ", r.phase, s.pos, s.token);
    char cell[16];
    size_t n = 0;
    for (uint32_t i = 0; i < r.text.size && n + 4 < sizeof cell; ++i) {
      unsigned char c = (unsigned char)r.text.data[i];
      if (c == '\n') { cell[n++] = '\\'; cell[n++] = 'n'; }
      else if (c < 0x20) cell[n++] = '?';
      else cell[n++] = (char)c;
    }
    cell[n] = 0;
    std::fprintf(f, "%-8s", cell);
    for (int l = 0; l < s.n_layers; ++l)
      std::fprintf(f, "  %5.3f %4.2f %2d %-6s", s.layer[l].S, s.layer[l].h, s.layer[l].rank,
                   s.layer[l].quantum ? "quant" : "class");
    std::fprintf(f, " %12lld %14.4e %9.3f", (long long)s.flops, r.cost.energy_j, r.time_ms);
    if (s.samples > 0) std::fprintf(f, "  draws %lld var %.3e", (long long)s.samples, (double)s.sample_var);  // sampled attention
    std::fprintf(f, "\n");
  } else if (fmt == ReportFormat::jsonl) {
    std::fprintf(f, "{\"phase\":\"%s\",\"pos\":%d,\"token_id\":%d,\"token\":\"", r.phase, s.pos, s.token);
    write_json_escaped(f, r.text.data, r.text.size);
    std::fprintf(f, "\",\"layers\":[");
    for (int l = 0; l < s.n_layers; ++l)
      std::fprintf(f, "%s{\"S\":%.6f,\"h\":%.6f,\"rank\":%d,\"route\":\"%s\"}", l ? "," : "", s.layer[l].S,
                   s.layer[l].h, s.layer[l].rank, s.layer[l].quantum ? "quantum" : "classical");
    std::fprintf(f,
                 "],\"flops\":%lld,\"qsim_flops\":%lld,\"circuits\":%lld,\"energy_J\":%.6e,\"co2_g\":%.6e,"
                 "\"qsim_energy_J\":%.6e,\"qpu_energy_J\":%.6e,\"time_ms\":%.4f,\"samples\":%lld,\"sample_var\":%.6e}\n",
                 (long long)s.flops, (long long)s.qsim_flops, (long long)s.circuits, r.cost.energy_j, r.cost.co2_g,
                 r.cost.qsim_energy_j, r.cost.qpu_energy_j, r.time_ms, (long long)s.samples, (double)s.sample_var);
  } else if (fmt == ReportFormat::csv) {
    std::fprintf(f, "%s,%d,%d,", r.phase, s.pos, s.token);
    write_plain(f, r.text, true);
    for (int l = 0; l < s.n_layers; ++l)
      std::fprintf(f, ",%.6f,%.6f,%d,%s", s.layer[l].S, s.layer[l].h, s.layer[l].rank,
                   s.layer[l].quantum ? "quantum" : "classical");
    std::fprintf(f, ",%lld,%lld,%lld,%.6e,%.6e,%.6e,%.6e,%.4f,%lld,%.6e\n", (long long)s.flops, (long long)s.qsim_flops,
                 (long long)s.circuits, r.cost.energy_j, r.cost.co2_g, r.cost.qsim_energy_j, r.cost.qpu_energy_j,
                 r.time_ms, (long long)s.samples, (double)s.sample_var);
  }
}

void print_execution(FILE* f, const Context& ctx) {
  const Model& m = ctx.model();
  const ExecSummary& sum = ctx.exec_summary();
  if (!m.cfg.tensorized) return;
  std::fprintf(f, "execution by cost: budget %.1f KiB for dense copies, %.1f KiB used", sum.budget / 1024.0,
               sum.bytes / 1024.0);
  if (sum.fixed_rank > 0) std::fprintf(f, " (rank %d for every token)\n", sum.fixed_rank);
  else if (ctx.run_options().fixed_rank > 0) std::fprintf(f, " (none: --rank studies the TT plans at a rank)\n");
  else std::fprintf(f, " (none: the rank is chosen per token, a copy would hold one rank of several)\n");
  const char* kinds[7] = {"q", "k", "v", "o", "up", "down", "gate"};
  for (int j = 0; j < 7; ++j) {
    int count[5] = {0};
    int64_t bytes = 0;
    double chosen = 0, stored = 0;
    for (int l = 0; l < m.cfg.n_layers; ++l) {
      const LinearExec* e = ctx.linear_exec(l, j);
      if (e == nullptr || e->path == LinearPath::dense) continue;
      ++count[(int)e->path];
      bytes += e->bytes;
      chosen += e->path == LinearPath::dense_f32 ? e->f32.seconds : e->path == LinearPath::dense_q8 ? e->q8.seconds
                                                                                                   : e->stored.seconds;
      stored += e->stored.seconds;
    }
    if (count[1] + count[2] + count[3] + count[4] == 0) continue;
    std::fprintf(f, "  %-5s", kinds[j]);
    for (int p = 1; p < 5; ++p)
      if (count[p]) std::fprintf(f, " %d %s", count[p], linear_path_name((LinearPath)p));
    std::fprintf(f, ": +%.1f KiB, predicted %.2f us per token (as stored %.2f us)\n", bytes / 1024.0, chosen * 1e6,
                 stored * 1e6);
  }
  if (sum.forced > 0)
    std::fprintf(f, "the memory budget forced %d linears onto a slower path: predicted %.2f us per token in the TT "
                 "linears, %.2f us with copies of %.1f KiB (--mem-budget)\n",
                 sum.forced, sum.seconds * 1e6, sum.best_seconds * 1e6, sum.wanted / 1024.0);
}

}  // namespace qtf::cli
