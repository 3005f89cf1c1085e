// Fixed-size inline state-vector simulator for Q = 1..8 qubits (../shared/spec/MODEL.md "Gates").
// PennyLane conventions; wire 0 is the most significant bit of the basis index. Every gate is a loop
// over amplitude pairs (no 2^Q x 2^Q matrices), the state lives in the caller's State (no heap).
//
// Precision: amplitudes are float. A circuit here is at most a few hundred gates on <= 256 amplitudes;
// each gate is unitary, so rounding errors add up (they do not grow) to ~1e-7 per amplitude, well inside
// the 1e-5 the tests ask for, and float halves the memory of the kernel-attention KV cache and matches
// what the engine stores. Reductions that sum many terms (<Z>, the entropy) run in double.
#pragma once
#include <cmath>

namespace qtf::quantum {

// A 2x2 complex gate [[u00, u01], [u10, u11]]: u[k] = (re, im) in row-major order.
struct Gate2 {
  float re[4], im[4];
};

inline Gate2 gate_rx(float t) {
  const float c = std::cos(0.5f * t), s = std::sin(0.5f * t);
  return {{c, 0, 0, c}, {0, -s, -s, 0}};
}
inline Gate2 gate_ry(float t) {
  const float c = std::cos(0.5f * t), s = std::sin(0.5f * t);
  return {{c, -s, s, c}, {0, 0, 0, 0}};
}
inline Gate2 gate_rz(float t) {
  const float c = std::cos(0.5f * t), s = std::sin(0.5f * t);
  return {{c, 0, 0, c}, {-s, 0, 0, s}};
}
// PennyLane Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi).
inline Gate2 gate_rot(float phi, float theta, float omega) {
  const float c = std::cos(0.5f * theta), s = std::sin(0.5f * theta);
  const float ps = 0.5f * (phi + omega), md = 0.5f * (phi - omega);
  const float cp = std::cos(ps), sp = std::sin(ps), cm = std::cos(md), sm = std::sin(md);
  // [[e^{-i(phi+omega)/2} c, -e^{i(phi-omega)/2} s], [e^{-i(phi-omega)/2} s, e^{i(phi+omega)/2} c]]
  return {{cp * c, -cm * s, cm * s, cp * c}, {-sp * c, -sm * s, -sm * s, sp * c}};
}

// a * b (b acts first). 8 complex multiply-adds.
inline Gate2 gate_mul(const Gate2& a, const Gate2& b) {
  Gate2 r;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      const int x = 2 * i, y = 2 * i + 1, u = j, v = 2 + j;
      r.re[2 * i + j] = a.re[x] * b.re[u] - a.im[x] * b.im[u] + a.re[y] * b.re[v] - a.im[y] * b.im[v];
      r.im[2 * i + j] = a.re[x] * b.im[u] + a.im[x] * b.re[u] + a.re[y] * b.im[v] + a.im[y] * b.re[v];
    }
  return r;
}
constexpr int kGateMulFlops = 64;

// Arithmetic per amplitude pair of each kernel below (complex multiply-add = 8 FLOPs, real = 2).
constexpr int kPairFlopsGeneral = 32;  // 4 complex multiply-adds
constexpr int kPairFlopsRotation = 16;  // RX, RY, RZ, CRX: 4 real x complex multiply-adds
constexpr int kPairFlopsH = 8;

template <int Q>
struct State {
  static_assert(Q >= 1 && Q <= 8, "1..8 qubits");
  static constexpr int kDim = 1 << Q;
  float re[kDim], im[kDim];

  void set_zero_state() {
    for (int b = 0; b < kDim; ++b) re[b] = im[b] = 0.f;
    re[0] = 1.f;
  }
};

// Bit mask of a wire in the basis index (wire 0 = most significant).
template <int Q>
constexpr int wire_bit(int wire) {
  return 1 << (Q - 1 - wire);
}

// Calls f(i0, i1) for every pair of basis indices that differ only in `wire` (i0 has the bit clear).
template <int Q, class F>
inline void for_each_pair(int wire, F f) {
  const int st = wire_bit<Q>(wire);
  for (int j = 0; j < (1 << Q) / 2; ++j) {
    const int i0 = ((j & ~(st - 1)) << 1) | (j & (st - 1));  // j with a zero bit inserted at st
    f(i0, i0 | st);
  }
}

// As above, restricted to indices whose `control` bit is set: 2^(Q-2) pairs.
template <int Q, class F>
inline void for_each_controlled_pair(int control, int target, F f) {
  const int cb = wire_bit<Q>(control), tb = wire_bit<Q>(target);
  const int lo = cb < tb ? cb : tb, hi = cb < tb ? tb : cb;
  for (int j = 0; j < (1 << Q) / 4; ++j) {
    // Insert zero bits at the positions of lo and hi, then set the control bit.
    int i = ((j & ~(lo - 1)) << 1) | (j & (lo - 1));
    i = ((i & ~(hi - 1)) << 1) | (i & (hi - 1));
    i |= cb;
    f(i, i + tb);
  }
}

template <int Q>
inline void apply_gate(State<Q>& s, int wire, const Gate2& u) {
  for_each_pair<Q>(wire, [&](int i0, int i1) {
    const float r0 = s.re[i0], m0 = s.im[i0], r1 = s.re[i1], m1 = s.im[i1];
    s.re[i0] = u.re[0] * r0 - u.im[0] * m0 + u.re[1] * r1 - u.im[1] * m1;
    s.im[i0] = u.re[0] * m0 + u.im[0] * r0 + u.re[1] * m1 + u.im[1] * r1;
    s.re[i1] = u.re[2] * r0 - u.im[2] * m0 + u.re[3] * r1 - u.im[3] * m1;
    s.im[i1] = u.re[2] * m0 + u.im[2] * r0 + u.re[3] * m1 + u.im[3] * r1;
  });
}

// RX on the pair (i0, i1): [[c, -i s], [-i s, c]].
inline void rx_pair(float* re, float* im, int i0, int i1, float c, float s) {
  const float r0 = re[i0], m0 = im[i0], r1 = re[i1], m1 = im[i1];
  re[i0] = c * r0 + s * m1;
  im[i0] = c * m0 - s * r1;
  re[i1] = c * r1 + s * m0;
  im[i1] = c * m1 - s * r0;
}

template <int Q>
inline void apply_rx(State<Q>& s, int wire, float t) {
  const float c = std::cos(0.5f * t), sn = std::sin(0.5f * t);
  for_each_pair<Q>(wire, [&](int i0, int i1) { rx_pair(s.re, s.im, i0, i1, c, sn); });
}

template <int Q>
inline void apply_ry(State<Q>& s, int wire, float t) {
  const float c = std::cos(0.5f * t), sn = std::sin(0.5f * t);
  for_each_pair<Q>(wire, [&](int i0, int i1) {
    const float r0 = s.re[i0], m0 = s.im[i0], r1 = s.re[i1], m1 = s.im[i1];
    s.re[i0] = c * r0 - sn * r1;
    s.im[i0] = c * m0 - sn * m1;
    s.re[i1] = sn * r0 + c * r1;
    s.im[i1] = sn * m0 + c * m1;
  });
}

template <int Q>
inline void apply_rz(State<Q>& s, int wire, float t) {
  const float c = std::cos(0.5f * t), sn = std::sin(0.5f * t);
  for_each_pair<Q>(wire, [&](int i0, int i1) {  // |0>: * e^{-it/2}, |1>: * e^{+it/2}
    const float r0 = s.re[i0], m0 = s.im[i0], r1 = s.re[i1], m1 = s.im[i1];
    s.re[i0] = c * r0 + sn * m0;
    s.im[i0] = c * m0 - sn * r0;
    s.re[i1] = c * r1 - sn * m1;
    s.im[i1] = c * m1 + sn * r1;
  });
}

template <int Q>
inline void apply_h(State<Q>& s, int wire) {
  const float k = 0.70710678118654752f;
  for_each_pair<Q>(wire, [&](int i0, int i1) {
    const float r0 = s.re[i0], m0 = s.im[i0], r1 = s.re[i1], m1 = s.im[i1];
    s.re[i0] = k * (r0 + r1);
    s.im[i0] = k * (m0 + m1);
    s.re[i1] = k * (r0 - r1);
    s.im[i1] = k * (m0 - m1);
  });
}

template <int Q>
inline void apply_rot(State<Q>& s, int wire, float phi, float theta, float omega) {
  apply_gate(s, wire, gate_rot(phi, theta, omega));
}

template <int Q>
inline void apply_cnot(State<Q>& s, int control, int target) {
  for_each_controlled_pair<Q>(control, target, [&](int i0, int i1) {
    const float r = s.re[i0], m = s.im[i0];
    s.re[i0] = s.re[i1];
    s.im[i0] = s.im[i1];
    s.re[i1] = r;
    s.im[i1] = m;
  });
}

// CRX with c = cos(t/2), sn = sin(t/2) given.
template <int Q>
inline void apply_crx_cs(State<Q>& s, int control, int target, float c, float sn) {
  for_each_controlled_pair<Q>(control, target, [&](int i0, int i1) { rx_pair(s.re, s.im, i0, i1, c, sn); });
}

template <int Q>
inline void apply_crx(State<Q>& s, int control, int target, float t) {
  apply_crx_cs(s, control, target, std::cos(0.5f * t), std::sin(0.5f * t));
}

// Product state |v_0> (x) |v_1> (x) ... (x) |v_{Q-1}> from one 2-amplitude state per wire
// (v[i] = {re0, im0, re1, im1}). 8 * (2^(Q+1) - 4) FLOPs.
template <int Q>
inline void set_product_state(State<Q>& s, const float (*v)[4]) {
  s.re[0] = v[0][0], s.im[0] = v[0][1], s.re[1] = v[0][2], s.im[1] = v[0][3];
  for (int w = 1; w < Q; ++w) {
    const int n = 1 << w;
    for (int j = n - 1; j >= 0; --j) {  // backwards: in place
      const float r = s.re[j], m = s.im[j];
      s.re[2 * j] = r * v[w][0] - m * v[w][1];
      s.im[2 * j] = r * v[w][1] + m * v[w][0];
      s.re[2 * j + 1] = r * v[w][2] - m * v[w][3];
      s.im[2 * j + 1] = r * v[w][3] + m * v[w][2];
    }
  }
}
template <int Q>
constexpr int product_state_flops() {
  return 8 * ((2 << Q) - 4);
}

// z[i] = <Z_i> = sum_b |amp_b|^2 (1 - 2 bit_i(b)). Probabilities are summed pairwise, level by level
// (block sums of 2, 4, ... amplitudes), and wire i's expectation is the alternating sum of the blocks
// at its bit's level; accumulated in double.
template <int Q>
inline void expect_z(const State<Q>& s, float* z) {
  float p[State<Q>::kDim];
  for (int b = 0; b < State<Q>::kDim; ++b) p[b] = s.re[b] * s.re[b] + s.im[b] * s.im[b];
  int n = State<Q>::kDim;
  for (int bit = 0; bit < Q; ++bit, n /= 2) {  // bit k of the index is wire Q-1-k
    double acc = 0;
    for (int j = 0; j < n; j += 2) acc += (double)p[j] - (double)p[j + 1];
    z[Q - 1 - bit] = (float)acc;
    for (int j = 0; j < n / 2; ++j) p[j] = p[2 * j] + p[2 * j + 1];
  }
}
template <int Q>
constexpr int expect_z_flops() {
  return 4 * (1 << Q) + 2 * ((1 << Q) - 1) + ((1 << Q) - 1);  // |a|^2, alternating sums, block sums
}

// Von Neumann entropy (bits) of wires 0..Q/2-1: the eigenvalues p_k of rho_A = M M^dagger, M the
// 2^(Q/2) x 2^(Q-Q/2) reshaped amplitudes, by complex Hermitian Jacobi in double; p_k < 1e-12 skipped.
// Writes the number of Jacobi sweeps done to *sweeps when given.
double entanglement_entropy(const float* re, const float* im, int Q, int* sweeps = nullptr);

template <int Q>
inline double entanglement_entropy(const State<Q>& s, int* sweeps = nullptr) {
  return entanglement_entropy(s.re, s.im, Q, sweeps);
}

// FLOPs of entanglement_entropy: forming rho_A (upper triangle, complex multiply-adds) and the Jacobi
// rotations, charged at kEntropySweepsCharged sweeps (the count is data dependent; see docs/quantum.md).
constexpr int kEntropySweepsCharged = 4;
long long entanglement_entropy_flops(int Q);

}  // namespace qtf::quantum
