// llama2.c checkpoints (engine/import/llama2c.cpp) and detection + dispatch (import.cpp). The tiny
// fixture tests/fixtures/llama2c_tiny.qtf was made by tools/convert/llama2c.py from a random checkpoint;
// the checkpoint is rebuilt here from its tensors (llama2.c's order), imported in C++ and must give the
// same tensors, configuration and logits.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include "import/import.h"
#include "qtf.h"
#include "import/llama2c.h"
#include "import_support.h"
#include "support/json_lite.h"

using namespace qtf;
using qtf::testing::expect_error;
using qtf::testing::worst_logit_error;

namespace {

void put_i32(std::vector<uint8_t>* out, int32_t v) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
  out->insert(out->end(), p, p + 4);
}
void put_floats(std::vector<uint8_t>* out, const std::vector<float>& v) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(v.data());
  out->insert(out->end(), p, p + 4 * v.size());
}

// A llama2.c checkpoint holding the fixture's weights (version 0 or 1; shared drops head.w).
std::vector<uint8_t> checkpoint(const qtf::testing::Tensors& t, int version, bool shared) {
  const int d = 16, f = 24, L = 2, H = 4, KV = 2, V = 40, T = 32;
  std::vector<uint8_t> out;
  auto all = [&](const char* what) {
    for (int l = 0; l < L; ++l) put_floats(&out, t.values.at("blk." + std::to_string(l) + "." + what));
  };
  const int hdr[7] = {d, f, L, H, KV, shared || version == 1 ? V : -V, T};
  if (version == 1) {
    put_i32(&out, 0x616B3432);
    put_i32(&out, 1);
    for (int v : hdr) put_i32(&out, v);
    out.push_back(shared ? 1 : 0);
    out.resize(256, 0);
    all("ln1.w"), all("ln2.w"), put_floats(&out, t.values.at("lnf.w")), put_floats(&out, t.values.at("tok_emb"));
    all("attn.q.w"), all("attn.k.w"), all("attn.v.w"), all("attn.o.w"), all("ffn.gate.w"), all("ffn.down.w"),
        all("ffn.up.w");
  } else {
    for (int v : hdr) put_i32(&out, v);
    put_floats(&out, t.values.at("tok_emb"));
    all("ln1.w"), all("attn.q.w"), all("attn.k.w"), all("attn.v.w"), all("attn.o.w"), all("ln2.w");
    all("ffn.gate.w"), all("ffn.down.w"), all("ffn.up.w");
    put_floats(&out, t.values.at("lnf.w"));
    put_floats(&out, std::vector<float>(2 * T * (d / H / 2), 0.5f));  // freq_cos, freq_sin: skipped
  }
  if (!shared) put_floats(&out, t.values.at("head.w"));
  return out;
}


std::string temp_path(const char* name) {
  return "/tmp/qtf_test_import_" + std::to_string(getpid()) + "_" + name;
}
void write_file(const std::string& path, const std::vector<uint8_t>& b) {
  FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f);
  if (!b.empty()) REQUIRE(std::fwrite(b.data(), 1, b.size(), f) == b.size());
  std::fclose(f);
}

}  // namespace

TEST_CASE("llama2c: a checkpoint of the fixture's weights imports to the Python converter's file (v0, v1)") {
  const std::vector<uint8_t> fx_bytes = qtf::testing::fixture_bytes("llama2c_tiny.qtf");
  format::ModelFile fx;
  REQUIRE(fx.open(fx_bytes.data(), fx_bytes.size()).ok());
  const qtf::testing::Tensors want = qtf::testing::tensors_of(fx);
  for (int version : {0, 1}) {
    INFO("version " << version);
    const std::vector<uint8_t> ckpt = checkpoint(want, version, false);
    std::vector<uint8_t> out;
    Status st = import::llama2c_to_qtf(ckpt.data(), ckpt.size(), nullptr, 0, "tiny.bin", &out);
    REQUIRE_MESSAGE(st.ok(), st.message());
    format::ModelFile got;
    REQUIRE(got.open(out.data(), out.size()).ok());
    const qtf::testing::Tensors have = qtf::testing::tensors_of(got);
    CHECK(have.order == want.order);  // the same tensors in the same order, bit for bit
    for (const std::string& n : want.order) {
      INFO(n);
      CHECK(have.dims.at(n) == want.dims.at(n));
      CHECK(std::memcmp(have.values.at(n).data(), want.values.at(n).data(), 4 * want.values.at(n).size()) == 0);
    }
    // Every configuration and tokenizer key equal (provenance aside).
    uint64_t cur = 0;
    format::MetaEntry e, g;
    int compared = 0;
    while (fx.next_meta(&cur, &e)) {
      const std::string key(e.key.data, e.key.size);
      if (key.rfind("provenance.", 0) == 0) continue;
      INFO(key);
      REQUIRE(got.find_meta(key.c_str(), &g));
      CHECK(g.type == e.type);
      CHECK(g.count == e.count);
      int64_t a = 0, b = 1;
      double x = 0, y = 1;
      format::Str s1, s2;
      if (e.as_i64(&a)) CHECK((g.as_i64(&b) && a == b));
      else if (e.as_f64(&x)) CHECK((g.as_f64(&y) && x == y));
      else if (e.as_str(&s1)) CHECK((g.as_str(&s2) && std::string(s1.data, s1.size) == std::string(s2.data, s2.size)));
      else
        for (uint32_t i = 0; i < e.count; ++i)
          CHECK((e.str_at(i, &s1) && g.str_at(i, &s2) &&
                 std::string(s1.data, s1.size) == std::string(s2.data, s2.size)));
      ++compared;
    }
    CHECK(compared == 19);
    format::Str s;
    REQUIRE(got.get_str("provenance.source_file", &s).ok());
    CHECK(std::string(s.data, s.size) == "tiny.bin");
    CHECK(worst_logit_error(out) <= 1e-4f);
  }
  // Shared classifier: no head.w, tied.
  const std::vector<uint8_t> ckpt = checkpoint(want, 0, true);
  std::vector<uint8_t> out;
  REQUIRE(import::llama2c_to_qtf(ckpt.data(), ckpt.size(), nullptr, 0, "", &out).ok());
  format::ModelFile got;
  REQUIRE(got.open(out.data(), out.size()).ok());
  format::TensorInfo t;
  CHECK(!got.find_tensor("head.w", &t));
  int64_t tied = 0;
  REQUIRE(got.get_i64("model.tied_embeddings", &tied).ok());
  CHECK(tied == 1);
}

TEST_CASE("llama2c: what is not a supported checkpoint is refused with one clear line, sizes before reads") {
  const std::vector<uint8_t> fx_bytes = qtf::testing::fixture_bytes("llama2c_tiny.qtf");
  format::ModelFile fx;
  REQUIRE(fx.open(fx_bytes.data(), fx_bytes.size()).ok());
  const qtf::testing::Tensors w = qtf::testing::tensors_of(fx);
  const std::vector<uint8_t> v0 = checkpoint(w, 0, false), v1 = checkpoint(w, 1, false);
  auto convert = [](const std::vector<uint8_t>& b) {
    std::vector<uint8_t> out;
    Status st = import::llama2c_to_qtf(b.data(), b.size(), nullptr, 0, "x", &out);
    CHECK(out.empty());
    return st;
  };
  auto patched = [](std::vector<uint8_t> b, size_t at, int32_t v) {
    std::memcpy(b.data() + at, &v, 4);
    return b;
  };
  std::vector<uint8_t> cut(v0.begin(), v0.end() - 4), longer = v0;
  longer.resize(v0.size() + 4, 0);
  expect_error(convert(cut), "size mismatch");
  expect_error(convert(cut), "(truncated)");
  expect_error(convert(longer), "trailing bytes");
  expect_error(convert(patched(v1, 4, 2)), "version 2 is not supported: Q8_0");
  expect_error(convert(std::vector<uint8_t>(v1.begin(), v1.begin() + 200)), "the versioned header has 256");
  expect_error(convert(std::vector<uint8_t>(3, 'a')), "shorter than the 28-byte header");
  expect_error(convert(patched(v0, 12, 3)), "heads do not divide evenly");
  // A vocabulary of 1.2M passes no check (it failed with a ValueError in the Python converter once) and a
  // header claiming a 2^40-byte model is refused before anything is read or allocated.
  expect_error(convert(patched(v0, 20, 1200000)), "sizes out of range");
  expect_error(convert(patched(patched(v0, 0, 65536), 4, 1 << 20)), "needs");
  std::vector<uint8_t> text(64, ' ');
  std::memcpy(text.data(), "#!/bin/sh\necho this is not a model\n", 35);
  expect_error(convert(text), "not a llama2.c checkpoint");
  // A NaN or Inf weight is refused naming the tensor (every importer's output is scanned).
  for (float bad : {NAN, -INFINITY}) {
    int32_t bits;
    std::memcpy(&bits, &bad, 4);
    expect_error(convert(patched(v0, 28, bits)), "tensor 'tok_emb' has 1 non-finite values (NaN/Inf) after conversion");
  }
  // Every truncation of the checkpoint: one clear error, never a crash.
  for (size_t n = 0; n < v0.size(); n += 7) {
    std::vector<uint8_t> out;
    CHECK(!import::llama2c_to_qtf(v0.data(), n, nullptr, 0, "x", &out).ok());
  }
}

TEST_CASE("import: detect by content and to_qtf on files, with the path in each error") {
  const std::vector<uint8_t> qtf_bytes = qtf::testing::fixture_bytes("llama2c_tiny.qtf");
  format::ModelFile fx;
  REQUIRE(fx.open(qtf_bytes.data(), qtf_bytes.size()).ok());
  const std::vector<uint8_t> ckpt = checkpoint(qtf::testing::tensors_of(fx), 0, false);
  const std::string q = temp_path("m.qtf"), c = temp_path("m.bin"), junk = temp_path("junk"), empty = temp_path("e");
  write_file(q, qtf_bytes);
  write_file(c, ckpt);
  write_file(junk, std::vector<uint8_t>(100, 7));
  write_file(empty, {});
  CHECK(import::detect(q.c_str()) == import::Source::qtf);
  CHECK(import::detect(c.c_str()) == import::Source::llama2c);
  CHECK(import::detect(junk.c_str()) == import::Source::unknown);
  CHECK(import::detect("/nonexistent/model") == import::Source::unknown);
  CHECK(import::detect("/tmp") == import::Source::unknown);
  std::vector<uint8_t> out;
  REQUIRE(import::to_qtf(q.c_str(), import::Options(), &out).ok());
  CHECK(out == qtf_bytes);
  REQUIRE(import::to_qtf(c.c_str(), import::Options(), &out).ok());
  CHECK(worst_logit_error(out) <= 1e-4f);
  expect_error(import::to_qtf(junk.c_str(), import::Options(), &out), "not a model qtf reads");
  expect_error(import::to_qtf(junk.c_str(), import::Options(), &out), junk.c_str());
  expect_error(import::to_qtf(empty.c_str(), import::Options(), &out), "is empty");
  expect_error(import::to_qtf("/nonexistent/model", import::Options(), &out), "cannot open");
  expect_error(import::to_qtf("/tmp", import::Options(), &out), "without config.json");
  import::Options with_tok;
  with_tok.tokenizer_path = c.c_str();
  expect_error(import::to_qtf(q.c_str(), with_tok, &out), "only taken with a llama2.c checkpoint");
  for (const std::string& p : {q, c, junk, empty}) std::remove(p.c_str());
}

TEST_CASE("import: host::LoadedModel::load_any and the C API load a checkpoint converted in memory") {
  const std::vector<uint8_t> qtf_bytes = qtf::testing::fixture_bytes("llama2c_tiny.qtf");
  format::ModelFile fx;
  REQUIRE(fx.open(qtf_bytes.data(), qtf_bytes.size()).ok());
  const std::string c = temp_path("any.bin"), q = temp_path("any.qtf");
  write_file(c, checkpoint(qtf::testing::tensors_of(fx), 1, false));
  write_file(q, qtf_bytes);
  host::LoadedModel lm;
  Status st = lm.load_any(c.c_str());
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(lm.converted());
  CHECK(lm.source() == import::Source::llama2c);
  CHECK(lm.model().cfg.vocab == 40);
  host::LoadedModel lq;
  REQUIRE(lq.load_any(q.c_str()).ok());
  CHECK(!lq.converted());
  CHECK(lq.mapped());  // a .qtf is still mapped in place
  expect_error(lm.load_any("/nonexistent.gguf"), "cannot open");
  qtf_model* m = nullptr;
  REQUIRE(qtf_model_load_file(c.c_str(), 1, &m) == QTF_OK);
  qtf_model_info info;
  REQUIRE(qtf_model_get_info(m, &info) == QTF_OK);
  CHECK(info.vocab_size == 40);
  qtf_model_free(m);
  CHECK(qtf_model_load_file("/tmp", 1, &m) != QTF_OK);
  CHECK(std::string(qtf_last_error()).find("without config.json") != std::string::npos);
  std::remove(c.c_str()), std::remove(q.c_str());
}

TEST_CASE("llama2c: --tokenizer imports llama2.c's tokenizer.bin (spm keys); a bad one is one line naming it") {
  const std::vector<uint8_t> qtf_bytes = qtf::testing::fixture_bytes("llama2c_tiny.qtf");
  format::ModelFile fx;
  REQUIRE(fx.open(qtf_bytes.data(), qtf_bytes.size()).ok());
  const std::vector<uint8_t> ckpt = checkpoint(qtf::testing::tensors_of(fx), 0, false);
  // tokenizer.bin: int32 max_token_length, then per token: f32 score, int32 length, bytes.
  std::vector<uint8_t> tok;
  put_i32(&tok, 8);
  for (int i = 0; i < 40; ++i) {
    std::string piece = i == 0 ? "<unk>" : i == 1 ? "\n<s>\n" : i == 2 ? "\n</s>\n" : std::string(1, (char)('a' + i % 26));
    if (i >= 29) piece = " " + std::string(1, (char)('a' + i - 29));
    const float score = -(float)i;
    const uint8_t* sp = reinterpret_cast<const uint8_t*>(&score);
    tok.insert(tok.end(), sp, sp + 4);
    put_i32(&tok, (int32_t)piece.size());
    tok.insert(tok.end(), piece.begin(), piece.end());
  }
  std::vector<uint8_t> out;
  Status st = import::llama2c_to_qtf(ckpt.data(), ckpt.size(), tok.data(), tok.size(), "m.bin", &out, "tok40.bin");
  REQUIRE_MESSAGE(st.ok(), st.message());
  format::ModelFile f;
  REQUIRE(f.open(out.data(), out.size()).ok());
  format::Str s;
  REQUIRE(f.get_str("tokenizer.type", &s).ok());
  CHECK(std::string(s.data, s.size) == "spm");
  REQUIRE(f.get_str("provenance.tokenizer_file", &s).ok());
  CHECK(std::string(s.data, s.size) == "tok40.bin");
  host::LoadedModel lm;
  st = lm.load_memory(out.data(), out.size());
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(lm.tokenizer().bos_id() == 1);
  CHECK(worst_logit_error(out) <= 1e-4f);  // the weights are the fixture's whatever the tokenizer
  // Truncated, or a vocabulary that is not the checkpoint's: one line naming the tokenizer file.
  std::vector<uint8_t> cut(tok.begin(), tok.end() - 3);
  expect_error(import::llama2c_to_qtf(ckpt.data(), ckpt.size(), cut.data(), cut.size(), "m.bin", &out, "tok40.bin"),
               "tokenizer tok40.bin: ");
  CHECK(out.empty());
  // Through the files: the path of a missing tokenizer is named.
  const std::string c = temp_path("tk.bin");
  write_file(c, ckpt);
  import::Options opt;
  opt.tokenizer_path = "/nonexistent/tokenizer.bin";
  expect_error(import::to_qtf(c.c_str(), opt, &out), "/nonexistent/tokenizer.bin");
  // The C API takes the tokenizer too (qtf_load_options): its pieces, not the stand-in's; a missing one
  // is the same one line.
  const std::string t = temp_path("tk40.tok");
  write_file(t, tok);
  qtf_load_options lo = qtf_load_default_options();
  lo.tokenizer_path = t.c_str();
  qtf_model* m = nullptr;
  REQUIRE_MESSAGE(qtf_model_load_file_with(c.c_str(), &lo, &m) == QTF_OK, qtf_last_error());
  const char* bytes = nullptr;
  size_t len = 0;
  REQUIRE(qtf_token_text(m, 30, &bytes, &len) == QTF_OK);
  CHECK(std::string(bytes, len) == " b");
  qtf_model_free(m);
  REQUIRE(qtf_model_load_file_with(c.c_str(), nullptr, &m) == QTF_OK);  // the stand-in: not " b"
  REQUIRE(qtf_token_text(m, 30, &bytes, &len) == QTF_OK);
  CHECK(std::string(bytes, len) != " b");
  qtf_model_free(m);
  lo.tokenizer_path = "/nonexistent/tokenizer.bin";
  m = nullptr;
  CHECK(qtf_model_load_file_with(c.c_str(), &lo, &m) != QTF_OK);
  CHECK(m == nullptr);
  CHECK(std::string(qtf_last_error()).find("/nonexistent/tokenizer.bin") != std::string::npos);
  std::remove(c.c_str()), std::remove(t.c_str());
}

TEST_CASE("C API: qtf_tokenize_ex adds BOS when asked (flags), qtf_tokenize is unchanged; qtf_sampler_set_rng") {
  qtf_model* m = nullptr;
  const std::string path = std::string(QTF_SOURCE_DIR) + "/models/tinystories-656k.qtf";  // add_bos 1, BOS id 1
  REQUIRE(qtf_model_load_file(path.c_str(), 1, &m) == QTF_OK);
  const char* text = "Once upon a time";
  const size_t len = std::strlen(text);
  int32_t plain[64], bos[64], zero[64], n_plain = 0, n_bos = 0, n_zero = 0;
  REQUIRE(qtf_tokenize(m, text, len, plain, 64, &n_plain) == QTF_OK);
  REQUIRE(qtf_tokenize_ex(m, text, len, QTF_TOKENIZE_ADD_SPECIAL, bos, 64, &n_bos) == QTF_OK);
  REQUIRE(qtf_tokenize_ex(m, text, len, 0, zero, 64, &n_zero) == QTF_OK);
  REQUIRE(n_plain > 0);
  CHECK(plain[0] != 1);  // no BOS from qtf_tokenize, as before
  CHECK(n_zero == n_plain);
  CHECK(std::vector<int32_t>(zero, zero + n_zero) == std::vector<int32_t>(plain, plain + n_plain));
  CHECK(n_bos == n_plain + 1);
  CHECK(bos[0] == 1);
  CHECK(std::vector<int32_t>(bos + 1, bos + n_bos) == std::vector<int32_t>(plain, plain + n_plain));
  // The size query counts the BOS too.
  int32_t need = 0;
  CHECK(qtf_tokenize_ex(m, text, len, QTF_TOKENIZE_ADD_SPECIAL, nullptr, 0, &need) == QTF_ERR_OUT_OF_RANGE);
  CHECK(need == n_bos);
  // PARSE_SPECIAL on text without special tokens: the same ids.
  int32_t sp[64], n_sp = 0;
  REQUIRE(qtf_tokenize_ex(m, text, len, QTF_TOKENIZE_PARSE_SPECIAL, sp, 64, &n_sp) == QTF_OK);
  CHECK(std::vector<int32_t>(sp, sp + n_sp) == std::vector<int32_t>(plain, plain + n_plain));
  CHECK(qtf_tokenize_ex(m, text, len, 4, bos, 64, &n_bos) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(std::string(qtf_last_error()).find("unknown flags") != std::string::npos);

  // The sampler's generator: run.c's gives the C++ sampler's Rng::runc draws; unknown ones are refused.
  qtf_context* ctx = nullptr;
  REQUIRE(qtf_context_new(m, nullptr, &ctx) == QTF_OK);
  REQUIRE(qtf_decode(ctx, bos, n_zero + 1) == QTF_OK);
  qtf_sampler_params sp_params = qtf_sampler_default_params();
  sp_params.temperature = 1.0f, sp_params.top_k = 0, sp_params.top_p = 0.9f, sp_params.min_p = 0;
  sp_params.seed = 133742;
  qtf_sampler* s = nullptr;
  REQUIRE(qtf_sampler_new(m, &sp_params, &s) == QTF_OK);
  CHECK(qtf_sampler_set_rng(s, (qtf_rng)9) == QTF_ERR_INVALID_ARGUMENT);
  REQUIRE(qtf_sampler_set_rng(s, QTF_RNG_RUNC) == QTF_OK);
  SamplerOptions so;
  so.temperature = 1.0f, so.top_k = 0, so.top_p = 0.9f, so.min_p = 0, so.seed = 133742, so.rng = Rng::runc;
  qtf_model_info info;
  REQUIRE(qtf_model_get_info(m, &info) == QTF_OK);
  host::HostSampler ref;
  REQUIRE(ref.init(info.vocab_size, so).ok());
  for (int i = 0; i < 20; ++i) {
    int32_t got = -1;
    REQUIRE(qtf_sample(s, ctx, &got) == QTF_OK);
    CHECK(got == ref.get().sample(qtf_get_logits(ctx)));  // the same logits each time: only the draws move
  }
  qtf_sampler_free(s);
  qtf_context_free(ctx);
  qtf_model_free(m);
}
