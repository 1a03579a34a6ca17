// tessera/layers/mamba_mixer.hpp: the Mamba-1 mixer (transformers MambaMixer / JambaMambaMixer).
//
// Glossary: l tokens, d_model, d_inner = expand · d_model, d_state (N), d_conv, dt_rank (R).
//
//   in_proj:  (2 d_inner, d_model)           x → [xs | z]                      (bias: use_bias)
//   conv1d:   torch (d_inner, 1, d_conv)     depthwise causal conv over xs, then act (SiLU)
//   x_proj:   (R + 2N, d_inner)              xc → [dt_low | B | C]
//   dt/b/c_layernorm (Jamba only):           RMSNorm of dt_low (R), B (N), C (N)
//   dt_proj:  (d_inner, R) + bias (d_inner)  dt = dt_proj.weight · dt_low; Δ = softplus(dt + bias)
//   A_log:    (d_inner, N)                   A = -exp(A_log) (once, at load)
//   D:        (d_inner)
//   out_proj: (d_model, d_inner)             y = (C·h + D xc) · SiLU(z) → out   (bias: use_bias)
//
// State (per sequence, sized by make_state): conv window (d_conv-1, d_inner) + SSM state
// (d_inner, d_state) (ssm/ssm_state.hpp). prefill runs the vectorized selective scan over all l
// tokens from the state; step is the same path with l = 1 (the scan kernel switches to
// selective_state_update). Both leave the state after the last token, so
// prefill(n) then step × k == prefill(n + k).
#pragma once

#include <algorithm>
#include <optional>
#include <string>

#include <tessera/core/tensor.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/layers/batch.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/layers/norm.hpp>
#include <tessera/ops/activation.hpp>
#include <tessera/ssm/conv1d.hpp>
#include <tessera/ssm/selective_scan.hpp>
#include <tessera/ssm/ssm_state.hpp>

namespace tessera {
inline namespace v0 {
namespace layers {

struct mamba_mixer_config {
  index_t d_model = 0;
  index_t d_inner = 0;
  index_t d_state = 16;
  index_t d_conv = 4;
  index_t dt_rank = 0;
  bool conv_bias = true;                          // use_conv_bias / mamba_conv_bias
  bool proj_bias = false;                         // use_bias / mamba_proj_bias (in_proj, out_proj)
  ops::activation act = ops::activation::silu;    // hidden_act: the activation after the conv
  bool inner_norms = false;                       // Jamba: RMSNorm of dt_low, B and C
  float norm_eps = 1e-6f;                         // eps of those norms (rms_norm_eps)
};

namespace detail {
/// Shape check of a loaded weight, naming it.
inline void expect_weight_shape(index_t got, index_t want, const std::string& name, const char* what) {
  if (got != want)
    throw shape_error("weight '" + name + "': " + what + " is " + std::to_string(got) + ", the config implies " +
                      std::to_string(want));
}

/// torch conv1d weight (channels, 1, d_conv) → (d_conv, channels).
inline tensor<float, 2> load_conv_weight(const io::weight_map& w, const std::string& name, index_t channels,
                                         index_t d_conv) {
  const auto t = w.f32<3>(name);
  expect_weight_shape(t.extent(0), channels, name, "dim 0 (channels)");
  expect_weight_shape(t.extent(1), 1, name, "dim 1");
  expect_weight_shape(t.extent(2), d_conv, name, "dim 2 (d_conv)");
  tensor<float, 2> out({d_conv, channels});
  ssm::conv1d_weight_from_torch(
      tensor_view<const float, 2>(t.data(), {channels, d_conv}, {t.stride(0), t.stride(2)}), out.view());
  return out;
}

inline tensor<float, 1> load_vector(const io::weight_map& w, const std::string& name, index_t n) {
  const auto t = w.f32<1>(name);
  expect_weight_shape(t.extent(0), n, name, "length");
  return tensor<float, 1>::copy_of(t);
}
}  // namespace detail

class mamba_mixer {
 public:
  using state_type = ssm::mamba1_state;

  mamba_mixer() = default;

  /// Loads `<prefix>.in_proj`, `.conv1d`, `.x_proj`, `.dt_proj`, `.A_log`, `.D`, `.out_proj` (and
  /// `.dt_layernorm`, `.b_layernorm`, `.c_layernorm` when cfg.inner_norms).
  static mamba_mixer load(const io::weight_map& w, const std::string& prefix, const mamba_mixer_config& cfg) {
    if (cfg.d_model <= 0 || cfg.d_inner <= 0 || cfg.d_state <= 0 || cfg.d_conv <= 0 || cfg.dt_rank <= 0)
      throw config_error("mamba_mixer: d_model, d_inner, d_state, d_conv and dt_rank must be positive (" + prefix + ")");
    mamba_mixer m;
    m.cfg_ = cfg;
    const index_t di = cfg.d_inner, n = cfg.d_state, r = cfg.dt_rank;
    m.in_proj_ = linear::load(w, prefix + ".in_proj", cfg.proj_bias);
    detail::expect_weight_shape(m.in_proj_.out_features(), 2 * di, prefix + ".in_proj.weight", "rows (2 d_inner)");
    detail::expect_weight_shape(m.in_proj_.in_features(), cfg.d_model, prefix + ".in_proj.weight", "cols (d_model)");
    m.conv_w_ = detail::load_conv_weight(w, prefix + ".conv1d.weight", di, cfg.d_conv);
    if (cfg.conv_bias) m.conv_b_ = detail::load_vector(w, prefix + ".conv1d.bias", di);
    m.x_proj_ = linear::load(w, prefix + ".x_proj");
    detail::expect_weight_shape(m.x_proj_.out_features(), r + 2 * n, prefix + ".x_proj.weight", "rows (dt_rank + 2 d_state)");
    detail::expect_weight_shape(m.x_proj_.in_features(), di, prefix + ".x_proj.weight", "cols (d_inner)");
    m.dt_proj_ = linear::from(weight_matrix::load(w, prefix + ".dt_proj.weight"));
    detail::expect_weight_shape(m.dt_proj_.out_features(), di, prefix + ".dt_proj.weight", "rows (d_inner)");
    detail::expect_weight_shape(m.dt_proj_.in_features(), r, prefix + ".dt_proj.weight", "cols (dt_rank)");
    if (w.contains(prefix + ".dt_proj.bias")) m.dt_bias_ = detail::load_vector(w, prefix + ".dt_proj.bias", di);
    const auto a_log = w.f32<2>(prefix + ".A_log");
    detail::expect_weight_shape(a_log.extent(0), di, prefix + ".A_log", "rows (d_inner)");
    detail::expect_weight_shape(a_log.extent(1), n, prefix + ".A_log", "cols (d_state)");
    m.A_ = tensor<float, 2>({di, n});
    ssm::a_from_log(tensor<float, 2>::copy_of(a_log).cview(), m.A_.view());
    m.D_ = detail::load_vector(w, prefix + ".D", di);
    m.out_proj_ = linear::load(w, prefix + ".out_proj", cfg.proj_bias);
    detail::expect_weight_shape(m.out_proj_.out_features(), cfg.d_model, prefix + ".out_proj.weight", "rows (d_model)");
    if (cfg.inner_norms) {
      m.dt_norm_ = rms_norm_layer::load(w, prefix + ".dt_layernorm", cfg.norm_eps);
      m.b_norm_ = rms_norm_layer::load(w, prefix + ".b_layernorm", cfg.norm_eps);
      m.c_norm_ = rms_norm_layer::load(w, prefix + ".c_layernorm", cfg.norm_eps);
    }
    return m;
  }

  const mamba_mixer_config& config() const noexcept { return cfg_; }

  /// Zero state: the only place it is sized.
  state_type make_state(const state_spec&) const {
    return ssm::make_mamba1_state(cfg_.d_inner, cfg_.d_state, cfg_.d_conv);
  }

  /// Workspace bytes a forward of up to `rows` rows needs.
  std::size_t workspace_bytes(index_t rows) const noexcept {
    const index_t di = cfg_.d_inner, n = cfg_.d_state, r = cfg_.dt_rank;
    std::size_t b = workspace::bytes_for<float>(rows * 2 * di) + 3 * workspace::bytes_for<float>(rows * di) +
                    workspace::bytes_for<float>(rows * (r + 2 * n)) + workspace::bytes_for<float>(rows * r);
    if (cfg_.inner_norms) b += workspace::bytes_for<float>(rows * r) + 2 * workspace::bytes_for<float>(rows * n);
    b += std::max({in_proj_.workspace_bytes(rows), x_proj_.workspace_bytes(rows), dt_proj_.workspace_bytes(rows),
                   out_proj_.workspace_bytes(rows)});
    return b + 256;
  }

  std::size_t weight_bytes() const noexcept {
    return in_proj_.weight().bytes() + x_proj_.weight().bytes() + dt_proj_.weight().bytes() +
           out_proj_.weight().bytes() + sizeof(float) * static_cast<std::size_t>(A_.size() + conv_w_.size());
  }

  // x: (rows, d_model) → out: (rows, d_model); each sequence's state advances by its rows.
  // The projections run over all rows at once; the conv and the scan sequence by sequence.
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_refs<state_type> states,
               const batch_context& ctx, workspace& ws) const {
    const index_t l = x.extent(0);
    const index_t di = cfg_.d_inner, n = cfg_.d_state, r = cfg_.dt_rank;
    expect_equal(l, ctx.rows(), "mamba_mixer: x rows vs the batch's rows");
    expect_equal(static_cast<index_t>(states.size()), ctx.n_seq(), "mamba_mixer: states vs the batch's sequences");
    workspace::frame frame(ws);
    auto xz = ws.alloc_view<float, 2>({l, 2 * di});       // (l, 2 d_inner): [xs | z]
    auto xc = ws.alloc_view<float, 2>({l, di});           // (l, d_inner): conv + act
    auto dbc = ws.alloc_view<float, 2>({l, r + 2 * n});   // (l, R + 2N): [dt_low | B | C]
    auto dt = ws.alloc_view<float, 2>({l, di});           // (l, d_inner)
    auto y = ws.alloc_view<float, 2>({l, di});            // (l, d_inner)
    // in_proj
    in_proj_.forward(x, xz, ws);
    const tensor_view<const float, 2> xs = xz.slice(1, 0, di);
    const tensor_view<const float, 2> z = xz.slice(1, di, 2 * di);
    // causal conv1d + activation, per sequence
    std::optional<tensor_view<const float, 1>> cb;
    if (conv_b_) cb = conv_b_->cview();
    const bool fused = cfg_.act == ops::activation::silu;
    for (index_t s = 0; s < ctx.n_seq(); ++s) {
      const auto [r0, r1] = ctx.rows_of(s);
      if (r0 < r1)
        ssm::causal_conv1d(xs.slice(0, r0, r1), conv_w_.cview(), cb, states[static_cast<std::size_t>(s)]->conv.view(),
                           xc.slice(0, r0, r1), {.silu = fused});
    }
    if (!fused) ops::apply_activation(cfg_.act, xc);
    // x_proj → dt_low, B, C
    x_proj_.forward(xc, dbc, ws);
    tensor_view<const float, 2> dt_low = dbc.slice(1, 0, r);
    tensor_view<const float, 2> B = dbc.slice(1, r, r + n);
    tensor_view<const float, 2> C = dbc.slice(1, r + n, r + 2 * n);
    if (cfg_.inner_norms) {  // Jamba: RMSNorms of dt_low, B, C
      auto dtn = ws.alloc_view<float, 2>({l, r});
      auto bn = ws.alloc_view<float, 2>({l, n});
      auto cn = ws.alloc_view<float, 2>({l, n});
      dt_norm_.forward(dt_low, dtn);
      b_norm_.forward(B, bn);
      c_norm_.forward(C, cn);
      dt_low = dtn, B = bn, C = cn;
    }
    // dt_proj (weight only; its bias is added inside the scan before softplus)
    if (dt_low.stride(0) != r) {  // the linear op wants dense rows: copy the R columns
      auto d2 = ws.alloc_view<float, 2>({l, r});
      for (index_t t = 0; t < l; ++t)
        for (index_t k = 0; k < r; ++k) d2(t, k) = dt_low(t, k);
      dt_low = d2;
    }
    dt_proj_.forward(dt_low, dt, ws);
    // selective scan per sequence: y = (C·h + D xc) · SiLU(z)
    std::optional<tensor_view<const float, 1>> dtb;
    if (dt_bias_) dtb = dt_bias_->cview();
    for (index_t s = 0; s < ctx.n_seq(); ++s) {
      const auto [r0, r1] = ctx.rows_of(s);
      if (r0 < r1)
        ssm::selective_scan(tensor_view<const float, 2>(xc.slice(0, r0, r1)), tensor_view<const float, 2>(dt.slice(0, r0, r1)),
                            B.slice(0, r0, r1), C.slice(0, r0, r1), z.slice(0, r0, r1),
                            ssm::selective_scan_weights{A_.cview(), D_.cview(), dtb},
                            states[static_cast<std::size_t>(s)]->ssm.view(), y.slice(0, r0, r1), {});
    }
    // out_proj
    out_proj_.forward(y, out, ws);
  }

 private:
  mamba_mixer_config cfg_;
  linear in_proj_, x_proj_, dt_proj_, out_proj_;
  tensor<float, 2> conv_w_;                 // (d_conv, d_inner)
  std::optional<tensor<float, 1>> conv_b_;  // (d_inner)
  std::optional<tensor<float, 1>> dt_bias_; // (d_inner)
  tensor<float, 2> A_;                      // (d_inner, d_state) = -exp(A_log)
  tensor<float, 1> D_;                      // (d_inner)
  rms_norm_layer dt_norm_, b_norm_, c_norm_;
};

}  // namespace layers
}  // namespace v0
}  // namespace tessera
