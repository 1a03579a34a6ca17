// Helpers shared by the gemm and gemv tests: strided random matrices of any weight type and a
// double-precision reference with an error bound.
#pragma once

#include <cmath>
#include <vector>

#include <tessera/core/core.hpp>

#include "common/test_util.hpp"

namespace tessera::test {

/// A rows x cols matrix stored with row stride `stride` >= cols, random in [-1, 1).
template <class T>
struct strided_matrix {
  std::vector<T> storage;
  index_t rows = 0, cols = 0, stride = 0;
  strided_matrix(index_t r, index_t c, index_t pad = 0) : rows(r), cols(c), stride(c + pad) {
    const auto v = random_vector(std::max<index_t>(r * stride, 1));
    storage.reserve(v.size());
    for (float x : v) storage.push_back(from_float<T>(x));
  }
  tensor_view<T, 2> view() { return tensor_view<T, 2>(storage.data(), {rows, cols}, {stride, 1}); }
  tensor_view<const T, 2> cview() const { return tensor_view<const T, 2>(storage.data(), {rows, cols}, {stride, 1}); }
};

/// ref(i, j) = sum_p a(i, p) w(j, p) in double, and bound(i, j) = sum_p |a(i, p) w(j, p)|.
template <class W>
void reference_gemm(const tensor_view<const float, 2>& a, const tensor_view<const W, 2>& w, std::vector<double>& ref,
                    std::vector<double>& bound) {
  const index_t m = a.extent(0), k = a.extent(1), n = w.extent(0);
  ref.assign(static_cast<std::size_t>(m * n), 0.0);
  bound.assign(static_cast<std::size_t>(m * n), 0.0);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      double s = 0, b = 0;
      for (index_t p = 0; p < k; ++p) {
        const double t = static_cast<double>(a(i, p)) * static_cast<double>(to_float(w(j, p)));
        s += t;
        b += std::abs(t);
      }
      ref[static_cast<std::size_t>(i * n + j)] = s;
      bound[static_cast<std::size_t>(i * n + j)] = b;
    }
}

/// Worst |got - ref| / (bound + tiny): float accumulation of k terms stays below ~k * 2^-24.
inline double worst_error(const tensor_view<const float, 2>& got, const std::vector<double>& ref,
                          const std::vector<double>& bound, const std::vector<double>* base = nullptr) {
  const index_t m = got.extent(0), n = got.extent(1);
  double worst = 0;
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      const auto at = static_cast<std::size_t>(i * n + j);
      const double want = ref[at] + (base ? (*base)[at] : 0.0);
      worst = std::max(worst, std::abs(static_cast<double>(got(i, j)) - want) / (bound[at] + 1e-30));
    }
  return worst;
}

}  // namespace tessera::test
