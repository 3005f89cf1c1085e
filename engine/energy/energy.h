// Energy and CO2 estimates from counted FLOPs (docs/model.md, "Energy and cost report"). Profiles are a
// plain text file users can extend (engine/energy/profiles.txt is built in; a user file adds to or
// overrides it). These are estimates from stated assumptions, not measurements: the report puts the
// measured time per token beside them.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/status.h"

namespace qtf::energy {

constexpr int kMaxProfiles = 32;
constexpr int kNameLen = 32;

enum class Kind : uint8_t { classical, simulation, qpu };

struct Profile {
  char name[kNameLen] = {0};
  Kind kind = Kind::classical;
  double fj_per_flop = 0;      // classical
  char host[kNameLen] = {0};   // simulation: the classical profile that prices the circuit simulation
  double shots = 0, shot_time_us = 0, power_w = 0;  // qpu: energy per circuit = shots * shot_time * power
};

struct Profiles {
  Profile items[kMaxProfiles];
  int count = 0;
  double grid_g_per_kwh = 475;

  // Parses profile text (see profiles.txt); later definitions of a name replace earlier ones.
  Status parse(const char* text, size_t len);
  Status load_builtin();
  const Profile* find(const char* name) const;
};

extern const char kBuiltinProfiles[];

struct TokenCost {
  double energy_j = 0;       // all FLOPs of the token at the chosen classical profile
  double co2_g = 0;
  double qsim_energy_j = 0;  // the circuit-simulation share, priced at quantum_sim's host (apart)
  double qpu_energy_j = 0;   // projected energy if the token's circuits ran on the qpu profile
};

// profile must be classical; qsim/qpu may be null (then those parts stay 0).
TokenCost estimate(const Profiles& ps, const Profile& profile, int64_t flops, int64_t qsim_flops, int64_t circuits);

}  // namespace qtf::energy
