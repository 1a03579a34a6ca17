// tessera/ops/elementwise.hpp: add, mul, scale on (n, d) views.
//
//   a, b, x, acc, out: (n, d) f32, rows contiguous (row stride >= d)
//   b may also be (1, d): broadcast over the rows (a bias row)
//
//   add(a, b, out)       out = a + b        mul(a, b, out)  out = a * b
//   add_inplace(acc, x)  acc += x (the residual add)
//   scale(x, s)          x *= s, in place
// out may alias a or b. Mismatched extents are a shape_error naming the op and both extents.
#pragma once

#include <string>

#include <tessera/core/error.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/kernels/elementwise.hpp>
#include <tessera/ops/rows.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace ops {

namespace detail {

inline void check_binary(const char* op, const tensor_view<const float, 2>& a, const tensor_view<const float, 2>& b,
                         const tensor_view<float, 2>& out) {
  const auto [n, d] = a.extents();
  if (!(b.extent(1) == d && (b.extent(0) == n || b.extent(0) == 1)))
    throw shape_error(std::string(op) + ": operands of extents " + to_string(a.extents()) + " and " +
                      to_string(b.extents()) + " do not match (the second may also be (1, " + std::to_string(d) + "))");
  expect_shape(out, a.extents(), op, "out");
  expect_dense_rows(a, op, "a");
  expect_dense_rows(b, op, "b");
  expect_dense_rows(out, op, "out");
}

template <class RowFn>
void binary_rows(const char* op, const tensor_view<const float, 2>& a, const tensor_view<const float, 2>& b,
                 const tensor_view<float, 2>& out, RowFn&& row_fn) {
  check_binary(op, a, b, out);
  const index_t n = a.extent(0), d = a.extent(1);
  const bool broadcast = b.extent(0) == 1 && n != 1;
  if (!broadcast && a.is_contiguous() && b.is_contiguous() && out.is_contiguous()) {
    parallel_for(0, n * d, 16384, [&](index_t lo, index_t hi) {
      row_fn(hi - lo, a.data() + lo, b.data() + lo, out.data() + lo);
    });
  } else {
    for_rows(n, d, [&](index_t t) { row_fn(d, a.row(t), b.row(broadcast ? 0 : t), out.row(t)); });
  }
}

}  // namespace detail

/// out = a + b (b: (n, d) or (1, d)).
template <simd::arch_tag Arch = simd::default_arch>
void add(tensor_view<const float, 2> a, tensor_view<const float, 2> b, tensor_view<float, 2> out, Arch = {}) {
  detail::binary_rows("add", a, b, out, [](index_t n, const float* x, const float* y, float* o) {
    kernels::vec_add(n, x, y, o, Arch{});
  });
}

/// out = a * b (b: (n, d) or (1, d)).
template <simd::arch_tag Arch = simd::default_arch>
void mul(tensor_view<const float, 2> a, tensor_view<const float, 2> b, tensor_view<float, 2> out, Arch = {}) {
  detail::binary_rows("mul", a, b, out, [](index_t n, const float* x, const float* y, float* o) {
    kernels::vec_mul(n, x, y, o, Arch{});
  });
}

/// acc += x (x: (n, d) or (1, d)).
template <simd::arch_tag Arch = simd::default_arch>
void add_inplace(tensor_view<float, 2> acc, tensor_view<const float, 2> x, Arch = {}) {
  add(acc, x, acc, Arch{});
}

/// x *= s, in place.
template <simd::arch_tag Arch = simd::default_arch>
void scale(tensor_view<float, 2> x, float s, Arch = {}) {
  detail::expect_dense_rows(x, "scale", "x");
  const index_t n = x.extent(0), d = x.extent(1);
  if (x.is_contiguous()) {
    parallel_for(0, n * d, 16384, [&](index_t lo, index_t hi) {
      kernels::vec_scale(hi - lo, x.data() + lo, s, x.data() + lo, Arch{});
    });
  } else {
    detail::for_rows(n, d, [&](index_t t) { kernels::vec_scale(d, x.row(t), s, x.row(t), Arch{}); });
  }
}

/// a + b into a new tensor.
template <simd::arch_tag Arch = simd::default_arch>
tensor<float, 2> add_copy(tensor_view<const float, 2> a, tensor_view<const float, 2> b, Arch = {}) {
  tensor<float, 2> out(a.extents());
  add(a, b, out.view(), Arch{});
  return out;
}

/// a * b into a new tensor.
template <simd::arch_tag Arch = simd::default_arch>
tensor<float, 2> mul_copy(tensor_view<const float, 2> a, tensor_view<const float, 2> b, Arch = {}) {
  tensor<float, 2> out(a.extents());
  mul(a, b, out.view(), Arch{});
  return out;
}

/// s * x into a new tensor.
template <simd::arch_tag Arch = simd::default_arch>
tensor<float, 2> scale_copy(tensor_view<const float, 2> x, float s, Arch = {}) {
  tensor<float, 2> out = tensor<float, 2>::copy_of(x);
  scale(out.view(), s, Arch{});
  return out;
}

}  // namespace ops
}  // namespace v0
}  // namespace tessera
