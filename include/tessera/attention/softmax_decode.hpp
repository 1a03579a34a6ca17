// tessera/attention/softmax_decode.hpp: softmax attention for one new token against a kv_cache,
// the decode path (flash-decoding: the keys split over threads, partial states merged).
//
//   decode_attention(q, cache, out, params, ws)
//     q:   (1, n_heads, head_dim)   the token at position cache.size() - 1, whose k/v were already
//                                   appended to the cache
//     out: (1, n_heads, head_dim)   overwritten
//   GQA as in softmax_attention.hpp: head h reads kv head h / (n_heads / n_kv_heads). The scores,
//   masks, ALiBi, softcap and partial states are those of softmax_attention.hpp (its top comment);
//   bias / key_mask, if given, are indexed by key position. A ring cache's window is the attention
//   window (params.window must be unset or equal).
//
// The keys are split over threads in runs of at least attention_decode_min_split; each split keeps
// a partial state (m, s, o) per head, merged in order with merge_partial_state(). Inside a split,
// steps of attention_decode_step keys: scores for a GQA group at once (each key row read once for
// the query heads that share it), exp, then P·V with the output block in registers.
//
// Workspace: softmax_attention_workspace_bytes(n_heads, head_dim, n_threads), as for every entry
// point of softmax_attention.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include <tessera/attention/kv_cache.hpp>
#include <tessera/attention/softmax_attention.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/simd/vec.hpp>

namespace tessera {
inline namespace v0 {
namespace attention {
namespace detail {

/// S[r][c] = q_r · k_c for RB rows r of q and c < bk keys, in tiles of RB rows x W / RB keys: the
/// W dot products of a tile run in W accumulators and are summed by one haddp. Each row of k is
/// loaded once for the RB query heads that share it (GQA), and a tile touches only W / RB rows of
/// k at a time: token-major k rows are n_kv_heads x head_dim floats apart (4 KiB for 8 x 128), so
/// they fall in one L1 set, and 16 of them at once would evict each other before the next query
/// head used them.
template <class Arch, int RB>
void decode_scores_rows(const float* q, index_t q_rs, const float* k, index_t k_rs, index_t bk, index_t head_dim,
                        float* S, index_t ld_s, index_t ahead) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  constexpr index_t KB = W / RB;  // keys per tile
  const index_t d_main = head_dim / W * W;
  const index_t* lane = simd::haddp_lane<Arch>();
  alignas(64) float sums[W];
  index_t c = 0;
  for (; c + KB <= bk; c += KB) {
    batch acc[W];  // acc[r * KB + t] = q_r · k_{c+t}
#pragma GCC unroll 16
    for (index_t i = 0; i < W; ++i) acc[i] = batch(0.f);
    for (index_t e = 0; e < d_main; e += W) {
      batch kv[KB];
#pragma GCC unroll 16
      for (index_t t = 0; t < KB; ++t) {
        kv[t] = batch::load_unaligned(k + (c + t) * k_rs + e);
        if (ahead) __builtin_prefetch(k + (c + t) * k_rs + e + ahead);
      }
#pragma GCC unroll 16
      for (int r = 0; r < RB; ++r) {
        const batch qv = batch::load_unaligned(q + r * q_rs + e);
#pragma GCC unroll 16
        for (index_t t = 0; t < KB; ++t) acc[r * KB + t] = xsimd::fma(qv, kv[t], acc[r * KB + t]);
      }
    }
    xsimd::haddp(acc).store_aligned(sums);
    for (int r = 0; r < RB; ++r)
      for (index_t t = 0; t < KB; ++t) {
        float sc = sums[lane[r * KB + t]];
        for (index_t e = d_main; e < head_dim; ++e) sc += q[r * q_rs + e] * k[(c + t) * k_rs + e];
        S[r * ld_s + c + t] = sc;
      }
  }
  for (; c < bk; ++c)
    for (int r = 0; r < RB; ++r) S[r * ld_s + c] = dot<Arch>(q + r * q_rs, k + c * k_rs, head_dim);
}

/// S[r][c] = q_r · k_c for r < n_rep rows of q (one GQA group) and c < bk keys.
/// ahead > 0: each row of k read is fetched `ahead` floats further on too (the next step of a
/// contiguous run, to L1 while this one computes).
template <class Arch>
void decode_scores(const float* q, index_t q_rs, const float* k, index_t k_rs, index_t n_rep, index_t bk,
                   index_t head_dim, float* S, index_t ld_s, index_t ahead = 0) noexcept {
  constexpr int W = static_cast<int>(xsimd::batch<float, Arch>::size);
  index_t r = 0;
  if constexpr (W >= 8)
    for (; r + 8 <= n_rep; r += 8) decode_scores_rows<Arch, 8>(q + r * q_rs, q_rs, k, k_rs, bk, head_dim, S + r * ld_s, ld_s, ahead);
  for (; r + 4 <= n_rep; r += 4) decode_scores_rows<Arch, 4>(q + r * q_rs, q_rs, k, k_rs, bk, head_dim, S + r * ld_s, ld_s, ahead);
  for (; r + 2 <= n_rep; r += 2) decode_scores_rows<Arch, 2>(q + r * q_rs, q_rs, k, k_rs, bk, head_dim, S + r * ld_s, ld_s, ahead);
  for (; r < n_rep; ++r) decode_scores_rows<Arch, 1>(q + r * q_rs, q_rs, k, k_rs, bk, head_dim, S + r * ld_s, ld_s, ahead);
}

/// o_r[e0 .. e0 + VB·W) += Σ_c P[r][c] v_c for RB rows r: the block of o stays in registers.
template <class Arch, int RB, int VB>
void decode_pv_block(const float* P, index_t ld_p, const float* v, index_t v_rs, index_t bk, float* o, index_t o_rs,
                     index_t e0, index_t ahead) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  batch acc[RB][VB];
#pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < VB; ++t) acc[r][t] = batch::load_unaligned(o + r * o_rs + e0 + t * W);
  for (index_t c = 0; c < bk; ++c) {
    batch vv[VB];
#pragma GCC unroll 4
    for (int t = 0; t < VB; ++t) {
      vv[t] = batch::load_unaligned(v + c * v_rs + e0 + t * W);
      if (ahead) __builtin_prefetch(v + c * v_rs + e0 + t * W + ahead);
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) {
      const batch p(P[r * ld_p + c]);
#pragma GCC unroll 4
      for (int t = 0; t < VB; ++t) acc[r][t] = xsimd::fma(p, vv[t], acc[r][t]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < VB; ++t) acc[r][t].store_unaligned(o + r * o_rs + e0 + t * W);
}

template <class Arch, int RB>
void decode_pv_rows(const float* P, index_t ld_p, const float* v, index_t v_rs, index_t bk, float* o, index_t o_rs,
                    index_t head_dim, index_t ahead) noexcept {
  constexpr index_t W = xsimd::batch<float, Arch>::size;
  index_t e0 = 0;
  for (; e0 + 4 * W <= head_dim; e0 += 4 * W) decode_pv_block<Arch, RB, 4>(P, ld_p, v, v_rs, bk, o, o_rs, e0, ahead);
  switch ((head_dim - e0) / W) {
    case 1: decode_pv_block<Arch, RB, 1>(P, ld_p, v, v_rs, bk, o, o_rs, e0, ahead); break;
    case 2: decode_pv_block<Arch, RB, 2>(P, ld_p, v, v_rs, bk, o, o_rs, e0, ahead); break;
    case 3: decode_pv_block<Arch, RB, 3>(P, ld_p, v, v_rs, bk, o, o_rs, e0, ahead); break;
    default: break;
  }
  e0 += (head_dim - e0) / W * W;
  for (int r = 0; r < RB; ++r)
    for (index_t c = 0; c < bk; ++c)
      for (index_t e = e0; e < head_dim; ++e) o[r * o_rs + e] += P[r * ld_p + c] * v[c * v_rs + e];
}

/// o_r += Σ_c P[r][c] v_c for r < n_rep; ahead as in decode_scores.
template <class Arch>
void decode_pv(const float* P, index_t ld_p, const float* v, index_t v_rs, index_t n_rep, index_t bk, float* o,
               index_t o_rs, index_t head_dim, index_t ahead = 0) noexcept {
  index_t r = 0;
  for (; r + 4 <= n_rep; r += 4) decode_pv_rows<Arch, 4>(P + r * ld_p, ld_p, v, v_rs, bk, o + r * o_rs, o_rs, head_dim, ahead);
  switch (n_rep - r) {
    case 1: decode_pv_rows<Arch, 1>(P + r * ld_p, ld_p, v, v_rs, bk, o + r * o_rs, o_rs, head_dim, ahead); break;
    case 2: decode_pv_rows<Arch, 2>(P + r * ld_p, ld_p, v, v_rs, bk, o + r * o_rs, o_rs, head_dim, ahead); break;
    case 3: decode_pv_rows<Arch, 3>(P + r * ld_p, ld_p, v, v_rs, bk, o + r * o_rs, o_rs, head_dim, ahead); break;
    default: break;
  }
}

/// Decode: one query row (position of q row 0) against the key runs, keys split over threads.
/// Partial states per (split, head) are merged with merge_partial_state.
template <class Arch>
void split_decode(const attend_problem& pb, workspace& ws) {
  const index_t head_dim = pb.head_dim, n_heads = pb.n_heads, n_rep = pb.n_rep;
  const index_t n_keys = pb.n_keys();
  workspace::frame frame(ws);
  index_t splits = std::max<index_t>(1, std::min<index_t>((n_keys + attention_decode_min_split - 1) /
                                                              attention_decode_min_split,
                                                          4 * num_threads()));
  const std::size_t per_split = workspace::bytes_for<float>(n_heads * (head_dim + 2)) +
                                workspace::bytes_for<float>(n_heads * attention_decode_step) +
                                workspace::bytes_for<float>(attention_decode_step * head_dim);
  const std::size_t free_bytes = ws.capacity() - ws.used();
  splits = std::min<index_t>(splits, std::max<index_t>(1, static_cast<index_t>(free_bytes / per_split)));
  // partial: (splits, n_heads, head_dim + 2): o, then m, s
  float* partial = ws.alloc<float>(splits * n_heads * (head_dim + 2));
  float* scores = ws.alloc<float>(splits * n_heads * attention_decode_step);
  float* widened = ws.alloc<float>(splits * attention_decode_step * head_dim);  // f16 / q8_0 runs: a step widened
  const index_t qp = pb.qpos(0);
  const index_t o_rs = head_dim + 2;
  // One item per split of the key axis, handed to whichever thread is free. Inside, the keys are
  // read in address order: a kv head's whole run, then the next, when the heads are stored apart
  // (kv_cache's head-major layout: one stream per head); a step of keys for every head before
  // the next step when a token's heads are adjacent (token-major k/v), so that each page is used
  // whole: the head-major order over token-major rows touches a new page per row.
  parallel_for_dynamic(0, splits, 1, [&](index_t lo, index_t hi) {
    for (index_t sp = lo; sp < hi; ++sp) {
      const index_t k_begin = n_keys * sp / splits, k_end = n_keys * (sp + 1) / splits;
      float* part = partial + sp * n_heads * o_rs;  // (n_heads, head_dim + 2)
      for (index_t h = 0; h < n_heads; ++h) {
        float* o = part + h * o_rs;
        std::fill(o, o + head_dim, 0.f);
        o[head_dim] = neg_inf;
        o[head_dim + 1] = 0.f;
      }
      index_t base = 0;
      for (int ri = 0; ri < pb.n_runs; ++ri) {
        const key_run& run = pb.runs[ri];
        const index_t n = run.size();
        const index_t jb = std::max<index_t>(0, k_begin - base), je = std::min(n, k_end - base);
        base += n;
        // f16 and q8_0 runs: each step of keys (then values) widened into this split's scratch, rows contiguous
        float* wide = widened + sp * attention_decode_step * head_dim;
        const bool widen = run.widened();
        const index_t k_rs = widen ? head_dim : run.k.stride(0), v_rs = widen ? head_dim : run.v.stride(0);
        // keys [j0, j1) of kv head g, for the n_rep query heads that share it
        // A kv head's keys contiguous (head-major kv_cache): each row read also fetches the row one
        // step further on, so the next step arrives while this one computes.
        const bool head_major = run.head_major();
        const index_t k_ahead = !widen && head_major && k_rs == head_dim ? attention_decode_step * head_dim : 0;
        const index_t v_ahead = !widen && head_major && v_rs == head_dim ? attention_decode_step * head_dim : 0;
        auto block = [&](index_t g, index_t j0, index_t j1, tile_visibility vis) {
          const index_t bk = j1 - j0;
          float* S = scores + (sp * n_heads + g * n_rep) * attention_decode_step;  // (n_rep, step)
          float* pg = part + g * n_rep * o_rs;                                      // (n_rep, head_dim + 2)
          const float* k = widen ? widen_keys<Arch>(run, j0, j1, g, wide) : &run.k(j0, g, 0);
          decode_scores<Arch>(&pb.q(0, g * n_rep, 0), pb.q.stride(1), k, k_rs, n_rep, bk, head_dim, S,
                              attention_decode_step, k_ahead);
          for (index_t r = 0; r < n_rep; ++r) {
            const index_t h = g * n_rep + r;
            float* row = S + r * attention_decode_step;
            if (vis == tile_visibility::all && !pb.has_additive()) scale_softcap<Arch>(row, bk, pb.scale, pb.softcap);
            else
              for (index_t c = 0; c < bk; ++c)
                row[c] = pb.finish_score(row[c], h, 0, qp, run, j0 + c, vis == tile_visibility::some);
            float* o = pg + r * o_rs;
            float& m = o[head_dim];
            float& s = o[head_dim + 1];
            const float m_new = std::max(m, row_max<Arch>(row, bk));
            if (m_new == neg_inf) {
              for (index_t c = 0; c < bk; ++c) row[c] = 0.f;
              continue;
            }
            const float alpha = std::exp(m - m_new);
            s = s * alpha + exp_sub_sum<Arch>(row, bk, m_new);
            m = m_new;
            if (alpha != 1.f)
              for (index_t e = 0; e < head_dim; ++e) o[e] *= alpha;
          }
          const float* v = widen ? widen_values<Arch>(run, j0, j1, g, wide) : &run.v(j0, g, 0);
          decode_pv<Arch>(S, attention_decode_step, v, v_rs, n_rep, bk, pg, o_rs, head_dim, v_ahead);
        };
        auto visibility = [&](index_t j0, index_t j1) {
          index_t klo, khi;
          k_bounds(run, j0, j1, klo, khi);
          return classify_tile(qp, qp, klo, khi, pb.mask);
        };
        if (head_major) {
          for (index_t g = 0; g < pb.n_kv_heads; ++g)
            for (index_t j0 = jb; j0 < je; j0 += attention_decode_step) {
              const index_t j1 = std::min(je, j0 + attention_decode_step);
              const tile_visibility vis = visibility(j0, j1);
              if (vis != tile_visibility::none) block(g, j0, j1, vis);
            }
        } else {
          for (index_t j0 = jb; j0 < je; j0 += attention_decode_step) {
            const index_t j1 = std::min(je, j0 + attention_decode_step);
            const tile_visibility vis = visibility(j0, j1);
            if (vis != tile_visibility::none)
              for (index_t g = 0; g < pb.n_kv_heads; ++g) block(g, j0, j1, vis);
          }
        }
      }
    }
  });
  // merge the splits of each head, in order
  for (index_t h = 0; h < n_heads; ++h) {
    float* a = partial + h * o_rs;
    tensor_view<float, 1> o_a(a, {head_dim});
    for (index_t sp = 1; sp < splits; ++sp) {
      const float* b = partial + (sp * n_heads + h) * o_rs;
      merge_partial_state(a[head_dim], a[head_dim + 1], o_a, b[head_dim], b[head_dim + 1],
                          tensor_view<const float, 1>(b, {head_dim}));
    }
    auto row = pb.out[0][h];
    write_row(a[head_dim], a[head_dim + 1], a, [&](index_t e) -> float& { return row(e); }, head_dim);
  }
}

/// The scalar decode: the keys split in chunks, each by the reference, merged in order.
inline void reference_split_decode(const attend_problem& pb, workspace& ws) {
  workspace::frame frame(ws);
  const index_t head_dim = pb.head_dim;
  const index_t n_keys = pb.n_keys();
  const index_t splits = std::max<index_t>(1, std::min<index_t>(4, n_keys / attention_decode_min_split));
  float* a = ws.alloc<float>(head_dim);
  float* b = ws.alloc<float>(head_dim);
  for (index_t h = 0; h < pb.n_heads; ++h) {
    float m_a, s_a;
    reference_partial(pb, h, 0, 0, n_keys / splits, m_a, s_a, a);
    for (index_t sp = 1; sp < splits; ++sp) {
      float m_b, s_b;
      reference_partial(pb, h, 0, n_keys * sp / splits, n_keys * (sp + 1) / splits, m_b, s_b, b);
      merge_partial_state(m_a, s_a, tensor_view<float, 1>(a, {head_dim}), m_b, s_b,
                          tensor_view<const float, 1>(b, {head_dim}));
    }
    auto row = pb.out[0][h];
    write_row(m_a, s_a, a, [&](index_t e) -> float& { return row(e); }, head_dim);
  }
}

inline void check_decode(tensor_view<const float, 3> q, const kv_cache& cache) {
  if (q.extent(0) != 1) throw shape_error("decode_attention: q must hold one row, got l = " + std::to_string(q.extent(0)));
  if (cache.size() < 1) throw range_error("decode_attention: the cache is empty; append the token's k/v first");
}
}  // namespace detail

/// Decode, scalar reference: q at position cache.size() - 1 against the cache (keys in chunks,
/// merged with merge_partial_state).
inline void decode_attention(tensor_view<const float, 3> q, const kv_cache& cache, tensor_view<float, 3> out,
                             const attention_params& p, workspace& ws, simd::scalar) {
  detail::check_decode(q, cache);
  const auto pb = detail::make_cache_problem(q, cache, nullptr, nullptr, out, p, cache.size() - 1, "decode_attention");
  detail::reference_split_decode(pb, ws);
}

/// Decode: q (1, n_heads, head_dim) at position cache.size() - 1 against the cache, keys split
/// over threads, partial states merged (flash-decoding).
template <class Arch = simd::default_arch>
void decode_attention(tensor_view<const float, 3> q, const kv_cache& cache, tensor_view<float, 3> out,
                      const attention_params& p, workspace& ws, Arch = {}) {
  detail::check_decode(q, cache);
  const auto pb = detail::make_cache_problem(q, cache, nullptr, nullptr, out, p, cache.size() - 1, "decode_attention");
  if constexpr (simd::is_scalar_v<Arch>) detail::reference_split_decode(pb, ws);
  else detail::split_decode<Arch>(pb, ws);
}

}  // namespace attention
}  // namespace v0
}  // namespace tessera
