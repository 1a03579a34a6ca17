// tessera/families/bart.hpp: BartForConditionalGeneration, an encoder-decoder.
//
//   encoder:  h = layernorm_embedding(shared(src) · s + positions(0 .. l-1 + 2))      s = √d_model if scale_embedding
//             each layer:  h = self_attn_layer_norm(h + self_attn(h))                 bidirectional
//                          h = final_layer_norm(h + fc2(act(fc1(h))))
//   decoder:  y = layernorm_embedding(shared(tgt) · s + positions(past .. + 2))
//             each layer:  y = self_attn_layer_norm(y + self_attn(y))                 causal, KV cache
//                          y = encoder_attn_layer_norm(y + encoder_attn(y, h))        cross: K/V of h once
//                          y = final_layer_norm(y + fc2(act(fc1(y))))
//   logits = lm_head(y) + final_logits_bias                                            lm_head tied to shared
//
// The encoder is models::encoder, the decoder models::causal_lm with the encoder attached: a
// session's encode(source) runs the encoder once; prefill / step then decode from
// decoder_start_token_id (models/causal_lm.hpp). Post-norm blocks throughout (layers/residual.hpp).
// Config fields read: vocab_size, d_model, encoder_layers, decoder_layers,
// encoder_attention_heads, decoder_attention_heads, encoder_ffn_dim, decoder_ffn_dim,
// activation_function, max_position_embeddings, scale_embedding, pad/bos/eos_token_id,
// decoder_start_token_id, forced_eos_token_id (generation only), tie_word_embeddings.
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include <tessera/families/common.hpp>
#include <tessera/families/family.hpp>
#include <tessera/models/encoder.hpp>
#include <tessera/ops/activation.hpp>

namespace tessera {
inline namespace v0 {
namespace families {

using bart_encoder_layer = post_norm_encoder_layer;
using bart_decoder_layer = layers::stack<layers::postnorm<ln, layers::attention_layer>,
                                         layers::postnorm<ln, layers::attention_layer>, layers::postnorm<ln, layers::mlp>>;
using bart_encoder = models::encoder<bart_encoder_layer, ln>;
using bart_model = models::causal_lm<bart_decoder_layer, ln>;

namespace detail {
/// `<prefix>.{q,k,v,out}_proj` (with biases) as an attention layer (BART's names).
inline layers::attention_layer bart_attention(const io::weight_map& w, const std::string& prefix, index_t n_heads,
                                              index_t d_model, bool cross) {
  layers::attention_options o;
  o.n_heads = o.n_kv_heads = n_heads;
  o.head_dim = d_model / n_heads;
  o.cross = cross;
  return layers::attention_layer(layers::linear::load(w, prefix + ".q_proj"), layers::linear::load(w, prefix + ".k_proj"),
                                 layers::linear::load(w, prefix + ".v_proj"), layers::linear::load(w, prefix + ".out_proj"), o);
}

/// The shared embedding table: `model.shared`, or a side's own copy when only that was saved.
inline layers::weight_matrix bart_shared(const io::weight_map& w) {
  for (const char* name : {"model.shared.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"})
    if (w.contains(name)) return layers::weight_matrix::load(w, name);
  return layers::weight_matrix::load(w, "model.shared.weight");  // names what is missing
}
}  // namespace detail

inline std::unique_ptr<language_model> load_bart(const model_config& c, std::shared_ptr<const io::weight_map> weights) {
  const io::weight_map& w = *weights;
  const auto act = ops::parse_activation(c.hidden_act);
  const float eps = 1e-5f;  // nn.LayerNorm's default: BART does not configure it
  const float scale = c.scale_embedding ? static_cast<float>(std::sqrt(static_cast<double>(c.d_model))) : 1.f;
  const auto shared = detail::bart_shared(w);
  auto ffn = [&](const std::string& p) {
    return layers::mlp(layers::linear::load(w, p + ".fc1"), layers::linear::load(w, p + ".fc2"), act);
  };
  // encoder
  models::encoder_parts<bart_encoder_layer, ln> e;
  e.config = c;
  e.config.n_layers = c.encoder_layers;
  e.config.n_heads = e.config.n_kv_heads = c.encoder_heads;
  e.config.d_ff = c.encoder_d_ff;
  e.keep_alive = keep(weights);
  e.embed.tokens = shared;
  e.embed.scale = scale;
  e.embed.positions = layers::weight_matrix::load(w, "model.encoder.embed_positions.weight");
  e.embed.position_offset = 2;
  e.embed.norm = ln::load(w, "model.encoder.layernorm_embedding", eps);
  for (index_t i = 0; i < c.encoder_layers; ++i) {
    const std::string p = "model.encoder.layers." + std::to_string(i);
    bart_encoder_layer layer;
    auto& [attn, mlp] = layer.blocks;
    attn.sub = detail::bart_attention(w, p + ".self_attn", c.encoder_heads, c.d_model, false);
    attn.norm = ln::load(w, p + ".self_attn_layer_norm", eps);
    mlp.sub = ffn(p);
    mlp.norm = ln::load(w, p + ".final_layer_norm", eps);
    e.layers.push_back(std::move(layer));
  }
  // decoder
  models::causal_lm_parts<bart_decoder_layer, ln> m;
  m.config = c;
  m.keep_alive = keep(weights);
  m.encoder = std::make_shared<bart_encoder>(std::move(e));
  m.embed.tokens = shared;
  m.embed.scale = scale;
  m.embed.positions = layers::weight_matrix::load(w, "model.decoder.embed_positions.weight");
  m.embed.position_offset = 2;
  m.embed.norm = ln::load(w, "model.decoder.layernorm_embedding", eps);
  m.trained_context = c.max_position;
  for (index_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "model.decoder.layers." + std::to_string(i);
    bart_decoder_layer layer;
    auto& [self, cross, mlp] = layer.blocks;
    self.sub = detail::bart_attention(w, p + ".self_attn", c.n_heads, c.d_model, false);
    self.norm = ln::load(w, p + ".self_attn_layer_norm", eps);
    cross.sub = detail::bart_attention(w, p + ".encoder_attn", c.n_heads, c.d_model, true);
    cross.norm = ln::load(w, p + ".encoder_attn_layer_norm", eps);
    mlp.sub = ffn(p);
    mlp.norm = ln::load(w, p + ".final_layer_norm", eps);
    m.layers.push_back(std::move(layer));
  }
  std::optional<tensor<float, 1>> bias;
  if (w.contains("final_logits_bias")) bias = tensor<float, 1>::copy_of(w.f32<2>("final_logits_bias")[0]);
  m.head.lm_head = c.tie_word_embeddings || !w.contains("lm_head.weight")
                       ? layers::linear::from(shared, std::move(bias))
                       : layers::linear::from(layers::weight_matrix::load(w, "lm_head.weight"), std::move(bias));
  return std::make_unique<bart_model>(std::move(m));
}

/// config.json of BartConfig (transformers 5 defaults).
inline void read_bart_config(const io::json_fields& f, model_config& c) {
  c.vocab = f.get_int("vocab_size", 50265);
  c.d_model = f.get_int("d_model", 1024);
  c.encoder_layers = f.get_int("encoder_layers", 12);
  c.n_layers = f.get_int("decoder_layers", 12);
  c.encoder_heads = f.get_int("encoder_attention_heads", 16);
  c.n_heads = c.n_kv_heads = f.get_int("decoder_attention_heads", 16);
  c.encoder_d_ff = f.get_int("encoder_ffn_dim", 4096);
  c.d_ff = f.get_int("decoder_ffn_dim", 4096);
  for (const auto& [name, heads] : {std::pair{"encoder_attention_heads", c.encoder_heads}, std::pair{"decoder_attention_heads", c.n_heads}})
    if (heads <= 0 || c.d_model % heads != 0)
      throw config_error(f.file() + ": " + name + " " + std::to_string(heads) + " must divide d_model " + std::to_string(c.d_model));
  if (c.encoder_layers <= 0) throw config_error(f.file() + ": field 'encoder_layers' must be positive");
  c.head_dim = c.d_model / c.n_heads;
  c.hidden_act = f.get_string("activation_function", "gelu");
  c.max_position = f.get_int("max_position_embeddings", 1024);
  c.scale_embedding = f.get_bool("scale_embedding", false);
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", true);
  c.attention_bias = c.attention_out_bias = c.mlp_bias = true;
  c.pad_token_id = static_cast<std::int32_t>(f.get_int("pad_token_id", 1));
  c.bos_token_id = static_cast<std::int32_t>(f.get_int("bos_token_id", 0));
  c.eos_token_ids = f.json().contains("eos_token_id") ? f.int_list("eos_token_id") : std::vector<std::int32_t>{2};
  c.decoder_start_token_id = static_cast<std::int32_t>(f.get_int("decoder_start_token_id", 2));
  if (c.architecture.empty()) c.architecture = "BartForConditionalGeneration";
}

#ifndef TESSERA_EXTERN_FAMILIES  // defined: one other translation unit registers the families (docs/architecture.md)
inline const bool bart_registered = register_family({
    .name = "bart",
    .model_types = {"bart"},
    .architectures = {"BartForConditionalGeneration", "BartModel"},
    .gguf_architectures = {},
    .read_hf = read_bart_config,
    .read_gguf = {},
    .load = load_bart,
    .load_encoder = {},
});
#endif

}  // namespace families
}  // namespace v0
}  // namespace tessera
