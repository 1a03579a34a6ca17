// tessera/families/bert.hpp: BertModel (transformers' BERT), an encoder.
//
//   h = LayerNorm(word(ids) + position(0 .. l-1) + token_type(tt))      embeddings.*
//   for each layer:  h = LayerNorm(h + attention(h))                   bidirectional, post-norm
//                    h = LayerNorm(h + output(gelu(intermediate(h))))
//   pooler_output = tanh(pooler.dense(h[0]))                            per sequence
//
// Names: embeddings.{word,position,token_type}_embeddings, embeddings.LayerNorm,
// encoder.layer.{i}.attention.self.{query,key,value}, attention.output.{dense,LayerNorm},
// intermediate.dense, output.{dense,LayerNorm}, pooler.dense; a "bert." prefix when saved from a
// BertFor* head model. A batch is packed (no padding: each sequence attends to itself only), so
// a padded transformers batch equals its rows run alone.
// Config fields read: vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
// intermediate_size, hidden_act, max_position_embeddings, type_vocab_size, layer_norm_eps,
// pad_token_id, position_embedding_type (only "absolute"), is_decoder (must be false).
#pragma once

#include <memory>
#include <string>

#include <tessera/families/common.hpp>
#include <tessera/families/family.hpp>
#include <tessera/models/encoder.hpp>
#include <tessera/ops/activation.hpp>

namespace tessera {
inline namespace v0 {
namespace families {

using bert_layer = post_norm_encoder_layer;
using bert_model = models::encoder<bert_layer, ln>;

inline std::unique_ptr<text_encoder> load_bert(const model_config& c, std::shared_ptr<const io::weight_map> weights) {
  const io::weight_map& w = *weights;
  const std::string root = w.contains("bert.embeddings.word_embeddings.weight") ? "bert." : "";
  const auto act = ops::parse_activation(c.hidden_act);
  models::encoder_parts<bert_layer, ln> m;
  m.config = c;
  m.keep_alive = keep(weights);
  m.embed.tokens = layers::weight_matrix::load(w, root + "embeddings.word_embeddings.weight");
  m.embed.positions = layers::weight_matrix::load(w, root + "embeddings.position_embeddings.weight");
  if (w.contains(root + "embeddings.token_type_embeddings.weight"))
    m.embed.token_types = layers::weight_matrix::load(w, root + "embeddings.token_type_embeddings.weight");
  m.embed.norm = ln::load(w, root + "embeddings.LayerNorm", c.norm_eps);
  for (index_t i = 0; i < c.n_layers; ++i) {
    const std::string p = root + "encoder.layer." + std::to_string(i);
    bert_layer layer;
    auto& [attn, ffn] = layer.blocks;
    attn.sub = layers::attention_layer(layers::linear::load(w, p + ".attention.self.query"),
                                       layers::linear::load(w, p + ".attention.self.key"),
                                       layers::linear::load(w, p + ".attention.self.value"),
                                       layers::linear::load(w, p + ".attention.output.dense"),
                                       attention_options_of(c, i, /*rope=*/false));
    attn.norm = ln::load(w, p + ".attention.output.LayerNorm", c.norm_eps);
    ffn.sub = layers::mlp(layers::linear::load(w, p + ".intermediate.dense"), layers::linear::load(w, p + ".output.dense"), act);
    ffn.norm = ln::load(w, p + ".output.LayerNorm", c.norm_eps);
    m.layers.push_back(std::move(layer));
  }
  if (w.contains(root + "pooler.dense.weight")) m.pooler = layers::linear::load(w, root + "pooler.dense");
  return std::make_unique<bert_model>(std::move(m));
}

/// config.json of BertConfig (transformers 5 defaults).
inline void read_bert_config(const io::json_fields& f, model_config& c) {
  using namespace config_fields;
  read_dims(f, c, {.vocab = 30522, .d_model = 768, .n_layers = 12, .n_heads = 12});
  c.n_kv_heads = c.n_heads;
  c.head_dim = c.d_model / c.n_heads;
  if (c.head_dim * c.n_heads != c.d_model)
    throw config_error(f.file() + ": hidden_size " + std::to_string(c.d_model) + " is not a multiple of num_attention_heads " +
                       std::to_string(c.n_heads));
  c.d_ff = f.get_int("intermediate_size", 3072);
  c.hidden_act = f.get_string("hidden_act", "gelu");
  c.max_position = f.get_int("max_position_embeddings", 512);
  c.type_vocab = f.get_int("type_vocab_size", 2);
  c.norm_eps = f.get_float("layer_norm_eps", 1e-12);
  c.pad_token_id = static_cast<std::int32_t>(f.get_int("pad_token_id", 0));
  const std::string pe = f.get_string("position_embedding_type", "absolute");
  if (pe != "absolute")
    throw config_error(f.file() + ": position_embedding_type \"" + pe + "\" is not supported (supported: absolute)");
  if (f.get_bool("is_decoder", false)) throw config_error(f.file() + ": is_decoder BERT (a causal BERT) is not supported");
  c.attention_bias = c.attention_out_bias = c.mlp_bias = true;
  if (c.architecture.empty()) c.architecture = "BertModel";
}

#ifndef TESSERA_EXTERN_FAMILIES  // defined: one other translation unit registers the families (docs/architecture.md)
inline const bool bert_registered = register_family({
    .name = "bert",
    .model_types = {"bert"},
    .architectures = {"BertModel"},
    .gguf_architectures = {},
    .read_hf = read_bert_config,
    .read_gguf = {},
    .load = {},
    .load_encoder = load_bert,
});
#endif

}  // namespace families
}  // namespace v0
}  // namespace tessera
