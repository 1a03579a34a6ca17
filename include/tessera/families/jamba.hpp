// tessera/families/jamba.hpp: JambaForCausalLM (transformers' Jamba) from a Hugging Face folder.
//
//   layer i: attention when i % attn_layer_period == attn_layer_offset, else Mamba (with the
//            dt/B/C RMSNorms of JambaMambaMixer); sparse MoE (top-k softmax router, weights not
//            renormalized) when i % expert_layer_period == expert_layer_offset, else a SwiGLU MLP.
//   model.embed_tokens, model.layers.{i}.{input_layernorm, mamba | self_attn, pre_ff_layernorm,
//   feed_forward}, model.final_layernorm, lm_head.
// Attention: GQA (num_key_value_heads), no positional encoding, scale 1/sqrt(head_dim), causal.
// Config fields read: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
// num_key_value_heads, hidden_act, rms_norm_eps, vocab_size, tie_word_embeddings,
// attn_layer_period/offset, expert_layer_period/offset, num_experts, num_experts_per_tok,
// mamba_d_state, mamba_d_conv, mamba_expand, mamba_dt_rank ("auto"), mamba_conv_bias,
// mamba_proj_bias, max_position_embeddings (default session length). router_aux_loss_coef,
// output_router_logits and use_mamba_kernels do not affect inference.
#pragma once

#include <filesystem>
#include <memory>

#include <tessera/io/config.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/models/hybrid.hpp>

namespace tessera {
inline namespace v0 {
namespace families {

inline models::hybrid_layout jamba_layout() {
  models::hybrid_layout n;  // the defaults are Jamba's names
  n.mamba_inner_norms = true;
  return n;
}

inline std::unique_ptr<models::hybrid_model> load_jamba(const model_config& cfg, std::shared_ptr<const io::weight_map> w) {
  if (cfg.family != "jamba") throw config_error(cfg.source + ": load_jamba got a '" + cfg.family + "' config");
  model_config c = cfg;
  c.sliding_window.reset();  // JambaAttention attends over the whole prefix
  const auto schedule = models::hybrid_schedule::periodic(cfg.n_layers, cfg.attn_layer_period, cfg.attn_layer_offset,
                                                          cfg.expert_layer_period, cfg.expert_layer_offset, 'M');
  // layers with num_experts == 1 use the dense MLP (transformers: layers_num_experts)
  auto s = schedule;
  if (cfg.n_experts <= 1)
    for (auto& c : s.ffns) c = 'F';
  return models::load_hybrid(c, s, jamba_layout(), std::move(w));
}

inline std::unique_ptr<models::hybrid_model> load_jamba(const std::filesystem::path& path) {
  return load_jamba(io::load_config(path), std::make_shared<const io::weight_map>(io::weight_map::open(path)));
}

}  // namespace families
}  // namespace v0
}  // namespace tessera
