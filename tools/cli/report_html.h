// `qtf run --report html FILE`: one self-contained page (inline CSS and a few lines of JS, no external
// resources). The text with each token coloured by its entanglement entropy, rank or route
// (selectable), quantum-routed tokens underlined, per-layer detail on hover, a legend and a per-layer
// summary. Rows are collected while the run streams and written once at the end.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "model/model.h"
#include "report.h"

namespace qtf::cli {

class HtmlReport {
 public:
  void add(const ReportRow& row);
  // model_path and profile are shown in the header; cfg sets the colour scales (S in 0..Q/2 bits,
  // rank in r_min..r_max).
  void write(FILE* f, const char* model_path, const ModelConfig& cfg, const char* profile) const;

 private:
  struct Token {
    std::string text;
    bool prompt;
    TokenStats stats;
    energy::TokenCost cost;
    double time_ms;
  };
  std::vector<Token> tokens_;
};

}  // namespace qtf::cli
