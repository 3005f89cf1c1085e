// The few-qubit circuits of the model (../shared/spec/MODEL.md), simulated inline: the encoder
// ("entropy meter"), the kernel-attention feature states, and the DARUAN activation in its three paths.
// Q (even, 2..8) is a run-time argument dispatched to code specialised at compile time.
// No allocation: outputs go to caller buffers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace qtf::quantum {

constexpr int kMaxQubits = 8;
constexpr int kMaxDaruanDepth = 8;

// The one run-time-Q to compile-time-Q dispatcher: f(std::integral_constant<int, Q>{}) for Q in
// {2, 4, 6, 8}; any other Q returns a value-initialized result (nothing for void).
template <class F>
auto with_qubits(int Q, F&& f) -> decltype(f(std::integral_constant<int, 2>{})) {
  switch (Q) {
    case 2: return f(std::integral_constant<int, 2>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 8: return f(std::integral_constant<int, 8>{});
  }
  using R = decltype(f(std::integral_constant<int, 2>{}));
  if constexpr (std::is_void<R>::value) return;
  else return R{};
}

// Encoder circuit: u[Q] in (-1,1) (u = tanh(W_enc a + b_enc)), params [n_qlayers][Q][3]
// (RX, RZ, CRX angles). Writes z[Q] = <Z_i> and returns the entanglement entropy S (bits) of wires
// 0..Q/2-1.
float encoder(int Q, int n_qlayers, const float* u, const float* params, float* z);

// One variational layer's gates on one wire with their trigonometry done (once per context, per
// layer: they depend on params alone): the fused RZ RX as a Gate2 (re[4], im[4]) and cos, sin of half
// the CRX angle on (wire, wire + 1).
struct WireGates {
  float one[8];
  float crx[2];
};
constexpr size_t kWireGatesFloats = sizeof(WireGates) / sizeof(float);
// gates: [n_qlayers][Q].
void encoder_gates_build(int Q, int n_qlayers, const float* params, WireGates* gates);
// encoder() by gates made beforehand: the same result.
float encoder(int Q, int n_qlayers, const float* u, const WireGates* gates, float* z);

// Amplitudes per feature state, stored as [re[2^Q], im[2^Q]].
inline int state_floats(int Q) { return 2 << Q; }

// Kernel-attention feature state |phi(v)> = V2 E(u) V1 E(u) |0..0> with u = tanh(W_qk v)
// computed by the caller; var is [2][Q][3] (V1 then V2). Writes state_floats(Q) floats.
void feature_state(int Q, const float* u, const float* var, float* state);

// The same with the variational part's trigonometry done once (per context, per head): the fused
// one-qubit gates and the CRX cosines/sines of V1 and V2 depend only on var.
struct FeatureGates {
  float v1[kMaxQubits][8], v2[kMaxQubits][8];     // RZ RX per wire, as a Gate2 (re[4], im[4])
  float crx1[kMaxQubits][2], crx2[kMaxQubits][2];  // cos, sin of half the CRX angle on (i, i+1)
};
constexpr size_t kFeatureGatesFloats = sizeof(FeatureGates) / sizeof(float);
void feature_gates_build(int Q, const float* var, FeatureGates* gates);
void feature_state(int Q, const float* u, const FeatureGates& gates, float* state);

// K(a, b) = |<a|b>|^2 for one query state against n key states spaced key_stride floats apart.
// Runs the SIMD variant in use (kernels/dispatch.h); fidelities_scalar is its scalar twin.
void fidelities(int Q, const float* query, const float* keys, size_t key_stride, int n, float* out);
void fidelities_scalar(int Q, const float* query, const float* keys, size_t key_stride, int n, float* out);

// FLOPs of the simulations above (complex multiply-add = 8, real = 2), for the cost report.
int64_t encoder_flops(int Q, int n_qlayers);
int64_t feature_state_flops(int Q);
int64_t fidelity_flops(int Q);

// ---- DARUAN activation (one qubit per channel, depth D) ----
struct DaruanParams {
  int channels = 0, depth = 0;
  const float* theta = nullptr;  // [C][D+1][2]
  const float* w = nullptr;      // [C][D]
  const float* b = nullptr;      // [C][D]
  const float* a = nullptr;      // [C]
  const float* e = nullptr;      // [C]
  const float* s = nullptr;      // [C]
};

enum class DaruanPath : uint8_t { quantum = 0, fourier = 1, spline = 2 };

// Channels are independent, so a row's activation may be split across threads in blocks of
// kDaruanChannelBlock channels (a multiple of the fourier storage's lanes, so no block is cut).
constexpr int kDaruanChannelBlock = 256;
// Channels [c0, c1) of p as a DaruanParams of their own (c0 a multiple of kDaruanChannelBlock).
DaruanParams daruan_slice(const DaruanParams& p, int c0, int c1);

// act_c(x) = a[c] g_c(x) + e[c] + s[c] x sigmoid(x); x and y have `channels` elements (may alias).
void daruan_quantum(const DaruanParams& p, const float* x, float* y);

// Fourier path: exact trigonometric sum, coefficients derived once (at load) into caller storage.
size_t daruan_fourier_floats(int channels, int depth);
void daruan_fourier_build(const DaruanParams& p, float* storage);
void daruan_fourier(const DaruanParams& p, const float* storage, const float* x, float* y);
// The scalar twin of the SIMD variants of daruan_fourier (same storage layout, same contract).
void daruan_fourier_scalar(const DaruanParams& p, const float* storage, const float* x, float* y);
// Where channel c0's part of the fourier storage begins (c0 a multiple of kDaruanChannelBlock).
size_t daruan_fourier_offset(int c0, int depth);

// Spline path: the distilled classical form, a table on [lo, hi] with `knots` points per channel
// (clamped outside the range: documented). Built once (at load) into caller storage.
struct SplineGrid { float lo = -6.f, hi = 6.f; int knots = 257; };
size_t daruan_spline_floats(int channels, const SplineGrid& g);
void daruan_spline_build(const DaruanParams& p, const SplineGrid& g, float* storage);
void daruan_spline(const DaruanParams& p, const SplineGrid& g, const float* storage, const float* x,
                   float* y);
// Measured max |spline - quantum| of g over [lo, hi] on a dense probe grid (for the report).
float daruan_spline_max_error(const DaruanParams& p, const SplineGrid& g, const float* storage);

// FLOPs per channel of each path, for the cost report.
int64_t daruan_flops_per_channel(DaruanPath path, int depth);

}  // namespace qtf::quantum
