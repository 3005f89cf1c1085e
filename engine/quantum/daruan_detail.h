// Internal to the DARUAN fourier path: the pieces shared by its scalar form (daruan.cpp) and its SIMD
// variants (engine/kernels/simd_body.inc, one copy per arch). Everything here has internal linkage, so
// each variant's copy is compiled with that variant's flags only.
#pragma once
#include <cmath>

#include "kernels/simd.h"
#include "quantum/quantum.h"

namespace qtf::quantum {
namespace {

// Fourier storage: channels in blocks of kFourierLanes. A block holds, lane-interleaved (channel c at
// lane c % kFourierLanes), first the data-angle weights w and biases b of its channels, [D][2][lanes],
// then the coefficients, [3^D][lanes]: one vector load fetches a value for several channels, with no
// gather. The width is fixed per build (16, the widest vector, wherever SIMD variants exist; 1 where
// none can), not per variant: a table built once serves whichever variant runs.
#if QTF_SIMD
constexpr int kFourierLanes = 16;
#else
constexpr int kFourierLanes = 1;
#endif

inline int pow3(int n) {
  int r = 1;
  while (n-- > 0) r *= 3;
  return r;
}

// Floats of one block, and where its coefficients start.
inline size_t fourier_block_floats(int depth) { return (size_t)(2 * depth + pow3(depth)) * kFourierLanes; }
inline size_t fourier_coeff_offset(int depth) { return (size_t)2 * depth * kFourierLanes; }

// The data angle w x + b. The product of two floats is exact in double, so the quantum and the fourier
// path see the same rounded angle whatever the compiler contracts (their agreement then does not
// depend on |x|).
inline float data_angle(float w, float x, float b) { return (float)((double)w * x + (double)b); }

// act_c(x) = a g + e + s x sigmoid(x); the SiLU term is skipped when s = 0.
inline float activation(const DaruanParams& p, int c, float g, float x) {
  float y = p.a[c] * g + p.e[c];
  if (p.s[c] != 0.f) y += p.s[c] * (x / (1.f + std::exp(-x)));
  return y;
}

// The contraction below at a depth known when compiling: the same sums in the same order (digit 0 of
// every level first, f_0 = 1 not multiplied), unrolled, so the common depths pay no counter bookkeeping.
// Digits of levels 0..L-1 at coefficient offset m.
template <int L, class T, class Load>
inline T fourier_contract_levels(const Load& R, const T (*basis)[3], int m) {
  if constexpr (L == 1) {
    return R(m) + basis[0][1] * R(m + 1) + basis[0][2] * R(m + 2);
  } else {
    constexpr int stride = L == 2 ? 3 : L == 3 ? 9 : 27;
    T acc = fourier_contract_levels<L - 1>(R, basis, m);
    acc += basis[L - 1][1] * fourier_contract_levels<L - 1>(R, basis, m + stride);
    acc += basis[L - 1][2] * fourier_contract_levels<L - 1>(R, basis, m + 2 * stride);
    return acc;
  }
}

// sum_m R[m] prod_l basis[l][m_l], depth first: axis 0 is contracted inline for each group of three
// coefficients and the partial sums are carried up like the digits of a base-3 counter, so only D + 1
// accumulators are needed whatever the depth (depths 1..4: unrolled, above).
// T is float, or a SIMD batch holding several channels whose coefficients are interleaved.
template <class T, class Load>
T fourier_contract(Load R, int D, const T (*basis)[3]) {
  switch (D) {
    case 1: return fourier_contract_levels<1>(R, basis, 0);
    case 2: return fourier_contract_levels<2>(R, basis, 0);
    case 3: return fourier_contract_levels<3>(R, basis, 0);
    case 4: return fourier_contract_levels<4>(R, basis, 0);
  }
  T acc[kMaxDaruanDepth + 1] = {};
  int digit[kMaxDaruanDepth + 1] = {};
  const int groups = pow3(D - 1);
  for (int gi = 0, m = 0; gi < groups; ++gi, m += 3) {
    T v = R(m) + basis[0][1] * R(m + 1) + basis[0][2] * R(m + 2);
    for (int l = 1;; ++l) {
      if (l == D) {
        acc[D] += v;
        break;
      }
      acc[l] += basis[l][digit[l]] * v;
      if (++digit[l] < 3) break;
      digit[l] = 0;
      v = acc[l];
      acc[l] = 0;
    }
  }
  return acc[D];
}

// One channel of the fourier path (scalar): the scalar variant and every SIMD variant's tail.
inline float fourier_channel(const DaruanParams& p, const float* storage, int c, float xc) {
  const int D = p.depth;
  const float* block = storage + (size_t)(c / kFourierLanes) * fourier_block_floats(D) + c % kFourierLanes;
  const float* coeff = block + fourier_coeff_offset(D);
  float basis[kMaxDaruanDepth][3];
  for (int l = 0; l < D; ++l) {
    const float phi = data_angle(block[(2 * l) * kFourierLanes], xc, block[(2 * l + 1) * kFourierLanes]);
    basis[l][0] = 1.f, basis[l][1] = std::cos(phi), basis[l][2] = std::sin(phi);
  }
  const float g = fourier_contract<float>([coeff](int m) { return coeff[m * kFourierLanes]; }, D, basis);
  return activation(p, c, g, xc);
}

}  // namespace
}  // namespace qtf::quantum
