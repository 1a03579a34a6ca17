// tessera/kernels/gemv.hpp: decode-path matrix-vector product, y = w · x.
//
//   x: (k) f32, contiguous
//   w: (n, k) weights, f32 / f16 / bf16, rows contiguous (nn.Linear layout), read directly
//   y: (n) f32, contiguous; overwritten
//
// Decode is bound by memory bandwidth: every weight byte is read once per token, so the narrow
// types are read as they are stored and widened in registers. Rows are split over threads.
#pragma once

#include <tessera/core/dtype.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

namespace detail {
template <class W>
void check_gemv_shapes(const tensor_view<const float, 1>& x, const tensor_view<const W, 2>& w,
                       const tensor_view<float, 1>& y) {
  expect_equal(x.extent(0), w.extent(1), "gemv: x length (k) vs w columns (k)");
  expect_equal(y.extent(0), w.extent(0), "gemv: y length vs w rows (n)");
  expect_rows_contiguous(w, "gemv: w");
  if (x.extent(0) > 1 && x.stride(0) != 1) throw shape_error("gemv: x must be contiguous");
  if (y.extent(0) > 1 && y.stride(0) != 1) throw shape_error("gemv: y must be contiguous");
}
}  // namespace detail

/// y = w · x, scalar reference.
template <class W>
void gemv(tensor_view<const float, 1> x, tensor_view<const W, 2> w, tensor_view<float, 1> y, simd::scalar) {
  detail::check_gemv_shapes(x, w, y);
  const auto [n, k] = w.extents();
  for (index_t j = 0; j < n; ++j) {
    float acc = 0.f;
    const W* row = w.row(j);
    for (index_t p = 0; p < k; ++p) acc += to_float(row[p]) * x(p);
    y(j) = acc;
  }
}

/// y = w · x, vectorized over k, rows split over threads.
template <class W, class Arch = simd::default_arch>
void gemv(tensor_view<const float, 1> x, tensor_view<const W, 2> w, tensor_view<float, 1> y, Arch = {}) {
  detail::check_gemv_shapes(x, w, y);
  const auto [n, k] = w.extents();
  const float* xp = x.data();
  float* yp = y.data();
  parallel_for(0, n, 64, [&](index_t lo, index_t hi) {
    for (index_t j = lo; j < hi; ++j) {
      const W* row = w.row(j);
      float acc = 0.f;
      if constexpr (std::is_same_v<std::remove_const_t<W>, float>) {
        using batch = xsimd::batch<float, Arch>;
        constexpr index_t lanes = batch::size;
        batch vacc(0.f);
        index_t p = 0;
        for (; p + lanes <= k; p += lanes)
          vacc = xsimd::fma(batch::load_unaligned(row + p), batch::load_unaligned(xp + p), vacc);
        acc = xsimd::reduce_add(vacc);
        for (; p < k; ++p) acc += row[p] * xp[p];
      } else {
        for (index_t p = 0; p < k; ++p) acc += to_float(row[p]) * xp[p];
      }
      yp[j] = acc;
    }
  });
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
