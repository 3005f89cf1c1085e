// What a run of tokens cost, summed token by token. One struct for run, bench and eval, so that "FLOPs
// per token", "mean rank" and "quantum share" are computed the same way everywhere.
#pragma once
#include <cstdint>

#include "model/forward.h"

namespace qtf::cli {

struct RunTotals {
  int64_t tokens = 0;  // forward passes counted
  double flops = 0, qsim_flops = 0, energy_j = 0, time_ms = 0;
  int64_t rank_sum = 0, quantum_layers = 0, layer_tokens = 0;  // over (token, layer) pairs

  // One forward pass: its stats, its energy estimate (energy::estimate) and its measured time.
  void add(const TokenStats& s, double energy, double ms) {
    ++tokens;
    flops += (double)s.flops;
    qsim_flops += (double)s.qsim_flops;
    energy_j += energy;
    time_ms += ms;
    for (int l = 0; l < s.n_layers; ++l) {
      rank_sum += s.layer[l].rank;
      quantum_layers += s.layer[l].quantum;
      ++layer_tokens;
    }
  }
  double per_token(double total) const { return tokens ? total / (double)tokens : 0; }
  double mean_rank() const { return layer_tokens ? (double)rank_sum / (double)layer_tokens : 0; }
  double quantum_share() const { return layer_tokens ? (double)quantum_layers / (double)layer_tokens : 0; }  // 0..1
  double qsim_share() const { return flops > 0 ? qsim_flops / flops : 0; }  // of the FLOPs, 0..1
};

}  // namespace qtf::cli
