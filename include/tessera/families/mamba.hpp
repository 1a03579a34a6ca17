// tessera/families/mamba.hpp: MambaForCausalLM (transformers' Mamba) from a Hugging Face folder or
// a llama.cpp GGUF file (its tensor names are mapped to these by io::weight_map).
//
//   backbone.embeddings.weight (vocab, d_model)   (older checkpoints: backbone.embedding.weight)
//   backbone.layers.{i}.norm                      RMSNorm (layer_norm_epsilon)
//   backbone.layers.{i}.mixer.*                   layers/mamba_mixer.hpp
//   backbone.norm_f, lm_head (tied to the embeddings when tie_word_embeddings, the default)
//
// Config fields read (io/config.hpp): hidden_size, intermediate_size (or expand · hidden_size),
// state_size, conv_kernel, time_step_rank ("auto" = ceil(hidden_size / 16)), use_conv_bias,
// use_bias, hidden_act, layer_norm_epsilon, vocab_size, tie_word_embeddings, num_hidden_layers.
// residual_in_fp32 changes nothing here (the residual stream is always f32);
// rescale_prenorm_residual, time_step_{min,max,floor,scale,init_scheme}, use_mambapy and
// use_associative_scan only matter for initialization or for the torch path chosen.
#pragma once

#include <filesystem>
#include <memory>

#include <tessera/io/config.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/models/hybrid.hpp>

namespace tessera {
inline namespace v0 {
namespace families {

inline models::hybrid_layout mamba_layout(const io::weight_map& w) {
  models::hybrid_layout n;
  n.embed = w.contains("backbone.embeddings.weight") || !w.contains("backbone.embedding.weight")
                ? "backbone.embeddings.weight"
                : "backbone.embedding.weight";
  n.mixer_norm = "backbone.layers.{}.norm";
  n.ssm = "backbone.layers.{}.mixer";
  n.final_norm = "backbone.norm_f";
  n.lm_head = "lm_head";
  return n;
}

/// A Mamba model from its config and weights (the model keeps the weights alive).
inline std::unique_ptr<models::hybrid_model> load_mamba(const model_config& cfg, std::shared_ptr<const io::weight_map> w) {
  if (cfg.family != "mamba") throw config_error(cfg.source + ": load_mamba got a '" + cfg.family + "' config");
  const auto schedule = models::hybrid_schedule::parse(std::string(static_cast<std::size_t>(cfg.n_layers), 'M'),
                                                       std::string(static_cast<std::size_t>(cfg.n_layers), '-'), cfg.n_layers);
  const auto names = mamba_layout(*w);  // before w is moved
  return models::load_hybrid(cfg, schedule, names, std::move(w));
}

/// From a Hugging Face folder (config.json + safetensors) or a .gguf file.
inline std::unique_ptr<models::hybrid_model> load_mamba(const std::filesystem::path& path) {
  return load_mamba(io::load_config(path), std::make_shared<const io::weight_map>(io::weight_map::open(path)));
}

}  // namespace families
}  // namespace v0
}  // namespace tessera
