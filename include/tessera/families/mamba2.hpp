// tessera/families/mamba2.hpp: Mamba2ForCausalLM (transformers' Mamba-2) from a Hugging Face folder
// (or a GGUF file, through io::weight_map's name mapping).
//
//   h = embed(ids)
//   for each layer:  h += mixer(norm(h))            layers/mamba2_mixer.hpp (a hybrid of 'S' layers)
//   logits = lm_head(norm_f(h))                     untied by default
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

inline std::unique_ptr<hybrid_model> load_mamba2(const model_config& cfg, std::shared_ptr<const io::weight_map> w) {
  if (cfg.family != "mamba2") throw config_error(cfg.source + ": load_mamba2 got a '" + cfg.family + "' config");
  return load_mamba_stack(cfg, std::move(w), 'S');
}

inline std::unique_ptr<hybrid_model> load_mamba2(const std::filesystem::path& path) {
  return load_mamba2(load_config(path), std::make_shared<const io::weight_map>(open_weights(path)));
}

inline constexpr io::gguf_name_rule mamba2_gguf_layer[] = {
    {"attn_norm", "backbone.layers.{}.norm"},          {"ssm_in", "backbone.layers.{}.mixer.in_proj"},
    {"ssm_conv1d", "backbone.layers.{}.mixer.conv1d"}, {"ssm_a", "backbone.layers.{}.mixer.A_log"},
    {"ssm_d", "backbone.layers.{}.mixer.D"},           {"ssm_norm", "backbone.layers.{}.mixer.norm"},
    {"ssm_out", "backbone.layers.{}.mixer.out_proj"}};

/// blk.N.ssm_dt.bias is Mamba-2's dt_bias; the rest by the table.
inline std::string mamba2_gguf_name(std::string_view n) {
  if (n.starts_with("blk.") && n.ends_with(".ssm_dt.bias"))
    return "backbone.layers." + std::string(n.substr(4, n.size() - 4 - 12)) + ".mixer.dt_bias";
  return io::gguf_rename(mamba_gguf_global, mamba2_gguf_layer, n);
}

/// Mamba's changes, and A, D stored (n_heads, 1) and the grouped norm (groups, d / groups).
inline void fix_mamba2_gguf(const io::gguf_file& g, std::string_view n, io::gguf_tensor_fix& fix) {
  fix_mamba_gguf(g, n, fix);
  if ((n.ends_with(".ssm_a") || n.ends_with(".ssm_d")) && fix.extents.size() == 2 && fix.extents[1] == 1)
    fix.extents = {fix.extents[0]};
  if (n.ends_with(".ssm_norm.weight") && fix.extents.size() == 2) fix.extents = {fix.extents[0] * fix.extents[1]};
}

#ifndef TESSERA_EXTERN_FAMILIES  // defined: one other translation unit registers the families (docs/architecture.md)
inline const bool mamba2_registered = register_family({
    .name = "mamba2",
    .model_types = {"mamba2"},
    .architectures = {"Mamba2ForCausalLM", "Mamba2Model"},
    .gguf_architectures = {"mamba2"},
    .read_hf = [](const io::json_fields& f, model_config& c) { read_mamba_config(f, c, true); },
    .read_gguf = read_mamba_gguf,
    .gguf_name = mamba2_gguf_name,
    .gguf_fix = fix_mamba2_gguf,
    .load = [](const model_config& c, std::shared_ptr<const io::weight_map> w) -> std::unique_ptr<language_model> {
      return load_mamba2(c, std::move(w));
    },
});
#endif

}  // namespace families
}  // namespace v0
}  // namespace tessera
