// tessera/ssm/ssm_math.hpp: the scalar and vector elementwise functions the SSM kernels share.
//
// softplus follows torch.nn.functional.softplus (beta 1, threshold 20: x > 20 returns x), silu is
// x * sigmoid(x), gelu is the exact (erf) form of nn.GELU(). The vector softplus and silu are built
// on exp_neg (no overflow, no libm-style special cases) and agree with the definitions to ~1e-7.
#pragma once

#include <cmath>
#include <string>

#include <xsimd/xsimd.hpp>

#include <tessera/core/error.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace ssm {
namespace detail {

inline float softplus(float x) noexcept { return x > 20.f ? x : std::log1p(std::exp(x)); }
inline float silu(float x) noexcept { return x / (1.f + std::exp(-x)); }
inline float sigmoid(float x) noexcept { return 1.f / (1.f + std::exp(-x)); }
inline float gelu(float x) noexcept { return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f)); }

/// exp(x) for x <= 0 (decays: exp(Δ·A) with A < 0), ~2 ulp: Cephes' range reduction
/// x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial for exp(r), 2^n through the exponent bits.
/// Below -87.3 it returns 0 (exp underflows there anyway); x > 0 is clamped to 0 (returns 1).
/// On AVX-512 the polynomial is evaluated in Estrin's form (depth 3 instead of 6: the scan's
/// chains are long enough that latency, not the op count, limits them) and 2^n is one vscalefps
/// whose zero-masking gives the 0 below -87.3.
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> exp_neg(const xsimd::batch<float, Arch>& x) noexcept {
  using batch = xsimd::batch<float, Arch>;
  using ibatch = xsimd::batch<int32_t, Arch>;
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
    const __m512 xv = x.data;
    const __mmask16 keep = _mm512_cmp_ps_mask(xv, _mm512_set1_ps(-87.3f), _CMP_GE_OQ);
    const __m512 xc = _mm512_min_ps(_mm512_max_ps(xv, _mm512_set1_ps(-87.3f)), _mm512_setzero_ps());
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), xc);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    // exp(r) = 1 + r + r^2 (p0 + p1 r + p2 r^2 + p3 r^3 + p4 r^4 + p5 r^5), Estrin's grouping
    const __m512 r2 = _mm512_mul_ps(r, r);
    const __m512 r4 = _mm512_mul_ps(r2, r2);
    const __m512 q01 = _mm512_fmadd_ps(_mm512_set1_ps(1.6666665459e-1f), r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 q23 = _mm512_fmadd_ps(_mm512_set1_ps(8.3334519073e-3f), r, _mm512_set1_ps(4.1665795894e-2f));
    const __m512 q45 = _mm512_fmadd_ps(_mm512_set1_ps(1.9875691500e-4f), r, _mm512_set1_ps(1.3981999507e-3f));
    const __m512 q = _mm512_fmadd_ps(q45, r4, _mm512_fmadd_ps(q23, r2, q01));
    const __m512 e = _mm512_add_ps(_mm512_fmadd_ps(q, r2, r), _mm512_set1_ps(1.f));
    return batch(_mm512_maskz_scalef_ps(keep, e, n));
  }
#endif
  const batch xc = xsimd::min(xsimd::max(x, batch(-87.3f)), batch(0.f));
  const batch n = xsimd::nearbyint(xc * batch(1.44269504088896341f));
  batch r = xsimd::fma(n, batch(-0.693359375f), xc);
  r = xsimd::fma(n, batch(2.12194440e-4f), r);
  batch poly = batch(1.9875691500e-4f);
  poly = xsimd::fma(poly, r, batch(1.3981999507e-3f));
  poly = xsimd::fma(poly, r, batch(8.3334519073e-3f));
  poly = xsimd::fma(poly, r, batch(4.1665795894e-2f));
  poly = xsimd::fma(poly, r, batch(1.6666665459e-1f));
  poly = xsimd::fma(poly, r, batch(5.0000001201e-1f));
  poly = xsimd::fma(poly * r, r, r) + batch(1.f);
  const ibatch e = (xsimd::batch_cast<int32_t>(n) + ibatch(127)) << 23;
  const batch scale = xsimd::bitwise_cast<batch>(e);
  return xsimd::select(x < batch(-87.3f), batch(0.f), poly * scale);
}

/// 2^t for t <= 0, ~2 ulp: exp(x) = exp2_neg(x · log2 e), for callers that can fold log2 e into a
/// factor they multiply by anyway (the Mamba-1 step's Δ). t = n + f with n = round(t), |f| <= 1/2,
/// 2^f by its Taylor polynomial of degree 7 (truncation 5e-9), 2^n added to the exponent field.
/// Against exp_neg that is 8 multiplies and FMAs instead of 12 (no ·log2 e, no two-part ln 2
/// reduction, no final multiply) on the two FMA pipes the step saturates. Below -125 it returns 0
/// (2^t < 2.4e-38 there); t > 0 is clamped to 0 (returns 1). On AVX-512, f comes from one
/// vreduceps (t - round(t)), the polynomial is in Estrin's form (depth 4 instead of 7) and 2^n is
/// one vscalefps whose zero-masking gives the 0 below -125.
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> exp2_neg(const xsimd::batch<float, Arch>& t) noexcept {
  using batch = xsimd::batch<float, Arch>;
  using ibatch = xsimd::batch<int32_t, Arch>;
#if defined(__AVX512DQ__)
  if constexpr (std::is_base_of_v<xsimd::avx512dq, Arch>) {
    const __m512 tv = t.data;
    const __mmask16 keep = _mm512_cmp_ps_mask(tv, _mm512_set1_ps(-125.f), _CMP_GE_OQ);
    const __m512 tc = _mm512_min_ps(tv, _mm512_setzero_ps());
    const __m512 f = _mm512_reduce_ps(tc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);  // tc - round(tc)
    const __m512 n = _mm512_sub_ps(tc, f);
    const __m512 f2 = _mm512_mul_ps(f, f);
    const __m512 f4 = _mm512_mul_ps(f2, f2);
    const __m512 p01 = _mm512_fmadd_ps(_mm512_set1_ps(6.9314718055994531e-1f), f, _mm512_set1_ps(1.f));
    const __m512 p23 = _mm512_fmadd_ps(_mm512_set1_ps(5.5504108664821580e-2f), f, _mm512_set1_ps(2.4022650695910071e-1f));
    const __m512 p45 = _mm512_fmadd_ps(_mm512_set1_ps(1.3333558146428443e-3f), f, _mm512_set1_ps(9.6181291076284772e-3f));
    const __m512 p67 = _mm512_fmadd_ps(_mm512_set1_ps(1.5252733804059841e-5f), f, _mm512_set1_ps(1.5403530393381606e-4f));
    const __m512 p = _mm512_fmadd_ps(_mm512_fmadd_ps(p67, f2, p45), f4, _mm512_fmadd_ps(p23, f2, p01));
    return batch(_mm512_maskz_scalef_ps(keep, p, n));
  }
#endif
  const batch tc = xsimd::min(xsimd::max(t, batch(-125.f)), batch(0.f));
  const batch n = xsimd::nearbyint(tc);
  const batch f = tc - n;
  // ln2^k / k!, k = 7 .. 1
  batch p = batch(1.5252733804059841e-5f);
  p = xsimd::fma(p, f, batch(1.5403530393381606e-4f));
  p = xsimd::fma(p, f, batch(1.3333558146428443e-3f));
  p = xsimd::fma(p, f, batch(9.6181291076284772e-3f));
  p = xsimd::fma(p, f, batch(5.5504108664821580e-2f));
  p = xsimd::fma(p, f, batch(2.4022650695910071e-1f));
  p = xsimd::fma(p, f, batch(6.9314718055994531e-1f));
  p = xsimd::fma(p, f, batch(1.f));
  // p · 2^n through the exponent field: exact, as the result is normal (n >= -125, p >= 0.707)
  const ibatch e = xsimd::bitwise_cast<ibatch>(p) + (xsimd::batch_cast<int32_t>(n) << 23);
  return xsimd::select(t < batch(-125.f), batch(0.f), xsimd::bitwise_cast<batch>(e));
}

/// 1/d for d in [1, 3]: on AVX-512 rcp14 and one Newton step (relative error ~2^-28, and no
/// divider: the Mamba-1 step's prologue ran two divisions per vector), else a division.
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> recip_1_3(const xsimd::batch<float, Arch>& d) noexcept {
  using batch = xsimd::batch<float, Arch>;
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
    const __m512 r = _mm512_rcp14_ps(d.data);
    return batch(_mm512_fmadd_ps(r, _mm512_fnmadd_ps(d.data, r, _mm512_set1_ps(1.f)), r));
  }
#endif
  return batch(1.f) / d;
}

/// softplus(x) = max(x, 0) + log1p(e^-|x|), torch's threshold 20 (x > 20 returns x). With
/// u = e^-|x| in (0, 1] from exp_neg, log1p(u) = 2 atanh(s), s = u / (2 + u) in (0, 1/3], by its
/// series to s^13 (truncation < 1.5e-8 relative). Tested against the definition in double.
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> softplus(const xsimd::batch<float, Arch>& x) noexcept {
  using batch = xsimd::batch<float, Arch>;
  const batch u = exp_neg<Arch>(-xsimd::abs(x));
  const batch s = u * recip_1_3<Arch>(batch(2.f) + u);
  const batch s2 = s * s;
  batch q = batch(2.f / 13.f);  // 2 Σ s^2k / (2k + 1), k = 6 .. 0
  q = xsimd::fma(q, s2, batch(2.f / 11.f));
  q = xsimd::fma(q, s2, batch(2.f / 9.f));
  q = xsimd::fma(q, s2, batch(2.f / 7.f));
  q = xsimd::fma(q, s2, batch(2.f / 5.f));
  q = xsimd::fma(q, s2, batch(2.f / 3.f));
  q = xsimd::fma(q, s2, batch(2.f));
  return xsimd::select(x > batch(20.f), x, xsimd::fma(s, q, xsimd::max(x, batch(0.f))));
}

/// silu(x) = x sigmoid(x): with e = e^-|x| (exp_neg), sigmoid(|x|) = 1 / (1 + e) and
/// sigmoid(-|x|) = e / (1 + e), so nothing overflows. Tested against the definition in double.
template <class Arch>
TESSERA_ALWAYS_INLINE xsimd::batch<float, Arch> silu(const xsimd::batch<float, Arch>& x) noexcept {
  using batch = xsimd::batch<float, Arch>;
  const batch e = exp_neg<Arch>(-xsimd::abs(x));
  const batch r = recip_1_3<Arch>(batch(1.f) + e);
  return x * xsimd::select(x >= batch(0.f), r, e * r);
}

/// Number of floats in one vector of Arch (1 for scalar).
template <class Arch>
inline constexpr index_t lanes_v = static_cast<index_t>(simd::float_lanes<Arch>());

/// n rounded up to a multiple of m.
inline constexpr index_t round_up(index_t n, index_t m) noexcept { return (n + m - 1) / m * m; }

/// Throws shape_error unless the view has the given extents; `what` names op and operand (a C
/// string, so that the check allocates nothing when it passes: steps run it every token).
template <class T, std::size_t Rank>
inline void expect_shape(const tensor_view<T, Rank>& v, const extents<Rank>& want, const char* what) {
  if (v.extents() != want)
    throw shape_error(std::string(what) + ": expected extents " + to_string(want) + ", got " + to_string(v.extents()));
}

/// Throws shape_error unless the innermost stride is 1 (rank 1: the only stride).
template <class T, std::size_t Rank>
inline void expect_dense_rows(const tensor_view<T, Rank>& v, const char* what) {
  if (!v.rows_contiguous())
    throw shape_error(std::string(what) + ": innermost dimension must have stride 1 (extents " + to_string(v.extents()) + ")");
}

/// Row stride of a rank-2 view (0 for a single row, which is never advanced).
template <class T>
inline index_t ld(const tensor_view<T, 2>& v) noexcept {
  return v.extent(0) > 1 ? v.stride(0) : v.extent(1);
}

/// A rank-1 view as a (1, n) row.
template <class T>
tensor_view<T, 2> as_row(const tensor_view<T, 1>& v) {
  return tensor_view<T, 2>(v.data(), {1, v.extent(0)}, {v.extent(0), v.stride(0)});
}

}  // namespace detail
}  // namespace ssm
}  // namespace v0
}  // namespace tessera
