// Quantized weights computed in their blocks (kernels/quant_linear.hpp), next to the f32 / f16 gemv:
//
// BM_quant_linear/<arch>/<type>/<n>x<k>/m<m>/t<threads>: quant_linear on one weight of the Llama-768
//   shapes. GB/s counts the weight bytes once (the blocks as stored), GFLOP/s 2 m n k.
// BM_gemv/<arch>/<f32|f16>/<n>x<k>/t<threads>: kernels::gemv on the same shapes (m = 1), and
//   BM_gemm/<arch>/<f32|f16>/<n>x<k>/m64/t<threads>: kernels::gemm beside the prefill rows.
// BM_quant_token/<arch>/<type>/m<m>/t<threads>: one decode step's projections of the Llama-768
//   model (12 layers of q/k/v/o 768 x 768, gate/up 2048 x 768, down 768 x 2048, and the 32000 x 768
//   LM head; 438 MB in f32, 82 MB in q4_0), far larger than the L3 cache: the memory-bound figure
//   to set against bench_limits' BM_read_bandwidth, run in the same pass (docs/quant.md), and
//   BM_quant_token_read/<arch>/<type>/t<threads>: a plain sum of the same weight bytes.
// BM_quant_path/<arch>/<int|gemm>/<type>/<n>x<k>/m<m>/t<threads>: the two paths of quant_linear
//   forced for every m, to place quant_rows_max_m.
//
// Weights are random bytes with finite random scales (every bit pattern is a valid quant).
#include "bench_common.hpp"

#include <cstring>
#include <vector>

#include <tessera/core/blocks.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/kernels/gemm.hpp>
#include <tessera/kernels/gemv.hpp>
#include <tessera/kernels/quant_linear.hpp>

namespace tessera::bench {
namespace {

using arch = simd::default_arch;

/// n blocks of random bytes with finite random f16 scales (as tools/fixtures/make_gguf_quants.py).
template <class B>
std::vector<B> random_blocks(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<B> v(n);
  auto* p = reinterpret_cast<unsigned char*>(v.data());
  for (std::size_t i = 0; i + 8 <= n * sizeof(B); i += 8) {
    const std::uint64_t r = g();
    std::memcpy(p + i, &r, 8);
  }
  std::uniform_real_distribution<float> d(1e-3f, 4e-3f);
  for (auto& b : v) {
    b.d = f16(d(g));
    if constexpr (requires { b.dmin; }) b.dmin = f16(d(g));
    if constexpr (requires { b.m; }) b.m = f16(-d(g));
  }
  return v;
}

template <class B>
double weight_bytes(index_t n, index_t k) {
  return double(n) * double(k / B::block_size) * double(sizeof(B));
}

template <class B>
void run_linear(benchmark::State& state, index_t n, index_t k, index_t m, int threads) {
  use_threads(threads);
  const auto w = random_blocks<B>(std::size_t(n * (k / B::block_size)), 2);
  const auto x = random_data<float>(std::size_t(m * k), 1);
  std::vector<float> out(std::size_t(m * n));
  workspace ws(kernels::quant_linear_workspace_bytes<B>(m, k));
  const tensor_view<const B, 2> wv(w.data(), {n, k / B::block_size});
  const tensor_view<const float, 2> xv(x.data(), {m, k});
  const tensor_view<float, 2> ov(out.data(), {m, n});
  for (auto _ : state) {
    kernels::quant_linear(xv, wv, ov, ws);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * double(m) * double(n) * double(k), weight_bytes<B>(n, k));
}

template <class W>
void run_gemv(benchmark::State& state, index_t n, index_t k, int threads) {
  use_threads(threads);
  const auto w = random_data<W>(std::size_t(n * k), 2);
  const auto x = random_data<float>(std::size_t(k), 1);
  std::vector<float> y(static_cast<std::size_t>(n));
  const tensor_view<const W, 2> wv(w.data(), {n, k});
  for (auto _ : state) {
    kernels::gemv(tensor_view<const float, 1>(x.data(), {k}), wv, tensor_view<float, 1>(y.data(), {n}));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * double(n) * double(k), double(sizeof(W)) * double(n * k));
}

/// kernels::gemm (the f32 / f16 prefill) on the same shapes, beside quant_linear's prefill rows.
template <class W>
void run_gemm(benchmark::State& state, index_t n, index_t k, index_t m, int threads) {
  use_threads(threads);
  const auto w = random_data<W>(std::size_t(n * k), 2);
  const auto x = random_data<float>(std::size_t(m * k), 1);
  std::vector<float> out(static_cast<std::size_t>(m * n));
  workspace ws(kernels::gemm_workspace_bytes<W>(k));
  for (auto _ : state) {
    kernels::gemm(tensor_view<const float, 2>(x.data(), {m, k}), tensor_view<const W, 2>(w.data(), {n, k}),
                  tensor_view<float, 2>(out.data(), {m, n}), ws);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * double(m) * double(n) * double(k), double(sizeof(W)) * double(n * k));
}

/// The shapes of one Llama-768 decode step, in order (12 layers, then the LM head).
struct shape {
  index_t n, k;
};
std::vector<shape> token_shapes() {
  constexpr index_t d = 768, ff = 2048, vocab = 32000;
  std::vector<shape> s;
  for (int l = 0; l < 12; ++l)
    for (const shape& one : {shape{d, d}, shape{d, d}, shape{d, d}, shape{d, d}, shape{ff, d}, shape{ff, d}, shape{d, ff}})
      s.push_back(one);
  s.push_back({vocab, d});
  return s;
}

/// One decode step's weights of type W (a block type, or f32 / f16 through gemv). read: instead of
/// the product, a plain vector sum of the same weight bytes in the same order (read_sum), the best
/// a memory-bound kernel can do on them, interleaved with the kernels in one run.
template <class W>
void run_token(benchmark::State& state, index_t m, int threads, bool read = false) {
  use_threads(threads);
  constexpr index_t bs = block_elements_v<W>;
  const auto shapes = token_shapes();
  std::vector<tensor<float, 1>> storage;  // 64-byte aligned, as tessera's weights are (read_sum loads aligned)
  std::vector<const W*> weights;
  double bytes = 0, flops = 0;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    const std::size_t count = std::size_t(shapes[i].n * (shapes[i].k / bs));
    const std::size_t floats = (count * sizeof(W) + 63) / 64 * 16;
    storage.emplace_back(extents<1>{index_t(floats)});
    if constexpr (quant_block<W>) {
      const auto blocks = random_blocks<W>(count, 10 + i);
      std::memcpy(storage.back().data(), blocks.data(), count * sizeof(W));
    } else {
      const auto t = random_data<W>(count, 10 + i);
      std::memcpy(storage.back().data(), t.data(), count * sizeof(W));
    }
    weights.push_back(reinterpret_cast<const W*>(storage.back().data()));
    bytes += double(count) * double(sizeof(W));
    flops += 2.0 * double(m) * double(shapes[i].n) * double(shapes[i].k);
  }
  const auto x = random_data<float>(std::size_t(m * 2048), 1);
  std::vector<float> out(std::size_t(m * 32000));
  workspace ws;
  if constexpr (quant_block<W>) ws.reserve(kernels::quant_linear_workspace_bytes<W>(m, 2048));
  for (auto _ : state) {
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      const auto [n, k] = shapes[i];
      const tensor_view<const W, 2> wv(weights[i], {n, k / bs});
      if (read) {
        const float* p = storage[i].data();
        const index_t len = storage[i].extent(0);
        parallel_for(0, len / 16, 64, [&](index_t lo, index_t hi) {
          out[std::size_t(lo % 64)] += read_sum<arch>(p + lo * 16, (hi - lo) * 16);
        });
      } else if constexpr (quant_block<W>) {
        kernels::quant_linear(tensor_view<const float, 2>(x.data(), {m, k}), wv, tensor_view<float, 2>(out.data(), {m, n}), ws);
      } else {
        kernels::gemv(tensor_view<const float, 1>(x.data(), {k}), wv, tensor_view<float, 1>(out.data(), {n}));
      }
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, flops, bytes);
}

/// quant_linear's integer path (quantized activations, vec_dot per row) forced for any m.
template <class B>
void int_path(const tensor_view<const float, 2>& x, const tensor_view<const B, 2>& w, const tensor_view<float, 2>& out,
              workspace& ws) {
  using A = kernels::activation_block_t<B>;
  const index_t m = x.extent(0), n = w.extent(0), kb = w.extent(1);
  workspace::frame frame(ws);
  A* act = ws.alloc<A>(m * kb);
  for (index_t i = 0; i < m; ++i) kernels::quantize_activation(x.row(i), act + i * kb, kb, arch{});
  parallel_for_dynamic(0, n, kernels::detail::quant_chunk_rows(n, kb * index_t(sizeof(B))), [&](index_t lo, index_t hi) {
    kernels::detail::quant_rows_range<arch>(w.data(), kb, act, kb, m, out.data(), n, lo, hi);
  });
}

template <class B>
void run_path(benchmark::State& state, bool integer, index_t n, index_t k, index_t m, int threads) {
  use_threads(threads);
  const auto w = random_blocks<B>(std::size_t(n * (k / B::block_size)), 2);
  const auto x = random_data<float>(std::size_t(m * k), 1);
  std::vector<float> out(std::size_t(m * n));
  workspace ws(std::max(kernels::quant_linear_workspace_bytes<B>(m, k),
                        kernels::quant_linear_workspace_bytes<B>(kernels::quant_rows_max_m<B> + 1, k)) +
               workspace::bytes_for<kernels::activation_block_t<B>>(m * (k / B::block_size)));
  const tensor_view<const B, 2> wv(w.data(), {n, k / B::block_size});
  const tensor_view<const float, 2> xv(x.data(), {m, k});
  const tensor_view<float, 2> ov(out.data(), {m, n});
  for (auto _ : state) {
    if (integer) int_path(xv, wv, ov, ws);
    else kernels::detail::quant_gemm<arch>(xv, wv, ov, ws);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * double(m) * double(n) * double(k), weight_bytes<B>(n, k));
}

template <class B>
void register_type() {
  const std::string arch_name = simd::arch_name<arch>();
  const std::string type(B::name);
  for (int threads : {1, 2}) {
    const std::string t = "/t" + std::to_string(threads);
    for (const shape s : {shape{768, 768}, shape{2048, 768}, shape{768, 2048}, shape{32000, 768}})
      for (index_t m : {1, 64}) {
        const index_t n = s.n, k = s.k;
        if (m > 1 && n == 32000) continue;
        benchmark::RegisterBenchmark(("BM_quant_linear/" + arch_name + "/" + type + "/" + std::to_string(n) + "x" +
                                      std::to_string(k) + "/m" + std::to_string(m) + t).c_str(),
                                     [=](benchmark::State& st) { run_linear<B>(st, n, k, m, threads); })
            ->UseRealTime()->MinTime(0.2);
      }
    for (index_t m : {1, 4})
      benchmark::RegisterBenchmark(("BM_quant_token/" + arch_name + "/" + type + "/m" + std::to_string(m) + t).c_str(),
                                   [=](benchmark::State& st) { run_token<B>(st, m, threads); })
          ->UseRealTime()->MinTime(0.5);
    benchmark::RegisterBenchmark(("BM_quant_token_read/" + arch_name + "/" + type + t).c_str(),
                                 [=](benchmark::State& st) { run_token<B>(st, 1, threads, true); })
        ->UseRealTime()->MinTime(0.5);
  }
}

template <class B>
void register_paths() {
  const std::string arch_name = simd::arch_name<arch>();
  for (int threads : {1, 2})
    for (index_t m : {4, 8, 12, 16, 24, 32, 64, 128})
      for (bool integer : {true, false}) {
        const std::string name = "BM_quant_path/" + arch_name + (integer ? "/int/" : "/gemm/") + std::string(B::name) +
                                 "/2048x768/m" + std::to_string(m) + "/t" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { run_path<B>(st, integer, 2048, 768, m, threads); })
            ->UseRealTime()->MinTime(0.2);
      }
}

}  // namespace
}  // namespace tessera::bench

int main(int argc, char** argv) {
  using namespace tessera;
  benchmark::Initialize(&argc, argv);
  bench::add_context();
  const std::string arch_name = simd::arch_name<bench::arch>();
  bench::register_type<block_q8_0>();
  bench::register_type<block_q4_0>();
  bench::register_type<block_q4_K>();
  bench::register_type<block_q6_K>();
  bench::register_type<block_q5_K>();
  bench::register_type<block_q4_1>();
  bench::register_type<block_q5_0>();
  bench::register_type<block_q5_1>();
  bench::register_type<block_iq4_nl>();
  bench::register_type<block_iq4_xs>();
  for (int threads : {1, 2}) {
    const std::string t = "/t" + std::to_string(threads);
    for (const bench::shape s : {bench::shape{768, 768}, bench::shape{2048, 768}, bench::shape{768, 2048}, bench::shape{32000, 768}}) {
      const index_t n = s.n, k = s.k;
      const std::string tail = "/" + std::to_string(n) + "x" + std::to_string(k) + t;
      benchmark::RegisterBenchmark(("BM_gemv/" + arch_name + "/f32" + tail).c_str(),
                                   [=](benchmark::State& st) { bench::run_gemv<float>(st, n, k, threads); })
          ->UseRealTime()->MinTime(0.2);
      benchmark::RegisterBenchmark(("BM_gemv/" + arch_name + "/f16" + tail).c_str(),
                                   [=](benchmark::State& st) { bench::run_gemv<f16>(st, n, k, threads); })
          ->UseRealTime()->MinTime(0.2);
      if (n == 32000) continue;
      const std::string prefill = "/" + std::to_string(n) + "x" + std::to_string(k) + "/m64" + t;
      benchmark::RegisterBenchmark(("BM_gemm/" + arch_name + "/f32" + prefill).c_str(),
                                   [=](benchmark::State& st) { bench::run_gemm<float>(st, n, k, 64, threads); })
          ->UseRealTime()->MinTime(0.2);
      benchmark::RegisterBenchmark(("BM_gemm/" + arch_name + "/f16" + prefill).c_str(),
                                   [=](benchmark::State& st) { bench::run_gemm<f16>(st, n, k, 64, threads); })
          ->UseRealTime()->MinTime(0.2);
    }
    benchmark::RegisterBenchmark(("BM_quant_token/" + arch_name + "/f32/m1" + t).c_str(),
                                 [=](benchmark::State& st) { bench::run_token<float>(st, 1, threads); })
        ->UseRealTime()->MinTime(0.5);
    benchmark::RegisterBenchmark(("BM_quant_token/" + arch_name + "/f16/m1" + t).c_str(),
                                 [=](benchmark::State& st) { bench::run_token<f16>(st, 1, threads); })
        ->UseRealTime()->MinTime(0.5);
    benchmark::RegisterBenchmark(("BM_quant_token_read/" + arch_name + "/f32" + t).c_str(),
                                 [=](benchmark::State& st) { bench::run_token<float>(st, 1, threads, true); })
        ->UseRealTime()->MinTime(0.5);
  }
  bench::register_paths<block_q4_0>();
  bench::register_paths<block_q4_K>();
  bench::register_paths<block_q8_0>();
  bench::register_paths<block_q6_K>();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
