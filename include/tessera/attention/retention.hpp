// tessera/attention/retention.hpp: retention (RetNet), in parallel, recurrent and chunked forms.
//
//   q:     (l, n_qk_heads, d_k)   k: (l, n_qk_heads, d_k)   v: (l, n_heads, d_v)
//   gamma: (n_heads)              per-head decay γ_h in (0, 1]
//   out:   (l, n_heads, d_v)      overwritten
//   state: (n_heads, d_k, d_v)    initial state in, final state out
// Broadcast: value head h reads q/k head h / (n_heads / n_qk_heads).
//
//   S_t = γ_h S_{t-1} + k_t v_tᵀ,   o_t = S_tᵀ (s·q_t)          (s = scale, default 1/sqrt(d_k))
// i.e. o = (s·Q Kᵀ ⊙ D) V with D_ij = γ^(i-j) for j ≤ i, 0 otherwise (fla's naive_retention).
// No normalizer: RetNet's group norm belongs to the layer. retnet_gamma fills RetNet's
// γ_h = 1 - 2^(-5-h). Workspace: linear_attention_workspace_bytes (linear_attention.hpp).
#pragma once

#include <cmath>
#include <optional>

#include <tessera/attention/linear_attention.hpp>

namespace tessera {
inline namespace v0 {
namespace attention {

struct retention_params {
  std::optional<float> scale;  // multiplies q; default 1/sqrt(d_k)
  index_t chunk_size = 64;     // chunked form only
};

/// RetNet's per-head decays γ_h = 1 - 2^(-5-h), h = 0 .. n_heads-1.
inline void retnet_gamma(tensor_view<float, 1> gamma) {
  for (index_t h = 0; h < gamma.extent(0); ++h) gamma(h) = 1.f - std::exp2(-5.f - static_cast<float>(h));
}

namespace detail {
inline la_problem retention_problem(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                                    tensor_view<const float, 3> v, tensor_view<const float, 1> gamma,
                                    tensor_view<float, 3> out, tensor_view<float, 3> state,
                                    const retention_params& prm) {
  la_problem p;
  p.op = "retention";
  p.q = q, p.k = k, p.v = v, p.out = out, p.state = state;
  p.gate = la_gate::head_const;
  p.gamma = gamma;
  p.scale = la_default_scale(prm.scale, q.extent(2));
  return p;
}
}  // namespace detail

/// Quadratic form with the causal decay mask; workspace rows = l.
template <class Arch = simd::default_arch>
void retention_parallel(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 1> gamma, tensor_view<float, 3> out, tensor_view<float, 3> state, const retention_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::retention_problem(q, k, v, gamma, out, state, params), detail::la_form::parallel, 0, ws);
}
inline void retention_parallel(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 1> gamma, tensor_view<float, 3> out, tensor_view<float, 3> state, const retention_params& params, workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::retention_problem(q, k, v, gamma, out, state, params), detail::la_form::parallel, 0, ws);
}

/// Recurrent form, token by token (decode); workspace rows = 1.
template <class Arch = simd::default_arch>
void retention_recurrent(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 1> gamma, tensor_view<float, 3> out, tensor_view<float, 3> state, const retention_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::retention_problem(q, k, v, gamma, out, state, params), detail::la_form::recurrent, 0, ws);
}
inline void retention_recurrent(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 1> gamma, tensor_view<float, 3> out, tensor_view<float, 3> state, const retention_params& params, workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::retention_problem(q, k, v, gamma, out, state, params), detail::la_form::recurrent, 0, ws);
}

/// Chunked form (prefill); workspace rows = min(chunk_size, l).
template <class Arch = simd::default_arch>
void retention_chunked(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 1> gamma, tensor_view<float, 3> out, tensor_view<float, 3> state, const retention_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::retention_problem(q, k, v, gamma, out, state, params), detail::la_form::chunked, params.chunk_size, ws);
}
inline void retention_chunked(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 1> gamma, tensor_view<float, 3> out, tensor_view<float, 3> state, const retention_params& params, workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::retention_problem(q, k, v, gamma, out, state, params), detail::la_form::chunked, params.chunk_size, ws);
}

}  // namespace attention
}  // namespace v0
}  // namespace tessera
