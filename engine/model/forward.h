// One token through the whole model (../shared/spec/MODEL.md), with the per-token report.
#pragma once
#include <cstdint>

#include "model/model.h"

namespace qtf {

enum class RouteMode : uint8_t { automatic = 0, all_classical = 1, all_quantum = 2 };

// Run-time switches for studying the model. Defaults run the model as trained.
struct RunOptions {
  RouteMode route = RouteMode::automatic;
  int fixed_rank = 0;  // > 0: every token runs at this rank instead of the entropy schedule
  quantum::DaruanPath act_path = quantum::DaruanPath::fourier;
  float theta = 0, alpha = 0;  // router threshold and rank slope (the model's unless overridden)
  quantum::SplineGrid spline;
};

struct LayerStats {
  float S = 0;       // entanglement entropy (bits)
  float h = 0;       // hardness S / (Q/2)
  uint8_t quantum = 0;  // router decision h > theta (quantum-kernel attention when the model has it)
  uint16_t rank = 0;    // TT rank used by this layer's linears
};

struct TokenStats {
  int32_t pos = 0, token = 0;
  int64_t flops = 0;       // all FLOPs of this token (the path actually taken)
  int64_t qsim_flops = 0;  // of which: simulating circuits (encoder, kernel states, DARUAN quantum path)
  int64_t circuits = 0;    // circuit executions a QPU would need (lower bound: one per expectation set)
  int n_layers = 0;
  LayerStats layer[kMaxLayers];
};

// Buffers for the forward pass, all sized once at context creation (runtime/context.cpp).
struct RunState {
  int n_ctx = 0;
  float *x, *a, *e, *q, *k, *v, *att, *tmp, *hb, *scores, *logits;
  float* workspace;                   // TT kernel scratch
  float *key_cache, *value_cache;     // [L][n_ctx][d]
  float* key_states;                  // [L][n_ctx][H][state_floats(Q)] (quantum attention)
  float* query_state;                 // [state_floats(Q)]
  float* act_tables[kMaxLayers];      // DARUAN fourier/spline tables per layer
};

// Computes the logits of `token` at position `pos` (< n_ctx), appending its keys/values to the cache.
void forward(const Model& m, const RunOptions& opt, RunState* s, int token, int pos, TokenStats* stats);

}  // namespace qtf
