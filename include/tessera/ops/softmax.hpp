// tessera/ops/softmax.hpp: softmax and log_softmax over the rows of a (n, d) view.
//
//   x:    (n, d) f32, rows contiguous (row stride >= d)
//   mask: (n, d) or (1, d) f32 additive mask (0 keeps, -inf drops); a (1, d) mask is broadcast
//         over the rows
//   out:  (n, d) f32, rows contiguous; may alias x
//
//   softmax(x)[i]     = e^(x_i - max x) / Σ_j e^(x_j - max x)
//   log_softmax(x)[i] = x_i - max x - log Σ_j e^(x_j - max x)
// A row whose every entry is -inf (fully masked) gives zeros from softmax and -inf from
// log_softmax (PyTorch gives NaN for both); decoders never produce such rows, padded batches do.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/kernels/elementwise.hpp>
#include <tessera/kernels/reduce.hpp>
#include <tessera/ops/rows.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/math.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace ops {

namespace detail {

inline void check_softmax(const char* op, const tensor_view<const float, 2>& x, const tensor_view<float, 2>& out) {
  expect_shape(out, x.extents(), op, "out");
  expect_dense_rows(x, op, "x");
  expect_dense_rows(out, op, "out");
}

inline void check_mask(const char* op, const tensor_view<const float, 2>& x, const tensor_view<const float, 2>& mask) {
  const auto [n, d] = x.extents();
  if (!(mask.extent(1) == d && (mask.extent(0) == n || mask.extent(0) == 1)))
    throw shape_error(std::string(op) + ": additive_mask has extents " + to_string(mask.extents()) +
                      ", expected " + to_string(extents<2>{n, d}) + " or (1, " + std::to_string(d) + ")");
  expect_dense_rows(mask, op, "additive_mask");
}

/// softmax of one row of d floats (x may equal out).
template <class Arch>
void softmax_row(index_t d, const float* x, float* out) noexcept {
  const float m = kernels::max<Arch>(d, x);
  if (m == -std::numeric_limits<float>::infinity()) {
    std::fill(out, out + d, 0.f);
    return;
  }
  const float s = kernels::exp_sum<Arch>(d, x, m, out);
  kernels::vec_scale<Arch>(d, out, 1.f / s, out);
}

/// log_softmax of one row of d floats (x may equal out).
template <class Arch>
void log_softmax_row(index_t d, const float* x, float* out) noexcept {
  const float m = kernels::max<Arch>(d, x);
  if (m == -std::numeric_limits<float>::infinity()) {
    std::fill(out, out + d, -std::numeric_limits<float>::infinity());
    return;
  }
  const float lse = m + std::log(kernels::sum_exp<Arch>(d, x, m));
  kernels::vec_add_scalar<Arch>(d, x, -lse, out);
}

}  // namespace detail

// ---- softmax -------------------------------------------------------------------------------------

/// Row softmax, scalar reference.
inline void softmax(tensor_view<const float, 2> x, tensor_view<float, 2> out, simd::scalar) {
  detail::check_softmax("softmax", x, out);
  const auto [n, d] = x.extents();
  for (index_t t = 0; t < n; ++t) {
    float m = -std::numeric_limits<float>::infinity();
    for (index_t i = 0; i < d; ++i) m = std::max(m, x(t, i));
    if (m == -std::numeric_limits<float>::infinity()) {
      for (index_t i = 0; i < d; ++i) out(t, i) = 0.f;
      continue;
    }
    float s = 0.f;
    for (index_t i = 0; i < d; ++i) {
      out(t, i) = std::exp(x(t, i) - m);
      s += out(t, i);
    }
    for (index_t i = 0; i < d; ++i) out(t, i) *= 1.f / s;
  }
}

/// Row softmax, vectorized, rows over threads.
template <simd::arch_tag Arch = simd::default_arch>
void softmax(tensor_view<const float, 2> x, tensor_view<float, 2> out, Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    softmax(x, out, simd::scalar{});
  } else {
    detail::check_softmax("softmax", x, out);
    const index_t n = x.extent(0), d = x.extent(1);
    detail::for_rows(n, d, [&](index_t t) { detail::softmax_row<Arch>(d, x.row(t), out.row(t)); });
  }
}

// ---- masked softmax ------------------------------------------------------------------------------

/// Row softmax of x + additive_mask, scalar reference.
inline void softmax(tensor_view<const float, 2> x, tensor_view<const float, 2> additive_mask,
                    tensor_view<float, 2> out, simd::scalar) {
  detail::check_softmax("softmax", x, out);
  detail::check_mask("softmax", x, additive_mask);
  const auto [n, d] = x.extents();
  const bool broadcast = additive_mask.extent(0) == 1;
  for (index_t t = 0; t < n; ++t)
    for (index_t i = 0; i < d; ++i) out(t, i) = x(t, i) + additive_mask(broadcast ? 0 : t, i);
  softmax(out, out, simd::scalar{});
}

/// Row softmax of x + additive_mask, vectorized, rows over threads.
template <simd::arch_tag Arch = simd::default_arch>
void softmax(tensor_view<const float, 2> x, tensor_view<const float, 2> additive_mask, tensor_view<float, 2> out,
             Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    softmax(x, additive_mask, out, simd::scalar{});
  } else {
    detail::check_softmax("softmax", x, out);
    detail::check_mask("softmax", x, additive_mask);
    const index_t n = x.extent(0), d = x.extent(1);
    const bool broadcast = additive_mask.extent(0) == 1;
    detail::for_rows(n, d, [&](index_t t) {
      float* o = out.row(t);
      kernels::vec_add<Arch>(d, x.row(t), additive_mask.row(broadcast ? 0 : t), o);
      detail::softmax_row<Arch>(d, o, o);
    });
  }
}

// ---- log_softmax ---------------------------------------------------------------------------------

/// Row log_softmax, scalar reference.
inline void log_softmax(tensor_view<const float, 2> x, tensor_view<float, 2> out, simd::scalar) {
  detail::check_softmax("log_softmax", x, out);
  const auto [n, d] = x.extents();
  for (index_t t = 0; t < n; ++t) {
    float m = -std::numeric_limits<float>::infinity();
    for (index_t i = 0; i < d; ++i) m = std::max(m, x(t, i));
    if (m == -std::numeric_limits<float>::infinity()) {
      for (index_t i = 0; i < d; ++i) out(t, i) = m;
      continue;
    }
    float s = 0.f;
    for (index_t i = 0; i < d; ++i) s += std::exp(x(t, i) - m);
    const float lse = m + std::log(s);
    for (index_t i = 0; i < d; ++i) out(t, i) = x(t, i) - lse;
  }
}

/// Row log_softmax, vectorized, rows over threads.
template <simd::arch_tag Arch = simd::default_arch>
void log_softmax(tensor_view<const float, 2> x, tensor_view<float, 2> out, Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    log_softmax(x, out, simd::scalar{});
  } else {
    detail::check_softmax("log_softmax", x, out);
    const index_t n = x.extent(0), d = x.extent(1);
    detail::for_rows(n, d, [&](index_t t) { detail::log_softmax_row<Arch>(d, x.row(t), out.row(t)); });
  }
}

/// Row log_softmax of x + additive_mask (mask (n, d) or (1, d)); out may alias x.
template <simd::arch_tag Arch = simd::default_arch>
void log_softmax(tensor_view<const float, 2> x, tensor_view<const float, 2> additive_mask, tensor_view<float, 2> out,
                 Arch = {}) {
  detail::check_softmax("log_softmax", x, out);
  detail::check_mask("log_softmax", x, additive_mask);
  const index_t n = x.extent(0), d = x.extent(1);
  const bool broadcast = additive_mask.extent(0) == 1;
  detail::for_rows(n, d, [&](index_t t) {
    float* o = out.row(t);
    kernels::vec_add<Arch>(d, x.row(t), additive_mask.row(broadcast ? 0 : t), o);
  });
  log_softmax(out, out, Arch{});
}

// ---- value-returning conveniences ----------------------------------------------------------------

/// softmax into a new tensor.
template <simd::arch_tag Arch = simd::default_arch>
tensor<float, 2> softmax_copy(tensor_view<const float, 2> x, Arch = {}) {
  tensor<float, 2> out(x.extents());
  softmax(x, out.view(), Arch{});
  return out;
}

/// log_softmax into a new tensor.
template <simd::arch_tag Arch = simd::default_arch>
tensor<float, 2> log_softmax_copy(tensor_view<const float, 2> x, Arch = {}) {
  tensor<float, 2> out(x.extents());
  log_softmax(x, out.view(), Arch{});
  return out;
}

}  // namespace ops
}  // namespace v0
}  // namespace tessera
