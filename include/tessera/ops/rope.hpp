// tessera/ops/rope.hpp: rotary position embedding, in place.
//
//   x:         (l, n_heads, head_dim) f32, innermost dimension contiguous (any outer strides:
//              a q or k slice of a fused qkv projection works)
//   positions: (l) int32, >= 0: the absolute position of each token
//   inv_freq:  (rotary_dim / 2) f32: θ_i = inv_freq[i]; rotary_dim = 2 · inv_freq.size() <= head_dim
//              (partial rotary: only the first rotary_dim dims of every head rotate; the rest pass)
//
// For token t at position p and pair i, with c = cos(p · θ_i) · s_attn, s = sin(p · θ_i) · s_attn
// (s_attn = rope_params::attention_scaling, YaRN's mscale; 1 otherwise):
//   neox (HF rotate_half, Llama/Mistral/Qwen/GPT-NeoX): the pair is (i, i + rotary_dim / 2)
//   gptj (GPT-J, interleaved, GGUF's "normal" rope):    the pair is (2i, 2i + 1)
//   (a, b) -> (a·c - b·s, b·c + a·s)
// The angle p · θ_i is a float product and cos / sin are taken in float, as transformers does
// (freqs = inv_freq @ position_ids in float32, emb.cos() * attention_scaling). Scaled variants
// (linear, dynamic NTK, llama3, YaRN) only change inv_freq and attention_scaling: compute them
// once and pass them in. cos / sin are computed once per (token, pair) and shared by all heads,
// in a 64-pair stack buffer, so rope never allocates.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <tessera/core/error.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/ops/rows.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace ops {

enum class rope_mode {
  neox,  ///< rotate_half: pairs (i, i + rotary_dim / 2)
  gptj,  ///< interleaved: pairs (2i, 2i + 1)
};

struct rope_params {
  rope_mode mode = rope_mode::neox;
  float attention_scaling = 1.f;  ///< multiplies cos and sin (YaRN / longrope mscale)
};

/// transformers' default inv_freq: 1 / theta^(2i / rotary_dim), i < rotary_dim / 2, computed in
/// float32 as `1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))`.
inline std::vector<float> rope_default_inv_freq(index_t rotary_dim, float theta) {
  if (rotary_dim <= 0 || rotary_dim % 2 != 0)
    throw config_error("rope_default_inv_freq: rotary_dim must be positive and even, got " +
                       std::to_string(rotary_dim));
  if (!(theta > 0.f)) throw config_error("rope_default_inv_freq: theta must be positive, got " + std::to_string(theta));
  std::vector<float> inv(static_cast<std::size_t>(rotary_dim / 2));
  for (index_t i = 0; i < rotary_dim / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(rotary_dim);
    inv[static_cast<std::size_t>(i)] = 1.f / std::pow(theta, e);
  }
  return inv;
}

namespace detail {

inline void check_rope(const tensor_view<float, 3>& x, const tensor_view<const std::int32_t, 1>& positions,
                       const tensor_view<const float, 1>& inv_freq) {
  const auto [l, n_heads, head_dim] = x.extents();
  expect_shape(positions, {l}, "rope", "positions");
  if (2 * inv_freq.extent(0) > head_dim)
    throw shape_error("rope: rotary_dim = 2 * inv_freq.size() = " + std::to_string(2 * inv_freq.extent(0)) +
                      " exceeds head_dim " + std::to_string(head_dim));
  expect_dense_rows(x, "rope", "x");
  for (index_t t = 0; t < l; ++t)
    if (positions(t) < 0)
      throw range_error("rope: position " + std::to_string(positions(t)) + " of token " + std::to_string(t) +
                        " is negative");
}

inline constexpr index_t rope_chunk = 64;  // pairs whose cos / sin sit on the stack at once

/// cos / sin of p · inv_freq[i0 + j] for j < m, scaled.
inline void rope_cos_sin(std::int32_t p, const tensor_view<const float, 1>& inv_freq, index_t i0, index_t m,
                         float scaling, float* c, float* s) noexcept {
  for (index_t j = 0; j < m; ++j) {
    const float angle = static_cast<float>(p) * inv_freq(i0 + j);
    c[j] = std::cos(angle) * scaling;
    s[j] = std::sin(angle) * scaling;
  }
}

}  // namespace detail

/// Rotary embedding in place, scalar reference.
inline void rope(tensor_view<float, 3> x, tensor_view<const std::int32_t, 1> positions,
                 tensor_view<const float, 1> inv_freq, const rope_params& params, simd::scalar) {
  detail::check_rope(x, positions, inv_freq);
  const auto [l, n_heads, head_dim] = x.extents();
  const index_t half = inv_freq.extent(0);
  for (index_t t = 0; t < l; ++t)
    for (index_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(positions(t)) * inv_freq(i);
      const float c = std::cos(angle) * params.attention_scaling;
      const float s = std::sin(angle) * params.attention_scaling;
      const index_t ia = params.mode == rope_mode::neox ? i : 2 * i;
      const index_t ib = params.mode == rope_mode::neox ? i + half : 2 * i + 1;
      for (index_t h = 0; h < n_heads; ++h) {
        const float a = x(t, h, ia), b = x(t, h, ib);
        x(t, h, ia) = a * c - b * s;
        x(t, h, ib) = b * c + a * s;
      }
    }
}

/// Rotary embedding in place, vectorized over the pairs of a head (neox); tokens over threads.
template <simd::arch_tag Arch = simd::default_arch>
void rope(tensor_view<float, 3> x, tensor_view<const std::int32_t, 1> positions, tensor_view<const float, 1> inv_freq,
          const rope_params& params, Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    rope(x, positions, inv_freq, params, simd::scalar{});
  } else {
    detail::check_rope(x, positions, inv_freq);
    using batch = simd::fbatch<Arch>;
    constexpr index_t L = simd::lanes_v<Arch>;
    const index_t l = x.extent(0), n_heads = x.extent(1), head_dim = x.extent(2);
    const index_t half = inv_freq.extent(0);
    const bool neox = params.mode == rope_mode::neox;
    const index_t sh = x.stride(1);
    parallel_for(0, l, detail::row_grain(n_heads * head_dim), [&](index_t lo, index_t hi) {
      alignas(64) float c[detail::rope_chunk], s[detail::rope_chunk];
      for (index_t t = lo; t < hi; ++t) {
        float* xt = x.data() + t * x.stride(0);
        for (index_t i0 = 0; i0 < half; i0 += detail::rope_chunk) {
          const index_t m = std::min(detail::rope_chunk, half - i0);
          detail::rope_cos_sin(positions(t), inv_freq, i0, m, params.attention_scaling, c, s);
          for (index_t h = 0; h < n_heads; ++h) {
            float* xh = xt + h * sh;
            if (neox) {
              float* pa = xh + i0;
              float* pb = xh + i0 + half;
              index_t j = 0;
              for (; j + L <= m; j += L) {
                const batch a = batch::load_unaligned(pa + j), b = batch::load_unaligned(pb + j);
                const batch cv = batch::load_aligned(c + j), sv = batch::load_aligned(s + j);
                (a * cv - b * sv).store_unaligned(pa + j);
                (b * cv + a * sv).store_unaligned(pb + j);
              }
              if (j < m) {
                const index_t r = m - j;
                const batch a = simd::load_partial<Arch>(pa + j, r), b = simd::load_partial<Arch>(pb + j, r);
                const batch cv = simd::load_partial<Arch>(c + j, r), sv = simd::load_partial<Arch>(s + j, r);
                simd::store_partial<Arch>(pa + j, a * cv - b * sv, r);
                simd::store_partial<Arch>(pb + j, b * cv + a * sv, r);
              }
            } else {
              // Interleaved pairs: a few flops per pair, not worth a shuffle.
              for (index_t j = 0; j < m; ++j) {
                float* p = xh + 2 * (i0 + j);
                const float a = p[0], b = p[1];
                p[0] = a * c[j] - b * s[j];
                p[1] = b * c[j] + a * s[j];
              }
            }
          }
        }
      }
    });
  }
}

/// rope with default params (neox, no attention scaling).
template <simd::arch_tag Arch = simd::default_arch>
void rope(tensor_view<float, 3> x, tensor_view<const std::int32_t, 1> positions, tensor_view<const float, 1> inv_freq,
          Arch = {}) {
  rope(x, positions, inv_freq, rope_params{}, Arch{});
}

}  // namespace ops
}  // namespace v0
}  // namespace tessera
