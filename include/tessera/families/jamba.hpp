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

#include <tessera/families/family.hpp>
#include <tessera/families/hybrid.hpp>
#include <tessera/families/mamba.hpp>

namespace tessera {
inline namespace v0 {
namespace families {

inline hybrid_layout jamba_layout() {
  hybrid_layout n;  // the defaults are Jamba's names
  n.mamba_inner_norms = true;
  return n;
}

inline std::unique_ptr<hybrid_model> load_jamba(const model_config& cfg, std::shared_ptr<const io::weight_map> w) {
  if (cfg.family != "jamba") throw config_error(cfg.source + ": load_jamba got a '" + cfg.family + "' config");
  model_config c = cfg;
  c.sliding_window.reset();  // JambaAttention attends over the whole prefix
  const auto schedule = hybrid_schedule::periodic(cfg.n_layers, cfg.attn_layer_period, cfg.attn_layer_offset,
                                                          cfg.expert_layer_period, cfg.expert_layer_offset, 'M');
  // layers with num_experts == 1 use the dense MLP (transformers: layers_num_experts)
  auto s = schedule;
  if (cfg.n_experts <= 1)
    for (auto& c : s.ffns) c = 'F';
  return load_hybrid(c, s, jamba_layout(), std::move(w));
}

inline std::unique_ptr<hybrid_model> load_jamba(const std::filesystem::path& path) {
  return load_jamba(load_config(path), std::make_shared<const io::weight_map>(open_weights(path)));
}

/// config.json of JambaConfig (transformers 5 defaults).
inline void read_jamba_config(const io::json_fields& f, model_config& c) {
  c.vocab = f.get_int("vocab_size", 65536);
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", false);
  c.d_model = f.get_int("hidden_size", 4096);
  c.d_ff = f.get_int("intermediate_size", 14336);
  c.n_layers = f.get_int("num_hidden_layers", 32);
  c.n_heads = f.get_int("num_attention_heads", 32);
  if (c.n_heads <= 0) throw config_error(f.file() + ": field 'num_attention_heads' must be positive");
  c.n_kv_heads = f.get_int("num_key_value_heads", 8);
  c.head_dim = c.d_model / c.n_heads;
  c.hidden_act = f.get_string("hidden_act", "silu");
  c.norm_eps = f.get_float("rms_norm_eps", 1e-6);
  c.max_position = f.get_int("max_position_embeddings", 262144);
  if (auto w = f.opt_int("sliding_window")) c.sliding_window = *w;
  c.n_experts_per_tok = f.get_int("num_experts_per_tok", 2);
  c.n_experts = f.get_int("num_experts", 16);
  c.expert_layer_period = f.get_int("expert_layer_period", 2);
  c.expert_layer_offset = f.get_int("expert_layer_offset", 1);
  c.attn_layer_period = f.get_int("attn_layer_period", 8);
  c.attn_layer_offset = f.get_int("attn_layer_offset", 4);
  if (c.attn_layer_period <= 0 || c.expert_layer_period <= 0)
    throw config_error(f.file() + ": attn_layer_period and expert_layer_period must be positive");
  c.d_state = f.get_int("mamba_d_state", 16);
  c.d_conv = f.get_int("mamba_d_conv", 4);
  c.d_inner = f.get_int("mamba_expand", 2) * c.d_model;
  c.dt_rank = dt_rank_of(f, "mamba_dt_rank", c.d_model);
  c.conv_bias = f.get_bool("mamba_conv_bias", true);
  c.proj_bias = f.get_bool("mamba_proj_bias", false);
  config_fields::check_layer_count(c.n_layers, f.file());
  c.layer_schedule.clear();
  for (index_t i = 0; i < c.n_layers; ++i) c.layer_schedule += i % c.attn_layer_period == c.attn_layer_offset ? 'A' : 'M';
  c.bos_token_id = static_cast<std::int32_t>(f.get_int("bos_token_id", 1));
  c.eos_token_ids = f.json().contains("eos_token_id") ? f.int_list("eos_token_id") : std::vector<std::int32_t>{2};
  c.pad_token_id = static_cast<std::int32_t>(f.get_int("pad_token_id", 0));
}


#ifndef TESSERA_EXTERN_FAMILIES  // defined: one other translation unit registers the families (docs/architecture.md)
inline const bool jamba_registered = register_family({
    .name = "jamba",
    .model_types = {"jamba"},
    .architectures = {"JambaForCausalLM", "JambaModel"},
    .gguf_architectures = {},
    .read_hf = read_jamba_config,
    .read_gguf = {},
    .load = [](const model_config& c, std::shared_ptr<const io::weight_map> w) -> std::unique_ptr<language_model> {
      return load_jamba(c, std::move(w));
    },
});
#endif

}  // namespace families
}  // namespace v0
}  // namespace tessera
