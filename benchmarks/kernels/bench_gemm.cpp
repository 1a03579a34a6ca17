// BM_gemm/<arch>/<m>x<n>x<k>/t<threads>: tessera's gemm (f32 weights), and on the same shapes
// BM_gemm_panel and BM_gemm_panel_f16 (f32 / f16 weights in panels made beforehand,
// kernels/gemm_panel.hpp, where kernels::panels_available), BM_gemm_bf16 and BM_gemm_f16 (narrow weights), BM_gemm_eigen (Eigen 3.4 through Eigen::Map)
// and BM_sgemm_openblas (cblas_sgemm, row-major a · wᵀ), all in one process so ratios are
// measured side by side. c = a · wᵀ with a: (m, k), w: (n, k), c: (m, n).
#include "bench_common.hpp"

#include <tessera/core/eigen.hpp>
#include <tessera/kernels/gemm.hpp>
#include <tessera/kernels/gemm_panel.hpp>

namespace tessera::bench {
namespace {

struct shape {
  index_t m, n, k;
};

enum class impl { ours, panel, eigen, openblas };

template <class W>
void run(benchmark::State& state, shape s, int threads, impl which) {
  use_threads(threads);
  const auto a = random_data<float>(std::size_t(s.m * s.k), 1);
  const auto w = random_data<W>(std::size_t(s.n * s.k), 2);
  std::vector<float> c(std::size_t(s.m * s.n));
  tensor_view<const float, 2> av(a.data(), {s.m, s.k});
  tensor_view<const W, 2> wv(w.data(), {s.n, s.k});
  tensor_view<float, 2> cv(c.data(), {s.m, s.n});
  workspace ws(kernels::gemm_workspace_bytes<W>(s.k, threads));
  std::vector<block_x16<W>> panels;
  if (which == impl::panel) {
    panels.resize(std::size_t(s.n / 16 * s.k));
    for (index_t q = 0; q < s.n / 16; ++q) {
      const W* rows[16];
      for (int r = 0; r < 16; ++r) rows[r] = w.data() + (16 * q + r) * s.k;
      interleave_rows(rows, s.k, panels.data() + q * s.k);
    }
  }
  const index_t panel_rows = panels.empty() ? 0 : s.n / 16;
  const tensor_view<const block_x16<W>, 2> pv(panels.empty() ? nullptr : panels.data(), {panel_rows, s.k});
  for (auto _ : state) {
    switch (which) {
      case impl::ours: kernels::gemm(av, wv, cv, ws); break;
      case impl::panel: kernels::gemm_panel(av, pv, cv); break;
      case impl::eigen:
        if constexpr (std::is_same_v<W, float>) {
          auto C = tessera::detail::as_matrix(cv);
          C.noalias() = tessera::detail::as_matrix(av) * tessera::detail::as_matrix(wv).transpose();
        }
        break;
      case impl::openblas:
#if defined(TESSERA_BENCH_OPENBLAS)
        if constexpr (std::is_same_v<W, float>)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(s.m), int(s.n), int(s.k), 1.f, a.data(), int(s.k),
                      reinterpret_cast<const float*>(w.data()), int(s.k), 0.f, c.data(), int(s.n));
#endif
        break;
    }
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * double(s.m) * double(s.n) * double(s.k),
               4.0 * double(s.m * s.k + s.m * s.n) + double(sizeof(W)) * double(s.n * s.k));
}

void register_all() {
  const std::string arch = simd::arch_name<simd::default_arch>();
  const shape weights[] = {{0, 768, 768}, {0, 768, 3072}, {0, 3072, 768}, {0, 4096, 4096}};
  for (int threads : {1, 2})
    for (index_t m : {1, 16, 128, 512})
      for (shape s : weights) {
        s.m = m;
        const std::string tail = arch + "/" + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                                 std::to_string(s.k) + "/t" + std::to_string(threads);
        auto reg = [&](const std::string& name, auto fn) {
          benchmark::RegisterBenchmark(name.c_str(), fn)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.3);
        };
        reg("BM_gemm/" + tail, [=](benchmark::State& st) { run<float>(st, s, threads, impl::ours); });
        if (kernels::panels_available())
          reg("BM_gemm_panel/" + tail, [=](benchmark::State& st) { run<float>(st, s, threads, impl::panel); });
#if defined(TESSERA_BENCH_OPENBLAS)
        reg("BM_sgemm_openblas/" + tail, [=](benchmark::State& st) { run<float>(st, s, threads, impl::openblas); });
#endif
        reg("BM_gemm_eigen/" + tail, [=](benchmark::State& st) { run<float>(st, s, threads, impl::eigen); });
        reg("BM_gemm_bf16/" + tail, [=](benchmark::State& st) { run<bf16>(st, s, threads, impl::ours); });
        reg("BM_gemm_f16/" + tail, [=](benchmark::State& st) { run<f16>(st, s, threads, impl::ours); });
        if (kernels::panels_available())
          reg("BM_gemm_panel_f16/" + tail, [=](benchmark::State& st) { run<f16>(st, s, threads, impl::panel); });
      }
}

}  // namespace
}  // namespace tessera::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  tessera::bench::add_context();
  tessera::bench::register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
