// tessera/core/blocks.hpp: ggml's quantized block layouts as storage types, their scalar
// dequantization (bit-exact with ggml's dequantize_row_*) and reference quantizers (ggml's
// quantize_row_*_ref, without an importance matrix).
//
// A block holds block_size consecutive elements of a row: a scale (and a min) and packed integers.
// Like f16 / bf16 (core/dtype.hpp) a block is a storage type: it holds bits and converts to and
// from float; arithmetic happens in the kernels (kernels/quant_dot.hpp). A quantized (n, k) weight
// is a tensor_view<const block_q4_K, 2> with extents (n, k / 256): rows of blocks, back to back as
// in a GGUF file. GGUF aligns a tensor's start to 32 bytes only, so weight blocks have alignof 2
// (their f16 fields) and any row may start at any even address.
//
// Layouts (bytes, little-endian; QK = elements per block):
//   q4_0 (32, 18):  f16 d | u8 qs[16]            x = (nibble - 8) * d; low nibbles → 0..15, high → 16..31
//   q4_1 (32, 20):  f16 d, f16 m | u8 qs[16]     x = nibble * d + m
//   q5_0 (32, 22):  f16 d | u8 qh[4] | u8 qs[16] x = ((nibble | bit << 4) - 16) * d; bit j of qh → x[j]
//   q5_1 (32, 24):  f16 d, f16 m | qh[4] | qs    x = (nibble | bit << 4) * d + m
//   q8_0 (32, 34):  f16 d | i8 qs[32]            x = q * d
//   q4_K (256, 144): f16 d, f16 dmin | u8 scales[12] (8 × 6-bit scale, 8 × 6-bit min) | u8 qs[128]
//                    8 sub-blocks of 32: x = d * sc * nibble - dmin * m
//   q5_K (256, 176): as q4_K plus u8 qh[32] before qs: the 5th bit of element l of sub-block
//                    pair p comes from qh[l] bit 2p (low nibbles) / 2p+1 (high nibbles)
//   q6_K (256, 210): u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d
//                    16 sub-blocks of 16: x = d * scale * (6-bit q - 32)
//   iq4_nl (32, 18):  f16 d | u8 qs[16]          x = d * kvalues_iq4nl[nibble] (a non-linear 4-bit grid)
//   iq4_xs (256, 136): f16 d | u16 scales_h | u8 scales_l[4] | u8 qs[128]
//                    8 sub-blocks of 32 as iq4_nl, each scaled by d * (6-bit scale - 32)
//                    (low 4 bits from scales_l, high 2 from scales_h). Storage and
//                    dequantization only: computed as f32 after loading (no quantizer, no kernel).
// Activation blocks (what the kernels quantize a row of activations into; never in a file):
//   q8_K (256, 292): f32 d | i8 qs[256] | i16 bsums[16]   x = q * d; bsums: sums of 16 quants
//   q8_sum (32, 40): f32 d | i32 sum | i8 qs[32]          x = q * d; sum: the sum of the 32 quants
//     (ggml's q8_1 keeps f16(d · sum); an integer sum keeps the min and offset terms of the dot
//     products exact, and an f32 d saves a conversion per block in the kernels.)
//
// Dequantization: every product in these formulas is exact in float (an f16 scale has 11
// significant bits, the 6/8-bit sub-scales and 4/5/6-bit quants add at most 13 more), so at most
// one rounding happens per element and the result does not depend on whether the compiler
// contracts `a * b - c` into an FMA.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include <tessera/config.hpp>
#include <tessera/core/dtype.hpp>

namespace tessera {
inline namespace v0 {

/// 32 signed 8-bit quants with an f16 scale.
struct block_q8_0 {
  static constexpr index_t block_size = 32;
  static constexpr std::string_view name = "q8_0";
  f16 d;
  std::int8_t qs[32];
};

/// 32 4-bit quants (offset 8) with an f16 scale.
struct block_q4_0 {
  static constexpr index_t block_size = 32;
  static constexpr std::string_view name = "q4_0";
  f16 d;
  std::uint8_t qs[16];
};

/// 32 4-bit quants with an f16 scale and min.
struct block_q4_1 {
  static constexpr index_t block_size = 32;
  static constexpr std::string_view name = "q4_1";
  f16 d, m;
  std::uint8_t qs[16];
};

/// 32 5-bit quants (offset 16) with an f16 scale: low nibbles in qs, the 5th bits in qh.
struct block_q5_0 {
  static constexpr index_t block_size = 32;
  static constexpr std::string_view name = "q5_0";
  f16 d;
  std::uint8_t qh[4];
  std::uint8_t qs[16];
};

/// 32 5-bit quants with an f16 scale and min.
struct block_q5_1 {
  static constexpr index_t block_size = 32;
  static constexpr std::string_view name = "q5_1";
  f16 d, m;
  std::uint8_t qh[4];
  std::uint8_t qs[16];
};

/// 256 4-bit quants in 8 sub-blocks of 32, each with a 6-bit scale and min (times d / dmin).
struct block_q4_K {
  static constexpr index_t block_size = 256;
  static constexpr std::string_view name = "q4_K";
  f16 d, dmin;
  std::uint8_t scales[12];
  std::uint8_t qs[128];
};

/// 256 5-bit quants in 8 sub-blocks of 32, each with a 6-bit scale and min.
struct block_q5_K {
  static constexpr index_t block_size = 256;
  static constexpr std::string_view name = "q5_K";
  f16 d, dmin;
  std::uint8_t scales[12];
  std::uint8_t qh[32];
  std::uint8_t qs[128];
};

/// 256 6-bit quants (offset 32) in 16 sub-blocks of 16, each with a signed 8-bit scale.
struct block_q6_K {
  static constexpr index_t block_size = 256;
  static constexpr std::string_view name = "q6_K";
  std::uint8_t ql[128];
  std::uint8_t qh[64];
  std::int8_t scales[16];
  f16 d;
};

/// The 16 values of iq4_nl / iq4_xs quants (ggml's kvalues_iq4nl).
inline constexpr std::int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                  1,    13,   25,  38,  53,  69,  89,  113};

/// 32 4-bit indices into kvalues_iq4nl with an f16 scale.
struct block_iq4_nl {
  static constexpr index_t block_size = 32;
  static constexpr std::string_view name = "iq4_nl";
  f16 d;
  std::uint8_t qs[16];
};

/// 256 4-bit indices into kvalues_iq4nl: an f16 scale and a 6-bit scale per sub-block of 32.
struct block_iq4_xs {
  static constexpr index_t block_size = 256;
  static constexpr std::string_view name = "iq4_xs";
  f16 d;
  std::uint16_t scales_h;
  std::uint8_t scales_l[4];
  std::uint8_t qs[128];
};

/// Activations for the K-quant dot products: 256 8-bit quants, a float scale, sums of 16.
struct block_q8_K {
  static constexpr index_t block_size = 256;
  static constexpr std::string_view name = "q8_K";
  float d;
  std::int8_t qs[256];
  std::int16_t bsums[16];
};

/// Activations for the 32-element formats' dot products: 32 8-bit quants, a float scale, their sum.
struct block_q8_sum {
  static constexpr index_t block_size = 32;
  static constexpr std::string_view name = "q8_sum";
  float d;
  std::int32_t sum;
  std::int8_t qs[32];
};

static_assert(sizeof(block_q8_0) == 34 && sizeof(block_q4_0) == 18 && sizeof(block_q4_1) == 20 &&
                  sizeof(block_q5_0) == 22 && sizeof(block_q5_1) == 24 && sizeof(block_q4_K) == 144 &&
                  sizeof(block_q5_K) == 176 && sizeof(block_q6_K) == 210 && sizeof(block_q8_K) == 292,
              "block sizes must equal ggml's");
static_assert(alignof(block_q8_0) <= 2 && alignof(block_q4_0) <= 2 && alignof(block_q4_1) <= 2 &&
                  alignof(block_q5_0) <= 2 && alignof(block_q5_1) <= 2 && alignof(block_q4_K) <= 2 &&
                  alignof(block_q5_K) <= 2 && alignof(block_q6_K) <= 2,
              "weight blocks must fit GGUF rows at any even address");
static_assert(sizeof(block_q8_sum) == 40, "block_q8_sum: no padding");
static_assert(sizeof(block_iq4_nl) == 18 && sizeof(block_iq4_xs) == 136 && alignof(block_iq4_xs) <= 2,
              "iq4 blocks: ggml's layouts");

/// A block type: trivially copyable, with its element count and name.
template <class T>
concept quant_block = std::is_trivially_copyable_v<T> && requires {
  { T::block_size } -> std::convertible_to<index_t>;
  { T::name } -> std::convertible_to<std::string_view>;
};

/// Row-interleaved blocks: block_size elements of each of `rows` rows of row_block.
template <class T>
concept interleaved_block = std::is_trivially_copyable_v<T> && requires {
  { T::block_size } -> std::convertible_to<index_t>;
  { T::rows } -> std::convertible_to<index_t>;
  typename T::row_block;
};

namespace detail {
template <class T>
constexpr index_t block_elements() noexcept {
  if constexpr (quant_block<T> || interleaved_block<T>) return T::block_size;
  else return 1;
}
template <class T>
constexpr index_t block_rows() noexcept {
  if constexpr (interleaved_block<T>) return T::rows;
  else return 1;
}
}  // namespace detail

/// Elements one stored value of T holds along a row: 1 for float / f16 / bf16, block_size for
/// blocks.
template <class T>
inline constexpr index_t block_elements_v = detail::block_elements<std::remove_const_t<T>>();

/// Rows one stored value of T spans: `rows` for row-interleaved blocks, else 1.
template <class T>
inline constexpr index_t block_rows_v = detail::block_rows<std::remove_const_t<T>>();


// ---------------------------------------------------------------------------------------------
// Dequantization: blocks → f32, formula for formula as ggml's dequantize_row_* (bit-exact).

namespace detail {

/// The j-th (0..7) 6-bit scale and min of a q4_K / q5_K block (ggml's get_scale_min_k4).
inline void scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& sc, std::uint8_t& m) noexcept {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

/// The 32 bits of a q5 block's qh (bit j: the 5th bit of element j).
inline std::uint32_t load_qh(const std::uint8_t* qh) noexcept {
  std::uint32_t h;
  std::memcpy(&h, qh, 4);
  return h;
}

}  // namespace detail

inline void dequantize(const block_q4_0* x, float* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, y += 32) {
    const float d = to_float(x[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((x[i].qs[j] & 0x0F) - 8) * d;
      y[j + 16] = static_cast<float>((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

inline void dequantize(const block_q4_1* x, float* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, y += 32) {
    const float d = to_float(x[i].d), m = to_float(x[i].m);
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(x[i].qs[j] & 0x0F) * d + m;
      y[j + 16] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
    }
  }
}

inline void dequantize(const block_q5_0* x, float* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, y += 32) {
    const float d = to_float(x[i].d);
    const std::uint32_t qh = detail::load_qh(x[i].qh);
    for (int j = 0; j < 16; ++j) {
      const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10);
      const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      y[j] = static_cast<float>(((x[i].qs[j] & 0x0F) | h0) - 16) * d;
      y[j + 16] = static_cast<float>(((x[i].qs[j] >> 4) | h1) - 16) * d;
    }
  }
}

inline void dequantize(const block_q5_1* x, float* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, y += 32) {
    const float d = to_float(x[i].d), m = to_float(x[i].m);
    const std::uint32_t qh = detail::load_qh(x[i].qh);
    for (int j = 0; j < 16; ++j) {
      const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10);
      const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      y[j] = static_cast<float>((x[i].qs[j] & 0x0F) | h0) * d + m;
      y[j + 16] = static_cast<float>((x[i].qs[j] >> 4) | h1) * d + m;
    }
  }
}

inline void dequantize(const block_q8_0* x, float* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, y += 32) {
    const float d = to_float(x[i].d);
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

inline void dequantize(const block_q4_K* x, float* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i) {
    const float d = to_float(x[i].d), dmin = to_float(x[i].dmin);
    const std::uint8_t* q = x[i].qs;
    for (int is = 0; is < 8; is += 2, q += 32) {
      std::uint8_t sc, m;
      detail::scale_min_k4(is, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      detail::scale_min_k4(is + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

inline void dequantize(const block_q5_K* x, float* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i) {
    const float d = to_float(x[i].d), dmin = to_float(x[i].dmin);
    const std::uint8_t* qh = x[i].qh;
    const std::uint8_t* ql = x[i].qs;
    std::uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32) {
      std::uint8_t sc, m;
      detail::scale_min_k4(is, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      detail::scale_min_k4(is + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      u1 = static_cast<std::uint8_t>(u1 << 2);
      u2 = static_cast<std::uint8_t>(u2 << 2);
    }
  }
}

inline void dequantize(const block_q6_K* x, float* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i) {
    const float d = to_float(x[i].d);
    const std::uint8_t* ql = x[i].ql;
    const std::uint8_t* qh = x[i].qh;
    const std::int8_t* sc = x[i].scales;
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

inline void dequantize(const block_iq4_nl* x, float* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, y += 32) {
    const float d = to_float(x[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(kvalues_iq4nl[x[i].qs[j] & 0xF]);
      y[j + 16] = d * static_cast<float>(kvalues_iq4nl[x[i].qs[j] >> 4]);
    }
  }
}

namespace detail {
/// The scale of sub-block ib (0 .. 7) of an iq4_xs block: 6 bits, 4 from scales_l, 2 from scales_h,
/// stored with an offset of 32 (the sub-block's values are d · (scale - 32) · kvalues_iq4nl[q]).
inline int iq4_xs_scale(const block_iq4_xs& b, int ib) noexcept {
  return ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b.scales_h >> (2 * ib)) & 3) << 4);
}
}  // namespace detail

inline void dequantize(const block_iq4_xs* x, float* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i) {
    const float d = to_float(x[i].d);
    const std::uint8_t* qs = x[i].qs;
    for (int ib = 0; ib < 8; ++ib, y += 32, qs += 16) {
      const float dl = d * static_cast<float>(detail::iq4_xs_scale(x[i], ib) - 32);
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * static_cast<float>(kvalues_iq4nl[qs[j] & 0xF]);
        y[j + 16] = dl * static_cast<float>(kvalues_iq4nl[qs[j] >> 4]);
      }
    }
  }
}

inline void dequantize(const block_q8_K* x, float* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, y += 256)
    for (int j = 0; j < 256; ++j) y[j] = x[i].d * static_cast<float>(x[i].qs[j]);
}

inline void dequantize(const block_q8_sum* x, float* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, y += 32)
    for (int j = 0; j < 32; ++j) y[j] = x[i].d * static_cast<float>(x[i].qs[j]);
}

// ggml builds these without FMA contraction: so must we, whatever -march the includer uses.
#if defined(__clang__)
#pragma float_control(push)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
// ---------------------------------------------------------------------------------------------
// Reference quantizers: f32 → blocks, as ggml's quantize_row_*_ref (deterministic, scalar; used to
// write files and in tests). x holds n_blocks * block_size floats.

namespace detail {

/// Round to nearest, ties to even (ggml's nearest_int: the float adder's rounding), |x| < 2^22.
inline int nearest_int(float x) noexcept {
  return static_cast<int>(std::nearbyint(x));
}

/// The element of largest magnitude, with its sign (the first one on ties), and its magnitude.
inline float signed_absmax(const float* x, int n, float& amax) noexcept {
  float max = 0.f;
  amax = 0.f;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  return max;
}

inline float max_abs(const float* x, int n) noexcept {
  float amax = 0.f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}

/// Symmetric quants L[i] in [0, 2 nmax) (offset nmax) of n values and their scale, minimizing the
/// squared error weighted by x² (ggml's make_qx_quants with rmse_type 1, no importance weights):
/// the scale nmax / max, then 18 nearby scales, keeping the best weighted least-squares fit.
inline float make_qx_quants(int n, int nmax, const float* x, std::int8_t* L) noexcept {
  float amax;
  const float max = signed_absmax(x, n, amax);
  if (amax < 1e-15f) {  // all (nearly) zero
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  auto fit = [&](float iscale, float& sumlx, float& suml2) {
    sumlx = suml2 = 0.f;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * static_cast<float>(l);
      suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
  };
  auto assign = [&](float iscale) {
    for (int i = 0; i < n; ++i)
      L[i] = static_cast<std::int8_t>(nmax + std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
  };
  float iscale = -static_cast<float>(nmax) / max;
  float sumlx, suml2;
  fit(iscale, sumlx, suml2);
  assign(iscale);
  float scale = suml2 != 0.f ? sumlx / suml2 : 0.f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    fit(iscale, sumlx, suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      assign(iscale);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/// Asymmetric quants L[i] in [0, nmax] of n values with a scale and a min <= 0 (returned negated in
/// the_min), minimizing the weighted squared error over nstep + 1 trial scales (ggml's
/// make_qkx2_quants with use_mad = false).
inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, std::uint8_t* L,
                              float& the_min, std::uint8_t* Laux, float rmin, float rdelta, int nstep) noexcept {
  float min = x[0], max = x[0];
  float sum_w = weights[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    the_min = -min;
    return 0.f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<std::uint8_t>(std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
    const float diff = scale * L[i] + min - x[i];
    best_error += weights[i] * (diff * diff);
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      Laux[i] = static_cast<std::uint8_t>(l);
      sum_l += weights[i] * static_cast<float>(l);
      sum_l2 += weights[i] * static_cast<float>(l) * static_cast<float>(l);
      sum_xl += weights[i] * static_cast<float>(l) * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * Laux[i] + this_min - x[i];
        cur_error += weights[i] * (diff * diff);
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  the_min = -min;
  return scale;
}

/// Scales and mins of 8 sub-blocks (32 each) of a q4_K / q5_K block: fits each sub-block with
/// make_qkx2_quants, packs the 6-bit scales and mins relative to the largest, sets d and dmin, and
/// requantizes every element against the stored (rounded) scales into L[0, 256) in [0, nmax].
template <class B>
void quantize_k4_scales(const float* x, B& y, std::uint8_t* L, int nmax, float rmin, float rdelta, int nstep) noexcept {
  std::uint8_t Laux[32];
  float weights[32], mins[8], scales[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, mins[j], Laux, rmin, rdelta, nstep);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  std::memset(y.scales, 0, 12);
  for (int j = 0; j < 8; ++j) {
    const auto ls = static_cast<std::uint8_t>(std::min(63, nearest_int(inv_scale * scales[j])));
    const auto lm = static_cast<std::uint8_t>(std::min(63, nearest_int(inv_min * mins[j])));
    if (j < 4) {
      y.scales[j] = ls;
      y.scales[j + 4] = lm;
    } else {
      y.scales[j + 4] = static_cast<std::uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      y.scales[j - 4] |= static_cast<std::uint8_t>((ls >> 4) << 6);
      y.scales[j] |= static_cast<std::uint8_t>((lm >> 4) << 6);
    }
  }
  y.d = f16(max_scale / 63.f);
  y.dmin = f16(max_min / 63.f);
  for (int j = 0; j < 8; ++j) {
    std::uint8_t sc, m;
    scale_min_k4(j, y.scales, sc, m);
    const float d = to_float(y.d) * sc;
    if (d == 0.f) continue;
    const float dm = to_float(y.dmin) * m;
    for (int l = 0; l < 32; ++l)
      L[32 * j + l] = static_cast<std::uint8_t>(std::clamp(nearest_int((x[32 * j + l] + dm) / d), 0, nmax));
  }
}

}  // namespace detail

/// q8_0: d = max|x| / 127, q = round(x / d) (half away from zero).
inline void quantize(const float* x, block_q8_0* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, x += 32) {
    const float d = detail::max_abs(x, 32) / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[i].d = f16(d);
    for (int j = 0; j < 32; ++j) y[i].qs[j] = static_cast<std::int8_t>(std::round(x[j] * id));
  }
}

/// q4_0: d = -max / 8 with max the element of largest magnitude (so it maps to -8 exactly).
inline void quantize(const float* x, block_q4_0* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, x += 32) {
    float amax;
    const float d = detail::signed_absmax(x, 32, amax) / -8.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[i].d = f16(d);
    for (int j = 0; j < 16; ++j) {
      // truncation of x/d + 8.5 toward zero: rounding, as ggml's (int8_t) cast does
      const int q0 = std::min(15, static_cast<int>(static_cast<std::int8_t>(x[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<std::int8_t>(x[j + 16] * id + 8.5f)));
      y[i].qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
    }
  }
}

/// q4_1: m = min, d = (max - min) / 15, q = round((x - m) / d).
inline void quantize(const float* x, block_q4_1* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, x += 32) {
    const auto [lo, hi] = std::minmax_element(x, x + 32);
    const float min = *lo, d = (*hi - *lo) / 15.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[i].d = f16(d);
    y[i].m = f16(min);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<std::int8_t>((x[j] - min) * id + 0.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<std::int8_t>((x[j + 16] - min) * id + 0.5f)));
      y[i].qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
    }
  }
}

/// q5_0: d = -max / 16, 5-bit quants with offset 16.
inline void quantize(const float* x, block_q5_0* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, x += 32) {
    float amax;
    const float d = detail::signed_absmax(x, 32, amax) / -16.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[i].d = f16(d);
    std::uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(31, static_cast<int>(static_cast<std::int8_t>(x[j] * id + 16.5f)));
      const int q1 = std::min(31, static_cast<int>(static_cast<std::int8_t>(x[j + 16] * id + 16.5f)));
      y[i].qs[j] = static_cast<std::uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<std::uint32_t>(q0 >> 4) << j;
      qh |= static_cast<std::uint32_t>(q1 >> 4) << (j + 16);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

/// q5_1: m = min, d = (max - min) / 31.
inline void quantize(const float* x, block_q5_1* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, x += 32) {
    const auto [lo, hi] = std::minmax_element(x, x + 32);
    const float min = *lo, d = (*hi - *lo) / 31.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[i].d = f16(d);
    y[i].m = f16(min);
    std::uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = static_cast<std::uint8_t>((x[j] - min) * id + 0.5f);
      const int q1 = static_cast<std::uint8_t>((x[j + 16] - min) * id + 0.5f);
      y[i].qs[j] = static_cast<std::uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<std::uint32_t>((q0 >> 4) & 1) << j;
      qh |= static_cast<std::uint32_t>((q1 >> 4) & 1) << (j + 16);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

/// q8_K: d = max / -127 with max the element of largest magnitude, q = nearest(x / d), bsums.
inline void quantize(const float* x, block_q8_K* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, x += 256) {
    float amax;
    const float max = detail::signed_absmax(x, 256, amax);
    if (amax == 0.f) {
      y[i] = block_q8_K{};
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < 256; ++j) y[i].qs[j] = static_cast<std::int8_t>(std::min(127, detail::nearest_int(iscale * x[j])));
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += y[i].qs[16 * j + l];
      y[i].bsums[j] = static_cast<std::int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

/// q8_sum (activations): d = max|x| / 127, q = nearest(x · 127 / max|x|) (ties to even), sum.
inline void quantize(const float* x, block_q8_sum* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, x += 32) {
    const float amax = detail::max_abs(x, 32);
    const float id = amax != 0.f ? 127.f / amax : 0.f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      y[i].qs[j] = static_cast<std::int8_t>(detail::nearest_int(x[j] * id));
      sum += y[i].qs[j];
    }
    y[i].d = amax / 127.f;
    y[i].sum = sum;
  }
}

/// q4_K: per sub-block scale and min fitted by make_qkx2_quants (weights |x| + rms), 6-bit each.
inline void quantize(const float* x, block_q4_K* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, x += 256) {
    std::uint8_t L[256];
    detail::quantize_k4_scales(x, y[i], L, 15, -1.f, 0.1f, 20);
    for (int j = 0; j < 256; j += 64)
      for (int l = 0; l < 32; ++l) y[i].qs[j / 2 + l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  }
}

/// q5_K: as q4_K with 5-bit quants, the 5th bits in qh.
inline void quantize(const float* x, block_q5_K* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, x += 256) {
    std::uint8_t L[256];
    detail::quantize_k4_scales(x, y[i], L, 31, -0.5f, 0.1f, 15);
    std::memset(y[i].qh, 0, 32);
    std::uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < 256; n += 64) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[n + j], l2 = L[n + j + 32];
        if (l1 > 15) l1 -= 16, y[i].qh[j] |= m1;
        if (l2 > 15) l2 -= 16, y[i].qh[j] |= m2;
        y[i].qs[n / 2 + j] = static_cast<std::uint8_t>(l1 | (l2 << 4));
      }
      m1 = static_cast<std::uint8_t>(m1 << 2);
      m2 = static_cast<std::uint8_t>(m2 << 2);
    }
  }
}

/// q6_K: per 16 elements a scale from make_qx_quants, stored as 8-bit relative to the largest.
inline void quantize(const float* x, block_q6_K* y, index_t n_blocks) noexcept {
  for (index_t i = 0; i < n_blocks; ++i, x += 256) {
    std::int8_t L[256];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
      scales[ib] = detail::make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
      if (std::fabs(scales[ib]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[ib]);
        max_scale = scales[ib];
      }
    }
    if (max_abs_scale < 1e-15f) {
      y[i] = block_q6_K{};
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[i].d = f16(1 / iscale);
    for (int ib = 0; ib < 16; ++ib)
      y[i].scales[ib] = static_cast<std::int8_t>(std::min(127, detail::nearest_int(iscale * scales[ib])));
    for (int j = 0; j < 16; ++j) {
      const float d = to_float(y[i].d) * static_cast<float>(y[i].scales[j]);
      if (d == 0.f) continue;
      for (int l = 0; l < 16; ++l)
        L[16 * j + l] = static_cast<std::int8_t>(std::clamp(detail::nearest_int(x[16 * j + l] / d), -32, 31) + 32);
    }
    std::uint8_t* ql = y[i].ql;
    std::uint8_t* qh = y[i].qh;
    for (int j = 0; j < 256; j += 128, ql += 64, qh += 32)
      for (int l = 0; l < 32; ++l) {
        const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
        ql[l] = static_cast<std::uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
        ql[l + 32] = static_cast<std::uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
        qh[l] = static_cast<std::uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
      }
  }
}

#if defined(__clang__)
#pragma float_control(pop)
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

/// A block type tessera can also write (core/blocks.hpp's quantize): every type but iq4_nl and
/// iq4_xs, which are read and computed in place only (their encoders search a non-linear grid).
template <class B>
concept encodable_block = quant_block<B> && requires(const float* x, B* y, index_t n) { quantize(x, y, n); };

}  // namespace v0
}  // namespace tessera
