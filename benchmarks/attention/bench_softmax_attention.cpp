// Benchmarks of softmax attention: causal prefill (flash form) and decode against a long cache.
//
//   BM_softmax_attention/<arch>/<b>x<n_heads>x<l>x<head_dim>/threads:<t>   causal prefill
//   BM_decode_attention/<arch>/<b>x<n_heads>x<l_cache>x<head_dim>/threads:<t>  one token, GQA 4:1
//
// Counters: GFLOP/s counts the useful work of causal attention, 4 · n_heads · head_dim ·
// l(l+1)/2 (QKᵀ and PV over the visible half); tokens/s = l / time (prefill) or 1 / time
// (decode); GB/s (decode) = bytes of K and V read / time. BM_stream_read is the bandwidth
// ceiling measured in the same run (a plain vectorized sum over as many bytes as the 16K cache).
// Lengths up to 4096 run by default; TESSERA_BENCH_LONG=1 adds 8192 and 16384.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include <tessera/attention/softmax_attention.hpp>
#include <tessera/attention/softmax_decode.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor.hpp>

#include <random>

using namespace tessera;
using namespace tessera::attention;

namespace {

tensor<float, 3> random3(const extents<3>& e, std::uint64_t seed) {
  tensor<float, 3> t(e);
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  for (auto& x : t) x = d(g);
  return t;
}

template <class Arch>
void bm_prefill(benchmark::State& state, index_t b, index_t n_heads, index_t l, index_t head_dim, int threads) {
  set_num_threads(threads);
  const auto q = random3({l, n_heads, head_dim}, 1), k = random3({l, n_heads, head_dim}, 2),
             v = random3({l, n_heads, head_dim}, 3);
  tensor<float, 3> out({l, n_heads, head_dim});
  workspace ws(softmax_attention_workspace_bytes(n_heads, head_dim, threads));
  for (auto _ : state) {
    for (index_t s = 0; s < b; ++s) softmax_attention(q.cview(), k.cview(), v.cview(), out.view(), {}, ws, Arch{});
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double flops = 4.0 * double(b) * double(n_heads) * double(head_dim) * double(l) * double(l + 1) / 2.0;
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] = benchmark::Counter(double(b * l), benchmark::Counter::kIsIterationInvariantRate);
}

template <class Arch>
void bm_decode(benchmark::State& state, index_t n_heads, index_t n_kv_heads, index_t l, index_t head_dim,
               int threads) {
  set_num_threads(threads);
  const auto kv = random3({l, n_kv_heads, head_dim}, 4), vv = random3({l, n_kv_heads, head_dim}, 5);
  const auto q = random3({1, n_heads, head_dim}, 6);
  kv_cache cache(l, n_kv_heads, head_dim);
  cache.append(kv.cview(), vv.cview());
  tensor<float, 3> out({1, n_heads, head_dim});
  workspace ws(softmax_attention_workspace_bytes(n_heads, head_dim, threads));
  for (auto _ : state) {
    decode_attention(q.cview(), cache, out.view(), {}, ws, Arch{});
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double bytes = 2.0 * double(l) * double(n_kv_heads) * double(head_dim) * sizeof(float);
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(4.0 * double(n_heads) * double(head_dim) * double(l) * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate);
}

/// The memory bandwidth baseline for decode, in the same run: one pass summing `bytes` of floats.
void bm_stream_read(benchmark::State& state, index_t bytes, int threads) {
  set_num_threads(threads);
  const index_t n = bytes / index_t(sizeof(float));
  tensor<float, 1> a({n}, 1.f);
  float total = 0.f;
  for (auto _ : state) {
    float partial[64] = {};
    parallel_for(0, threads, 1, [&](index_t lo, index_t hi) {
      for (index_t t = lo; t < hi; ++t) {
        const float* p = a.data() + n * t / threads;
        const index_t m = n * (t + 1) / threads - n * t / threads;
        float acc[16] = {};
        for (index_t i = 0; i + 16 <= m; i += 16)
          for (int x = 0; x < 16; ++x) acc[x] += p[i + x];
        for (float x : acc) partial[t] += x;
      }
    });
    for (int t = 0; t < threads; ++t) total += partial[t];
    benchmark::DoNotOptimize(total);
  }
  state.counters["GB/s"] = benchmark::Counter(double(bytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

template <class Arch>
void register_all() {
  const std::string arch = simd::arch_name<Arch>();
  const bool long_runs = std::getenv("TESSERA_BENCH_LONG") != nullptr;
  struct shape {
    index_t b, h, l, d;
  };
  std::vector<shape> shapes = {{1, 12, 512, 64}, {1, 12, 2048, 64}, {1, 12, 4096, 64}, {1, 8, 2048, 128}, {1, 8, 4096, 128}};
  if (long_runs) {
    shapes.push_back({1, 8, 8192, 128});
    shapes.push_back({1, 8, 16384, 128});
  }
  for (int t : {1, 2})
    for (const auto& s : shapes) {
      const std::string name = "BM_softmax_attention/" + arch + "/" + std::to_string(s.b) + "x" + std::to_string(s.h) +
                               "x" + std::to_string(s.l) + "x" + std::to_string(s.d) + "/threads:" + std::to_string(t);
      benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { bm_prefill<Arch>(st, s.b, s.h, s.l, s.d, t); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->MinTime(0.2);
    }
  for (int t : {1, 2})
    for (index_t l : {256, 4096, 16384}) {  // 256: K and V (2 MiB) stay in L2, the kernel's compute ceiling
      const std::string name = "BM_decode_attention/" + arch + "/1x32x" + std::to_string(l) + "x128/threads:" + std::to_string(t);
      benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { bm_decode<Arch>(st, 32, 8, l, 128, t); })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime()
          ->MinTime(0.2);
    }
  // the same bytes as the 16K cache (K and V, 8 kv heads × 128): decode's bandwidth ceiling
  for (int t : {1, 2}) {
    const index_t bytes = 2 * index_t(16384) * 8 * 128 * index_t(sizeof(float));
    const std::string name = "BM_stream_read/" + arch + "/" + std::to_string(bytes >> 20) + "MiB/threads:" + std::to_string(t);
    benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { bm_stream_read(st, bytes, t); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime()
        ->MinTime(0.2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all<simd::default_arch>();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
