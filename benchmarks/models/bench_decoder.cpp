// Decoder throughput on random-weight Llama-shaped checkpoints (the shapes of issue 8's
// llama.cpp table): prefill 512 tokens and decode tokens/s, f32 and bf16, 1 and 2 threads.
// Counters: tok/s, and for decode the weight bytes read per token / time (GB/s).
#include <benchmark/benchmark.h>

#include <random>

#include <tessera/families/registry.hpp>

#include "random_checkpoint.hpp"

using namespace tessera;

namespace {

struct loaded {
  std::unique_ptr<language_model> model;
  std::size_t weight_bytes = 0;
};

loaded& get(const bench::llama_shape& s, dtype type) {
  static std::map<std::string, loaded> cache;
  const std::string key = s.name + std::string(dtype_name(type));
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  const auto dir = bench::random_llama(s, type);
  loaded l;
  l.model = load_language_model(dir);
  l.weight_bytes = io::weight_map::open(dir).total_bytes();
  // per decoded token the embedding table is not read in full: one row
  const std::size_t el = type == dtype::bf16 ? 2 : 4;
  if (!s.tied) l.weight_bytes -= static_cast<std::size_t>(s.vocab * s.d_model) * el;
  return cache.emplace(key, std::move(l)).first->second;
}

std::vector<std::int32_t> random_tokens(index_t n, index_t vocab) {
  std::mt19937 g(7);
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (auto& x : t) x = static_cast<std::int32_t>(g() % static_cast<unsigned>(vocab));
  return t;
}

void BM_prefill(benchmark::State& state, bench::llama_shape shape, dtype type) {
  set_num_threads(static_cast<int>(state.range(0)));
  auto& m = get(shape, type);
  const index_t n = state.range(1);
  const auto tokens = random_tokens(n, shape.vocab);
  auto s = m.model->new_session({.max_len = n + 1, .max_prefill = n});
  for (auto _ : state) {
    s->reset();
    s->prefill(tokens);
    benchmark::DoNotOptimize(s->logits().data());
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_decode(benchmark::State& state, bench::llama_shape shape, dtype type) {
  set_num_threads(static_cast<int>(state.range(0)));
  auto& m = get(shape, type);
  const index_t n_gen = state.range(1);
  auto s = m.model->new_session({.max_len = 16 + n_gen + 1});
  const auto prompt = random_tokens(16, shape.vocab);
  for (auto _ : state) {
    state.PauseTiming();
    s->reset();
    s->prefill(prompt);
    state.ResumeTiming();
    std::int32_t t = 1;
    for (index_t i = 0; i < n_gen; ++i) {
      s->step(t);
      t = static_cast<std::int32_t>((t * 31 + 7) % shape.vocab);
    }
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(n_gen), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(n_gen) * static_cast<double>(m.weight_bytes) / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

#define TESSERA_MODEL_BENCH(shape_fn, type, label)                                                              \
  BENCHMARK_CAPTURE(BM_prefill, label, bench::shape_fn(), type)->ArgsProduct({{1, 2}, {512}})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2); \
  BENCHMARK_CAPTURE(BM_decode, label, bench::shape_fn(), type)->ArgsProduct({{1, 2}, {64}})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2);

TESSERA_MODEL_BENCH(llama_768x12, dtype::f32, llama768x12_f32)
TESSERA_MODEL_BENCH(llama_768x12, dtype::bf16, llama768x12_bf16)
TESSERA_MODEL_BENCH(stories15m, dtype::f32, stories15M_f32)

BENCHMARK_MAIN();
