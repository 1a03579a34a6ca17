// tessera/kernels/quant_panel.hpp: the prefill product of q4_0, q8_0 and iq4_nl weights in 8-bit
// integers (llama.cpp multiplies these types in int8 as well).
//
//   out (m, n) = x (m, k) · dequantize(w)ᵀ, x's rows quantized once into q8_sum blocks
//
// The weights are rewritten a panel of 8 rows at a time (all of k: 288 bytes per block column,
// 18 KB for k = 2048) into an interleaved layout: per block, 8 vectors of 32 bytes, vector g
// holding quants 4g .. 4g + 3 of each of the 8 rows (bytes 4r .. 4r + 3 = row r), and the 8 rows'
// scales as floats. One activation dword (4 quants of one row of x) broadcast against vector g
// then adds 4 products into each lane, and lane r is row r's sum: a block ends with one vpmaddwd,
// one conversion and one FMA against the 8 scales, where the per-row tiles of quant_rows.hpp need a
// vphaddw tree per block and activation row. Each panel meets the activation rows 4 at a time
// (4 × 8 outputs in registers) while it sits in L1 / L2; rewriting it costs one 8 × 8 transpose
// of dwords per block, paid once for all m rows.
//
// q4_0: the nibbles (0 .. 15) multiply unsigned (vpmaddubsw), 8 groups of i16 pair sums add up in
// 16 bits (8 · 2 · 15 · 127 = 30480), and 8 · Σ a comes off per block (q8_sum::sum).
// q8_0 and iq4_nl (whose nibbles become their signed grid values when the panel is built):
// signed weights, |w| · sign(a, w) as in quant_dot.hpp; the pair sums (up to 32512) are widened
// per group.
//
// AVX2 only (quant_panel_available); the integers per block are the same as vec_dot's, so the
// outputs differ from the row-tile path only in the order of the float sums.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <tessera/config.hpp>
#include <tessera/core/blocks.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/kernels/quant_dot.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

/// Whether the interleaved int8 panel product exists for weight blocks B on Arch.
template <class B, class Arch>
constexpr bool quant_panel_available() noexcept {
  return detail::quant_x86<Arch>() &&
         (std::is_same_v<B, block_q4_0> || std::is_same_v<B, block_q8_0> || std::is_same_v<B, block_iq4_nl>);
}

namespace detail {

/// One block column of a panel: quants 4g .. 4g + 3 of row r at q[g][4r .. 4r + 3], the 8 rows'
/// scales as floats (rows past the end of w: zero quants, zero scale).
struct alignas(32) panel_block {
  std::uint8_t q[8][32];
  float d[8];
};

/// Rows of w per panel.
inline constexpr index_t quant_panel_rows8 = 8;

#if defined(__AVX2__)

/// The 8 × 8 transpose of dwords: v[r] holds dwords g = 0..7 of row r; afterwards v[g] holds
/// dword g of rows 0..7.
TESSERA_ALWAYS_INLINE void transpose_8x8_epi32(__m256i v[8]) noexcept {
  const __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpackhi_epi32(v[0], v[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(v[2], v[3]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
  const __m256i t4 = _mm256_unpacklo_epi32(v[4], v[5]), t5 = _mm256_unpackhi_epi32(v[4], v[5]);
  const __m256i t6 = _mm256_unpacklo_epi32(v[6], v[7]), t7 = _mm256_unpackhi_epi32(v[6], v[7]);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
  const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
  const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
  v[0] = _mm256_permute2x128_si256(u0, u4, 0x20), v[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
  v[1] = _mm256_permute2x128_si256(u1, u5, 0x20), v[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
  v[2] = _mm256_permute2x128_si256(u2, u6, 0x20), v[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
  v[3] = _mm256_permute2x128_si256(u3, u7, 0x20), v[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

/// The quants of a block in element order: q4_0's nibbles (0 .. 15), q8_0's and iq4_nl's signed
/// values.
TESSERA_ALWAYS_INLINE __m256i panel_quants(const block_q4_0& b) noexcept { return nibbles_32(b.qs); }
TESSERA_ALWAYS_INLINE __m256i panel_quants(const block_q8_0& b) noexcept { return signed_quants(b); }
TESSERA_ALWAYS_INLINE __m256i panel_quants(const block_iq4_nl& b) noexcept { return signed_quants(b); }

/// Rows [j0, j0 + rows) of w (rows <= 8), all kb blocks, into panel.
template <class B>
void pack_panel(const B* w, index_t ldw, index_t rows, index_t kb, panel_block* panel) noexcept {
  for (index_t b = 0; b < kb; ++b) {
    __m256i v[8];
    alignas(32) float d[8];
    for (index_t r = 0; r < 8; ++r) {
      v[r] = r < rows ? panel_quants(w[r * ldw + b]) : _mm256_setzero_si256();
      d[r] = r < rows ? half_to_float(w[r * ldw + b].d) : 0.f;
    }
    transpose_8x8_epi32(v);
    for (int g = 0; g < 8; ++g) _mm256_store_si256(reinterpret_cast<__m256i*>(panel[b].q[g]), v[g]);
    _mm256_store_ps(panel[b].d, _mm256_load_ps(d));
  }
}

/// The block's integer dot of the panel's 8 rows with activation block a, one lane per row.
TESSERA_ALWAYS_INLINE __m256i panel_dot(const panel_block& p, const block_q8_sum& a, block_q4_0) noexcept {
  __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
  for (int g = 0; g < 8; ++g) {
    int dw;
    std::memcpy(&dw, a.qs + 4 * g, 4);
    acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(p.q[g])),
                                                     _mm256_set1_epi32(dw)));
  }
  return _mm256_sub_epi32(_mm256_madd_epi16(acc, _mm256_set1_epi16(1)), _mm256_set1_epi32(8 * a.sum));
}

template <signed_quant_block B>
TESSERA_ALWAYS_INLINE __m256i panel_dot(const panel_block& p, const block_q8_sum& a, B) noexcept {
  __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
  for (int g = 0; g < 8; ++g) {
    int dw;
    std::memcpy(&dw, a.qs + 4 * g, 4);
    const __m256i wq = _mm256_load_si256(reinterpret_cast<const __m256i*>(p.q[g]));
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(_mm256_set1_epi32(dw), wq));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
  }
  return acc;
}

/// out[i · ldo + r] = Σ_b d_r · d_a · dot_b for the M activation rows a + i · lda and the panel's
/// rows r < rows (the lanes past `rows` are dropped).
template <int M, class B>
void panel_rows(const panel_block* panel, index_t kb, const block_q8_sum* a, index_t lda, index_t rows, float* out,
                index_t ldo) noexcept {
  __m256 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
  for (index_t b = 0; b < kb; ++b) {
    const __m256 dw = _mm256_load_ps(panel[b].d);
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      const block_q8_sum& ab = a[i * lda + b];
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(ab.d)), _mm256_cvtepi32_ps(panel_dot(panel[b], ab, B{})),
                               acc[i]);
    }
  }
  for (int i = 0; i < M; ++i) {
    if (rows == 8) {
      _mm256_storeu_ps(out + i * ldo, acc[i]);
    } else {
      alignas(32) float t[8];
      _mm256_store_ps(t, acc[i]);
      std::copy(t, t + rows, out + i * ldo);
    }
  }
}

#endif

}  // namespace detail

/// Scratch bytes quant_panel_linear needs beyond the quantized activations: one panel per thread.
inline std::size_t quant_panel_bytes(index_t k_blocks, int threads) noexcept {
  return static_cast<std::size_t>(std::max(threads, 1)) * workspace::bytes_for<detail::panel_block>(k_blocks);
}

/// out (m, n) = dequantize(act) · dequantize(w)ᵀ: act (m, kb) q8_sum blocks (x quantized), w (n, kb)
/// blocks of q4_0 or q8_0. Threads over panels of 8 rows of w; each takes its panel scratch from
/// ws. AVX2 only (quant_panel_available<B, Arch>()).
template <class Arch, class B>
void quant_panel_linear(const block_q8_sum* act, index_t m, const B* w, index_t ldw, index_t n, index_t kb, float* out,
                        index_t ldo, workspace& ws) {
#if defined(__AVX2__)
  if constexpr (quant_panel_available<B, Arch>()) {
    constexpr index_t P = detail::quant_panel_rows8;
    const index_t panels = (n + P - 1) / P;
    const index_t per_thread = static_cast<index_t>(workspace::bytes_for<detail::panel_block>(kb));
    index_t threads = std::min<index_t>({num_threads(), panels, static_cast<index_t>((ws.capacity() - ws.used()) / per_thread)});
    threads = std::max<index_t>(threads, 1);
    workspace::frame frame(ws);
    detail::panel_block* buf = ws.alloc<detail::panel_block>(threads * kb);  // throws when one panel does not fit
    parallel_for_stealing(0, panels, 4, 1, static_cast<int>(threads), [&](index_t t, index_t p0, index_t p1) {
      detail::panel_block* panel = buf + t * kb;
      for (index_t p = p0; p < p1; ++p) {
        const index_t j0 = p * P, rows = std::min(P, n - j0);
        detail::pack_panel(w + j0 * ldw, ldw, rows, kb, panel);
        index_t i = 0;
        for (; i + 4 <= m; i += 4) detail::panel_rows<4, B>(panel, kb, act + i * kb, kb, rows, out + i * ldo + j0, ldo);
        switch (m - i) {
          case 1: detail::panel_rows<1, B>(panel, kb, act + i * kb, kb, rows, out + i * ldo + j0, ldo); break;
          case 2: detail::panel_rows<2, B>(panel, kb, act + i * kb, kb, rows, out + i * ldo + j0, ldo); break;
          case 3: detail::panel_rows<3, B>(panel, kb, act + i * kb, kb, rows, out + i * ldo + j0, ldo); break;
          default: break;
        }
      }
    });
    return;
  }
#endif
  (void)act, (void)m, (void)w, (void)ldw, (void)n, (void)kb, (void)out, (void)ldo, (void)ws;
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
