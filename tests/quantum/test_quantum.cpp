// engine/quantum against golden vectors from QuTiP (tools/quantum_golden/gen_golden.py), plus the
// properties the model relies on: entropy bounds, the three DARUAN paths agreeing.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "quantum/quantum.h"
#include "quantum/statevector.h"

using namespace qtf::quantum;

namespace {

constexpr double kTol = 1e-5;

// Whitespace tokens of a golden file, '#' lines skipped.
struct Golden {
  std::istringstream in;
  explicit Golden(const char* name) {
    std::ifstream f(std::string(QTF_SOURCE_DIR "/tests/quantum/golden/") + name);
    REQUIRE_MESSAGE(f.good(), "missing golden file ", name, " (run tools/quantum_golden/gen_golden.py)");
    std::string line, text;
    while (std::getline(f, line))
      if (line.empty() || line[0] != '#') text += line + "\n";
    in.str(text);
  }
  bool next(std::string* tok) { return bool(in >> *tok); }
  void expect(const char* tok) {
    std::string t;
    REQUIRE(next(&t));
    REQUIRE(t == tok);
  }
  int i() {
    int v = 0;
    REQUIRE(bool(in >> v));
    return v;
  }
  double d() {
    double v = 0;
    REQUIRE(bool(in >> v));
    return v;
  }
  std::vector<float> floats(const char* tag, size_t n) {
    expect(tag);
    std::vector<float> v(n);
    for (auto& x : v) x = (float)d();
    return v;
  }
  std::vector<double> doubles(const char* tag, size_t n) {
    expect(tag);
    std::vector<double> v(n);
    for (auto& x : v) x = d();
    return v;
  }
  // 'state' then 2^Q lines 're im', returned as [re..., im...].
  std::vector<double> state(int Q) {
    expect("state");
    const int N = 1 << Q;
    std::vector<double> v(2 * N);
    for (int b = 0; b < N; ++b) v[b] = d(), v[N + b] = d();
    return v;
  }
};

template <int Q>
void run_gate(State<Q>& s, Golden& g, const std::string& name) {
  if (name == "RX") {
    int w = g.i();
    apply_rx(s, w, (float)g.d());
  } else if (name == "RY") {
    int w = g.i();
    apply_ry(s, w, (float)g.d());
  } else if (name == "RZ") {
    int w = g.i();
    apply_rz(s, w, (float)g.d());
  } else if (name == "H")
    apply_h(s, g.i());
  else if (name == "CNOT") {
    int c = g.i();
    apply_cnot(s, c, g.i());
  } else if (name == "CRX") {
    int c = g.i(), t = g.i();
    apply_crx(s, c, t, (float)g.d());
  } else if (name == "ROT") {
    int w = g.i();
    float a = (float)g.d(), b = (float)g.d();
    apply_rot(s, w, a, b, (float)g.d());
  } else
    FAIL("unknown gate ", name);
}

template <int Q>
void check_circuit(Golden& g, int n_gates) {
  State<Q> s;
  s.set_zero_state();
  std::string name;
  for (int k = 0; k < n_gates; ++k) {
    REQUIRE(g.next(&name));
    run_gate(s, g, name);
  }
  const std::vector<double> want = g.state(Q);
  double err = 0;
  for (int b = 0; b < (1 << Q); ++b)
    err = std::fmax(err, std::fmax(std::fabs(s.re[b] - want[b]), std::fabs(s.im[b] - want[(1 << Q) + b])));
  CHECK(err < kTol);
  float z[Q];
  expect_z(s, z);
  const std::vector<double> zw = g.doubles("z", Q);
  for (int i = 0; i < Q; ++i) CHECK(std::fabs(z[i] - zw[i]) < kTol);
  g.expect("entropy");
  CHECK(std::fabs(entanglement_entropy(s) - g.d()) < kTol);
}

template <int Q>
double entropy_of(const State<Q>& s, int* sweeps = nullptr) {
  return entanglement_entropy(s, sweeps);
}

}  // namespace

TEST_CASE("random circuits match QuTiP: state, <Z>, entropy (Q = 2, 4, 6, 8)") {
  Golden g("circuits.txt");
  std::string tok;
  int count[9] = {};
  while (g.next(&tok)) {
    REQUIRE(tok == "circuit");
    const int Q = g.i(), n = g.i();
    CAPTURE(Q);
    CAPTURE(count[Q]);
    switch (Q) {
      case 2:
        check_circuit<2>(g, n);
        break;
      case 4:
        check_circuit<4>(g, n);
        break;
      case 6:
        check_circuit<6>(g, n);
        break;
      case 8:
        check_circuit<8>(g, n);
        break;
      default:
        FAIL("bad Q ", Q);
    }
    ++count[Q];
  }
  CHECK(count[2] > 0);
  CHECK(count[4] > 0);
  CHECK(count[6] > 0);
  CHECK(count[8] > 0);
}

TEST_CASE("encoder matches QuTiP: z and S for Q = 2..8, 0..3 layers") {
  Golden g("encoder.txt");
  std::string tok;
  int cases = 0;
  while (g.next(&tok)) {
    REQUIRE(tok == "encoder");
    const int Q = g.i(), L = g.i();
    CAPTURE(Q);
    CAPTURE(L);
    const std::vector<float> u = g.floats("u", Q), p = g.floats("params", (size_t)L * Q * 3);
    const std::vector<double> zw = g.doubles("z", Q);
    g.expect("entropy");
    const double Sw = g.d();
    float z[kMaxQubits];
    const float S = encoder(Q, L, u.data(), p.data(), z);
    for (int i = 0; i < Q; ++i) CHECK(std::fabs(z[i] - zw[i]) < kTol);
    CHECK(std::fabs(S - Sw) < kTol);
    CHECK(encoder_flops(Q, L) > 0);
    ++cases;
  }
  CHECK(cases == 16);
}

TEST_CASE("feature states and fidelities match QuTiP") {
  Golden g("features.txt");
  std::string tok;
  int sets = 0;
  while (g.next(&tok)) {
    REQUIRE(tok == "features");
    const int Q = g.i(), K = g.i(), SF = state_floats(Q);
    CAPTURE(Q);
    // States kept with a stride larger than one state, as in the KV cache (heads interleaved).
    const size_t stride = (size_t)SF + 5;
    std::vector<float> states(stride * K, -7.f);
    for (int k = 0; k < K; ++k) {
      const std::vector<float> u = g.floats("u", Q), var = g.floats("var", 2 * Q * 3);
      const std::vector<double> want = g.state(Q);
      float* st = states.data() + k * stride;
      feature_state(Q, u.data(), var.data(), st);
      double err = 0;
      for (int b = 0; b < SF; ++b) err = std::fmax(err, std::fabs(st[b] - want[b]));
      CHECK(err < kTol);
      CHECK(st[SF] == -7.f);  // writes exactly state_floats(Q)
    }
    const std::vector<double> fid = g.doubles("fidelity", (size_t)K * K);
    std::vector<float> out(K);
    for (int a = 0; a < K; ++a) {
      fidelities(Q, states.data() + a * stride, states.data(), stride, K, out.data());
      for (int b = 0; b < K; ++b) CHECK(std::fabs(out[b] - fid[a * K + b]) < kTol);
    }
    ++sets;
  }
  CHECK(sets == 4);
}

TEST_CASE("DARUAN g(x) matches QuTiP on the quantum and fourier paths") {
  Golden g("daruan.txt");
  std::string tok;
  while (g.next(&tok)) {
    REQUIRE(tok == "daruan");
    const int D = g.i(), C = g.i(), NX = g.i();
    CAPTURE(D);
    const std::vector<float> theta = g.floats("theta", (size_t)C * (D + 1) * 2), w = g.floats("w", (size_t)C * D),
                             b = g.floats("b", (size_t)C * D), x = g.floats("x", NX);
    const std::vector<double> want = g.doubles("g", (size_t)C * NX);
    const std::vector<float> ones(C, 1.f), zeros(C, 0.f);
    DaruanParams p;
    p.channels = C, p.depth = D, p.theta = theta.data(), p.w = w.data(), p.b = b.data();
    p.a = ones.data(), p.e = zeros.data(), p.s = zeros.data();  // act = g
    std::vector<float> table(daruan_fourier_floats(C, D));
    daruan_fourier_build(p, table.data());
    for (int k = 0; k < NX; ++k) {
      std::vector<float> xs(C, x[k]), yq(C), yf(C);
      daruan_quantum(p, xs.data(), yq.data());
      daruan_fourier(p, table.data(), xs.data(), yf.data());
      for (int c = 0; c < C; ++c) {
        CHECK(std::fabs(yq[c] - want[c * NX + k]) < kTol);
        CHECK(std::fabs(yf[c] - want[c * NX + k]) < kTol);
      }
    }
  }
}

TEST_CASE("gates: PennyLane conventions and wire order") {
  State<2> s;
  s.set_zero_state();
  apply_rx(s, 0, 3.14159265f);  // X on wire 0 (up to phase): |00> -> -i|10>, index 2
  CHECK(std::fabs(s.im[2] + 1.f) < 1e-6);
  CHECK(std::fabs(s.re[0]) < 1e-6);
  apply_cnot(s, 0, 1);  // control set: -> -i|11>
  CHECK(std::fabs(s.im[3] + 1.f) < 1e-6);
  float z[2];
  expect_z(s, z);
  CHECK(z[0] == doctest::Approx(-1.f));
  CHECK(z[1] == doctest::Approx(-1.f));

  // Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi), on a non-trivial state.
  State<3> a, b;
  a.set_zero_state();
  for (int w = 0; w < 3; ++w) apply_h(a, w), apply_rx(a, w, 0.3f * w + 0.2f);
  b = a;
  apply_rot(a, 1, 0.4f, -1.2f, 2.1f);
  apply_rz(b, 1, 0.4f), apply_ry(b, 1, -1.2f), apply_rz(b, 1, 2.1f);
  for (int i = 0; i < 8; ++i) {
    CHECK(std::fabs(a.re[i] - b.re[i]) < 1e-6);
    CHECK(std::fabs(a.im[i] - b.im[i]) < 1e-6);
  }
}

TEST_CASE("entropy bounds: 0 for product states, Q/2 for Bell pairs across the cut") {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> ang(-3.f, 3.f);
  SUBCASE("Q = 8") {
    State<8> s;
    s.set_zero_state();
    for (int w = 0; w < 8; ++w) apply_rot(s, w, ang(rng), ang(rng), ang(rng));
    CHECK(std::fabs(entropy_of(s)) < 1e-6);
    s.set_zero_state();
    for (int i = 0; i < 4; ++i) apply_h(s, i), apply_cnot(s, i, i + 4);
    CHECK(std::fabs(entropy_of(s) - 4.0) < 1e-6);
    for (int w = 0; w < 8; ++w) apply_rot(s, w, ang(rng), ang(rng), ang(rng));  // local gates: S unchanged
    CHECK(std::fabs(entropy_of(s) - 4.0) < 1e-5);
    s.set_zero_state();  // GHZ: one bit
    apply_h(s, 0);
    for (int i = 0; i < 7; ++i) apply_cnot(s, i, i + 1);
    CHECK(std::fabs(entropy_of(s) - 1.0) < 1e-6);
  }
  SUBCASE("Q = 2, 4, 6") {
    State<2> s2;
    s2.set_zero_state();
    apply_h(s2, 0), apply_cnot(s2, 0, 1);
    CHECK(std::fabs(entropy_of(s2) - 1.0) < 1e-6);
    State<4> s4;
    s4.set_zero_state();
    for (int i = 0; i < 2; ++i) apply_h(s4, i), apply_cnot(s4, i, i + 2);
    CHECK(std::fabs(entropy_of(s4) - 2.0) < 1e-6);
    State<6> s6;
    s6.set_zero_state();
    for (int w = 0; w < 6; ++w) apply_ry(s6, w, ang(rng));
    CHECK(std::fabs(entropy_of(s6)) < 1e-6);
  }
  SUBCASE("random encoder states stay within [0, Q/2] and Jacobi converges") {
    for (int trial = 0; trial < 50; ++trial) {
      float u[8], p[3 * 8 * 3], z[8];
      for (float& v : u) v = std::tanh(ang(rng));
      for (float& v : p) v = ang(rng);
      for (int Q = 2; Q <= 8; Q += 2) {
        const float S = encoder(Q, 3, u, p, z);
        CHECK(S >= -1e-6f);
        CHECK(S <= Q / 2 + 1e-5f);
        for (int i = 0; i < Q; ++i) CHECK(std::fabs(z[i]) <= 1.f + 1e-5f);
        // By gates made beforehand (as a context does once per layer): the same bits.
        WireGates gates[3 * 8];
        encoder_gates_build(Q, 3, p, gates);
        float zg[8];
        CHECK(encoder(Q, 3, u, gates, zg) == S);
        CHECK(std::memcmp(zg, z, Q * sizeof(float)) == 0);
      }
    }
    State<8> s;
    s.set_zero_state();
    for (int k = 0; k < 40; ++k)
      apply_rot(s, k % 8, ang(rng), ang(rng), ang(rng)), apply_crx(s, k % 8, (k + 3) % 8, ang(rng));
    int sweeps = 0;
    const double S = entropy_of(s, &sweeps);
    CHECK(S > 0.5);
    CHECK(sweeps < 30);  // hit the tolerance, not the cap
  }
}

namespace {

struct RandomDaruan {
  int C, D;
  std::vector<float> theta, w, b, a, e, s;
  DaruanParams p;
  RandomDaruan(int channels, int depth, unsigned seed, float w_scale) : C(channels), D(depth) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> ang(-3.14159f, 3.14159f), uni(-1.f, 1.f);
    std::normal_distribution<float> nrm(0.f, 1.f);
    theta.resize((size_t)C * (D + 1) * 2), w.resize((size_t)C * D), b.resize((size_t)C * D);
    a.resize(C), e.resize(C), s.resize(C);
    for (auto& v : theta) v = ang(rng);
    for (auto& v : w) v = w_scale * nrm(rng);
    for (auto& v : b) v = uni(rng);
    for (int c = 0; c < C; ++c) a[c] = uni(rng), e[c] = uni(rng), s[c] = c % 3 == 0 ? 0.f : uni(rng);
    p.channels = C, p.depth = D, p.theta = theta.data(), p.w = w.data(), p.b = b.data();
    p.a = a.data(), p.e = e.data(), p.s = s.data();
  }
};

// Runs body() once per SIMD variant this build has and this CPU runs, that variant selected.
template <class F>
void for_each_variant(F body) {
  for (int i = 0; i < qtf::kern::simd_variant_count(); ++i) {
    const qtf::kern::Table& t = qtf::kern::simd_variant(i);
    if (!qtf::kern::simd_supported(t)) continue;
    CAPTURE(std::string(t.name));
    REQUIRE(qtf::kern::select_simd(t.name).ok());
    body();
  }
  REQUIRE(qtf::kern::select_simd("auto").ok());
}

}  // namespace

TEST_CASE("SIMD variants of fidelities and of the DARUAN fourier path equal their scalar twins") {
  for_each_variant([] {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> uni(-1.f, 1.f);
    for (int Q : {2, 4, 6, 8}) {
      CAPTURE(Q);
      const int SF = state_floats(Q), n = 7;
      const size_t stride = (size_t)SF + 3;  // keys not packed back to back
      std::vector<float> query(SF), keys(stride * n);
      for (float& v : query) v = uni(rng);
      for (float& v : keys) v = uni(rng);
      std::vector<float> want(n), got(n, -1.f);
      fidelities_scalar(Q, query.data(), keys.data(), stride, n, want.data());
      fidelities(Q, query.data(), keys.data(), stride, n, got.data());
      for (int j = 0; j < n; ++j) CHECK(std::fabs(got[j] - want[j]) <= 1e-5f * (1.f + want[j]));
    }
    for (int C : {1, 5, 16, 17, 32, 37}) {
      for (int D = 1; D <= 4; ++D) {
        CAPTURE(C);
        CAPTURE(D);
        RandomDaruan r(C, D, 200 + C * 8 + D, 1.f);
        std::vector<float> table(daruan_fourier_floats(C, D));
        daruan_fourier_build(r.p, table.data());
        std::vector<float> x(C), want(C), got(C);
        for (int k = 0; k < 50; ++k) {
          for (int c = 0; c < C; ++c) x[c] = -8.f + 0.33f * k + 0.07f * c;
          daruan_fourier_scalar(r.p, table.data(), x.data(), want.data());
          daruan_fourier(r.p, table.data(), x.data(), got.data());
          for (int c = 0; c < C; ++c) CHECK(std::fabs(got[c] - want[c]) < 1e-5f * (1.f + std::fabs(want[c])));
        }
      }
    }
  });
}

TEST_CASE("DARUAN fourier path equals the quantum path on random parameters and a wide x range") {
  for_each_variant([] {
    for (int D = 1; D <= 6; ++D) {
      CAPTURE(D);
      RandomDaruan r(24, D, 100 + D, 1.5f);
      const std::vector<float> ones(r.C, 1.f), zeros(r.C, 0.f);
      r.p.a = ones.data(), r.p.e = zeros.data(), r.p.s = zeros.data();  // compare g itself
      std::vector<float> table(daruan_fourier_floats(r.C, D));
      daruan_fourier_build(r.p, table.data());
      std::vector<float> x(r.C), yq(r.C), yf(r.C);
      double worst = 0;
      for (int k = 0; k <= 2000; ++k) {
        for (int c = 0; c < r.C; ++c) x[c] = -60.f + 0.06f * k + 0.013f * c;
        daruan_quantum(r.p, x.data(), yq.data());
        daruan_fourier(r.p, table.data(), x.data(), yf.data());
        for (int c = 0; c < r.C; ++c) worst = std::fmax(worst, std::fabs(yq[c] - yf[c]));
      }
      MESSAGE(std::string(qtf::kern::simd_arch()), " depth ", D, ": max |fourier g - quantum g| on [-60, 60] = ", worst);
      CHECK(worst <= 1e-5);
    }
  });
}

TEST_CASE("DARUAN activation formula, aliasing and the spline path") {
  RandomDaruan r(16, 3, 5, 1.0f);
  SUBCASE("act = a g + e + s x sigmoid(x), in place") {
    std::vector<float> x(r.C), y(r.C);
    for (int c = 0; c < r.C; ++c) x[c] = -4.f + 0.5f * c;
    DaruanParams g_only = r.p;
    const std::vector<float> ones(r.C, 1.f), zeros(r.C, 0.f);
    g_only.a = ones.data(), g_only.e = zeros.data(), g_only.s = zeros.data();
    daruan_quantum(g_only, x.data(), y.data());
    std::vector<float> act = x;
    daruan_quantum(r.p, act.data(), act.data());
    for (int c = 0; c < r.C; ++c) {
      const double want = r.a[c] * y[c] + r.e[c] + r.s[c] * x[c] / (1 + std::exp(-(double)x[c]));
      CHECK(std::fabs(act[c] - want) < 1e-5);
    }
  }
  SUBCASE("spline error below its bound on [lo, hi], clamped outside") {
    SplineGrid grid;  // [-6, 6], 257 knots
    std::vector<float> table(daruan_spline_floats(r.C, grid));
    daruan_spline_build(r.p, grid, table.data());
    const float err = daruan_spline_max_error(r.p, grid, table.data());
    MESSAGE("spline max error (257 knots on [-6, 6], |w| ~ N(0,1)): ", err);
    CHECK(err > 0.f);
    CHECK(err < 1e-5f);
    // An independent check on points the error probe does not use.
    const std::vector<float> ones(r.C, 1.f), zeros(r.C, 0.f);
    DaruanParams g_only = r.p;
    g_only.a = ones.data(), g_only.e = zeros.data(), g_only.s = zeros.data();
    std::vector<float> x(r.C), ys(r.C), yq(r.C);
    for (int k = 0; k < 997; ++k) {
      for (int c = 0; c < r.C; ++c) x[c] = -6.f + 12.f * (k + 0.377f) / 997;
      daruan_spline(g_only, grid, table.data(), x.data(), ys.data());
      daruan_quantum(g_only, x.data(), yq.data());
      for (int c = 0; c < r.C; ++c) CHECK(std::fabs(ys[c] - yq[c]) < 1e-5);
    }
    // Outside the range g is held at g(lo) / g(hi).
    std::vector<float> lo(r.C, grid.lo), hi(r.C, grid.hi), far_lo(r.C, -40.f), far_hi(r.C, 1e6f), y1(r.C), y2(r.C);
    daruan_spline(g_only, grid, table.data(), lo.data(), y1.data());
    daruan_spline(g_only, grid, table.data(), far_lo.data(), y2.data());
    for (int c = 0; c < r.C; ++c) CHECK(y1[c] == y2[c]);
    daruan_spline(g_only, grid, table.data(), hi.data(), y1.data());
    daruan_spline(g_only, grid, table.data(), far_hi.data(), y2.data());
    for (int c = 0; c < r.C; ++c) CHECK(y1[c] == y2[c]);
    // Coarser grids are worse (the error is measured, not assumed).
    SplineGrid coarse{-6.f, 6.f, 33};
    std::vector<float> t2(daruan_spline_floats(r.C, coarse));
    daruan_spline_build(r.p, coarse, t2.data());
    CHECK(daruan_spline_max_error(r.p, coarse, t2.data()) > err);
  }
  SUBCASE("FLOP counts") {
    CHECK(daruan_flops_per_channel(DaruanPath::spline, 3) < daruan_flops_per_channel(DaruanPath::quantum, 3));
    CHECK(daruan_flops_per_channel(DaruanPath::fourier, 3) > 0);
    CHECK(fidelity_flops(4) == 8 * 16 + 4);
    CHECK(feature_state_flops(6) > feature_state_flops(4));
    CHECK(encoder_flops(4, 3) > encoder_flops(4, 2));
  }
}

// A row's activation split across threads (forward.cpp: blocks of kDaruanChannelBlock channels) must give
// exactly what the whole row gives: each slice reads its own channels' parameters and storage.
TEST_CASE("DARUAN over channel slices equals the whole row, on every path") {
  const int C = 2 * kDaruanChannelBlock + 37, D = 2;  // three slices, the last one short
  RandomDaruan r(C, D, 77, 1.f);
  SplineGrid grid;
  std::vector<float> fourier(daruan_fourier_floats(C, D)), spline(daruan_spline_floats(C, grid));
  daruan_fourier_build(r.p, fourier.data());
  daruan_spline_build(r.p, grid, spline.data());
  std::vector<float> x(C);
  for (int c = 0; c < C; ++c) x[c] = -5.f + 10.f * (float)((c * 37) % C) / C;
  for_each_variant([&] {
    for (DaruanPath path : {DaruanPath::quantum, DaruanPath::fourier, DaruanPath::spline}) {
      CAPTURE((int)path);
      auto run = [&](const DaruanParams& p, int c0, float* y) {
        const float* in = x.data() + c0;
        if (path == DaruanPath::quantum) daruan_quantum(p, in, y);
        else if (path == DaruanPath::fourier) daruan_fourier(p, fourier.data() + daruan_fourier_offset(c0, D), in, y);
        else daruan_spline(p, grid, spline.data() + daruan_spline_floats(c0, grid), in, y);
      };
      std::vector<float> whole(C), sliced(C, -99.f);
      run(r.p, 0, whole.data());
      for (int c0 = 0; c0 < C; c0 += kDaruanChannelBlock) {
        const int c1 = c0 + kDaruanChannelBlock < C ? c0 + kDaruanChannelBlock : C;
        run(daruan_slice(r.p, c0, c1), c0, sliced.data() + c0);
      }
      int differ = 0;
      for (int c = 0; c < C; ++c) differ += whole[c] != sliced[c];
      CHECK(differ == 0);
    }
  });
}
