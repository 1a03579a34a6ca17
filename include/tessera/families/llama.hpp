// tessera/families/llama.hpp: LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM.
//
// The three share one block: RMSNorm → attention (RoPE, GQA) → residual → RMSNorm → SwiGLU MLP →
// residual. What differs is in the model_config that io::load_config fills:
//   Llama:   head_dim given separately, attention_bias (q/k/v/o), mlp_bias, rope scaling
//            (linear, dynamic, yarn, llama3, longrope), tied or untied head
//   Mistral: sliding_window on every layer (a ring cache of the window)
//   Qwen2:   q/k/v biases without an o bias, tied head in small models, sliding window on the
//            layers layer_types marks "sliding_attention"
// Weight names are Hugging Face's; GGUF files arrive renamed (and with q/k un-permuted) by io.
#pragma once

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

using llama_block = decoder_block<layers::rms_norm_layer, layers::gated_mlp>;
using llama_model = decoder<llama_block>;

inline std::unique_ptr<language_model> load_llama(const model_config& c, std::shared_ptr<const io::weight_map> weights) {
  const io::weight_map& w = *weights;
  decoder_weights<llama_block> d;
  d.config = c;
  d.checkpoint = weights;
  d.rope = layers::rope_frequencies(c);
  d.embed = layers::weight_matrix::load(w, "model.embed_tokens.weight");
  const auto act = ops::parse_activation(c.hidden_act);
  for (index_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i);
    layers::attention_shape shape{.n_heads = c.n_heads, .n_kv_heads = c.n_kv_heads, .head_dim = c.head_dim};
    shape.scale = c.attention_multiplier;
    const bool sliding = c.layer_types.empty() ? c.sliding_window.has_value()
                                               : c.layer_types[static_cast<std::size_t>(i)] == "sliding_attention";
    if (sliding && c.sliding_window) shape.window = *c.sliding_window;
    llama_block b;
    b.attn_norm = layers::rms_norm_layer::load(w, p + ".input_layernorm", c.norm_eps);
    b.attn = layers::attention_mixer(layers::linear::load(w, p + ".self_attn.q_proj", c.attention_bias),
                                     layers::linear::load(w, p + ".self_attn.k_proj", c.attention_bias),
                                     layers::linear::load(w, p + ".self_attn.v_proj", c.attention_bias),
                                     layers::linear::load(w, p + ".self_attn.o_proj", c.attention_out_bias), shape);
    b.mlp_norm = layers::rms_norm_layer::load(w, p + ".post_attention_layernorm", c.norm_eps);
    b.mlp = layers::gated_mlp(layers::linear::load(w, p + ".mlp.gate_proj", c.mlp_bias),
                              layers::linear::load(w, p + ".mlp.up_proj", c.mlp_bias),
                              layers::linear::load(w, p + ".mlp.down_proj", c.mlp_bias), act);
    d.blocks.push_back(std::move(b));
  }
  d.final_norm = layers::rms_norm_layer::load(w, "model.norm", c.norm_eps);
  d.lm_head = (c.tie_word_embeddings || !w.contains("lm_head.weight")) ? layers::linear::from(d.embed)
                                                                        : layers::linear::load(w, "lm_head");
  return std::make_unique<llama_model>(std::move(d));
}

}  // namespace families
}  // namespace v0
}  // namespace tessera
