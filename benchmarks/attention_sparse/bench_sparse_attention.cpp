// Benchmarks of sparse attention: cost ∝ l × window, against dense masked attention.
//
//   BM_longformer_attention/<arch>/<b>x<n_heads>x<l>x<head_dim>/w:<w>/threads:<t>
//   BM_bigbird_attention/<arch>/<b>x<n_heads>x<l>x<head_dim>/bs:<bs>,r:<r>/threads:<t>
//   BM_dense_masked_attention/<arch>/<b>x<n_heads>x<l>x<head_dim>/threads:<t>
//       the same bidirectional attention over every key with the key-padding mask
//       (softmax_attention.hpp's flash kernel, causal off): the l² baseline
// Counters: tokens/s = b·l / time; keys/query = average keys each query row attends to.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <string>

#include <tessera/attention/softmax_attention.hpp>
#include <tessera/attention/sparse_attention.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor.hpp>

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

std::string shape_name(index_t b, index_t h, index_t l, index_t d) {
  return std::to_string(b) + "x" + std::to_string(h) + "x" + std::to_string(l) + "x" + std::to_string(d);
}

template <class Arch>
void bm_longformer(benchmark::State& st, index_t b, index_t h, index_t l, index_t d, index_t w, int threads) {
  set_num_threads(threads);
  const auto q = random3({l, h, d}, 1), k = random3({l, h, d}, 2), v = random3({l, h, d}, 3);
  tensor<float, 3> out({l, h, d});
  tensor<std::int8_t, 1> role({l}, 1);
  role(0) = 2;  // a global CLS token, as in classification
  workspace ws(longformer_attention_workspace_bytes(l, d, d));
  const longformer_global_qkv glob{q.cview(), k.cview(), v.cview()};
  for (auto _ : st) {
    for (index_t s = 0; s < b; ++s)
      longformer_attention(q.cview(), k.cview(), v.cview(), glob, role.cview(), out.view(), {.attention_window = w}, ws,
                           Arch{});
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.counters["tokens/s"] = benchmark::Counter(double(b * l), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["keys/query"] = double(std::min(w + 2, l));
}

template <class Arch>
void bm_bigbird(benchmark::State& st, index_t b, index_t h, index_t l, index_t d, index_t bs, index_t r, int threads) {
  set_num_threads(threads);
  const auto q = random3({l, h, d}, 1), k = random3({l, h, d}, 2), v = random3({l, h, d}, 3);
  tensor<float, 3> out({l, h, d});
  const index_t n = l / bs;
  tensor<std::int32_t, 3> rand_attn({h, n - 2, r});
  std::mt19937_64 g(7);
  for (auto& x : rand_attn) x = std::int32_t(1 + g() % std::uint64_t(n - 2));
  workspace ws(bigbird_attention_workspace_bytes(l, h, d, d, bs, r));
  for (auto _ : st) {
    for (index_t s = 0; s < b; ++s)
      bigbird_attention(q.cview(), k.cview(), v.cview(), rand_attn.cview(), std::nullopt, out.view(),
                        {.block_size = bs, .num_random_blocks = r}, ws, Arch{});
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.counters["tokens/s"] = benchmark::Counter(double(b * l), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["keys/query"] = double((5 + r) * bs);
}

template <class Arch>
void bm_dense(benchmark::State& st, index_t b, index_t h, index_t l, index_t d, int threads) {
  set_num_threads(threads);
  const auto q = random3({l, h, d}, 1), k = random3({l, h, d}, 2), v = random3({l, h, d}, 3);
  tensor<float, 3> out({l, h, d});
  tensor<float, 1> key_mask({l}, 0.f);
  workspace ws(softmax_attention_workspace_bytes(h, d, threads));
  attention_params p;
  p.causal = false;
  p.key_mask = key_mask.cview();
  for (auto _ : st) {
    for (index_t s = 0; s < b; ++s) softmax_attention(q.cview(), k.cview(), v.cview(), out.view(), p, ws, Arch{});
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.counters["tokens/s"] = benchmark::Counter(double(b * l), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["keys/query"] = double(l);
}

template <class Arch>
void register_all() {
  const std::string arch = simd::arch_name<Arch>();
  const bool long_runs = std::getenv("TESSERA_BENCH_LONG") != nullptr;
  const index_t b = 1, h = 12, d = 64;
  std::vector<index_t> lengths{1024, 2048, 4096};
  if (long_runs) lengths.push_back(16384);
  for (int t : {1, 2}) {
    const std::string ts = "/threads:" + std::to_string(t);
    for (index_t l : lengths) {
      benchmark::RegisterBenchmark(("BM_longformer_attention/" + arch + "/" + shape_name(b, h, l, d) + "/w:512" + ts).c_str(),
                                   [=](benchmark::State& st) { bm_longformer<Arch>(st, b, h, l, d, 512, t); })
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      benchmark::RegisterBenchmark(("BM_dense_masked_attention/" + arch + "/" + shape_name(b, h, l, d) + ts).c_str(),
                                   [=](benchmark::State& st) { bm_dense<Arch>(st, b, h, l, d, t); })
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      benchmark::RegisterBenchmark(("BM_bigbird_attention/" + arch + "/" + shape_name(b, h, l, d) + "/bs:64,r:3" + ts).c_str(),
                                   [=](benchmark::State& st) { bm_bigbird<Arch>(st, b, h, l, d, 64, 3, t); })
          ->Unit(benchmark::kMillisecond)->UseRealTime();
    }
    for (index_t w : {128, 256, 1024})
      benchmark::RegisterBenchmark(
          ("BM_longformer_attention/" + arch + "/" + shape_name(b, h, 4096, d) + "/w:" + std::to_string(w) + ts).c_str(),
          [=](benchmark::State& st) { bm_longformer<Arch>(st, b, h, 4096, d, w, t); })
          ->Unit(benchmark::kMillisecond)->UseRealTime();
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all<simd::default_arch>();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
