#include "energy/energy.h"

#include <cstdlib>
#include <cstring>

namespace qtf::energy {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// Copies [p, p+n) into a NUL-terminated buffer; false if it does not fit.
bool copy_word(const char* p, size_t n, char* out, size_t cap) {
  if (n == 0 || n >= cap) return false;
  std::memcpy(out, p, n);
  out[n] = 0;
  return true;
}

}  // namespace

const Profile* Profiles::find(const char* name) const {
  for (int i = 0; i < count; ++i)
    if (!std::strcmp(items[i].name, name)) return &items[i];
  return nullptr;
}

Status Profiles::load_builtin() { return parse(kBuiltinProfiles, std::strlen(kBuiltinProfiles)); }

Status Profiles::parse(const char* text, size_t len) {
  int line_no = 0;
  for (size_t i = 0; i < len;) {
    size_t end = i;
    while (end < len && text[end] != '\n') ++end;
    ++line_no;
    // Split the line into words (up to 8), ignoring comments.
    const char* w[8];
    size_t wl[8];
    int nw = 0;
    for (size_t j = i; j < end && text[j] != '#';) {
      while (j < end && is_space(text[j])) ++j;
      if (j >= end || text[j] == '#') break;
      size_t k = j;
      while (k < end && !is_space(text[k]) && text[k] != '#') ++k;
      if (nw == 8) return Status::error(Err::bad_value, "profiles line %d: too many fields", line_no);
      w[nw] = text + j;
      wl[nw++] = k - j;
      j = k;
    }
    i = end + 1;
    if (nw == 0) continue;
    if (nw < 2) return Status::error(Err::bad_value, "profiles line %d: expected NAME KIND key=value...", line_no);
    Profile p;
    char kind[16];
    if (!copy_word(w[0], wl[0], p.name, kNameLen) || !copy_word(w[1], wl[1], kind, sizeof kind))
      return Status::error(Err::bad_value, "profiles line %d: name or kind too long", line_no);
    bool grid = !std::strcmp(kind, "grid");
    if (!std::strcmp(kind, "classical")) p.kind = Kind::classical;
    else if (!std::strcmp(kind, "simulation")) p.kind = Kind::simulation;
    else if (!std::strcmp(kind, "qpu")) p.kind = Kind::qpu;
    else if (!grid) return Status::error(Err::bad_value, "profiles line %d: unknown kind '%s'", line_no, kind);
    for (int k = 2; k < nw; ++k) {
      const char* eq = static_cast<const char*>(std::memchr(w[k], '=', wl[k]));
      char key[32], val[64];
      if (!eq || !copy_word(w[k], (size_t)(eq - w[k]), key, sizeof key) ||
          !copy_word(eq + 1, wl[k] - (size_t)(eq - w[k]) - 1, val, sizeof val))
        return Status::error(Err::bad_value, "profiles line %d: expected key=value, got '%.*s'", line_no, (int)wl[k], w[k]);
      if (!std::strcmp(key, "host")) {
        if (!copy_word(val, std::strlen(val), p.host, kNameLen))
          return Status::error(Err::bad_value, "profiles line %d: host name too long", line_no);
        continue;
      }
      char* endp;
      double v = std::strtod(val, &endp);
      if (*endp != 0 || !(v >= 0) || v > 1e30)
        return Status::error(Err::bad_value, "profiles line %d: '%s' is not a non-negative number", line_no, val);
      if (!std::strcmp(key, "fj_per_flop")) p.fj_per_flop = v;
      else if (!std::strcmp(key, "shots")) p.shots = v;
      else if (!std::strcmp(key, "shot_time_us")) p.shot_time_us = v;
      else if (!std::strcmp(key, "power_w")) p.power_w = v;
      else if (!std::strcmp(key, "g_per_kwh") && grid) grid_g_per_kwh = v;
      else return Status::error(Err::bad_value, "profiles line %d: unknown key '%s'", line_no, key);
    }
    if (grid) continue;
    if (p.kind == Kind::simulation && p.host[0] == 0)
      return Status::error(Err::bad_value, "profiles line %d: simulation profile needs host=NAME", line_no);
    Profile* slot = const_cast<Profile*>(find(p.name));
    if (!slot) {
      if (count == kMaxProfiles) return Status::error(Err::bad_value, "more than %d profiles", kMaxProfiles);
      slot = &items[count++];
    }
    *slot = p;
  }
  return Status::success();
}

TokenCost estimate(const Profiles& ps, const Profile& profile, int64_t flops, int64_t qsim_flops, int64_t circuits) {
  TokenCost c;
  c.energy_j = (double)flops * profile.fj_per_flop * 1e-15;
  c.co2_g = c.energy_j / 3.6e6 * ps.grid_g_per_kwh;
  const Profile* sim = ps.find("quantum_sim");
  const Profile* host = sim ? ps.find(sim->host) : nullptr;
  if (host) c.qsim_energy_j = (double)qsim_flops * host->fj_per_flop * 1e-15;
  const Profile* qpu = ps.find("ibm_quantum");
  if (qpu) c.qpu_energy_j = (double)circuits * qpu->shots * qpu->shot_time_us * 1e-6 * qpu->power_w;
  return c;
}

}  // namespace qtf::energy
