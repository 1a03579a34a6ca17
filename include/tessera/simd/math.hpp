// tessera/simd/math.hpp: transcendental and activation functions, on floats and on vectors.
//
// Every function has a float overload (the reference: std:: in float, written the readable way)
// and an overload on xsimd::batch<float, Arch>. The vector forms are formulated so that they stay
// accurate in *relative* terms over the whole float range (no 1 + tanh cancellation):
//   exp        our own: round(x·log2 e) range reduction (Cody-Waite, 2 constants), degree-6
//              polynomial (Cephes expf), 2^n applied in two halves so subnormal results are right
//   tanh       our own: odd polynomial for |x| < 0.625 (Cephes tanhf), 1 - 2 / (exp(2|x|) + 1) above
//   erf        xsimd::erf (accurate to a few ulp, see docs/kernels.md)
//   sigmoid    1 / (1 + e^-x); for x < 0 as e^x / (1 + e^x) (relative accuracy down to subnormals)
//   silu       x · sigmoid(x), as x / (1 + e^-x) or x·e^x / (1 + e^x)
//   softplus   x > 20 ? x : log1p(exp(x))                      (torch's softplus, beta 1, threshold 20)
//   gelu       0.5 · x · erfc(-x / √2)                         (= 0.5 x (1 + erf(x / √2)), nn.GELU())
//   gelu_tanh  x · sigmoid(2u), u = √(2/π) (x + 0.044715 x³)   (= 0.5 x (1 + tanh u), "gelu_new")
//   quick_gelu x · sigmoid(1.702 x)
// (the x · sigmoid(z) shapes share x_sigmoid(x, z)).
//   relu       max(x, 0)
// tests/simd/test_math.cpp measures the maximum error of each against double precision over a
// sweep of the float range and asserts the bounds that docs/kernels.md reports.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include <xsimd/xsimd.hpp>

#include <tessera/config.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace simd {

namespace detail {
inline constexpr float sqrt1_2 = 0.70710678118654752440f;     // 1/√2
inline constexpr float sqrt2_over_pi = 0.79788456080286535588f;  // √(2/π)
inline constexpr float gelu_tanh_c = 0.044715f;
inline constexpr float quick_gelu_c = 1.702f;
inline constexpr float softplus_threshold = 20.f;
}  // namespace detail

// ---- float reference forms --------------------------------------------------------------------

inline float exp(float x) noexcept { return std::exp(x); }
inline float tanh(float x) noexcept { return std::tanh(x); }
inline float erf(float x) noexcept { return std::erf(x); }
inline float sigmoid(float x) noexcept {
  // e^x / (1 + e^x) for x < 0, so that results down to the subnormals keep their relative accuracy
  if (x >= 0.f) return 1.f / (1.f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.f + e);
}
inline float silu(float x) noexcept {
  if (x >= 0.f) return x / (1.f + std::exp(-x));
  const float e = std::exp(x);
  return x * e / (1.f + e);
}
inline float softplus(float x) noexcept { return x > detail::softplus_threshold ? x : std::log1p(std::exp(x)); }
inline float gelu(float x) noexcept { return 0.5f * x * std::erfc(-x * detail::sqrt1_2); }
/// x · sigmoid(z), the shape of silu, quick_gelu and gelu_tanh.
inline float x_sigmoid(float x, float z) noexcept {
  if (z >= 0.f) return x / (1.f + std::exp(-z));
  const float e = std::exp(z);
  return x * e / (1.f + e);
}
inline float gelu_tanh(float x) noexcept {
  const float u = detail::sqrt2_over_pi * (x + detail::gelu_tanh_c * x * x * x);
  return x_sigmoid(x, 2.f * u);
}
inline float quick_gelu(float x) noexcept { return x_sigmoid(x, detail::quick_gelu_c * x); }
inline float relu(float x) noexcept { return x > 0.f ? x : 0.f; }

// ---- vector forms ---------------------------------------------------------------------------

/// e^x: |error| <= 1 ulp-ish over the float range (measured: docs/kernels.md); exp(-inf) = 0,
/// exp(x > 88.72) = inf, NaN stays NaN.
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> exp(const xsimd::batch<float, Arch>& x) noexcept {
  using batch = xsimd::batch<float, Arch>;
  using ibatch = xsimd::batch<std::int32_t, Arch>;
  const batch xc = xsimd::min(xsimd::max(x, batch(-104.f)), batch(89.f));
  const batch n = xsimd::nearbyint(xc * batch(1.44269504088896341f));
  batch r = xsimd::fnma(n, batch(0.693359375f), xc);       // ln 2, high part (exact product)
  r = xsimd::fnma(n, batch(-2.12194440e-4f), r);            // ln 2, low part
  batch p(1.9875691500e-4f);
  p = xsimd::fma(p, r, batch(1.3981999507e-3f));
  p = xsimd::fma(p, r, batch(8.3334519073e-3f));
  p = xsimd::fma(p, r, batch(4.1665795894e-2f));
  p = xsimd::fma(p, r, batch(1.6666665459e-1f));
  p = xsimd::fma(p, r, batch(5.0000001201e-1f));
  const batch r2 = r * r;
  batch y = xsimd::fma(p, r2, r) + batch(1.f);
  // 2^n = 2^n1 · 2^n2 with both halves inside the normal exponent range (n in [-150, 129]).
  const batch n1f = xsimd::floor(n * batch(0.5f));
  const ibatch n1 = xsimd::to_int(n1f);
  const ibatch n2 = xsimd::to_int(n - n1f);
  const batch s1 = xsimd::bitwise_cast<batch>((n1 + ibatch(127)) << 23);
  const batch s2 = xsimd::bitwise_cast<batch>((n2 + ibatch(127)) << 23);
  y = y * s1 * s2;
  y = xsimd::select(x > batch(88.72283935546875f), batch(std::numeric_limits<float>::infinity()), y);
  y = xsimd::select(x < batch(-103.972084045410f), batch(0.f), y);
  return xsimd::select(xsimd::isnan(x), x, y);
}

/// tanh(x), odd, accurate in relative terms near 0.
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> tanh(const xsimd::batch<float, Arch>& x) noexcept {
  using batch = xsimd::batch<float, Arch>;
  const batch a = xsimd::abs(x);
  // small |x|: x + x·z·P(z), z = x²
  const batch z = x * x;
  batch p(-5.70498872745e-3f);
  p = xsimd::fma(p, z, batch(2.06390887954e-2f));
  p = xsimd::fma(p, z, batch(-5.37397155531e-2f));
  p = xsimd::fma(p, z, batch(1.33314422036e-1f));
  p = xsimd::fma(p, z, batch(-3.33332819422e-1f));
  const batch small = xsimd::fma(p * z, x, x);
  // large |x|: 1 - 2 / (e^{2|x|} + 1), sign restored
  const batch e = simd::exp(xsimd::min(a + a, batch(88.f)));
  const batch large = xsimd::copysign(batch(1.f) - batch(2.f) / (e + batch(1.f)), x);
  return xsimd::select(a < batch(0.625f), small, xsimd::select(xsimd::isnan(x), x, large));
}

/// erf(x) (xsimd's implementation).
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> erf(const xsimd::batch<float, Arch>& x) noexcept {
  return xsimd::erf(x);
}

/// x · sigmoid(z) = x / (1 + e^-z), computed as x·e / (1 + e) with e = e^-|z| for z < 0 so that
/// tiny results keep their relative accuracy.
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> x_sigmoid(const xsimd::batch<float, Arch>& x,
                                                         const xsimd::batch<float, Arch>& z) noexcept {
  using batch = xsimd::batch<float, Arch>;
  const batch e = simd::exp(-xsimd::abs(z));
  return xsimd::select(z >= batch(0.f), x, x * e) / (batch(1.f) + e);
}

/// 1 / (1 + e^-x).
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> sigmoid(const xsimd::batch<float, Arch>& x) noexcept {
  return simd::x_sigmoid(xsimd::batch<float, Arch>(1.f), x);
}

/// x · sigmoid(x).
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> silu(const xsimd::batch<float, Arch>& x) noexcept {
  return simd::x_sigmoid(x, x);
}

/// log(1 + e^x), x above 20 returned as is (torch).
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> softplus(const xsimd::batch<float, Arch>& x) noexcept {
  using batch = xsimd::batch<float, Arch>;
  return xsimd::select(x > batch(detail::softplus_threshold), x, xsimd::log1p(simd::exp(x)));
}

/// Exact GELU: 0.5 x (1 + erf(x / √2)), computed as 0.5 x erfc(-x / √2).
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> gelu(const xsimd::batch<float, Arch>& x) noexcept {
  using batch = xsimd::batch<float, Arch>;
  return batch(0.5f) * x * xsimd::erfc(-x * batch(detail::sqrt1_2));
}

/// Tanh-approximated GELU, computed as x · sigmoid(2u).
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> gelu_tanh(const xsimd::batch<float, Arch>& x) noexcept {
  using batch = xsimd::batch<float, Arch>;
  const batch u = batch(detail::sqrt2_over_pi) * xsimd::fma(batch(detail::gelu_tanh_c) * x, x * x, x);
  return simd::x_sigmoid(x, u + u);
}

/// x · sigmoid(1.702 x).
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> quick_gelu(const xsimd::batch<float, Arch>& x) noexcept {
  using batch = xsimd::batch<float, Arch>;
  return simd::x_sigmoid(x, batch(detail::quick_gelu_c) * x);
}

/// max(x, 0).
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> relu(const xsimd::batch<float, Arch>& x) noexcept {
  return xsimd::max(x, xsimd::batch<float, Arch>(0.f));
}

}  // namespace simd
}  // namespace v0
}  // namespace tessera
