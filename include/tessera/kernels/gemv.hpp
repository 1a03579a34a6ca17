// tessera/kernels/gemv.hpp: decode-path matrix-vector product, y = w · x.
//
//   x: (k) f32, contiguous
//   w: (n, k) weights, f32 / f16 / bf16, rows contiguous (nn.Linear layout; row stride >= k), read directly
//   y: (n) f32, contiguous; overwritten
//
// Decode is bound by memory bandwidth: every weight byte is read once per token, so the narrow
// types are read as they are stored and widened in registers (f16: F16C vcvtph2ps; bf16: zero
// extend and shift left by 16, which is exact). Threads take contiguous chunks of ~256 KB of rows
// as they come free (parallel_for_dynamic, gemv_chunk_rows) and walk each in blocks of a few rows
// when the rows are equally aligned (gemv_row_block: one haddp per block instead of a horizontal
// add per row) or one row at a time (gemv_row_stream; gemv_block_shape says which, per SIMD level,
// type and row length), prefetching gemv_prefetch_distance bytes ahead up to the end of the chunk
// where that helps (gemv_prefetch_enabled). gemv_many runs several matrices that share x in one
// parallel region.
//
// gemv_rows_range is also gemm's kernel for m = 1. Several activation rows at once
// (batched decode) have their own register-blocked kernel, kernels/gemv_rows.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>

#if defined(__AVX512F__) || defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include <tessera/core/dtype.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

namespace detail {

// The weights widened to f32 in registers: simd::load_widened (simd/vec.hpp).
using simd::load_widened;

/// c = a · wᵀ shapes, for gemm and gemv_rows (`op` names the caller in messages):
/// a (m, k), w (n, k), c (m, n), rows contiguous.
template <class W>
void check_product_shapes(const tensor_view<const float, 2>& a, const tensor_view<const W, 2>& w,
                          const tensor_view<float, 2>& c, const char* op) {
  expect_equal(a.extent(1), w.extent(1), check_name{op, nullptr, "a columns (k) vs w columns (k)"});
  expect_equal(c.extent(0), a.extent(0), check_name{op, nullptr, "c rows vs a rows (m)"});
  expect_equal(c.extent(1), w.extent(0), check_name{op, nullptr, "c columns vs w rows (n)"});
  expect_rows_contiguous(a, check_name{op, nullptr, "a"});
  expect_rows_contiguous(w, check_name{op, nullptr, "w"});
  expect_rows_contiguous(c, check_name{op, nullptr, "c"});
}

/// Is this Arch one load_widened reads narrow types with in-register conversion (not the fallback)?
template <class Arch>
constexpr bool has_fast_widen() noexcept {
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) return true;
#endif
#if defined(__AVX2__) && defined(__F16C__)
  if constexpr (std::is_base_of_v<xsimd::avx2, Arch>) return true;
#endif
  return false;
}

template <class W>
void check_gemv_shapes(const tensor_view<const float, 1>& x, const tensor_view<const W, 2>& w,
                       const tensor_view<float, 1>& y) {
  expect_equal(x.extent(0), w.extent(1), "gemv: x length (k) vs w columns (k)");
  expect_equal(y.extent(0), w.extent(0), "gemv: y length vs w rows (n)");
  expect_rows_contiguous(w, "gemv: w");
  if (x.extent(0) > 1 && x.stride(0) != 1) throw shape_error("gemv: x must be contiguous (stride " + std::to_string(x.stride(0)) + ")");
  if (y.extent(0) > 1 && y.stride(0) != 1) throw shape_error("gemv: y must be contiguous (stride " + std::to_string(y.stride(0)) + ")");
}

/// Bytes ahead of the loads that gemv prefetches weights (into L2) where that helps. The hardware
/// prefetchers alone keep too few lines in flight once the core has enough arithmetic per byte to
/// fill its out-of-order window before the loads return: on Intel (Sapphire Rapids) f16 rows,
/// widened in registers, streamed at 55-65% of the read bandwidth without this and at 85-100% with
/// it. On AMD (Zen 3) the same prefetches slow the stream (the L2 stream prefetcher already runs
/// far enough ahead there): f32 by 15%, f16 by 4-18% (docs/gemm.md has the tables).
inline constexpr index_t gemv_prefetch_distance = 16384;

/// Whether this is an AMD CPU (cpuid vendor "AuthenticAMD"), read once.
inline bool cpu_is_amd() noexcept {
  static const bool amd = [] {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    unsigned a = 0, b = 0, c = 0, d = 0;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0));
    return b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;  // "Auth" "enti" "cAMD"
#else
    return false;
#endif
  }();
  return amd;
}

/// Whether gemv issues its software prefetches for weights of type W: on every CPU but AMD's.
/// Zen 3 in session 20 (docs/gemm.md, "Huge pages"): without them the f16 decode of the Llama-768
/// and 155.7 M GGUFs ran 1.10-1.21x faster on 2 MiB pages and 1.04-1.18x on 4 KiB pages (the
/// 1.2-1.35x they gave f16 in session 18 is gone with today's row walk); f32 was already faster
/// without. (gemv_rows, several rows of activations, keeps its own prefetches everywhere.)
template <class W>
bool gemv_prefetch_enabled() noexcept {
  return !cpu_is_amd();
}

/// Prefetches the lines `gemv_prefetch_distance` bytes past the n elements at p, never past limit
/// (the end of this chunk of rows: the rows after it may be another thread's).
template <class W, index_t N>
TESSERA_ALWAYS_INLINE void gemv_prefetch(const W* p, const char* limit) noexcept {
  constexpr index_t bytes = N * static_cast<index_t>(sizeof(W));
  const char* ahead = reinterpret_cast<const char*>(p) + gemv_prefetch_distance;
#pragma GCC unroll 4
  for (index_t b = 0; b < bytes; b += 64)
    if (ahead + b < limit) __builtin_prefetch(ahead + b, 0, 1);
}

/// How gemv walks rows of W for one activation vector. AVX-512: blocks of R = 4 rows × U = 4
/// vectors (gemv_row_block). AVX2 (measured on Zen 3, docs/gemm.md): f32 rows of 2 KB or more in
/// blocks of 8 rows × 1 vector, 5-25% faster from memory than 4 × 2; f16 / bf16 rows, and shorter
/// f32 rows, one row at a time, a cache line per step (gemv_row_stream): 10-30% faster for f16 on
/// weights mmap-ed from a file, 1.3-1.5x for f32 rows of 288 (a block's 8 streams of 18 lines each
/// are too short for the hardware prefetcher; one row after another is one long stream).
template <class Arch, class W>
struct gemv_block_shape {
  static constexpr index_t lanes = xsimd::batch<float, Arch>::size;
  static constexpr index_t U = lanes >= 16 ? 4 : 1;
  static constexpr index_t R = lanes / U;
  /// Whether rows of k elements go through gemv_row_stream instead of row blocks.
  static constexpr bool row_stream(index_t k) noexcept {
    return lanes < 16 && (sizeof(W) == 2 || k * static_cast<index_t>(sizeof(W)) < 2048);
  }
};

/// y[j] = dot(w row j, x) for j in [lo, hi), one row at a time: 4 independent vectors per step and
/// nothing else in the loop, so each row is one sequential stream of whole cache lines.
template <class Arch, bool Prefetch, class W>
void gemv_row_stream(const float* x, const W* w, index_t ldw, index_t k, float* y, index_t lo, index_t hi,
                     const char* limit) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t lanes = batch::size, step = 4 * lanes;
  for (index_t j = lo; j < hi; ++j) {
    const W* row = w + j * ldw;
    batch a0(0.f), a1(0.f), a2(0.f), a3(0.f);
    index_t p = 0;
    for (; p + step <= k; p += step) {
      a0 = xsimd::fma(load_widened<Arch>(row + p), batch::load_unaligned(x + p), a0);
      a1 = xsimd::fma(load_widened<Arch>(row + p + lanes), batch::load_unaligned(x + p + lanes), a1);
      a2 = xsimd::fma(load_widened<Arch>(row + p + 2 * lanes), batch::load_unaligned(x + p + 2 * lanes), a2);
      a3 = xsimd::fma(load_widened<Arch>(row + p + 3 * lanes), batch::load_unaligned(x + p + 3 * lanes), a3);
      if constexpr (Prefetch) gemv_prefetch<W, step>(row + p, limit);
    }
    for (; p + lanes <= k; p += lanes) a0 = xsimd::fma(load_widened<Arch>(row + p), batch::load_unaligned(x + p), a0);
    float s = xsimd::hadd((a0 + a1) + (a2 + a3));
    for (; p < k; ++p) s += to_float(row[p]) * x[p];
    y[j] = s;
  }
}

/// y[j .. j + R) for R consecutive rows of w at once (one activation vector): U vectors per row per
/// step, the R·U = W accumulators summed by one haddp at the end instead of a horizontal add per
/// row, and each vector of x loaded once for the R rows. Rows of 768 f16 (1.5 KB) are short enough
/// that the per-row reduction and loop setup otherwise cost as much as the loads. Requires every
/// row to start at the same offset within the load alignment (`head` leading elements, done one by
/// one like the tail). Prefetch: whether to issue gemv_prefetch (gemv_prefetch_enabled<W>).
template <class Arch, bool Prefetch, class W>
void gemv_row_block(const float* x, const W* w, index_t ldw, index_t k, index_t head, float* y,
                    const char* limit) noexcept {
  using batch = xsimd::batch<float, Arch>;
  using shape = gemv_block_shape<Arch, W>;
  constexpr index_t lanes = shape::lanes, U = shape::U, R = shape::R;
  constexpr index_t step = U * lanes;
  const index_t ku = head + (k - head) / step * step;
  const index_t kv = head + (k - head) / lanes * lanes;
  static_assert(R * U == lanes, "gemv_row_block: the R·U accumulators must be one haddp");
  batch acc[lanes];
#pragma GCC unroll 16
  for (index_t i = 0; i < lanes; ++i) acc[i] = batch(0.f);
  for (index_t p = head; p < ku; p += step) {
#pragma GCC unroll 4
    for (index_t u = 0; u < U; ++u) {
      const batch xv = batch::load_unaligned(x + p + u * lanes);
#pragma GCC unroll 8
      for (index_t r = 0; r < R; ++r)
        acc[r * U + u] = xsimd::fma(load_widened<Arch>(w + r * ldw + p + u * lanes), xv, acc[r * U + u]);
    }
    if constexpr (Prefetch) {
#pragma GCC unroll 8
      for (index_t r = 0; r < R; ++r) gemv_prefetch<W, step>(w + r * ldw + p, limit);
    }
  }
  for (index_t p = ku; p < kv; p += lanes) {
    const batch xv = batch::load_unaligned(x + p);
#pragma GCC unroll 8
    for (index_t r = 0; r < R; ++r) acc[r * U] = xsimd::fma(load_widened<Arch>(w + r * ldw + p), xv, acc[r * U]);
  }
  alignas(64) float sums[lanes];
  xsimd::haddp(acc).store_aligned(sums);
  const index_t* lane = simd::haddp_lane<Arch>();
  for (index_t r = 0; r < R; ++r) {
    float s = 0.f;
    for (index_t u = 0; u < U; ++u) s += sums[lane[r * U + u]];
    const W* row = w + r * ldw;
    for (index_t p = 0; p < head; ++p) s += to_float(row[p]) * x[p];
    for (index_t p = kv; p < k; ++p) s += to_float(row[p]) * x[p];
    y[r] = s;
  }
}

/// y[j] = dot(w row j, x) for rows [lo, hi) of w (row stride ldw). The vectorized leaf of gemv and
/// of gemm for m = 1. One row of w at a time (or gemv_row_stream / gemv_row_block, as
/// gemv_block_shape chooses), so the weights are read as one sequential stream (the hardware
/// prefetcher's best case); 4 vectors per step along k give 4 independent FMA chains.
template <class Arch, bool Prefetch, class W>
void gemv_rows_range_impl(const float* x, const W* w, index_t ldw, index_t k, float* out, index_t lo,
                          index_t hi) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t lanes = batch::size;
  constexpr int U = 4;
  constexpr index_t step = U * lanes;
  constexpr std::uintptr_t align = std::min<std::uintptr_t>(64, lanes * sizeof(W));
  index_t j = lo;
  if (lo >= hi) return;
  if constexpr (lanes >= 8) {
    if (gemv_block_shape<Arch, W>::row_stream(k)) {
      gemv_row_stream<Arch, Prefetch>(x, w, ldw, k, out, lo, hi, reinterpret_cast<const char*>(w + (hi - 1) * ldw + k));
      return;
    }
    // blocks of rows when every row has the same alignment (the row stride is a multiple of it)
    constexpr index_t R = gemv_block_shape<Arch, W>::R;
    const auto addr = reinterpret_cast<std::uintptr_t>(w + lo * ldw);
    if (addr % sizeof(W) == 0 && (static_cast<std::uintptr_t>(ldw) * sizeof(W)) % align == 0) {
      const index_t head = std::min(k, static_cast<index_t>((align - addr % align) % align / sizeof(W)));
      const char* limit = reinterpret_cast<const char*>(w + (hi - 1) * ldw + k);
      for (; j + R <= hi; j += R) gemv_row_block<Arch, Prefetch>(x, w + j * ldw, ldw, k, head, out + j, limit);
    }
  }
  const char* limit = reinterpret_cast<const char*>(w + (hi - 1) * ldw + k);
  for (; j < hi; ++j) {
    const W* row = w + j * ldw;
    // Peel a few leading elements so the vector loads of w (lanes · sizeof(W) bytes: 64 for f32,
    // 32 for f16/bf16 on AVX-512) are aligned to their size: a row that starts mid cache line
    // (mmap-ed checkpoints, odd k) would otherwise split every load in two. Only as much as that:
    // the peeled elements are converted one by one, which costs more than the loads it saves
    // when rows are short (GGUF rows are 32-byte aligned; f16 k = 768 peeled 16 of 768).
    const auto addr = reinterpret_cast<std::uintptr_t>(row);
    index_t head = addr % sizeof(W) == 0 ? static_cast<index_t>((align - addr % align) % align / sizeof(W)) : 0;
    head = std::min(head, k);
    const index_t ku = head + (k - head) / step * step;
    const index_t kv = head + (k - head) / lanes * lanes;
    batch acc[U];
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) acc[u] = batch(0.f);
    for (index_t p = head; p < ku; p += step) {
#pragma GCC unroll 4
      for (int u = 0; u < U; ++u)
        acc[u] = xsimd::fma(load_widened<Arch>(row + p + u * lanes), batch::load_unaligned(x + p + u * lanes), acc[u]);
      if constexpr (Prefetch) gemv_prefetch<W, step>(row + p, limit);
    }
    for (index_t p = ku; p < kv; p += lanes) acc[0] = xsimd::fma(load_widened<Arch>(row + p), batch::load_unaligned(x + p), acc[0]);
    float s = xsimd::hadd(((acc[0] + acc[1]) + acc[2]) + acc[3]);
    for (index_t p = 0; p < head; ++p) s += to_float(row[p]) * x[p];
    for (index_t p = kv; p < k; ++p) s += to_float(row[p]) * x[p];
    out[j] = s;
  }
}

/// gemv_rows_range_impl with this CPU's prefetch choice (gemv_prefetch_enabled).
template <class Arch, class W>
void gemv_rows_range(const float* x, const W* w, index_t ldw, index_t k, float* out, index_t lo, index_t hi) noexcept {
  if (gemv_prefetch_enabled<W>()) gemv_rows_range_impl<Arch, true>(x, w, ldw, k, out, lo, hi);
  else gemv_rows_range_impl<Arch, false>(x, w, ldw, k, out, lo, hi);
}

inline index_t gemv_grain(index_t k) noexcept {
  return std::max<index_t>(16, (32768 / std::max<index_t>(k, 1) + 15) / 16 * 16);
}

/// Rows of w per chunk when threads take chunks as they come (parallel_for_dynamic): ~256 KB of
/// weights, but at least 4 chunks per thread, a multiple of 16 rows and at least gemv_grain. On a
/// shared machine one vCPU often runs slower than the other for a while; with a static split the
/// faster thread then waits at the join, with chunks it takes more of them.
template <class W>
inline index_t gemv_chunk_rows(index_t n, index_t k) noexcept {
  const index_t row_bytes = std::max<index_t>(k, 1) * static_cast<index_t>(sizeof(W));
  const index_t by_bytes = (index_t{262144} + row_bytes - 1) / row_bytes;
  const index_t by_count = n / (4 * static_cast<index_t>(num_threads()));
  return std::max(gemv_grain(k), (std::min(by_bytes, by_count) + 15) / 16 * 16);
}

}  // namespace detail

/// y = w · x, scalar reference.
template <class W>
void gemv(tensor_view<const float, 1> x, tensor_view<const W, 2> w, tensor_view<float, 1> y, simd::scalar) {
  detail::check_gemv_shapes(x, w, y);
  const auto [n, k] = w.extents();
  for (index_t j = 0; j < n; ++j) {
    float acc = 0.f;
    const W* row = w.row(j);
    for (index_t p = 0; p < k; ++p) acc += to_float(row[p]) * x(p);
    y(j) = acc;
  }
}

/// y = w · x, vectorized over k (narrow weights widened in registers), rows split over threads.
template <class W, class Arch = simd::default_arch>
void gemv(tensor_view<const float, 1> x, tensor_view<const W, 2> w, tensor_view<float, 1> y, Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    gemv(x, w, y, simd::scalar{});
  } else {
    detail::check_gemv_shapes(x, w, y);
    const index_t n = w.extent(0), k = w.extent(1);
    if (n == 0) return;
    const W* wp = w.data();
    const index_t ldw = n > 1 ? w.stride(0) : k;
    float* yp = y.data();
    parallel_for_dynamic(0, n, detail::gemv_chunk_rows<W>(n, k), [&](index_t lo, index_t hi) {
      detail::gemv_rows_range<Arch>(x.data(), wp, ldw, k, yp, lo, hi);
    });
  }
}

/// y_i = w_i · x for N weights of one type that share x (q, k, v; gate, up), scalar reference.
template <class W, std::size_t N>
void gemv_many(tensor_view<const float, 1> x, const std::array<tensor_view<const W, 2>, N>& w,
               const std::array<tensor_view<float, 1>, N>& y, simd::scalar) {
  for (std::size_t i = 0; i < N; ++i) gemv(x, w[i], y[i], simd::scalar{});
}

/// y_i = w_i · x for N weights of one type that share x: the rows of all N matrices, end to end,
/// split over threads in one parallel region, where N gemv calls would fork and join N times (a
/// decode step of a Llama layer then has 4 regions instead of 7).
template <class W, std::size_t N, class Arch = simd::default_arch>
void gemv_many(tensor_view<const float, 1> x, const std::array<tensor_view<const W, 2>, N>& w,
               const std::array<tensor_view<float, 1>, N>& y, Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    gemv_many(x, w, y, simd::scalar{});
  } else {
    std::array<index_t, N + 1> first{};  // first[i]: index of w[i]'s row 0 in the concatenation
    for (std::size_t i = 0; i < N; ++i) {
      detail::check_gemv_shapes(x, w[i], y[i]);
      first[i + 1] = first[i] + w[i].extent(0);
    }
    const index_t k = x.extent(0);
    parallel_for_dynamic(0, first[N], detail::gemv_chunk_rows<W>(first[N], k), [&](index_t lo, index_t hi) {
      for (std::size_t i = 0; i < N; ++i) {
        const index_t a = std::max(lo, first[i]) - first[i], b = std::min(hi, first[i + 1]) - first[i];
        if (a >= b) continue;
        const index_t n = w[i].extent(0);
        detail::gemv_rows_range<Arch>(x.data(), w[i].data(), n > 1 ? w[i].stride(0) : k, k, y[i].data(), a, b);
      }
    });
  }
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
