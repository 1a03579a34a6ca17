// tessera/layers/linear_attention_mixer.hpp: linear-attention mixers with a matrix state:
// retention (RetNet) and the gated delta rule (Gated DeltaNet, Qwen3-Next's gating).
//
//   x: (rows, d_model); q, k, v: (rows, n_heads, head_dim) = q/k/v_proj(x); out = o_proj(o)
//   retention:   S_t = γ_h S_{t-1} + k_t v_tᵀ, o_t = q_t S_t           (attention/retention.hpp)
//   gated delta: β = sigmoid(b_proj x), g = -exp(A_log) · softplus(a_proj x + dt_bias),
//                q, k L2-normalized; S_t = e^{g_t} S_{t-1} + β_t k_t (v_t - e^{g_t} S_{t-1}ᵀ k_t)ᵀ
//                                                                       (attention/delta_rule.hpp)
// State (per sequence): S (n_heads, head_dim, head_dim). Prefill runs the chunked form, a one-row
// sequence the recurrence (layers/batch.hpp contract).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include <tessera/attention/delta_rule.hpp>
#include <tessera/attention/linear_attention.hpp>
#include <tessera/attention/retention.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/layers/batch.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/layers/mamba_mixer.hpp>
#include <tessera/ssm/ssm_state.hpp>

namespace tessera {
inline namespace v0 {
namespace layers {

/// State of a linear-attention mixer: (n_heads, d_k, d_v).
struct linear_mixer_state {
  tensor<float, 3> s;
};

/// Retention (R) or gated delta rule (G) mixer: q/k/v/o projections (n_heads × head_dim), chunked
/// form for prefill, recurrent for step. G adds b_proj → β = sigmoid, a_proj → g = -exp(A_log) ·
/// softplus(a + dt_bias) (Qwen3-Next's gating) and L2-normalizes q, k; R uses RetNet's γ_h.
class linear_attention_mixer {
 public:
  using state_type = linear_mixer_state;
  enum class kind { retention, gated_delta };

  static linear_attention_mixer load(const io::weight_map& w, const std::string& prefix, kind kd, index_t d_model,
                                     index_t n_heads, index_t head_dim) {
    if (n_heads <= 0 || head_dim <= 0) throw config_error(prefix + ": n_heads and head_dim must be positive");
    linear_attention_mixer b;
    b.kind_ = kd, b.n_heads_ = n_heads, b.head_dim_ = head_dim;
    b.q_ = linear::load(w, prefix + ".q_proj");
    b.k_ = linear::load(w, prefix + ".k_proj");
    b.v_ = linear::load(w, prefix + ".v_proj");
    b.o_ = linear::load(w, prefix + ".o_proj");
    for (const linear* p : {&b.q_, &b.k_, &b.v_})
      detail::expect_weight_shape(p->out_features(), n_heads * head_dim, prefix + " q/k/v_proj.weight", "rows");
    detail::expect_weight_shape(b.q_.in_features(), d_model, prefix + ".q_proj.weight", "cols (d_model)");
    if (kd == kind::gated_delta) {
      b.b_ = linear::load(w, prefix + ".b_proj");
      b.a_ = linear::load(w, prefix + ".a_proj");
      detail::expect_weight_shape(b.b_.out_features(), n_heads, prefix + ".b_proj.weight", "rows (n_heads)");
      detail::expect_weight_shape(b.a_.out_features(), n_heads, prefix + ".a_proj.weight", "rows (n_heads)");
      const auto a_log = detail::load_vector(w, prefix + ".A_log", n_heads);
      b.A_ = tensor<float, 1>({n_heads});
      ssm::a_from_log(a_log.cview(), b.A_.view());
      b.dt_bias_ = detail::load_vector(w, prefix + ".dt_bias", n_heads);
    } else {
      b.gamma_ = tensor<float, 1>({n_heads});
      attention::retnet_gamma(b.gamma_.view());
    }
    return b;
  }

  state_type make_state(const state_spec&) const { return {tensor<float, 3>({n_heads_, head_dim_, head_dim_})}; }

  std::size_t workspace_bytes(index_t rows) const {
    const index_t hd = n_heads_ * head_dim_;
    return 4 * workspace::bytes_for<float>(rows * hd) + 2 * workspace::bytes_for<float>(rows * n_heads_) +
           std::max({attention::linear_attention_workspace_bytes(std::min<index_t>(rows, chunk), n_heads_, head_dim_, head_dim_),
                     q_.workspace_bytes(rows), o_.workspace_bytes(rows), b_.workspace_bytes(rows), a_.workspace_bytes(rows)}) +
           256;
  }

  // x: (rows, d_model) → out: (rows, d_model). Projections over all rows; per sequence the
  // recurrent form for one row, the chunked form otherwise.
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_refs<state_type> states,
               const batch_context& ctx, workspace& ws) const {
    const index_t l = x.extent(0), H = n_heads_, hd = head_dim_;
    expect_equal(l, ctx.rows(), "linear_attention_mixer: x rows vs the batch's rows");
    expect_equal(static_cast<index_t>(states.size()), ctx.n_seq(), "linear_attention_mixer: states vs sequences");
    workspace::frame frame(ws);
    auto q = ws.alloc_view<float, 2>({l, H * hd});
    auto k = ws.alloc_view<float, 2>({l, H * hd});
    auto v = ws.alloc_view<float, 2>({l, H * hd});
    auto o = ws.alloc_view<float, 2>({l, H * hd});
    q_.forward(x, q, ws);
    k_.forward(x, k, ws);
    v_.forward(x, v, ws);
    const tensor_view<const float, 3> q3(q.data(), {l, H, hd}), k3(k.data(), {l, H, hd}), v3(v.data(), {l, H, hd});
    const tensor_view<float, 3> o3(o.data(), {l, H, hd});
    tensor_view<float, 2> beta, g;
    if (kind_ == kind::gated_delta) {
      beta = ws.alloc_view<float, 2>({l, H});  // (l, n_heads)
      g = ws.alloc_view<float, 2>({l, H});     // (l, n_heads)
      b_.forward(x, beta, ws);
      a_.forward(x, g, ws);
      for (index_t t = 0; t < l; ++t)
        for (index_t h = 0; h < H; ++h) {
          beta(t, h) = 1.f / (1.f + std::exp(-beta(t, h)));
          const float a = g(t, h) + dt_bias_(h);
          const float sp = a > 20.f ? a : std::log1p(std::exp(a));
          g(t, h) = A_(h) * sp;  // A = -exp(A_log) ≤ 0
        }
    }
    for (index_t s = 0; s < ctx.n_seq(); ++s) {
      const auto [r0, r1] = ctx.rows_of(s);
      if (r0 == r1) continue;
      const bool recurrent = r1 - r0 == 1;
      auto st = states[static_cast<std::size_t>(s)]->s.view();
      const auto qs = q3.slice(0, r0, r1), ks = k3.slice(0, r0, r1), vs = v3.slice(0, r0, r1);
      const auto os = o3.slice(0, r0, r1);
      if (kind_ == kind::retention) {
        const attention::retention_params p{.scale = {}, .chunk_size = chunk};
        if (recurrent) attention::retention_recurrent(qs, ks, vs, gamma_.cview(), os, st, p, ws);
        else attention::retention_chunked(qs, ks, vs, gamma_.cview(), os, st, p, ws);
      } else {
        const attention::delta_rule_params p{.l2norm_qk = true, .l2norm_eps = 1e-6f, .scale = {}, .chunk_size = chunk};
        const tensor_view<const float, 2> gs = g.slice(0, r0, r1), bs = beta.slice(0, r0, r1);
        if (recurrent) attention::gated_delta_rule_recurrent(qs, ks, vs, gs, bs, os, st, p, ws);
        else attention::gated_delta_rule_chunked(qs, ks, vs, gs, bs, os, st, p, ws);
      }
    }
    o_.forward(o, out, ws);
  }

 private:
  static constexpr index_t chunk = 64;

  kind kind_ = kind::retention;
  index_t n_heads_ = 0, head_dim_ = 0;
  linear q_, k_, v_, o_, b_, a_;
  tensor<float, 1> gamma_, A_, dt_bias_;
};

}  // namespace layers
}  // namespace v0
}  // namespace tessera
