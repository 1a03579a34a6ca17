// Helpers shared by the ssm tests: random tensors in given ranges, error measures in double.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include <common/test_util.hpp>
#include <tessera/core/core.hpp>

namespace tessera::test::ssm_util {
using tessera::test::max_rel_err;

/// A tensor uniform in [lo, hi).
template <std::size_t Rank>
tensor<float, Rank> uniform(const extents<Rank>& e, float lo, float hi) {
  return random_tensor(e, lo, hi);
}

/// A tensor log-uniform in [lo, hi) (lo, hi > 0).
template <std::size_t Rank>
tensor<float, Rank> log_uniform(const extents<Rank>& e, float lo, float hi) {
  tensor<float, Rank> t(e);
  std::uniform_real_distribution<double> d(std::log(lo), std::log(hi));
  for (auto& x : t) x = static_cast<float>(std::exp(d(rng())));
  return t;
}

inline double softplus(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }
inline double silu(double x) { return x / (1 + std::exp(-x)); }

/// max |a - b| / max |b| over all elements.
template <class A, class B>
double rel_err(const A& a, const B& b) {
  REQUIRE(static_cast<std::size_t>(a.size()) == static_cast<std::size_t>(b.size()));
  return max_rel_err(a.data(), b.data(), static_cast<index_t>(a.size()));
}

}  // namespace tessera::test::ssm_util
