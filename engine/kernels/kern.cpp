// kern:: dense and elementwise kernels with xsimd (default arch from the compiler flags). Each loop
// runs whole vectors, then a scalar tail with the same formula as ref::. Without a SIMD arch every
// function is the scalar reference.
#include <cmath>

#include "kernels/kernels.h"
#include "kernels/simd.h"

namespace qtf {
namespace kern {

#if QTF_SIMD
using simd::V;
using simd::W;

const char* simd_arch() { return xsimd::default_arch::name(); }

float dot(const float* a, const float* b, int n) {
  const int v4 = n - n % (4 * W), v1 = n - n % W;
  V s0(0.f), s1(0.f), s2(0.f), s3(0.f);  // four chains hide the FMA latency
  int i = 0;
  for (; i < v4; i += 4 * W) {
    s0 = xsimd::fma(V::load_unaligned(a + i), V::load_unaligned(b + i), s0);
    s1 = xsimd::fma(V::load_unaligned(a + i + W), V::load_unaligned(b + i + W), s1);
    s2 = xsimd::fma(V::load_unaligned(a + i + 2 * W), V::load_unaligned(b + i + 2 * W), s2);
    s3 = xsimd::fma(V::load_unaligned(a + i + 3 * W), V::load_unaligned(b + i + 3 * W), s3);
  }
  for (; i < v1; i += W) s0 = xsimd::fma(V::load_unaligned(a + i), V::load_unaligned(b + i), s0);
  float sum = xsimd::hadd((s0 + s1) + (s2 + s3));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy(float a, const float* x, float* y, int n) {
  const V av(a);
  int i = 0;
  for (; i + W <= n; i += W) xsimd::fma(av, V::load_unaligned(x + i), V::load_unaligned(y + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] += a * x[i];
}

namespace {

// out[r] = <w row r, x> for 4 rows `ld` apart: 4 rows x 2 vectors of accumulators, each x load shared.
void dot4(const float* w, int64_t ld, const float* x, int n, float* out) {
  const int v2 = n - n % (2 * W), v1 = n - n % W;
  V acc[4][2];
  for (int r = 0; r < 4; ++r) acc[r][0] = acc[r][1] = V(0.f);
  for (int j = 0; j < v2; j += 2 * W) {
    const V x0 = V::load_unaligned(x + j), x1 = V::load_unaligned(x + j + W);
    for (int r = 0; r < 4; ++r) {
      acc[r][0] = xsimd::fma(V::load_unaligned(w + r * ld + j), x0, acc[r][0]);
      acc[r][1] = xsimd::fma(V::load_unaligned(w + r * ld + j + W), x1, acc[r][1]);
    }
  }
  if (v1 > v2) {
    const V x0 = V::load_unaligned(x + v2);
    for (int r = 0; r < 4; ++r) acc[r][0] = xsimd::fma(V::load_unaligned(w + r * ld + v2), x0, acc[r][0]);
  }
  for (int r = 0; r < 4; ++r) {
    float sum = xsimd::hadd(acc[r][0] + acc[r][1]);
    for (int j = v1; j < n; ++j) sum += w[r * ld + j] * x[j];
    out[r] = sum;
  }
}

}  // namespace

// Four rows at a time; for a batch the four rows stay in L1 while every vector passes over them.
void dense_matmul(const DenseMatrix& M, const float* X, int batch, float* Y) {
  const int rows = M.rows, cols = M.cols;
  int r0 = 0;
  for (; r0 + 4 <= rows; r0 += 4) {
    const float* w = M.w + (int64_t)r0 * cols;
    for (int b = 0; b < batch; ++b) {
      float out[4];
      dot4(w, cols, X + (int64_t)b * cols, cols, out);
      for (int r = 0; r < 4; ++r) Y[(int64_t)b * rows + r0 + r] = out[r] + (M.bias ? M.bias[r0 + r] : 0.f);
    }
  }
  for (; r0 < rows; ++r0)
    for (int b = 0; b < batch; ++b)
      Y[(int64_t)b * rows + r0] = dot(M.w + (int64_t)r0 * cols, X + (int64_t)b * cols, cols) + (M.bias ? M.bias[r0] : 0.f);
}

void dense_matvec(const DenseMatrix& M, const float* x, float* y) { dense_matmul(M, x, 1, y); }

void layer_norm(const float* x, const float* w, const float* b, float eps, int n, float* y) {
  int i = 0;
  V vsum(0.f);
  for (; i + W <= n; i += W) vsum += V::load_unaligned(x + i);
  float sum = xsimd::hadd(vsum);
  for (; i < n; ++i) sum += x[i];
  const float mean = sum / (float)n;

  const V vmean(mean);
  V vvar(0.f);
  for (i = 0; i + W <= n; i += W) {
    const V d = V::load_unaligned(x + i) - vmean;
    vvar = xsimd::fma(d, d, vvar);
  }
  float var = xsimd::hadd(vvar);
  for (; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= (float)n;  // biased, as torch.nn.LayerNorm

  const float inv_std = 1.f / std::sqrt(var + eps);
  const V vinv(inv_std);
  for (i = 0; i + W <= n; i += W) {
    const V xn = (V::load_unaligned(x + i) - vmean) * vinv;
    xsimd::fma(xn, V::load_unaligned(w + i), V::load_unaligned(b + i)).store_unaligned(y + i);
  }
  for (; i < n; ++i) y[i] = (x[i] - mean) * inv_std * w[i] + b[i];
}

void softmax_inplace(float* x, int n) {
  if (n <= 0) return;
  int i = 0;
  float max = x[0];
  if (n >= W) {
    V vmax = V::load_unaligned(x);
    for (i = W; i + W <= n; i += W) vmax = xsimd::max(vmax, V::load_unaligned(x + i));
    alignas(64) float lanes[W];
    vmax.store_aligned(lanes);
    for (int l = 0; l < W; ++l) max = lanes[l] > max ? lanes[l] : max;
  }
  for (; i < n; ++i) max = x[i] > max ? x[i] : max;

  const V vmax(max);
  V vsum(0.f);
  for (i = 0; i + W <= n; i += W) {
    const V e = xsimd::exp(V::load_unaligned(x + i) - vmax);
    e.store_unaligned(x + i);
    vsum += e;
  }
  float sum = xsimd::hadd(vsum);
  for (; i < n; ++i) sum += (x[i] = std::exp(x[i] - max));

  const V vinv(1.f / sum);
  for (i = 0; i + W <= n; i += W) (V::load_unaligned(x + i) * vinv).store_unaligned(x + i);
  for (; i < n; ++i) x[i] /= sum;
}

void gelu_inplace(float* x, int n) {
  const V half(0.5f), one(1.f), inv_sqrt2(0.70710678118654752f);
  int i = 0;
  for (; i + W <= n; i += W) {
    const V v = V::load_unaligned(x + i);
    (half * v * (one + xsimd::erf(v * inv_sqrt2))).store_unaligned(x + i);
  }
  for (; i < n; ++i) x[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * 0.70710678118654752f));
}

void silu_inplace(float* x, int n) {
  const V one(1.f);
  int i = 0;
  for (; i + W <= n; i += W) {
    const V v = V::load_unaligned(x + i);
    (v / (one + xsimd::exp(-v))).store_unaligned(x + i);
  }
  for (; i < n; ++i) x[i] = x[i] / (1.f + std::exp(-x[i]));
}

#else  // no SIMD arch on this target: the scalar references are the kernels

const char* simd_arch() { return "scalar"; }
float dot(const float* a, const float* b, int n) { return ref::dot(a, b, n); }
void axpy(float a, const float* x, float* y, int n) { ref::axpy(a, x, y, n); }
void dense_matvec(const DenseMatrix& M, const float* x, float* y) { ref::dense_matvec(M, x, y); }
void dense_matmul(const DenseMatrix& M, const float* X, int batch, float* Y) { ref::dense_matmul(M, X, batch, Y); }
void layer_norm(const float* x, const float* w, const float* b, float eps, int n, float* y) {
  ref::layer_norm(x, w, b, eps, n, y);
}
void softmax_inplace(float* x, int n) { ref::softmax_inplace(x, n); }
void gelu_inplace(float* x, int n) { ref::gelu_inplace(x, n); }
void silu_inplace(float* x, int n) { ref::silu_inplace(x, n); }

#endif

}  // namespace kern
}  // namespace qtf
