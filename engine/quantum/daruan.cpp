// DARUAN activation (MODEL.md "DARUAN activation"): g_c(x) = <Z> of a one-qubit data re-uploading
// circuit, in three paths that agree: quantum (simulate it), fourier (its exact trigonometric sum) and
// spline (a cubic Hermite table, the distilled classical form).
#include <cmath>

#include "kernels/dispatch.h"
#include "quantum/daruan_detail.h"
#include "quantum/quantum.h"

namespace qtf::quantum {
namespace {

constexpr double kPi = 3.14159265358979323846;

template <class T>
struct Qubit {
  T r0, i0, r1, i1;
};

template <class T>
inline void rz(Qubit<T>& q, T t) {  // diag(e^{-it/2}, e^{it/2}): 2 complex multiplies
  const T c = std::cos(T(0.5) * t), s = std::sin(T(0.5) * t);
  const Qubit<T> a = q;
  q = {c * a.r0 + s * a.i0, c * a.i0 - s * a.r0, c * a.r1 - s * a.i1, c * a.i1 + s * a.r1};
}

template <class T>
inline void ry(Qubit<T>& q, T t) {  // [[c, -s], [s, c]]: 4 real x complex multiply-adds
  const T c = std::cos(T(0.5) * t), s = std::sin(T(0.5) * t);
  const Qubit<T> a = q;
  q = {c * a.r0 - s * a.r1, c * a.i0 - s * a.i1, s * a.r0 + c * a.r1, s * a.i0 + c * a.i1};
}

// The circuit of one channel with data angles phi[l]: |0>, H; for l < D: RZ(t[l][0]), RY(t[l][1]),
// RZ(phi[l]); then RZ(t[D][0]), RY(t[D][1]); returns <Z>. With dphi (= d phi / dx) it also returns
// dg/dx in *dg by forward-mode differentiation (d RZ(phi)/d phi = RZ(phi) diag(-i/2, i/2)).
template <class T>
T circuit_g(const float* t, int D, const T* phi, const T* dphi = nullptr, T* dg = nullptr) {
  const T k = T(0.70710678118654752440);
  Qubit<T> q = {k, 0, k, 0}, d = {0, 0, 0, 0};
  for (int l = 0; l < D; ++l) {
    rz(q, T(t[2 * l])), ry(q, T(t[2 * l + 1]));
    if (dphi) {
      rz(d, T(t[2 * l])), ry(d, T(t[2 * l + 1]));
      const T h = T(0.5) * dphi[l];
      d = {d.r0 + h * q.i0, d.i0 - h * q.r0, d.r1 - h * q.i1, d.i1 + h * q.r1};
      rz(d, phi[l]);
    }
    rz(q, phi[l]);
  }
  rz(q, T(t[2 * D])), ry(q, T(t[2 * D + 1]));
  if (dphi) {
    rz(d, T(t[2 * D])), ry(d, T(t[2 * D + 1]));
    *dg = 2 * (q.r0 * d.r0 + q.i0 * d.i0 - q.r1 * d.r1 - q.i1 * d.i1);
  }
  return q.r0 * q.r0 + q.i0 * q.i0 - q.r1 * q.r1 - q.i1 * q.i1;
}
constexpr int kCircuitFlopsPerLayer = 2 + 3 * 16;  // data angle, RZ RY RZ
constexpr int kCircuitFlopsFixed = 2 * 16 + 8;     // final RZ RY, <Z>

// The quantum path's g: the float simulation.
float g_quantum(const DaruanParams& p, int c, float x) {
  const int D = p.depth;
  float phi[kMaxDaruanDepth];
  for (int l = 0; l < D; ++l) phi[l] = data_angle(p.w[c * D + l], x, p.b[c * D + l]);
  return circuit_g<float>(p.theta + (size_t)c * (D + 1) * 2, D, phi);
}

constexpr int kActFlops = 6;  // activation(): a g + e, and the SiLU term

// ---- fourier ----
// g is a trigonometric polynomial of degree one in each data angle phi_l (RZ(phi) = e^{-i phi/2} P0 +
// e^{i phi/2} P1, so <Z> has the terms e^{i k phi}, k in {-1, 0, 1}), i.e. exactly
//   g = sum_m R[m] prod_l f_{m_l}(phi_l),  f_0 = 1, f_1 = cos, f_2 = sin,  m in {0,1,2}^D,
// with 3^D real coefficients per channel, m_0 the fastest index. Expanding the products with
// phi_l = w_l x + b_l gives the frequency form: the positive values of sum_l k_l w_l plus a constant.
// Evaluated in this product form it costs D sines/cosines per element instead of one per frequency.
// R is exact: along each axis, f(0), f(pi/2), f(pi) of r0 + r1 cos + r2 sin give r0 = (f(0)+f(pi))/2,
// r1 = (f(0)-f(pi))/2, r2 = f(pi/2) - r0; so R follows from g (simulated in double) on that 3^D grid.
void fourier_build_channel(const float* theta, int D, float* R) {
  const int n = pow3(D);
  for (int m = 0; m < n; ++m) {
    double phi[kMaxDaruanDepth];
    for (int l = 0, r = m; l < D; ++l, r /= 3) phi[l] = (r % 3) * (kPi / 2);
    R[m] = (float)circuit_g<double>(theta, D, phi);
  }
  for (int l = 0, st = 1; l < D; ++l, st *= 3)
    for (int m = 0; m < n; ++m) {
      if ((m / st) % 3 != 0) continue;
      const float f0 = R[m], f1 = R[m + st], f2 = R[m + 2 * st];
      R[m] = 0.5f * (f0 + f2);
      R[m + st] = 0.5f * (f0 - f2);
      R[m + 2 * st] = f1 - 0.5f * (f0 + f2);
    }
}

// FLOPs of fourier_contract (daruan_detail.h).
int64_t fourier_contract_flops(int D) { return 2 * (2ll * pow3(D - 1) + (pow3(D) - 3) / 2 + 1); }

// ---- spline ----
// A cubic Hermite spline per channel: at each of `knots` equally spaced points of [lo, hi] the table
// holds g and h g' (h the spacing), both exact (simulated in double, g' by forward-mode). Error
// O(h^4) (about 1e-6 to 1e-5 for the default 257 knots on [-6, 6] and weights of order one), local
// (no boundary effects), C1. Outside [lo, hi] g is clamped: the input is clamped to the range, i.e. g
// is held at g(lo) or g(hi); the SiLU term of the activation is exact everywhere.
struct Spline {
  float lo, inv_h;
  int knots;
  explicit Spline(const SplineGrid& g) : lo(g.lo), inv_h((g.knots - 1) / (g.hi - g.lo)), knots(g.knots) {}

  float operator()(const float* T, float x) const {
    float u = (x - lo) * inv_h;
    if (!(u > 0.f)) u = 0.f;  // also NaN
    if (u > (float)(knots - 1)) u = (float)(knots - 1);
    int j = (int)u;
    if (j > knots - 2) j = knots - 2;
    const float t = u - (float)j;
    const float v0 = T[2 * j], m0 = T[2 * j + 1], v1 = T[2 * j + 2], m1 = T[2 * j + 3];
    const float d = v1 - v0;
    return v0 + t * (m0 + t * ((3.f * d - 2.f * m0 - m1) + t * (m0 + m1 - 2.f * d)));
  }
};
constexpr int kSplineEvalFlops = 17;  // index 3, d 1, cubic coefficients 7, Horner 6

}  // namespace

void daruan_quantum(const DaruanParams& p, const float* x, float* y) {
  for (int c = 0; c < p.channels; ++c) {
    const float xc = x[c];
    y[c] = activation(p, c, g_quantum(p, c, xc), xc);
  }
}

size_t daruan_fourier_floats(int channels, int depth) {
  return (size_t)(channels + kFourierLanes - 1) / kFourierLanes * fourier_block_floats(depth);
}

void daruan_fourier_build(const DaruanParams& p, float* storage) {
  const int D = p.depth, n = pow3(D);
  for (int c = 0; c < p.channels; ++c) {
    const float* theta = p.theta + (size_t)c * (D + 1) * 2;
    float R[6561];  // 3^kMaxDaruanDepth coefficients, interleaved into the channel's block below
    fourier_build_channel(theta, D, R);
    float* block = storage + (size_t)(c / kFourierLanes) * fourier_block_floats(D) + c % kFourierLanes;
    for (int l = 0; l < D; ++l) {
      block[(2 * l) * kFourierLanes] = p.w[c * D + l];
      block[(2 * l + 1) * kFourierLanes] = p.b[c * D + l];
    }
    float* coeff = block + fourier_coeff_offset(D);
    for (int m = 0; m < n; ++m) coeff[m * kFourierLanes] = R[m];
  }
  // Lanes past the last channel: zero weights and coefficients (never stored to y, but loaded).
  const int padded = (p.channels + kFourierLanes - 1) / kFourierLanes * kFourierLanes;
  for (int c = p.channels; c < padded; ++c) {
    float* block = storage + (size_t)(c / kFourierLanes) * fourier_block_floats(D) + c % kFourierLanes;
    for (size_t k = 0; k < fourier_block_floats(D) / kFourierLanes; ++k) block[k * kFourierLanes] = 0.f;
  }
}

void daruan_fourier(const DaruanParams& p, const float* storage, const float* x, float* y) {
  kern::active().daruan_fourier(p, storage, x, y);
}

void daruan_fourier_scalar(const DaruanParams& p, const float* storage, const float* x, float* y) {
  for (int c = 0; c < p.channels; ++c) y[c] = fourier_channel(p, storage, c, x[c]);
}

size_t daruan_fourier_offset(int c0, int depth) { return (size_t)(c0 / kFourierLanes) * fourier_block_floats(depth); }

DaruanParams daruan_slice(const DaruanParams& p, int c0, int c1) {
  static_assert(kDaruanChannelBlock % kFourierLanes == 0, "a slice must start at a fourier block");
  const size_t D = (size_t)p.depth;
  DaruanParams q = p;
  q.channels = c1 - c0;
  q.theta = p.theta + (size_t)c0 * (D + 1) * 2;
  q.w = p.w + (size_t)c0 * D;
  q.b = p.b + (size_t)c0 * D;
  q.a = p.a + c0;
  q.e = p.e + c0;
  q.s = p.s + c0;
  return q;
}

size_t daruan_spline_floats(int channels, const SplineGrid& g) { return (size_t)channels * 2 * g.knots; }

void daruan_spline_build(const DaruanParams& p, const SplineGrid& g, float* storage) {
  const int D = p.depth;
  const double h = ((double)g.hi - g.lo) / (g.knots - 1);
  for (int c = 0; c < p.channels; ++c) {
    float* T = storage + (size_t)c * 2 * g.knots;
    double dphi[kMaxDaruanDepth];
    for (int l = 0; l < D; ++l) dphi[l] = p.w[c * D + l];
    for (int j = 0; j < g.knots; ++j) {
      const double x = g.lo + j * h;
      double phi[kMaxDaruanDepth], dg = 0;
      for (int l = 0; l < D; ++l) phi[l] = dphi[l] * x + p.b[c * D + l];
      T[2 * j] = (float)circuit_g<double>(p.theta + (size_t)c * (D + 1) * 2, D, phi, dphi, &dg);
      T[2 * j + 1] = (float)(h * dg);
    }
  }
}

void daruan_spline(const DaruanParams& p, const SplineGrid& g, const float* storage, const float* x, float* y) {
  const Spline spline(g);
  for (int c = 0; c < p.channels; ++c) {
    const float xc = x[c];
    y[c] = activation(p, c, spline(storage + (size_t)c * 2 * g.knots, xc), xc);
  }
}

// Probes: the knots and the points at 1/4, 1/2, 3/4 of every interval.
float daruan_spline_max_error(const DaruanParams& p, const SplineGrid& g, const float* storage) {
  const Spline spline(g);
  const int probes = 4 * (g.knots - 1) + 1;
  const double step = ((double)g.hi - g.lo) / (probes - 1);
  float worst = 0;
  for (int c = 0; c < p.channels; ++c)
    for (int k = 0; k < probes; ++k) {
      const float x = (float)(g.lo + k * step);
      const float err = std::fabs(spline(storage + (size_t)c * 2 * g.knots, x) - g_quantum(p, c, x));
      if (err > worst) worst = err;
    }
  return worst;
}

int64_t daruan_flops_per_channel(DaruanPath path, int depth) {
  switch (path) {
    case DaruanPath::quantum: return (int64_t)kCircuitFlopsPerLayer * depth + kCircuitFlopsFixed + kActFlops;
    case DaruanPath::fourier: return 2ll * depth + fourier_contract_flops(depth) + kActFlops;
    case DaruanPath::spline: return kSplineEvalFlops + kActFlops;
  }
  return 0;
}

}  // namespace qtf::quantum
