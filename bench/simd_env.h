// Benchmarks run the kernel variant named by QTF_SIMD (scalar, sse2, avx2, avx512, neon; default: the
// best this CPU runs), picked before main() and printed in the benchmark context.
#pragma once
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>

#include "kernels/kernels.h"

namespace qtf_bench {
inline const bool kSimdPicked = [] {
  if (const char* v = std::getenv("QTF_SIMD")) {
    const qtf::Status st = qtf::kern::select_simd(v);
    if (!st.ok()) {
      std::fprintf(stderr, "QTF_SIMD: %s\n", st.message());
      std::exit(2);
    }
  }
  benchmark::AddCustomContext("qtf_simd", qtf::kern::simd_arch());
  return true;
}();
}  // namespace qtf_bench
