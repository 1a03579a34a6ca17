// tessera/attention/linear_attention.hpp: feature-map linear attention, and the engine shared by
// every linear-attention kind (retention.hpp, gated_linear_attention.hpp, delta_rule.hpp).
//
// Operands (one sequence; the layer loops over the batch):
//   q:     (l, n_qk_heads, d_k)   f32, innermost stride 1
//   k:     (l, n_qk_heads, d_k)   f32, innermost stride 1
//   v:     (l, n_heads, d_v)      f32, innermost stride 1
//   out:   (l, n_heads, d_v)      f32, innermost stride 1; overwritten
//   state: (n_heads, d_k, d_v)    f32, read as the initial state, overwritten with the final one
//   k_sum: (n_heads, d_k)         f32, the normalizer state z = Σ φ(k) (only with normalize)
// Broadcast: n_heads must be a multiple of n_qk_heads; value head h reads q/k head
// h / (n_heads / n_qk_heads) (PyTorch's repeat_interleave, as Qwen3-Next repeats its k heads).
//
// Feature-map attention (Katharopoulos et al.; fla's linear_attn), per head, t = 0 .. l-1:
//   S_t = S_{t-1} + φ(k_t) v_tᵀ,   z_t = z_{t-1} + φ(k_t)
//   o_t = S_tᵀ (s·φ(q_t))                           without the normalizer
//   o_t = S_tᵀ (s·φ(q_t)) / ((s·φ(q_t))·z_t + eps)  with it
// with φ ∈ {identity, elu+1, relu} and s = scale (default 1/sqrt(d_k)).
//
// Every kind comes in three forms that compute the same thing:
//   *_parallel   the quadratic form: o = (Q Kᵀ ⊙ causal decay mask) V + Q S_0, in O(l²) workspace;
//   *_recurrent  token by token on the state, O(d_k d_v) per token (decode: l = 1);
//   *_chunked    chunks of params.chunk_size: parallel inside a chunk, state passed between chunks.
// All forms take the state in and give it back, so prefill(n) then step × k equals prefill(n+k).
//
// Workspace: linear_attention_workspace_bytes(rows, n_heads, d_k, d_v) with rows = chunk_size
// (chunked), l (parallel) or 1 (recurrent), for the thread count in use when the kernel runs.
#pragma once

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <type_traits>

#include <tessera/core/error.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/kernels/tile_gemm.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace attention {

/// φ applied to q and k in feature-map attention.
enum class feature_map {
  identity,      // φ(x) = x
  elu_plus_one,  // φ(x) = elu(x) + 1 (x + 1 for x > 0, exp(x) otherwise)
  relu,          // φ(x) = max(x, 0)
};

struct linear_attention_params {
  feature_map phi = feature_map::elu_plus_one;
  bool normalize = false;        // divide by φ(q)·Σφ(k) + eps (needs the k_sum state)
  float eps = 1e-10f;            // fla's normalizer epsilon
  std::optional<float> scale;    // multiplies φ(q); default 1/sqrt(d_k)
  index_t chunk_size = 64;       // chunked form only
};

/// The state of feature-map attention: kv = Σ φ(k) vᵀ and, with the normalizer, k_sum = Σ φ(k).
struct linear_attention_state {
  tensor_view<float, 3> kv;     // (n_heads, d_k, d_v)
  tensor_view<float, 2> k_sum;  // (n_heads, d_k); may be empty unless params.normalize
};

/// Sub-chunk length used for data-dependent per-dimension decay (GLA) inside a chunk.
inline constexpr index_t linear_attention_subchunk = 16;

/// Workspace bytes for any linear-attention kernel of this family: rows = chunk_size for the chunked
/// form (or l when smaller), l for the parallel form, 1 for the recurrent form.
inline std::size_t linear_attention_workspace_bytes(index_t rows, index_t n_heads, index_t d_k, index_t d_v) {
  rows = std::max<index_t>(rows, 1);
  const index_t workers = std::max<index_t>(1, std::min<index_t>({static_cast<index_t>(num_threads()), n_heads, 64}));
  // rows of V, O, S padded to 16 floats (the widest vector), rows of the chunk matrices likewise
  const index_t dvp = (d_v + 15) / 16 * 16, rp = (rows + 15) / 16 * 16;
  const index_t floats = rows * (6 * d_k + 2 * dvp + 2 * rp + 3) + d_k * (dvp + rp + 2) + std::max(d_k, d_v);
  const index_t per_worker = (n_heads + workers - 1) / workers;
  // the chunked form keeps every head's state, and gathers each chunk's rows of its heads
  const index_t chunked = n_heads * d_k * (dvp + 1) + workers * (per_worker + 1) * rows * (3 * d_k + 2 * d_v);
  return static_cast<std::size_t>(workers) * (workspace::bytes_for<float>(floats) + 24 * buffer_alignment) +
         workspace::bytes_for<float>(chunked) + 2 * buffer_alignment;
}

namespace detail {

// ---- the problem every linear-attention kind reduces to -----------------------------------------
//
// S_t = diag(a_t) S_{t-1} + k_t v_tᵀ                 (additive kinds; a_t = exp(g_t), g_t ≤ 0)
// S_t = a_t (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ (delta kinds; a_t scalar)
// o_t = S_tᵀ q_t
// g_t is zero (no decay), a constant per head (retention), a scalar per token and head (gated
// delta rule) or a vector over d_k per token and head (GLA).

enum class la_gate { none, head_const, token_scalar, token_vector };

struct la_problem {
  const char* op = "linear_attention";
  tensor_view<const float, 3> q, k, v;  // (l, n_qk_heads, d_k), (l, n_qk_heads, d_k), (l, n_heads, d_v)
  tensor_view<float, 3> out;            // (l, n_heads, d_v)
  tensor_view<float, 3> state;          // (n_heads, d_k, d_v)
  tensor_view<float, 2> k_sum;          // (n_heads, d_k) when normalize
  la_gate gate = la_gate::none;
  tensor_view<const float, 1> gamma;    // (n_heads) decay γ for head_const
  tensor_view<const float, 2> g_scalar; // (l, n_heads) log-space gate
  tensor_view<const float, 3> g_vector; // (l, n_heads, d_k) log-space gate
  bool delta = false;
  tensor_view<const float, 2> beta;     // (l, n_heads) for delta
  feature_map phi = feature_map::identity;
  bool l2norm_qk = false;
  float l2norm_eps = 1e-6f;
  float scale = 1.f;
  bool normalize = false;
  float eps = 1e-10f;
};

inline std::string la_name(const la_problem& p, const char* form) { return check_name{p.op, form}.str(); }

inline void la_check(const la_problem& p, const char* form) {
  const auto [l, n_qk_heads, d_k] = p.q.extents();
  const index_t n_heads = p.v.extent(1), d_v = p.v.extent(2);
  expect_extents(p.k.extents(), {l, n_qk_heads, d_k}, check_name{p.op, form, "k"});
  expect_equal(p.v.extent(0), l, check_name{p.op, form, "v length vs q length (l)"});
  if (n_qk_heads < 1 || n_heads % n_qk_heads != 0)
    throw shape_error(la_name(p, form) + ": n_heads of v (" + std::to_string(n_heads) + ") is not a multiple of the q/k heads (" +
                      std::to_string(n_qk_heads) + ")");
  expect_extents(p.out.extents(), {l, n_heads, d_v}, check_name{p.op, form, "out"});
  expect_extents(p.state.extents(), {n_heads, d_k, d_v}, check_name{p.op, form, "state"});
  if (p.normalize) expect_extents(p.k_sum.extents(), {n_heads, d_k}, check_name{p.op, form, "k_sum"});
  switch (p.gate) {
    case la_gate::none: break;
    case la_gate::head_const: {
      expect_extents(p.gamma.extents(), {n_heads}, check_name{p.op, form, "gamma"});
      for (index_t h = 0; h < n_heads; ++h)
        if (!(p.gamma(h) > 0.f && p.gamma(h) <= 1.f))
          throw range_error(la_name(p, form) + ": gamma[" + std::to_string(h) + "] = " + std::to_string(p.gamma(h)) +
                            " is outside (0, 1]");
      break;
    }
    case la_gate::token_scalar: expect_extents(p.g_scalar.extents(), {l, n_heads}, check_name{p.op, form, "g"}); break;
    case la_gate::token_vector: expect_extents(p.g_vector.extents(), {l, n_heads, d_k}, check_name{p.op, form, "g"}); break;
  }
  if (p.delta) expect_extents(p.beta.extents(), {l, n_heads}, check_name{p.op, form, "beta"});
  if (p.delta && p.gate == la_gate::token_vector) throw config_error(la_name(p, form) + ": the delta rule takes a scalar gate");
  expect_rows_contiguous(p.q, check_name{p.op, form, "q"});
  expect_rows_contiguous(p.k, check_name{p.op, form, "k"});
  expect_rows_contiguous(p.v, check_name{p.op, form, "v"});
  expect_rows_contiguous(p.out, check_name{p.op, form, "out"});
  if (p.gate == la_gate::token_vector) expect_rows_contiguous(p.g_vector, check_name{p.op, form, "g"});
  if (!std::isfinite(p.scale)) throw range_error(la_name(p, form) + ": scale is not finite");
}

// ---- small dense helpers: plain loops for simd::scalar, register tiles in xsimd otherwise --------

/// x (rows, cols; row stride ldx) transposed into xt (cols, ldt), zero in columns rows .. ldt.
template <class Arch>
void la_transpose(const float* x, index_t rows, index_t cols, index_t ldx, float* xt, index_t ldt) noexcept {
  const auto columns = [&](index_t d0, index_t d1, index_t i0) {
    for (index_t d = d0; d < d1; ++d) {
      float* dst = xt + d * ldt;
      for (index_t i = i0; i < rows; ++i) dst[i] = x[i * ldx + d];
      std::fill(dst + rows, dst + ldt, 0.f);
    }
  };
  index_t d0 = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>)
    for (; d0 + 16 <= cols; d0 += 16) {
      index_t i0 = 0;
      for (; i0 + 16 <= rows; i0 += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(x + (i0 + i) * ldx + d0);
        simd::transpose16x16(r);
        for (int i = 0; i < 16; ++i) _mm512_storeu_ps(xt + (d0 + i) * ldt + i0, r[i]);
      }
      columns(d0, d0 + 16, i0);
    }
#endif
  columns(d0, cols, 0);
}

template <class Arch>
struct la_ops {
  using batch = xsimd::batch<float, Arch>;
  static constexpr index_t lanes = batch::size;

  /// c (m×n) (+)= a (m×k) · b (k×n) with a(i, p) = a[i·lda + p], or a[p·lda + i] when TA; b and c
  /// rows aligned, n a multiple of lanes (the chunk buffers are padded with zero columns).
  template <bool TA>
  static void gemm(index_t m, index_t n, index_t k, const float* a, index_t lda, const float* b, index_t ldb, float* c,
                   index_t ldc, bool accumulate, kernels::tile_triangle tri = kernels::tile_triangle::none) noexcept {
    kernels::tile_gemm<Arch>(m, n, k, a, TA ? 1 : lda, TA ? lda : 1, b, ldb, c, ldc, accumulate, tri);
  }
  /// y = a·y + b·x
  static void axpby(float* y, float a, const float* x, float b, index_t n) noexcept {
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t w = batch::size;
    const batch va(a), vb(b);
    index_t j = 0;
    for (; j + w <= n; j += w)
      xsimd::fma(va, batch::load_unaligned(y + j), vb * batch::load_unaligned(x + j)).store_unaligned(y + j);
    for (; j < n; ++j) y[j] = a * y[j] + b * x[j];
  }
  /// y += a·x
  static void axpy(float* y, float a, const float* x, index_t n) noexcept {
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t w = batch::size;
    const batch va(a);
    index_t j = 0;
    for (; j + w <= n; j += w) xsimd::fma(va, batch::load_unaligned(x + j), batch::load_unaligned(y + j)).store_unaligned(y + j);
    for (; j < n; ++j) y[j] += a * x[j];
  }
  /// For every row d < d_k: S[d,:] = a[d]·S[d,:] + k[d]·v, and o = Σ_d q[d]·S[d,:] (overwritten):
  /// the whole recurrent step in one pass over S, d_v in blocks of up to 4 vectors whose o and v
  /// stay in registers while the rows go by (each element of S is loaded and stored once).
  static void update_state(float* S, index_t d_k, index_t d_v, const float* a, const float* k, const float* v,
                           const float* q, float* o) noexcept {
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t w = batch::size;
    index_t e0 = 0;
    for (; e0 + 4 * w <= d_v; e0 += 4 * w) update_block<4>(S, d_k, d_v, a, k, v, q, o, e0);
    switch ((d_v - e0) / w) {
      case 3: update_block<3>(S, d_k, d_v, a, k, v, q, o, e0); break;
      case 2: update_block<2>(S, d_k, d_v, a, k, v, q, o, e0); break;
      case 1: update_block<1>(S, d_k, d_v, a, k, v, q, o, e0); break;
      default: break;
    }
    e0 += (d_v - e0) / w * w;
    for (index_t e = e0; e < d_v; ++e) {
      float acc = 0.f;
      for (index_t d = 0; d < d_k; ++d) {
        float& sd = S[d * d_v + e];
        sd = a[d] * sd + k[d] * v[e];
        acc += q[d] * sd;
      }
      o[e] = acc;
    }
  }
  template <int VB>
  static void update_block(float* S, index_t d_k, index_t d_v, const float* a, const float* k, const float* v,
                           const float* q, float* o, index_t e0) noexcept {
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t w = batch::size;
    batch vv[VB], acc[VB];
#pragma GCC unroll 4
    for (int t = 0; t < VB; ++t) {
      vv[t] = batch::load_unaligned(v + e0 + t * w);
      acc[t] = batch(0.f);
    }
    for (index_t d = 0; d < d_k; ++d) {
      const batch va(a[d]), vk(k[d]), vq(q[d]);
      float* row = S + d * d_v + e0;
#pragma GCC unroll 4
      for (int t = 0; t < VB; ++t) {
        const batch sn = xsimd::fma(va, batch::load_unaligned(row + t * w), vk * vv[t]);
        sn.store_unaligned(row + t * w);
        acc[t] = xsimd::fma(vq, sn, acc[t]);
      }
    }
#pragma GCC unroll 4
    for (int t = 0; t < VB; ++t) acc[t].store_unaligned(o + e0 + t * w);
  }
  static float dot(const float* x, const float* y, index_t n) noexcept {
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t w = batch::size;
    batch acc(0.f);
    index_t j = 0;
    for (; j + w <= n; j += w) acc = xsimd::fma(batch::load_unaligned(x + j), batch::load_unaligned(y + j), acc);
    float s = xsimd::hadd(acc);
    for (; j < n; ++j) s += x[j] * y[j];
    return s;
  }
  /// dst = src ⊙ exp(a - b) (b may be null: exp(a)).
  static void mul_exp(float* dst, const float* src, const float* a, const float* b, index_t n) noexcept {
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t w = batch::size;
    index_t j = 0;
    for (; j + w <= n; j += w) {
      const batch e = b ? batch::load_unaligned(a + j) - batch::load_unaligned(b + j) : batch::load_unaligned(a + j);
      (batch::load_unaligned(src + j) * xsimd::exp(e)).store_unaligned(dst + j);
    }
    for (; j < n; ++j) dst[j] = src[j] * std::exp(b ? a[j] - b[j] : a[j]);
  }
  /// dst[j] = exp(c + s·b[j]) for j < n.
  static void exp_affine(float* dst, float c, float s, const float* b, index_t n) noexcept {
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t w = batch::size;
    const batch vc(c), vs(s);
    index_t j = 0;
    for (; j + w <= n; j += w) xsimd::exp(xsimd::fma(vs, batch::load_unaligned(b + j), vc)).store_unaligned(dst + j);
    if (j < n) simd::store_partial<Arch>(dst + j, xsimd::exp(xsimd::fma(vs, simd::load_partial<Arch>(b + j, n - j), vc)), n - j);
  }
  /// x[j] *= exp(c - b[j]) for j < n.
  static void scale_exp_row(float* x, float c, const float* b, index_t n) noexcept {
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t w = batch::size;
    const batch vc(c);
    index_t j = 0;
    for (; j + w <= n; j += w)
      (batch::load_unaligned(x + j) * xsimd::exp(vc - batch::load_unaligned(b + j))).store_unaligned(x + j);
    if (j < n)  // the tail in one vector too: rows of causal A end at the diagonal, mostly mid-vector
      simd::store_partial<Arch>(
          x + j, simd::load_partial<Arch>(x + j, n - j) * xsimd::exp(vc - simd::load_partial<Arch>(b + j, n - j)), n - j);
  }
  /// Row i of a gated diagonal block: row[j] = Σ_d q[d] k_j[d] Π_{t=j+1..i} a_t[d] for j = i down
  /// to r, with k_j = k + j·n and a_t = a + t·n; the product is carried down j in dec (n floats),
  /// one multiply per step instead of an exp per element.
  static void gated_row(const float* q, const float* k, const float* a, index_t n, index_t r, index_t i, float* row,
                        float* dec) noexcept {
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t w = batch::size;
    std::fill(dec, dec + n, 1.f);
    for (index_t j = i; j >= r; --j) {
      const float* kj = k + j * n;
      const float* aj = a + (j + 1) * n;
      batch acc(0.f);
      float tail = 0.f;
      index_t d = 0;
      for (; d + w <= n; d += w) {
        batch dv = batch::load_unaligned(dec + d);
        if (j < i) (dv = dv * batch::load_unaligned(aj + d)).store_unaligned(dec + d);
        acc = xsimd::fma(batch::load_unaligned(q + d) * batch::load_unaligned(kj + d), dv, acc);
      }
      for (; d < n; ++d) {
        if (j < i) dec[d] *= aj[d];
        tail += q[d] * kj[d] * dec[d];
      }
      row[j] = xsimd::hadd(acc) + tail;
    }
  }
  /// dst = s · φ(src) (φ per feature_map: 0 identity, 1 elu+1, 2 relu).
  static void phi_scale(float* dst, const float* src, int phi, float s, index_t n) noexcept {
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t w = batch::size;
    const batch vs(s), one(1.f), zero(0.f);
    index_t j = 0;
    for (; j + w <= n; j += w) {
      batch x = batch::load_unaligned(src + j);
      if (phi == 1) x = xsimd::select(x > zero, x + one, xsimd::exp(x));
      else if (phi == 2) x = xsimd::max(x, zero);
      (x * vs).store_unaligned(dst + j);
    }
    for (; j < n; ++j) {
      float x = src[j];
      if (phi == 1) x = x > 0.f ? x + 1.f : std::exp(x);
      else if (phi == 2) x = std::max(x, 0.f);
      dst[j] = x * s;
    }
  }
};

template <>
struct la_ops<simd::scalar> {
  static constexpr index_t lanes = 1;
  template <bool TA>
  static void gemm(index_t m, index_t n, index_t k, const float* a, index_t lda, const float* b, index_t ldb, float* c,
                   index_t ldc, bool accumulate, kernels::tile_triangle tri = kernels::tile_triangle::none) noexcept {
    for (index_t i = 0; i < m; ++i) {
      const index_t nn = tri == kernels::tile_triangle::lower_c ? std::min(n, i + 1) : n;
      const index_t kk = tri == kernels::tile_triangle::lower_a ? std::min(k, i + 1) : k;
      for (index_t j = 0; j < nn; ++j) {
        float s = 0.f;
        for (index_t p = 0; p < kk; ++p) s += (TA ? a[p * lda + i] : a[i * lda + p]) * b[p * ldb + j];
        c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.f) + s;
      }
    }
  }
  static void axpby(float* y, float a, const float* x, float b, index_t n) noexcept {
    for (index_t j = 0; j < n; ++j) y[j] = a * y[j] + b * x[j];
  }
  static void axpy(float* y, float a, const float* x, index_t n) noexcept {
    for (index_t j = 0; j < n; ++j) y[j] += a * x[j];
  }
  static void update_state(float* S, index_t d_k, index_t d_v, const float* a, const float* k, const float* v,
                           const float* q, float* o) noexcept {
    std::fill(o, o + d_v, 0.f);
    for (index_t d = 0; d < d_k; ++d)
      for (index_t e = 0; e < d_v; ++e) {
        float& sd = S[d * d_v + e];
        sd = a[d] * sd + k[d] * v[e];
        o[e] += q[d] * sd;
      }
  }
  static float dot(const float* x, const float* y, index_t n) noexcept {
    float s = 0.f;
    for (index_t j = 0; j < n; ++j) s += x[j] * y[j];
    return s;
  }
  static void mul_exp(float* dst, const float* src, const float* a, const float* b, index_t n) noexcept {
    for (index_t j = 0; j < n; ++j) dst[j] = src[j] * std::exp(b ? a[j] - b[j] : a[j]);
  }
  static void exp_affine(float* dst, float c, float s, const float* b, index_t n) noexcept {
    for (index_t j = 0; j < n; ++j) dst[j] = std::exp(c + s * b[j]);
  }
  static void scale_exp_row(float* x, float c, const float* b, index_t n) noexcept {
    for (index_t j = 0; j < n; ++j) x[j] *= std::exp(c - b[j]);
  }
  static void gated_row(const float* q, const float* k, const float* a, index_t n, index_t r, index_t i, float* row,
                        float* dec) noexcept {
    std::fill(dec, dec + n, 1.f);
    for (index_t j = i; j >= r; --j) {
      float acc = 0.f;
      for (index_t d = 0; d < n; ++d) {
        if (j < i) dec[d] *= a[(j + 1) * n + d];
        acc += q[d] * k[j * n + d] * dec[d];
      }
      row[j] = acc;
    }
  }
  static void phi_scale(float* dst, const float* src, int phi, float s, index_t n) noexcept {
    for (index_t j = 0; j < n; ++j) {
      float x = src[j];
      if (phi == 1) x = x > 0.f ? x + 1.f : std::exp(x);
      else if (phi == 2) x = std::max(x, 0.f);
      dst[j] = x * s;
    }
  }
};

/// Loads q or k row of token t into dst (d_k floats): φ, optional L2 normalization, scale.
template <class Arch>
void la_prep(const la_problem& p, const float* src, float* dst, index_t d_k, float scale) noexcept {
  const int phi = p.phi == feature_map::elu_plus_one ? 1 : p.phi == feature_map::relu ? 2 : 0;
  if (p.l2norm_qk) {
    la_ops<Arch>::phi_scale(dst, src, phi, 1.f, d_k);
    scale /= std::sqrt(la_ops<Arch>::dot(dst, dst, d_k) + p.l2norm_eps);
    for (index_t d = 0; d < d_k; ++d) dst[d] *= scale;
  } else {
    la_ops<Arch>::phi_scale(dst, src, phi, scale, d_k);
  }
}

/// Log-space gate of token t, head h: scalar kinds only.
inline float la_log_gate(const la_problem& p, index_t t, index_t h) noexcept {
  switch (p.gate) {
    case la_gate::head_const: return std::log(p.gamma(h));
    case la_gate::token_scalar: return p.g_scalar(t, h);
    default: return 0.f;
  }
}

/// Per-worker scratch of the chunked / parallel forms for chunks of up to c rows. Rows of V, O and
/// S are ldv floats long (d_v rounded up to the vector width, zero past d_v), rows of the chunk
/// matrices A, L and Kᵀ up to c rounded up likewise.
struct la_scratch {
  float *qc, *kc, *vc, *oc, *kt, *qt, *bv, *ga, *a, *lm, *bt, *s, *z, *bs, *eq, *ek, *tmp;
  index_t ldv;
  static la_scratch make(workspace& ws, index_t c, index_t d_k, index_t d_v, index_t lanes) {
    const auto pad = [&](index_t n) { return (n + lanes - 1) / lanes * lanes; };
    la_scratch x{};
    x.ldv = pad(d_v);
    x.qc = ws.alloc<float>(c * d_k);
    x.kc = ws.alloc<float>(c * d_k);
    x.vc = ws.alloc<float>(c * x.ldv);
    x.oc = ws.alloc<float>(c * x.ldv);
    x.kt = ws.alloc<float>(c * d_k);
    x.qt = ws.alloc<float>(c * d_k);
    x.bv = ws.alloc<float>(c * d_k);
    x.ga = ws.alloc<float>(c * d_k);
    x.a = ws.alloc<float>(c * pad(c));
    x.lm = ws.alloc<float>(c * pad(c));
    x.bt = ws.alloc<float>(d_k * pad(c));
    x.s = ws.alloc<float>(d_k * x.ldv);
    x.z = ws.alloc<float>(d_k);
    x.bs = ws.alloc<float>(c);
    x.eq = ws.alloc<float>(c);
    x.ek = ws.alloc<float>(c);
    x.tmp = ws.alloc<float>(std::max(d_k, d_v));
    return x;
  }
};

/// Rows t0 .. t0 + n of one head's q, k (row stride qk_rs), v and out (row stride vo_rs).
struct la_rows {
  const float *q, *k, *v, *g;  // g: the vector gates (token_vector only), row stride qk_rs
  float* out;
  index_t qk_rs, vo_rs;
};

/// One chunk [t0, t0 + n) of head h; the state (x.s, x.z) is updated in place. The products run on
/// register tiles over zero-padded rows; only blocks on or below the diagonal are computed.
template <class Arch>
void la_chunk(const la_problem& p, index_t h, index_t t0, index_t n, const la_rows& r, const la_scratch& x) {
  using ops = la_ops<Arch>;
  constexpr index_t lanes = ops::lanes;
  const index_t d_k = p.q.extent(2), d_v = p.v.extent(2), dv = x.ldv;
  const index_t na = (n + lanes - 1) / lanes * lanes;  // row length of A and L
  const bool vec = p.gate == la_gate::token_vector;
  const bool gated = p.gate != la_gate::none;
  // load rows: Q (n, d_k) prepped and scaled, K (n, d_k) prepped, V (n, dv)
  for (index_t i = 0; i < n; ++i) {
    la_prep<Arch>(p, r.q + i * r.qk_rs, x.qc + i * d_k, d_k, p.scale);
    la_prep<Arch>(p, r.k + i * r.qk_rs, x.kc + i * d_k, d_k, 1.f);
    std::copy(r.v + i * r.vo_rs, r.v + i * r.vo_rs + d_v, x.vc + i * dv);
    std::fill(x.vc + i * dv + d_v, x.vc + (i + 1) * dv, 0.f);
  }
  // cumulative log decay inside the chunk: bs (n) for scalar gates, bv (n, d_k) for vector gates
  if (vec) {
    for (index_t i = 0; i < n; ++i) {
      const float* g = r.g + i * r.qk_rs;
      float* b = x.bv + i * d_k;
      for (index_t d = 0; d < d_k; ++d) b[d] = (i ? b[d - d_k] : 0.f) + g[d];
      ops::exp_affine(x.ga + i * d_k, 0.f, 1.f, g, d_k);  // the gates a_i = exp(g_i)
    }
  } else if (gated) {
    float acc = 0.f;
    for (index_t i = 0; i < n; ++i) x.bs[i] = acc += la_log_gate(p, t0 + i, h);
    ops::exp_affine(x.eq, 0.f, 1.f, x.bs, n);             // eq_i = exp(b_i): query i against S0
    ops::exp_affine(x.ek, x.bs[n - 1], -1.f, x.bs, n);    // ek_j = exp(b_last - b_j): key j into S
  }
  // A (n, na) = causal (Q Kᵀ ⊙ decay), diagonal included, zero above it
  float* A = x.a;
  if (!vec) {
    la_transpose<Arch>(x.kc, n, d_k, d_k, x.bt, na);  // Kᵀ (d_k, na)
    ops::template gemm<false>(n, na, d_k, x.qc, d_k, x.bt, na, A, na, false, kernels::tile_triangle::lower_c);
    for (index_t i = 0; i < n; ++i) {
      if (gated) ops::scale_exp_row(A + i * na, x.bs[i], x.bs, i + 1);
      std::fill(A + i * na + i + 1, A + (i + 1) * na, 0.f);
    }
  } else {
    // Sub-chunks keep every exponent ≤ 0: rows of sub-chunk [r, r+s) see earlier keys through the
    // reference row r-1, q_i·exp(B_i - B_{r-1}) against k_j·exp(B_{r-1} - B_j); the diagonal block
    // is computed pair by pair, its decay a running product of the gates exp(g_t) (gated_row).
    const index_t sc = linear_attention_subchunk;
    for (index_t r = 0; r < n; r += sc) {
      const index_t re = std::min(n, r + sc);
      if (r > 0) {
        const float* bp = x.bv + (r - 1) * d_k;
        const index_t rp = (r + lanes - 1) / lanes * lanes;
        for (index_t i = r; i < re; ++i) ops::mul_exp(x.qt + (i - r) * d_k, x.qc + i * d_k, x.bv + i * d_k, bp, d_k);
        for (index_t j = 0; j < r; ++j) ops::mul_exp(x.kt + j * d_k, x.kc + j * d_k, bp, x.bv + j * d_k, d_k);
        la_transpose<Arch>(x.kt, r, d_k, d_k, x.bt, rp);
        ops::template gemm<false>(re - r, rp, d_k, x.qt, d_k, x.bt, rp, A + r * na, na, false);
      }
      for (index_t i = r; i < re; ++i) {
        ops::gated_row(x.qc + i * d_k, x.kc, x.ga, d_k, r, i, A + i * na, x.tmp);
        std::fill(A + i * na + i + 1, A + (i + 1) * na, 0.f);
      }
    }
  }
  // qt (n, d_k) = Q ⊙ exp(b): queries as they see the chunk's initial state
  auto decay_q = [&](float* dst, const float* src, index_t i) {
    if (vec)
      ops::mul_exp(dst, src, x.bv + i * d_k, nullptr, d_k);
    else {
      const float e = gated ? x.eq[i] : 1.f;
      for (index_t d = 0; d < d_k; ++d) dst[d] = src[d] * e;
    }
  };
  if (p.delta) {
    // WY/UT form: (I + L) U = diag(β) V - diag(β exp(b)) K S0, L strictly lower with
    // L_ij = β_i exp(b_i - b_j) k_i·k_j; forward substitution, then U replaces V.
    float* L = x.lm;
    ops::template gemm<false>(n, na, d_k, x.kc, d_k, x.bt, na, L, na, false, kernels::tile_triangle::lower_c);
    for (index_t i = 0; i < n; ++i) {
      const float bi = p.beta(t0 + i, h);
      if (gated) ops::scale_exp_row(L + i * na, x.bs[i], x.bs, i);
      for (index_t j = 0; j < i; ++j) L[i * na + j] *= bi;
      float* kt = x.kt + i * d_k;  // -β exp(b) k: the sign of the product below folded in
      decay_q(kt, x.kc + i * d_k, i);
      for (index_t d = 0; d < d_k; ++d) kt[d] *= -bi;
      for (index_t e = 0; e < d_v; ++e) x.vc[i * dv + e] *= bi;
    }
    ops::template gemm<false>(n, dv, d_k, x.kt, d_k, x.s, dv, x.vc, dv, true);
    for (index_t i = 1; i < n; ++i)
      for (index_t j = 0; j < i; ++j) ops::axpy(x.vc + i * dv, -L[i * na + j], x.vc + j * dv, dv);
  }
  // O (n, dv) = A V + (Q ⊙ exp(b)) S0
  ops::template gemm<false>(n, dv, n, A, na, x.vc, dv, x.oc, dv, false, kernels::tile_triangle::lower_a);
  for (index_t i = 0; i < n; ++i) decay_q(x.qt + i * d_k, x.qc + i * d_k, i);
  ops::template gemm<false>(n, dv, d_k, x.qt, d_k, x.s, dv, x.oc, dv, true);
  if (p.normalize)
    for (index_t i = 0; i < n; ++i) {
      float den = ops::dot(x.qt + i * d_k, x.z, d_k);
      for (index_t j = 0; j <= i; ++j) den += A[i * na + j];
      const float inv = 1.f / (den + p.eps);
      for (index_t e = 0; e < d_v; ++e) x.oc[i * dv + e] *= inv;
    }
  for (index_t i = 0; i < n; ++i) std::copy(x.oc + i * dv, x.oc + i * dv + d_v, r.out + i * r.vo_rs);
  // state: S = diag(exp(b_last)) S + (K ⊙ exp(b_last - b))ᵀ V, z likewise
  const index_t last = n - 1;
  for (index_t j = 0; j < n; ++j) {
    if (vec) {
      ops::mul_exp(x.kt + j * d_k, x.kc + j * d_k, x.bv + last * d_k, x.bv + j * d_k, d_k);
    } else {
      const float e = gated ? x.ek[j] : 1.f;
      for (index_t d = 0; d < d_k; ++d) x.kt[j * d_k + d] = x.kc[j * d_k + d] * e;
    }
  }
  if (gated)
    for (index_t d = 0; d < d_k; ++d) {
      const float e = vec ? std::exp(x.bv[last * d_k + d]) : x.eq[last];
      for (index_t c = 0; c < d_v; ++c) x.s[d * dv + c] *= e;
      if (p.normalize) x.z[d] *= e;
    }
  ops::template gemm<true>(d_k, dv, n, x.kt, d_k, x.vc, dv, x.s, dv, true);
  if (p.normalize)
    for (index_t j = 0; j < n; ++j)
      for (index_t d = 0; d < d_k; ++d) x.z[d] += x.kt[j * d_k + d];
}

/// Runs f(h, scratch-slab workspace index) over the heads, one slab per worker.
inline index_t la_workers(index_t n_heads) {
  return std::max<index_t>(1, std::min<index_t>({static_cast<index_t>(num_threads()), n_heads, 64}));
}

/// Runs f(h0, h1, w) for each worker w on its share [h0, h1) of the heads.
template <class F>
void la_for_workers(index_t n_heads, F&& f) {
  const index_t workers = la_workers(n_heads);
  parallel_for(0, workers, 1, [&](index_t lo, index_t hi) {
    for (index_t w = lo; w < hi; ++w) f(n_heads * w / workers, n_heads * (w + 1) / workers, w);
  });
}

template <class F>
void la_for_heads(index_t n_heads, F&& f) {
  la_for_workers(n_heads, [&](index_t h0, index_t h1, index_t w) {
    for (index_t h = h0; h < h1; ++h) f(h, w);
  });
}


/// Chunked form (the parallel form is the chunked form with one chunk of length l).
template <class Arch>
void la_run_chunked(const la_problem& p, index_t chunk, workspace& ws, const char* form) {
  la_check(p, form);
  if (chunk < 1) throw range_error(la_name(p, form) + ": chunk_size must be >= 1, got " + std::to_string(chunk));
  const index_t l = p.q.extent(0), n_qk_heads = p.q.extent(1), d_k = p.q.extent(2);
  const index_t n_heads = p.v.extent(1), d_v = p.v.extent(2);
  const index_t c = std::max<index_t>(1, std::min(chunk, l));
  workspace::frame frame(ws);
  const index_t workers = la_workers(n_heads);
  la_scratch slabs[64];
  for (index_t w = 0; w < workers; ++w) slabs[w] = la_scratch::make(ws, c, d_k, d_v, la_ops<Arch>::lanes);
  const index_t dv = slabs[0].ldv;
  float* states = ws.alloc<float>(n_heads * d_k * dv);  // (n_heads, d_k, dv), zero past d_v
  float* sums = ws.alloc<float>(n_heads * d_k);
  const index_t group = n_heads / n_qk_heads, per_worker = (n_heads + workers - 1) / workers;
  const bool vec = p.gate == la_gate::token_vector;
  struct gather_buffers {
    float *q, *k, *v, *g, *out;
  };
  gather_buffers gathers[64];
  for (index_t w = 0; w < workers; ++w) {
    gathers[w].q = ws.alloc<float>((per_worker + 1) * c * d_k);  // q and k heads: per_worker / group + 1 at most
    gathers[w].k = ws.alloc<float>((per_worker + 1) * c * d_k);
    gathers[w].v = ws.alloc<float>(per_worker * c * d_v);
    gathers[w].g = ws.alloc<float>(vec ? per_worker * c * d_k : 0);
    gathers[w].out = ws.alloc<float>(per_worker * c * d_v);
  }
  la_for_workers(n_heads, [&](index_t h0, index_t h1, index_t w) {
    la_scratch x = slabs[w];
    const auto head_state = [&](index_t h) {
      x.s = states + h * d_k * dv;
      x.z = sums + h * d_k;
    };
    for (index_t h = h0; h < h1; ++h) {
      head_state(h);
      for (index_t d = 0; d < d_k; ++d) {
        std::copy(&p.state(h, d, 0), &p.state(h, d, 0) + d_v, x.s + d * dv);
        std::fill(x.s + d * dv + d_v, x.s + (d + 1) * dv, 0.f);
        if (p.normalize) x.z[d] = p.k_sum(h, d);
      }
    }
    // Each chunk's rows of q, k, v for this worker's heads are copied in row order into head-major
    // buffers (one sequential stream: striding over rows one head at a time defeats the hardware
    // prefetchers), and out is written back the same way.
    const index_t hq0 = h0 / group, nq = h1 > h0 ? (h1 - 1) / group + 1 - hq0 : 0, nv = h1 - h0;
    const gather_buffers& g = gathers[w];
    for (index_t t0 = 0; t0 < l; t0 += c) {
      const index_t n = std::min(c, l - t0);
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < nq; ++j) {
          std::copy(&p.q(t0 + i, hq0 + j, 0), &p.q(t0 + i, hq0 + j, 0) + d_k, g.q + (j * c + i) * d_k);
          std::copy(&p.k(t0 + i, hq0 + j, 0), &p.k(t0 + i, hq0 + j, 0) + d_k, g.k + (j * c + i) * d_k);
        }
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < nv; ++j) {
          std::copy(&p.v(t0 + i, h0 + j, 0), &p.v(t0 + i, h0 + j, 0) + d_v, g.v + (j * c + i) * d_v);
          if (vec) std::copy(&p.g_vector(t0 + i, h0 + j, 0), &p.g_vector(t0 + i, h0 + j, 0) + d_k, g.g + (j * c + i) * d_k);
        }
      for (index_t h = h0; h < h1; ++h) {
        head_state(h);
        const index_t jq = h / group - hq0, jv = h - h0;
        const la_rows r{g.q + jq * c * d_k, g.k + jq * c * d_k, g.v + jv * c * d_v, g.g + jv * c * d_k,
                        g.out + jv * c * d_v, d_k, d_v};
        la_chunk<Arch>(p, h, t0, n, r, x);
      }
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < nv; ++j)
          std::copy(g.out + (j * c + i) * d_v, g.out + (j * c + i + 1) * d_v, &p.out(t0 + i, h0 + j, 0));
    }
    for (index_t h = h0; h < h1; ++h) {
      head_state(h);
      for (index_t d = 0; d < d_k; ++d) {
        std::copy(x.s + d * dv, x.s + d * dv + d_v, &p.state(h, d, 0));
        if (p.normalize) p.k_sum(h, d) = x.z[d];
      }
    }
  });
}

/// Recurrent form: token by token on the state, O(d_k d_v) per token.
template <class Arch>
void la_run_recurrent(const la_problem& p, workspace& ws) {
  using ops = la_ops<Arch>;
  la_check(p, "recurrent");
  const index_t l = p.q.extent(0), n_qk_heads = p.q.extent(1), d_k = p.q.extent(2);
  const index_t n_heads = p.v.extent(1), d_v = p.v.extent(2);
  const index_t group = n_heads / n_qk_heads;
  workspace::frame frame(ws);
  const index_t workers = la_workers(n_heads);
  la_scratch slabs[64];
  for (index_t w = 0; w < workers; ++w) slabs[w] = la_scratch::make(ws, 1, d_k, d_v, 1);
  la_for_heads(n_heads, [&](index_t h, index_t w) {
    const la_scratch& x = slabs[w];
    float* S = x.s;  // (d_k, d_v)
    for (index_t d = 0; d < d_k; ++d) {
      std::copy(&p.state(h, d, 0), &p.state(h, d, 0) + d_v, S + d * d_v);
      if (p.normalize) x.z[d] = p.k_sum(h, d);
    }
    float *qt = x.qc, *kt = x.kc, *u = x.vc, *o = x.oc, *a = x.bv;
    std::fill(x.tmp, x.tmp + d_k, 1.f);  // ones: a = ones ⊙ exp(g)
    for (index_t t = 0; t < l; ++t) {
      la_prep<Arch>(p, &p.q(t, h / group, 0), qt, d_k, p.scale);
      la_prep<Arch>(p, &p.k(t, h / group, 0), kt, d_k, 1.f);
      const float* v = &p.v(t, h, 0);
      if (p.gate == la_gate::token_vector)
        ops::mul_exp(a, x.tmp, &p.g_vector(t, h, 0), nullptr, d_k);
      else
        std::fill(a, a + d_k, p.gate == la_gate::none ? 1.f : std::exp(la_log_gate(p, t, h)));
      if (p.delta) {
        // u = β (v - a Sᵀk); S = a S + k uᵀ
        const float b = p.beta(t, h);
        std::fill(u, u + d_v, 0.f);
        for (index_t d = 0; d < d_k; ++d) ops::axpy(u, kt[d], S + d * d_v, d_v);
        for (index_t e = 0; e < d_v; ++e) u[e] = b * (v[e] - a[0] * u[e]);
        v = u;
      }
      ops::update_state(S, d_k, d_v, a, kt, v, qt, o);
      if (p.normalize) {
        for (index_t d = 0; d < d_k; ++d) x.z[d] = a[d] * x.z[d] + kt[d];
        const float inv = 1.f / (ops::dot(qt, x.z, d_k) + p.eps);
        for (index_t e = 0; e < d_v; ++e) o[e] *= inv;
      }
      std::copy(o, o + d_v, &p.out(t, h, 0));
    }
    for (index_t d = 0; d < d_k; ++d) {
      std::copy(S + d * d_v, S + (d + 1) * d_v, &p.state(h, d, 0));
      if (p.normalize) p.k_sum(h, d) = x.z[d];
    }
  });
}

enum class la_form { parallel, recurrent, chunked };

template <class Arch>
void la_run(const la_problem& p, la_form form, index_t chunk, workspace& ws) {
  switch (form) {
    case la_form::parallel: la_run_chunked<Arch>(p, std::max<index_t>(p.q.extent(0), 1), ws, "parallel"); break;
    case la_form::recurrent: la_run_recurrent<Arch>(p, ws); break;
    case la_form::chunked: la_run_chunked<Arch>(p, chunk, ws, "chunked"); break;
  }
}

inline float la_default_scale(const std::optional<float>& s, index_t d_k) {
  return s ? *s : 1.f / std::sqrt(static_cast<float>(std::max<index_t>(d_k, 1)));
}

inline la_problem la_feature_problem(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                                     tensor_view<const float, 3> v, tensor_view<float, 3> out,
                                     const linear_attention_state& s, const linear_attention_params& prm) {
  la_problem p;
  p.op = "linear_attention";
  p.q = q, p.k = k, p.v = v, p.out = out, p.state = s.kv, p.k_sum = s.k_sum;
  p.phi = prm.phi;
  p.normalize = prm.normalize;
  p.eps = prm.eps;
  p.scale = la_default_scale(prm.scale, q.extent(2));
  return p;
}

}  // namespace detail

// ---- feature-map linear attention ---------------------------------------------------------------

/// Quadratic form: o = causal(φ(Q) φ(K)ᵀ) V + φ(Q) S_0 (optionally normalized). Workspace: rows = l.
template <class Arch = simd::default_arch>
void linear_attention_parallel(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                               tensor_view<const float, 3> v, tensor_view<float, 3> out, linear_attention_state state,
                               const linear_attention_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::la_feature_problem(q, k, v, out, state, params), detail::la_form::parallel, 0, ws);
}
inline void linear_attention_parallel(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                                      tensor_view<const float, 3> v, tensor_view<float, 3> out,
                                      linear_attention_state state, const linear_attention_params& params,
                                      workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::la_feature_problem(q, k, v, out, state, params), detail::la_form::parallel, 0,
                               ws);
}

/// Recurrent form: S += φ(k) vᵀ, o = Sᵀ φ(q) per token (decode). Workspace: rows = 1.
template <class Arch = simd::default_arch>
void linear_attention_recurrent(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                                tensor_view<const float, 3> v, tensor_view<float, 3> out,
                                linear_attention_state state, const linear_attention_params& params, workspace& ws,
                                Arch = {}) {
  detail::la_run<Arch>(detail::la_feature_problem(q, k, v, out, state, params), detail::la_form::recurrent, 0, ws);
}
inline void linear_attention_recurrent(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                                       tensor_view<const float, 3> v, tensor_view<float, 3> out,
                                       linear_attention_state state, const linear_attention_params& params,
                                       workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::la_feature_problem(q, k, v, out, state, params), detail::la_form::recurrent, 0,
                               ws);
}

/// Chunked form (prefill): chunks of params.chunk_size. Workspace: rows = min(chunk_size, l).
template <class Arch = simd::default_arch>
void linear_attention_chunked(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                              tensor_view<const float, 3> v, tensor_view<float, 3> out, linear_attention_state state,
                              const linear_attention_params& params, workspace& ws, Arch = {}) {
  detail::la_run<Arch>(detail::la_feature_problem(q, k, v, out, state, params), detail::la_form::chunked,
                       params.chunk_size, ws);
}
inline void linear_attention_chunked(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                                     tensor_view<const float, 3> v, tensor_view<float, 3> out,
                                     linear_attention_state state, const linear_attention_params& params,
                                     workspace& ws, simd::scalar) {
  detail::la_run<simd::scalar>(detail::la_feature_problem(q, k, v, out, state, params), detail::la_form::chunked,
                               params.chunk_size, ws);
}

}  // namespace attention
}  // namespace v0
}  // namespace tessera
