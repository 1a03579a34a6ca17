// Mamba-130m layer shapes: d_model 768, d_inner 1536, d_state 16.
//   BM_selective_scan/<arch>/<l>/threads:<t>     prefill (fused dt_bias + softplus, gate)
//   BM_selective_state_update/<arch>/threads:<t> one token; bytes = state read + written
#include "bench_common.hpp"

#include <tessera/ssm/selective_scan.hpp>

namespace {
using namespace tessera;
constexpr index_t d_inner = 1536, d_state = 16;

struct inputs {
  tensor<float, 2> x, dt, B, C, z, y, A, h;
  tensor<float, 1> D, dt_bias;
  explicit inputs(index_t l)
      : x(bench::rnd<2>({l, d_inner}, -1, 1, 1)), dt(bench::rnd<2>({l, d_inner}, -3, -1, 2)),
        B(bench::rnd<2>({l, d_state}, -1, 1, 3)), C(bench::rnd<2>({l, d_state}, -1, 1, 4)),
        z(bench::rnd<2>({l, d_inner}, -2, 2, 5)), y({l, d_inner}), A(bench::rnd<2>({d_inner, d_state}, -16, -0.5f, 6)),
        h({d_inner, d_state}), D(bench::rnd<1>({d_inner}, 0.5f, 1.5f, 7)), dt_bias(bench::rnd<1>({d_inner}, -1, 0, 8)) {}
  ssm::selective_scan_weights w() const { return {A.cview(), D.cview(), dt_bias.cview()}; }
};

void BM_selective_scan(benchmark::State& st) {
  const index_t l = st.range(0);
  set_num_threads(static_cast<int>(st.range(1)));
  inputs in(l);
  for (auto _ : st) {
    ssm::selective_scan(in.x.cview(), in.dt.cview(), in.B.cview(), in.C.cview(), in.z.cview(), in.w(), in.h.view(), in.y.view(), {});
    benchmark::DoNotOptimize(in.y.data());
  }
  st.counters["tok/s"] = benchmark::Counter(double(l), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_selective_state_update(benchmark::State& st) {
  set_num_threads(static_cast<int>(st.range(0)));
  inputs in(1);
  for (auto _ : st) {
    ssm::selective_state_update(in.x.cview()[0], in.dt.cview()[0], in.B.cview()[0], in.C.cview()[0], in.z.cview()[0], in.w(),
                                in.h.view(), in.y.view()[0], {});
    benchmark::DoNotOptimize(in.y.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * 2 * in.h.size() * int64_t(sizeof(float)));
}

const int reg = [] {
  for (int64_t l : bench::lengths())
    for (int64_t t : {1, 2})
      benchmark::RegisterBenchmark(("BM_selective_scan/" + bench::arch() + "/" + std::to_string(l) + "/threads:" + std::to_string(t)).c_str(), BM_selective_scan)->Args({l, t})->Unit(benchmark::kMillisecond)->UseRealTime();
  for (int64_t t : {1, 2})
    benchmark::RegisterBenchmark(("BM_selective_state_update/" + bench::arch() + "/threads:" + std::to_string(t)).c_str(), BM_selective_state_update)->Args({t})->Unit(benchmark::kMicrosecond)->UseRealTime();
  return 0;
}();
}  // namespace

BENCHMARK_MAIN();
