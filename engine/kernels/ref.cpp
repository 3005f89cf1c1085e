// Scalar reference kernels: the plainest loops that follow the contracts in kernels.h. The SIMD kernels
// are tested against these, and these against first principles (tests/kernels).
#include <cassert>
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/tt_plan.h"

namespace qtf {

float f16_to_f32(uint16_t h) {  // exact: every half is a float
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { ++e; man <<= 1; } while (!(man & 0x400));
      bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3FF) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | man << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xFF, man = x & 0x7FFFFFu;
  if (exp == 0xFF) return (uint16_t)(sign | 0x7C00u | (man ? 0x200u : 0));
  const int e = (int)exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7C00u);
  if (e <= 0) {  // subnormal half or zero
    if (e < -10) return (uint16_t)sign;
    const uint32_t m = man | 0x800000u;
    const int shift = 14 - e;
    uint32_t h = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((uint32_t)e << 10) | (man >> 13);
  const uint32_t rem = man & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;  // a carry into the exponent is still right
  return (uint16_t)(sign | h);
}

Weights Weights::from(int64_t index, int64_t row) const {
  Weights w = *this;
  if (type == WType::q4) {
    const int64_t col = index - row * cols;
    assert(col >= 0 && col % kQ4Block == 0);  // a block's first value: a block is not split
    w.data = static_cast<const uint8_t*>(data) + row * q4_row_bytes(cols) + col / kQ4Block * kQ4BlockBytes;
    return w;  // the row stride stays q4_row_bytes(cols)
  }
  const size_t size = type == WType::f32 ? 4 : type == WType::f16 ? 2 : 1;
  w.data = static_cast<const uint8_t*>(data) + index * (int64_t)size;
  if (scales) w.scales = scales + row;
  return w;
}

float q4_value(const uint8_t* row, int64_t col) {
  const uint8_t* block = row + col / kQ4Block * kQ4BlockBytes;
  const int j = (int)(col % kQ4Block);
  const int nibble = j < 16 ? block[2 + j] & 15 : block[2 + j - 16] >> 4;
  return f16_to_f32((uint16_t)(block[0] | block[1] << 8)) * (float)(nibble - 8);
}

float q3_value(const uint8_t* row, int64_t col) {
  const uint8_t* block = row + col / kQ3Block * kQ3BlockBytes;
  return f16_to_f32((uint16_t)(block[0] | block[1] << 8)) * (float)(q3_code(block, (int)(col % kQ3Block)) - 4);
}

void q3_row_to_q4(const uint8_t* row, int64_t cols, uint8_t* out) {
  for (int64_t b = 0, nb = (cols + kQ3Block - 1) / kQ3Block; b < nb; ++b, row += kQ3BlockBytes, out += kQ4BlockBytes) {
    out[0] = row[0], out[1] = row[1];  // the same f16 scale
    for (int j = 0; j < 16; ++j) out[2 + j] = (uint8_t)((q3_code(row, j) + 4) | (q3_code(row, j + 16) + 4) << 4);
  }
}

uint16_t sgroup_scale(const uint8_t* group, int j) {
  return f32_to_f16((float)sgroup_sub(group, j) * f16_to_f32((uint16_t)(group[0] | group[1] << 8)));
}

void sblocks_to_q4(const uint8_t* data, bool q3, uint64_t first, uint64_t count, uint8_t* out) {
  for (uint64_t i = first; i < first + count; ++i, out += kQ4BlockBytes) {
    const uint8_t* group = data + sgroup_offset(q3, i / kSGroup);
    const int j = (int)(i % kSGroup);
    const uint8_t* codes = group + kSGroupHeader + j * sblock_bytes(q3);
    const uint16_t d = sgroup_scale(group, j);
    out[0] = (uint8_t)(d & 0xFF), out[1] = (uint8_t)(d >> 8);
    if (!q3) std::memcpy(out + 2, codes, kQ4BlockBytes - 2);
    else
      for (int k = 0; k < 16; ++k) out[2 + k] = (uint8_t)((q3_code_of(codes, k) + 4) | (q3_code_of(codes, k + 16) + 4) << 4);
  }
}

float Weights::value(int64_t index, int64_t row) const {
  switch (type) {
    case WType::f32: return static_cast<const float*>(data)[index];
    case WType::f16: return f16_to_f32(static_cast<const uint16_t*>(data)[index]);
    case WType::i8: return (scales ? scales[row] : scale) * (float)static_cast<const int8_t*>(data)[index];
    case WType::q4:
      return q4_value(static_cast<const uint8_t*>(data) + row * q4_row_bytes(cols), index - row * cols);
  }
  return 0.f;
}

void weights_row(const Weights& w, int64_t cols, int64_t row, bool accumulate, float* y) {
  // A row read (the embedding lookup) of f32, i8 and q4 without a switch (and q4 without a half
  // conversion) per value: the same values as Weights::value, which the other types take one at a time.
  // Accumulating takes the general loop: there a product and its sum in one basic block would be
  // contracted into one fused multiply-add on FMA targets (aarch64), a value other than y + value.
  if (!accumulate && w.type == WType::f32) {
    const float* v = static_cast<const float*>(w.data) + row * cols;
    for (int64_t j = 0; j < cols; ++j) y[j] = v[j];
    return;
  }
  if (!accumulate && w.type == WType::i8) {
    const int8_t* v = static_cast<const int8_t*>(w.data) + row * cols;
    const float s = w.scales ? w.scales[row] : w.scale;
    for (int64_t j = 0; j < cols; ++j) y[j] = s * (float)v[j];
    return;
  }
  if (!accumulate && w.type == WType::q4) {
    const uint8_t* block = static_cast<const uint8_t*>(w.data) + row * q4_row_bytes(cols);
    for (int64_t j0 = 0; j0 < cols; j0 += kQ4Block, block += kQ4BlockBytes) {
      const float d = f16_to_f32((uint16_t)(block[0] | block[1] << 8));
      for (int j = 0; j < kQ4Block && j0 + j < cols; ++j)
        y[j0 + j] = d * (float)((j < 16 ? block[2 + j] & 15 : block[2 + j - 16] >> 4) - 8);
    }
    return;
  }
  for (int64_t j = 0; j < cols; ++j) {
    const float v = w.value(row * cols + j, row);
    y[j] = accumulate ? y[j] + v : v;
  }
}

float quantize_i8(const float* v, size_t n, int8_t* q) {
  float amax = 0.f;
  for (size_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(v[i]));
  const float s = amax > 0.f ? amax / 127.f : 1.f;
  for (size_t i = 0; i < n; ++i) {
    const long r = std::lround(v[i] / s);
    q[i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
  }
  return s;
}

namespace {
int bond(const TTShape& s, int k, int rank) { return k == 0 || k == s.K ? 1 : rank < s.r[k] ? rank : s.r[k]; }
}  // namespace

// The partial product after cores 0..k-1 is T_k[I][J][a]: I over m_0..m_{k-1}, J over n_0..n_{k-1}
// (first factor most significant), a the truncated bond k. Two of them ping-pong, then one row of W.
size_t tt_dense_scratch_floats(const TTShape& s, int rank) {
  size_t most = 1, mn = 1;  // at least T_0 = 1 (a single core)
  for (int k = 1; k < s.K; ++k) {
    mn *= (size_t)s.m[k - 1] * s.n[k - 1];
    const size_t t = mn * bond(s, k, rank);
    if (t > most) most = t;
  }
  return 2 * most + (size_t)s.cols();
}

void tt_to_dense(const TTMatrix& W, int rank, float* scratch, float* f32, int8_t* i8, float* scales) {
  const TTShape& s = W.shape;
  const int K = s.K;
  const int64_t N = s.cols();
  const size_t half = (tt_dense_scratch_floats(s, rank) - (size_t)N) / 2;
  float* cur = scratch;  // T_k, starting with T_0 = [1][1][1] = 1
  float* next = scratch + half;
  float* row = scratch + 2 * half;
  cur[0] = 1.f;
  int64_t Mk = 1, Nk = 1;
  for (int k = 0; k < K; ++k) {
    const int m = s.m[k], n = s.n[k], ra = bond(s, k, rank), rb = bond(s, k + 1, rank);
    const int64_t sa = (int64_t)m * n * s.r[k + 1];  // stored strides of core k [r_k, m, n, r_{k+1}]
    const Weights& G = W.cores[k];
    for (int64_t I = 0; I < Mk; ++I)
      for (int i = 0; i < m; ++i) {
        // Row (I, i) of T_{k+1}: [(J, j)][b], or (last core) a row of W.
        const bool last = k == K - 1;
        float* out = last ? (f32 ? f32 + (I * m + i) * N : row) : next + (I * m + i) * Nk * n * rb;
        for (int64_t J = 0; J < Nk; ++J)
          for (int j = 0; j < n; ++j)
            for (int b = 0; b < rb; ++b) {
              double acc = 0;
              const float* t = cur + (I * Nk + J) * ra;
              for (int a = 0; a < ra; ++a)
                acc += (double)t[a] * G.value(a * sa + ((int64_t)i * n + j) * s.r[k + 1] + b, 0);
              out[(J * n + j) * rb + b] = (float)acc;
            }
        if (last && !f32) scales[I * m + i] = quantize_i8(row, (size_t)N, i8 + (I * m + i) * N);
      }
    float* t = cur;
    cur = next;
    next = t;
    Mk *= m;
    Nk *= n;
  }
}

namespace ref {

namespace {
// The largest right-to-left intermediate (the only order this reference runs): [n_1..n_b, r_b,
// m_{b+1}..m_K] between cores b-1 and b. tt::max_intermediate covers the orders the kernels' plans may
// pick, which for two cores can be left-to-right only.
int64_t rtl_intermediate(const TTShape& s) {
  int64_t most = 0;
  for (int b = 1; b < s.K; ++b) {
    int64_t n = 1, m = 1;
    for (int k = 0; k < b; ++k) n *= s.n[k];
    for (int k = b; k < s.K; ++k) m *= s.m[k];
    if (n * s.r[b] * m > most) most = n * s.r[b] * m;
  }
  return most;
}
}  // namespace

// Two intermediates, ping-ponged (tt_matmul runs its vectors one by one through the same ones).
size_t tt_workspace_floats(const TTShape& s, int) { return 2 * (size_t)rtl_intermediate(s); }

// Always right-to-left. The intermediate t is laid out [j_1..j_k, a_k, i_{k+1}..i_K] (1-based factors):
// it starts as x (a_K = 1) and ends as y (a_0 = 1).
void tt_matvec(const TTMatrix& W, int rank, const float* x, float* y, float* workspace) {
  const TTShape& s = W.shape;
  const int K = s.K;
  if (rank < 1) rank = 1;
  int R[kMaxTTFactors + 1];
  for (int b = 0; b <= K; ++b) R[b] = (b == 0 || b == K) ? 1 : (rank < s.r[b] ? rank : s.r[b]);

  const int64_t buffer = rtl_intermediate(s);
  const float* t = x;
  int64_t P = s.cols();  // prod of the n's not yet contracted
  int64_t Q = 1;         // prod of the m's already produced
  for (int k = K - 1; k >= 0; --k) {
    const Weights& G = W.cores[k];  // [r_k, m, n, r_{k+1}] at stored ranks
    const int m = s.m[k], n = s.n[k], r_stored = s.r[k + 1];
    const int r_left = R[k], r_right = R[k + 1];
    P /= n;
    float* out = k == 0 ? y : workspace + ((K - 1 - k) % 2) * buffer;
    for (int64_t p = 0; p < P; ++p)
      for (int al = 0; al < r_left; ++al)
        for (int i = 0; i < m; ++i)
          for (int64_t q = 0; q < Q; ++q) {
            float sum = 0.f;
            for (int j = 0; j < n; ++j)
              for (int ar = 0; ar < r_right; ++ar)
                sum += G.value((((int64_t)al * m + i) * n + j) * r_stored + ar, 0) * t[((p * n + j) * r_right + ar) * Q + q];
            out[((p * r_left + al) * m + i) * Q + q] = sum;
          }
    Q *= m;
    t = out;
  }
  if (W.bias)
    for (int64_t i = 0; i < s.rows(); ++i) y[i] += W.bias[i];
}

void tt_matmul(const TTMatrix& W, int rank, const float* X, int batch, float* Y, float* workspace) {
  const int64_t M = W.shape.rows(), N = W.shape.cols();
  for (int b = 0; b < batch; ++b) tt_matvec(W, rank, X + b * N, Y + b * M, workspace);
}

// The type switch sits outside the inner loop: this is also the scalar variant's matmul.
void dense_matvec(const DenseMatrix& W, const float* x, float* y) {
  for (int i = 0; i < W.rows; ++i) {
    float sum = W.bias ? W.bias[i] : 0.f;
    const Weights row = W.w.from((int64_t)i * W.cols, i);
    if (row.type == WType::f32) {
      const float* w = static_cast<const float*>(row.data);
      for (int j = 0; j < W.cols; ++j) sum += w[j] * x[j];
    } else if (row.type == WType::f16) {
      const uint16_t* w = static_cast<const uint16_t*>(row.data);
      for (int j = 0; j < W.cols; ++j) sum += f16_to_f32(w[j]) * x[j];
    } else if (row.type == WType::q4) {
      const uint8_t* w = static_cast<const uint8_t*>(row.data);
      for (int j = 0; j < W.cols; ++j) sum += q4_value(w, j) * x[j];
    } else {
      const int8_t* w = static_cast<const int8_t*>(row.data);
      const float s = row.scales ? row.scales[0] : row.scale;
      for (int j = 0; j < W.cols; ++j) sum += s * (float)w[j] * x[j];
    }
    y[i] = sum;
  }
}

void dense_matmul(const DenseMatrix& W, const float* X, int batch, float* Y) {
  for (int b = 0; b < batch; ++b) dense_matvec(W, X + (int64_t)b * W.cols, Y + (int64_t)b * W.rows);
}

float dot(const float* a, const float* b, int n) {
  float sum = 0.f;
  for (int i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy(float a, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

void layer_norm(const float* x, const float* w, const float* b, float eps, int n, float* y) {
  float mean = 0.f;
  for (int i = 0; i < n; ++i) mean += x[i];
  mean /= (float)n;
  float var = 0.f;  // biased (divides by n), as torch.nn.LayerNorm
  for (int i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= (float)n;
  const float inv_std = 1.f / std::sqrt(var + eps);
  for (int i = 0; i < n; ++i) y[i] = (x[i] - mean) * inv_std * w[i] + b[i];
}

void softmax_inplace(float* x, int n) {
  if (n <= 0) return;
  float max = x[0];
  for (int i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
  float sum = 0.f;
  for (int i = 0; i < n; ++i) sum += (x[i] = std::exp(x[i] - max));
  for (int i = 0; i < n; ++i) x[i] /= sum;
}

void gelu_inplace(float* x, int n) {
  for (int i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * 0.70710678118654752f));
}

void silu_inplace(float* x, int n) {
  for (int i = 0; i < n; ++i) x[i] = x[i] / (1.f + std::exp(-x[i]));
}

void tanh_inplace(float* x, int n) {
  for (int i = 0; i < n; ++i) x[i] = std::tanh(x[i]);
}

void rms_norm(const float* x, const float* w, float eps, int n, float* y) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += (double)x[i] * x[i];
  const double s = 1.0 / std::sqrt(ss / n + (double)eps);
  for (int i = 0; i < n; ++i) y[i] = (float)((double)w[i] * x[i] * s);
}

void rope(float* x, int n_heads, int head_dim, const float* cs) {
  for (int h = 0; h < n_heads; ++h)
    for (int i = 0; i < head_dim; i += 2) {
      float* v = x + (size_t)h * head_dim + i;
      const double v0 = v[0], v1 = v[1], c = cs[i], s = cs[i + 1];
      v[0] = (float)(v0 * c - v1 * s);
      v[1] = (float)(v0 * s + v1 * c);
    }
}

void silu_mul(float* g, const float* u, int n) {
  for (int i = 0; i < n; ++i) g[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

void attend(const float* q, const float* k, const float* v, size_t stride, int n, int hd, float scale, float* w,
            float* out) {
  if (n <= 0) return;
  float max = 0.f;
  for (int j = 0; j < n; ++j) {
    w[j] = dot(q, k + j * stride, hd) * scale;
    max = j == 0 || w[j] > max ? w[j] : max;
  }
  float sum = 0.f, part = 0.f;
  for (int j = 0; j < n; ++j) {
    part += (w[j] = std::exp(w[j] - max));
    if ((j + 1) % kAttendBlock == 0 || j == n - 1) sum += part, part = 0.f;
  }
  for (int c = 0; c < hd; ++c) {
    float total = 0.f, block = 0.f;
    for (int j = 0; j < n; ++j) {
      block += w[j] * v[j * stride + c];
      if ((j + 1) % kAttendBlock == 0 || j == n - 1) total += block, block = 0.f;
    }
    out[c] = total / sum;
  }
}

void quantize_q8(const float* x, int n, int8_t* q, float* d) {
  for (int b = 0; b * kQ8Block < n; ++b) {
    const int j0 = b * kQ8Block, len = n - j0 < kQ8Block ? n - j0 : kQ8Block;
    float amax = 0.f;
    for (int j = 0; j < len; ++j) amax = std::fabs(x[j0 + j]) > amax ? std::fabs(x[j0 + j]) : amax;
    const float id = amax > 0.f ? 127.f / amax : 0.f;
    d[b] = amax / 127.f;
    for (int j = 0; j < kQ8Block; ++j) q[j0 + j] = j < len ? (int8_t)std::nearbyint(x[j0 + j] * id) : (int8_t)0;
  }
}

void dense_matmul_q8(const DenseMatrix& W, const Q8Rows& X, int batch, float* Y, int64_t ldy) {
  const int64_t nb = q8_blocks(W.cols);
  for (int t = 0; t < batch; ++t) {
    const int8_t* xq = X.q + t * X.blocks * kQ8Block;
    const float* xd = X.d + t * X.blocks;
    for (int r = 0; r < W.rows; ++r) {
      const Weights row = W.w.from((int64_t)r * W.cols, r);
      float sum = 0.f;
      for (int64_t b = 0; b < nb; ++b) {
        int32_t isum = 0;
        const int64_t j0 = b * kQ8Block;
        float scale = xd[b];
        if (row.type == WType::q4) {
          const uint8_t* block = static_cast<const uint8_t*>(row.data) + b * kQ4BlockBytes;
          for (int j = 0; j < kQ8Block; ++j) {
            const int nibble = j < 16 ? block[2 + j] & 15 : block[2 + j - 16] >> 4;
            isum += (nibble - 8) * xq[j0 + j];
          }
          scale = f16_to_f32((uint16_t)(block[0] | block[1] << 8)) * xd[b];
        } else {
          const int8_t* w = static_cast<const int8_t*>(row.data);
          for (int64_t j = j0; j < j0 + kQ8Block && j < W.cols; ++j) isum += w[j] * xq[j];
        }
        sum += (float)isum * scale;
      }
      if (row.type == WType::i8) sum *= row.scales ? row.scales[0] : row.scale;
      Y[t * ldy + r] = sum + (W.bias ? W.bias[r] : 0.f);
    }
  }
}

void transpose(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c];
}

}  // namespace ref

void rope_table(float theta, int head_dim, int n_pos, float* cs) {
  for (int i = 0; i < head_dim; i += 2) {
    // 1 / powf(theta, i / head_dim) with powf correctly rounded (double pow, rounded once).
    const float freq = 1.f / (float)std::pow((double)theta, (double)((float)i / (float)head_dim));
    for (int pos = 0; pos < n_pos; ++pos) {
      const float angle = (float)pos * freq;
      cs[(size_t)pos * head_dim + i] = (float)std::cos((double)angle);
      cs[(size_t)pos * head_dim + i + 1] = (float)std::sin((double)angle);
    }
  }
}

}  // namespace qtf
