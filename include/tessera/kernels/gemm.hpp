// tessera/kernels/gemm.hpp: prefill-path matrix-matrix product, c = a · wᵀ (PyTorch's linear).
//
//   a: (m, k) f32 activations, rows contiguous (row stride >= k)
//   w: (n, k) weights, f32 / f16 / bf16, rows contiguous (the nn.Linear layout; row stride >= k)
//   c: (m, n) f32 output, rows contiguous; overwritten (gemm) or added to (gemm_accumulate)
//
// Our own packed, register-tiled kernel in xsimd (BLIS's loop nest, tinyBLAS's spirit); Eigen is
// not used here, because on this machine (AVX-512, 2 cores) it reaches ~70% of OpenBLAS and this
// kernel ~90-100% (docs/gemm.md has the measurements). The loop nest, per thread:
//
//   for jc over this thread's rows of w, NC at a time
//     for pc over k, KC at a time
//       pack w[jc:jc+NC, pc:pc+KC] transposed into panels of NR rows: wp[p][r]     (L2, vector side)
//       for ic over m, MC at a time
//         copy a[ic:ic+MC, pc:pc+KC] into ap with row stride KC                   (broadcast side)
//         for ir over MC, MR at a time        (MR rows of ap: 18 KB, stays in L1)
//           for jr over NC, NR at a time      (stream one w panel from L2)
//             micro-kernel: MR x NR tile of c in MR * NR / lanes registers (12 x 32 on AVX-512)
//
// Weights: f16 and bf16 are widened to f32 while packing (per KC x NC block, into the workspace),
// never once at load: the model keeps the narrow copy (half the memory) and the decode path (gemv)
// reads it directly; the widening rides on the transposing copy that f32 weights need too. On
// AVX-512 that copy is a 16 x 16 in-register transpose.
//
// Threads: the rows of w (columns of c) are split over threads (parallel_for_stealing: a static
// split, with a thread that finishes early taking panels from the back of a slower one's share),
// each with its own packing buffers from the workspace; gemm_workspace_bytes(k, threads) says how
// much. If the workspace holds buffers for fewer threads than num_threads(), gemm uses as many as
// fit.
// For m <= gemv_rows_max_m<Arch> (decode: one or a few sequences) the packing would cost more
// than it saves, and gemv (m = 1) or gemv_rows runs instead, reading w once for all rows of a.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>

#include <tessera/core/dtype.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/kernels/gemv.hpp>
#include <tessera/kernels/gemv_rows.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

/// Blocking of the packed kernel (elements). KC x NC floats of packed w sit in L2 (384 KB), MR x KC
/// floats of a sit in L1 (18 KB with MR = 12).
struct gemm_blocking {
  static constexpr index_t kc = 384;  // depth of one packed block
  static constexpr index_t nc = 256;  // rows of w per packed block (a multiple of every NR)
  static constexpr index_t mc = 144;  // rows of a per copied block (a multiple of every MR)
};

/// Workspace bytes gemm needs for weights of type W with k columns, on `threads` threads.
template <class W>
inline std::size_t gemm_workspace_bytes(index_t k, int threads = num_threads()) noexcept {
  const index_t kc = std::min<index_t>(gemm_blocking::kc, std::max<index_t>(k, 1));
  const std::size_t per_thread = workspace::bytes_for<float>(gemm_blocking::nc * kc) +
                                 workspace::bytes_for<float>(gemm_blocking::mc * gemm_blocking::kc);
  return per_thread * static_cast<std::size_t>(std::max(threads, 1));
}

namespace detail {

template <class T>
index_t row_stride(const tensor_view<T, 2>& v) noexcept {
  return v.extent(0) > 1 ? v.stride(0) : v.extent(1);
}

/// Register tile of the micro-kernel for Arch: MR rows of a (broadcast) x NRV vectors of w rows.
template <class Arch>
struct gemm_tile {
  static constexpr index_t lanes = xsimd::batch<float, Arch>::size;
  static constexpr index_t nrv = 2;
  static constexpr index_t nr = nrv * lanes;
  // 32 vector registers on AVX-512 (and NEON64): 12 x 2 accumulators; 16 elsewhere: 6 x 2.
  static constexpr bool wide_file = std::is_base_of_v<xsimd::avx512f, Arch>
#if XSIMD_WITH_NEON64
                                    || std::is_same_v<Arch, xsimd::neon64>
#endif
      ;
  static constexpr index_t mr = wide_file ? 12 : 6;
};

/// c[0:R, 0:NRV*lanes] (+)= ap (R rows, stride KC) · wp (kc x NR, row p = NR consecutive floats).
template <class Arch, int R>
TESSERA_ALWAYS_INLINE void gemm_micro(index_t kc, const float* TESSERA_RESTRICT ap,
                                      const float* TESSERA_RESTRICT wp, float* c, index_t ldc,
                                      bool accumulate) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t L = gemm_tile<Arch>::lanes;
  constexpr int V = static_cast<int>(gemm_tile<Arch>::nrv);
  constexpr index_t NR = gemm_tile<Arch>::nr;
  constexpr index_t KC = gemm_blocking::kc;
  batch acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = batch(0.f);
  for (index_t p = 0; p < kc; ++p) {
    batch b[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) b[v] = batch::load_aligned(wp + p * NR + v * L);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const batch x(ap[r * KC + p]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = xsimd::fma(x, b[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      float* dst = c + r * ldc + v * L;
      if (accumulate) acc[r][v] += batch::load_unaligned(dst);
      acc[r][v].store_unaligned(dst);
    }
}

/// Dispatches the row count of a tile (1..MR) to its compile-time micro-kernel.
template <class Arch, int R = static_cast<int>(gemm_tile<Arch>::mr)>
void gemm_micro_rows(index_t rows, index_t kc, const float* ap, const float* wp, float* c, index_t ldc,
                     bool accumulate) noexcept {
  if constexpr (R >= 1) {
    if (rows == R) gemm_micro<Arch, R>(kc, ap, wp, c, ldc, accumulate);
    else gemm_micro_rows<Arch, R - 1>(rows, kc, ap, wp, c, ldc, accumulate);
  }
}

/// Packs rows [j0, j0 + nc) x columns [p0, p0 + kc) of w into panels of NR rows, transposed and
/// widened: panel q holds wp[q * kc * NR + p * NR + r] = w(j0 + q * NR + r, p0 + p), zero past nc.
template <class Arch, class W>
void gemm_pack_w(const W* w, index_t ldw, index_t j0, index_t nc, index_t p0, index_t kc, float* wp) noexcept {
  constexpr index_t NR = gemm_tile<Arch>::nr;
  for (index_t q0 = 0; q0 < nc; q0 += NR) {
    float* panel = wp + q0 * kc;
    const index_t rows = std::min(NR, nc - q0);
    index_t r0 = 0;
#if defined(__AVX512F__)
    if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
      for (; r0 + 16 <= rows; r0 += 16) {
        index_t p = 0;
        for (; p + 16 <= kc; p += 16) {
          __m512 r[16];
          for (int i = 0; i < 16; ++i)
            r[i] = load_widened<Arch>(w + (j0 + q0 + r0 + i) * ldw + p0 + p).data;
          simd::transpose16x16(r);
          for (int i = 0; i < 16; ++i) _mm512_store_ps(panel + (p + i) * NR + r0, r[i]);
        }
        for (; p < kc; ++p)
          for (index_t i = 0; i < 16; ++i) panel[p * NR + r0 + i] = to_float(w[(j0 + q0 + r0 + i) * ldw + p0 + p]);
      }
    }
#endif
#if defined(__AVX2__)
    if constexpr (std::is_base_of_v<xsimd::avx2, Arch> && xsimd::batch<float, Arch>::size == 8) {
      for (; r0 + 8 <= rows; r0 += 8) {
        index_t p = 0;
        for (; p + 8 <= kc; p += 8) {
          __m256 r[8];
          for (int i = 0; i < 8; ++i) r[i] = load_widened<Arch>(w + (j0 + q0 + r0 + i) * ldw + p0 + p).data;
          simd::transpose8x8(r);
          for (int i = 0; i < 8; ++i) _mm256_store_ps(panel + (p + i) * NR + r0, r[i]);
        }
        for (; p < kc; ++p)
          for (index_t i = 0; i < 8; ++i) panel[p * NR + r0 + i] = to_float(w[(j0 + q0 + r0 + i) * ldw + p0 + p]);
      }
    }
#endif
    for (index_t r = r0; r < NR; ++r) {
      if (r < rows) {
        const W* src = w + (j0 + q0 + r) * ldw + p0;
        for (index_t p = 0; p < kc; ++p) panel[p * NR + r] = to_float(src[p]);
      } else {
        for (index_t p = 0; p < kc; ++p) panel[p * NR + r] = 0.f;
      }
    }
  }
}

/// One thread's share: columns [n0, n1) of c, all of m.
template <class Arch, class W>
void gemm_packed_range(const float* a, index_t lda, const W* w, index_t ldw, float* c, index_t ldc, index_t m,
                       index_t k, index_t n0, index_t n1, float* wp, float* ap, bool accumulate) noexcept {
  constexpr index_t NR = gemm_tile<Arch>::nr;
  constexpr index_t MR = gemm_tile<Arch>::mr;
  constexpr index_t KC = gemm_blocking::kc, NC = gemm_blocking::nc, MC = gemm_blocking::mc;
  static_assert(NC % NR == 0 && MC % MR == 0, "gemm_blocking: NC and MC must be multiples of the tile");
  alignas(64) float edge[MR * NR];  // tile for the last, partial NR columns
  for (index_t jc = n0; jc < n1; jc += NC) {
    const index_t nc = std::min(NC, n1 - jc);
    for (index_t pc = 0; pc < k; pc += KC) {
      const index_t kc = std::min(KC, k - pc);
      const bool acc = accumulate || pc > 0;
      gemm_pack_w<Arch>(w, ldw, jc, nc, pc, kc, wp);
      for (index_t ic = 0; ic < m; ic += MC) {
        const index_t mc = std::min(MC, m - ic);
        for (index_t i = 0; i < mc; ++i) std::memcpy(ap + i * KC, a + (ic + i) * lda + pc, sizeof(float) * kc);
        for (index_t ir = 0; ir < mc; ir += MR) {
          const index_t rows = std::min(MR, mc - ir);
          const float* apanel = ap + ir * KC;
          float* crow = c + (ic + ir) * ldc + jc;
          for (index_t jr = 0; jr < nc; jr += NR) {
            const float* wpanel = wp + jr * kc;
            if (jr + NR <= nc) {
              gemm_micro_rows<Arch>(rows, kc, apanel, wpanel, crow + jr, ldc, acc);
            } else {
              const index_t cols = nc - jr;
              for (index_t i = 0; i < rows; ++i)
                for (index_t j = 0; j < cols; ++j) edge[i * NR + j] = acc ? crow[i * ldc + jr + j] : 0.f;
              gemm_micro_rows<Arch>(rows, kc, apanel, wpanel, edge, NR, true);
              for (index_t i = 0; i < rows; ++i)
                for (index_t j = 0; j < cols; ++j) crow[i * ldc + jr + j] = edge[i * NR + j];
            }
          }
        }
      }
    }
  }
}

/// c (+)= a · wᵀ for one row of a through the gemv kernel (no packing), rows of w over threads.
template <class Arch, class W>
void gemm_one_row(const tensor_view<const float, 2>& a, const tensor_view<const W, 2>& w,
                  const tensor_view<float, 2>& c, bool accumulate) {
  const index_t n = w.extent(0), k = w.extent(1);
  const float* x = a.row(0);
  const W* wp = w.data();
  const index_t ldw = row_stride(w);
  float* cp = c.data();
  parallel_for(0, n, gemv_grain(k), [&](index_t lo, index_t hi) {
    if (!accumulate) {
      gemv_rows_range<Arch>(x, wp, ldw, k, cp, lo, hi);
    } else {
      constexpr index_t chunk = 64;  // compute into a small tile, then add
      float tile[chunk];
      for (index_t j = lo; j < hi; j += chunk) {
        const index_t e = std::min(hi, j + chunk);
        gemv_rows_range<Arch>(x, wp + j * ldw, ldw, k, tile, 0, e - j);
        for (index_t jj = j; jj < e; ++jj) cp[jj] += tile[jj - j];
      }
    }
  });
}

template <class W>
void gemm_reference(const tensor_view<const float, 2>& a, const tensor_view<const W, 2>& w,
                    const tensor_view<float, 2>& c, bool accumulate) {
  const auto [m, k] = a.extents();
  const index_t n = w.extent(0);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      float acc = 0.f;
      for (index_t p = 0; p < k; ++p) acc += a(i, p) * to_float(w(j, p));
      c(i, j) = accumulate ? c(i, j) + acc : acc;
    }
}

/// The packed kernel for any m >= 1 (gemm_dispatch takes it for m > gemv_rows_max_m<Arch>; benchmarks
/// call it directly to compare). Shapes checked, m, n, k > 0.
template <class Arch, class W>
void gemm_packed(const tensor_view<const float, 2>& a, const tensor_view<const W, 2>& w, const tensor_view<float, 2>& c,
                 workspace& ws, bool accumulate) {
  const index_t m = a.extent(0), k = a.extent(1);
  const index_t n = w.extent(0);
  constexpr index_t NR = gemm_tile<Arch>::nr;
  const index_t kc = std::min(gemm_blocking::kc, k);
  const std::size_t per_thread = gemm_workspace_bytes<W>(k, 1);
  // Threads: one per NR-column panel at most, and no more than the workspace has buffers for.
  const index_t panels = (n + NR - 1) / NR;
  index_t threads = std::min<index_t>({num_threads(), panels,
                                       static_cast<index_t>((ws.capacity() - ws.used()) / per_thread)});
  threads = std::max<index_t>(threads, 1);
  workspace::frame frame(ws);
  float* wbuf = ws.alloc<float>(threads * gemm_blocking::nc * kc);  // throws when even one does not fit
  float* abuf = ws.alloc<float>(threads * gemm_blocking::mc * gemm_blocking::kc);
  const float* ap = a.data();
  const W* wptr = w.data();
  float* cp = c.data();
  const index_t lda = row_stride(a), ldw = row_stride(w), ldc = row_stride(c);
  // Each thread takes its share of the panels an NC block at a time; one that finishes first
  // takes 2 panels at a time from the back of the other's share (a descheduled vCPU).
  parallel_for_stealing(0, panels, gemm_blocking::nc / NR, 2, static_cast<int>(threads),
                        [&](index_t t, index_t p0, index_t p1) {
                          gemm_packed_range<Arch>(ap, lda, wptr, ldw, cp, ldc, m, k, p0 * NR, std::min(n, p1 * NR),
                                                  wbuf + t * gemm_blocking::nc * kc,
                                                  abuf + t * gemm_blocking::mc * gemm_blocking::kc, accumulate);
                        });
}

template <class W, class Arch>
void gemm_dispatch(tensor_view<const float, 2> a, tensor_view<const W, 2> w, tensor_view<float, 2> c,
                   workspace& ws, bool accumulate) {
  check_product_shapes(a, w, c, "gemm");
  const auto [m, k] = a.extents();
  const index_t n = w.extent(0);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (index_t i = 0; i < m; ++i) std::fill(c.row(i), c.row(i) + n, 0.f);
    return;
  }
  if constexpr (simd::is_scalar_v<Arch>) {
    gemm_reference(a, w, c, accumulate);
  } else {
    if (m == 1) return gemm_one_row<Arch>(a, w, c, accumulate);
    if (m <= gemv_rows_max_m<Arch>) return gemv_rows_run<Arch>(a, w, c, accumulate);
    gemm_packed<Arch>(a, w, c, ws, accumulate);
  }
}

}  // namespace detail

/// c = a · wᵀ, scalar reference (double accumulation is in the tests; this is the plain loop).
template <class W>
void gemm(tensor_view<const float, 2> a, tensor_view<const W, 2> w, tensor_view<float, 2> c, workspace&,
          simd::scalar) {
  detail::check_product_shapes(a, w, c, "gemm");
  detail::gemm_reference(a, w, c, false);
}

/// c = a · wᵀ with the packed kernel (threads: tessera::set_num_threads). Scratch comes from ws:
/// reserve gemm_workspace_bytes<W>(k) there beforehand.
template <class W, class Arch = simd::default_arch>
void gemm(tensor_view<const float, 2> a, tensor_view<const W, 2> w, tensor_view<float, 2> c, workspace& ws,
          Arch = {}) {
  detail::gemm_dispatch<W, Arch>(a, w, c, ws, false);
}

/// c += a · wᵀ (a residual add fused into the product), scalar reference.
template <class W>
void gemm_accumulate(tensor_view<const float, 2> a, tensor_view<const W, 2> w, tensor_view<float, 2> c, workspace&,
                     simd::scalar) {
  detail::check_product_shapes(a, w, c, "gemm");
  detail::gemm_reference(a, w, c, true);
}

/// c += a · wᵀ with the packed kernel.
template <class W, class Arch = simd::default_arch>
void gemm_accumulate(tensor_view<const float, 2> a, tensor_view<const W, 2> w, tensor_view<float, 2> c,
                     workspace& ws, Arch = {}) {
  detail::gemm_dispatch<W, Arch>(a, w, c, ws, true);
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
