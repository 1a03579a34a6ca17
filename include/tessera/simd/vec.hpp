// tessera/simd/vec.hpp: the few vector helpers every kernel shares.
//
// Loads and stores with tails (a partial vector goes through a small aligned buffer, so a tail is
// computed by the same vector code as the body and gives the same rounding), horizontal
// reductions, loading f16 / bf16 storage widened to f32 in registers, and the arch_tag concept
// that keeps Arch overloads from swallowing other arguments.
#pragma once

#include <algorithm>
#include <cstddef>
#include <limits>
#include <type_traits>

#if defined(__AVX512F__) || defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include <xsimd/xsimd.hpp>

#include <tessera/config.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace simd {

/// An architecture tag: simd::scalar or an xsimd arch (a type with static supported()).
template <class A>
concept arch_tag = is_scalar_v<A> || requires {
  { A::supported() } -> std::convertible_to<bool>;
  { A::alignment() } -> std::convertible_to<std::size_t>;
};

/// The float vector of Arch.
template <class Arch>
using fbatch = xsimd::batch<float, Arch>;

/// Floats per vector of Arch as an index_t (1 for scalar).
template <class Arch>
inline constexpr index_t lanes_v = static_cast<index_t>(float_lanes<Arch>());

/// Loads n < lanes floats from p; the missing lanes hold `fill`.
template <class Arch>
TESSERA_ALWAYS_INLINE fbatch<Arch> load_partial(const float* p, index_t n, float fill = 0.f) noexcept {
  alignas(64) float tmp[fbatch<Arch>::size];
  for (std::size_t i = 0; i < fbatch<Arch>::size; ++i) tmp[i] = static_cast<index_t>(i) < n ? p[i] : fill;
  return fbatch<Arch>::load_aligned(tmp);
}

/// Stores the first n < lanes floats of v to p.
template <class Arch>
TESSERA_ALWAYS_INLINE void store_partial(float* p, const fbatch<Arch>& v, index_t n) noexcept {
  alignas(64) float tmp[fbatch<Arch>::size];
  v.store_aligned(tmp);
  for (index_t i = 0; i < n; ++i) p[i] = tmp[i];
}

/// Sum of the lanes.
template <class Arch>
TESSERA_ALWAYS_INLINE float reduce_add(const fbatch<Arch>& v) noexcept {
  return xsimd::hadd(v);
}

/// Maximum of the lanes.
template <class Arch>
TESSERA_ALWAYS_INLINE float reduce_max(const fbatch<Arch>& v) noexcept {
  alignas(64) float tmp[fbatch<Arch>::size];
  v.store_aligned(tmp);
  float m = tmp[0];
  for (std::size_t i = 1; i < fbatch<Arch>::size; ++i) m = std::max(m, tmp[i]);
  return m;
}

/// lanes consecutive values of storage type W at p, widened to f32 (f16 by F16C / AVX-512, bf16
/// by a 16-bit shift, which is exact; a generic buffer elsewhere).
template <class Arch, class W>
TESSERA_ALWAYS_INLINE fbatch<Arch> load_widened(const W* p) noexcept {
  using batch = fbatch<Arch>;
  using U = std::remove_const_t<W>;
  if constexpr (std::is_same_v<U, float>) {
    return batch::load_unaligned(p);
  } else {
#if defined(__AVX512F__)
    if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
      if constexpr (std::is_same_v<U, f16>) return batch(_mm512_cvtph_ps(h));
      else return batch(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
    }
#endif
#if defined(__AVX2__) && defined(__F16C__)
    if constexpr (std::is_base_of_v<xsimd::avx2, Arch> && batch::size == 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      if constexpr (std::is_same_v<U, f16>) return batch(_mm256_cvtph_ps(h));
      else return batch(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
#endif
    alignas(64) float tmp[batch::size];
    for (std::size_t i = 0; i < batch::size; ++i) tmp[i] = to_float(p[i]);
    return batch::load_aligned(tmp);
  }
}

/// Loads n < lanes values of W widened to f32; the missing lanes hold 0.
template <class Arch, class W>
TESSERA_ALWAYS_INLINE fbatch<Arch> load_widened_partial(const W* p, index_t n) noexcept {
  alignas(64) float tmp[fbatch<Arch>::size];
  for (std::size_t i = 0; i < fbatch<Arch>::size; ++i)
    tmp[i] = static_cast<index_t>(i) < n ? to_float(p[i]) : 0.f;
  return fbatch<Arch>::load_aligned(tmp);
}

/// xsimd::haddp returns the W row sums, but Debian's xsimd 8.1 permutes them on AVX-512 (lanes
/// 2-5 and 10-13 come out swapped in pairs). Rather than trust the order, learn it once:
/// haddp_lane<Arch>()[t] is the lane of haddp's result that holds the sum of row t.
template <class Arch>
inline const index_t* haddp_lane() noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  struct table {
    index_t lane[W];
    table() noexcept {
      batch rows[W];
      for (index_t t = 0; t < W; ++t) rows[t] = batch(static_cast<float>(t));
      alignas(64) float sums[W];
      xsimd::haddp(rows).store_aligned(sums);
      for (index_t i = 0; i < W; ++i) lane[static_cast<index_t>(sums[i]) / W] = i;
    }
  };
  static const table t;
  return t.lane;
}

#if defined(__AVX2__)
/// Transposes the 8 x 8 block held in r (row i in r[i]) in place, in registers.
TESSERA_ALWAYS_INLINE void transpose8x8(__m256 r[8]) noexcept {
  __m256 t[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 2; ++g) {  // rows 4g..4g+3: u[4g + q] = column q (+4 in the high lane)
    const __m256 t0 = t[4 * g], t1 = t[4 * g + 1], t2 = t[4 * g + 2], t3 = t[4 * g + 3];
    r[4 * g + 0] = _mm256_shuffle_ps(t0, t2, 0x44);
    r[4 * g + 1] = _mm256_shuffle_ps(t0, t2, 0xee);
    r[4 * g + 2] = _mm256_shuffle_ps(t1, t3, 0x44);
    r[4 * g + 3] = _mm256_shuffle_ps(t1, t3, 0xee);
  }
  for (int q = 0; q < 4; ++q) {
    t[q] = _mm256_permute2f128_ps(r[q], r[q + 4], 0x20);
    t[q + 4] = _mm256_permute2f128_ps(r[q], r[q + 4], 0x31);
  }
  for (int i = 0; i < 8; ++i) r[i] = t[i];
}
#endif

#if defined(__AVX512F__)
/// Transposes the 16 x 16 block held in r (row i in r[i]) in place, in registers.
TESSERA_ALWAYS_INLINE void transpose16x16(__m512 r[16]) noexcept {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 4; ++g) {  // rows 4g..4g+3: s[4g + q] = column q (+4 per 128-bit lane)
    const __m512d t0 = _mm512_castps_pd(t[4 * g]), t1 = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * g + 2]), t3 = _mm512_castps_pd(t[4 * g + 3]);
    r[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  for (int q = 0; q < 4; ++q) {
    const __m512 T0 = _mm512_shuffle_f32x4(r[q], r[q + 4], 0x88);
    const __m512 T1 = _mm512_shuffle_f32x4(r[q], r[q + 4], 0xdd);
    const __m512 T2 = _mm512_shuffle_f32x4(r[q + 8], r[q + 12], 0x88);
    const __m512 T3 = _mm512_shuffle_f32x4(r[q + 8], r[q + 12], 0xdd);
    t[q] = _mm512_shuffle_f32x4(T0, T2, 0x88);
    t[q + 8] = _mm512_shuffle_f32x4(T0, T2, 0xdd);
    t[q + 4] = _mm512_shuffle_f32x4(T1, T3, 0x88);
    t[q + 12] = _mm512_shuffle_f32x4(T1, T3, 0xdd);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}
#endif

}  // namespace simd
}  // namespace v0
}  // namespace tessera
