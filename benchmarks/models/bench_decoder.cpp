// Decoder throughput on random-weight Llama-shaped checkpoints (the shapes of issue 8's
// llama.cpp table): prefill 512 tokens and decode tokens/s, f32 and bf16, 1 and 2 threads.
// Counters: tok/s, and for decode the weight bytes read per token / time (GB/s).
#include <benchmark/benchmark.h>

#include <map>
#include <random>
#include <span>
#include <vector>

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
  const std::size_t el = type == dtype::f32 ? 4 : 2;
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

/// range(0) threads, range(1) sequences stepped together (step_batch: one GEMM per weight where
/// range(1) GEMVs were). tok/s counts every sequence's token; GB/s is the weight read per step.
void BM_batched_decode(benchmark::State& state, bench::llama_shape shape, dtype type) {
  set_num_threads(static_cast<int>(state.range(0)));
  auto& m = get(shape, type);
  const auto n_seq = static_cast<std::size_t>(state.range(1));
  constexpr index_t n_gen = 32;
  std::vector<std::unique_ptr<lm_session>> owned;
  std::vector<lm_session*> sessions;
  for (std::size_t i = 0; i < n_seq; ++i) {
    owned.push_back(m.model->new_session({.max_len = 16 + n_gen + 1}));
    sessions.push_back(owned.back().get());
  }
  const auto prompt = random_tokens(16, shape.vocab);
  std::vector<std::span<const std::int32_t>> prompts(n_seq, std::span<const std::int32_t>(prompt));
  std::vector<std::int32_t> tokens(n_seq);
  for (auto _ : state) {
    state.PauseTiming();
    for (auto* s : sessions) s->reset();
    m.model->prefill_batch(sessions, prompts);
    state.ResumeTiming();
    for (index_t i = 0; i < n_gen; ++i) {
      for (std::size_t j = 0; j < n_seq; ++j) tokens[j] = static_cast<std::int32_t>((i * 31 + static_cast<index_t>(j) * 7 + 1) % shape.vocab);
      m.model->step_batch(sessions, tokens);
    }
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(n_gen) * static_cast<double>(n_seq),
                                               benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(n_gen) * static_cast<double>(m.weight_bytes) / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_batched_decode, llama768x12_f16, bench::llama_768x12(), dtype::f16)
    ->ArgsProduct({{1, 2}, {1, 2, 4, 8, 16}})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2);

#define TESSERA_MODEL_BENCH(shape_fn, type, label)                                                              \
  BENCHMARK_CAPTURE(BM_prefill, label, bench::shape_fn(), type)->ArgsProduct({{1, 2}, {512}})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2); \
  BENCHMARK_CAPTURE(BM_decode, label, bench::shape_fn(), type)->ArgsProduct({{1, 2}, {64}})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2);

TESSERA_MODEL_BENCH(llama_768x12, dtype::f32, llama768x12_f32)
TESSERA_MODEL_BENCH(llama_768x12, dtype::bf16, llama768x12_bf16)
TESSERA_MODEL_BENCH(stories15m, dtype::f32, stories15M_f32)

BENCHMARK_MAIN();
