// tessera/io/config.hpp: config.json / generation_config.json / GGUF metadata → model_config,
// and the checkpoint summary `tessera info` prints.
//
// load_config(folder_or_gguf) fills one model_config for the supported families (llama, mistral,
// qwen2, gpt2, mamba, mamba2, jamba). Absent fields take transformers' defaults (the config
// classes configuration_<family>.py of transformers 5); rope parameters are read from
// transformers 5's `rope_parameters` and from the older top-level `rope_theta` + `rope_scaling`.
// JSON null counts as absent. A field of the wrong type, or a missing required one, is a
// config_error naming the field and the file; an unknown model_type or architecture is a
// config_error listing the supported ones.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <tessera/config.hpp>
#include <tessera/core/error.hpp>
#include <tessera/io/gguf.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/models/model_config.hpp>

namespace tessera {
inline namespace v0 {
namespace io {

/// model_type values load_config understands.
inline const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> v = {"llama", "mistral", "qwen2", "gpt2", "mamba", "mamba2", "jamba"};
  return v;
}

/// architectures[0] values load_config understands.
inline const std::vector<std::string>& supported_architectures() {
  static const std::vector<std::string> v = {
      "LlamaForCausalLM", "LlamaModel",      "MistralForCausalLM", "MistralModel",  "Qwen2ForCausalLM",
      "Qwen2Model",       "GPT2LMHeadModel", "GPT2Model",          "MambaForCausalLM", "MambaModel",
      "Mamba2ForCausalLM", "Mamba2Model",    "JambaForCausalLM",   "JambaModel"};
  return v;
}

namespace detail {

inline std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

inline const char* json_type(const nlohmann::json& j) { return j.type_name(); }

/// Typed access to one JSON object; errors name the file and the field.
class json_fields {
 public:
  json_fields(const nlohmann::json& j, std::string file) : j_(j), file_(std::move(file)) {}

  /// The value, or nullptr when absent or null.
  const nlohmann::json* find(const std::string& key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  bool has(const std::string& key) const { return find(key) != nullptr; }

  [[noreturn]] void wrong(const std::string& key, const nlohmann::json& v, const char* want) const {
    throw config_error(file_ + ": field '" + key + "' has type " + json_type(v) + ", expected " + want);
  }
  [[noreturn]] void missing(const std::string& key) const {
    throw config_error(file_ + ": required field '" + key + "' is missing");
  }

  static std::optional<double> as_number(const nlohmann::json& v) {
    if (v.is_number()) return v.get<double>();
    // transformers writes non-finite floats as {"__float__": "Infinity"}
    if (v.is_object() && v.contains("__float__") && v["__float__"].is_string()) {
      const std::string s = v["__float__"].get<std::string>();
      if (s == "Infinity" || s == "inf") return std::numeric_limits<double>::infinity();
      if (s == "-Infinity" || s == "-inf") return -std::numeric_limits<double>::infinity();
      if (s == "NaN" || s == "nan") return std::numeric_limits<double>::quiet_NaN();
    }
    return std::nullopt;
  }

  std::optional<std::int64_t> opt_int(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_number_integer()) return v->get<std::int64_t>();
    if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>()) return static_cast<std::int64_t>(v->get<double>());
    wrong(key, *v, "an integer");
  }
  std::optional<double> opt_float(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (auto d = as_number(*v)) return d;
    wrong(key, *v, "a number");
  }
  std::optional<bool> opt_bool(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) wrong(key, *v, "a boolean");
    return v->get<bool>();
  }
  std::optional<std::string> opt_string(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) wrong(key, *v, "a string");
    return v->get<std::string>();
  }

  index_t get_int(const std::string& key, index_t def) const { return static_cast<index_t>(opt_int(key).value_or(def)); }
  index_t req_int(const std::string& key) const {
    if (auto v = opt_int(key)) return static_cast<index_t>(*v);
    missing(key);
  }
  float get_float(const std::string& key, double def) const { return static_cast<float>(opt_float(key).value_or(def)); }
  bool get_bool(const std::string& key, bool def) const { return opt_bool(key).value_or(def); }
  std::string get_string(const std::string& key, const std::string& def) const { return opt_string(key).value_or(def); }

  /// An int or a list of ints (eos_token_id).
  std::vector<std::int32_t> int_list(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return {};
    std::vector<std::int32_t> out;
    if (v->is_number_integer()) {
      out.push_back(v->get<std::int32_t>());
    } else if (v->is_array()) {
      for (const auto& x : *v) {
        if (!x.is_number_integer()) wrong(key, *v, "an integer or a list of integers");
        out.push_back(x.get<std::int32_t>());
      }
    } else {
      wrong(key, *v, "an integer or a list of integers");
    }
    return out;
  }

  std::vector<std::string> string_list(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return {};
    if (!v->is_array()) wrong(key, *v, "a list of strings");
    std::vector<std::string> out;
    for (const auto& x : *v) {
      if (!x.is_string()) wrong(key, *v, "a list of strings");
      out.push_back(x.get<std::string>());
    }
    return out;
  }

  std::vector<float> float_list(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return {};
    if (!v->is_array()) wrong(key, *v, "a list of numbers");
    std::vector<float> out;
    for (const auto& x : *v) {
      auto d = as_number(x);
      if (!d) wrong(key, *v, "a list of numbers");
      out.push_back(static_cast<float>(*d));
    }
    return out;
  }

  const nlohmann::json& json() const noexcept { return j_; }
  const std::string& file() const noexcept { return file_; }

 private:
  const nlohmann::json& j_;
  std::string file_;
};

inline nlohmann::json read_json_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw io_error(p.string() + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw config_error(p.string() + ": not valid JSON: " + e.what());
  }
}

inline rope_scaling_type parse_rope_type(const std::string& t, const std::string& file) {
  if (t == "default" || t.empty()) return rope_scaling_type::none;
  if (t == "linear") return rope_scaling_type::linear;
  if (t == "dynamic") return rope_scaling_type::dynamic;
  if (t == "yarn") return rope_scaling_type::yarn;
  if (t == "llama3") return rope_scaling_type::llama3;
  if (t == "longrope" || t == "su") return rope_scaling_type::longrope;
  throw config_error(file + ": field 'rope_type' is \"" + t +
                     "\", supported: default, linear, dynamic, yarn, llama3, longrope");
}

/// RoPE from rope_parameters (transformers 5) or rope_theta + rope_scaling (older).
inline void read_rope(const json_fields& f, model_config& c, double default_theta) {
  c.rope.theta = f.get_float("rope_theta", default_theta);
  c.rope.partial_rotary_factor = f.get_float("partial_rotary_factor", 1.0);
  const nlohmann::json* params = f.find("rope_parameters");
  const char* params_key = "rope_parameters";
  if (!params) {
    params = f.find("rope_scaling");
    params_key = "rope_scaling";
  }
  if (!params) return;
  if (!params->is_object()) f.wrong(params_key, *params, "an object");
  json_fields p(*params, f.file() + " (" + params_key + ")");
  // transformers 5 may nest per-layer-type parameters ({"full_attention": {...}}); take the first.
  if (!p.has("rope_type") && !p.has("type") && !p.has("rope_theta") && !params->empty() && params->begin()->is_object()) {
    model_config tmp = c;
    const nlohmann::json wrapper = {{"rope_parameters", *params->begin()}};
    json_fields w(wrapper, f.file());
    read_rope(w, tmp, c.rope.theta);
    c.rope = tmp.rope;
    return;
  }
  c.rope.theta = p.get_float("rope_theta", c.rope.theta);
  c.rope.partial_rotary_factor = p.get_float("partial_rotary_factor", c.rope.partial_rotary_factor);
  const std::string type = p.opt_string("rope_type").value_or(p.get_string("type", "default"));
  c.rope.type = parse_rope_type(type, p.file());
  c.rope.factor = p.get_float("factor", 1.0);
  c.rope.original_max_position = p.get_int("original_max_position_embeddings", 0);
  c.rope.low_freq_factor = p.get_float("low_freq_factor", 1.0);
  c.rope.high_freq_factor = p.get_float("high_freq_factor", 4.0);
  c.rope.beta_fast = p.get_float("beta_fast", 32.0);
  c.rope.beta_slow = p.get_float("beta_slow", 1.0);
  if (auto v = p.opt_float("mscale")) c.rope.mscale = static_cast<float>(*v);
  if (auto v = p.opt_float("mscale_all_dim")) c.rope.mscale_all_dim = static_cast<float>(*v);
  if (auto v = p.opt_float("attention_factor")) c.rope.attention_factor = static_cast<float>(*v);
  c.rope.truncate = p.get_bool("truncate", true);
  c.rope.long_factor = p.float_list("long_factor");
  c.rope.short_factor = p.float_list("short_factor");
  if ((c.rope.type == rope_scaling_type::linear || c.rope.type == rope_scaling_type::dynamic ||
       c.rope.type == rope_scaling_type::yarn || c.rope.type == rope_scaling_type::llama3) &&
      !p.has("factor"))
    throw config_error(p.file() + ": required field 'factor' is missing for rope_type " + type);
}

inline void check_positive(const model_config& c, const std::string& file) {
  auto need = [&](index_t v, const char* name) {
    if (v <= 0) throw config_error(file + ": field '" + name + "' must be positive, got " + std::to_string(v));
  };
  need(c.vocab, "vocab_size");
  need(c.d_model, "hidden_size");
  need(c.n_layers, "num_hidden_layers");
  if (c.n_heads > 0) {
    need(c.n_kv_heads, "num_key_value_heads");
    need(c.head_dim, "head_dim");
    if (c.n_heads % c.n_kv_heads != 0)
      throw config_error(file + ": num_attention_heads " + std::to_string(c.n_heads) +
                         " is not a multiple of num_key_value_heads " + std::to_string(c.n_kv_heads));
  }
}

/// Attention dims shared by the decoder families.
inline void read_attention_dims(const json_fields& f, model_config& c, index_t def_heads) {
  c.n_heads = f.get_int("num_attention_heads", def_heads);
  if (c.n_heads <= 0) throw config_error(f.file() + ": field 'num_attention_heads' must be positive");
  c.n_kv_heads = f.get_int("num_key_value_heads", c.n_heads);
  c.head_dim = f.get_int("head_dim", c.d_model / c.n_heads);
}

inline void read_llama_like(const json_fields& f, model_config& c) {
  const std::string& t = c.family;
  const bool mistral = t == "mistral", qwen2 = t == "qwen2";
  c.vocab = f.get_int("vocab_size", qwen2 ? 151936 : 32000);
  c.d_model = f.get_int("hidden_size", 4096);
  c.d_ff = f.get_int("intermediate_size", mistral ? 14336 : qwen2 ? 22016 : 11008);
  c.n_layers = f.get_int("num_hidden_layers", 32);
  read_attention_dims(f, c, 32);
  if (mistral && !f.has("num_key_value_heads")) c.n_kv_heads = 8;
  c.hidden_act = f.get_string("hidden_act", "silu");
  c.max_position = f.get_int("max_position_embeddings", mistral ? 4096 * 32 : qwen2 ? 32768 : 2048);
  c.norm_eps = f.get_float("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", false);
  read_rope(f, c, 10000.0);
  if (qwen2) {
    c.attention_bias = true;  // q/k/v always have biases, o_proj never
    c.attention_out_bias = false;
    const bool use_sw = f.get_bool("use_sliding_window", false);
    c.max_window_layers = f.get_int("max_window_layers", 28);
    if (use_sw) c.sliding_window = f.get_int("sliding_window", 4096);
    c.layer_types = f.string_list("layer_types");
    if (c.layer_types.empty())
      for (index_t i = 0; i < c.n_layers; ++i)
        c.layer_types.push_back(use_sw && i >= c.max_window_layers ? "sliding_attention" : "full_attention");
  } else {
    c.attention_bias = f.get_bool("attention_bias", false);
    c.attention_out_bias = c.attention_bias;
    c.mlp_bias = f.get_bool("mlp_bias", false);
    if (mistral) {
      if (f.json().contains("sliding_window")) {
        if (auto w = f.opt_int("sliding_window")) c.sliding_window = *w;  // null: no window
      } else {
        c.sliding_window = 4096;
      }
    }
    c.layer_types = f.string_list("layer_types");
  }
  if (!c.layer_types.empty() && static_cast<index_t>(c.layer_types.size()) != c.n_layers)
    throw config_error(f.file() + ": field 'layer_types' has " + std::to_string(c.layer_types.size()) +
                       " entries for num_hidden_layers " + std::to_string(c.n_layers));
  c.bos_token_id = static_cast<std::int32_t>(f.get_int("bos_token_id", qwen2 ? -1 : 1));
  if (*c.bos_token_id < 0) c.bos_token_id.reset();
  if (f.json().contains("eos_token_id")) c.eos_token_ids = f.int_list("eos_token_id");
  else if (!qwen2) c.eos_token_ids = {2};
  if (auto p = f.opt_int("pad_token_id")) c.pad_token_id = static_cast<std::int32_t>(*p);
}

inline void read_gpt2(const json_fields& f, model_config& c) {
  c.vocab = f.get_int("vocab_size", 50257);
  c.max_position = f.get_int("n_positions", 1024);
  c.d_model = f.get_int("n_embd", 768);
  c.n_layers = f.get_int("n_layer", 12);
  c.n_heads = f.get_int("n_head", 12);
  if (c.n_heads <= 0) throw config_error(f.file() + ": field 'n_head' must be positive");
  c.n_kv_heads = c.n_heads;
  c.head_dim = c.d_model / c.n_heads;
  c.d_ff = f.get_int("n_inner", 4 * c.d_model);
  c.hidden_act = f.get_string("activation_function", "gelu_new");
  c.norm_eps = f.get_float("layer_norm_epsilon", 1e-5);
  c.scale_attn_weights = f.get_bool("scale_attn_weights", true);
  c.scale_attn_by_inverse_layer_idx = f.get_bool("scale_attn_by_inverse_layer_idx", false);
  c.reorder_and_upcast_attn = f.get_bool("reorder_and_upcast_attn", false);
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", true);
  c.attention_bias = c.attention_out_bias = c.mlp_bias = true;
  c.bos_token_id = static_cast<std::int32_t>(f.get_int("bos_token_id", 50256));
  c.eos_token_ids = f.json().contains("eos_token_id") ? f.int_list("eos_token_id") : std::vector<std::int32_t>{50256};
  if (auto p = f.opt_int("pad_token_id")) c.pad_token_id = static_cast<std::int32_t>(*p);
}

inline index_t dt_rank_of(const json_fields& f, const std::string& key, index_t d_model) {
  const auto* v = f.find(key);
  if (!v || (v->is_string() && v->get<std::string>() == "auto")) return (d_model + 15) / 16;
  if (!v->is_number_integer()) f.wrong(key, *v, "an integer or \"auto\"");
  return v->get<index_t>();
}

inline void read_mamba(const json_fields& f, model_config& c, bool v2) {
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
      auto lo = json_fields::as_number((*lim)[0]), hi = json_fields::as_number((*lim)[1]);
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
  c.layer_schedule.assign(static_cast<std::size_t>(std::max<index_t>(0, c.n_layers)), 'M');
}

inline void read_jamba(const json_fields& f, model_config& c) {
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
  c.layer_schedule.clear();
  for (index_t i = 0; i < c.n_layers; ++i) c.layer_schedule += i % c.attn_layer_period == c.attn_layer_offset ? 'A' : 'M';
  c.bos_token_id = static_cast<std::int32_t>(f.get_int("bos_token_id", 1));
  c.eos_token_ids = f.json().contains("eos_token_id") ? f.int_list("eos_token_id") : std::vector<std::int32_t>{2};
  c.pad_token_id = static_cast<std::int32_t>(f.get_int("pad_token_id", 0));
}

inline std::string hf_class_of_gguf_arch(const std::string& arch) {
  if (arch == "llama") return "LlamaForCausalLM";
  if (arch == "mistral") return "MistralForCausalLM";
  if (arch == "qwen2") return "Qwen2ForCausalLM";
  if (arch == "gpt2") return "GPT2LMHeadModel";
  if (arch == "mamba") return "MambaForCausalLM";
  if (arch == "mamba2") return "Mamba2ForCausalLM";
  return {};
}

}  // namespace detail

/// Parses a config.json object (and optionally a generation_config.json object) into a
/// model_config; `file` names the config in messages.
inline model_config parse_config(const nlohmann::json& config, const std::string& file,
                                 const nlohmann::json* generation = nullptr, const std::string& generation_file = {}) {
  if (!config.is_object()) throw config_error(file + ": not a JSON object");
  detail::json_fields f(config, file);
  model_config c;
  c.source = file;
  const auto type = f.opt_string("model_type");
  if (!type) throw config_error(file + ": required field 'model_type' is missing (supported: " + detail::join(supported_model_types()) + ")");
  c.family = *type;
  if (std::find(supported_model_types().begin(), supported_model_types().end(), c.family) == supported_model_types().end())
    throw config_error(file + ": model_type \"" + c.family + "\" is not supported (supported: " + detail::join(supported_model_types()) + ")");
  const auto archs = f.string_list("architectures");
  if (!archs.empty()) {
    c.architecture = archs.front();
    if (std::find(supported_architectures().begin(), supported_architectures().end(), c.architecture) == supported_architectures().end())
      throw config_error(file + ": architecture \"" + c.architecture + "\" is not supported (supported: " +
                         detail::join(supported_architectures()) + ")");
  }

  if (c.family == "llama" || c.family == "mistral" || c.family == "qwen2") detail::read_llama_like(f, c);
  else if (c.family == "gpt2") detail::read_gpt2(f, c);
  else if (c.family == "mamba") detail::read_mamba(f, c, false);
  else if (c.family == "mamba2") detail::read_mamba(f, c, true);
  else detail::read_jamba(f, c);
  if (c.architecture.empty()) {
    static const std::map<std::string, std::string> def = {
        {"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"},
        {"gpt2", "GPT2LMHeadModel"},   {"mamba", "MambaForCausalLM"},     {"mamba2", "Mamba2ForCausalLM"},
        {"jamba", "JambaForCausalLM"}};
    c.architecture = def.at(c.family);
  }
  if (c.rope.type == rope_scaling_type::yarn && c.rope.original_max_position == 0) c.rope.original_max_position = c.max_position;
  if (c.layer_schedule.empty() && c.n_layers > 0) c.layer_schedule.assign(static_cast<std::size_t>(c.n_layers), 'A');
  detail::check_positive(c, file);

  if (generation && generation->is_object()) {
    detail::json_fields g(*generation, generation_file);
    for (std::int32_t id : g.int_list("eos_token_id"))
      if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), id) == c.eos_token_ids.end()) c.eos_token_ids.push_back(id);
    if (!c.bos_token_id)
      if (auto b = g.opt_int("bos_token_id")) c.bos_token_id = static_cast<std::int32_t>(*b);
    if (!c.pad_token_id)
      if (auto p = g.opt_int("pad_token_id")) c.pad_token_id = static_cast<std::int32_t>(*p);
  }
  return c;
}

/// model_config from GGUF metadata (`<arch>.*` keys, tokenizer ids); tie_word_embeddings when the
/// file has no output.weight.
inline model_config config_from_gguf(const gguf_file& g) {
  model_config c;
  c.source = g.path();
  const auto arch = g.try_string("general.architecture");
  if (!arch) throw config_error(g.path() + ": GGUF metadata key 'general.architecture' is missing");
  c.architecture = detail::hf_class_of_gguf_arch(*arch);
  if (c.architecture.empty())
    throw config_error(g.path() + ": GGUF architecture \"" + *arch + "\" is not supported (supported: " +
                       detail::join(gguf_mapped_architectures()) + ")");
  c.family = *arch;
  const std::string p = *arch + ".";
  auto req = [&](const std::string& key) -> index_t {
    try {
      return static_cast<index_t>(g.get_int(p + key));
    } catch (const format_error& e) {
      throw config_error(e.what());
    }
  };
  auto opt = [&](const std::string& key) -> std::optional<index_t> {
    try {
      if (auto v = g.try_int(p + key)) return static_cast<index_t>(*v);
      return std::nullopt;
    } catch (const format_error& e) {
      throw config_error(e.what());
    }
  };
  auto optf = [&](const std::string& key) -> std::optional<double> {
    try {
      return g.try_float(p + key);
    } catch (const format_error& e) {
      throw config_error(e.what());
    }
  };
  c.d_model = req("embedding_length");
  c.n_layers = req("block_count");
  c.max_position = opt("context_length").value_or(0);
  // vocab: <arch>.vocab_size, else the tokenizer, else the embedding rows
  if (auto v = opt("vocab_size")) c.vocab = *v;
  else if (const auto* toks = g.find("tokenizer.ggml.tokens"); toks && toks->is_array()) c.vocab = static_cast<index_t>(toks->size());
  else if (const auto* t = g.find_tensor("token_embd.weight"); t && t->extents.size() == 2) c.vocab = t->extents[0];
  c.tie_word_embeddings = g.find_tensor("output.weight") == nullptr;
  if (*arch == "mamba" || *arch == "mamba2") {
    const bool v2 = *arch == "mamba2";
    c.d_conv = req("ssm.conv_kernel");
    c.d_inner = req("ssm.inner_size");
    c.d_state = req("ssm.state_size");
    c.dt_rank = req("ssm.time_step_rank");
    // FalconMamba GGUFs use arch "mamba" with weightless RMSNorms on dt, B and C: refuse them
    // rather than run them as plain Mamba.
    bool dt_b_c_rms = false;
    try {
      dt_b_c_rms = g.try_bool(p + "ssm.dt_b_c_rms").value_or(false);
    } catch (const format_error& e) {
      throw config_error(e.what());
    }
    if (dt_b_c_rms)
      throw config_error(g.path() + ": " + p + "ssm.dt_b_c_rms is true (FalconMamba): not supported; "
                         "supported GGUF architectures: llama, mistral, qwen2, gpt2, mamba, mamba2");
    c.norm_eps = static_cast<float>(optf("attention.layer_norm_rms_epsilon").value_or(1e-5));
    c.conv_bias = g.find_tensor("blk.0.ssm_conv1d.bias") != nullptr;
    c.proj_bias = g.find_tensor("blk.0.ssm_in.bias") != nullptr;
    if (v2) {
      c.n_groups = opt("ssm.group_count").value_or(1);
      c.ssm_n_heads = c.dt_rank;
      c.ssm_head_dim = c.ssm_n_heads > 0 ? c.d_inner / c.ssm_n_heads : 0;
      c.time_step_limit_hi = std::numeric_limits<float>::infinity();
    }
    c.layer_schedule.assign(static_cast<std::size_t>(c.n_layers), 'M');
  } else {
    c.n_heads = req("attention.head_count");
    c.n_kv_heads = opt("attention.head_count_kv").value_or(c.n_heads);
    c.d_ff = opt("feed_forward_length").value_or(*arch == "gpt2" ? 4 * c.d_model : 0);
    c.head_dim = opt("attention.key_length").value_or(c.n_heads > 0 ? c.d_model / c.n_heads : 0);
    if (*arch == "gpt2") {
      c.norm_eps = static_cast<float>(optf("attention.layer_norm_epsilon").value_or(1e-5));
      c.hidden_act = "gelu_new";
      c.attention_bias = c.attention_out_bias = c.mlp_bias = true;
    } else {
      c.norm_eps = static_cast<float>(optf("attention.layer_norm_rms_epsilon").value_or(1e-5));
      c.rope.theta = static_cast<float>(optf("rope.freq_base").value_or(10000.0));
      if (auto dims = opt("rope.dimension_count"); dims && c.head_dim > 0)
        c.rope.partial_rotary_factor = static_cast<float>(*dims) / static_cast<float>(c.head_dim);
      // weight_map un-permutes llama's q/k rows, so the model sees HF's rotate-half pairing.
      c.rope.neox = true;
      if (*arch == "qwen2") c.attention_bias = true;
      else c.attention_bias = c.attention_out_bias = g.find_tensor("blk.0.attn_q.bias") != nullptr;
      if (auto t = g.try_string(p + "rope.scaling.type")) {
        c.rope.type = detail::parse_rope_type(*t == "none" ? "default" : *t, g.path());
        c.rope.factor = static_cast<float>(optf("rope.scaling.factor").value_or(1.0));
        c.rope.original_max_position = opt("rope.scaling.original_context_length").value_or(0);
      }
      if (auto w = opt("attention.sliding_window"); w && *w > 0) c.sliding_window = *w;
    }
    c.layer_schedule.assign(static_cast<std::size_t>(c.n_layers), 'A');
  }
  auto tok_id = [&](const char* key) -> std::optional<std::int32_t> {
    if (const auto* v = g.find(key); v && gguf_is_integer(v->type)) return static_cast<std::int32_t>(v->i);
    return std::nullopt;
  };
  c.bos_token_id = tok_id("tokenizer.ggml.bos_token_id");
  c.pad_token_id = tok_id("tokenizer.ggml.padding_token_id");
  if (auto e = tok_id("tokenizer.ggml.eos_token_id")) c.eos_token_ids.push_back(*e);
  if (auto e = tok_id("tokenizer.ggml.eot_token_id"); e && (c.eos_token_ids.empty() || c.eos_token_ids[0] != *e))
    c.eos_token_ids.push_back(*e);
  detail::check_positive(c, g.path());
  return c;
}

/// model_config of a Hugging Face folder (config.json + optional generation_config.json), of a
/// config.json path, or of a .gguf file.
inline model_config load_config(const std::filesystem::path& folder_or_gguf) {
  namespace fs = std::filesystem;
  const fs::path& p = folder_or_gguf;
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    if (!fs::exists(p / "config.json")) {
      std::vector<fs::path> gg;
      for (const auto& e : fs::directory_iterator(p))
        if (e.path().extension() == ".gguf") gg.push_back(e.path());
      if (gg.size() == 1) return config_from_gguf(gguf_file(gg[0]));
      throw io_error(p.string() + ": no config.json in this folder");
    }
    const auto cfg = detail::read_json_file(p / "config.json");
    if (fs::exists(p / "generation_config.json")) {
      const auto gen = detail::read_json_file(p / "generation_config.json");
      return parse_config(cfg, (p / "config.json").string(), &gen, (p / "generation_config.json").string());
    }
    return parse_config(cfg, (p / "config.json").string());
  }
  if (!fs::exists(p, ec)) throw io_error(p.string() + ": no such file or folder");
  if (p.extension() == ".json") return load_config(p.parent_path().empty() ? fs::path(".") : p.parent_path());
  return config_from_gguf(gguf_file(p));
}

// ---- tessera info ---------------------------------------------------------------------------

/// What `tessera info` prints about a checkpoint.
struct checkpoint_summary {
  model_config config;
  std::string format;                        // "safetensors", "safetensors (4 shards)", "gguf v3"
  std::vector<std::string> files;
  std::int64_t n_params = 0;                 // elements of all weights
  std::uint64_t bytes = 0;                   // bytes of all weights in their files
  std::map<std::string, index_t> dtype_counts;
  struct tensor_row {
    std::string name, type;
    std::vector<index_t> extents;
  };
  std::vector<tensor_row> tensors;           // sorted by name
  index_t context = 0;                       // tokens the estimates are for
  std::uint64_t kv_cache_bytes = 0;          // f32 K and V of every attention layer, batch 1
  std::uint64_t ssm_state_bytes = 0;         // f32 conv + SSM states of every Mamba layer, batch 1
  std::uint64_t f32_weight_bytes = 0;        // weights held as f32 (non-f32 tensors converted once)
};

/// Estimated f32 KV-cache bytes for `context` tokens (batch 1); sliding-window layers hold at most
/// the window.
inline std::uint64_t estimate_kv_bytes(const model_config& c, index_t context) {
  std::uint64_t total = 0;
  for (index_t i = 0; i < c.n_layers; ++i) {
    const char kind = i < static_cast<index_t>(c.layer_schedule.size()) ? c.layer_schedule[static_cast<std::size_t>(i)] : 'A';
    if (kind != 'A') continue;
    index_t len = context;
    bool sliding = c.sliding_window.has_value();
    if (!c.layer_types.empty()) sliding = c.sliding_window && c.layer_types[static_cast<std::size_t>(i)] == "sliding_attention";
    if (sliding) len = std::min(len, *c.sliding_window);
    total += 2ull * static_cast<std::uint64_t>(c.n_kv_heads * c.head_dim) * static_cast<std::uint64_t>(len) * 4;
  }
  return total;
}

/// Estimated f32 recurrent-state bytes (conv + SSM) of the Mamba layers (batch 1).
inline std::uint64_t estimate_ssm_state_bytes(const model_config& c) {
  std::uint64_t per_layer = 0;
  if (c.family == "mamba2") {
    const index_t conv_dim = c.d_inner + 2 * c.n_groups * c.d_state;
    per_layer = static_cast<std::uint64_t>(c.ssm_n_heads * c.ssm_head_dim * c.d_state + conv_dim * (c.d_conv - 1)) * 4;
  } else if (c.d_state > 0) {
    per_layer = static_cast<std::uint64_t>(c.d_inner * c.d_state + c.d_inner * (c.d_conv - 1)) * 4;
  }
  const auto n_m = static_cast<std::uint64_t>(std::count(c.layer_schedule.begin(), c.layer_schedule.end(), 'M'));
  return per_layer * n_m;
}

/// Gathers config, weights and memory estimates for `context` tokens (0: max_position, or 2048
/// when that is unknown).
inline checkpoint_summary summarize(const std::filesystem::path& path, index_t context = 0) {
  checkpoint_summary s;
  s.config = load_config(path);
  const auto m = weight_map::open(path);
  s.files = m.files();
  if (m.gguf()) s.format = "gguf v" + std::to_string(m.gguf()->version());
  else s.format = s.files.size() > 1 ? "safetensors (" + std::to_string(s.files.size()) + " shards)" : "safetensors";
  s.n_params = m.total_numel();
  s.bytes = m.total_bytes();
  s.dtype_counts = m.dtype_counts();
  for (const auto& n : m.names()) {
    const auto& i = m.info(n);
    s.tensors.push_back({n, i.type_name, i.extents});
    s.f32_weight_bytes += static_cast<std::uint64_t>(i.numel) * 4;
  }
  s.context = context > 0 ? context : (s.config.max_position > 0 ? s.config.max_position : 2048);
  s.kv_cache_bytes = estimate_kv_bytes(s.config, s.context);
  s.ssm_state_bytes = estimate_ssm_state_bytes(s.config);
  return s;
}

namespace detail {
inline std::string human_bytes(std::uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", v, units[u]);
  return buf;
}
}  // namespace detail

/// The text `tessera info` prints. `with_tensors` lists every tensor.
inline std::string to_string(const checkpoint_summary& s, bool with_tensors = true) {
  const auto& c = s.config;
  std::ostringstream o;
  o << "family:        " << c.family << "\n";
  o << "architecture:  " << c.architecture << "\n";
  o << "format:        " << s.format << "\n";
  for (const auto& f : s.files) o << "file:          " << f << "\n";
  o << "layers:        " << c.n_layers << " (" << c.layer_schedule << ")\n";
  o << "d_model:       " << c.d_model << "\n";
  o << "vocab:         " << c.vocab << "\n";
  if (c.n_heads > 0)
    o << "attention:     n_heads " << c.n_heads << ", n_kv_heads " << c.n_kv_heads << ", head_dim " << c.head_dim
      << ", d_ff " << c.d_ff << ", max_position " << c.max_position << "\n";
  if (c.d_state > 0)
    o << "ssm:           d_inner " << c.d_inner << ", d_state " << c.d_state << ", d_conv " << c.d_conv << ", dt_rank "
      << c.dt_rank << (c.ssm_n_heads ? ", n_heads " + std::to_string(c.ssm_n_heads) : std::string()) << "\n";
  if (c.n_experts > 0) o << "experts:       " << c.n_experts << " (top " << c.n_experts_per_tok << ")\n";
  o << "tied embeddings: " << (c.tie_word_embeddings ? "yes" : "no") << "\n";
  o << "parameters:    " << s.n_params << "\n";
  o << "weights:       " << detail::human_bytes(s.bytes) << " in files;";
  for (const auto& [t, n] : s.dtype_counts) o << " " << t << " x" << n;
  o << "\n";
  o << "memory (context " << s.context << "): weights as f32 " << detail::human_bytes(s.f32_weight_bytes)
    << ", KV cache " << detail::human_bytes(s.kv_cache_bytes) << ", SSM state " << detail::human_bytes(s.ssm_state_bytes)
    << "\n";
  if (with_tensors)
    for (const auto& t : s.tensors) {
      o << "  " << t.name << "  " << t.type << " [";
      for (std::size_t i = 0; i < t.extents.size(); ++i) o << (i ? ", " : "") << t.extents[i];
      o << "]\n";
    }
  return o.str();
}

}  // namespace io
}  // namespace v0
}  // namespace tessera
