// Benchmarks of linear attention: chunked (prefill) against recurrent (token by token) forms.
//
//   BM_<kind>_<form>/<arch>/<b>x<n_heads>x<l>x<head_dim>/threads:<t>
//   kind ∈ linear_attention, retention, gla, delta_rule, gated_delta_rule; form ∈ chunked,
//   recurrent, parallel (parallel only up to l = 1024: it is quadratic in time and workspace).
// Counters: tokens/s = b·l / time. Chunk size 64. d_k = d_v = head_dim.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <string>

#include <tessera/attention/delta_rule.hpp>
#include <tessera/attention/gated_linear_attention.hpp>
#include <tessera/attention/linear_attention.hpp>
#include <tessera/attention/retention.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor.hpp>

using namespace tessera;
using namespace tessera::attention;

namespace {

template <std::size_t R>
tensor<float, R> random_t(const extents<R>& e, std::uint64_t seed, float lo = -1.f, float hi = 1.f) {
  tensor<float, R> t(e);
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (auto& x : t) x = d(g);
  return t;
}

enum class kind { linear_attention, retention, gla, delta_rule, gated_delta_rule };
enum class form { chunked, recurrent, parallel };

const char* kind_name(kind k) {
  switch (k) {
    case kind::linear_attention: return "linear_attention";
    case kind::retention: return "retention";
    case kind::gla: return "gla";
    case kind::delta_rule: return "delta_rule";
    case kind::gated_delta_rule: return "gated_delta_rule";
  }
  return "?";
}
const char* form_name(form f) { return f == form::chunked ? "chunked" : f == form::recurrent ? "recurrent" : "parallel"; }

template <class Arch>
void bm(benchmark::State& st, kind kd, form fm, index_t b, index_t h, index_t l, index_t d, int threads) {
  set_num_threads(threads);
  const auto q = random_t<3>({l, h, d}, 1), k = random_t<3>({l, h, d}, 2), v = random_t<3>({l, h, d}, 3);
  const auto gv = random_t<3>({l, h, d}, 4, -0.3f, -0.01f);
  const auto gs = random_t<2>({l, h}, 5, -0.3f, -0.01f), beta = random_t<2>({l, h}, 6, 0.1f, 0.9f);
  tensor<float, 1> gamma({h});
  retnet_gamma(gamma.view());
  tensor<float, 3> out({l, h, d}), s({h, d, d});
  tensor<float, 2> z({h, d});
  const index_t chunk = 64;
  const index_t rows = fm == form::parallel ? l : fm == form::recurrent ? 1 : std::min(chunk, l);
  workspace ws(linear_attention_workspace_bytes(rows, h, d, d));
  const linear_attention_params lp{.phi = feature_map::elu_plus_one, .chunk_size = chunk};
  const delta_rule_params dp{.l2norm_qk = true, .chunk_size = chunk};
  for (auto _ : st) {
    for (index_t seq = 0; seq < b; ++seq) {
      std::fill(s.begin(), s.end(), 0.f);
      switch (kd) {
        case kind::linear_attention: {
          linear_attention_state ls{s.view(), z.view()};
          if (fm == form::chunked) linear_attention_chunked(q.cview(), k.cview(), v.cview(), out.view(), ls, lp, ws, Arch{});
          if (fm == form::recurrent) linear_attention_recurrent(q.cview(), k.cview(), v.cview(), out.view(), ls, lp, ws, Arch{});
          if (fm == form::parallel) linear_attention_parallel(q.cview(), k.cview(), v.cview(), out.view(), ls, lp, ws, Arch{});
          break;
        }
        case kind::retention: {
          const retention_params rp{.chunk_size = chunk};
          if (fm == form::chunked) retention_chunked(q.cview(), k.cview(), v.cview(), gamma.cview(), out.view(), s.view(), rp, ws, Arch{});
          if (fm == form::recurrent) retention_recurrent(q.cview(), k.cview(), v.cview(), gamma.cview(), out.view(), s.view(), rp, ws, Arch{});
          if (fm == form::parallel) retention_parallel(q.cview(), k.cview(), v.cview(), gamma.cview(), out.view(), s.view(), rp, ws, Arch{});
          break;
        }
        case kind::gla: {
          const gla_params gp{.chunk_size = chunk};
          if (fm == form::chunked) gla_chunked(q.cview(), k.cview(), v.cview(), gv.cview(), out.view(), s.view(), gp, ws, Arch{});
          if (fm == form::recurrent) gla_recurrent(q.cview(), k.cview(), v.cview(), gv.cview(), out.view(), s.view(), gp, ws, Arch{});
          if (fm == form::parallel) gla_parallel(q.cview(), k.cview(), v.cview(), gv.cview(), out.view(), s.view(), gp, ws, Arch{});
          break;
        }
        case kind::delta_rule: {
          if (fm == form::chunked) delta_rule_chunked(q.cview(), k.cview(), v.cview(), beta.cview(), out.view(), s.view(), dp, ws, Arch{});
          if (fm == form::recurrent) delta_rule_recurrent(q.cview(), k.cview(), v.cview(), beta.cview(), out.view(), s.view(), dp, ws, Arch{});
          if (fm == form::parallel) delta_rule_parallel(q.cview(), k.cview(), v.cview(), beta.cview(), out.view(), s.view(), dp, ws, Arch{});
          break;
        }
        case kind::gated_delta_rule: {
          if (fm == form::chunked) gated_delta_rule_chunked(q.cview(), k.cview(), v.cview(), gs.cview(), beta.cview(), out.view(), s.view(), dp, ws, Arch{});
          if (fm == form::recurrent) gated_delta_rule_recurrent(q.cview(), k.cview(), v.cview(), gs.cview(), beta.cview(), out.view(), s.view(), dp, ws, Arch{});
          if (fm == form::parallel) gated_delta_rule_parallel(q.cview(), k.cview(), v.cview(), gs.cview(), beta.cview(), out.view(), s.view(), dp, ws, Arch{});
          break;
        }
      }
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.counters["tokens/s"] = benchmark::Counter(double(b * l), benchmark::Counter::kIsIterationInvariantRate);
}

template <class Arch>
void register_all() {
  const std::string arch = simd::arch_name<Arch>();
  const bool long_runs = std::getenv("TESSERA_BENCH_LONG") != nullptr;
  struct shape { index_t b, h, l, d; };
  std::vector<shape> shapes{{1, 12, 512, 64}, {1, 12, 4096, 64}};
  if (long_runs) shapes.push_back({1, 12, 16384, 64});
  for (kind kd : {kind::linear_attention, kind::retention, kind::gla, kind::delta_rule, kind::gated_delta_rule})
    for (form fm : {form::chunked, form::recurrent, form::parallel})
      for (const shape& s : shapes)
        for (int t : {1, 2}) {
          if (fm == form::parallel && s.l > 1024) continue;
          const std::string name = std::string("BM_") + kind_name(kd) + "_" + form_name(fm) + "/" + arch + "/" +
                                   std::to_string(s.b) + "x" + std::to_string(s.h) + "x" + std::to_string(s.l) + "x" +
                                   std::to_string(s.d) + "/threads:" + std::to_string(t);
          benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { bm<Arch>(st, kd, fm, s.b, s.h, s.l, s.d, t); })
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
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
