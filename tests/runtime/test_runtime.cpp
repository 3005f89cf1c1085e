// Runtime mechanics on small random models: loading checks, contexts, routes and ranks, tokenizers,
// sampling. Numerical agreement with the Python reference is in test_parity.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "host/session.h"
#include "support/model_edit.h"
#include "support/tiny_model.h"

using namespace qtf;
using qtf::testing::make_tiny_model;
using qtf::testing::TinyConfig;

namespace {

struct Loaded {
  std::vector<uint8_t> bytes;
  host::LoadedModel lm;
  Status st;
  explicit Loaded(const TinyConfig& c) : bytes(make_tiny_model(c)) { st = lm.load_memory(bytes.data(), bytes.size()); }
};

std::vector<float> run_tokens(const host::LoadedModel& lm, const ContextOptions& o, const std::vector<int>& toks,
                              std::vector<TokenStats>* stats = nullptr) {
  host::HostContext hc;
  REQUIRE(hc.init(lm, o).ok());
  for (int t : toks) {
    REQUIRE(hc.ctx().eval(t).ok());
    if (stats) stats->push_back(hc.ctx().stats());
  }
  const float* l = hc.ctx().logits();
  return std::vector<float>(l, l + lm.model().cfg.vocab);
}

}  // namespace

TEST_CASE("models of every supported kind load and produce finite logits") {
  for (int variant = 0; variant < 6; ++variant) {
    TinyConfig c;
    if (variant == 1) { c.activation = "gelu"; c.tied = false; }
    if (variant == 2) { c.n_qubits = 2; c.quantum_attention = false; }
    if (variant == 3) { c.d_factors = {2, 2, 4}; c.ff_factors = {2, 4, 4}; }
    if (variant == 4) { c.tensorized = false; c.n_qubits = 0; c.activation = "gelu"; }  // dense baseline
    if (variant == 5) { c.adaptive_rank = false; c.n_qubits = 6; }
    Loaded m(c);
    INFO("variant " << variant << ": " << m.st.message());
    REQUIRE(m.st.ok());
    std::vector<float> logits = run_tokens(m.lm, ContextOptions{}, {1, 5, 9, 2, 30});
    for (float x : logits) REQUIRE(std::isfinite(x));
    CHECK(m.lm.model().total_params() > m.lm.model().block_params());
  }
}

TEST_CASE("a model whose metadata contradicts its tensors is rejected with the tensor named") {
  // The tensors of a d_ff = 32 model under metadata claiming d_ff = 64.
  qtf::testing::ModelEdit edit;
  edit.meta = [](const std::string& key, format::Writer* w) {
    if (key == "model.d_ff") w->add_i64(key, 64);
    else if (key == "model.tt.ff_factors") w->add_i64_array(key, {8, 8});
    else return false;
    return true;
  };
  std::vector<uint8_t> bad = qtf::testing::rewrite_model(make_tiny_model(TinyConfig{}), edit);
  REQUIRE(!bad.empty());
  host::LoadedModel lm;
  Status st = lm.load_memory(bad.data(), bad.size());
  CHECK(st.code() == Err::bad_shape);
  CHECK(std::string(st.message()).find("blk.0.ffn.up") != std::string::npos);
}

TEST_CASE("missing tensors and bad config values are clear errors") {
  TinyConfig c;
  c.n_heads = 3;  // does not divide d = 16
  Loaded m(c);
  CHECK(m.st.code() == Err::bad_value);
  CHECK(std::string(m.st.message()).find("n_heads 3") != std::string::npos);
}

TEST_CASE("rank follows the entropy schedule; fixed rank and routes can be forced") {
  TinyConfig c;
  c.r_min = 1;
  c.r_max = 3;
  c.alpha = 1.5;
  Loaded m(c);
  REQUIRE(m.st.ok());
  std::vector<int> toks = {3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3};
  std::vector<TokenStats> stats;
  run_tokens(m.lm, ContextOptions{}, toks, &stats);
  int quantum = 0, classical = 0;
  for (const TokenStats& s : stats)
    for (int l = 0; l < s.n_layers; ++l) {
      const LayerStats& ls = s.layer[l];
      CHECK(ls.S >= 0.f);
      CHECK(ls.S <= 2.0f + 1e-4f);  // Q/2 bits
      int expect = 1 + (int)std::floor(1.5f * ls.S);
      expect = expect < 1 ? 1 : expect > 3 ? 3 : expect;
      CHECK(ls.rank == expect);
      CHECK(ls.quantum == (ls.h > 0.3f));
      (ls.quantum ? quantum : classical)++;
    }
  CHECK(quantum + classical == (int)toks.size() * c.n_layers);

  ContextOptions fixed;
  fixed.fixed_rank = 2;
  fixed.route = RouteMode::all_quantum;
  stats.clear();
  run_tokens(m.lm, fixed, toks, &stats);
  for (const TokenStats& s : stats)
    for (int l = 0; l < s.n_layers; ++l) {
      CHECK(s.layer[l].rank == 2);
      CHECK(s.layer[l].quantum == 1);
    }
  ContextOptions classical_only;
  classical_only.route = RouteMode::all_classical;
  stats.clear();
  run_tokens(m.lm, classical_only, toks, &stats);
  for (const TokenStats& s : stats)
    for (int l = 0; l < s.n_layers; ++l) CHECK(s.layer[l].quantum == 0);

  // Forcing classical routing on a model without quantum attention changes nothing; forcing quantum fails.
  TinyConfig nq = c;
  nq.quantum_attention = false;
  Loaded m2(nq);
  REQUIRE(m2.st.ok());
  host::HostContext hc;
  ContextOptions q;
  q.route = RouteMode::all_quantum;
  CHECK(hc.init(m2.lm, q).code() == Err::invalid_argument);
}

TEST_CASE("the three DARUAN paths give nearly the same logits") {
  TinyConfig c;
  Loaded m(c);
  REQUIRE(m.st.ok());
  std::vector<int> toks = {3, 14, 15, 9, 26};
  ContextOptions o;
  o.act_path = quantum::DaruanPath::quantum;
  std::vector<float> lq = run_tokens(m.lm, o, toks);
  o.act_path = quantum::DaruanPath::fourier;
  std::vector<float> lf = run_tokens(m.lm, o, toks);
  o.act_path = quantum::DaruanPath::spline;
  o.spline.knots = 1025;
  std::vector<float> ls = run_tokens(m.lm, o, toks);
  float df = 0, ds = 0;
  for (size_t i = 0; i < lq.size(); ++i) {
    df = std::fmax(df, std::fabs(lq[i] - lf[i]));
    ds = std::fmax(ds, std::fabs(lq[i] - ls[i]));
  }
  CHECK(df < 1e-3f);
  CHECK(ds < 5e-2f);
}

TEST_CASE("context: full context, bad token ids and reset") {
  TinyConfig c;
  c.context = 8;
  Loaded m(c);
  REQUIRE(m.st.ok());
  host::HostContext hc;
  ContextOptions o;
  o.n_ctx = 4;
  REQUIRE(hc.init(m.lm, o).ok());
  Context& ctx = hc.ctx();
  CHECK(ctx.eval(-1).code() == Err::out_of_range);
  CHECK(ctx.eval(m.lm.model().cfg.vocab).code() == Err::out_of_range);
  for (int i = 0; i < 4; ++i) REQUIRE(ctx.eval(i + 1).ok());
  std::vector<float> first(ctx.logits(), ctx.logits() + m.lm.model().cfg.vocab);
  Status st = ctx.eval(1);
  CHECK(st.code() == Err::context_full);
  CHECK(std::string(st.message()).find("context is full") != std::string::npos);
  ctx.reset();
  for (int i = 0; i < 4; ++i) REQUIRE(ctx.eval(i + 1).ok());
  for (size_t i = 0; i < first.size(); ++i) CHECK(ctx.logits()[i] == first[i]);  // deterministic after reset

  ContextOptions too_long;
  too_long.n_ctx = 9;
  host::HostContext hc2;
  CHECK(hc2.init(m.lm, too_long).code() == Err::invalid_argument);
}

TEST_CASE("char tokenizer: round trip, unknown characters and invalid UTF-8 are skipped and counted") {
  TinyConfig c;
  Loaded m(c);
  REQUIRE(m.st.ok());
  const Tokenizer& t = m.lm.tokenizer();
  std::string text = "Hello, world!\nTo be.";
  std::vector<int32_t> ids(64);
  int n = 0, skipped = -1;
  REQUIRE(t.encode(text.data(), text.size(), ids.data(), 64, &n, &skipped).ok());
  CHECK(n == (int)text.size());
  CHECK(skipped == 0);
  std::string back;
  for (int i = 0; i < n; ++i) back.append(t.token_text(ids[i]).data, t.token_text(ids[i]).size);
  CHECK(back == text);

  std::string odd = "a\xC3\xA9" "b\xFF\xFE" "c\xE2\x82";  // é (not in vocab), invalid bytes, cut sequence
  REQUIRE(t.encode(odd.data(), odd.size(), ids.data(), 64, &n, &skipped).ok());
  CHECK(n == 3);
  CHECK(skipped == 6);
  CHECK(t.encode(text.data(), text.size(), ids.data(), 5, &n, &skipped).code() == Err::out_of_range);
  CHECK(n == (int)text.size());
  CHECK(t.token_text(-1).size == 0);
  CHECK(t.token_text(100000).size == 0);
}

namespace {
// A tiny byte-level BPE vocabulary: 256 byte tokens plus merges "t h" -> "th", "th e" -> "the", "e \n".
std::vector<uint8_t> bpe_model() {
  TinyConfig c;
  c.vocab = 259;
  qtf::testing::ModelEdit edit;
  edit.meta = [](const std::string& key, format::Writer* w) {
    if (key == "tokenizer.type") {
      w->add_str(key, "bpe");
    } else if (key == "tokenizer.tokens") {
      std::vector<std::string> toks;
      for (int b = 0; b < 256; ++b) {
        char buf[8];
        if (b == '\\') toks.push_back("\\\\");
        else if (b < 0x20 || b >= 0x7F) { std::snprintf(buf, sizeof buf, "\\x%02x", b); toks.push_back(buf); }
        else toks.push_back(std::string(1, (char)b));
      }
      toks.push_back("th");
      toks.push_back("the");
      toks.push_back("e\\x0a");  // "e\n"
      w->add_str_array(key, toks);
      w->add_str_array("tokenizer.merges", {"t h", "th e", "e \\x0a"});
    } else {
      return false;
    }
    return true;
  };
  return qtf::testing::rewrite_model(make_tiny_model(c), edit);
}
}  // namespace

TEST_CASE("byte-level BPE: merges by priority, round-trips any bytes") {
  std::vector<uint8_t> bytes = bpe_model();
  host::LoadedModel lm;
  Status st = lm.load_memory(bytes.data(), bytes.size());
  INFO(st.message());
  REQUIRE(st.ok());
  const Tokenizer& t = lm.tokenizer();
  CHECK(t.kind() == TokenizerKind::bpe);
  std::string text = "the then\n\xFF\x00 e\n";
  text.push_back('\0');
  std::vector<int32_t> ids(64);
  int n = 0, skipped = -1;
  REQUIRE(t.encode(text.data(), text.size(), ids.data(), 64, &n, &skipped).ok());
  CHECK(skipped == 0);
  CHECK(ids[0] == 257);  // "the"
  CHECK(ids[1] == ' ');
  CHECK(ids[2] == 257);  // "then" = "the" + "n"
  CHECK(ids[3] == 'n');
  std::string back;
  for (int i = 0; i < n; ++i) back.append(t.token_text(ids[i]).data, t.token_text(ids[i]).size);
  CHECK(back == text);
  CHECK(n < (int)text.size());
  // Model runs on BPE ids.
  host::HostContext hc;
  REQUIRE(hc.init(lm, ContextOptions{}).ok());
  for (int i = 0; i < n && i < 8; ++i) REQUIRE(hc.ctx().eval(ids[i]).ok());
}

TEST_CASE("sampler: greedy, seeds, top-k and repetition penalty") {
  const int V = 10;
  float logits[V] = {0.1f, 2.0f, 0.3f, 1.9f, -1.f, 0.f, 0.5f, 1.0f, 1.5f, -3.f};
  host::HostSampler greedy;
  SamplerOptions g;
  g.temperature = 0;
  REQUIRE(greedy.init(V, g).ok());
  CHECK(greedy.get().sample(logits) == 1);

  SamplerOptions o;
  o.seed = 42;
  o.top_k = 0;
  o.top_p = 1.0f;
  o.min_p = 0;
  o.temperature = 1.0f;
  host::HostSampler a, b, c;
  REQUIRE(a.init(V, o).ok());
  REQUIRE(b.init(V, o).ok());
  o.seed = 43;
  REQUIRE(c.init(V, o).ok());
  std::vector<int> sa, sb, sc;
  int hist[V] = {0};
  for (int i = 0; i < 2000; ++i) {
    sa.push_back(a.get().sample(logits));
    sb.push_back(b.get().sample(logits));
    sc.push_back(c.get().sample(logits));
    hist[sa.back()]++;
  }
  CHECK(sa == sb);
  CHECK(sa != sc);
  // Frequencies follow softmax: token 1 (p~0.26) more often than token 4 (p~0.013).
  CHECK(hist[1] > 300);
  CHECK(hist[4] < 80);

  SamplerOptions k1 = o;
  k1.top_k = 1;
  host::HostSampler topk;
  REQUIRE(topk.init(V, k1).ok());
  for (int i = 0; i < 50; ++i) CHECK(topk.get().sample(logits) == 1);

  SamplerOptions rp = g;
  rp.repeat_penalty = 2.0f;
  host::HostSampler pen;
  REQUIRE(pen.init(V, rp).ok());
  pen.get().accept(1);
  CHECK(pen.get().sample(logits) == 3);  // 2.0 / 2 = 1.0 < 1.9

  SamplerOptions bad = o;
  bad.top_p = 0;
  host::HostSampler x;
  CHECK(x.init(V, bad).code() == Err::invalid_argument);
}

namespace {
// llama2.c run.c's generator, as run.c writes it (karpathy/llama2.c run.c: random_u32, random_f32).
unsigned int runc_random_u32(unsigned long long* state) {
  *state ^= *state >> 12;
  *state ^= *state << 25;
  *state ^= *state >> 27;
  return (*state * 0x2545F4914F6CDD1Dull) >> 32;
}
float runc_random_f32(unsigned long long* state) { return (runc_random_u32(state) >> 8) / 16777216.0f; }
}  // namespace

TEST_CASE("sampler: --rng runc draws run.c's numbers from the seed (xorshift*), the default stays splitmix64") {
  SamplerOptions o;
  o.seed = 133742;  // llama2.c's doc/stories260K.md example
  o.rng = Rng::runc;
  host::HostSampler s;
  REQUIRE(s.init(8, o).ok());
  unsigned long long state = 133742;  // run.c: sampler->rng_state = rng_seed
  for (int i = 0; i < 1000; ++i) CHECK(s.get().uniform() == runc_random_f32(&state));
  // The first draws, worked out by hand (Python, 64-bit wrap-around): the top 24 bits / 2^24.
  s.get().reset();
  for (unsigned v : {11849731u, 10446788u, 9034627u, 8935217u}) CHECK(s.get().uniform() == (float)v / 16777216.0f);
  // The default generator is unchanged (splitmix64 from the seed): the same first number as before.
  SamplerOptions d;
  d.seed = 133742;
  host::HostSampler sd;
  REQUIRE(sd.init(8, d).ok());
  uint64_t z = 133742 + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  CHECK(sd.get().uniform() == (float)(z >> 40) / 16777216.0f);
  // An unknown generator is refused.
  SamplerOptions bad;
  bad.rng = (Rng)7;
  host::HostSampler sb;
  CHECK(sb.init(8, bad).code() == Err::invalid_argument);
}
