// QLLM and sampled-attention options (docs/qllm.md): LoRA merged, separate and from an adapter file give
// the same logits; memory slots are a fixed prefix of the cache (kept by reset, counted against the
// context); sampled attention's draws do not depend on blocks or threads, and sampling really changes the
// result; malformed options and adapters are refused. Parity with the PyTorch reference: test_parity.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "capi/qtf.h"
#include "host/session.h"
#include "support/json_lite.h"
#include "support/model_edit.h"

using namespace qtf;

namespace {

std::string path_of(const char* name) { return std::string(QTF_SOURCE_DIR) + "/tests/fixtures/" + name + ".qtf"; }

std::vector<int32_t> fixture_tokens() {
  qtf::testing::Json fx;
  REQUIRE(qtf::testing::load_json(std::string(QTF_SOURCE_DIR) + "/tests/fixtures/qllm_byte_phase_memory_lora.json", &fx));
  std::vector<int32_t> t;
  for (size_t i = 0; i < fx["tokens"].size(); ++i) t.push_back((int32_t)fx["tokens"][i].num);
  return t;
}

// Logits of every position of `tokens`, token by token (block = 0) or as prompt blocks of `block`.
std::vector<std::vector<float>> run(const host::LoadedModel& lm, const std::vector<int32_t>& tokens,
                                    ContextOptions o = ContextOptions(), int block = 0, std::vector<TokenStats>* st = nullptr) {
  if (block > 0) o.n_batch = block;
  host::HostContext hc;
  Status s = hc.init(lm, o);
  REQUIRE_MESSAGE(s.ok(), s.message());
  std::vector<std::vector<float>> out;
  const int V = lm.model().cfg.vocab;
  for (size_t i = 0; i < tokens.size();) {
    const int n = block > 0 ? (int)std::min<size_t>(block, tokens.size() - i) : 1;
    REQUIRE(hc.ctx().eval(tokens.data() + i, n).ok());
    i += n;
    out.emplace_back(hc.ctx().logits(), hc.ctx().logits() + V);
    if (st) st->push_back(hc.ctx().stats(n - 1));
  }
  return out;
}

float max_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  REQUIRE(a.size() == b.size());
  float w = 0;
  for (size_t t = 0; t < a.size(); ++t)
    for (size_t v = 0; v < a[t].size(); ++v) w = std::fmax(w, std::fabs(a[t][v] - b[t][v]));
  return w;
}

void expect_error(Status st, Err code, const char* text) {
  const std::string msg = st.message();
  INFO("expected '" << text << "' in: " << msg);
  CHECK(st.code() == code);
  CHECK(msg.find(text) != std::string::npos);
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

Status load_edited(const char* name, qtf::testing::ModelEdit edit) {
  std::vector<uint8_t> bytes = qtf::testing::rewrite_model(read_bytes(path_of(name)), edit);
  REQUIRE(!bytes.empty());
  host::LoadedModel lm;
  return lm.load_memory(bytes.data(), bytes.size());
}

}  // namespace

TEST_CASE("LoRA: merged, kept separate and applied from an adapter file give the same logits") {
  const std::vector<int32_t> tokens = fixture_tokens();
  host::LoadedModel separate, merged, base, adapted;
  REQUIRE(separate.load_file(path_of("qllm_byte_phase_memory_lora").c_str()).ok());
  REQUIRE(merged.load_file(path_of("lora/merged").c_str()).ok());
  REQUIRE(base.load_file(path_of("lora/base").c_str()).ok());
  REQUIRE(adapted.load_file(path_of("lora/base").c_str()).ok());
  const Model& sm = separate.model();
  CHECK(sm.lora_linears == 8);  // q k v o of 2 layers
  CHECK(sm.layers[0].q.lora_rank == 2);
  CHECK(sm.layers[0].q.lora_scale == doctest::Approx(2.0));  // alpha 4 / r 2
  CHECK(merged.model().lora_linears == 0);
  // The adapter binds in place: the base weights are the mapped file's bytes, untouched.
  const void* q_w = adapted.model().layers[0].q.dense.w.data;
  Status st = adapted.apply_adapter_file(path_of("lora/adapter").c_str());
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(adapted.model().layers[0].q.dense.w.data == q_w);
  CHECK(adapted.model().lora_linears == 8);
  CHECK(adapted.mapped());

  const auto a = run(separate, tokens), b = run(merged, tokens), c = run(adapted, tokens), d = run(base, tokens);
  MESSAGE("max |separate - merged| = " << max_diff(a, b) << ", |separate - adapter file| = " << max_diff(a, c));
  // Two float32 orders of the same products (W x + s B A x vs (W + s B A) x), amplified by the model:
  // 3.3e-6 with attention as per-position dot/axpy calls, 1.3e-5 with kern::attend (whose own error against
  // a float64 attention is no larger: tests/kernels); each is within 1.1e-5 of the reference (test_parity).
  CHECK(max_diff(a, b) <= 2e-5f);
  CHECK(max_diff(a, c) == 0.f);  // the same tensors, the same arithmetic
  CHECK(max_diff(a, d) > 1e-2f);  // the adapter matters: without it the logits differ
  CHECK(separate.model().total_params() == adapted.model().total_params());

  // A second adapter, or one whose shapes do not fit the model, is refused and leaves it unchanged.
  expect_error(adapted.apply_adapter_file(path_of("lora/adapter").c_str()), Err::invalid_argument, "already applied");
  host::LoadedModel tt;
  REQUIRE(tt.load_file(path_of("qllm_tt_lora_rope_memory").c_str()).ok());
  expect_error(tt.apply_adapter_file(path_of("lora/adapter").c_str()), Err::bad_value, "already has a LoRA adapter");
  CHECK(tt.model().lora_linears == 6);  // q up down of 2 layers, as loaded
  host::LoadedModel llama;
  REQUIRE(llama.load_file(path_of("llama_ln_rope_gelu_gqa").c_str()).ok());  // d 24: the d 16 adapter does not fit
  expect_error(llama.apply_adapter_file(path_of("lora/adapter").c_str()), Err::bad_shape, "do not fit");
  CHECK(llama.model().lora_linears == 0);
  host::LoadedModel not_adapter;
  REQUIRE(not_adapter.load_file(path_of("lora/base").c_str()).ok());
  expect_error(not_adapter.apply_adapter_file(path_of("lora/merged").c_str()), Err::unsupported, "is not 'lora'");
}

TEST_CASE("memory slots: a fixed cache prefix, kept by reset and counted against the context") {
  host::LoadedModel lm;
  REQUIRE(lm.load_file(path_of("qllm_byte_phase_memory_lora").c_str()).ok());
  const int G = lm.model().cfg.memory_tokens, T = lm.model().cfg.context;
  REQUIRE(G == 4);
  host::HostContext hc;
  REQUIRE(hc.init(lm, ContextOptions()).ok());
  Context& ctx = hc.ctx();
  CHECK(ctx.n_prefix() == G);
  CHECK(ctx.n_past() == G);
  const std::vector<int32_t> tokens = fixture_tokens();
  REQUIRE(ctx.eval(tokens[0]).ok());
  std::vector<float> first(ctx.logits(), ctx.logits() + 256);
  for (int i = 1; i < T - G; ++i) REQUIRE(ctx.eval(tokens[i % tokens.size()]).ok());
  CHECK(ctx.n_past() == T);
  expect_error(ctx.eval(1), Err::context_full, "context is full");
  ctx.reset();
  CHECK(ctx.n_past() == G);
  REQUIRE(ctx.eval(tokens[0]).ok());
  for (int v = 0; v < 256; ++v) CHECK(ctx.logits()[v] == first[v]);
  // A context no longer than the prefix has no room for a token.
  ContextOptions o;
  o.n_ctx = G;
  host::HostContext small;
  expect_error(small.init(lm, o), Err::invalid_argument, "memory slots");
}

TEST_CASE("sampled attention: draws independent of blocks and threads; sampling changes the result") {
  host::LoadedModel lm;
  REQUIRE(lm.load_file(path_of("qllm_sampled_attention").c_str()).ok());
  REQUIRE(lm.model().cfg.attention == AttnKind::sampled);
  REQUIRE(lm.model().cfg.attention_samples == 8);
  const std::vector<int32_t> tokens = fixture_tokens();
  std::vector<TokenStats> one, blk;
  const auto a = run(lm, tokens, ContextOptions(), 0, &one);
  ContextOptions threads;
  threads.n_threads = 3;
  const auto b = run(lm, tokens, threads, 0);
  CHECK(max_diff(a, b) <= 1e-5f);
  const auto c = run(lm, {tokens.begin(), tokens.end()}, ContextOptions(), 5, &blk);
  std::vector<std::vector<float>> a_at;  // token-by-token logits at the block ends
  for (size_t i = 4; i < tokens.size(); i += 5) a_at.push_back(a[i]);
  if (tokens.size() % 5) a_at.push_back(a.back());
  CHECK(max_diff(a_at, c) <= 1e-5f);
  const int L = lm.model().cfg.n_layers, H = lm.model().cfg.n_heads;
  CHECK(one[3].samples == 8 * H * L);
  CHECK(one[3].sample_var > 0.f);
  // Exact softmax (0 draws) and another seed move the logits; the model's own seed reproduces them.
  ContextOptions exact;
  exact.attention_samples = 0;
  CHECK(max_diff(a, run(lm, tokens, exact)) > 1e-2f);
  ContextOptions seed;
  seed.override_seed = true;
  seed.attention_seed = 7;
  CHECK(max_diff(a, run(lm, tokens, seed)) > 1e-2f);
  seed.attention_seed = lm.model().cfg.attention_seed;
  CHECK(max_diff(a, run(lm, tokens, seed)) == 0.f);
  // More draws approach the exact weights (the error shrinks like 1/sqrt(S)).
  const auto ex = run(lm, tokens, exact);
  float err[3];
  for (int i = 0; i < 3; ++i) {
    ContextOptions o;
    o.attention_samples = 64 << (4 * i);  // 64, 1024, 16384
    err[i] = max_diff(ex, run(lm, tokens, o));
  }
  MESSAGE("max |logit - exact| at 64, 1024, 16384 draws: " << err[0] << ", " << err[1] << ", " << err[2]);
  CHECK(err[1] < err[0]);
  CHECK(err[2] < err[1]);
}

TEST_CASE("QLLM options: metadata and tensors that break the rules are refused") {
  using qtf::testing::ModelEdit;
  auto set_meta = [](const char* key, std::function<void(format::Writer*)> set) {
    ModelEdit e;
    e.meta = [=](const std::string& k, format::Writer* w) {
      if (k != key) return false;
      if (set) set(w);
      return true;
    };
    return e;
  };
  const char* q = "qllm_byte_phase_memory_lora";
  expect_error(load_edited("qllm_sampled_attention",
                           set_meta("model.attention", [](format::Writer* w) { w->add_str("model.attention", "x"); })),
               Err::bad_value, "model.attention");
  expect_error(load_edited("qllm_sampled_attention",
                           set_meta("model.attention", [](format::Writer* w) { w->add_str("model.attention", "quantum_kernel"); })),
               Err::bad_value, "quantum_kernel needs quantum parts");
  expect_error(load_edited(q, set_meta("model.memory_tokens", [](format::Writer* w) { w->add_i64("model.memory_tokens", 24); })),
               Err::bad_value, "model.memory_tokens");
  expect_error(load_edited(q, set_meta("model.memory_tokens", [](format::Writer* w) { w->add_i64("model.memory_tokens", 3); })),
               Err::bad_shape, "'memory'");
  expect_error(load_edited(q, set_meta("model.memory_tokens", nullptr)), Err::bad_value, "'memory' is present");
  expect_error(load_edited(q, set_meta("model.phase_rotation", nullptr)), Err::bad_value, "'phase' is present");
  expect_error(load_edited(q, set_meta("model.lora_alpha", nullptr)), Err::missing, "model.lora_alpha");
  expect_error(load_edited("qllm_sampled_attention",
                           set_meta("model.attention_samples", [](format::Writer* w) { w->add_i64("model.attention_samples", 0); })),
               Err::bad_value, "attention_samples");
  // Exact softmax override is refused for quantum kernel models; sampling needs softmax weights.
  host::LoadedModel qk;
  REQUIRE(qk.load_file(path_of("q4_k3_daruan_adaptive_qattn_tied").c_str()).ok());
  CHECK(qk.model().cfg.attention == AttnKind::quantum_kernel);
  ContextOptions o;
  o.attention_samples = 4;
  host::HostContext hc;
  expect_error(hc.init(qk, o), Err::invalid_argument, "quantum kernel");
}

TEST_CASE("the C API: adapters, memory slots and the later context options") {
  const std::vector<int32_t> tokens = fixture_tokens();
  host::LoadedModel separate;
  REQUIRE(separate.load_file(path_of("qllm_byte_phase_memory_lora").c_str()).ok());
  const auto want = run(separate, tokens);  // the adapter kept in the file, through the C++ API
  const int V = separate.model().cfg.vocab;

  // Base + adapter file through the C API: the same logits as the C++ path; refused while a context lives.
  qtf_model* m = nullptr;
  REQUIRE(qtf_model_load_file(path_of("lora/base").c_str(), 1, &m) == QTF_OK);
  qtf_context* early = nullptr;
  REQUIRE(qtf_context_new(m, nullptr, &early) == QTF_OK);
  CHECK(qtf_model_apply_adapter_file(m, path_of("lora/adapter").c_str(), 1) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(std::string(qtf_last_error()).find("contexts first") != std::string::npos);
  qtf_context_free(early);
  REQUIRE(qtf_model_apply_adapter_file(m, path_of("lora/adapter").c_str(), 1) == QTF_OK);
  CHECK(qtf_model_apply_adapter_file(m, path_of("lora/adapter").c_str(), 1) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_model_apply_adapter_file(m, nullptr, 1) == QTF_ERR_INVALID_ARGUMENT);

  qtf_context* c = nullptr;
  REQUIRE(qtf_context_new(m, nullptr, &c) == QTF_OK);
  CHECK(qtf_context_n_prefix(c) == 4);  // the fixture's memory slots, made at creation
  CHECK(qtf_context_n_past(c) == 4);
  float worst = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    REQUIRE(qtf_decode(c, &tokens[i], 1) == QTF_OK);
    const float* l = qtf_get_logits(c);
    for (int v = 0; v < V; ++v) worst = std::fmax(worst, std::fabs(l[v] - want[i][v]));
  }
  CHECK(worst == 0.f);  // the same tensors, the same arithmetic
  qtf_context_reset(c);
  CHECK(qtf_context_n_past(c) == 4);  // reset keeps the memory slots
  qtf_context_free(c);

  // Options: defaults as documented; an older, shorter struct gets the defaults for what it lacks; an
  // unknown (larger) size and out-of-range values are refused.
  qtf_context_options o = qtf_context_default_options();
  CHECK(o.struct_size == sizeof o);
  CHECK(o.pack_tt == 1);
  CHECK(o.attention_samples == -1);
  o.struct_size = sizeof o + 8;
  CHECK(qtf_context_new_with(m, nullptr, &o, &c) == QTF_ERR_INVALID_ARGUMENT);
  o.struct_size = 0;
  CHECK(qtf_context_new_with(m, nullptr, &o, &c) == QTF_ERR_INVALID_ARGUMENT);
  o = qtf_context_default_options();
  o.n_batch = 2000;
  CHECK(qtf_context_new_with(m, nullptr, &o, &c) == QTF_ERR_INVALID_ARGUMENT);
  o = qtf_context_default_options();
  o.attention_samples = -2;
  CHECK(qtf_context_new_with(m, nullptr, &o, &c) == QTF_ERR_INVALID_ARGUMENT);
  qtf_model_free(m);

  // pack_tt off on a TT model: a smaller arena, the same logits within float32 reordering (test_batch has
  // the C++ form); n_batch sets the prompt blocks; sampled attention through the options changes the result.
  REQUIRE(qtf_model_load_file(path_of("qllm_tt_lora_rope_memory").c_str(), 1, &m) == QTF_OK);
  qtf_context *packed = nullptr, *in_place = nullptr, *sampled = nullptr;
  o = qtf_context_default_options();
  REQUIRE(qtf_context_new_with(m, nullptr, &o, &packed) == QTF_OK);
  o.pack_tt = 0;
  o.n_batch = 3;
  REQUIRE(qtf_context_new_with(m, nullptr, &o, &in_place) == QTF_OK);
  o = qtf_context_default_options();
  o.attention_samples = 1;
  o.override_seed = 1;
  o.attention_seed = 7;
  REQUIRE(qtf_context_new_with(m, nullptr, &o, &sampled) == QTF_OK);
  CHECK(qtf_context_arena_bytes(in_place) < qtf_context_arena_bytes(packed));
  qtf_model_info info{};
  REQUIRE(qtf_model_get_info(m, &info) == QTF_OK);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 10; ++i) prompt.push_back((int32_t)(tokens[(size_t)i % tokens.size()] % info.vocab_size));
  REQUIRE(qtf_decode(packed, prompt.data(), (int32_t)prompt.size()) == QTF_OK);
  REQUIRE(qtf_decode(in_place, prompt.data(), (int32_t)prompt.size()) == QTF_OK);
  REQUIRE(qtf_decode(sampled, prompt.data(), (int32_t)prompt.size()) == QTF_OK);
  float packing = 0, sampling = 0;
  for (int v = 0; v < info.vocab_size; ++v) {
    packing = std::fmax(packing, std::fabs(qtf_get_logits(packed)[v] - qtf_get_logits(in_place)[v]));
    sampling = std::fmax(sampling, std::fabs(qtf_get_logits(packed)[v] - qtf_get_logits(sampled)[v]));
  }
  CHECK(packing <= 5e-5f);  // the packed kernels sum the same products in another float32 order
  CHECK(sampling > 1e-3f);
  qtf_context_free(packed);
  qtf_context_free(in_place);
  qtf_context_free(sampled);
  qtf_model_free(m);
}
