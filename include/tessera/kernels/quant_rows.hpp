// tessera/kernels/quant_rows.hpp: four weight rows against 1-4 activation rows at once (and, for
// decode, eight rows against one).
//
//   w:   4 rows of n_blocks weight blocks, row r at w + r · ldw (blocks)
//   a:   m (1 .. 4) rows of n_blocks activation blocks (activation_block_t<B>), row i at a + i · lda
//   out: out[i · ldo + r] = vec_dot(w + r · ldw, a + i · lda, n_blocks), r < 4, i < m
//
// For the 32-element formats one row at a time spends as much on each block's scale (an f16
// conversion, a multiply, a broadcast, an int → float conversion and an FMA per block) as on its
// integer dot. Four rows share the work per activation block: its quants are loaded once, the four
// rows' integer sums are reduced together (vphaddw / vphaddd) into one vector of 4 row sums, the
// four f16 scales are converted by one vcvtph2ps, and one FMA applies them. q4_0 on Zen 3, hot in
// L2: 1.67 → 1.39 ns per block (docs/quant.md). With several activation rows (batched decode) the
// four weight blocks are unpacked and their scales converted once for up to 4 of them. The
// unsigned quants' i16 pair sums stay below 2 · 31 · 127 = 7874, so four of them add up in 16 bits
// before the 32-bit widening; q8_0's (up to 32512) are widened first, and so are iq4_nl's, whose
// nibbles one vpshufb turns into signed grid values (then q8_0's tiles). q4_K / q5_K run one
// weight row at a time against the m activation rows (their scales, mins and quants unpacked once
// for them); q6_K and iq4_xs one row and one activation row at a time (vec_dot).
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

/// The weight bytes a tile prefetches (to L2) a little at a time from inside its block loop: step b
/// the lines of [p + b · StepBytes, p + (b + 1) · StepBytes) below limit. The same lines
/// prefetched in one burst before the tile stalled it: a burst of ~140 prefetches fills the
/// core's miss buffers and the prefetch instructions then wait (18% of a q8_0 decode on Zen 3,
/// perf; spread over the blocks, the q8_0 decode step took 0.65x the time, q4_0 0.75x).
struct prefetch_stream {
  const char* p = nullptr;  // nullptr: no prefetches
  const char* limit = nullptr;
  template <index_t StepBytes>
  TESSERA_ALWAYS_INLINE void step(index_t b) const noexcept {
    range(b * StepBytes, StepBytes);
  }
  /// The lines of [p + offset, p + offset + bytes) below limit.
  TESSERA_ALWAYS_INLINE void range(index_t offset, index_t bytes) const noexcept {
    if (!p) return;
    const char* q = p + offset;
#pragma GCC unroll 8
    for (index_t off = 0; off < bytes + 63; off += 64)
      if (q + off < limit) __builtin_prefetch(q + off, 0, 1);
  }
};

#if defined(__AVX2__)

/// The four rows' f16 fields (d or m) of block b as floats.
template <class B, class Field>
TESSERA_ALWAYS_INLINE __m128 halves_4(const B* w, index_t ldw, index_t b, Field field) noexcept {
  return _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(field(w[b]).bits), static_cast<short>(field(w[ldw + b]).bits),
                                     static_cast<short>(field(w[2 * ldw + b]).bits),
                                     static_cast<short>(field(w[3 * ldw + b]).bits), 0, 0, 0, 0));
}

/// The eight rows' f16 fields (d or m) of block b as floats.
template <class B, class Field>
TESSERA_ALWAYS_INLINE __m256 halves_8(const B* w, index_t ldw, index_t b, Field field) noexcept {
  return _mm256_cvtph_ps(_mm_setr_epi16(
      static_cast<short>(field(w[b]).bits), static_cast<short>(field(w[ldw + b]).bits),
      static_cast<short>(field(w[2 * ldw + b]).bits), static_cast<short>(field(w[3 * ldw + b]).bits),
      static_cast<short>(field(w[4 * ldw + b]).bits), static_cast<short>(field(w[5 * ldw + b]).bits),
      static_cast<short>(field(w[6 * ldw + b]).bits), static_cast<short>(field(w[7 * ldw + b]).bits)));
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

/// The blocks of 32 whose quants are unsigned (q4_0, q4_1, q5_0, q5_1): their tiles multiply them
/// unsigned and take offsets and mins out of the activation sums.
template <class B>
concept unsigned_quant_block = std::is_same_v<B, block_q4_0> || std::is_same_v<B, block_q4_1> ||
                               std::is_same_v<B, block_q5_0> || std::is_same_v<B, block_q5_1>;

/// Offset of the unsigned quants (q = unsigned - offset) and whether the block has a min.
template <class B>
inline constexpr int quant_offset = std::is_same_v<B, block_q4_0> ? 8 : std::is_same_v<B, block_q5_0> ? 16 : 0;
template <class B>
inline constexpr bool has_min = std::is_same_v<B, block_q4_1> || std::is_same_v<B, block_q5_1>;

/// 4 rows of q4_0 / q4_1 / q5_0 / q5_1 against M q8_sum rows (a + i · lda): each weight block is
/// unpacked and its four scales converted once for the M activation rows (batched decode).
template <int M, unsigned_quant_block B>
void vec_dot_rows4_avx2(const B* w, index_t ldw, const block_q8_sum* a, index_t lda, index_t n_blocks, float* out,
                        index_t ldo, prefetch_stream pf) noexcept {
  __m128 acc[M], acc_m[M];
  for (int i = 0; i < M; ++i) acc[i] = acc_m[i] = _mm_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (index_t b = 0; b < n_blocks; ++b) {
    pf.step<4 * sizeof(B)>(b);
    const __m256i q0 = unsigned_quants(w[b]), q1 = unsigned_quants(w[ldw + b]);
    const __m256i q2 = unsigned_quants(w[2 * ldw + b]), q3 = unsigned_quants(w[3 * ldw + b]);
    const __m128 dw = halves_4(w, ldw, b, [](const B& x) { return x.d; });
    __m128 mw = _mm_setzero_ps();
    if constexpr (has_min<B>) mw = halves_4(w, ldw, b, [](const B& x) { return x.m; });
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      const block_q8_sum& ab = a[i * lda + b];
      const __m256i av = load_256(ab.qs);
      const __m256i p0 = _mm256_maddubs_epi16(q0, av), p1 = _mm256_maddubs_epi16(q1, av);
      const __m256i p2 = _mm256_maddubs_epi16(q2, av), p3 = _mm256_maddubs_epi16(q3, av);
      // [r0 r0 r1 r1 r2 r2 r3 r3 | the same for the upper 16 elements], each a sum of 4 i16 pair sums
      const __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(p0, p1), _mm256_hadd_epi16(p2, p3));
      const __m256i s = _mm256_madd_epi16(h, ones);
      __m128i r = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
      if constexpr (quant_offset<B> != 0) r = _mm_sub_epi32(r, _mm_set1_epi32(quant_offset<B> * ab.sum));
      acc[i] = _mm_fmadd_ps(_mm_mul_ps(dw, _mm_set1_ps(ab.d)), _mm_cvtepi32_ps(r), acc[i]);
      if constexpr (has_min<B>) acc_m[i] = _mm_fmadd_ps(mw, _mm_set1_ps(ab.d * static_cast<float>(ab.sum)), acc_m[i]);
    }
  }
  for (int i = 0; i < M; ++i) _mm_storeu_ps(out + i * ldo, has_min<B> ? _mm_add_ps(acc[i], acc_m[i]) : acc[i]);
}

/// 8 rows of q4_0 / q4_1 / q5_0 / q5_1 against one q8_sum row (decode): the 8 rows' sums reduced
/// into one vector of 8, one vcvtph2ps for their 8 scales and one 256-bit FMA per block. Zen 3, q4_0
/// hot in L2: 1.22 ns per block against 1.40 for four rows.
template <unsigned_quant_block B>
void vec_dot_rows8_avx2(const B* w, index_t ldw, const block_q8_sum* a, index_t n_blocks, float* out,
                        prefetch_stream pf) noexcept {
  __m256 acc = _mm256_setzero_ps(), acc_m = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (index_t b = 0; b < n_blocks; ++b) {
    pf.step<8 * sizeof(B)>(b);
    const __m256i av = load_256(a[b].qs);
    __m256i p[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) p[r] = _mm256_maddubs_epi16(unsigned_quants(w[r * ldw + b]), av);
    // per 128-bit lane [r0 r1 r2 r3] (g0) and [r4 .. r7] (g1), each a sum of 8 pair sums: the i16
    // sums of 4 stay below 2^15, the last step widens
    const __m256i g0 = _mm256_madd_epi16(
        _mm256_hadd_epi16(_mm256_hadd_epi16(p[0], p[1]), _mm256_hadd_epi16(p[2], p[3])), ones);
    const __m256i g1 = _mm256_madd_epi16(
        _mm256_hadd_epi16(_mm256_hadd_epi16(p[4], p[5]), _mm256_hadd_epi16(p[6], p[7])), ones);
    __m256i r = _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20), _mm256_permute2x128_si256(g0, g1, 0x31));
    if constexpr (quant_offset<B> != 0) r = _mm256_sub_epi32(r, _mm256_set1_epi32(quant_offset<B> * a[b].sum));
    const __m256 dw = halves_8(w, ldw, b, [](const B& x) { return x.d; });
    acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(a[b].d)), _mm256_cvtepi32_ps(r), acc);
    if constexpr (has_min<B>) {
      const __m256 mw = halves_8(w, ldw, b, [](const B& x) { return x.m; });
      acc_m = _mm256_fmadd_ps(mw, _mm256_set1_ps(a[b].d * static_cast<float>(a[b].sum)), acc_m);
    }
  }
  _mm256_storeu_ps(out, has_min<B> ? _mm256_add_ps(acc, acc_m) : acc);
}

/// 8 rows of q8_0 / iq4_nl against one q8_sum row (decode): per row |w| · sign(a, w) widened to 8
/// i32 (q8_0's pair sums reach 32512: no 16-bit adds), the 8 rows' sums reduced into one vector of
/// 8 (vphaddd), one vcvtph2ps for their 8 scales and one 256-bit FMA per block.
template <signed_quant_block B>
void vec_dot_rows8_avx2(const B* w, index_t ldw, const block_q8_sum* a, index_t n_blocks, float* out,
                        prefetch_stream pf) noexcept {
  __m256 acc = _mm256_setzero_ps();
  for (index_t b = 0; b < n_blocks; ++b) {
    pf.step<8 * sizeof(B)>(b);
    const __m256i av = load_256(a[b].qs);
    __m256i s[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) {
      const __m256i wr = signed_quants(w[r * ldw + b]);
      s[r] = dot_u8i8(_mm256_sign_epi8(wr, wr), _mm256_sign_epi8(av, wr));
    }
    // per 128-bit lane [r0 r1 r2 r3] (g0) and [r4 .. r7] (g1), each the sum of 4 of the row's 8 lanes
    const __m256i g0 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    const __m256i g1 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
    const __m256i r = _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20), _mm256_permute2x128_si256(g0, g1, 0x31));
    const __m256 dw = halves_8(w, ldw, b, [](const B& x) { return x.d; });
    acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(a[b].d)), _mm256_cvtepi32_ps(r), acc);
  }
  _mm256_storeu_ps(out, acc);
}

/// 4 rows of q8_0 / iq4_nl against M q8_sum rows (signed weights: |w| · sign(a, w), widened before
/// adding).
template <int M, signed_quant_block B>
void vec_dot_rows4_avx2(const B* w, index_t ldw, const block_q8_sum* a, index_t lda, index_t n_blocks, float* out,
                        index_t ldo, prefetch_stream pf) noexcept {
  __m128 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm_setzero_ps();
  for (index_t b = 0; b < n_blocks; ++b) {
    pf.step<4 * sizeof(B)>(b);
    const __m256i w0 = signed_quants(w[b]), w1 = signed_quants(w[ldw + b]);
    const __m256i w2 = signed_quants(w[2 * ldw + b]), w3 = signed_quants(w[3 * ldw + b]);
    const __m256i u0 = _mm256_sign_epi8(w0, w0), u1 = _mm256_sign_epi8(w1, w1);
    const __m256i u2 = _mm256_sign_epi8(w2, w2), u3 = _mm256_sign_epi8(w3, w3);
    const __m128 dw = halves_4(w, ldw, b, [](const B& x) { return x.d; });
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      const block_q8_sum& ab = a[i * lda + b];
      const __m256i av = load_256(ab.qs);
      const __m256i s = _mm256_hadd_epi32(
          _mm256_hadd_epi32(dot_u8i8(u0, _mm256_sign_epi8(av, w0)), dot_u8i8(u1, _mm256_sign_epi8(av, w1))),
          _mm256_hadd_epi32(dot_u8i8(u2, _mm256_sign_epi8(av, w2)), dot_u8i8(u3, _mm256_sign_epi8(av, w3))));
      const __m128i r = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
      acc[i] = _mm_fmadd_ps(_mm_mul_ps(dw, _mm_set1_ps(ab.d)), _mm_cvtepi32_ps(r), acc[i]);
    }
  }
  for (int i = 0; i < M; ++i) _mm_storeu_ps(out + i * ldo, acc[i]);
}

/// 4 rows of q4_K / q5_K against M q8_K rows: one weight row at a time (its scales, mins and
/// quants unpacked once for the M activation rows), a quarter of the prefetches before each.
template <int M, class B>
  requires(std::is_same_v<B, block_q4_K> || std::is_same_v<B, block_q5_K>)
void vec_dot_rows4_avx2(const B* w, index_t ldw, const block_q8_K* a, index_t lda, index_t n_blocks, float* out,
                        index_t ldo, prefetch_stream pf) noexcept {
  const index_t row_bytes = ldw * static_cast<index_t>(sizeof(B));
  for (int r = 0; r < 4; ++r) {
    pf.range(r * row_bytes, row_bytes);
    vec_dot_k4<M>(w + r * ldw, a, lda, n_blocks, out + r, ldo);
  }
}

/// 4 rows of q6_K against M q8_K rows: one weight row at a time, as q4_K.
template <int M>
void vec_dot_rows4_avx2(const block_q6_K* w, index_t ldw, const block_q8_K* a, index_t lda, index_t n_blocks,
                        float* out, index_t ldo, prefetch_stream pf) noexcept {
  const index_t row_bytes = ldw * static_cast<index_t>(sizeof(block_q6_K));
  for (int r = 0; r < 4; ++r) {
    pf.range(r * row_bytes, row_bytes);
    vec_dot_q6k<M>(w + r * ldw, a, lda, n_blocks, out + r, ldo);
  }
}

/// 4 rows of iq4_xs against M q8_K rows: one weight row and one activation row at a time (vec_dot),
/// a quarter of the prefetches before each weight row.
template <int M>
void vec_dot_rows4_avx2(const block_iq4_xs* w, index_t ldw, const block_q8_K* a, index_t lda, index_t n_blocks,
                        float* out, index_t ldo, prefetch_stream pf) noexcept {
  const index_t row_bytes = ldw * static_cast<index_t>(sizeof(block_iq4_xs));
  for (int r = 0; r < 4; ++r) {
    pf.range(r * row_bytes, row_bytes);
    for (int i = 0; i < M; ++i) out[i * ldo + r] = vec_dot_avx2(w + r * ldw, a + i * lda, n_blocks);
  }
}

/// Dispatches m (1 .. 4) to its compile-time tile.
template <class B, class A>
void vec_dot_rows4_m(const B* w, index_t ldw, const A* a, index_t lda, int m, index_t n_blocks, float* out,
                     index_t ldo, prefetch_stream pf) noexcept {
  switch (m) {
    case 1: vec_dot_rows4_avx2<1>(w, ldw, a, lda, n_blocks, out, ldo, pf); break;
    case 2: vec_dot_rows4_avx2<2>(w, ldw, a, lda, n_blocks, out, ldo, pf); break;
    case 3: vec_dot_rows4_avx2<3>(w, ldw, a, lda, n_blocks, out, ldo, pf); break;
    default: vec_dot_rows4_avx2<4>(w, ldw, a, lda, n_blocks, out, ldo, pf); break;
  }
}

#endif
}  // namespace detail

/// out[i · ldo + r] = vec_dot(w + r · ldw, a + i · lda, n_blocks, Arch) for r < 4 and i < m (1 .. 4):
/// four weight rows against m activation rows, each weight block unpacked once for the m rows (the
/// float sums in another order than vec_dot's). pf: lines the x86 tiles prefetch a little at a
/// time (4 · sizeof(B) bytes per block, a quarter before each K-quant row); unused elsewhere.
template <quant_block B, class Arch>
void vec_dot_rows4(const B* w, index_t ldw, const activation_block_t<B>* a, index_t lda, int m, index_t n_blocks,
                   float* out, index_t ldo, Arch, detail::prefetch_stream pf = {}) noexcept {
#if defined(__AVX2__)
  if constexpr (detail::quant_x86<Arch>()) {
    detail::vec_dot_rows4_m(w, ldw, a, lda, m, n_blocks, out, ldo, pf);
    return;
  }
#endif
  (void)pf;
  for (int i = 0; i < m; ++i)
    for (int r = 0; r < 4; ++r) out[i * ldo + r] = vec_dot(w + r * ldw, a + i * lda, n_blocks, Arch{});
}

/// out[r] = vec_dot(w + r · ldw, a, n_blocks, Arch) for r < 8: eight weight rows, one activation row
/// (decode). One 8-row tile for the 32-element types on x86 (pf: 8 · sizeof(B) bytes prefetched per
/// block), two 4-row tiles otherwise (each half of pf).
template <quant_block B, class Arch>
void vec_dot_rows8(const B* w, index_t ldw, const activation_block_t<B>* a, index_t n_blocks, float* out, Arch,
                   detail::prefetch_stream pf = {}) noexcept {
#if defined(__AVX2__)
  if constexpr (detail::quant_x86<Arch>() && B::block_size == 32) {
    detail::vec_dot_rows8_avx2(w, ldw, a, n_blocks, out, pf);
    return;
  }
#endif
  vec_dot_rows4(w, ldw, a, n_blocks, 1, n_blocks, out, 4, Arch{}, pf);
  if (pf.p) pf.p += 4 * ldw * static_cast<index_t>(sizeof(B));
  vec_dot_rows4(w + 4 * ldw, ldw, a, n_blocks, 1, n_blocks, out + 4, 4, Arch{}, pf);
}

/// out[r] = vec_dot(w + r · ldw, a, n_blocks, Arch) for r < 4: four weight rows, one activation row.
template <quant_block B, class Arch>
void vec_dot_rows4(const B* w, index_t ldw, const activation_block_t<B>* a, index_t n_blocks, float* out,
                   Arch) noexcept {
  vec_dot_rows4(w, ldw, a, n_blocks, 1, n_blocks, out, 4, Arch{});
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
