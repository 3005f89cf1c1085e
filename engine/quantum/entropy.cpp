// Entanglement entropy of the first half of the wires: eigenvalues of the reduced density matrix by
// the Jacobi method (round-robin order) for complex Hermitian matrices (n <= 16, in double, on the stack). The size
// is a compile-time constant per Q (n = 2, 4, 8, 16), so the short loops of a rotation unroll.
#include <cmath>

#include "quantum/statevector.h"

namespace qtf::quantum {
namespace {

constexpr int kMaxSweeps = 30;     // Jacobi converges quadratically; ~4-6 sweeps in practice
constexpr double kOffTol = 1e-22;  // sum |offdiag|^2 (trace rho_A = 1): eigenvalues good to ~1e-11

template <int N>
struct Herm {
  double re[N][N], im[N][N];
};

// One Jacobi rotation zeroing a[p][q] (p < q): a phase on row/column q makes a[p][q] real and
// positive, then a real plane rotation (Numerical Recipes' jacobi) finishes it. Its parameters depend
// on a[p][q], a[p][p] and a[q][q] alone, which a rotation of a disjoint pair does not touch: so the
// rotations of one round of disjoint pairs are planned together (their square roots and divisions
// overlap instead of waiting on each other), then applied in order.
struct Rotation {
  bool skip;
  double mag, er, ei, t, c, s;
};

template <int n>
Rotation plan_rotation(const Herm<n>& a, int p, int q) {
  Rotation R{};
  R.mag = std::sqrt(a.re[p][q] * a.re[p][q] + a.im[p][q] * a.im[p][q]);
  R.skip = R.mag < 1e-16;  // already negligible against kOffTol
  if (R.skip) return R;
  R.er = a.re[p][q] / R.mag, R.ei = -a.im[p][q] / R.mag;  // e^{-i arg a_pq}
  const double theta = (a.re[q][q] - a.re[p][p]) / (2 * R.mag);
  R.t = std::fabs(theta) > 1e100 ? 0.5 / theta
                                 : (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
  R.c = 1 / std::sqrt(R.t * R.t + 1), R.s = R.t * R.c;
  return R;
}

template <int n>
void apply_rotation(Herm<n>& a, int p, int q, const Rotation& R) {
  if (R.skip) return;
  for (int r = 0; r < n; ++r) {
    if (r == q) continue;
    const double xr = a.re[r][q], xi = a.im[r][q];
    a.re[r][q] = xr * R.er - xi * R.ei;
    a.im[r][q] = xr * R.ei + xi * R.er;
    a.re[q][r] = a.re[r][q];
    a.im[q][r] = -a.im[r][q];
  }
  const double c = R.c, s = R.s;
  a.re[p][p] -= R.t * R.mag;
  a.re[q][q] += R.t * R.mag;
  a.re[p][q] = a.im[p][q] = a.re[q][p] = a.im[q][p] = 0;
  for (int r = 0; r < n; ++r) {
    if (r == p || r == q) continue;
    const double gr = a.re[r][p], gi = a.im[r][p], hr = a.re[r][q], hi = a.im[r][q];
    a.re[r][p] = c * gr - s * hr;
    a.im[r][p] = c * gi - s * hi;
    a.re[r][q] = s * gr + c * hr;
    a.im[r][q] = s * gi + c * hi;
    a.re[p][r] = a.re[r][p], a.im[p][r] = -a.im[r][p];
    a.re[q][r] = a.re[r][q], a.im[q][r] = -a.im[r][q];
  }
}

// One sweep over all n(n-1)/2 pairs as n-1 rounds of n/2 disjoint pairs (the round-robin order of a
// tournament: 0 stays, the others turn by one each round).
template <int n>
void jacobi_sweep(Herm<n>& a) {
  if constexpr (n >= 2) {
    for (int round = 0; round < n - 1; ++round) {
      int p[n / 2], q[n / 2];
      Rotation R[n / 2];
      for (int i = 0; i < n / 2; ++i) {
        const int j = n - 1 - i;
        const int x = i == 0 ? 0 : 1 + (i - 1 + round) % (n - 1), y = 1 + (j - 1 + round) % (n - 1);
        p[i] = x < y ? x : y, q[i] = x < y ? y : x;
        R[i] = plan_rotation(a, p[i], q[i]);
      }
      for (int i = 0; i < n / 2; ++i) apply_rotation(a, p[i], q[i], R[i]);
    }
  }
}

template <int n>
double off_diagonal(const Herm<n>& a) {
  double off = 0;
  for (int p = 0; p < n; ++p)
    for (int q = p + 1; q < n; ++q) off += a.re[p][q] * a.re[p][q] + a.im[p][q] * a.im[p][q];
  return off;
}

template <int Q>
double entropy_q(const float* re, const float* im, int* sweeps) {
  constexpr int n = 1 << (Q / 2), m = 1 << (Q - Q / 2);  // M is n x m: M[a][b] = amp[a * m + b]
  Herm<n> rho;
  // rho[a][a2] = sum_b M[a][b] conj(M[a2][b]) for a <= a2, mirrored. Both loops run a fixed count (a2 from
  // 0, skipping a2 < a): with a2 starting at a, GCC 13 warned of undefined behaviour in a dead copy of the
  // loop left by unrolling (-Waggressive-loop-optimizations, fatal under -Werror).
  for (int a = 0; a < n; ++a)
    for (int a2 = 0; a2 < n; ++a2) {
      if (a2 < a) continue;
      double sr = 0, si = 0;
      for (int b = 0; b < m; ++b) {
        const double xr = re[a * m + b], xi = im[a * m + b], yr = re[a2 * m + b], yi = im[a2 * m + b];
        sr += xr * yr + xi * yi;
        si += xi * yr - xr * yi;
      }
      rho.re[a][a2] = sr, rho.im[a][a2] = si;
      rho.re[a2][a] = sr, rho.im[a2][a] = -si;
    }
  int sweep = 0;
  while (sweep < kMaxSweeps && off_diagonal(rho) > kOffTol) {
    jacobi_sweep(rho);
    ++sweep;
  }
  if (sweeps) *sweeps = sweep;
  double S = 0;
  for (int k = 0; k < n; ++k) {
    const double p = rho.re[k][k];
    if (p >= 1e-12) S -= p * std::log2(p);
  }
  return S;
}

}  // namespace

double entanglement_entropy(const float* re, const float* im, int Q, int* sweeps) {
  switch (Q) {  // odd Q: the first half is the smaller one
    case 0: return entropy_q<0>(re, im, sweeps);
    case 1: return entropy_q<1>(re, im, sweeps);
    case 2: return entropy_q<2>(re, im, sweeps);
    case 3: return entropy_q<3>(re, im, sweeps);
    case 4: return entropy_q<4>(re, im, sweeps);
    case 5: return entropy_q<5>(re, im, sweeps);
    case 6: return entropy_q<6>(re, im, sweeps);
    case 7: return entropy_q<7>(re, im, sweeps);
    case 8: return entropy_q<8>(re, im, sweeps);
  }
  if (sweeps) *sweeps = 0;
  return 0;
}

long long entanglement_entropy_flops(int Q) {
  const long long n = 1ll << (Q / 2), m = 1ll << (Q - Q / 2);
  const long long form = n * (n + 1) / 2 * m * 8;
  // Per rotation: the phase on column q (n complex multiplies) and the plane rotation of columns p, q
  // (2n real x complex multiply-adds on each of re/im): 8n + 16n.
  const long long per_rotation = 24 * n;
  return form + kEntropySweepsCharged * (n * (n - 1) / 2) * per_rotation;
}

}  // namespace qtf::quantum
