// The measurement tools end to end (qtf bench, qtf eval [--ablate | --sweep], qtf run --report): the
// binary runs on a committed fixture model (context 16, so windows are exercised) and every output is
// parsed and checked; the eval loss is recomputed here through the engine API.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "host/session.h"
#include "support/json_lite.h"

using qtf::testing::Json;
using qtf::testing::JsonParser;

namespace {

const std::string kModel = std::string(QTF_SOURCE_DIR) + "/tests/fixtures/q4_k3_daruan_adaptive_qattn_tied.qtf";
const std::string kOut = QTF_TOOLS_OUT;

const char kText[] =
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n";

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs `qtf ARGS`, stdout to a file; returns the exit code and the output.
int run_qtf(const std::string& args, std::string* out) {
  const std::string path = kOut + "/stdout.txt";
  int rc = std::system((std::string(QTF_BIN) + " " + args + " > " + path + " 2> " + kOut + "/stderr.txt").c_str());
  *out = slurp(path);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string text_file() {
  const std::string path = kOut + "/text.txt";
  std::ofstream(path, std::ios::binary) << kText;
  return path;
}

Json parse_json(const std::string& s) {
  Json j;
  REQUIRE_MESSAGE(JsonParser(s).parse(&j), s);
  return j;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);)
    if (!l.empty()) v.push_back(l);
  return v;
}

// Splits one CSV line (quoted fields may hold commas and doubled quotes).
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> f(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') f.back() += '"', ++i;
    else if (c == '"') quoted = !quoted;
    else if (c == ',' && !quoted) f.emplace_back();
    else f.back() += c;
  }
  return f;
}

// A CSV file as rows of header -> value; every row must have the header's field count.
std::vector<std::map<std::string, std::string>> read_csv(const std::string& path) {
  std::vector<std::string> ls = lines(slurp(path));
  REQUIRE(ls.size() >= 2);
  std::vector<std::string> head = csv_fields(ls[0]);
  std::vector<std::map<std::string, std::string>> rows;
  for (size_t i = 1; i < ls.size(); ++i) {
    std::vector<std::string> f = csv_fields(ls[i]);
    REQUIRE_MESSAGE(f.size() == head.size(), ls[i]);
    std::map<std::string, std::string> row;
    for (size_t k = 0; k < f.size(); ++k) row[head[k]] = f[k];
    rows.push_back(row);
  }
  return rows;
}

double num(const std::string& s) {
  char* end;
  double v = std::strtod(s.c_str(), &end);
  REQUIRE_MESSAGE((end != s.c_str() && *end == 0), "not a number: '" << s << "'");
  return v;
}

// Tag balance of an XML/HTML document: every element opened is closed in order. Void HTML elements and
// self-closing tags stand alone; <style>/<script> bodies are skipped as raw text.
bool well_formed(const std::string& doc, std::string* why) {
  static const std::set<std::string> kVoid{"meta", "br", "input", "img", "link", "hr"};
  std::vector<std::string> stack;
  size_t i = 0;
  while ((i = doc.find('<', i)) != std::string::npos) {
    size_t end = doc.find('>', i);
    if (end == std::string::npos) { *why = "unterminated tag"; return false; }
    std::string tag = doc.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.empty() || tag[0] == '!' || tag[0] == '?') continue;
    bool closing = tag[0] == '/', self = tag.back() == '/';
    std::string name = tag.substr(closing, tag.find_first_of(" \n/", closing) - closing);
    if (closing) {
      if (stack.empty() || stack.back() != name) { *why = "unexpected </" + name + ">"; return false; }
      stack.pop_back();
    } else if (!self && !kVoid.count(name)) {
      if (name == "style" || name == "script") {
        i = doc.find("</" + name + ">", i);
        if (i == std::string::npos) { *why = "unclosed " + name; return false; }
        i += name.size() + 3;
        continue;
      }
      stack.push_back(name);
    }
  }
  if (!stack.empty()) *why = "unclosed <" + stack.back() + ">";
  return stack.empty();
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t i = 0; (i = s.find(what, i)) != std::string::npos; i += what.size()) ++n;
  return n;
}

}  // namespace

// Native only: under qemu-user QTF_BIN is an emulator command line, not a file posix_spawn can exec, and
// the peak RSS would be the emulator's.
TEST_CASE("bench: peak RSS is qtf's own, not the spawning process's" * doctest::skip(QTF_TOOLS_EMULATED != 0)) {
  // 256 MiB touched here, then qtf started by posix_spawn (vfork + exec): Linux hands the replaced
  // image's high-water mark on to getrusage's ru_maxrss, which once made budget_frontier.py report the
  // Python parent's RSS (up to 2.4 GB) as a 656K-parameter model's.
  std::vector<char> big(256u << 20);
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = (char)i;
  // posix_spawn execs qtf straight from this process (std::system's shell would stand between them).
  const std::string path = kOut + "/rss.json";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const std::string model = kModel;
  const char* argv[] = {QTF_BIN, "bench", "-m", model.c_str(), "-r", "1", "-p", "0", "-n", "4", "-o", "json", nullptr};
  pid_t pid;
  REQUIRE(posix_spawn(&pid, QTF_BIN, &fa, nullptr, const_cast<char* const*>(argv), environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  Json j = parse_json(slurp(path));
  REQUIRE(j.size() == 1);
  CHECK(j[0]["peak_rss_kib"].num > 0);
  CHECK(j[0]["peak_rss_kib"].num < 128 * 1024);
  CHECK(big[4096] == (char)4096);
}

TEST_CASE("bench: pp and tg tests in md, json and csv") {
  std::string out;
  REQUIRE(run_qtf("bench -m " + kModel + " -r 2 -p 4 -n 4 -o json", &out) == 0);
  Json j = parse_json(out);
  REQUIRE(j.type == Json::array);
  REQUIRE(j.size() == 2);
  CHECK(j[0]["test"].str == "pp4");
  CHECK(j[1]["test"].str == "tg4");
  for (size_t i = 0; i < 2; ++i) {
    CHECK(j[i]["avg_ts"].num > 0);
    CHECK(j[i]["samples_ts"].size() == 2);
    CHECK(j[i]["n_threads"].num == 1);
    CHECK(j[i]["model_size"].num > 0);
    CHECK(j[i]["peak_rss_kib"].num > 0);
    CHECK(!j[i]["simd"].str.empty());
    // The cost per token (RunTotals, as qtf run and qtf eval count it): cpu_xeon prices 10 fJ per FLOP.
    CHECK(j[i]["flops_per_token"].num > 0);
    CHECK(j[i]["energy_J_per_token"].num == doctest::Approx(j[i]["flops_per_token"].num * 1e-14).epsilon(1e-5));
    CHECK(j[i]["mean_rank"].num >= 1);
    CHECK(j[i]["jobs_per_token"].num == 0);  // one thread: nothing handed to a pool
  }
  REQUIRE(run_qtf("bench -m " + kModel + " -r 1 -p 4 -n 4", &out) == 0);
  CHECK(out.find("| pp4 |") != std::string::npos);
  CHECK(out.find("| tg4 |") != std::string::npos);
  CHECK(out.find("peak RSS") != std::string::npos);
  CHECK(out.find("converted to f32 0.00 KiB") != std::string::npos);  // an f32 file: nothing converted
  // Resident memory and the roofline: the mapped file is all resident after the tests; tg's rate is
  // reported against the limit given (the fixture is tensorized: the FMA peak).
  REQUIRE(run_qtf("bench -m " + kModel + " -r 1 -p 0 -n 4 --roofline 10,50 -o json", &out) == 0);
  j = parse_json(out);
  CHECK(j[0]["resident_file_bytes"].num == j[0]["model_size"].num);
  CHECK(j[0]["converted_bytes"].num == 0);
  CHECK(j[0]["roofline_achieved"].num == doctest::Approx(j[0]["avg_ts"].num * j[0]["flops_per_token"].num / 1e9).epsilon(1e-3));
  CHECK(j[0]["roofline_fraction"].num == doctest::Approx(j[0]["roofline_achieved"].num / 50).epsilon(1e-3));
  CHECK(run_qtf("bench -m " + kModel + " -r 1 -p 0 -n 4 --roofline 10", &out) == 2);
  REQUIRE(run_qtf("bench -m " + kModel + " -r 1 -p 4 -n 0 -o csv", &out) == 0);
  std::vector<std::string> ls = lines(out);
  REQUIRE(ls.size() == 2);
  CHECK(csv_fields(ls[0]).size() == csv_fields(ls[1]).size());
  // The fixture's context is 16 positions: a longer test is refused, not run past the end.
  CHECK(run_qtf("bench -m " + kModel + " -r 1 -p 64 -n 0", &out) == 1);
}

TEST_CASE("eval: finite loss, perplexity = exp(loss), equal to the loss computed through the API") {
  const std::string text = text_file();
  std::string out;
  REQUIRE(run_qtf("eval -m " + kModel + " -f " + text + " --json", &out) == 0);
  Json j = parse_json(out);
  const double loss = j["loss"].num;
  REQUIRE(std::isfinite(loss));
  CHECK(loss > 0);
  CHECK(j["perplexity"].num == doctest::Approx(std::exp(loss)).epsilon(1e-5));
  const int n = (int)j["tokens"].num;
  CHECK(n == (int)(sizeof kText - 1));  // char tokenizer: one token per character here
  CHECK(j["n_ctx"].num == 16);
  // Chunked windows of 16: the first token of every window is context only.
  CHECK(j["scored"].num == n - (n + 15) / 16);

  // The same windows through the engine API.
  qtf::host::LoadedModel lm;
  REQUIRE(lm.load_file(kModel.c_str()).ok());
  std::vector<int32_t> ids(n);
  int n_ids = 0;
  REQUIRE(lm.tokenizer().encode(kText, sizeof kText - 1, ids.data(), n, &n_ids, nullptr).ok());
  REQUIRE(n_ids == n);
  qtf::host::HostContext hc;
  REQUIRE(hc.init(lm, qtf::ContextOptions{}).ok());
  const int V = lm.model().cfg.vocab;
  double nll = 0;
  int scored = 0;
  std::vector<std::vector<int>> hist(lm.model().cfg.n_layers);  // [layer][rank] tokens, as eval reports
  for (int b = 0; b < n; b += 16) {
    hc.ctx().reset();
    for (int t = b; t + 1 < n && t + 1 < b + 16; ++t) {
      REQUIRE(hc.ctx().eval(ids[t]).ok());
      for (size_t l = 0; l < hist.size(); ++l) {
        const int r = hc.ctx().stats().layer[l].rank;
        if ((int)hist[l].size() <= r) hist[l].resize(r + 1, 0);
        ++hist[l][r];
      }
      const float* l = hc.ctx().logits();
      double z = 0;
      for (int v = 0; v < V; ++v) z += std::exp((double)l[v]);
      nll += std::log(z) - l[ids[t + 1]];
      ++scored;
    }
  }
  CHECK(scored == (int)j["scored"].num);
  CHECK(loss == doctest::Approx(nll / scored).epsilon(1e-5));
  // The rank histogram per layer: tokens per run-time rank, the same counts as through the API.
  REQUIRE(j["rank_hist"].size() == hist.size());
  for (size_t l = 0; l < hist.size(); ++l) {
    REQUIRE(j["rank_hist"][l].size() == hist[l].size());
    for (size_t r = 0; r < hist[l].size(); ++r) CHECK((int)j["rank_hist"][l][r].num == hist[l][r]);
  }

  // Sliding windows score every target exactly once, with more context: a different loss.
  REQUIRE(run_qtf("eval -m " + kModel + " -f " + text + " --json --stride 4", &out) == 0);
  Json s = parse_json(out);
  CHECK(s["scored"].num == n - 1);
  CHECK(std::isfinite(s["loss"].num));
  // --max-tokens cuts the text.
  REQUIRE(run_qtf("eval -m " + kModel + " -f " + text + " --json --max-tokens 40", &out) == 0);
  CHECK(parse_json(out)["tokens"].num == 40);
  CHECK(run_qtf("eval -m " + kModel + " -f " + kOut + "/no-such-file.txt", &out) == 1);
}

TEST_CASE("eval --ablate: one row per switch, each switch visible in its row") {
  std::string out;
  const std::string prefix = kOut + "/ablate";
  std::remove((prefix + "-ablation.csv").c_str());
  REQUIRE(run_qtf("eval -m " + kModel + " -f " + text_file() + " --ablate -o " + prefix, &out) == 0);
  CHECK(out.find("| as trained |") != std::string::npos);
  auto rows = read_csv(prefix + "-ablation.csv");
  std::map<std::string, std::map<std::string, std::string>> by;
  for (auto& r : rows) {
    CHECK(std::isfinite(num(r["loss"])));
    CHECK(num(r["perplexity"]) == doctest::Approx(std::exp(num(r["loss"]))).epsilon(1e-5));
    by[r["switch"]] = r;
  }
  // The fixture: adaptive ranks 2..4, quantum attention, DARUAN.
  REQUIRE(rows.size() == 8);
  REQUIRE(by.count("as trained"));
  CHECK(num(by["all classical"]["quantum_share"]) == 0);
  CHECK(num(by["all quantum"]["quantum_share"]) == 1);
  CHECK(num(by["fixed rank 2 (r_min)"]["mean_rank"]) == 2);
  CHECK(num(by["fixed rank 4 (r_max)"]["mean_rank"]) == 4);
  CHECK(num(by["all classical"]["flops_per_token"]) < num(by["all quantum"]["flops_per_token"]));
  CHECK(num(by["fixed rank 2 (r_min)"]["flops_per_token"]) < num(by["fixed rank 4 (r_max)"]["flops_per_token"]));
  // The three DARUAN paths compute the same function (spline to its table error).
  CHECK(by["DARUAN fourier"]["loss"] == by["as trained"]["loss"]);
  CHECK(num(by["DARUAN quantum"]["loss"]) == doctest::Approx(num(by["as trained"]["loss"])).epsilon(1e-4));
  CHECK(num(by["DARUAN spline"]["loss"]) == doctest::Approx(num(by["as trained"]["loss"])).epsilon(1e-3));
  CHECK(num(by["DARUAN quantum"]["qsim_flops_per_token"]) > num(by["DARUAN fourier"]["qsim_flops_per_token"]));
}

TEST_CASE("eval --sweep: CSV with the Pareto front marked, well-formed SVG") {
  std::string out;
  const std::string prefix = kOut + "/sweep";
  std::remove((prefix + "-sweep.csv").c_str());
  std::remove((prefix + "-sweep.svg").c_str());
  REQUIRE(run_qtf("eval -m " + kModel + " -f " + text_file() + " --sweep --thetas 0.2,0.6 --alphas 0.5,2 -o " + prefix,
              &out) == 0);
  auto rows = read_csv(prefix + "-sweep.csv");
  REQUIRE(rows.size() == 5);  // the model's own (0.4, 1.5) first, then the 2 x 2 grid
  CHECK(rows[0]["trained"] == "1");
  CHECK(num(rows[0]["theta"]) == doctest::Approx(0.4));
  CHECK(num(rows[0]["alpha"]) == doctest::Approx(1.5));
  int front = 0;
  for (auto& p : rows) {
    bool dominated = false;
    for (auto& q : rows) {
      double pf = num(p["flops_per_token"]), qf = num(q["flops_per_token"]), pl = num(p["loss"]), ql = num(q["loss"]);
      dominated |= qf <= pf && ql <= pl && (qf < pf || ql < pl);
    }
    CHECK(p["pareto"] == (dominated ? "0" : "1"));
    front += p["pareto"] == "1";
  }
  CHECK(front >= 1);
  const std::string svg = slurp(prefix + "-sweep.svg");
  std::string why;
  CHECK_MESSAGE(well_formed(svg, &why), why);
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(count(svg, "<circle") >= rows.size());
  CHECK(count(svg, "<polyline") == 1);
}

TEST_CASE("run --report: html, jsonl and csv are well-formed, one entry per evaluated token") {
  const std::string base = "run -m " + kModel + " -p \"ROMEO:\" -n 8 --temp 0 -q --report ";
  const int n_tokens = 6 + 7;  // the prompt, then every generated token but the last (never evaluated)
  std::string out;
  REQUIRE(run_qtf(base + "html " + kOut + "/report.html", &out) == 0);
  const std::string html = slurp(kOut + "/report.html");
  std::string why;
  CHECK_MESSAGE(well_formed(html, &why), why);
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(count(html, "<span class=\"t") == (size_t)n_tokens);
  CHECK(count(html, "data-tip=\"pos ") == (size_t)n_tokens);
  CHECK(count(html, "class=\"legend\"") == 3);
  CHECK(html.find("http") == std::string::npos);  // self-contained: no external resources

  REQUIRE(run_qtf(base + "jsonl " + kOut + "/report.jsonl", &out) == 0);
  std::vector<std::string> ls = lines(slurp(kOut + "/report.jsonl"));
  REQUIRE(ls.size() == (size_t)n_tokens);
  for (const std::string& l : ls) {
    Json j = parse_json(l);
    CHECK(j["layers"].size() == 2);
    CHECK(j["flops"].num > 0);
  }

  REQUIRE(run_qtf(base + "csv " + kOut + "/report.csv", &out) == 0);
  CHECK(read_csv(kOut + "/report.csv").size() == (size_t)n_tokens);
}
