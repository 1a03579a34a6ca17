// tessera/families/family.hpp: how a family registers itself, and the config reading every
// family shares (docs/architecture.md, "Families").
//
// A family is one file, families/<name>.hpp. It describes itself with a `family` record: the
// config.json model_type values and architectures it answers to, the GGUF general.architecture
// values, how it reads its config fields (HF config.json and GGUF metadata) into a model_config,
// and how it builds a model from a config and a weight map. It registers that record with
// `register_family` from an inline variable, so including the header is all it takes:
//
//   inline const bool llama_registered = register_family({.name = "llama", .model_types = {...},
//       .read_hf = read_llama_config, .load = load_llama, ...});
//
// load_config(path) then reads config.json (+ generation_config.json) or GGUF metadata through the
// family that claims it. Absent fields take transformers' defaults (each family's
// configuration_<family>.py of transformers 5); RoPE parameters come from transformers 5's
// `rope_parameters` or from the older `rope_theta` + `rope_scaling`. An unknown model_type or
// architecture is a config_error listing the registered ones.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <tessera/core/error.hpp>
#include <tessera/io/config.hpp>
#include <tessera/io/gguf.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/models/encoder.hpp>
#include <tessera/models/language_model.hpp>
#include <tessera/models/model_config.hpp>

namespace tessera {
inline namespace v0 {

/// What a family knows about itself.
struct family {
  std::string name;                               // "llama"
  std::vector<std::string> model_types;           // config.json model_type values it reads
  std::vector<std::string> architectures;         // architectures[0] values (the first is the default)
  std::vector<std::string> gguf_architectures;    // GGUF general.architecture values
  /// config.json fields → c (c.family, c.architecture, c.source are set; defaults are the family's).
  std::function<void(const io::json_fields&, model_config&)> read_hf;
  /// GGUF metadata → c, after the generic keys (d_model, n_layers, context, vocab, token ids).
  std::function<void(const io::gguf_file&, model_config&)> read_gguf;
  /// GGUF tensor name → HF name (io::gguf_rename with the family's tables; "" keeps the name).
  std::function<std::string(std::string_view)> gguf_name;
  /// What convert_hf_to_gguf.py changed in one tensor (already renamed in fix), to undo on read.
  std::function<void(const io::gguf_file&, std::string_view gguf_name, io::gguf_tensor_fix&)> gguf_fix;
  /// The causal LM, from its config and its weights (which it keeps alive); empty for encoders.
  std::function<std::unique_ptr<language_model>(const model_config&, std::shared_ptr<const io::weight_map>)> load;
  /// The encoder (BERT and friends); empty for causal LMs.
  std::function<std::unique_ptr<text_encoder>(const model_config&, std::shared_ptr<const io::weight_map>)> load_encoder;
};

/// Every registered family, in registration order.
inline std::vector<family>& family_registry() {
  static std::vector<family> registry;
  return registry;
}

/// Registers a family (its header calls this from an inline variable). A second family with the
/// same name replaces the first.
inline bool register_family(family f) {
  auto& r = family_registry();
  auto it = std::find_if(r.begin(), r.end(), [&](const family& x) { return x.name == f.name; });
  if (it != r.end()) *it = std::move(f);
  else r.push_back(std::move(f));
  return true;
}

/// The family that answers to a config.json model_type, or nullptr.
inline const family* find_family_by_model_type(const std::string& model_type) {
  for (const auto& f : family_registry())
    if (std::find(f.model_types.begin(), f.model_types.end(), model_type) != f.model_types.end()) return &f;
  return nullptr;
}

/// The family that answers to a GGUF architecture, or nullptr.
inline const family* find_family_by_gguf(const std::string& arch) {
  for (const auto& f : family_registry())
    if (std::find(f.gguf_architectures.begin(), f.gguf_architectures.end(), arch) != f.gguf_architectures.end()) return &f;
  return nullptr;
}

/// The family whose reader made c (by c.family), or nullptr.
inline const family* find_family(const model_config& c) {
  if (const family* f = find_family_by_model_type(c.family)) return f;
  return find_family_by_gguf(c.family);
}

/// model_type values load_config understands.
inline std::vector<std::string> supported_model_types() {
  std::vector<std::string> v;
  for (const auto& f : family_registry()) v.insert(v.end(), f.model_types.begin(), f.model_types.end());
  return v;
}

/// architectures[0] values load_config understands.
inline std::vector<std::string> supported_architectures() {
  std::vector<std::string> v;
  for (const auto& f : family_registry()) v.insert(v.end(), f.architectures.begin(), f.architectures.end());
  return v;
}

/// GGUF general.architecture values load_config understands.
inline std::vector<std::string> supported_gguf_architectures() {
  std::vector<std::string> v;
  for (const auto& f : family_registry()) v.insert(v.end(), f.gguf_architectures.begin(), f.gguf_architectures.end());
  return v;
}

// ---- config fields several families read the same way -----------------------------------------

namespace config_fields {

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
inline void read_rope(const io::json_fields& f, model_config& c, double default_theta) {
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
  io::json_fields p(*params, f.file() + " (" + params_key + ")");
  // transformers 5 may nest per-layer-type parameters ({"full_attention": {...}}); take the first.
  if (!p.has("rope_type") && !p.has("type") && !p.has("rope_theta") && !params->empty() && params->begin()->is_object()) {
    model_config tmp = c;
    const nlohmann::json wrapper = {{"rope_parameters", *params->begin()}};
    io::json_fields w(wrapper, f.file());
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

/// The most layers a config may declare (no real checkpoint comes near).
inline constexpr index_t max_layers = index_t{1} << 14;

/// num_hidden_layers checked before a reader sizes anything per layer (a schedule string, a list
/// of layer types): a config of 1e9 layers is refused at once, not after a 1 GB string.
inline void check_layer_count(index_t n, const std::string& file) {
  if (n <= 0) throw config_error(file + ": field 'num_hidden_layers' must be positive, got " + std::to_string(n));
  if (n > max_layers)
    throw config_error(file + ": field 'num_hidden_layers' = " + std::to_string(n) + " is absurd (at most " +
                       std::to_string(max_layers) + ")");
}

/// The sizes every model needs are positive and below limits no real checkpoint reaches (so that
/// an absurd config is a config_error naming the field, before anything is sized from it).
inline void check_positive(const model_config& c, const std::string& file) {
  auto need = [&](index_t v, const char* name, index_t most) {
    if (v <= 0) throw config_error(file + ": field '" + name + "' must be positive, got " + std::to_string(v));
    if (v > most)
      throw config_error(file + ": field '" + name + "' = " + std::to_string(v) + " is absurd (at most " +
                         std::to_string(most) + ")");
  };
  auto at_most = [&](index_t v, const char* name, index_t most) {
    if (v > most)
      throw config_error(file + ": field '" + name + "' = " + std::to_string(v) + " is absurd (at most " +
                         std::to_string(most) + ")");
    if (v < 0) throw config_error(file + ": field '" + name + "' must not be negative, got " + std::to_string(v));
  };
  need(c.vocab, "vocab_size", index_t{1} << 26);
  need(c.d_model, "hidden_size", index_t{1} << 18);
  check_layer_count(c.n_layers, file);
  at_most(c.d_ff, "intermediate_size", index_t{1} << 22);
  at_most(c.d_inner, "intermediate_size (d_inner)", index_t{1} << 22);
  at_most(c.d_state, "state_size", index_t{1} << 16);
  at_most(c.max_position, "max_position_embeddings", index_t{1} << 30);
  at_most(c.n_experts, "num_experts", index_t{1} << 14);
  at_most(c.encoder_layers, "encoder_layers", index_t{1} << 14);
  if (c.n_heads > 0) {
    need(c.n_heads, "num_attention_heads", index_t{1} << 14);
    need(c.n_kv_heads, "num_key_value_heads", index_t{1} << 14);
    need(c.head_dim, "head_dim", index_t{1} << 14);
    if (c.n_heads % c.n_kv_heads != 0)
      throw config_error(file + ": num_attention_heads " + std::to_string(c.n_heads) +
                         " is not a multiple of num_key_value_heads " + std::to_string(c.n_kv_heads));
  }
}

/// Attention dims shared by the decoder families.
inline void read_attention_dims(const io::json_fields& f, model_config& c, index_t def_heads) {
  c.n_heads = f.get_int("num_attention_heads", def_heads);
  if (c.n_heads <= 0) throw config_error(f.file() + ": field 'num_attention_heads' must be positive");
  c.n_kv_heads = f.get_int("num_key_value_heads", c.n_heads);
  c.head_dim = f.get_int("head_dim", c.d_model / c.n_heads);
}

/// transformers' defaults of a family's main dims.
struct dim_defaults {
  index_t vocab = 0, d_model = 0, n_layers = 0, n_heads = 0;
};

/// vocab_size, hidden_size, num_hidden_layers, then read_attention_dims.
inline void read_dims(const io::json_fields& f, model_config& c, const dim_defaults& d) {
  c.vocab = f.get_int("vocab_size", d.vocab);
  c.d_model = f.get_int("hidden_size", d.d_model);
  c.n_layers = f.get_int("num_hidden_layers", d.n_layers);
  check_layer_count(c.n_layers, f.file());  // before a reader sizes anything per layer
  read_attention_dims(f, c, d.n_heads);
}

}  // namespace config_fields

// ---- reading a checkpoint's config ----------------------------------------------------------

/// Parses a config.json object (and optionally a generation_config.json object) into a
/// model_config through the family that claims its model_type; `file` names the config in messages.
inline model_config parse_config(const nlohmann::json& config, const std::string& file,
                                 const nlohmann::json* generation = nullptr, const std::string& generation_file = {}) {
  if (!config.is_object()) throw config_error(file + ": not a JSON object");
  io::json_fields f(config, file);
  model_config c;
  c.source = file;
  const auto type = f.opt_string("model_type");
  if (!type)
    throw config_error(file + ": required field 'model_type' is missing (supported: " +
                       io::detail::join(supported_model_types()) + ")");
  c.family = *type;
  const family* fam = find_family_by_model_type(c.family);
  if (!fam)
    throw config_error(file + ": model_type \"" + c.family + "\" is not supported (supported: " +
                       io::detail::join(supported_model_types()) + ")");
  const auto archs = f.string_list("architectures");
  if (!archs.empty()) {
    c.architecture = archs.front();
    const auto all = supported_architectures();
    if (std::find(all.begin(), all.end(), c.architecture) == all.end())
      throw config_error(file + ": architecture \"" + c.architecture + "\" is not supported (supported: " +
                         io::detail::join(all) + ")");
  }
  fam->read_hf(f, c);
  if (c.architecture.empty() && !fam->architectures.empty()) c.architecture = fam->architectures.front();
  if (c.rope.type == rope_scaling_type::yarn && c.rope.original_max_position == 0) c.rope.original_max_position = c.max_position;
  config_fields::check_positive(c, file);
  if (c.layer_schedule.empty()) c.layer_schedule.assign(static_cast<std::size_t>(c.n_layers), 'A');

  if (generation && generation->is_object()) {
    io::json_fields g(*generation, generation_file);
    for (std::int32_t id : g.int_list("eos_token_id"))
      if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), id) == c.eos_token_ids.end()) c.eos_token_ids.push_back(id);
    if (!c.bos_token_id)
      if (auto b = g.opt_int("bos_token_id")) c.bos_token_id = static_cast<std::int32_t>(*b);
    if (!c.pad_token_id)
      if (auto p = g.opt_int("pad_token_id")) c.pad_token_id = static_cast<std::int32_t>(*p);
    if (auto d = g.opt_int("decoder_start_token_id")) c.decoder_start_token_id = static_cast<std::int32_t>(*d);
  }
  return c;
}

/// GGUF metadata accessors that turn a format_error into a config_error (a key of the wrong type
/// is a config problem here).
struct gguf_keys {
  const io::gguf_file& g;
  std::string prefix;  // "<arch>."

  index_t req(const std::string& key) const {
    try {
      return bounded(key, g.get_int(prefix + key));
    } catch (const format_error& e) {
      throw config_error(e.what());
    }
  }
  std::optional<index_t> opt(const std::string& key) const {
    try {
      if (auto v = g.try_int(prefix + key)) return bounded(key, *v);
      return std::nullopt;
    } catch (const format_error& e) {
      throw config_error(e.what());
    }
  }
  /// Sizes of a model fit 31 bits: larger values are absurd (and would overflow products).
  index_t bounded(const std::string& key, std::int64_t v) const {
    if (v > (std::int64_t{1} << 31) || v < -(std::int64_t{1} << 31))
      throw config_error(g.path() + ": GGUF key '" + prefix + key + "' = " + std::to_string(v) + " is out of range");
    return static_cast<index_t>(v);
  }
  std::optional<double> optf(const std::string& key) const {
    try {
      return g.try_float(prefix + key);
    } catch (const format_error& e) {
      throw config_error(e.what());
    }
  }
  std::optional<bool> optb(const std::string& key) const {
    try {
      return g.try_bool(prefix + key);
    } catch (const format_error& e) {
      throw config_error(e.what());
    }
  }
  std::optional<std::string> opts(const std::string& key) const {
    try {
      return g.try_string(prefix + key);
    } catch (const format_error& e) {
      throw config_error(e.what());
    }
  }
};

/// The attention sizes, RMSNorm epsilon and RoPE base that llama.cpp's decoder architectures
/// write (llama, mistral, qwen2, qwen3, gemma2).
inline void read_gguf_decoder_dims(const gguf_keys& k, model_config& c, double default_eps) {
  c.n_heads = k.req("attention.head_count");
  c.n_kv_heads = k.opt("attention.head_count_kv").value_or(c.n_heads);
  c.d_ff = k.opt("feed_forward_length").value_or(0);
  c.head_dim = k.opt("attention.key_length").value_or(c.n_heads > 0 ? c.d_model / c.n_heads : 0);
  c.norm_eps = static_cast<float>(k.optf("attention.layer_norm_rms_epsilon").value_or(default_eps));
  c.rope.theta = static_cast<float>(k.optf("rope.freq_base").value_or(10000.0));
}

/// The HF name of GGUF tensor `gguf_name` in a file of architecture `arch`, or "" (no rule, or
/// no family of that architecture).
inline std::string gguf_hf_name(std::string_view arch, std::string_view gguf_name) {
  const family* f = find_family_by_gguf(std::string(arch));
  return f && f->gguf_name ? f->gguf_name(gguf_name) : std::string();
}

/// io::gguf_tensor_mapper of every registered family: the family that claims the file's
/// general.architecture renames the tensor and says what to undo.
inline void map_gguf_tensor(const io::gguf_file& g, std::string_view gguf_name, io::gguf_tensor_fix& fix) {
  const family* f = find_family_by_gguf(g.try_string("general.architecture").value_or(""));
  if (!f) return;
  if (f->gguf_name) fix.name = f->gguf_name(gguf_name);
  if (f->gguf_fix) f->gguf_fix(g, gguf_name, fix);
}

/// The weights of a checkpoint (folder, safetensors, index or GGUF), GGUF tensors under the HF
/// names of their family (map_gguf_tensor).
inline io::weight_map open_weights(const std::filesystem::path& path) {
  return io::weight_map::open(path, map_gguf_tensor);
}

/// model_config from GGUF metadata: the generic keys here (`<arch>.embedding_length`,
/// `block_count`, `context_length`, vocab, tokenizer ids; tie_word_embeddings when the file has
/// no output.weight), the rest by the family that claims general.architecture.
inline model_config config_from_gguf(const io::gguf_file& g) {
  model_config c;
  c.source = g.path();
  const auto arch = g.try_string("general.architecture");
  if (!arch) throw config_error(g.path() + ": GGUF metadata key 'general.architecture' is missing");
  const family* fam = find_family_by_gguf(*arch);
  if (!fam || !fam->read_gguf)
    throw config_error(g.path() + ": GGUF architecture \"" + *arch + "\" is not supported (supported: " +
                       io::detail::join(supported_gguf_architectures()) + ")");
  c.family = *arch;
  const gguf_keys k{g, *arch + "."};
  c.d_model = k.req("embedding_length");
  c.n_layers = k.req("block_count");
  config_fields::check_layer_count(c.n_layers, g.path());
  if (auto v = k.opt("context_length")) {  // absent: unknown (0); present, it must be a real context
    if (*v <= 0)
      throw config_error(g.path() + ": GGUF key '" + *arch + ".context_length' = " + std::to_string(*v) + " must be positive");
    c.max_position = *v;
  }
  // vocab: <arch>.vocab_size, else the tokenizer, else the embedding rows
  if (auto v = k.opt("vocab_size")) c.vocab = *v;
  else if (const auto* toks = g.find("tokenizer.ggml.tokens"); toks && toks->is_array()) c.vocab = static_cast<index_t>(toks->size());
  else if (const auto* t = g.find_tensor("token_embd.weight"); t && t->extents.size() == 2) c.vocab = t->extents[0];
  c.tie_word_embeddings = g.find_tensor("output.weight") == nullptr;
  fam->read_gguf(g, c);
  auto tok_id = [&](const char* key) -> std::optional<std::int32_t> {
    if (const auto* v = g.find(key); v && io::gguf_is_integer(v->type)) return static_cast<std::int32_t>(v->i);
    return std::nullopt;
  };
  c.bos_token_id = tok_id("tokenizer.ggml.bos_token_id");
  c.pad_token_id = tok_id("tokenizer.ggml.padding_token_id");
  if (auto e = tok_id("tokenizer.ggml.eos_token_id")) c.eos_token_ids.push_back(*e);
  if (auto e = tok_id("tokenizer.ggml.eot_token_id"); e && (c.eos_token_ids.empty() || c.eos_token_ids[0] != *e))
    c.eos_token_ids.push_back(*e);
  config_fields::check_positive(c, g.path());
  if (c.layer_schedule.empty()) c.layer_schedule.assign(static_cast<std::size_t>(c.n_layers), 'A');
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
      if (gg.size() == 1) return config_from_gguf(io::gguf_file(gg[0]));
      throw io_error(p.string() + ": no config.json in this folder");
    }
    const auto cfg = io::read_json_file(p / "config.json");
    if (fs::exists(p / "generation_config.json")) {
      const auto gen = io::read_json_file(p / "generation_config.json");
      return parse_config(cfg, (p / "config.json").string(), &gen, (p / "generation_config.json").string());
    }
    return parse_config(cfg, (p / "config.json").string());
  }
  if (!fs::exists(p, ec)) throw io_error(p.string() + ": no such file or folder");
  if (p.extension() == ".json") return load_config(p.parent_path().empty() ? fs::path(".") : p.parent_path());
  return config_from_gguf(io::gguf_file(p));
}

}  // namespace v0
}  // namespace tessera
