// tessera/families/mamba.hpp: MambaForCausalLM (transformers' Mamba) from a Hugging Face folder or
// a llama.cpp GGUF file (its tensor names are mapped to these by io::weight_map).
//
//   h = embed(ids)
//   for each layer:  h += mixer(norm(h))            layers/mamba_mixer.hpp (a hybrid of 'M' layers)
//   logits = lm_head(norm_f(h))
//
//   backbone.embeddings.weight (vocab, d_model)   (older checkpoints: backbone.embedding.weight)
//   backbone.layers.{i}.norm                      RMSNorm (layer_norm_epsilon)
//   backbone.layers.{i}.mixer.*                   layers/mamba_mixer.hpp
//   backbone.norm_f, lm_head (tied to the embeddings when tie_word_embeddings, the default)
//
// Config fields read: hidden_size, intermediate_size (or expand · hidden_size), state_size,
// conv_kernel, time_step_rank ("auto" = ceil(hidden_size / 16)), use_conv_bias, use_bias,
// hidden_act, layer_norm_epsilon, vocab_size, tie_word_embeddings, num_hidden_layers.
// residual_in_fp32 changes nothing here (the residual stream is always f32);
// rescale_prenorm_residual, time_step_{min,max,floor,scale,init_scheme}, use_mambapy and
// use_associative_scan only matter for initialization or for the torch path chosen.
#pragma once

#include <filesystem>
#include <memory>

#include <tessera/families/family.hpp>
#include <tessera/families/hybrid.hpp>

namespace tessera {
inline namespace v0 {
namespace families {

inline hybrid_layout mamba_layout(const io::weight_map& w) {
  hybrid_layout n;
  n.embed = w.contains("backbone.embeddings.weight") || !w.contains("backbone.embedding.weight")
                ? "backbone.embeddings.weight"
                : "backbone.embedding.weight";
  n.mixer_norm = "backbone.layers.{}.norm";
  n.ssm = "backbone.layers.{}.mixer";
  n.final_norm = "backbone.norm_f";
  n.lm_head = "lm_head";
  return n;
}

/// A Mamba (kind 'M') or Mamba-2 (kind 'S') model from its config and weights.
inline std::unique_ptr<hybrid_model> load_mamba_stack(const model_config& cfg, std::shared_ptr<const io::weight_map> w,
                                                     char kind) {
  const auto schedule = hybrid_schedule::parse(std::string(static_cast<std::size_t>(cfg.n_layers), kind),
                                               std::string(static_cast<std::size_t>(cfg.n_layers), '-'), cfg.n_layers);
  const auto names = mamba_layout(*w);  // before w is moved
  return load_hybrid(cfg, schedule, names, std::move(w));
}

/// A Mamba model from its config and weights (the model keeps the weights alive).
inline std::unique_ptr<hybrid_model> load_mamba(const model_config& cfg, std::shared_ptr<const io::weight_map> w) {
  if (cfg.family != "mamba") throw config_error(cfg.source + ": load_mamba got a '" + cfg.family + "' config");
  return load_mamba_stack(cfg, std::move(w), 'M');
}

/// From a Hugging Face folder (config.json + safetensors) or a .gguf file.
inline std::unique_ptr<hybrid_model> load_mamba(const std::filesystem::path& path) {
  return load_mamba(load_config(path), std::make_shared<const io::weight_map>(open_weights(path)));
}

inline index_t dt_rank_of(const io::json_fields& f, const std::string& key, index_t d_model) {
  const auto* v = f.find(key);
  if (!v || (v->is_string() && v->get<std::string>() == "auto")) return (d_model + 15) / 16;
  if (!v->is_number_integer()) f.wrong(key, *v, "an integer or \"auto\"");
  return v->get<index_t>();
}

/// config.json of MambaConfig (v2 = false) or Mamba2Config (transformers 5 defaults).
inline void read_mamba_config(const io::json_fields& f, model_config& c, bool v2) {
  c.vocab = f.get_int("vocab_size", v2 ? 32768 : 50280);
  c.d_model = f.get_int("hidden_size", v2 ? 4096 : 768);
  c.d_state = f.get_int("state_size", v2 ? 128 : 16);
  c.n_layers = f.get_int("num_hidden_layers", v2 ? 64 : 32);
  c.norm_eps = f.get_float("layer_norm_epsilon", 1e-5);
  const index_t expand = f.get_int("expand", 2);
  c.d_inner = f.get_int("intermediate_size", expand * c.d_model);
  if (v2) c.d_inner = expand * c.d_model;  // Mamba2Config has no intermediate_size
  c.d_conv = f.get_int("conv_kernel", 4);
  c.proj_bias = f.get_bool("use_bias", false);
  c.conv_bias = f.get_bool("use_conv_bias", true);
  c.hidden_act = f.get_string("hidden_act", "silu");
  c.residual_in_fp32 = f.get_bool("residual_in_fp32", true);
  c.dt_rank = dt_rank_of(f, "time_step_rank", c.d_model);
  c.time_step_min = f.get_float("time_step_min", 0.001);
  c.time_step_max = f.get_float("time_step_max", 0.1);
  c.time_step_floor = f.get_float("time_step_floor", 1e-4);
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", !v2);
  if (v2) {
    c.ssm_n_heads = f.get_int("num_heads", 128);
    c.ssm_head_dim = f.get_int("head_dim", 64);
    c.n_groups = f.get_int("n_groups", 8);
    c.chunk = f.get_int("chunk_size", 256);
    c.norm_before_gate = f.get_bool("norm_before_gate", false);
    if (const auto* lim = f.find("time_step_limit")) {
      if (!lim->is_array() || lim->size() != 2) f.wrong("time_step_limit", *lim, "a pair of numbers");
      auto lo = io::json_fields::as_number((*lim)[0]), hi = io::json_fields::as_number((*lim)[1]);
      if (!lo || !hi) f.wrong("time_step_limit", *lim, "a pair of numbers");
      c.time_step_limit_lo = static_cast<float>(*lo);
      c.time_step_limit_hi = static_cast<float>(*hi);
    } else {
      c.time_step_limit_lo = 0.f;
      c.time_step_limit_hi = std::numeric_limits<float>::infinity();
    }
    if (c.ssm_n_heads * c.ssm_head_dim != c.d_inner)
      throw config_error(f.file() + ": num_heads x head_dim = " + std::to_string(c.ssm_n_heads * c.ssm_head_dim) +
                         " differs from expand x hidden_size = " + std::to_string(c.d_inner));
  }
  c.bos_token_id = static_cast<std::int32_t>(f.get_int("bos_token_id", 0));
  c.eos_token_ids = f.json().contains("eos_token_id") ? f.int_list("eos_token_id") : std::vector<std::int32_t>{v2 ? 2 : 0};
  c.pad_token_id = static_cast<std::int32_t>(f.get_int("pad_token_id", v2 ? 1 : 0));
  config_fields::check_layer_count(c.n_layers, f.file());
  c.layer_schedule.assign(static_cast<std::size_t>(c.n_layers), 'M');
}


/// GGUF metadata of llama.cpp's mamba and mamba2 architectures.
inline void read_mamba_gguf(const io::gguf_file& g, model_config& c) {
  const bool v2 = c.family == "mamba2";
  const gguf_keys k{g, c.family + "."};
  c.architecture = v2 ? "Mamba2ForCausalLM" : "MambaForCausalLM";
  c.d_conv = k.req("ssm.conv_kernel");
  c.d_inner = k.req("ssm.inner_size");
  c.d_state = k.req("ssm.state_size");
  c.dt_rank = k.req("ssm.time_step_rank");
  // FalconMamba GGUFs use arch "mamba" with weightless RMSNorms on dt, B and C: refuse them
  // rather than run them as plain Mamba.
  if (k.optb("ssm.dt_b_c_rms").value_or(false))
    throw config_error(g.path() + ": " + c.family + ".ssm.dt_b_c_rms is true (FalconMamba): not supported; "
                       "supported GGUF architectures: " + io::detail::join(supported_gguf_architectures()));
  c.norm_eps = static_cast<float>(k.optf("attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.conv_bias = g.find_tensor("blk.0.ssm_conv1d.bias") != nullptr;
  c.proj_bias = g.find_tensor("blk.0.ssm_in.bias") != nullptr;
  if (v2) {
    c.n_groups = k.opt("ssm.group_count").value_or(1);
    c.ssm_n_heads = c.dt_rank;
    c.ssm_head_dim = c.ssm_n_heads > 0 ? c.d_inner / c.ssm_n_heads : 0;
    c.time_step_limit_hi = std::numeric_limits<float>::infinity();
  }
  config_fields::check_layer_count(c.n_layers, g.path());
  c.layer_schedule.assign(static_cast<std::size_t>(c.n_layers), 'M');
}

inline constexpr io::gguf_name_rule mamba_gguf_global[] = {
    {"token_embd", "backbone.embeddings"}, {"output_norm", "backbone.norm_f"}, {"output", "lm_head"}};
inline constexpr io::gguf_name_rule mamba_gguf_layer[] = {
    {"attn_norm", "backbone.layers.{}.norm"},          {"ssm_in", "backbone.layers.{}.mixer.in_proj"},
    {"ssm_conv1d", "backbone.layers.{}.mixer.conv1d"}, {"ssm_x", "backbone.layers.{}.mixer.x_proj"},
    {"ssm_dt", "backbone.layers.{}.mixer.dt_proj"},    {"ssm_a", "backbone.layers.{}.mixer.A_log"},
    {"ssm_d", "backbone.layers.{}.mixer.D"},           {"ssm_out", "backbone.layers.{}.mixer.out_proj"}};

/// convert_hf_to_gguf.py stores A = -exp(A_log) (read back as log(-A)) and conv1d as (d, k)
/// (HF: (d, 1, k)).
inline void fix_mamba_gguf(const io::gguf_file&, std::string_view n, io::gguf_tensor_fix& fix) {
  if (n.ends_with(".ssm_a")) fix.transform = io::weight_transform::log_neg;
  if (n.ends_with(".ssm_conv1d.weight") && fix.extents.size() == 2) fix.extents = {fix.extents[0], 1, fix.extents[1]};
}

#ifndef TESSERA_EXTERN_FAMILIES  // defined: one other translation unit registers the families (docs/architecture.md)
inline const bool mamba_registered = register_family({
    .name = "mamba",
    .model_types = {"mamba"},
    .architectures = {"MambaForCausalLM", "MambaModel"},
    .gguf_architectures = {"mamba"},
    .read_hf = [](const io::json_fields& f, model_config& c) { read_mamba_config(f, c, false); },
    .read_gguf = read_mamba_gguf,
    .gguf_name = [](std::string_view n) { return io::gguf_rename(mamba_gguf_global, mamba_gguf_layer, n); },
    .gguf_fix = fix_mamba_gguf,
    .load = [](const model_config& c, std::shared_ptr<const io::weight_map> w) -> std::unique_ptr<language_model> {
      return load_mamba(c, std::move(w));
    },
});
#endif

}  // namespace families
}  // namespace v0
}  // namespace tessera
