// tessera/core/dtype.hpp: f16 and bf16 storage types, accum_t, conversions.
//
// f16 and bf16 are storage types: they hold bits and convert to and from float. Arithmetic is
// done in float (accum_t). Conversions from float round to nearest, ties to even, as the IEEE
// default and as PyTorch, NumPy and the x86 F16C / AVX512-BF16 instructions do; NaN stays NaN
// (quieted, payload kept where it fits), infinities stay infinite.
#pragma once

#include <bit>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include <tessera/config.hpp>

namespace tessera {
inline namespace v0 {

namespace detail {

inline float half_bits_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {  // inf / NaN (a NaN comes out quiet, payload kept, as F16C does)
    bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0u);
  } else if (exp != 0) {  // normal
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {  // zero
    bits = sign;
  } else {  // subnormal: value = mant * 2^-24
    int e = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    mant &= 0x3ffu;
    bits = sign | (static_cast<std::uint32_t>(e) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

inline std::uint16_t float_to_half_bits(float value) noexcept {
  std::uint32_t f = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = f & 0x80000000u;
  f ^= sign;
  std::uint32_t o;
  if (f >= 0x47800000u) {                             // >= 2^16: inf, or NaN
    o = f > 0x7f800000u ? (0x7e00u | ((f >> 13) & 0x3ffu)) : 0x7c00u;
  } else if (f < 0x38800000u) {                       // below the smallest normal half (2^-14)
    // Adding 0.5 aligns the half's subnormal ulp (2^-24) to the float's last mantissa bit, so the
    // float adder does the round-to-nearest-even for us.
    const float magic = std::bit_cast<float>(126u << 23);  // 0.5
    o = std::bit_cast<std::uint32_t>(std::bit_cast<float>(f) + magic) - (126u << 23);
  } else {                                            // normal: rebias and round the 13 dropped bits
    const std::uint32_t mant_odd = (f >> 13) & 1u;
    f += 0xc8000fffu + mant_odd;                      // ((15 - 127) << 23) + 0xfff, mod 2^32
    o = f >> 13;
  }
  return static_cast<std::uint16_t>(o | (sign >> 16));
}

inline float bf16_bits_to_float(std::uint16_t h) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

inline std::uint16_t float_to_bf16_bits(float value) noexcept {
  const std::uint32_t f = std::bit_cast<std::uint32_t>(value);
  if ((f & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((f >> 16) | 0x40u);  // quiet NaN
  const std::uint32_t rounding_bias = 0x7fffu + ((f >> 16) & 1u);
  return static_cast<std::uint16_t>((f + rounding_bias) >> 16);
}

}  // namespace detail

/// IEEE 754 binary16 storage.
struct f16 {
  std::uint16_t bits = 0;
  f16() = default;
  explicit f16(float x) noexcept : bits(detail::float_to_half_bits(x)) {}
  static f16 from_bits(std::uint16_t b) noexcept {
    f16 h;
    h.bits = b;
    return h;
  }
  explicit operator float() const noexcept { return detail::half_bits_to_float(bits); }
  friend bool operator==(f16 a, f16 b) noexcept { return a.bits == b.bits; }
};

/// bfloat16 storage: the upper half of a float.
struct bf16 {
  std::uint16_t bits = 0;
  bf16() = default;
  explicit bf16(float x) noexcept : bits(detail::float_to_bf16_bits(x)) {}
  static bf16 from_bits(std::uint16_t b) noexcept {
    bf16 h;
    h.bits = b;
    return h;
  }
  explicit operator float() const noexcept { return detail::bf16_bits_to_float(bits); }
  friend bool operator==(bf16 a, bf16 b) noexcept { return a.bits == b.bits; }
};

/// The type arithmetic on T is carried out in.
template <class T>
struct accum {
  using type = float;
};
template <>
struct accum<double> {
  using type = double;
};
template <class T>
using accum_t = typename accum<std::remove_const_t<T>>::type;

/// Converts any storage type to float.
template <class T>
constexpr float to_float(T x) noexcept {
  return static_cast<float>(x);
}

/// Converts float to a storage type, rounding to nearest even.
template <class T>
constexpr T from_float(float x) noexcept {
  return T(x);
}

/// Runtime tag of the element types tessera stores.
enum class dtype : std::uint8_t { f32, f16, bf16, f64, i64, i32, i16, i8, u8, boolean };

template <class T>
constexpr dtype dtype_of() noexcept {
  using U = std::remove_const_t<T>;
  if constexpr (std::is_same_v<U, float>) return dtype::f32;
  else if constexpr (std::is_same_v<U, f16>) return dtype::f16;
  else if constexpr (std::is_same_v<U, bf16>) return dtype::bf16;
  else if constexpr (std::is_same_v<U, double>) return dtype::f64;
  else if constexpr (std::is_same_v<U, std::int64_t>) return dtype::i64;
  else if constexpr (std::is_same_v<U, std::int32_t>) return dtype::i32;
  else if constexpr (std::is_same_v<U, std::int16_t>) return dtype::i16;
  else if constexpr (std::is_same_v<U, std::int8_t>) return dtype::i8;
  else if constexpr (std::is_same_v<U, std::uint8_t>) return dtype::u8;
  else if constexpr (std::is_same_v<U, bool>) return dtype::boolean;
  else static_assert(!sizeof(U), "dtype_of: not a tessera storage type");
}

constexpr std::size_t dtype_size(dtype t) noexcept {
  switch (t) {
    case dtype::f64: case dtype::i64: return 8;
    case dtype::f32: case dtype::i32: return 4;
    case dtype::f16: case dtype::bf16: case dtype::i16: return 2;
    default: return 1;
  }
}

constexpr std::string_view dtype_name(dtype t) noexcept {
  switch (t) {
    case dtype::f32: return "f32";
    case dtype::f16: return "f16";
    case dtype::bf16: return "bf16";
    case dtype::f64: return "f64";
    case dtype::i64: return "i64";
    case dtype::i32: return "i32";
    case dtype::i16: return "i16";
    case dtype::i8: return "i8";
    case dtype::u8: return "u8";
    case dtype::boolean: return "bool";
  }
  return "?";
}

}  // namespace v0
}  // namespace tessera
