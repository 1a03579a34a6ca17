// tessera/families/gpt2.hpp: GPT2LMHeadModel.
//
// LayerNorm → attention (fused c_attn, learned absolute positions, no RoPE) → residual →
// LayerNorm → MLP (c_fc, gelu_new, c_proj) → residual; final ln_f; head tied to wte.
// GPT-2's Conv1D stores weights (in, out): they are transposed once at load into the nn.Linear
// (out, in) layout, keeping their dtype. scale_attn_weights, scale_attn_by_inverse_layer_idx,
// layer_norm_epsilon, n_inner and activation_function are read from the config.
// Names: `transformer.h.0.attn.c_attn.weight` (save_pretrained) or `h.0.attn.c_attn.weight` (hub).
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include <tessera/io/weights.hpp>
#include <tessera/layers/attention_mixer.hpp>
#include <tessera/layers/mlp.hpp>
#include <tessera/layers/norm.hpp>
#include <tessera/models/decoder.hpp>
#include <tessera/ops/activation.hpp>

namespace tessera {
inline namespace v0 {
namespace families {

using gpt2_block = decoder_block<layers::layer_norm_layer, layers::mlp>;
using gpt2_model = decoder<gpt2_block>;

namespace detail {
/// (in, out) Conv1D weight → owned (out, in) matrix of the same dtype, rows [row0, row0 + rows).
inline layers::weight_matrix conv1d_transposed(const io::weight_map& w, const std::string& name,
                                              std::deque<owned_matrix>& owned) {
  const auto& info = w.info(name);
  if (info.extents.size() != 2)
    throw shape_error("weight '" + name + "' in " + info.file + ": expected 2 dimensions");
  auto transpose = [&](auto src) -> layers::weight_matrix {
    using T = typename decltype(src)::value_type;
    const auto [in, out] = src.extents();
    tensor<T, 2> t({out, in});
    for (index_t i = 0; i < in; ++i)
      for (index_t o = 0; o < out; ++o) t(o, i) = src(i, o);
    owned.emplace_back(std::move(t));
    return layers::weight_matrix(std::get<tensor<T, 2>>(owned.back()).cview());
  };
  if (info.type == dtype::f16) return transpose(w.view<f16, 2>(name));
  if (info.type == dtype::bf16) return transpose(w.view<bf16, 2>(name));
  return transpose(w.f32<2>(name));
}

inline layers::weight_matrix row_slice(const layers::weight_matrix& m, index_t r0, index_t r1) {
  return std::visit([&](auto& v) { return layers::weight_matrix(v.slice(0, r0, r1)); }, m.view());
}
}  // namespace detail

inline std::unique_ptr<language_model> load_gpt2(const model_config& c, std::shared_ptr<const io::weight_map> weights) {
  const io::weight_map& w = *weights;
  const std::string root = w.contains("transformer.wte.weight") ? "transformer." : "";
  decoder_weights<gpt2_block> d;
  d.config = c;
  d.checkpoint = weights;
  d.embed = layers::weight_matrix::load(w, root + "wte.weight");
  d.pos_embed = layers::weight_matrix::load(w, root + "wpe.weight");
  const auto act = ops::parse_activation(c.hidden_act);
  const index_t dm = c.d_model;
  for (index_t i = 0; i < c.n_layers; ++i) {
    const std::string p = root + "h." + std::to_string(i);
    float scale = c.scale_attn_weights ? 1.f / std::sqrt(static_cast<float>(c.head_dim)) : 1.f;
    if (c.scale_attn_by_inverse_layer_idx) scale /= static_cast<float>(i + 1);
    const layers::attention_shape shape{.n_heads = c.n_heads, .n_kv_heads = c.n_heads, .head_dim = c.head_dim,
                                        .scale = scale, .rope = false};
    // c_attn: (d_model, 3 d_model) → q, k, v row blocks of the transposed (3 d_model, d_model)
    const auto qkv = detail::conv1d_transposed(w, p + ".attn.c_attn.weight", d.owned);
    expect_equal(qkv.rows(), 3 * dm, (p + ".attn.c_attn.weight: output features vs 3 * n_embd").c_str());
    const auto qkv_bias = w.f32<1>(p + ".attn.c_attn.bias");
    auto bias_part = [&](index_t k) { return tensor<float, 1>::copy_of(qkv_bias.slice(0, k * dm, (k + 1) * dm)); };
    gpt2_block b;
    b.attn_norm = layers::layer_norm_layer::load(w, p + ".ln_1", c.norm_eps);
    b.attn = layers::attention_mixer(
        layers::linear::from(detail::row_slice(qkv, 0, dm), bias_part(0)),
        layers::linear::from(detail::row_slice(qkv, dm, 2 * dm), bias_part(1)),
        layers::linear::from(detail::row_slice(qkv, 2 * dm, 3 * dm), bias_part(2)),
        layers::linear::from(detail::conv1d_transposed(w, p + ".attn.c_proj.weight", d.owned),
                             tensor<float, 1>::copy_of(w.f32<1>(p + ".attn.c_proj.bias"))),
        shape);
    b.mlp_norm = layers::layer_norm_layer::load(w, p + ".ln_2", c.norm_eps);
    b.mlp = layers::mlp(layers::linear::from(detail::conv1d_transposed(w, p + ".mlp.c_fc.weight", d.owned),
                                             tensor<float, 1>::copy_of(w.f32<1>(p + ".mlp.c_fc.bias"))),
                        layers::linear::from(detail::conv1d_transposed(w, p + ".mlp.c_proj.weight", d.owned),
                                             tensor<float, 1>::copy_of(w.f32<1>(p + ".mlp.c_proj.bias"))),
                        act);
    d.blocks.push_back(std::move(b));
  }
  d.final_norm = layers::layer_norm_layer::load(w, root + "ln_f", c.norm_eps);
  d.lm_head = w.contains("lm_head.weight") && !c.tie_word_embeddings ? layers::linear::load(w, "lm_head")
                                                                      : layers::linear::from(d.embed);
  return std::make_unique<gpt2_model>(std::move(d));
}

}  // namespace families
}  // namespace v0
}  // namespace tessera
