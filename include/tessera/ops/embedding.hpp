// tessera/ops/embedding.hpp: get_rows, the embedding gather (ggml's GGML_OP_GET_ROWS).
//
//   table: (vocab, d) f32 / f16 / bf16, rows contiguous; or (vocab, d / block) ggml blocks
//          (core/blocks.hpp), each row dequantized as it is gathered; or (vocab / 8, d / 32)
//          block_q4_0x8, rows interleaved 8 at a time
//   ids:   (n) int32 token ids, each in [0, vocab)
//   out:   (n, d) f32, rows contiguous: out[t] = float(table[ids[t]])
// An id out of range is a range_error naming the id, its position and the vocab size.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>

#include <tessera/core/blocks.hpp>
#include <tessera/core/blocks_interleaved.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/ops/rows.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace ops {

namespace detail {

template <class W>
void check_get_rows(const tensor_view<W, 2>& table, std::span<const std::int32_t> ids, const tensor_view<float, 2>& out) {
  const index_t vocab = table.extent(0) * block_rows_v<W>, d = table.extent(1) * block_elements_v<W>;
  expect_shape(out, {static_cast<index_t>(ids.size()), d}, "get_rows", "out");
  expect_dense_rows(table, "get_rows", "table");
  expect_dense_rows(out, "get_rows", "out");
  for (std::size_t t = 0; t < ids.size(); ++t)
    if (ids[t] < 0 || ids[t] >= vocab)
      throw range_error("get_rows: token id " + std::to_string(ids[t]) + " at position " + std::to_string(t) +
                        " is out of range for a vocab of " + std::to_string(vocab));
}

/// out[t] = float(table[ids[t]]) for a table of row-interleaved blocks: each of the row's blocks
/// taken out of its block column (row_block), then dequantized.
template <interleaved_block B>
void get_rows_interleaved(const tensor_view<const B, 2>& table, std::span<const std::int32_t> ids,
                          const tensor_view<float, 2>& out) {
  check_get_rows(table, ids, out);
  for (std::size_t t = 0; t < ids.size(); ++t) {
    const index_t p = ids[t] / B::rows;
    const int r = static_cast<int>(ids[t] % B::rows);
    for (index_t b = 0; b < table.extent(1); ++b) {
      const typename B::row_block rb = row_block(table(p, b), r);
      if constexpr (is_panel_v<B>) out(static_cast<index_t>(t), b) = to_float(rb);
      else dequantize(&rb, out.row(static_cast<index_t>(t)) + b * B::block_size, 1);
    }
  }
}

}  // namespace detail

/// out[t] = float(table[ids[t]]), scalar reference.
template <class W>
void get_rows(tensor_view<W, 2> table, std::span<const std::int32_t> ids, tensor_view<float, 2> out, simd::scalar) {
  if constexpr (interleaved_block<std::remove_const_t<W>>) {
    detail::get_rows_interleaved(table, ids, out);
  } else {
    detail::check_get_rows(table, ids, out);
    const index_t d = table.extent(1);
    for (std::size_t t = 0; t < ids.size(); ++t) {
      if constexpr (quant_block<std::remove_const_t<W>>) dequantize(table.row(ids[t]), out.row(static_cast<index_t>(t)), d);
      else for (index_t i = 0; i < d; ++i) out(static_cast<index_t>(t), i) = to_float(table(ids[t], i));
    }
  }
}

/// out[t] = float(table[ids[t]]): memcpy for f32, widened in registers for f16 / bf16.
template <class W, simd::arch_tag Arch = simd::default_arch>
void get_rows(tensor_view<W, 2> table, std::span<const std::int32_t> ids, tensor_view<float, 2> out, Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch> || interleaved_block<std::remove_const_t<W>>) {
    get_rows(table, ids, out, simd::scalar{});
  } else {
    detail::check_get_rows(table, ids, out);
    using U = std::remove_const_t<W>;
    constexpr index_t L = simd::lanes_v<Arch>;
    const index_t d = table.extent(1);
    for (std::size_t t = 0; t < ids.size(); ++t) {
      const U* src = table.row(ids[t]);
      float* dst = out.row(static_cast<index_t>(t));
      if constexpr (quant_block<U>) {
        dequantize(src, dst, d);  // d blocks
      } else if constexpr (std::is_same_v<U, float>) {
        std::memcpy(dst, src, sizeof(float) * static_cast<std::size_t>(d));
      } else {
        index_t i = 0;
        for (; i + L <= d; i += L) simd::load_widened<Arch>(src + i).store_unaligned(dst + i);
        for (; i < d; ++i) dst[i] = to_float(src[i]);
      }
    }
  }
}

/// get_rows into a new (n, d) tensor.
template <class W, simd::arch_tag Arch = simd::default_arch>
tensor<float, 2> get_rows_copy(tensor_view<W, 2> table, std::span<const std::int32_t> ids, Arch = {}) {
  tensor<float, 2> out({static_cast<index_t>(ids.size()), table.extent(1) * block_elements_v<W>});
  get_rows(table, ids, out.view(), Arch{});
  return out;
}

}  // namespace ops
}  // namespace v0
}  // namespace tessera
