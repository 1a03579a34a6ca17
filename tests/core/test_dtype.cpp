// f16 / bf16 conversions, bit-exact on all 65536 values against independent references:
// the mathematical value (ldexp of the fields), round-to-nearest-even on every midpoint, and, where
// the CPU has them, the F16C conversion instructions.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <random>

#include <tessera/core/dtype.hpp>

#if defined(__F16C__)
#include <immintrin.h>
#endif

using namespace tessera;

namespace {
// The value a binary16 bit pattern denotes, from the definition.
double half_value(std::uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  double v;
  if (exp == 0x1f) v = mant ? NAN : INFINITY;
  else if (exp == 0) v = std::ldexp(double(mant), -24);
  else v = std::ldexp(double(1024 + mant), exp - 25);
  return sign ? -v : v;
}
}  // namespace

TEST_CASE("f16 -> float is exact on all 65536 values", "[dtype]") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = static_cast<float>(f16::from_bits(std::uint16_t(h)));
    const double want = half_value(std::uint16_t(h));
    if (std::isnan(want)) {
      REQUIRE(std::isnan(f));
    } else {
      REQUIRE(double(f) == want);
      REQUIRE(std::signbit(f) == bool(h & 0x8000));
    }
#if defined(__F16C__)
    REQUIRE(std::bit_cast<std::uint32_t>(f) == std::bit_cast<std::uint32_t>(_cvtsh_ss(std::uint16_t(h))));
#endif
  }
}

TEST_CASE("float -> f16 round-trips every half and rounds midpoints to even", "[dtype]") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const std::uint16_t bits = std::uint16_t(h);
    const double v = half_value(bits);
    if (std::isnan(v)) {
      REQUIRE(std::isnan(static_cast<float>(f16(static_cast<float>(v)))));
      continue;
    }
    REQUIRE(f16(float(v)).bits == bits);
    if ((h & 0x7fff) >= 0x7c00) continue;  // infinities: no next value
    // Midpoint to the next half of larger magnitude: ties go to the even mantissa.
    const std::uint16_t next = std::uint16_t(bits + 1);
    const double next_value = (next & 0x7fff) == 0x7c00 ? std::copysign(65536.0, v) : half_value(next);
    const double mid = 0.5 * (v + next_value);  // exact in double, exact in float too
    const std::uint16_t even = (bits & 1) ? next : bits;
    REQUIRE(f16(float(mid)).bits == even);
    // Just off the midpoint, on each side.
    const float below = std::nextafter(float(mid), float(v));
    const float above = std::nextafter(float(mid), float(v) * 4.f + (v == 0 ? 1.f : 0.f));
    REQUIRE(f16(below).bits == bits);
    if (std::abs(double(above)) > std::abs(mid)) REQUIRE(f16(above).bits == next);
  }
  REQUIRE(f16(70000.f).bits == 0x7c00);
  REQUIRE(f16(-70000.f).bits == 0xfc00);
  REQUIRE(f16(65519.f).bits == 0x7bff);
  REQUIRE(f16(65520.f).bits == 0x7c00);
  REQUIRE(f16(1e-9f).bits == 0);
}

#if defined(__F16C__)
TEST_CASE("float -> f16 equals the F16C instruction on random floats", "[dtype]") {
  std::mt19937 g(42);
  for (int i = 0; i < 2'000'000; ++i) {
    const float f = std::bit_cast<float>(std::uint32_t(g()));
    const std::uint16_t hw = _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
    REQUIRE(f16(f).bits == hw);
  }
}
#endif

TEST_CASE("bf16 conversions: exact widening, round-to-nearest-even narrowing", "[dtype]") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const std::uint16_t bits = std::uint16_t(h);
    const float f = static_cast<float>(bf16::from_bits(bits));
    REQUIRE(std::bit_cast<std::uint32_t>(f) == (h << 16));
    if (std::isnan(f)) {
      REQUIRE(std::isnan(static_cast<float>(bf16(f))));
      continue;
    }
    REQUIRE(bf16(f).bits == bits);
    if ((h & 0x7fff) >= 0x7f80) continue;
    // Midpoint between bits and bits+1 (same sign): the float with low half 0x8000.
    const float mid = std::bit_cast<float>((h << 16) | 0x8000u);
    const std::uint16_t even = (bits & 1) ? std::uint16_t(bits + 1) : bits;
    REQUIRE(bf16(mid).bits == even);
    REQUIRE(bf16(std::bit_cast<float>((h << 16) | 0x7fffu)).bits == bits);
    REQUIRE(bf16(std::bit_cast<float>((h << 16) | 0x8001u)).bits == std::uint16_t(bits + 1));
  }
}
