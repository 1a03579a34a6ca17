// tessera/families/gemma2.hpp: Gemma2ForCausalLM.
//
//   h = embed(ids) · √d_model
//   for each layer:  h += post_attention_layernorm(self_attn(input_layernorm(h)))
//                    h += post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h)))
//   logits = softcap_final(lm_head(norm(h)))                       head tied to the embeddings
//
//   RMSNorm:   x / rms(x) · (1 + weight)                           (the 1 added at load)
//   attention: RoPE, GQA, scale query_pre_attn_scalar^-½, scores softcapped by
//              attn_logit_softcapping (softcap · tanh(s / softcap)), sliding window on the layers
//              layer_types marks "sliding_attention" (every other layer by default)
//   mlp:       down(gelu_tanh(gate(x)) ⊙ up(x))                    (hidden_activation)
// Config fields read: vocab_size, hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, head_dim, hidden_activation (hidden_act),
// max_position_embeddings, rms_norm_eps, rope_theta / rope_parameters, attention_bias,
// query_pre_attn_scalar, sliding_window, layer_types, final_logit_softcapping,
// attn_logit_softcapping, tie_word_embeddings, bos/eos/pad_token_id. GGUF (llama.cpp's gemma2):
// read_gemma2_gguf.
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include <tessera/families/common.hpp>
#include <tessera/families/family.hpp>
#include <tessera/ops/activation.hpp>

namespace tessera {
inline namespace v0 {
namespace families {

using gemma2_layer = layers::stack<layers::sandwich<rms, layers::attention_layer>, layers::sandwich<rms, layers::gated_mlp>>;
using gemma2_model = models::causal_lm<gemma2_layer, rms>;

inline std::unique_ptr<language_model> load_gemma2(const model_config& c, std::shared_ptr<const io::weight_map> weights) {
  const io::weight_map& w = *weights;
  const auto act = ops::parse_activation(c.hidden_act);
  const float eps = c.norm_eps;
  auto norm = [&](const std::string& name) { return rms::load(w, name, eps, 1.f); };  // x / rms · (1 + w)
  models::causal_lm_parts<gemma2_layer, rms> m;
  m.config = c;
  m.keep_alive = keep(weights);
  m.embed.tokens = layers::weight_matrix::load(w, "model.embed_tokens.weight");
  m.embed.scale = static_cast<float>(std::sqrt(static_cast<double>(c.d_model)));  // normalizer, rounded to f32
  for (index_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i);
    auto opts = attention_options_of(c, i);
    opts.softcap = c.attn_logit_softcap;
    gemma2_layer layer;
    auto& [attn, mlp] = layer.blocks;
    attn.pre = norm(p + ".input_layernorm");
    attn.sub = load_attention(w, p + ".self_attn", opts, c.attention_bias, c.attention_bias);
    attn.post = norm(p + ".post_attention_layernorm");
    mlp.pre = norm(p + ".pre_feedforward_layernorm");
    mlp.sub = layers::gated_mlp::load(w, p + ".mlp", act);
    mlp.post = norm(p + ".post_feedforward_layernorm");
    m.layers.push_back(std::move(layer));
  }
  m.head.final_norm = norm("model.norm");
  m.head.lm_head = lm_head_of(w, c, m.embed.tokens);
  m.head.softcap = c.final_logit_softcap;
  return std::make_unique<gemma2_model>(std::move(m));
}

/// config.json of Gemma2Config (transformers 5 defaults).
inline void read_gemma2_config(const io::json_fields& f, model_config& c) {
  using namespace config_fields;
  read_dims(f, c, {.vocab = 256000, .d_model = 2304, .n_layers = 26, .n_heads = 8});
  c.d_ff = f.get_int("intermediate_size", 9216);
  if (!f.has("num_key_value_heads")) c.n_kv_heads = 4;
  if (!f.has("head_dim")) c.head_dim = 256;
  c.hidden_act = f.opt_string("hidden_activation").value_or(f.get_string("hidden_act", "gelu_pytorch_tanh"));
  c.max_position = f.get_int("max_position_embeddings", 8192);
  c.norm_eps = f.get_float("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", true);
  read_rope(f, c, 10000.0);
  c.attention_bias = c.attention_out_bias = f.get_bool("attention_bias", false);
  const float qpas = f.get_float("query_pre_attn_scalar", 256.0);
  if (!(qpas > 0.f)) throw config_error(f.file() + ": field 'query_pre_attn_scalar' must be positive");
  c.attention_multiplier = 1.f / std::sqrt(qpas);
  if (f.json().contains("sliding_window")) {
    if (auto w = f.opt_int("sliding_window")) c.sliding_window = *w;
  } else {
    c.sliding_window = 4096;
  }
  c.layer_types = f.string_list("layer_types");
  if (c.layer_types.empty())
    for (index_t i = 0; i < c.n_layers; ++i) c.layer_types.push_back((i + 1) % 2 ? "sliding_attention" : "full_attention");
  if (static_cast<index_t>(c.layer_types.size()) != c.n_layers)
    throw config_error(f.file() + ": field 'layer_types' has " + std::to_string(c.layer_types.size()) +
                       " entries for num_hidden_layers " + std::to_string(c.n_layers));
  const auto softcap = [&](const char* key, double absent) {  // null: off (transformers skips the tanh)
    return f.json().contains(key) ? static_cast<float>(f.opt_float(key).value_or(0.0)) : static_cast<float>(absent);
  };
  c.final_logit_softcap = softcap("final_logit_softcapping", 30.0);
  c.attn_logit_softcap = softcap("attn_logit_softcapping", 50.0);
  if (c.final_logit_softcap < 0.f || c.attn_logit_softcap < 0.f)
    throw config_error(f.file() + ": softcapping values must be >= 0 (0 or null: off)");
  c.bos_token_id = static_cast<std::int32_t>(f.get_int("bos_token_id", 2));
  c.eos_token_ids = f.json().contains("eos_token_id") ? f.int_list("eos_token_id") : std::vector<std::int32_t>{1};
  c.pad_token_id = static_cast<std::int32_t>(f.get_int("pad_token_id", 0));
  if (c.architecture.empty()) c.architecture = "Gemma2ForCausalLM";
}

/// GGUF metadata of llama.cpp's gemma2 architecture (convert_hf_to_gguf.py's Gemma2Model). The file
/// does not carry query_pre_attn_scalar or layer_types: llama.cpp takes the scale from the model
/// size (46 layers, Gemma 2 27B: d_model / n_heads = 144; otherwise head_dim, as 2B and 9B are) and
/// slides the window on the even layers; so does this reader.
inline void read_gemma2_gguf(const io::gguf_file& g, model_config& c) {
  const gguf_keys k{g, "gemma2."};
  c.architecture = "Gemma2ForCausalLM";
  read_gguf_decoder_dims(k, c, 1e-6);
  c.rope.neox = true;  // Gemma's q/k rows are not permuted by the converter
  c.hidden_act = "gelu_pytorch_tanh";
  const index_t qpas = c.n_layers == 46 && c.n_heads > 0 ? c.d_model / c.n_heads : c.head_dim;
  if (qpas <= 0) throw config_error(g.path() + ": GGUF gemma2 model without a head size (attention.key_length)");
  c.attention_multiplier = static_cast<float>(1.0 / std::sqrt(static_cast<double>(qpas)));
  c.sliding_window = k.opt("attention.sliding_window").value_or(4096);
  c.layer_types.clear();
  for (index_t i = 0; i < c.n_layers; ++i) c.layer_types.push_back(i % 2 == 0 ? "sliding_attention" : "full_attention");
  c.attn_logit_softcap = static_cast<float>(k.optf("attn_logit_softcapping").value_or(50.0));
  c.final_logit_softcap = static_cast<float>(k.optf("final_logit_softcapping").value_or(30.0));
  if (c.final_logit_softcap < 0.f || c.attn_logit_softcap < 0.f)
    throw config_error(g.path() + ": GGUF gemma2 softcapping values must be >= 0");
}

// llama.cpp's gemma2 tensor names (llama-arch.cpp); every norm is stored as 1 + w (the converter adds
// the 1 that Gemma's RMSNorm applies), read back as w.
inline constexpr io::gguf_name_rule gemma2_gguf_global[] = {{"token_embd", "model.embed_tokens"},
                                                            {"output_norm", "model.norm"}};
inline constexpr io::gguf_name_rule gemma2_gguf_layer[] = {
    {"attn_norm", "model.layers.{}.input_layernorm"},
    {"attn_q", "model.layers.{}.self_attn.q_proj"},
    {"attn_k", "model.layers.{}.self_attn.k_proj"},
    {"attn_v", "model.layers.{}.self_attn.v_proj"},
    {"attn_output", "model.layers.{}.self_attn.o_proj"},
    {"post_attention_norm", "model.layers.{}.post_attention_layernorm"},
    {"ffn_norm", "model.layers.{}.pre_feedforward_layernorm"},
    {"post_ffw_norm", "model.layers.{}.post_feedforward_layernorm"},
    {"ffn_gate", "model.layers.{}.mlp.gate_proj"},
    {"ffn_up", "model.layers.{}.mlp.up_proj"},
    {"ffn_down", "model.layers.{}.mlp.down_proj"}};

inline void fix_gemma2_gguf(const io::gguf_file&, std::string_view name, io::gguf_tensor_fix& fix) {
  if (name.ends_with("norm.weight")) fix.transform = io::weight_transform::minus_one;
}

#ifndef TESSERA_EXTERN_FAMILIES  // defined: one other translation unit registers the families (docs/architecture.md)
inline const bool gemma2_registered = register_family({
    .name = "gemma2",
    .model_types = {"gemma2"},
    .architectures = {"Gemma2ForCausalLM", "Gemma2Model"},
    .gguf_architectures = {"gemma2"},
    .read_hf = read_gemma2_config,
    .read_gguf = read_gemma2_gguf,
    .gguf_name = [](std::string_view n) { return io::gguf_rename(gemma2_gguf_global, gemma2_gguf_layer, n); },
    .gguf_fix = fix_gemma2_gguf,
    .load = load_gemma2,
});
#endif

}  // namespace families
}  // namespace v0
}  // namespace tessera
