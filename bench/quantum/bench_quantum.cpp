// Speed of engine/quantum against a naive dense-unitary simulator built with Eigen: every gate is
// expanded to its 2^Q x 2^Q matrix by Kronecker products and multiplied into the state; the entropy
// uses Eigen's SelfAdjointEigenSolver on rho_A. The baseline is checked against the engine before the
// timings, so both do the same work.
//   build-<dir>/bench/quantum/bench_quantum
#include <benchmark/benchmark.h>

#include <Eigen/Dense>
#include <cmath>
#include <complex>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <unsupported/Eigen/KroneckerProduct>
#include <vector>

#include "quantum/quantum.h"
#include "simd_env.h"
#include "quantum/statevector.h"

using namespace qtf::quantum;
using cf = std::complex<float>;
using Mat = Eigen::MatrixXcf;
using Vec = Eigen::VectorXcf;

namespace {

constexpr int kLayers = 2;  // seed config n_qlayers

std::vector<float> random_vector(size_t n, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// ---- the dense baseline ----
Eigen::Matrix2cf m_rx(float t) {
  const float c = std::cos(t / 2), s = std::sin(t / 2);
  Eigen::Matrix2cf m;
  m << cf(c, 0), cf(0, -s), cf(0, -s), cf(c, 0);
  return m;
}
Eigen::Matrix2cf m_ry(float t) {
  const float c = std::cos(t / 2), s = std::sin(t / 2);
  Eigen::Matrix2cf m;
  m << cf(c, 0), cf(-s, 0), cf(s, 0), cf(c, 0);
  return m;
}
Eigen::Matrix2cf m_rz(float t) {
  Eigen::Matrix2cf m;
  m << std::polar(1.f, -t / 2), cf(0, 0), cf(0, 0), std::polar(1.f, t / 2);
  return m;
}

// I (x) .. (x) g (on wire) (x) .. (x) I, wire 0 leftmost (most significant).
Mat full(int Q, int wire, const Eigen::Matrix2cf& g) {
  Mat u = Mat::Identity(1, 1);
  for (int w = 0; w < Q; ++w) {
    Mat f = w == wire ? Mat(g) : Mat(Mat::Identity(2, 2));
    Mat next = Eigen::kroneckerProduct(u, f);
    u = next;
  }
  return u;
}
Mat full_controlled(int Q, int control, int target, const Eigen::Matrix2cf& g) {
  Eigen::Matrix2cf p0 = Eigen::Matrix2cf::Zero(), p1 = Eigen::Matrix2cf::Zero();
  p0(0, 0) = 1, p1(1, 1) = 1;
  Mat a = Mat::Identity(1, 1), b = Mat::Identity(1, 1);
  for (int w = 0; w < Q; ++w) {
    Mat fa = w == control ? Mat(p0) : Mat(Mat::Identity(2, 2));
    Mat fb = w == control ? Mat(p1) : (w == target ? Mat(g) : Mat(Mat::Identity(2, 2)));
    Mat na = Eigen::kroneckerProduct(a, fa), nb = Eigen::kroneckerProduct(b, fb);
    a = na, b = nb;
  }
  return a + b;
}

void dense_encoding(int Q, const float* u, Vec& psi) {
  for (int i = 0; i < Q; ++i) {
    psi = full(Q, i, m_ry(std::asin(u[i]))) * psi;
    psi = full(Q, i, m_rz(std::acos(u[i] * u[i]))) * psi;
  }
}
void dense_layer(int Q, const float* p, Vec& psi) {
  for (int i = 0; i < Q; ++i) {
    psi = full(Q, i, m_rx(p[3 * i])) * psi;
    psi = full(Q, i, m_rz(p[3 * i + 1])) * psi;
  }
  for (int i = 0; i + 1 < Q; ++i) psi = full_controlled(Q, i, i + 1, m_rx(p[3 * i + 2])) * psi;
}
Vec zero_state(int Q) {
  Vec psi = Vec::Zero(1 << Q);
  psi(0) = 1;
  return psi;
}

float dense_encoder(int Q, const float* u, const float* params, float* z) {
  Vec psi = zero_state(Q);
  dense_encoding(Q, u, psi);
  for (int j = 0; j < kLayers; ++j) dense_layer(Q, params + 3 * Q * j, psi);
  for (int i = 0; i < Q; ++i) {
    double acc = 0;
    for (int b = 0; b < (1 << Q); ++b) acc += std::norm(psi(b)) * ((b >> (Q - 1 - i)) & 1 ? -1 : 1);
    z[i] = (float)acc;
  }
  const int n = 1 << (Q / 2);
  Eigen::MatrixXcd M = Eigen::Map<Mat>(psi.data(), n, n).transpose().cast<std::complex<double>>();  // rows: wires 0..Q/2-1
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXcd> es(M * M.adjoint(), Eigen::EigenvaluesOnly);
  double S = 0;
  for (int k = 0; k < n; ++k) {
    const double p = es.eigenvalues()(k);
    if (p >= 1e-12) S -= p * std::log2(p);
  }
  return (float)S;
}

Vec dense_feature_state(int Q, const float* u, const float* var) {
  Vec psi = zero_state(Q);
  dense_encoding(Q, u, psi);
  dense_layer(Q, var, psi);
  dense_encoding(Q, u, psi);
  dense_layer(Q, var + 3 * Q, psi);
  return psi;
}

void check_baseline(int Q) {
  const auto u = random_vector(Q, -0.9f, 0.9f, 1), p = random_vector(3 * Q * kLayers, -3, 3, 2);
  float z1[8], z2[8];
  const float s1 = encoder(Q, kLayers, u.data(), p.data(), z1), s2 = dense_encoder(Q, u.data(), p.data(), z2);
  float err = std::fabs(s1 - s2);
  for (int i = 0; i < Q; ++i) err = std::fmax(err, std::fabs(z1[i] - z2[i]));
  std::vector<float> st(state_floats(Q));
  feature_state(Q, u.data(), p.data(), st.data());
  const Vec d = dense_feature_state(Q, u.data(), p.data());
  for (int b = 0; b < (1 << Q); ++b) err = std::fmax(err, std::abs(cf(st[b], st[(1 << Q) + b]) - d(b)));
  if (err > 1e-4f) {
    std::fprintf(stderr, "dense baseline disagrees with the engine at Q=%d (%g)\n", Q, err);
    std::abort();
  }
}

// ---- engine ----
void BM_Encoder(benchmark::State& st) {
  const int Q = (int)st.range(0);
  check_baseline(Q);
  const auto u = random_vector(Q, -0.9f, 0.9f, 3), p = random_vector(3 * Q * kLayers, -3, 3, 4);
  float z[8];
  for (auto _ : st) benchmark::DoNotOptimize(encoder(Q, kLayers, u.data(), p.data(), z));
  st.counters["flops"] = (double)encoder_flops(Q, kLayers);
}
BENCHMARK(BM_Encoder)->Arg(4)->Arg(6)->Arg(8);

void BM_DenseEncoder(benchmark::State& st) {
  const int Q = (int)st.range(0);
  const auto u = random_vector(Q, -0.9f, 0.9f, 3), p = random_vector(3 * Q * kLayers, -3, 3, 4);
  float z[8];
  for (auto _ : st) benchmark::DoNotOptimize(dense_encoder(Q, u.data(), p.data(), z));
}
BENCHMARK(BM_DenseEncoder)->Arg(4)->Arg(6)->Arg(8);

template <int Q>
void BM_Entropy(benchmark::State& st) {
  const auto u = random_vector(Q, -0.9f, 0.9f, 5), p = random_vector(3 * Q * kLayers, -3, 3, 6);
  std::vector<float> s(state_floats(Q));
  feature_state(Q, u.data(), p.data(), s.data());
  int sweeps = 0;
  for (auto _ : st) benchmark::DoNotOptimize(entanglement_entropy(s.data(), s.data() + (1 << Q), Q, &sweeps));
  st.counters["sweeps"] = sweeps;
}
BENCHMARK_TEMPLATE(BM_Entropy, 4);
BENCHMARK_TEMPLATE(BM_Entropy, 6);
BENCHMARK_TEMPLATE(BM_Entropy, 8);

void BM_FeatureState(benchmark::State& st) {
  const int Q = (int)st.range(0);
  const auto u = random_vector(Q, -0.9f, 0.9f, 7), v = random_vector(6 * Q, -3, 3, 8);
  std::vector<float> s(state_floats(Q));
  for (auto _ : st) {
    feature_state(Q, u.data(), v.data(), s.data());
    benchmark::ClobberMemory();
  }
  st.counters["flops"] = (double)feature_state_flops(Q);
}
BENCHMARK(BM_FeatureState)->Arg(4)->Arg(6)->Arg(8);

void BM_DenseFeatureState(benchmark::State& st) {
  const int Q = (int)st.range(0);
  const auto u = random_vector(Q, -0.9f, 0.9f, 7), v = random_vector(6 * Q, -3, 3, 8);
  for (auto _ : st) benchmark::DoNotOptimize(dense_feature_state(Q, u.data(), v.data()));
}
BENCHMARK(BM_DenseFeatureState)->Arg(4)->Arg(6)->Arg(8);

// One query against 256 cached keys laid out as in the KV cache (4 heads interleaved); time per key.
constexpr int kKeys = 256, kHeads = 4;
void BM_Fidelity(benchmark::State& st) {
  const int Q = (int)st.range(0), SF = state_floats(Q);
  const auto keys = random_vector((size_t)kKeys * kHeads * SF, -0.2f, 0.2f, 9), q = random_vector(SF, -0.2f, 0.2f, 10);
  std::vector<float> out(kKeys);
  for (auto _ : st) {
    fidelities(Q, q.data(), keys.data(), (size_t)kHeads * SF, kKeys, out.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * kKeys);
}
BENCHMARK(BM_Fidelity)->Arg(4)->Arg(6)->Arg(8);

void BM_DenseFidelity(benchmark::State& st) {  // Eigen's complex dot product per key
  const int Q = (int)st.range(0), N = 1 << Q;
  std::vector<Vec> keys(kKeys, Vec::Random(N));
  const Vec q = Vec::Random(N);
  std::vector<float> out(kKeys);
  for (auto _ : st) {
    for (int j = 0; j < kKeys; ++j) out[j] = std::norm(q.dot(keys[j]));
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * kKeys);
}
BENCHMARK(BM_DenseFidelity)->Arg(4)->Arg(6)->Arg(8);

// ---- DARUAN over d_ff = 512 channels, depth 3; time per element ----
struct Daruan {
  static constexpr int C = 512, D = 3;
  std::vector<float> theta = random_vector((size_t)C * (D + 1) * 2, -3, 3, 11), w = random_vector((size_t)C * D, -1.5f, 1.5f, 12),
                     b = random_vector((size_t)C * D, -1, 1, 13), a = random_vector(C, -1, 1, 14),
                     e = random_vector(C, -1, 1, 15), s = random_vector(C, -1, 1, 16), x = random_vector(C, -4, 4, 17);
  DaruanParams p;
  Daruan() {
    p.channels = C, p.depth = D, p.theta = theta.data(), p.w = w.data(), p.b = b.data();
    p.a = a.data(), p.e = e.data(), p.s = s.data();
  }
};

void BM_Daruan(benchmark::State& st) {
  const auto path = (DaruanPath)st.range(0);
  Daruan d;
  SplineGrid grid;
  std::vector<float> table(path == DaruanPath::fourier ? daruan_fourier_floats(d.C, d.D) : daruan_spline_floats(d.C, grid));
  if (path == DaruanPath::fourier) daruan_fourier_build(d.p, table.data());
  if (path == DaruanPath::spline) daruan_spline_build(d.p, grid, table.data());
  std::vector<float> y(d.C);
  for (auto _ : st) {
    switch (path) {
      case DaruanPath::quantum: daruan_quantum(d.p, d.x.data(), y.data()); break;
      case DaruanPath::fourier: daruan_fourier(d.p, table.data(), d.x.data(), y.data()); break;
      case DaruanPath::spline: daruan_spline(d.p, grid, table.data(), d.x.data(), y.data()); break;
    }
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * d.C);
  st.counters["flops"] = (double)daruan_flops_per_channel(path, d.D);
  if (path == DaruanPath::spline) st.counters["max_err"] = daruan_spline_max_error(d.p, grid, table.data());
}
BENCHMARK(BM_Daruan)->ArgName("path")->Arg(0)->Arg(1)->Arg(2);

void BM_DaruanBuild(benchmark::State& st) {  // load-time cost per layer (512 channels)
  const auto path = (DaruanPath)st.range(0);
  Daruan d;
  SplineGrid grid;
  std::vector<float> table(path == DaruanPath::fourier ? daruan_fourier_floats(d.C, d.D) : daruan_spline_floats(d.C, grid));
  for (auto _ : st) {
    if (path == DaruanPath::fourier) daruan_fourier_build(d.p, table.data());
    else daruan_spline_build(d.p, grid, table.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_DaruanBuild)->ArgName("path")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

// Dense baseline of the one-qubit circuit: Eigen 2x2 complex matrices per gate.
void BM_DenseDaruan(benchmark::State& st) {
  Daruan d;
  std::vector<float> y(d.C);
  for (auto _ : st) {
    for (int c = 0; c < d.C; ++c) {
      const float* t = d.theta.data() + c * (d.D + 1) * 2;
      Eigen::Vector2cf psi(cf(M_SQRT1_2, 0), cf(M_SQRT1_2, 0));
      for (int l = 0; l < d.D; ++l)
        psi = m_rz(d.w[c * d.D + l] * d.x[c] + d.b[c * d.D + l]) * (m_ry(t[2 * l + 1]) * (m_rz(t[2 * l]) * psi));
      psi = m_ry(t[2 * d.D + 1]) * (m_rz(t[2 * d.D]) * psi);
      const float g = std::norm(psi(0)) - std::norm(psi(1)), x = d.x[c];
      y[c] = d.a[c] * g + d.e[c] + d.s[c] * x / (1 + std::exp(-x));
    }
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * d.C);
}
BENCHMARK(BM_DenseDaruan);

}  // namespace

BENCHMARK_MAIN();
