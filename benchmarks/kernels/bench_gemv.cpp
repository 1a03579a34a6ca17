// BM_gemv/<arch>/<dtype>/<n>x<k>/t<threads>: tessera's gemv y = w · x for f32, f16 and bf16
// weights, and BM_sgemv_openblas on the f32 shapes. GB/s counts the weight bytes (plus x and y):
// compare it with bench_limits' BM_read_bandwidth for weights larger than L2 (1 MB per core here),
// and with BM_gemv_read, run right after on the same bytes: a plain vector sum of the weight buffer
// split over threads like gemv's rows, the best a memory-bound gemv can do.
//
// BM_gemv_token/<arch>/<dtype>/t<threads>: one decoded token's projections of the Llama-768 shape
// (12 layers of q/k/v/o 768 x 768, gate/up 2048 x 768, down 768 x 2048, and the 32000 x 768 LM
// head: 438 MB in f32, 219 MB in f16), in the decode's order and grouping (gemv_many for q/k/v and
// gate/up): the weight stream of a decode step without the rest of the model.
//
// BM_gemv_rows_token/<arch>/<dtype>/m<m>/t<threads>: the same step for m sequences decoded together
// (batched decode): gemv / gemv_many for m = 1, gemv_rows / gemv_rows_many for m > 1 (what
// ops::linear and linear::forward_shared run up to gemv_rows_max_m). BM_gemm_packed_token: the same
// step through the packed gemm (gemm_packed, which ops::linear runs above gemv_rows_max_m), to find
// the m where it starts winning. GFLOP/s counts 2 m flops per weight, GB/s the weight bytes once.
#include "bench_common.hpp"

#include <tessera/core/workspace.hpp>
#include <tessera/kernels/gemm.hpp>
#include <tessera/kernels/gemv.hpp>
#include <tessera/kernels/gemv_rows.hpp>

namespace tessera::bench {
namespace {

enum class impl { ours, openblas, read };

template <class W>
void run(benchmark::State& state, index_t n, index_t k, int threads, impl which) {
  use_threads(threads);
  const auto x = random_data<float>(std::size_t(k), 1);
  const auto w = random_data<W>(std::size_t(n * k), 2);
  std::vector<float> y(static_cast<std::size_t>(n));
  tensor_view<const float, 1> xv(x.data(), {k});
  tensor_view<const W, 2> wv(w.data(), {n, k});
  tensor_view<float, 1> yv(y.data(), {n});
  for (auto _ : state) {
    if (which == impl::ours) {
      kernels::gemv(xv, wv, yv);
    } else if (which == impl::read) {  // the same weight bytes, summed as floats, same row split
      const float* p = reinterpret_cast<const float*>(w.data());
      const index_t row_floats = k * index_t(sizeof(W)) / 4;
      parallel_for(0, n, 64, [&](index_t lo, index_t hi) {
        y[std::size_t(lo)] = read_sum<simd::default_arch>(p + lo * row_floats, (hi - lo) * row_floats);
      });
    } else {
#if defined(TESSERA_BENCH_OPENBLAS)
      if constexpr (std::is_same_v<W, float>)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, int(n), int(k), 1.f, w.data(), int(k), x.data(), 1, 0.f, y.data(), 1);
#endif
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * double(n) * double(k), double(sizeof(W)) * double(n * k) + 4.0 * double(n + k));
}

enum class token_impl { gemv, gemv_rows, packed };

/// One decode step's projections of the Llama-768 shape for m rows (m = 1: one sequence).
template <class W>
void run_token(benchmark::State& state, index_t m, int threads, token_impl which) {
  use_threads(threads);
  struct layer { tensor<W, 1> q, k, v, o, gate, up, down; };
  constexpr index_t d = 768, ff = 2048, vocab = 32000;
  std::vector<layer> layers;
  for (std::uint64_t l = 0; l < 12; ++l)
    layers.push_back({random_data<W>(d * d, 10 * l), random_data<W>(d * d, 10 * l + 1), random_data<W>(d * d, 10 * l + 2),
                      random_data<W>(d * d, 10 * l + 3), random_data<W>(ff * d, 10 * l + 4),
                      random_data<W>(ff * d, 10 * l + 5), random_data<W>(d * ff, 10 * l + 6)});
  const auto head = random_data<W>(std::size_t(vocab * d), 999);
  const auto x = random_data<float>(std::size_t(m * ff), 1);
  tensor<float, 1> y({m * vocab});
  workspace ws(kernels::gemm_workspace_bytes<W>(ff));
  auto mat = [](const tensor<W, 1>& t, index_t n, index_t k) { return tensor_view<const W, 2>(t.data(), {n, k}); };
  const tensor_view<const float, 2> xd(x.data(), {m, d}), xf(x.data(), {m, ff});
  float* yp = y.data();
  const tensor_view<float, 2> yd(yp, {m, d}), y2(yp + m * d, {m, d}), y3(yp + 2 * m * d, {m, d}), yf(yp, {m, ff}),
      yf2(yp + m * ff, {m, ff}), yv(yp, {m, vocab});
  auto product = [&](tensor_view<const float, 2> a, tensor_view<const W, 2> w, tensor_view<float, 2> c) {
    if (which == token_impl::packed) kernels::detail::gemm_packed<simd::default_arch>(a, w, c, ws, false);
    else if (m == 1) kernels::gemv(a[0], w, c[0]);
    else kernels::gemv_rows(a, w, c);
  };
  for (auto _ : state) {
    for (const auto& L : layers) {
      if (which == token_impl::packed) {
        product(xd, mat(L.q, d, d), yd);
        product(xd, mat(L.k, d, d), y2);
        product(xd, mat(L.v, d, d), y3);
      } else if (m == 1) {
        kernels::gemv_many<W, 3>(xd[0], {mat(L.q, d, d), mat(L.k, d, d), mat(L.v, d, d)}, {yd[0], y2[0], y3[0]});
      } else {
        kernels::gemv_rows_many<W, 3>(xd, {mat(L.q, d, d), mat(L.k, d, d), mat(L.v, d, d)}, {yd, y2, y3});
      }
      product(xd, mat(L.o, d, d), yd);
      if (which == token_impl::packed) {
        product(xd, mat(L.gate, ff, d), yf);
        product(xd, mat(L.up, ff, d), yf2);
      } else if (m == 1) {
        kernels::gemv_many<W, 2>(xd[0], {mat(L.gate, ff, d), mat(L.up, ff, d)}, {yf[0], yf2[0]});
      } else {
        kernels::gemv_rows_many<W, 2>(xd, {mat(L.gate, ff, d), mat(L.up, ff, d)}, {yf, yf2});
      }
      product(xf, mat(L.down, d, ff), yd);
    }
    product(xd, mat(head, vocab, d), yv);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double weights = double(12 * (4 * d * d + 3 * ff * d) + vocab * d);
  set_counters(state, 2.0 * double(m) * weights, double(sizeof(W)) * weights);
}

template <class W>
void register_dtype(const char* dtype, bool with_openblas) {
  const std::string arch = simd::arch_name<simd::default_arch>();
  const std::pair<index_t, index_t> shapes[] = {{768, 768}, {3072, 768}, {768, 3072}, {4096, 4096}, {16384, 4096}};
  for (int threads : {1, 2})
    for (const auto& shape : shapes) {
      const index_t n = shape.first, k = shape.second;  // not a structured binding: the lambdas capture them (clang 14)
      const std::string tail = "/" + std::to_string(n) + "x" + std::to_string(k) + "/t" + std::to_string(threads);
      benchmark::RegisterBenchmark(("BM_gemv/" + arch + "/" + dtype + tail).c_str(),
                                   [=](benchmark::State& st) { run<W>(st, n, k, threads, impl::ours); })
          ->UseRealTime()->MinTime(0.3);
      benchmark::RegisterBenchmark(("BM_gemv_read/" + arch + "/" + dtype + tail).c_str(),
                                   [=](benchmark::State& st) { run<W>(st, n, k, threads, impl::read); })
          ->UseRealTime()->MinTime(0.3);
#if defined(TESSERA_BENCH_OPENBLAS)
      if (with_openblas)
        benchmark::RegisterBenchmark(("BM_sgemv_openblas/" + arch + "/" + dtype + tail).c_str(),
                                     [=](benchmark::State& st) { run<W>(st, n, k, threads, impl::openblas); })
            ->UseRealTime()->MinTime(0.3);
#else
      (void)with_openblas;
#endif
    }
}

}  // namespace
}  // namespace tessera::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  tessera::bench::add_context();
  tessera::bench::register_dtype<float>("f32", true);
  tessera::bench::register_dtype<tessera::f16>("f16", false);
  tessera::bench::register_dtype<tessera::bf16>("bf16", false);
  const std::string arch = tessera::simd::arch_name<tessera::simd::default_arch>();
  for (int threads : {1, 2}) {
    const std::string tail = "/t" + std::to_string(threads);
    benchmark::RegisterBenchmark(("BM_gemv_token/" + arch + "/f32" + tail).c_str(),
                                 [=](benchmark::State& st) { tessera::bench::run_token<float>(st, 1, threads, tessera::bench::token_impl::gemv); })
        ->UseRealTime()->MinTime(0.5);
    benchmark::RegisterBenchmark(("BM_gemv_token/" + arch + "/f16" + tail).c_str(),
                                 [=](benchmark::State& st) { tessera::bench::run_token<tessera::f16>(st, 1, threads, tessera::bench::token_impl::gemv); })
        ->UseRealTime()->MinTime(0.5);
  }
  using tessera::index_t;
  using tessera::bench::token_impl;
  for (int threads : {1, 2})
    for (index_t m : {1, 2, 4, 8, 12, 16, 24, 32, 48, 64}) {
      const std::string tail = "/m" + std::to_string(m) + "/t" + std::to_string(threads);
      const auto impl = m == 1 ? token_impl::gemv : token_impl::gemv_rows;
      benchmark::RegisterBenchmark(("BM_gemv_rows_token/" + arch + "/f32" + tail).c_str(),
                                   [=](benchmark::State& st) { tessera::bench::run_token<float>(st, m, threads, impl); })
          ->UseRealTime()->MinTime(0.5);
      benchmark::RegisterBenchmark(("BM_gemv_rows_token/" + arch + "/f16" + tail).c_str(),
                                   [=](benchmark::State& st) { tessera::bench::run_token<tessera::f16>(st, m, threads, impl); })
          ->UseRealTime()->MinTime(0.5);
      if (m < 4) continue;
      benchmark::RegisterBenchmark(("BM_gemm_packed_token/" + arch + "/f32" + tail).c_str(),
                                   [=](benchmark::State& st) { tessera::bench::run_token<float>(st, m, threads, token_impl::packed); })
          ->UseRealTime()->MinTime(0.5);
      benchmark::RegisterBenchmark(("BM_gemm_packed_token/" + arch + "/f16" + tail).c_str(),
                                   [=](benchmark::State& st) { tessera::bench::run_token<tessera::f16>(st, m, threads, token_impl::packed); })
          ->UseRealTime()->MinTime(0.5);
    }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
