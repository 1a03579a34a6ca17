// tessera/families/mamba2.hpp: Mamba2ForCausalLM (transformers' Mamba-2) from a Hugging Face folder
// (or a GGUF file, through io::weight_map's name mapping).
//
//   backbone.embeddings.weight, backbone.layers.{i}.norm, backbone.layers.{i}.mixer.*
//   (layers/mamba2_mixer.hpp), backbone.norm_f, lm_head (untied by default).
//
// Config fields read: hidden_size, expand, num_heads, head_dim, state_size, n_groups, conv_kernel,
// chunk_size, time_step_limit (may hold {"__float__": "Infinity"}), use_conv_bias, use_bias,
// hidden_act, layer_norm_epsilon, vocab_size, tie_word_embeddings, num_hidden_layers.
// Like transformers 5.17, the gated norm is always gate-then-normalize over the whole d_inner row:
// norm_before_gate and rms_norm are not read by Mamba2Mixer (documented in docs/ssm_models.md).
// time_step_rank is unused by Mamba-2.
#pragma once

#include <filesystem>
#include <memory>

#include <tessera/families/mamba.hpp>

namespace tessera {
inline namespace v0 {
namespace families {

inline std::unique_ptr<models::hybrid_model> load_mamba2(const model_config& cfg, std::shared_ptr<const io::weight_map> w) {
  if (cfg.family != "mamba2") throw config_error(cfg.source + ": load_mamba2 got a '" + cfg.family + "' config");
  const auto schedule = models::hybrid_schedule::parse(std::string(static_cast<std::size_t>(cfg.n_layers), 'S'),
                                                       std::string(static_cast<std::size_t>(cfg.n_layers), '-'), cfg.n_layers);
  const auto names = mamba_layout(*w);  // before w is moved
  return models::load_hybrid(cfg, schedule, names, std::move(w));
}

inline std::unique_ptr<models::hybrid_model> load_mamba2(const std::filesystem::path& path) {
  return load_mamba2(io::load_config(path), std::make_shared<const io::weight_map>(io::weight_map::open(path)));
}

}  // namespace families
}  // namespace v0
}  // namespace tessera
