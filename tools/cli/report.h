// Per-token report writers for `qtf run --report` (table, jsonl, csv; html is report_html.h).
#pragma once
#include <cstdio>

#include "energy/energy.h"
#include "model/forward.h"
#include "runtime/context.h"
#include "format/reader.h"

namespace qtf::cli {

enum class ReportFormat { none, table, jsonl, csv, html };

struct ReportRow {
  const char* phase;  // "prompt" or "gen"
  format::Str text;   // the token's bytes
  const TokenStats* stats;
  energy::TokenCost cost;
  double time_ms;
};

bool parse_report_format(const char* s, ReportFormat* out);
// table/jsonl/csv only: both write nothing for html, which is written whole at the end of the run.
void report_header(FILE* f, ReportFormat fmt, int n_layers, const char* profile);
void report_row(FILE* f, ReportFormat fmt, const ReportRow& row);
// Execution by cost: how the context's TT linears run, grouped per kind (q k v o up down gate), the
// copies' bytes against the budget, and whether the budget forced a path predicted slower. Nothing for
// a dense model.
void print_execution(FILE* f, const Context& ctx);
// Writes s[0..n) as a JSON string body (no quotes), escaping control bytes and invalid UTF-8.
void write_json_escaped(FILE* f, const char* s, size_t n);

}  // namespace qtf::cli
