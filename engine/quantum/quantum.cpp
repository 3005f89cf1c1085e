// Encoder circuit, kernel-attention feature states and their fidelities (MODEL.md steps 2 and 6).
// Gates that act on one wire while the state is still a product state are applied to that wire's two
// amplitudes and the register is then built as a Kronecker product; one-qubit gates that meet on a wire
// are fused into one 2x2 gate (one pass over the state instead of several).
#include <cmath>
#include <cstring>

#include "kernels/dispatch.h"
#include "quantum/quantum.h"
#include "quantum/statevector.h"

namespace qtf::quantum {
namespace {

// 2x2 complex gate times a 2-amplitude state v = {re0, im0, re1, im1}: 32 FLOPs.
void apply_to_wire(const Gate2& u, float* v) {
  const float r0 = v[0], m0 = v[1], r1 = v[2], m1 = v[3];
  v[0] = u.re[0] * r0 - u.im[0] * m0 + u.re[1] * r1 - u.im[1] * m1;
  v[1] = u.re[0] * m0 + u.im[0] * r0 + u.re[1] * m1 + u.im[1] * r1;
  v[2] = u.re[2] * r0 - u.im[2] * m0 + u.re[3] * r1 - u.im[3] * m1;
  v[3] = u.re[2] * m0 + u.im[2] * r0 + u.re[3] * m1 + u.im[3] * r1;
}
constexpr int kWireGateFlops = 32;

// Encoding E(u) on one wire, RZ(arccos u^2) RY(arcsin u), without trigonometry: with t = arcsin(u)
// and f = arccos(u^2), cos t = sqrt(1 - u^2) and cos f = u^2, so by the half-angle formulas
// c = cos(t/2) = sqrt((1 + sqrt(1 - u^2)) / 2), s = sin(t/2) = u / (2c) (no cancellation for small u),
// cz = cos(f/2) = sqrt((1 + u^2) / 2), sz = sin(f/2) = sqrt((1 - u^2) / 2).
struct Encoding {
  float c, s, cz, sz;
  // E|0> = (c e^{-if/2}, s e^{if/2}) as {re0, im0, re1, im1}.
  void on_zero(float* v) const { v[0] = c * cz, v[1] = -c * sz, v[2] = s * cz, v[3] = s * sz; }
  // E as a gate: rows e^{-if/2} (c, -s) and e^{if/2} (s, c).
  Gate2 gate() const { return {{cz * c, -cz * s, cz * s, cz * c}, {-sz * c, sz * s, sz * s, sz * c}}; }
};

template <int Q>
void encode_angles(const float* u, Encoding* enc) {
  for (int i = 0; i < Q; ++i) {
    const float one_minus_u2 = (1.f - u[i]) * (1.f + u[i]);
    const float c = std::sqrt(0.5f * (1.f + std::sqrt(one_minus_u2)));
    enc[i] = {c, u[i] / (2.f * c), std::sqrt(0.5f * (1.f + u[i] * u[i])), std::sqrt(0.5f * one_minus_u2)};
  }
}

// RZ(p[1]) RX(p[0]): the one-qubit part of a variational layer on one wire.
Gate2 layer_gate(const float* p) { return gate_mul(gate_rz(p[1]), gate_rx(p[0])); }

// The entangling part of a variational layer: CRX(p[i][2]) on (i, i+1), i = 0..Q-2 in order.
template <int Q>
constexpr long long crx_chain_flops() {
  return (long long)(Q - 1) * ((1 << Q) / 4) * kPairFlopsRotation;
}

// E(u) followed by the one-qubit gates of a layer (when there is one) on |0..0>: still a product state.
template <int Q>
constexpr long long encode_product_flops(bool with_layer) {
  return (with_layer ? (long long)Q * (kGateMulFlops + kWireGateFlops) : 0) + product_state_flops<Q>();
}

Gate2 as_gate(const float* g) { return {{g[0], g[1], g[2], g[3]}, {g[4], g[5], g[6], g[7]}}; }

// E(u) and the one-qubit gates of layer 0 on |0..0> as a product state, then its CRX chain; each
// further layer's one-qubit gates, then its CRX chain. gate(j, i) gives layer j's WireGates on wire i.
template <int Q, class Gates>
float encoder_q(int n_qlayers, const float* u, const Gates& gate, float* z) {
  State<Q> s;
  Encoding enc[Q];
  encode_angles<Q>(u, enc);
  float v[Q][4];
  for (int i = 0; i < Q; ++i) {
    enc[i].on_zero(v[i]);
    if (n_qlayers > 0) apply_to_wire(as_gate(gate(0, i).one), v[i]);
  }
  set_product_state(s, v);
  for (int j = 0; j < n_qlayers; ++j) {
    if (j > 0)
      for (int i = 0; i < Q; ++i) apply_gate(s, i, as_gate(gate(j, i).one));
    for (int i = 0; i + 1 < Q; ++i) {
      const WireGates g = gate(j, i);
      apply_crx_cs(s, i, i + 1, g.crx[0], g.crx[1]);
    }
  }
  expect_z(s, z);
  return (float)entanglement_entropy(s);
}

template <int Q>
long long encoder_flops_q(int n_qlayers) {
  long long f = encode_product_flops<Q>(n_qlayers > 0);
  if (n_qlayers > 0) f += n_qlayers * crx_chain_flops<Q>();
  if (n_qlayers > 1)  // fused RZ RX per wire: compose, then one pass
    f += (long long)(n_qlayers - 1) * Q * (kGateMulFlops + (1 << Q) / 2 * kPairFlopsGeneral);
  return f + expect_z_flops<Q>() + entanglement_entropy_flops(Q);
}

// |phi> = V2 E(u) V1 E(u) |0..0>: E and V1's one-qubit gates on |0..0> give a product state; then
// V1's CRX chain; then E and V2's one-qubit gates fused per wire; then V2's CRX chain. The gates of V1
// and V2 come precomputed (FeatureGates).
template <int Q>
void feature_state_q(const float* u, const FeatureGates& G, float* out) {
  State<Q> s;
  Encoding enc[Q];
  encode_angles<Q>(u, enc);
  float v[Q][4];
  for (int i = 0; i < Q; ++i) {
    enc[i].on_zero(v[i]);
    apply_to_wire(as_gate(G.v1[i]), v[i]);
  }
  set_product_state(s, v);
  for (int i = 0; i + 1 < Q; ++i) apply_crx_cs(s, i, i + 1, G.crx1[i][0], G.crx1[i][1]);
  for (int i = 0; i < Q; ++i) apply_gate(s, i, gate_mul(as_gate(G.v2[i]), enc[i].gate()));
  for (int i = 0; i + 1 < Q; ++i) apply_crx_cs(s, i, i + 1, G.crx2[i][0], G.crx2[i][1]);
  std::memcpy(out, s.re, sizeof s.re);
  std::memcpy(out + State<Q>::kDim, s.im, sizeof s.im);
}

template <int Q>
long long feature_state_flops_q() {
  return encode_product_flops<Q>(true) + 2 * crx_chain_flops<Q>() +
         (long long)Q * (2 * kGateMulFlops + (1 << Q) / 2 * kPairFlopsGeneral);
}

// <q|k_j> = sum_b conj(q_b) k_b for each key, |.|^2 of it: the scalar twin of the SIMD variants
// (engine/kernels/simd_body.inc).
template <int Q>
void fidelities_q(const float* query, const float* keys, size_t key_stride, int n, float* out) {
  constexpr int N = 1 << Q;
  const float* qr = query;
  const float* qi = query + N;
  for (int j = 0; j < n; ++j) {
    const float* kr = keys + (size_t)j * key_stride;
    const float* ki = kr + N;
    float sr = 0, si = 0;
    for (int b = 0; b < N; ++b) {
      sr += qr[b] * kr[b] + qi[b] * ki[b];
      si += qr[b] * ki[b] - qi[b] * kr[b];
    }
    out[j] = sr * sr + si * si;
  }
}

WireGates wire_gates(const float* p) {  // p: one wire's (RX, RZ, CRX) angles
  const Gate2 g = layer_gate(p);
  WireGates w;
  for (int k = 0; k < 4; ++k) w.one[k] = g.re[k], w.one[4 + k] = g.im[k];
  w.crx[0] = std::cos(0.5f * p[2]), w.crx[1] = std::sin(0.5f * p[2]);  // as apply_crx
  return w;
}

// Q is validated at model load (even, 2..8); other values leave z zero and return 0.
template <class Gates>
float encoder_any(int Q, int n_qlayers, const float* u, const Gates& gate, float* z) {
  if (Q != 2 && Q != 4 && Q != 6 && Q != 8) {
    for (int i = 0; i < Q && i < kMaxQubits; ++i) z[i] = 0;
    return 0;
  }
  return with_qubits(Q, [&](auto q) { return encoder_q<decltype(q)::value>(n_qlayers, u, gate, z); });
}
}  // namespace

void encoder_gates_build(int Q, int n_qlayers, const float* params, WireGates* gates) {
  for (int j = 0; j < n_qlayers; ++j)
    for (int i = 0; i < Q; ++i) gates[(size_t)j * Q + i] = wire_gates(params + ((size_t)j * Q + i) * 3);
}

float encoder(int Q, int n_qlayers, const float* u, const WireGates* gates, float* z) {
  return encoder_any(Q, n_qlayers, u, [gates, Q](int j, int i) { return gates[(size_t)j * Q + i]; }, z);
}

float encoder(int Q, int n_qlayers, const float* u, const float* params, float* z) {
  return encoder_any(Q, n_qlayers, u, [params, Q](int j, int i) { return wire_gates(params + ((size_t)j * Q + i) * 3); }, z);
}

void feature_gates_build(int Q, const float* var, FeatureGates* gates) {
  *gates = FeatureGates{};
  if (Q < 1 || Q > kMaxQubits) return;
  const float* p[2] = {var, var + Q * 3};
  float (*one[2])[8] = {gates->v1, gates->v2};
  float (*crx[2])[2] = {gates->crx1, gates->crx2};
  for (int k = 0; k < 2; ++k)
    for (int i = 0; i < Q; ++i) {
      const Gate2 g = layer_gate(p[k] + 3 * i);
      for (int j = 0; j < 4; ++j) one[k][i][j] = g.re[j], one[k][i][4 + j] = g.im[j];
      const float t = p[k][3 * i + 2];
      crx[k][i][0] = std::cos(0.5f * t), crx[k][i][1] = std::sin(0.5f * t);
    }
}

void feature_state(int Q, const float* u, const FeatureGates& gates, float* state) {
  with_qubits(Q, [&](auto q) { feature_state_q<decltype(q)::value>(u, gates, state); });
}

void feature_state(int Q, const float* u, const float* var, float* state) {
  FeatureGates gates;
  feature_gates_build(Q, var, &gates);
  feature_state(Q, u, gates, state);
}

void fidelities(int Q, const float* query, const float* keys, size_t key_stride, int n, float* out) {
  kern::active().fidelities(Q, query, keys, key_stride, n, out);
}

void fidelities_scalar(int Q, const float* query, const float* keys, size_t key_stride, int n, float* out) {
  with_qubits(Q, [&](auto q) { fidelities_q<decltype(q)::value>(query, keys, key_stride, n, out); });
}

int64_t encoder_flops(int Q, int n_qlayers) {
  return with_qubits(Q, [&](auto q) { return (int64_t)encoder_flops_q<decltype(q)::value>(n_qlayers); });
}

int64_t feature_state_flops(int Q) {
  return with_qubits(Q, [&](auto q) { return (int64_t)feature_state_flops_q<decltype(q)::value>(); });
}

// 2^Q complex multiply-adds and |<q|k>|^2 (two real multiply-adds).
int64_t fidelity_flops(int Q) { return 8ll * (1 << Q) + 4; }

}  // namespace qtf::quantum
