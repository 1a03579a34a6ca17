// tessera/ops/activation.hpp: activations on (n, d) views, by name as transformers' ACT2FN knows them.
//
//   x, out, gate, up: (n, d) f32, rows contiguous (row stride >= d)
//
//   apply_activation(act, x)           x = act(x), in place
//   relu / gelu / gelu_tanh / silu / quick_gelu / sigmoid / ... (x)   in place
//   swiglu(gate, up, out)               out = silu(gate) * up          (Llama's MLP)
//   gated_activation(act, gate, up, out) out = act(gate) * up           (GeGLU, ReGLU, ...)
// out may alias gate or up. The formulas are in simd/math.hpp.
//
// parse_activation maps config.json's hidden_act / activation_function:
//   "gelu", "gelu_python"                                   -> gelu (exact erf form)
//   "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate" -> gelu_tanh (tanh approximation;
//                                                              the three are the same formula)
//   "silu", "swish"  -> silu     "relu" -> relu     "quick_gelu" -> quick_gelu
//   "sigmoid" -> sigmoid   "tanh" -> tanh   "relu2" -> relu2 (relu squared)   "linear" -> identity
// Anything else is a config_error listing the supported names.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <utility>

#include <tessera/core/error.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/kernels/activation.hpp>
#include <tessera/kernels/elementwise.hpp>
#include <tessera/ops/rows.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace ops {

enum class activation {
  identity,
  relu,
  relu2,       ///< relu(x)²
  gelu,        ///< exact: 0.5 x (1 + erf(x / √2))
  gelu_tanh,   ///< 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))
  silu,        ///< x · sigmoid(x) (swish)
  quick_gelu,  ///< x · sigmoid(1.702 x)
  sigmoid,
  tanh,
};

namespace detail {
inline constexpr std::array<std::pair<std::string_view, activation>, 15> activation_names{{
    {"gelu", activation::gelu},
    {"gelu_python", activation::gelu},
    {"gelu_new", activation::gelu_tanh},
    {"gelu_pytorch_tanh", activation::gelu_tanh},
    {"gelu_fast", activation::gelu_tanh},
    {"gelu_accurate", activation::gelu_tanh},
    {"silu", activation::silu},
    {"swish", activation::silu},
    {"relu", activation::relu},
    {"relu2", activation::relu2},
    {"quick_gelu", activation::quick_gelu},
    {"sigmoid", activation::sigmoid},
    {"tanh", activation::tanh},
    {"linear", activation::identity},
    {"identity", activation::identity},
}};
}  // namespace detail

/// The activation a transformers hidden_act name denotes; config_error for unknown names.
inline activation parse_activation(std::string_view hf_name) {
  for (const auto& [name, act] : detail::activation_names)
    if (name == hf_name) return act;
  std::string supported;
  for (const auto& [name, act] : detail::activation_names) {
    if (!supported.empty()) supported += ", ";
    supported += name;
  }
  throw config_error("activation \"" + std::string(hf_name) + "\" is not supported (supported: " + supported + ")");
}

/// A readable name ("gelu_tanh").
inline std::string_view activation_name(activation act) noexcept {
  switch (act) {
    case activation::identity: return "identity";
    case activation::relu: return "relu";
    case activation::relu2: return "relu2";
    case activation::gelu: return "gelu";
    case activation::gelu_tanh: return "gelu_tanh";
    case activation::silu: return "silu";
    case activation::quick_gelu: return "quick_gelu";
    case activation::sigmoid: return "sigmoid";
    case activation::tanh: return "tanh";
  }
  return "?";
}

namespace detail {

/// out[0:n] = act(x[0:n]) with the kernels of Arch (x may equal out).
template <class Arch>
void activation_row(activation act, index_t n, const float* x, float* out) noexcept {
  switch (act) {
    case activation::identity:
      if (out != x) std::copy(x, x + n, out);
      return;
    case activation::relu: return kernels::vec_relu(n, x, out, Arch{});
    case activation::relu2:
      kernels::vec_relu(n, x, out, Arch{});
      return kernels::vec_mul(n, out, out, out, Arch{});
    case activation::gelu: return kernels::vec_gelu(n, x, out, Arch{});
    case activation::gelu_tanh: return kernels::vec_gelu_tanh(n, x, out, Arch{});
    case activation::silu: return kernels::vec_silu(n, x, out, Arch{});
    case activation::quick_gelu: return kernels::vec_quick_gelu(n, x, out, Arch{});
    case activation::sigmoid: return kernels::vec_sigmoid(n, x, out, Arch{});
    case activation::tanh: return kernels::vec_tanh(n, x, out, Arch{});
  }
}

/// out[0:n] = act(gate[0:n]) * up[0:n].
template <class Arch>
void gated_row(activation act, index_t n, const float* gate, const float* up, float* out) noexcept {
  switch (act) {
    case activation::silu: return kernels::vec_swiglu(n, gate, up, out, Arch{});
    case activation::gelu: return kernels::vec_geglu(n, gate, up, out, Arch{});
    case activation::gelu_tanh: return kernels::vec_geglu_tanh(n, gate, up, out, Arch{});
    case activation::relu: return kernels::vec_reglu(n, gate, up, out, Arch{});
    case activation::quick_gelu: return kernels::vec_quick_geglu(n, gate, up, out, Arch{});
    default:
      activation_row<Arch>(act, n, gate, out);
      return kernels::vec_mul(n, out, up, out, Arch{});
  }
}

/// Applies row_fn(d, x_row, out_row) to every row (threads over rows; one call when both views
/// are dense).
template <class RowFn>
void map_rows(const char* op, const tensor_view<const float, 2>& x, const tensor_view<float, 2>& out, RowFn&& row_fn) {
  expect_shape(out, x.extents(), op, "out");
  expect_dense_rows(x, op, "x");
  expect_dense_rows(out, op, "out");
  const index_t n = x.extent(0), d = x.extent(1);
  if (x.is_contiguous() && out.is_contiguous()) {
    const index_t total = n * d;
    parallel_for(0, total, 16384, [&](index_t lo, index_t hi) { row_fn(hi - lo, x.data() + lo, out.data() + lo); });
  } else {
    for_rows(n, d, [&](index_t t) { row_fn(d, x.row(t), out.row(t)); });
  }
}

inline void check_gated(const char* op, const tensor_view<const float, 2>& gate, const tensor_view<const float, 2>& up,
                        const tensor_view<float, 2>& out) {
  expect_shape(up, gate.extents(), op, "up");
  expect_shape(out, gate.extents(), op, "out");
  expect_dense_rows(gate, op, "gate");
  expect_dense_rows(up, op, "up");
  expect_dense_rows(out, op, "out");
}

}  // namespace detail

/// out = act(x) (out may alias x).
template <simd::arch_tag Arch = simd::default_arch>
void apply_activation(activation act, tensor_view<const float, 2> x, tensor_view<float, 2> out, Arch = {}) {
  detail::map_rows("apply_activation", x, out,
                   [act](index_t n, const float* xr, float* o) { detail::activation_row<Arch>(act, n, xr, o); });
}

/// x = act(x), in place.
template <simd::arch_tag Arch = simd::default_arch>
void apply_activation(activation act, tensor_view<float, 2> x, Arch = {}) {
  apply_activation(act, tensor_view<const float, 2>(x), x, Arch{});
}

// In-place named forms: ops::silu(x), ops::gelu(x), ...
#define TESSERA_DETAIL_ACT_OP(name)                                             \
  template <simd::arch_tag Arch = simd::default_arch>                           \
  void name(tensor_view<float, 2> x, Arch = {}) {                               \
    apply_activation(activation::name, x, Arch{});                              \
  }                                                                             \
  template <simd::arch_tag Arch = simd::default_arch>                           \
  tensor<float, 2> name##_copy(tensor_view<const float, 2> x, Arch = {}) {      \
    tensor<float, 2> out(x.extents());                                          \
    apply_activation(activation::name, x, out.view(), Arch{});                  \
    return out;                                                                 \
  }

TESSERA_DETAIL_ACT_OP(relu)
TESSERA_DETAIL_ACT_OP(relu2)
TESSERA_DETAIL_ACT_OP(gelu)
TESSERA_DETAIL_ACT_OP(gelu_tanh)
TESSERA_DETAIL_ACT_OP(silu)
TESSERA_DETAIL_ACT_OP(quick_gelu)
TESSERA_DETAIL_ACT_OP(sigmoid)
TESSERA_DETAIL_ACT_OP(tanh)

#undef TESSERA_DETAIL_ACT_OP

/// act(x) into a new tensor.
template <simd::arch_tag Arch = simd::default_arch>
tensor<float, 2> activation_copy(activation act, tensor_view<const float, 2> x, Arch = {}) {
  tensor<float, 2> out(x.extents());
  apply_activation(act, x, out.view(), Arch{});
  return out;
}

/// out = act(gate) * up (out may alias gate or up).
template <simd::arch_tag Arch = simd::default_arch>
void gated_activation(activation act, tensor_view<const float, 2> gate, tensor_view<const float, 2> up,
                      tensor_view<float, 2> out, Arch = {}) {
  detail::check_gated("gated_activation", gate, up, out);
  const index_t n = gate.extent(0), d = gate.extent(1);
  detail::for_rows(n, d, [&](index_t t) { detail::gated_row<Arch>(act, d, gate.row(t), up.row(t), out.row(t)); });
}

/// out = silu(gate) * up (out may alias gate or up).
template <simd::arch_tag Arch = simd::default_arch>
void swiglu(tensor_view<const float, 2> gate, tensor_view<const float, 2> up, tensor_view<float, 2> out, Arch = {}) {
  detail::check_gated("swiglu", gate, up, out);
  const index_t n = gate.extent(0), d = gate.extent(1);
  detail::for_rows(n, d, [&](index_t t) { kernels::vec_swiglu(d, gate.row(t), up.row(t), out.row(t), Arch{}); });
}

}  // namespace ops
}  // namespace v0
}  // namespace tessera
