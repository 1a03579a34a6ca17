// tessera/io/gguf_quants.hpp: ggml block formats → f32 (dequantization at load).
//
// Each function follows ggml's reference `dequantize_row_*` (ggml/src/ggml-quants.c) formula for
// formula, so results are bit-identical to ggml's. Every product in these formulas is exact in
// float (an f16 scale has 11 significant bits, the 6/8-bit sub-scales and 4/5/6-bit quants add at
// most 13 more), so at most one rounding happens per element and the result does not depend on
// whether the compiler contracts `a * b - c` into an FMA.
//
// Block layouts (bytes, little-endian; QK = elements per block):
//   Q4_0 (32, 18):  f16 d | u8 qs[16]            x = (nibble - 8) * d; low nibbles → 0..15, high → 16..31
//   Q4_1 (32, 20):  f16 d, f16 m | u8 qs[16]     x = nibble * d + m
//   Q5_0 (32, 22):  f16 d | u32 qh | u8 qs[16]   x = ((nibble | bit << 4) - 16) * d; bit j of qh → x[j]
//   Q5_1 (32, 24):  f16 d, f16 m | u32 qh | qs   x = (nibble | bit << 4) * d + m
//   Q8_0 (32, 34):  f16 d | i8 qs[32]            x = q * d
//   Q4_K (256, 144): f16 d, f16 dmin | u8 scales[12] (8 x 6-bit scale + 8 x 6-bit min) | u8 qs[128]
//                    8 sub-blocks of 32: x = d * sc * nibble - dmin * m
//   Q5_K (256, 176): as Q4_K plus u8 qh[32] before qs: the 5th bit of element l of sub-block
//                    pair p comes from qh[l] bit 2p (low nibbles) / 2p+1 (high nibbles)
//   Q6_K (256, 210): u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d
//                    16 sub-blocks of 16: x = d * scale * (6-bit q - 32)
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include <tessera/config.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/core/error.hpp>
#include <tessera/io/gguf.hpp>

namespace tessera {
inline namespace v0 {
namespace io {

namespace detail {

inline float load_f16(const std::uint8_t* p) noexcept {
  return tessera::detail::half_bits_to_float(static_cast<std::uint16_t>(p[0] | (p[1] << 8)));
}

inline void dequantize_q4_0(const std::uint8_t* x, float* y, std::int64_t n_blocks) noexcept {
  for (std::int64_t i = 0; i < n_blocks; ++i, x += 18, y += 32) {
    const float d = load_f16(x);
    const std::uint8_t* qs = x + 2;
    for (int j = 0; j < 16; ++j) {
      const int x0 = (qs[j] & 0x0F) - 8;
      const int x1 = (qs[j] >> 4) - 8;
      y[j] = static_cast<float>(x0) * d;
      y[j + 16] = static_cast<float>(x1) * d;
    }
  }
}

inline void dequantize_q4_1(const std::uint8_t* x, float* y, std::int64_t n_blocks) noexcept {
  for (std::int64_t i = 0; i < n_blocks; ++i, x += 20, y += 32) {
    const float d = load_f16(x);
    const float m = load_f16(x + 2);
    const std::uint8_t* qs = x + 4;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
      y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
    }
  }
}

inline void dequantize_q5_0(const std::uint8_t* x, float* y, std::int64_t n_blocks) noexcept {
  for (std::int64_t i = 0; i < n_blocks; ++i, x += 22, y += 32) {
    const float d = load_f16(x);
    std::uint32_t qh;
    std::memcpy(&qh, x + 2, 4);
    const std::uint8_t* qs = x + 6;
    for (int j = 0; j < 16; ++j) {
      const int xh0 = static_cast<int>(((qh >> j) << 4) & 0x10);
      const int xh1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      y[j] = static_cast<float>(((qs[j] & 0x0F) | xh0) - 16) * d;
      y[j + 16] = static_cast<float>(((qs[j] >> 4) | xh1) - 16) * d;
    }
  }
}

inline void dequantize_q5_1(const std::uint8_t* x, float* y, std::int64_t n_blocks) noexcept {
  for (std::int64_t i = 0; i < n_blocks; ++i, x += 24, y += 32) {
    const float d = load_f16(x);
    const float m = load_f16(x + 2);
    std::uint32_t qh;
    std::memcpy(&qh, x + 4, 4);
    const std::uint8_t* qs = x + 8;
    for (int j = 0; j < 16; ++j) {
      const int xh0 = static_cast<int>(((qh >> j) << 4) & 0x10);
      const int xh1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      y[j] = static_cast<float>((qs[j] & 0x0F) | xh0) * d + m;
      y[j + 16] = static_cast<float>((qs[j] >> 4) | xh1) * d + m;
    }
  }
}

inline void dequantize_q8_0(const std::uint8_t* x, float* y, std::int64_t n_blocks) noexcept {
  for (std::int64_t i = 0; i < n_blocks; ++i, x += 34, y += 32) {
    const float d = load_f16(x);
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<std::int8_t>(x[2 + j])) * d;
  }
}

/// The j-th (0..7) 6-bit scale and min of a Q4_K / Q5_K block (ggml's get_scale_min_k4).
inline void scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& sc, std::uint8_t& m) noexcept {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

inline void dequantize_q4_k(const std::uint8_t* x, float* y, std::int64_t n_blocks) noexcept {
  for (std::int64_t i = 0; i < n_blocks; ++i, x += 144) {
    const float d = load_f16(x);
    const float dmin = load_f16(x + 2);
    const std::uint8_t* scales = x + 4;
    const std::uint8_t* q = x + 16;
    for (int is = 0; is < 8; is += 2, q += 32) {
      std::uint8_t sc, m;
      scale_min_k4(is, scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(is + 1, scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

inline void dequantize_q5_k(const std::uint8_t* x, float* y, std::int64_t n_blocks) noexcept {
  for (std::int64_t i = 0; i < n_blocks; ++i, x += 176) {
    const float d = load_f16(x);
    const float dmin = load_f16(x + 2);
    const std::uint8_t* scales = x + 4;
    const std::uint8_t* qh = x + 16;
    const std::uint8_t* ql = x + 48;
    std::uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32) {
      std::uint8_t sc, m;
      scale_min_k4(is, scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(is + 1, scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      u1 = static_cast<std::uint8_t>(u1 << 2);
      u2 = static_cast<std::uint8_t>(u2 << 2);
    }
  }
}

inline void dequantize_q6_k(const std::uint8_t* x, float* y, std::int64_t n_blocks) noexcept {
  for (std::int64_t i = 0; i < n_blocks; ++i, x += 210) {
    const float d = load_f16(x + 208);
    const std::uint8_t* ql = x;
    const std::uint8_t* qh = x + 128;
    const auto* sc = reinterpret_cast<const std::int8_t*>(x + 192);
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = static_cast<std::int8_t>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = static_cast<std::int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = static_cast<std::int8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = static_cast<std::int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

template <class T>
void widen(const std::uint8_t* x, float* y, std::int64_t n) noexcept {
  for (std::int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, x + i * static_cast<std::int64_t>(sizeof(T)), sizeof(T));
    y[i] = static_cast<float>(v);
  }
}

}  // namespace detail

/// True for the ggml types dequantize() converts.
inline bool can_dequantize(ggml_type t) noexcept {
  switch (t) {
    case ggml_type::f32: case ggml_type::f16: case ggml_type::bf16: case ggml_type::f64:
    case ggml_type::i8: case ggml_type::i16: case ggml_type::i32:
    case ggml_type::q4_0: case ggml_type::q4_1: case ggml_type::q5_0: case ggml_type::q5_1: case ggml_type::q8_0:
    case ggml_type::q4_k: case ggml_type::q5_k: case ggml_type::q6_k: return true;
    default: return false;
  }
}

/// Converts `n` elements of type `t` starting at `src` (n a multiple of the block size; src holds
/// n / block * block_bytes bytes) into dst[0, n). Throws format_error for unsupported types.
inline void dequantize(ggml_type t, const std::byte* src, float* dst, std::int64_t n) {
  const auto tr = ggml_traits(t);
  if (!can_dequantize(t))
    throw format_error("dequantize: ggml type " + ggml_type_name(t) +
                       " is not supported (supported: F32 F16 BF16 F64 I8 I16 I32 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K)");
  if (n < 0 || n % tr.block != 0)
    throw format_error("dequantize: " + std::to_string(n) + " elements is not a multiple of the " +
                       std::string(tr.name) + " block size " + std::to_string(tr.block));
  const auto* x = reinterpret_cast<const std::uint8_t*>(src);
  const std::int64_t nb = n / tr.block;
  switch (t) {
    case ggml_type::f32: if (n) std::memcpy(dst, x, static_cast<std::size_t>(n) * 4); break;
    case ggml_type::f16:
      for (std::int64_t i = 0; i < n; ++i) dst[i] = detail::load_f16(x + 2 * i);
      break;
    case ggml_type::bf16:
      for (std::int64_t i = 0; i < n; ++i)
        dst[i] = tessera::detail::bf16_bits_to_float(static_cast<std::uint16_t>(x[2 * i] | (x[2 * i + 1] << 8)));
      break;
    case ggml_type::f64: detail::widen<double>(x, dst, n); break;
    case ggml_type::i8: detail::widen<std::int8_t>(x, dst, n); break;
    case ggml_type::i16: detail::widen<std::int16_t>(x, dst, n); break;
    case ggml_type::i32: detail::widen<std::int32_t>(x, dst, n); break;
    case ggml_type::q4_0: detail::dequantize_q4_0(x, dst, nb); break;
    case ggml_type::q4_1: detail::dequantize_q4_1(x, dst, nb); break;
    case ggml_type::q5_0: detail::dequantize_q5_0(x, dst, nb); break;
    case ggml_type::q5_1: detail::dequantize_q5_1(x, dst, nb); break;
    case ggml_type::q8_0: detail::dequantize_q8_0(x, dst, nb); break;
    case ggml_type::q4_k: detail::dequantize_q4_k(x, dst, nb); break;
    case ggml_type::q5_k: detail::dequantize_q5_k(x, dst, nb); break;
    case ggml_type::q6_k: detail::dequantize_q6_k(x, dst, nb); break;
    default: break;
  }
}

}  // namespace io
}  // namespace v0
}  // namespace tessera
