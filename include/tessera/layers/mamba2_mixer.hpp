// tessera/layers/mamba2_mixer.hpp: the Mamba-2 mixer (transformers Mamba2Mixer.torch_forward).
//
// Glossary: l tokens, d_model, d_inner = n_heads · head_dim, d_state (N), n_groups (G),
// conv_dim = d_inner + 2 G N.
//
//   in_proj:  (d_inner + conv_dim + n_heads, d_model)   x → [z | xBC | dt]       (bias: use_bias)
//   conv1d:   torch (conv_dim, 1, d_conv)               causal conv over xBC, then SiLU
//   xBC → [x (d_inner) | B (G N) | C (G N)]
//   dt_bias, A_log, D: (n_heads)                        Δ = clamp(softplus(dt + dt_bias), time_step_limit)
//   SSD (ssm/ssd.hpp): chunked prefill (chunk_size), recurrence for one token
//   norm:     (d_inner)                                 gated RMSNorm: (y · SiLU(z)) / rms · weight
//                                                       over the whole d_inner row (transformers'
//                                                       MambaRMSNormGated; norm_before_gate is not
//                                                       read by transformers, nor here)
//   out_proj: (d_model, d_inner)                                                    (bias: use_bias)
//
// State: conv window (d_conv-1, conv_dim) + SSM state (n_heads, head_dim, d_state).
#pragma once

#include <algorithm>
#include <limits>
#include <optional>
#include <string>

#include <tessera/core/tensor.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/layers/batch.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/layers/mamba_mixer.hpp>
#include <tessera/ops/activation.hpp>
#include <tessera/ssm/conv1d.hpp>
#include <tessera/ssm/gated_rms_norm.hpp>
#include <tessera/ssm/ssd.hpp>
#include <tessera/ssm/ssm_state.hpp>

namespace tessera {
inline namespace v0 {
namespace layers {

struct mamba2_mixer_config {
  index_t d_model = 0;
  index_t n_heads = 0;
  index_t head_dim = 64;
  index_t d_state = 128;
  index_t n_groups = 1;
  index_t d_conv = 4;
  index_t chunk = 256;                                        // chunk_size
  float dt_min = 0.f;                                         // time_step_limit[0]
  float dt_max = std::numeric_limits<float>::infinity();      // time_step_limit[1]
  float norm_eps = 1e-5f;                                     // layer_norm_epsilon
  bool conv_bias = true;
  bool proj_bias = false;
  ops::activation act = ops::activation::silu;                // hidden_act (after the conv)
  index_t d_inner() const noexcept { return n_heads * head_dim; }
  index_t conv_dim() const noexcept { return d_inner() + 2 * n_groups * d_state; }
};

class mamba2_mixer {
 public:
  using state_type = ssm::mamba2_state;

  mamba2_mixer() = default;

  static mamba2_mixer load(const io::weight_map& w, const std::string& prefix, const mamba2_mixer_config& cfg) {
    if (cfg.d_model <= 0 || cfg.n_heads <= 0 || cfg.head_dim <= 0 || cfg.d_state <= 0 || cfg.n_groups <= 0 ||
        cfg.d_conv <= 0 || cfg.chunk <= 0)
      throw config_error("mamba2_mixer: every size must be positive (" + prefix + ")");
    if (cfg.n_heads % cfg.n_groups != 0)
      throw config_error("mamba2_mixer: num_heads " + std::to_string(cfg.n_heads) + " is not a multiple of n_groups " +
                         std::to_string(cfg.n_groups) + " (" + prefix + ")");
    mamba2_mixer m;
    m.cfg_ = cfg;
    const index_t di = cfg.d_inner(), cd = cfg.conv_dim(), h = cfg.n_heads;
    m.in_proj_ = linear::load(w, prefix + ".in_proj", cfg.proj_bias);
    detail::expect_weight_shape(m.in_proj_.out_features(), di + cd + h, prefix + ".in_proj.weight",
                                "rows (d_inner + conv_dim + num_heads)");
    detail::expect_weight_shape(m.in_proj_.in_features(), cfg.d_model, prefix + ".in_proj.weight", "cols (d_model)");
    m.conv_w_ = detail::load_conv_weight(w, prefix + ".conv1d.weight", cd, cfg.d_conv);
    if (cfg.conv_bias) m.conv_b_ = detail::load_vector(w, prefix + ".conv1d.bias", cd);
    m.dt_bias_ = detail::load_vector(w, prefix + ".dt_bias", h);
    const auto a_log = detail::load_vector(w, prefix + ".A_log", h);
    m.A_ = tensor<float, 1>({h});
    ssm::a_from_log(a_log.cview(), m.A_.view());
    m.D_ = detail::load_vector(w, prefix + ".D", h);
    m.norm_w_ = detail::load_vector(w, prefix + ".norm.weight", di);
    m.out_proj_ = linear::load(w, prefix + ".out_proj", cfg.proj_bias);
    detail::expect_weight_shape(m.out_proj_.out_features(), cfg.d_model, prefix + ".out_proj.weight", "rows (d_model)");
    detail::expect_weight_shape(m.out_proj_.in_features(), di, prefix + ".out_proj.weight", "cols (d_inner)");
    return m;
  }

  const mamba2_mixer_config& config() const noexcept { return cfg_; }

  state_type make_state(const state_spec&) const {
    return ssm::make_mamba2_state(cfg_.n_heads, cfg_.head_dim, cfg_.d_state, cfg_.n_groups, cfg_.d_conv);
  }

  std::size_t workspace_bytes(index_t rows) const noexcept {
    const index_t di = cfg_.d_inner(), cd = cfg_.conv_dim(), h = cfg_.n_heads;
    std::size_t b = workspace::bytes_for<float>(rows * (di + cd + h)) + workspace::bytes_for<float>(rows * cd) +
                    workspace::bytes_for<float>(rows * di);
    const std::size_t ssd = ssm::ssd_prefill_workspace_bytes(h, cfg_.head_dim, cfg_.d_state, cfg_.n_groups,
                                                             std::min(cfg_.chunk, std::max<index_t>(rows, 1)));
    b += std::max({ssd, in_proj_.workspace_bytes(rows), out_proj_.workspace_bytes(rows)});
    return b + 256;
  }

  std::size_t weight_bytes() const noexcept { return in_proj_.weight().bytes() + out_proj_.weight().bytes(); }

  // x: (rows, d_model) → out: (rows, d_model). The projections and the gated norm run over all
  // rows; the conv and the SSD sequence by sequence (the recurrence for a one-row sequence, the
  // chunked form otherwise).
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_refs<state_type> states,
               const batch_context& ctx, workspace& ws) const {
    const index_t l = x.extent(0);
    const index_t di = cfg_.d_inner(), cd = cfg_.conv_dim(), h = cfg_.n_heads, gn = cfg_.n_groups * cfg_.d_state;
    expect_equal(l, ctx.rows(), "mamba2_mixer: x rows vs the batch's rows");
    expect_equal(static_cast<index_t>(states.size()), ctx.n_seq(), "mamba2_mixer: states vs the batch's sequences");
    workspace::frame frame(ws);
    auto zxbcdt = ws.alloc_view<float, 2>({l, di + cd + h});  // (l, d_inner + conv_dim + n_heads)
    auto xbc = ws.alloc_view<float, 2>({l, cd});              // (l, conv_dim) after conv + act
    auto y = ws.alloc_view<float, 2>({l, di});                // (l, d_inner)
    // in_proj
    in_proj_.forward(x, zxbcdt, ws);
    const tensor_view<const float, 2> z = zxbcdt.slice(1, 0, di);
    const tensor_view<const float, 2> xbc_raw = zxbcdt.slice(1, di, di + cd);
    const tensor_view<const float, 2> dt = zxbcdt.slice(1, di + cd, di + cd + h);
    // causal conv1d over xBC + activation, per sequence
    std::optional<tensor_view<const float, 1>> cb;
    if (conv_b_) cb = conv_b_->cview();
    const bool fused = cfg_.act == ops::activation::silu;
    for (index_t s = 0; s < ctx.n_seq(); ++s) {
      const auto [r0, r1] = ctx.rows_of(s);
      if (r0 < r1)
        ssm::causal_conv1d(xbc_raw.slice(0, r0, r1), conv_w_.cview(), cb, states[static_cast<std::size_t>(s)]->conv.view(),
                           xbc.slice(0, r0, r1), {.silu = fused});
    }
    if (!fused) ops::apply_activation(cfg_.act, xbc);
    const tensor_view<const float, 2> xs = xbc.slice(1, 0, di);
    const tensor_view<const float, 2> B = xbc.slice(1, di, di + gn);
    const tensor_view<const float, 2> C = xbc.slice(1, di + gn, di + 2 * gn);
    // SSD, per sequence
    const ssm::ssd_weights sw{A_.cview(), D_.cview(), dt_bias_.cview()};
    const ssm::ssd_params sp{.head_dim = cfg_.head_dim, .n_groups = cfg_.n_groups, .chunk = cfg_.chunk,
                             .dt_min = cfg_.dt_min, .dt_max = cfg_.dt_max, .dt_softplus = true};
    for (index_t s = 0; s < ctx.n_seq(); ++s) {
      const auto [r0, r1] = ctx.rows_of(s);
      auto& ssm_state = states[static_cast<std::size_t>(s)]->ssm;
      if (r1 - r0 == 1)
        ssm::ssd_scan(xs.slice(0, r0, r1), dt.slice(0, r0, r1), B.slice(0, r0, r1), C.slice(0, r0, r1), sw,
                      ssm_state.view(), y.slice(0, r0, r1), sp);
      else if (r0 < r1)
        ssm::ssd_prefill(xs.slice(0, r0, r1), dt.slice(0, r0, r1), B.slice(0, r0, r1), C.slice(0, r0, r1), sw,
                         ssm_state.view(), y.slice(0, r0, r1), sp, ws);
    }
    // gated RMSNorm (whole row), in place
    ssm::gated_rms_norm(tensor_view<const float, 2>(y), z, norm_w_.cview(), y,
                        {.eps = cfg_.norm_eps, .group_size = 0, .norm_before_gate = false});
    // out_proj
    out_proj_.forward(y, out, ws);
  }

 private:
  mamba2_mixer_config cfg_;
  linear in_proj_, out_proj_;
  tensor<float, 2> conv_w_;                 // (d_conv, conv_dim)
  std::optional<tensor<float, 1>> conv_b_;  // (conv_dim)
  tensor<float, 1> dt_bias_, A_, D_;        // (n_heads)
  tensor<float, 1> norm_w_;                 // (d_inner)
};

}  // namespace layers
}  // namespace v0
}  // namespace tessera
