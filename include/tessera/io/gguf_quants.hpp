// tessera/io/gguf_quants.hpp: ggml block formats → f32 (dequantization at load).
//
// The block formats, their layouts and their bit-exact dequantization (ggml's dequantize_row_*)
// live in core/blocks.hpp; this file maps a GGUF tensor's ggml type to them.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include <tessera/config.hpp>
#include <tessera/core/blocks.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/core/error.hpp>
#include <tessera/io/gguf.hpp>

namespace tessera {
inline namespace v0 {
namespace io {

namespace detail {

inline float load_f16(const std::uint8_t* p) noexcept {
  return tessera::detail::half_bits_to_float(static_cast<std::uint16_t>(p[0] | (p[1] << 8)));
}

/// n_blocks blocks of B at x → y through the block's dequantize (core/blocks.hpp). Blocks of a
/// GGUF tensor are 2-byte aligned; a caller's odd address is copied block by block instead.
template <class B>
void dequantize_blocks(const std::uint8_t* x, float* y, std::int64_t n_blocks) noexcept {
  if (reinterpret_cast<std::uintptr_t>(x) % alignof(B) == 0) {
    tessera::dequantize(reinterpret_cast<const B*>(x), y, n_blocks);
    return;
  }
  for (std::int64_t i = 0; i < n_blocks; ++i) {
    B b;
    std::memcpy(&b, x + i * static_cast<std::int64_t>(sizeof(B)), sizeof(B));
    tessera::dequantize(&b, y + i * B::block_size, 1);
  }
}

template <class T>
void widen(const std::uint8_t* x, float* y, std::int64_t n) noexcept {
  for (std::int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, x + i * static_cast<std::int64_t>(sizeof(T)), sizeof(T));
    y[i] = static_cast<float>(v);
  }
}

}  // namespace detail

/// True for the ggml types dequantize() converts.
inline bool can_dequantize(ggml_type t) noexcept {
  switch (t) {
    case ggml_type::f32: case ggml_type::f16: case ggml_type::bf16: case ggml_type::f64:
    case ggml_type::i8: case ggml_type::i16: case ggml_type::i32:
    case ggml_type::q4_0: case ggml_type::q4_1: case ggml_type::q5_0: case ggml_type::q5_1: case ggml_type::q8_0:
    case ggml_type::q4_k: case ggml_type::q5_k: case ggml_type::q6_k:
    case ggml_type::iq4_nl: case ggml_type::iq4_xs: return true;
    default: return false;
  }
}

/// Converts `n` elements of type `t` starting at `src` (n a multiple of the block size; src holds
/// n / block * block_bytes bytes) into dst[0, n). Throws format_error for unsupported types.
inline void dequantize(ggml_type t, const std::byte* src, float* dst, std::int64_t n) {
  const auto tr = ggml_traits(t);
  if (!can_dequantize(t))
    throw format_error("dequantize: ggml type " + ggml_type_name(t) +
                       " is not supported (supported: F32 F16 BF16 F64 I8 I16 I32 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K)");
  if (n < 0 || n % tr.block != 0)
    throw format_error("dequantize: " + std::to_string(n) + " elements is not a multiple of the " +
                       std::string(tr.name) + " block size " + std::to_string(tr.block));
  const auto* x = reinterpret_cast<const std::uint8_t*>(src);
  const std::int64_t nb = n / tr.block;
  switch (t) {
    case ggml_type::f32: if (n) std::memcpy(dst, x, static_cast<std::size_t>(n) * 4); break;
    case ggml_type::f16:
      for (std::int64_t i = 0; i < n; ++i) dst[i] = detail::load_f16(x + 2 * i);
      break;
    case ggml_type::bf16:
      for (std::int64_t i = 0; i < n; ++i)
        dst[i] = tessera::detail::bf16_bits_to_float(static_cast<std::uint16_t>(x[2 * i] | (x[2 * i + 1] << 8)));
      break;
    case ggml_type::f64: detail::widen<double>(x, dst, n); break;
    case ggml_type::i8: detail::widen<std::int8_t>(x, dst, n); break;
    case ggml_type::i16: detail::widen<std::int16_t>(x, dst, n); break;
    case ggml_type::i32: detail::widen<std::int32_t>(x, dst, n); break;
    case ggml_type::q4_0: detail::dequantize_blocks<block_q4_0>(x, dst, nb); break;
    case ggml_type::q4_1: detail::dequantize_blocks<block_q4_1>(x, dst, nb); break;
    case ggml_type::q5_0: detail::dequantize_blocks<block_q5_0>(x, dst, nb); break;
    case ggml_type::q5_1: detail::dequantize_blocks<block_q5_1>(x, dst, nb); break;
    case ggml_type::q8_0: detail::dequantize_blocks<block_q8_0>(x, dst, nb); break;
    case ggml_type::q4_k: detail::dequantize_blocks<block_q4_K>(x, dst, nb); break;
    case ggml_type::q5_k: detail::dequantize_blocks<block_q5_K>(x, dst, nb); break;
    case ggml_type::q6_k: detail::dequantize_blocks<block_q6_K>(x, dst, nb); break;
    case ggml_type::iq4_nl: detail::dequantize_blocks<block_iq4_nl>(x, dst, nb); break;
    case ggml_type::iq4_xs: detail::dequantize_blocks<block_iq4_xs>(x, dst, nb); break;
    default: break;
  }
}

}  // namespace io
}  // namespace v0
}  // namespace tessera
