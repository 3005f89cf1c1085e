// Integer dot products with quantised activations (issue 26 item 2, docs/quantize.md "Integer dot
// products"): the activation quantiser and the i8/q4 x q8 matmul of every variant this CPU runs against
// ref:: (bytes and scales exactly; the integer dot products exactly, with unit scales; with real scales
// within float rounding), a block equal to its rows one at a time, bit for bit, and the error the
// quantised activations add to a matvec bounded by its derivation.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/kernels.h"
#include "variants.h"

using namespace qtf;

namespace {

using qtf::testing::for_each_variant;
using qtf::testing::variants;

const Workers kSerial{3,
                      [](void*, int n, void (*task)(void*, int, int), void* arg) {
                        for (int i = n - 1; i >= 0; --i) task(arg, i, 0);  // any order must do
                      },
                      nullptr};

uint16_t half_of(float f) {  // exact for the values used here (small integers, powers of two)
  uint32_t b;
  std::memcpy(&b, &f, 4);
  if ((b & 0x7fffffff) == 0) return (uint16_t)(b >> 16);
  const int e = (int)((b >> 23) & 0xff) - 127 + 15;
  return (uint16_t)((b >> 16 & 0x8000) | e << 10 | (b >> 13 & 0x3ff));
}

// A weight matrix stored as i8 (a scale per row) or q4, with its values as floats.
struct Mat {
  int rows = 0, cols = 0;
  WType type = WType::i8;
  std::vector<int8_t> i8;
  std::vector<float> scales;
  std::vector<uint8_t> q4;
  std::vector<float> values;  // [rows][cols] what the stored weights stand for
  std::vector<float> bias;
  DenseMatrix view() const {
    DenseMatrix D;
    D.rows = rows, D.cols = cols, D.bias = bias.empty() ? nullptr : bias.data();
    D.w = type == WType::q4 ? Weights::q4(q4.data(), cols) : Weights(WType::i8, i8.data(), scales.data(), 1.f);
    return D;
  }
};

// Random integer weights: i8 in [-128, 127] (the format allows -128), q4 nibbles 0..15 (tail padding 8);
// scales 1 (unit: every sum exact) or random.
Mat make_mat(std::mt19937& rng, WType type, int rows, int cols, bool unit, bool bias) {
  Mat m;
  m.rows = rows, m.cols = cols, m.type = type;
  m.values.assign((size_t)rows * cols, 0.f);
  std::uniform_int_distribution<int> byte(-128, 127), nib(0, 15);
  std::uniform_real_distribution<float> sc(0.001f, 0.02f), u(-1.f, 1.f);
  if (type == WType::i8) {
    m.i8.resize((size_t)rows * cols);
    for (int r = 0; r < rows; ++r) {
      m.scales.push_back(unit ? 1.f : sc(rng));
      for (int j = 0; j < cols; ++j) {
        m.i8[(size_t)r * cols + j] = (int8_t)byte(rng);
        m.values[(size_t)r * cols + j] = m.scales[r] * (float)m.i8[(size_t)r * cols + j];
      }
    }
  } else {
    const int64_t rb = q4_row_bytes(cols);
    m.q4.assign((size_t)(rows * rb), 0x88);
    for (int r = 0; r < rows; ++r)
      for (int b = 0; b * kQ4Block < cols; ++b) {
        uint8_t* blk = m.q4.data() + r * rb + b * kQ4BlockBytes;
        const uint16_t h = half_of(unit ? 1.f : std::ldexp(1.f, -(int)(rng() % 8)));
        blk[0] = (uint8_t)(h & 0xff), blk[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < kQ4Block && b * kQ4Block + j < cols; ++j) {
          const int v = nib(rng);
          uint8_t& byte_ = blk[2 + j % 16];
          byte_ = j < 16 ? (uint8_t)((byte_ & 0xF0) | v) : (uint8_t)((byte_ & 0x0F) | v << 4);
        }
        for (int j = 0; j < kQ4Block && b * kQ4Block + j < cols; ++j)
          m.values[(size_t)r * cols + b * kQ4Block + j] = q4_value(m.q4.data() + r * rb, b * kQ4Block + j);
      }
  }
  if (bias)
    for (int r = 0; r < rows; ++r) m.bias.push_back(u(rng));
  return m;
}

struct Acts {
  std::vector<int8_t> q;
  std::vector<float> d;
  Q8Rows view(int64_t blocks) const { return Q8Rows{q.data(), d.data(), blocks}; }
};

// Integer activations in [-127, 127] with unit scales (zeros past cols in each row's last block).
Acts int_acts(std::mt19937& rng, int batch, int cols) {
  const int64_t nb = q8_blocks(cols);
  Acts a;
  a.q.assign((size_t)(batch * nb * kQ8Block), 0);
  a.d.assign((size_t)(batch * nb), 1.f);
  std::uniform_int_distribution<int> v(-127, 127);
  for (int t = 0; t < batch; ++t)
    for (int j = 0; j < cols; ++j) a.q[(size_t)(t * nb * kQ8Block + j)] = (int8_t)v(rng);
  return a;
}

// X (batch rows of cols floats) quantised by kern::quantize_q8_rows into a's bytes and scales.
Acts quantised_acts(const std::vector<float>& X, int batch, int cols) {
  const int64_t nb = q8_blocks(cols);
  Acts a;
  a.q.resize((size_t)(batch * nb * kQ8Block));
  a.d.resize((size_t)(batch * nb));
  kern::quantize_q8_rows(X.data(), batch, cols, a.q.data(), a.d.data());
  return a;
}

}  // namespace

TEST_CASE("quantize_q8: every variant gives ref's bytes and scales; round to nearest, ties to even") {
  std::mt19937 rng(70);
  std::uniform_real_distribution<float> u(-3.f, 3.f);
  for (int n : {1, 5, 16, 31, 32, 33, 64, 100, 768, 3072}) {
    CAPTURE(n);
    std::vector<float> x((size_t)n);
    for (float& v : x) v = u(rng);
    if (n >= 64)
      for (int j = 32; j < 64; ++j) x[j] = 0.f;  // an all-zero block: scale 0, values 0
    if (n >= 100) {  // ties: block 2's max is 127, so id = 1 and x = k + 0.5 lands on a tie
      for (int j = 64; j < 96; ++j) x[j] = (float)(j - 80) + 0.5f;
      x[64] = 127.f;
    }
    const int64_t nb = q8_blocks(n);
    std::vector<int8_t> q_ref((size_t)(nb * kQ8Block), 99);
    std::vector<float> d_ref((size_t)nb, -1.f);
    ref::quantize_q8(x.data(), n, q_ref.data(), d_ref.data());
    for (int64_t b = 0; b < nb; ++b) {
      float amax = 0.f;
      for (int j = 0; j < kQ8Block && b * kQ8Block + j < n; ++j) amax = std::fmax(amax, std::fabs(x[b * kQ8Block + j]));
      CHECK(d_ref[b] == amax / 127.f);
      for (int j = 0; j < kQ8Block; ++j) {
        const int64_t i = b * kQ8Block + j;
        if (i >= n) {
          CHECK(q_ref[i] == 0);
          continue;
        }
        CHECK(std::fabs(d_ref[b] * (float)q_ref[i] - x[i]) <= d_ref[b] * 0.5f * (1.f + 1e-5f) + 1e-30f);
      }
    }
    if (n >= 100) {
      CHECK(q_ref[64 + 1] == -14);  // x = -14.5 -> -14 (the even neighbour)
      CHECK(q_ref[64 + 2] == -14);  // -13.5 -> -14
      CHECK(q_ref[64 + 3] == -12);  // -12.5 -> -12
      CHECK(q_ref[64 + 32 - 1] == 16);  // 15.5 -> 16
      CHECK(d_ref[1] == 0.f);
    }
    for_each_variant([&] {
      std::vector<int8_t> q((size_t)(nb * kQ8Block), 99);
      std::vector<float> d((size_t)nb, -1.f);
      kern::quantize_q8(x.data(), n, q.data(), d.data());
      CHECK(q == q_ref);
      CHECK(std::memcmp(d.data(), d_ref.data(), d.size() * sizeof(float)) == 0);
    });
  }
}

TEST_CASE("i8 and q4 x q8 matmul: integer sums exact in every variant, tile and row tail") {
  // Unit scales: each output is an integer sum below 2^24, so every variant's float sum is exact.
  std::mt19937 rng(71);
  for (WType type : {WType::i8, WType::q4}) {
    CAPTURE((int)type);
    // rows and batches: the lane tiles' 16 rows x 16 activation rows (kern_avx512vnni.cpp), their row
    // tails, and their 8-, 4- and 1-row activation tails; cols 10000: activation rows in chunks (the
    // block corrections' table), 131104: no table (int8_lanes.inc).
    for (int rows : {1, 3, 4, 9, 21})
      for (int cols : {1, 31, 32, 33, 96, 200, 1000, 10000, 131104}) {
        CAPTURE(rows);
        CAPTURE(cols);
        const Mat m = make_mat(rng, type, rows, cols, true, false);
        const int64_t nb = q8_blocks(cols);
        for (int batch : {1, 2, 3, 5, 9, 17, 31}) {
          CAPTURE(batch);
          if (cols > 1000 && (rows > 4 || batch > 17)) continue;  // the long rows: a few shapes suffice
          const Acts a = int_acts(rng, batch, cols);
          std::vector<float> expect((size_t)rows * batch);
          for (int t = 0; t < batch; ++t)
            for (int r = 0; r < rows; ++r) {
              int64_t s = 0;
              for (int j = 0; j < cols; ++j)
                s += (int64_t)std::lround(m.values[(size_t)r * cols + j]) * a.q[(size_t)(t * nb * kQ8Block + j)];
              expect[(size_t)t * rows + r] = (float)s;
            }
          std::vector<float> y((size_t)rows * batch, NAN);
          ref::dense_matmul_q8(m.view(), a.view(nb), batch, y.data(), rows);
          CHECK(y == expect);
          for_each_variant([&] {
            for (const Workers* w : {(const Workers*)nullptr, &kSerial}) {
              std::vector<float> yk((size_t)rows * batch, NAN);
              kern::dense_matmul_q8(m.view(), a.view(nb), batch, yk.data(), w);
              CHECK(yk == expect);
            }
          });
        }
      }
  }
}

TEST_CASE("i8 and q4 x q8 matmul with real scales: kern equals ref, a block equals its rows bit for bit") {
  std::mt19937 rng(72);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (WType type : {WType::i8, WType::q4}) {
    CAPTURE((int)type);
    for (int rows : {5, 16, 29})
      for (int cols : {33, 128, 768, 1100}) {
        CAPTURE(rows);
        CAPTURE(cols);
        const Mat m = make_mat(rng, type, rows, cols, false, true);
        const int64_t nb = q8_blocks(cols);
        for (int batch : {1, 4, 7, 29}) {
          CAPTURE(batch);
          std::vector<float> X((size_t)batch * cols);
          for (float& v : X) v = u(rng);
          const Acts a = quantised_acts(X, batch, cols);
          std::vector<float> expect((size_t)rows * batch), mag((size_t)rows * batch, 0.f);
          ref::dense_matmul_q8(m.view(), a.view(nb), batch, expect.data(), rows);
          for (int t = 0; t < batch; ++t)  // sum |w x| per output: the scale of its rounding
            for (int r = 0; r < rows; ++r) {
              double s = std::fabs(m.bias[r]);
              for (int j = 0; j < cols; ++j) s += std::fabs((double)m.values[(size_t)r * cols + j] * X[(size_t)t * cols + j]);
              mag[(size_t)t * rows + r] = (float)s;
            }
          for_each_variant([&] {
            std::vector<float> y((size_t)rows * batch, NAN);
            kern::dense_matmul_q8(m.view(), a.view(nb), batch, y.data(), nullptr);
            for (size_t i = 0; i < y.size(); ++i) CHECK(std::fabs(y[i] - expect[i]) <= 2e-6f * mag[i]);
            for (int t = 0; t < batch; ++t) {  // one row at a time: the matvec, the same sums
              std::vector<float> one((size_t)rows, NAN);
              const Q8Rows row{a.q.data() + t * nb * kQ8Block, a.d.data() + t * nb, nb};
              kern::dense_matmul_q8(m.view(), row, 1, one.data(), nullptr);
              CHECK(std::memcmp(one.data(), y.data() + (size_t)t * rows, rows * sizeof(float)) == 0);
            }
          });
        }
      }
  }
}

TEST_CASE("packed panels: a prompt block equals its rows one at a time, bit for bit, across chunks of blocks") {
  // From 16 activation rows the lane GEMM prepares a tile's weight blocks once into a panel, 32 blocks
  // at a time (int8_lanes.inc), and carries each output's partial sum from chunk to chunk: it must give
  // the one-row matvec's bits. cols 3072: 3 whole chunks; 3000: the i8 rows' partial last block in the
  // last chunk; 2056: that block alone in its chunk. rows 37: a tail of weight rows under 8 and 16
  // lanes. batch 64: whole tiles; 31: the 8-, 4- and 1-row tails; 130: a 128-row pass, then 2 directly.
  std::mt19937 rng(74);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const int rows = 37;
  for (WType type : {WType::i8, WType::q4})
    for (int cols : {3072, 3000, 2056}) {
      CAPTURE((int)type);
      CAPTURE(cols);
      const Mat m = make_mat(rng, type, rows, cols, false, true);
      const int64_t nb = q8_blocks(cols);
      for (int batch : {64, 31, 130}) {
        CAPTURE(batch);
        std::vector<float> X((size_t)batch * cols);
        for (float& v : X) v = u(rng);
        const Acts a = quantised_acts(X, batch, cols);
        std::vector<float> expect((size_t)rows * batch);
        ref::dense_matmul_q8(m.view(), a.view(nb), batch, expect.data(), rows);
        for_each_variant([&] {
          std::vector<float> y((size_t)rows * batch, NAN);
          kern::dense_matmul_q8(m.view(), a.view(nb), batch, y.data(), nullptr);
          float worst = 0;  // against ref: float rounding only (sums of ~3000 terms of size <= 1)
          for (size_t i = 0; i < y.size(); ++i) worst = std::fmax(worst, std::fabs(y[i] - expect[i]));
          CHECK(worst <= 1e-3f);
          int differ = 0;
          for (int t = 0; t < batch; ++t) {
            std::vector<float> one((size_t)rows, NAN);
            const Q8Rows row{a.q.data() + t * nb * kQ8Block, a.d.data() + t * nb, nb};
            kern::dense_matmul_q8(m.view(), row, 1, one.data(), nullptr);
            differ += std::memcmp(one.data(), y.data() + (size_t)t * rows, rows * sizeof(float)) != 0;
          }
          CHECK(differ == 0);
        });
      }
    }
}

TEST_CASE("quantised activations: a matvec within sum_b max|x_b| / 254 * sum_b |w| of the float one") {
  // x_j = d_b q_j + e_j with |e_j| <= d_b / 2 = max|x_b| / 254, so |W x - W x~| <= sum_b max|x_b| / 254 *
  // sum_{j in b} |w_j| per row (plus float rounding). The measured share of that bound is printed.
  std::mt19937 rng(73);
  std::normal_distribution<float> g(0.f, 1.f);
  double worst_share = 0, mean_rel = 0;
  int outputs = 0;
  for (WType type : {WType::i8, WType::q4})
    for (int cols : {64, 768, 3072}) {
      const int rows = 64;
      const Mat m = make_mat(rng, type, rows, cols, false, false);
      std::vector<float> x((size_t)cols);
      for (float& v : x) v = g(rng);
      x[7] = 6.f;  // an outlier: its block's step is larger
      const int64_t nb = q8_blocks(cols);
      Acts a;
      a.q.resize((size_t)(nb * kQ8Block));
      a.d.resize((size_t)nb);
      DenseMatrix D = m.view();
      DenseMatrix F = D;
      F.w = Weights(m.values.data());
      std::vector<float> yf((size_t)rows);
      ref::dense_matvec(F, x.data(), yf.data());
      for_each_variant([&] {
        kern::quantize_q8(x.data(), cols, a.q.data(), a.d.data());
        std::vector<float> y((size_t)rows);
        kern::dense_matmul_q8(D, a.view(nb), 1, y.data(), nullptr);
        for (int r = 0; r < rows; ++r) {
          double bound = 0, mag = 0, ynorm = 0;
          for (int64_t b = 0; b < nb; ++b) {
            double amax = 0, wsum = 0;
            for (int j = 0; j < kQ8Block && b * kQ8Block + j < cols; ++j) {
              const int64_t i = b * kQ8Block + j;
              amax = std::fmax(amax, std::fabs(x[i]));
              wsum += std::fabs(m.values[(size_t)r * cols + i]);
              mag += std::fabs(m.values[(size_t)r * cols + i] * x[i]);
            }
            bound += amax / 254.0 * wsum;
          }
          ynorm = std::fabs(yf[r]);
          const double err = std::fabs((double)y[r] - yf[r]);
          CHECK(err <= bound + 4e-6 * mag);
          worst_share = std::fmax(worst_share, err / bound);
          mean_rel += err / (mag / std::sqrt((double)cols) + 1e-30);
          (void)ynorm;
          ++outputs;
        }
      });
    }
  MESSAGE("largest error / bound " << worst_share << ", mean error / (sum|w x| / sqrt(n)) " << mean_rel / outputs);
}
