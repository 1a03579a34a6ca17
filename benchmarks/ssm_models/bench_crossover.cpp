// Crossover (issue 9): decode tokens/s of a Llama-shaped and a Mamba-shaped model of similar size
// at a context of 512 .. 32768 tokens. Attention reads its whole KV cache for every new token; the
// SSM reads a fixed-size state, so its decode speed stays flat.
//   BM_decode_at_context/<model>/<context>/t<threads>
//     tok/s      generated tokens per wall second (UseRealTime)
//     cpu_tok/s  generated tokens per CPU second of the process (the machine may be shared)
//     state_MB   KV cache (attention) or conv + SSM state (Mamba) read per token, f32
// Models (random f32 weights, ~440-460 MB of weights read per token):
//   llama768x12  d_model 768, 12 layers, 12 heads x 64, d_ff 2048, vocab 32000, untied
//                (bench_decoder's shape, ../models/random_checkpoint.hpp)
//   mamba130m    d_model 768, 24 layers, d_state 16, expand 2, vocab 32000, tied
//                (bench_ssm_models' shape, random_ssm.hpp)
// Each iteration times n_gen = 16 decode steps at positions context .. context + 15 of a session
// sized max_len = context + n_gen. Reaching the context by prefill is quadratic for attention (the
// 32K prefill of the Llama shape takes minutes on one core), so each (model, context) is
// prefilled once (random tokens, chunks of 1024, printed with its time on stderr), snapshotted,
// and restored before every iteration outside the timed region; the 1- and 2-thread runs share
// it. Decode cost depends on how many tokens the cache holds, not on their values.
// Thread counts: --threads=1 (default) or --threads=1,2.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <tessera/core/parallel.hpp>
#include <tessera/families/registry.hpp>


#include "../models/random_checkpoint.hpp"
#include "random_ssm.hpp"

using namespace tessera;

namespace {

constexpr index_t n_gen = 16;
constexpr index_t fill_chunk = 1024;

const language_model& model(const std::string& name) {
  static std::unique_ptr<language_model> llama;
  if (name == "mamba130m") return bench::random_mamba_130m('M');
  if (!llama) llama = load_language_model(bench::random_llama(bench::llama_768x12(), dtype::f32));
  return *llama;
}

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

/// A session of `name` holding `context` random tokens, and its snapshot. One at a time: a 32K
/// Llama cache is 2.4 GB (and as much again for the snapshot).
struct filled_session {
  std::string key;
  std::unique_ptr<lm_session> session;
  session_snapshot at_context;
};

filled_session& fill(const std::string& name, index_t context) {
  static filled_session f;
  const std::string key = name + "/" + std::to_string(context);
  if (f.key == key) return f;
  f = {};
  const auto& m = model(name);
  const index_t vocab = m.config().vocab;
  std::mt19937 g(static_cast<unsigned>(context));
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(context));
  for (auto& t : tokens) t = static_cast<std::int32_t>(g() % static_cast<unsigned>(vocab));
  f.session = m.new_session({.max_len = context + n_gen, .max_prefill = fill_chunk});
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = process_cpu_seconds();
  f.session->prefill(tokens);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "filled %s to %lld tokens by prefill: %.1f s wall, %.1f s CPU (%d threads)\n", name.c_str(),
               static_cast<long long>(context), wall, process_cpu_seconds() - c0, num_threads());
  f.at_context = f.session->snapshot();
  f.key = key;
  return f;
}

void BM_decode_at_context(benchmark::State& state, const std::string& name, index_t context, int threads) {
  set_num_threads(threads);
  auto& f = fill(name, context);
  const auto& cfg = model(name).config();
  lm_session& s = *f.session;
  double cpu = 0;
  std::int32_t t = 1;
  for (auto _ : state) {
    state.PauseTiming();
    s.restore(f.at_context);
    state.ResumeTiming();
    const double c0 = process_cpu_seconds();
    for (index_t i = 0; i < n_gen; ++i) {
      s.step(t);
      t = static_cast<std::int32_t>((t * 31 + 7) % cfg.vocab);
    }
    benchmark::DoNotOptimize(s.logits().data());
    cpu += process_cpu_seconds() - c0;
  }
  const double tokens = static_cast<double>(n_gen) * static_cast<double>(state.iterations());
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(n_gen), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["cpu_tok/s"] = cpu > 0 ? tokens / cpu : 0.0;
  state.counters["state_MB"] = static_cast<double>(s.memory_bytes()) / 1e6;  // caches, states, buffers, workspace
}

/// "--threads=1,2" → {1, 2}; the flag is removed from argv.
std::vector<int> take_threads_flag(int& argc, char** argv) {
  std::vector<int> threads = {1};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--threads=", 0) != 0) continue;
    threads.clear();
    std::stringstream ss(a.substr(10));
    for (std::string item; std::getline(ss, item, ',');) threads.push_back(std::stoi(item));
    for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
    --argc;
    break;
  }
  return threads;
}

}  // namespace

int main(int argc, char** argv) {
  const auto threads = take_threads_flag(argc, argv);
  for (const std::string name : {"llama768x12", "mamba130m"})
    for (index_t context : {index_t(512), index_t(2048), index_t(8192), index_t(32768)})
      for (int t : threads)
        benchmark::RegisterBenchmark(
            ("BM_decode_at_context/" + name + "/" + std::to_string(context) + "/t" + std::to_string(t)).c_str(),
            [=](benchmark::State& s) { BM_decode_at_context(s, name, context, t); })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->MeasureProcessCPUTime();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
