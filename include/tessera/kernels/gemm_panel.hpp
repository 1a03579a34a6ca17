// tessera/kernels/gemm_panel.hpp: c = a · wᵀ with w already in GEMM panels (block_x16), every m.
//
//   a: (m, k) f32 activations, rows contiguous (row stride >= k)
//   w: (n / 16, k) block_x16<E> (core/blocks_interleaved.hpp), E = float, f16 or bf16: panel q
//      holds element p of rows 16q .. 16q + 15 at (q, p), so each panel is one sequential stream of
//      k x 16 elements, widened to f32 in registers (vcvtph2ps, or a shift for bf16)
//   c: (m, n) f32 output, rows contiguous; overwritten
//
// kernels/gemm.hpp packs every KC x NC block of w into this layout on each call: at prefill
// (m = 64) on Zen 3 that copy took 11% of the forward pass and the product streamed at 72-75
// GFLOP/s on one thread; with the panels made once at load (layers::linear,
// io::weight_map::interleaved) the same products run at 82-86 (docs/gemm.md, "Panels at load").
// One loop nest for every m, per thread over its panels:
//
//   for q over this thread's panels, P at a time (P = 1 for prefill, up to 4 for a few rows)
//     for pc over k, KC at a time              (P x KC x 16 floats: 16 KB a panel, stay in L1)
//       for ir over m, MR at a time
//         micro-kernel: MR x 16 P tile of c in MR * P * 16 / lanes registers (6 x 1 x 2 on AVX2)
//
// so decode (m = 1) reads 4 panels at once as 4 sequential streams (the gemv of this layout: no
// horizontal sums, the lanes are outputs) and prefill reads each panel once from memory and
// MR-row tiles of a from L2. The scalar twin is the plain loop of gemm_reference on the same
// layout.
#pragma once

#include <algorithm>
#include <type_traits>

#include <tessera/core/blocks_interleaved.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/kernels/gemm.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

/// Whether Arch runs the panel kernel (layers::linear makes panels at load only then): x86 with
/// AVX2 and 8-lane vectors, where it was measured; elsewhere the packed gemm and gemv keep the
/// stored rows.
template <class Arch = simd::default_arch>
constexpr bool panels_available() noexcept {
#if defined(__AVX2__)
  if constexpr (simd::is_scalar_v<Arch>) return false;
  else return std::is_base_of_v<xsimd::avx2, Arch> && !std::is_base_of_v<xsimd::avx512f, Arch>;
#else
  return false;
#endif
}

namespace detail {

/// Depth of one panel slice: 256 x 16 floats (16 KB) in L1 beside MR rows of a.
inline constexpr index_t panel_kc = 256;

/// c[0:R, 0:16 P] (+)= a (R rows, stride lda) · panels w, w + ldw, ..., w + (P - 1) ldw (kc
/// consecutive block_x16<E> each, widened in registers).
template <class Arch, class E, int R, int P>
TESSERA_ALWAYS_INLINE void panel_micro(index_t kc, const float* TESSERA_RESTRICT a, index_t lda,
                                       const block_x16<E>* TESSERA_RESTRICT w, index_t ldw, float* c, index_t ldc,
                                       bool accumulate) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t L = batch::size;
  constexpr int V = static_cast<int>(16 / L);
  batch acc[R][P][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int q = 0; q < P; ++q)
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][q][v] = batch(0.f);
  for (index_t p = 0; p < kc; ++p) {
    batch b[P][V];
#pragma GCC unroll 4
    for (int q = 0; q < P; ++q)
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) b[q][v] = simd::load_widened<Arch>(w[q * ldw + p].v + v * L);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const batch x(a[r * lda + p]);
#pragma GCC unroll 4
      for (int q = 0; q < P; ++q)
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) acc[r][q][v] = xsimd::fma(x, b[q][v], acc[r][q][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int q = 0; q < P; ++q)
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) {
        float* dst = c + r * ldc + q * 16 + v * L;
        if (accumulate) acc[r][q][v] += batch::load_unaligned(dst);
        acc[r][q][v].store_unaligned(dst);
      }
}

/// Panels side by side for a tile of `rows` rows: 4 for 1-2 rows, 2 for 3-4, 1 from 5 (rows x
/// panels x 2 accumulators on AVX2, at most 16). Decode (one row) reads 4 panels at once: 4
/// streams of memory instead of 1, 21 -> 29 GB/s on Zen 3, one thread (docs/gemm.md, "Panels at
/// load").
constexpr int panels_at_once(index_t rows) noexcept {
  return rows >= 5 ? 1 : rows >= 3 ? 2 : 4;
}

/// Dispatches the row count of a tile (1..MR) to its compile-time micro-kernel over P panels.
template <class Arch, class E, int P, int R = static_cast<int>(gemm_tile<Arch>::mr)>
void panel_micro_rows(index_t rows, index_t kc, const float* a, index_t lda, const block_x16<E>* w, index_t ldw,
                      float* c, index_t ldc, bool accumulate) noexcept {
  if constexpr (R >= 1) {
    if constexpr (P == 1 || P <= panels_at_once(R))
      if (rows == R) return panel_micro<Arch, E, R, P>(kc, a, lda, w, ldw, c, ldc, accumulate);
    panel_micro_rows<Arch, E, P, R - 1>(rows, kc, a, lda, w, ldw, c, ldc, accumulate);
  }
}

/// Panels [q, q + P) against all m rows of a.
template <class Arch, int P, class E>
void panel_group(const float* a, index_t lda, const block_x16<E>* w, index_t ldw, index_t k, float* c, index_t ldc,
                 index_t m, index_t q) noexcept {
  constexpr index_t MR = gemm_tile<Arch>::mr;
  for (index_t pc = 0; pc < k; pc += panel_kc) {
    const index_t kc = std::min(panel_kc, k - pc);
    for (index_t ir = 0; ir < m; ir += MR)
      panel_micro_rows<Arch, E, P>(std::min(MR, m - ir), kc, a + ir * lda + pc, lda, w + q * ldw + pc, ldw,
                                c + ir * ldc + 16 * q, ldc, pc > 0);
  }
}

/// Panels [q0, q1) of w against all m rows of a.
template <class Arch, class E>
void panel_range(const float* a, index_t lda, const block_x16<E>* w, index_t ldw, index_t k, float* c, index_t ldc,
                 index_t m, index_t q0, index_t q1) noexcept {
  if constexpr (simd::is_scalar_v<Arch>) {
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 16 * q0; j < 16 * q1; ++j) {
        float acc = 0.f;
        for (index_t p = 0; p < k; ++p) acc += a[i * lda + p] * to_float(w[(j / 16) * ldw + p].v[j % 16]);
        c[i * ldc + j] = acc;
      }
  } else {
    index_t q = q0;
    const int at_once = m > gemm_tile<Arch>::mr ? 1 : panels_at_once(m);
    if (at_once == 4)
      for (; q + 4 <= q1; q += 4) panel_group<Arch, 4>(a, lda, w, ldw, k, c, ldc, m, q);
    if (at_once >= 2)
      for (; q + 2 <= q1; q += 2) panel_group<Arch, 2>(a, lda, w, ldw, k, c, ldc, m, q);
    for (; q < q1; ++q) panel_group<Arch, 1>(a, lda, w, ldw, k, c, ldc, m, q);
  }
}

}  // namespace detail

/// c (m, n) = a (m, k) · wᵀ, w: (n / 16, k) panels. Never allocates; threads over panels.
template <class E, simd::arch_tag Arch = simd::default_arch>
void gemm_panel(tensor_view<const float, 2> a, tensor_view<const block_x16<E>, 2> w, tensor_view<float, 2> c,
                Arch = {}) {
  const index_t m = a.extent(0), k = a.extent(1), panels = w.extent(0), n = 16 * panels;
  expect_equal(w.extent(1), k, "gemm_panel: w columns (k) vs a columns (k)");
  expect_equal(c.extent(0), m, "gemm_panel: c rows vs a rows (m)");
  expect_equal(c.extent(1), n, "gemm_panel: c columns vs w rows (n = 16 × panels)");
  expect_rows_contiguous(a, "gemm_panel: a");
  expect_rows_contiguous(w, "gemm_panel: w");
  expect_rows_contiguous(c, "gemm_panel: c");
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (index_t i = 0; i < m; ++i) std::fill(c.row(i), c.row(i) + n, 0.f);
    return;
  }
  const float* ap = a.data();
  const block_x16<E>* wp = w.data();
  float* cp = c.data();
  const index_t lda = detail::row_stride(a), ldw = detail::row_stride(w), ldc = detail::row_stride(c);
  if constexpr (simd::is_scalar_v<Arch>) {
    detail::panel_range<Arch>(ap, lda, wp, ldw, k, cp, ldc, m, 0, panels);
  } else {
    // ~256 KB of panels per chunk, at least 4 chunks per thread
    const index_t by_bytes = std::max<index_t>(1, index_t{262144} / (k * static_cast<index_t>(sizeof(block_x16<E>))));
    const index_t chunk = std::max<index_t>(1, std::min(by_bytes, panels / (4 * static_cast<index_t>(num_threads()))));
    parallel_for_dynamic(0, panels, chunk, [&](index_t q0, index_t q1) {
      detail::panel_range<Arch>(ap, lda, wp, ldw, k, cp, ldc, m, q0, q1);
    });
  }
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
