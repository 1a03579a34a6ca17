// Shared test helpers: seeded random data and normalized error measures.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <tessera/core/core.hpp>

namespace tessera::test {

/// Deterministic generator: the seed is fixed per test so failures reproduce.
inline std::mt19937_64& rng(std::uint64_t reseed = 0) {
  static thread_local std::mt19937_64 g(0x7e55e7a);
  if (reseed) g.seed(reseed);
  return g;
}

/// n floats uniform in [lo, hi) (never all zero).
inline std::vector<float> random_vector(index_t n, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(rng());
  return v;
}

/// A tensor filled uniformly in [lo, hi).
template <std::size_t Rank>
tensor<float, Rank> random_tensor(const extents<Rank>& e, float lo = -1.f, float hi = 1.f) {
  tensor<float, Rank> t(e);
  std::uniform_real_distribution<float> d(lo, hi);
  for (auto& x : t) x = d(rng());
  return t;
}

/// Normalized mean squared error: sum (a-b)^2 / sum b^2 (ggml's max_nmse_err measure).
template <class A, class B>
double nmse(const A* a, const B* b, index_t n) {
  double num = 0, den = 0;
  for (index_t i = 0; i < n; ++i) {
    const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
    num += (x - y) * (x - y);
    den += y * y;
  }
  return den == 0 ? num : num / den;
}

/// max |a-b| / max |b|: the parity measure (relative error of the worst element).
template <class A, class B>
double max_rel_err(const A* a, const B* b, index_t n) {
  double num = 0, den = 0;
  for (index_t i = 0; i < n; ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den == 0 ? num : num / den;
}

/// Index of the largest element, the lowest on ties (greedy decoding, torch.argmax).
inline std::int32_t argmax(tensor_view<const float, 1> v) {
  index_t best = 0;
  for (index_t i = 1; i < v.extent(0); ++i)
    if (v(i) > v(best)) best = i;
  return static_cast<std::int32_t>(best);
}

}  // namespace tessera::test
