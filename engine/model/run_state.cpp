// The layout of RunState: the one place that knows how big each buffer of the forward pass is. The
// same function sizes the arena (base == null) and carves it, so the two can never disagree.
#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "model/forward.h"

namespace qtf {
namespace {

struct Carver {
  uint8_t* base;  // null while sizing
  size_t used = 0;
  void* take_bytes(size_t bytes) {
    size_t at = (used + 63) / 64 * 64;
    used = at + bytes;
    return base ? base + at : nullptr;
  }
  float* take(size_t floats) { return static_cast<float*>(take_bytes(floats * sizeof(float))); }
};

// Scratch of the largest TT matmul among the block's linears on `threads` threads (1 float for dense
// models).
size_t tt_workspace_floats(const Model& m, int batch, int threads) {
  size_t most = 1;
  if (!m.cfg.tensorized) return most;
  for (int l = 0; l < m.cfg.n_layers; ++l) {
    const Layer& ly = m.layers[l];
    for (const Linear* lin : {&ly.q, &ly.k, &ly.v, &ly.o, &ly.gate, &ly.up, &ly.down}) {
      if (lin->tt_w.shape.K == 0) continue;  // no gate (activation is not swiglu)
      size_t need = tt::workspace_floats(lin->tt_w.shape, batch, threads);
      if (need > most) most = need;
      need = threads > 1 ? 3 * tt::workspace_floats(lin->tt_w.shape, 1, threads) : 0;  // q, k, v (up, gate) as one job
      if (need > most) most = need;
    }
  }
  return most;
}

// The linears of layer l in plan order (q k v o up down gate); those a model lacks have K == 0.
void layer_linears(const Layer& ly, const Linear* lins[7]) {
  const Linear* all[7] = {&ly.q, &ly.k, &ly.v, &ly.o, &ly.up, &ly.down, &ly.gate};
  for (int j = 0; j < 7; ++j) lins[j] = all[j];
}

// The parts one vector's TT matmul runs in on `threads` threads (tt::part_plan; 0: none).
int plan_parts(const tt::Plan& plan, int threads) {
  const int count = tt::part_split(plan).count;
  return threads < 2 ? 0 : count < threads ? count : threads;
}

bool copied(LinearPath p) { return p == LinearPath::dense_f32 || p == LinearPath::dense_q8; }

// The ranks a token of this context can run its TT linears at (rank_for in forward.cpp, clamped as
// tt_plan clamps): the fixed one, or the adaptive schedule's [r_min, r_max].
void context_ranks(const ModelConfig& c, const RunOptions& opt, int* lo, int* hi) {
  auto clamp = [&](int r) { return r < 1 ? 1 : r > c.tt_rank ? c.tt_rank : r; };
  if (opt.fixed_rank > 0) *lo = *hi = clamp(opt.fixed_rank);
  else if (!c.adaptive_rank || !c.has_encoder()) *lo = *hi = clamp(c.tt_rank);
  else *lo = clamp(c.r_min), *hi = clamp(c.r_max);
}

// The ranks whose plans are packed for a TT linear: those in [lo, hi], but a rank above every stored
// bond rank gives the same plan as the largest stored one (each bond clamps to its own), so only the first
// of those is packed and the others share it (pack(r, share): share = the rank whose packing r reuses,
// or 0 to pack). Without this a low-rank linear (budget.py: bond rank 8) of a context of rank 128 packed
// 121 identical plans: 1.6 GB of arena for a 656K-parameter model.
template <class F>
void for_packed_ranks(const TTShape& shape, int lo, int hi, F&& pack) {
  int top = 1;  // the largest stored bond rank
  for (int k = 1; k < shape.K; ++k) top = shape.r[k] > top ? shape.r[k] : top;
  int first_clamped = 0;
  for (int r = lo; r <= hi; ++r) {
    if (r < top) {
      pack(r, 0);
    } else if (first_clamped == 0) {
      first_clamped = r;
      pack(r, 0);
    } else {
      pack(r, first_clamped);
    }
  }
}

// Floats of every plan's packed cores and, on threads, its parts' split steps (RunState::tt_packed); a
// linear that runs as a dense copy (paths) has none.
size_t packed_floats(const Model& m, int lo, int hi, int threads, const LinearPath* paths) {
  size_t n = 0;
  for (int l = 0; l < m.cfg.n_layers; ++l) {
    const Linear* lins[7];
    layer_linears(m.layers[l], lins);
    for (int j = 0; j < 7; ++j) {
      if (!lins[j]->tt || copied(paths[l * 7 + j])) continue;
      for_packed_ranks(lins[j]->tt_w.shape, lo, hi, [&](int r, int share) {
        if (share) return;
        const tt::Plan plan = tt::best_plan(lins[j]->tt_w, r, 1);
        n += tt::packed_floats(plan) + tt::part_packed_floats(plan, plan_parts(plan, threads));
      });
    }
  }
  return n;
}

size_t act_table_floats(const ModelConfig& c, const RunOptions& opt) {
  if (c.activation != Activation::daruan) return 0;
  switch (opt.act_path) {
    case quantum::DaruanPath::quantum: return 0;  // simulated per token, no table
    case quantum::DaruanPath::fourier: return quantum::daruan_fourier_floats(c.d_ff, c.daruan_depth);
    case quantum::DaruanPath::spline: return quantum::daruan_spline_floats(c.d_ff, opt.spline);
  }
  return 0;
}

// Whether any linear runs a dense matrix: the file's, or a copy of a TT (paths).
bool has_dense_linear(const Model& m, const LinearPath* paths) {
  for (int l = 0; l < m.cfg.n_layers; ++l) {
    const Linear* lins[7];
    layer_linears(m.layers[l], lins);
    for (int j = 0; j < 7; ++j)
      if ((!lins[j]->tt && lins[j]->rows > 0) || copied(paths[l * 7 + j])) return true;
  }
  return false;
}

// Whether any dense linear (a q8 copy included) or the head has weights the integer dot products take
// (i8, q4).
bool has_int_dot_weights(const Model& m, const LinearPath* paths, bool copies, bool i8) {
  if (int_dot_type(m.head_w.type, i8)) return true;
  for (int l = 0; l < m.cfg.n_layers; ++l) {
    const Linear* lins[7];
    layer_linears(m.layers[l], lins);
    for (int j = 0; j < 7; ++j)
      if ((!lins[j]->tt && lins[j]->rows > 0 && int_dot_type(lins[j]->dense.w.type, i8)) ||
          (copies && paths[l * 7 + j] == LinearPath::dense_q8))
        return true;
  }
  return false;
}

int max_lora_rank(const Model& m) {
  int r = 0;
  for (int l = 0; l < m.cfg.n_layers; ++l) {
    const Layer& ly = m.layers[l];
    for (const Linear* lin : {&ly.q, &ly.k, &ly.v, &ly.o, &ly.gate, &ly.up, &ly.down})
      if (lin->lora_rank > r) r = lin->lora_rank;
  }
  return r;
}

}  // namespace

bool keeps_key_states(const ModelConfig& c, RouteMode route) {
  return c.quantum_attention && c.has_encoder() && route != RouteMode::all_classical;
}

size_t RunState::layout(const Model& m, const RunOptions& opt, int T, int B, int threads, void* base) {
  const ModelConfig& c = m.cfg;
  Carver arena{static_cast<uint8_t*>(base)};
  const size_t d = c.d, L = c.n_layers;
  const bool states = keeps_key_states(c, opt.route);
  n_ctx = T;
  n_batch = B;
  n_threads = threads;
  kv_dim = c.kv_dim();  // n_kv_heads heads of hd (grouped-query attention: fewer than H)
  n_heads = c.n_heads;
  n_kv_heads = c.n_kv_heads;
  state_floats = c.has_encoder() ? quantum::state_floats(c.n_qubits) : 0;
  const size_t SF = state_floats;

  // Execution by cost first: which TT linears run as dense copies decides several buffers below.
  // Budget 0 copies nothing: no record either (a RAM-tight target's arena stays as it was).
  const size_t n_lin = c.tensorized && opt.mem_budget != 0 ? L * 7 : 0;
  exec = n_lin ? static_cast<LinearExec*>(arena.take_bytes(n_lin * sizeof(LinearExec))) : nullptr;
  LinearPath paths[kMaxLayers * 7] = {};
  exec_summary = c.tensorized ? plan_execution(m, opt, paths, exec) : ExecSummary{};

  const size_t rows = B, wide = c.d_ff > c.d ? c.d_ff : c.d;
  x = arena.take(rows * d);
  a = arena.take(rows * d);
  e = arena.take(rows * d);
  q = arena.take(rows * d);
  att = arena.take(rows * d);
  tmp = arena.take(rows * d);
  hb = arena.take(rows * c.d_ff);
  hb2 = c.activation == Activation::swiglu ? arena.take(rows * c.d_ff) : nullptr;
  gather_in = c.tensorized && B > 1 ? arena.take(rows * wide) : nullptr;
  gather_out = c.tensorized && B > 1 ? arena.take(rows * wide) : nullptr;
  // The GEMMs of one input run as one job with their partial sums side by side: q, k and v; up and gate.
  const size_t qkv_rows = (size_t)c.d + 2 * (size_t)c.kv_dim();
  const size_t up_gate_rows = (c.activation == Activation::swiglu ? 2 : 1) * (size_t)c.d_ff;
  const size_t gemm_rows = std::max(wide, std::max(qkv_rows, up_gate_rows));
  const size_t gemm = has_dense_linear(m, paths) ? kern::dense_scratch_floats((int)gemm_rows, (int)wide, B) : 0;
  packed_x = gemm ? arena.take(gemm) : nullptr;
  scores = arena.take((size_t)threads * T);
  head_var = opt.attention_samples > 0 ? arena.take(rows * c.n_heads) : nullptr;
  phase_gain = c.phase_rotation ? arena.take(d) : nullptr;
  const size_t lora_r = max_lora_rank(m);
  lora_mid = lora_r ? arena.take(rows * lora_r) : nullptr;
  lora_out = lora_r ? arena.take(rows * wide) : nullptr;
  act_quant_copies = opt.act_quant_copies;
  act_quant_i8 = opt.act_quant_i8;
  const size_t q8 = opt.act_quant && has_int_dot_weights(m, paths, opt.act_quant_copies, opt.act_quant_i8)
                        ? (size_t)q8_blocks((int64_t)wide)
                        : 0;
  act_q = q8 ? static_cast<int8_t*>(arena.take_bytes(rows * q8 * kQ8Block)) : nullptr;
  act_d = q8 ? arena.take(rows * q8) : nullptr;
  logits = arena.take(c.vocab);
  workspace = arena.take(tt_workspace_floats(m, B, threads));
  stats = static_cast<TokenStats*>(arena.take_bytes(rows * sizeof(TokenStats)));
  query_state = states ? arena.take((size_t)threads * SF) : nullptr;
  key_cache = arena.take(L * T * kv_dim);
  value_cache = arena.take(L * T * kv_dim);
  key_states = states ? arena.take(L * T * n_heads * SF) : nullptr;
  rope = c.positions == PosKind::rotary ? arena.take((size_t)T * c.head_dim()) : nullptr;
  const size_t table = act_table_floats(c, opt);
  for (int l = 0; l < kMaxLayers; ++l) act_tables[l] = table && l < c.n_layers ? arena.take(table) : nullptr;
  plan_ranks = c.tensorized ? c.tt_rank : 0;
  const size_t plans = L * 7 * plan_ranks, plan_floats = (sizeof(tt::Plan) + sizeof(float) - 1) / sizeof(float);
  tt_plans = plans ? reinterpret_cast<tt::Plan*>(arena.take(plans * plan_floats)) : nullptr;
  if (plans) context_ranks(c, opt, &pack_lo, &pack_hi);
  tt_packed = plans && opt.pack_tt ? arena.take(packed_floats(m, pack_lo, pack_hi, threads, paths)) : nullptr;
  size_t scratch = 0;  // the dense copies (exec) and the scratch tt_to_dense makes them in
  for (size_t i = 0; i < n_lin; ++i) {
    if (!copied(paths[i])) continue;
    const Linear* lins[7];
    layer_linears(m.layers[i / 7], lins);
    const Linear& lin = *lins[i % 7];
    const size_t mn = (size_t)lin.rows * lin.cols;
    Weights w;
    if (paths[i] == LinearPath::dense_f32) {
      w = Weights(arena.take(mn));
    } else {
      const void* values = arena.take_bytes(mn);
      w = Weights(WType::i8, values, arena.take(lin.rows), 1.f);
    }
    if (exec) exec[i].dense = DenseMatrix{lin.rows, lin.cols, w, lin.tt_w.bias};
    const size_t need = tt_dense_scratch_floats(lin.tt_w.shape, exec_summary.fixed_rank);
    if (need > scratch) scratch = need;
  }
  dense_scratch = scratch ? arena.take(scratch) : nullptr;
  feature_gates = states ? reinterpret_cast<quantum::FeatureGates*>(arena.take(L * n_heads * quantum::kFeatureGatesFloats))
                         : nullptr;
  const size_t enc_gates = c.has_encoder() ? L * c.n_qlayers * c.n_qubits : 0;
  encoder_gates = enc_gates ? reinterpret_cast<quantum::WireGates*>(arena.take(enc_gates * quantum::kWireGatesFloats))
                            : nullptr;
  return arena.used;
}

void RunState::prepare(const Model& m) {
  const ModelConfig& c = m.cfg;
  for (int i = 0; phase_gain && i < c.d; ++i) {  // phi = tanh(p) pi; the gain of docs/qllm.md
    const float phi = std::tanh(m.phase[i]) * 3.14159265358979f;
    phase_gain[i] = std::cos(phi) - std::sin(phi);
  }
  if (rope) rope_table(c.rope_theta, c.head_dim(), n_ctx, rope);
  float* packed = tt_packed;
  for (int l = 0; tt_plans && l < c.n_layers; ++l) {
    const Linear* lins[7];
    layer_linears(m.layers[l], lins);
    for (int j = 0; j < 7; ++j) {
      if (!lins[j]->tt) continue;
      tt::Plan* plans = tt_plans + ((size_t)l * 7 + j) * plan_ranks;  // plans[r - 1]: rank r
      // Every rank gets its plan (unpacked, the kernels read the cores in place); the ranks this
      // context runs get them packed, unless pack_tt is off or a dense copy runs instead.
      for (int r = 1; r <= plan_ranks; ++r) plans[r - 1] = tt::best_plan(lins[j]->tt_w, r, 1);
      if (packed == nullptr || (exec && exec[l * 7 + j].materialised())) continue;
      for_packed_ranks(lins[j]->tt_w.shape, pack_lo, pack_hi, [&](int r, int share) {
        tt::Plan& plan = plans[r - 1];
        if (share) {
          plan = plans[share - 1];
          return;
        }
        tt::pack_plan(&plan, packed);
        packed += tt::packed_floats(plan);
        const int parts = plan_parts(plan, n_threads);
        tt::pack_parts(&plan, parts, packed);
        packed += tt::part_packed_floats(plan, parts);
      });
    }
  }
  for (int i = 0; exec && i < c.n_layers * 7; ++i) {  // execution by cost: the dense copies
    const LinearExec& ex = exec[i];
    if (!ex.materialised()) continue;
    const Linear* lins[7];
    layer_linears(m.layers[i / 7], lins);
    void* values = const_cast<void*>(ex.dense.w.data);  // the arena's, carved by layout for this
    const bool f32 = ex.path == LinearPath::dense_f32;
    tt_to_dense(lins[i % 7]->tt_w, ex.rank, dense_scratch, f32 ? static_cast<float*>(values) : nullptr,
                f32 ? nullptr : static_cast<int8_t*>(values), const_cast<float*>(ex.dense.w.scales));
  }
  for (int l = 0; encoder_gates && l < c.n_layers; ++l)
    quantum::encoder_gates_build(c.n_qubits, c.n_qlayers, m.layers[l].qparams,
                                 encoder_gates + (size_t)l * c.n_qlayers * c.n_qubits);
  for (int l = 0; feature_gates && l < c.n_layers; ++l)
    for (int h = 0; h < c.n_heads; ++h)
      quantum::feature_gates_build(c.n_qubits, m.layers[l].qvar + (size_t)h * 2 * c.n_qubits * 3,
                                   &feature_gates[(size_t)l * c.n_heads + h]);
}

}  // namespace qtf
