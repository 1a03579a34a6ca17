// Mamba-130m- and Mamba-2-130m-shaped random-weight models (f32): prefill 512 / 2048 and decode
// tokens/s on 1 and 2 threads, through the language_model session interface (the whole model:
// embeddings, 24 layers, final norm, LM head over a 32000-token vocabulary).
//   BM_mamba_prefill/<arch>/l<l>/t<threads>     items/s = prompt tokens/s
//   BM_mamba_decode/<arch>/t<threads>           items/s = generated tokens/s (after a 128-token prompt)
// Weights are written once to a temporary safetensors file (~450 MB each) and mapped.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <tessera/core/parallel.hpp>
#include <tessera/models/hybrid.hpp>
#include <tessera/simd/arch.hpp>

using namespace tessera;

namespace {

model_config shape(char kind) {
  model_config c;
  c.family = kind == 'M' ? "mamba" : "mamba2";
  c.vocab = 32000, c.d_model = 768, c.n_layers = 24, c.norm_eps = 1e-5f, c.tie_word_embeddings = true;
  c.d_inner = 1536, c.d_conv = 4;
  if (kind == 'M') {
    c.d_state = 16, c.dt_rank = 48;
  } else {
    c.d_state = 128, c.ssm_n_heads = 24, c.ssm_head_dim = 64, c.n_groups = 1, c.chunk = 256;
    c.time_step_limit_hi = std::numeric_limits<float>::infinity();
  }
  return c;
}

const models::hybrid_model& model(char kind) {
  static std::unique_ptr<models::hybrid_model> m[2];
  auto& slot = m[kind == 'M' ? 0 : 1];
  if (!slot) {
    const auto cfg = shape(kind);
    const auto sch = models::hybrid_schedule::parse(std::string(24, kind), std::string(24, '-'), 24);
    models::hybrid_layout names;
    names.mixer_norm = "backbone.layers.{}.norm", names.ssm = "backbone.layers.{}.mixer";
    names.embed = "backbone.embeddings.weight", names.final_norm = "backbone.norm_f";
    const auto file = std::filesystem::temp_directory_path() / (std::string("tessera_bench_") + kind + ".safetensors");
    if (!std::filesystem::exists(file)) models::write_random_hybrid(cfg, sch, names, file, 3);
    auto w = std::make_shared<const io::weight_map>(io::weight_map::open(file));
    slot = models::load_hybrid(cfg, sch, names, w);
  }
  return *slot;
}

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
