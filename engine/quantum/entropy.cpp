// Entanglement entropy of the first half of the wires: eigenvalues of the reduced density matrix by
// the cyclic Jacobi method for complex Hermitian matrices (n <= 16, in double, on the stack).
#include <cmath>

#include "quantum/statevector.h"

namespace qtf::quantum {
namespace {

constexpr int kMaxN = 16;          // 2^(8/2)
constexpr int kMaxSweeps = 30;     // cyclic Jacobi converges quadratically; ~4-6 sweeps in practice
constexpr double kOffTol = 1e-22;  // sum |offdiag|^2 (trace rho_A = 1): eigenvalues good to ~1e-11

struct Herm {
  double re[kMaxN][kMaxN], im[kMaxN][kMaxN];
};

// One Jacobi rotation zeroing a[p][q] (p < q): a phase on row/column q makes a[p][q] real and
// positive, then a real plane rotation (Numerical Recipes' jacobi) finishes it.
void rotate(Herm& a, int n, int p, int q) {
  const double mag = std::sqrt(a.re[p][q] * a.re[p][q] + a.im[p][q] * a.im[p][q]);
  if (mag < 1e-16) return;  // already negligible against kOffTol
  const double er = a.re[p][q] / mag, ei = -a.im[p][q] / mag;  // e^{-i arg a_pq}
  for (int r = 0; r < n; ++r) {
    if (r == q) continue;
    const double xr = a.re[r][q], xi = a.im[r][q];
    a.re[r][q] = xr * er - xi * ei;
    a.im[r][q] = xr * ei + xi * er;
    a.re[q][r] = a.re[r][q];
    a.im[q][r] = -a.im[r][q];
  }
  const double theta = (a.re[q][q] - a.re[p][p]) / (2 * mag);
  const double t = std::fabs(theta) > 1e100 ? 0.5 / theta
                                            : (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
  const double c = 1 / std::sqrt(t * t + 1), s = t * c;
  a.re[p][p] -= t * mag;
  a.re[q][q] += t * mag;
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

double off_diagonal(const Herm& a, int n) {
  double off = 0;
  for (int p = 0; p < n; ++p)
    for (int q = p + 1; q < n; ++q) off += a.re[p][q] * a.re[p][q] + a.im[p][q] * a.im[p][q];
  return off;
}

}  // namespace

double entanglement_entropy(const float* re, const float* im, int Q, int* sweeps) {
  const int n = 1 << (Q / 2), m = 1 << (Q - Q / 2);  // M is n x m: M[a][b] = amp[a * m + b]
  Herm rho;
  for (int a = 0; a < n; ++a)
    for (int a2 = a; a2 < n; ++a2) {  // rho[a][a2] = sum_b M[a][b] conj(M[a2][b])
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
  while (sweep < kMaxSweeps && off_diagonal(rho, n) > kOffTol) {
    for (int p = 0; p < n; ++p)
      for (int q = p + 1; q < n; ++q) rotate(rho, n, p, q);
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

long long entanglement_entropy_flops(int Q) {
  const long long n = 1ll << (Q / 2), m = 1ll << (Q - Q / 2);
  const long long form = n * (n + 1) / 2 * m * 8;
  // Per rotation: the phase on column q (n complex multiplies) and the plane rotation of columns p, q
  // (2n real x complex multiply-adds on each of re/im): 8n + 16n.
  const long long per_rotation = 24 * n;
  return form + kEntropySweepsCharged * (n * (n - 1) / 2) * per_rotation;
}

}  // namespace qtf::quantum
