// tessera/layers/attention_mixer.hpp: multi-head softmax attention with q/k/v/o projections,
// RoPE and a KV cache (the mixer of Llama, Mistral, Qwen2, GPT-2 blocks).
//
//   x:   (l, d_model)                the normalized residual stream of l new tokens
//   q:   (l, n_heads, head_dim)      = q_proj(x), rotated by RoPE at positions pos0 .. pos0 + l - 1
//   k,v: (l, n_kv_heads, head_dim)   = k_proj(x) (rotated), v_proj(x); appended to the cache
//   out: (l, d_model)                = o_proj(softmax(q·kᵀ · scale + mask) · v)
// GQA: n_heads % n_kv_heads == 0, the kernel indexes the shared kv head (no copies).
// The state is the layer's kv_cache: a linear cache of max_len tokens, or, for a sliding window,
// a ring of the window (memory flat however long the generation runs).
#pragma once

#include <optional>
#include <span>

#include <tessera/attention/kv_cache.hpp>
#include <tessera/attention/softmax_attention.hpp>
#include <tessera/attention/softmax_decode.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/layers/rotary.hpp>
#include <tessera/ops/rope.hpp>

namespace tessera {
inline namespace v0 {
namespace layers {

struct attention_shape {
  index_t n_heads = 0;
  index_t n_kv_heads = 0;
  index_t head_dim = 0;
  std::optional<index_t> window;  // sliding window (keys counted including the query itself)
  float scale = 0.f;              // 0: 1 / sqrt(head_dim)
  bool rope = true;               // rotate q and k (false: learned / no positions)
};

class attention_mixer {
 public:
  using state_type = attention::kv_cache;

  attention_mixer() = default;
  attention_mixer(linear q, linear k, linear v, linear o, attention_shape shape)
      : q_(std::move(q)), k_(std::move(k)), v_(std::move(v)), o_(std::move(o)), shape_(shape) {
    const auto [h, kvh, hd] = std::array{shape_.n_heads, shape_.n_kv_heads, shape_.head_dim};
    if (h < 1 || kvh < 1 || hd < 1 || h % kvh != 0)
      throw shape_error("attention_mixer: n_heads " + std::to_string(h) + " must be a positive multiple of n_kv_heads " +
                        std::to_string(kvh));
    expect_equal(q_.out_features(), h * hd, "attention_mixer: q_proj rows vs n_heads * head_dim");
    expect_equal(k_.out_features(), kvh * hd, "attention_mixer: k_proj rows vs n_kv_heads * head_dim");
    expect_equal(v_.out_features(), kvh * hd, "attention_mixer: v_proj rows vs n_kv_heads * head_dim");
    expect_equal(o_.in_features(), h * hd, "attention_mixer: o_proj columns vs n_heads * head_dim");
  }

  const attention_shape& shape() const noexcept { return shape_; }

  /// The only place the cache is sized.
  state_type make_state(index_t max_len) const {
    return state_type(max_len, shape_.n_kv_heads, shape_.head_dim, shape_.window);
  }

  std::size_t workspace_bytes(index_t max_rows) const {
    const index_t h = shape_.n_heads * shape_.head_dim, kv = shape_.n_kv_heads * shape_.head_dim;
    return 2 * workspace::bytes_for<float>(max_rows * h) + 2 * workspace::bytes_for<float>(max_rows * kv) +
           std::max({q_.workspace_bytes(), k_.workspace_bytes(), v_.workspace_bytes(), o_.workspace_bytes(),
                     attention::softmax_attention_workspace_bytes(shape_.n_heads, shape_.head_dim)});
  }

  // x: (l, d_model) of tokens at `positions`; out: (l, d_model). Appends the tokens to `cache`.
  void forward(tensor_view<const float, 2> x, tensor_view<const std::int32_t, 1> positions, const rope_state& rope,
               state_type& cache, tensor_view<float, 2> out, workspace& ws) const {
    workspace::frame frame(ws);
    const index_t l = x.extent(0);
    const auto [h, kvh, hd] = std::array{shape_.n_heads, shape_.n_kv_heads, shape_.head_dim};
    auto q = ws.alloc_view<float, 2>({l, h * hd});     // (l, n_heads * head_dim)
    auto k = ws.alloc_view<float, 2>({l, kvh * hd});   // (l, n_kv_heads * head_dim)
    auto v = ws.alloc_view<float, 2>({l, kvh * hd});
    auto att = ws.alloc_view<float, 2>({l, h * hd});   // (l, n_heads * head_dim)
    linear::forward_shared<3>(x, {&q_, &k_, &v_}, {q, k, v}, ws);
    auto q3 = q.reshape<3>({l, h, hd});
    auto k3 = k.reshape<3>({l, kvh, hd});
    auto v3 = v.reshape<3>({l, kvh, hd});
    auto att3 = att.reshape<3>({l, h, hd});
    if (shape_.rope) {
      const ops::rope_params rp{.mode = ops::rope_mode::neox, .attention_scaling = rope.attention_scaling};
      ops::rope(q3, positions, rope.view(), rp);
      ops::rope(k3, positions, rope.view(), rp);
    }
    const attention::attention_params ap{.scale = shape_.scale, .causal = true, .window = shape_.window};
    if (l == 1) {
      cache.append(k3, v3);
      attention::decode_attention(q3, cache, att3, ap, ws);
    } else {
      attention::prefill_attention(q3, k3, v3, cache, att3, ap, ws);
    }
    o_.forward(att, out, ws);
  }

 private:
  linear q_, k_, v_, o_;
  attention_shape shape_;
};

}  // namespace layers
}  // namespace v0
}  // namespace tessera
