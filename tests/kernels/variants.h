// The SIMD variants a kernel test runs under: every compiled one this CPU supports (scalar included).
#pragma once
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "kernels/dispatch.h"

namespace qtf::testing {

inline std::vector<std::string> variants() {
  std::vector<std::string> names;
  for (int i = 0; i < kern::simd_variant_count(); ++i)
    if (kern::simd_supported(kern::simd_variant(i))) names.push_back(kern::simd_variant(i).name);
  return names;
}

// Runs body() once per variant, with that variant selected; the default is restored after.
template <class F>
void for_each_variant(F body) {
  for (const std::string& v : variants()) {
    CAPTURE(v);
    REQUIRE(kern::select_simd(v.c_str()).ok());
    REQUIRE(std::string(kern::simd_arch()) == v);
    body();
  }
  REQUIRE(kern::select_simd("auto").ok());
}

}  // namespace qtf::testing
