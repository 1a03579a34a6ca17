// tessera/simd/arch.hpp: architecture tags and the compile-time default.
//
// Architectures are types (the xsimd idea): every kernel is a function template whose last
// parameter is an Arch tag, with a non-template overload for simd::scalar that is the readable
// reference. The compiler flags decide default_arch (-march=native on an AVX-512 machine gives
// xsimd::avx512bw); defining TESSERA_ARCH to a tag name overrides it, e.g. -DTESSERA_ARCH=scalar.
#pragma once

#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include <tessera/config.hpp>

namespace tessera {
inline namespace v0 {
namespace simd {

/// Plain C++ loops, no vector types: the reference every vector kernel is tested against.
struct scalar {
  static constexpr const char* name() noexcept { return "scalar"; }
};

// Friendly names for the xsimd tags tessera targets.
using sse4 = xsimd::sse4_2;
using avx2 = xsimd::fma3<xsimd::avx2>;
using avx512 = xsimd::avx512bw;
#if XSIMD_WITH_NEON64
using neon = xsimd::neon64;
#else
using neon = xsimd::neon;
#endif

/// True for the scalar tag.
template <class Arch>
inline constexpr bool is_scalar_v = std::is_same_v<Arch, scalar>;

#if defined(TESSERA_ARCH)
using default_arch = TESSERA_ARCH;
#else
using default_arch = std::conditional_t<std::is_same_v<xsimd::default_arch, xsimd::unavailable>, scalar,
                                        xsimd::default_arch>;
#endif

namespace detail {
template <class Arch>
constexpr bool arch_enabled() noexcept {
  if constexpr (is_scalar_v<Arch>) return true;
  else return Arch::supported();
}
}  // namespace detail

static_assert(detail::arch_enabled<default_arch>(),
              "TESSERA_ARCH names an architecture the compiler flags do not enable");

/// Floats per vector register for Arch (1 for scalar).
template <class Arch>
constexpr std::size_t float_lanes() noexcept {
  if constexpr (is_scalar_v<Arch>) return 1;
  else return xsimd::batch<float, Arch>::size;
}

/// "avx512bw", "fma3+avx2", "scalar": names used in benchmark labels.
template <class Arch>
constexpr const char* arch_name() noexcept {
  return Arch::name();
}

}  // namespace simd
}  // namespace v0
}  // namespace tessera
