// Mamba-2-130m layer shapes: 24 heads x 64 (d_inner 1536), d_state 128, n_groups 1, chunk 256.
//   BM_ssd_prefill/<arch>/<l>/threads:<t>   chunked prefill
//   BM_ssd_scan/<arch>/<l>/threads:<t>      sequential recurrence (the baseline)
//   BM_ssd_step/<arch>/threads:<t>          one token; bytes = state read + written
#include "bench_common.hpp"

#include <tessera/ssm/ssd.hpp>

namespace {
using namespace tessera;
constexpr index_t n_heads = 24, head_dim = 64, d_state = 128, n_groups = 1, chunk = 256, d_inner = n_heads * head_dim;

struct inputs {
  tensor<float, 2> x, dt, B, C, y;
  tensor<float, 1> A, D, dt_bias;
  tensor<float, 3> h;
  explicit inputs(index_t l)
      : x(bench::rnd<2>({l, d_inner}, -1, 1, 1)), dt(bench::rnd<2>({l, n_heads}, -3, -1, 2)),
        B(bench::rnd<2>({l, n_groups * d_state}, -1, 1, 3)), C(bench::rnd<2>({l, n_groups * d_state}, -1, 1, 4)),
        y({l, d_inner}), A(bench::rnd<1>({n_heads}, -2, -0.1f, 5)), D(bench::rnd<1>({n_heads}, 0.5f, 1.5f, 6)),
        dt_bias(bench::rnd<1>({n_heads}, -1, 0, 7)), h({n_heads, head_dim, d_state}) {}
  ssm::ssd_weights w() const { return {A.cview(), D.cview(), dt_bias.cview()}; }
};

const ssm::ssd_params params{.head_dim = head_dim, .n_groups = n_groups, .chunk = chunk};

void BM_ssd_prefill(benchmark::State& st) {
  const index_t l = st.range(0);
  set_num_threads(static_cast<int>(st.range(1)));
  inputs in(l);
  workspace ws(ssm::ssd_prefill_workspace_bytes(n_heads, head_dim, d_state, n_groups, chunk));
  for (auto _ : st) {
    ssm::ssd_prefill(in.x.cview(), in.dt.cview(), in.B.cview(), in.C.cview(), in.w(), in.h.view(), in.y.view(), params, ws);
    benchmark::DoNotOptimize(in.y.data());
  }
  st.counters["tok/s"] = benchmark::Counter(double(l), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_ssd_scan(benchmark::State& st) {
  const index_t l = st.range(0);
  set_num_threads(static_cast<int>(st.range(1)));
  inputs in(l);
  for (auto _ : st) {
    ssm::ssd_scan(in.x.cview(), in.dt.cview(), in.B.cview(), in.C.cview(), in.w(), in.h.view(), in.y.view(), params);
    benchmark::DoNotOptimize(in.y.data());
  }
  st.counters["tok/s"] = benchmark::Counter(double(l), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_ssd_step(benchmark::State& st) {
  set_num_threads(static_cast<int>(st.range(0)));
  inputs in(1);
  for (auto _ : st) {
    ssm::ssd_step(in.x.cview()[0], in.dt.cview()[0], in.B.cview()[0], in.C.cview()[0], in.w(), in.h.view(), in.y.view()[0], params);
    benchmark::DoNotOptimize(in.y.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * 2 * in.h.size() * int64_t(sizeof(float)));
}

const int reg = [] {
  for (int64_t l : bench::lengths())
    for (int64_t t : {1, 2}) {
      benchmark::RegisterBenchmark(("BM_ssd_prefill/" + bench::arch() + "/" + std::to_string(l) + "/threads:" + std::to_string(t)).c_str(), BM_ssd_prefill)->Args({l, t})->Unit(benchmark::kMillisecond)->UseRealTime();
      benchmark::RegisterBenchmark(("BM_ssd_scan/" + bench::arch() + "/" + std::to_string(l) + "/threads:" + std::to_string(t)).c_str(), BM_ssd_scan)->Args({l, t})->Unit(benchmark::kMillisecond)->UseRealTime();
    }
  for (int64_t t : {1, 2})
    benchmark::RegisterBenchmark(("BM_ssd_step/" + bench::arch() + "/threads:" + std::to_string(t)).c_str(), BM_ssd_step)->Args({t})->Unit(benchmark::kMicrosecond)->UseRealTime();
  return 0;
}();
}  // namespace

BENCHMARK_MAIN();
