// causal_conv1d at Mamba shapes: channels 1536 (Mamba-130m d_inner) and 1792 (Mamba-2-130m conv_dim), d_conv 4.
//   BM_causal_conv1d/<arch>/<channels>x<l>/threads:<t>   prefill with SiLU
//   BM_causal_conv1d_step/<arch>/<channels>/threads:<t>  one token
#include "bench_common.hpp"

#include <tessera/ssm/conv1d.hpp>

namespace {
using namespace tessera;
constexpr index_t d_conv = 4;

void BM_causal_conv1d(benchmark::State& st) {
  const index_t ch = st.range(0), l = st.range(1);
  set_num_threads(static_cast<int>(st.range(2)));
  const auto x = bench::rnd<2>({l, ch}, -1, 1, 1);
  const auto w = bench::rnd<2>({d_conv, ch}, -1, 1, 2);
  const auto b = bench::rnd<1>({ch}, -1, 1, 3);
  tensor<float, 2> s({d_conv - 1, ch}), y({l, ch});
  for (auto _ : st) {
    ssm::causal_conv1d(x.cview(), w.cview(), b.cview(), s.view(), y.view(), {.silu = true});
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["tok/s"] = benchmark::Counter(double(l), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_causal_conv1d_step(benchmark::State& st) {
  const index_t ch = st.range(0);
  set_num_threads(static_cast<int>(st.range(1)));
  const auto x = bench::rnd<1>({ch}, -1, 1, 1);
  const auto w = bench::rnd<2>({d_conv, ch}, -1, 1, 2);
  const auto b = bench::rnd<1>({ch}, -1, 1, 3);
  tensor<float, 2> s({d_conv - 1, ch});
  tensor<float, 1> y({ch});
  for (auto _ : st) {
    ssm::causal_conv1d_step(x.cview(), w.cview(), b.cview(), s.view(), y.view(), {.silu = true});
    benchmark::DoNotOptimize(y.data());
  }
}

const int reg = [] {
  for (int64_t ch : {1536, 1792})
    for (int64_t t : {1, 2}) {
      for (int64_t l : bench::lengths())
        benchmark::RegisterBenchmark(("BM_causal_conv1d/" + bench::arch() + "/" + std::to_string(ch) + "x" + std::to_string(l) + "/threads:" + std::to_string(t)).c_str(), BM_causal_conv1d)->Args({ch, l, t})->Unit(benchmark::kMicrosecond)->UseRealTime();
      benchmark::RegisterBenchmark(("BM_causal_conv1d_step/" + bench::arch() + "/" + std::to_string(ch) + "/threads:" + std::to_string(t)).c_str(), BM_causal_conv1d_step)->Args({ch, t})->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
  return 0;
}();
}  // namespace

BENCHMARK_MAIN();
