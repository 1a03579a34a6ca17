// tessera/families/llama.hpp: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM and
// Qwen3ForCausalLM: one decoder layer, read like the paper:
//
//   h = embed(ids)
//   for each layer:  h += self_attn(input_layernorm(h))            RoPE, GQA, KV cache
//                    h += mlp(post_attention_layernorm(h))          down(silu(gate(x)) ⊙ up(x))
//   logits = lm_head(norm(h))
//
// What differs is in the model_config:
//   Llama:   head_dim given separately, attention_bias (q/k/v/o), mlp_bias, rope scaling
//            (linear, dynamic, yarn, llama3, longrope), tied or untied head
//   Mistral: sliding_window on every layer (a ring cache of the window)
//   Qwen2:   q/k/v biases without an o bias, sliding window on the layers layer_types marks
//   Qwen3:   q_norm / k_norm (RMSNorm over head_dim, per head, before RoPE), explicit head_dim
// Weight names are Hugging Face's; GGUF files arrive renamed (and with q/k un-permuted) by io.
#pragma once

#include <memory>
#include <string>

#include <tessera/families/common.hpp>
#include <tessera/families/family.hpp>
#include <tessera/ops/activation.hpp>

namespace tessera {
inline namespace v0 {
namespace families {

using llama_model = decoder_lm;

inline std::unique_ptr<language_model> load_llama(const model_config& cfg, std::shared_ptr<const io::weight_map> weights) {
  const io::weight_map& w = *weights;
  model_config c = cfg;
  // transformers' default rope ignores partial_rotary_factor for these families; the scaled kinds apply it
  if (c.rope.type == rope_scaling_type::none) c.rope.partial_rotary_factor = 1.f;
  const bool qk_norm = c.family == "qwen3";
  const auto act = ops::parse_activation(c.hidden_act);
  models::causal_lm_parts<decoder_layer, rms> m;
  m.config = cfg;
  m.keep_alive = keep(weights);
  m.trained_context = scaled_context(c);
  m.embed.tokens = layers::weight_matrix::load(w, "model.embed_tokens.weight");
  for (index_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i);
    auto opts = attention_options_of(c, i);
    if (qk_norm) opts.qk_norm = layers::qk_norm_kind::per_head, opts.qk_norm_eps = c.norm_eps;
    decoder_layer layer;
    auto& [attn, mlp] = layer.blocks;
    attn.norm = rms::load(w, p + ".input_layernorm", c.norm_eps);                  // attention norm
    attn.sub = load_attention(w, p + ".self_attn", opts, c.attention_bias, c.attention_out_bias);
    mlp.norm = rms::load(w, p + ".post_attention_layernorm", c.norm_eps);          // mlp norm
    mlp.sub = layers::gated_mlp(layers::linear::load(w, p + ".mlp.gate_proj", c.mlp_bias),
                                layers::linear::load(w, p + ".mlp.up_proj", c.mlp_bias),
                                layers::linear::load(w, p + ".mlp.down_proj", c.mlp_bias), act, p + ".mlp");
    m.layers.push_back(std::move(layer));
  }
  m.head.final_norm = rms::load(w, "model.norm", c.norm_eps);
  m.head.lm_head = lm_head_of(w, c, m.embed.tokens);
  return std::make_unique<llama_model>(std::move(m));
}

/// config.json of LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config (transformers 5 defaults).
inline void read_llama_config(const io::json_fields& f, model_config& c) {
  using namespace config_fields;
  const std::string& t = c.family;
  const bool mistral = t == "mistral", qwen3 = t == "qwen3", qwen2 = t == "qwen2" || qwen3;
  read_dims(f, c, {.vocab = qwen2 ? 151936 : 32000, .d_model = 4096, .n_layers = 32, .n_heads = 32});
  c.d_ff = f.get_int("intermediate_size", mistral ? 14336 : qwen2 ? 22016 : 11008);
  if (qwen3 && !f.has("head_dim")) c.head_dim = 128;
  if (mistral && !f.has("num_key_value_heads")) c.n_kv_heads = 8;
  c.hidden_act = f.get_string("hidden_act", "silu");
  c.max_position = f.get_int("max_position_embeddings", mistral ? 4096 * 32 : qwen2 ? 32768 : 2048);
  c.norm_eps = f.get_float("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", false);
  read_rope(f, c, 10000.0);
  if (qwen2) {
    c.attention_bias = qwen3 ? f.get_bool("attention_bias", false) : true;  // Qwen2: q/k/v biases, o_proj never
    c.attention_out_bias = qwen3 && c.attention_bias;
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
  if (c.architecture.empty())
    c.architecture = mistral ? "MistralForCausalLM" : qwen3 ? "Qwen3ForCausalLM" : qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
  if (!c.layer_types.empty() && static_cast<index_t>(c.layer_types.size()) != c.n_layers)
    throw config_error(f.file() + ": field 'layer_types' has " + std::to_string(c.layer_types.size()) +
                       " entries for num_hidden_layers " + std::to_string(c.n_layers));
  c.bos_token_id = static_cast<std::int32_t>(f.get_int("bos_token_id", qwen2 ? -1 : 1));
  if (*c.bos_token_id < 0) c.bos_token_id.reset();
  if (f.json().contains("eos_token_id")) c.eos_token_ids = f.int_list("eos_token_id");
  else if (!qwen2) c.eos_token_ids = {2};
  if (auto p = f.opt_int("pad_token_id")) c.pad_token_id = static_cast<std::int32_t>(*p);
}


/// GGUF metadata of llama.cpp's llama, mistral, qwen2 and qwen3 architectures.
inline void read_llama_gguf(const io::gguf_file& g, model_config& c) {
  const std::string arch = c.family;
  const gguf_keys k{g, arch + "."};
  c.architecture = arch == "mistral" ? "MistralForCausalLM" : arch == "qwen2" ? "Qwen2ForCausalLM"
                 : arch == "qwen3" ? "Qwen3ForCausalLM" : "LlamaForCausalLM";
  read_gguf_decoder_dims(k, c, 1e-5);
  if (auto dims = k.opt("rope.dimension_count"); dims && c.head_dim > 0)
    c.rope.partial_rotary_factor = static_cast<float>(*dims) / static_cast<float>(c.head_dim);
  // weight_map un-permutes llama's q/k rows, so the model sees HF's rotate-half pairing.
  c.rope.neox = true;
  if (arch == "qwen2") c.attention_bias = true;
  else c.attention_bias = c.attention_out_bias = g.find_tensor("blk.0.attn_q.bias") != nullptr;
  if (auto t = k.opts("rope.scaling.type")) {
    c.rope.type = config_fields::parse_rope_type(*t == "none" ? "default" : *t, g.path());
    c.rope.factor = static_cast<float>(k.optf("rope.scaling.factor").value_or(1.0));
    c.rope.original_max_position = k.opt("rope.scaling.original_context_length").value_or(0);
  }
  if (auto w = k.opt("attention.sliding_window"); w && *w > 0) c.sliding_window = *w;
}

// llama.cpp's tensor names (gguf-py tensor_mapping.py, read in reverse); q/k norms are Qwen3's.
inline constexpr io::gguf_name_rule llama_gguf_global[] = {
    {"token_embd", "model.embed_tokens"}, {"output_norm", "model.norm"}, {"output", "lm_head"}};
inline constexpr io::gguf_name_rule llama_gguf_layer[] = {
    {"attn_norm", "model.layers.{}.input_layernorm"},  {"attn_q", "model.layers.{}.self_attn.q_proj"},
    {"attn_k", "model.layers.{}.self_attn.k_proj"},    {"attn_v", "model.layers.{}.self_attn.v_proj"},
    {"attn_output", "model.layers.{}.self_attn.o_proj"}, {"ffn_norm", "model.layers.{}.post_attention_layernorm"},
    {"ffn_gate", "model.layers.{}.mlp.gate_proj"},     {"ffn_up", "model.layers.{}.mlp.up_proj"},
    {"ffn_down", "model.layers.{}.mlp.down_proj"},     {"attn_q_norm", "model.layers.{}.self_attn.q_norm"},
    {"attn_k_norm", "model.layers.{}.self_attn.k_norm"}};

/// convert_hf_to_gguf.py permutes the q/k rows of llama and mistral (RoPE pairs interleaved); read
/// back in HF's rotate-half order. qwen2 / qwen3 files keep HF's order.
inline void fix_llama_gguf(const io::gguf_file& g, std::string_view name, io::gguf_tensor_fix& fix) {
  const std::string arch = g.try_string("general.architecture").value_or("");
  if (arch != "llama" && arch != "mistral") return;
  const bool q = name.ends_with(".attn_q.weight") || name.ends_with(".attn_q.bias");
  const bool k = name.ends_with(".attn_k.weight") || name.ends_with(".attn_k.bias");
  const std::int64_t n_head = g.try_int(arch + ".attention.head_count").value_or(0);
  if ((!q && !k) || n_head <= 0) return;
  fix.transform = io::weight_transform::unpermute_rope;
  fix.rope_heads = q ? n_head : g.try_int(arch + ".attention.head_count_kv").value_or(n_head);
}

#ifndef TESSERA_EXTERN_FAMILIES  // defined: one other translation unit registers the families (docs/architecture.md)
inline const bool llama_registered = register_family({
    .name = "llama",
    .model_types = {"llama", "mistral", "qwen2", "qwen3"},
    .architectures = {"LlamaForCausalLM", "LlamaModel", "MistralForCausalLM", "MistralModel", "Qwen2ForCausalLM",
                      "Qwen2Model", "Qwen3ForCausalLM", "Qwen3Model"},
    .gguf_architectures = {"llama", "mistral", "qwen2", "qwen3"},
    .read_hf = read_llama_config,
    .read_gguf = read_llama_gguf,
    .gguf_name = [](std::string_view n) { return io::gguf_rename(llama_gguf_global, llama_gguf_layer, n); },
    .gguf_fix = fix_llama_gguf,
    .load = load_llama,
});
#endif

}  // namespace families
}  // namespace v0
}  // namespace tessera
