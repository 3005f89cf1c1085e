// The dispatch point (dispatch.h): the scalar table, CPU detection, the active table and the kern::
// entry points that call through it. Compiled with the target's baseline flags only.
#include "kernels/dispatch.h"

#include <atomic>
#include <cassert>
#include <cstring>

#include "kernels/simd.h"
#include "quantum/quantum.h"

#if QTF_SIMD && (defined(__x86_64__) || defined(__i386__))
#define QTF_X86 1
#include <cpuid.h>

#include <xsimd/config/xsimd_cpuid.hpp>
#elif QTF_SIMD
#define QTF_X86 0
#include <xsimd/config/xsimd_cpuid.hpp>
#endif

namespace qtf {
namespace kern {
namespace {

void tt_step_scalar(const tt::Step& s, const float* in, float* out) { tt::step_scalar(s, in, out, 0); }
void dense_matmul_scalar(const DenseMatrix& W, const float* X, int batch, float* Y, int64_t ldy, const float*, int64_t,
                         float*) {
  for (int b = 0; b < batch; ++b) ref::dense_matvec(W, X + (int64_t)b * W.cols, Y + b * ldy);
}

const Table kScalar = {
    "scalar",         1,
    &tt_step_scalar,  &ref::transpose, &dense_matmul_scalar,
    &ref::dot,        &ref::axpy,
    &ref::layer_norm, &ref::softmax_inplace,
    &ref::gelu_inplace, &ref::silu_inplace, &ref::tanh_inplace,
    &quantum::fidelities_scalar, &quantum::daruan_fourier_scalar,
    &ref::rms_norm, &ref::rope, &ref::silu_mul, &ref::attend,
    &ref::quantize_q8, &ref::dense_matmul_q8,
};

#if QTF_SIMD && QTF_X86
// xsimd 8.1's available_architectures() reads the CPUID feature bits (and reports what they say), but
// does not ask the OS whether it saves the AVX / AVX-512 register state (XGETBV), nor for AVX512VL
// (the AVX-512 file is compiled with it). Both are checked here.
uint64_t xcr0() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;  // OSXSAVE
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}
bool cpu_f16c() {  // half <-> float conversions (the f16 weight loads of the AVX2 and AVX-512 variants)
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
bool cpu_avx512vl() {
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 31));
}
[[maybe_unused]] bool cpu_avxvnni() {  // VEX vpdpbusd (CPUID.(EAX=7,ECX=1):EAX bit 4; subleaf 1 exists where 7.0:EAX >= 1)
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || a < 1) return false;
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
}
bool cpu_avx512vnni() {  // vpdpbusd (CPUID.7.0:ECX bit 11)
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 11));
}
#endif

#if QTF_SIMD && !QTF_X86
// sdot/udot (FEAT_DotProd): the ASIMDDP bit of Linux's AT_HWCAP (bit 20). Where the OS does not say
// (bare metal, other systems), no: the plain NEON table runs, which every ARMv8-A CPU can.
// On ARM only the OS can say which extensions user code may run (the ID registers are privileged), as
// xgetbv answers for the register state on x86. getauxval and AT_HWCAP come from <sys/auxv.h>, which
// xsimd_cpuid.hpp includes on Linux ARM for its own NEON check: the core includes no OS header itself
// (tests/repo/check_layering.cmake) and asks nothing more of the OS than xsimd already does.
bool cpu_neon_dotprod() {
#if defined(__aarch64__) && defined(__linux__) && defined(AT_HWCAP)
  return (getauxval(AT_HWCAP) >> 20) & 1;  // HWCAP_ASIMDDP
#else
  return false;
#endif
}
#endif

bool supported_by_cpu(const Table& t) {
  if (&t == &kScalar) return true;
#if QTF_SIMD && QTF_X86
  const auto cpu = xsimd::available_architectures();
  const uint64_t xcr = xcr0();
  const bool os_avx = (xcr & 0x6) == 0x6, os_avx512 = (xcr & 0xe6) == 0xe6;
  if (&t == table_sse2()) return true;  // the x86-64 baseline
  const bool avx2 = os_avx && cpu.avx2 && cpu.fma3_avx2 && cpu_f16c();
  if (&t == table_avx2()) return avx2;
  const bool avx512 = os_avx512 && avx2 && cpu.avx512f && cpu.avx512dq && cpu.avx512bw && cpu_avx512vl();
#ifdef QTF_AVXVNNI_STANDIN  // a test build's avxvnni runs the EVEX vpdpbusd (CMakeLists.txt)
  if (&t == table_avxvnni()) return avx512 && cpu_avx512vnni();
#else
  if (&t == table_avxvnni()) return avx2 && cpu_avxvnni();
#endif
  if (&t == table_avx512()) return avx512;
  if (&t == table_avx512vnni()) return avx512 && cpu_avx512vnni();
  return false;
#elif QTF_SIMD
  const bool neon = xsimd::available_architectures().neon;
  if (&t == table_neon()) return neon;
  if (&t == table_neondot()) return neon && cpu_neon_dotprod();
  return false;
#else
  return false;
#endif
}

// A table that is `base` with its integer dot products from `k` (avxvnni, avx512vnni, neondot); null where either
// is not compiled. Called once per variant, in baseline code (dispatch.h says why).
const Table* with_int8_kernels(const Table* base, const Int8Kernels* k, const char* name, Table* storage) {
  if (base == nullptr || k == nullptr) return nullptr;
  *storage = *base;
  storage->name = name;
  storage->quantize_q8 = k->quantize_q8;
  storage->dense_matmul_q8 = k->dense_matmul_q8;
  return storage;
}

}  // namespace

const Table* table_avx512vnni() {
  static Table t;
  static const Table* const p = with_int8_kernels(table_avx512(), avx512vnni_int8_kernels(), "avx512vnni", &t);
  return p;
}

const Table* table_avxvnni() {
  static Table t;
  static const Table* const p = with_int8_kernels(table_avx2(), avxvnni_int8_kernels(), "avxvnni", &t);
  return p;
}

const Table* table_neondot() {
  static Table t;
  static const Table* const p = with_int8_kernels(table_neon(), neondot_int8_kernels(), "neondot", &t);
  return p;
}

namespace {

// Compiled variants, scalar first, the preferred last (among those a CPU runs, the last is the default).
struct Variants {
  static constexpr int kMax = 8;
  const Table* t[kMax];
  bool ok[kMax];
  int n = 0;
  Variants() {
    const Table* all[kMax] = {&kScalar,       table_sse2(),       table_avx2(), table_avxvnni(),
                              table_avx512(), table_avx512vnni(), table_neon(), table_neondot()};
    for (const Table* v : all)
      if (v) t[n] = v, ok[n] = supported_by_cpu(*v), ++n;
  }
};

// Built on demand (a few CPUID instructions): the active table is cached, this is not on a hot path.
Variants variants() { return Variants(); }

const Table* best() {
  const Variants v = variants();
  for (int i = v.n - 1; i >= 0; --i)
    if (v.ok[i]) return v.t[i];
  return &kScalar;
}

std::atomic<const Table*> g_active{nullptr};

}  // namespace

int simd_variant_count() { return variants().n; }
const Table& simd_variant(int i) { return *variants().t[i]; }
bool simd_supported(const Table& t) {
  const Variants v = variants();
  for (int i = 0; i < v.n; ++i)
    if (v.t[i] == &t) return v.ok[i];
  return false;
}

const Table& active() {
  const Table* t = g_active.load(std::memory_order_acquire);
  if (!t) {
    t = best();
    g_active.store(t, std::memory_order_release);
  }
  return *t;
}

const char* simd_arch() { return active().name; }

const char* simd_available() {
  static char list[80];  // the same text whoever writes it
  char text[80] = "";
  const Variants v = variants();
  for (int i = 0; i < v.n; ++i)
    if (v.ok[i]) {
      if (text[0]) std::strcat(text, ",");
      std::strcat(text, v.t[i]->name);
    }
  std::memcpy(list, text, sizeof list);
  return list;
}

Status select_simd(const char* name) {
  if (!name || !std::strcmp(name, "auto") || !name[0]) {
    g_active.store(best(), std::memory_order_release);
    return Status::success();
  }
  static const char* const kKnown[] = {"scalar", "sse2", "avx2", "avxvnni", "avx512", "avx512vnni", "neon", "neondot"};
  bool known = false;
  for (const char* k : kKnown) known = known || !std::strcmp(k, name);
  if (!known)
    return Status::error(Err::invalid_argument, "unknown SIMD variant '%s' (scalar, sse2, avx2, avxvnni, avx512, avx512vnni, neon, neondot or auto)",
                         name);
  const Variants v = variants();
  for (int i = 0; i < v.n; ++i)
    if (!std::strcmp(v.t[i]->name, name)) {
      if (!v.ok[i])
        return Status::error(Err::unsupported, "SIMD variant '%s' is not supported by this CPU (available: %s)", name,
                             simd_available());
      g_active.store(v.t[i], std::memory_order_release);
      return Status::success();
    }
  return Status::error(Err::unsupported, "SIMD variant '%s' is not compiled into this build (available: %s)", name,
                       simd_available());
}

// ---- the kern:: entry points

size_t tt_workspace_floats(const TTShape& s, int batch) { return tt::workspace_floats(s, batch); }

void tt_matmul(const TTMatrix& W, int rank, const float* X, int batch, float* Y, float* workspace) {
  tt::run_plan(tt::best_plan(W, rank, batch), W, batch, X, Y, workspace, active().tt_step);
}

void tt_matvec(const TTMatrix& W, int rank, const float* x, float* y, float* workspace) {
  tt_matmul(W, rank, x, 1, y, workspace);
}

void tt_matvec(const TTMatrix& W, const tt::Plan& plan, const float* x, float* y, float* workspace) {
  tt::run_plan(plan, W, 1, x, y, workspace, active().tt_step);
}

void tt_matmul(const TTMatrix& W, const tt::Plan& plan, const float* X, int batch, float* Y, float* workspace) {
  // A block as columns (tt_plan.h) where it pays; else one vector at a time: the same arithmetic as one
  // run with P times the blocks, but each vector's intermediates stay in L1/L2.
  if (tt::columns_pay(W, plan, batch))
    return tt::run_columns(plan, W, batch, X, Y, workspace, active().tt_step, active().transpose);
  const int64_t M = W.shape.rows(), N = W.shape.cols();
  for (int b = 0; b < batch; ++b) tt_matvec(W, plan, X + b * N, Y + b * M, workspace);
}

void tt_matmul(const TTMatrix& W, const tt::Plan& one, const float* X, int batch, float* Y, float* workspace,
               const Workers* w) {
  if (w == nullptr || w->threads < 2) return tt_matmul(W, one, X, batch, Y, workspace);
  const int64_t M = W.shape.rows(), N = W.shape.cols();
  if (batch >= w->threads) {  // a range of the vectors per thread, each in its own part of the workspace
    return parallel_for(w, w->threads, [&](int part, int) {
      const int b0 = batch * part / w->threads, b1 = batch * (part + 1) / w->threads;
      if (b1 > b0)
        tt_matmul(W, one, X + b0 * N, b1 - b0, Y + b0 * M, workspace + tt::workspace_floats(W.shape, b0));
    });
  }
  // One vector at a time in parts (tt::part_plan): one wake-up of the threads per vector, not per step.
  if (tt::part_split(one).count < 2 || one.flops * batch < kParallelFlops)
    return tt_matmul(W, one, X, batch, Y, workspace);
  for (int b = 0; b < batch; ++b) tt_matvec_parts(W, one, X + b * N, Y + b * M, workspace, w);
}

void tt_matvec_parts(const TTMatrix& W, const tt::Plan& one, const float* x, float* y, float* workspace,
                     const Workers* w) {
  const tt::PartsJob job{&W, &one, y};
  tt_matvec_parts(&job, 1, x, workspace, w);
}

void tt_matvec_parts(const tt::PartsJob* jobs, int count, const float* x, float* workspace, const Workers* w,
                     const PartsThen* then) {
  if (count > tt::kMaxPartsJobs) {  // in groups (the workspace of each group is that of the first)
    tt_matvec_parts(jobs, tt::kMaxPartsJobs, x, workspace, w);
    return tt_matvec_parts(jobs + tt::kMaxPartsJobs, count - tt::kMaxPartsJobs, x, workspace, w, then);
  }
  struct Job {
    tt::PartSplit split;
    float* ws;         // its parts' workspaces
    int parts, first;  // its parts, and its first task
  } job[tt::kMaxPartsJobs];
  const int threads = w ? w->threads : 1;
  int tasks = 0;
  for (int j = 0; j < count; ++j) {
    job[j].split = tt::part_split(*jobs[j].plan);
    job[j].parts = job[j].split.count < threads ? job[j].split.count : threads;
    if (job[j].parts == 0) {  // one step: no parts
      tt_matvec(*jobs[j].W, *jobs[j].plan, x, jobs[j].y, workspace);
      if (jobs[j].epilogue) jobs[j].epilogue(jobs[j].arg, 0, jobs[j].W->shape.rows());
    }
    job[j].ws = workspace;
    job[j].first = tasks;
    tasks += job[j].parts;
    workspace += tt::workspace_floats(jobs[j].W->shape, 1, threads);
  }
  const tt::StepFn step = active().tt_step;
  auto run_part = [&](int task, int thread) {
    int j = count - 1;
    while (job[j].parts == 0 || task < job[j].first) --j;
    const tt::PartsJob& J = jobs[j];
    const int part = task - job[j].first;
    tt::Plan sub;
    int lo, n;
    int64_t x_offset;
    if (!tt::part_plan(*J.plan, part, job[j].parts, &sub, &lo, &n, &x_offset)) return;
    const int64_t buffer = tt::max_intermediate(J.W->shape), M = J.W->shape.rows();
    // Each area holds two intermediates, then a sum. The intermediates go in the running thread's area
    // (the same memory every token, so it stays in that core's cache, whichever parts the thread
    // claims); rows of y are written in place (+ bias), sums into the part's own area (added below).
    const size_t area = tt::part_workspace_floats(J.W->shape);
    float* ws = job[j].ws + (size_t)thread * area;
    const int64_t row0 = (int64_t)lo * (M / job[j].split.count), rows = (int64_t)n * (M / job[j].split.count);
    float* out = job[j].split.sums ? job[j].ws + (size_t)part * area + 2 * buffer : J.y + row0;
    tt::run_steps(sub, x + x_offset, out, ws, buffer, step);
    if (job[j].split.sums) return;
    if (J.W->bias)
      for (int64_t i = 0; i < rows; ++i) out[i] += J.W->bias[row0 + i];
    if (J.epilogue) J.epilogue(J.arg, row0, rows);
  };
  auto sums = [&] {
    for (int j = 0; j < count; ++j) {  // the partial sums, in part order, + bias
      if (job[j].parts == 0 || !job[j].split.sums) continue;
      const TTMatrix& W = *jobs[j].W;
      const int64_t M = W.shape.rows(), buffer = tt::max_intermediate(W.shape);
      const size_t per_part = tt::part_workspace_floats(W.shape);
      float* y = jobs[j].y;
      const float* first = job[j].ws + 2 * buffer;
      for (int64_t i = 0; i < M; ++i) y[i] = first[i];
      for (int p = 1; p < job[j].parts; ++p) axpy(1.f, job[j].ws + p * per_part + 2 * buffer, y, (int)M);
      if (W.bias) axpy(1.f, W.bias, y, (int)M);
      if (jobs[j].epilogue) jobs[j].epilogue(jobs[j].arg, 0, M);
    }
  };
  if (then == nullptr) {
    parallel_for(w, tasks, run_part);
    return sums();
  }
  // The last part to end (acq_rel: it sees every part's writes) adds the sums and runs finish; the
  // tasks after the parts wait for that (ready: release/acquire).
  std::atomic<int> parts_done{0};
  std::atomic<bool> ready{false};
  auto end = [&] {
    sums();
    if (then->finish) then->finish(then->finish_arg);
    ready.store(true, std::memory_order_release);
  };
  if (tasks == 0) end();
  parallel_for(w, tasks + then->tasks, [&](int task, int thread) {
    if (task < tasks) {
      run_part(task, thread);
      if (parts_done.fetch_add(1, std::memory_order_acq_rel) + 1 == tasks) end();
      return;
    }
    while (!ready.load(std::memory_order_acquire)) {
    }
    then->task(then->task_arg, task - tasks, thread);
  });
}

namespace {
// Batches from this size on, through rows of at least kBroadcastCols, run in broadcast form when given
// scratch. Smaller batches waste most lanes of a vector of tokens; shorter rows fit in L1 anyway, and
// there the dot form's lanes split the sum more finely (with broadcasts, shakespeare-qllm-113k's
// block-vs-token logits, d = 48, were 1.5x test_batch's 1e-5 on NEON).
constexpr int kBroadcastBatch = 16, kBroadcastCols = 256;

// Columns [k0, k1) of X's pack: Xt[k * lanes + b] = X[b * cols + k], lanes = batch_lanes(batch), zeros
// in lanes [batch, lanes). The variant's transpose, into columns `lanes` floats apart.
void pack_columns(const float* X, int batch, int cols, int k0, int k1, float* Xt) {
  const int64_t lanes = batch_lanes(batch);
  active().transpose(X + k0, batch, k1 - k0, cols, Xt + k0 * lanes, lanes);
  for (int64_t k = k0; lanes > batch && k < k1; ++k)
    for (int64_t b = batch; b < lanes; ++b) Xt[k * lanes + b] = 0.f;
}

// A GEMM on threads: tiles of rows x tokens, claimed one at a time (host/pool.h), so a thread slowed
// down (another process on its core, a busier cache) takes fewer tiles instead of holding the others
// up. About kTilesPerThread tiles each: rows first (each weight read once per token tile, and the
// weights are most of the bytes); the tokens are split too where the rows give too few tiles (the
// shorter rows: d = 288 gives 24 tiles of 12 rows, 1.5 per thread at 16 threads). Tile edges are
// multiples of the kernels' register tiles (rows: row_unit; tokens: kTokenUnit), the last tile takes
// what is left: every output goes through the same kind of register tile, in the same order, as
// without threads, so the results are the same bits whatever the thread count.
// QTF_TILES_PER_THREAD and QTF_MIN_TILE_TOKENS (-D at build time) override the split for A/B builds on
// a many-core machine (bench/README.md "Serial parts of a prompt block").
#ifndef QTF_TILES_PER_THREAD
#define QTF_TILES_PER_THREAD 4
#endif
#ifndef QTF_MIN_TILE_TOKENS
#define QTF_MIN_TILE_TOKENS 32
#endif
// Guided tiles: where the rows give every tile two row units or more, half as many tiles as the split
// wants cover 3/4 of the rows and as many as it wants, 6 times smaller, the rest, claimed last: the threads
// reach a job's end within a small tile of each other, not a large one (2 threads: pp128 +1-7%,
// bench/README.md "Serial parts of a prompt block"). QTF_GUIDED_TILES=0 builds the even split for A/B runs.
#ifndef QTF_GUIDED_TILES
#define QTF_GUIDED_TILES 1
#endif
constexpr int kTilesPerThread = QTF_TILES_PER_THREAD;
constexpr int kTokenUnit = 16;  // the AVX-512 vector of tokens (and a multiple of every int8 tile's)
constexpr int kMinTileTokens = QTF_MIN_TILE_TOKENS;  // two vectors: the broadcast GEMM's widest register tile
static_assert(kTilesPerThread >= 1 && kMinTileTokens >= kTokenUnit && kMinTileTokens % kTokenUnit == 0,
              "QTF_TILES_PER_THREAD >= 1; QTF_MIN_TILE_TOKENS a multiple of 16");
struct Tiles {
  int rows, batch, unit;         // unit: rows per register tile that tile edges keep whole
  int row_tiles, tok_tiles, tok;  // tok: tokens per token tile but the last
  int big = 0, big_units = 0;     // guided: the first `big` row tiles share `big_units` units, the rest the others
  int tasks() const { return row_tiles * tok_tiles; }
  int row0(int i) const {
    if (i == row_tiles) return rows;
    if (big == 0) return rows / unit * i / row_tiles * unit;
    if (i <= big) return big_units * i / big * unit;
    return (big_units + (rows / unit - big_units) * (i - big) / (row_tiles - big)) * unit;
  }
  int tok0(int j) const { return j == tok_tiles ? batch : j * tok; }
};

// Fewer tiles where the whole job is small (one token's matvec): each at least about kParallelFlops,
// the work worth a claim, but never fewer than one per thread.
Tiles tiles(int rows, int batch, int unit, int threads, bool split_tokens, int64_t flops) {
  Tiles t{rows, batch, unit, 1, 1, batch};
  const int64_t by_work = flops / kParallelFlops > threads ? flops / kParallelFlops : threads;
  const int want = by_work < kTilesPerThread * threads ? (int)by_work : kTilesPerThread * threads;
  const int units = rows / unit > 0 ? rows / unit : 1;
  t.row_tiles = units < want ? units : want;
  if (QTF_GUIDED_TILES && units >= 2 * want) {
    t.big = want / 2 > 0 ? want / 2 : 1;
    t.big_units = units * 3 / 4;
    const int small = want < units - t.big_units ? want : units - t.big_units;
    t.row_tiles = t.big + small;
  }
  const int most_tok_tiles = split_tokens ? batch / kMinTileTokens : 1;
  int tok_tiles = (want + t.row_tiles - 1) / t.row_tiles;
  if (tok_tiles > most_tok_tiles) tok_tiles = most_tok_tiles;
  if (tok_tiles > 1) {
    t.tok = ((batch + tok_tiles - 1) / tok_tiles + kTokenUnit - 1) / kTokenUnit * kTokenUnit;
    t.tok_tiles = (batch + t.tok - 1) / t.tok;
  }
  return t;
}

// The GEMMs of one input in one job (kern::dense_matmuls): tile(j, r0, r1, b0, b1) makes rows [r0, r1)
// of tokens [b0, b1) of matrix j, then `then` runs on them. The tasks are every matrix's tiles one after
// the other, or (then->one_tile) one tile of each matrix per task. Without threads, or below
// kParallelFlops in all: each matrix whole, on this thread.
template <class Tile>
void gemm_tiles(const DenseMatrix* const* Ms, int count, int batch, int unit, bool split_tokens, const Workers* w,
                const TileThen* then, const Tile& tile) {
  assert(count >= 1 && count <= kMaxGemms);
  int64_t flops = 0;
  for (int j = 0; j < count; ++j) flops += 2ll * Ms[j]->rows * Ms[j]->cols * batch;
  const bool one_tile = then && then->one_tile;
  for (int j = 1; one_tile && j < count; ++j) assert(Ms[j]->rows == Ms[0]->rows);
  auto made = [&](int j, int r0, int r1, int b0, int b1) {
    if (then && then->fn) then->fn(then->arg, one_tile ? -1 : j, r0, r1, b0, b1);
  };
  auto rows_of = [&](int j, int r0, int r1, int b0, int b1) {  // tile j, or every matrix's (one_tile)
    for (int i = one_tile ? 0 : j; i < (one_tile ? count : j + 1); ++i) tile(i, r0, r1, b0, b1);
    made(j, r0, r1, b0, b1);
  };
  if (w == nullptr || w->threads < 2 || flops < kParallelFlops) {
    for (int j = 0; j < (one_tile ? 1 : count); ++j) rows_of(j, 0, Ms[j]->rows, 0, batch);
    return;
  }
  Tiles t[kMaxGemms];
  int first[kMaxGemms + 1] = {0};
  const int groups = one_tile ? 1 : count;
  for (int j = 0; j < groups; ++j) {
    const int64_t f = one_tile ? flops : 2ll * Ms[j]->rows * Ms[j]->cols * batch;
    t[j] = tiles(Ms[j]->rows, batch, unit, w->threads, split_tokens, f);
    first[j + 1] = first[j] + t[j].tasks();
  }
  parallel_for(w, first[groups], [&](int task, int) {
    int j = 0;
    while (task >= first[j + 1]) ++j;
    const Tiles& T = t[j];
    const int i = (task - first[j]) / T.tok_tiles, k = (task - first[j]) % T.tok_tiles;
    const int r0 = T.row0(i), r1 = T.row0(i + 1);
    if (r0 < r1) rows_of(j, r0, r1, T.tok0(k), T.tok0(k + 1));
  });
}

// The broadcast GEMM's register tiles are 12 rows (AVX-512) or 6, then 4, then 1.
constexpr int kGemmRowUnit = 12;
// Columns per part of a pack split over threads: about two parts a thread, at least kPackCols (a
// multiple of 16). The pack is a copy: the same bytes however it is split.
constexpr int kPackCols = 32;

}  // namespace

size_t dense_scratch_floats(int rows, int cols, int batch) {
  if (batch < kBroadcastBatch || cols < kBroadcastCols) return 0;
  return (size_t)batch_lanes(batch) * ((size_t)cols + (cols > kGemmKBlock ? (size_t)rows : 0));  // Xt, partial sums
}

// The whole block in one layout (lanes = batch_lanes(batch)), whichever tiles the GEMMs that read it
// split it into: a token tile reads its lanes in place, ldx = lanes apart. Split by columns over the
// threads (one hand-off).
void make_rows(const RowMaker* rows, int batch, const Workers* w) {
  if (rows) parallel_for(w, batch, rows->flops, [&](int i, int) { rows->fn(rows->arg, i); });
}

PackedInput pack_input(const float* X, int batch, int cols, float* scratch, const Workers* w, const RowMaker* rows) {
  PackedInput p{X, batch, cols, nullptr, nullptr};
  if (scratch == nullptr || batch < kBroadcastBatch || cols < kBroadcastCols) {
    make_rows(rows, batch, w);
    return p;
  }
  const int64_t lanes = batch_lanes(batch);
  const int threads = w ? w->threads : 1, share = (cols + 2 * threads - 1) / (2 * threads);
  const int per = share > kPackCols ? (share + 15) / 16 * 16 : kPackCols;
  const int chunks = (cols + per - 1) / per;
  // The rows first, in `made` runs (two a thread: a norm's row is a claim's worth of work), then the
  // parts of the pack: a part waits until every run is done (release/acquire on `ready`); it is claimed
  // only after every run was (tasks start in index order), so the runs are in hand and the wait ends.
  const int made = rows == nullptr ? 0 : batch < 2 * threads ? batch : 2 * threads;
  std::atomic<int> ready{0};
  parallel_for(w, made + chunks, [&](int task, int) {
    if (task < made) {
      for (int i = batch * task / made; i < batch * (task + 1) / made; ++i) rows->fn(rows->arg, i);
      ready.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    while (ready.load(std::memory_order_acquire) < made) {
    }
    const int k0 = (task - made) * per, k1 = k0 + per < cols ? k0 + per : cols;
    pack_columns(X, batch, cols, k0, k1, scratch);
  });
  p.xt = scratch;
  p.partial = cols > kGemmKBlock ? scratch + (int64_t)cols * lanes : nullptr;
  return p;
}

// On threads token tile k's partial sums are at partial + tok0(k) * rows (batch_lanes(its tokens) per
// row): together never more than those of the whole batch (tok is a multiple of 4). Matrix j's follow
// those of the matrices before it.
void dense_matmuls(const DenseMatrix* const* Ms, int count, const PackedInput& X, float* const* Ys, const Workers* w,
                   const TileThen* then) {
  const int64_t ldx = batch_lanes(X.batch);
  int64_t before[kMaxGemms] = {0};  // rows of the matrices before j
  for (int j = 1; j < count; ++j) before[j] = before[j - 1] + Ms[j - 1]->rows;
  // The dot form's tiles of tokens end where the batch ends: split only its rows.
  gemm_tiles(Ms, count, X.batch, kGemmRowUnit, X.xt != nullptr, w, then, [&](int j, int r0, int r1, int b0, int b1) {
    const DenseMatrix& M = *Ms[j];
    const int nb = b1 - b0;
    const DenseMatrix rows{r1 - r0, M.cols, M.w.from((int64_t)r0 * M.cols, r0), M.bias ? M.bias + r0 : nullptr};
    float* partial = X.partial ? X.partial + before[j] * ldx + (int64_t)b0 * M.rows + r0 * batch_lanes(nb) : nullptr;
    active().dense_matmul(rows, X.X + (int64_t)b0 * M.cols, nb, Ys[j] + (int64_t)b0 * M.rows + r0, M.rows,
                          X.xt ? X.xt + b0 : nullptr, ldx, partial);
  });
}

void dense_matmul(const DenseMatrix& M, const PackedInput& X, float* Y, const Workers* w) {
  const DenseMatrix* Ms[1] = {&M};
  dense_matmuls(Ms, 1, X, &Y, w, nullptr);
}

void dense_matmul(const DenseMatrix& M, const float* X, int batch, float* Y, float* scratch, const Workers* w) {
  dense_matmul(M, pack_input(X, batch, M.cols, scratch, w), Y, w);
}

bool int_dot_supported(WType t) { return t == WType::i8 || t == WType::q4; }
bool int_dot_preferred(WType t) {
  const char* n = active().name;
  if (!int_dot_supported(t)) return false;
  if (!std::strcmp(n, "avx512")) return t == WType::q4;
  return !std::strcmp(n, "avx512vnni") || !std::strcmp(n, "avxvnni") || !std::strcmp(n, "avx2");
}

void quantize_q8(const float* x, int n, int8_t* q, float* d) { active().quantize_q8(x, n, q, d); }

void quantize_q8_rows(const float* X, int batch, int n, int8_t* q, float* d, const Workers* w, const RowMaker* rows) {
  const int64_t nb = q8_blocks(n);
  // Elementwise, about 4 FLOPs a value: threads only for big blocks.
  parallel_for_runs(w, batch, 4ll * batch * n + (rows ? rows->flops : 0), [&](int b, int) {
    if (rows) rows->fn(rows->arg, b);
    active().quantize_q8(X + (int64_t)b * n, n, q + b * nb * kQ8Block, d + b * nb);
  });
}

// The int8 GEMM's register tiles: 16 rows (int8_lanes.inc's AVX-512 lane tiles; 8 under AVX2, 4 in
// the dot tiles of int8_body.inc, all dividing 16), then 1.
constexpr int kQ8RowUnit = 16;

void dense_matmuls_q8(const DenseMatrix* const* Ms, int count, const Q8Rows& X, int batch, float* const* Ys,
                      const Workers* w, const TileThen* then) {
  gemm_tiles(Ms, count, batch, kQ8RowUnit, true, w, then, [&](int j, int r0, int r1, int b0, int b1) {
    const DenseMatrix& M = *Ms[j];
    const DenseMatrix rows{r1 - r0, M.cols, M.w.from((int64_t)r0 * M.cols, r0), M.bias ? M.bias + r0 : nullptr};
    const Q8Rows x{X.q + (int64_t)b0 * X.blocks * kQ8Block, X.d + (int64_t)b0 * X.blocks, X.blocks};
    active().dense_matmul_q8(rows, x, b1 - b0, Ys[j] + (int64_t)b0 * M.rows + r0, M.rows);
  });
}

void dense_matmul_q8(const DenseMatrix& M, const Q8Rows& X, int batch, float* Y, const Workers* w) {
  const DenseMatrix* Ms[1] = {&M};
  dense_matmuls_q8(Ms, 1, X, batch, &Y, w, nullptr);
}

void dense_matvec(const DenseMatrix& M, const float* x, float* y) {
  active().dense_matmul(M, x, 1, y, M.rows, nullptr, 0, nullptr);
}
void dense_matmul(const DenseMatrix& M, const float* X, int batch, float* Y) {
  active().dense_matmul(M, X, batch, Y, M.rows, nullptr, 0, nullptr);
}
float dot(const float* a, const float* b, int n) { return active().dot(a, b, n); }
void axpy(float a, const float* x, float* y, int n) { active().axpy(a, x, y, n); }
void layer_norm(const float* x, const float* w, const float* b, float eps, int n, float* y) {
  active().layer_norm(x, w, b, eps, n, y);
}
void softmax_inplace(float* x, int n) { active().softmax_inplace(x, n); }
void gelu_inplace(float* x, int n) { active().gelu_inplace(x, n); }
void silu_inplace(float* x, int n) { active().silu_inplace(x, n); }
void rms_norm(const float* x, const float* w, float eps, int n, float* y) { active().rms_norm(x, w, eps, n, y); }
void rope(float* x, int n_heads, int head_dim, const float* cs) { active().rope(x, n_heads, head_dim, cs); }
void silu_mul(float* g, const float* u, int n) { active().silu_mul(g, u, n); }
void attend(const float* q, const float* k, const float* v, size_t stride, int n, int hd, float scale, float* w,
            float* out) {
  active().attend(q, k, v, stride, n, hd, scale, w, out);
}
void tanh_inplace(float* x, int n) { active().tanh_inplace(x, n); }

}  // namespace kern
}  // namespace qtf
