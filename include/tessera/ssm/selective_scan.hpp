// tessera/ssm/selective_scan.hpp: Mamba-1 selective scan (prefill) and selective_state_update (step).
//
// transformers MambaMixer.slow_forward, step 3, for one sequence:
//
//   x:         (l, d_inner)          the conv1d + SiLU output (rows contiguous, any row stride)
//   dt:        (l, d_inner)          dt_proj(time_step): Δ before softplus (params.dt_softplus), or Δ itself
//   B, C:      (l, d_state)          from x_proj
//   z:         (l, d_inner)          optional gate: y *= SiLU(z)
//   A:         (d_inner, d_state)    A = -exp(A_log) (a_from_log, once at load)
//   D:         (d_inner)             skip
//   dt_bias:   (d_inner)             optional, added to dt before softplus (the fused form; leave it out
//                                    when dt_proj already added its bias)
//   ssm_state: (d_inner, d_state)    in: h_{-1}; out: h_{l-1}
//   y:         (l, d_inner)          out
//
//   Δ_t      = softplus(dt_t + dt_bias)                       (torch's softplus, threshold 20)
//   h_t[c,n] = exp(Δ_t[c] A[c,n]) h_{t-1}[c,n] + (Δ_t[c] B_t[n]) x_t[c]
//   y_t[c]   = (Σ_n h_t[c,n] C_t[n] + D[c] x_t[c]) · SiLU(z_t[c])
//
// Prefill is sequential in time and vectorized over channels (one lane per channel of d_inner, the
// d_state loop unrolled over registers): every load of x, Δ, z and y is a contiguous row slice and
// B_t, C_t are broadcasts. Channels are split over threads. The step (l = 1) reads the state row of
// each channel as vectors over d_state instead, so the state is touched once in its own layout.
#pragma once

#include <algorithm>
#include <optional>
#include <string>

#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/vec.hpp>
#include <tessera/ssm/ssm_math.hpp>

namespace tessera {
inline namespace v0 {
namespace ssm {

/// The per-layer, input-independent operands of the Mamba-1 scan.
struct selective_scan_weights {
  tensor_view<const float, 2> A;                       // (d_inner, d_state), = -exp(A_log)
  tensor_view<const float, 1> D;                       // (d_inner)
  std::optional<tensor_view<const float, 1>> dt_bias;  // (d_inner)
};

struct selective_scan_params {
  bool dt_softplus = true;  // Δ = softplus(dt + dt_bias); false: Δ = dt + dt_bias
};

namespace detail {

inline void check_selective_scan(const tensor_view<const float, 2>& x, const tensor_view<const float, 2>& dt,
                                 const tensor_view<const float, 2>& B, const tensor_view<const float, 2>& C,
                                 const std::optional<tensor_view<const float, 2>>& z,
                                 const selective_scan_weights& w, const tensor_view<float, 2>& ssm_state,
                                 const tensor_view<float, 2>& y) {
  const auto [l, d_inner] = x.extents();
  const index_t d_state = w.A.extent(1);
  expect_shape(w.A, extents<2>{d_inner, d_state}, "selective_scan: A (d_inner, d_state)");
  expect_shape(dt, extents<2>{l, d_inner}, "selective_scan: dt (l, d_inner)");
  expect_shape(B, extents<2>{l, d_state}, "selective_scan: B (l, d_state)");
  expect_shape(C, extents<2>{l, d_state}, "selective_scan: C (l, d_state)");
  if (z) expect_shape(*z, extents<2>{l, d_inner}, "selective_scan: z (l, d_inner)");
  expect_shape(w.D, extents<1>{d_inner}, "selective_scan: D (d_inner)");
  if (w.dt_bias) expect_shape(*w.dt_bias, extents<1>{d_inner}, "selective_scan: dt_bias (d_inner)");
  expect_shape(ssm_state, extents<2>{d_inner, d_state}, "selective_scan: ssm_state (d_inner, d_state)");
  expect_shape(y, extents<2>{l, d_inner}, "selective_scan: y (l, d_inner)");
}

inline void check_dense(const tensor_view<const float, 2>& x, const tensor_view<const float, 2>& dt,
                        const tensor_view<const float, 2>& B, const tensor_view<const float, 2>& C,
                        const std::optional<tensor_view<const float, 2>>& z, const selective_scan_weights& w,
                        const tensor_view<float, 2>& ssm_state, const tensor_view<float, 2>& y) {
  expect_dense_rows(x, "selective_scan: x");
  expect_dense_rows(dt, "selective_scan: dt");
  expect_dense_rows(B, "selective_scan: B");
  expect_dense_rows(C, "selective_scan: C");
  if (z) expect_dense_rows(*z, "selective_scan: z");
  expect_dense_rows(w.A, "selective_scan: A");
  expect_dense_rows(w.D, "selective_scan: D");
  if (w.dt_bias) expect_dense_rows(*w.dt_bias, "selective_scan: dt_bias");
  expect_dense_rows(ssm_state, "selective_scan: ssm_state");
  expect_dense_rows(y, "selective_scan: y");
}

/// Raw pointers and row strides of the operands, so that the inner loops see no views.
struct scan_ptrs {
  const float *x, *dt, *B, *C, *z, *A, *D, *dt_bias;
  float *h, *y;
  index_t ldx, lddt, ldB, ldC, ldz, ldA, ldh, ldy;
  index_t l, d_inner, d_state;
  bool softplus;
};

inline scan_ptrs make_scan_ptrs(const tensor_view<const float, 2>& x, const tensor_view<const float, 2>& dt,
                                const tensor_view<const float, 2>& B, const tensor_view<const float, 2>& C,
                                const std::optional<tensor_view<const float, 2>>& z, const selective_scan_weights& w,
                                const tensor_view<float, 2>& h, const tensor_view<float, 2>& y,
                                const selective_scan_params& p) {
  return {x.data(),  dt.data(), B.data(), C.data(), z ? z->data() : nullptr, w.A.data(), w.D.data(),
          w.dt_bias ? w.dt_bias->data() : nullptr, h.data(), y.data(), ld(x), ld(dt), ld(B), ld(C),
          z ? ld(*z) : 0, ld(w.A), ld(h), ld(y), x.extent(0), x.extent(1), w.A.extent(1), p.dt_softplus};
}

/// One channel, all tokens, plain loops (the reference, and the tail of the vector kernel).
inline void scan_channel_scalar(const scan_ptrs& p, index_t c) noexcept {
  float* h = p.h + c * p.ldh;          // (d_state)
  const float* a = p.A + c * p.ldA;    // (d_state)
  for (index_t t = 0; t < p.l; ++t) {
    float delta = p.dt[t * p.lddt + c] + (p.dt_bias ? p.dt_bias[c] : 0.f);
    if (p.softplus) delta = softplus(delta);
    const float xv = p.x[t * p.ldx + c];
    const float* b = p.B + t * p.ldB;
    const float* cc = p.C + t * p.ldC;
    float acc = 0.f;
    for (index_t n = 0; n < p.d_state; ++n) {
      h[n] = std::exp(delta * a[n]) * h[n] + (delta * b[n]) * xv;
      acc += h[n] * cc[n];
    }
    float out = acc + p.D[c] * xv;
    if (p.z) out *= silu(p.z[t * p.ldz + c]);
    p.y[t * p.ldy + c] = out;
  }
}

/// Channels [c0, c0 + lanes), all tokens, state rows [n0, n0 + nt) held in registers (NTC > 0:
/// nt is the compile-time NTC, so the tile stays in registers; 0: runtime nt <= 16).
template <class Arch, int NTC>
void scan_tile(const scan_ptrs& p, index_t c0, index_t n0, index_t nt_rt) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  constexpr index_t NT = NTC > 0 ? NTC : 16;
  const index_t nt = NTC > 0 ? NTC : nt_rt;
  const bool first = n0 == 0, last = n0 + nt == p.d_state;
  alignas(64) float buf[NT * W];
  batch h[NT], a[NT];
  // transpose the (W, nt) blocks of state and A into lanes-over-channels vectors
  for (index_t i = 0; i < W; ++i)
    for (index_t n = 0; n < nt; ++n) buf[n * W + i] = p.h[(c0 + i) * p.ldh + n0 + n];
  for (index_t n = 0; n < nt; ++n) h[n] = batch::load_aligned(buf + n * W);
  for (index_t i = 0; i < W; ++i)
    for (index_t n = 0; n < nt; ++n) buf[n * W + i] = p.A[(c0 + i) * p.ldA + n0 + n];
  for (index_t n = 0; n < nt; ++n) a[n] = batch::load_aligned(buf + n * W);
  const batch bias = p.dt_bias ? batch::load_unaligned(p.dt_bias + c0) : batch(0.f);
  const batch dskip = batch::load_unaligned(p.D + c0);
  for (index_t t = 0; t < p.l; ++t) {
    batch delta = batch::load_unaligned(p.dt + t * p.lddt + c0) + bias;
    if (p.softplus) delta = softplus<Arch>(delta);
    const batch xv = batch::load_unaligned(p.x + t * p.ldx + c0);
    const batch dx = delta * xv;
    const float* b = p.B + t * p.ldB + n0;
    const float* cc = p.C + t * p.ldC + n0;
    batch acc(0.f);
    for (index_t n = 0; n < nt; ++n) {
      h[n] = xsimd::fma(exp_neg<Arch>(delta * a[n]), h[n], dx * batch(b[n]));
      acc = xsimd::fma(h[n], batch(cc[n]), acc);
    }
    float* yp = p.y + t * p.ldy + c0;
    if (!first) acc += batch::load_unaligned(yp);
    if (last) {
      acc = xsimd::fma(dskip, xv, acc);
      if (p.z) acc *= silu<Arch>(batch::load_unaligned(p.z + t * p.ldz + c0));
    }
    acc.store_unaligned(yp);
  }
  for (index_t n = 0; n < nt; ++n) h[n].store_aligned(buf + n * W);
  for (index_t i = 0; i < W; ++i)
    for (index_t n = 0; n < nt; ++n) p.h[(c0 + i) * p.ldh + n0 + n] = buf[n * W + i];
}

/// Channels [c0, c0 + lanes), all tokens, d_state in tiles of 16 (8 when that is all there is).
template <class Arch>
void scan_block(const scan_ptrs& p, index_t c0) noexcept {
  for (index_t n0 = 0; n0 < p.d_state; n0 += 16) {
    const index_t nt = std::min<index_t>(16, p.d_state - n0);
    if (nt == 16) scan_tile<Arch, 16>(p, c0, n0, nt);
    else if (nt == 8) scan_tile<Arch, 8>(p, c0, n0, nt);
    else scan_tile<Arch, 0>(p, c0, n0, nt);
  }
}

/// One token, channels [b0, b0 + nb) in blocks of W, for d_state = V vectors (Mamba's 16: one
/// vector on AVX-512, two on AVX2): B and C stay in registers, and the W channels of a block are
/// straight-line code, so the exps of different channels overlap (the step is bound by their
/// latency, not by memory). Each channel's h ⊙ C is parked in an L1 row until one haddp sums the
/// block. Returns the channels done (a multiple of W); the caller finishes the rest.
template <class Arch, int V>
index_t step_blocks_in_registers(const scan_ptrs& p, index_t b0, index_t nb, const float* delta,
                                 const float* gate) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  const index_t* lane = simd::haddp_lane<Arch>();
  batch Bv[V], Cv[V];
  for (int v = 0; v < V; ++v) {
    Bv[v] = batch::load_unaligned(p.B + v * W);
    Cv[v] = batch::load_unaligned(p.C + v * W);
  }
  // Channel j's h ⊙ C goes to the row that haddp sums into lane j, so the W sums come out in
  // channel order and the block's outputs are one vector: y = (Σ + D ⊙ x) ⊙ gate.
  index_t row_of[W];
  for (index_t r = 0; r < W; ++r) row_of[lane[r]] = r;
  const float* TESSERA_RESTRICT xs = p.x;
  const float* TESSERA_RESTRICT As = p.A;
  float* TESSERA_RESTRICT hs = p.h;
  alignas(64) float prod[W * W];  // h_c ⊙ C for the block's channels (summed over v)
  constexpr float log2e = 1.44269504088896341f;
  index_t i = 0;
  for (; i + W <= nb; i += W) {
#pragma GCC unroll 16
    for (index_t j = 0; j < W; ++j) {
      const index_t c = b0 + i + j;
      const float dl = delta[i + j];
      const batch vdl2(dl * log2e), vdx(dl * xs[c]);  // exp(Δ A) = 2^(Δ log2e · A)
      batch hc(0.f);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) {
        const batch e = exp2_neg<Arch>(vdl2 * batch::load_unaligned(As + c * p.ldA + v * W));
        const batch hn = xsimd::fma(e, batch::load_unaligned(hs + c * p.ldh + v * W), vdx * Bv[v]);
        hn.store_unaligned(hs + c * p.ldh + v * W);
        hc = xsimd::fma(hn, Cv[v], hc);
      }
      hc.store_aligned(prod + row_of[j] * W);
    }
    batch acc[W];
    for (index_t j = 0; j < W; ++j) acc[j] = batch::load_aligned(prod + j * W);
    const index_t c0 = b0 + i;
    batch out = xsimd::fma(batch::load_unaligned(p.D + c0), batch::load_unaligned(xs + c0), xsimd::haddp(acc));
    if (p.z) out *= batch::load_aligned(gate + i);
    out.store_unaligned(p.y + c0);
  }
  return i;
}

/// One token, channels [lo, hi): each state row as vectors over d_state. Δ and the gate are
/// computed for blocks of channels with vector math first (libm calls per channel would cost more
/// than the state update itself).
template <class Arch>
void step_range(const scan_ptrs& p, index_t lo, index_t hi) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  constexpr index_t CB = 256;  // channels per block
  alignas(64) float delta[CB];
  alignas(64) float gate[CB];
  const index_t nv = p.d_state / W * W;
  for (index_t b0 = lo; b0 < hi; b0 += CB) {
    const index_t nb = std::min(CB, hi - b0);
    index_t i = 0;
    for (; i + W <= nb; i += W) {
      batch d = batch::load_unaligned(p.dt + b0 + i);
      if (p.dt_bias) d += batch::load_unaligned(p.dt_bias + b0 + i);
      if (p.softplus) d = softplus<Arch>(d);
      d.store_aligned(delta + i);
      if (p.z) silu<Arch>(batch::load_unaligned(p.z + b0 + i)).store_aligned(gate + i);
    }
    for (; i < nb; ++i) {
      float d = p.dt[b0 + i] + (p.dt_bias ? p.dt_bias[b0 + i] : 0.f);
      delta[i] = p.softplus ? softplus(d) : d;
      if (p.z) gate[i] = silu(p.z[b0 + i]);
    }
    // h_c ← exp(Δ_c A_c) ⊙ h_c + Δ_c x_c B over the vector part of d_state; returns the lanes of
    // C · h_c, still to be summed.
    auto update_row = [&](index_t c, float dl) noexcept {
      const batch vdelta(dl), vdx(dl * p.x[c]);
      float* h = p.h + c * p.ldh;
      const float* a = p.A + c * p.ldA;
      batch acc(0.f);
      for (index_t n = 0; n < nv; n += W) {
        const batch hn = xsimd::fma(exp_neg<Arch>(vdelta * batch::load_unaligned(a + n)), batch::load_unaligned(h + n),
                                    vdx * batch::load_unaligned(p.B + n));
        hn.store_unaligned(h + n);
        acc = xsimd::fma(hn, batch::load_unaligned(p.C + n), acc);
      }
      return acc;
    };
    i = 0;
    if (p.d_state == W) {
      i = step_blocks_in_registers<Arch, 1>(p, b0, nb, delta, gate);
    } else if (p.d_state == 2 * W) {
      i = step_blocks_in_registers<Arch, 2>(p, b0, nb, delta, gate);
    } else if (nv == p.d_state) {
      // W channels at a time: one transposing haddp sums their W partial vectors (a horizontal
      // add per channel was ~30% of the step); simd::haddp_lane says which lane holds which sum.
      const index_t* lane = simd::haddp_lane<Arch>();
      for (; i + W <= nb; i += W) {
        batch acc[W];
        for (index_t j = 0; j < W; ++j) acc[j] = update_row(b0 + i + j, delta[i + j]);
        alignas(64) float sums[W];
        xsimd::haddp(acc).store_aligned(sums);
        for (index_t j = 0; j < W; ++j) {
          const index_t c = b0 + i + j;
          float out = sums[lane[j]] + p.D[c] * p.x[c];
          if (p.z) out *= gate[i + j];
          p.y[c] = out;
        }
      }
    }
    for (; i < nb; ++i) {
      const index_t c = b0 + i;
      const float dl = delta[i];
      const float xv = p.x[c];
      float s = xsimd::hadd(update_row(c, dl));
      float* h = p.h + c * p.ldh;
      const float* a = p.A + c * p.ldA;
      for (index_t n = nv; n < p.d_state; ++n) {
        h[n] = std::exp(dl * a[n]) * h[n] + (dl * p.B[n]) * xv;
        s += h[n] * p.C[n];
      }
      float out = s + p.D[c] * xv;
      if (p.z) out *= gate[i];
      p.y[c] = out;
    }
  }
}

}  // namespace detail

/// Scalar reference: the recurrence, one channel at a time.
inline void selective_scan(tensor_view<const float, 2> x, tensor_view<const float, 2> dt,
                           tensor_view<const float, 2> B, tensor_view<const float, 2> C,
                           std::optional<tensor_view<const float, 2>> z, const selective_scan_weights& w,
                           tensor_view<float, 2> ssm_state, tensor_view<float, 2> y,
                           const selective_scan_params& params, simd::scalar) {
  detail::check_selective_scan(x, dt, B, C, z, w, ssm_state, y);
  detail::check_dense(x, dt, B, C, z, w, ssm_state, y);
  const auto p = detail::make_scan_ptrs(x, dt, B, C, z, w, ssm_state, y, params);
  for (index_t c = 0; c < p.d_inner; ++c) detail::scan_channel_scalar(p, c);
}

/// Vectorized over channels (lanes) and split over threads by channel.
template <class Arch = simd::default_arch>
void selective_scan(tensor_view<const float, 2> x, tensor_view<const float, 2> dt, tensor_view<const float, 2> B,
                    tensor_view<const float, 2> C, std::optional<tensor_view<const float, 2>> z,
                    const selective_scan_weights& w, tensor_view<float, 2> ssm_state, tensor_view<float, 2> y,
                    const selective_scan_params& params, Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    selective_scan(x, dt, B, C, z, w, ssm_state, y, params, simd::scalar{});
  } else {
    detail::check_selective_scan(x, dt, B, C, z, w, ssm_state, y);
    detail::check_dense(x, dt, B, C, z, w, ssm_state, y);
    const auto p = detail::make_scan_ptrs(x, dt, B, C, z, w, ssm_state, y, params);
    constexpr index_t W = detail::lanes_v<Arch>;
    const index_t blocks = (p.d_inner + W - 1) / W;
    if (p.l == 1) {  // one token: the state in its own layout (selective_state_update)
      const index_t grain = std::max<index_t>(W, 8192 / std::max<index_t>(p.d_state, 1));
      parallel_for(0, p.d_inner, grain, [&](index_t lo, index_t hi) { detail::step_range<Arch>(p, lo, hi); });
      return;
    }
    const index_t grain = std::max<index_t>(1, 65536 / std::max<index_t>(1, p.l * p.d_state * W));
    parallel_for(0, blocks, grain, [&](index_t b0, index_t b1) {
      for (index_t b = b0; b < b1; ++b) {
        const index_t c0 = b * W;
        if (c0 + W <= p.d_inner) {
          detail::scan_block<Arch>(p, c0);
        } else {
          for (index_t c = c0; c < p.d_inner; ++c) detail::scan_channel_scalar(p, c);
        }
      }
    });
  }
}

/// selective_state_update: one token. x, dt, z: (d_inner); B, C: (d_state); y: (d_inner).
inline void selective_state_update(tensor_view<const float, 1> x, tensor_view<const float, 1> dt,
                                   tensor_view<const float, 1> B, tensor_view<const float, 1> C,
                                   std::optional<tensor_view<const float, 1>> z, const selective_scan_weights& w,
                                   tensor_view<float, 2> ssm_state, tensor_view<float, 1> y,
                                   const selective_scan_params& params, simd::scalar) {
  std::optional<tensor_view<const float, 2>> z2;
  if (z) z2 = detail::as_row(*z);
  selective_scan(detail::as_row(x), detail::as_row(dt), detail::as_row(B), detail::as_row(C), z2, w, ssm_state,
                 detail::as_row(y), params, simd::scalar{});
}

template <class Arch = simd::default_arch>
void selective_state_update(tensor_view<const float, 1> x, tensor_view<const float, 1> dt,
                            tensor_view<const float, 1> B, tensor_view<const float, 1> C,
                            std::optional<tensor_view<const float, 1>> z, const selective_scan_weights& w,
                            tensor_view<float, 2> ssm_state, tensor_view<float, 1> y,
                            const selective_scan_params& params, Arch = {}) {
  std::optional<tensor_view<const float, 2>> z2;
  if (z) z2 = detail::as_row(*z);
  selective_scan<Arch>(detail::as_row(x), detail::as_row(dt), detail::as_row(B), detail::as_row(C), z2, w,
                       ssm_state, detail::as_row(y), params, Arch{});
}

}  // namespace ssm
}  // namespace v0
}  // namespace tessera
