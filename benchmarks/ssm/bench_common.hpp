// Shared setup of the ssm benchmarks: random tensors, thread count, the l sweep.
#pragma once

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <tessera/core/core.hpp>
#include <tessera/simd/arch.hpp>

namespace bench {
using namespace tessera;

template <std::size_t Rank>
tensor<float, Rank> rnd(const extents<Rank>& e, float lo, float hi, unsigned seed) {
  tensor<float, Rank> t(e);
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (auto& x : t) x = d(g);
  return t;
}

/// l values: 128 .. 2048 by default; up to 16384 with TESSERA_BENCH_LONG=1.
inline std::vector<int64_t> lengths() {
  const char* e = std::getenv("TESSERA_BENCH_LONG");
  if (e && std::string(e) == "1") return {128, 512, 2048, 4096, 8192, 16384};
  return {128, 512, 2048};
}

inline std::string arch() { return simd::arch_name<simd::default_arch>(); }
}  // namespace bench
