// tessera/kernels/quant_linear.hpp: out = x · dequantize(w)ᵀ with w kept in its GGUF blocks.
//
//   x:   (m, k) f32 activations, rows contiguous
//   w:   (n, k / B::block_size) blocks of B (core/blocks.hpp), rows contiguous (a GGUF tensor)
//   out: (m, n) f32, rows contiguous; overwritten
//
// Decode and batched decode (m <= quant_rows_max_m): the m rows of x are quantized once into
// activation blocks (block_q8_sum or block_q8_K, kernels/quant_dot.hpp) in the workspace, then
// threads take chunks of ~256 KB of weight rows as they come free (as gemv does) and each group of
// four weight rows, read from memory once, is dotted with all m activation rows while it sits in
// L1 (kernels/quant_rows.hpp): integer products per block, one float multiply-add per block.
//
// Prefill (m > quant_rows_max_m) of q4_0, q8_0 and iq4_nl (quant_int8_prefill): the rows of x are
// quantized as for decode and multiplied in 8-bit integers, the weights rewritten 8 rows at a time
// into an interleaved panel (kernels/quant_panel.hpp), as llama.cpp does for these types.
//
// Prefill of the other types: the packed gemm (kernels/gemm.hpp) on dequantized panels. Each
// thread dequantizes 64 weight rows × kc columns (kc: 384, or 256 for the 256-element K-quant
// blocks) into f32 scratch, which gemm_packed_range packs and multiplies with all m rows of x; the
// dequantization is paid once per weight element for all m rows. Measured on Zen 3 (docs/quant.md)
// this beat the integer dot products from m = 16-24 on (quant_rows_max_m). x is not quantized on
// this path, so its rows carry only the float rounding of the product, while the decode path adds
// the activation's 8-bit quantization error (bounded in docs/quant.md).
//
// Scratch comes from the workspace (quant_linear_workspace_bytes); nothing is allocated.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

#include <tessera/core/blocks.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/kernels/gemm.hpp>
#include <tessera/kernels/quant_dequant.hpp>
#include <tessera/kernels/quant_dot.hpp>
#include <tessera/kernels/quant_panel.hpp>
#include <tessera/kernels/quant_rows.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace kernels {

/// Largest m for which quant_linear runs integer dot products (each weight row read once for all m
/// rows, a weight block unpacked once for 4 of them); above it the dequantizing packed gemm runs.
/// Zen 3, 2048 x 768, 1 thread (docs/quant.md): the gemm path overtook the integer one between m =
/// 16 and 24 for q4_0 and q8_0; for q4_K the integer path was still ahead at m = 32.
template <class B, class Arch = simd::default_arch>
inline constexpr index_t quant_rows_max_m = B::block_size == 32 ? 20 : 24;

/// Whether the prefill (m > quant_rows_max_m) of B multiplies 8-bit activations as decode does:
/// q4_0, q8_0 and iq4_nl, in the interleaved int8 panel product on x86 (kernels/quant_panel.hpp), with the
/// same integers (the row tiles' vec_dot) on other archs, so that a model's outputs do not depend
/// on the build's arch. The other types' prefill dequantizes panels into the f32 gemm.
template <class B>
inline constexpr bool quant_int8_prefill =
    std::is_same_v<B, block_q4_0> || std::is_same_v<B, block_q8_0> || std::is_same_v<B, block_iq4_nl>;

namespace detail {

/// Weight rows dequantized per packing step of the prefill path (a multiple of every NR).
inline constexpr index_t quant_panel_rows = 64;

/// Columns of w dequantized per packing step: a multiple of the block size, at most gemm's KC.
template <class B>
constexpr index_t quant_kc() noexcept {
  return gemm_blocking::kc / B::block_size * B::block_size;
}

/// Per-thread scratch of the prefill path, bytes: the dequantized rows, their packed panels, and
/// gemm's copy of a block of x.
template <class B>
constexpr std::size_t quant_gemm_thread_bytes() noexcept {
  return 2 * workspace::bytes_for<float>(quant_panel_rows * quant_kc<B>()) +
         workspace::bytes_for<float>(gemm_blocking::mc * gemm_blocking::kc);
}

template <class B>
void check_quant_linear_shapes(const tensor_view<const float, 2>& x, const tensor_view<const B, 2>& w,
                               const tensor_view<float, 2>& out) {
  const index_t k = w.extent(1) * B::block_size;
  if (x.extent(1) != k)
    throw shape_error("quant_linear: x columns (k) " + std::to_string(x.extent(1)) + " != w's " +
                      std::to_string(w.extent(1)) + " " + std::string(B::name) + " blocks × " +
                      std::to_string(B::block_size) + " = " + std::to_string(k));
  expect_equal(out.extent(0), x.extent(0), "quant_linear: out rows vs x rows (m)");
  expect_equal(out.extent(1), w.extent(0), "quant_linear: out columns vs w rows (n)");
  expect_rows_contiguous(x, "quant_linear: x");
  expect_rows_contiguous(w, "quant_linear: w");
  expect_rows_contiguous(out, "quant_linear: out");
}

/// Rows of w per chunk handed to a thread: ~256 KB of blocks, at least 4 chunks per thread, a
/// multiple of 16 rows.
inline index_t quant_chunk_rows(index_t n, index_t row_bytes) noexcept {
  const index_t by_bytes = (index_t{262144} + row_bytes - 1) / std::max<index_t>(row_bytes, 1);
  const index_t by_count = n / (4 * static_cast<index_t>(num_threads()));
  return std::max<index_t>(16, (std::min(by_bytes, by_count) + 15) / 16 * 16);
}

/// Bytes ahead of the current group of rows that the decode path prefetches. A group of four q8_0
/// rows of 768 is four interleaved streams of 13 cache lines each, too short for the hardware
/// prefetcher to follow: without software prefetches the decode read weights from memory at
/// 40-45% of a plain read of the same bytes on Zen 3 (docs/quant.md).
inline constexpr index_t quant_prefetch_distance = 8192;

/// out[i * ldo + j] = vec_dot(w row j, activation row i) for j in [lo, hi), all m rows: four rows of
/// w at a time (vec_dot_rows4, sharing each activation block), against the activation rows four at
/// a time while they sit in L1 (eight rows of w at a time for m = 1: vec_dot_rows8); the last 0-3
/// rows one by one. Each group's tile prefetches, spread over its blocks (detail::prefetch_stream),
/// the lines quant_prefetch_distance bytes past the group, up to the end of the range (the rows
/// after it may be another thread's); with several activation rows, only their first pass.
template <class Arch, class B, class A>
void quant_rows_range(const B* w, index_t ldw, const A* act, index_t kb, index_t m, float* out, index_t ldo,
                      index_t lo, index_t hi) noexcept {
  const char* limit = reinterpret_cast<const char*>(w + (hi - 1) * ldw + kb);
  auto ahead = [&](index_t j) {  // the lines quant_prefetch_distance past row j, to the end of the range
    if constexpr (simd::is_scalar_v<Arch> || quant_prefetch_distance == 0) return prefetch_stream{};
    return prefetch_stream{reinterpret_cast<const char*>(w + j * ldw) + quant_prefetch_distance, limit};
  };
  index_t j = lo;
  if (m == 1)  // decode: eight rows at a time
    for (; j + 8 <= hi; j += 8) vec_dot_rows8(w + j * ldw, ldw, act, kb, out + j, Arch{}, ahead(j));
  for (; j + 4 <= hi; j += 4)
    for (index_t i = 0; i < m; i += 4)  // up to 4 activation rows per pass over the 4 weight rows
      vec_dot_rows4(w + j * ldw, ldw, act + i * kb, kb, static_cast<int>(std::min<index_t>(4, m - i)), kb,
                    out + i * ldo + j, ldo, Arch{}, i == 0 ? ahead(j) : prefetch_stream{});
  for (; j < hi; ++j)
    for (index_t i = 0; i < m; ++i) out[i * ldo + j] = vec_dot(w + j * ldw, act + i * kb, kb, Arch{});
}

/// Quantizes the m rows of x into act (kb activation blocks each): in parallel for a prefill, on
/// the calling thread for a few decode rows (a parallel region costs more than they do).
template <class Arch, class A>
void quantize_rows(const tensor_view<const float, 2>& x, A* act, index_t kb, bool prefill) {
  const index_t m = x.extent(0);
  if (prefill)
    parallel_for(0, m, 16, [&](index_t lo, index_t hi) {
      for (index_t i = lo; i < hi; ++i) quantize_activation(x.row(i), act + i * kb, kb, Arch{});
    });
  else
    for (index_t i = 0; i < m; ++i) quantize_activation(x.row(i), act + i * kb, kb, Arch{});
}

/// The scalar prefill path: gemm_reference's plain loop on rows dequantized KC columns at a time,
/// the running sum kept in out between steps (the same float sums as gemm on the dequantized
/// matrix, so a scalar build's prefill equals its dequantized twin's bit for bit).
template <class B>
void quant_gemm_reference(const tensor_view<const float, 2>& x, const tensor_view<const B, 2>& w,
                          const tensor_view<float, 2>& out, workspace& ws) {
  const index_t m = x.extent(0), k = x.extent(1), n = w.extent(0);
  constexpr index_t KC = quant_kc<B>(), bs = B::block_size;
  workspace::frame frame(ws);
  float* row = ws.alloc<float>(KC);
  for (index_t j = 0; j < n; ++j)
    for (index_t pc = 0; pc < k; pc += KC) {
      const index_t kc = std::min(KC, k - pc);
      dequantize_row(w.row(j) + pc / bs, row, kc / bs, simd::scalar{});
      for (index_t i = 0; i < m; ++i) {
        const float* xi = x.row(i) + pc;
        float acc = pc == 0 ? 0.f : out(i, j);
        for (index_t p = 0; p < kc; ++p) acc += xi[p] * row[p];
        out(i, j) = acc;
      }
    }
}

/// The prefill path: out = x · dequantize(w)ᵀ through gemm_packed_range on dequantized panels.
template <class Arch, class B>
void quant_gemm(const tensor_view<const float, 2>& x, const tensor_view<const B, 2>& w,
                const tensor_view<float, 2>& out, workspace& ws) {
  if constexpr (simd::is_scalar_v<Arch>) {
    return quant_gemm_reference(x, w, out, ws);
  } else {
    const index_t m = x.extent(0), k = x.extent(1), n = w.extent(0);
    constexpr index_t P = quant_panel_rows, KC = quant_kc<B>(), bs = B::block_size;
    const std::size_t per_thread = quant_gemm_thread_bytes<B>();
    const index_t panels = (n + P - 1) / P;
    index_t threads = std::min<index_t>(
        {num_threads(), panels, static_cast<index_t>((ws.capacity() - ws.used()) / per_thread)});
    threads = std::max<index_t>(threads, 1);
    workspace::frame frame(ws);
    float* rows_buf = ws.alloc<float>(threads * P * KC);  // throws when even one thread's does not fit
    float* packed = ws.alloc<float>(threads * P * KC);
    float* a_buf = ws.alloc<float>(threads * gemm_blocking::mc * gemm_blocking::kc);
    const float* xp = x.data();
    const B* wp = w.data();
    float* op = out.data();
    const index_t ldx = row_stride(x), ldw = row_stride(w), ldo = row_stride(out);
    parallel_for_stealing(0, panels, 4, 1, static_cast<int>(threads), [&](index_t t, index_t p0, index_t p1) {
      float* rows = rows_buf + t * P * KC;
      float* pw = packed + t * P * KC;
      float* pa = a_buf + t * gemm_blocking::mc * gemm_blocking::kc;
      for (index_t j0 = p0 * P; j0 < std::min(n, p1 * P); j0 += P) {
        const index_t nr = std::min(P, n - j0);
        for (index_t pc = 0; pc < k; pc += KC) {
          const index_t kc = std::min(KC, k - pc);
          for (index_t r = 0; r < nr; ++r) dequantize_row(wp + (j0 + r) * ldw + pc / bs, rows + r * kc, kc / bs, Arch{});
          // rows (nr, kc) is now an f32 weight block: gemm packs and multiplies it with x[:, pc:pc+kc]
          gemm_packed_range<Arch, float>(xp + pc, ldx, rows, kc, op + j0, ldo, m, kc, 0, nr, pw, pa, pc > 0);
        }
      }
    });
  }
}

}  // namespace detail

/// Scratch bytes quant_linear needs for m activation rows of k features (the quantized
/// activations; for m > quant_rows_max_m, the prefill path's per-thread panels instead).
template <quant_block B>
std::size_t quant_linear_workspace_bytes(index_t m, index_t k, int threads = num_threads()) noexcept {
  using A = activation_block_t<B>;
  const std::size_t act = workspace::bytes_for<A>(m * (k / B::block_size));
  if (m <= quant_rows_max_m<B>) return act;
  if constexpr (quant_int8_prefill<B>) return act + quant_panel_bytes(k / B::block_size, threads);
  return std::max(act, detail::quant_gemm_thread_bytes<B>() * static_cast<std::size_t>(std::max(threads, 1)));
}

/// out (m, n) = x (m, k) · dequant(w)ᵀ, w: (n, k / B::block_size) blocks, rows contiguous. Takes
/// scratch from ws, never allocates. Threads over weight rows. Every Arch takes the same path for
/// the same m (a model's outputs do not depend on the build's arch); the scalar Arch's integer
/// path is the reference: vec_dot per (row, column), one thread.
template <quant_block B, simd::arch_tag Arch = simd::default_arch>
void quant_linear(tensor_view<const float, 2> x, tensor_view<const B, 2> w, tensor_view<float, 2> out, workspace& ws,
                  Arch = {}) {
  detail::check_quant_linear_shapes(x, w, out);
  using A = activation_block_t<B>;
  const index_t m = x.extent(0), n = w.extent(0), kb = w.extent(1);
  if (m == 0 || n == 0) return;
  if (kb == 0) {
    for (index_t i = 0; i < m; ++i) std::fill(out.row(i), out.row(i) + n, 0.f);
    return;
  }
  const bool prefill = m > quant_rows_max_m<B, Arch>;
  if (prefill && !quant_int8_prefill<B>) return detail::quant_gemm<Arch>(x, w, out, ws);
  workspace::frame frame(ws);
  A* act = ws.alloc<A>(m * kb);
  detail::quantize_rows<Arch>(x, act, kb, prefill);
  const B* wp = w.data();
  const index_t ldw = detail::row_stride(w), ldo = detail::row_stride(out);
  float* op = out.data();
  if constexpr (quant_panel_available<B, Arch>())
    if (prefill) return quant_panel_linear<Arch>(act, m, wp, ldw, n, kb, op, ldo, ws);
  if constexpr (simd::is_scalar_v<Arch>) {
    detail::quant_rows_range<Arch>(wp, ldw, act, kb, m, op, ldo, 0, n);
  } else {
    const index_t chunk = detail::quant_chunk_rows(n, kb * static_cast<index_t>(sizeof(B)));
    parallel_for_dynamic(0, n, chunk, [&](index_t lo, index_t hi) {
      detail::quant_rows_range<Arch>(wp, ldw, act, kb, m, op, ldo, lo, hi);
    });
  }
}

}  // namespace kernels
}  // namespace v0
}  // namespace tessera
