// tessera/attention/delta_rule.hpp: the delta rule (DeltaNet) and the gated delta rule (Gated
// DeltaNet, as in Qwen3-Next), in parallel, recurrent and chunked forms, with fla's semantics
// (fla/ops/delta_rule/naive.py, fla/ops/gated_delta_rule/naive.py).
//
//   q:     (l, n_qk_heads, d_k)   k: (l, n_qk_heads, d_k)   v: (l, n_heads, d_v)
//   beta:  (l, n_heads)           write strength β per token and head (sigmoid output, in [0, 1])
//   g:     (l, n_heads)           log-space decay per token and head (≤ 0; gated form only;
//                                 Qwen3-Next: g = -exp(A_log) · softplus(a + dt_bias))
//   out:   (l, n_heads, d_v)      overwritten
//   state: (n_heads, d_k, d_v)    initial state in, final state out
// Broadcast: value head h reads q/k head h / (n_heads / n_qk_heads) (Qwen3-Next's repeat of the
// k heads over the value heads).
//
// With optional L2 normalization q̂ = q / sqrt(|q|² + eps), k̂ likewise (use_qk_l2norm_in_kernel),
// and s = scale (default 1/sqrt(d_k)), per head:
//   S'  = exp(g_t) S_{t-1}
//   u_t = β_t (v_t - S'ᵀ k̂_t)
//   S_t = S' + k̂_t u_tᵀ,   o_t = S_tᵀ (s·q̂_t)
// The chunked and parallel forms use the WY/UT transform: per chunk, (I + L) U = diag(β)(V - ...)
// with L strictly lower triangular, solved by forward substitution (one triangular solve per chunk).
// Workspace: linear_attention_workspace_bytes (linear_attention.hpp).
#pragma once

#include <optional>

#include <tessera/attention/linear_attention.hpp>

namespace tessera {
inline namespace v0 {
namespace attention {

struct delta_rule_params {
  bool l2norm_qk = false;      // L2-normalize q and k inside the kernel
  float l2norm_eps = 1e-6f;    // q / sqrt(Σq² + eps), as fla and Qwen3-Next
  std::optional<float> scale;  // multiplies q; default 1/sqrt(d_k)
  index_t chunk_size = 64;     // chunked form only
};

namespace detail {
inline la_problem delta_problem(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                                tensor_view<const float, 3> v, tensor_view<const float, 2> beta,
                                tensor_view<float, 3> out, tensor_view<float, 3> state,
                                const delta_rule_params& prm) {
  la_problem p;
  p.op = "delta_rule";
  p.q = q, p.k = k, p.v = v, p.out = out, p.state = state;
  p.delta = true;
  p.beta = beta;
  p.l2norm_qk = prm.l2norm_qk;
  p.l2norm_eps = prm.l2norm_eps;
  p.scale = la_default_scale(prm.scale, q.extent(2));
  return p;
}
inline la_problem gated_delta_problem(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                                      tensor_view<const float, 3> v, tensor_view<const float, 2> g,
                                      tensor_view<const float, 2> beta, tensor_view<float, 3> out,
                                      tensor_view<float, 3> state, const delta_rule_params& prm) {
  la_problem p = delta_problem(q, k, v, beta, out, state, prm);
  p.op = "gated_delta_rule";
  p.gate = la_gate::token_scalar;
  p.g_scalar = g;
  return p;
}
}  // namespace detail

// ---- delta rule (DeltaNet) ----------------------------------------------------------------------

/// Quadratic form with the causal decay mask; workspace rows = l.
template <class Arch = simd::default_arch>
void delta_rule_parallel(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 2> beta, tensor_view<float, 3> out, tensor_view<float, 3> state, const delta_rule_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::delta_problem(q, k, v, beta, out, state, params), detail::la_form::parallel, 0, ws);
}
inline void delta_rule_parallel(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 2> beta, tensor_view<float, 3> out, tensor_view<float, 3> state, const delta_rule_params& params, workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::delta_problem(q, k, v, beta, out, state, params), detail::la_form::parallel, 0, ws);
}

/// Recurrent form, token by token (decode); workspace rows = 1.
template <class Arch = simd::default_arch>
void delta_rule_recurrent(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 2> beta, tensor_view<float, 3> out, tensor_view<float, 3> state, const delta_rule_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::delta_problem(q, k, v, beta, out, state, params), detail::la_form::recurrent, 0, ws);
}
inline void delta_rule_recurrent(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 2> beta, tensor_view<float, 3> out, tensor_view<float, 3> state, const delta_rule_params& params, workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::delta_problem(q, k, v, beta, out, state, params), detail::la_form::recurrent, 0, ws);
}

/// Chunked form (prefill); workspace rows = min(chunk_size, l).
template <class Arch = simd::default_arch>
void delta_rule_chunked(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 2> beta, tensor_view<float, 3> out, tensor_view<float, 3> state, const delta_rule_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::delta_problem(q, k, v, beta, out, state, params), detail::la_form::chunked, params.chunk_size, ws);
}
inline void delta_rule_chunked(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 2> beta, tensor_view<float, 3> out, tensor_view<float, 3> state, const delta_rule_params& params, workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::delta_problem(q, k, v, beta, out, state, params), detail::la_form::chunked, params.chunk_size, ws);
}

// ---- gated delta rule (Gated DeltaNet, Qwen3-Next) ----------------------------------------------

/// Quadratic form with the causal decay mask; workspace rows = l.
template <class Arch = simd::default_arch>
void gated_delta_rule_parallel(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 2> g, tensor_view<const float, 2> beta, tensor_view<float, 3> out, tensor_view<float, 3> state, const delta_rule_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::gated_delta_problem(q, k, v, g, beta, out, state, params), detail::la_form::parallel, 0, ws);
}
inline void gated_delta_rule_parallel(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 2> g, tensor_view<const float, 2> beta, tensor_view<float, 3> out, tensor_view<float, 3> state, const delta_rule_params& params, workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::gated_delta_problem(q, k, v, g, beta, out, state, params), detail::la_form::parallel, 0, ws);
}

/// Recurrent form, token by token (decode); workspace rows = 1.
template <class Arch = simd::default_arch>
void gated_delta_rule_recurrent(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 2> g, tensor_view<const float, 2> beta, tensor_view<float, 3> out, tensor_view<float, 3> state, const delta_rule_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::gated_delta_problem(q, k, v, g, beta, out, state, params), detail::la_form::recurrent, 0, ws);
}
inline void gated_delta_rule_recurrent(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 2> g, tensor_view<const float, 2> beta, tensor_view<float, 3> out, tensor_view<float, 3> state, const delta_rule_params& params, workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::gated_delta_problem(q, k, v, g, beta, out, state, params), detail::la_form::recurrent, 0, ws);
}

/// Chunked form (prefill); workspace rows = min(chunk_size, l).
template <class Arch = simd::default_arch>
void gated_delta_rule_chunked(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 2> g, tensor_view<const float, 2> beta, tensor_view<float, 3> out, tensor_view<float, 3> state, const delta_rule_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::gated_delta_problem(q, k, v, g, beta, out, state, params), detail::la_form::chunked, params.chunk_size, ws);
}
inline void gated_delta_rule_chunked(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v, tensor_view<const float, 2> g, tensor_view<const float, 2> beta, tensor_view<float, 3> out, tensor_view<float, 3> state, const delta_rule_params& params, workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::gated_delta_problem(q, k, v, g, beta, out, state, params), detail::la_form::chunked, params.chunk_size, ws);
}

}  // namespace attention
}  // namespace v0
}  // namespace tessera
