// tessera/kernels/gemm.hpp: prefill-path matrix-matrix product, c = a · wᵀ (PyTorch's linear).
//
//   a: (m, k) f32 activations, rows contiguous
//   w: (n, k) weights, f32 / f16 / bf16, rows contiguous (the nn.Linear layout)
//   c: (m, n) f32 output, rows contiguous; overwritten
//
// f32 weights go straight to Eigen's GEMM through core/eigen.hpp. f16 and bf16 weights are
// widened to f32 per tile of rows into the caller's workspace (never once at load), so a bf16
// model keeps half the memory and the decode path (gemv) keeps reading the narrow weights; the
// widening costs O(n·k) against the O(m·n·k) product, negligible once m is more than a few rows.
#pragma once

#include <algorithm>

#include <tessera/core/dtype.hpp>
#include <tessera/core/eigen.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

/// Rows of w widened per tile for f16/bf16 weights.
inline constexpr index_t gemm_weight_tile_rows = 256;

/// Workspace bytes gemm needs for weights of type W with k columns.
template <class W>
constexpr std::size_t gemm_workspace_bytes(index_t k) noexcept {
  if constexpr (std::is_same_v<std::remove_const_t<W>, float>) return 0;
  else return workspace::bytes_for<float>(gemm_weight_tile_rows * k);
}

namespace detail {
template <class W>
void check_gemm_shapes(const tensor_view<const float, 2>& a, const tensor_view<const W, 2>& w,
                       const tensor_view<float, 2>& c) {
  expect_equal(a.extent(1), w.extent(1), "gemm: a columns (k) vs w columns (k)");
  expect_equal(c.extent(0), a.extent(0), "gemm: c rows vs a rows (m)");
  expect_equal(c.extent(1), w.extent(0), "gemm: c columns vs w rows (n)");
  expect_rows_contiguous(a, "gemm: a");
  expect_rows_contiguous(w, "gemm: w");
  expect_rows_contiguous(c, "gemm: c");
}
}  // namespace detail

/// c = a · wᵀ, scalar reference (double accumulation is in the tests; this is the plain loop).
template <class W>
void gemm(tensor_view<const float, 2> a, tensor_view<const W, 2> w, tensor_view<float, 2> c, workspace&,
          simd::scalar) {
  detail::check_gemm_shapes(a, w, c);
  const auto [m, k] = a.extents();
  const index_t n = w.extent(0);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      float acc = 0.f;
      for (index_t p = 0; p < k; ++p) acc += a(i, p) * to_float(w(j, p));
      c(i, j) = acc;
    }
}

/// c = a · wᵀ through Eigen (threads: Eigen's OpenMP, i.e. tessera::set_num_threads).
template <class W, class Arch = simd::default_arch>
void gemm(tensor_view<const float, 2> a, tensor_view<const W, 2> w, tensor_view<float, 2> c, workspace& ws,
          Arch = {}) {
  detail::check_gemm_shapes(a, w, c);
  const auto [m, k] = a.extents();
  const index_t n = w.extent(0);
  if (m == 0 || n == 0) return;
  auto A = tessera::detail::as_matrix(a);
  if constexpr (std::is_same_v<std::remove_const_t<W>, float>) {
    auto C = tessera::detail::as_matrix(c);
    C.noalias() = A * tessera::detail::as_matrix(w).transpose();
  } else {
    workspace::frame frame(ws);
    const index_t tile = std::min(gemm_weight_tile_rows, n);
    float* wide = ws.alloc<float>(tile * k);
    for (index_t j0 = 0; j0 < n; j0 += tile) {
      const index_t rows = std::min(tile, n - j0);
      for (index_t j = 0; j < rows; ++j) {
        const W* src = w.row(j0 + j);
        float* dst = wide + j * k;
        for (index_t p = 0; p < k; ++p) dst[p] = to_float(src[p]);
      }
      tensor_view<const float, 2> wt(wide, {rows, k});
      auto C = tessera::detail::as_matrix(c.slice(1, j0, j0 + rows));
      C.noalias() = A * tessera::detail::as_matrix(wt).transpose();
    }
  }
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
