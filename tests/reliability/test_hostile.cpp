// Hostile input: what an app or a user may throw at the engine must end in an error code (or a defined
// result), never a crash or a read out of bounds. Runs under ASan+UBSan in tools/sanitize.sh.
#include <doctest/doctest.h>

#include <climits>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <utility>
#include <unistd.h>
#include <vector>

#include "capi/qtf.h"
#include "host/file.h"
#include "host/quantize.h"
#include "host/session.h"
#include "runtime/tokenizer/tokenizer.h"
#include "support/model_edit.h"
#include "support/tiny_model.h"

using qtf::testing::ModelEdit;
using qtf::testing::rewrite_model;
using Bytes = std::vector<uint8_t>;

namespace {

const Bytes& tiny() {
  static const Bytes b = qtf::testing::make_tiny_model(qtf::testing::TinyConfig{});
  return b;
}

struct Api {  // one model, context and sampler through the C API
  Bytes bytes;  // the model may use these in place: they live as long as it does
  qtf_model* m = nullptr;
  qtf_context* ctx = nullptr;
  qtf_sampler* s = nullptr;
  qtf_model_info info{};
  explicit Api(Bytes file = tiny()) : bytes(std::move(file)) {
    REQUIRE(qtf_model_load_memory(bytes.data(), bytes.size(), &m) == QTF_OK);
    REQUIRE(qtf_context_new(m, nullptr, &ctx) == QTF_OK);
    REQUIRE(qtf_sampler_new(m, nullptr, &s) == QTF_OK);
    REQUIRE(qtf_model_get_info(m, &info) == QTF_OK);
  }
  ~Api() {
    qtf_sampler_free(s);
    qtf_context_free(ctx);
    qtf_model_free(m);
  }
};

std::filesystem::path temp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("qtf_hostile_" + std::to_string(getpid()) + "_" + name);
}

void write_file(const std::filesystem::path& p, const Bytes& b) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), (std::streamsize)b.size());
}

qtf_status load_bytes(const Bytes& b, std::string* error) {
  qtf_model* m = nullptr;
  qtf_status st = qtf_model_load_memory(b.data(), b.size(), &m);
  *error = qtf_last_error();
  if (st == QTF_OK) qtf_model_free(m);
  else CHECK(m == nullptr);
  return st;
}

ModelEdit set_i64(const std::string& key, int64_t value) {
  ModelEdit e;
  e.meta = [key, value](const std::string& k, qtf::format::Writer* w) {
    if (k != key) return false;
    w->add_i64(k, value);
    return true;
  };
  return e;
}

}  // namespace

TEST_CASE("every C API function refuses null pointers") {
  Api a;
  const char* text = nullptr;
  size_t len = 0;
  int32_t n = 0, tok = 0;
  qtf_model* mp = nullptr;
  qtf_context* cp = nullptr;
  qtf_sampler* sp = nullptr;
  qtf_model_info info;
  qtf_token_stats ts;
  CHECK(qtf_model_load_file(nullptr, 1, &mp) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_model_load_file("x.qtf", 1, nullptr) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_model_load_file_with(nullptr, nullptr, &mp) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_model_load_file_with("x.qtf", nullptr, nullptr) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_model_load_memory(nullptr, 100, &mp) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_model_load_memory(tiny().data(), tiny().size(), nullptr) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(std::strlen(qtf_last_error()) > 0);
  CHECK(qtf_model_get_info(nullptr, &info) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_model_get_info(a.m, nullptr) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_tokenize(nullptr, "a", 1, &tok, 1, &n) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_tokenize(a.m, nullptr, 1, &tok, 1, &n) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_tokenize(a.m, "a", 1, nullptr, 1, &n) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_tokenize(a.m, "a", 1, &tok, 1, nullptr) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_tokenize(a.m, "a", 1, &tok, -1, &n) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_token_text(nullptr, 1, &text, &len) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_token_text(a.m, 1, nullptr, &len) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_token_text(a.m, 1, &text, nullptr) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_context_new(nullptr, nullptr, &cp) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_context_new(a.m, nullptr, nullptr) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_context_new_with(nullptr, nullptr, nullptr, &cp) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_context_new_with(a.m, nullptr, nullptr, nullptr) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_model_apply_adapter_file(nullptr, "x.qtf", 1) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_model_apply_adapter_file(a.m, nullptr, 1) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_decode(nullptr, &tok, 1) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_decode(a.ctx, nullptr, 1) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_get_logits(nullptr) == nullptr);
  CHECK(qtf_get_token_stats(nullptr, &ts, nullptr, 0) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_get_token_stats(a.ctx, nullptr, nullptr, 0) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_get_token_stats(a.ctx, &ts, nullptr, 4) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_sampler_new(nullptr, nullptr, &sp) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_sampler_new(a.m, nullptr, nullptr) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_sample(nullptr, a.ctx, &tok) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_sample(a.s, nullptr, &tok) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_sample(a.s, a.ctx, nullptr) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_context_n_past(nullptr) == 0);
  CHECK(qtf_context_n_ctx(nullptr) == 0);
  CHECK(qtf_context_n_prefix(nullptr) == 0);
  CHECK(qtf_context_arena_bytes(nullptr) == 0);
  qtf_context_reset(nullptr);  // no-ops, as free(NULL)
  qtf_context_free(nullptr);
  qtf_sampler_free(nullptr);
  qtf_model_free(nullptr);
  CHECK(mp == nullptr);
  CHECK(cp == nullptr);
  CHECK(sp == nullptr);
}

TEST_CASE("an empty prompt is zero tokens; nothing can be sampled or read before a decode") {
  Api a;
  int32_t n = -1, tok = -1;
  CHECK(qtf_tokenize(a.m, "", 0, nullptr, 0, &n) == QTF_OK);
  CHECK(n == 0);
  CHECK(qtf_decode(a.ctx, nullptr, 0) == QTF_OK);
  CHECK(qtf_context_n_past(a.ctx) == 0);
  CHECK(qtf_get_logits(a.ctx) == nullptr);
  qtf_token_stats ts;
  CHECK(qtf_get_token_stats(a.ctx, &ts, nullptr, 0) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_sample(a.s, a.ctx, &tok) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(tok == -1);
}

TEST_CASE("a huge prompt is counted, refused when it does not fit, and never half-decoded") {
  Api a;
  const std::string huge(1 << 20, 'a');  // 1 MiB, one token per byte with the char tokenizer
  int32_t small[8];
  int32_t n = 0;
  CHECK(qtf_tokenize(a.m, huge.data(), huge.size(), small, 8, &n) == QTF_ERR_OUT_OF_RANGE);
  CHECK(n == (int32_t)huge.size());  // the count needed, so the caller can size its buffer
  std::vector<int32_t> all((size_t)n);
  REQUIRE(qtf_tokenize(a.m, huge.data(), huge.size(), all.data(), n, &n) == QTF_OK);
  CHECK(n == (int32_t)huge.size());
  CHECK(qtf_decode(a.ctx, all.data(), n) == QTF_ERR_CONTEXT_FULL);
  CHECK(qtf_context_n_past(a.ctx) == 0);
  // What fits is decoded; the next token then reports a full context until reset.
  const int32_t room = qtf_context_n_ctx(a.ctx);
  CHECK(qtf_decode(a.ctx, all.data(), room) == QTF_OK);
  CHECK(qtf_decode(a.ctx, all.data(), 1) == QTF_ERR_CONTEXT_FULL);
  CHECK(qtf_context_n_past(a.ctx) == room);
  qtf_context_reset(a.ctx);
  CHECK(qtf_decode(a.ctx, all.data(), 1) == QTF_OK);
}

TEST_CASE("invalid UTF-8 is skipped, not decoded into garbage ids") {
  Api a;
  // Lone continuation, truncated sequences, an overlong '/', a surrogate, a code point above U+10FFFF.
  const char bad[] = "a\x80" "b\xc3" "c\xe2\x82" "d\xc0\xaf" "e\xed\xa0\x80" "f\xf4\x90\x80\x80" "g";
  int32_t toks[64];
  int32_t n = 0;
  REQUIRE(qtf_tokenize(a.m, bad, sizeof bad - 1, toks, 64, &n) == QTF_OK);
  std::string back;
  for (int i = 0; i < n; ++i) {
    const char* t;
    size_t len;
    REQUIRE(qtf_token_text(a.m, toks[i], &t, &len) == QTF_OK);
    back.append(t, len);
  }
  CHECK(back == "abcdefg");
  CHECK(qtf_decode(a.ctx, toks, n) == QTF_OK);
}

TEST_CASE("token ids outside the vocabulary are refused before anything runs") {
  Api a;
  const int32_t V = a.info.vocab_size;
  for (int32_t bad : {-1, V, V + 1, INT32_MAX, INT32_MIN}) {
    CAPTURE(bad);
    CHECK(qtf_decode(a.ctx, &bad, 1) == QTF_ERR_OUT_OF_RANGE);
    const char* t = nullptr;
    size_t len = 0;
    CHECK(qtf_token_text(a.m, bad, &t, &len) == QTF_ERR_OUT_OF_RANGE);
  }
  const int32_t mixed[] = {1, 2, V, 3};
  CHECK(qtf_decode(a.ctx, mixed, 4) == QTF_ERR_OUT_OF_RANGE);
  CHECK(std::string(qtf_last_error()).find("index 2") != std::string::npos);
  CHECK(qtf_context_n_past(a.ctx) == 0);  // nothing half-applied
  CHECK(qtf_get_logits(a.ctx) == nullptr);
  CHECK(qtf_decode(a.ctx, mixed, 2) == QTF_OK);
  CHECK(qtf_context_n_past(a.ctx) == 2);
}

TEST_CASE("out-of-range context and sampler parameters are refused") {
  Api a;
  qtf_context* c = nullptr;
  qtf_context_params p = qtf_context_default_params();
  for (int32_t n_ctx : {-1, a.info.context + 1, INT32_MAX}) {
    p.n_ctx = n_ctx;
    CHECK(qtf_context_new(a.m, &p, &c) == QTF_ERR_INVALID_ARGUMENT);
  }
  p = qtf_context_default_params();
  const int seven = 7;  // as a C caller may: any int in the enum field
  std::memcpy(&p.route, &seven, sizeof seven);
  CHECK(qtf_context_new(a.m, &p, &c) == QTF_ERR_INVALID_ARGUMENT);
  p = qtf_context_default_params();
  std::memcpy(&p.act_path, &seven, sizeof seven);
  CHECK(qtf_context_new(a.m, &p, &c) == QTF_ERR_INVALID_ARGUMENT);
  p = qtf_context_default_params();
  p.fixed_rank = -3;
  CHECK(qtf_context_new(a.m, &p, &c) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(c == nullptr);
  qtf_sampler* s = nullptr;
  qtf_sampler_params sp = qtf_sampler_default_params();
  sp.temperature = NAN;
  CHECK(qtf_sampler_new(a.m, &sp, &s) == QTF_ERR_INVALID_ARGUMENT);
  sp = qtf_sampler_default_params();
  sp.top_p = 0;
  CHECK(qtf_sampler_new(a.m, &sp, &s) == QTF_ERR_INVALID_ARGUMENT);
  sp = qtf_sampler_default_params();
  sp.repeat_last_n = -1;
  CHECK(qtf_sampler_new(a.m, &sp, &s) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(s == nullptr);
  // A sampler of another model (other vocabulary) is refused by qtf_sample.
  qtf::testing::TinyConfig other;
  other.vocab = 50;
  Api b(qtf::testing::make_tiny_model(other));
  const int32_t tok = 1;
  int32_t out = -1;
  REQUIRE(qtf_decode(a.ctx, &tok, 1) == QTF_OK);
  CHECK(qtf_sample(b.s, a.ctx, &out) == QTF_ERR_INVALID_ARGUMENT);
}

TEST_CASE("garbage, truncated and missing files are refused with an error code") {
  std::string err;
  CHECK(load_bytes(Bytes(1000, 0x41), &err) == QTF_ERR_BAD_MODEL);
  CHECK(err.find("magic") != std::string::npos);
  Bytes half(tiny().begin(), tiny().begin() + tiny().size() / 2);
  CHECK(load_bytes(half, &err) == QTF_ERR_BAD_MODEL);
  CHECK(err.find("truncated") != std::string::npos);
  qtf_model* m = nullptr;
  CHECK(qtf_model_load_memory(tiny().data(), 0, &m) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(qtf_model_load_file("/nonexistent/model.qtf", 1, &m) == QTF_ERR_IO);
  CHECK(qtf_model_load_file("/", 1, &m) == QTF_ERR_IO);  // a directory is read as a Hugging Face model
  CHECK(std::string(qtf_last_error()).find("a directory without config.json") != std::string::npos);
  const auto empty = temp_path("empty.qtf");
  write_file(empty, {});
  CHECK(qtf_model_load_file(empty.c_str(), 1, &m) != QTF_OK);
  std::filesystem::remove(empty);
  CHECK(m == nullptr);
}

TEST_CASE("a model whose metadata contradicts its tensors is refused, naming the problem") {
  std::string err;
  CHECK(load_bytes(rewrite_model(tiny(), set_i64("model.d_model", 32)), &err) == QTF_ERR_BAD_MODEL);
  CHECK(err.find("d_factors") != std::string::npos);
  ModelEdit wider;  // a consistent config, d = 32, over tensors of d = 16
  wider.meta = [](const std::string& k, qtf::format::Writer* w) {
    if (k == "model.d_model") w->add_i64(k, 32);
    else if (k == "model.tt.d_factors") w->add_i64_array(k, {4, 8});
    else return false;
    return true;
  };
  CHECK(load_bytes(rewrite_model(tiny(), wider), &err) == QTF_ERR_BAD_MODEL);
  CHECK(err.find("tensor 'tok_emb' has shape 96x16, the config needs 96x32") != std::string::npos);
  CHECK(load_bytes(rewrite_model(tiny(), set_i64("model.vocab_size", 95)), &err) == QTF_ERR_BAD_MODEL);
  CHECK(load_bytes(rewrite_model(tiny(), set_i64("model.n_heads", 3)), &err) == QTF_ERR_BAD_MODEL);
  CHECK(err.find("n_heads") != std::string::npos);
  CHECK(load_bytes(rewrite_model(tiny(), set_i64("model.n_layers", 3)), &err) == QTF_ERR_BAD_MODEL);
  CHECK(err.find("blk.2.") != std::string::npos);
  CHECK(load_bytes(rewrite_model(tiny(), set_i64("model.n_qubits", 6)), &err) == QTF_ERR_BAD_MODEL);
  CHECK(load_bytes(rewrite_model(tiny(), set_i64("model.tt.rank", 1)), &err) == QTF_ERR_BAD_MODEL);
  CHECK(load_bytes(rewrite_model(tiny(), set_i64("model.context", 1 << 30)), &err) == QTF_ERR_BAD_MODEL);
  ModelEdit drop;
  drop.tensor = nullptr;
  drop.meta = [](const std::string& k, qtf::format::Writer*) { return k == "tokenizer.tokens"; };
  CHECK(load_bytes(rewrite_model(tiny(), drop), &err) == QTF_ERR_BAD_MODEL);
  CHECK(err.find("tokenizer.tokens") != std::string::npos);
  CHECK(load_bytes(rewrite_model(tiny(), ModelEdit{}), &err) == QTF_OK);  // the rewrite itself is faithful
}

TEST_CASE("NaN weights load (no scan at load); qtf_sample refuses the non-finite logits they give") {
  ModelEdit nan;
  nan.tensor = [](const std::string& name, std::vector<float>* v) {
    if (name == "lnf.b") (*v)[3] = NAN;
  };
  Api a(rewrite_model(tiny(), nan));
  const int32_t tok = 5;
  REQUIRE(qtf_decode(a.ctx, &tok, 1) == QTF_OK);
  const float* l = qtf_get_logits(a.ctx);
  bool any_nan = false;
  for (int i = 0; i < a.info.vocab_size; ++i) any_nan |= std::isnan(l[i]);
  CHECK(any_nan);
  // Sampling would pick a token from garbage (it once returned token 0 forever): an error instead.
  int32_t out = -1;
  CHECK(qtf_sample(a.s, a.ctx, &out) == QTF_ERR_BAD_MODEL);
  CHECK(out == -1);
  CHECK(std::string(qtf_last_error()).find("non-finite logit (NaN") != std::string::npos);
  CHECK(std::string(qtf_last_error()).find("verify --deep") != std::string::npos);
  // A healthy model's first sample is unaffected.
  Api b;
  REQUIRE(qtf_decode(b.ctx, &tok, 1) == QTF_OK);
  CHECK(qtf_sample(b.s, b.ctx, &out) == QTF_OK);
}

TEST_CASE("a model freed by its caller lives on until its last context and sampler are freed") {
  // qtf_model_free while contexts live (Python's `with Model(...) as m: c = m.context()` and then
  // c.decode after the block) once freed the model under them. Mapped from a file, so that a freed
  // model is unmapped and a use of it faults: run in a child process, which must finish cleanly.
  const auto path = temp_path("refcount.qtf");
  write_file(path, tiny());
  std::vector<float> want;
  {
    Api ref;
    const int32_t toks[3] = {3, 9, 4};
    REQUIRE(qtf_decode(ref.ctx, toks, 3) == QTF_OK);
    want.assign(qtf_get_logits(ref.ctx), qtf_get_logits(ref.ctx) + ref.info.vocab_size);
  }
  auto use_after_caller_free = [&]() {
    qtf_model* m = nullptr;
    qtf_context* c = nullptr;
    qtf_sampler* s = nullptr;
    if (qtf_model_load_file(path.c_str(), 1, &m) != QTF_OK || qtf_context_new(m, nullptr, &c) != QTF_OK ||
        qtf_sampler_new(m, nullptr, &s) != QTF_OK)
      return 3;
    qtf_model_free(m);  // the caller's reference only: the context and the sampler keep it
    const int32_t toks[3] = {3, 9, 4};
    if (qtf_decode(c, toks, 3) != QTF_OK) return 4;
    if (std::vector<float>(qtf_get_logits(c), qtf_get_logits(c) + want.size()) != want) return 5;
    qtf_context_free(c);  // the sampler still holds the model: it samples a context of the same file
    int32_t tok = -1;
    qtf_model* m2 = nullptr;
    qtf_context* c2 = nullptr;
    if (qtf_model_load_file(path.c_str(), 0, &m2) != QTF_OK || qtf_context_new(m2, nullptr, &c2) != QTF_OK) return 6;
    if (qtf_decode(c2, toks, 3) != QTF_OK || qtf_sample(s, c2, &tok) != QTF_OK || tok < 0) return 7;
    qtf_sampler_free(s);  // the last reference: the model is freed (ASan checks no leak)
    qtf_context_free(c2);
    qtf_model_free(m2);
    return 0;
  };
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) _exit(use_after_caller_free());
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  INFO("child status " << status);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(use_after_caller_free() == 0);  // again in this process, for the sanitizers' leak check
  std::filesystem::remove(path);
}

TEST_CASE("a FIFO, a directory or a device as a model path is refused at once, never waited on") {
  // Opening a FIFO for reading blocks until a writer comes: `qtf verify`, `qtf serve` and Python hung.
  const auto fifo = temp_path("model.fifo");
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    alarm(10);  // a hang ends the child with SIGALRM instead of the test
    int rc = 0;
    for (const char* p : {fifo.c_str(), "/dev/null", "/dev/zero"}) {
      for (int use_mmap : {1, 0}) {
        qtf_model* m = nullptr;
        if (qtf_model_load_file(p, use_mmap, &m) != QTF_ERR_IO || m != nullptr ||
            std::string(qtf_last_error()).find("is not a regular file") == std::string::npos)
          rc = 5;
      }
    }
    for (const char* p : {fifo.c_str(), "/dev/zero", "."}) {  // the layer below the importers
      qtf::host::FileBytes f;
      const qtf::Status st = f.open(p, false);
      if (st.ok() || std::string(st.message()).find("is not a regular file") == std::string::npos) rc = 6;
    }
    _exit(rc);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  INFO("child status " << status << (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? " (hung on the FIFO)" : ""));
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  std::filesystem::remove(fifo);
}

TEST_CASE("write_file_atomic never replaces a FIFO, a device, a directory or a symlink to one") {
  // `qtf quantize m.qtf /dev/full` once renamed its temporary file over the device node.
  const auto dir = temp_path("outdir");
  std::filesystem::create_directory(dir);
  const auto fifo = dir / "out.fifo", to_null = dir / "null.qtf", sub = dir / "sub", fresh = dir / "new.qtf";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  std::filesystem::create_symlink("/dev/null", to_null);
  std::filesystem::create_directory(sub);
  const uint8_t data[3] = {1, 2, 3};
  for (const auto& p : {fifo, to_null, sub}) {
    CAPTURE(p);
    const qtf::Status st = qtf::host::write_file_atomic(p.c_str(), data, sizeof data);
    CHECK(!st.ok());
    CHECK(std::string(st.message()).find("not a regular file") != std::string::npos);
  }
  CHECK(std::filesystem::is_fifo(fifo));
  CHECK(std::filesystem::is_symlink(to_null));
  CHECK(std::filesystem::read_symlink(to_null) == "/dev/null");
  CHECK(std::filesystem::is_directory(sub));
  CHECK(std::distance(std::filesystem::directory_iterator(dir), {}) == 3);  // no temporary file left
  // A new path and an existing regular file are written (the latter replaced atomically).
  REQUIRE(qtf::host::write_file_atomic(fresh.c_str(), data, sizeof data).ok());
  REQUIRE(qtf::host::write_file_atomic(fresh.c_str(), data, 2).ok());
  CHECK(std::filesystem::file_size(fresh) == 2);
  std::filesystem::remove_all(dir);
}

TEST_CASE("quantize refuses non-finite weights (a NaN vanished into q8) and values that overflow f16") {
  auto quantize = [](const Bytes& file, qtf::host::QuantType type, std::string* err) {
    qtf::host::AlignedBuffer in;  // quantize_model takes a 64-byte aligned buffer
    REQUIRE(in.allocate(file.size()).ok());
    std::memcpy(in.data(), file.data(), file.size());
    std::vector<uint8_t> out;
    qtf::host::QuantizeReport rep;
    const qtf::Status st = qtf::host::quantize_model(in.data(), file.size(), type, &out, &rep);
    *err = st.message();
    return st.ok();
  };
  auto with_value = [](const char* tensor, size_t at, float value) {
    ModelEdit e;
    e.tensor = [=](const std::string& name, std::vector<float>* v) {
      if (name == tensor) (*v)[at] = value;
    };
    return rewrite_model(tiny(), e);
  };
  using qtf::host::QuantType;
  std::string err;
  REQUIRE(quantize(tiny(), QuantType::q8, &err));
  REQUIRE(quantize(tiny(), QuantType::f16, &err));
  for (QuantType type : {QuantType::q8, QuantType::f16}) {
    CHECK(!quantize(with_value("blk.1.ffn.up.core.0", 2, NAN), type, &err));  // a TT core
    CHECK(err.find("tensor 'blk.1.ffn.up.core.0' has 1 non-finite values") != std::string::npos);
    CHECK(!quantize(with_value("tok_emb", 17, -INFINITY), type, &err));  // a dense matrix
    CHECK(err.find("'tok_emb'") != std::string::npos);
    CHECK(err.find("index 17") != std::string::npos);
    CHECK(!quantize(with_value("lnf.b", 1, NAN), type, &err));  // copied as it is, refused all the same
    CHECK(err.find("'lnf.b'") != std::string::npos);
  }
  // f16's largest value is 65504: beyond it (after rounding) the value would become Inf.
  CHECK(quantize(with_value("tok_emb", 5, 65504.f), QuantType::f16, &err));
  CHECK(!quantize(with_value("tok_emb", 5, 70000.f), QuantType::f16, &err));
  CHECK(err.find("tensor 'tok_emb': value 70000 at index 5 overflows f16") != std::string::npos);
  CHECK(quantize(with_value("tok_emb", 5, 70000.f), QuantType::q8, &err));  // q8 scales take it
}

#ifdef QTF_CLI
namespace {
int run_cli(const std::string& args, std::string* output) {
  const auto out = temp_path("cli.txt");
  const std::string cmd = "timeout 20 " + std::string(QTF_CLI) + " " + args + " > " + out.string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(out);
  output->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  std::filesystem::remove(out);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}
}  // namespace

TEST_CASE("qtf verify --deep finds NaN/Inf weights (f32 and f16) that the format check accepts") {
  const auto clean = temp_path("clean.qtf"), nan32 = temp_path("nan32.qtf"), inf16 = temp_path("inf16.qtf"),
             contra = temp_path("contradicts.qtf");
  ModelEdit nan, inf;
  nan.tensor = [](const std::string& name, std::vector<float>* v) {
    if (name == "blk.1.ffn.up.core.0") (*v)[2] = NAN;
  };
  inf.dtype = qtf::format::DType::f16;
  inf.tensor = [](const std::string& name, std::vector<float>* v) {
    if (name == "pos_emb") (*v)[7] = -INFINITY;
  };
  write_file(clean, tiny());
  write_file(nan32, rewrite_model(tiny(), nan));
  write_file(inf16, rewrite_model(tiny(), inf));
  write_file(contra, rewrite_model(tiny(), set_i64("model.d_model", 32)));
  std::string out;
  CHECK(run_cli("verify --deep " + clean.string(), &out) == 0);
  CHECK(out.find("all weights finite") != std::string::npos);
  CHECK(run_cli("verify " + nan32.string(), &out) == 0);  // the format itself is fine
  CHECK(run_cli("verify --deep " + nan32.string(), &out) == 1);
  CHECK(out.find("'blk.1.ffn.up.core.0' has 1 non-finite values") != std::string::npos);
  CHECK(out.find("index 2") != std::string::npos);
  CHECK(run_cli("verify --deep " + inf16.string(), &out) == 1);
  CHECK(out.find("'pos_emb'") != std::string::npos);
  CHECK(run_cli("verify " + contra.string(), &out) == 0);
  CHECK(run_cli("verify --deep " + contra.string(), &out) == 1);
  CHECK(out.find("does not bind") != std::string::npos);
  for (const auto& p : {clean, nan32, inf16, contra}) std::filesystem::remove(p);
}

TEST_CASE("the CLI refuses a FIFO as a model or an output, and a model that computes NaN logits") {
  const auto model = temp_path("cli.qtf"), nan_model = temp_path("cli_nan.qtf"), fifo = temp_path("cli.fifo"),
             to_null = temp_path("cli_null.qtf");
  write_file(model, tiny());
  ModelEdit nan;
  nan.tensor = [](const std::string& name, std::vector<float>* v) {
    if (name == "lnf.b") (*v)[3] = NAN;
  };
  write_file(nan_model, rewrite_model(tiny(), nan));
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  std::filesystem::create_symlink("/dev/null", to_null);
  std::string out;
  // Before the fix these waited for a writer forever (run_cli ends them after 20 s).
  CHECK(run_cli("verify " + fifo.string() + " < /dev/null", &out) == 1);
  CHECK(out.find("is not a regular file") != std::string::npos);
  CHECK(run_cli("run -m " + fifo.string() + " -p ab -n 2", &out) == 1);
  CHECK(out.find("is not a regular file") != std::string::npos);
  CHECK(run_cli("quantize " + fifo.string() + " " + temp_path("x.qtf").string() + " --type q8", &out) == 1);
  // quantize never replaces something that is not a regular file.
  CHECK(run_cli("quantize " + model.string() + " " + fifo.string() + " --type q8", &out) == 1);
  CHECK(out.find("exists and is not a regular file") != std::string::npos);
  CHECK(std::filesystem::is_fifo(fifo));
  CHECK(run_cli("quantize " + model.string() + " " + to_null.string() + " --type f16", &out) == 1);
  CHECK(std::filesystem::is_symlink(to_null));
  // A NaN weight: quantize names it; run stops at the first sampled token with the reason.
  CHECK(run_cli("quantize " + nan_model.string() + " " + temp_path("y.qtf").string() + " --type q8", &out) == 1);
  CHECK(out.find("'lnf.b' has 1 non-finite values") != std::string::npos);
  CHECK(!std::filesystem::exists(temp_path("y.qtf")));
  CHECK(run_cli("run -m " + nan_model.string() + " -p ab -n 5 --temp 0", &out) == 1);
  CHECK(out.find("non-finite logit") != std::string::npos);
  CHECK(run_cli("run -m " + model.string() + " -p ab -n 5 --temp 0", &out) == 0);
  for (const auto& p : {model, nan_model, fifo, to_null}) std::filesystem::remove(p);
}
#endif

TEST_CASE("a model file changed on disk while loaded: what each loading mode sees") {
  // Linux mmap(MAP_PRIVATE) does not snapshot the file: pages not yet read or written still show
  // another writer's changes. The engine verifies at load only, so an in-place rewrite of a mapped file
  // silently changes the weights. Replacing the file by rename (a new inode) is safe, and so is loading
  // a copy (use_mmap = 0). docs/reliability.md gives the advice.
  const auto path = temp_path("changing.qtf");
  const Bytes orig = tiny();
  ModelEdit zero;
  zero.tensor = [](const std::string& name, std::vector<float>* v) {
    if (name == "lnf.b" || name == "lnf.w") std::fill(v->begin(), v->end(), 0.f);
  };
  const Bytes changed = rewrite_model(orig, zero);  // same layout, different weights
  REQUIRE(changed.size() == orig.size());

  auto first_logits = [](qtf_model* m) {
    qtf_context* c = nullptr;
    REQUIRE(qtf_context_new(m, nullptr, &c) == QTF_OK);
    const int32_t tok = 3;
    REQUIRE(qtf_decode(c, &tok, 1) == QTF_OK);
    std::vector<float> l(qtf_get_logits(c), qtf_get_logits(c) + 96);
    qtf_context_free(c);
    return l;
  };
  auto overwrite_in_place = [&](const Bytes& b) {
    FILE* f = std::fopen(path.c_str(), "r+b");
    REQUIRE(f != nullptr);
    REQUIRE(std::fwrite(b.data(), 1, b.size(), f) == b.size());
    std::fclose(f);
  };

  for (int use_mmap : {1, 0}) {
    CAPTURE(use_mmap);
    write_file(path, orig);
    qtf_model* m = nullptr;
    REQUIRE(qtf_model_load_file(path.c_str(), use_mmap, &m) == QTF_OK);
    const std::vector<float> before = first_logits(m);
    overwrite_in_place(changed);
    const std::vector<float> after = first_logits(m);
    if (use_mmap) CHECK(after != before);  // the mapped weights changed under the model
    else CHECK(after == before);           // a loaded copy is immune
    qtf_model_free(m);
  }

  // Atomic replacement (write elsewhere, rename over) leaves a mapped model on the old inode.
  write_file(path, orig);
  qtf_model* m = nullptr;
  REQUIRE(qtf_model_load_file(path.c_str(), 1, &m) == QTF_OK);
  const std::vector<float> before = first_logits(m);
  REQUIRE(qtf::host::write_file_atomic(path.c_str(), changed.data(), changed.size()).ok());
  CHECK(first_logits(m) == before);
  qtf_model_free(m);

  // Truncating a mapped file makes the pages past the new end fault (SIGBUS): the process dies.
  // Checked in a child process so that this test survives it.
  write_file(path, orig);
  REQUIRE(qtf_model_load_file(path.c_str(), 1, &m) == QTF_OK);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (truncate(path.c_str(), 0) != 0) _exit(3);
    qtf_context* c = nullptr;
    if (qtf_context_new(m, nullptr, &c) != QTF_OK) _exit(4);
    const int32_t tok = 3;
    qtf_decode(c, &tok, 1);
    _exit(0);  // not reached on Linux
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  INFO("child status " << status);
  CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
  // SIGBUS; under a sanitizer its handler reports the bus error and aborts (or exits non-zero).
  if (WIFSIGNALED(status)) CHECK((WTERMSIG(status) == SIGBUS || WTERMSIG(status) == SIGABRT));
  else CHECK((WEXITSTATUS(status) != 3 && WEXITSTATUS(status) != 4));  // 3, 4: the setup failed
  qtf_model_free(m);
  std::filesystem::remove(path);
}

TEST_CASE("a char vocabulary with an empty token is refused (it once read a byte past the buffer)") {
  qtf::format::Writer w;
  w.add_str("tokenizer.type", "char");
  w.add_str_array("tokenizer.tokens", {"a", "b", ""});  // the empty token is the last byte of metadata
  const Bytes file = w.finish();
  qtf::format::ModelFile f;
  REQUIRE(f.open(file.data(), file.size()).ok());
  std::vector<uint8_t> arena(qtf::Tokenizer::arena_bytes(f, 3) + 16);
  void* p = arena.data() + (16 - reinterpret_cast<uintptr_t>(arena.data()) % 16) % 16;
  qtf::Tokenizer t;
  const qtf::Status st = t.init(f, 3, p, arena.size() - 16);
  CHECK(!st.ok());
  CHECK(std::string(st.message()).find("token 2") != std::string::npos);
}
