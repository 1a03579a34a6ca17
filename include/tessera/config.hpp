// tessera/config.hpp: version, the ABI namespace and the few portability macros.
#pragma once

#include <cstddef>
#include <cstdint>

#define TESSERA_VERSION_MAJOR 0
#define TESSERA_VERSION_MINOR 1
#define TESSERA_VERSION_PATCH 0

#if defined(__GNUC__) || defined(__clang__)
#define TESSERA_RESTRICT __restrict__
#define TESSERA_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define TESSERA_RESTRICT
#define TESSERA_ALWAYS_INLINE inline
#endif

namespace tessera {
inline namespace v0 {

/// Signed index type for every extent, stride and loop counter.
using index_t = std::ptrdiff_t;

/// Alignment of every buffer tessera allocates (one cache line, one AVX-512 register).
inline constexpr std::size_t buffer_alignment = 64;

}  // namespace v0
}  // namespace tessera
