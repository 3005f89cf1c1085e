// TT-matrix matvec (kern:: SIMD and the ref:: scalar loop) per model shape and run-time rank, against
// Eigen's GEMV on the equivalent dense matrix (row- and column-major) and our own dense kernel.
// Counters: items/s = matvecs per second; FLOP/s = useful FLOPs per second of that method
// (TT: tt_matvec_flops at the run-time rank; dense: 2*M*N). Also: threads' costs, the prompt GEMM, and
// one head of attention per head size (attend/, attend_ref/).
#include <benchmark/benchmark.h>

#include <Eigen/Dense>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "host/pool.h"
#include "kernels/dispatch.h"
#include "kernels/kernels.h"
#include "kernels/tt_plan.h"
#include "simd_env.h"

using namespace qtf;

namespace {

constexpr int kStoredRank = 16;
const int kRanks[] = {2, 4, 8, 16};

struct ShapeCase {
  const char* name;
  std::vector<int> m, n;  // out factors, in factors
};

const ShapeCase kShapes[] = {
    {"128x128_4x4x8", {4, 4, 8}, {4, 4, 8}},
    {"128x128_8x16", {8, 16}, {8, 16}},
    {"512x128_8x8x8<-4x4x8", {8, 8, 8}, {4, 4, 8}},
    {"128x512_4x4x8<-8x8x8", {4, 4, 8}, {8, 8, 8}},
    {"512x512_8x8x8", {8, 8, 8}, {8, 8, 8}},
    {"384x384_4x12x8", {4, 12, 8}, {4, 12, 8}},
    {"768x768_8x12x8", {8, 12, 8}, {8, 12, 8}},
    {"3072x768_12x16x16<-8x12x8", {12, 16, 16}, {8, 12, 8}},
    {"768x3072_8x12x8<-12x16x16", {8, 12, 8}, {12, 16, 16}},
};
const int kBlocks[] = {4, 8, 16, 32};  // vectors per block (a prompt block's rows of one rank)

// A TT matrix with random cores at stored rank kStoredRank, and its dense equivalent.
struct Problem {
  TTShape shape;
  std::vector<float> cores[kMaxTTFactors], bias, x;
  TTMatrix W;
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> dense_rm;
  Eigen::MatrixXf dense_cm;

  explicit Problem(const ShapeCase& c) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    shape.K = (int)c.m.size();
    shape.r[0] = shape.r[shape.K] = 1;
    for (int k = 0; k < shape.K; ++k) shape.m[k] = c.m[k], shape.n[k] = c.n[k];
    for (int b = 1; b < shape.K; ++b) shape.r[b] = kStoredRank;
    for (int k = 0; k < shape.K; ++k) {
      cores[k].resize((size_t)shape.r[k] * shape.m[k] * shape.n[k] * shape.r[k + 1]);
      for (float& v : cores[k]) v = u(rng);
      W.cores[k] = cores[k].data();
    }
    W.shape = shape;
    const int64_t M = shape.rows(), N = shape.cols();
    bias.resize((size_t)M);
    for (float& v : bias) v = u(rng);
    x.resize((size_t)N);
    for (float& v : x) v = u(rng);

    // Dense W (no bias): column j is W e_j.
    dense_rm.resize(M, N);
    std::vector<float> e((size_t)N, 0.f), col((size_t)M), ws(kern::tt_workspace_floats(shape, 1));
    for (int64_t j = 0; j < N; ++j) {
      e[(size_t)j] = 1.f;
      kern::tt_matvec(W, kStoredRank, e.data(), col.data(), ws.data());  // tested equal to ref::
      for (int64_t i = 0; i < M; ++i) dense_rm(i, j) = col[(size_t)i];
      e[(size_t)j] = 0.f;
    }
    dense_cm = dense_rm;
    W.bias = bias.data();
  }
};

void set_counters(benchmark::State& state, int64_t flops) {
  state.SetItemsProcessed(state.iterations());
  state.counters["FLOP/s"] = benchmark::Counter((double)flops, benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
  state.counters["FLOP/call"] = (double)flops;
}

template <bool kSimd>
void tt_matvec_bench(benchmark::State& state, const Problem* p, int rank) {
  std::vector<float> y((size_t)p->shape.rows()), ws(kern::tt_workspace_floats(p->shape, 1));
  for (auto _ : state) {
    if (kSimd)
      kern::tt_matvec(p->W, rank, p->x.data(), y.data(), ws.data());
    else
      ref::tt_matvec(p->W, rank, p->x.data(), y.data(), ws.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, tt_matvec_flops(p->shape, rank));
}

// As a context runs it: the plan made and its cores packed once (tt::pack_plan), then the TT step of
// the variant in use (step == null) or the given one (the AVX2 and the 512-bit step, compared on one
// CPU).
void tt_packed_bench(benchmark::State& state, const Problem* p, int rank, tt::StepFn step) {
  std::vector<float> y((size_t)p->shape.rows()), ws(kern::tt_workspace_floats(p->shape, 1));
  tt::Plan plan = tt::best_plan(p->W, rank, 1);
  std::vector<float> pack(tt::packed_floats(plan) + 16);
  float* at = pack.data() + (16 - (reinterpret_cast<uintptr_t>(pack.data()) / sizeof(float)) % 16) % 16;
  tt::pack_plan(&plan, at);
  for (auto _ : state) {
    if (step) tt::run_plan(plan, p->W, 1, p->x.data(), y.data(), ws.data(), step);
    else kern::tt_matvec(p->W, plan, p->x.data(), y.data(), ws.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, tt_matvec_flops(p->shape, rank));
}

template <class Matrix>
void eigen_gemv_bench(benchmark::State& state, const Matrix* dense, const Problem* p) {
  const Eigen::Map<const Eigen::VectorXf> x(p->x.data(), (Eigen::Index)p->x.size());
  const Eigen::Map<const Eigen::VectorXf> b(p->bias.data(), (Eigen::Index)p->bias.size());
  Eigen::VectorXf y(dense->rows());
  for (auto _ : state) {
    y.noalias() = *dense * x;
    y += b;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2 * (int64_t)dense->rows() * dense->cols());
}

void kern_dense_bench(benchmark::State& state, const Problem* p) {
  DenseMatrix D;
  D.rows = (int)p->dense_rm.rows(), D.cols = (int)p->dense_rm.cols(), D.w = p->dense_rm.data(), D.bias = p->bias.data();
  std::vector<float> y((size_t)D.rows);
  for (auto _ : state) {
    kern::dense_matvec(D, p->x.data(), y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2 * (int64_t)D.rows * D.cols);
}

// A block of vectors through a context's packed plan, as kern::tt_matmul runs it (columns where
// tt::columns_pay says so), as columns (tt::run_columns), or one vector at a time. FLOPs per block.
enum class BlockForm { chosen, columns, vectors };
void tt_block_bench(benchmark::State& state, const Problem* p, int rank, int batch, BlockForm form) {
  const int64_t M = p->shape.rows(), N = p->shape.cols();
  std::vector<float> X((size_t)(N * batch)), Y((size_t)(M * batch)), ws(kern::tt_workspace_floats(p->shape, batch));
  for (int b = 0; b < batch; ++b)
    for (int64_t j = 0; j < N; ++j) X[(size_t)(b * N + j)] = p->x[(size_t)((j + 7 * b) % N)];
  tt::Plan plan = tt::best_plan(p->W, rank, 1);
  std::vector<float> pack(tt::packed_floats(plan) + 16);
  float* at = pack.data() + (16 - (reinterpret_cast<uintptr_t>(pack.data()) / sizeof(float)) % 16) % 16;
  tt::pack_plan(&plan, at);
  for (auto _ : state) {
    if (form == BlockForm::chosen) {
      kern::tt_matmul(p->W, plan, X.data(), batch, Y.data(), ws.data());
    } else if (form == BlockForm::columns) {
      tt::run_columns(plan, p->W, batch, X.data(), Y.data(), ws.data(), kern::active().tt_step, kern::active().transpose);
    } else {
      for (int b = 0; b < batch; ++b) kern::tt_matvec(p->W, plan, X.data() + b * N, Y.data() + b * M, ws.data());
    }
    benchmark::DoNotOptimize(Y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, tt_matvec_flops(p->shape, rank) * batch);
}

// The dense GEMM of a prompt block (kern::dense_matmul over `batch` vectors): the d=768 model's shapes
// (rows x cols: q/k/v/o 768x768, up 3072x768, down 768x3072), random f32 weights, one thread; "dots"
// without scratch (the dot form), "bcast" with it (X transposed once, the broadcast form).
struct Gemm {
  int rows, cols;
  std::vector<float> w, bias, X, Y, scratch;
  Gemm(int r, int c, int batch) : rows(r), cols(c) {
    std::mt19937 rng(9);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    for (auto* v : {&w, &bias, &X}) v->resize(v == &w ? (size_t)r * c : v == &bias ? (size_t)r : (size_t)c * batch);
    for (auto* v : {&w, &bias, &X})
      for (float& f : *v) f = u(rng);
    Y.resize((size_t)r * batch);
    scratch.resize(kern::dense_scratch_floats(r, c, batch) + 1);
  }
};

void kern_gemm_bench(benchmark::State& state, int rows, int cols, int batch, bool bcast) {
  Gemm g(rows, cols, batch);
  DenseMatrix D;
  D.rows = rows, D.cols = cols, D.w = g.w.data(), D.bias = g.bias.data();
  for (auto _ : state) {
    kern::dense_matmul(D, g.X.data(), batch, g.Y.data(), bcast ? g.scratch.data() : nullptr, nullptr);
    benchmark::DoNotOptimize(g.Y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2ll * rows * cols * batch);
}

// The same GEMM on quantised weights (random bytes: i8 with a scale per row, q4 blocks with scale 0.01),
// as a prompt block runs it: "float" widens the weights in the broadcast form (kern::dense_matmul),
// "int" quantises the block's inputs once (kern::quantize_q8_rows, counted) and runs the integer dot
// products (kern::dense_matmul_q8; docs/quantize.md "Integer dot products").
void kern_gemm_quant_bench(benchmark::State& state, int rows, int cols, int batch, WType type, bool integer) {
  Gemm g(rows, cols, batch);
  std::mt19937 rng(10);
  const int64_t row_bytes = type == WType::q4 ? q4_row_bytes(cols) : cols;
  std::vector<uint8_t> w((size_t)(rows * row_bytes));
  for (auto& b : w) b = (uint8_t)rng();
  std::vector<float> scales((size_t)rows, 0.01f);
  if (type == WType::q4)
    for (int64_t i = 0; i < rows * row_bytes; i += kQ4BlockBytes) w[(size_t)i] = 0x1f, w[(size_t)i + 1] = 0x21;  // 0.0101
  DenseMatrix D;
  D.rows = rows, D.cols = cols, D.bias = g.bias.data();
  D.w = type == WType::q4 ? Weights::q4(w.data(), cols) : Weights(WType::i8, w.data(), scales.data(), 1.f);
  const int64_t nb = q8_blocks(cols);
  std::vector<int8_t> q((size_t)(batch * nb * kQ8Block));
  std::vector<float> d((size_t)(batch * nb));
  for (auto _ : state) {
    if (integer) {
      kern::quantize_q8_rows(g.X.data(), batch, cols, q.data(), d.data());
      kern::dense_matmul_q8(D, Q8Rows{q.data(), d.data(), nb}, batch, g.Y.data(), nullptr);
    } else {
      kern::dense_matmul(D, g.X.data(), batch, g.Y.data(), g.scratch.data(), nullptr);
    }
    benchmark::DoNotOptimize(g.Y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2ll * rows * cols * batch);
}

// Threads, for one token's work: a pool region with no work (wake-up and join), a region pair handing a
// vector from one split to the next (as one linear's output parts feed the next linear: each part
// writes its slice of a 3072-float vector, then every part reads all of it), and one vector through a
// d=768 model's TT matrix in parts (kern::tt_matvec_parts; 1 thread: the serial matvec).
void pool_region_bench(benchmark::State& state, int threads) {
  host::ThreadPool pool;
  if (!pool.start(threads).ok()) return state.SkipWithError("pool");
  std::vector<int> hits((size_t)threads * 16);
  for (auto _ : state) parallel_for(pool.workers(), threads, [&](int i, int) { hits[(size_t)i * 16] += 1; });
  benchmark::DoNotOptimize(hits.data());
}

void pool_handoff_bench(benchmark::State& state, int threads) {
  host::ThreadPool pool;
  if (!pool.start(threads).ok()) return state.SkipWithError("pool");
  constexpr int n = 3072;
  std::vector<float> v(n), sums((size_t)threads * 16);
  float step = 0.f;
  for (auto _ : state) {
    step += 1.f;
    parallel_for(pool.workers(), threads, [&](int i, int) {
      for (int k = n * i / threads; k < n * (i + 1) / threads; ++k) v[(size_t)k] = step + (float)k;
    });
    parallel_for(pool.workers(), threads, [&](int i, int) { sums[(size_t)i * 16] = kern::dot(v.data(), v.data(), n); });
  }
  benchmark::DoNotOptimize(sums.data());
}

void tt_parts_bench(benchmark::State& state, const Problem* p, int rank, int threads) {
  host::ThreadPool pool;
  if (!pool.start(threads).ok()) return state.SkipWithError("pool");
  const int64_t M = p->shape.rows();
  std::vector<float> y((size_t)M), ws(tt::workspace_floats(p->shape, 1, threads));
  tt::Plan plan = tt::best_plan(p->W, rank, 1);
  const int parts = std::min(threads, tt::part_split(plan).count);
  std::vector<float> pack(tt::packed_floats(plan) + tt::part_packed_floats(plan, parts) + 16);
  float* at = pack.data() + (16 - (reinterpret_cast<uintptr_t>(pack.data()) / sizeof(float)) % 16) % 16;
  tt::pack_plan(&plan, at);
  tt::pack_parts(&plan, parts, at + tt::packed_floats(plan));
  for (auto _ : state) {
    if (threads == 1) kern::tt_matvec(p->W, plan, p->x.data(), y.data(), ws.data());
    else kern::tt_matvec_parts(p->W, plan, p->x.data(), y.data(), ws.data(), pool.workers());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, tt_matvec_flops(p->shape, rank));
}

// One head of attention (kern::attend, or the scalar ref::attend) at head size hd over n cached positions,
// the rows kv_dim = 6 * hd apart as in a 6-head model's cache (one token's call per head in prompts and
// decode). FLOPs: 2 n hd for the scores and 2 n hd for the weighted values.
void attend_bench(benchmark::State& state, int hd, int n, bool simd) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const size_t stride = (size_t)6 * hd;
  std::vector<float> q((size_t)hd), k((size_t)n * stride), v((size_t)n * stride), w((size_t)n), out((size_t)hd);
  for (auto* x : {&q, &k, &v})
    for (float& f : *x) f = u(rng);
  const float scale = 1.f / std::sqrt((float)hd);
  for (auto _ : state) {
    (simd ? kern::attend : ref::attend)(q.data(), k.data(), v.data(), stride, n, hd, scale, w.data(), out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 4ll * n * hd);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<Problem*> problems;  // live until exit: the benchmarks point into them
  for (const ShapeCase& c : kShapes) {
    const Problem* p = problems.emplace_back(new Problem(c));
    const std::string shape = c.name;
    benchmark::RegisterBenchmark(("eigen_gemv_rowmajor/" + shape).c_str(), eigen_gemv_bench<decltype(p->dense_rm)>,
                                 &p->dense_rm, p);
    benchmark::RegisterBenchmark(("eigen_gemv_colmajor/" + shape).c_str(), eigen_gemv_bench<decltype(p->dense_cm)>,
                                 &p->dense_cm, p);
    benchmark::RegisterBenchmark(("kern_dense_matvec/" + shape).c_str(), kern_dense_bench, p);
    for (int rank : kRanks) {
      const std::string suffix = shape + "/r" + std::to_string(rank);
      benchmark::RegisterBenchmark(("tt_kern/" + suffix).c_str(), tt_matvec_bench<true>, p, rank);
      benchmark::RegisterBenchmark(("tt_ref/" + suffix).c_str(), tt_matvec_bench<false>, p, rank);
      benchmark::RegisterBenchmark(("tt_packed/" + suffix).c_str(), tt_packed_bench, p, rank, nullptr);
      for (int batch : kBlocks) {
        const std::string block = suffix + "/b" + std::to_string(batch);
        benchmark::RegisterBenchmark(("tt_block/" + block).c_str(), tt_block_bench, p, rank, batch, BlockForm::chosen);
        benchmark::RegisterBenchmark(("tt_block_columns/" + block).c_str(), tt_block_bench, p, rank, batch,
                                     BlockForm::columns);
        benchmark::RegisterBenchmark(("tt_block_vectors/" + block).c_str(), tt_block_bench, p, rank, batch,
                                     BlockForm::vectors);
      }
      if (kern::table_avx512() && kern::simd_supported(*kern::table_avx512())) {
        benchmark::RegisterBenchmark(("tt_packed_step_avx2/" + suffix).c_str(), tt_packed_bench, p, rank,
                                     &kern::avx2_tt_step);
        benchmark::RegisterBenchmark(("tt_packed_step_avx512/" + suffix).c_str(), tt_packed_bench, p, rank,
                                     &kern::avx512_tt_step);
      }
    }
  }
  for (int threads : {1, 2, 4, 8, 16}) {
    const std::string t = "/t" + std::to_string(threads);
    benchmark::RegisterBenchmark(("pool_region" + t).c_str(), pool_region_bench, threads)->UseRealTime();
    benchmark::RegisterBenchmark(("pool_handoff" + t).c_str(), pool_handoff_bench, threads)->UseRealTime();
    for (size_t i = 0; i < problems.size(); ++i)
      if (problems[i]->shape.rows() * problems[i]->shape.cols() >= 768 * 768)
        benchmark::RegisterBenchmark(("tt_parts/" + std::string(kShapes[i].name) + "/r8" + t).c_str(), tt_parts_bench,
                                     problems[i], 8, threads)
            ->UseRealTime();
  }
  for (const int* rc : {(const int[2]){768, 768}, (const int[2]){3072, 768}, (const int[2]){768, 3072}})
    for (int batch : {8, 16, 32, 64})
      for (bool bcast : {false, true}) {
        const std::string name = std::string("kern_gemm_") + (bcast ? "bcast/" : "dots/") + std::to_string(rc[0]) +
                                 "x" + std::to_string(rc[1]) + "/b" + std::to_string(batch);
        benchmark::RegisterBenchmark(name.c_str(), kern_gemm_bench, rc[0], rc[1], batch, bcast);
      }
  for (const int* rc : {(const int[2]){288, 288}, (const int[2]){768, 768}, (const int[2]){3072, 768},
                        (const int[2]){768, 3072}})
    for (int batch : {1, 8, 16, 32, 64})
      for (WType type : {WType::q4, WType::i8})
        for (bool integer : {false, true}) {
          if (!integer && batch != 1 && batch != 64) continue;  // b8-b32: where packed panels start
          const std::string name = std::string("kern_gemm_") + (type == WType::q4 ? "q4" : "i8") +
                                   (integer ? "_int/" : "_float/") + std::to_string(rc[0]) + "x" +
                                   std::to_string(rc[1]) + "/b" + std::to_string(batch);
          benchmark::RegisterBenchmark(name.c_str(), kern_gemm_quant_bench, rc[0], rc[1], batch, type, integer);
        }
  for (int hd : {8, 16, 32, 48, 64, 80, 96, 100, 128, 160, 256})
    for (int n : {64, 512})
      for (bool simd : {true, false}) {
        const std::string name = std::string(simd ? "attend/" : "attend_ref/") + "hd" + std::to_string(hd) + "/n" +
                                 std::to_string(n);
        benchmark::RegisterBenchmark(name.c_str(), attend_bench, hd, n, simd);
      }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  for (Problem* p : problems) delete p;
  return 0;
}
