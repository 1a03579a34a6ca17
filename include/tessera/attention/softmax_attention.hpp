// tessera/attention/softmax_attention.hpp: softmax attention in the online-softmax (flash) form.
//
// One sequence per call (layers run it sequence by sequence over a packed batch: docs/architecture.md).
//
//   q:   (l, n_heads, head_dim)        query rows; row i is at position q_offset + i
//   k:   (l_kv, n_kv_heads, head_dim)  key row j is at position j
//   v:   (l_kv, n_kv_heads, head_dim)
//   out: (l, n_heads, head_dim)        overwritten; may not alias q, k or v
//
//   GQA / MQA: n_heads % n_kv_heads == 0; head h reads kv head h / (n_heads / n_kv_heads)
//   (transformers' repeat_kv order). Nothing is repeated or copied.
//   Strides: any, as long as each head_dim row is contiguous (stride 1).
//
//   score(h, i, j) = scale · q[i,h,:]·k[j,g,:]                        (scale 0 → 1/sqrt(head_dim))
//                    → softcap · tanh(score / softcap)                  (when softcap > 0)
//                    + alibi_slopes[h] · (kpos_j - qpos_i)              (alibi_slopes: (n_heads))
//                    + relative_bias[h, clamp(kpos_j - qpos_i, -R, R) + R]
//                                                                       (relative_bias: (n_heads, 2R + 1);
//                                                                        T5's buckets, position_bias.hpp)
//                    + bias[h or 0, i, j]                               (bias: (n_heads or 1, l, l_kv))
//                    + key_mask[j]                                      (key_mask: (l_kv), additive)
//                    = -inf where the structural mask hides j from i    (mask.hpp: causal, prefix,
//                                                                        window, on positions)
//   out[i,h,:] = Σ_j softmax_j(score(h, i, ·)) · v[j,g,:]; a row with every score -inf → zeros.
//
//   Positions: qpos_i = q_offset + i and kpos_j = j, or explicit q_positions (l) and
//   k_positions (l_kv) (packed or left-padded sequences; masks and ALiBi use them).
//
// The kernel never materializes l × l: it tiles queries (4 SIMD vectors of rows: 64 on AVX-512)
// and keys (attention_k_tile rows), keeps a running max, sum and output per query row, skips
// tiles the mask hides entirely, and computes Q·Kᵀ and P·V per tile with a register-blocked xsimd
// micro-kernel in a key-major layout (softmax runs down columns, no horizontal reductions).
// Threads: parallel_for over (head, query tile) work items, interleaved so causal work balances.
//
// With a kv_cache (kv_cache.hpp):
//   prefill_attention(q, k_new, v_new, cache, out, params, ws)
//       q: (n, n_heads, head_dim), k_new, v_new: (n, n_kv_heads, head_dim); the n new tokens sit at
//       positions cache.size() .. cache.size() + n - 1. Attends over the cached tokens plus the new
//       ones, then appends k_new, v_new to the cache (a ring keeps the last window + rollback).
//       Works for any n, also longer than a ring's window. params.q_offset and the explicit
//       positions are ignored (the cache gives positions); bias / key_mask, if given, are indexed
//       by key position: (n_heads or 1, n, size + n) and (size + n).
//   decode_attention(q, cache, out, params, ws): one new token, in softmax_decode.hpp.
//   An f16 or q8_0 cache: its runs are widened to f32 a tile at a time into the workspace (k_tile
//   or decode_step rows of one kv head), so the kernels read half (f16) or 0.27x (q8_0) of the
//   bytes and compute in f32.
//   A ring cache's window is the attention window (params.window must be unset or equal).
//
// Partial states: over a subset of keys, one query row has m = max score, s = Σ exp(score - m),
// o = Σ exp(score - m) · v (not normalized). merge_partial_state() combines two subsets
// (associative, commutative); out = o / s.
//
// Workspace: softmax_attention_workspace_bytes(n_heads, head_dim, n_threads) is enough for every
// entry point in this header with up to n_threads threads (it does not depend on l).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include <tessera/attention/kv_cache.hpp>
#include <tessera/attention/mask.hpp>
#include <tessera/core/dtype.hpp>
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

struct attention_params {
  float scale = 0.f;                                         // 0: 1/sqrt(head_dim); T5 uses 1
  bool causal = true;
  index_t q_offset = 0;                                      // position of q row 0 (prefill after a prefix)
  std::optional<index_t> window;                             // sliding window, keys counted including self
  float softcap = 0.f;                                       // logit softcap (Gemma 2); 0: off
  std::optional<tensor_view<const float, 1>> alibi_slopes;   // (n_heads)
  std::optional<tensor_view<const float, 2>> relative_bias;  // (n_heads, 2R + 1) by kpos - qpos, clamped to ±R
  std::optional<tensor_view<const float, 3>> bias;           // (n_heads or 1, l, l_kv) additive
  std::optional<tensor_view<const float, 1>> key_mask;       // (l_kv) additive: 0 keep, -inf drop
  index_t prefix = 0;                                        // prefix-LM: positions < prefix seen by all
  std::optional<tensor_view<const index_t, 1>> q_positions;  // (l) explicit query positions
  std::optional<tensor_view<const index_t, 1>> k_positions;  // (l_kv) explicit key positions
};

/// Query rows per tile (at most; 4 vectors of the arch) and key rows per tile of the prefill kernel.
inline constexpr index_t attention_q_tile = 64;
inline constexpr index_t attention_k_tile = 128;
/// Keys per step of the decode kernel, and the fewest keys a decode split gets.
inline constexpr index_t attention_decode_step = 32;
inline constexpr index_t attention_decode_min_split = 256;

/// Bytes of workspace every entry point of this header needs with up to n_threads threads.
inline std::size_t softmax_attention_workspace_bytes(index_t n_heads, index_t head_dim,
                                                     index_t n_threads = num_threads()) {
  n_threads = std::max<index_t>(n_threads, 1);
  // prefill, per worker: q tileᵀ and output accumulator (head_dim × q_tile), scores
  // (k_tile × q_tile), max and sum (q_tile), a tile of f16 keys or values widened (k_tile × head_dim)
  const std::size_t prefill =
      static_cast<std::size_t>(n_threads) *
      (2 * workspace::bytes_for<float>(attention_q_tile * head_dim) +
       workspace::bytes_for<float>(attention_q_tile * attention_k_tile) + 2 * workspace::bytes_for<float>(attention_q_tile) +
       workspace::bytes_for<float>(attention_k_tile * head_dim));
  // decode: up to 4 splits per thread, each n_heads partial states, a step of scores and a step of
  // f16 keys or values widened
  const index_t splits = 4 * n_threads;
  const std::size_t decode = workspace::bytes_for<float>(splits * n_heads * (head_dim + 2)) +
                             static_cast<std::size_t>(splits) *
                                 (workspace::bytes_for<float>(n_heads * attention_decode_step) +
                                  workspace::bytes_for<float>(attention_decode_step * head_dim)) +
                             workspace::bytes_for<float>(head_dim + 2);
  return std::max(prefill, decode) + 1024;
}

/// Merges partial state b into a (same query row, disjoint key subsets).
///   o_a, o_b: (head_dim) unnormalized outputs; m_* running max; s_* sum of exp(score - m).
inline void merge_partial_state(float& m_a, float& s_a, tensor_view<float, 1> o_a, float m_b, float s_b,
                                tensor_view<const float, 1> o_b) {
  expect_equal(o_a.extent(0), o_b.extent(0), "merge_partial_state: o_a vs o_b (head_dim)");
  const index_t head_dim = o_a.extent(0);
  if (m_b == -std::numeric_limits<float>::infinity()) return;  // b saw no key
  if (m_a == -std::numeric_limits<float>::infinity()) {
    m_a = m_b;
    s_a = s_b;
    for (index_t e = 0; e < head_dim; ++e) o_a(e) = o_b(e);
    return;
  }
  const float m = std::max(m_a, m_b);
  const float ca = std::exp(m_a - m), cb = std::exp(m_b - m);
  for (index_t e = 0; e < head_dim; ++e) o_a(e) = ca * o_a(e) + cb * o_b(e);
  s_a = ca * s_a + cb * s_b;
  m_a = m;
}

namespace detail {

inline constexpr float neg_inf = -std::numeric_limits<float>::infinity();

/// A run of keys at consecutive positions (or explicit ones), read by the kernels: f32 k, v, or
/// f16 kh, vh (an f16 kv_cache) or q8_0 kq, vq (a q8_0 kv_cache), which the kernels widen a tile
/// at a time into scratch (widen_keys, widen_values).
struct key_run {
  tensor_view<const float, 3> k;                          // (n, n_kv_heads, head_dim)
  tensor_view<const float, 3> v;                          // (n, n_kv_heads, head_dim)
  index_t pos0 = 0;                                       // position of key 0 (without positions)
  std::optional<tensor_view<const index_t, 1>> positions; // (n) explicit positions
  index_t index0 = 0;                                     // index of key 0 in key_mask / bias
  kv_element stored = kv_element::f32;                    // which pair holds the keys and values
  tensor_view<const f16, 3> kh;                           // (n, n_kv_heads, head_dim)
  tensor_view<const f16, 3> vh;
  tensor_view<const block_q8_0, 3> kq;                    // (n, n_kv_heads, head_dim / 32)
  tensor_view<const block_q8_0, 3> vq;

  static key_run of(const kv_run& r) {
    return {r.k, r.v, r.pos0, {}, r.pos0, r.element, r.k16, r.v16, r.kq, r.vq};
  }
  index_t pos(index_t j) const noexcept { return positions ? (*positions)(j) : pos0 + j; }
  /// Keys and values are not f32 and must be widened before the kernels read them.
  bool widened() const noexcept { return stored != kv_element::f32; }
  index_t size() const noexcept { return extent(0); }
  index_t kv_heads() const noexcept { return extent(1); }
  /// A kv head's keys stored contiguously (kv_cache's head-major layout).
  bool head_major() const noexcept {
    switch (stored) {
      case kv_element::f16: return kh.stride(1) > kh.stride(0);
      case kv_element::q8_0: return kq.stride(1) > kq.stride(0);
      default: return k.stride(1) > k.stride(0);
    }
  }
  float key(index_t j, index_t g, index_t e) const noexcept { return element(k, kh, kq, j, g, e); }
  float value(index_t j, index_t g, index_t e) const noexcept { return element(v, vh, vq, j, g, e); }

 private:
  index_t extent(int d) const noexcept {
    switch (stored) {
      case kv_element::f16: return kh.extent(d);
      case kv_element::q8_0: return kq.extent(d);
      default: return k.extent(d);
    }
  }
  float element(const tensor_view<const float, 3>& f, const tensor_view<const f16, 3>& h,
                const tensor_view<const block_q8_0, 3>& q, index_t j, index_t g, index_t e) const noexcept {
    switch (stored) {
      case kv_element::f16: return static_cast<float>(h(j, g, e));
      case kv_element::q8_0: {  // = dequantize's d · q
        const block_q8_0& b = q(j, g, e / block_q8_0::block_size);
        return static_cast<float>(b.qs[e % block_q8_0::block_size]) * to_float(b.d);
      }
      default: return f(j, g, e);
    }
  }
};

/// dst (j1 - j0, head_dim), contiguous = rows j0 .. j1 - 1 of kv head g of src, widened to f32.
template <class Arch>
const float* widen_rows(const tensor_view<const f16, 3>& src, index_t j0, index_t j1, index_t g, float* dst) noexcept {
  constexpr index_t W = static_cast<index_t>(xsimd::batch<float, Arch>::size);
  const index_t head_dim = src.extent(2);
  for (index_t j = j0; j < j1; ++j) {
    const f16* from = &src(j, g, 0);
    float* to = dst + (j - j0) * head_dim;
    index_t e = 0;
    for (; e + W <= head_dim; e += W) simd::load_widened<Arch>(from + e).store_unaligned(to + e);
    for (; e < head_dim; ++e) to[e] = static_cast<float>(from[e]);
  }
  return dst;
}

/// The same for q8_0 blocks (src: (n, n_kv_heads, head_dim / 32)): core/blocks.hpp's dequantize,
/// a loop the compiler vectorizes.
template <class Arch>
const float* widen_rows(const tensor_view<const block_q8_0, 3>& src, index_t j0, index_t j1, index_t g, float* dst) noexcept {
  const index_t blocks = src.extent(2);
  for (index_t j = j0; j < j1; ++j) dequantize(&src(j, g, 0), dst + (j - j0) * blocks * block_q8_0::block_size, blocks);
  return dst;
}

/// Keys j0 .. j1 - 1 of kv head g of a widened run as f32 rows of head_dim in dst.
template <class Arch>
const float* widen_keys(const key_run& run, index_t j0, index_t j1, index_t g, float* dst) noexcept {
  return run.stored == kv_element::q8_0 ? widen_rows<Arch>(run.kq, j0, j1, g, dst) : widen_rows<Arch>(run.kh, j0, j1, g, dst);
}
/// The values likewise.
template <class Arch>
const float* widen_values(const key_run& run, index_t j0, index_t j1, index_t g, float* dst) noexcept {
  return run.stored == kv_element::q8_0 ? widen_rows<Arch>(run.vq, j0, j1, g, dst) : widen_rows<Arch>(run.vh, j0, j1, g, dst);
}

/// Everything the kernels need, checked and resolved.
struct attend_problem {
  tensor_view<const float, 3> q;   // (l, n_heads, head_dim)
  tensor_view<float, 3> out;       // (l, n_heads, head_dim)
  key_run runs[3];
  int n_runs = 0;
  index_t q_pos0 = 0;
  std::optional<tensor_view<const index_t, 1>> q_positions;  // (l)
  mask_spec mask;
  float scale = 1.f, softcap = 0.f;
  std::optional<tensor_view<const float, 1>> alibi_slopes;   // (n_heads)
  std::optional<tensor_view<const float, 2>> relative_bias;  // (n_heads, 2R + 1)
  index_t relative_reach = 0;                                // R
  std::optional<tensor_view<const float, 3>> bias;           // (n_heads or 1, l, index extent)
  std::optional<tensor_view<const float, 1>> key_mask;       // (index extent)
  index_t n_heads = 0, n_kv_heads = 0, head_dim = 0, n_rep = 1;

  index_t qpos(index_t i) const noexcept { return q_positions ? (*q_positions)(i) : q_pos0 + i; }
  index_t n_keys() const noexcept {
    index_t n = 0;
    for (int r = 0; r < n_runs; ++r) n += runs[r].size();
    return n;
  }
  bool has_additive() const noexcept { return alibi_slopes || relative_bias || bias || key_mask; }
  /// The score transforms after q·k (scale, softcap, additive terms, mask) for one element.
  float finish_score(float dot, index_t h, index_t i, index_t qp, const key_run& run, index_t j,
                     bool check_mask) const noexcept {
    return finish_scaled(dot * scale, h, i, qp, run, j, check_mask);
  }
  /// The same for a dot product already multiplied by scale.
  float finish_scaled(float s, index_t h, index_t i, index_t qp, const key_run& run, index_t j,
                      bool check_mask) const noexcept {
    const index_t kp = run.pos(j);
    if (check_mask && !is_visible(qp, kp, mask)) return neg_inf;
    if (softcap > 0.f) s = softcap * std::tanh(s / softcap);
    if (alibi_slopes) s += (*alibi_slopes)(h) * static_cast<float>(kp - qp);
    if (relative_bias) s += (*relative_bias)(h, std::clamp(kp - qp, -relative_reach, relative_reach) + relative_reach);
    if (bias) s += (*bias)(bias->extent(0) == 1 ? 0 : h, i, run.index0 + j);
    if (key_mask) s += (*key_mask)(run.index0 + j);
    return s;
  }
};

inline void check_views(const tensor_view<const float, 3>& q, const tensor_view<const float, 3>& k,
                        const tensor_view<const float, 3>& v, const tensor_view<float, 3>& out, const char* what) {
  const auto [l, n_heads, head_dim] = q.extents();
  const auto [l_kv, n_kv_heads, kv_dim] = k.extents();
  expect_extents(v.extents(), k.extents(), check_name{what, nullptr, "v (l_kv, n_kv_heads, head_dim) vs k"});
  expect_extents(out.extents(), q.extents(), check_name{what, nullptr, "out (l, n_heads, head_dim) vs q"});
  expect_equal(kv_dim, head_dim, check_name{what, nullptr, "k head_dim vs q head_dim"});
  if (n_kv_heads < 1 || n_heads % n_kv_heads != 0)
    throw shape_error(std::string(what) + ": n_heads = " + std::to_string(n_heads) + " is not a multiple of n_kv_heads = " +
                      std::to_string(n_kv_heads));
  expect_rows_contiguous(q, check_name{what, nullptr, "q"});
  expect_rows_contiguous(k, check_name{what, nullptr, "k"});
  expect_rows_contiguous(v, check_name{what, nullptr, "v"});
  expect_rows_contiguous(out, check_name{what, nullptr, "out"});
  (void)l;
  (void)l_kv;
}

/// Fills the parts of the problem common to every entry point; n_index = extent of the key axis
/// of bias / key_mask.
inline void resolve_common(attend_problem& pb, const attention_params& p, index_t n_index, const char* what) {
  const std::string_view op(what);  // no allocation unless a check fails
  const auto [l, n_heads, head_dim] = pb.q.extents();
  pb.n_heads = n_heads;
  pb.head_dim = head_dim;
  pb.n_kv_heads = pb.runs[0].kv_heads();
  pb.n_rep = n_heads / pb.n_kv_heads;
  pb.mask = mask_spec{p.causal, p.prefix, p.window};
  check_mask_spec(pb.mask, what);
  if (!(p.scale >= 0.f) || !std::isfinite(p.scale))
    throw range_error(std::string(op) + ": scale must be finite and >= 0, got " + std::to_string(p.scale));
  if (!(p.softcap >= 0.f) || !std::isfinite(p.softcap))
    throw range_error(std::string(op) + ": softcap must be finite and >= 0, got " + std::to_string(p.softcap));
  pb.scale = p.scale > 0.f ? p.scale : 1.f / std::sqrt(static_cast<float>(head_dim));
  pb.softcap = p.softcap;
  if (p.alibi_slopes) expect_equal(p.alibi_slopes->extent(0), n_heads, check_name{what, nullptr, "alibi_slopes length vs n_heads"});
  if (p.relative_bias) {
    expect_equal(p.relative_bias->extent(0), n_heads, check_name{what, nullptr, "relative_bias rows vs n_heads"});
    if (p.relative_bias->extent(1) % 2 != 1)
      throw shape_error(std::string(op) + ": relative_bias needs 2R + 1 columns (distances -R .. R), got " +
                        std::to_string(p.relative_bias->extent(1)));
    pb.relative_reach = p.relative_bias->extent(1) / 2;
  }
  if (p.bias) {
    const auto [bh, bl, bk] = p.bias->extents();
    if (bh != 1 && bh != n_heads)
      throw shape_error(std::string(op) + ": bias heads = " + std::to_string(bh) + ", expected 1 or n_heads = " + std::to_string(n_heads));
    expect_equal(bl, l, check_name{what, nullptr, "bias rows vs l"});
    expect_equal(bk, n_index, check_name{what, nullptr, "bias columns vs l_kv"});
  }
  if (p.key_mask) expect_equal(p.key_mask->extent(0), n_index, check_name{what, nullptr, "key_mask length vs l_kv"});
  pb.alibi_slopes = p.alibi_slopes;
  pb.relative_bias = p.relative_bias;
  pb.bias = p.bias;
  pb.key_mask = p.key_mask;
}

/// The plain reference: one query row at a time, one key at a time, online softmax. Writes the
/// partial state of row i, head h over keys [k_begin, k_end) of the concatenated runs.
inline void reference_partial(const attend_problem& pb, index_t h, index_t i, index_t k_begin, index_t k_end,
                              float& m, float& s, float* o) {
  const index_t head_dim = pb.head_dim;
  const index_t g = h / pb.n_rep;
  const index_t qp = pb.qpos(i);
  m = neg_inf;
  s = 0.f;
  for (index_t e = 0; e < head_dim; ++e) o[e] = 0.f;
  index_t base = 0;
  for (int r = 0; r < pb.n_runs; ++r) {
    const key_run& run = pb.runs[r];
    const index_t n = run.size();
    for (index_t j = std::max<index_t>(0, k_begin - base); j < std::min(n, k_end - base); ++j) {
      float dot = 0.f;
      for (index_t e = 0; e < head_dim; ++e) dot += pb.q(i, h, e) * run.key(j, g, e);
      const float score = pb.finish_score(dot, h, i, qp, run, j, true);
      if (score == neg_inf) continue;
      const float m_new = std::max(m, score);
      const float alpha = std::exp(m - m_new);  // 0 when m = -inf
      const float p = std::exp(score - m_new);
      for (index_t e = 0; e < head_dim; ++e) o[e] = alpha * o[e] + p * run.value(j, g, e);
      s = alpha * s + p;
      m = m_new;
    }
    base += n;
  }
}

/// Normalizes a partial state into an output row (zeros when no key was visible).
template <class Out>
void write_row(float m, float s, const float* o, Out&& out_row, index_t head_dim) {
  const bool empty = (m == neg_inf || !(s > 0.f));
  const float inv = empty ? 0.f : 1.f / s;
  for (index_t e = 0; e < head_dim; ++e) out_row(e) = empty ? 0.f : o[e] * inv;
}

inline void reference_attend(const attend_problem& pb, workspace& ws) {
  workspace::frame frame(ws);
  const index_t l = pb.q.extent(0);
  float* o = ws.alloc<float>(pb.head_dim);
  const index_t n_keys = pb.n_keys();
  for (index_t h = 0; h < pb.n_heads; ++h)
    for (index_t i = 0; i < l; ++i) {
      float m, s;
      reference_partial(pb, h, i, 0, n_keys, m, s, o);
      auto row = pb.out[i][h];
      write_row(m, s, o, [&](index_t e) -> float& { return row(e); }, pb.head_dim);
    }
}

// ---- vector helpers (Arch) -------------------------------------------------------------------

template <class Arch>
float row_max(const float* x, index_t n) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t w = batch::size;
  float m = neg_inf;
  index_t j = 0;
  if (n >= w) {
    batch acc = batch::load_unaligned(x);
    for (j = w; j + w <= n; j += w) acc = xsimd::max(acc, batch::load_unaligned(x + j));
    alignas(64) float tmp[w];
    acc.store_aligned(tmp);
    for (index_t t = 0; t < w; ++t) m = std::max(m, tmp[t]);
  }
  for (; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

/// x = scale · x, then softcap (when > 0): x = c · tanh(x / c).
template <class Arch>
void scale_softcap(float* x, index_t n, float scale, float softcap) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t w = batch::size;
  index_t j = 0;
  if (softcap > 0.f) {
    const batch c(softcap), a(scale / softcap);
    for (; j + w <= n; j += w) (c * xsimd::tanh(batch::load_unaligned(x + j) * a)).store_unaligned(x + j);
    for (; j < n; ++j) x[j] = softcap * std::tanh(x[j] * scale / softcap);
  } else {
    const batch a(scale);
    for (; j + w <= n; j += w) (batch::load_unaligned(x + j) * a).store_unaligned(x + j);
    for (; j < n; ++j) x[j] *= scale;
  }
}

/// x = exp(x - m); returns Σ x.
template <class Arch>
float exp_sub_sum(float* x, index_t n, float m) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t w = batch::size;
  const batch mb(m);
  batch acc(0.f);
  index_t j = 0;
  for (; j + w <= n; j += w) {
    const batch e = xsimd::exp(batch::load_unaligned(x + j) - mb);
    e.store_unaligned(x + j);
    acc += e;
  }
  float s = xsimd::hadd(acc);
  for (; j < n; ++j) {
    x[j] = std::exp(x[j] - m);
    s += x[j];
  }
  return s;
}

template <class Arch>
float dot(const float* a, const float* b, index_t n) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t w = batch::size;
  batch acc0(0.f), acc1(0.f);
  index_t e = 0;
  for (; e + 2 * w <= n; e += 2 * w) {
    acc0 = xsimd::fma(batch::load_unaligned(a + e), batch::load_unaligned(b + e), acc0);
    acc1 = xsimd::fma(batch::load_unaligned(a + e + w), batch::load_unaligned(b + e + w), acc1);
  }
  for (; e + w <= n; e += w) acc0 = xsimd::fma(batch::load_unaligned(a + e), batch::load_unaligned(b + e), acc0);
  float s = xsimd::hadd(acc0 + acc1);
  for (; e < n; ++e) s += a[e] * b[e];
  return s;
}

/// y = alpha · y + x · p  (n elements)
template <class Arch>
void scale_axpy(float* y, float alpha, const float* x, float p, index_t n) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t w = batch::size;
  const batch ab(alpha), pb(p);
  index_t e = 0;
  for (; e + w <= n; e += w)
    xsimd::fma(batch::load_unaligned(x + e), pb, batch::load_unaligned(y + e) * ab).store_unaligned(y + e);
  for (; e < n; ++e) y[e] = alpha * y[e] + p * x[e];
}

/// Position bounds of query rows [i0, i1).
inline void q_bounds(const attend_problem& pb, index_t i0, index_t i1, index_t& lo, index_t& hi) noexcept {
  if (!pb.q_positions) {
    lo = pb.q_pos0 + i0;
    hi = pb.q_pos0 + i1 - 1;
    return;
  }
  lo = std::numeric_limits<index_t>::max();
  hi = std::numeric_limits<index_t>::min();
  for (index_t i = i0; i < i1; ++i) {
    lo = std::min(lo, pb.qpos(i));
    hi = std::max(hi, pb.qpos(i));
  }
}

inline void k_bounds(const key_run& run, index_t j0, index_t j1, index_t& lo, index_t& hi) noexcept {
  if (!run.positions) {
    lo = run.pos0 + j0;
    hi = run.pos0 + j1 - 1;
    return;
  }
  lo = std::numeric_limits<index_t>::max();
  hi = std::numeric_limits<index_t>::min();
  for (index_t j = j0; j < j1; ++j) {
    lo = std::min(lo, run.pos(j));
    hi = std::max(hi, run.pos(j));
  }
}

// ---- prefill: register-blocked tiles in the transposed (key-major) layout --------------------
//
// For a tile of BQ = 4 vectors of query rows, the kernel keeps everything with the query index
// innermost, so the online softmax runs down columns with no horizontal reductions:
//   Qt: (head_dim, BQ)  scale · q, transposed once per query tile (zero columns past l)
//   St: (k_tile, BQ)    St = K_tile · Qt        (scores, then probabilities)
//   Ot: (head_dim, BQ)  Ot = alpha ⊙ Ot + V_tileᵀ · St
// Both products are C (m × BQ) += Σ_k A(m, k) · B[k][:], done by kernels::tile_gemm (an MR × 4-vector
// block of C in registers, broadcasting A and streaming B rows).

template <class Arch>
inline constexpr index_t tile_vectors = 4;  // vectors of query rows per tile

template <class Arch>
constexpr index_t q_tile_rows() noexcept {
  return tile_vectors<Arch> * static_cast<index_t>(xsimd::batch<float, Arch>::size);
}

/// Per-worker scratch of the tiled kernel (all (rows, BQ), 64-byte aligned).
struct tile_scratch {
  float* Qt;  // (head_dim, BQ)
  float* St;  // (k_tile, BQ)
  float* Ot;  // (head_dim, BQ)
  float* m;   // (BQ) running max
  float* s;   // (BQ) running sum
  float* kv;  // (k_tile, head_dim) a tile of f16 or q8_0 keys, then values, widened
};

/// One query tile [i0, i1) of head h against every key run.
template <class Arch>
void attend_tile(const attend_problem& pb, index_t h, index_t i0, index_t i1, const tile_scratch& sc) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  constexpr index_t NV = tile_vectors<Arch>;
  constexpr index_t BQ = q_tile_rows<Arch>();
  const index_t head_dim = pb.head_dim;
  const index_t g = h / pb.n_rep;
  const index_t bq = i1 - i0;
  // Qt = scale · q tileᵀ, zero columns past the last row
  for (index_t e = 0; e < head_dim; ++e) {
    float* qt = sc.Qt + e * BQ;
    for (index_t r = 0; r < bq; ++r) qt[r] = pb.scale * pb.q(i0 + r, h, e);
    for (index_t r = bq; r < BQ; ++r) qt[r] = 0.f;
  }
  std::fill(sc.Ot, sc.Ot + head_dim * BQ, 0.f);
  for (index_t v = 0; v < NV; ++v) {
    batch(neg_inf).store_aligned(sc.m + v * W);
    batch(0.f).store_aligned(sc.s + v * W);
  }
  index_t qlo, qhi;
  q_bounds(pb, i0, i1, qlo, qhi);
  for (int ri = 0; ri < pb.n_runs; ++ri) {
    const key_run& run = pb.runs[ri];
    const index_t n = run.size();
    for (index_t j0 = 0; j0 < n; j0 += attention_k_tile) {
      const index_t j1 = std::min(n, j0 + attention_k_tile);
      const index_t bk = j1 - j0;
      index_t klo, khi;
      k_bounds(run, j0, j1, klo, khi);
      const tile_visibility vis = classify_tile(qlo, qhi, klo, khi, pb.mask);
      if (vis == tile_visibility::none) continue;
      // St = K_tile · Qt
      if (run.widened())
        kernels::tile_gemm<Arch>(bk, BQ, head_dim, widen_keys<Arch>(run, j0, j1, g, sc.kv), head_dim, 1, sc.Qt, BQ,
                                 sc.St, BQ, false);
      else
        kernels::tile_gemm<Arch>(bk, BQ, head_dim, &run.k(j0, g, 0), run.k.stride(0), 1, sc.Qt, BQ, sc.St, BQ, false);
      // softcap, additive terms, mask
      if (vis == tile_visibility::all && !pb.has_additive()) {
        if (pb.softcap > 0.f) {
          const batch c(pb.softcap), inv(1.f / pb.softcap);
          for (index_t x = 0; x < bk * BQ; x += W)
            (c * xsimd::tanh(batch::load_aligned(sc.St + x) * inv)).store_aligned(sc.St + x);
        }
      } else if (!pb.has_additive() && !pb.q_positions && !run.positions) {
        // consecutive positions: each key row sees one contiguous range of query columns
        const index_t base = pb.q_pos0 + i0;
        for (index_t c = 0; c < bk; ++c) {
          const index_t kp = run.pos0 + j0 + c;
          index_t lo = 0, hi = BQ;
          if (pb.mask.causal && kp >= pb.mask.prefix) lo = std::max(lo, kp - base);
          if (pb.mask.window) {
            hi = std::min(hi, kp + *pb.mask.window - base);
            if (!pb.mask.causal) lo = std::max(lo, kp - *pb.mask.window - base + 1);
          }
          lo = std::min(lo, BQ);
          hi = std::max(hi, lo);
          float* row = sc.St + c * BQ;
          std::fill(row, row + lo, neg_inf);
          std::fill(row + hi, row + BQ, neg_inf);
          if (pb.softcap > 0.f)
            for (index_t r = lo; r < hi; ++r) row[r] = pb.softcap * std::tanh(row[r] / pb.softcap);
        }
      } else {
        for (index_t c = 0; c < bk; ++c) {
          float* row = sc.St + c * BQ;
          for (index_t r = 0; r < bq; ++r)
            row[r] = pb.finish_scaled(row[r], h, i0 + r, pb.qpos(i0 + r), run, j0 + c, vis == tile_visibility::some);
        }
      }
      // online softmax down the columns
      for (index_t v = 0; v < NV; ++v) {
        batch mx(neg_inf);
        for (index_t c = 0; c < bk; ++c) mx = xsimd::max(mx, batch::load_aligned(sc.St + c * BQ + v * W));
        const batch m_old = batch::load_aligned(sc.m + v * W);
        const batch m_new = xsimd::max(m_old, mx);
        const batch m_use = xsimd::select(m_new == batch(neg_inf), batch(0.f), m_new);  // all hidden: P = 0
        const batch alpha = xsimd::exp(m_old - m_use);
        batch sum(0.f);
        for (index_t c = 0; c < bk; ++c) {
          float* p = sc.St + c * BQ + v * W;
          const batch e = xsimd::exp(batch::load_aligned(p) - m_use);
          e.store_aligned(p);
          sum += e;
        }
        (batch::load_aligned(sc.s + v * W) * alpha + sum).store_aligned(sc.s + v * W);
        m_new.store_aligned(sc.m + v * W);
        for (index_t e = 0; e < head_dim; ++e) {
          float* o = sc.Ot + e * BQ + v * W;
          (batch::load_aligned(o) * alpha).store_aligned(o);
        }
      }
      // Ot += V_tileᵀ · St:  A(e, c) = V[j0 + c][e]
      if (run.widened())
        kernels::tile_gemm<Arch>(head_dim, BQ, bk, widen_values<Arch>(run, j0, j1, g, sc.kv), 1, head_dim, sc.St, BQ,
                                 sc.Ot, BQ, true);
      else
        kernels::tile_gemm<Arch>(head_dim, BQ, bk, &run.v(j0, g, 0), 1, run.v.stride(0), sc.St, BQ, sc.Ot, BQ, true);
    }
  }
  for (index_t r = 0; r < bq; ++r) {
    const bool empty = sc.m[r] == neg_inf || !(sc.s[r] > 0.f);
    const float inv = empty ? 0.f : 1.f / sc.s[r];
    auto row = pb.out[i0 + r][h];
    for (index_t e = 0; e < head_dim; ++e) row(e) = sc.Ot[e * BQ + r] * inv;
  }
}

/// Bytes of one worker's scratch.
template <class Arch>
std::size_t tile_scratch_bytes(index_t head_dim) noexcept {
  constexpr index_t BQ = q_tile_rows<Arch>();
  return 2 * workspace::bytes_for<float>(head_dim * BQ) + workspace::bytes_for<float>(attention_k_tile * BQ) +
         2 * workspace::bytes_for<float>(BQ) + workspace::bytes_for<float>(attention_k_tile * head_dim);
}

/// The tiled prefill kernel: (head, query tile) items spread over threads, interleaved so that
/// causal work (which grows with the tile index) balances.
template <class Arch>
void tiled_attend(const attend_problem& pb, workspace& ws) {
  constexpr index_t BQ = q_tile_rows<Arch>();
  const index_t l = pb.q.extent(0);
  if (l == 0 || pb.n_heads == 0) return;
  const index_t head_dim = pb.head_dim;
  const index_t n_qtiles = (l + BQ - 1) / BQ;
  const index_t items = pb.n_heads * n_qtiles;
  const std::size_t per_worker = tile_scratch_bytes<Arch>(head_dim);
  constexpr index_t max_workers = 256;
  index_t workers = std::min<index_t>({num_threads(), items, max_workers});
  workers = std::min<index_t>(workers, std::max<index_t>(1, static_cast<index_t>((ws.capacity() - ws.used()) / per_worker)));
  workspace::frame frame(ws);
  tile_scratch scratch[max_workers];
  for (index_t w = 0; w < workers; ++w)
    scratch[w] = {ws.alloc<float>(head_dim * BQ), ws.alloc<float>(attention_k_tile * BQ), ws.alloc<float>(head_dim * BQ),
                  ws.alloc<float>(BQ), ws.alloc<float>(BQ), ws.alloc<float>(attention_k_tile * head_dim)};
  parallel_for(0, workers, 1, [&](index_t lo, index_t hi) {
    for (index_t w = lo; w < hi; ++w)
      for (index_t item = w; item < items; item += workers) {
        const index_t h = item % pb.n_heads;  // heads fastest: neighbours share the kv head's keys
        const index_t t = item / pb.n_heads;
        const index_t i0 = t * BQ;
        attend_tile<Arch>(pb, h, i0, std::min(l, i0 + BQ), scratch[w]);
      }
  });
}

inline attend_problem make_problem(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                                   tensor_view<const float, 3> v, tensor_view<float, 3> out,
                                   const attention_params& p, const char* what) {
  check_views(q, k, v, out, what);
  attend_problem pb;
  pb.q = q;
  pb.out = out;
  pb.runs[0] = key_run{k, v, 0, p.k_positions, 0};
  pb.n_runs = 1;
  pb.q_pos0 = p.q_offset;
  pb.q_positions = p.q_positions;
  if (p.q_positions) expect_equal(p.q_positions->extent(0), q.extent(0), check_name{what, nullptr, "q_positions length vs l"});
  if (p.k_positions) expect_equal(p.k_positions->extent(0), k.extent(0), check_name{what, nullptr, "k_positions length vs l_kv"});
  resolve_common(pb, p, k.extent(0), what);
  return pb;
}

/// Problem for q at positions size .. size + n - 1 against the cache runs plus (optional) new keys.
inline attend_problem make_cache_problem(tensor_view<const float, 3> q, const kv_cache& cache,
                                         const tensor_view<const float, 3>* k_new,
                                         const tensor_view<const float, 3>* v_new, tensor_view<float, 3> out,
                                         const attention_params& p, index_t q_pos0, const char* what) {
  // Messages are built only on failure: the decode path must not allocate.
  const auto fail = [what](const std::string& m) { throw shape_error(std::string(what) + ": " + m); };
  const auto [l, n_heads, head_dim] = q.extents();
  if (out.extents() != q.extents())
    fail("out (l, n_heads, head_dim) " + to_string(out.extents()) + " vs q " + to_string(q.extents()));
  if (cache.head_dim() != head_dim)
    fail("cache head_dim " + std::to_string(cache.head_dim()) + " vs q head_dim " + std::to_string(head_dim));
  if (n_heads % cache.n_kv_heads() != 0)
    fail("n_heads = " + std::to_string(n_heads) + " is not a multiple of the cache's n_kv_heads = " +
         std::to_string(cache.n_kv_heads()));
  if (!q.rows_contiguous()) fail("q: innermost dimension must have stride 1");
  if (!out.rows_contiguous()) fail("out: innermost dimension must have stride 1");
  attend_problem pb;
  pb.q = q;
  pb.out = out;
  kv_run runs[2];
  const int n = cache.segments(runs);
  for (int r = 0; r < n; ++r) pb.runs[pb.n_runs++] = key_run::of(runs[r]);
  if (k_new) {
    check_views(q, *k_new, *v_new, out, what);
    if (k_new->extent(1) != cache.n_kv_heads())
      fail("k_new n_kv_heads " + std::to_string(k_new->extent(1)) + " vs cache " + std::to_string(cache.n_kv_heads()));
    pb.runs[pb.n_runs++] = key_run{*k_new, *v_new, cache.size(), {}, cache.size()};
  }
  if (pb.n_runs == 0)  // an empty cache and no new keys: one empty run keeps the shapes known
    pb.runs[pb.n_runs++] = key_run{tensor_view<const float, 3>(nullptr, {0, cache.n_kv_heads(), head_dim}),
                                   tensor_view<const float, 3>(nullptr, {0, cache.n_kv_heads(), head_dim}), 0, {}, 0};
  pb.q_pos0 = q_pos0;
  attention_params cp = p;
  if (cache.window()) {
    if (p.window && *p.window != *cache.window())
      fail("params.window = " + std::to_string(*p.window) + " differs from the cache's window " +
                        std::to_string(*cache.window()));
    cp.window = cache.window();
  }
  const index_t n_index = cache.size() + (k_new ? k_new->extent(0) : 0);
  resolve_common(pb, cp, n_index, what);
  return pb;
}

}  // namespace detail

/// Softmax attention, scalar reference (one row, one key at a time).
inline void softmax_attention(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                              tensor_view<const float, 3> v, tensor_view<float, 3> out, const attention_params& p,
                              workspace& ws, simd::scalar) {
  const auto pb = detail::make_problem(q, k, v, out, p, "softmax_attention");
  detail::reference_attend(pb, ws);
}

/// Softmax attention, tiled flash form (see the top of this header).
template <class Arch = simd::default_arch>
void softmax_attention(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v,
                       tensor_view<float, 3> out, const attention_params& p, workspace& ws, Arch = {}) {
  const auto pb = detail::make_problem(q, k, v, out, p, "softmax_attention");
  if constexpr (simd::is_scalar_v<Arch>) detail::reference_attend(pb, ws);
  else detail::tiled_attend<Arch>(pb, ws);
}

/// Prefill with a cache, scalar reference: attends q over cache + new keys, then appends them.
inline void prefill_attention(tensor_view<const float, 3> q, tensor_view<const float, 3> k_new,
                              tensor_view<const float, 3> v_new, kv_cache& cache, tensor_view<float, 3> out,
                              const attention_params& p, workspace& ws, simd::scalar) {
  cache.check_room(k_new.extent(0), "prefill_attention");
  const auto pb = detail::make_cache_problem(q, cache, &k_new, &v_new, out, p, cache.size(), "prefill_attention");
  detail::reference_attend(pb, ws);
  cache.append(k_new, v_new);
}

/// Prefill with a cache: attends q over cache + new keys (tiled), then appends them.
template <class Arch = simd::default_arch>
void prefill_attention(tensor_view<const float, 3> q, tensor_view<const float, 3> k_new,
                       tensor_view<const float, 3> v_new, kv_cache& cache, tensor_view<float, 3> out,
                       const attention_params& p, workspace& ws, Arch = {}) {
  cache.check_room(k_new.extent(0), "prefill_attention");
  const auto pb = detail::make_cache_problem(q, cache, &k_new, &v_new, out, p, cache.size(), "prefill_attention");
  if constexpr (simd::is_scalar_v<Arch>) detail::reference_attend(pb, ws);
  else detail::tiled_attend<Arch>(pb, ws);
  cache.append(k_new, v_new);
}

}  // namespace attention
}  // namespace v0
}  // namespace tessera
