// tessera/ssm/conv1d.hpp: causal depthwise conv1d with state (Mamba's conv1d, ggml's ssm_conv).
//
//   x:          (l, channels)          inputs, rows contiguous (row stride >= channels: a column
//                                      slice of a projection output is fine)
//   weight:     (d_conv, channels)     time-major: row k meets the input d_conv-1-k steps back
//                                      (row d_conv-1 the current one). torch's Conv1d weight is
//                                      (channels, 1, d_conv): convert once with conv1d_weight_from_torch.
//   bias:       (channels)             optional
//   conv_state: (d_conv - 1, channels) in/out: the d_conv-1 inputs before x, oldest first; on
//                                      return, the last d_conv-1 inputs of [conv_state; x]
//   out:        (l, channels)          out(t, c) = act(bias(c) + Σ_k weight(k, c) · u(t + k - (d_conv-1), c))
//                                      with u = [conv_state; x]; act = SiLU if params.silu. out must
//                                      not alias x or conv_state.
//
// This is nn.Conv1d(groups=channels, padding=d_conv-1)[..., :l] started from conv_state instead
// of zeros, i.e. transformers' prefill (zero state) and its cached multi-token path. Step is the
// same with l = 1 (causal_conv1d_update). Widths 2..5 are compiled with a constant d_conv (every
// Mamba uses 4); others take a generic loop. Vectorized over channels; channels split over threads.
#pragma once

#include <optional>
#include <string>

#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/ssm/ssm_math.hpp>

namespace tessera {
inline namespace v0 {
namespace ssm {

struct conv1d_params {
  bool silu = false;  // apply SiLU to the output (Mamba's act after the conv)
};

/// weight_torch (channels, d_conv) (= Conv1d.weight squeezed) -> weight (d_conv, channels).
inline void conv1d_weight_from_torch(tensor_view<const float, 2> weight_torch, tensor_view<float, 2> weight) {
  const auto [channels, d_conv] = weight_torch.extents();
  detail::expect_shape(weight, extents<2>{d_conv, channels}, "conv1d_weight_from_torch: weight");
  for (index_t c = 0; c < channels; ++c)
    for (index_t k = 0; k < d_conv; ++k) weight(k, c) = weight_torch(c, k);
}

namespace detail {

inline void check_conv1d(const tensor_view<const float, 2>& x, const tensor_view<const float, 2>& weight,
                         const std::optional<tensor_view<const float, 1>>& bias,
                         const tensor_view<float, 2>& conv_state, const tensor_view<float, 2>& out) {
  const auto [l, channels] = x.extents();
  const index_t d_conv = weight.extent(0);
  if (d_conv < 1) throw shape_error("causal_conv1d: weight must have at least one row (d_conv >= 1)");
  expect_shape(weight, extents<2>{d_conv, channels}, "causal_conv1d: weight (d_conv, channels)");
  if (bias) expect_shape(*bias, extents<1>{channels}, "causal_conv1d: bias (channels)");
  expect_shape(conv_state, extents<2>{d_conv - 1, channels}, "causal_conv1d: conv_state (d_conv-1, channels)");
  expect_shape(out, extents<2>{l, channels}, "causal_conv1d: out (l, channels)");
}

/// The input row j of u = [conv_state; x], j in [-(d_conv-1), l).
TESSERA_ALWAYS_INLINE const float* conv_src(const float* x, index_t ldx, const float* st, index_t ldst,
                                            index_t d_conv, index_t j) noexcept {
  return j >= 0 ? x + j * ldx : st + (d_conv - 1 + j) * ldst;
}

/// Shifts the state of channels [lo, hi) after l inputs: state rows become the last d_conv-1 rows
/// of [state; x]. Reads of state rows come after (higher index than) writes, so in place is safe.
inline void conv_state_update(const float* x, index_t ldx, float* st, index_t ldst, index_t d_conv, index_t l,
                              index_t lo, index_t hi) noexcept {
  for (index_t r = 0; r < d_conv - 1; ++r) {
    const index_t j = l + r - (d_conv - 1);  // row of u to keep
    const float* src = conv_src(x, ldx, st, ldst, d_conv, j);
    float* dst = st + r * ldst;
    if (src == dst) continue;
    for (index_t c = lo; c < hi; ++c) dst[c] = src[c];
  }
}

/// Vectorized conv for channels [lo, hi), all l rows; K > 0 is a compile-time width, K == 0 generic.
template <int K, class Arch>
void conv1d_range(const float* x, index_t ldx, const float* w, index_t ldw, const float* bias, float* st,
                  index_t ldst, float* out, index_t ldo, index_t l, index_t d_conv_rt, bool silu, index_t lo,
                  index_t hi) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  const index_t d_conv = K > 0 ? K : d_conv_rt;
  const index_t hv = lo + (hi - lo) / W * W;
  for (index_t t = 0; t < l; ++t) {
    const float* src[K > 0 ? K : 16];
    const float** srcp = src;
    const float* src_dyn[64];
    if (K == 0 && d_conv > 16) srcp = src_dyn;
    for (index_t k = 0; k < d_conv; ++k) srcp[k] = conv_src(x, ldx, st, ldst, d_conv, t + k - (d_conv - 1));
    float* o = out + t * ldo;
    index_t c = lo;
    for (; c < hv; c += W) {
      batch acc = bias ? batch::load_unaligned(bias + c) : batch(0.f);
      if constexpr (K > 0) {
        for (int k = 0; k < K; ++k)
          acc = xsimd::fma(batch::load_unaligned(w + k * ldw + c), batch::load_unaligned(srcp[k] + c), acc);
      } else {
        for (index_t k = 0; k < d_conv; ++k)
          acc = xsimd::fma(batch::load_unaligned(w + k * ldw + c), batch::load_unaligned(srcp[k] + c), acc);
      }
      if (silu) acc = detail::silu<Arch>(acc);
      acc.store_unaligned(o + c);
    }
    for (; c < hi; ++c) {
      float acc = bias ? bias[c] : 0.f;
      for (index_t k = 0; k < d_conv; ++k) acc = std::fma(w[k * ldw + c], srcp[k][c], acc);
      o[c] = silu ? detail::silu(acc) : acc;
    }
  }
  conv_state_update(x, ldx, st, ldst, d_conv, l, lo, hi);
}

}  // namespace detail

/// Scalar reference: the plain sum, one channel and one token at a time.
inline void causal_conv1d(tensor_view<const float, 2> x, tensor_view<const float, 2> weight,
                          std::optional<tensor_view<const float, 1>> bias, tensor_view<float, 2> conv_state,
                          tensor_view<float, 2> out, const conv1d_params& params, simd::scalar) {
  detail::check_conv1d(x, weight, bias, conv_state, out);
  const auto [l, channels] = x.extents();
  const index_t d_conv = weight.extent(0);
  for (index_t t = 0; t < l; ++t)
    for (index_t c = 0; c < channels; ++c) {
      float acc = bias ? (*bias)(c) : 0.f;
      for (index_t k = 0; k < d_conv; ++k) {
        const index_t j = t + k - (d_conv - 1);  // input position; < 0 reads the state
        const float u = j >= 0 ? x(j, c) : conv_state(d_conv - 1 + j, c);
        acc += weight(k, c) * u;
      }
      out(t, c) = params.silu ? detail::silu(acc) : acc;
    }
  // new state: the last d_conv-1 rows of [conv_state; x], written oldest first
  for (index_t r = 0; r < d_conv - 1; ++r) {
    const index_t j = l + r - (d_conv - 1);
    for (index_t c = 0; c < channels; ++c) conv_state(r, c) = j >= 0 ? x(j, c) : conv_state(d_conv - 1 + j, c);
  }
}

/// Vectorized over channels, channels split over threads.
template <class Arch = simd::default_arch>
void causal_conv1d(tensor_view<const float, 2> x, tensor_view<const float, 2> weight,
                   std::optional<tensor_view<const float, 1>> bias, tensor_view<float, 2> conv_state,
                   tensor_view<float, 2> out, const conv1d_params& params, Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    causal_conv1d(x, weight, bias, conv_state, out, params, simd::scalar{});
  } else {
    detail::check_conv1d(x, weight, bias, conv_state, out);
    detail::expect_dense_rows(x, "causal_conv1d: x");
    detail::expect_dense_rows(weight, "causal_conv1d: weight (use conv1d_weight_from_torch)");
    detail::expect_dense_rows(conv_state, "causal_conv1d: conv_state");
    detail::expect_dense_rows(out, "causal_conv1d: out");
    if (bias) detail::expect_dense_rows(*bias, "causal_conv1d: bias");
    const index_t l = x.extent(0), channels = x.extent(1);
    const index_t d_conv = weight.extent(0);
    if (d_conv > 64) throw shape_error("causal_conv1d: d_conv " + std::to_string(d_conv) + " > 64 is not supported");
    const float* xp = x.data();
    const index_t ldx = detail::ld(x);
    const float* wp = weight.data();
    const index_t ldw = detail::ld(weight);
    const float* bp = bias ? bias->data() : nullptr;
    float* sp = conv_state.data();
    const index_t ldst = detail::ld(conv_state);
    float* op = out.data();
    const index_t ldo = detail::ld(out);
    const bool silu = params.silu;
    constexpr index_t W = detail::lanes_v<Arch>;
    // a few thousand multiply-adds per range at least, ranges aligned to whole vectors
    const index_t blocks = (channels + W - 1) / W;
    const index_t grain = std::max<index_t>(1, 4096 / std::max<index_t>(1, l * d_conv * W));
    parallel_for(0, blocks, grain, [&](index_t b0, index_t b1) {
      const index_t lo = b0 * W, hi = std::min(channels, b1 * W);
      switch (d_conv) {
        case 2: detail::conv1d_range<2, Arch>(xp, ldx, wp, ldw, bp, sp, ldst, op, ldo, l, d_conv, silu, lo, hi); break;
        case 3: detail::conv1d_range<3, Arch>(xp, ldx, wp, ldw, bp, sp, ldst, op, ldo, l, d_conv, silu, lo, hi); break;
        case 4: detail::conv1d_range<4, Arch>(xp, ldx, wp, ldw, bp, sp, ldst, op, ldo, l, d_conv, silu, lo, hi); break;
        case 5: detail::conv1d_range<5, Arch>(xp, ldx, wp, ldw, bp, sp, ldst, op, ldo, l, d_conv, silu, lo, hi); break;
        default: detail::conv1d_range<0, Arch>(xp, ldx, wp, ldw, bp, sp, ldst, op, ldo, l, d_conv, silu, lo, hi);
      }
    });
  }
}

/// One token (causal_conv1d_update): x (channels), out (channels); the state shifts by one.
inline void causal_conv1d_step(tensor_view<const float, 1> x, tensor_view<const float, 2> weight,
                               std::optional<tensor_view<const float, 1>> bias, tensor_view<float, 2> conv_state,
                               tensor_view<float, 1> out, const conv1d_params& params, simd::scalar) {
  const index_t channels = x.extent(0);
  causal_conv1d(tensor_view<const float, 2>(x.data(), {1, channels}, {channels, x.stride(0)}), weight, bias,
                conv_state, tensor_view<float, 2>(out.data(), {1, out.extent(0)}, {out.extent(0), out.stride(0)}),
                params, simd::scalar{});
}

template <class Arch = simd::default_arch>
void causal_conv1d_step(tensor_view<const float, 1> x, tensor_view<const float, 2> weight,
                        std::optional<tensor_view<const float, 1>> bias, tensor_view<float, 2> conv_state,
                        tensor_view<float, 1> out, const conv1d_params& params, Arch = {}) {
  const index_t channels = x.extent(0);
  causal_conv1d<Arch>(tensor_view<const float, 2>(x.data(), {1, channels}, {channels, x.stride(0)}), weight, bias,
                      conv_state, tensor_view<float, 2>(out.data(), {1, out.extent(0)}, {out.extent(0), out.stride(0)}),
                      params, Arch{});
}

}  // namespace ssm
}  // namespace v0
}  // namespace tessera
