// tessera/ops/linear.hpp: out = x · wᵀ + bias (torch.nn.functional.linear).
//
//   x:    (m, k) f32, rows contiguous
//   w:    (n, k) f32 / f16 / bf16, rows contiguous (the nn.Linear layout)
//   bias: (n) f32, optional
//   out:  (m, n) f32, rows contiguous; must not alias x
//
// m == 1 (decode) runs kernels::gemv, reading narrow weights directly; 2 <= m <=
// gemv_rows_max_m<Arch> (batched decode: 32 on AVX2, 16 on AVX-512) runs kernels::gemv_rows, which
// reads each weight row once for all m rows and needs no scratch; larger m (prefill) runs the
// packed kernels::gemm with scratch from ws (reserve linear_workspace_bytes<W>(k) there beforehand).
// Weights in ggml blocks (w: (n, k / block) of core/blocks.hpp types) run kernels::quant_linear,
// which quantizes x's rows once into its scratch (linear_workspace_bytes<B>(m, k)); f32 / f16 /
// bf16 weights made into panels at load (block_x16) run kernels::gemm_panel for every m.
#pragma once

#include <optional>
#include <type_traits>

#include <tessera/core/blocks.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/kernels/elementwise.hpp>
#include <tessera/kernels/gemm.hpp>
#include <tessera/kernels/gemm_panel.hpp>
#include <tessera/kernels/gemv.hpp>
#include <tessera/kernels/gemv_rows.hpp>
#include <tessera/kernels/quant.hpp>
#include <tessera/ops/rows.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace ops {

/// Workspace bytes linear needs for weights of type W with k input features (all threads).
template <class W>
std::size_t linear_workspace_bytes(index_t k, int threads = num_threads()) noexcept {
  return kernels::gemm_workspace_bytes<std::remove_const_t<W>>(k, threads);
}

/// Workspace bytes linear needs for m rows of k input features and weights in blocks of type B.
template <class B>
  requires quant_block<B> || interleaved_block<B>
std::size_t linear_workspace_bytes(index_t m, index_t k, int threads = num_threads()) noexcept {
  if constexpr (is_panel_v<B>) return 0;  // gemm_panel needs no scratch
  else return kernels::quant_linear_workspace_bytes<B>(m, k, threads);
}

namespace detail {

inline void add_bias(const std::optional<tensor_view<const float, 1>>& bias, tensor_view<float, 2> out, auto arch) {
  if (!bias || out.extent(0) == 0) return;
  expect_shape(*bias, {out.extent(1)}, "linear", "bias");
  expect_dense_rows(*bias, "linear", "bias");
  const index_t n = out.extent(1);
  for_rows(out.extent(0), n, [&](index_t i) { kernels::vec_add(n, out.row(i), bias->data(), out.row(i), decltype(arch){}); });
}

template <class W>
void check_linear(const tensor_view<const float, 2>& x, const tensor_view<W, 2>& w,
                  const std::optional<tensor_view<const float, 1>>& bias, const tensor_view<float, 2>& out) {
  const auto [m, k] = x.extents();
  const index_t n = w.extent(0);
  if (w.extent(1) != k)
    throw shape_error("linear: x has extents " + to_string(x.extents()) + " but w has extents " +
                      to_string(w.extents()) + " (in features " + std::to_string(k) + " vs " +
                      std::to_string(w.extent(1)) + ")");
  expect_shape(out, {m, n}, "linear", "out");
  if (bias) {
    expect_shape(*bias, {n}, "linear", "bias");
    expect_dense_rows(*bias, "linear", "bias");
  }
  expect_dense_rows(x, "linear", "x");
  expect_dense_rows(w, "linear", "w");
  expect_dense_rows(out, "linear", "out");
}

template <class Arch, class W>
void linear_impl(tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                 const std::optional<tensor_view<const float, 1>>& bias, tensor_view<float, 2> out, workspace& ws) {
  const index_t m = x.extent(0);
  if (m == 1) kernels::gemv(x[0], w, out[0], Arch{});
  else if (m <= kernels::gemv_rows_max_m<Arch>) kernels::gemv_rows(x, w, out, Arch{});
  else kernels::gemm(x, w, out, ws, Arch{});
  add_bias(bias, out, Arch{});
}

}  // namespace detail

/// out = x · wᵀ + bias, scalar reference (plain loops of kernels::gemm / gemv's scalar overloads).
template <class W>
void linear(tensor_view<const float, 2> x, tensor_view<W, 2> w, std::optional<tensor_view<const float, 1>> bias,
            tensor_view<float, 2> out, workspace& ws, simd::scalar) {
  detail::check_linear(x, w, bias, out);
  detail::linear_impl<simd::scalar, std::remove_const_t<W>>(x, w, bias, out, ws);
}

/// out = x · wᵀ + bias: gemv for one row, gemv_rows for a few, the packed gemm otherwise.
template <class W, simd::arch_tag Arch = simd::default_arch>
void linear(tensor_view<const float, 2> x, tensor_view<W, 2> w, std::optional<tensor_view<const float, 1>> bias,
            tensor_view<float, 2> out, workspace& ws, Arch = {}) {
  detail::check_linear(x, w, bias, out);
  detail::linear_impl<Arch, std::remove_const_t<W>>(x, w, bias, out, ws);
}

/// out = x · wᵀ + bias with w in ggml blocks (Q8_0, Q4_K, ...) or interleaved ones (block_q4_0x8),
/// computed in its blocks; f32 / f16 / bf16 panels (block_x16) through kernels::gemm_panel.
template <class B, simd::arch_tag Arch = simd::default_arch>
  requires quant_block<B> || interleaved_block<B>
void linear(tensor_view<const float, 2> x, tensor_view<const B, 2> w, std::optional<tensor_view<const float, 1>> bias,
            tensor_view<float, 2> out, workspace& ws, Arch = {}) {
  if constexpr (is_panel_v<B>) kernels::gemm_panel(x, w, out, Arch{});
  else kernels::quant_linear(x, w, out, ws, Arch{});
  detail::add_bias(bias, out, Arch{});
}

/// linear into a new (m, n) tensor (a workspace of the right size is made when ws is too small:
/// convenient, but it allocates; models pass their own).
template <class W, simd::arch_tag Arch = simd::default_arch>
tensor<float, 2> linear_copy(tensor_view<const float, 2> x, tensor_view<W, 2> w,
                             std::optional<tensor_view<const float, 1>> bias = std::nullopt, Arch = {}) {
  tensor<float, 2> out({x.extent(0), w.extent(0)});
  workspace ws(linear_workspace_bytes<W>(x.extent(1)));
  linear(x, w, bias, out.view(), ws, Arch{});
  return out;
}

}  // namespace ops
}  // namespace v0
}  // namespace tessera
