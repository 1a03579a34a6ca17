// This machine's limits, the yardsticks for gemm and gemv:
//   BM_peak_fma/<arch>/t<threads>      : independent FMA chains in registers (GFLOP/s)
//   BM_read_bandwidth/<arch>/t<threads>: summing a 256 MB buffer, far larger than every cache (GB/s)
//   BM_read_bandwidth_huge/<arch>/t<threads>: the same on 2 MiB pages (MADV_HUGEPAGE), as the
//     weights of a checkpoint mapped by io::mapped_file are once the kernel has read them for it:
//     with 4 KiB pages the read waits on page walks too (docs/gemm.md, "Huge pages")
//   BM_read_bandwidth_4streams/<arch>/t<threads>: on 2 MiB pages, each thread's share read as 4
//     streams side by side (gemm_panel's decode reads 4 panels at once): on Zen 3 one stream's
//     prefetcher keeps too few lines in flight, and 4 streams read ~1.25x faster
#include "bench_common.hpp"

#include <cstdlib>
#include <memory>

#include <sys/mman.h>

#include <tessera/core/parallel.hpp>

namespace tessera::bench {
namespace {

using arch = simd::default_arch;

/// Independent FMA chains: at least FMA latency x FMA ports (4 x 2 on the x86 cores here), and few
/// enough that the chains and the two constants stay in registers (16 vector registers below
/// AVX-512: 16 chains there spill, and the probe read 57 GFLOP/s per core on Zen 3 instead of 115).
template <class A>
constexpr int fma_chain_count() {
  return simd::float_lanes<A>() >= 16 ? 16 : 12;
}

template <class A>
float fma_chains(index_t iters) {
  if constexpr (simd::is_scalar_v<A>) {
    float acc[16];
    for (int i = 0; i < 16; ++i) acc[i] = float(i);
    for (index_t it = 0; it < iters; ++it)
      for (int i = 0; i < 16; ++i) acc[i] = acc[i] * 0.9999999f + 1e-7f;
    float s = 0;
    for (float v : acc) s += v;
    return s;
  } else {
    using batch = xsimd::batch<float, A>;
    constexpr int chains = fma_chain_count<A>();
    batch acc[chains];
    for (int i = 0; i < chains; ++i) acc[i] = batch(float(i));
    const batch mul(0.9999999f), add(1e-7f);
    for (index_t it = 0; it < iters; ++it)
#pragma GCC unroll 16
      for (int i = 0; i < chains; ++i) acc[i] = xsimd::fma(acc[i], mul, add);
    batch s(0.f);
    for (int i = 0; i < chains; ++i) s += acc[i];
    return xsimd::hadd(s);
  }
}

void BM_peak_fma(benchmark::State& state, int threads) {
  use_threads(threads);
  constexpr index_t iters = 1 << 20;
  float sink[8] = {};
  for (auto _ : state) {
    parallel_for(0, threads, 1, [&](index_t lo, index_t hi) {
      for (index_t t = lo; t < hi; ++t) sink[t] = fma_chains<arch>(iters);
    });
    benchmark::DoNotOptimize(sink);
  }
  const double flops = 2.0 * fma_chain_count<arch>() * double(simd::float_lanes<arch>()) * double(iters) * threads;
  set_counters(state, flops, 0);
}

void BM_read_bandwidth(benchmark::State& state, int threads, bool huge, bool four_streams = false) {
  use_threads(threads);
  constexpr index_t n = index_t(64) << 20;  // 64 Mi floats = 256 MB
  constexpr std::size_t page = std::size_t{2} << 20;
  const std::unique_ptr<float, decltype(&std::free)> buf(static_cast<float*>(std::aligned_alloc(page, n * sizeof(float))),
                                                         &std::free);
  if (!buf) throw std::bad_alloc();
  ::madvise(buf.get(), n * sizeof(float), huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  float* p = buf.get();
  for (index_t i = 0; i < n; ++i) p[i] = float(i & 1023) * 1e-3f;
  float sink[8] = {};
  for (auto _ : state) {
    constexpr index_t block = 1 << 14;  // split in cache-line-aligned blocks
    parallel_for(0, n / block, 1, [&](index_t lo, index_t hi) {
      const float* part = p + lo * block;
      const index_t len = (hi - lo) * block;
      sink[lo * threads / (n / block)] += four_streams ? read_sum_streams<arch, 4>(part, len) : read_sum<arch>(part, len);
    });
    benchmark::DoNotOptimize(sink);
  }
  set_counters(state, double(n), 4.0 * double(n));
}

}  // namespace
}  // namespace tessera::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  tessera::bench::add_context();
  const std::string arch = tessera::simd::arch_name<tessera::bench::arch>();
  for (int t : {1, 2}) {
    benchmark::RegisterBenchmark(("BM_peak_fma/" + arch + "/t" + std::to_string(t)).c_str(), tessera::bench::BM_peak_fma, t)
        ->UseRealTime()->MinTime(0.3);
    for (const bool huge : {false, true})
      benchmark::RegisterBenchmark(
          ((huge ? "BM_read_bandwidth_huge/" : "BM_read_bandwidth/") + arch + "/t" + std::to_string(t)).c_str(),
          [=](benchmark::State& st) { tessera::bench::BM_read_bandwidth(st, t, huge); })
          ->UseRealTime()->MinTime(0.5);
    benchmark::RegisterBenchmark(("BM_read_bandwidth_4streams/" + arch + "/t" + std::to_string(t)).c_str(),
                                 [=](benchmark::State& st) { tessera::bench::BM_read_bandwidth(st, t, true, true); })
        ->UseRealTime()->MinTime(0.5);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
