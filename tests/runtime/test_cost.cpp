// The cost report against an independent count: for every parity fixture (tests/fixtures/*.qtf), every
// route and every activation path, the FLOPs, circuit-simulation FLOPs and circuits the engine reports
// for a token equal a count made here from the configuration alone (the shapes in docs/model.md, the
// prices in docs/runtime.md "The cost report") and the token's reported rank and route (those decisions
// are checked against the reference by test_parity). TT matvec costs are counted from the factors and
// bond ranks here, not taken from the kernels' plan; the circuits' own counts (quantum::*_flops) are the
// unit prices of the circuits (docs/quantum.md).
#include <doctest/doctest.h>

#include <algorithm>
#include <dirent.h>
#include <string>
#include <vector>

#include "host/session.h"
#include "support/json_lite.h"

using namespace qtf;
using qtf::testing::Json;

namespace {

struct Count {
  int64_t flops = 0, qsim = 0, circuits = 0;
};

int64_t prod(const int* v, int begin, int end) {
  int64_t p = 1;
  for (int k = begin; k < end; ++k) p *= v[k];
  return p;
}

// y = W x for a TT-matrix with output factors m and input factors n at run-time rank r: contract core
// by core from the right or from the left, whichever is cheaper (multiply-add = 2; the bias add is not
// counted for TT linears). Stored bond b is min(tt_rank, the TT maximum of that bond), as the trainer's
// tt_bond_ranks; a token of rank r uses min(r, stored) of it.
int64_t tt_flops(const int* m, const int* n, int K, int tt_rank, int r) {
  int64_t R[kMaxTTFactors + 1];
  int mn[kMaxTTFactors];
  for (int k = 0; k < K; ++k) mn[k] = m[k] * n[k];
  for (int b = 0; b <= K; ++b)
    R[b] = (b == 0 || b == K) ? 1 : std::min<int64_t>({r, tt_rank, prod(mn, 0, b), prod(mn, b, K)});
  int64_t right_to_left = 0, left_to_right = 0;
  for (int k = 0; k < K; ++k) {
    const int64_t core = 2 * R[k] * m[k] * n[k] * R[k + 1];
    right_to_left += core * prod(n, 0, k) * prod(m, k + 1, K);  // inputs left of k, outputs right of k
    left_to_right += core * prod(m, 0, k) * prod(n, k + 1, K);
  }
  return std::min(right_to_left, left_to_right);
}

// A linear's LoRA adapter (docs/qllm.md): A x (2 r in), B (A x) (2 r out), the scaled add (out).
int64_t lora_flops(const Linear& lin) {
  return lin.lora_a ? 2ll * lin.lora_rank * lin.cols + 2ll * lin.lora_rank * lin.rows + lin.rows : 0;
}

int64_t log2_ceil(int64_t n) {
  int64_t k = 0;
  while ((int64_t{1} << k) < n) ++k;
  return k;
}

Count expected(const Model& m, const RunOptions& o, const TokenStats& s) {
  const ModelConfig& c = m.cfg;
  const int64_t d = c.d, H = c.n_heads, hd = d / H, Q = c.n_qubits, F = c.d_ff, n = s.pos + 1;
  const int64_t angles = 2 * Q * hd + 10 * Q;  // u = tanh(W_qk v) of one head
  const bool qattn_model = c.quantum_attention && Q > 0;
  // Block options (docs/llama.md): RMSNorm 4 per element (LayerNorm 8); k, v map d -> kv = n_kv_heads * hd;
  // a dense linear's bias add (rows) only with model.linear_bias; swiglu adds the gate linear and 12 per
  // hidden element (gelu 10); rotary positions 6 per rotated pair of q and k.
  const int64_t kv = c.n_kv_heads * hd, norm = (c.norm == NormKind::rmsnorm ? 4 : 8) * d;
  const bool swiglu = c.activation == Activation::swiglu;
  const int64_t bias = c.linear_bias ? 1 : 0;
  Count k;
  for (int l = 0; l < c.n_layers; ++l) {
    const int r = s.layer[l].rank;
    int64_t linears;
    if (c.tensorized) {
      linears = 2 * tt_flops(c.d_factors, c.d_factors, c.tt_K, c.tt_rank, r) +         // q, o
                2 * tt_flops(c.kv_factors, c.d_factors, c.tt_K, c.tt_rank, r) +        // k, v: d -> kv
                (swiglu ? 2 : 1) * tt_flops(c.ff_factors, c.d_factors, c.tt_K, c.tt_rank, r) +  // (gate,) up
                tt_flops(c.d_factors, c.ff_factors, c.tt_K, c.tt_rank, r);             // down: d_ff -> d
    } else {
      linears = 2 * (2 * d * d + bias * d) + 2 * (2 * d * kv + bias * kv) + (swiglu ? 2 : 1) * (2 * d * F + bias * F) +
                2 * F * d + bias * d;
    }
    const Layer& ly = m.layers[l];
    for (const Linear* lin : {&ly.q, &ly.k, &ly.v, &ly.o, &ly.gate, &ly.up, &ly.down}) linears += lora_flops(*lin);
    int64_t f = 2 * norm + linears + 2 * d;  // LN1, LN2, the linears, two residual adds
    if (c.positions == PosKind::rotary) f += 6 * (d + kv) / 2;
    int64_t q = 0, circ = 0;
    if (Q > 0) {  // entropy meter: angles, circuit, e = a + W_qout z + b_qout
      f += 2 * Q * d + 10 * Q + 2 * d * Q + 2 * d;
      q += quantum::encoder_flops((int)Q, c.n_qlayers);
      circ += 1;
    }
    if (qattn_model && o.route != RouteMode::all_classical) q += H * quantum::feature_state_flops((int)Q);  // keys
    if (qattn_model && o.route != RouteMode::all_classical) f += H * angles;
    if (qattn_model && s.layer[l].quantum && o.route != RouteMode::all_classical) {
      f += H * (angles + n);  // query angles, beta * K
      q += H * (quantum::feature_state_flops((int)Q) + n * quantum::fidelity_flops((int)Q));
      circ += H * n;
    } else {
      f += H * n * (2 * hd + 1);  // scaled q . k
    }
    const int64_t S = o.attention_samples;
    if (S > 0 && !(qattn_model && s.layer[l].quantum && o.route != RouteMode::all_classical))
      f += H * (n * 5 + 2 * log2_ceil(n) * S + 2 * hd * S + 3 * hd);  // softmax + prefix sums, S searches, the mix
    else
      f += H * n * (4 + 2 * hd);  // softmax, weighted sum of values
    if (swiglu) {
      f += 12 * F;
    } else if (c.activation == Activation::gelu) {
      f += 10 * F;
    } else if (o.act_path == quantum::DaruanPath::quantum) {
      q += F * quantum::daruan_flops_per_channel(o.act_path, c.daruan_depth);
      circ += F;
    } else {
      f += F * quantum::daruan_flops_per_channel(o.act_path, c.daruan_depth);
    }
    k.flops += f + q;
    k.qsim += q;
    k.circuits += circ;
  }
  k.flops += norm + 2 * (int64_t)c.vocab * d;  // LNf, head
  if (c.phase_rotation) k.flops += d;           // the phase gain (docs/qllm.md)
  return k;
}

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  std::string dir = std::string(QTF_SOURCE_DIR) + "/tests/fixtures";
  if (DIR* dp = opendir(dir.c_str())) {
    while (dirent* e = readdir(dp)) {
      std::string nm = e->d_name;
      if (nm.size() > 4 && nm.compare(nm.size() - 4, 4, ".qtf") == 0) names.push_back(nm.substr(0, nm.size() - 4));
    }
    closedir(dp);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("reported FLOPs, circuit-simulation FLOPs and circuits equal an independent count") {
  const std::vector<std::string> names = fixture_names();
  REQUIRE_MESSAGE(names.size() >= 4, "expected the committed fixtures in tests/fixtures/");
  int checked = 0;
  for (const std::string& name : names) {
    const std::string base = std::string(QTF_SOURCE_DIR) + "/tests/fixtures/" + name;
    Json fx;
    REQUIRE(qtf::testing::load_json(base + ".json", &fx));
    host::LoadedModel lm;
    REQUIRE(lm.load_file((base + ".qtf").c_str()).ok());
    const ModelConfig& c = lm.model().cfg;
    for (RouteMode route : {RouteMode::automatic, RouteMode::all_classical, RouteMode::all_quantum}) {
      for (quantum::DaruanPath path :
           {quantum::DaruanPath::fourier, quantum::DaruanPath::quantum, quantum::DaruanPath::spline}) {
        for (int fixed_rank : {0, 1}) {
          ContextOptions o;
          o.mem_budget = 0;  // the TT plans' FLOPs (execution by cost would run dense copies)
          o.route = route;
          o.act_path = path;
          o.fixed_rank = c.tensorized ? fixed_rank : 0;
          if (!validate_options(lm.model(), o).ok()) continue;  // e.g. all-quantum without quantum attention
          host::HostContext hc;
          REQUIRE(hc.init(lm, o).ok());
          for (size_t t = 0; t < fx["tokens"].size(); ++t) {
            REQUIRE(hc.ctx().eval((int)fx["tokens"][t].num).ok());
            const TokenStats& s = hc.ctx().stats();
            const Count want = expected(lm.model(), hc.ctx().run_options(), s);
            INFO(name << " route " << (int)route << " path " << (int)path << " rank " << o.fixed_rank << " position "
                      << t);
            CHECK(s.flops == want.flops);
            CHECK(s.qsim_flops == want.qsim);
            CHECK(s.circuits == want.circuits);
            ++checked;
          }
        }
      }
    }
  }
  MESSAGE(checked << " tokens checked");
}
