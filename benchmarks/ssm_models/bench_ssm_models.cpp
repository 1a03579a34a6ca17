// Mamba-130m- and Mamba-2-130m-shaped random-weight models (f32): prefill 512 / 2048 and decode
// tokens/s on 1 and 2 threads, through the language_model session interface (the whole model:
// embeddings, 24 layers, final norm, LM head over a 32000-token vocabulary).
//   BM_mamba_prefill/<arch>/l<l>/t<threads>     items/s = prompt tokens/s
//   BM_mamba_decode/<arch>/t<threads>           items/s = generated tokens/s (after a 128-token prompt)
// Weights are written once to a temporary safetensors file (~450 MB each) and mapped (random_ssm.hpp).
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include <tessera/core/parallel.hpp>
#include <tessera/families/hybrid.hpp>

#include "random_checkpoint/random_hybrid.hpp"
#include <tessera/simd/arch.hpp>

#include "random_ssm.hpp"

using namespace tessera;

namespace {

const families::hybrid_model& model(char kind) { return bench::random_mamba_130m(kind); }

std::vector<std::int32_t> prompt(index_t n) {
  std::mt19937 g(1);
  std::vector<std::int32_t> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = static_cast<std::int32_t>(g() % 32000u);
  return v;
}

void BM_prefill(benchmark::State& st, char kind, index_t l, int threads) {
  set_num_threads(threads);
  const auto& m = model(kind);
  auto s = m.new_session({.max_len = 0, .max_prefill = 512});
  const auto ids = prompt(l);
  for (auto _ : st) {
    s->reset();
    s->prefill(ids);
    benchmark::DoNotOptimize(s->logits().data());
  }
  st.SetItemsProcessed(st.iterations() * l);
}

void BM_decode(benchmark::State& st, char kind, int threads) {
  set_num_threads(threads);
  const auto& m = model(kind);
  auto s = m.new_session({.max_len = 0, .max_prefill = 512});
  s->prefill(prompt(128));
  std::int32_t id = 1;
  for (auto _ : st) {
    s->step(id);
    id = (id * 7 + 3) % 32000;
    benchmark::DoNotOptimize(s->logits().data());
  }
  st.SetItemsProcessed(st.iterations());
}

const std::string arch = simd::arch_name<simd::default_arch>();

[[maybe_unused]] const int registered = [] {
  for (char kind : {'M', 'S'}) {
    const std::string name = kind == 'M' ? "mamba" : "mamba2";
    for (int t : {1, 2}) {
      for (index_t l : {index_t(512), index_t(2048)})
        benchmark::RegisterBenchmark(("BM_" + name + "_prefill/" + arch + "/l" + std::to_string(l) + "/t" + std::to_string(t)).c_str(),
                                     [=](benchmark::State& s) { BM_prefill(s, kind, l, t); })
            ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
      benchmark::RegisterBenchmark(("BM_" + name + "_decode/" + arch + "/t" + std::to_string(t)).c_str(),
                                   [=](benchmark::State& s) { BM_decode(s, kind, t); })
          ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
    }
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
