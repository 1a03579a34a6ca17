// tessera/kernels/activation.hpp: contiguous activation kernels on (n, pointers).
//
//   vec_<f>(n, x, out)              out = f(x)   for f in exp, tanh, erf, sigmoid, silu, softplus,
//                                                gelu, gelu_tanh, quick_gelu, relu
//   vec_swiglu(n, gate, up, out)     out = silu(gate) * up
//   vec_geglu(n, gate, up, out)      out = gelu(gate) * up
//   vec_geglu_tanh(n, gate, up, out) out = gelu_tanh(gate) * up
// The functions are those of simd/math.hpp (formulas and measured errors there and in
// docs/kernels.md). out may alias x (or gate / up). Arch last, scalar overload = plain loop.
#pragma once

#include <tessera/config.hpp>
#include <tessera/kernels/elementwise.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/math.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

// One scalar reference loop and one vector template per function.
#define TESSERA_DETAIL_UNARY_KERNEL(name)                                                          \
  inline void vec_##name(index_t n, const float* x, float* out, simd::scalar) noexcept {           \
    for (index_t i = 0; i < n; ++i) out[i] = simd::name(x[i]);                                     \
  }                                                                                                \
  template <simd::arch_tag Arch = simd::default_arch>                                              \
  void vec_##name(index_t n, const float* x, float* out, Arch = {}) noexcept {                     \
    if constexpr (simd::is_scalar_v<Arch>) vec_##name(n, x, out, simd::scalar{});                  \
    else detail::map1<Arch>(n, x, out, [](const simd::fbatch<Arch>& v) { return simd::name<Arch>(v); }); \
  }

TESSERA_DETAIL_UNARY_KERNEL(exp)
TESSERA_DETAIL_UNARY_KERNEL(tanh)
TESSERA_DETAIL_UNARY_KERNEL(erf)
TESSERA_DETAIL_UNARY_KERNEL(sigmoid)
TESSERA_DETAIL_UNARY_KERNEL(silu)
TESSERA_DETAIL_UNARY_KERNEL(softplus)
TESSERA_DETAIL_UNARY_KERNEL(gelu)
TESSERA_DETAIL_UNARY_KERNEL(gelu_tanh)
TESSERA_DETAIL_UNARY_KERNEL(quick_gelu)
TESSERA_DETAIL_UNARY_KERNEL(relu)

#undef TESSERA_DETAIL_UNARY_KERNEL

// Gated forms: out = f(gate) * up.
#define TESSERA_DETAIL_GATED_KERNEL(name, fn)                                                      \
  inline void vec_##name(index_t n, const float* gate, const float* up, float* out, simd::scalar) noexcept { \
    for (index_t i = 0; i < n; ++i) out[i] = simd::fn(gate[i]) * up[i];                            \
  }                                                                                                \
  template <simd::arch_tag Arch = simd::default_arch>                                              \
  void vec_##name(index_t n, const float* gate, const float* up, float* out, Arch = {}) noexcept { \
    if constexpr (simd::is_scalar_v<Arch>) vec_##name(n, gate, up, out, simd::scalar{});           \
    else                                                                                           \
      detail::map2<Arch>(n, gate, up, out, [](const simd::fbatch<Arch>& g, const simd::fbatch<Arch>& u) { \
        return simd::fn<Arch>(g) * u;                                                              \
      });                                                                                          \
  }

TESSERA_DETAIL_GATED_KERNEL(swiglu, silu)
TESSERA_DETAIL_GATED_KERNEL(geglu, gelu)
TESSERA_DETAIL_GATED_KERNEL(geglu_tanh, gelu_tanh)
TESSERA_DETAIL_GATED_KERNEL(reglu, relu)
TESSERA_DETAIL_GATED_KERNEL(quick_geglu, quick_gelu)

#undef TESSERA_DETAIL_GATED_KERNEL

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
