// Double-precision references for the linear-attention tests: the recurrence (every kind) and the
// explicit causal-masked quadratic form (additive kinds), written from the papers' definitions.
#pragma once

#include <cmath>
#include <vector>

#include "common/test_util.hpp"

namespace tessera::test {

enum class la_kind { feature, retention, gla, delta, gated_delta };

struct la_case {
  la_kind kind = la_kind::feature;
  index_t l = 5, n_qk_heads = 2, n_heads = 2, d_k = 8, d_v = 8;
  int phi = 0;  // 0 identity, 1 elu+1, 2 relu
  bool normalize = false;
  bool l2norm = false;
  float scale = 0.f;  // 0: 1/sqrt(d_k)
  float gate_lo = -0.5f, gate_hi = -0.01f;
};

/// Inputs of one case, random and never zero.
struct la_inputs {
  tensor<float, 3> q, k, v, gv;   // gv: (l, n_heads, d_k) vector gates
  tensor<float, 2> gs, beta;      // (l, n_heads)
  tensor<float, 1> gamma;         // (n_heads)
  tensor<float, 3> s0;            // (n_heads, d_k, d_v)
  tensor<float, 2> z0;            // (n_heads, d_k)
  static la_inputs make(const la_case& c) {
    la_inputs in;
    const float kscale = (c.kind == la_kind::delta || c.kind == la_kind::gated_delta) && !c.l2norm
                             ? 1.f / std::sqrt(float(c.d_k)) : 1.f;
    in.q = random_tensor<3>({c.l, c.n_qk_heads, c.d_k});
    in.k = random_tensor<3>({c.l, c.n_qk_heads, c.d_k}, -kscale, kscale);
    in.v = random_tensor<3>({c.l, c.n_heads, c.d_v});
    in.gv = random_tensor<3>({c.l, c.n_heads, c.d_k}, c.gate_lo, c.gate_hi);
    in.gs = random_tensor<2>({c.l, c.n_heads}, c.gate_lo, c.gate_hi);
    in.beta = random_tensor<2>({c.l, c.n_heads}, 0.1f, 0.9f);
    in.gamma = random_tensor<1>({c.n_heads}, 0.8f, 0.999f);
    in.s0 = random_tensor<3>({c.n_heads, c.d_k, c.d_v}, -0.5f, 0.5f);
    in.z0 = random_tensor<2>({c.n_heads, c.d_k}, 0.5f, 1.5f);
    return in;
  }
};

struct la_ref_result {
  std::vector<double> out;  // (l, n_heads, d_v)
  std::vector<double> s;    // (n_heads, d_k, d_v)
  std::vector<double> z;    // (n_heads, d_k)
};

inline double ref_phi(int phi, double x) {
  if (phi == 1) return x > 0 ? x + 1 : std::exp(x);
  if (phi == 2) return x > 0 ? x : 0;
  return x;
}

/// q or k row of token t, head hq, prepared as the kernel does, in double.
inline std::vector<double> ref_prep(const la_case& c, const tensor<float, 3>& x, index_t t, index_t hq, bool is_q) {
  std::vector<double> r(std::size_t(c.d_k));
  for (index_t d = 0; d < c.d_k; ++d) r[std::size_t(d)] = ref_phi(c.phi, x(t, hq, d));
  double s = is_q ? (c.scale != 0.f ? c.scale : 1.0 / std::sqrt(double(c.d_k))) : 1.0;
  if (c.l2norm) {
    double ss = 0;
    for (double e : r) ss += e * e;
    s /= std::sqrt(ss + 1e-6);
  }
  for (double& e : r) e *= s;
  return r;
}

/// Log decay of token t, head h, key dimension d.
inline double ref_log_gate(const la_case& c, const la_inputs& in, index_t t, index_t h, index_t d) {
  switch (c.kind) {
    case la_kind::retention: return std::log(double(in.gamma(h)));
    case la_kind::gla: return in.gv(t, h, d);
    case la_kind::gated_delta: return in.gs(t, h);
    default: return 0.0;
  }
}

/// The recurrence, token by token, in double.
inline la_ref_result la_reference_recurrent(const la_case& c, const la_inputs& in) {
  la_ref_result r;
  const index_t H = c.n_heads, dk = c.d_k, dv = c.d_v, group = c.n_heads / c.n_qk_heads;
  r.out.assign(std::size_t(c.l * H * dv), 0.0);
  r.s.assign(std::size_t(H * dk * dv), 0.0);
  r.z.assign(std::size_t(H * dk), 0.0);
  const bool delta = c.kind == la_kind::delta || c.kind == la_kind::gated_delta;
  for (index_t h = 0; h < H; ++h) {
    std::vector<double> S(static_cast<std::size_t>(dk * dv)), z(static_cast<std::size_t>(dk));
    for (index_t d = 0; d < dk; ++d) {
      z[std::size_t(d)] = in.z0(h, d);
      for (index_t e = 0; e < dv; ++e) S[std::size_t(d * dv + e)] = in.s0(h, d, e);
    }
    for (index_t t = 0; t < c.l; ++t) {
      const auto q = ref_prep(c, in.q, t, h / group, true), k = ref_prep(c, in.k, t, h / group, false);
      for (index_t d = 0; d < dk; ++d) {
        const double a = std::exp(ref_log_gate(c, in, t, h, d));
        for (index_t e = 0; e < dv; ++e) S[std::size_t(d * dv + e)] *= a;
        z[std::size_t(d)] *= a;
      }
      std::vector<double> u(static_cast<std::size_t>(dv));
      for (index_t e = 0; e < dv; ++e) u[std::size_t(e)] = in.v(t, h, e);
      if (delta) {
        for (index_t e = 0; e < dv; ++e) {
          double ks = 0;
          for (index_t d = 0; d < dk; ++d) ks += k[std::size_t(d)] * S[std::size_t(d * dv + e)];
          u[std::size_t(e)] = in.beta(t, h) * (u[std::size_t(e)] - ks);
        }
      }
      for (index_t d = 0; d < dk; ++d) {
        z[std::size_t(d)] += k[std::size_t(d)];
        for (index_t e = 0; e < dv; ++e) S[std::size_t(d * dv + e)] += k[std::size_t(d)] * u[std::size_t(e)];
      }
      double den = 0;
      for (index_t d = 0; d < dk; ++d) den += q[std::size_t(d)] * z[std::size_t(d)];
      for (index_t e = 0; e < dv; ++e) {
        double o = 0;
        for (index_t d = 0; d < dk; ++d) o += q[std::size_t(d)] * S[std::size_t(d * dv + e)];
        r.out[std::size_t((t * H + h) * dv + e)] = c.normalize ? o / (den + 1e-10) : o;
      }
    }
    for (index_t d = 0; d < dk; ++d) {
      r.z[std::size_t(h * dk + d)] = z[std::size_t(d)];
      for (index_t e = 0; e < dv; ++e) r.s[std::size_t((h * dk + d) * dv + e)] = S[std::size_t(d * dv + e)];
    }
  }
  return r;
}

/// The quadratic form with the causal mask applied explicitly (additive kinds only):
/// o_i = Σ_j M_ij Σ_d q_id k_jd exp(G_id - G_jd) v_j + Σ_d q_id exp(G_id) S0_d, M_ij = [j <= i],
/// G the cumulative log decay.
inline std::vector<double> la_reference_quadratic(const la_case& c, const la_inputs& in) {
  const index_t H = c.n_heads, dk = c.d_k, dv = c.d_v, L = c.l, group = c.n_heads / c.n_qk_heads;
  std::vector<double> out(std::size_t(L * H * dv), 0.0);
  for (index_t h = 0; h < H; ++h) {
    std::vector<double> G(std::size_t(L * dk));
    for (index_t t = 0; t < L; ++t)
      for (index_t d = 0; d < dk; ++d)
        G[std::size_t(t * dk + d)] = (t ? G[std::size_t((t - 1) * dk + d)] : 0.0) + ref_log_gate(c, in, t, h, d);
    for (index_t i = 0; i < L; ++i) {
      const auto q = ref_prep(c, in.q, i, h / group, true);
      std::vector<double> o(std::size_t(dv), 0.0);
      double den = 0;
      for (index_t j = 0; j < L; ++j) {
        const bool mask = j <= i;
        if (!mask) continue;
        const auto k = ref_prep(c, in.k, j, h / group, false);
        double a = 0;
        for (index_t d = 0; d < dk; ++d)
          a += q[std::size_t(d)] * k[std::size_t(d)] * std::exp(G[std::size_t(i * dk + d)] - G[std::size_t(j * dk + d)]);
        den += a;
        for (index_t e = 0; e < dv; ++e) o[std::size_t(e)] += a * in.v(j, h, e);
      }
      for (index_t d = 0; d < dk; ++d) {
        const double qd = q[std::size_t(d)] * std::exp(G[std::size_t(i * dk + d)]);
        den += qd * in.z0(h, d);
        for (index_t e = 0; e < dv; ++e) o[std::size_t(e)] += qd * in.s0(h, d, e);
      }
      for (index_t e = 0; e < dv; ++e)
        out[std::size_t((i * H + h) * dv + e)] = c.normalize ? o[std::size_t(e)] / (den + 1e-10) : o[std::size_t(e)];
    }
  }
  return out;
}

}  // namespace tessera::test
