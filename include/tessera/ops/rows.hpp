// tessera/ops/rows.hpp: what every row-wise op shares: shape checks that name the op, and the
// split of rows over threads.
#pragma once

#include <algorithm>
#include <string>

#include <tessera/config.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>

namespace tessera {
inline namespace v0 {
namespace ops {
namespace detail {

/// Throws shape_error "<op>: <what> has extents (…), expected (…)".
template <class T, std::size_t Rank>
void expect_shape(const tensor_view<T, Rank>& v, const extents<Rank>& want, const char* op, const char* what) {
  if (v.extents() != want)
    throw shape_error(std::string(op) + ": " + what + " has extents " + to_string(v.extents()) + ", expected " +
                      to_string(want));
}

/// Throws shape_error unless the innermost stride of v is 1.
template <class T, std::size_t Rank>
void expect_dense_rows(const tensor_view<T, Rank>& v, const char* op, const char* what) {
  if (!v.rows_contiguous())
    throw shape_error(std::string(op) + ": " + what + " (extents " + to_string(v.extents()) +
                      ") must have a contiguous innermost dimension (stride 1), got stride " +
                      std::to_string(v.stride(Rank - 1)));
}

/// Rows per thread chunk: enough elements (~16K) per chunk to pay for the fork.
inline index_t row_grain(index_t d) noexcept { return std::max<index_t>(1, 16384 / std::max<index_t>(d, 1)); }

/// Calls f(i) for every row i in [0, n), rows split over threads.
template <class F>
void for_rows(index_t n, index_t d, F&& f) {
  parallel_for(0, n, row_grain(d), [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) f(i);
  });
}

}  // namespace detail
}  // namespace ops
}  // namespace v0
}  // namespace tessera
