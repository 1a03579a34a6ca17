// tessera/kernels/quant_interleaved.hpp: out = x · dequantize(w)ᵀ with w's rows interleaved 8 at
// a time (core/blocks_interleaved.hpp: block_q4_0x8, block_iq4_nlx8, block_q8_0x8, block_q4_Kx8,
// block_q5_Kx8, block_q6_Kx8, block_iq4_xsx8), the layouts layers::linear rewrites a stored Q4_0 /
// IQ4_NL / Q8_0 / Q4_K / Q5_K / Q6_K / IQ4_XS matrix into at load on x86 with AVX2, as llama.cpp repacks Q4_0 / Q4_K / IQ4_NL at load.
//
//   x:   (m, k) f32 activations, rows contiguous
//   w:   (n / 8, k / block) interleaved blocks: block column b of rows 8p .. 8p + 7 at w(p, b)
//   out: (m, n) f32, rows contiguous; overwritten
//
// Why: decode streams every weight once per token, and with rows stored one after the other the
// AVX2 tiles (kernels/quant_rows.hpp) spend per block of 8 rows a horizontal-add tree, eight
// scale loads and the unpacking of eight separate rows: ~75 vector instructions for q4_0, 1.2 ns
// on Zen 3 hot in L2, against 0.9 ns for the memory to deliver its 144 bytes at 85% of a plain
// read (docs/quant.md). Interleaved, one 32-byte load gives (masked and shifted, for the 4-bit
// formats) four quants of each of the 8 rows, dotted with one broadcast dword of activations by
// one vpmaddubsw, so each 32-bit lane sums one row and nothing is reduced across lanes; the 8
// rows' scales are contiguous (one conversion, one FMA per block). And a thread's rows are one
// sequential stream, where the row tiles read 4 or 8 interleaved ones. Zen 3, 1 thread, 100-200 MB
// of weights streamed (docs/quant.md, "Session 21"): q4_0 1.5-1.7x the row tile, q4_K 1.5-1.8x,
// q6_K 1.1-1.3x, q8_0 0.9-1.05x (the row tile already streamed q8_0 at 85-95% of a read; hot in
// L2 the interleaved one is 1.26x), and the int8 prefill 1.0-1.9x.
//
// The rows of x are quantized once into the stored format's activation blocks (q8_sum, q8_K;
// kernels/quant_dot.hpp); every m takes the same path (decode, batched decode and prefill: each
// group of 8 weight rows meets the activation rows 4 at a time while it sits in L1); threads take
// chunks of ~256 KB of weights as they come free. The integers per block are the stored format's
// vec_dot's; the scalar arch computes row_block(w, r) with vec_dot, the same integers and float
// sums as the stored matrix's reference.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <tessera/config.hpp>
#include <tessera/core/blocks.hpp>
#include <tessera/core/blocks_interleaved.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/kernels/quant_dot.hpp>
#include <tessera/kernels/quant_linear.hpp>
#include <tessera/kernels/quant_rows.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

/// Whether Arch has the interleaved kernels (layers::linear interleaves matrices at load only
/// then: elsewhere the stored rows' scalar kernels are as fast).
template <class Arch = simd::default_arch>
constexpr bool interleaved_available() noexcept {
  return detail::quant_x86<Arch>();
}

namespace detail {

#if defined(__AVX2__)

/// The 8 vectors of one interleaved sub-block of 32 (128 bytes, block_q4_0x8's qs layout): q[g]
/// holds quants 4g .. 4g + 3 of the 8 rows, a dword per row.
TESSERA_ALWAYS_INLINE void unpack_interleaved(const std::uint8_t* qs, __m256i (&q)[8]) noexcept {
  const __m256i low = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 4
  for (int h = 0; h < 4; ++h) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * h));
    q[2 * h] = _mm256_and_si256(v, low);
    q[2 * h + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
  }
}

/// Per lane (row r) 16-bit sums of row r's products q · a with the activation quants a[0 .. 31],
/// in two chains: groups 0, 2, 4, 6 and 1, 3, 5, 7 (8 vpmaddubsw against broadcast dwords).
struct dot_halves {
  __m256i even, odd;
};
TESSERA_ALWAYS_INLINE dot_halves interleaved_dot_halves(const __m256i (&q)[8], const std::int8_t* a) noexcept {
  auto dword = [&](int g) {
    std::int32_t v;
    std::memcpy(&v, a + 4 * g, 4);
    return _mm256_set1_epi32(v);
  };
  __m256i s0 = _mm256_maddubs_epi16(q[0], dword(0)), s1 = _mm256_maddubs_epi16(q[1], dword(1));
#pragma GCC unroll 3
  for (int g = 2; g < 8; g += 2) {
    s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(q[g], dword(g)));
    s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(q[g + 1], dword(g + 1)));
  }
  return {s0, s1};
}

/// The two chains added: per lane two 16-bit sums of 4-bit quants' products (each at most
/// 8 · 2 · 15 · 127 = 30480).
TESSERA_ALWAYS_INLINE __m256i interleaved_dot(const __m256i (&q)[8], const std::int8_t* a) noexcept {
  const dot_halves h = interleaved_dot_halves(q, a);
  return _mm256_add_epi16(h.even, h.odd);
}

/// out[i · ldo + r] = Σ_b d_r · d_a · (Σ_j q_rj a_ij − 8 Σ_j a_ij) for the M (1 .. 4) activation
/// rows a + i · lda and the 8 rows of one group (w: its kb block columns).
template <int M>
void interleaved_rows_avx2(const block_q4_0x8* w, index_t kb, const block_q8_sum* a, index_t lda, float* out,
                           index_t ldo, prefetch_stream pf) noexcept {
  __m256 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (index_t b = 0; b < kb; ++b) {
    const block_q4_0x8& wb = w[b];
    pf.step<sizeof(block_q4_0x8)>(b);
    __m256i q[8];
    unpack_interleaved(wb.qs, q);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.d)));
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      const block_q8_sum& ab = a[i * lda + b];
      const __m256i s = _mm256_sub_epi32(_mm256_madd_epi16(interleaved_dot(q, ab.qs), ones), _mm256_set1_epi32(8 * ab.sum));
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(ab.d)), _mm256_cvtepi32_ps(s), acc[i]);
    }
  }
  for (int i = 0; i < M; ++i) _mm256_storeu_ps(out + i * ldo, acc[i]);
}

/// The signed quants of an interleaved block column of q8_0 (stored) or iq4_nl (nibbles looked up
/// in the grid, one vpshufb per vector), q[g] holding quants 4g .. 4g + 3 of the 8 rows.
TESSERA_ALWAYS_INLINE void signed_interleaved(const block_q8_0x8& b, __m256i (&q)[8]) noexcept {
#pragma GCC unroll 8
  for (int g = 0; g < 8; ++g) q[g] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs[g]));
}
TESSERA_ALWAYS_INLINE void signed_interleaved(const block_iq4_nlx8& b, __m256i (&q)[8]) noexcept {
  unpack_interleaved(b.qs, q);
  const __m256i grid = iq4_grid();
#pragma GCC unroll 8
  for (int g = 0; g < 8; ++g) q[g] = _mm256_shuffle_epi8(grid, q[g]);
}

/// Per lane (row r) Σ_j w_rj a_j in 32 bits for signed quants q (u = |q|): |w| · sign(a, w) as the
/// row tiles do (pair sums up to 2 · 127 · 127, widened per group), two chains.
TESSERA_ALWAYS_INLINE __m256i signed_interleaved_dot(const __m256i (&u)[8], const __m256i (&q)[8], const std::int8_t* a) noexcept {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
#pragma GCC unroll 4
  for (int g = 0; g < 8; g += 2) {
    std::int32_t v0, v1;
    std::memcpy(&v0, a + 4 * g, 4);
    std::memcpy(&v1, a + 4 * g + 4, 4);
    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(u[g], _mm256_sign_epi8(_mm256_set1_epi32(v0), q[g])), ones));
    s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(u[g + 1], _mm256_sign_epi8(_mm256_set1_epi32(v1), q[g + 1])), ones));
  }
  return _mm256_add_epi32(s0, s1);
}

/// q8_0 / iq4_nl: out[i · ldo + r] = Σ_b d_r · d_a · Σ_j w_rj a_ij with signed w: |w| · sign(a, w) as
/// the row tiles do (pair sums up to 2 · 127 · 127, widened per group).
template <int M, class B>
  requires std::is_same_v<B, block_q8_0x8> || std::is_same_v<B, block_iq4_nlx8>
void interleaved_rows_avx2(const B* w, index_t kb, const block_q8_sum* a, index_t lda, float* out, index_t ldo,
                           prefetch_stream pf) noexcept {
  __m256 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
  for (index_t b = 0; b < kb; ++b) {
    const B& wb = w[b];
    pf.step<sizeof(B)>(b);
    __m256i q[8], u[8];
    signed_interleaved(wb, q);
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) u[g] = _mm256_abs_epi8(q[g]);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.d)));
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      const block_q8_sum& ab = a[i * lda + b];
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(ab.d)), _mm256_cvtepi32_ps(signed_interleaved_dot(u, q, ab.qs)), acc[i]);
    }
  }
  for (int i = 0; i < M; ++i) _mm256_storeu_ps(out + i * ldo, acc[i]);
}

/// iq4_xs: out[i · ldo + r] = Σ_b d_r · d_a · Σ_s (ls_rs − 32) Σ_l grid(q) a, exact in integers
/// per super-block as iq4_xs's vec_dot: per sub-block iq4_nl's signed dot, times the 8 rows'
/// scales (vpmulld).
template <int M>
void interleaved_rows_avx2(const block_iq4_xsx8* w, index_t kb, const block_q8_K* a, index_t lda, float* out,
                           index_t ldo, prefetch_stream pf) noexcept {
  __m256 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
  const __m256i grid = iq4_grid();
  for (index_t b = 0; b < kb; ++b) {
    const block_iq4_xsx8& wb = w[b];
    __m256i isum[M];
    for (int i = 0; i < M; ++i) isum[i] = _mm256_setzero_si256();
    for (int s = 0; s < 8; ++s) {
      pf.range(b * static_cast<index_t>(sizeof(block_iq4_xsx8)) + s * 138, 138);
      __m256i q[8], u[8];
      unpack_interleaved(wb.qs[s], q);
#pragma GCC unroll 8
      for (int g = 0; g < 8; ++g) q[g] = _mm256_shuffle_epi8(grid, q[g]), u[g] = _mm256_abs_epi8(q[g]);
      const __m256i sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(wb.scales[s])));
#pragma GCC unroll 4
      for (int i = 0; i < M; ++i)
        isum[i] = _mm256_add_epi32(isum[i], _mm256_mullo_epi32(signed_interleaved_dot(u, q, a[i * lda + b].qs + 32 * s), sc));
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.d)));
    for (int i = 0; i < M; ++i)
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(a[i * lda + b].d)), _mm256_cvtepi32_ps(isum[i]), acc[i]);
  }
  for (int i = 0; i < M; ++i) _mm256_storeu_ps(out + i * ldo, acc[i]);
}

/// q4_K: out[i · ldo + r] = Σ_b d_a · (d_r Σ_s sc_rs dot_rs − dmin_r Σ_s m_rs (bsum_2s + bsum_2s+1)),
/// exact in integers per super-block as k4_vec_dot: per sub-block the lanes' dots (vpmaddwd) times
/// the 8 rows' scales (vpmulld, scales widened from bytes); the mins term by 4 vpmaddwd of the
/// rows' min pairs with the activation's pair of sub-block sums.
template <int M, class B>
  requires std::is_same_v<B, block_q4_Kx8> || std::is_same_v<B, block_q5_Kx8>
void interleaved_rows_avx2(const B* w, index_t kb, const block_q8_K* a, index_t lda, float* out, index_t ldo,
                           prefetch_stream pf) noexcept {
  constexpr bool five = std::is_same_v<B, block_q5_Kx8>;
  constexpr index_t sub_bytes = sizeof(B) / 8;
  __m256 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (index_t b = 0; b < kb; ++b) {
    const B& wb = w[b];
    __m256i scaled[M];
    for (int i = 0; i < M; ++i) scaled[i] = _mm256_setzero_si256();
    for (int s = 0; s < 8; ++s) {
      pf.range(b * static_cast<index_t>(sizeof(B)) + s * sub_bytes, sub_bytes);
      __m256i q[8];
      unpack_interleaved(wb.qs[s], q);
      if constexpr (five) {  // bit g of each byte to bit 4 of q[g]
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.qh[s])), bit4 = _mm256_set1_epi8(0x10);
        q[0] = _mm256_or_si256(q[0], _mm256_and_si256(_mm256_slli_epi16(h, 4), bit4));
        q[1] = _mm256_or_si256(q[1], _mm256_and_si256(_mm256_slli_epi16(h, 3), bit4));
        q[2] = _mm256_or_si256(q[2], _mm256_and_si256(_mm256_slli_epi16(h, 2), bit4));
        q[3] = _mm256_or_si256(q[3], _mm256_and_si256(_mm256_slli_epi16(h, 1), bit4));
        q[4] = _mm256_or_si256(q[4], _mm256_and_si256(h, bit4));
        q[5] = _mm256_or_si256(q[5], _mm256_and_si256(_mm256_srli_epi16(h, 1), bit4));
        q[6] = _mm256_or_si256(q[6], _mm256_and_si256(_mm256_srli_epi16(h, 2), bit4));
        q[7] = _mm256_or_si256(q[7], _mm256_and_si256(_mm256_srli_epi16(h, 3), bit4));
      }
      const __m256i sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(wb.scales[s])));
#pragma GCC unroll 4
      for (int i = 0; i < M; ++i) {
        __m256i dot;
        if constexpr (five) {  // 5-bit quants: 4 groups of pair sums at most 4 · 2 · 31 · 127 = 31496 in 16 bits
          const dot_halves h = interleaved_dot_halves(q, a[i * lda + b].qs + 32 * s);
          dot = _mm256_add_epi32(_mm256_madd_epi16(h.even, ones), _mm256_madd_epi16(h.odd, ones));
        } else {
          dot = _mm256_madd_epi16(interleaved_dot(q, a[i * lda + b].qs + 32 * s), ones);
        }
        scaled[i] = _mm256_add_epi32(scaled[i], _mm256_mullo_epi32(dot, sc));
      }
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.d)));
    const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.dmin)));
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      const block_q8_K& ab = a[i * lda + b];
      // pair sums of the 16 bsums: sub-blocks 0..3 in the low 128 bits' first 4 words, 4..7 in the high
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab.bsums));
      const __m256i sums = _mm256_hadd_epi16(bs, bs);
      __m256i mins = _mm256_setzero_si256();
#pragma GCC unroll 4
      for (int t = 0; t < 4; ++t) {
        const __m256i pair = _mm256_permutevar8x32_epi32(sums, _mm256_set1_epi32(t < 2 ? t : t + 2));  // (sum 2t, sum 2t+1)
        const __m256i m = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.mins[t])));
        mins = _mm256_add_epi32(mins, _mm256_madd_epi16(m, pair));
      }
      const __m256 da = _mm256_set1_ps(ab.d);
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(d, da), _mm256_cvtepi32_ps(scaled[i]), acc[i]);
      acc[i] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, da), _mm256_cvtepi32_ps(mins), acc[i]);
    }
  }
  for (int i = 0; i < M; ++i) _mm256_storeu_ps(out + i * ldo, acc[i]);
}

/// q6_K: out[i · ldo + r] = Σ_b d_a · d_r · Σ_s sc_rs (Σ_l q a − 32 bsum_s), exact in integers per
/// super-block as q6_K's vec_dot. Per chunk of 32: ql's nibbles unpacked as q4_0x8's, the high two
/// bits shifted and masked in (q in 0 .. 63: two vpmaddubsw pair sums add up to at most 32004 in 16
/// bits), each sub-block's 16 products widened and times the 8 rows' scales (vpmulld); the offset
/// term by 8 vpmaddwd of the rows' scale pairs with the activation's pairs of sums of 16.
template <int M>
void interleaved_rows_avx2(const block_q6_Kx8* w, index_t kb, const block_q8_K* a, index_t lda, float* out,
                           index_t ldo, prefetch_stream pf) noexcept {
  __m256 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1), high_bits = _mm256_set1_epi8(0x30);
  for (index_t b = 0; b < kb; ++b) {
    const block_q6_Kx8& wb = w[b];
    __m256i isum[M];
    for (int i = 0; i < M; ++i) isum[i] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      pf.range(b * static_cast<index_t>(sizeof(block_q6_Kx8)) + c * 210, 210);
      __m256i q[8];
      unpack_interleaved(wb.ql[c], q);
      const __m256i h0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.qh[c]));
      const __m256i h1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.qh[c] + 32));
      q[0] = _mm256_or_si256(q[0], _mm256_and_si256(_mm256_slli_epi16(h0, 4), high_bits));
      q[1] = _mm256_or_si256(q[1], _mm256_and_si256(_mm256_slli_epi16(h0, 2), high_bits));
      q[2] = _mm256_or_si256(q[2], _mm256_and_si256(h0, high_bits));
      q[3] = _mm256_or_si256(q[3], _mm256_and_si256(_mm256_srli_epi16(h0, 2), high_bits));
      q[4] = _mm256_or_si256(q[4], _mm256_and_si256(_mm256_slli_epi16(h1, 4), high_bits));
      q[5] = _mm256_or_si256(q[5], _mm256_and_si256(_mm256_slli_epi16(h1, 2), high_bits));
      q[6] = _mm256_or_si256(q[6], _mm256_and_si256(h1, high_bits));
      q[7] = _mm256_or_si256(q[7], _mm256_and_si256(_mm256_srli_epi16(h1, 2), high_bits));
      const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.scales[c])));
      const __m256i sc0 = _mm256_srai_epi32(_mm256_slli_epi32(sc, 16), 16), sc1 = _mm256_srai_epi32(sc, 16);
#pragma GCC unroll 4
      for (int i = 0; i < M; ++i) {
        const std::int8_t* av = a[i * lda + b].qs + 32 * c;
        auto dword = [&](int g) {
          std::int32_t v;
          std::memcpy(&v, av + 4 * g, 4);
          return _mm256_set1_epi32(v);
        };
        auto pair = [&](int g) {  // groups g, g + 1: at most 2 · 2 · 63 · 127 = 32004
          return _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(q[g], dword(g)), _mm256_maddubs_epi16(q[g + 1], dword(g + 1))),
                                   ones);
        };
        const __m256i d0 = _mm256_add_epi32(pair(0), pair(2)), d1 = _mm256_add_epi32(pair(4), pair(6));
        isum[i] = _mm256_add_epi32(isum[i], _mm256_add_epi32(_mm256_mullo_epi32(d0, sc0), _mm256_mullo_epi32(d1, sc1)));
      }
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.d)));
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      const block_q8_K& ab = a[i * lda + b];
      __m256i off = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        std::int32_t bs;
        std::memcpy(&bs, ab.bsums + 2 * c, 4);
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.scales[c])));
        off = _mm256_add_epi32(off, _mm256_madd_epi16(sc, _mm256_set1_epi32(bs)));
      }
      const __m256i s = _mm256_sub_epi32(isum[i], _mm256_slli_epi32(off, 5));
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(ab.d)), _mm256_cvtepi32_ps(s), acc[i]);
    }
  }
  for (int i = 0; i < M; ++i) _mm256_storeu_ps(out + i * ldo, acc[i]);
}

#endif

/// Groups [lo, hi) of w against all m activation rows, 4 at a time.
template <class Arch, interleaved_block B, class A>
void interleaved_groups(const B* w, index_t ldw, const A* act, index_t kb, index_t m, float* out, index_t ldo, index_t lo,
                        index_t hi) noexcept {
#if defined(__AVX2__)
  if constexpr (quant_x86<Arch>()) {
    const char* limit = reinterpret_cast<const char*>(w + (hi - 1) * ldw + kb);
    for (index_t p = lo; p < hi; ++p) {
      const B* wp = w + p * ldw;
      float* op = out + 8 * p;
      // the first pass over the group prefetches the lines quant_prefetch_distance ahead
      const prefetch_stream ahead{reinterpret_cast<const char*>(wp) + quant_prefetch_distance, limit};
      index_t i = 0;
      for (; i + 4 <= m; i += 4)
        interleaved_rows_avx2<4>(wp, kb, act + i * kb, kb, op + i * ldo, ldo, i == 0 ? ahead : prefetch_stream{});
      const prefetch_stream rest = i == 0 ? ahead : prefetch_stream{};
      switch (m - i) {
        case 1: interleaved_rows_avx2<1>(wp, kb, act + i * kb, kb, op + i * ldo, ldo, rest); break;
        case 2: interleaved_rows_avx2<2>(wp, kb, act + i * kb, kb, op + i * ldo, ldo, rest); break;
        case 3: interleaved_rows_avx2<3>(wp, kb, act + i * kb, kb, op + i * ldo, ldo, rest); break;
        default: break;
      }
    }
    return;
  }
#endif
  for (index_t p = lo; p < hi; ++p)
    for (int r = 0; r < 8; ++r)
      for (index_t i = 0; i < m; ++i) {
        float sum = 0.f;  // vec_dot's float sums, one block at a time
        for (index_t b = 0; b < kb; ++b) {
          const typename B::row_block rb = row_block(w[p * ldw + b], r);
          sum += vec_dot(&rb, act + i * kb + b, 1, simd::scalar{});
        }
        out[i * ldo + 8 * p + r] = sum;
      }
}

}  // namespace detail

/// Scratch bytes quant_linear needs for m rows of k features with interleaved weights: the
/// quantized activations.
template <interleaved_block B>
std::size_t quant_linear_workspace_bytes(index_t m, index_t k, int = num_threads()) noexcept {
  return workspace::bytes_for<activation_block_t<typename B::row_block>>(m * (k / B::block_size));
}

/// out (m, n) = x (m, k) · dequantize(w)ᵀ, w: (n / 8, k / block) interleaved blocks. Takes scratch
/// from ws, never allocates; threads over groups of 8 weight rows.
template <interleaved_block B, simd::arch_tag Arch = simd::default_arch>
void quant_linear(tensor_view<const float, 2> x, tensor_view<const B, 2> w, tensor_view<float, 2> out, workspace& ws,
                  Arch = {}) {
  using R = typename B::row_block;
  using A = activation_block_t<R>;
  const index_t m = x.extent(0), groups = w.extent(0), kb = w.extent(1), n = groups * B::rows;
  if (x.extent(1) != kb * B::block_size)
    throw shape_error("quant_linear: x columns (k) " + std::to_string(x.extent(1)) + " != w's " + std::to_string(kb) +
                      " interleaved " + std::string(R::name) + " block columns × " + std::to_string(B::block_size) +
                      " = " + std::to_string(kb * B::block_size));
  expect_equal(out.extent(0), m, "quant_linear: out rows vs x rows (m)");
  expect_equal(out.extent(1), n, "quant_linear: out columns vs w rows (n = 8 × groups)");
  expect_rows_contiguous(x, "quant_linear: x");
  expect_rows_contiguous(w, "quant_linear: w");
  expect_rows_contiguous(out, "quant_linear: out");
  if (m == 0 || n == 0) return;
  if (kb == 0) {
    for (index_t i = 0; i < m; ++i) std::fill(out.row(i), out.row(i) + n, 0.f);
    return;
  }
  workspace::frame frame(ws);
  A* act = ws.alloc<A>(m * kb);
  detail::quantize_rows<Arch>(x, act, kb, m > quant_rows_max_m<R>);  // as quant_linear does for the stored rows
  const B* wp = w.data();
  const index_t ldw = detail::row_stride(w), ldo = detail::row_stride(out);
  float* op = out.data();
  if constexpr (simd::is_scalar_v<Arch>) {
    detail::interleaved_groups<Arch>(wp, ldw, act, kb, m, op, ldo, 0, groups);
  } else {
    // ~256 KB of weights per chunk, at least 4 chunks per thread
    const index_t by_bytes = std::max<index_t>(1, index_t{262144} / (kb * static_cast<index_t>(sizeof(B))));
    const index_t chunk = std::max<index_t>(1, std::min(by_bytes, groups / (4 * static_cast<index_t>(num_threads()))));
    parallel_for_dynamic(0, groups, chunk, [&](index_t lo, index_t hi) {
      detail::interleaved_groups<Arch>(wp, ldw, act, kb, m, op, ldo, lo, hi);
    });
  }
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
