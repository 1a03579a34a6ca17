// tessera/kernels/gemv_rows.hpp: batched-decode matrix product, c = a · wᵀ for a few rows of a.
//
//   a: (m, k) f32 activations, rows contiguous (row stride >= k); m small (2 .. gemv_rows_max_m<Arch>)
//   w: (n, k) weights, f32 / f16 / bf16, rows contiguous (nn.Linear layout; row stride >= k), read directly
//   c: (m, n) f32, rows contiguous; overwritten
//
// When N sequences decode together each weight matrix meets N activation rows. The packed gemm
// would copy and transpose every weight block for so few rows; gemv would read the weights N
// times. This kernel reads each weight row once from memory and applies it to all m rows of a:
//
//   for each chunk of rows of w (threads take ~256 KB chunks as they come free, as gemv does)
//     for j over the chunk, R rows of w at a time       (R rows of w: a few KB, stay in L1)
//       for each group of M' <= M rows of a             (m split into groups as even as possible)
//         tile: R x M' accumulators over all of k; each w vector is widened once per group and
//               used for the M' rows of a, each x vector for the R rows; one haddp at the end
//
// a (m x k floats: 24 KB for 8 rows of 768) stays in L1 / L2 across the rows of w. The first
// group of a tile reads w from memory, the others from L1; every group issues its share of the
// software prefetches (16 KB ahead, to L2, as gemv does) so the memory is kept busy while the
// later groups compute. The tail of k (k not a multiple of the vector width) is one more vector
// step on zero-padded loads (simd::load_partial), the same FMA chains as the body.
//
// Tiles per SIMD level (gemv_rows_shape): AVX2's 16 registers hold R = 3 rows × M = 4 (12
// accumulators, 3 widened w vectors, 1 x vector; kept in registers by keep_in_register, which
// GCC would otherwise fold into R loads per x vector); AVX-512's 32 hold 4 × 6. Hot in L1/L2 the
// AVX2 tile runs at ~90% of the FMA peak on Zen 3. docs/gemm.md ("Batched decode") has the
// measurements and the threshold gemv_rows_max_m above which the packed gemm wins.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>

#include <tessera/core/dtype.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/kernels/gemv.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

/// Largest m for which ops::linear, linear::forward_shared and gemm take gemv_rows rather than
/// the packed gemm. AVX2 (Zen 3, docs/gemm.md "Batched decode"): gemv_rows was ahead of the packed
/// kernel on the Llama-768 decode weights up to m = 48 and level at 64; 32 keeps a margin. AVX-512:
/// 16, where the packed kernel's 12-row tile is still mostly partial (m = 13..16 runs a 12-row and
/// a 1..4-row tile) and gemv_rows takes m in two groups of at most 8 rows.
template <class Arch = simd::default_arch>
inline constexpr index_t gemv_rows_max_m = std::is_base_of_v<xsimd::avx512f, Arch> ? 16 : 32;

namespace detail {

/// Register tile of gemv_rows for Arch: R rows of w × up to M rows of a.
template <class Arch>
struct gemv_rows_shape {
  static constexpr index_t lanes = xsimd::batch<float, Arch>::size;
  static constexpr bool wide_file = std::is_base_of_v<xsimd::avx512f, Arch>;
  static constexpr int R = 3;
  static constexpr int M = wide_file ? 8 : 4;
};

/// Makes the compiler hold v in a register from here on. GCC folds a load that feeds several FMAs
/// into each of them (`vfmadd231ps (mem), w, acc`), which turns the M x-loads of a tile step into
/// R * M loads: the tile then runs at the load ports' rate, ~55% of the FMA peak on Zen 3. An
/// empty asm that takes the value in a vector register keeps it one load.
template <class Arch>
TESSERA_ALWAYS_INLINE void keep_in_register(xsimd::batch<float, Arch>& v) noexcept {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
  if constexpr (sizeof(v) >= 16) {
    auto r = v.data;
    __asm__("" : "+v"(r));
    v = r;
  }
#else
  (void)v;
#endif
}

/// out[t] = sum of the lanes of v[t], t < N: haddp over groups of `lanes` accumulators.
template <class Arch, int N>
TESSERA_ALWAYS_INLINE void gemv_rows_reduce(const xsimd::batch<float, Arch> (&v)[N], float* out) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr int L = static_cast<int>(batch::size);
  const index_t* lane = simd::haddp_lane<Arch>();
#pragma GCC unroll 4
  for (int g = 0; g < N; g += L) {
    batch rows[L];
#pragma GCC unroll 16
    for (int t = 0; t < L; ++t) rows[t] = g + t < N ? v[g + t] : batch(0.f);
    alignas(64) float sums[L];
    xsimd::haddp(rows).store_aligned(sums);
#pragma GCC unroll 16
    for (int t = 0; t < L; ++t)
      if (g + t < N) out[g + t] = sums[lane[t]];
  }
}

/// c[i * ldc + r] (+)= dot(w row r, a row i) for r < R, i < M, over all k: R widened w vectors
/// and one x vector in registers per step, R * M FMAs. Prefetch: this is group pf_group of
/// pf_groups that run over the same R rows; it prefetches (gemv_prefetch, up to limit, the end of
/// this chunk) every pf_groups-th cache line of each row, so the groups together prefetch each line
/// once and the memory stays busy while the later groups compute from L1. (When only the first
/// group prefetched, the time was about compute + transfer, not their maximum: 62 against 70
/// GFLOP/s on 64000 x 768 f16, m = 8, on Zen 3.)
template <class Arch, int R, int M, class W>
void gemv_rows_tile(const float* a, index_t lda, const W* w, index_t ldw, index_t k, float* c, index_t ldc,
                    bool accumulate, const char* limit, index_t pf_group, index_t pf_groups) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t L = batch::size;
  constexpr index_t line = std::max<index_t>(L, 64 / static_cast<index_t>(sizeof(W)));  // elements per line
  const index_t kv = k / L * L;
  index_t pf_next = pf_group * line, pf_every = pf_groups * line;
  batch acc[R * M];
#pragma GCC unroll 32
  for (int t = 0; t < R * M; ++t) acc[t] = batch(0.f);
  for (index_t p = 0; p < kv; p += L) {
    batch wv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      wv[r] = load_widened<Arch>(w + r * ldw + p);
      keep_in_register<Arch>(wv[r]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      batch xv = batch::load_unaligned(a + i * lda + p);
      keep_in_register<Arch>(xv);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r * M + i] = xsimd::fma(wv[r], xv, acc[r * M + i]);
    }
    if (p == pf_next) {  // this group's share of the cache lines of the R rows
      pf_next += pf_every;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) gemv_prefetch<W, line>(w + r * ldw + p, limit);
    }
  }
  if (kv < k) {  // the last k - kv < L elements, zero-padded: one more step of the same chains
    batch wv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) wv[r] = simd::load_widened_partial<Arch>(w + r * ldw + kv, k - kv);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const batch xv = simd::load_partial<Arch>(a + i * lda + kv, k - kv);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r * M + i] = xsimd::fma(wv[r], xv, acc[r * M + i]);
    }
  }
  float sums[R * M];
  gemv_rows_reduce<Arch>(acc, sums);
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      float& dst = c[i * ldc + r];
      dst = accumulate ? dst + sums[r * M + i] : sums[r * M + i];
    }
}

/// gemv_rows_tile for the rows (1 .. R) left at the end of a range of w.
template <class Arch, int R, int M, class W>
void gemv_rows_tile_tail(index_t rows, const float* a, index_t lda, const W* w, index_t ldw, index_t k, float* c,
                         index_t ldc, bool accumulate, const char* limit, index_t pf_group, index_t pf_groups) noexcept {
  if constexpr (R >= 1) {
    if (rows == R) gemv_rows_tile<Arch, R, M>(a, lda, w, ldw, k, c, ldc, accumulate, limit, pf_group, pf_groups);
    else gemv_rows_tile_tail<Arch, R - 1, M>(rows, a, lda, w, ldw, k, c, ldc, accumulate, limit, pf_group, pf_groups);
  }
}

/// Rows [j, j + rows) of w (rows <= R) against one group of M rows of a.
template <class Arch, int M, class W>
TESSERA_ALWAYS_INLINE void gemv_rows_group(index_t rows, const float* a, index_t lda, const W* w, index_t ldw,
                                           index_t k, float* c, index_t ldc, bool accumulate, const char* limit,
                                           index_t pf_group, index_t pf_groups) noexcept {
  constexpr int R = gemv_rows_shape<Arch>::R;
  if (rows == R) gemv_rows_tile<Arch, R, M>(a, lda, w, ldw, k, c, ldc, accumulate, limit, pf_group, pf_groups);
  else gemv_rows_tile_tail<Arch, R - 1, M>(rows, a, lda, w, ldw, k, c, ldc, accumulate, limit, pf_group, pf_groups);
}

/// Dispatches a group of `m` (1 .. MM) rows of a to its compile-time tile.
template <class Arch, class W, int MM = gemv_rows_shape<Arch>::M>
void gemv_rows_group_m(index_t m, index_t rows, const float* a, index_t lda, const W* w, index_t ldw, index_t k,
                       float* c, index_t ldc, bool accumulate, const char* limit, index_t pf_group,
                       index_t pf_groups) noexcept {
  if constexpr (MM >= 1) {
    if (m == MM) gemv_rows_group<Arch, MM>(rows, a, lda, w, ldw, k, c, ldc, accumulate, limit, pf_group, pf_groups);
    else gemv_rows_group_m<Arch, W, MM - 1>(m, rows, a, lda, w, ldw, k, c, ldc, accumulate, limit, pf_group, pf_groups);
  }
}

/// c[i * ldc + j] (+)= dot(w row j, a row i) for rows j in [lo, hi) of w and all m rows of a:
/// R rows of w at a time, each against every group of rows of a while it is in L1. limit: the end
/// of these rows, the bound of the prefetches (the rows after them may be another thread's).
template <class Arch, class W>
void gemv_rows_span(const float* a, index_t lda, index_t m, const W* w, index_t ldw, index_t k, float* c,
                    index_t ldc, index_t lo, index_t hi, bool accumulate) noexcept {
  constexpr index_t R = gemv_rows_shape<Arch>::R, MM = gemv_rows_shape<Arch>::M;
  if (lo >= hi || m <= 0) return;
  const index_t groups = (m + MM - 1) / MM;
  const index_t base = m / groups, extra = m % groups;  // the first `extra` groups get base + 1 rows
  const char* limit = reinterpret_cast<const char*>(w + (hi - 1) * ldw + k);
  for (index_t j = lo; j < hi; j += R) {
    const index_t rows = std::min(R, hi - j);
    index_t i0 = 0;
    for (index_t g = 0; g < groups; ++g) {
      const index_t mg = base + (g < extra ? 1 : 0);
      const float* ag = a + i0 * lda;
      float* cg = c + i0 * ldc + j;
      gemv_rows_group_m<Arch, W>(mg, rows, ag, lda, w + j * ldw, ldw, k, cg, ldc, accumulate, limit, g, groups);
      i0 += mg;
    }
  }
}

/// Rows of w per chunk for threads: gemv's ~256 KB chunks, rounded to whole tiles.
template <class Arch, class W>
index_t gemv_rows_chunk(index_t n, index_t k) noexcept {
  constexpr index_t R = gemv_rows_shape<Arch>::R;
  return (gemv_chunk_rows<W>(n, k) + R - 1) / R * R;
}

template <class T>
index_t rows_stride(const tensor_view<T, 2>& v) noexcept {
  return v.extent(0) > 1 ? v.stride(0) : v.extent(1);
}

/// c (+)= a · wᵀ, plain loop (the scalar reference).
template <class W>
void gemv_rows_reference(const tensor_view<const float, 2>& a, const tensor_view<const W, 2>& w,
                         const tensor_view<float, 2>& c, bool accumulate) {
  const auto [m, k] = a.extents();
  const index_t n = w.extent(0);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      float s = 0.f;
      const W* row = w.row(j);
      const float* x = a.row(i);
      for (index_t p = 0; p < k; ++p) s += to_float(row[p]) * x[p];
      c(i, j) = accumulate ? c(i, j) + s : s;
    }
}

/// c (+)= a · wᵀ with the vectorized kernel, rows of w split over threads in chunks.
template <class Arch, class W>
void gemv_rows_run(const tensor_view<const float, 2>& a, const tensor_view<const W, 2>& w,
                   const tensor_view<float, 2>& c, bool accumulate) {
  const index_t m = a.extent(0), k = a.extent(1);
  const index_t n = w.extent(0);
  if (m == 0 || n == 0) return;
  const float* ap = a.data();
  const W* wp = w.data();
  float* cp = c.data();
  const index_t lda = rows_stride(a), ldw = rows_stride(w), ldc = rows_stride(c);
  parallel_for_dynamic(0, n, gemv_rows_chunk<Arch, W>(n, k), [&](index_t lo, index_t hi) {
    gemv_rows_span<Arch>(ap, lda, m, wp, ldw, k, cp, ldc, lo, hi, accumulate);
  });
}

}  // namespace detail

/// c = a · wᵀ, scalar reference (the plain loop; the tests compare with a double reference).
template <class W>
void gemv_rows(tensor_view<const float, 2> a, tensor_view<const W, 2> w, tensor_view<float, 2> c, simd::scalar) {
  detail::check_product_shapes(a, w, c, "gemv_rows");
  detail::gemv_rows_reference(a, w, c, false);
}

/// c = a · wᵀ for a few rows of a (batched decode: 2 .. gemv_rows_max_m<Arch> rows; any m is
/// correct), each row of w read once and applied to every row of a; rows of w split over threads.
/// No workspace, no allocation.
template <class W, class Arch = simd::default_arch>
void gemv_rows(tensor_view<const float, 2> a, tensor_view<const W, 2> w, tensor_view<float, 2> c, Arch = {}) {
  detail::check_product_shapes(a, w, c, "gemv_rows");
  if constexpr (simd::is_scalar_v<Arch>) detail::gemv_rows_reference(a, w, c, false);
  else detail::gemv_rows_run<Arch>(a, w, c, false);
}

/// c_i = a · w_iᵀ for N weights of one type that share a (q, k, v; gate, up), scalar reference.
template <class W, std::size_t N>
void gemv_rows_many(tensor_view<const float, 2> a, const std::array<tensor_view<const W, 2>, N>& w,
                    const std::array<tensor_view<float, 2>, N>& c, simd::scalar) {
  for (std::size_t i = 0; i < N; ++i) gemv_rows(a, w[i], c[i], simd::scalar{});
}

/// c_i = a · w_iᵀ for N weights of one type that share a: the rows of all N matrices, end to end,
/// split over threads in one parallel region (gemv_many for several rows of a).
template <class W, std::size_t N, class Arch = simd::default_arch>
void gemv_rows_many(tensor_view<const float, 2> a, const std::array<tensor_view<const W, 2>, N>& w,
                    const std::array<tensor_view<float, 2>, N>& c, Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    gemv_rows_many(a, w, c, simd::scalar{});
  } else {
    std::array<index_t, N + 1> first{};  // first[i]: index of w[i]'s row 0 in the concatenation
    for (std::size_t i = 0; i < N; ++i) {
      detail::check_product_shapes(a, w[i], c[i], "gemv_rows");
      first[i + 1] = first[i] + w[i].extent(0);
    }
    const index_t m = a.extent(0), k = a.extent(1);
    if (m == 0 || first[N] == 0) return;
    const float* ap = a.data();
    const index_t lda = detail::rows_stride(a);
    parallel_for_dynamic(0, first[N], detail::gemv_rows_chunk<Arch, W>(first[N], k), [&](index_t lo, index_t hi) {
      for (std::size_t i = 0; i < N; ++i) {
        const index_t b0 = std::max(lo, first[i]) - first[i], b1 = std::min(hi, first[i + 1]) - first[i];
        if (b0 >= b1) continue;
        detail::gemv_rows_span<Arch>(ap, lda, m, w[i].data(), detail::rows_stride(w[i]), k, c[i].data(),
                                     detail::rows_stride(c[i]), b0, b1, false);
      }
    });
  }
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
