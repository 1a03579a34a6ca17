// Helpers of the quant tests: random blocks, each element's value from the block layout computed
// independently in double, and the magnitudes the float error bounds are written against.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <tessera/core/blocks.hpp>

#include "common/test_util.hpp"

namespace tessera::test {

/// The unit roundoff of float.
inline constexpr double float_u = 1.0 / 16777216.0;

/// Every weight block type, for TEMPLATE_TEST_CASE.
#define TESSERA_WEIGHT_BLOCKS block_q8_0, block_q4_0, block_q4_1, block_q5_0, block_q5_1, block_q4_K, block_q5_K, block_q6_K

inline double half(f16 h) { return static_cast<double>(to_float(h)); }

/// A random f16 scale: magnitude in [lo, hi), random sign when `signed_`.
inline f16 random_scale(float lo, float hi, bool signed_ = true) {
  std::uniform_real_distribution<float> d(lo, hi);
  const float v = d(rng());
  return f16(signed_ && (rng()() & 1) ? -v : v);
}

/// Random blocks: random bytes everywhere (every quant and packed sub-scale pattern is valid) with
/// finite random f16 scales, as tools/fixtures/make_gguf_quants.py makes them.
template <class B>
std::vector<B> random_blocks(index_t n) {
  std::vector<B> v(static_cast<std::size_t>(n));
  auto* bytes = reinterpret_cast<unsigned char*>(v.data());
  for (std::size_t i = 0; i < v.size() * sizeof(B); ++i) bytes[i] = static_cast<unsigned char>(rng()() & 0xff);
  for (auto& b : v) {
    if constexpr (requires { b.dmin; }) {
      b.d = random_scale(1e-3f, 4e-3f, false);  // K-quants' d and dmin are non-negative
      b.dmin = random_scale(1e-3f, 4e-3f, false);
    } else if constexpr (requires { b.m; }) {
      b.d = random_scale(0.01f, 0.05f, false);
      b.m = random_scale(0.1f, 0.5f);
    } else {
      b.d = random_scale(0.01f, 0.05f);
    }
  }
  return v;
}

/// n normal values (mean `mean`, sd 1).
inline std::vector<float> normal_vector(index_t n, float mean = 0.f) {
  std::normal_distribution<float> d(mean, 1.f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(rng());
  return v;
}

// ---- element j of a block, from the layout (docs/quant.md), exactly in double ----

inline void k4_scale_min(const std::uint8_t* s, int j, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

/// The unsigned quant of element j (before offsets and scales).
inline int raw_quant(const block_q8_0& b, int j) { return b.qs[j]; }
inline int raw_quant(const block_q4_0& b, int j) { return j < 16 ? b.qs[j] & 15 : b.qs[j - 16] >> 4; }
inline int raw_quant(const block_q4_1& b, int j) { return j < 16 ? b.qs[j] & 15 : b.qs[j - 16] >> 4; }
inline int fifth_bit(const std::uint8_t* qh, int j) { return (qh[j / 8] >> (j % 8)) & 1; }
inline int raw_quant(const block_q5_0& b, int j) {
  return (j < 16 ? b.qs[j] & 15 : b.qs[j - 16] >> 4) | (fifth_bit(b.qh, j) << 4);
}
inline int raw_quant(const block_q5_1& b, int j) {
  return (j < 16 ? b.qs[j] & 15 : b.qs[j - 16] >> 4) | (fifth_bit(b.qh, j) << 4);
}
// K-quants: sub-block s = j / 32 uses the low nibbles of qs[32 (s / 2) ...] when s is even
inline int raw_quant(const block_q4_K& b, int j) { return (b.qs[32 * (j / 64) + j % 32] >> (4 * ((j / 32) % 2))) & 15; }
inline int raw_quant(const block_q5_K& b, int j) {
  return ((b.qs[32 * (j / 64) + j % 32] >> (4 * ((j / 32) % 2))) & 15) | (((b.qh[j % 32] >> (j / 32)) & 1) << 4);
}
inline int raw_quant(const block_q6_K& b, int j) {
  const int h = j / 128, g = (j % 128) / 32, l = j % 32;
  const int low = (b.ql[64 * h + l + 32 * (g % 2)] >> (4 * (g / 2))) & 15;
  return low | (((b.qh[32 * h + l] >> (2 * g)) & 3) << 4);
}

/// Element j as the layout defines it, in double: scale · quant + offset.
inline double element(const block_q8_0& b, int j) { return half(b.d) * raw_quant(b, j); }
inline double element(const block_q4_0& b, int j) { return half(b.d) * (raw_quant(b, j) - 8); }
inline double element(const block_q4_1& b, int j) { return half(b.d) * raw_quant(b, j) + half(b.m); }
inline double element(const block_q5_0& b, int j) { return half(b.d) * (raw_quant(b, j) - 16); }
inline double element(const block_q5_1& b, int j) { return half(b.d) * raw_quant(b, j) + half(b.m); }
inline double element(const block_q4_K& b, int j) {
  int sc, m;
  k4_scale_min(b.scales, j / 32, sc, m);
  return half(b.d) * sc * raw_quant(b, j) - half(b.dmin) * m;
}
inline double element(const block_q5_K& b, int j) {
  int sc, m;
  k4_scale_min(b.scales, j / 32, sc, m);
  return half(b.d) * sc * raw_quant(b, j) - half(b.dmin) * m;
}
inline double element(const block_q6_K& b, int j) { return half(b.d) * b.scales[j / 16] * (raw_quant(b, j) - 32); }

/// |the value a zero quant stands for|: the offset or min term of element j (0 for q8_0).
template <class B>
double offset_magnitude(const B& b, int j) {
  B z = b;
  if constexpr (requires { z.ql; }) {
    std::memset(z.ql, 0, sizeof(z.ql));
    std::memset(z.qh, 0, sizeof(z.qh));
  } else {
    std::memset(z.qs, 0, sizeof(z.qs));
    if constexpr (requires { z.qh; }) std::memset(z.qh, 0, sizeof(z.qh));
  }
  return std::abs(element(z, j));
}

/// The row of n_blocks blocks as doubles, element by element.
template <class B>
std::vector<double> elements(const B* blocks, index_t n_blocks) {
  std::vector<double> v;
  for (index_t b = 0; b < n_blocks; ++b)
    for (int j = 0; j < B::block_size; ++j) v.push_back(element(blocks[b], j));
  return v;
}

}  // namespace tessera::test
