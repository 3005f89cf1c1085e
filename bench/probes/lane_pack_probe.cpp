// Probe (issue 26): what the q4 lane tile's per-block transposes cost on a given x86 CPU, against the same
// tile reading weights already in lane order (as a repack at load would store them). Standalone, not part
// of the engine: the two tiles below follow engine/kernels/kern_avx512vnni.cpp (16 rows, zmm) and
// int8_lanes256.inc with VEX/EVEX vpdpbusd on ymm (8 rows), on q4 blocks (f16 scale + 16 bytes of nibbles).
//   g++ -O2 -march=native -std=c++17 -o /tmp/lane_pack_probe bench/probes/lane_pack_probe.cpp
//   taskset -c 0 /tmp/lane_pack_probe [MiB of weights, default 256] [only the cases whose name has this]
// The file-layout tiles prefetch the next tile's rows as the engine's do (int8_lanes.inc).
// Prints (thread CPU time, best of 5 sweeps), per tile form and tokens, GB/s of q4 weight bytes and ns per 768 x 768 matvec-equivalent,
// plus a plain read of the same bytes (the one-core roofline).
#include <immintrin.h>
#include <ctime>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

namespace {
constexpr int kCols = 768, kNb = kCols / 32, kBlock = 18;
// The thread's CPU time, not the wall clock: on a shared machine a time slice lost to another process is
// not this code's cost (cache and memory contention still are).
double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

inline __m512i bcast4z(const int8_t* p) { int32_t v; std::memcpy(&v, p, 4); return _mm512_set1_epi32(v); }
inline __m256i bcast4y(const int8_t* p) { int32_t v; std::memcpy(&v, p, 4); return _mm256_set1_epi32(v); }

struct Index { alignas(64) int32_t i[16]; };
constexpr Index idx_rows8(int p) {
  Index x{};
  for (int l = 0; l < 16; ++l) x.i[l] = (l % 8 < 4 ? (l % 8) * 4 : 16 + (l % 8 - 4) * 4) + 2 * p + l / 8;
  return x;
}
constexpr Index kB[2] = {idx_rows8(0), idx_rows8(1)};
inline void transpose_4x4(const __m512i* z, __m512i* out) {
  for (int p = 0; p < 2; ++p) {
    const __m512i idx = _mm512_load_si512(kB[p].i);
    const __m512i lo = _mm512_permutex2var_epi32(z[0], idx, z[1]), hi = _mm512_permutex2var_epi32(z[2], idx, z[3]);
    out[2 * p] = _mm512_shuffle_i64x2(lo, hi, 0x44);
    out[2 * p + 1] = _mm512_shuffle_i64x2(lo, hi, 0xEE);
  }
}
inline __m128i ld16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline __m512i load_4x16(const uint8_t* const* rows, int r) {
  __m512i z = _mm512_castsi128_si512(ld16(rows[r] + 2));
  z = _mm512_inserti32x4(z, ld16(rows[r + 1] + 2), 1);
  z = _mm512_inserti32x4(z, ld16(rows[r + 2] + 2), 2);
  return _mm512_inserti32x4(z, ld16(rows[r + 3] + 2), 3);
}
inline __m128i scales8(const uint8_t* const* rows) {
  auto h = [&](int r) { uint16_t v; std::memcpy(&v, rows[r], 2); return (int)v; };
  __m128i s = _mm_cvtsi32_si128(h(0));
  s = _mm_insert_epi16(s, h(1), 1), s = _mm_insert_epi16(s, h(2), 2), s = _mm_insert_epi16(s, h(3), 3);
  s = _mm_insert_epi16(s, h(4), 4), s = _mm_insert_epi16(s, h(5), 5), s = _mm_insert_epi16(s, h(6), 6);
  return _mm_insert_epi16(s, h(7), 7);
}

// 16 rows x T tokens over one 768-column group of q4 rows (file layout), zmm, transposing per block.
template <int T>
void tile16_file(const uint8_t* w, const int8_t* x, const float* xd, const int32_t* corr, float* y) {
  const uint8_t* rows[16];
  for (int r = 0; r < 16; ++r) rows[r] = w + r * kNb * kBlock;
  __m512 F[T];
  for (int t = 0; t < T; ++t) F[t] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(15);
  for (int b = 0; b < kNb; ++b) {
    const uint8_t* p[16];
    for (int r = 0; r < 16; ++r) p[r] = rows[r] + b * kBlock;
    if (b % 3 == 0)  // the next tile's rows, one line per row per 64 bytes, as the engine's lane tile
      for (int r = 0; r < 16; ++r) __builtin_prefetch(p[r] + 16 * kNb * kBlock, 0, 2);
    const __m512i z[4] = {load_4x16(p, 0), load_4x16(p, 4), load_4x16(p, 8), load_4x16(p, 12)};
    __m512i n[4], W[8];
    transpose_4x4(z, n);
    for (int j = 0; j < 4; ++j) W[j] = _mm512_and_si512(n[j], low4), W[j + 4] = _mm512_and_si512(_mm512_srli_epi16(n[j], 4), low4);
    const __m512 dw = _mm512_cvtph_ps(_mm256_set_m128i(scales8(p + 8), scales8(p)));
    for (int t = 0; t < T; ++t) {
      const int8_t* xb = x + t * kCols + b * 32;
      __m512i acc = _mm512_set1_epi32(corr[t * kNb + b]);
      for (int j = 0; j < 8; ++j) acc = _mm512_dpbusd_epi32(acc, W[j], bcast4z(xb + 4 * j));
      F[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(dw, _mm512_set1_ps(xd[t * kNb + b])), F[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * 16, F[t]);
}

// The same tile over lane-ordered blocks: per block 4 x 64 bytes (n[j], lane r = row r's bytes 4j..4j+3)
// then 16 f16 scales (32 bytes): 288 bytes, the file's 16 x 18.
constexpr int kPacked16 = 288;
template <int T>
void tile16_packed(const uint8_t* w, const int8_t* x, const float* xd, const int32_t* corr, float* y) {
  __m512 F[T];
  for (int t = 0; t < T; ++t) F[t] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(15);
  for (int b = 0; b < kNb; ++b) {
    const uint8_t* p = w + b * kPacked16;
    __m512i W[8];
    for (int j = 0; j < 4; ++j) {
      const __m512i n = _mm512_loadu_si512(p + 64 * j);
      W[j] = _mm512_and_si512(n, low4), W[j + 4] = _mm512_and_si512(_mm512_srli_epi16(n, 4), low4);
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 256)));
    for (int t = 0; t < T; ++t) {
      const int8_t* xb = x + t * kCols + b * 32;
      __m512i acc = _mm512_set1_epi32(corr[t * kNb + b]);
      for (int j = 0; j < 8; ++j) acc = _mm512_dpbusd_epi32(acc, W[j], bcast4z(xb + 4 * j));
      F[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(dw, _mm512_set1_ps(xd[t * kNb + b])), F[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * 16, F[t]);
}

// 8 rows, ymm, packed: per block 4 x 32 bytes then 8 scales (16 bytes): 144 bytes.
constexpr int kPacked8 = 144;
template <int T>
void tile8_packed(const uint8_t* w, const int8_t* x, const float* xd, const int32_t* corr, float* y) {
  __m256 F[T];
  for (int t = 0; t < T; ++t) F[t] = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(15);
  for (int b = 0; b < kNb; ++b) {
    const uint8_t* p = w + b * kPacked8;
    __m256i W[8];
    for (int j = 0; j < 4; ++j) {
      const __m256i n = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * j));
      W[j] = _mm256_and_si256(n, low4), W[j + 4] = _mm256_and_si256(_mm256_srli_epi16(n, 4), low4);
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 128)));
    for (int t = 0; t < T; ++t) {
      const int8_t* xb = x + t * kCols + b * 32;
      __m256i acc = _mm256_set1_epi32(corr[t * kNb + b]);
      for (int j = 0; j < 8; ++j) acc = _mm256_dpbusd_epi32(acc, W[j], bcast4y(xb + 4 * j));
      F[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_mul_ps(dw, _mm256_set1_ps(xd[t * kNb + b])), F[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * 8, F[t]);
}

// 8 rows, ymm, file layout (the avxvnni variant's tile): rows r and r+4 in one vector's halves, a 4x4
// transpose of dwords per half.
template <int T>
void tile8_file(const uint8_t* w, const int8_t* x, const float* xd, const int32_t* corr, float* y) {
  const uint8_t* rows[8];
  for (int r = 0; r < 8; ++r) rows[r] = w + r * kNb * kBlock;
  __m256 F[T];
  for (int t = 0; t < T; ++t) F[t] = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(15);
  for (int b = 0; b < kNb; ++b) {
    const uint8_t* p[8];
    for (int r = 0; r < 8; ++r) p[r] = rows[r] + b * kBlock;
    if (b % 3 == 0)
      for (int r = 0; r < 8; ++r) __builtin_prefetch(p[r] + 8 * kNb * kBlock, 0, 2);
    auto pair = [&](int a) {
      return _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(p[a + 4] + 2), reinterpret_cast<const __m128i*>(p[a] + 2));
    };
    const __m256i z0 = pair(0), z1 = pair(1), z2 = pair(2), z3 = pair(3);
    const __m256i t0 = _mm256_unpacklo_epi32(z0, z1), t1 = _mm256_unpackhi_epi32(z0, z1);
    const __m256i t2 = _mm256_unpacklo_epi32(z2, z3), t3 = _mm256_unpackhi_epi32(z2, z3);
    const __m256i n[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2), _mm256_unpacklo_epi64(t1, t3),
                          _mm256_unpackhi_epi64(t1, t3)};
    __m256i W[8];
    for (int j = 0; j < 4; ++j) W[j] = _mm256_and_si256(n[j], low4), W[j + 4] = _mm256_and_si256(_mm256_srli_epi16(n[j], 4), low4);
    const __m256 dw = _mm256_cvtph_ps(scales8(p));
    for (int t = 0; t < T; ++t) {
      const int8_t* xb = x + t * kCols + b * 32;
      __m256i acc = _mm256_set1_epi32(corr[t * kNb + b]);
      for (int j = 0; j < 8; ++j) acc = _mm256_dpbusd_epi32(acc, W[j], bcast4y(xb + 4 * j));
      F[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_mul_ps(dw, _mm256_set1_ps(xd[t * kNb + b])), F[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * 8, F[t]);
}

template <class Fn>
double seconds_of(Fn f, int reps) {
  f();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = cpu_now();
    f();
    best = std::min(best, cpu_now() - t0);
  }
  return best;
}
}  // namespace

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 256;
  const int tokens_max = 8;
  const size_t rows = (mib << 20) / (kNb * kBlock) / 16 * 16;  // 16-row groups of 768 columns
  std::vector<uint8_t> file(rows * kNb * kBlock), packed(rows * kNb * kBlock);
  std::mt19937 rng(1);
  for (auto& v : file) v = (uint8_t)rng();
  for (size_t r = 0; r < rows; ++r)
    for (int b = 0; b < kNb; ++b) {  // a sane f16 scale (0x2C00 + small) so no NaN/Inf
      uint16_t h = (uint16_t)(0x2C00 + (rng() & 0x3FF));
      std::memcpy(&file[(r * kNb + b) * kBlock], &h, 2);
    }
  // Lane order for 16-row groups and for 8-row groups (two buffers; each the same bytes as the file).
  std::vector<uint8_t> packed8(file.size());
  for (size_t g = 0; g < rows / 16; ++g)
    for (int b = 0; b < kNb; ++b) {
      uint8_t* o = &packed[(g * kNb + b) * kPacked16];
      for (int r = 0; r < 16; ++r) {
        const uint8_t* s = &file[((g * 16 + r) * kNb + b) * kBlock];
        for (int j = 0; j < 4; ++j) std::memcpy(o + 64 * j + 4 * r, s + 2 + 4 * j, 4);
        std::memcpy(o + 256 + 2 * r, s, 2);
      }
    }
  for (size_t g = 0; g < rows / 8; ++g)
    for (int b = 0; b < kNb; ++b) {
      uint8_t* o = &packed8[(g * kNb + b) * kPacked8];
      for (int r = 0; r < 8; ++r) {
        const uint8_t* s = &file[((g * 8 + r) * kNb + b) * kBlock];
        for (int j = 0; j < 4; ++j) std::memcpy(o + 32 * j + 4 * r, s + 2 + 4 * j, 4);
        std::memcpy(o + 128 + 2 * r, s, 2);
      }
    }
  std::vector<int8_t> x(tokens_max * kCols);
  for (auto& v : x) v = (int8_t)(rng() % 255 - 127);
  std::vector<float> xd(tokens_max * kNb, 0.01f);
  std::vector<int32_t> corr(tokens_max * kNb, -100);
  std::vector<float> y(tokens_max * 16 * 2);
  const double bytes = (double)file.size();
  volatile float sink = 0;
  const int reps = 5;
  const double per768 = 768.0 / rows;  // one 768 x 768 matvec's share of the whole sweep
  const char* only = argc > 2 ? argv[2] : "";
  auto wanted = [&](const char* name, int T) {
    char full[64];
    std::snprintf(full, sizeof full, "%s T=%d", name, T);
    return std::strstr(full, only) != nullptr;
  };
  auto report = [&](const char* name, int T, double s) {
    std::printf("%-14s T=%d  %7.2f GB/s of weights  %8.1f ns per 768x768 x T\n", name, T, bytes / s / 1e9, s * per768 * 1e9);
  };
  {
    const double s = seconds_of([&] {
      __m512i acc = _mm512_setzero_si512();
      for (size_t i = 0; i + 64 <= file.size(); i += 64) acc = _mm512_add_epi32(acc, _mm512_loadu_si512(&file[i]));
      sink = sink + (float)_mm512_reduce_add_epi32(acc);
    }, reps);
    report("read", 0, s);
  }
  auto sweep = [&](auto tile, size_t group_rows, size_t group_bytes, const std::vector<uint8_t>& w, int T) {
    return seconds_of([&] {
      for (size_t g = 0; g < rows / group_rows; ++g) tile(&w[g * group_bytes], x.data(), xd.data(), corr.data(), y.data());
      sink = sink + y[0];
    }, reps);
  };
  const size_t gb16 = 16 * kNb * kBlock, gb8 = 8 * kNb * kBlock;
#define CASE(name, T, tile, rows_, bytes_, w)                              \
  if (wanted(name, T)) report(name, T, sweep(tile<T>, rows_, bytes_, w, T))
  CASE("zmm16 file", 1, tile16_file, 16, gb16, file);
  CASE("zmm16 packed", 1, tile16_packed, 16, gb16, packed);
  CASE("ymm8 file", 1, tile8_file, 8, gb8, file);
  CASE("ymm8 packed", 1, tile8_packed, 8, gb8, packed8);
  CASE("zmm16 file", 8, tile16_file, 16, gb16, file);
  CASE("zmm16 packed", 8, tile16_packed, 16, gb16, packed);
  CASE("ymm8 file", 8, tile8_file, 8, gb8, file);
  CASE("ymm8 packed", 8, tile8_packed, 8, gb8, packed8);
  return sink == 12345.f;
}
