// tessera/kernels/elementwise.hpp: contiguous elementwise leaf kernels on (n, pointers).
//
//   vec_add(n, a, b, out)        out = a + b
//   vec_mul(n, a, b, out)        out = a * b
//   vec_scale(n, x, s, out)      out = s * x
//   vec_axpy(n, s, x, acc)       acc += s * x
//   vec_add_scalar(n, x, s, out) out = x + s
// out may alias any input (each element is read before it is written). Every kernel is a template
// on Arch (last argument, defaults to simd::default_arch) next to a simd::scalar overload that is
// the plain loop. No allocation, no threads: ops/ split rows over threads and call these.
// A tail of n % lanes elements runs through the same vector code (simd::load_partial).
#pragma once

#include <tessera/config.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

namespace detail {

/// out[i] = f(x[i]) with fv on vectors (a tail through a partial vector).
template <class Arch, class FV>
TESSERA_ALWAYS_INLINE void map1(index_t n, const float* x, float* out, FV&& fv) noexcept {
  using batch = simd::fbatch<Arch>;
  constexpr index_t L = simd::lanes_v<Arch>;
  index_t i = 0;
  for (; i + L <= n; i += L) fv(batch::load_unaligned(x + i)).store_unaligned(out + i);
  if (i < n) simd::store_partial<Arch>(out + i, fv(simd::load_partial<Arch>(x + i, n - i)), n - i);
}

/// out[i] = f(a[i], b[i]) with fv on vectors.
template <class Arch, class FV>
TESSERA_ALWAYS_INLINE void map2(index_t n, const float* a, const float* b, float* out, FV&& fv) noexcept {
  using batch = simd::fbatch<Arch>;
  constexpr index_t L = simd::lanes_v<Arch>;
  index_t i = 0;
  for (; i + L <= n; i += L) fv(batch::load_unaligned(a + i), batch::load_unaligned(b + i)).store_unaligned(out + i);
  if (i < n)
    simd::store_partial<Arch>(out + i, fv(simd::load_partial<Arch>(a + i, n - i), simd::load_partial<Arch>(b + i, n - i)),
                              n - i);
}

}  // namespace detail

// ---- out = a + b ----------------------------------------------------------------------------
inline void vec_add(index_t n, const float* a, const float* b, float* out, simd::scalar) noexcept {
  for (index_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}
template <simd::arch_tag Arch = simd::default_arch>
void vec_add(index_t n, const float* a, const float* b, float* out, Arch = {}) noexcept {
  if constexpr (simd::is_scalar_v<Arch>) vec_add(n, a, b, out, simd::scalar{});
  else detail::map2<Arch>(n, a, b, out, [](auto x, auto y) { return x + y; });
}

// ---- out = a * b ----------------------------------------------------------------------------
inline void vec_mul(index_t n, const float* a, const float* b, float* out, simd::scalar) noexcept {
  for (index_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}
template <simd::arch_tag Arch = simd::default_arch>
void vec_mul(index_t n, const float* a, const float* b, float* out, Arch = {}) noexcept {
  if constexpr (simd::is_scalar_v<Arch>) vec_mul(n, a, b, out, simd::scalar{});
  else detail::map2<Arch>(n, a, b, out, [](auto x, auto y) { return x * y; });
}

// ---- out = s * x ----------------------------------------------------------------------------
inline void vec_scale(index_t n, const float* x, float s, float* out, simd::scalar) noexcept {
  for (index_t i = 0; i < n; ++i) out[i] = s * x[i];
}
template <simd::arch_tag Arch = simd::default_arch>
void vec_scale(index_t n, const float* x, float s, float* out, Arch = {}) noexcept {
  if constexpr (simd::is_scalar_v<Arch>) vec_scale(n, x, s, out, simd::scalar{});
  else detail::map1<Arch>(n, x, out, [s](auto v) { return decltype(v)(s) * v; });
}

// ---- out = x + s ----------------------------------------------------------------------------
inline void vec_add_scalar(index_t n, const float* x, float s, float* out, simd::scalar) noexcept {
  for (index_t i = 0; i < n; ++i) out[i] = x[i] + s;
}
template <simd::arch_tag Arch = simd::default_arch>
void vec_add_scalar(index_t n, const float* x, float s, float* out, Arch = {}) noexcept {
  if constexpr (simd::is_scalar_v<Arch>) vec_add_scalar(n, x, s, out, simd::scalar{});
  else detail::map1<Arch>(n, x, out, [s](auto v) { return v + decltype(v)(s); });
}

// ---- acc += s * x ---------------------------------------------------------------------------
inline void vec_axpy(index_t n, float s, const float* x, float* acc, simd::scalar) noexcept {
  for (index_t i = 0; i < n; ++i) acc[i] += s * x[i];
}
template <simd::arch_tag Arch = simd::default_arch>
void vec_axpy(index_t n, float s, const float* x, float* acc, Arch = {}) noexcept {
  if constexpr (simd::is_scalar_v<Arch>) vec_axpy(n, s, x, acc, simd::scalar{});
  else detail::map2<Arch>(n, x, acc, acc, [s](auto v, auto a) { return xsimd::fma(decltype(v)(s), v, a); });
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
