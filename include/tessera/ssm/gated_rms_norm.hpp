// tessera/ssm/gated_rms_norm.hpp: Mamba-2's gated RMSNorm (transformers MambaRMSNormGated).
//
//   x:      (l, d_inner)   the SSD output y
//   z:      (l, d_inner)   the gate
//   weight: (d_inner)
//   out:    (l, d_inner)   may be the same memory as x (elementwise per row)
//
//   norm_before_gate = false (transformers, and mamba_ssm's Mamba2):
//       u = x · SiLU(z);  out = weight · u / sqrt(mean_group(u²) + eps)
//   norm_before_gate = true:
//       out = weight · x / sqrt(mean_group(x²) + eps) · SiLU(z)
//   The mean runs over groups of group_size consecutive channels; group_size = 0 means the whole
//   row. transformers' Mamba2 MambaRMSNormGated normalizes the whole row (group_size 0 or d_inner);
//   mamba_ssm's RMSNormGated uses group_size = d_inner / n_groups (the same when n_groups == 1).
#pragma once

#include <cmath>
#include <string>

#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/ssm/ssm_math.hpp>

namespace tessera {
inline namespace v0 {
namespace ssm {

struct gated_rms_norm_params {
  float eps = 1e-5f;
  index_t group_size = 0;        // 0: the whole row
  bool norm_before_gate = false;
};

namespace detail {
inline index_t check_gated_rms_norm(const tensor_view<const float, 2>& x, const tensor_view<const float, 2>& z,
                                    const tensor_view<const float, 1>& weight, const tensor_view<float, 2>& out,
                                    const gated_rms_norm_params& p) {
  const auto [l, d_inner] = x.extents();
  expect_shape(z, extents<2>{l, d_inner}, "gated_rms_norm: z (l, d_inner)");
  expect_shape(weight, extents<1>{d_inner}, "gated_rms_norm: weight (d_inner)");
  expect_shape(out, extents<2>{l, d_inner}, "gated_rms_norm: out (l, d_inner)");
  expect_dense_rows(x, "gated_rms_norm: x");
  expect_dense_rows(z, "gated_rms_norm: z");
  expect_dense_rows(weight, "gated_rms_norm: weight");
  expect_dense_rows(out, "gated_rms_norm: out");
  const index_t gs = p.group_size == 0 ? d_inner : p.group_size;
  if (gs < 0 || (d_inner > 0 && d_inner % gs != 0))
    throw config_error("gated_rms_norm: group_size " + std::to_string(p.group_size) + " does not divide d_inner " +
                       std::to_string(d_inner));
  return gs;
}

/// Rows [lo, hi); vectorized over channels when Arch is not scalar.
template <class Arch>
void gated_rms_norm_rows(const tensor_view<const float, 2>& x, const tensor_view<const float, 2>& z,
                         const tensor_view<const float, 1>& weight, const tensor_view<float, 2>& out,
                         const gated_rms_norm_params& p, index_t gs, index_t lo, index_t hi) noexcept {
  const index_t d_inner = x.extent(1);
  const float* wt = weight.data();
  for (index_t t = lo; t < hi; ++t) {
    const float* xr = x.row(t);
    const float* zr = z.row(t);
    float* o = out.row(t);
    for (index_t g0 = 0; g0 < d_inner; g0 += gs) {
      // sum of squares of u (gated) or x (norm before gate)
      float ss = 0.f;
      index_t i = g0;
      if constexpr (!simd::is_scalar_v<Arch>) {
        using batch = xsimd::batch<float, Arch>;
        constexpr index_t W = batch::size;
        batch acc(0.f);
        for (; i + W <= g0 + gs; i += W) {
          batch u = batch::load_unaligned(xr + i);
          if (!p.norm_before_gate) u *= silu<Arch>(batch::load_unaligned(zr + i));
          acc = xsimd::fma(u, u, acc);
        }
        ss = xsimd::hadd(acc);
      }
      for (; i < g0 + gs; ++i) {
        const float u = p.norm_before_gate ? xr[i] : xr[i] * silu(zr[i]);
        ss += u * u;
      }
      const float r = 1.f / std::sqrt(ss / static_cast<float>(gs) + p.eps);
      i = g0;
      if constexpr (!simd::is_scalar_v<Arch>) {
        using batch = xsimd::batch<float, Arch>;
        constexpr index_t W = batch::size;
        const batch vr(r);
        for (; i + W <= g0 + gs; i += W) {
          const batch gate = silu<Arch>(batch::load_unaligned(zr + i));
          const batch v = batch::load_unaligned(xr + i) * (p.norm_before_gate ? vr : gate * vr);
          (batch::load_unaligned(wt + i) * (p.norm_before_gate ? v * gate : v)).store_unaligned(o + i);
        }
      }
      for (; i < g0 + gs; ++i) {
        const float gate = silu(zr[i]);
        o[i] = p.norm_before_gate ? wt[i] * (xr[i] * r) * gate : wt[i] * (xr[i] * gate * r);
      }
    }
  }
}
}  // namespace detail

/// Scalar reference.
inline void gated_rms_norm(tensor_view<const float, 2> x, tensor_view<const float, 2> z,
                           tensor_view<const float, 1> weight, tensor_view<float, 2> out,
                           const gated_rms_norm_params& params, simd::scalar) {
  const index_t gs = detail::check_gated_rms_norm(x, z, weight, out, params);
  detail::gated_rms_norm_rows<simd::scalar>(x, z, weight, out, params, gs, 0, x.extent(0));
}

/// Vectorized over channels, rows split over threads.
template <class Arch = simd::default_arch>
void gated_rms_norm(tensor_view<const float, 2> x, tensor_view<const float, 2> z, tensor_view<const float, 1> weight,
                    tensor_view<float, 2> out, const gated_rms_norm_params& params, Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    gated_rms_norm(x, z, weight, out, params, simd::scalar{});
  } else {
    const index_t gs = detail::check_gated_rms_norm(x, z, weight, out, params);
    const index_t grain = std::max<index_t>(1, 32768 / std::max<index_t>(1, x.extent(1)));
    parallel_for(0, x.extent(0), grain, [&](index_t lo, index_t hi) {
      detail::gated_rms_norm_rows<Arch>(x, z, weight, out, params, gs, lo, hi);
    });
  }
}

}  // namespace ssm
}  // namespace v0
}  // namespace tessera
