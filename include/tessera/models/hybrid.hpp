// tessera/models/hybrid.hpp: a causal LM whose layers come from a per-layer schedule.
//
// Every layer is an optional mixer block and an optional feed-forward block, each pre-norm with a
// residual (transformers' JambaMambaDecoderLayer / JambaAttentionDecoderLayer, MambaBlock):
//
//   h = embed(ids)                                  (l, d_model)
//   for each layer i:
//     if mixer[i] != '-':  h += mixer_i(rms_norm(h))
//     if ffn[i]   != '-':  h += ffn_i(rms_norm(h))
//   logits = lm_head(rms_norm(h))                   (l, vocab)
//
// The schedule is two strings of n_layers letters:
//   mixers: M  Mamba-1 (layers/mamba_mixer.hpp)        S  Mamba-2 / SSD (layers/mamba2_mixer.hpp)
//           A  softmax attention, GQA, no positional encoding (Jamba) (attention_block below)
//           R  retention (attention/retention.hpp)     G  gated delta rule (attention/delta_rule.hpp)
//           -  none
//   ffns:   F  dense GLU MLP                           E  sparse MoE, top-k router (layers/moe.hpp)
//           -  none
// so Mamba is ("MMMM", "----"), Jamba with attention every 8th layer from 4 and experts every 2nd
// from 1 is hybrid_schedule::periodic(...), a Mamba-2-Hybrid stack (Mamba-2, attention and MLP
// layers of their own) is e.g. ("SSS-A-S-", "---F-F-F"), and a linear-attention hybrid with a
// softmax layer every k-th is hybrid_schedule::every_kth(n, 'G', 'A', k, 'F').
//
// Session state is composite: one std::variant per layer holding that mixer's state_type (conv +
// SSM state, KV cache, linear-attention state matrix). A session owns its states, activations and
// one workspace sized at creation; decode allocates nothing. snapshot()/restore() copy the whole
// composite state (every layer, position, last logits) and are exact.
//
// Weight names come from hybrid_layout ("{}" is the layer index); families (families/mamba.hpp,
// mamba2.hpp, jamba.hpp) set the names and the schedule of their checkpoints.
#pragma once

#include <any>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <tessera/attention/delta_rule.hpp>
#include <tessera/attention/kv_cache.hpp>
#include <tessera/attention/retention.hpp>
#include <tessera/attention/softmax_attention.hpp>
#include <tessera/attention/softmax_decode.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/io/safetensors.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/layers/mamba2_mixer.hpp>
#include <tessera/layers/mamba_mixer.hpp>
#include <tessera/layers/moe.hpp>
#include <tessera/layers/norm.hpp>
#include <tessera/models/language_model.hpp>
#include <tessera/models/model_config.hpp>
#include <tessera/ops/activation.hpp>
#include <tessera/ops/elementwise.hpp>
#include <tessera/ops/embedding.hpp>

namespace tessera {
inline namespace v0 {

// ---- attention-family mixers used by the hybrid -----------------------------------------------
namespace layers {

struct attention_block_config {
  index_t d_model = 0;
  index_t n_heads = 0;
  index_t n_kv_heads = 0;       // GQA: n_heads % n_kv_heads == 0
  index_t head_dim = 0;
  bool bias = false;            // q/k/v/o biases
  std::optional<index_t> window;// sliding window (ring cache)
};

/// Softmax attention without positional encoding (Jamba's attention layers): q/k/v/o projections,
/// causal GQA over a KV cache (attention/softmax_attention.hpp).
class attention_block {
 public:
  using state_type = attention::kv_cache;

  static attention_block load(const io::weight_map& w, const std::string& prefix, const attention_block_config& cfg) {
    if (cfg.n_heads <= 0 || cfg.n_kv_heads <= 0 || cfg.head_dim <= 0 || cfg.n_heads % cfg.n_kv_heads != 0)
      throw config_error(prefix + ": num_attention_heads " + std::to_string(cfg.n_heads) +
                         " must be a positive multiple of num_key_value_heads " + std::to_string(cfg.n_kv_heads));
    attention_block a;
    a.cfg_ = cfg;
    a.q_ = linear::load(w, prefix + ".q_proj", cfg.bias);
    a.k_ = linear::load(w, prefix + ".k_proj", cfg.bias);
    a.v_ = linear::load(w, prefix + ".v_proj", cfg.bias);
    a.o_ = linear::load(w, prefix + ".o_proj", cfg.bias);
    const index_t qd = cfg.n_heads * cfg.head_dim, kd = cfg.n_kv_heads * cfg.head_dim;
    detail::expect_weight_shape(a.q_.out_features(), qd, prefix + ".q_proj.weight", "rows (n_heads head_dim)");
    detail::expect_weight_shape(a.k_.out_features(), kd, prefix + ".k_proj.weight", "rows (n_kv_heads head_dim)");
    detail::expect_weight_shape(a.v_.out_features(), kd, prefix + ".v_proj.weight", "rows (n_kv_heads head_dim)");
    detail::expect_weight_shape(a.o_.in_features(), qd, prefix + ".o_proj.weight", "cols (n_heads head_dim)");
    detail::expect_weight_shape(a.q_.in_features(), cfg.d_model, prefix + ".q_proj.weight", "cols (d_model)");
    return a;
  }

  state_type make_state(const session_limits& lim) const {
    return attention::kv_cache(lim.max_len, cfg_.n_kv_heads, cfg_.head_dim, cfg_.window);
  }

  std::size_t workspace_bytes(index_t rows) const {
    const index_t qd = cfg_.n_heads * cfg_.head_dim, kd = cfg_.n_kv_heads * cfg_.head_dim;
    return 2 * workspace::bytes_for<float>(rows * qd) + 2 * workspace::bytes_for<float>(rows * kd) +
           std::max({attention::softmax_attention_workspace_bytes(cfg_.n_heads, cfg_.head_dim), q_.workspace_bytes(),
                     k_.workspace_bytes(), v_.workspace_bytes(), o_.workspace_bytes()}) +
           256;
  }

  // x: (l, d_model) → out: (l, d_model); appends l tokens to the cache (range_error when full)
  void prefill(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_type& cache, workspace& ws) const {
    run(x, out, cache, ws, false);
  }
  void step(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_type& cache, workspace& ws) const {
    run(x, out, cache, ws, true);
  }

 private:
  void run(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_type& cache, workspace& ws, bool decode) const {
    const index_t l = x.extent(0), H = cfg_.n_heads, KV = cfg_.n_kv_heads, hd = cfg_.head_dim;
    cache.check_room(l, "attention_block");
    workspace::frame frame(ws);
    auto q = ws.alloc_view<float, 2>({l, H * hd});   // (l, n_heads head_dim)
    auto k = ws.alloc_view<float, 2>({l, KV * hd});  // (l, n_kv_heads head_dim)
    auto v = ws.alloc_view<float, 2>({l, KV * hd});
    auto o = ws.alloc_view<float, 2>({l, H * hd});
    q_.forward(x, q, ws);
    k_.forward(x, k, ws);
    v_.forward(x, v, ws);
    const tensor_view<const float, 3> q3(q.data(), {l, H, hd}), k3(k.data(), {l, KV, hd}), v3(v.data(), {l, KV, hd});
    const tensor_view<float, 3> o3(o.data(), {l, H, hd});
    attention::attention_params p;
    p.causal = true;
    p.window = cfg_.window;
    if (decode && l == 1) {
      cache.append(k3, v3);
      attention::decode_attention(q3, cache, o3, p, ws);
    } else {
      attention::prefill_attention(q3, k3, v3, cache, o3, p, ws);
    }
    o_.forward(o, out, ws);
  }

  attention_block_config cfg_;
  linear q_, k_, v_, o_;
};

/// State of a linear-attention mixer: (n_heads, d_k, d_v).
struct linear_mixer_state {
  tensor<float, 3> s;
};

/// Retention (R) or gated delta rule (G) mixer: q/k/v/o projections (n_heads × head_dim), chunked
/// form for prefill, recurrent for step. G adds b_proj → β = sigmoid, a_proj → g = -exp(A_log) ·
/// softplus(a + dt_bias) (Qwen3-Next's gating) and L2-normalizes q, k; R uses RetNet's γ_h.
class linear_attention_block {
 public:
  using state_type = linear_mixer_state;
  enum class kind { retention, gated_delta };

  static linear_attention_block load(const io::weight_map& w, const std::string& prefix, kind kd, index_t d_model,
                                     index_t n_heads, index_t head_dim) {
    if (n_heads <= 0 || head_dim <= 0) throw config_error(prefix + ": n_heads and head_dim must be positive");
    linear_attention_block b;
    b.kind_ = kd, b.n_heads_ = n_heads, b.head_dim_ = head_dim;
    b.q_ = linear::load(w, prefix + ".q_proj");
    b.k_ = linear::load(w, prefix + ".k_proj");
    b.v_ = linear::load(w, prefix + ".v_proj");
    b.o_ = linear::load(w, prefix + ".o_proj");
    for (const linear* p : {&b.q_, &b.k_, &b.v_})
      detail::expect_weight_shape(p->out_features(), n_heads * head_dim, prefix + " q/k/v_proj.weight", "rows");
    detail::expect_weight_shape(b.q_.in_features(), d_model, prefix + ".q_proj.weight", "cols (d_model)");
    if (kd == kind::gated_delta) {
      b.b_ = linear::load(w, prefix + ".b_proj");
      b.a_ = linear::load(w, prefix + ".a_proj");
      detail::expect_weight_shape(b.b_.out_features(), n_heads, prefix + ".b_proj.weight", "rows (n_heads)");
      detail::expect_weight_shape(b.a_.out_features(), n_heads, prefix + ".a_proj.weight", "rows (n_heads)");
      const auto a_log = detail::load_vector(w, prefix + ".A_log", n_heads);
      b.A_ = tensor<float, 1>({n_heads});
      ssm::a_from_log(a_log.cview(), b.A_.view());
      b.dt_bias_ = detail::load_vector(w, prefix + ".dt_bias", n_heads);
    } else {
      b.gamma_ = tensor<float, 1>({n_heads});
      attention::retnet_gamma(b.gamma_.view());
    }
    return b;
  }

  state_type make_state(const session_limits&) const { return {tensor<float, 3>({n_heads_, head_dim_, head_dim_})}; }

  std::size_t workspace_bytes(index_t rows) const {
    const index_t hd = n_heads_ * head_dim_;
    return 4 * workspace::bytes_for<float>(rows * hd) + 2 * workspace::bytes_for<float>(rows * n_heads_) +
           std::max({attention::linear_attention_workspace_bytes(std::min<index_t>(rows, chunk), n_heads_, head_dim_, head_dim_),
                     q_.workspace_bytes(), o_.workspace_bytes(), b_.workspace_bytes(), a_.workspace_bytes()}) +
           256;
  }

  void prefill(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_type& st, workspace& ws) const {
    run(x, out, st, ws, false);
  }
  void step(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_type& st, workspace& ws) const {
    run(x, out, st, ws, true);
  }

 private:
  static constexpr index_t chunk = 64;

  void run(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_type& st, workspace& ws, bool recurrent) const {
    const index_t l = x.extent(0), H = n_heads_, hd = head_dim_;
    workspace::frame frame(ws);
    auto q = ws.alloc_view<float, 2>({l, H * hd});
    auto k = ws.alloc_view<float, 2>({l, H * hd});
    auto v = ws.alloc_view<float, 2>({l, H * hd});
    auto o = ws.alloc_view<float, 2>({l, H * hd});
    q_.forward(x, q, ws);
    k_.forward(x, k, ws);
    v_.forward(x, v, ws);
    const tensor_view<const float, 3> q3(q.data(), {l, H, hd}), k3(k.data(), {l, H, hd}), v3(v.data(), {l, H, hd});
    const tensor_view<float, 3> o3(o.data(), {l, H, hd});
    if (kind_ == kind::retention) {
      const attention::retention_params p{.scale = {}, .chunk_size = chunk};
      if (recurrent) attention::retention_recurrent(q3, k3, v3, gamma_.cview(), o3, st.s.view(), p, ws);
      else attention::retention_chunked(q3, k3, v3, gamma_.cview(), o3, st.s.view(), p, ws);
    } else {
      auto beta = ws.alloc_view<float, 2>({l, H});  // (l, n_heads)
      auto g = ws.alloc_view<float, 2>({l, H});     // (l, n_heads)
      b_.forward(x, beta, ws);
      a_.forward(x, g, ws);
      for (index_t t = 0; t < l; ++t)
        for (index_t h = 0; h < H; ++h) {
          beta(t, h) = 1.f / (1.f + std::exp(-beta(t, h)));
          const float a = g(t, h) + dt_bias_(h);
          const float sp = a > 20.f ? a : std::log1p(std::exp(a));
          g(t, h) = A_(h) * sp;  // A = -exp(A_log) ≤ 0
        }
      const attention::delta_rule_params p{.l2norm_qk = true, .l2norm_eps = 1e-6f, .scale = {}, .chunk_size = chunk};
      if (recurrent)
        attention::gated_delta_rule_recurrent(q3, k3, v3, tensor_view<const float, 2>(g), tensor_view<const float, 2>(beta),
                                              o3, st.s.view(), p, ws);
      else
        attention::gated_delta_rule_chunked(q3, k3, v3, tensor_view<const float, 2>(g), tensor_view<const float, 2>(beta),
                                            o3, st.s.view(), p, ws);
    }
    o_.forward(o, out, ws);
  }

  kind kind_ = kind::retention;
  index_t n_heads_ = 0, head_dim_ = 0;
  linear q_, k_, v_, o_, b_, a_;
  tensor<float, 1> gamma_, A_, dt_bias_;
};

}  // namespace layers

namespace models {

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

  static std::string at(const std::string& pattern, index_t i) {
    std::string s = pattern;
    const auto p = s.find("{}");
    if (p != std::string::npos) s.replace(p, 2, std::to_string(i));
    return s;
  }
};

// ---- model ----------------------------------------------------------------------------------------

using hybrid_mixer = std::variant<std::monostate, layers::mamba_mixer, layers::mamba2_mixer, layers::attention_block,
                                  layers::linear_attention_block>;
using hybrid_ffn = std::variant<std::monostate, layers::glu_ffn, layers::sparse_moe>;
using hybrid_layer_state = std::variant<std::monostate, ssm::mamba1_state, ssm::mamba2_state, attention::kv_cache,
                                        layers::linear_mixer_state>;

struct hybrid_layer {
  layers::rms_norm_layer mixer_norm, ffn_norm;
  hybrid_mixer mixer;
  hybrid_ffn ffn;
};

class hybrid_model;

/// Everything a session holds: what snapshot() copies.
struct hybrid_state {
  std::vector<hybrid_layer_state> layers;
  index_t position = 0;
  tensor<float, 1> logits;  // (vocab)
};

class hybrid_session final : public lm_session {
 public:
  hybrid_session(const hybrid_model& m, const session_limits& lim);

  void prefill(std::span<const std::int32_t> tokens) override { run_all(tokens, nullptr); }
  void prefill_all(std::span<const std::int32_t> tokens, tensor_view<float, 2> out) override;
  void step(std::int32_t token) override;
  tensor_view<const float, 1> logits() const override { return st_.logits.cview(); }
  index_t position() const noexcept override { return st_.position; }
  index_t max_len() const noexcept override { return max_len_; }
  session_snapshot snapshot() const override;
  void restore(const session_snapshot& s) override;
  void reset() override;

  /// Bytes of workspace this session reserved.
  std::size_t workspace_capacity() const noexcept { return ws_.capacity(); }

 private:
  void check_room(std::size_t n) const {
    if (st_.position + static_cast<index_t>(n) > max_len_)
      throw range_error("hybrid session: context overflow: position " + std::to_string(st_.position) + " + " +
                        std::to_string(n) + " tokens exceeds max_len " + std::to_string(max_len_));
  }
  void run_all(std::span<const std::int32_t> tokens, tensor_view<float, 2>* out);
  void forward(std::span<const std::int32_t> ids, bool decode, tensor_view<float, 2>* all_logits);

  const hybrid_model* model_;
  index_t max_len_, max_prefill_;
  hybrid_state st_;
  tensor<float, 2> h_, n_, t_;  // (max_prefill, d_model): residual stream, normed, block output
  workspace ws_;
};

class hybrid_model final : public language_model {
 public:
  hybrid_model(model_config cfg, hybrid_schedule schedule, std::vector<hybrid_layer> layers, layers::weight_matrix embed,
               layers::rms_norm_layer final_norm, layers::linear lm_head, std::shared_ptr<const void> keep_alive)
      : cfg_(std::move(cfg)), schedule_(std::move(schedule)), layers_(std::move(layers)), embed_(embed),
        final_norm_(std::move(final_norm)), lm_head_(std::move(lm_head)), keep_alive_(std::move(keep_alive)) {
    cfg_.layer_schedule = schedule_.mixers;
  }

  const model_config& config() const noexcept override { return cfg_; }
  const hybrid_schedule& schedule() const noexcept { return schedule_; }
  std::unique_ptr<lm_session> new_session(const session_limits& limits = {}) const override {
    return std::make_unique<hybrid_session>(*this, limits);
  }
  /// The concrete session (tests, benchmarks).
  std::unique_ptr<hybrid_session> new_hybrid_session(const session_limits& limits = {}) const {
    return std::make_unique<hybrid_session>(*this, limits);
  }
  bool has_attention() const noexcept { return schedule_.mixers.find('A') != std::string::npos; }

 private:
  friend class hybrid_session;
  model_config cfg_;
  hybrid_schedule schedule_;
  std::vector<hybrid_layer> layers_;
  layers::weight_matrix embed_;  // (vocab, d_model)
  layers::rms_norm_layer final_norm_;
  layers::linear lm_head_;       // (vocab, d_model)
  std::shared_ptr<const void> keep_alive_;  // the weight_map the views point into
};

// ---- session ------------------------------------------------------------------------------------

inline hybrid_session::hybrid_session(const hybrid_model& m, const session_limits& lim) : model_(&m) {
  const auto& c = m.cfg_;
  if (lim.max_len < 0 || lim.max_prefill < 0) throw range_error("hybrid session: negative session limits");
  // pure SSM / linear-attention models have no per-token memory: no context limit unless asked
  const index_t unbounded = std::numeric_limits<index_t>::max() / 4;
  max_len_ = lim.max_len > 0 ? lim.max_len : m.has_attention() ? (c.max_position > 0 ? c.max_position : 4096) : unbounded;
  max_prefill_ = std::max<index_t>(1, lim.max_prefill > 0 ? lim.max_prefill : 512);
  session_limits sized{.max_len = max_len_, .max_prefill = max_prefill_};
  std::size_t ws = m.lm_head_.workspace_bytes();
  for (const auto& layer : m.layers_) {
    std::visit([&](const auto& mx) {
      if constexpr (!std::is_same_v<std::decay_t<decltype(mx)>, std::monostate>) {
        st_.layers.emplace_back(mx.make_state(sized));
        ws = std::max(ws, mx.workspace_bytes(max_prefill_));
      } else {
        st_.layers.emplace_back(std::monostate{});
      }
    }, layer.mixer);
    std::visit([&](const auto& f) {
      if constexpr (!std::is_same_v<std::decay_t<decltype(f)>, std::monostate>) ws = std::max(ws, f.workspace_bytes(max_prefill_));
    }, layer.ffn);
  }
  ws_.reserve(ws + 4096);
  h_ = tensor<float, 2>({max_prefill_, c.d_model});
  n_ = tensor<float, 2>({max_prefill_, c.d_model});
  t_ = tensor<float, 2>({max_prefill_, c.d_model});
  st_.logits = tensor<float, 1>({c.vocab});
}

inline void hybrid_session::forward(std::span<const std::int32_t> ids, bool decode, tensor_view<float, 2>* all_logits) {
  const hybrid_model& m = *model_;
  const index_t l = static_cast<index_t>(ids.size());
  auto h = h_.view().slice(0, 0, l), nrm = n_.view().slice(0, 0, l), t = t_.view().slice(0, 0, l);
  // embeddings
  std::visit([&](const auto& table) { ops::get_rows(table, ids, h); }, m.embed_.view());
  for (std::size_t i = 0; i < m.layers_.size(); ++i) {
    const hybrid_layer& layer = m.layers_[i];
    // mixer: h += mixer(rms_norm(h))
    std::visit([&](const auto& mx) {
      using M = std::decay_t<decltype(mx)>;
      if constexpr (!std::is_same_v<M, std::monostate>) {
        layer.mixer_norm.forward(h, nrm);
        auto& state = std::get<typename M::state_type>(st_.layers[i]);
        if (decode) mx.step(nrm, t, state, ws_);
        else mx.prefill(nrm, t, state, ws_);
        ops::add_inplace(h, tensor_view<const float, 2>(t));
      }
    }, layer.mixer);
    // feed-forward: h += ffn(rms_norm(h))
    std::visit([&](const auto& f) {
      if constexpr (!std::is_same_v<std::decay_t<decltype(f)>, std::monostate>) {
        layer.ffn_norm.forward(h, nrm);
        f.forward(nrm, t, ws_);
        ops::add_inplace(h, tensor_view<const float, 2>(t));
      }
    }, layer.ffn);
  }
  // final norm + lm head (every row for prefill_all, the last row otherwise)
  if (all_logits) {
    m.final_norm_.forward(h, nrm);
    m.lm_head_.forward(nrm, *all_logits, ws_);
    std::copy(all_logits->row(l - 1), all_logits->row(l - 1) + m.cfg_.vocab, st_.logits.view().data());
  } else {
    auto last = h.slice(0, l - 1, l);
    auto nl = nrm.slice(0, 0, 1);
    m.final_norm_.forward(last, nl);
    m.lm_head_.forward(nl, tensor_view<float, 2>(st_.logits.view().data(), {1, m.cfg_.vocab}), ws_);
  }
  st_.position += l;
}

inline void hybrid_session::run_all(std::span<const std::int32_t> tokens, tensor_view<float, 2>* out) {
  if (tokens.empty()) throw range_error("hybrid session: prefill needs at least one token");
  detail::check_token_ids(tokens, model_->cfg_.vocab);
  check_room(tokens.size());
  for (std::size_t b = 0; b < tokens.size(); b += static_cast<std::size_t>(max_prefill_)) {
    const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(max_prefill_), tokens.size() - b);
    if (out) {
      auto rows = out->slice(0, static_cast<index_t>(b), static_cast<index_t>(b + n));
      forward(tokens.subspan(b, n), false, &rows);
    } else {
      forward(tokens.subspan(b, n), false, nullptr);
    }
  }
}

inline void hybrid_session::prefill_all(std::span<const std::int32_t> tokens, tensor_view<float, 2> out) {
  if (out.extent(0) != static_cast<index_t>(tokens.size()) || out.extent(1) != model_->cfg_.vocab)
    throw shape_error("hybrid session: prefill_all out is " + to_string(out.extents()) + ", expected (" +
                      std::to_string(tokens.size()) + ", " + std::to_string(model_->cfg_.vocab) + ")");
  run_all(tokens, &out);
}

inline void hybrid_session::step(std::int32_t token) {
  const std::int32_t ids[1] = {token};
  detail::check_token_ids(ids, model_->cfg_.vocab);
  check_room(1);
  forward(ids, true, nullptr);
}

inline session_snapshot hybrid_session::snapshot() const { return {model_, std::any(st_)}; }

inline void hybrid_session::restore(const session_snapshot& s) {
  if (s.model != model_)
    throw range_error("hybrid session: the snapshot comes from another model (restore it into a session of the model that made it)");
  const auto* st = std::any_cast<hybrid_state>(&s.state);
  if (!st) throw shape_error("hybrid session: the snapshot does not hold a hybrid model state");
  if (st->layers.size() != st_.layers.size()) throw shape_error("hybrid session: the snapshot has another layer count");
  if (st->position > max_len_)
    throw range_error("hybrid session: the snapshot holds " + std::to_string(st->position) +
                      " tokens, more than this session's max_len " + std::to_string(max_len_));
  for (std::size_t i = 0; i < st_.layers.size(); ++i) {
    if (st->layers[i].index() != st_.layers[i].index())
      throw shape_error("hybrid session: layer " + std::to_string(i) + " of the snapshot holds another kind of state");
    if (const auto* kv = std::get_if<attention::kv_cache>(&st->layers[i]))
      if (kv->slots() > std::get<attention::kv_cache>(st_.layers[i]).slots() && !kv->window())
        throw range_error("hybrid session: the snapshot's KV cache of layer " + std::to_string(i) +
                          " is larger than this session's");
  }
  // copy element-wise into our buffers (same sizes: no allocation for SSM states)
  for (std::size_t i = 0; i < st_.layers.size(); ++i) {
    std::visit([&](auto& dst) {
      using S = std::decay_t<decltype(dst)>;
      const S& src = std::get<S>(st->layers[i]);
      if constexpr (std::is_same_v<S, ssm::mamba1_state> || std::is_same_v<S, ssm::mamba2_state>) {
        std::copy(src.conv.begin(), src.conv.end(), dst.conv.view().data());
        std::copy(src.ssm.begin(), src.ssm.end(), dst.ssm.view().data());
      } else if constexpr (std::is_same_v<S, layers::linear_mixer_state>) {
        std::copy(src.s.begin(), src.s.end(), dst.s.view().data());
      } else {
        dst = src;
      }
    }, st_.layers[i]);
  }
  st_.position = st->position;
  std::copy(st->logits.begin(), st->logits.end(), st_.logits.view().data());
}

inline void hybrid_session::reset() {
  session_limits sized{.max_len = max_len_, .max_prefill = max_prefill_};
  for (std::size_t i = 0; i < st_.layers.size(); ++i) {
    std::visit([&](const auto& mx) {
      if constexpr (!std::is_same_v<std::decay_t<decltype(mx)>, std::monostate>) st_.layers[i] = mx.make_state(sized);
    }, model_->layers_[i].mixer);
  }
  st_.position = 0;
  std::fill(st_.logits.view().data(), st_.logits.view().data() + st_.logits.size(), 0.f);
}

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
  std::vector<hybrid_layer> layers(static_cast<std::size_t>(cfg.n_layers));
  for (index_t i = 0; i < cfg.n_layers; ++i) {
    hybrid_layer& L = layers[static_cast<std::size_t>(i)];
    const char mk = schedule.mixers[static_cast<std::size_t>(i)], fk = schedule.ffns[static_cast<std::size_t>(i)];
    if (mk != '-') L.mixer_norm = layers::rms_norm_layer::load(w, hybrid_layout::at(names.mixer_norm, i), cfg.norm_eps);
    if (fk != '-') L.ffn_norm = layers::rms_norm_layer::load(w, hybrid_layout::at(names.ffn_norm, i), cfg.norm_eps);
    const std::string sp = hybrid_layout::at(names.ssm, i), ap = hybrid_layout::at(names.attention, i);
    switch (mk) {
      case 'M':
        L.mixer = layers::mamba_mixer::load(w, sp, {.d_model = cfg.d_model, .d_inner = cfg.d_inner, .d_state = cfg.d_state,
                                                     .d_conv = cfg.d_conv, .dt_rank = cfg.dt_rank, .conv_bias = cfg.conv_bias,
                                                     .proj_bias = cfg.proj_bias, .act = act,
                                                     .inner_norms = names.mamba_inner_norms, .norm_eps = cfg.norm_eps});
        break;
      case 'S':
        L.mixer = layers::mamba2_mixer::load(
            w, sp, {.d_model = cfg.d_model, .n_heads = cfg.ssm_n_heads, .head_dim = cfg.ssm_head_dim, .d_state = cfg.d_state,
                    .n_groups = cfg.n_groups, .d_conv = cfg.d_conv, .chunk = cfg.chunk, .dt_min = cfg.time_step_limit_lo,
                    .dt_max = cfg.time_step_limit_hi, .norm_eps = cfg.norm_eps, .conv_bias = cfg.conv_bias,
                    .proj_bias = cfg.proj_bias, .act = act});
        break;
      case 'A':
        L.mixer = layers::attention_block::load(w, ap, {.d_model = cfg.d_model, .n_heads = cfg.n_heads,
                                                        .n_kv_heads = cfg.n_kv_heads > 0 ? cfg.n_kv_heads : cfg.n_heads,
                                                        .head_dim = cfg.head_dim, .bias = cfg.attention_bias,
                                                        .window = cfg.sliding_window});
        break;
      case 'R':
      case 'G':
        L.mixer = layers::linear_attention_block::load(
            w, ap, mk == 'R' ? layers::linear_attention_block::kind::retention : layers::linear_attention_block::kind::gated_delta,
            cfg.d_model, cfg.n_heads, cfg.head_dim);
        break;
      default: break;
    }
    const std::string fp = hybrid_layout::at(names.ffn, i);
    if (fk == 'F') L.ffn = layers::glu_ffn::load(w, fp, act);
    if (fk == 'E') L.ffn = layers::sparse_moe::load(w, fp, {.n_experts = cfg.n_experts, .top_k = cfg.n_experts_per_tok, .act = act});
  }
  auto embed = layers::weight_matrix::load(w, names.embed);
  if (embed.rows() != cfg.vocab || embed.cols() != cfg.d_model)
    throw shape_error("weight '" + names.embed + "' is " + std::to_string(embed.rows()) + "x" + std::to_string(embed.cols()) +
                      ", the config has vocab " + std::to_string(cfg.vocab) + " x d_model " + std::to_string(cfg.d_model));
  auto final_norm = layers::rms_norm_layer::load(w, names.final_norm, cfg.norm_eps);
  layers::linear head = (cfg.tie_word_embeddings || !w.contains(names.lm_head + ".weight"))
                            ? layers::linear::from(embed)
                            : layers::linear::load(w, names.lm_head);
  if (head.out_features() != cfg.vocab || head.in_features() != cfg.d_model)
    throw shape_error("weight '" + names.lm_head + ".weight' does not match vocab x d_model");
  return std::make_unique<hybrid_model>(cfg, schedule, std::move(layers), embed, std::move(final_norm), std::move(head),
                                        std::shared_ptr<const void>(weights, weights.get()));
}

// ---- random-weight checkpoints (tests, examples, benchmarks) ------------------------------------

/// Writes a random-weight checkpoint in `names`' layout for `cfg` and `schedule` to `file`
/// (safetensors, f32): Linear weights N(0, 1/fan_in), norms 1 + N(0, 0.1²), embeddings N(0, 0.5²),
/// conv N(0, 1/d_conv), A_log = log(1..d_state) + N(0, 0.1²) (Mamba-2/G: log(1..n_heads)),
/// dt biases = inverse softplus of dt log-uniform in [1e-3, 1e-1], D = 1 + N(0, 0.2²).
inline void write_random_hybrid(const model_config& cfg, const hybrid_schedule& schedule, const hybrid_layout& names,
                                const std::filesystem::path& file, std::uint64_t seed = 1) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  io::safetensors_writer out;
  auto add = [&](const std::string& name, std::vector<index_t> ext, auto gen) {
    index_t n = 1;
    for (auto e : ext) n *= e;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = gen(i, ext);
    out.add(name, dtype::f32, ext, std::as_bytes(std::span<const float>(v)));
  };
  auto normal = [&](float sd, float mean = 0.f) { return [&, sd, mean](index_t, const std::vector<index_t>&) { return mean + sd * nd(rng); }; };
  auto lin = [&](const std::string& p, index_t rows, index_t cols) {
    add(p + ".weight", {rows, cols}, normal(1.f / std::sqrt(static_cast<float>(cols))));
  };
  auto norm = [&](const std::string& p, index_t n) { add(p + ".weight", {n}, normal(0.1f, 1.f)); };
  auto inv_softplus_dt = [&](index_t, const std::vector<index_t>&) {
    const float dt = std::exp(std::log(1e-3f) + ud(rng) * (std::log(1e-1f) - std::log(1e-3f)));
    return dt + std::log(-std::expm1(-dt));
  };
  const index_t d = cfg.d_model;
  for (index_t i = 0; i < cfg.n_layers; ++i) {
    const char mk = schedule.mixers[static_cast<std::size_t>(i)], fk = schedule.ffns[static_cast<std::size_t>(i)];
    const std::string sp = hybrid_layout::at(names.ssm, i), ap = hybrid_layout::at(names.attention, i),
                      fp = hybrid_layout::at(names.ffn, i);
    if (mk != '-') norm(hybrid_layout::at(names.mixer_norm, i), d);
    if (fk != '-') norm(hybrid_layout::at(names.ffn_norm, i), d);
    if (mk == 'M') {
      const index_t di = cfg.d_inner, n = cfg.d_state, r = cfg.dt_rank;
      lin(sp + ".in_proj", 2 * di, d);
      add(sp + ".conv1d.weight", {di, 1, cfg.d_conv}, normal(1.f / std::sqrt(static_cast<float>(cfg.d_conv))));
      if (cfg.conv_bias) add(sp + ".conv1d.bias", {di}, normal(0.1f));
      lin(sp + ".x_proj", r + 2 * n, di);
      lin(sp + ".dt_proj", di, r);
      add(sp + ".dt_proj.bias", {di}, inv_softplus_dt);
      add(sp + ".A_log", {di, n}, [&](index_t j, const std::vector<index_t>&) {
        return std::log(static_cast<float>(j % n + 1)) + 0.1f * nd(rng);
      });
      add(sp + ".D", {di}, normal(0.2f, 1.f));
      lin(sp + ".out_proj", d, di);
      if (names.mamba_inner_norms) norm(sp + ".dt_layernorm", r), norm(sp + ".b_layernorm", n), norm(sp + ".c_layernorm", n);
    } else if (mk == 'S') {
      const index_t h = cfg.ssm_n_heads, di = h * cfg.ssm_head_dim, cd = di + 2 * cfg.n_groups * cfg.d_state;
      lin(sp + ".in_proj", di + cd + h, d);
      add(sp + ".conv1d.weight", {cd, 1, cfg.d_conv}, normal(1.f / std::sqrt(static_cast<float>(cfg.d_conv))));
      if (cfg.conv_bias) add(sp + ".conv1d.bias", {cd}, normal(0.1f));
      add(sp + ".dt_bias", {h}, inv_softplus_dt);
      add(sp + ".A_log", {h}, [&](index_t j, const std::vector<index_t>&) { return std::log(static_cast<float>(j + 1)) + 0.1f * nd(rng); });
      add(sp + ".D", {h}, normal(0.2f, 1.f));
      norm(sp + ".norm", di);
      lin(sp + ".out_proj", d, di);
    } else if (mk == 'A') {
      const index_t kv = cfg.n_kv_heads > 0 ? cfg.n_kv_heads : cfg.n_heads;
      lin(ap + ".q_proj", cfg.n_heads * cfg.head_dim, d);
      lin(ap + ".k_proj", kv * cfg.head_dim, d);
      lin(ap + ".v_proj", kv * cfg.head_dim, d);
      lin(ap + ".o_proj", d, cfg.n_heads * cfg.head_dim);
    } else if (mk == 'R' || mk == 'G') {
      const index_t hd = cfg.n_heads * cfg.head_dim;
      lin(ap + ".q_proj", hd, d), lin(ap + ".k_proj", hd, d), lin(ap + ".v_proj", hd, d), lin(ap + ".o_proj", d, hd);
      if (mk == 'G') {
        lin(ap + ".b_proj", cfg.n_heads, d), lin(ap + ".a_proj", cfg.n_heads, d);
        add(ap + ".A_log", {cfg.n_heads}, [&](index_t j, const std::vector<index_t>&) { return std::log(static_cast<float>(j + 1)) + 0.1f * nd(rng); });
        add(ap + ".dt_bias", {cfg.n_heads}, inv_softplus_dt);
      }
    }
    auto mlp = [&](const std::string& p) { lin(p + ".gate_proj", cfg.d_ff, d), lin(p + ".up_proj", cfg.d_ff, d), lin(p + ".down_proj", d, cfg.d_ff); };
    if (fk == 'F') mlp(fp);
    if (fk == 'E') {
      lin(fp + ".router", cfg.n_experts, d);
      for (index_t e = 0; e < cfg.n_experts; ++e) mlp(fp + ".experts." + std::to_string(e));
    }
  }
  add(names.embed, {cfg.vocab, d}, normal(0.5f));
  norm(names.final_norm, d);
  if (!cfg.tie_word_embeddings) lin(names.lm_head, cfg.vocab, d);
  out.write(file);
}

}  // namespace models
}  // namespace v0
}  // namespace tessera
