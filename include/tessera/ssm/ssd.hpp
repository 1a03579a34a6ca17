// tessera/ssm/ssd.hpp: Mamba-2 state space duality (SSD): chunked prefill, sequential scan, step.
//
// transformers Mamba2Mixer.torch_forward, step 3 (after the conv on xBC and its SiLU), one sequence:
//
//   x:         (l, d_inner)                d_inner = n_heads * head_dim; head h owns columns
//                                          [h * head_dim, (h+1) * head_dim)
//   dt:        (l, n_heads)                raw dt from in_proj (before dt_bias / softplus / clamp)
//   B, C:      (l, n_groups * d_state)     group g owns columns [g * d_state, (g+1) * d_state);
//                                          head h reads group h / (n_heads / n_groups)
//   A:         (n_heads)                   A = -exp(A_log) (a_from_log, once at load)
//   D:         (n_heads)                   skip, per head
//   dt_bias:   (n_heads)                   optional
//   ssm_state: (n_heads, head_dim, d_state)  in: h_{-1}; out: h_{l-1}
//   y:         (l, d_inner)                out, before the gated RMSNorm (gated_rms_norm.hpp)
//
//   Δ_t[h]        = clamp(softplus(dt_t[h] + dt_bias[h]), dt_min, dt_max)   (time_step_limit)
//   h_t[h,p,n]    = exp(Δ_t[h] A[h]) h_{t-1}[h,p,n] + Δ_t[h] B_t[g,n] x_t[h,p]
//   y_t[h,p]      = Σ_n C_t[g,n] h_t[h,p,n] + D[h] x_t[h,p]
//
// Three forms, equal up to rounding (prefill(n) then step × k == prefill(n + k)):
// - ssd_prefill: the chunked block decomposition of the SSD paper (transformers' "ssd naive"):
//   per chunk of `chunk` tokens (the last one may be shorter), with a_cum the cumulative Δ·A,
//     Y_diag[t] = Σ_{s<=t} (C_t·B_s) exp(a_cum[t] - a_cum[s]) Δ_s x_s      (intra-chunk, quadratic)
//     Y_off[t]  = exp(a_cum[t]) C_t · h_prev                                (state -> output)
//     h_next    = exp(a_cum[Q-1]) h_prev + Σ_s exp(a_cum[Q-1] - a_cum[s]) Δ_s x_s ⊗ B_s
//   All four terms are small matrix products (register-tiled, vectorized). Chunks run in order;
//   within a chunk, C·Bᵀ is computed once per group and the heads are split over threads.
// - ssd_scan: the recurrence, token by token (the baseline and the form the step uses).
// - ssd_step: one token (selective_state_update with scalar A per head).
#pragma once

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <string>

#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/ssm/ssm_math.hpp>

namespace tessera {
inline namespace v0 {
namespace ssm {

/// The per-layer operands of the Mamba-2 scan.
struct ssd_weights {
  tensor_view<const float, 1> A;                       // (n_heads), = -exp(A_log)
  tensor_view<const float, 1> D;                       // (n_heads)
  std::optional<tensor_view<const float, 1>> dt_bias;  // (n_heads)
};

struct ssd_params {
  index_t head_dim = 64;
  index_t n_groups = 1;
  index_t chunk = 256;                                   // chunk_size of the prefill
  float dt_min = 0.f;                                    // time_step_limit[0]
  float dt_max = std::numeric_limits<float>::infinity(); // time_step_limit[1]
  bool dt_softplus = true;
};

namespace detail {

struct ssd_dims {
  index_t l, d_inner, n_heads, head_dim, n_groups, d_state, heads_per_group;
};

inline ssd_dims check_ssd(const tensor_view<const float, 2>& x, const tensor_view<const float, 2>& dt,
                          const tensor_view<const float, 2>& B, const tensor_view<const float, 2>& C,
                          const ssd_weights& w, const tensor_view<float, 3>& ssm_state,
                          const tensor_view<float, 2>& y, const ssd_params& p, const char* op) {
  const std::string o = op;
  const auto [l, d_inner] = x.extents();
  if (p.head_dim <= 0) throw config_error(o + ": head_dim must be positive, got " + std::to_string(p.head_dim));
  if (p.n_groups <= 0) throw config_error(o + ": n_groups must be positive, got " + std::to_string(p.n_groups));
  if (p.chunk <= 0) throw config_error(o + ": chunk must be positive, got " + std::to_string(p.chunk));
  if (d_inner % p.head_dim != 0)
    throw config_error(o + ": d_inner " + std::to_string(d_inner) + " is not a multiple of head_dim " +
                       std::to_string(p.head_dim));
  const index_t n_heads = d_inner / p.head_dim;
  if (n_heads % p.n_groups != 0)
    throw config_error(o + ": n_heads " + std::to_string(n_heads) + " is not a multiple of n_groups " +
                       std::to_string(p.n_groups));
  if (B.extent(1) % p.n_groups != 0)
    throw shape_error(o + ": B columns " + std::to_string(B.extent(1)) + " are not a multiple of n_groups " +
                      std::to_string(p.n_groups));
  const index_t d_state = B.extent(1) / p.n_groups;
  expect_extents(w.A.extents(), extents<1>{n_heads}, check_name{op, nullptr, "A (n_heads)"});
  expect_extents(w.D.extents(), extents<1>{n_heads}, check_name{op, nullptr, "D (n_heads)"});
  if (w.dt_bias)
    expect_extents(w.dt_bias->extents(), extents<1>{n_heads}, check_name{op, nullptr, "dt_bias (n_heads)"});
  expect_extents(dt.extents(), extents<2>{l, n_heads}, check_name{op, nullptr, "dt (l, n_heads)"});
  expect_extents(B.extents(), extents<2>{l, p.n_groups * d_state},
                 check_name{op, nullptr, "B (l, n_groups * d_state)"});
  expect_extents(C.extents(), extents<2>{l, p.n_groups * d_state},
                 check_name{op, nullptr, "C (l, n_groups * d_state)"});
  expect_extents(ssm_state.extents(), extents<3>{n_heads, p.head_dim, d_state},
                 check_name{op, nullptr, "ssm_state (n_heads, head_dim, d_state)"});
  expect_extents(y.extents(), extents<2>{l, d_inner}, check_name{op, nullptr, "y (l, d_inner)"});
  expect_rows_contiguous(x, check_name{op, nullptr, "x"});
  expect_rows_contiguous(dt, check_name{op, nullptr, "dt"});
  expect_rows_contiguous(B, check_name{op, nullptr, "B"});
  expect_rows_contiguous(C, check_name{op, nullptr, "C"});
  expect_rows_contiguous(y, check_name{op, nullptr, "y"});
  expect_rows_contiguous(w.A, check_name{op, nullptr, "A"});
  expect_rows_contiguous(w.D, check_name{op, nullptr, "D"});
  if (w.dt_bias) expect_rows_contiguous(*w.dt_bias, check_name{op, nullptr, "dt_bias"});
  if (!ssm_state.is_contiguous()) throw shape_error(o + ": ssm_state must be contiguous");
  return {l, d_inner, n_heads, p.head_dim, p.n_groups, d_state, n_heads / p.n_groups};
}

/// Δ for head h at token t: clamp(softplus(dt + dt_bias)).
inline float ssd_delta(float dt, const float* dt_bias, index_t h, const ssd_params& p) noexcept {
  float d = dt + (dt_bias ? dt_bias[h] : 0.f);
  if (p.dt_softplus) d = softplus(d);
  return std::min(std::max(d, p.dt_min), p.dt_max);
}

/// Sequential recurrence for heads [h0, h1), vectorized over d_state (scalar when Arch is scalar).
template <class Arch>
void ssd_scan_heads(const tensor_view<const float, 2>& x, const tensor_view<const float, 2>& dt,
                    const tensor_view<const float, 2>& B, const tensor_view<const float, 2>& C, const ssd_weights& w,
                    const tensor_view<float, 3>& ssm_state, const tensor_view<float, 2>& y, const ssd_params& p,
                    const ssd_dims& d, index_t h0, index_t h1) noexcept {
  const float* bias = w.dt_bias ? w.dt_bias->data() : nullptr;
  const index_t N = d.d_state, P = d.head_dim;
  for (index_t h = h0; h < h1; ++h) {
    const index_t g = h / d.heads_per_group;
    const float A = w.A(h), Dh = w.D(h);
    float* state = ssm_state.data() + h * P * N;  // (head_dim, d_state)
    for (index_t t = 0; t < d.l; ++t) {
      const float delta = ssd_delta(dt(t, h), bias, h, p);
      const float dA = std::exp(delta * A);
      const float* b = B.row(t) + g * N;
      const float* c = C.row(t) + g * N;
      const float* xt = x.row(t) + h * P;
      float* yt = y.row(t) + h * P;
      for (index_t q = 0; q < P; ++q) {
        float* hs = state + q * N;
        const float xv = xt[q];
        float acc = 0.f;
        index_t n = 0;
        if constexpr (!simd::is_scalar_v<Arch>) {
          using batch = xsimd::batch<float, Arch>;
          constexpr index_t W = batch::size;
          const batch vdA(dA), vdx(delta * xv);
          batch vacc(0.f);
          for (; n + W <= N; n += W) {
            const batch hn = xsimd::fma(vdA, batch::load_unaligned(hs + n), vdx * batch::load_unaligned(b + n));
            hn.store_unaligned(hs + n);
            vacc = xsimd::fma(hn, batch::load_unaligned(c + n), vacc);
          }
          acc = xsimd::hadd(vacc);
        }
        for (; n < N; ++n) {
          hs[n] = dA * hs[n] + (delta * b[n]) * xv;
          acc += hs[n] * c[n];
        }
        yt[q] = acc + Dh * xv;
      }
    }
  }
}

// ---- chunked prefill, vectorized ------------------------------------------------------------

/// Y[r][0:cols) += Σ_{k<kk} A[r][k] · Bm[k][0:cols) for an RT x (JV vectors) tile.
template <class Arch, int RT, int JV>
TESSERA_ALWAYS_INLINE void ssd_micro(const float* A, index_t lda, index_t kk, const float* Bm, index_t ldb, float* Y,
                                     index_t ldy) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  batch acc[RT][JV];
  for (int r = 0; r < RT; ++r)
    for (int j = 0; j < JV; ++j) acc[r][j] = batch::load_aligned(Y + r * ldy + j * W);
  for (index_t k = 0; k < kk; ++k) {
    batch b[JV];
    for (int j = 0; j < JV; ++j) b[j] = batch::load_aligned(Bm + k * ldb + j * W);
    for (int r = 0; r < RT; ++r) {
      const batch a(A[r * lda + k]);
      for (int j = 0; j < JV; ++j) acc[r][j] = xsimd::fma(a, b[j], acc[r][j]);
    }
  }
  for (int r = 0; r < RT; ++r)
    for (int j = 0; j < JV; ++j) acc[r][j].store_aligned(Y + r * ldy + j * W);
}

template <class Arch, int RT>
TESSERA_ALWAYS_INLINE void ssd_micro_cols(const float* A, index_t lda, index_t kk, const float* Bm, index_t ldb,
                                          float* Y, index_t ldy, index_t vecs) noexcept {
  constexpr index_t W = lanes_v<Arch>;
  index_t j = 0;
  for (; j + 4 <= vecs; j += 4) ssd_micro<Arch, RT, 4>(A, lda, kk, Bm + j * W, ldb, Y + j * W, ldy);
  switch (vecs - j) {
    case 3: ssd_micro<Arch, RT, 3>(A, lda, kk, Bm + j * W, ldb, Y + j * W, ldy); break;
    case 2: ssd_micro<Arch, RT, 2>(A, lda, kk, Bm + j * W, ldb, Y + j * W, ldy); break;
    case 1: ssd_micro<Arch, RT, 1>(A, lda, kk, Bm + j * W, ldb, Y + j * W, ldy); break;
    default: break;
  }
}

/// Y (rows x cols) += A (rows x k) · Bm (k x cols); cols a multiple of the vector width, Y and Bm
/// 64-byte aligned rows. causal: row r only needs k < r + 1 and cols < round_up(r + 1, W)
/// (used where A or the result is lower triangular).
template <class Arch>
void ssd_gemm_acc(const float* A, index_t lda, index_t rows, index_t k, const float* Bm, index_t ldb, float* Y,
                  index_t ldy, index_t cols, bool causal_k, bool causal_cols) noexcept {
  constexpr index_t W = lanes_v<Arch>;
  constexpr int RT = 4;
  for (index_t r0 = 0; r0 < rows; r0 += RT) {
    const index_t rt = std::min<index_t>(RT, rows - r0);
    const index_t kk = causal_k ? std::min(k, r0 + rt) : k;
    const index_t cc = causal_cols ? std::min(cols, round_up(r0 + rt, W)) : cols;
    const index_t vecs = cc / W;
    const float* a = A + r0 * lda;
    float* yy = Y + r0 * ldy;
    switch (rt) {
      case 4: ssd_micro_cols<Arch, 4>(a, lda, kk, Bm, ldb, yy, ldy, vecs); break;
      case 3: ssd_micro_cols<Arch, 3>(a, lda, kk, Bm, ldb, yy, ldy, vecs); break;
      case 2: ssd_micro_cols<Arch, 2>(a, lda, kk, Bm, ldb, yy, ldy, vecs); break;
      default: ssd_micro_cols<Arch, 1>(a, lda, kk, Bm, ldb, yy, ldy, vecs); break;
    }
  }
}

/// Padded sizes of the chunked prefill's scratch.
struct ssd_chunk_dims {
  index_t Q, Qp, Pp, Np;  // chunk, chunk/head_dim/d_state rounded up to whole vectors
  template <class Arch>
  static ssd_chunk_dims make(index_t chunk, index_t head_dim, index_t d_state) noexcept {
    constexpr index_t W = lanes_v<Arch>;
    return {chunk, round_up(chunk, W), round_up(head_dim, W), round_up(d_state, W)};
  }
  std::size_t shared_bytes(index_t n_groups) const noexcept {
    // Bp, Cp (Q x Np), BT (Np x Qp), CB (Q x Qp) per group
    return static_cast<std::size_t>(n_groups) *
           (2 * workspace::bytes_for<float>(Q * Np) + workspace::bytes_for<float>(Np * Qp) +
            workspace::bytes_for<float>(Q * Qp));
  }
  std::size_t part_bytes(index_t head_dim, index_t d_state) const noexcept {
    (void)d_state;
    return 3 * workspace::bytes_for<float>(Qp)            // delta, a_cum, state-decay coefficients
           + workspace::bytes_for<float>(Q * Qp)          // Wm: masked, decayed C·Bᵀ Δ
           + workspace::bytes_for<float>(Qp * Pp)         // Xp: x of the head
           + workspace::bytes_for<float>(Q * Pp)          // Y
           + workspace::bytes_for<float>(Q * Np)          // CS: exp(a_cum) C
           + workspace::bytes_for<float>(Np * Pp)         // hT: state transposed
           + workspace::bytes_for<float>(head_dim * Qp)   // UT: (decay Δ x)ᵀ
           + workspace::bytes_for<float>(head_dim * Np);  // Hs: padded state
  }
};

struct ssd_part_scratch {
  float *delta, *acum, *coef, *Wm, *Xp, *Y, *CS, *hT, *UT, *Hs;
};

inline ssd_part_scratch alloc_part(workspace& ws, const ssd_chunk_dims& cd, index_t head_dim) {
  ssd_part_scratch s{};
  s.delta = ws.alloc<float>(cd.Qp);
  s.acum = ws.alloc<float>(cd.Qp);
  s.coef = ws.alloc<float>(cd.Qp);
  s.Wm = ws.alloc<float>(cd.Q * cd.Qp);
  s.Xp = ws.alloc<float>(cd.Qp * cd.Pp);
  s.Y = ws.alloc<float>(cd.Q * cd.Pp);
  s.CS = ws.alloc<float>(cd.Q * cd.Np);
  s.hT = ws.alloc<float>(cd.Np * cd.Pp);
  s.UT = ws.alloc<float>(head_dim * cd.Qp);
  s.Hs = ws.alloc<float>(head_dim * cd.Np);
  return s;
}

/// One head, one chunk [c0, c0 + q) of the vectorized chunked prefill.
template <class Arch>
void ssd_chunk_head(const tensor_view<const float, 2>& x, const tensor_view<const float, 2>& dt,
                    const tensor_view<const float, 2>& C, const ssd_weights& w,
                    const tensor_view<float, 3>& ssm_state, const tensor_view<float, 2>& y, const ssd_params& p,
                    const ssd_dims& d, const ssd_chunk_dims& cd, index_t c0, index_t q, index_t h,
                    const float* Bp, const float* CB, const ssd_part_scratch& s) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  const index_t P = d.head_dim, N = d.d_state, Qp = cd.Qp, Pp = cd.Pp, Np = cd.Np;
  const index_t g = h / d.heads_per_group;
  const float* bias = w.dt_bias ? w.dt_bias->data() : nullptr;
  const float A = w.A(h), Dh = w.D(h);
  float* state = ssm_state.data() + h * P * N;  // (head_dim, d_state)

  // Δ and the cumulative decay a_cum[t] = Σ_{s<=t} Δ_s A; padding: Δ = 0, a_cum = a_cum[q-1]
  float run = 0.f;
  for (index_t t = 0; t < q; ++t) {
    s.delta[t] = ssd_delta(dt(c0 + t, h), bias, h, p);
    run += s.delta[t] * A;
    s.acum[t] = run;
  }
  for (index_t t = q; t < Qp; ++t) {
    s.delta[t] = 0.f;
    s.acum[t] = run;
  }
  const float a_last = run;

  // Xp: x of this head, (q, Pp) zero padded
  for (index_t t = 0; t < q; ++t) {
    const float* xt = x.row(c0 + t) + h * P;
    float* xp = s.Xp + t * Pp;
    for (index_t j = 0; j < P; ++j) xp[j] = xt[j];
    for (index_t j = P; j < Pp; ++j) xp[j] = 0.f;
  }

  // Wm[t][s] = CB[t][s] exp(a_cum[t] - a_cum[s]) Δ_s for s <= t, else 0
  alignas(64) float iota[W];
  for (index_t i = 0; i < W; ++i) iota[i] = static_cast<float>(i);
  const batch viota = batch::load_aligned(iota);
  for (index_t t = 0; t < q; ++t) {
    const float* cb = CB + t * Qp;
    float* wr = s.Wm + t * Qp;
    const batch at(s.acum[t]);
    const index_t lim = round_up(t + 1, W);
    for (index_t j = 0; j < lim; j += W) {
      const batch decay = exp_neg<Arch>(at - batch::load_aligned(s.acum + j));  // > 0 only where masked
      const batch v = batch::load_aligned(cb + j) * decay * batch::load_aligned(s.delta + j);
      const auto keep = (viota + batch(static_cast<float>(j))) <= batch(static_cast<float>(t));
      xsimd::select(keep, v, batch(0.f)).store_aligned(wr + j);
    }
    for (index_t j = lim; j < Qp; j += W) batch(0.f).store_aligned(wr + j);
  }

  // Y = (exp(a_cum) C) · h_prevᵀ  +  Wm · X
  for (index_t t = 0; t < q; ++t) {
    const float e = std::exp(s.acum[t]);
    const float* ct = C.row(c0 + t) + g * N;
    float* cs = s.CS + t * Np;
    for (index_t n = 0; n < N; ++n) cs[n] = e * ct[n];
    std::memset(s.Y + t * Pp, 0, sizeof(float) * static_cast<std::size_t>(Pp));
  }
  for (index_t n = 0; n < N; ++n) {
    float* ht = s.hT + n * Pp;
    for (index_t j = 0; j < P; ++j) ht[j] = state[j * N + n];
    for (index_t j = P; j < Pp; ++j) ht[j] = 0.f;
  }
  ssd_gemm_acc<Arch>(s.CS, Np, q, N, s.hT, Pp, s.Y, Pp, Pp, false, false);
  ssd_gemm_acc<Arch>(s.Wm, Qp, q, q, s.Xp, Pp, s.Y, Pp, Pp, true, false);
  for (index_t t = 0; t < q; ++t) {
    const float* yr = s.Y + t * Pp;
    const float* xt = x.row(c0 + t) + h * P;
    float* yt = y.row(c0 + t) + h * P;
    for (index_t j = 0; j < P; ++j) yt[j] = yr[j] + Dh * xt[j];
  }

  // h_next = exp(a_last) h_prev + Σ_s (exp(a_last - a_cum[s]) Δ_s x_s) ⊗ B_s
  for (index_t t = 0; t < q; ++t) s.coef[t] = std::exp(a_last - s.acum[t]) * s.delta[t];
  for (index_t j = 0; j < P; ++j) {
    float* ut = s.UT + j * Qp;
    for (index_t t = 0; t < q; ++t) ut[t] = s.coef[t] * s.Xp[t * Pp + j];
    const float decay = std::exp(a_last);
    float* hs = s.Hs + j * Np;
    const float* st = state + j * N;
    for (index_t n = 0; n < N; ++n) hs[n] = decay * st[n];
    for (index_t n = N; n < Np; ++n) hs[n] = 0.f;
  }
  ssd_gemm_acc<Arch>(s.UT, Qp, P, q, Bp, Np, s.Hs, Np, Np, false, false);
  for (index_t j = 0; j < P; ++j) std::memcpy(state + j * N, s.Hs + j * Np, sizeof(float) * static_cast<std::size_t>(N));
}

}  // namespace detail

/// Workspace bytes of ssd_prefill for these sizes on `threads` threads (scalar needs less).
inline std::size_t ssd_prefill_workspace_bytes(index_t n_heads, index_t head_dim, index_t d_state, index_t n_groups,
                                               index_t chunk, int threads = num_threads()) noexcept {
  // sized for the widest vector this build may use; also covers the scalar form (2 * chunk floats)
  const auto cd = detail::ssd_chunk_dims::make<simd::default_arch>(chunk, head_dim, d_state);
  const index_t parts = std::max<index_t>(1, std::min<index_t>(threads, n_heads));
  return cd.shared_bytes(n_groups) + static_cast<std::size_t>(parts) * cd.part_bytes(head_dim, d_state) +
         4 * workspace::bytes_for<float>(chunk + 16);
}

/// Scalar reference of the chunked prefill: the block decomposition in plain loops.
inline void ssd_prefill(tensor_view<const float, 2> x, tensor_view<const float, 2> dt, tensor_view<const float, 2> B,
                        tensor_view<const float, 2> C, const ssd_weights& w, tensor_view<float, 3> ssm_state,
                        tensor_view<float, 2> y, const ssd_params& p, workspace& ws, simd::scalar) {
  const auto d = detail::check_ssd(x, dt, B, C, w, ssm_state, y, p, "ssd_prefill");
  const index_t P = d.head_dim, N = d.d_state;
  workspace::frame frame(ws);
  float* delta = ws.alloc<float>(p.chunk);  // Δ_s of the chunk
  float* acum = ws.alloc<float>(p.chunk);   // a_cum[t] = Σ_{s<=t} Δ_s A
  const float* bias = w.dt_bias ? w.dt_bias->data() : nullptr;
  for (index_t h = 0; h < d.n_heads; ++h) {
    const index_t g = h / d.heads_per_group;
    for (index_t c0 = 0; c0 < d.l; c0 += p.chunk) {
      const index_t q = std::min(p.chunk, d.l - c0);
      float run = 0.f;
      for (index_t t = 0; t < q; ++t) {
        delta[t] = detail::ssd_delta(dt(c0 + t, h), bias, h, p);
        run += delta[t] * w.A(h);
        acum[t] = run;
      }
      for (index_t t = 0; t < q; ++t)
        for (index_t j = 0; j < P; ++j) {
          // off-diagonal block: the state entering the chunk, decayed to t
          float off = 0.f;
          for (index_t n = 0; n < N; ++n) off += C(c0 + t, g * N + n) * ssm_state(h, j, n);
          float acc = std::exp(acum[t]) * off;
          // diagonal block: the tokens of this chunk up to t
          for (index_t s = 0; s <= t; ++s) {
            float cb = 0.f;
            for (index_t n = 0; n < N; ++n) cb += C(c0 + t, g * N + n) * B(c0 + s, g * N + n);
            acc += cb * std::exp(acum[t] - acum[s]) * delta[s] * x(c0 + s, h * P + j);
          }
          y(c0 + t, h * P + j) = acc + w.D(h) * x(c0 + t, h * P + j);
        }
      // state passing: h_next = exp(a_cum[q-1]) h_prev + Σ_s exp(a_cum[q-1] - a_cum[s]) Δ_s x_s B_s
      for (index_t j = 0; j < P; ++j)
        for (index_t n = 0; n < N; ++n) {
          float acc = std::exp(run) * ssm_state(h, j, n);
          for (index_t s = 0; s < q; ++s)
            acc += std::exp(run - acum[s]) * delta[s] * x(c0 + s, h * P + j) * B(c0 + s, g * N + n);
          ssm_state(h, j, n) = acc;
        }
    }
  }
}

/// Chunked prefill, vectorized: chunks in order; per chunk C·Bᵀ per group, then heads over threads.
template <class Arch = simd::default_arch>
void ssd_prefill(tensor_view<const float, 2> x, tensor_view<const float, 2> dt, tensor_view<const float, 2> B,
                 tensor_view<const float, 2> C, const ssd_weights& w, tensor_view<float, 3> ssm_state,
                 tensor_view<float, 2> y, const ssd_params& p, workspace& ws, Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    ssd_prefill(x, dt, B, C, w, ssm_state, y, p, ws, simd::scalar{});
  } else {
    const auto d = detail::check_ssd(x, dt, B, C, w, ssm_state, y, p, "ssd_prefill");
    if (d.l == 0) return;
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t W = batch::size;
    const index_t N = d.d_state, G = d.n_groups;
    const auto cd = detail::ssd_chunk_dims::make<Arch>(std::min(p.chunk, d.l), d.head_dim, N);
    const index_t Q = cd.Q, Qp = cd.Qp, Np = cd.Np;
    workspace::frame frame(ws);
    float* Bp = ws.alloc<float>(G * Q * Np);  // (G, Q, Np): B of the chunk, zero padded
    float* BT = ws.alloc<float>(G * Np * Qp); // (G, N, Qp): B transposed
    float* CB = ws.alloc<float>(G * Q * Qp);  // (G, Q, Qp): C·Bᵀ, lower triangle
    const index_t parts = std::max<index_t>(1, std::min<index_t>(num_threads(), d.n_heads));
    detail::ssd_part_scratch scratch[64];
    const index_t np = std::min<index_t>(parts, 64);
    for (index_t i = 0; i < np; ++i) scratch[i] = detail::alloc_part(ws, cd, d.head_dim);
    for (index_t c0 = 0; c0 < d.l; c0 += Q) {
      const index_t q = std::min(Q, d.l - c0);
      // phase 1: per group, copies of B and C·Bᵀ (rows split over threads)
      parallel_for(0, G, 1, [&](index_t g0, index_t g1) {
        for (index_t g = g0; g < g1; ++g) {
          float* bp = Bp + g * Q * Np;
          float* bt = BT + g * Np * Qp;
          float* cb = CB + g * Q * Qp;
          for (index_t t = 0; t < q; ++t) {
            const float* b = B.row(c0 + t) + g * N;
            for (index_t n = 0; n < N; ++n) bp[t * Np + n] = bt[n * Qp + t] = b[n];
            for (index_t n = N; n < Np; ++n) bp[t * Np + n] = 0.f;
          }
          for (index_t n = 0; n < N; ++n)
            for (index_t t = q; t < Qp; ++t) bt[n * Qp + t] = 0.f;
          for (index_t t = 0; t < q; ++t) std::memset(cb + t * Qp, 0, sizeof(float) * static_cast<std::size_t>(Qp));
          // C rows of this chunk are read in place (row stride of C); CB = C · BT, lower triangle
          const float* c = C.row(c0) + g * N;
          detail::ssd_gemm_acc<Arch>(c, detail::ld(C), q, N, bt, Qp, cb, Qp, detail::round_up(q, W), false, true);
        }
      });
      // phase 2: heads split over threads, each part with its own scratch
      parallel_for(0, np, 1, [&](index_t p0, index_t p1) {
        for (index_t part = p0; part < p1; ++part) {
          const index_t h0 = d.n_heads * part / np, h1 = d.n_heads * (part + 1) / np;
          for (index_t h = h0; h < h1; ++h) {
            const index_t g = h / d.heads_per_group;
            detail::ssd_chunk_head<Arch>(x, dt, C, w, ssm_state, y, p, d, cd, c0, q, h, Bp + g * Q * Np,
                                         CB + g * Q * Qp, scratch[part]);
          }
        }
      });
    }
  }
}

/// Scalar reference of the recurrence: token by token.
inline void ssd_scan(tensor_view<const float, 2> x, tensor_view<const float, 2> dt, tensor_view<const float, 2> B,
                     tensor_view<const float, 2> C, const ssd_weights& w, tensor_view<float, 3> ssm_state,
                     tensor_view<float, 2> y, const ssd_params& p, simd::scalar) {
  const auto d = detail::check_ssd(x, dt, B, C, w, ssm_state, y, p, "ssd_scan");
  detail::ssd_scan_heads<simd::scalar>(x, dt, B, C, w, ssm_state, y, p, d, 0, d.n_heads);
}

/// The recurrence, vectorized over d_state, heads split over threads.
template <class Arch = simd::default_arch>
void ssd_scan(tensor_view<const float, 2> x, tensor_view<const float, 2> dt, tensor_view<const float, 2> B,
              tensor_view<const float, 2> C, const ssd_weights& w, tensor_view<float, 3> ssm_state,
              tensor_view<float, 2> y, const ssd_params& p, Arch = {}) {
  if constexpr (simd::is_scalar_v<Arch>) {
    ssd_scan(x, dt, B, C, w, ssm_state, y, p, simd::scalar{});
  } else {
    const auto d = detail::check_ssd(x, dt, B, C, w, ssm_state, y, p, "ssd_scan");
    const index_t grain = std::max<index_t>(1, 16384 / std::max<index_t>(1, d.l * d.head_dim * d.d_state));
    parallel_for(0, d.n_heads, grain, [&](index_t h0, index_t h1) {
      detail::ssd_scan_heads<Arch>(x, dt, B, C, w, ssm_state, y, p, d, h0, h1);
    });
  }
}

/// One token: x, y (d_inner); dt (n_heads); B, C (n_groups * d_state).
inline void ssd_step(tensor_view<const float, 1> x, tensor_view<const float, 1> dt, tensor_view<const float, 1> B,
                     tensor_view<const float, 1> C, const ssd_weights& w, tensor_view<float, 3> ssm_state,
                     tensor_view<float, 1> y, const ssd_params& p, simd::scalar) {
  ssd_scan(detail::as_row(x), detail::as_row(dt), detail::as_row(B), detail::as_row(C), w, ssm_state,
           detail::as_row(y), p, simd::scalar{});
}

template <class Arch = simd::default_arch>
void ssd_step(tensor_view<const float, 1> x, tensor_view<const float, 1> dt, tensor_view<const float, 1> B,
              tensor_view<const float, 1> C, const ssd_weights& w, tensor_view<float, 3> ssm_state,
              tensor_view<float, 1> y, const ssd_params& p, Arch = {}) {
  ssd_scan<Arch>(detail::as_row(x), detail::as_row(dt), detail::as_row(B), detail::as_row(C), w, ssm_state,
                 detail::as_row(y), p, Arch{});
}

}  // namespace ssm
}  // namespace v0
}  // namespace tessera
