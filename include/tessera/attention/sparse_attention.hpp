// tessera/attention/sparse_attention.hpp: sparse softmax attention whose cost scales as l × window:
// a generic block-sparse layout (CSR), Longformer's sliding window + global tokens, and BigBird's
// block-sparse pattern (with its full-attention fallback).
//
// One sequence per call (the layer loops over the batch). Every row is contiguous (stride 1).
//   q:   (l, n_heads, head_dim)
//   k:   (l_k, n_kv_heads, head_dim)   v: (l_k, n_kv_heads, d_v)
//   out: (l, n_heads, d_v)             overwritten; may not alias the inputs
// Broadcast: head h reads kv head h / (n_heads / n_kv_heads) (block_sparse_attention only; the
// Longformer and BigBird kernels have n_kv_heads = n_heads). Scores are scale · q·k, scale
// defaulting to 1/sqrt(head_dim). A query row that sees no key at all gets zeros.
//
// block_sparse_attention(q, k, v, layout, key_mask, out, params, ws)
//   layout.block_size:  b_s, the size of query and key blocks; block i holds rows
//                       [i·b_s, min((i+1)·b_s, l)) (the last block may be partial)
//   layout.row_ptr:     (ceil(l / b_s) + 1) int32, CSR row pointers over query blocks
//   layout.col_idx:     (1 or n_heads, nnz) int32, key block indices; one row shared by every head
//                       or one row per head (same row_ptr)
//   key_mask:           (l_k) uint8, optional: 0 drops the key (padding), anything else keeps it
//   params.causal:      also drops keys at positions after the query's
// Query block i attends to the tokens of key blocks col_idx[row_ptr[i] .. row_ptr[i+1]); a block
// listed twice counts twice in the softmax (BigBird's eval-mode random blocks rely on this).
//
// longformer_attention(q, k, v, global, attention_mask, out, params, ws)
//   global.q, global.k, global.v: (l, n_heads, head_dim) the query_global / key_global /
//                       value_global projections (rows of global tokens of global.q are read; all
//                       rows of global.k / global.v). Not read when no token is global.
//   attention_mask:     (l) int8, transformers' combined mask attention_mask · (global_attention_mask
//                       + 1): 0 padding, 1 local, 2 global.
//   params.attention_window: w, even, > 0: the full window, w/2 keys on each side.
// As LongformerSelfAttention: a local query i attends to keys j with |i - j| ≤ w/2 that are local
// (not padding, not global) plus every global token (k and v, each counted once); a global query
// attends to every non-padding key through global.q · global.kᵀ and global.v; padding query rows
// get zeros. No padding of l to a multiple of w is needed (keys outside [0, l) simply do not exist).
//
// bigbird_attention(q, k, v, rand_attn, key_mask, out, params, ws)
//   rand_attn:          (n_heads, l / b_s - 2, r) int32, the random key blocks of query blocks
//                       1 .. n-2 (transformers' rand_attn; in eval mode all zeros)
//   key_mask:           (l) uint8, optional: 1 token, 0 padding (transformers' attention_mask)
// With n = l / b_s blocks, as BigBirdBlockSparseAttention: query blocks 0 and n-1 attend to every
// key; block 1 to key blocks {0, 1, 2, n-1} + random; block n-2 to {0, n-3, n-2, n-1} + random;
// blocks 2 .. n-3 to {0, i-1, i, i+1, n-1} + random; padding keys are dropped, padding query rows
// get zeros. When l ≤ (5 + 2r)·b_s, transformers switches to full attention ("original_full"):
// so does this kernel (every query row, padding rows included, attends to every non-padding key;
// l need not be a multiple of b_s then). Block-sparse mode needs l % b_s == 0 (BigBirdModel pads).
//
// Workspace: *_workspace_bytes below, for the thread count in use when the kernel runs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include <tessera/core/eigen.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/simd/arch.hpp>

namespace tessera {
inline namespace v0 {
namespace attention {

struct block_sparse_layout {
  index_t block_size = 64;
  tensor_view<const std::int32_t, 1> row_ptr;  // (n_q_blocks + 1)
  tensor_view<const std::int32_t, 2> col_idx;  // (1 or n_heads, nnz)
};

struct block_sparse_params {
  std::optional<float> scale;  // default 1/sqrt(head_dim)
  bool causal = false;
};

struct longformer_params {
  index_t attention_window = 512;  // full window w (even): w/2 keys each side
  std::optional<float> scale;      // default 1/sqrt(head_dim)
};

/// Global-token projections of Longformer (query_global, key_global, value_global outputs).
struct longformer_global_qkv {
  tensor_view<const float, 3> q;  // (l, n_heads, head_dim)
  tensor_view<const float, 3> k;  // (l, n_heads, head_dim)
  tensor_view<const float, 3> v;  // (l, n_heads, d_v)
};

struct bigbird_params {
  index_t block_size = 64;
  index_t num_random_blocks = 3;  // r; must equal rand_attn's last extent
  std::optional<float> scale;     // default 1/sqrt(head_dim)
};

/// Query rows per work item and key rows per tile of the Longformer kernel.
inline constexpr index_t sparse_q_tile = 64;
inline constexpr index_t sparse_k_tile = 128;

namespace detail {

inline constexpr index_t sp_max_workers = 64;

inline index_t sp_workers(index_t tasks) {
  return std::max<index_t>(1, std::min<index_t>({static_cast<index_t>(num_threads()), tasks, sp_max_workers}));
}

/// Bytes of one worker's scratch for query tiles of bq rows against key tiles of bk rows.
inline std::size_t sp_worker_bytes(index_t bq, index_t bk, index_t head_dim, index_t d_v) {
  return workspace::bytes_for<float>(bq * bk) + workspace::bytes_for<float>(bq * d_v) +
         2 * workspace::bytes_for<float>(bq) + workspace::bytes_for<float>(bq * head_dim) +
         workspace::bytes_for<float>(bk * head_dim) + workspace::bytes_for<float>(bk * d_v) +
         workspace::bytes_for<std::int32_t>(bk);
}

}  // namespace detail

/// Workspace bytes for block_sparse_attention.
inline std::size_t block_sparse_attention_workspace_bytes(index_t block_size, index_t head_dim, index_t d_v) {
  return static_cast<std::size_t>(std::min<index_t>(num_threads(), detail::sp_max_workers)) *
         detail::sp_worker_bytes(block_size, block_size, head_dim, d_v);
}

/// Workspace bytes for longformer_attention on sequences of up to l tokens.
inline std::size_t longformer_attention_workspace_bytes(index_t l, index_t head_dim, index_t d_v) {
  return workspace::bytes_for<std::int32_t>(l) +
         static_cast<std::size_t>(std::min<index_t>(num_threads(), detail::sp_max_workers)) *
             detail::sp_worker_bytes(sparse_q_tile, sparse_k_tile, head_dim, d_v);
}

/// Workspace bytes for bigbird_attention.
inline std::size_t bigbird_attention_workspace_bytes(index_t l, index_t n_heads, index_t head_dim, index_t d_v,
                                                     index_t block_size, index_t num_random_blocks) {
  const index_t n = (l + block_size - 1) / std::max<index_t>(block_size, 1);
  const index_t nnz = n * (n + 5 + num_random_blocks);
  return workspace::bytes_for<std::int32_t>(n + 1) + workspace::bytes_for<std::int32_t>(n_heads * nnz) +
         block_sparse_attention_workspace_bytes(block_size, head_dim, d_v);
}

namespace detail {

inline constexpr float sp_neg_inf = -std::numeric_limits<float>::infinity();

// ---- small dense helpers -------------------------------------------------------------------------

template <class Arch>
struct sp_ops {
  using row_map = Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned,
                             Eigen::OuterStride<>>;
  using crow_map = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
                              Eigen::Unaligned, Eigen::OuterStride<>>;
  /// C (m×n) = A (m×k) · B (n×k)ᵀ
  static void abt(index_t m, index_t n, index_t k, const float* a, index_t lda, const float* b, index_t ldb, float* c,
                  index_t ldc) {
    row_map(c, m, n, Eigen::OuterStride<>(ldc)).noalias() =
        crow_map(a, m, k, Eigen::OuterStride<>(lda)) * crow_map(b, n, k, Eigen::OuterStride<>(ldb)).transpose();
  }
  /// C (m×n) += A (m×k) · B (k×n)
  static void ab_acc(index_t m, index_t n, index_t k, const float* a, index_t lda, const float* b, index_t ldb,
                     float* c, index_t ldc) {
    row_map(c, m, n, Eigen::OuterStride<>(ldc)).noalias() +=
        crow_map(a, m, k, Eigen::OuterStride<>(lda)) * crow_map(b, k, n, Eigen::OuterStride<>(ldb));
  }
  /// x = exp(x - m) (exp(-inf) = 0); returns Σ x.
  static float exp_sum(float* x, index_t n, float m) noexcept {
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t w = batch::size;
    const batch vm(m);
    batch acc(0.f);
    index_t j = 0;
    for (; j + w <= n; j += w) {
      const batch e = xsimd::exp(batch::load_unaligned(x + j) - vm);
      e.store_unaligned(x + j);
      acc += e;
    }
    float s = xsimd::hadd(acc);
    for (; j < n; ++j) s += x[j] = std::exp(x[j] - m);
    return s;
  }
};

template <>
struct sp_ops<simd::scalar> {
  static void abt(index_t m, index_t n, index_t k, const float* a, index_t lda, const float* b, index_t ldb, float* c,
                  index_t ldc) {
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) {
        float s = 0.f;
        for (index_t p = 0; p < k; ++p) s += a[i * lda + p] * b[j * ldb + p];
        c[i * ldc + j] = s;
      }
  }
  static void ab_acc(index_t m, index_t n, index_t k, const float* a, index_t lda, const float* b, index_t ldb,
                     float* c, index_t ldc) {
    for (index_t i = 0; i < m; ++i)
      for (index_t p = 0; p < k; ++p) {
        const float aip = a[i * lda + p];
        for (index_t j = 0; j < n; ++j) c[i * ldc + j] += aip * b[p * ldb + j];
      }
  }
  static float exp_sum(float* x, index_t n, float m) noexcept {
    float s = 0.f;
    for (index_t j = 0; j < n; ++j) s += x[j] = std::exp(x[j] - m);
    return s;
  }
};

/// One worker's scratch and the running softmax state of up to bq query rows.
struct sp_scratch {
  float *s, *acc, *mx, *sum, *qg, *kg, *vg;
  std::int32_t* idx;
  static sp_scratch make(workspace& ws, index_t bq, index_t bk, index_t head_dim, index_t d_v) {
    sp_scratch x{};
    x.s = ws.alloc<float>(bq * bk);
    x.acc = ws.alloc<float>(bq * d_v);
    x.mx = ws.alloc<float>(bq);
    x.sum = ws.alloc<float>(bq);
    x.qg = ws.alloc<float>(bq * head_dim);
    x.kg = ws.alloc<float>(bk * head_dim);
    x.vg = ws.alloc<float>(bk * d_v);
    x.idx = ws.alloc<std::int32_t>(bk);
    return x;
  }
  void reset(index_t m, index_t d_v) const noexcept {
    std::fill(mx, mx + m, sp_neg_inf);
    std::fill(sum, sum + m, 0.f);
    std::fill(acc, acc + m * d_v, 0.f);
  }
};

/// Adds n keys (rows of K, V with leading dims ldk, ldv) to the running softmax of m query rows
/// (rows of Q, leading dim ldq); keep(i, j) says whether query row i sees key j.
template <class Arch, class Keep>
void sp_attend(const sp_scratch& x, index_t m, const float* q, index_t ldq, const float* k, index_t ldk,
               const float* v, index_t ldv, index_t n, index_t head_dim, index_t d_v, float scale, Keep&& keep) {
  using ops = sp_ops<Arch>;
  if (m == 0 || n == 0) return;
  ops::abt(m, n, head_dim, q, ldq, k, ldk, x.s, n);
  bool any = false;
  for (index_t i = 0; i < m; ++i) {
    float* s = x.s + i * n;
    float tmax = sp_neg_inf;
    for (index_t j = 0; j < n; ++j) {
      s[j] = keep(i, j) ? s[j] * scale : sp_neg_inf;
      tmax = std::max(tmax, s[j]);
    }
    if (tmax == sp_neg_inf) {
      std::fill(s, s + n, 0.f);
      continue;
    }
    any = true;
    const float m_new = std::max(x.mx[i], tmax);
    const float c = x.mx[i] == sp_neg_inf ? 0.f : std::exp(x.mx[i] - m_new);
    if (c != 1.f) {
      float* a = x.acc + i * d_v;
      for (index_t e = 0; e < d_v; ++e) a[e] *= c;
      x.sum[i] *= c;
    }
    x.sum[i] += ops::exp_sum(s, n, m_new);
    x.mx[i] = m_new;
  }
  if (any) ops::ab_acc(m, d_v, n, x.s, n, v, ldv, x.acc, d_v);
}

/// out row = acc / sum, or zeros for a row that saw no key.
inline void sp_finish(const sp_scratch& x, index_t i, float* out, index_t d_v) noexcept {
  const float inv = x.sum[i] > 0.f ? 1.f / x.sum[i] : 0.f;
  for (index_t e = 0; e < d_v; ++e) out[e] = x.acc[i * d_v + e] * inv;
}

/// Runs f(task, scratch) over tasks [0, n_tasks), one scratch slab per worker.
template <class F>
void sp_for_tasks(index_t n_tasks, const sp_scratch* slabs, F&& f) {
  const index_t workers = sp_workers(n_tasks);
  parallel_for(0, workers, 1, [&](index_t lo, index_t hi) {
    for (index_t w = lo; w < hi; ++w)
      for (index_t t = n_tasks * w / workers; t < n_tasks * (w + 1) / workers; ++t) f(t, slabs[w]);
  });
}

inline void sp_check_qkv(const char* op, const tensor_view<const float, 3>& q, const tensor_view<const float, 3>& k,
                         const tensor_view<const float, 3>& v, const tensor_view<float, 3>& out) {
  const std::string o(op);
  const auto [l, n_heads, head_dim] = q.extents();
  const auto [l_k, n_kv_heads, d_k] = k.extents();
  expect_equal(d_k, head_dim, (o + ": k head_dim vs q head_dim").c_str());
  expect_equal(v.extent(0), l_k, (o + ": v length vs k length").c_str());
  expect_equal(v.extent(1), n_kv_heads, (o + ": v heads vs k heads").c_str());
  if (n_kv_heads < 1 || n_heads % n_kv_heads != 0)
    throw shape_error(o + ": n_heads (" + std::to_string(n_heads) + ") is not a multiple of n_kv_heads (" +
                      std::to_string(n_kv_heads) + ")");
  expect_extents(out.extents(), {l, n_heads, v.extent(2)}, (o + ": out").c_str());
  expect_rows_contiguous(q, (o + ": q").c_str());
  expect_rows_contiguous(k, (o + ": k").c_str());
  expect_rows_contiguous(v, (o + ": v").c_str());
  expect_rows_contiguous(out, (o + ": out").c_str());
}

inline float sp_scale(const std::optional<float>& s, index_t head_dim) {
  return s ? *s : 1.f / std::sqrt(static_cast<float>(std::max<index_t>(head_dim, 1)));
}

/// The block-sparse kernel on a checked layout; zero_query_mask zeroes query rows whose key_mask is
/// 0 (BigBird), valid only when l == l_k.
template <class Arch>
void sp_block_sparse(const char* op, tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                     tensor_view<const float, 3> v, const block_sparse_layout& layout,
                     std::optional<tensor_view<const std::uint8_t, 1>> key_mask, tensor_view<float, 3> out,
                     const block_sparse_params& params, bool zero_query_mask, workspace& ws) {
  const index_t l = q.extent(0), n_heads = q.extent(1), head_dim = q.extent(2);
  const index_t l_k = k.extent(0), n_kv_heads = k.extent(1), d_v = v.extent(2);
  const index_t bs = layout.block_size;
  const index_t n_qb = (l + bs - 1) / bs;
  const index_t group = n_heads / n_kv_heads;
  const bool per_head = layout.col_idx.extent(0) != 1;
  const float scale = sp_scale(params.scale, head_dim);
  const std::uint8_t* kmask = key_mask ? key_mask->data() : nullptr;
  const index_t kmask_stride = key_mask ? key_mask->stride(0) : 0;
  workspace::frame frame(ws);
  const index_t tasks = n_heads * n_qb;
  const index_t workers = sp_workers(tasks);
  sp_scratch slabs[sp_max_workers];
  for (index_t w = 0; w < workers; ++w) slabs[w] = sp_scratch::make(ws, bs, bs, head_dim, d_v);
  (void)op;
  sp_for_tasks(tasks, slabs, [&](index_t task, const sp_scratch& x) {
    const index_t h = task % n_heads, qb = task / n_heads, g = h / group;
    const index_t i0 = qb * bs, m = std::min(bs, l - i0);
    x.reset(m, d_v);
    const std::int32_t* cols = &layout.col_idx(per_head ? h : 0, 0);
    const index_t cstride = layout.col_idx.stride(1);
    for (std::int32_t p = layout.row_ptr(qb); p < layout.row_ptr(qb + 1); ++p) {
      const index_t kb = cols[p * cstride], j0 = kb * bs, n = std::min(bs, l_k - j0);
      sp_attend<Arch>(x, m, &q(i0, h, 0), q.stride(0), &k(j0, g, 0), k.stride(0), &v(j0, g, 0), v.stride(0), n,
                      head_dim, d_v, scale, [&](index_t i, index_t j) {
                        const index_t kt = j0 + j;
                        if (kmask && kmask[kt * kmask_stride] == 0) return false;
                        return !params.causal || kt <= i0 + i;
                      });
    }
    for (index_t i = 0; i < m; ++i) {
      float* o = &out(i0 + i, h, 0);
      if (zero_query_mask && kmask && kmask[(i0 + i) * kmask_stride] == 0) std::fill(o, o + d_v, 0.f);
      else sp_finish(x, i, o, d_v);
    }
  });
}

inline void sp_check_layout(const char* op, const block_sparse_layout& layout, index_t l, index_t l_k,
                            index_t n_heads) {
  const std::string o(op);
  if (layout.block_size < 1)
    throw range_error(o + ": block_size must be >= 1, got " + std::to_string(layout.block_size));
  const index_t n_qb = (l + layout.block_size - 1) / layout.block_size;
  const index_t n_kb = (l_k + layout.block_size - 1) / layout.block_size;
  expect_extents(layout.row_ptr.extents(), {n_qb + 1}, (o + ": row_ptr (ceil(l / block_size) + 1)").c_str());
  const index_t heads = layout.col_idx.extent(0), nnz = layout.col_idx.extent(1);
  if (heads != 1 && heads != n_heads)
    throw shape_error(o + ": col_idx has " + std::to_string(heads) + " rows; expected 1 or n_heads = " +
                      std::to_string(n_heads));
  if (layout.row_ptr(0) != 0 || layout.row_ptr(n_qb) != nnz)
    throw shape_error(o + ": row_ptr must start at 0 and end at nnz = " + std::to_string(nnz));
  for (index_t i = 0; i < n_qb; ++i)
    if (layout.row_ptr(i + 1) < layout.row_ptr(i))
      throw shape_error(o + ": row_ptr decreases at query block " + std::to_string(i));
  for (index_t h = 0; h < heads; ++h)
    for (index_t p = 0; p < nnz; ++p)
      if (layout.col_idx(h, p) < 0 || layout.col_idx(h, p) >= n_kb)
        throw range_error(o + ": col_idx(" + std::to_string(h) + ", " + std::to_string(p) + ") = " +
                          std::to_string(layout.col_idx(h, p)) + " is outside [0, " + std::to_string(n_kb) + ")");
}

// ---- Longformer ----------------------------------------------------------------------------------

template <class Arch>
void sp_longformer(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v,
                   const longformer_global_qkv& glob, tensor_view<const std::int8_t, 1> role,
                   tensor_view<float, 3> out, const longformer_params& params, workspace& ws) {
  constexpr const char* op = "longformer_attention";
  sp_check_qkv(op, q, k, v, out);
  const index_t l = q.extent(0), n_heads = q.extent(1), head_dim = q.extent(2);
  const index_t d_v = v.extent(2);
  expect_equal(k.extent(1), n_heads, "longformer_attention: k heads vs q heads");
  expect_extents(role.extents(), {l}, "longformer_attention: attention_mask (l)");
  const index_t w = params.attention_window;
  if (w <= 0 || w % 2 != 0)
    throw range_error("longformer_attention: attention_window must be even and positive, got " + std::to_string(w));
  const index_t w2 = w / 2;
  const float scale = sp_scale(params.scale, head_dim);
  workspace::frame frame(ws);
  // global token list
  std::int32_t* gidx = ws.alloc<std::int32_t>(l);
  index_t n_glob = 0;
  for (index_t t = 0; t < l; ++t) {
    const int r = role(t);
    if (r < 0 || r > 2)
      throw range_error("longformer_attention: attention_mask[" + std::to_string(t) + "] = " + std::to_string(r) +
                        " (expected 0 padding, 1 local, 2 global)");
    if (r == 2) gidx[n_glob++] = static_cast<std::int32_t>(t);
  }
  if (n_glob > 0) {
    expect_extents(glob.q.extents(), {l, n_heads, head_dim}, "longformer_attention: global q");
    expect_extents(glob.k.extents(), {l, n_heads, head_dim}, "longformer_attention: global k");
    expect_extents(glob.v.extents(), {l, n_heads, d_v}, "longformer_attention: global v");
    expect_rows_contiguous(glob.q, "longformer_attention: global q");
    expect_rows_contiguous(glob.k, "longformer_attention: global k");
    expect_rows_contiguous(glob.v, "longformer_attention: global v");
  }
  const std::int8_t* rl = role.data();
  const index_t rs = role.stride(0);
  const index_t n_qb = (l + sparse_q_tile - 1) / sparse_q_tile;
  const index_t n_gb = (n_glob + sparse_q_tile - 1) / sparse_q_tile;
  const index_t tasks = n_heads * (n_qb + n_gb);
  const index_t workers = sp_workers(tasks);
  sp_scratch slabs[sp_max_workers];
  for (index_t wk = 0; wk < workers; ++wk) slabs[wk] = sp_scratch::make(ws, sparse_q_tile, sparse_k_tile, head_dim, d_v);
  sp_for_tasks(tasks, slabs, [&](index_t task, const sp_scratch& x) {
    const index_t h = task % n_heads, blk = task / n_heads;
    if (blk < n_qb) {
      // local query rows [i0, i0 + m): the band of w/2 keys on each side, local keys only
      const index_t i0 = blk * sparse_q_tile, m = std::min(sparse_q_tile, l - i0);
      x.reset(m, d_v);
      const index_t k_lo = std::max<index_t>(0, i0 - w2), k_hi = std::min(l, i0 + m + w2);
      for (index_t j0 = k_lo; j0 < k_hi; j0 += sparse_k_tile) {
        const index_t n = std::min(sparse_k_tile, k_hi - j0);
        sp_attend<Arch>(x, m, &q(i0, h, 0), q.stride(0), &k(j0, h, 0), k.stride(0), &v(j0, h, 0), v.stride(0), n,
                        head_dim, d_v, scale, [&](index_t i, index_t j) {
                          const index_t d = (j0 + j) - (i0 + i);
                          return d >= -w2 && d <= w2 && rl[(j0 + j) * rs] == 1;
                        });
      }
      // every global key, counted once, through the ordinary k and v
      for (index_t g0 = 0; g0 < n_glob; g0 += sparse_k_tile) {
        const index_t n = std::min(sparse_k_tile, n_glob - g0);
        for (index_t j = 0; j < n; ++j) {
          const index_t t = gidx[g0 + j];
          std::copy(&k(t, h, 0), &k(t, h, 0) + head_dim, x.kg + j * head_dim);
          std::copy(&v(t, h, 0), &v(t, h, 0) + d_v, x.vg + j * d_v);
        }
        sp_attend<Arch>(x, m, &q(i0, h, 0), q.stride(0), x.kg, head_dim, x.vg, d_v, n, head_dim, d_v, scale,
                        [](index_t, index_t) { return true; });
      }
      for (index_t i = 0; i < m; ++i) {
        const int r = rl[(i0 + i) * rs];
        if (r == 2) continue;  // written by the global rows below
        float* o = &out(i0 + i, h, 0);
        if (r == 0) std::fill(o, o + d_v, 0.f);
        else sp_finish(x, i, o, d_v);
      }
    } else {
      // global query rows: global.q against every non-padding key of global.k / global.v
      const index_t g0 = (blk - n_qb) * sparse_q_tile, m = std::min(sparse_q_tile, n_glob - g0);
      x.reset(m, d_v);
      for (index_t i = 0; i < m; ++i) {
        const index_t t = gidx[g0 + i];
        std::copy(&glob.q(t, h, 0), &glob.q(t, h, 0) + head_dim, x.qg + i * head_dim);
      }
      for (index_t j0 = 0; j0 < l; j0 += sparse_k_tile) {
        const index_t n = std::min(sparse_k_tile, l - j0);
        sp_attend<Arch>(x, m, x.qg, head_dim, &glob.k(j0, h, 0), glob.k.stride(0), &glob.v(j0, h, 0),
                        glob.v.stride(0), n, head_dim, d_v, scale,
                        [&](index_t, index_t j) { return rl[(j0 + j) * rs] != 0; });
      }
      for (index_t i = 0; i < m; ++i) sp_finish(x, i, &out(gidx[g0 + i], h, 0), d_v);
    }
  });
}

// ---- BigBird -------------------------------------------------------------------------------------

template <class Arch>
void sp_bigbird(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v,
                tensor_view<const std::int32_t, 3> rand_attn, std::optional<tensor_view<const std::uint8_t, 1>> key_mask,
                tensor_view<float, 3> out, const bigbird_params& params, workspace& ws) {
  constexpr const char* op = "bigbird_attention";
  sp_check_qkv(op, q, k, v, out);
  const auto [l, n_heads, head_dim] = q.extents();
  expect_equal(k.extent(0), l, "bigbird_attention: k length vs q length (self-attention)");
  expect_equal(k.extent(1), n_heads, "bigbird_attention: k heads vs q heads");
  if (key_mask) expect_extents(key_mask->extents(), {l}, "bigbird_attention: key_mask (l)");
  const index_t bs = params.block_size, r = params.num_random_blocks;
  if (bs < 1) throw range_error("bigbird_attention: block_size must be >= 1, got " + std::to_string(bs));
  if (r < 0) throw range_error("bigbird_attention: num_random_blocks must be >= 0, got " + std::to_string(r));
  workspace::frame frame(ws);
  block_sparse_params bp{.scale = params.scale, .causal = false};
  const bool full = l <= (5 + 2 * r) * bs;
  const index_t n = (l + bs - 1) / bs;
  if (!full) {
    if (l % bs != 0)
      throw shape_error("bigbird_attention: l (" + std::to_string(l) + ") must be a multiple of block_size (" +
                        std::to_string(bs) + ") in block-sparse mode; pad as BigBirdModel does");
    expect_extents(rand_attn.extents(), {n_heads, n - 2, r}, "bigbird_attention: rand_attn (n_heads, l / block_size - 2, r)");
    for (index_t h = 0; h < n_heads; ++h)
      for (index_t i = 0; i < n - 2; ++i)
        for (index_t j = 0; j < r; ++j)
          if (rand_attn(h, i, j) < 0 || rand_attn(h, i, j) >= n)
            throw range_error("bigbird_attention: rand_attn(" + std::to_string(h) + ", " + std::to_string(i) + ", " +
                              std::to_string(j) + ") = " + std::to_string(rand_attn(h, i, j)) + " is outside [0, " +
                              std::to_string(n) + ")");
  }
  // the CSR layout of the pattern (every block for the full fallback), one col_idx row per head
  const index_t nnz = full ? n * n : 2 * n + 2 * (4 + r) + (n - 4) * (5 + r);
  const index_t heads = full ? 1 : n_heads;
  std::int32_t* row_ptr = ws.alloc<std::int32_t>(n + 1);
  std::int32_t* col = ws.alloc<std::int32_t>(heads * nnz);
  for (index_t h = 0; h < heads; ++h) {
    std::int32_t* c = col + h * nnz;
    index_t p = 0;
    auto put = [&](index_t b) { c[p++] = static_cast<std::int32_t>(b); };
    for (index_t i = 0; i < n; ++i) {
      if (h == 0) row_ptr[i] = static_cast<std::int32_t>(p);
      if (full || i == 0 || i == n - 1) {
        for (index_t b = 0; b < n; ++b) put(b);
        continue;
      }
      if (i == 1) put(0), put(1), put(2), put(n - 1);
      else if (i == n - 2) put(0), put(n - 3), put(n - 2), put(n - 1);
      else put(0), put(i - 1), put(i), put(i + 1), put(n - 1);
      for (index_t j = 0; j < r; ++j) put(rand_attn(h, i - 1, j));
    }
    if (h == 0) row_ptr[n] = static_cast<std::int32_t>(p);
  }
  block_sparse_layout layout{.block_size = bs, .row_ptr = tensor_view<const std::int32_t, 1>(row_ptr, {n + 1}),
                             .col_idx = tensor_view<const std::int32_t, 2>(col, {heads, nnz})};
  sp_block_sparse<Arch>(op, q, k, v, layout, key_mask, out, bp, !full, ws);
}

}  // namespace detail

// ---- public entry points ---------------------------------------------------------------------------

/// Softmax attention restricted to the blocks of a CSR layout; cost ∝ nnz · block_size².
template <class Arch = simd::default_arch>
void block_sparse_attention(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                            tensor_view<const float, 3> v, const block_sparse_layout& layout,
                            std::optional<tensor_view<const std::uint8_t, 1>> key_mask, tensor_view<float, 3> out,
                            const block_sparse_params& params, workspace& ws, Arch = {}) {
  detail::sp_check_qkv("block_sparse_attention", q, k, v, out);
  detail::sp_check_layout("block_sparse_attention", layout, q.extent(0), k.extent(0), q.extent(1));
  if (key_mask) expect_extents(key_mask->extents(), {k.extent(0)}, "block_sparse_attention: key_mask (l_k)");
  detail::sp_block_sparse<Arch>("block_sparse_attention", q, k, v, layout, key_mask, out, params, false, ws);
}
inline void block_sparse_attention(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                                   tensor_view<const float, 3> v, const block_sparse_layout& layout,
                                   std::optional<tensor_view<const std::uint8_t, 1>> key_mask,
                                   tensor_view<float, 3> out, const block_sparse_params& params, workspace& ws,
                                   simd::scalar) {
  detail::sp_check_qkv("block_sparse_attention", q, k, v, out);
  detail::sp_check_layout("block_sparse_attention", layout, q.extent(0), k.extent(0), q.extent(1));
  if (key_mask) expect_extents(key_mask->extents(), {k.extent(0)}, "block_sparse_attention: key_mask (l_k)");
  detail::sp_block_sparse<simd::scalar>("block_sparse_attention", q, k, v, layout, key_mask, out, params, false, ws);
}

/// Longformer self-attention: sliding window of w/2 keys each side plus global tokens.
template <class Arch = simd::default_arch>
void longformer_attention(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                          tensor_view<const float, 3> v, const longformer_global_qkv& global,
                          tensor_view<const std::int8_t, 1> attention_mask, tensor_view<float, 3> out,
                          const longformer_params& params, workspace& ws, Arch = {}) {
  detail::sp_longformer<Arch>(q, k, v, global, attention_mask, out, params, ws);
}
inline void longformer_attention(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                                 tensor_view<const float, 3> v, const longformer_global_qkv& global,
                                 tensor_view<const std::int8_t, 1> attention_mask, tensor_view<float, 3> out,
                                 const longformer_params& params, workspace& ws, simd::scalar) {
  detail::sp_longformer<simd::scalar>(q, k, v, global, attention_mask, out, params, ws);
}

/// BigBird block-sparse self-attention (ITC), with transformers' full-attention fallback.
template <class Arch = simd::default_arch>
void bigbird_attention(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v,
                       tensor_view<const std::int32_t, 3> rand_attn,
                       std::optional<tensor_view<const std::uint8_t, 1>> key_mask, tensor_view<float, 3> out,
                       const bigbird_params& params, workspace& ws, Arch = {}) {
  detail::sp_bigbird<Arch>(q, k, v, rand_attn, key_mask, out, params, ws);
}
inline void bigbird_attention(tensor_view<const float, 3> q, tensor_view<const float, 3> k,
                              tensor_view<const float, 3> v, tensor_view<const std::int32_t, 3> rand_attn,
                              std::optional<tensor_view<const std::uint8_t, 1>> key_mask, tensor_view<float, 3> out,
                              const bigbird_params& params, workspace& ws, simd::scalar) {
  detail::sp_bigbird<simd::scalar>(q, k, v, rand_attn, key_mask, out, params, ws);
}

}  // namespace attention
}  // namespace v0
}  // namespace tessera
