// Block options (docs/llama.md): metadata that breaks their rules is refused with a clear message, the KV
// cache holds n_kv_heads heads, and a Llama model generates. Logit agreement with the PyTorch reference
// (tools/train/llama.py) and with run.c's math is in test_parity.cpp (fixtures llama*_.json).
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "host/session.h"
#include "support/model_edit.h"

using namespace qtf;

namespace {

std::vector<uint8_t> fixture(const char* name) {
  std::ifstream f(std::string(QTF_SOURCE_DIR) + "/tests/fixtures/" + name + ".qtf", std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Loads `name` with metadata `key` replaced by `set` (or dropped when set is null); returns the status.
Status load_edited(const char* name, const std::string& key, std::function<void(format::Writer*)> set) {
  qtf::testing::ModelEdit edit;
  edit.meta = [&](const std::string& k, format::Writer* w) {
    if (k != key) return false;
    if (set) set(w);
    return true;
  };
  std::vector<uint8_t> bytes = qtf::testing::rewrite_model(fixture(name), edit);
  REQUIRE(!bytes.empty());
  host::LoadedModel lm;
  return lm.load_memory(bytes.data(), bytes.size());
}

void expect_error(Status st, Err code, const char* text) {
  const std::string msg = st.message();
  INFO("expected '" << text << "' in: " << msg);
  CHECK(st.code() == code);
  CHECK(msg.find(text) != std::string::npos);
}

}  // namespace

TEST_CASE("block options: metadata that breaks the rules is refused, naming the key or tensor") {
  const char* gqa = "llama_rms_rope_swiglu_gqa_tied";  // H 4, kv 2, no biases, rmsnorm, rotary
  const char* tt = "llama_tt_rms_rope_swiglu_gqa_bias_untied";
  host::LoadedModel ok;
  std::vector<uint8_t> bytes = fixture(gqa);
  REQUIRE(ok.load_memory(bytes.data(), bytes.size()).ok());
  CHECK(ok.model().cfg.kv_dim() == 8);
  CHECK(ok.model().layers[0].q.dense.bias == nullptr);

  expect_error(load_edited(gqa, "model.norm", [](format::Writer* w) { w->add_str("model.norm", "batchnorm"); }),
               Err::bad_value, "model.norm");
  expect_error(load_edited(gqa, "model.positions", [](format::Writer* w) { w->add_i64("model.positions", 1); }),
               Err::bad_value, "model.positions");
  expect_error(load_edited(gqa, "model.n_kv_heads", [](format::Writer* w) { w->add_i64("model.n_kv_heads", 3); }),
               Err::bad_value, "must divide n_heads");
  expect_error(load_edited(gqa, "model.rope_theta", [](format::Writer* w) { w->add_f64("model.rope_theta", 0.5); }),
               Err::bad_value, "rope_theta");
  expect_error(load_edited(gqa, "model.activation", [](format::Writer* w) { w->add_str("model.activation", "relu"); }),
               Err::bad_value, "gelu, daruan or swiglu");
  // The options change which tensors must exist.
  expect_error(load_edited(gqa, "model.linear_bias", [](format::Writer* w) { w->add_i64("model.linear_bias", 1); }),
               Err::missing, "blk.0.attn.q.b");
  expect_error(load_edited(gqa, "model.positions", [](format::Writer* w) { w->add_str("model.positions", "learned"); }),
               Err::missing, "pos_emb");
  expect_error(load_edited(gqa, "model.norm", [](format::Writer* w) { w->add_str("model.norm", "layernorm"); }),
               Err::missing, "lnf.b");
  expect_error(load_edited(gqa, "model.n_kv_heads", nullptr), Err::bad_shape, "blk.0.attn.k.w");  // default: H heads
  expect_error(load_edited(tt, "model.linear_bias", [](format::Writer* w) { w->add_i64("model.linear_bias", 0); }),
               Err::bad_value, "present but model.linear_bias is 0");
  expect_error(load_edited(tt, "model.tt.kv_factors", nullptr), Err::missing, "model.tt.kv_factors");
  expect_error(load_edited(tt, "model.tt.kv_factors", [](format::Writer* w) { w->add_i64_array("model.tt.kv_factors", {4, 2}); }),
               Err::bad_value, "multiply to 8, expected 4");
}

TEST_CASE("block options: the KV cache holds n_kv_heads heads; a converted llama2.c model generates") {
  std::vector<uint8_t> bytes = fixture("llama2c_tiny");  // d 16, H 4, kv 2, separate classifier
  host::LoadedModel lm;
  REQUIRE(lm.load_memory(bytes.data(), bytes.size()).ok());
  const ModelConfig& c = lm.model().cfg;
  CHECK(c.norm == NormKind::rmsnorm);
  CHECK(c.positions == PosKind::rotary);
  CHECK(c.activation == Activation::swiglu);
  CHECK(!c.tied_embeddings);
  CHECK(lm.model().total_params() == 40 * 16 * 2 + 2 * (2 * 16 + 16 * 16 * 2 + 8 * 16 * 2 + 3 * 24 * 16) + 16);
  ContextOptions o;
  o.n_batch = 1;  // no prompt block buffers: the arena is mostly the caches
  const size_t gqa_bytes = Context::arena_bytes(lm.model(), o);
  CHECK(gqa_bytes > 0);
  // The caches are 2 x L x n_ctx x kv_dim floats: half of what d would need.
  CHECK(gqa_bytes < 2 * 2 * 32 * 16 * 4 + 4096);
  host::HostContext hc;
  REQUIRE(hc.init(lm, o).ok());
  int tok = 1;
  for (int i = 0; i < c.context; ++i) {  // the whole context, greedy
    REQUIRE(hc.ctx().eval(tok).ok());
    const float* l = hc.ctx().logits();
    int best = 0;
    for (int v = 0; v < c.vocab; ++v) {
      REQUIRE(std::isfinite(l[v]));
      if (l[v] > l[best]) best = v;
    }
    tok = best;
  }
  CHECK(hc.ctx().eval(tok).code() == Err::context_full);
}

TEST_CASE("a context longer than the model's is refused with the reason its kind of positions gives") {
  for (const char* name : {"llama_rms_rope_swiglu_gqa_tied", "llama_rms_learned_swiglu_mha"}) {
    host::LoadedModel m;
    std::vector<uint8_t> bytes = fixture(name);
    REQUIRE(m.load_memory(bytes.data(), bytes.size()).ok());
    const bool rotary = m.model().cfg.positions == PosKind::rotary;
    CHECK(rotary == (std::string(name).find("rope") != std::string::npos));
    ContextOptions too_long;
    too_long.n_ctx = m.model().cfg.context + 1;
    const Status st = validate_options(m.model(), too_long);
    const std::string msg = st.message();
    INFO(name << ": " << msg);
    CHECK(st.code() == Err::invalid_argument);
    CHECK((msg.find("learned position") != std::string::npos) == !rotary);
    CHECK((msg.find("rotary") != std::string::npos) == rotary);
  }
}
