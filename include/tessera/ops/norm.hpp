// tessera/ops/norm.hpp: rms_norm and layer_norm over the rows of a (n, d) view.
//
//   x:      (n, d) f32, rows contiguous (row stride >= d)
//   weight: (d) f32 / f16 / bf16, contiguous
//   bias:   (d) optional (layer_norm), same type as weight
//   out:    (n, d) f32, rows contiguous; may alias x
//
//   rms_norm:   out = x / sqrt(mean(x²) + eps) * weight          (LlamaRMSNorm, T5LayerNorm)
//   layer_norm: out = (x - mean) / sqrt(var + eps) * weight + bias   (nn.LayerNorm, biased var)
// Statistics are accumulated in float like PyTorch (the SIMD form with 4 vector accumulators);
// rows are split over threads.
#pragma once

#include <cmath>
#include <optional>
#include <type_traits>

#include <tessera/core/dtype.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/kernels/reduce.hpp>
#include <tessera/ops/rows.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace ops {

namespace detail {

template <class W>
void check_norm(const char* op, const tensor_view<const float, 2>& x, const tensor_view<W, 1>& weight,
                const tensor_view<float, 2>& out) {
  const auto [n, d] = x.extents();
  expect_shape(weight, {d}, op, "weight");
  expect_shape(out, {n, d}, op, "out");
  expect_dense_rows(x, op, "x");
  expect_dense_rows(out, op, "out");
  expect_dense_rows(weight, op, "weight");
}

/// out[0:d] = (x[0:d] - shift) * scale * w (+ b): the normalization epilogue of one row.
template <class Arch, class W>
TESSERA_ALWAYS_INLINE void norm_row_epilogue(index_t d, const float* x, float shift, float scale, const W* w,
                                             const W* b, float* out) noexcept {
  using batch = simd::fbatch<Arch>;
  constexpr index_t L = simd::lanes_v<Arch>;
  const batch sh(shift), sc(scale);
  index_t i = 0;
  for (; i + L <= d; i += L) {
    batch y = ((batch::load_unaligned(x + i) - sh) * sc) * simd::load_widened<Arch>(w + i);
    if (b) y += simd::load_widened<Arch>(b + i);
    y.store_unaligned(out + i);
  }
  if (i < d) {
    const index_t r = d - i;
    batch y = ((simd::load_partial<Arch>(x + i, r) - sh) * sc) * simd::load_widened_partial<Arch>(w + i, r);
    if (b) y += simd::load_widened_partial<Arch>(b + i, r);
    simd::store_partial<Arch>(out + i, y, r);
  }
}

}  // namespace detail

// ---- rms_norm ------------------------------------------------------------------------------------

/// out = x / sqrt(mean(x²) + eps) * weight, scalar reference.
template <class W>
void rms_norm(tensor_view<const float, 2> x, tensor_view<W, 1> weight, tensor_view<float, 2> out, float eps,
              simd::scalar) {
  detail::check_norm("rms_norm", x, weight, out);
  const auto [n, d] = x.extents();
  for (index_t t = 0; t < n; ++t) {
    float ss = 0.f;
    for (index_t i = 0; i < d; ++i) ss += x(t, i) * x(t, i);
    const float scale = 1.f / std::sqrt(ss / static_cast<float>(d) + eps);
    for (index_t i = 0; i < d; ++i) out(t, i) = (x(t, i) * scale) * to_float(weight(i));
  }
}

/// out = x / sqrt(mean(x²) + eps) * weight, vectorized, rows over threads.
template <class W, simd::arch_tag Arch = simd::default_arch>
void rms_norm(tensor_view<const float, 2> x, tensor_view<W, 1> weight, tensor_view<float, 2> out, float eps,
              Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    rms_norm(x, weight, out, eps, simd::scalar{});
  } else {
    detail::check_norm("rms_norm", x, weight, out);
    const index_t n = x.extent(0), d = x.extent(1);
    const W* w = weight.data();
    detail::for_rows(n, d, [&](index_t t) {
      const float* xr = x.row(t);
      const float ss = kernels::sum_sq<Arch>(d, xr);
      const float scale = 1.f / std::sqrt(ss / static_cast<float>(d) + eps);
      detail::norm_row_epilogue<Arch, W>(d, xr, 0.f, scale, w, nullptr, out.row(t));
    });
  }
}

// ---- layer_norm ----------------------------------------------------------------------------------

/// out = (x - mean) / sqrt(var + eps) * weight + bias, scalar reference (two-pass statistics).
template <class W>
void layer_norm(tensor_view<const float, 2> x, tensor_view<W, 1> weight,
                std::optional<tensor_view<const std::remove_const_t<W>, 1>> bias, tensor_view<float, 2> out,
                float eps, simd::scalar) {
  detail::check_norm("layer_norm", x, weight, out);
  const auto [n, d] = x.extents();
  if (bias) detail::expect_shape(*bias, {d}, "layer_norm", "bias");
  for (index_t t = 0; t < n; ++t) {
    float s = 0.f;
    for (index_t i = 0; i < d; ++i) s += x(t, i);
    const float mean = s / static_cast<float>(d);
    float v = 0.f;
    for (index_t i = 0; i < d; ++i) v += (x(t, i) - mean) * (x(t, i) - mean);
    const float rstd = 1.f / std::sqrt(v / static_cast<float>(d) + eps);
    for (index_t i = 0; i < d; ++i) {
      float y = ((x(t, i) - mean) * rstd) * to_float(weight(i));
      if (bias) y += to_float((*bias)(i));
      out(t, i) = y;
    }
  }
}

/// out = (x - mean) / sqrt(var + eps) * weight + bias, vectorized, rows over threads.
template <class W, simd::arch_tag Arch = simd::default_arch>
void layer_norm(tensor_view<const float, 2> x, tensor_view<W, 1> weight,
                std::optional<tensor_view<const std::remove_const_t<W>, 1>> bias, tensor_view<float, 2> out,
                float eps, Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    layer_norm(x, weight, bias, out, eps, simd::scalar{});
  } else {
    detail::check_norm("layer_norm", x, weight, out);
    const index_t n = x.extent(0), d = x.extent(1);
    if (bias) {
      detail::expect_shape(*bias, {d}, "layer_norm", "bias");
      detail::expect_dense_rows(*bias, "layer_norm", "bias");
    }
    const W* w = weight.data();
    const W* b = bias ? bias->data() : nullptr;
    detail::for_rows(n, d, [&](index_t t) {
      const float* xr = x.row(t);
      const float mean = kernels::sum<Arch>(d, xr) / static_cast<float>(d);
      const float var = kernels::sum_sq_dev<Arch>(d, xr, mean) / static_cast<float>(d);
      const float rstd = 1.f / std::sqrt(var + eps);
      detail::norm_row_epilogue<Arch, W>(d, xr, mean, rstd, w, b, out.row(t));
    });
  }
}

// ---- value-returning conveniences ----------------------------------------------------------------

/// rms_norm into a new tensor.
template <class W, simd::arch_tag Arch = simd::default_arch>
tensor<float, 2> rms_norm_copy(tensor_view<const float, 2> x, tensor_view<W, 1> weight, float eps, Arch = {}) {
  tensor<float, 2> out(x.extents());
  rms_norm(x, weight, out.view(), eps, Arch{});
  return out;
}

/// layer_norm into a new tensor.
template <class W, simd::arch_tag Arch = simd::default_arch>
tensor<float, 2> layer_norm_copy(tensor_view<const float, 2> x, tensor_view<W, 1> weight,
                                 std::optional<tensor_view<const std::remove_const_t<W>, 1>> bias, float eps,
                                 Arch = {}) {
  tensor<float, 2> out(x.extents());
  layer_norm(x, weight, bias, out.view(), eps, Arch{});
  return out;
}

}  // namespace ops
}  // namespace v0
}  // namespace tessera
