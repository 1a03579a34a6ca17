// Helpers of the quant tests: random blocks, each element's value from the block layout computed
// independently in double, and the magnitudes the float error bounds are written against.
#pragma once

#include <algorithm>
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
#define TESSERA_WEIGHT_BLOCKS                                                                                      \
  block_q8_0, block_q4_0, block_q4_1, block_q5_0, block_q5_1, block_q4_K, block_q5_K, block_q6_K, block_iq4_nl,     \
      block_iq4_xs

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
// iq4: the quant is an index into ggml's grid kvalues_iq4nl; iq4_xs's sub-block s = j / 32 takes
// qs[16 s .. 16 s + 16) (low nibbles first) and the 6-bit scale (scales_l nibble s, scales_h bits 2s, 2s+1) - 32
inline int raw_quant(const block_iq4_nl& b, int j) { return j < 16 ? b.qs[j] & 15 : b.qs[j - 16] >> 4; }
inline int raw_quant(const block_iq4_xs& b, int j) {
  const std::uint8_t* qs = b.qs + 16 * (j / 32);
  return j % 32 < 16 ? qs[j % 32] & 15 : qs[j % 32 - 16] >> 4;
}
inline double element(const block_iq4_nl& b, int j) { return half(b.d) * kvalues_iq4nl[raw_quant(b, j)]; }
inline double element(const block_iq4_xs& b, int j) {
  const int s = j / 32;
  const int ls = ((b.scales_l[s / 2] >> (4 * (s % 2))) & 15) | (((b.scales_h >> (2 * s)) & 3) << 4);
  return half(b.d) * (ls - 32) * kvalues_iq4nl[raw_quant(b, j)];
}

/// x → blocks of B: the library's quantize, or for iq4_nl / iq4_xs (which tessera reads but does
/// not write) the nearest grid value at a scale mapping each sub-block's largest |x| to 127.
template <class B>
void encode_for_test(const float* x, B* y, index_t n_blocks) {
  if constexpr (encodable_block<B>) {
    quantize(x, y, n_blocks);
  } else {
    auto amax = [](const float* v) {
      float m = 0.f;
      for (int j = 0; j < 32; ++j) m = std::max(m, std::abs(v[j]));
      return m;
    };
    auto nearest = [](float v) {  // index of the grid value nearest v
      int best = 0;
      for (int q = 1; q < 16; ++q)
        if (std::abs(v - kvalues_iq4nl[q]) < std::abs(v - kvalues_iq4nl[best])) best = q;
      return best;
    };
    auto pack = [&](const float* v, float dl, std::uint8_t* qs) {
      for (int j = 0; j < 16; ++j)
        qs[j] = static_cast<std::uint8_t>(nearest(dl != 0.f ? v[j] / dl : 0.f) | (nearest(dl != 0.f ? v[j + 16] / dl : 0.f) << 4));
    };
    for (index_t b = 0; b < n_blocks; ++b, x += B::block_size) {
      if constexpr (std::is_same_v<B, block_iq4_nl>) {
        y[b].d = f16(amax(x) / 127.f);
        pack(x, to_float(y[b].d), y[b].qs);
      } else {
        float top = 0.f;
        for (int s = 0; s < 8; ++s) top = std::max(top, amax(x + 32 * s) / 127.f);
        y[b].d = f16(top / 31.f);
        const float d = to_float(y[b].d);
        y[b].scales_h = 0;
        std::memset(y[b].scales_l, 0, sizeof(y[b].scales_l));
        for (int s = 0; s < 8; ++s) {
          const int ls = d != 0.f ? std::min(63, 32 + static_cast<int>(std::lround(amax(x + 32 * s) / 127.f / d))) : 32;
          y[b].scales_l[s / 2] = static_cast<std::uint8_t>(y[b].scales_l[s / 2] | ((ls & 15) << (4 * (s % 2))));
          y[b].scales_h = static_cast<std::uint16_t>(y[b].scales_h | ((ls >> 4) << (2 * s)));
          pack(x + 32 * s, d * static_cast<float>(ls - 32), y[b].qs + 16 * s);
        }
      }
    }
  }
}

/// |the value a zero quant stands for|: the offset or min term of element j (0 for q8_0).
template <class B>
double offset_magnitude(const B& b, int j) {
  if constexpr (std::is_same_v<B, block_iq4_nl> || std::is_same_v<B, block_iq4_xs>) return 0.0;  // signed grid values
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
