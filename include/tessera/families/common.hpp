// tessera/families/common.hpp: what several families load the same way (written once).
//
//   decoder_layer        pre-norm attention + pre-norm gated MLP (Llama, Mistral, Qwen2, Qwen3, ...)
//   decoder_lm           causal_lm<decoder_layer, RMSNorm>
//   post_norm_encoder_layer  post-norm attention + post-norm MLP (BERT, the BART encoder)
//   attention_options_of the attention options a model_config implies for layer i
//   load_attention       q/k/v/o_proj under a prefix (biases when present) + optional q/k norms
//   lm_head_of           the LM head: the embedding table when tied (or lm_head.weight is absent)
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include <tessera/io/weights.hpp>
#include <tessera/layers/attention.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/layers/mlp.hpp>
#include <tessera/layers/norm.hpp>
#include <tessera/layers/residual.hpp>
#include <tessera/layers/rotary.hpp>
#include <tessera/models/causal_lm.hpp>
#include <tessera/models/model_config.hpp>

namespace tessera {
inline namespace v0 {
namespace families {

using rms = layers::rms_norm_layer;
using ln = layers::layer_norm_layer;
/// Pre-norm attention + pre-norm gated MLP: Llama, Mistral, Qwen2, Qwen3, ...
using decoder_layer = layers::stack<layers::prenorm<rms, layers::attention_layer>, layers::prenorm<rms, layers::gated_mlp>>;
using decoder_lm = models::causal_lm<decoder_layer, rms>;
/// Post-norm attention + post-norm MLP: BERT, the BART encoder.
using post_norm_encoder_layer = layers::stack<layers::postnorm<ln, layers::attention_layer>, layers::postnorm<ln, layers::mlp>>;

/// The checkpoint a model's weights view into, kept alive by the model.
inline std::shared_ptr<const void> keep(std::shared_ptr<const io::weight_map> w) {
  return std::shared_ptr<const void>(w, w.get());
}

/// Whether layer i of a config slides its attention window (layer_types, else sliding_window on all).
inline bool is_sliding(const model_config& c, index_t i) {
  if (!c.sliding_window) return false;
  if (c.layer_types.empty()) return true;
  return c.layer_types[static_cast<std::size_t>(i)] == "sliding_attention";
}

/// The attention options of layer i: heads, scale, window, RoPE (when `rope`).
inline layers::attention_options attention_options_of(const model_config& c, index_t i, bool rope = true) {
  layers::attention_options o;
  o.n_heads = c.n_heads;
  o.n_kv_heads = c.n_kv_heads;
  o.head_dim = c.head_dim;
  o.scale = c.attention_multiplier;
  if (is_sliding(c, i)) o.window = *c.sliding_window;
  if (rope) o.rope = layers::rope_frequencies(c.rope, c.head_dim, c.max_position, c.source);
  return o;
}

/// `<prefix>.{q,k,v,o}_proj` (biases when present, required when `qkv_bias` / `o_bias`), and
/// `<prefix>.{q,k}_norm` when the options ask for a qk norm.
inline layers::attention_layer load_attention(const io::weight_map& w, const std::string& prefix, layers::attention_options o,
                                        bool qkv_bias = false, bool o_bias = false) {
  layers::attention_norms norms;
  if (o.qk_norm != layers::qk_norm_kind::none) {
    norms.q_norm = tensor<float, 1>::copy_of(w.f32<1>(prefix + ".q_norm.weight"));
    norms.k_norm = tensor<float, 1>::copy_of(w.f32<1>(prefix + ".k_norm.weight"));
  }
  return layers::attention_layer(layers::linear::load(w, prefix + ".q_proj", qkv_bias),
                           layers::linear::load(w, prefix + ".k_proj", qkv_bias),
                           layers::linear::load(w, prefix + ".v_proj", qkv_bias),
                           layers::linear::load(w, prefix + ".o_proj", o_bias), std::move(o), std::move(norms));
}

/// The context a RoPE scaling stretches the trained one to (max_position · factor when scaled).
inline index_t scaled_context(const model_config& c) {
  if (c.max_position <= 0 || c.rope.type == rope_scaling_type::none || !(c.rope.factor > 1.f)) return c.max_position;
  const double n = std::ceil(static_cast<double>(c.max_position) * c.rope.factor);
  return n > 1e15 ? index_t{1} << 50 : static_cast<index_t>(n);
}

/// The LM head: the embedding table when the config ties them or the checkpoint has no
/// `<name>.weight`; else that weight.
inline layers::linear lm_head_of(const io::weight_map& w, const model_config& c, const layers::weight_matrix& embed,
                                 const std::string& name = "lm_head") {
  if (c.tie_word_embeddings || !w.contains(name + ".weight")) return layers::linear::from(embed);
  return layers::linear::load(w, name);
}

}  // namespace families
}  // namespace v0
}  // namespace tessera
