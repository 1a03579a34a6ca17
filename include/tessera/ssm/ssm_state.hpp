// tessera/ssm/ssm_state.hpp: per-sequence recurrent state of the SSM mixers, and A = -exp(A_log).
//
// States are plain owning tensors (values: copying one is a snapshot, assigning it back restores):
//
//   conv_state  (d_conv - 1, channels)        the last d_conv-1 inputs of the causal conv1d, oldest
//                                             first (row d_conv-2 is the newest). Time-major so that
//                                             a step reads and shifts whole contiguous rows.
//                                             channels = d_inner (Mamba-1) or
//                                             conv_dim = d_inner + 2 * n_groups * d_state (Mamba-2).
//   Mamba-1 ssm (d_inner, d_state)            transformers' MambaCache.ssm_states[layer] for one sequence.
//   Mamba-2 ssm (n_heads, head_dim, d_state)  transformers' Mamba2 recurrent_states for one sequence.
//   S4D state   (d_model, 2, n_half)          complex state x_n, real parts in row 0, imaginary in row 1
//                                             (n_half = d_state / 2 modes per channel, as in s4d.py).
//
// transformers keeps d_conv inputs in its conv cache (the oldest is never used again); ours keeps
// the d_conv-1 that matter: ours = theirs[..., 1:] transposed to (d_conv-1, channels).
// Zero states are the state of an empty prefix (both libraries start from zeros).
#pragma once

#include <cmath>
#include <string>

#include <tessera/core/error.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>

namespace tessera {
inline namespace v0 {
namespace ssm {

/// State of one Mamba-1 mixer for one sequence.
struct mamba1_state {
  tensor<float, 2> conv;  // (d_conv - 1, d_inner)
  tensor<float, 2> ssm;   // (d_inner, d_state)
};

/// State of one Mamba-2 mixer for one sequence.
struct mamba2_state {
  tensor<float, 2> conv;  // (d_conv - 1, conv_dim), conv_dim = d_inner + 2 * n_groups * d_state
  tensor<float, 3> ssm;   // (n_heads, head_dim, d_state)
};

/// State of one S4D layer for one sequence.
struct s4d_state {
  tensor<float, 3> x;  // (d_model, 2, n_half): real, imaginary
};

namespace detail {
inline void expect_positive(index_t v, const char* field, const char* op) {
  if (v <= 0) throw config_error(std::string(op) + ": " + field + " must be positive, got " + std::to_string(v));
}
}  // namespace detail

/// Zero state of a Mamba-1 mixer. The only place it is sized.
inline mamba1_state make_mamba1_state(index_t d_inner, index_t d_state, index_t d_conv) {
  detail::expect_positive(d_inner, "d_inner", "make_mamba1_state");
  detail::expect_positive(d_state, "d_state", "make_mamba1_state");
  detail::expect_positive(d_conv, "d_conv", "make_mamba1_state");
  return {tensor<float, 2>({d_conv - 1, d_inner}), tensor<float, 2>({d_inner, d_state})};
}

/// Zero state of a Mamba-2 mixer; d_inner = n_heads * head_dim.
inline mamba2_state make_mamba2_state(index_t n_heads, index_t head_dim, index_t d_state, index_t n_groups,
                                      index_t d_conv) {
  detail::expect_positive(n_heads, "n_heads", "make_mamba2_state");
  detail::expect_positive(head_dim, "head_dim", "make_mamba2_state");
  detail::expect_positive(d_state, "d_state", "make_mamba2_state");
  detail::expect_positive(n_groups, "n_groups", "make_mamba2_state");
  detail::expect_positive(d_conv, "d_conv", "make_mamba2_state");
  if (n_heads % n_groups != 0)
    throw config_error("make_mamba2_state: n_heads " + std::to_string(n_heads) + " is not a multiple of n_groups " +
                       std::to_string(n_groups));
  const index_t conv_dim = n_heads * head_dim + 2 * n_groups * d_state;
  return {tensor<float, 2>({d_conv - 1, conv_dim}), tensor<float, 3>({n_heads, head_dim, d_state})};
}

/// Zero state of an S4D layer (d_state = 2 * n_half, the N of s4d.py).
inline s4d_state make_s4d_state(index_t d_model, index_t n_half) {
  detail::expect_positive(d_model, "d_model", "make_s4d_state");
  detail::expect_positive(n_half, "n_half", "make_s4d_state");
  return {tensor<float, 3>({d_model, 2, n_half})};
}

/// A = -exp(A_log), elementwise, as transformers does in float32 (any rank; same extents).
/// A non-finite A_log, or one whose exp overflows, is a config_error naming the index and value.
/// Layers call this once at load; the scan kernels take A.
template <std::size_t Rank>
void a_from_log(tensor_view<const float, Rank> A_log, tensor_view<float, Rank> A) {
  if (A_log.extents() != A.extents())
    throw shape_error("a_from_log: A extents " + to_string(A.extents()) + " differ from A_log extents " +
                      to_string(A_log.extents()));
  if (!A_log.is_contiguous() || !A.is_contiguous()) throw shape_error("a_from_log: views must be contiguous");
  const index_t n = A_log.size();
  for (index_t i = 0; i < n; ++i) {
    const float v = A_log.data()[i];
    const float a = -std::exp(v);
    if (!std::isfinite(v) || !std::isfinite(a))
      throw config_error("a_from_log: A_log[" + std::to_string(i) + "] = " + std::to_string(v) +
                         " is not finite (or exp overflows)");
    A.data()[i] = a;
  }
}

}  // namespace ssm
}  // namespace v0
}  // namespace tessera
