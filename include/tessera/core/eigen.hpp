// tessera/core/eigen.hpp: the only bridge to Eigen (STYLE.md rule 10).
//
// Eigen types never appear in public signatures. Kernels that use Eigen's GEMM wrap views into
// Eigen::Map here, in row-major order, with the row stride of the view as the outer stride.
#pragma once

#include <Eigen/Core>

#include <tessera/core/tensor_view.hpp>

namespace tessera {
inline namespace v0 {
namespace detail {

template <class T>
using eigen_row_matrix = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A rank-2 view with unit inner stride as a row-major Eigen::Map (const-correct).
template <class T>
auto as_matrix(const tensor_view<T, 2>& v) {
  expect_rows_contiguous(v, "as_matrix");
  using M = std::conditional_t<std::is_const_v<T>, const eigen_row_matrix<T>, eigen_row_matrix<T>>;
  return Eigen::Map<M, Eigen::Unaligned, Eigen::OuterStride<>>(
      v.data(), v.extent(0), v.extent(1), Eigen::OuterStride<>(v.extent(0) > 1 ? v.stride(0) : v.extent(1)));
}

}  // namespace detail
}  // namespace v0
}  // namespace tessera
