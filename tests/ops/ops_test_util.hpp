// Helpers of the ops tests: random strided views, narrow copies, comparisons.
#pragma once

#include <vector>

#include <catch2/catch.hpp>

#include <tessera/core/core.hpp>

#include "common/test_util.hpp"

namespace tessera::test {

/// A random (n, d) view whose rows are ld >= d apart (ld > d: a strided view), over `storage`.
inline tensor_view<float, 2> random_strided(tensor<float, 2>& storage, index_t n, index_t d, index_t ld,
                                            float lo = -2.f, float hi = 2.f) {
  storage = random_tensor<2>({n, ld}, lo, hi);
  return storage.view().slice(1, 0, d);
}

/// Copy of a float tensor in storage type W.
template <class W, std::size_t Rank>
tensor<W, Rank> narrow(const tensor<float, Rank>& t) {
  tensor<W, Rank> r(t.extents());
  for (index_t i = 0; i < t.size(); ++i) r.data()[i] = from_float<W>(t.data()[i]);
  return r;
}

/// Dense doubles of an (n, d) float view.
inline std::vector<double> dense(tensor_view<const float, 2> v) {
  std::vector<double> r;
  for (index_t i = 0; i < v.extent(0); ++i)
    for (index_t j = 0; j < v.extent(1); ++j) r.push_back(v(i, j));
  return r;
}

inline double nmse_vs(tensor_view<const float, 2> got, const std::vector<double>& want) {
  const auto g = dense(got);
  REQUIRE(g.size() == want.size());
  return nmse(g.data(), want.data(), static_cast<index_t>(g.size()));
}

inline double max_rel_vs(tensor_view<const float, 2> got, const std::vector<double>& want) {
  const auto g = dense(got);
  REQUIRE(g.size() == want.size());
  return max_rel_err(g.data(), want.data(), static_cast<index_t>(g.size()));
}

}  // namespace tessera::test
