// tessera/kernels/reduce.hpp: contiguous reductions on (n, pointers).
//
//   sum(n, x)            Σ x
//   sum_sq(n, x)         Σ x²                (rms_norm)
//   max(n, x)            max x               (-inf for n = 0)
//   dot(n, a, b)         Σ a·b
//   exp_sum(n, x, m, out) out = e^(x - m), returns Σ out   (softmax; out may alias x)
//   sum_sq_dev(n, x, mu)  Σ (x - mu)²        (layer_norm variance)
//   sum_exp(n, x, m)      Σ e^(x - m)        (log_softmax)
// Vector forms keep 4 independent accumulators (latency hiding) and sum them at the end, so their
// rounding differs from the sequential scalar loop by a few ulp; the conformance harness checks
// both against double accumulation. Arch last, scalar overload = plain loop.
#pragma once

#include <algorithm>
#include <limits>

#include <tessera/config.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/math.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

namespace detail {

/// Σ f(a[i], b[i]) over i with 4 vector accumulators; f maps vectors, tail lanes contribute
/// f(pad_a, pad_b), which must be 0.
template <class Arch, class FV>
TESSERA_ALWAYS_INLINE float reduce_sum2(index_t n, const float* a, const float* b, float pad_a, float pad_b,
                                        FV&& fv) noexcept {
  using batch = simd::fbatch<Arch>;
  constexpr index_t L = simd::lanes_v<Arch>;
  batch acc0(0.f), acc1(0.f), acc2(0.f), acc3(0.f);
  index_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    acc0 = fv(acc0, batch::load_unaligned(a + i), batch::load_unaligned(b + i));
    acc1 = fv(acc1, batch::load_unaligned(a + i + L), batch::load_unaligned(b + i + L));
    acc2 = fv(acc2, batch::load_unaligned(a + i + 2 * L), batch::load_unaligned(b + i + 2 * L));
    acc3 = fv(acc3, batch::load_unaligned(a + i + 3 * L), batch::load_unaligned(b + i + 3 * L));
  }
  for (; i + L <= n; i += L) acc0 = fv(acc0, batch::load_unaligned(a + i), batch::load_unaligned(b + i));
  if (i < n)
    acc1 = fv(acc1, simd::load_partial<Arch>(a + i, n - i, pad_a), simd::load_partial<Arch>(b + i, n - i, pad_b));
  return simd::reduce_add<Arch>((acc0 + acc1) + (acc2 + acc3));
}

}  // namespace detail

// ---- Σ x ------------------------------------------------------------------------------------
inline float sum(index_t n, const float* x, simd::scalar) noexcept {
  float s = 0.f;
  for (index_t i = 0; i < n; ++i) s += x[i];
  return s;
}
template <simd::arch_tag Arch = simd::default_arch>
float sum(index_t n, const float* x, Arch = {}) noexcept {
  if constexpr (simd::is_scalar_v<Arch>) return sum(n, x, simd::scalar{});
  else return detail::reduce_sum2<Arch>(n, x, x, 0.f, 0.f, [](auto acc, auto v, auto) { return acc + v; });
}

// ---- Σ x² -----------------------------------------------------------------------------------
inline float sum_sq(index_t n, const float* x, simd::scalar) noexcept {
  float s = 0.f;
  for (index_t i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}
template <simd::arch_tag Arch = simd::default_arch>
float sum_sq(index_t n, const float* x, Arch = {}) noexcept {
  if constexpr (simd::is_scalar_v<Arch>) return sum_sq(n, x, simd::scalar{});
  else return detail::reduce_sum2<Arch>(n, x, x, 0.f, 0.f, [](auto acc, auto v, auto) { return xsimd::fma(v, v, acc); });
}

// ---- Σ (x - mu)² ----------------------------------------------------------------------------
inline float sum_sq_dev(index_t n, const float* x, float mu, simd::scalar) noexcept {
  float s = 0.f;
  for (index_t i = 0; i < n; ++i) s += (x[i] - mu) * (x[i] - mu);
  return s;
}
template <simd::arch_tag Arch = simd::default_arch>
float sum_sq_dev(index_t n, const float* x, float mu, Arch = {}) noexcept {
  if constexpr (simd::is_scalar_v<Arch>) return sum_sq_dev(n, x, mu, simd::scalar{});
  else
    return detail::reduce_sum2<Arch>(n, x, x, mu, mu, [mu](auto acc, auto v, auto) {
      const auto c = v - decltype(v)(mu);
      return xsimd::fma(c, c, acc);
    });
}

// ---- Σ a·b ----------------------------------------------------------------------------------
inline float dot(index_t n, const float* a, const float* b, simd::scalar) noexcept {
  float s = 0.f;
  for (index_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
template <simd::arch_tag Arch = simd::default_arch>
float dot(index_t n, const float* a, const float* b, Arch = {}) noexcept {
  if constexpr (simd::is_scalar_v<Arch>) return dot(n, a, b, simd::scalar{});
  else return detail::reduce_sum2<Arch>(n, a, b, 0.f, 0.f, [](auto acc, auto x, auto y) { return xsimd::fma(x, y, acc); });
}

// ---- max x ----------------------------------------------------------------------------------
inline float max(index_t n, const float* x, simd::scalar) noexcept {
  float m = -std::numeric_limits<float>::infinity();
  for (index_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}
template <simd::arch_tag Arch = simd::default_arch>
float max(index_t n, const float* x, Arch = {}) noexcept {
  if constexpr (simd::is_scalar_v<Arch>) {
    return max(n, x, simd::scalar{});
  } else {
    using batch = simd::fbatch<Arch>;
    constexpr index_t L = simd::lanes_v<Arch>;
    constexpr float ninf = -std::numeric_limits<float>::infinity();
    batch m0(ninf), m1(ninf);
    index_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
      m0 = xsimd::max(m0, batch::load_unaligned(x + i));
      m1 = xsimd::max(m1, batch::load_unaligned(x + i + L));
    }
    for (; i + L <= n; i += L) m0 = xsimd::max(m0, batch::load_unaligned(x + i));
    if (i < n) m1 = xsimd::max(m1, simd::load_partial<Arch>(x + i, n - i, ninf));
    return simd::reduce_max<Arch>(xsimd::max(m0, m1));
  }
}

// ---- Σ e^(x - m) (nothing stored) ----------------------------------------------------------------
inline float sum_exp(index_t n, const float* x, float m, simd::scalar) noexcept {
  float s = 0.f;
  for (index_t i = 0; i < n; ++i) s += simd::exp(x[i] - m);
  return s;
}
template <simd::arch_tag Arch = simd::default_arch>
float sum_exp(index_t n, const float* x, float m, Arch = {}) noexcept {
  if constexpr (simd::is_scalar_v<Arch>) return sum_exp(n, x, m, simd::scalar{});
  else
    return detail::reduce_sum2<Arch>(n, x, x, -std::numeric_limits<float>::infinity(), 0.f, [m](auto acc, auto v, auto) {
      return acc + simd::exp<Arch>(v - decltype(v)(m));
    });
}

// ---- out = e^(x - m), returns Σ out ------------------------------------------------------------
inline float exp_sum(index_t n, const float* x, float m, float* out, simd::scalar) noexcept {
  float s = 0.f;
  for (index_t i = 0; i < n; ++i) {
    out[i] = simd::exp(x[i] - m);
    s += out[i];
  }
  return s;
}
template <simd::arch_tag Arch = simd::default_arch>
float exp_sum(index_t n, const float* x, float m, float* out, Arch = {}) noexcept {
  if constexpr (simd::is_scalar_v<Arch>) {
    return exp_sum(n, x, m, out, simd::scalar{});
  } else {
    using batch = simd::fbatch<Arch>;
    constexpr index_t L = simd::lanes_v<Arch>;
    const batch mb(m);
    batch acc0(0.f), acc1(0.f);
    index_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
      const batch e0 = simd::exp<Arch>(batch::load_unaligned(x + i) - mb);
      const batch e1 = simd::exp<Arch>(batch::load_unaligned(x + i + L) - mb);
      e0.store_unaligned(out + i);
      e1.store_unaligned(out + i + L);
      acc0 += e0;
      acc1 += e1;
    }
    for (; i + L <= n; i += L) {
      const batch e = simd::exp<Arch>(batch::load_unaligned(x + i) - mb);
      e.store_unaligned(out + i);
      acc0 += e;
    }
    if (i < n) {
      const batch e = simd::exp<Arch>(simd::load_partial<Arch>(x + i, n - i, -std::numeric_limits<float>::infinity()) - mb);
      simd::store_partial<Arch>(out + i, e, n - i);
      acc1 += e;
    }
    return simd::reduce_add<Arch>(acc0 + acc1);
  }
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
