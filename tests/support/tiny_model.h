// Builds small random .qtf models in memory for tests (any config the engine supports).
// Parity with the reference lives in the Python fixtures; these exercise the runtime's mechanics.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "host/writer.h"

namespace qtf::testing {

struct TinyConfig {
  int vocab = 0;  // 0: the char vocabulary below
  int d = 16, n_layers = 2, n_heads = 2, d_ff = 32, context = 32;
  bool tensorized = true;
  std::vector<int64_t> d_factors{4, 4}, ff_factors{4, 8};
  int tt_rank = 4, r_min = 1, r_max = 4;
  double alpha = 1.0, theta = 0.3;
  int n_qubits = 4, n_qlayers = 2;
  bool adaptive_rank = true, quantum_attention = true, tied = true;
  std::string activation = "daruan";
  bool rotary = false;  // rotary positions (no pos_emb) instead of learned
  int daruan_depth = 3;
  uint32_t seed = 7;
  float scale = 0.5f;
};

inline std::vector<std::string> tiny_chars() {
  std::vector<std::string> v;
  v.push_back("\n");
  for (char c = ' '; c <= '~'; ++c) v.push_back(std::string(1, c));
  return v;
}

inline std::vector<uint8_t> make_tiny_model(const TinyConfig& c) {
  std::mt19937 rng(c.seed);
  std::normal_distribution<float> nd(0.f, c.scale);
  auto rnd = [&](std::vector<uint64_t> dims) {
    size_t n = 1;
    for (uint64_t x : dims) n *= x;
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    return v;
  };
  format::Writer w;
  std::vector<std::string> tokens = tiny_chars();
  const int V = c.vocab ? c.vocab : (int)tokens.size();
  tokens.resize((size_t)V, "");
  for (int i = 0; i < V; ++i)
    if (tokens[i].empty()) tokens[i] = std::string(1, (char)('A' + i % 26)) + std::to_string(i);
  w.add_str("qtf.arch", "qtensorformer");
  w.add_i64("model.vocab_size", V);
  w.add_i64("model.d_model", c.d);
  w.add_i64("model.n_layers", c.n_layers);
  w.add_i64("model.n_heads", c.n_heads);
  w.add_i64("model.d_ff", c.d_ff);
  w.add_i64("model.context", c.context);
  w.add_i64("model.tensorized", c.tensorized);
  w.add_i64_array("model.tt.d_factors", c.d_factors);
  w.add_i64_array("model.tt.ff_factors", c.ff_factors);
  w.add_i64("model.tt.rank", c.tt_rank);
  w.add_i64("model.r_min", c.r_min);
  w.add_i64("model.r_max", c.r_max);
  w.add_f64("model.alpha", c.alpha);
  w.add_f64("model.theta", c.theta);
  w.add_i64("model.n_qubits", c.n_qubits);
  w.add_i64("model.n_qlayers", c.n_qlayers);
  w.add_i64("model.adaptive_rank", c.adaptive_rank);
  w.add_i64("model.quantum_attention", c.quantum_attention);
  w.add_str("model.activation", c.activation);
  if (c.rotary) w.add_str("model.positions", "rotary");
  w.add_i64("model.daruan_depth", c.daruan_depth);
  w.add_i64("model.tied_embeddings", c.tied);
  w.add_str("tokenizer.type", "char");
  w.add_str_array("tokenizer.tokens", std::vector<std::string>(tokens.begin(), tokens.begin() + V));
  w.add_str("provenance.created_by", "tests/support/tiny_model.h");

  auto add = [&](const std::string& name, std::vector<uint64_t> dims) {
    std::vector<float> v = rnd(dims);
    w.add_f32(name, dims, v.data());
  };
  auto add_const = [&](const std::string& name, std::vector<uint64_t> dims, float value) {
    size_t n = 1;
    for (uint64_t x : dims) n *= x;
    std::vector<float> v(n, value);
    w.add_f32(name, dims, v.data());
  };
  auto linear = [&](const std::string& p, const std::vector<int64_t>& out_f, const std::vector<int64_t>& in_f) {
    int64_t rows = 1, cols = 1;
    for (int64_t f : out_f) rows *= f;
    for (int64_t f : in_f) cols *= f;
    if (!c.tensorized) {
      add(p + ".w", {(uint64_t)rows, (uint64_t)cols});
    } else {
      const size_t K = out_f.size();
      // Bond ranks: stored rank capped by the TT maximum on each side.
      std::vector<int64_t> r(K + 1, 1);
      int64_t left = 1;
      for (size_t k = 1; k < K; ++k) {
        left *= out_f[k - 1] * in_f[k - 1];
        int64_t right = 1;
        for (size_t j = k; j < K; ++j) right *= out_f[j] * in_f[j];
        r[k] = std::min<int64_t>({(int64_t)c.tt_rank, left, right});
      }
      for (size_t k = 0; k < K; ++k)
        add(p + ".core." + std::to_string(k), {(uint64_t)r[k], (uint64_t)out_f[k], (uint64_t)in_f[k], (uint64_t)r[k + 1]});
    }
    add(p + ".b", {(uint64_t)rows});
  };
  const uint64_t d = c.d, Q = c.n_qubits, H = c.n_heads, hd = c.d / c.n_heads, F = c.d_ff;
  const uint64_t D = c.daruan_depth;
  std::vector<int64_t> df = c.tensorized ? c.d_factors : std::vector<int64_t>{c.d};
  std::vector<int64_t> ff = c.tensorized ? c.ff_factors : std::vector<int64_t>{c.d_ff};
  add("tok_emb", {(uint64_t)V, d});
  if (!c.rotary) add("pos_emb", {(uint64_t)c.context, d});
  for (int l = 0; l < c.n_layers; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    add_const(p + "ln1.w", {d}, 1.f);
    add(p + "ln1.b", {d});
    add_const(p + "ln2.w", {d}, 1.f);
    add(p + "ln2.b", {d});
    if (Q > 0) {
      add(p + "enc.w", {Q, d});
      add(p + "enc.b", {Q});
      if (c.n_qlayers > 0) add(p + "qparams", {(uint64_t)c.n_qlayers, Q, 3});
      add(p + "qout.w", {d, Q});
      add(p + "qout.b", {d});
    }
    linear(p + "attn.q", df, df);
    linear(p + "attn.k", df, df);
    linear(p + "attn.v", df, df);
    linear(p + "attn.o", df, df);
    if (Q > 0 && c.quantum_attention) {
      add(p + "qattn.w_qk", {H, Q, hd});
      add(p + "qattn.var", {H, 2, Q, 3});
      add_const(p + "qattn.beta", {H}, 4.f);
    }
    linear(p + "ffn.up", ff, df);
    linear(p + "ffn.down", df, ff);
    if (c.activation == "daruan") {
      add(p + "ffn.daruan.theta", {F, D + 1, 2});
      add(p + "ffn.daruan.w", {F, D});
      add(p + "ffn.daruan.b", {F, D});
      add(p + "ffn.daruan.a", {F});
      add(p + "ffn.daruan.e", {F});
      add(p + "ffn.daruan.s", {F});
    }
  }
  add_const("lnf.w", {d}, 1.f);
  add("lnf.b", {d});
  if (!c.tied) add("head.w", {(uint64_t)V, d});
  return w.finish();
}

}  // namespace qtf::testing
