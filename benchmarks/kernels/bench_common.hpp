// Shared pieces of the kernel benchmarks: thread setting for us and the peers, counters, data.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <tessera/core/core.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/simd/arch.hpp>

#if defined(TESSERA_BENCH_OPENBLAS)
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);
extern "C" char* openblas_get_config(void);
#endif

namespace tessera::bench {

/// One thread count for tessera (OpenMP, also Eigen's) and OpenBLAS.
inline void use_threads(int n) {
  set_num_threads(n);
#if defined(TESSERA_BENCH_OPENBLAS)
  openblas_set_num_threads(n);
#endif
}

/// n random values in [-1, 1), in tessera's 64-byte aligned storage (as a model's weights are).
template <class T>
tensor<T, 1> random_data(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  tensor<T, 1> v({static_cast<index_t>(n)});
  for (auto& x : v) x = from_float<T>(d(g));
  return v;
}

/// GFLOP/s and GB/s counters (kIsRate: per second of measured time).
inline void set_counters(benchmark::State& state, double flops, double bytes) {
  const double it = static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(flops * it / 1e9, benchmark::Counter::kIsRate);
  state.counters["GB/s"] = benchmark::Counter(bytes * it / 1e9, benchmark::Counter::kIsRate);
}

/// Sums n floats at p with vector loads: the pure read stream every bandwidth figure compares with.
template <class A>
float read_sum(const float* p, index_t n) {
  if constexpr (simd::is_scalar_v<A>) {
    float s = 0;
    for (index_t i = 0; i < n; ++i) s += p[i];
    return s;
  } else {
    using batch = xsimd::batch<float, A>;
    constexpr index_t L = batch::size;
    batch s0(0.f), s1(0.f), s2(0.f), s3(0.f);
    index_t i = 0;
    for (; i + 4 * L <= n; i += 4 * L) {
      s0 += batch::load_aligned(p + i);
      s1 += batch::load_aligned(p + i + L);
      s2 += batch::load_aligned(p + i + 2 * L);
      s3 += batch::load_aligned(p + i + 3 * L);
    }
    float s = xsimd::hadd((s0 + s1) + (s2 + s3));
    for (; i < n; ++i) s += p[i];
    return s;
  }
}

/// read_sum over `streams` equal parts of p read side by side, a vector of each per step (as
/// gemm_panel reads 4 panels and the interleaved quant kernels 2 groups at once): more lines in
/// flight than one stream's prefetcher keeps. n a multiple of streams * lanes.
template <class A, int streams>
float read_sum_streams(const float* p, index_t n) {
  if constexpr (simd::is_scalar_v<A>) {
    return read_sum<A>(p, n);
  } else {
    using batch = xsimd::batch<float, A>;
    constexpr index_t L = batch::size;
    const index_t part = n / streams;
    batch s[streams][2];
    for (auto& a : s) a[0] = a[1] = batch(0.f);
    for (index_t i = 0; i + 2 * L <= part; i += 2 * L)
#pragma GCC unroll 8
      for (int j = 0; j < streams; ++j) {
        s[j][0] += batch::load_aligned(p + j * part + i);
        s[j][1] += batch::load_aligned(p + j * part + i + L);
      }
    batch t(0.f);
    for (auto& a : s) t += a[0] + a[1];
    return xsimd::hadd(t);
  }
}

inline void add_context() {
  benchmark::AddCustomContext("tessera_arch", simd::arch_name<simd::default_arch>());
#if defined(TESSERA_BENCH_OPENBLAS)
  benchmark::AddCustomContext("openblas_core", openblas_get_corename());
  benchmark::AddCustomContext("openblas_config", openblas_get_config());
#endif
}

}  // namespace tessera::bench
