// tessera/kernels/quant_dequant.hpp: dequantize_row, blocks → f32 with SIMD, bit-identical to
// core/blocks.hpp's scalar dequantize.
//
//   w: n_blocks blocks of B; y: n_blocks · B::block_size floats
//
// The prefill path of quant_linear dequantizes every weight once per forward into f32 panels; the
// scalar formulas cost ~1 ns per element on Zen 3, as much as the whole product for m = 32. Here
// the quants are unpacked as in the dot products (kernels/quant_dot.hpp), widened to 8 int32 at a
// time and scaled: x = (q - offset) · s (q4_0, q5_0, q6_K, q8_0: the offset taken in 8 bits, the
// product exact) or x = q · s + c by one FMA (mins: q4_1, q5_1, q4_K, q5_K). Bit-identical to the
// scalar formulas, signed zeros included: there too q · s is exact in float (core/blocks.hpp) and
// one rounding follows, the one the FMA makes.
#pragma once

#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <tessera/config.hpp>
#include <tessera/core/blocks.hpp>
#include <tessera/kernels/quant_dot.hpp>
#include <tessera/kernels/quant_rows.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

namespace detail {
#if defined(__AVX2__)

/// y[0, 32) = q_j · s + c for 32 quants q (u8): (s0, c0) for the first 16 elements, (s1, c1) for
/// the next 16; one FMA per element.
TESSERA_ALWAYS_INLINE void store_scaled_32(float* y, __m256i q, float s0, float c0, float s1, float c1) noexcept {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m256 sa = _mm256_set1_ps(s0), ca = _mm256_set1_ps(c0), sb = _mm256_set1_ps(s1), cb = _mm256_set1_ps(c1);
  _mm256_storeu_ps(y, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), sa, ca));
  _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), sa, ca));
  _mm256_storeu_ps(y + 16, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), sb, cb));
  _mm256_storeu_ps(y + 24, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), sb, cb));
}

/// y[0, 32) = q_j · s for 32 signed quants (i8): s0 for the first 16, s1 for the next 16. A
/// product, not q · s - offset · s, so that a zero quant times a negative scale gives -0 as the
/// scalar formula (q - offset) · s does.
TESSERA_ALWAYS_INLINE void store_signed_32(float* y, __m256i q, float s0, float s1) noexcept {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m256 sa = _mm256_set1_ps(s0), sb = _mm256_set1_ps(s1);
  _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), sa));
  _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), sa));
  _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), sb));
  _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), sb));
}

inline void dequantize_avx2(const block_iq4_nl* w, float* y, index_t n_blocks) noexcept {
  for (index_t b = 0; b < n_blocks; ++b, y += 32) {
    const float d = half_to_float(w[b].d);
    store_signed_32(y, signed_quants(w[b]), d, d);
  }
}

inline void dequantize_avx2(const block_iq4_xs* w, float* y, index_t n_blocks) noexcept {
  const __m256i grid = iq4_grid();
  for (index_t b = 0; b < n_blocks; ++b) {
    const float d = half_to_float(w[b].d);
    for (int ib = 0; ib < 8; ++ib, y += 32) {
      const float dl = d * static_cast<float>(tessera::detail::iq4_xs_scale(w[b], ib) - 32);  // as the scalar formula
      store_signed_32(y, _mm256_shuffle_epi8(grid, nibbles_32(w[b].qs + 16 * ib)), dl, dl);
    }
  }
}

inline void dequantize_avx2(const block_q8_0* w, float* y, index_t n_blocks) noexcept {
  for (index_t b = 0; b < n_blocks; ++b, y += 32) {
    const float d = half_to_float(w[b].d);
    store_signed_32(y, load_256(w[b].qs), d, d);
  }
}

template <class B>  // q4_0, q5_0: (q - offset) · d, the offset taken in 8 bits
void dequantize_offset_avx2(const B* w, float* y, index_t n_blocks) noexcept {
  const __m256i offset = _mm256_set1_epi8(static_cast<char>(quant_offset<B>));
  for (index_t b = 0; b < n_blocks; ++b, y += 32) {
    const float d = half_to_float(w[b].d);
    store_signed_32(y, _mm256_sub_epi8(unsigned_quants(w[b]), offset), d, d);
  }
}

template <class B>  // q4_1, q5_1: q · d + m
void dequantize_min_avx2(const B* w, float* y, index_t n_blocks) noexcept {
  for (index_t b = 0; b < n_blocks; ++b, y += 32) {
    const float d = half_to_float(w[b].d), m = half_to_float(w[b].m);
    store_scaled_32(y, unsigned_quants(w[b]), d, m, d, m);
  }
}

inline void dequantize_avx2(const block_q4_0* w, float* y, index_t n) noexcept { dequantize_offset_avx2(w, y, n); }
inline void dequantize_avx2(const block_q5_0* w, float* y, index_t n) noexcept { dequantize_offset_avx2(w, y, n); }
inline void dequantize_avx2(const block_q4_1* w, float* y, index_t n) noexcept { dequantize_min_avx2(w, y, n); }
inline void dequantize_avx2(const block_q5_1* w, float* y, index_t n) noexcept { dequantize_min_avx2(w, y, n); }

/// q4_K / q5_K: sub-block s = d · sc_s · q - dmin · m_s; quants(b, p, lo, hi) as in vec_dot_k4.
template <class B, class Quants>
void dequantize_k4_avx2(const B* w, float* y, index_t n_blocks, Quants quants) noexcept {
  for (index_t b = 0; b < n_blocks; ++b) {
    const float d = half_to_float(w[b].d), dmin = half_to_float(w[b].dmin);
    for (int p = 0; p < 4; ++p, y += 64) {
      std::uint8_t sc0, m0, sc1, m1;
      scale_min_k4(2 * p, w[b].scales, sc0, m0);
      scale_min_k4(2 * p + 1, w[b].scales, sc1, m1);
      __m256i lo, hi;
      quants(b, p, lo, hi);
      const float s0 = d * sc0, c0 = -(dmin * m0), s1 = d * sc1, c1 = -(dmin * m1);
      store_scaled_32(y, lo, s0, c0, s0, c0);
      store_scaled_32(y + 32, hi, s1, c1, s1, c1);
    }
  }
}

inline void dequantize_avx2(const block_q4_K* w, float* y, index_t n_blocks) noexcept {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  dequantize_k4_avx2(w, y, n_blocks, [w, low4](index_t b, int p, __m256i& lo, __m256i& hi) {
    const __m256i q = load_256(w[b].qs + 32 * p);
    lo = _mm256_and_si256(q, low4);
    hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
  });
}

inline void dequantize_avx2(const block_q5_K* w, float* y, index_t n_blocks) noexcept {
  const __m256i low4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
  dequantize_k4_avx2(w, y, n_blocks, [w, low4, bit4](index_t b, int p, __m256i& lo, __m256i& hi) {
    const __m256i qh = load_256(w[b].qh);
    const __m256i q = load_256(w[b].qs + 32 * p);
    lo = _mm256_or_si256(_mm256_and_si256(q, low4), _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * p), 4), bit4));
    hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low4),
                         _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * p + 1), 4), bit4));
  });
}

inline void dequantize_avx2(const block_q6_K* w, float* y, index_t n_blocks) noexcept {
  const __m256i low4 = _mm256_set1_epi8(0x0F), high2 = _mm256_set1_epi8(0x30), offset = _mm256_set1_epi8(32);
  for (index_t b = 0; b < n_blocks; ++b) {
    const float d = half_to_float(w[b].d);
    for (int half = 0; half < 2; ++half, y += 128) {
      const std::uint8_t* ql = w[b].ql + 64 * half;
      const __m256i ql0 = load_256(ql), ql1 = load_256(ql + 32), qh = load_256(w[b].qh + 32 * half);
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), high2)),
          _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), high2)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, high2)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                          _mm256_and_si256(_mm256_srli_epi16(qh, 2), high2))};
      for (int g = 0; g < 4; ++g) {  // group g: sub-blocks 8 half + 2g and 8 half + 2g + 1
        const float s0 = d * static_cast<float>(w[b].scales[8 * half + 2 * g]);
        const float s1 = d * static_cast<float>(w[b].scales[8 * half + 2 * g + 1]);
        store_signed_32(y + 32 * g, _mm256_sub_epi8(q[g], offset), s0, s1);
      }
    }
  }
}

#endif
}  // namespace detail

/// n_blocks blocks → f32, scalar reference (= tessera::dequantize).
template <quant_block B>
void dequantize_row(const B* w, float* y, index_t n_blocks, simd::scalar) noexcept {
  dequantize(w, y, n_blocks);
}

/// n_blocks blocks → f32 with the Arch's body (AVX2), the scalar reference's bits.
template <quant_block B, class Arch>
void dequantize_row(const B* w, float* y, index_t n_blocks, Arch) noexcept {
#if defined(__AVX2__)
  if constexpr (detail::quant_x86<Arch>() && !std::is_same_v<B, block_q8_K> && !std::is_same_v<B, block_q8_sum>) {
    detail::dequantize_avx2(w, y, n_blocks);
    return;
  }
#endif
  dequantize(w, y, n_blocks);
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
