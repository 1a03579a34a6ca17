// Double-precision references of the kernels and ops (the "double accumulating" twin every
// vectorized kernel is checked against). Plain loops, straight from the formulas.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include <tessera/core/core.hpp>

namespace tessera::test::ref {

inline double exp(double x) { return std::exp(x); }
inline double tanh(double x) { return std::tanh(x); }
inline double erf(double x) { return std::erf(x); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double silu(double x) { return x / (1.0 + std::exp(-x)); }
inline double softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }
inline double gelu(double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }
inline double gelu_tanh(double x) {
  const double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
  return x / (1.0 + std::exp(-2.0 * u));  // = 0.5 x (1 + tanh u), without its cancellation
}
inline double quick_gelu(double x) { return x / (1.0 + std::exp(-1.702 * x)); }
inline double relu(double x) { return x > 0 ? x : 0.0; }

/// (n, d) view -> dense doubles.
template <class T>
std::vector<double> to_double(tensor_view<const T, 2> v) {
  std::vector<double> r;
  r.reserve(static_cast<std::size_t>(v.size()));
  for (index_t i = 0; i < v.extent(0); ++i)
    for (index_t j = 0; j < v.extent(1); ++j) r.push_back(static_cast<double>(to_float(v(i, j))));
  return r;
}

template <class W>
std::vector<double> rms_norm(tensor_view<const float, 2> x, tensor_view<const W, 1> w, double eps) {
  const auto [n, d] = x.extents();
  std::vector<double> out;
  for (index_t t = 0; t < n; ++t) {
    double ss = 0;
    for (index_t i = 0; i < d; ++i) ss += double(x(t, i)) * x(t, i);
    const double scale = 1.0 / std::sqrt(ss / d + eps);
    for (index_t i = 0; i < d; ++i) out.push_back(x(t, i) * scale * double(to_float(w(i))));
  }
  return out;
}

template <class W>
std::vector<double> layer_norm(tensor_view<const float, 2> x, tensor_view<const W, 1> w,
                               std::optional<tensor_view<const W, 1>> b, double eps) {
  const auto [n, d] = x.extents();
  std::vector<double> out;
  for (index_t t = 0; t < n; ++t) {
    double s = 0, v = 0;
    for (index_t i = 0; i < d; ++i) s += x(t, i);
    const double mean = s / d;
    for (index_t i = 0; i < d; ++i) v += (x(t, i) - mean) * (x(t, i) - mean);
    const double rstd = 1.0 / std::sqrt(v / d + eps);
    for (index_t i = 0; i < d; ++i)
      out.push_back((x(t, i) - mean) * rstd * double(to_float(w(i))) + (b ? double(to_float((*b)(i))) : 0.0));
  }
  return out;
}

/// softmax (log = false) or log_softmax of x + mask (mask rows broadcast when it has one row).
inline std::vector<double> softmax(tensor_view<const float, 2> x, std::optional<tensor_view<const float, 2>> mask,
                                   bool log) {
  const auto [n, d] = x.extents();
  std::vector<double> out;
  for (index_t t = 0; t < n; ++t) {
    std::vector<double> z(static_cast<std::size_t>(d));
    double m = -std::numeric_limits<double>::infinity();
    for (index_t i = 0; i < d; ++i) {
      z[i] = double(x(t, i)) + (mask ? double((*mask)(mask->extent(0) == 1 ? 0 : t, i)) : 0.0);
      m = std::max(m, z[i]);
    }
    double s = 0;
    for (index_t i = 0; i < d; ++i) s += std::exp(z[i] - m);
    for (index_t i = 0; i < d; ++i) out.push_back(log ? z[i] - m - std::log(s) : std::exp(z[i] - m) / s);
  }
  return out;
}

/// rope in double on a copy of x (l, n_heads, head_dim); angle taken from the float product like HF.
inline std::vector<double> rope(tensor_view<const float, 3> x, std::span<const std::int32_t> pos,
                                std::span<const float> inv_freq, bool neox, double scaling) {
  const auto [l, nh, hd] = x.extents();
  const index_t half = static_cast<index_t>(inv_freq.size());
  std::vector<double> out;
  for (index_t t = 0; t < l; ++t)
    for (index_t h = 0; h < nh; ++h) {
      std::vector<double> v(static_cast<std::size_t>(hd));
      for (index_t i = 0; i < hd; ++i) v[i] = x(t, h, i);
      std::vector<double> r = v;
      for (index_t i = 0; i < half; ++i) {
        const double angle = double(float(pos[t]) * inv_freq[i]);
        const double c = std::cos(angle) * scaling, s = std::sin(angle) * scaling;
        const index_t ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
        r[ia] = v[ia] * c - v[ib] * s;
        r[ib] = v[ib] * c + v[ia] * s;
      }
      out.insert(out.end(), r.begin(), r.end());
    }
  return out;
}

/// x · wᵀ (+ bias) in double.
template <class W>
std::vector<double> linear(tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                           std::optional<tensor_view<const float, 1>> bias) {
  const auto [m, k] = x.extents();
  const index_t n = w.extent(0);
  std::vector<double> out;
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      double acc = bias ? double((*bias)(j)) : 0.0;
      for (index_t p = 0; p < k; ++p) acc += double(x(i, p)) * double(to_float(w(j, p)));
      out.push_back(acc);
    }
  return out;
}

}  // namespace tessera::test::ref
