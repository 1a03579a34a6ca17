// Shared by the attention tests: a dense double-precision reference that applies the mask
// explicitly (its own visibility rule, written from the spec, not from mask.hpp).
#pragma once

#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include <tessera/attention/softmax_attention.hpp>

#include "common/test_util.hpp"

namespace tessera::test {

struct dense_spec {
  bool causal = true;
  index_t prefix = 0;
  std::optional<index_t> window;
  double scale = 0;  // 0: 1/sqrt(head_dim)
  double softcap = 0;
  const std::vector<float>* alibi = nullptr;     // (n_heads)
  const tensor<float, 3>* bias = nullptr;        // (n_heads or 1, l, l_kv)
  const std::vector<float>* key_mask = nullptr;  // (l_kv)
  std::vector<index_t> qpos;                     // (l)
  std::vector<index_t> kpos;                     // (l_kv)
};

/// out: (l, n_heads, head_dim) in double, rows that see no key are zeros.
inline std::vector<double> dense_attention(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                                           tensor_view<const float, 3> v, const dense_spec& sp) {
  const auto [l, n_heads, head_dim] = q.extents();
  const auto [l_kv, n_kv_heads, kd] = k.extents();
  (void)kd;
  const index_t rep = n_heads / n_kv_heads;
  const double scale = sp.scale > 0 ? sp.scale : 1.0 / std::sqrt(double(head_dim));
  std::vector<double> out(std::size_t(l * n_heads * head_dim), 0.0);
  std::vector<double> score(static_cast<std::size_t>(l_kv));
  std::vector<char> visible(static_cast<std::size_t>(l_kv));
  for (index_t h = 0; h < n_heads; ++h) {
    const index_t g = h / rep;
    for (index_t i = 0; i < l; ++i) {
      const index_t qp = sp.qpos[std::size_t(i)];
      double mx = -std::numeric_limits<double>::infinity();
      for (index_t j = 0; j < l_kv; ++j) {
        const index_t kp = sp.kpos[std::size_t(j)];
        bool vis = true;
        if (sp.causal && !(kp <= qp || kp < sp.prefix)) vis = false;
        if (sp.window) {
          if (!(kp > qp - *sp.window)) vis = false;
          if (!sp.causal && !(qp > kp - *sp.window)) vis = false;
        }
        double s = 0;
        for (index_t e = 0; e < head_dim; ++e) s += double(q(i, h, e)) * double(k(j, g, e));
        s *= scale;
        if (sp.softcap > 0) s = sp.softcap * std::tanh(s / sp.softcap);
        if (sp.alibi) s += double((*sp.alibi)[std::size_t(h)]) * double(kp - qp);
        if (sp.bias) s += double((*sp.bias)(sp.bias->extent(0) == 1 ? 0 : h, i, j));
        if (sp.key_mask) s += double((*sp.key_mask)[std::size_t(j)]);
        if (!vis || std::isinf(s)) {
          visible[std::size_t(j)] = 0;
          continue;
        }
        visible[std::size_t(j)] = 1;
        score[std::size_t(j)] = s;
        mx = std::max(mx, s);
      }
      if (std::isinf(mx)) continue;  // fully masked row: zeros
      double sum = 0;
      for (index_t j = 0; j < l_kv; ++j)
        if (visible[std::size_t(j)]) sum += std::exp(score[std::size_t(j)] - mx);
      for (index_t j = 0; j < l_kv; ++j) {
        if (!visible[std::size_t(j)]) continue;
        const double p = std::exp(score[std::size_t(j)] - mx) / sum;
        for (index_t e = 0; e < head_dim; ++e)
          out[std::size_t((i * n_heads + h) * head_dim + e)] += p * double(v(j, g, e));
      }
    }
  }
  return out;
}

inline std::vector<index_t> iota_positions(index_t n, index_t start = 0) {
  std::vector<index_t> p(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) p[std::size_t(i)] = start + i;
  return p;
}

/// max |a - b| / max |b| over a dense (l, n_heads, head_dim) output.
inline double rel_err(tensor_view<const float, 3> a, const std::vector<double>& b) {
  const auto [l, n_heads, head_dim] = a.extents();
  double num = 0, den = 0;
  for (index_t i = 0; i < l; ++i)
    for (index_t h = 0; h < n_heads; ++h)
      for (index_t e = 0; e < head_dim; ++e) {
        const double y = b[std::size_t((i * n_heads + h) * head_dim + e)];
        num = std::max(num, std::abs(double(a(i, h, e)) - y));
        den = std::max(den, std::abs(y));
      }
  return den == 0 ? num : num / den;
}

inline bool all_finite(tensor_view<const float, 3> a) {
  const auto [l, n_heads, head_dim] = a.extents();
  for (index_t i = 0; i < l; ++i)
    for (index_t h = 0; h < n_heads; ++h)
      for (index_t e = 0; e < head_dim; ++e)
        if (!std::isfinite(a(i, h, e))) return false;
  return true;
}

}  // namespace tessera::test
