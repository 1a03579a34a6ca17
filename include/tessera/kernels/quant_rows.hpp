// tessera/kernels/quant_rows.hpp: four weight rows against one activation row at once.
//
//   w:   4 rows of n_blocks weight blocks, row r at w + r · ldw (blocks)
//   a:   n_blocks activation blocks (activation_block_t<B>)
//   out: out[r] = vec_dot(w + r · ldw, a, n_blocks), r < 4
//
// For the 32-element formats one row at a time spends as much on each block's scale (an f16
// conversion, a multiply, a broadcast, an int → float conversion and an FMA per block) as on its
// integer dot. Four rows share the work per activation block: its quants are loaded once, the four
// rows' integer sums are reduced together (vphaddw / vphaddd) into one vector of 4 row sums, the
// four f16 scales are converted by one vcvtph2ps, and one FMA applies them. q4_0 on Zen 3, hot in
// L2: 1.67 → 1.39 ns per block (docs/quant.md). The unsigned quants' i16 pair sums stay below
// 2 · 31 · 127 = 7874, so four of them add up in 16 bits before the 32-bit widening; q8_0's (up to
// 32512) are widened first. K-quants, whose per-block work is spread over 256 elements, run one
// row at a time (vec_dot).
#pragma once

#include <type_traits>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <tessera/config.hpp>
#include <tessera/core/blocks.hpp>
#include <tessera/kernels/quant_dot.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

namespace detail {
#if defined(__AVX2__)

/// The four rows' f16 fields (d or m) of block b as floats.
template <class B, class Field>
TESSERA_ALWAYS_INLINE __m128 halves_4(const B* w, index_t ldw, index_t b, Field field) noexcept {
  return _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(field(w[b]).bits), static_cast<short>(field(w[ldw + b]).bits),
                                     static_cast<short>(field(w[2 * ldw + b]).bits),
                                     static_cast<short>(field(w[3 * ldw + b]).bits), 0, 0, 0, 0));
}

/// The unsigned quants (0 .. 31) of a 32-element block, in element order.
TESSERA_ALWAYS_INLINE __m256i unsigned_quants(const block_q4_0& b) noexcept { return nibbles_32(b.qs); }
TESSERA_ALWAYS_INLINE __m256i unsigned_quants(const block_q4_1& b) noexcept { return nibbles_32(b.qs); }
TESSERA_ALWAYS_INLINE __m256i unsigned_quants(const block_q5_0& b) noexcept {
  return _mm256_or_si256(nibbles_32(b.qs), fifth_bits_32(b.qh));
}
TESSERA_ALWAYS_INLINE __m256i unsigned_quants(const block_q5_1& b) noexcept {
  return _mm256_or_si256(nibbles_32(b.qs), fifth_bits_32(b.qh));
}

/// Offset of the unsigned quants (q = unsigned - offset) and whether the block has a min.
template <class B>
inline constexpr int quant_offset = std::is_same_v<B, block_q4_0> ? 8 : std::is_same_v<B, block_q5_0> ? 16 : 0;
template <class B>
inline constexpr bool has_min = std::is_same_v<B, block_q4_1> || std::is_same_v<B, block_q5_1>;

/// 4 rows of q4_0 / q4_1 / q5_0 / q5_1 against one q8_sum row.
template <class B>
void vec_dot_rows4_avx2(const B* w, index_t ldw, const block_q8_sum* a, index_t n_blocks, float* out) noexcept {
  __m128 acc = _mm_setzero_ps(), acc_m = _mm_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (index_t b = 0; b < n_blocks; ++b) {
    const __m256i av = load_256(a[b].qs);
    const __m256i p0 = _mm256_maddubs_epi16(unsigned_quants(w[b]), av);
    const __m256i p1 = _mm256_maddubs_epi16(unsigned_quants(w[ldw + b]), av);
    const __m256i p2 = _mm256_maddubs_epi16(unsigned_quants(w[2 * ldw + b]), av);
    const __m256i p3 = _mm256_maddubs_epi16(unsigned_quants(w[3 * ldw + b]), av);
    // [r0 r0 r1 r1 r2 r2 r3 r3 | the same for the upper 16 elements], each a sum of 4 i16 pair sums
    const __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(p0, p1), _mm256_hadd_epi16(p2, p3));
    const __m256i s = _mm256_madd_epi16(h, ones);
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    if constexpr (quant_offset<B> != 0) r = _mm_sub_epi32(r, _mm_set1_epi32(quant_offset<B> * a[b].sum));
    const __m128 dw = halves_4(w, ldw, b, [](const B& x) { return x.d; });
    acc = _mm_fmadd_ps(_mm_mul_ps(dw, _mm_set1_ps(a[b].d)), _mm_cvtepi32_ps(r), acc);
    if constexpr (has_min<B>) {
      const __m128 m = halves_4(w, ldw, b, [](const B& x) { return x.m; });
      acc_m = _mm_fmadd_ps(m, _mm_set1_ps(a[b].d * static_cast<float>(a[b].sum)), acc_m);
    }
  }
  _mm_storeu_ps(out, has_min<B> ? _mm_add_ps(acc, acc_m) : acc);
}

/// 4 rows of q8_0 against one q8_sum row (signed weights: |w| · sign(a, w), widened before adding).
inline void vec_dot_rows4_avx2(const block_q8_0* w, index_t ldw, const block_q8_sum* a, index_t n_blocks,
                               float* out) noexcept {
  __m128 acc = _mm_setzero_ps();
  auto dot = [](const block_q8_0& x, __m256i av) {
    const __m256i wq = load_256(x.qs);
    return dot_u8i8(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(av, wq));
  };
  for (index_t b = 0; b < n_blocks; ++b) {
    const __m256i av = load_256(a[b].qs);
    const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(dot(w[b], av), dot(w[ldw + b], av)),
                                        _mm256_hadd_epi32(dot(w[2 * ldw + b], av), dot(w[3 * ldw + b], av)));
    const __m128i r = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    const __m128 dw = halves_4(w, ldw, b, [](const block_q8_0& x) { return x.d; });
    acc = _mm_fmadd_ps(_mm_mul_ps(dw, _mm_set1_ps(a[b].d)), _mm_cvtepi32_ps(r), acc);
  }
  _mm_storeu_ps(out, acc);
}

#endif
}  // namespace detail

/// out[r] = vec_dot(w + r · ldw, a, n_blocks, Arch) for r < 4 (the float sums in another order).
template <quant_block B, class Arch>
void vec_dot_rows4(const B* w, index_t ldw, const activation_block_t<B>* a, index_t n_blocks, float* out,
                   Arch) noexcept {
#if defined(__AVX2__)
  if constexpr (detail::quant_x86<Arch>() && B::block_size == 32) {
    detail::vec_dot_rows4_avx2(w, ldw, a, n_blocks, out);
    return;
  }
#endif
  for (int r = 0; r < 4; ++r) out[r] = vec_dot(w + r * ldw, a, n_blocks, Arch{});
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
