// tessera/models/model_config.hpp: one struct describing every supported checkpoint.
//
// Each family (families/<name>.hpp, through families/family.hpp's load_config) fills it from a
// Hugging Face config.json (+ generation_config.json) or from GGUF metadata, applying
// transformers' defaults for absent fields, and builds its model from it.
// Field names follow the glossary in README.md; the comment names the HF field(s) they come from.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <tessera/config.hpp>
#include <tessera/layers/rotary.hpp>

namespace tessera {
inline namespace v0 {

struct model_config {
  std::string family;             // "llama", "mistral", "qwen2", "gpt2", "mamba", "mamba2", "jamba", ...
  std::string architecture;       // architectures[0], e.g. "LlamaForCausalLM"
  std::string source;             // the file or folder it was read from (for messages)

  // transformer dims
  index_t vocab = 0;              // vocab_size
  index_t d_model = 0;            // hidden_size / n_embd / d_model
  index_t n_layers = 0;           // num_hidden_layers / n_layer
  index_t n_heads = 0;            // num_attention_heads / n_head
  index_t n_kv_heads = 0;         // num_key_value_heads (defaults to n_heads)
  index_t head_dim = 0;           // head_dim (defaults to d_model / n_heads)
  index_t d_ff = 0;               // intermediate_size / n_inner (GPT-2 default 4 * d_model)
  index_t max_position = 0;       // max_position_embeddings / n_positions
  index_t type_vocab = 0;         // type_vocab_size (BERT token types)
  // encoder-decoder (BART, T5, Marian): n_layers / n_heads / d_ff above are the decoder's
  index_t encoder_layers = 0;     // encoder_layers
  index_t encoder_heads = 0;      // encoder_attention_heads
  index_t encoder_d_ff = 0;       // encoder_ffn_dim
  bool scale_embedding = false;   // scale_embedding: token embeddings · sqrt(d_model)
  float norm_eps = 1e-6f;         // rms_norm_eps / layer_norm_epsilon / layer_norm_eps
  std::string hidden_act = "silu";// hidden_act / activation_function
  bool tie_word_embeddings = false;
  bool attention_bias = false;    // attention_bias (Llama), q/k/v bias (Qwen2 always true)
  bool attention_out_bias = false;// o_proj bias (Llama: attention_bias; Qwen2: false)
  bool mlp_bias = false;          // mlp_bias
  std::optional<index_t> sliding_window;  // sliding_window (Mistral; Qwen2 with use_sliding_window)
  index_t max_window_layers = 0;          // Qwen2: layers >= this use the sliding window
  std::vector<std::string> layer_types;   // layer_types ("full_attention"/"sliding_attention"), if given
  float attention_multiplier = 0.f;       // 0: 1/sqrt(head_dim) (Gemma 2: query_pre_attn_scalar^-1/2)
  float attn_logit_softcap = 0.f;         // attn_logit_softcapping (Gemma 2); 0: off
  float final_logit_softcap = 0.f;        // final_logit_softcapping (Gemma 2); 0: off
  bool scale_attn_weights = true;         // GPT-2
  bool scale_attn_by_inverse_layer_idx = false;  // GPT-2
  bool reorder_and_upcast_attn = false;   // GPT-2 (numerics only)
  rope_config rope;

  // state-space (Mamba, Mamba-2, Jamba)
  index_t d_inner = 0;            // intermediate_size / expand * hidden_size
  index_t d_state = 0;            // state_size / mamba_d_state
  index_t d_conv = 0;             // conv_kernel / mamba_d_conv
  index_t dt_rank = 0;            // time_step_rank ("auto" = ceil(d_model / 16)) / mamba_dt_rank
  bool conv_bias = true;          // use_conv_bias / mamba_conv_bias
  bool proj_bias = false;         // use_bias / mamba_proj_bias
  index_t ssm_n_heads = 0;        // Mamba-2 num_heads
  index_t ssm_head_dim = 0;       // Mamba-2 head_dim
  index_t n_groups = 1;           // Mamba-2 n_groups
  index_t chunk = 256;            // Mamba-2 chunk_size
  float time_step_min = 0.001f, time_step_max = 0.1f, time_step_floor = 1e-4f;
  float time_step_limit_lo = 0.f, time_step_limit_hi = 1e30f;  // Mamba-2 time_step_limit
  bool norm_before_gate = false;  // Mamba-2
  bool residual_in_fp32 = true;
  bool use_mamba_kernels = true;  // ignored (CPU)

  // hybrid (Jamba) and MoE
  index_t attn_layer_period = 0, attn_layer_offset = 0;
  index_t expert_layer_period = 0, expert_layer_offset = 0;
  index_t n_experts = 0;          // num_experts
  index_t n_experts_per_tok = 0;  // num_experts_per_tok
  std::string layer_schedule;     // per-layer mixer letters when the family has one ("MMAM...")
  std::string ffn_schedule;       // per-layer feed-forward letters of a hybrid ("FEFE...")

  // tokens and generation
  std::optional<std::int32_t> bos_token_id, pad_token_id;
  std::optional<std::int32_t> decoder_start_token_id;  // encoder-decoder models
  std::vector<std::int32_t> eos_token_ids;  // config.json eos_token_id and generation_config.json

  index_t kv_dim() const noexcept { return n_kv_heads * head_dim; }
};

}  // namespace v0
}  // namespace tessera
