// tessera/families/hybrid.hpp: causal LMs whose layers come from a per-layer schedule, the one
// layer type of Mamba, Mamba-2, Jamba and schedule-defined hybrids.
//
// Every layer is an optional mixer block and an optional feed-forward block, each pre-norm with a
// residual (transformers' JambaMambaDecoderLayer / JambaAttentionDecoderLayer, MambaBlock):
//
//   h = embed(ids)                                  (rows, d_model)
//   for each layer i:
//     h += mixer_i(rms_norm(h))                     unless mixer[i] == '-'
//     h += ffn_i(rms_norm(h))                       unless ffn[i] == '-'
//   logits = lm_head(rms_norm(h))
//
// The schedule is two strings of n_layers letters:
//   mixers: M  Mamba-1 (layers/mamba_mixer.hpp)        S  Mamba-2 / SSD (layers/mamba2_mixer.hpp)
//           A  softmax attention (layers/attention.hpp; GQA, no positional encoding: Jamba)
//           R  retention, G  gated delta rule (layers/linear_attention_mixer.hpp)
//           -  none
//   ffns:   F  gated MLP (layers/mlp.hpp)              E  sparse MoE, top-k router (layers/moe.hpp)
//           -  none
// so Mamba is ("MMMM", "----"), Jamba with attention every 8th layer from 4 and experts every 2nd
// from 1 is hybrid_schedule::periodic(...), a Mamba-2-Hybrid stack (Mamba-2, attention and MLP
// layers of their own) is e.g. ("SSS-A-S-", "---F-F-F"), and a linear-attention hybrid with a
// softmax layer every k-th is hybrid_schedule::every_kth(n, 'G', 'A', k, 'F').
// Weight names come from hybrid_layout ("{}" is the layer index); families/mamba.hpp, mamba2.hpp
// and jamba.hpp set the names and the schedule of their checkpoints.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <tessera/families/common.hpp>
#include <tessera/layers/linear_attention_mixer.hpp>
#include <tessera/layers/mamba2_mixer.hpp>
#include <tessera/layers/mamba_mixer.hpp>
#include <tessera/layers/moe.hpp>
#include <tessera/ops/activation.hpp>

namespace tessera {
inline namespace v0 {
namespace families {

using hybrid_mixer = layers::one_of<layers::mamba_mixer, layers::mamba2_mixer, layers::attention_layer, layers::linear_attention_mixer>;
using hybrid_ffn = layers::one_of<layers::gated_mlp, layers::sparse_moe>;
using hybrid_layer = layers::stack<layers::prenorm<rms, hybrid_mixer>, layers::prenorm<rms, hybrid_ffn>>;
using hybrid_model = models::causal_lm<hybrid_layer, rms>;

// ---- schedule -------------------------------------------------------------------------------------

struct hybrid_schedule {
  std::string mixers;  // one of "MSARG-" per layer
  std::string ffns;    // one of "FE-" per layer

  index_t n_layers() const noexcept { return static_cast<index_t>(mixers.size()); }

  /// Checks letters and lengths: config_error naming the offending letter, its layer, or the lengths.
  static hybrid_schedule parse(std::string_view mixers, std::string_view ffns, index_t n_layers) {
    if (static_cast<index_t>(mixers.size()) != n_layers)
      throw config_error("hybrid schedule: mixer schedule \"" + std::string(mixers) + "\" has " +
                         std::to_string(mixers.size()) + " letters, the model has " + std::to_string(n_layers) + " layers");
    if (ffns.size() != mixers.size())
      throw config_error("hybrid schedule: feed-forward schedule \"" + std::string(ffns) + "\" has " +
                         std::to_string(ffns.size()) + " letters, the mixer schedule " + std::to_string(mixers.size()));
    for (std::size_t i = 0; i < mixers.size(); ++i) {
      if (std::string_view("MSARG-").find(mixers[i]) == std::string_view::npos)
        throw config_error("hybrid schedule: unknown mixer letter '" + std::string(1, mixers[i]) + "' at layer " +
                           std::to_string(i) + " of \"" + std::string(mixers) + "\" (known: M S A R G -)");
      if (std::string_view("FE-").find(ffns[i]) == std::string_view::npos)
        throw config_error("hybrid schedule: unknown feed-forward letter '" + std::string(1, ffns[i]) + "' at layer " +
                           std::to_string(i) + " of \"" + std::string(ffns) + "\" (known: F E -)");
      if (mixers[i] == '-' && ffns[i] == '-')
        throw config_error("hybrid schedule: layer " + std::to_string(i) + " has neither a mixer nor a feed-forward block");
    }
    return {std::string(mixers), std::string(ffns)};
  }

  /// Jamba: attention where i % attn_period == attn_offset (else `ssm` letter), experts where
  /// i % expert_period == expert_offset (else a dense MLP).
  static hybrid_schedule periodic(index_t n_layers, index_t attn_period, index_t attn_offset, index_t expert_period,
                                  index_t expert_offset, char ssm = 'M') {
    if (attn_period <= 0 || expert_period <= 0)
      throw config_error("hybrid schedule: attn_layer_period and expert_layer_period must be positive");
    if (attn_offset < 0 || attn_offset >= attn_period || expert_offset < 0 || expert_offset >= expert_period)
      throw config_error("hybrid schedule: offsets must be in [0, period): attn_layer_offset " + std::to_string(attn_offset) +
                         " / period " + std::to_string(attn_period) + ", expert_layer_offset " +
                         std::to_string(expert_offset) + " / period " + std::to_string(expert_period));
    std::string m, f;
    for (index_t i = 0; i < n_layers; ++i) {
      m += i % attn_period == attn_offset ? 'A' : ssm;
      f += i % expert_period == expert_offset ? 'E' : 'F';
    }
    return parse(m, f, n_layers);
  }

  /// `base` mixers with `every` at layers k-1, 2k-1, ... (MiniMax / Qwen3-Next style); each layer
  /// gets feed-forward `ffn`.
  static hybrid_schedule every_kth(index_t n_layers, char base, char every, index_t k, char ffn = 'F') {
    if (k <= 0) throw config_error("hybrid schedule: k must be positive");
    std::string m, f;
    for (index_t i = 0; i < n_layers; ++i) m += (i + 1) % k == 0 ? every : base, f += ffn;
    return parse(m, f, n_layers);
  }
};

/// Weight names of a hybrid checkpoint; "{}" stands for the layer index.
struct hybrid_layout {
  std::string embed = "model.embed_tokens.weight";
  std::string mixer_norm = "model.layers.{}.input_layernorm";
  std::string ffn_norm = "model.layers.{}.pre_ff_layernorm";
  std::string ssm = "model.layers.{}.mamba";             // M and S mixers
  std::string attention = "model.layers.{}.self_attn";   // A, R, G mixers
  std::string ffn = "model.layers.{}.feed_forward";      // F and E blocks
  std::string final_norm = "model.final_layernorm";
  std::string lm_head = "lm_head";
  bool mamba_inner_norms = false;                         // Jamba's dt/B/C RMSNorms
  bool attention_rope = false;                            // A layers rotate q, k (Bamba); Jamba: no positions

  static std::string at(const std::string& pattern, index_t i) {
    std::string s = pattern;
    const auto p = s.find("{}");
    if (p != std::string::npos) s.replace(p, 2, std::to_string(i));
    return s;
  }
};

// ---- loading ------------------------------------------------------------------------------------

/// Builds a hybrid model from a weight map, a config (sizes), a schedule and the weight names.
/// The model keeps `weights` alive (its layers view into the mapped files).
inline std::unique_ptr<hybrid_model> load_hybrid(const model_config& cfg, const hybrid_schedule& schedule,
                                                 const hybrid_layout& names, std::shared_ptr<const io::weight_map> weights) {
  const io::weight_map& w = *weights;
  if (schedule.n_layers() != cfg.n_layers)
    throw config_error("load_hybrid: schedule has " + std::to_string(schedule.n_layers()) + " layers, the config " +
                       std::to_string(cfg.n_layers));
  hybrid_schedule::parse(schedule.mixers, schedule.ffns, cfg.n_layers);  // validates letters
  if (cfg.vocab <= 0 || cfg.d_model <= 0) throw config_error("load_hybrid: vocab and d_model must be positive");
  const ops::activation act = ops::parse_activation(cfg.hidden_act);
  models::causal_lm_parts<hybrid_layer, rms> m;
  m.config = cfg;
  m.config.layer_schedule = schedule.mixers;
  m.config.ffn_schedule = schedule.ffns;
  m.has_attention = schedule.mixers.find('A') != std::string::npos;
  m.keep_alive = keep(weights);
  for (index_t i = 0; i < cfg.n_layers; ++i) {
    hybrid_layer layer;
    auto& [mixer, ffn] = layer.blocks;
    const char mk = schedule.mixers[static_cast<std::size_t>(i)], fk = schedule.ffns[static_cast<std::size_t>(i)];
    if (mk != '-') mixer.norm = rms::load(w, hybrid_layout::at(names.mixer_norm, i), cfg.norm_eps);
    if (fk != '-') ffn.norm = rms::load(w, hybrid_layout::at(names.ffn_norm, i), cfg.norm_eps);
    const std::string sp = hybrid_layout::at(names.ssm, i), ap = hybrid_layout::at(names.attention, i);
    switch (mk) {
      case 'M':
        mixer.sub = layers::mamba_mixer::load(
            w, sp, {.d_model = cfg.d_model, .d_inner = cfg.d_inner, .d_state = cfg.d_state, .d_conv = cfg.d_conv,
                    .dt_rank = cfg.dt_rank, .conv_bias = cfg.conv_bias, .proj_bias = cfg.proj_bias, .act = act,
                    .inner_norms = names.mamba_inner_norms, .norm_eps = cfg.norm_eps});
        break;
      case 'S':
        mixer.sub = layers::mamba2_mixer::load(
            w, sp, {.d_model = cfg.d_model, .n_heads = cfg.ssm_n_heads, .head_dim = cfg.ssm_head_dim, .d_state = cfg.d_state,
                    .n_groups = cfg.n_groups, .d_conv = cfg.d_conv, .chunk = cfg.chunk, .dt_min = cfg.time_step_limit_lo,
                    .dt_max = cfg.time_step_limit_hi, .norm_eps = cfg.norm_eps, .conv_bias = cfg.conv_bias,
                    .proj_bias = cfg.proj_bias, .act = act});
        break;
      case 'A': {
        model_config ac = cfg;
        if (ac.n_kv_heads <= 0) ac.n_kv_heads = ac.n_heads;
        mixer.sub = load_attention(w, ap, attention_options_of(ac, i, names.attention_rope), cfg.attention_bias,
                                   cfg.attention_bias);
        break;
      }
      case 'R':
      case 'G':
        mixer.sub = layers::linear_attention_mixer::load(
            w, ap, mk == 'R' ? layers::linear_attention_mixer::kind::retention : layers::linear_attention_mixer::kind::gated_delta,
            cfg.d_model, cfg.n_heads, cfg.head_dim);
        break;
      default: break;
    }
    const std::string fp = hybrid_layout::at(names.ffn, i);
    if (fk == 'F') ffn.sub = layers::gated_mlp::load(w, fp, act);
    if (fk == 'E') ffn.sub = layers::sparse_moe::load(w, fp, {.n_experts = cfg.n_experts, .top_k = cfg.n_experts_per_tok, .act = act});
    m.layers.push_back(std::move(layer));
  }
  m.embed.tokens = layers::weight_matrix::load(w, names.embed);
  if (m.embed.tokens.rows() != cfg.vocab || m.embed.tokens.cols() != cfg.d_model)
    throw shape_error("weight '" + names.embed + "' is " + std::to_string(m.embed.tokens.rows()) + "x" +
                      std::to_string(m.embed.tokens.cols()) + ", the config has vocab " + std::to_string(cfg.vocab) +
                      " x d_model " + std::to_string(cfg.d_model));
  m.head.final_norm = rms::load(w, names.final_norm, cfg.norm_eps);
  m.head.lm_head = lm_head_of(w, cfg, m.embed.tokens, names.lm_head);
  if (m.head.lm_head.out_features() != cfg.vocab || m.head.lm_head.in_features() != cfg.d_model)
    throw shape_error("weight '" + names.lm_head + ".weight' does not match vocab x d_model");
  return std::make_unique<hybrid_model>(std::move(m));
}

}  // namespace families
}  // namespace v0
}  // namespace tessera
