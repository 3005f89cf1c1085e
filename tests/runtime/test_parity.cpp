// The engine against the Python reference (tools/train/model.py): committed fixtures made by
// tools/train/make_fixtures.py hold tiny random models and the reference's logits, entropies, ranks
// and routes (float64) for a fixed token sequence. Logits must agree to 1e-4; decisions exactly.
#include <doctest/doctest.h>

#include <cmath>
#include <dirent.h>
#include <string>
#include <vector>

#include "host/session.h"
#include "support/json_lite.h"

using namespace qtf;
using qtf::testing::Json;

namespace {

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  std::string dir = std::string(QTF_SOURCE_DIR) + "/tests/fixtures";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0) names.push_back(n.substr(0, n.size() - 5));
    }
    closedir(d);
  }
  return names;
}

void check_fixture(const std::string& name, quantum::DaruanPath path, float tol) {
  const std::string base = std::string(QTF_SOURCE_DIR) + "/tests/fixtures/" + name;
  Json fx;
  REQUIRE_MESSAGE(qtf::testing::load_json(base + ".json", &fx), "cannot parse ", base, ".json");
  host::LoadedModel lm;
  Status st = lm.load_file((base + ".qtf").c_str());
  REQUIRE_MESSAGE(st.ok(), st.message());
  ContextOptions o;
  o.mem_budget = 0;  // the TT plans, as the reference runs them (no dense copies)
  o.act_path = path;
  host::HostContext hc;
  REQUIRE(hc.init(lm, o).ok());
  const ModelConfig& c = lm.model().cfg;
  const Json& tokens = fx["tokens"];
  REQUIRE(tokens.size() > 0);
  float worst = 0;
  for (size_t t = 0; t < tokens.size(); ++t) {
    REQUIRE(hc.ctx().eval((int)tokens[t].num).ok());
    const float* logits = hc.ctx().logits();
    const Json& ref = fx["logits"][t];
    REQUIRE(ref.size() == (size_t)c.vocab);
    for (int v = 0; v < c.vocab; ++v) worst = std::fmax(worst, std::fabs(logits[v] - (float)ref[v].num));
    const TokenStats& s = hc.ctx().stats();
    for (int l = 0; l < c.n_layers; ++l) {
      INFO(name << " position " << t << " layer " << l);
      CHECK(std::fabs(s.layer[l].S - fx["S"][t][l].num) <= 1e-4);
      if (fx.has("rank")) CHECK(s.layer[l].rank == (int)fx["rank"][t][l].num);
      if (fx.has("quantum")) CHECK((int)s.layer[l].quantum == (int)fx["quantum"][t][l].num);
    }
    if (fx.has("sample_var")) {  // sampled attention (docs/qllm.md): the draws and their variance
      INFO(name << " position " << t);
      CHECK(s.samples == (int64_t)fx["samples"].num);
      CHECK(std::fabs(s.sample_var - fx["sample_var"][t].num) <= 1e-4 * (1 + std::fabs(fx["sample_var"][t].num)));
    }
  }
  INFO(name << ": max |logit difference| = " << worst);
  CHECK(worst <= tol);
  MESSAGE(name << " (" << (path == quantum::DaruanPath::fourier ? "fourier" : "quantum")
               << " path): max |logit - reference| = " << worst);
}

}  // namespace

TEST_CASE("engine logits, entropies, ranks and routes match the Python reference fixtures") {
  std::vector<std::string> names = fixture_names();
  REQUIRE_MESSAGE(names.size() >= 4, "expected the committed fixtures in tests/fixtures/");
  for (const std::string& n : names) {
    check_fixture(n, quantum::DaruanPath::fourier, 1e-4f);
    check_fixture(n, quantum::DaruanPath::quantum, 1e-4f);
  }
}
