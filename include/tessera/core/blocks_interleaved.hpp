// tessera/core/blocks_interleaved.hpp: quantized rows interleaved 8 at a time, tessera's own
// layouts (never in a file) for the kernels of kernels/quant_interleaved.hpp, and the conversions
// between them and ggml's blocks (core/blocks.hpp); f32 / f16 / bf16 rows interleaved 16 at a
// time (block_x16: GEMM panels) for kernels/gemm_panel.hpp.
//
// layers::linear rewrites a stored Q4_0, IQ4_NL, Q8_0, Q4_K, Q5_K, Q6_K or IQ4_XS matrix into
// these at load on x86 with AVX2 (io::weight_map::interleaved). A (n, k) matrix becomes a
// (n / 8, k / block) matrix of interleaved blocks: block column b of rows 8p .. 8p + 7 at (p, b).
// interleave(rows) builds one from the 8 rows' blocks; row_block(x, r) gives row r's block back,
// byte for byte (the scalar kernels and the tests use it).
#pragma once

#include <cstdint>
#include <type_traits>

#include <tessera/config.hpp>
#include <tessera/core/blocks.hpp>
#include <tessera/core/dtype.hpp>

namespace tessera {
inline namespace v0 {

/// Eight rows of a 4-bit 32-element format (q4_0, iq4_nl: a scale and 16 bytes of nibbles, low
/// nibbles elements 0..15) interleaved: block column b of rows 8p .. 8p + 7 of the matrix. Never in
/// a file: layers::linear rewrites a stored matrix into it at load where the kernels for it exist
/// (kernels/quant_interleaved.hpp, x86 with AVX2). d[r] is row r's scale; byte qs[32 h + 4 r + i]
/// (h, i in 0..3) holds row r's nibbles 8h + i (low) and 8h + 4 + i (high). One 32-byte vector h,
/// masked, holds nibbles 8h .. 8h + 3 of the 8 rows (a dword each) and, shifted, 8h + 4 .. 8h + 7:
/// against a broadcast dword of activations each lane sums one row, with no reduction across
/// lanes. Same bytes as the 8 blocks (144).
template <class R>
struct block_nibbles_x8 {
  static constexpr index_t block_size = 32;  // elements of each row
  static constexpr index_t rows = 8;
  using row_block = R;
  f16 d[8];
  std::uint8_t qs[128];
};
using block_q4_0x8 = block_nibbles_x8<block_q4_0>;      // nibble q: x = (q - 8) d
using block_iq4_nlx8 = block_nibbles_x8<block_iq4_nl>;  // nibble q: x = kvalues_iq4nl[q] d

/// Eight rows of q8_0 interleaved: qs[g][4 r + i] = row r's quant 4g + i, d[r] its scale.
struct block_q8_0x8 {
  static constexpr index_t block_size = 32;
  static constexpr index_t rows = 8;
  using row_block = block_q8_0;
  f16 d[8];
  std::int8_t qs[8][32];
};
static_assert(sizeof(block_q8_0x8) == 8 * sizeof(block_q8_0), "block_q8_0x8: the bytes of 8 q8_0 blocks");
static_assert(sizeof(block_q4_0x8) == 8 * sizeof(block_q4_0) && sizeof(block_iq4_nlx8) == 8 * sizeof(block_iq4_nl),
              "block_nibbles_x8: the bytes of 8 blocks");

/// Eight rows of q4_K interleaved: super-block column b of rows 8p .. 8p + 7 (as block_q4_0x8, a
/// layout of layers::linear's, never in a file). d, dmin: the rows' scales; scales[s][r], mins:
/// row r's 6-bit scale and min of sub-block s, unpacked (mins[t][r][u] for s = 2t + u, so that
/// one widening load gives each lane a row's pair of mins); qs[s]: the 32 quants of sub-block s
/// of the 8 rows in block_q4_0x8's qs layout. 1184 bytes, 8 × 148 (q4_K: 8 × 144).
struct block_q4_Kx8 {
  static constexpr index_t block_size = 256;
  static constexpr index_t rows = 8;
  using row_block = block_q4_K;
  f16 d[8], dmin[8];
  std::uint8_t scales[8][8];
  std::uint8_t mins[4][8][2];
  std::uint8_t qs[8][128];
};
static_assert(sizeof(block_q4_Kx8) == 1184, "block_q4_Kx8: no padding");

/// Eight rows of q5_K interleaved: as block_q4_Kx8 for the low four bits, plus qh[s], the fifth
/// bits of sub-block s: bit j of byte 4r + i is that of quant 4j + i of row r. 1440 bytes, 8 × 180
/// (q5_K: 8 × 176).
struct block_q5_Kx8 {
  static constexpr index_t block_size = 256;
  static constexpr index_t rows = 8;
  using row_block = block_q5_K;
  f16 d[8], dmin[8];
  std::uint8_t scales[8][8];
  std::uint8_t mins[4][8][2];
  std::uint8_t qh[8][32];
  std::uint8_t qs[8][128];
};
static_assert(sizeof(block_q5_Kx8) == 1440, "block_q5_Kx8: no padding");

/// Eight rows of iq4_xs interleaved: scales[s][r] = row r's scale of sub-block s minus 32 (-32 ..
/// 31), qs[s] the nibbles of sub-block s of the 8 rows in block_q4_0x8's layout. 1104 bytes, 8 ×
/// 138 (iq4_xs: 8 × 136).
struct block_iq4_xsx8 {
  static constexpr index_t block_size = 256;
  static constexpr index_t rows = 8;
  using row_block = block_iq4_xs;
  f16 d[8];
  std::int8_t scales[8][8];
  std::uint8_t qs[8][128];
};
static_assert(sizeof(block_iq4_xsx8) == 1104, "block_iq4_xsx8: no padding");

/// Eight rows of q6_K interleaved (as block_q4_Kx8, a layout of layers::linear's). Per chunk c of
/// 32 elements (sub-blocks 2c and 2c + 1 of 16): scales[c][r][u], row r's scale of sub-block
/// 2c + u; ql[c], the low nibbles of the 8 rows in block_q4_0x8's qs layout; qh[c], their high two
/// bits: bits 2j, 2j + 1 of byte 32u + 4r + i hold those of quant 4 (4u + j) + i of row r, so that
/// one vector, shifted and masked, completes 4 of ql's unpacked vectors. 1680 bytes, 8 × 210.
struct block_q6_Kx8 {
  static constexpr index_t block_size = 256;
  static constexpr index_t rows = 8;
  using row_block = block_q6_K;
  f16 d[8];
  std::int8_t scales[8][8][2];
  std::uint8_t ql[8][128];
  std::uint8_t qh[8][64];
};
static_assert(sizeof(block_q6_Kx8) == 8 * sizeof(block_q6_K), "block_q6_Kx8: the bytes of 8 q6_K blocks");


namespace detail {
/// Row r's 32 nibbles (0..15, element order) into the interleaved layout: qs[32 h + 4 r + i] holds
/// quants 8h + i (low nibble) and 8h + 4 + i (high).
inline void interleave_nibbles(const std::uint8_t (&q)[32], int r, std::uint8_t* qs) noexcept {
  for (int h = 0; h < 4; ++h)
    for (int i = 0; i < 4; ++i) qs[32 * h + 4 * r + i] = static_cast<std::uint8_t>(q[8 * h + i] | q[8 * h + 4 + i] << 4);
}
/// The inverse: row r's 32 nibbles in element order.
inline void deinterleave_nibbles(const std::uint8_t* qs, int r, std::uint8_t (&q)[32]) noexcept {
  for (int h = 0; h < 4; ++h)
    for (int i = 0; i < 4; ++i) {
      q[8 * h + i] = qs[32 * h + 4 * r + i] & 0xF;
      q[8 * h + 4 + i] = static_cast<std::uint8_t>(qs[32 * h + 4 * r + i] >> 4);
    }
}
}  // namespace detail

/// Block column b of 8 rows of q4_0 / iq4_nl (rows[r]: row r's block b), interleaved.
template <class R>
  requires std::is_same_v<R, block_q4_0> || std::is_same_v<R, block_iq4_nl>
block_nibbles_x8<R> interleave(const R* const (&rows)[8]) noexcept {
  block_nibbles_x8<R> y;
  for (int r = 0; r < 8; ++r) {
    y.d[r] = rows[r]->d;
    std::uint8_t q[32];
    for (int j = 0; j < 16; ++j) q[j] = rows[r]->qs[j] & 0xF, q[j + 16] = static_cast<std::uint8_t>(rows[r]->qs[j] >> 4);
    detail::interleave_nibbles(q, r, y.qs);
  }
  return y;
}

/// Row r's block of an interleaved block column (the block interleave took it from).
template <class R>
R row_block(const block_nibbles_x8<R>& x, int r) noexcept {
  R y;
  y.d = x.d[r];
  std::uint8_t q[32];
  detail::deinterleave_nibbles(x.qs, r, q);
  for (int j = 0; j < 16; ++j) y.qs[j] = static_cast<std::uint8_t>(q[j] | q[j + 16] << 4);
  return y;
}

/// Block column b of 8 q8_0 rows (rows[r]: row r's block b), interleaved.
inline block_q8_0x8 interleave(const block_q8_0* const (&rows)[8]) noexcept {
  block_q8_0x8 y;
  for (int r = 0; r < 8; ++r) {
    y.d[r] = rows[r]->d;
    for (int j = 0; j < 32; ++j) y.qs[j / 4][4 * r + j % 4] = rows[r]->qs[j];
  }
  return y;
}

/// Row r's q8_0 block of an interleaved block column.
inline block_q8_0 row_block(const block_q8_0x8& x, int r) noexcept {
  block_q8_0 y;
  y.d = x.d[r];
  for (int j = 0; j < 32; ++j) y.qs[j] = x.qs[j / 4][4 * r + j % 4];
  return y;
}

/// Super-block column b of 8 q4_K / q5_K rows (rows[r]: row r's block b), interleaved.
template <class R>
  requires std::is_same_v<R, block_q4_K> || std::is_same_v<R, block_q5_K>
auto interleave(const R* const (&rows)[8]) noexcept {
  std::conditional_t<std::is_same_v<R, block_q4_K>, block_q4_Kx8, block_q5_Kx8> y{};
  for (int r = 0; r < 8; ++r) {
    const R& x = *rows[r];
    y.d[r] = x.d, y.dmin[r] = x.dmin;
    for (int s = 0; s < 8; ++s) {
      std::uint8_t sc, m;
      detail::scale_min_k4(s, x.scales, sc, m);
      y.scales[s][r] = sc, y.mins[s / 2][r][s % 2] = m;
      std::uint8_t q[32];  // sub-block s: low nibbles of qs[32 (s / 2) ..] for even s, high for odd
      for (int l = 0; l < 32; ++l) q[l] = static_cast<std::uint8_t>((x.qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 0xF);
      detail::interleave_nibbles(q, r, y.qs[s]);
      if constexpr (std::is_same_v<R, block_q5_K>)
        for (int l = 0; l < 32; ++l)  // the fifth bit of element l: bit s of qh[l]
          y.qh[s][4 * r + l % 4] = static_cast<std::uint8_t>(y.qh[s][4 * r + l % 4] | ((x.qh[l] >> s) & 1) << (l / 4));
    }
  }
  return y;
}

/// Row r's q4_K / q5_K block of an interleaved super-block column, byte for byte (the 6-bit scales
/// and mins packed back as scale_min_k4 reads them).
template <class X>
  requires std::is_same_v<X, block_q4_Kx8> || std::is_same_v<X, block_q5_Kx8>
typename X::row_block row_block(const X& x, int r) noexcept {
  typename X::row_block y{};
  y.d = x.d[r], y.dmin = x.dmin[r];
  for (int s = 0; s < 8; ++s) {
    const std::uint8_t sc = x.scales[s][r], m = x.mins[s / 2][r][s % 2];
    if (s < 4) {
      y.scales[s] = static_cast<std::uint8_t>(y.scales[s] | sc);
      y.scales[s + 4] = static_cast<std::uint8_t>(y.scales[s + 4] | m);
    } else {
      y.scales[s + 4] = static_cast<std::uint8_t>((sc & 0xF) | (m & 0xF) << 4);
      y.scales[s - 4] = static_cast<std::uint8_t>(y.scales[s - 4] | (sc >> 4) << 6);
      y.scales[s] = static_cast<std::uint8_t>(y.scales[s] | (m >> 4) << 6);
    }
    std::uint8_t q[32];
    detail::deinterleave_nibbles(x.qs[s], r, q);
    for (int l = 0; l < 32; ++l) y.qs[32 * (s / 2) + l] = static_cast<std::uint8_t>(y.qs[32 * (s / 2) + l] | q[l] << (4 * (s % 2)));
    if constexpr (std::is_same_v<X, block_q5_Kx8>)
      for (int l = 0; l < 32; ++l)
        y.qh[l] = static_cast<std::uint8_t>(y.qh[l] | ((x.qh[s][4 * r + l % 4] >> (l / 4)) & 1) << s);
  }
  return y;
}

/// Super-block column b of 8 iq4_xs rows (rows[r]: row r's block b), interleaved.
inline block_iq4_xsx8 interleave(const block_iq4_xs* const (&rows)[8]) noexcept {
  block_iq4_xsx8 y;
  for (int r = 0; r < 8; ++r) {
    const block_iq4_xs& x = *rows[r];
    y.d[r] = x.d;
    for (int s = 0; s < 8; ++s) {
      y.scales[s][r] = static_cast<std::int8_t>(detail::iq4_xs_scale(x, s) - 32);
      std::uint8_t q[32];  // sub-block s: qs[16 s ..], low nibbles its elements 0..15
      for (int j = 0; j < 16; ++j) q[j] = x.qs[16 * s + j] & 0xF, q[j + 16] = static_cast<std::uint8_t>(x.qs[16 * s + j] >> 4);
      detail::interleave_nibbles(q, r, y.qs[s]);
    }
  }
  return y;
}

/// Row r's iq4_xs block of an interleaved super-block column, byte for byte.
inline block_iq4_xs row_block(const block_iq4_xsx8& x, int r) noexcept {
  block_iq4_xs y{};
  y.d = x.d[r];
  for (int s = 0; s < 8; ++s) {
    const int ls = x.scales[s][r] + 32;  // 6 bits: low 4 in scales_l, high 2 in scales_h
    y.scales_l[s / 2] = static_cast<std::uint8_t>(y.scales_l[s / 2] | (ls & 0xF) << (4 * (s % 2)));
    y.scales_h = static_cast<std::uint16_t>(y.scales_h | (ls >> 4) << (2 * s));
    std::uint8_t q[32];
    detail::deinterleave_nibbles(x.qs[s], r, q);
    for (int j = 0; j < 16; ++j) y.qs[16 * s + j] = static_cast<std::uint8_t>(q[j] | q[j + 16] << 4);
  }
  return y;
}

namespace detail {
/// Where element e (0..255) of a q6_K block keeps its bits: the byte of ql and the shift of its
/// low nibble, the byte of qh and the shift of its high two bits (ggml's dequantize_row_q6_K).
struct q6_place {
  int ql, ql_shift, qh, qh_shift;
};
inline q6_place q6_place_of(int e) noexcept {
  const int half = e / 128, g = e % 128 / 32, l = e % 32;
  return {64 * half + l + 32 * (g % 2), 4 * (g / 2), 32 * half + l, 2 * g};
}
}  // namespace detail

/// Super-block column b of 8 q6_K rows (rows[r]: row r's block b), interleaved.
inline block_q6_Kx8 interleave(const block_q6_K* const (&rows)[8]) noexcept {
  block_q6_Kx8 y{};
  for (int r = 0; r < 8; ++r) {
    const block_q6_K& x = *rows[r];
    y.d[r] = x.d;
    for (int c = 0; c < 8; ++c) {
      y.scales[c][r][0] = x.scales[2 * c], y.scales[c][r][1] = x.scales[2 * c + 1];
      std::uint8_t low[32];
      for (int l = 0; l < 32; ++l) {
        const detail::q6_place p = detail::q6_place_of(32 * c + l);
        low[l] = static_cast<std::uint8_t>((x.ql[p.ql] >> p.ql_shift) & 0xF);
        const int high = (x.qh[p.qh] >> p.qh_shift) & 3, g = l / 4, i = l % 4;
        y.qh[c][32 * (g / 4) + 4 * r + i] = static_cast<std::uint8_t>(y.qh[c][32 * (g / 4) + 4 * r + i] | high << (2 * (g % 4)));
      }
      detail::interleave_nibbles(low, r, y.ql[c]);
    }
  }
  return y;
}

/// Row r's q6_K block of an interleaved super-block column, byte for byte.
inline block_q6_K row_block(const block_q6_Kx8& x, int r) noexcept {
  block_q6_K y{};
  y.d = x.d[r];
  for (int c = 0; c < 8; ++c) {
    y.scales[2 * c] = x.scales[c][r][0], y.scales[2 * c + 1] = x.scales[c][r][1];
    std::uint8_t low[32];
    detail::deinterleave_nibbles(x.ql[c], r, low);
    for (int l = 0; l < 32; ++l) {
      const detail::q6_place p = detail::q6_place_of(32 * c + l);
      const int g = l / 4, i = l % 4, high = (x.qh[c][32 * (g / 4) + 4 * r + i] >> (2 * (g % 4))) & 3;
      y.ql[p.ql] = static_cast<std::uint8_t>(y.ql[p.ql] | low[l] << p.ql_shift);
      y.qh[p.qh] = static_cast<std::uint8_t>(y.qh[p.qh] | high << p.qh_shift);
    }
  }
  return y;
}

/// Sixteen rows of float, f16 or bf16 interleaved one column at a time: element p of rows
/// 16q .. 16q + 15 at (q, p) of a (n / 16, k) matrix, so that a (n, k) matrix is n / 16 panels of
/// k x 16 elements, each one sequential stream: the packed-panel layout of a GEMM
/// (kernels/gemm.hpp packs w into it, widened, per call), made once at load in the stored type
/// instead (layers::linear, io::weight_map::interleaved; kernels/gemm_panel.hpp computes in it
/// for every m, widening in registers). 64 bytes (f32) or 32 (f16, bf16).
template <class E>
struct alignas(16 * sizeof(E)) block_x16 {
  static constexpr index_t block_size = 1;
  static constexpr index_t rows = 16;
  using row_block = E;
  E v[16];
};
using block_f32x16 = block_x16<float>;
using block_f16x16 = block_x16<f16>;
using block_bf16x16 = block_x16<bf16>;
static_assert(sizeof(block_f32x16) == 64 && sizeof(block_f16x16) == 32 && sizeof(block_bf16x16) == 32,
              "block_x16: one row of 16 elements, no padding");

/// Whether B is one of the panel layouts (block_x16 of float, f16 or bf16).
template <class B>
inline constexpr bool is_panel_v = false;
template <class E>
inline constexpr bool is_panel_v<block_x16<E>> = true;

template <class E>
block_x16<E> interleave(const E* const (&rows)[16]) noexcept {
  block_x16<E> y;
  for (int r = 0; r < 16; ++r) y.v[r] = *rows[r];
  return y;
}

template <class E>
E row_block(const block_x16<E>& x, int r) noexcept {
  return x.v[r];
}

/// Blocks 0 .. kb - 1 of B::rows rows (rows[r]: row r's first block) into kb interleaved blocks.
/// Panels 16 columns at a time: each row's line is read once and the 16 blocks written stay in L1
/// (a column at a time the f32 load ran at ~1.7 GB/s on Zen 3).
template <interleaved_block B>
void interleave_rows(const typename B::row_block* const (&rows)[B::rows], index_t kb, B* y) noexcept {
  if constexpr (is_panel_v<B>) {
    for (index_t p0 = 0; p0 < kb; p0 += 16) {
      const index_t p1 = p0 + 16 <= kb ? p0 + 16 : kb;
      for (int r = 0; r < 16; ++r)
        for (index_t p = p0; p < p1; ++p) y[p].v[r] = rows[r][p];
    }
  } else {
    const typename B::row_block* at[B::rows];
    for (index_t b = 0; b < kb; ++b) {
      for (index_t r = 0; r < B::rows; ++r) at[r] = rows[r] + b;
      y[b] = interleave(at);
    }
  }
}

}  // namespace v0
}  // namespace tessera
