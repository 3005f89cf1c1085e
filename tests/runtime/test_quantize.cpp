// Quantized models (host/quantize.h, docs/quantize.md): every fixture and shipped model, rewritten as q8
// and as f16, binds with its matrices read in place (nothing converted), and predicts like the f32
// model within the bounds below, token by token and as a prompt block on threads.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "capi/qtf.h"
#include "host/file.h"
#include "kernels/kernels.h"
#include "host/quantize.h"
#include "host/session.h"
#include "support/model_edit.h"
#include "support/model_files.h"

using namespace qtf;

namespace {

// Log-softmax of n logits, in double.
std::vector<double> log_softmax(const float* z, int n) {
  double m = z[0], sum = 0;
  for (int i = 1; i < n; ++i) m = std::max(m, (double)z[i]);
  for (int i = 0; i < n; ++i) sum += std::exp(z[i] - m);
  std::vector<double> out(n);
  for (int i = 0; i < n; ++i) out[i] = z[i] - m - std::log(sum);
  return out;
}

struct Agreement {
  double mean_kl = 0, max_kl = 0;  // KL(f32 || quantized) of the next-token distributions, nats
  int top1_same = 0, positions = 0;
};

// Runs the same tokens through both models one at a time and compares every position's prediction.
// The weights' error alone: the float path (the default, auto, adds the activations' quantisation where
// the integer path is the faster one; that error has its own test, "act-quant" below).
Agreement compare(const host::LoadedModel& ref, const host::LoadedModel& q, const std::vector<int32_t>& tokens) {
  ContextOptions opt;
  opt.mem_budget = 0;  // the files as stored: dense copies of TT linears would add their own int8 rounding
  opt.act_quant = ActQuant::off;
  opt.n_ctx = (int)tokens.size() + ref.model().cfg.memory_tokens;  // memory slots take the first ones
  opt.n_batch = 1;
  host::HostContext a, b;
  REQUIRE(a.init(ref, opt).ok());
  REQUIRE(b.init(q, opt).ok());
  const int V = ref.model().cfg.vocab;
  Agreement g;
  for (int32_t t : tokens) {
    REQUIRE(a.ctx().eval(t).ok());
    REQUIRE(b.ctx().eval(t).ok());
    const std::vector<double> p = log_softmax(a.ctx().logits(), V), r = log_softmax(b.ctx().logits(), V);
    double kl = 0;
    for (int i = 0; i < V; ++i) kl += std::exp(p[i]) * (p[i] - r[i]);
    g.mean_kl += kl / (double)tokens.size();
    g.max_kl = std::max(g.max_kl, kl);
    g.top1_same += std::max_element(p.begin(), p.end()) - p.begin() == std::max_element(r.begin(), r.end()) - r.begin();
    ++g.positions;
  }
  return g;
}

size_t round16_bytes(size_t n) { return (n + 15) / 16 * 16; }  // a conversion buffer's share (model.cpp)

// The first 16 of `tokens` as one prompt block on 3 threads give the token-by-token logits (finite).
void check_block_as_tokens(const host::LoadedModel& qm, const std::vector<int32_t>& tokens) {
  const ModelConfig& c = qm.model().cfg;
  ContextOptions one, block;
  one.n_ctx = block.n_ctx = (int)tokens.size() + c.memory_tokens;
  one.n_batch = 1;
  block.n_batch = 16;
  block.n_threads = 3;
  host::HostContext a, b;
  REQUIRE(a.init(qm, one).ok());
  REQUIRE(b.init(qm, block).ok());
  for (int i = 0; i < 16; ++i) REQUIRE(a.ctx().eval(tokens[i]).ok());
  REQUIRE(b.ctx().eval(tokens.data(), 16).ok());
  float diff = 0, scale = 1;
  for (int i = 0; i < c.vocab; ++i) {
    REQUIRE(std::isfinite(a.ctx().logits()[i]));
    diff = std::max(diff, std::fabs(a.ctx().logits()[i] - b.ctx().logits()[i]));
    scale = std::max(scale, std::fabs(a.ctx().logits()[i]));
  }
  CHECK(diff <= 1e-5f * scale);
}

}  // namespace

TEST_CASE("q8, f16 and q4 models: matrices in place, predictions within bounds of the f32 model") {
  const std::vector<std::string> files = test::fixture_and_shipped_models();
  REQUIRE(files.size() >= 8);
  static Model sizing;  // a Model is tens of KB: not on the stack
  for (const std::string& f : files) {
    host::FileBytes bytes;  // mapped (64-byte aligned), as quantize_model needs
    REQUIRE(bytes.open(f.c_str()).ok());
    host::LoadedModel ref;
    REQUIRE(ref.load_memory(bytes.data(), bytes.size()).ok());
    const ModelConfig& c = ref.model().cfg;
    std::vector<int32_t> tokens((size_t)std::min(c.context - c.memory_tokens, 64));
    uint32_t lcg = 11;
    for (int32_t& t : tokens) t = (int32_t)(((lcg = lcg * 1664525u + 1013904223u) >> 8) % (uint32_t)c.vocab);
    for (host::QuantType type : {host::QuantType::q8, host::QuantType::f16, host::QuantType::q4}) {
      const bool q8 = type == host::QuantType::q8, q4 = type == host::QuantType::q4;
      const std::string name = f.substr(f.rfind('/') + 1) + (q8 ? " q8" : q4 ? " q4" : " f16");
      INFO(name);
      std::vector<uint8_t> out;
      host::QuantizeReport rep;
      REQUIRE(host::quantize_model(bytes.data(), bytes.size(), type, &out, &rep).ok());
      CHECK(rep.dense + rep.cores > 0);
      CHECK(out.size() < bytes.size());
      // Quantizing twice is refused: the matrices are not f32 any more.
      host::AlignedBuffer again;
      REQUIRE(again.allocate(out.size()).ok());
      std::memcpy(again.data(), out.data(), out.size());
      std::vector<uint8_t> twice;
      CHECK(host::quantize_model(again.data(), out.size(), type, &twice, &rep).code() == Err::unsupported);
      host::LoadedModel qm;
      REQUIRE(qm.load_memory(out.data(), out.size()).ok());
      format::ModelFile file;
      REQUIRE(file.open(out.data(), out.size()).ok());
      CHECK(sizing.convert_bytes(file) == 0);  // every matrix read in place, every other tensor f32
      const Model& m = qm.model();
      const WType dense = q8 ? WType::i8 : q4 ? WType::q4 : WType::f16;
      const bool tied = m.head_w.data == m.tok_emb.data;
      CHECK(m.tok_emb.type == (q4 && tied ? WType::i8 : dense));  // q4 keeps the head q8
      CHECK((m.tok_emb.scales != nullptr) == (q8 || (q4 && tied)));  // q8: a scale per row
      CHECK(m.head_w.type == (q4 ? WType::i8 : dense));
      CHECK((m.head_w.scales != nullptr) == (q8 || q4));
      const Linear& up = m.layers[0].up;  // q4's TT cores are q8's: int8, one scale per core
      CHECK((up.tt ? up.tt_w.cores[0].type : up.dense.w.type) == (up.tt && q4 ? WType::i8 : dense));

      const Agreement g = compare(ref, qm, tokens);
      MESSAGE(name << ": mean KL " << g.mean_kl << ", max KL " << g.max_kl << ", top-1 same at " << g.top1_same << "/"
                    << g.positions);
      // Bounds (docs/quantize.md): f16 is 2^-11 relative per weight; int8 ~1/254 of a row's (a core's)
      // largest value. Largest measured at this commit: f16 mean KL 3e-6, max 3e-5, top-1 all same; q8
      // mean KL 0.006 (shakespeare-tt2) and 0.022 (a random-weight TT fixture), max 0.18, top-1 13/16.
      // shakespeare-qllm-113k (byte level, d=48) is the most sensitive model on these random ids, 191 of whose
      // 256 values never occur in its text: q8 mean KL 0.050, max 1.26, f16 max 1.7e-3 here, while on the
      // validation text q8 costs +0.0016 nats and f16 +0.00003 (qtf eval, 20,000 bytes). Its own bounds:
      const bool sensitive = name.rfind("shakespeare-qllm-113k", 0) == 0;
      if (q4) {
        // 4 bits (the head q8): a step of 1/16 of a block's largest value, ~16x int8's per row, and KL
        // grows with its square. Largest measured on these random ids: mean KL 0.63 (shakespeare-dense-d52,
        // d=52), 1.89 (qllm-113k, d=48), max 5.7 and 7.7, top-1 as low as 21/64: the smallest models are
        // the most sensitive on the validation text too (docs/quantize.md). A wrong block or nibble
        // order costs the whole prediction (mean KL of several nats, top-1 near chance).
        CHECK(g.mean_kl < (sensitive ? 2.5 : 1.0));
        CHECK(g.max_kl < 10.0);
        CHECK(g.top1_same >= g.positions * 30 / 100);
      } else {
        CHECK(g.mean_kl < (q8 ? (sensitive ? 0.08 : 0.05) : (sensitive ? 3e-4 : 1e-4)));
        CHECK(g.max_kl < (q8 ? (sensitive ? 2.0 : 0.4) : (sensitive ? 4e-3 : 1e-3)));
        CHECK(g.top1_same >= g.positions * (q8 ? 75 : 97) / 100);
      }

      // A prompt block on threads gives the token-by-token logits of the quantized model too.
      check_block_as_tokens(qm, tokens);
    }
  }
}

TEST_CASE("quantize: the size of a q8 dense model is about a quarter, f16 a half") {
  host::FileBytes bytes;
  REQUIRE(bytes.open((std::string(QTF_SOURCE_DIR) + "/models/shakespeare-dense.qtf").c_str()).ok());
  std::vector<uint8_t> q8, f16;
  host::QuantizeReport rep;
  REQUIRE(host::quantize_model(bytes.data(), bytes.size(), host::QuantType::q8, &q8, &rep).ok());
  CHECK(rep.dense == 2 + 3 * 6);  // tok_emb, pos_emb, 3 layers x (q k v o up down); the head is tied
  CHECK(rep.cores == 0);
  REQUIRE(host::quantize_model(bytes.data(), bytes.size(), host::QuantType::f16, &f16, &rep).ok());
  CHECK(q8.size() < bytes.size() * 27 / 100);  // 1 byte per weight + a 4-byte scale per row, + the f32 vectors
  CHECK(f16.size() < bytes.size() * 52 / 100);
  std::vector<uint8_t> unaligned(bytes.size() + 1);
  std::memcpy(unaligned.data() + 1, bytes.data(), bytes.size());
  CHECK(host::quantize_model(unaligned.data() + 1, bytes.size(), host::QuantType::q8, &q8, &rep).code() ==
        Err::invalid_argument);
}

TEST_CASE("q4 rows: the blocks stand for the values within half a step, search beats absmax, tails padded") {
  std::mt19937 rng(41);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (int cols : {1, 7, 32, 33, 100, 768}) {
    CAPTURE(cols);
    std::vector<float> v((size_t)cols);
    for (float& x : v) x = normal(rng) * 0.05f;
    v[(size_t)cols / 2] = 0.4f;  // an outlier, as real weights have
    std::vector<uint8_t> search((size_t)q4_row_bytes(cols)), absmax(search.size());
    REQUIRE(host::quantize_q4_row(v.data(), cols, host::Q4Scale::search, search.data()));
    REQUIRE(host::quantize_q4_row(v.data(), cols, host::Q4Scale::absmax, absmax.data()));
    const Weights ws = Weights::q4(search.data(), cols), wa = Weights::q4(absmax.data(), cols);
    double err_search = 0, err_absmax = 0;
    for (int c = 0; c < cols; ++c) {
      const uint8_t* block = absmax.data() + c / kQ4Block * kQ4BlockBytes;
      const float d = f16_to_f32((uint16_t)(block[0] | block[1] << 8));
      // absmax: the largest magnitude maps to -8 d (d rounded to f16), so a value is within half a step,
      // but for the other sign's values beyond 7.5 |d|, clamped to 7 d: within a step.
      const float step = std::fabs(d), bound = std::fabs(v[(size_t)c]) <= 7.5f * step ? 0.5f * step : step;
      CHECK(std::fabs(wa.value(c, 0) - v[(size_t)c]) <= bound * 1.01f + 1e-7f);
      err_absmax += std::pow(wa.value(c, 0) - v[(size_t)c], 2);
      err_search += std::pow(ws.value(c, 0) - v[(size_t)c], 2);
    }
    CHECK(err_search <= err_absmax);
    if (cols >= 32) CHECK(err_search < 0.95 * err_absmax);  // the search pays on whole blocks
    for (int c = cols; c % kQ4Block; ++c) {  // padding: nibble 8 (zero) in both
      CHECK(ws.value(c, 0) == 0.f);
      CHECK(wa.value(c, 0) == 0.f);
    }
  }
  // Scales must fit an f16: a value beyond 8 * 65504 is refused, not written as an infinite scale.
  const float huge[2] = {1e6f, 1.f};
  std::vector<uint8_t> out(kQ4BlockBytes);
  CHECK_FALSE(host::quantize_q4_row(huge, 2, host::Q4Scale::search, out.data()));
}

TEST_CASE("quantize refuses a matrix with a non-finite value, naming the tensor") {
  host::FileBytes bytes;
  REQUIRE(bytes.open((std::string(QTF_SOURCE_DIR) + "/models/shakespeare-dense-d52.qtf").c_str()).ok());
  const std::vector<uint8_t> in(static_cast<const uint8_t*>(bytes.data()),
                                static_cast<const uint8_t*>(bytes.data()) + bytes.size());
  for (float bad : {NAN, INFINITY}) {
    testing::ModelEdit edit;
    edit.tensor = [bad](const std::string& name, std::vector<float>* v) {
      if (name == "blk.1.attn.v.w") (*v)[5] = bad;
    };
    const std::vector<uint8_t> damaged = testing::rewrite_model(in, edit);
    REQUIRE(!damaged.empty());
    host::AlignedBuffer buf;
    REQUIRE(buf.allocate(damaged.size()).ok());
    std::memcpy(buf.data(), damaged.data(), damaged.size());
    for (host::QuantType type : {host::QuantType::q4, host::QuantType::q4s, host::QuantType::q3s, host::QuantType::q8, host::QuantType::f16}) {
      std::vector<uint8_t> out;
      host::QuantizeReport rep;
      const Status st = host::quantize_model(buf.data(), damaged.size(), type, &out, &rep);
      CHECK(st.code() == Err::bad_value);
      CHECK(std::string(st.message()).find("tensor 'blk.1.attn.v.w' has 1 non-finite values (NaN/Inf), the first at index 5") !=
            std::string::npos);
    }
  }
}

TEST_CASE("quantize: a q4 dense model is about 15% of the f32 file, q4 TT cores are int8") {
  host::FileBytes bytes;
  REQUIRE(bytes.open((std::string(QTF_SOURCE_DIR) + "/models/shakespeare-dense.qtf").c_str()).ok());
  std::vector<uint8_t> q4;
  host::QuantizeReport rep;
  REQUIRE(host::quantize_model(bytes.data(), bytes.size(), host::QuantType::q4, &q4, &rep).ok());
  CHECK(rep.dense == 2 + 3 * 6);
  CHECK(q4.size() < bytes.size() * 16 / 100);  // 18 bytes per 32 weights (14.1%), + the f32 vectors
}

TEST_CASE("act-quant q8: logits of shipped q8 and q4 models within bounds of the float path; block == tokens") {
  // The integer dot products (docs/quantize.md "Integer dot products") add the activations' rounding
  // (a step of max|x_b| / 127 per block of 32) to the weights'. Against the same model on the float
  // path, token by token over 64 pseudo-random ids: the largest logit difference relative to the
  // largest logit, the mean KL and top-1 agreement, bounded here with the measured figures printed.
  // And with act-quant on, a prompt block on 3 threads gives the token-by-token logits (the same
  // quantised rows, the same sums in every tile).
  for (const char* file : {"shakespeare-dense.qtf", "stories260k.qtf", "tinystories-656k.qtf"}) {
    const std::string f = std::string(QTF_SOURCE_DIR) + "/models/" + file;
    host::FileBytes bytes;
    REQUIRE(bytes.open(f.c_str()).ok());
    for (host::QuantType type : {host::QuantType::q8, host::QuantType::q4}) {
      const std::string name = std::string(file) + (type == host::QuantType::q8 ? " q8" : " q4");
      INFO(name);
      std::vector<uint8_t> out;
      host::QuantizeReport rep;
      REQUIRE(host::quantize_model(bytes.data(), bytes.size(), type, &out, &rep).ok());
      host::LoadedModel qm;
      REQUIRE(qm.load_memory(out.data(), out.size()).ok());
      const ModelConfig& c = qm.model().cfg;
      std::vector<int32_t> tokens((size_t)std::min(c.context - c.memory_tokens, 64));
      uint32_t lcg = 17;
      for (int32_t& t : tokens) t = (int32_t)(((lcg = lcg * 1664525u + 1013904223u) >> 8) % (uint32_t)c.vocab);
      ContextOptions off;
      off.act_quant = ActQuant::off;
      off.n_ctx = (int)tokens.size() + c.memory_tokens;
      off.n_batch = 1;
      ContextOptions on = off;
      on.act_quant = ActQuant::q8;
      host::HostContext a, b;
      REQUIRE(a.init(qm, off).ok());
      REQUIRE(b.init(qm, on).ok());
      const int V = c.vocab;
      double worst_rel = 0, mean_kl = 0;
      int same = 0;
      std::vector<float> last((size_t)V);
      for (int32_t t : tokens) {
        REQUIRE(a.ctx().eval(t).ok());
        REQUIRE(b.ctx().eval(t).ok());
        const float* x = a.ctx().logits();
        const float* y = b.ctx().logits();
        double diff = 0, mag = 0;
        for (int i = 0; i < V; ++i) diff = std::max(diff, std::fabs((double)x[i] - y[i])), mag = std::max(mag, std::fabs((double)x[i]));
        worst_rel = std::max(worst_rel, diff / mag);
        const std::vector<double> p = log_softmax(x, V), r = log_softmax(y, V);
        double kl = 0;
        for (int i = 0; i < V; ++i) kl += std::exp(p[i]) * (p[i] - r[i]);
        mean_kl += kl / (double)tokens.size();
        same += std::max_element(p.begin(), p.end()) - p.begin() == std::max_element(r.begin(), r.end()) - r.begin();
      }
      std::copy(b.ctx().logits(), b.ctx().logits() + V, last.begin());
      MESSAGE(name << ": act-quant vs float path: max |logit diff| / max |logit| " << worst_rel << ", mean KL "
                    << mean_kl << ", top-1 same " << same << "/" << tokens.size());
      CHECK(worst_rel < 0.08);  // measured 0.017-0.040 (AVX-512 VNNI, 2026-12-06)
      CHECK(mean_kl < 5e-3);    // 0.0006-0.0012
      CHECK(same >= (int)tokens.size() * 85 / 100);  // 60-63 of 64

      ContextOptions block = on;  // the same tokens as one block on 3 threads
      block.n_batch = (int)tokens.size();
      block.n_threads = 3;
      host::HostContext h;
      REQUIRE(h.init(qm, block).ok());
      REQUIRE(h.ctx().eval(tokens.data(), (int)tokens.size()).ok());
      double diff = 0, mag = 0;
      for (int i = 0; i < V; ++i)
        diff = std::max(diff, std::fabs((double)h.ctx().logits()[i] - last[i])), mag = std::max(mag, std::fabs((double)last[i]));
      CHECK(diff <= 1e-5 * mag);
    }
  }
}

TEST_CASE("q3 rows: the blocks stand for the values within a step, search beats absmax, tails padded") {
  std::mt19937 rng(43);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (int cols : {1, 7, 32, 33, 100, 768}) {
    CAPTURE(cols);
    std::vector<float> v((size_t)cols);
    for (float& x : v) x = normal(rng) * 0.05f;
    v[(size_t)cols / 2] = 0.4f;
    std::vector<uint8_t> search((size_t)q3_row_bytes(cols)), absmax(search.size()), as_q4((size_t)q4_row_bytes(cols));
    REQUIRE(host::quantize_q3_row(v.data(), cols, host::Q4Scale::search, search.data()));
    REQUIRE(host::quantize_q3_row(v.data(), cols, host::Q4Scale::absmax, absmax.data()));
    q3_row_to_q4(search.data(), cols, as_q4.data());
    const Weights w4 = Weights::q4(as_q4.data(), cols);
    double err_search = 0, err_absmax = 0;
    for (int c = 0; c < cols; ++c) {
      const uint8_t* block = absmax.data() + c / kQ3Block * kQ3BlockBytes;
      const float d = f16_to_f32((uint16_t)(block[0] | block[1] << 8));
      // absmax: the largest magnitude maps to -4 d; other values within half a step, those of the other
      // sign beyond 3.5 |d| clamped to 3 d: within a step.
      const float step = std::fabs(d), bound = std::fabs(v[(size_t)c]) <= 3.5f * step ? 0.5f * step : step;
      CHECK(std::fabs(q3_value(absmax.data(), c) - v[(size_t)c]) <= bound * 1.01f + 1e-7f);
      CHECK(w4.value(c, 0) == q3_value(search.data(), c));  // the loader's q4 expansion: the same values
      err_absmax += std::pow(q3_value(absmax.data(), c) - v[(size_t)c], 2);
      err_search += std::pow(q3_value(search.data(), c) - v[(size_t)c], 2);
    }
    CHECK(err_search <= err_absmax);
    if (cols >= 32) CHECK(err_search < 0.95 * err_absmax);
    for (int c = cols; c % kQ3Block; ++c) {  // padding: code 4 (zero) in both, nibble 8 once expanded
      CHECK(q3_value(search.data(), c) == 0.f);
      CHECK(q3_value(absmax.data(), c) == 0.f);
      CHECK(w4.value(c, 0) == 0.f);
    }
  }
  const float huge[2] = {3e5f, 1.f};  // beyond 4 * 65504: no finite f16 scale
  std::vector<uint8_t> out(kQ3BlockBytes);
  CHECK_FALSE(host::quantize_q3_row(huge, 2, host::Q4Scale::search, out.data()));
}

TEST_CASE("q3 models: matrices expanded to q4 blocks at load, the file's values, a prompt block as tokens") {
  int compared = 0;  // models whose blk.0.ffn.up.w was compared value by value
  for (const std::string& f : test::fixture_and_shipped_models()) {
    INFO(f);
    host::FileBytes bytes;
    REQUIRE(bytes.open(f.c_str()).ok());
    std::vector<uint8_t> out;
    host::QuantizeReport rep;
    REQUIRE(host::quantize_model(bytes.data(), bytes.size(), host::QuantType::q3, &out, &rep).ok());
    host::LoadedModel qm;
    REQUIRE(qm.load_memory(out.data(), out.size()).ok());
    const Model& m = qm.model();
    const Linear& up = m.layers[0].up;  // q3's TT cores are q8's; dense matrices q3 in the file, q4 resident
    CHECK((up.tt ? up.tt_w.cores[0].type : up.dense.w.type) == (up.tt ? WType::i8 : WType::q4));
    CHECK(m.head_w.type == WType::i8);  // the head q8, as q4 keeps it
    format::ModelFile file;
    REQUIRE(file.open(out.data(), out.size()).ok());
    format::TensorInfo t;
    size_t q3 = 0;
    for (uint64_t cur = 0; file.next_tensor(&cur, &t);) {
      if (t.dtype != format::DType::q3) continue;
      ++q3;
      const std::string name(t.name.data, t.name.size);
      if (name != "blk.0.ffn.up.w") continue;
      ++compared;
      const int64_t cols = (int64_t)t.dims[1];
      for (int64_t r = 0; r < (int64_t)t.dims[0]; ++r)
        for (int64_t c = 0; c < cols; ++c)
          REQUIRE(up.dense.w.value(r * cols + c, r) ==
                  q3_value(static_cast<const uint8_t*>(t.values) + r * q3_row_bytes(cols), c));
    }
    CHECK(q3 == rep.dense - 1);  // every dense matrix but the head
    const ModelConfig& c = m.cfg;
    std::vector<int32_t> tokens(16);
    uint32_t lcg = 7;
    for (int32_t& tok : tokens) tok = (int32_t)(((lcg = lcg * 1664525u + 1013904223u) >> 8) % (uint32_t)c.vocab);
    check_block_as_tokens(qm, tokens);
  }
  CHECK(compared >= 3);
}

TEST_CASE("q4s, q3s matrices: D and sub-scales per group of 8 blocks from the q4 / q3 scales, codes at the coded scales") {
  // The algorithm of docs/format.md re-done here from the rows' q4 / q3 blocks, and compared byte for
  // byte; shapes with a group across rows, a partial last group, a single short block; a row 1000x smaller
  // (sub-scales near 0) and a zero block (D may be 0).
  std::mt19937 rng(47);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (bool q3 : {false, true})
    for (host::Q4Scale how : {host::Q4Scale::search, host::Q4Scale::absmax})
      for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{3, 100}, {1, 7}, {9, 32}, {2, 768}, {5, 40}}) {
        CAPTURE(q3);
        CAPTURE(rows);
        CAPTURE(cols);
        const int lo = q3 ? -4 : -8, hi = q3 ? 3 : 7, bb = sblock_bytes(q3), step = q3 ? kQ3BlockBytes : kQ4BlockBytes;
        std::vector<float> v((size_t)(rows * cols));
        for (float& x : v) x = normal(rng) * 0.05f;
        v[v.size() / 2] = 0.4f;
        for (int64_t c = 0; rows > 1 && c < cols; ++c) v[(size_t)cols + c] *= 1e-3f;  // row 1 tiny
        for (int64_t c = 0; rows > 2 && c < std::min<int64_t>(cols, 32); ++c) v[(size_t)(2 * cols + c)] = 0.f;
        const int64_t nb = (cols + 31) / 32, blocks = rows * nb, groups = (blocks + 7) / 8;
        uint64_t bytes = 0;
        REQUIRE(format::tensor_bytes(q3 ? format::DType::q3s : format::DType::q4s, (uint64_t)(rows * cols), (uint64_t)rows, &bytes));
        CHECK(bytes == (uint64_t)(groups * 8 + blocks * bb));
        std::vector<uint8_t> out((size_t)bytes), rowq((size_t)(blocks * step));
        int64_t bad = -1;
        REQUIRE(host::quantize_sub_scaled(v.data(), rows, cols, q3, how, out.data(), &bad));
        for (int64_t r = 0; r < rows; ++r)
          REQUIRE((q3 ? host::quantize_q3_row : host::quantize_q4_row)(v.data() + r * cols, cols, how, rowq.data() + r * nb * step));
        std::vector<uint8_t> as_q4((size_t)(blocks * kQ4BlockBytes));
        sblocks_to_q4(out.data(), q3, 0, (uint64_t)blocks, as_q4.data());
        int nonzero_sub = 0;
        for (int64_t g = 0; g < groups; ++g) {
          const uint8_t* h = out.data() + g * (8 + 8 * bb);
          float d[8] = {0}, m = 0.f;
          for (int j = 0; j < 8 && g * 8 + j < blocks; ++j) {
            const uint8_t* b = rowq.data() + (g * 8 + j) * step;
            d[j] = f16_to_f32((uint16_t)(b[0] | b[1] << 8));
            m = std::max(m, std::fabs(d[j]));
          }
          const uint16_t dh = host::f32_to_f16(m / 31.0f);
          const float D = f16_to_f32(dh);
          CHECK((h[0] | h[1] << 8) == dh);
          for (int j = 0; j < 8; ++j) {
            const int64_t i = g * 8 + j;
            const long s = i >= blocks || D == 0.f ? 0 : std::clamp(std::lround(d[j] / D), -31L, 31L);
            CHECK(sgroup_sub(h, j) == s);
            nonzero_sub += s != 0;
            if (i >= blocks) continue;
            const float dq = f16_to_f32(host::f32_to_f16((float)s * D));
            const int64_t r = i / nb, c0 = i % nb * 32;
            const uint8_t* q4 = as_q4.data() + i * kQ4BlockBytes;
            CHECK(f16_to_f32((uint16_t)(q4[0] | q4[1] << 8)) == dq);
            for (int64_t c = 0; c < 32; ++c) {
              const long want = c0 + c >= cols || dq == 0.f ? 0 : std::clamp(std::lround(v[(size_t)(r * cols + c0 + c)] * (1.f / dq)), (long)lo, (long)hi);
              CHECK(sblock_code(h + 8 + j * bb, q3, (int)c) == want - lo);
              CHECK(q4_value(q4, c) == dq * (float)want);  // the expansion: the same value
            }
          }
        }
        CHECK(nonzero_sub > 0);
      }
  const float huge[2] = {1e6f, 1.f};  // beyond 8 * 65504: no finite f16 scale
  std::vector<uint8_t> out(8 + 16);
  int64_t bad = -1;
  CHECK_FALSE(host::quantize_sub_scaled(huge, 1, 2, false, host::Q4Scale::search, out.data(), &bad));
  CHECK(bad == 0);
}

TEST_CASE("q4s, q3s models: smaller than q4, q3, verified, expanded to q4 blocks at load, within a step, near q4 / q3") {
  int compared = 0;  // models whose blk.0.ffn.up.w was compared value by value
  static Model sizing;
  for (const std::string& f : test::fixture_and_shipped_models()) {
    host::FileBytes bytes;
    REQUIRE(bytes.open(f.c_str()).ok());
    host::LoadedModel ref;
    REQUIRE(ref.load_memory(bytes.data(), bytes.size()).ok());
    format::ModelFile in;
    REQUIRE(in.open(bytes.data(), bytes.size()).ok());
    const ModelConfig& c = ref.model().cfg;
    std::vector<int32_t> tokens((size_t)std::min(c.context - c.memory_tokens, 64));
    uint32_t lcg = 11;
    for (int32_t& t : tokens) t = (int32_t)(((lcg = lcg * 1664525u + 1013904223u) >> 8) % (uint32_t)c.vocab);
    for (bool q3 : {false, true}) {
      const std::string name = f.substr(f.rfind('/') + 1) + (q3 ? " q3s" : " q4s");
      INFO(name);
      std::vector<uint8_t> base, sub;
      host::QuantizeReport rep_base, rep;
      REQUIRE(host::quantize_model(bytes.data(), bytes.size(), q3 ? host::QuantType::q3 : host::QuantType::q4, &base, &rep_base).ok());
      REQUIRE(host::quantize_model(bytes.data(), bytes.size(), q3 ? host::QuantType::q3s : host::QuantType::q4s, &sub, &rep).ok());
      CHECK(rep.dense == rep_base.dense);
      CHECK(rep.cores == rep_base.cores);
      CHECK(sub.size() <= base.size());  // strictly smaller tensors below (the file pads each to 64 bytes)
      format::ModelFile file, file_base;
      REQUIRE(file.open(sub.data(), sub.size()).ok());  // verified: sizes, D, sub-scales, block scales, padding
      REQUIRE(file_base.open(base.data(), base.size()).ok());
      host::LoadedModel qm, qb;
      REQUIRE(qm.load_memory(sub.data(), sub.size()).ok());  // binds (verify --deep)
      REQUIRE(qb.load_memory(base.data(), base.size()).ok());
      const Model& m = qm.model();
      const Linear& up = m.layers[0].up;  // TT cores q8's; dense matrices q4s / q3s in the file, q4 resident
      CHECK((up.tt ? up.tt_w.cores[0].type : up.dense.w.type) == (up.tt ? WType::i8 : WType::q4));
      CHECK(m.head_w.type == WType::i8);
      size_t n_sub = 0, expanded = 0;
      uint64_t sub_bytes = 0, base_bytes = 0;
      double err = 0, err_base = 0;  // squared error against the f32 values, over every q4s / q3s matrix
      format::TensorInfo t, t32, tb;
      for (uint64_t cur = 0; file.next_tensor(&cur, &t);) {
        uint64_t first = 0;
        CHECK(format::count_nonfinite(t, &first) == 0);
        if (t.dtype != (q3 ? format::DType::q3s : format::DType::q4s)) continue;
        ++n_sub;
        sub_bytes += t.size;
        const std::string tn(t.name.data, t.name.size);
        REQUIRE(in.find_tensor(tn.c_str(), &t32));
        REQUIRE(file_base.find_tensor(tn.c_str(), &tb));
        REQUIRE(tb.dtype == (q3 ? format::DType::q3 : format::DType::q4));
        base_bytes += tb.size;
        const int64_t rows = (int64_t)t.rows(), cols = (int64_t)t.dims[t.ndim - 1], nb = (cols + 31) / 32;
        std::vector<uint8_t> q4((size_t)(rows * nb * kQ4BlockBytes));
        sblocks_to_q4(static_cast<const uint8_t*>(t.values), q3, 0, (uint64_t)(rows * nb), q4.data());
        expanded += round16_bytes(q4.size());
        const float* x = static_cast<const float*>(t32.values);
        const uint8_t* b = static_cast<const uint8_t*>(tb.values);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t col = 0; col < cols; ++col) {
            const int64_t i = r * nb + col / 32;
            const uint8_t* blk = q4.data() + i * kQ4BlockBytes;
            const uint8_t* h = static_cast<const uint8_t*>(t.values) + sgroup_offset(q3, (uint64_t)i / 8);
            const float xs = q4_value(blk, col % 32), xf = x[r * cols + col];
            const float xb = q3 ? q3_value(b + r * q3_row_bytes(cols), col) : q4_value(b + r * q4_row_bytes(cols), col);
            const uint8_t* bb = b + r * (q3 ? q3_row_bytes(cols) : q4_row_bytes(cols)) + col / 32 * (q3 ? kQ3BlockBytes : kQ4BlockBytes);
            // Within half a step of the block's coded scale d' = f16(s_j D), or at the end of the code range
            // toward a value beyond it (clamped: the largest magnitudes of a block whose scale shrank).
            const float dq = f16_to_f32(sgroup_scale(h, (int)(i % 8)));
            const int code = (int)std::lround(dq != 0.f ? xs / dq : 0.f);
            const bool clamped = (code == (q3 ? -4 : -8) || code == (q3 ? 3 : 7)) && xs * xf >= 0.f &&
                                 std::fabs(xf) >= std::fabs(xs);
            // Per value: the assertions run only where a value fails (a doctest CHECK for each of millions
            // of values was most of this test's time, 44 s under ASan).
            const bool within = std::fabs(xs - xf) <= 0.501f * std::fabs(dq) + 1e-7f || clamped || (dq == 0.f && xs == 0.f);
            if (!within) CHECK(within);
            if (!std::isfinite(xs)) CHECK(std::isfinite(xs));
            // and near the q4 / q3 value: the block scales differ by the sub-scale's rounding only
            const float d = std::fabs(f16_to_f32((uint16_t)(bb[0] | bb[1] << 8)));
            const float D = std::fabs(f16_to_f32((uint16_t)(h[0] | h[1] << 8)));
            const bool near_base = std::fabs(dq - (bb[1] & 0x80 ? -d : d)) <= 0.501f * D + std::ldexp(std::fabs(dq), -10);
            if (!near_base) CHECK(near_base);
            err += std::pow((double)xs - xf, 2), err_base += std::pow((double)xb - xf, 2);
            if (tn == "blk.0.ffn.up.w" && !up.tt && up.dense.w.value(r * cols + col, r) != xs)
              REQUIRE(up.dense.w.value(r * cols + col, r) == xs);
          }
        compared += tn == "blk.0.ffn.up.w" && !up.tt;
      }
      CHECK(n_sub == rep.dense - 1);  // every dense matrix but the head
      if (n_sub) CHECK(sub_bytes * (q3 ? 14 : 18) < base_bytes * (q3 ? 13 : 17) + 8 * n_sub * (q3 ? 14 : 18));  // 13/14, 17/18 of q3's, q4's, + the last groups
      CHECK(sizing.convert_bytes(file) >= expanded);  // the expansions are resident (and any f32 conversions)
      // Measured at this commit: squared error 1.016-1.029x q4's (q4s), 1.002-1.009x q3's (q3s).
      MESSAGE(name << ": squared error " << err << " vs " << err_base << " (" << (err / err_base) << "x)");
      CHECK(err <= 1.1 * err_base + 1e-12);
      const Agreement gs = compare(ref, qm, tokens), gb = compare(ref, qb, tokens);
      MESSAGE(name << ": mean KL " << gs.mean_kl << " (" << (q3 ? "q3 " : "q4 ") << gb.mean_kl << "), top-1 same at "
                   << gs.top1_same << "/" << gs.positions);
      CHECK(gs.mean_kl < 2.0 * gb.mean_kl + 0.05);  // random ids on small (some random-weight) models: noisy
      if (!q3) CHECK(gs.top1_same >= gs.positions * 30 / 100);  // as q4's bound (q3 has none: 15/64 on qllm-113k)
      check_block_as_tokens(qm, tokens);
    }
  }
  CHECK(compared >= 3);
}

// The C API's act_quant (qtf_context_options): on a q8 model OFF gives the C++ float path's logits and Q8
// the integer path's, bit for bit (they differ from each other), AUTO one of the two as
// kern::int_dot_preferred says; a caller built against the struct before the field (struct_size 48)
// gets AUTO whatever lies past its end; values out of range are refused.
TEST_CASE("C API: act_quant off / q8 / auto on a q8 model") {
  host::FileBytes bytes;
  REQUIRE(bytes.open((std::string(QTF_SOURCE_DIR) + "/models/shakespeare-dense.qtf").c_str()).ok());
  std::vector<uint8_t> q8;
  host::QuantizeReport rep;
  REQUIRE(host::quantize_model(bytes.data(), bytes.size(), host::QuantType::q8, &q8, &rep).ok());
  qtf_model* m = nullptr;
  REQUIRE(qtf_model_load_memory(q8.data(), q8.size(), &m) == QTF_OK);
  host::LoadedModel lm;
  REQUIRE(lm.load_memory(q8.data(), q8.size()).ok());
  const int V = lm.model().cfg.vocab;
  const std::vector<int32_t> tokens = {3, 14, 15, 9, 26, 5, 35, 8};

  auto capi = [&](const qtf_context_options& o) {
    qtf_context* c = nullptr;
    REQUIRE(qtf_context_new_with(m, nullptr, &o, &c) == QTF_OK);
    REQUIRE(qtf_decode(c, tokens.data(), (int32_t)tokens.size()) == QTF_OK);
    std::vector<float> z(qtf_get_logits(c), qtf_get_logits(c) + V);
    qtf_context_free(c);
    return z;
  };
  auto cpp = [&](ActQuant aq) {
    ContextOptions o;
    o.act_quant = aq;
    host::HostContext h;
    REQUIRE(h.init(lm, o).ok());
    REQUIRE(h.ctx().eval(tokens.data(), (int)tokens.size()).ok());
    return std::vector<float>(h.ctx().logits(), h.ctx().logits() + V);
  };
  qtf_context_options o = qtf_context_default_options();
  CHECK(o.act_quant == QTF_ACT_QUANT_AUTO);
  o.act_quant = QTF_ACT_QUANT_OFF;
  const std::vector<float> off = capi(o);
  o.act_quant = QTF_ACT_QUANT_Q8;
  const std::vector<float> q = capi(o);
  o.act_quant = QTF_ACT_QUANT_AUTO;
  const std::vector<float> automatic = capi(o);
  CHECK(off == cpp(ActQuant::off));
  CHECK(q == cpp(ActQuant::q8));
  CHECK(off != q);
  CHECK(automatic == (kern::int_dot_preferred(WType::i8) ? q : off));
  static_assert(offsetof(qtf_context_options, act_quant) == 48, "past the 48 bytes of the struct before it");
  o.act_quant = QTF_ACT_QUANT_Q8;  // past an older caller's struct: not read
  o.struct_size = offsetof(qtf_context_options, act_quant);
  CHECK(capi(o) == automatic);

  qtf_context* c = nullptr;
  for (int bad : {-1, 3}) {
    o = qtf_context_default_options();
    o.act_quant = bad;
    CHECK(qtf_context_new_with(m, nullptr, &o, &c) == QTF_ERR_INVALID_ARGUMENT);
  }
  qtf_model_free(m);
}
