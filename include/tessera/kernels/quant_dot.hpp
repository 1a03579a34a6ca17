// tessera/kernels/quant_dot.hpp: dot products of quantized weight blocks with quantized
// activations, and the activation quantizers (ggml's vec_dot_*_q8_* and quantize_row_q8_*).
//
//   w: n_blocks weight blocks of one row (core/blocks.hpp)
//   a: n_blocks activation blocks (activation_block_t<B>): block_q8_sum for the 32-element
//      formats, block_q8_K for the K-quants
//   vec_dot(w, a, n_blocks) = Σ dequantize(w)_j · dequantize(a)_j, in integers per block
//
// Each block's products are summed in 32-bit integers (exact), then scaled once by the product of
// the two blocks' scales and summed in float. Offsets (q4_0's 8, q5_0's 16, q6_K's 32) and mins
// (q4_1, q5_1, q4_K, q5_K) come out of the activation blocks' integer sums (q8_sum::sum,
// q8_K::bsums), so the weights' quants are multiplied unsigned: one vpmaddubsw (u8 × i8 → i16
// pairs) and one vpmaddwd per 32 products on AVX2, where ggml's 4- and 5-bit kernels first make
// the weights signed (two vpsignb more). q8_0 weights are signed: |w| × sign(a, w) as ggml does.
//
// Activations are quantized to [-127, 127] (never -128), so the i16 pair sums of vpmaddubsw cannot
// saturate: |q| <= 63 (q6_K) gives 2 · 63 · 127 = 16002, q8_0's |w| <= 128 gives 32512.
//
// Scalar overloads (simd::scalar) are the readable references; the AVX2 bodies (also taken on
// AVX-512 targets) compute the same integers per block and differ only in the order of the float
// sums. With AVX512VNNI + AVX512VL the u8 × i8 dot of 4 products is one vpdpbusd (not run here:
// the development machine is a Zen 3).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <tessera/config.hpp>
#include <tessera/core/blocks.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

/// The activation block a weight block's dot product takes.
template <class B>
struct activation_block {
  using type = block_q8_sum;
};
template <>
struct activation_block<block_q4_K> {
  using type = block_q8_K;
};
template <>
struct activation_block<block_q5_K> {
  using type = block_q8_K;
};
template <>
struct activation_block<block_q6_K> {
  using type = block_q8_K;
};
template <>
struct activation_block<block_iq4_xs> {
  using type = block_q8_K;
};
template <class B>
using activation_block_t = typename activation_block<std::remove_const_t<B>>::type;

namespace detail {

using tessera::detail::load_qh;
using tessera::detail::scale_min_k4;

/// Whether Arch takes the hand-written x86 bodies (AVX2; AVX-512 targets have AVX2 too).
template <class Arch>
constexpr bool quant_x86() noexcept {
#if defined(__AVX2__)
  if constexpr (simd::is_scalar_v<Arch>) return false;
  else return std::is_base_of_v<xsimd::avx2, Arch> || std::is_base_of_v<xsimd::avx512f, Arch>;
#else
  return false;
#endif
}

/// f16 → f32 in one instruction where F16C exists.
TESSERA_ALWAYS_INLINE float half_to_float(f16 h) noexcept {
#if defined(__F16C__)
  return _cvtsh_ss(h.bits);
#else
  return to_float(h);
#endif
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Activation quantizers: a row of f32 → activation blocks.

/// x (n_blocks · 32 floats) → q8_sum blocks, scalar reference (= tessera::quantize).
inline void quantize_activation(const float* x, block_q8_sum* y, index_t n_blocks, simd::scalar) noexcept {
  quantize(x, y, n_blocks);
}

/// x (n_blocks · 256 floats) → q8_K blocks, scalar reference (= tessera::quantize, ggml's formula).
inline void quantize_activation(const float* x, block_q8_K* y, index_t n_blocks, simd::scalar) noexcept {
  quantize(x, y, n_blocks);
}

namespace detail {
#if defined(__AVX2__)

TESSERA_ALWAYS_INLINE float hmax(__m256 v) noexcept {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

TESSERA_ALWAYS_INLINE float hsum(__m256 v) noexcept {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

TESSERA_ALWAYS_INLINE int hsum_i32(__m256i v) noexcept {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

/// 32 floats at x times s, rounded to nearest even, as 32 int8 (the values lie in [-127, 127]).
TESSERA_ALWAYS_INLINE __m256i round_to_i8(const float* x, __m256 s) noexcept {
  constexpr int mode = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), s), mode));
  const __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8), s), mode));
  const __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 16), s), mode));
  const __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 24), s), mode));
  // the packs work per 128-bit lane: 0-3 8-11 16-19 24-27 | 4-7 12-15 20-23 28-31; the permute restores the order
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/// max |x| over 32 floats.
TESSERA_ALWAYS_INLINE float max_abs_32(const float* x) noexcept {
  const __m256 sign = _mm256_set1_ps(-0.f);
  __m256 m = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
  m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8)));
  m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 16)));
  m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 24)));
  return hmax(m);
}

/// Sum of 32 int8.
TESSERA_ALWAYS_INLINE int sum_i8_32(__m256i q) noexcept {
  const __m256i pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
  return hsum_i32(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

inline void quantize_activation_avx2(const float* x, block_q8_sum* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, x += 32) {
    const float amax = max_abs_32(x);
    const float id = amax != 0.f ? 127.f / amax : 0.f;
    const __m256i q = round_to_i8(x, _mm256_set1_ps(id));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), q);
    y[i].d = amax / 127.f;
    y[i].sum = sum_i8_32(q);
  }
}

inline void quantize_activation_avx2(const float* x, block_q8_K* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, x += 256) {
    float amax = 0.f;
    for (int j = 0; j < 256; j += 32) amax = std::max(amax, max_abs_32(x + j));
    if (amax == 0.f) {
      y[i] = block_q8_K{};
      continue;
    }
    index_t first = 0;  // ggml's scale keeps the sign of the first element of largest magnitude
    while (std::fabs(x[first]) != amax) ++first;
    const float iscale = -127.f / x[first];
    const __m256 s = _mm256_set1_ps(iscale);
    const __m256i top = _mm256_set1_epi8(127);
    for (int j = 0; j < 256; j += 32)  // ggml clamps to 127 (a product rounded up to 127.5 or more)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + j), _mm256_min_epi8(round_to_i8(x + j, s), top));
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += y[i].qs[16 * j + l];
      y[i].bsums[j] = static_cast<std::int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

#endif
}  // namespace detail

/// x → activation blocks A (block_q8_sum or block_q8_K): the SIMD body where there is one, the
/// same bits as the scalar reference.
template <class A, class Arch>
void quantize_activation(const float* x, A* y, index_t n_blocks, Arch) noexcept {
#if defined(__AVX2__)
  if constexpr (detail::quant_x86<Arch>()) {
    detail::quantize_activation_avx2(x, y, n_blocks);
    return;
  }
#endif
  quantize_activation(x, y, n_blocks, simd::scalar{});
}

// ---------------------------------------------------------------------------------------------
// Scalar references: per block an exact integer dot, then one float multiply-add.

namespace detail {

/// The 32-element formats against q8_sum: per block Σ_j q_j a_j in integers (q_j = quant(block, j),
/// the unsigned or signed quant), minus Offset · Σ a (q4_0: Σ (q - 8) a = Σ q a - 8 Σ a), times
/// d_w · d_a; plus m_w · d_a · Σ a for the formats with a min (Σ (q d + m) a = d Σ q a + m Σ a).
template <int Offset, class B, class Quant>
float vec_dot_32(const B* w, const block_q8_sum* a, index_t n_blocks, Quant quant) noexcept {
  float sum = 0.f;
  for (index_t b = 0; b < n_blocks; ++b) {
    int isum = 0;
    for (int j = 0; j < 32; ++j) isum += quant(w[b], j) * a[b].qs[j];
    isum -= Offset * a[b].sum;
    sum += to_float(w[b].d) * a[b].d * static_cast<float>(isum);
    if constexpr (requires { w[b].m; }) sum += to_float(w[b].m) * a[b].d * static_cast<float>(a[b].sum);
  }
  return sum;
}

/// Element j's nibble of a 32-element block: the low nibbles hold elements 0..15, the high 16..31.
inline int nibble_32(const std::uint8_t* qs, int j) noexcept { return j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4; }

/// The 5-bit quant j of a q5_0 / q5_1 block: nibble | 5th bit (bit j of qh) << 4.
template <class B>
int q5_value(const B& b, int j) noexcept {
  return nibble_32(b.qs, j) | static_cast<int>(((load_qh(b.qh) >> j) & 1u) << 4);
}

}  // namespace detail

inline float vec_dot(const block_q8_0* w, const block_q8_sum* a, index_t n_blocks, simd::scalar) noexcept {
  return detail::vec_dot_32<0>(w, a, n_blocks, [](const block_q8_0& b, int j) { return int{b.qs[j]}; });
}

inline float vec_dot(const block_q4_0* w, const block_q8_sum* a, index_t n_blocks, simd::scalar) noexcept {
  return detail::vec_dot_32<8>(w, a, n_blocks, [](const block_q4_0& b, int j) { return detail::nibble_32(b.qs, j); });
}

inline float vec_dot(const block_q4_1* w, const block_q8_sum* a, index_t n_blocks, simd::scalar) noexcept {
  return detail::vec_dot_32<0>(w, a, n_blocks, [](const block_q4_1& b, int j) { return detail::nibble_32(b.qs, j); });
}

inline float vec_dot(const block_q5_0* w, const block_q8_sum* a, index_t n_blocks, simd::scalar) noexcept {
  return detail::vec_dot_32<16>(w, a, n_blocks, [](const block_q5_0& b, int j) { return detail::q5_value(b, j); });
}

inline float vec_dot(const block_q5_1* w, const block_q8_sum* a, index_t n_blocks, simd::scalar) noexcept {
  return detail::vec_dot_32<0>(w, a, n_blocks, [](const block_q5_1& b, int j) { return detail::q5_value(b, j); });
}

/// iq4_nl: the signed grid value kvalues_iq4nl[nibble] in place of a quant, as q8_0's.
inline float vec_dot(const block_iq4_nl* w, const block_q8_sum* a, index_t n_blocks, simd::scalar) noexcept {
  return detail::vec_dot_32<0>(w, a, n_blocks, [](const block_iq4_nl& b, int j) {
    return int{kvalues_iq4nl[detail::nibble_32(b.qs, j)]};
  });
}

/// iq4_xs against q8_K: per block Σ_s (scale_s - 32) Σ_l kvalues_iq4nl[q] a over the 8 sub-blocks
/// of 32, in integers, times d_w · d_a.
inline float vec_dot(const block_iq4_xs* w, const block_q8_K* a, index_t n_blocks, simd::scalar) noexcept {
  float sum = 0.f;
  for (index_t b = 0; b < n_blocks; ++b) {
    int isum = 0;
    for (int ib = 0; ib < 8; ++ib) {
      int s = 0;
      for (int j = 0; j < 32; ++j) s += kvalues_iq4nl[detail::nibble_32(w[b].qs + 16 * ib, j)] * a[b].qs[32 * ib + j];
      isum += (tessera::detail::iq4_xs_scale(w[b], ib) - 32) * s;
    }
    sum += to_float(w[b].d) * a[b].d * static_cast<float>(isum);
  }
  return sum;
}

namespace detail {
/// q4_K / q5_K against q8_K: per block Σ_s sc_s Σ_l q a and Σ_s m_s Σ_l a over the 8 sub-blocks of
/// 32, exact in integers, then d · a.d and dmin · a.d. quant(block, j) gives the quant of element j.
template <class B, class Quant>
float k4_vec_dot(const B* w, const block_q8_K* a, index_t n_blocks, Quant quant) noexcept {
  float sum = 0.f;
  for (index_t b = 0; b < n_blocks; ++b) {
    int scaled = 0, mins = 0;
    for (int s = 0; s < 8; ++s) {
      std::uint8_t sc, m;
      scale_min_k4(s, w[b].scales, sc, m);
      int dot = 0;
      for (int l = 0; l < 32; ++l) dot += quant(w[b], 32 * s + l) * a[b].qs[32 * s + l];
      scaled += sc * dot;
      mins += m * (a[b].bsums[2 * s] + a[b].bsums[2 * s + 1]);
    }
    sum += a[b].d * (to_float(w[b].d) * static_cast<float>(scaled) - to_float(w[b].dmin) * static_cast<float>(mins));
  }
  return sum;
}

/// Element j's nibble of a q4_K / q5_K block: sub-block pair j / 64, low nibbles for its first 32.
inline int k4_nibble(const std::uint8_t* qs, int j) noexcept { return (qs[32 * (j / 64) + j % 32] >> (j % 64 < 32 ? 0 : 4)) & 0xF; }
}  // namespace detail

inline float vec_dot(const block_q4_K* w, const block_q8_K* a, index_t n_blocks, simd::scalar) noexcept {
  return detail::k4_vec_dot(w, a, n_blocks, [](const block_q4_K& b, int j) { return detail::k4_nibble(b.qs, j); });
}

inline float vec_dot(const block_q5_K* w, const block_q8_K* a, index_t n_blocks, simd::scalar) noexcept {
  // as q4_K, plus bit s (the sub-block) of qh[j % 32] as the 5th bit
  return detail::k4_vec_dot(w, a, n_blocks, [](const block_q5_K& b, int j) {
    return detail::k4_nibble(b.qs, j) | (((b.qh[j % 32] >> (j / 32)) & 1) << 4);
  });
}

inline float vec_dot(const block_q6_K* w, const block_q8_K* a, index_t n_blocks, simd::scalar) noexcept {
  float sum = 0.f;
  for (index_t b = 0; b < n_blocks; ++b) {
    int isum = 0;  // Σ_sub sc (Σ q a - 32 Σ a)
    for (int half = 0; half < 2; ++half) {
      const std::uint8_t* ql = w[b].ql + 64 * half;
      const std::uint8_t* qh = w[b].qh + 32 * half;
      for (int g = 0; g < 4; ++g)      // 4 groups of 32: low/high nibbles of ql[0..32) / ql[32..64)
        for (int s = 0; s < 2; ++s) {  // 2 sub-blocks of 16 per group
          const int sub = 8 * half + 2 * g + s;
          int dot = 0;
          for (int l = 16 * s; l < 16 * s + 16; ++l) {
            const int low = (ql[l + 32 * (g % 2)] >> (4 * (g / 2))) & 0xF;
            const int q = low | (((qh[l] >> (2 * g)) & 3) << 4);
            dot += q * a[b].qs[128 * half + 32 * g + l];
          }
          isum += w[b].scales[sub] * (dot - 32 * a[b].bsums[sub]);
        }
    }
    sum += a[b].d * to_float(w[b].d) * static_cast<float>(isum);
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// AVX2 bodies.

namespace detail {
#if defined(__AVX2__)

/// 8 sums of 4 products u8 × i8 (no saturation for the operands above).
TESSERA_ALWAYS_INLINE __m256i dot_u8i8(__m256i u, __m256i s) noexcept {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

/// 16 packed bytes → 32 nibbles: the low nibbles (elements 0..15), then the high (16..31).
TESSERA_ALWAYS_INLINE __m256i nibbles_32(const std::uint8_t* qs) noexcept {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(b), _mm_srli_epi16(b, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

/// The 32 bits of a q5 block's qh → 32 bytes, 0x10 where the bit is set.
TESSERA_ALWAYS_INLINE __m256i fifth_bits_32(const std::uint8_t* qh) noexcept {
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(load_qh(qh))),
                                            _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202,
                                                               0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit), _mm256_set1_epi8(0x10));
}

TESSERA_ALWAYS_INLINE __m256i load_256(const void* p) noexcept {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

/// An int in lane 0, zeros elsewhere.
TESSERA_ALWAYS_INLINE __m256i lane0(int v) noexcept { return _mm256_setr_epi32(v, 0, 0, 0, 0, 0, 0, 0); }

/// Σ_b dd_b · p_b (+ Σ_b extra_b) over n blocks of 32: block(b, dd, extra) returns p_b, 8 int32
/// lanes summing to block b's integer dot, and sets its scale dd_b and a float term extra_b (the
/// mins of q4_1 / q5_1). Four blocks per step in four independent FMA chains: with one, the FMA
/// latency (4 cycles on Zen 3) bounded the loop to one block per 4 cycles, 1.7 ns per q4_0 block.
template <bool Extra, class Block>
TESSERA_ALWAYS_INLINE float sum_blocks_32(index_t n_blocks, Block block) noexcept {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  float extra[4] = {0.f, 0.f, 0.f, 0.f};
  index_t b = 0;
  for (; b + 4 <= n_blocks; b += 4) {
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      float dd, e;
      const __m256i p = block(b + u, dd, e);
      acc[u] = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(p), acc[u]);
      if constexpr (Extra) extra[u] += e;
    }
  }
  for (; b < n_blocks; ++b) {
    float dd, e;
    const __m256i p = block(b, dd, e);
    acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(p), acc[0]);
    if constexpr (Extra) extra[0] += e;
  }
  const float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  if constexpr (Extra) return sum + ((extra[0] + extra[1]) + (extra[2] + extra[3]));
  return sum;
}

/// The 16 iq4 grid values in both 128-bit lanes: vpshufb's table (a nibble → its value).
TESSERA_ALWAYS_INLINE __m256i iq4_grid() noexcept {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kvalues_iq4nl)));
}

/// The blocks whose 32 quants are signed bytes, in element order: q8_0 stores them; iq4_nl stores
/// nibbles that one vpshufb turns into their grid values. Their dot products are q8_0's.
template <class B>
concept signed_quant_block = std::is_same_v<B, block_q8_0> || std::is_same_v<B, block_iq4_nl>;

TESSERA_ALWAYS_INLINE __m256i signed_quants(const block_q8_0& b) noexcept { return load_256(b.qs); }
TESSERA_ALWAYS_INLINE __m256i signed_quants(const block_iq4_nl& b) noexcept {
  return _mm256_shuffle_epi8(iq4_grid(), nibbles_32(b.qs));
}

template <signed_quant_block B>
float vec_dot_avx2(const B* w, const block_q8_sum* a, index_t n_blocks) noexcept {
  return sum_blocks_32<false>(n_blocks, [w, a](index_t b, float& dd, float&) {
    const __m256i wq = signed_quants(w[b]), aq = load_256(a[b].qs);
    dd = half_to_float(w[b].d) * a[b].d;
    return dot_u8i8(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(aq, wq));  // |w| · (a · sign w)
  });
}

/// iq4_xs: per sub-block the grid values' products as i16 pair sums (|w|, |a| <= 127: at most
/// 32258), times the sub-block's scale - 32 and widened by one vpmaddwd; one FMA per block.
inline float vec_dot_avx2(const block_iq4_xs* w, const block_q8_K* a, index_t n_blocks) noexcept {
  const __m256i grid = iq4_grid();
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (index_t b = 0; b < n_blocks; ++b) {
    __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int ib = 0; ib < 8; ++ib) {
      const __m256i q = _mm256_shuffle_epi8(grid, nibbles_32(w[b].qs + 16 * ib));
      const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(load_256(a[b].qs + 32 * ib), q));
      const auto ls = static_cast<short>(tessera::detail::iq4_xs_scale(w[b], ib) - 32);
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, _mm256_set1_epi16(ls)));
    }
    acc[b & 1] = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(w[b].d) * a[b].d), _mm256_cvtepi32_ps(isum), acc[b & 1]);
  }
  return hsum(_mm256_add_ps(acc[0], acc[1]));
}

inline float vec_dot_avx2(const block_q4_0* w, const block_q8_sum* a, index_t n_blocks) noexcept {
  return sum_blocks_32<false>(n_blocks, [w, a](index_t b, float& dd, float&) {
    dd = half_to_float(w[b].d) * a[b].d;
    return _mm256_sub_epi32(dot_u8i8(nibbles_32(w[b].qs), load_256(a[b].qs)), lane0(8 * a[b].sum));
  });
}

inline float vec_dot_avx2(const block_q4_1* w, const block_q8_sum* a, index_t n_blocks) noexcept {
  return sum_blocks_32<true>(n_blocks, [w, a](index_t b, float& dd, float& mins) {
    dd = half_to_float(w[b].d) * a[b].d;
    mins = half_to_float(w[b].m) * a[b].d * static_cast<float>(a[b].sum);
    return dot_u8i8(nibbles_32(w[b].qs), load_256(a[b].qs));
  });
}

inline float vec_dot_avx2(const block_q5_0* w, const block_q8_sum* a, index_t n_blocks) noexcept {
  return sum_blocks_32<false>(n_blocks, [w, a](index_t b, float& dd, float&) {
    dd = half_to_float(w[b].d) * a[b].d;
    const __m256i q = _mm256_or_si256(nibbles_32(w[b].qs), fifth_bits_32(w[b].qh));
    return _mm256_sub_epi32(dot_u8i8(q, load_256(a[b].qs)), lane0(16 * a[b].sum));
  });
}

inline float vec_dot_avx2(const block_q5_1* w, const block_q8_sum* a, index_t n_blocks) noexcept {
  return sum_blocks_32<true>(n_blocks, [w, a](index_t b, float& dd, float& mins) {
    dd = half_to_float(w[b].d) * a[b].d;
    mins = half_to_float(w[b].m) * a[b].d * static_cast<float>(a[b].sum);
    const __m256i q = _mm256_or_si256(nibbles_32(w[b].qs), fifth_bits_32(w[b].qh));
    return dot_u8i8(q, load_256(a[b].qs));
  });
}

/// The 8 6-bit scales (lanes 0-7) and mins (lanes 8-15) of a q4_K / q5_K block as int16, unpacked
/// from their 12 bytes four at a time (get_scale_min_k4 for all j at once).
TESSERA_ALWAYS_INLINE __m256i k4_scales_mins(const std::uint8_t* packed) noexcept {
  std::uint32_t u[3];
  std::memcpy(u, packed, 12);
  const std::uint32_t sc_lo = u[0] & 0x3f3f3f3fu, m_lo = u[1] & 0x3f3f3f3fu;  // j < 4: the low 6 bits
  // j >= 4: a nibble of byte j + 4, and the top 2 bits of byte j - 4 (scales) or j (mins) as bits 4-5
  const std::uint32_t sc_hi = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u);
  const std::uint32_t m_hi = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u);
  const __m128i bytes = _mm_setr_epi32(static_cast<int>(sc_lo), static_cast<int>(sc_hi), static_cast<int>(m_lo),
                                       static_cast<int>(m_hi));
  return _mm256_cvtepu8_epi16(bytes);
}

/// Shuffle masks that broadcast int16 element s (0..7) of a 128-bit lane to all its elements.
TESSERA_ALWAYS_INLINE __m256i broadcast_i16_mask(int s) noexcept {
  return _mm256_set1_epi16(static_cast<short>(((2 * s + 1) << 8) | (2 * s)));
}

/// Σ_s m_s (bsums[2s] + bsums[2s+1]) as 4 int32 lanes, mins16: the 8 mins as int16.
TESSERA_ALWAYS_INLINE __m128i k4_mins(__m128i mins16, const block_q8_K& a) noexcept {
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums));
  const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums + 8));
  return _mm_madd_epi16(mins16, _mm_hadd_epi16(lo, hi));  // pair sums <= 2 · 16 · 127: no overflow
}

/// The quants of sub-blocks 2p (lo) and 2p + 1 (hi) of a q4_K block: low and high nibbles.
TESSERA_ALWAYS_INLINE void k4_quants(const block_q4_K& w, int p, __m256i& lo, __m256i& hi) noexcept {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i q = load_256(w.qs + 32 * p);
  lo = _mm256_and_si256(q, low4);
  hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
}

/// As for q4_K, plus the 5th bits: bit 2p of qh[l] for element l of sub-block 2p, bit 2p + 1 for
/// sub-block 2p + 1, shifted to bit 4 of each byte (16-bit shifts; the mask drops what crossed a byte).
TESSERA_ALWAYS_INLINE void k4_quants(const block_q5_K& w, int p, __m256i& lo, __m256i& hi) noexcept {
  const __m256i low4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
  const __m256i qh = load_256(w.qh);
  const __m256i h_lo = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * p), 4), bit4);
  const __m256i h_hi = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * p + 1), 4), bit4);
  const __m256i q = load_256(w.qs + 32 * p);
  lo = _mm256_or_si256(_mm256_and_si256(q, low4), h_lo);
  hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low4), h_hi);
}

/// q4_K / q5_K, one weight row against M activation rows (a + i · lda), out[i · ldo] for i < M:
/// Σ_b (d · a.d · Σ_s sc_s dot_s - dmin · a.d · Σ_s m_s asum_s). A block's scales, mins and quants
/// are unpacked once for the M rows.
template <int M, class B>
void vec_dot_k4(const B* w, const block_q8_K* a, index_t lda, index_t n_blocks, float* out, index_t ldo) noexcept {
  __m256 acc[M];
  __m128 acc_m[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps(), acc_m[i] = _mm_setzero_ps();
  const __m256i spread_even[4] = {broadcast_i16_mask(0), broadcast_i16_mask(2), broadcast_i16_mask(4), broadcast_i16_mask(6)};
  const __m256i spread_odd[4] = {broadcast_i16_mask(1), broadcast_i16_mask(3), broadcast_i16_mask(5), broadcast_i16_mask(7)};
  for (index_t b = 0; b < n_blocks; ++b) {
    const __m256i sm = k4_scales_mins(w[b].scales);
    const __m256i scales = _mm256_permute2x128_si256(sm, sm, 0x00);  // the 8 scales in both lanes
    __m256i isum[M];
    for (int i = 0; i < M; ++i) isum[i] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      __m256i lo, hi;
      k4_quants(w[b], p, lo, hi);
      const __m256i sc_lo = _mm256_shuffle_epi8(scales, spread_even[p]), sc_hi = _mm256_shuffle_epi8(scales, spread_odd[p]);
#pragma GCC unroll 4
      for (int i = 0; i < M; ++i) {
        const std::int8_t* aq = a[i * lda + b].qs + 64 * p;
        const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load_256(aq)), sc_lo);
        const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load_256(aq + 32)), sc_hi);
        isum[i] = _mm256_add_epi32(isum[i], _mm256_add_epi32(plo, phi));
      }
    }
    const float d = half_to_float(w[b].d), dmin = half_to_float(w[b].dmin);
    const __m128i mins16 = _mm256_extracti128_si256(sm, 1);
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      const block_q8_K& ab = a[i * lda + b];
      acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(ab.d * d), _mm256_cvtepi32_ps(isum[i]), acc[i]);
      acc_m[i] = _mm_fmadd_ps(_mm_set1_ps(ab.d * dmin), _mm_cvtepi32_ps(k4_mins(mins16, ab)), acc_m[i]);
    }
  }
  for (int i = 0; i < M; ++i) {
    __m128 m = _mm_add_ps(acc_m[i], _mm_movehl_ps(acc_m[i], acc_m[i]));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    out[i * ldo] = hsum(acc[i]) - _mm_cvtss_f32(m);
  }
}

inline float vec_dot_avx2(const block_q4_K* w, const block_q8_K* a, index_t n_blocks) noexcept {
  float out;
  vec_dot_k4<1>(w, a, 0, n_blocks, &out, 0);
  return out;
}

inline float vec_dot_avx2(const block_q5_K* w, const block_q8_K* a, index_t n_blocks) noexcept {
  float out;
  vec_dot_k4<1>(w, a, 0, n_blocks, &out, 0);
  return out;
}

/// q6_K, one weight row against M activation rows (a + i · lda), out[i · ldo] for i < M:
/// Σ_b d · a.d · Σ_sub sc (Σ q a - 32 Σ a); a block's quants and scales unpacked once for the M rows.
template <int M>
void vec_dot_q6k(const block_q6_K* w, const block_q8_K* a, index_t lda, index_t n_blocks, float* out,
                 index_t ldo) noexcept {
  __m256 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F), high2 = _mm256_set1_epi8(0x30);
  // shuffles that spread scale 2g (lanes 0-7) and 2g + 1 (lanes 8-15) of 8 16-bit scales
  auto spread = [](int g) {
    return _mm256_setr_m128i(_mm_set1_epi16(static_cast<short>(((4 * g + 1) << 8) | (4 * g))),
                             _mm_set1_epi16(static_cast<short>(((4 * g + 3) << 8) | (4 * g + 2))));
  };
  const __m256i spread_g[4] = {spread(0), spread(1), spread(2), spread(3)};
  for (index_t b = 0; b < n_blocks; ++b) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].scales)));
    __m256i isum[M];
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i)  // - Σ_sub sc · 32 · bsums: the offset of the 6-bit quants
      isum[i] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                 _mm256_slli_epi32(_mm256_madd_epi16(sc16, load_256(a[i * lda + b].bsums)), 5));
#pragma GCC unroll 2
    for (int half = 0; half < 2; ++half) {
      const std::uint8_t* ql = w[b].ql + 64 * half;
      const __m256i ql0 = load_256(ql), ql1 = load_256(ql + 32), qh = load_256(w[b].qh + 32 * half);
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), high2)),
          _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), high2)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, high2)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                          _mm256_and_si256(_mm256_srli_epi16(qh, 2), high2))};
      const __m256i scales = half == 0 ? _mm256_permute2x128_si256(sc16, sc16, 0x00)   // scales 0-7 in both lanes
                                       : _mm256_permute2x128_si256(sc16, sc16, 0x11);  // scales 8-15
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) {
        const __m256i sc = _mm256_shuffle_epi8(scales, spread_g[g]);
#pragma GCC unroll 4
        for (int i = 0; i < M; ++i) {
          const __m256i p = _mm256_maddubs_epi16(q[g], load_256(a[i * lda + b].qs + 128 * half + 32 * g));
          isum[i] = _mm256_add_epi32(isum[i], _mm256_madd_epi16(p, sc));
        }
      }
    }
    const float d = half_to_float(w[b].d);
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i)
      acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(a[i * lda + b].d * d), _mm256_cvtepi32_ps(isum[i]), acc[i]);
  }
  for (int i = 0; i < M; ++i) out[i * ldo] = hsum(acc[i]);
}

inline float vec_dot_avx2(const block_q6_K* w, const block_q8_K* a, index_t n_blocks) noexcept {
  float out;
  vec_dot_q6k<1>(w, a, 0, n_blocks, &out, 0);
  return out;
}

#endif
}  // namespace detail

/// Σ dequantize(w)_j · dequantize(a)_j over n_blocks blocks: the Arch's body (AVX2 where the
/// target has it), else the scalar reference.
template <quant_block B, class Arch>
float vec_dot(const B* w, const activation_block_t<B>* a, index_t n_blocks, Arch) noexcept {
#if defined(__AVX2__)
  if constexpr (detail::quant_x86<Arch>()) return detail::vec_dot_avx2(w, a, n_blocks);
#endif
  return vec_dot(w, a, n_blocks, simd::scalar{});
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
