// tessera/layers/attention.hpp: the one softmax-attention layer of every family.
//
//   x:    (rows, d_model)               the normalized residual stream (every sequence, packed)
//   q:    (rows, n_heads, head_dim)     = q_proj(x)        [+ gate (rows, n_heads, head_dim)]
//   k, v: (rows, n_kv_heads, head_dim)  = k_proj(x), v_proj(x)   (cross: of the encoder memory)
//   q, k  ← qk norm (RMSNorm per head, or over the whole projection width), then the positional
//           encoding: RoPE (partial rotary dimension, rotate-half or interleaved pairs, every
//           scaling kind of layers/rotary.hpp, per-layer theta), ALiBi slopes, a relative bias by
//           key - query distance (T5's buckets), or none
//   o:    (rows, n_heads, head_dim)     = softmax(scale · q·kᵀ → softcap → + ALiBi / relative bias
//                                                 → mask) · v
//           per sequence: causal over its KV cache (prefill: the new rows too; decode: one row),
//           bidirectional over its own rows (encoders), or over the encoder memory (cross)
//   o     ← o · sigmoid(gate)           (output gate: q_proj emits [q | gate] per head)
//   out:  (rows, d_model)               = o_proj(o)
// GQA: n_heads % n_kv_heads == 0; the kernels index the shared kv head (nothing is repeated).
//
// State (per sequence): the KV cache (attention/kv_cache.hpp; a ring of the window for sliding
// layers; grows with use up to max_len) and the RoPE frequencies in use (dynamic NTK and longrope
// depend on the sequence's length). Cross-attention: the cache holds the encoder memory's K/V,
// projected on the first forward and reused by every later one.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <optional>
#include <string>

#include <tessera/attention/kv_cache.hpp>
#include <tessera/attention/position_bias.hpp>
#include <tessera/attention/softmax_attention.hpp>
#include <tessera/attention/softmax_decode.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/layers/batch.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/layers/rotary.hpp>
#include <tessera/ops/norm.hpp>
#include <tessera/ops/rope.hpp>

namespace tessera {
inline namespace v0 {
namespace layers {

/// Where q/k normalization applies (before the positional encoding).
enum class qk_norm_kind {
  none,
  per_head,      ///< RMSNorm over head_dim, one weight (head_dim) shared by the heads (Qwen3, Gemma 3)
  across_heads,  ///< RMSNorm over the whole projection (n_heads · head_dim) (OLMo 2)
};

/// What an attention layer is, field by field.
struct attention_options {
  index_t n_heads = 0;
  index_t n_kv_heads = 0;                 // GQA / MQA: n_heads % n_kv_heads == 0
  index_t head_dim = 0;
  float scale = 0.f;                      // 0: 1 / sqrt(head_dim) (Gemma 2: query_pre_attn_scalar^-½)
  float softcap = 0.f;                    // logit softcap (Gemma 2); 0: off
  std::optional<index_t> window;          // sliding window, keys counted including the query
  std::optional<rope_frequencies> rope;   // RoPE (absent: no rotary encoding)
  bool alibi = false;                     // ALiBi slopes of BLOOM / MPT
  std::optional<tensor<float, 2>> relative_bias;  // (n_heads, 2R + 1) by key - query distance, clamped to
                                                  // ±R (T5: attention::make_t5_relative_bias of the table)
  bool output_gate = false;               // q_proj rows hold [q | gate] per head (Qwen3-Next)
  bool cross = false;                     // keys and values from the encoder memory
  qk_norm_kind qk_norm = qk_norm_kind::none;
  float qk_norm_eps = 1e-6f;
};

/// The optional weights beside the four projections.
struct attention_norms {
  std::optional<tensor<float, 1>> q_norm;  // (head_dim) or (n_heads head_dim)
  std::optional<tensor<float, 1>> k_norm;  // (head_dim) or (n_kv_heads head_dim)
};

/// Per-sequence state of an attention layer.
struct attention_state {
  attention::kv_cache cache;
  rope_state rope;               // empty without RoPE
  bool cross = false;            // the cache holds the encoder memory's K/V: it does not roll back

  /// Whether truncate(n) can succeed (a sliding ring keeps only window + rollback tokens).
  bool can_truncate(index_t n) const noexcept { return cross || cache.can_truncate(n); }
  /// Rolls the sequence back to n tokens (the memory of a cross-attention layer stays).
  void truncate(index_t n) {
    if (!cross) cache.truncate(n);
  }
  std::size_t memory_bytes() const noexcept { return cache.memory_bytes() + rope.inv_freq.size() * sizeof(float); }
};

class attention_layer {
 public:
  using state_type = attention_state;

  attention_layer() = default;
  attention_layer(linear q, linear k, linear v, linear o, attention_options opt, attention_norms norms = {})
      : q_(std::move(q)), k_(std::move(k)), v_(std::move(v)), o_(std::move(o)), opt_(std::move(opt)),
        norms_(std::move(norms)) {
    const index_t h = opt_.n_heads, kvh = opt_.n_kv_heads, hd = opt_.head_dim;
    if (h < 1 || kvh < 1 || hd < 1 || h % kvh != 0)
      throw config_error("attention: n_heads " + std::to_string(h) + " must be a positive multiple of n_kv_heads " +
                         std::to_string(kvh) + " (head_dim " + std::to_string(hd) + ")");
    expect_equal(q_.out_features(), (opt_.output_gate ? 2 : 1) * h * hd,
                 opt_.output_gate ? "attention: q_proj rows vs 2 * n_heads * head_dim (q and gate)"
                                  : "attention: q_proj rows vs n_heads * head_dim");
    expect_equal(k_.out_features(), kvh * hd, "attention: k_proj rows vs n_kv_heads * head_dim");
    expect_equal(v_.out_features(), kvh * hd, "attention: v_proj rows vs n_kv_heads * head_dim");
    expect_equal(o_.in_features(), h * hd, "attention: o_proj columns vs n_heads * head_dim");
    expect_equal(k_.in_features(), v_.in_features(), "attention: k_proj columns vs v_proj columns");
    if (opt_.qk_norm != qk_norm_kind::none) {
      if (!norms_.q_norm || !norms_.k_norm) throw config_error("attention: qk norm asked for without q_norm / k_norm weights");
      const bool per_head = opt_.qk_norm == qk_norm_kind::per_head;
      expect_equal(norms_.q_norm->extent(0), per_head ? hd : h * hd, "attention: q_norm length");
      expect_equal(norms_.k_norm->extent(0), per_head ? hd : kvh * hd, "attention: k_norm length");
    }
    if (opt_.alibi) alibi_ = attention::make_alibi_slopes(h);
    if (opt_.relative_bias) {
      expect_equal(opt_.relative_bias->extent(0), h, "attention: relative_bias rows vs n_heads");
      if (opt_.cross) throw config_error("attention: a relative position bias on cross-attention is not defined");
    }
    if (opt_.rope && opt_.rope->rotary_dim() > hd) throw config_error("attention: rotary dimension exceeds head_dim");
  }

  const attention_options& options() const noexcept { return opt_; }

  /// The only place the state is sized. A sliding layer keeps a ring of its window.
  state_type make_state(const state_spec& spec) const {
    state_type s;
    // a cross cache holds the encoder memory, whose length is known at the first forward only: no
    // capacity of its own (it allocates what the memory needs then)
    const index_t cap = opt_.cross ? std::numeric_limits<index_t>::max() / 4 : spec.max_len;
    // (cross caches stay f32: they hold the source once, not a growing context)
    s.cache = attention::kv_cache(cap, opt_.n_kv_heads, opt_.head_dim, opt_.cross ? std::nullopt : opt_.window,
                                  opt_.cross ? 0 : spec.rollback, opt_.cross ? 0 : std::min(spec.reserve, cap),
                                  opt_.cross ? attention::kv_element::f32 : spec.kv_type);
    s.cross = opt_.cross;
    if (opt_.rope) s.rope = opt_.rope->initial_state();
    return s;
  }

  std::size_t workspace_bytes(index_t rows) const {
    const index_t h = opt_.n_heads * opt_.head_dim, kv = opt_.n_kv_heads * opt_.head_dim;
    return workspace::bytes_for<float>(rows * (opt_.output_gate ? 2 : 1) * h) + workspace::bytes_for<float>(rows * h) +
           2 * workspace::bytes_for<float>(rows * kv) +
           std::max({q_.workspace_bytes(rows), k_.workspace_bytes(rows), v_.workspace_bytes(rows), o_.workspace_bytes(rows),
                     attention::softmax_attention_workspace_bytes(opt_.n_heads, opt_.head_dim),
                 // decode_rows: a share per thread
                 static_cast<std::size_t>(num_threads()) *
                     attention::softmax_attention_workspace_bytes(opt_.n_heads, opt_.head_dim, 1)}) +
           256;
  }

  // x: (rows, d_model) → out: (rows, d_model); each sequence's new keys join its cache.
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_refs<state_type> states,
               const batch_context& ctx, workspace& ws) const {
    workspace::frame frame(ws);
    const index_t rows = x.extent(0);
    const index_t h = opt_.n_heads, kvh = opt_.n_kv_heads, hd = opt_.head_dim;
    const index_t qw = (opt_.output_gate ? 2 : 1) * hd;  // q_proj columns per head
    expect_equal(rows, ctx.rows(), "attention: x rows vs the batch's rows");
    expect_equal(static_cast<index_t>(states.size()), ctx.n_seq(), "attention: states vs the batch's sequences");
    auto qg = ws.alloc_view<float, 2>({rows, h * qw});   // (rows, n_heads · head_dim [· 2 with the gate])
    auto att = ws.alloc_view<float, 2>({rows, h * hd});  // (rows, n_heads · head_dim)
    const tensor_view<float, 3> q3(qg.data(), {rows, h, hd}, {h * qw, qw, 1});  // (rows, n_heads, head_dim)
    const auto att3 = att.reshape<3>({rows, h, hd});
    if (opt_.cross) {
      q_.forward(x, qg, ws);
      cross_attend(q3, att3, states, ctx, ws);
    } else {
      auto k = ws.alloc_view<float, 2>({rows, kvh * hd});  // (rows, n_kv_heads · head_dim)
      auto v = ws.alloc_view<float, 2>({rows, kvh * hd});
      linear::forward_shared<3>(x, {&q_, &k_, &v_}, {qg, k, v}, ws);  // decode: one GEMV pass for all three
      const auto k3 = k.reshape<3>({rows, kvh, hd}), v3 = v.reshape<3>({rows, kvh, hd});
      normalize_qk(q3, k3);
      for (index_t s = 0; s < ctx.n_seq(); ++s) {
        const auto [r0, r1] = ctx.rows_of(s);
        if (r0 == r1) continue;
        state_type& st = *states[static_cast<std::size_t>(s)];
        const auto qs = q3.slice(0, r0, r1), ks = k3.slice(0, r0, r1), vs = v3.slice(0, r0, r1);
        const auto os = att3.slice(0, r0, r1);
        if (opt_.rope) rotate(qs, ks, ctx.positions_of(s), st.rope, ctx.position0(s) + (r1 - r0));
        if (ctx.mode == attention_mode::bidirectional) {
          attention::softmax_attention(tensor_view<const float, 3>(qs), tensor_view<const float, 3>(ks),
                                       tensor_view<const float, 3>(vs), os, params(false), ws);
        } else if (r1 - r0 == 1) {
          st.cache.append(ks, vs);  // attended below, with the other decoding sequences
        } else {
          attention::prefill_attention(tensor_view<const float, 3>(qs), tensor_view<const float, 3>(ks),
                                       tensor_view<const float, 3>(vs), st.cache, os, params(true), ws);
        }
      }
      if (ctx.mode != attention_mode::bidirectional) decode_rows(q3, att3, states, ctx, ws);
    }
    if (opt_.output_gate) apply_gate(qg, att);
    o_.forward(att, out, ws);
  }

 private:
  /// Attention of each sequence's one new row (its key already in its cache) over its cache. Over
  /// the sequences in parallel, each one's keys on one thread with a share of ws, when there are
  /// at least as many as threads and none holds more than twice a thread's fair share of the keys
  /// (batched decode: one fork per layer instead of one per sequence, and no thread idle while a
  /// short cache is attended on one); otherwise one at a time, its keys split over the threads.
  void decode_rows(tensor_view<float, 3> q3, tensor_view<float, 3> att3, state_refs<state_type> states,
                   const batch_context& ctx, workspace& ws) const {
    const auto one_row = [&](index_t s) { return ctx.rows_of(s).second - ctx.rows_of(s).first == 1; };
    const auto attend = [&](index_t s, workspace& w) {
      const index_t r = ctx.rows_of(s).first;
      attention::decode_attention(tensor_view<const float, 3>(q3.slice(0, r, r + 1)),
                                  states[static_cast<std::size_t>(s)]->cache, att3.slice(0, r, r + 1), params(true), w);
    };
    index_t n = 0, keys = 0, longest = 0;
    for (index_t s = 0; s < ctx.n_seq(); ++s)
      if (one_row(s)) {
        const index_t l = states[static_cast<std::size_t>(s)]->cache.size();
        ++n, keys += l, longest = std::max(longest, l);
      }
    workspace::frame frame(ws);
    const std::size_t share = attention::softmax_attention_workspace_bytes(opt_.n_heads, opt_.head_dim, 1);
    const index_t threads =
        std::min({index_t{num_threads()}, n, static_cast<index_t>((ws.capacity() - ws.used()) / share)});
    if (threads < 2 || in_parallel() || longest * threads > 2 * keys) {
      for (index_t s = 0; s < ctx.n_seq(); ++s)
        if (one_row(s)) attend(s, ws);
      return;
    }
    std::byte* shares = ws.alloc<std::byte>(threads * static_cast<index_t>(share));
    std::exception_ptr error;  // the first one thrown on a thread, rethrown here
    std::atomic<bool> failed{false};
    parallel_for_stealing(0, ctx.n_seq(), 1, 1, static_cast<int>(threads), [&](index_t t, index_t lo, index_t hi) {
      workspace mine(shares + t * static_cast<index_t>(share), share);
      for (index_t s = lo; s < hi; ++s) {
        if (!one_row(s)) continue;
        try {
          attend(s, mine);
        } catch (...) {
          if (!failed.exchange(true)) error = std::current_exception();
        }
      }
    });
    if (error) std::rethrow_exception(error);
  }

  attention::attention_params params(bool causal) const {
    attention::attention_params p;
    p.scale = opt_.scale;
    p.softcap = opt_.softcap;
    p.causal = causal;
    p.window = opt_.window;
    if (opt_.alibi) p.alibi_slopes = alibi_->cview();
    if (opt_.relative_bias) p.relative_bias = opt_.relative_bias->cview();
    return p;
  }

  // q: (rows, n_heads, head_dim), k: (rows, n_kv_heads, head_dim), normalized in place.
  void normalize_qk(tensor_view<float, 3> q, tensor_view<float, 3> k) const {
    if (opt_.qk_norm == qk_norm_kind::none) return;
    const index_t rows = q.extent(0), h = q.extent(1), kvh = k.extent(1), hd = q.extent(2);
    if (opt_.qk_norm == qk_norm_kind::per_head) {
      const tensor_view<float, 2> qh(q.data(), {rows * h, hd}, {q.stride(1), 1});  // one row per (token, head)
      const tensor_view<float, 2> kh(k.data(), {rows * kvh, hd}, {k.stride(1), 1});
      ops::rms_norm(tensor_view<const float, 2>(qh), norms_.q_norm->cview(), qh, opt_.qk_norm_eps);
      ops::rms_norm(tensor_view<const float, 2>(kh), norms_.k_norm->cview(), kh, opt_.qk_norm_eps);
    } else {
      if (opt_.output_gate) throw config_error("attention: a qk norm across heads with an output gate is not supported");
      const tensor_view<float, 2> qa(q.data(), {rows, h * hd}), ka(k.data(), {rows, kvh * hd});
      ops::rms_norm(tensor_view<const float, 2>(qa), norms_.q_norm->cview(), qa, opt_.qk_norm_eps);
      ops::rms_norm(tensor_view<const float, 2>(ka), norms_.k_norm->cview(), ka, opt_.qk_norm_eps);
    }
  }

  // RoPE on one sequence's rows; `length` = the sequence's length after these rows.
  void rotate(tensor_view<float, 3> q, tensor_view<float, 3> k, tensor_view<const std::int32_t, 1> positions,
              rope_state& rs, index_t length) const {
    opt_.rope->update(length, rs);
    const ops::rope_params rp{.mode = opt_.rope->config().neox ? ops::rope_mode::neox : ops::rope_mode::gptj,
                              .attention_scaling = rs.attention_scaling};
    ops::rope(q, positions, rs.view(), rp);
    ops::rope(k, positions, rs.view(), rp);
  }

  // Cross-attention: each sequence's queries over its encoder memory (projected once, cached).
  void cross_attend(tensor_view<float, 3> q3, tensor_view<float, 3> att3, state_refs<state_type> states,
                    const batch_context& ctx, workspace& ws) const {
    const index_t kvh = opt_.n_kv_heads, hd = opt_.head_dim;
    for (index_t s = 0; s < ctx.n_seq(); ++s) {
      const auto [r0, r1] = ctx.rows_of(s);
      state_type& st = *states[static_cast<std::size_t>(s)];
      if (st.cache.size() == 0) {  // first forward of this sequence: project its memory once
        if (!ctx.memory || static_cast<index_t>(ctx.memory->sequences.size()) != ctx.n_seq())
          throw range_error("cross-attention: the batch has no encoder memory for each sequence");
        const auto mem = ctx.memory->sequences[static_cast<std::size_t>(s)];  // (l_src, d_model)
        const index_t m = mem.extent(0);
        workspace::frame f(ws);
        auto k = ws.alloc_view<float, 2>({m, kvh * hd});
        auto v = ws.alloc_view<float, 2>({m, kvh * hd});
        k_.forward(mem, k, ws);
        v_.forward(mem, v, ws);
        st.cache.append(k.reshape<3>({m, kvh, hd}), v.reshape<3>({m, kvh, hd}));
      }
      if (r0 == r1) continue;
      attention::kv_run run[2];
      const int n = st.cache.segments(run);
      if (n != 1) throw range_error("cross-attention: the memory cache is not one run");
      attention::softmax_attention(tensor_view<const float, 3>(q3.slice(0, r0, r1)), run[0].k, run[0].v,
                                   att3.slice(0, r0, r1), params(false), ws);
    }
  }

  // att *= sigmoid(gate): gate is the second half of each head's q_proj columns.
  void apply_gate(tensor_view<const float, 2> qg, tensor_view<float, 2> att) const {
    const index_t rows = att.extent(0), h = opt_.n_heads, hd = opt_.head_dim;
    for (index_t r = 0; r < rows; ++r)
      for (index_t j = 0; j < h; ++j) {
        const float* g = &qg(r, j * 2 * hd + hd);
        float* o = &att(r, j * hd);
        for (index_t e = 0; e < hd; ++e) o[e] *= 1.f / (1.f + std::exp(-g[e]));
      }
  }

  linear q_, k_, v_, o_;
  attention_options opt_;
  attention_norms norms_;
  std::optional<tensor<float, 1>> alibi_;  // (n_heads)
};

}  // namespace layers
}  // namespace v0
}  // namespace tessera
