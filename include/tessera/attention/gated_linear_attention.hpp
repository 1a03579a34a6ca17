// tessera/attention/gated_linear_attention.hpp: gated linear attention (GLA, Yang et al. 2023), in
// parallel, recurrent and chunked forms, with fla's semantics (fla/ops/gla/naive.py).
//
//   q:     (l, n_qk_heads, d_k)   k: (l, n_qk_heads, d_k)   v: (l, n_heads, d_v)
//   g:     (l, n_heads, d_k)      log-space forget gate per key dimension (≤ 0, e.g. logsigmoid)
//   out:   (l, n_heads, d_v)      overwritten
//   state: (n_heads, d_k, d_v)    initial state in, final state out
// Broadcast: value head h reads q/k head h / (n_heads / n_qk_heads).
//
//   S_t = diag(exp(g_t)) S_{t-1} + k_t v_tᵀ,   o_t = S_tᵀ (s·q_t)   (s = scale, default 1/sqrt(d_k))
// The chunked form keeps every exponent ≤ 0 (sub-chunks of linear_attention_subchunk rows with a
// reference row, the diagonal sub-block pairwise), so strong gates cannot overflow; g > 0 is allowed
// by the recurrent form but may overflow the others. Workspace: linear_attention_workspace_bytes.
#pragma once

#include <optional>

#include <tessera/attention/linear_attention.hpp>

namespace tessera {
inline namespace v0 {
namespace attention {

struct gla_params {
  std::optional<float> scale;  // multiplies q; default 1/sqrt(d_k)
  index_t chunk_size = 64;     // chunked form only
};

namespace detail {
inline la_problem gla_problem(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                              tensor_view<const float, 3> v, tensor_view<const float, 3> g,
                              tensor_view<float, 3> out, tensor_view<float, 3> state, const gla_params& prm) {
  la_problem p;
  p.op = "gla";
  p.q = q, p.k = k, p.v = v, p.out = out, p.state = state;
  p.gate = la_gate::token_vector;
  p.g_vector = g;
  p.scale = la_default_scale(prm.scale, q.extent(2));
  return p;
}
}  // namespace detail

/// Quadratic form with the causal decay mask; workspace rows = l.
template <class Arch = simd::default_arch>
void gla_parallel(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 3> g, tensor_view<float, 3> out, tensor_view<float, 3> state, const gla_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::gla_problem(q, k, v, g, out, state, params), detail::la_form::parallel, 0, ws);
}
inline void gla_parallel(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 3> g, tensor_view<float, 3> out, tensor_view<float, 3> state, const gla_params& params, workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::gla_problem(q, k, v, g, out, state, params), detail::la_form::parallel, 0, ws);
}

/// Recurrent form, token by token (decode); workspace rows = 1.
template <class Arch = simd::default_arch>
void gla_recurrent(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 3> g, tensor_view<float, 3> out, tensor_view<float, 3> state, const gla_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::gla_problem(q, k, v, g, out, state, params), detail::la_form::recurrent, 0, ws);
}
inline void gla_recurrent(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 3> g, tensor_view<float, 3> out, tensor_view<float, 3> state, const gla_params& params, workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::gla_problem(q, k, v, g, out, state, params), detail::la_form::recurrent, 0, ws);
}

/// Chunked form (prefill); workspace rows = min(chunk_size, l).
template <class Arch = simd::default_arch>
void gla_chunked(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 3> g, tensor_view<float, 3> out, tensor_view<float, 3> state, const gla_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::gla_problem(q, k, v, g, out, state, params), detail::la_form::chunked, params.chunk_size, ws);
}
inline void gla_chunked(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 3> g, tensor_view<float, 3> out, tensor_view<float, 3> state, const gla_params& params, workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::gla_problem(q, k, v, g, out, state, params), detail::la_form::chunked, params.chunk_size, ws);
}

}  // namespace attention
}  // namespace v0
}  // namespace tessera
