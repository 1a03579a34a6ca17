// tessera/kernels/tile_gemm.hpp: small products on register tiles, for operands already in cache.
//
//   c (m, n) (+)= a (m, k) · b (k, n)
//   a(r, p) = a[r·a_rs + p·a_cs]   any strides: row-major (a_rs = lda, a_cs = 1), or a transposed
//                                   matrix read in place (a_rs = 1, a_cs = lda)
//   b, c: rows of n floats at strides ldb, ldc; rows 64-byte aligned; n a multiple of the vector
//         width (callers pad their tiles with zero columns)
//
// The attention kernels' tiles (softmax prefill: scores and P·V for a query tile; linear attention:
// the products of one chunk) are a few dozen rows each and sit in L1/L2, so unlike gemm.hpp
// nothing is packed: a tile of MR rows × up to 4 vectors of c stays in registers for the whole depth,
// broadcasting a and streaming rows of b.
//
// Causal chunks need only the lower triangle: tile_triangle::lower_c computes, for rows [i, i+MR),
// the columns below round_up(i + MR, vector width) only (the caller zeroes the rest of c);
// tile_triangle::lower_a stops the depth at i + MR for a lower-triangular a (zero above its diagonal).
#pragma once

#include <algorithm>
#include <type_traits>

#include <tessera/config.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

enum class tile_triangle { none, lower_c, lower_a };

namespace detail {

/// c (MR × NV vectors) (+)= Σ_p a(r, p) · b[p][:], the block of c in registers.
template <class Arch, int MR, int NV>
TESSERA_ALWAYS_INLINE void tile_micro(const float* a, index_t a_rs, index_t a_cs, const float* b, index_t ldb,
                                      index_t k, float* c, index_t ldc, bool accumulate) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  batch acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = accumulate ? batch::load_aligned(c + r * ldc + v * W) : batch(0.f);
  for (index_t p = 0; p < k; ++p) {
    batch bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = batch::load_aligned(b + p * ldb + v * W);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const batch av(a[r * a_rs + p * a_cs]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(av, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v].store_aligned(c + r * ldc + v * W);
}

/// Dispatches (rows, vectors) of a tile to its compile-time micro-kernel: MR down to 1, NV 1..4.
template <class Arch, int MR>
void tile_block(index_t rows, index_t nv, const float* a, index_t a_rs, index_t a_cs, const float* b, index_t ldb,
                index_t k, float* c, index_t ldc, bool accumulate) noexcept {
  if constexpr (MR > 1)
    if (rows < MR) return tile_block<Arch, MR - 1>(rows, nv, a, a_rs, a_cs, b, ldb, k, c, ldc, accumulate);
  switch (nv) {
    case 4: return tile_micro<Arch, MR, 4>(a, a_rs, a_cs, b, ldb, k, c, ldc, accumulate);
    case 3: return tile_micro<Arch, MR, 3>(a, a_rs, a_cs, b, ldb, k, c, ldc, accumulate);
    case 2: return tile_micro<Arch, MR, 2>(a, a_rs, a_cs, b, ldb, k, c, ldc, accumulate);
    default: return tile_micro<Arch, MR, 1>(a, a_rs, a_cs, b, ldb, k, c, ldc, accumulate);
  }
}

}  // namespace detail

/// Rows of c per register tile: 6 × 4 vectors = 24 accumulators with 32 vector registers
/// (AVX-512), 3 × 4 with 16.
template <class Arch>
inline constexpr index_t tile_rows = xsimd::batch<float, Arch>::size >= 16 ? 6 : 3;

/// c (m × n) (+)= a (m × k) · b (k × n), see the top of this header.
template <class Arch>
void tile_gemm(index_t m, index_t n, index_t k, const float* a, index_t a_rs, index_t a_cs, const float* b,
               index_t ldb, float* c, index_t ldc, bool accumulate,
               tile_triangle tri = tile_triangle::none) noexcept {
  constexpr index_t W = xsimd::batch<float, Arch>::size;
  constexpr index_t MR = tile_rows<Arch>;
  for (index_t i = 0; i < m; i += MR) {
    const index_t rows = std::min(MR, m - i);
    const index_t nn = tri == tile_triangle::lower_c ? std::min(n, (i + rows + W - 1) / W * W) : n;
    const index_t kk = tri == tile_triangle::lower_a ? std::min(k, i + rows) : k;
    for (index_t j = 0; j < nn; j += 4 * W)
      detail::tile_block<Arch, static_cast<int>(MR)>(rows, std::min<index_t>(4, (nn - j) / W), a + i * a_rs, a_rs,
                                                     a_cs, b + j, ldb, kk, c + i * ldc + j, ldc, accumulate);
  }
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
