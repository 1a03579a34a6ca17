// tessera/models/decoder.hpp: decoder<Block>, a causal LM made of pre-norm blocks, and its session.
//
//   tokens ─get_rows─▶ x (l, d_model) [+ learned positions]
//   for each block:  x += attn(attn_norm(x))      (RoPE, KV cache, GQA, sliding window)
//                    x += mlp(mlp_norm(x))
//   logits = lm_head(final_norm(x))               (vocab) for the last token, or (l, vocab)
//
// Block is decoder_block<Norm, Mlp>: Llama/Mistral/Qwen2 use <rms_norm_layer, gated_mlp>, GPT-2
// <layer_norm_layer, mlp>. The model owns the weights (views into the mapped checkpoint, plus
// whatever had to be converted at load); each session owns its caches, its RoPE state, its
// buffers and one workspace, all sized when the session is made, so decoding allocates nothing.
#pragma once

#include <deque>
#include <memory>
#include <span>
#include <variant>
#include <vector>

#include <tessera/attention/kv_cache.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/layers/attention_mixer.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/layers/mlp.hpp>
#include <tessera/layers/norm.hpp>
#include <tessera/layers/rotary.hpp>
#include <tessera/models/language_model.hpp>
#include <tessera/ops/elementwise.hpp>
#include <tessera/ops/embedding.hpp>

namespace tessera {
inline namespace v0 {

template <class Norm, class Mlp>
struct decoder_block {
  using norm_type = Norm;
  Norm attn_norm;
  layers::attention_mixer attn;
  Norm mlp_norm;
  Mlp mlp;
};

/// Weights a family had to convert at load (transposed GPT-2 Conv1D, ...), kept alive by the model.
using owned_matrix = std::variant<tensor<float, 2>, tensor<f16, 2>, tensor<bf16, 2>>;

/// Everything a decoder is made of; families fill it, decoder<Block> runs it.
template <class Block>
struct decoder_weights {
  model_config config;
  std::shared_ptr<const io::weight_map> checkpoint;  // keeps the mapped views alive
  std::deque<owned_matrix> owned;                    // converted weights (stable addresses)
  layers::weight_matrix embed;                       // (vocab, d_model)
  std::optional<layers::weight_matrix> pos_embed;    // (max_position, d_model), GPT-2
  std::vector<Block> blocks;
  typename Block::norm_type final_norm;
  layers::linear lm_head;                            // (vocab, d_model); tied: the embedding table
  layers::rope_frequencies rope;                     // unused when no block rotates
};

namespace detail {
/// Embedding rows of a table of any float type: out (n, d_model).
inline void embed_rows(const layers::weight_matrix& table, std::span<const std::int32_t> ids, tensor_view<float, 2> out) {
  std::visit([&](auto& t) { ops::get_rows(t, ids, out); }, table.view());
}
}  // namespace detail

template <class Block>
class decoder_session;

template <class Block>
class decoder : public language_model, public std::enable_shared_from_this<decoder<Block>> {
 public:
  explicit decoder(decoder_weights<Block> w) : w_(std::move(w)) {
    const auto& c = w_.config;
    if (w_.embed.rows() != c.vocab || w_.embed.cols() != c.d_model)
      throw shape_error(c.source + ": embedding table is (" + std::to_string(w_.embed.rows()) + ", " +
                        std::to_string(w_.embed.cols()) + "), config says (vocab " + std::to_string(c.vocab) +
                        ", d_model " + std::to_string(c.d_model) + ")");
    expect_equal(w_.lm_head.in_features(), c.d_model, "decoder: lm_head columns vs d_model");
    expect_equal(w_.lm_head.out_features(), c.vocab, "decoder: lm_head rows vs vocab");
  }

  const model_config& config() const noexcept override { return w_.config; }
  const decoder_weights<Block>& weights() const noexcept { return w_; }

  std::unique_ptr<lm_session> new_session(const session_limits& limits = {}) const override {
    return std::make_unique<decoder_session<Block>>(*this, limits);
  }

 private:
  decoder_weights<Block> w_;
};

template <class Block>
class decoder_session final : public lm_session {
  struct state {
    std::vector<attention::kv_cache> caches;
    layers::rope_state rope;
    index_t position = 0;
    tensor<float, 1> logits;
  };

 public:
  decoder_session(const decoder<Block>& model, const session_limits& limits) : model_(model) {
    const auto& w = model.weights();
    const auto& c = w.config;
    // Default: the trained context, stretched by the RoPE scaling factor when there is one.
    max_len_ = limits.max_len > 0 ? limits.max_len : (c.max_position > 0 ? c.max_position : 4096);
    if (limits.max_len <= 0 && c.rope.type != rope_scaling_type::none && c.rope.factor > 1.f)
      max_len_ = static_cast<index_t>(std::ceil(static_cast<double>(max_len_) * c.rope.factor));
    if (w.pos_embed && max_len_ > w.pos_embed->rows())
      throw range_error("session: max_len " + std::to_string(max_len_) + " exceeds the model's " +
                        std::to_string(w.pos_embed->rows()) + " learned positions");
    chunk_ = std::max<index_t>(1, std::min(limits.max_prefill, max_len_));
    for (const auto& b : w.blocks) s_.caches.push_back(b.attn.make_state(max_len_));
    if (uses_rope()) s_.rope = w.rope.initial_state();
    s_.logits = tensor<float, 1>({c.vocab});
    x_ = tensor<float, 2>({chunk_, c.d_model});
    h_ = tensor<float, 2>({chunk_, c.d_model});
    t_ = tensor<float, 2>({chunk_, c.d_model});
    positions_ = tensor<std::int32_t, 1>({chunk_});
    std::size_t bytes = w.lm_head.workspace_bytes();
    for (const auto& b : w.blocks)
      bytes = std::max({bytes, b.attn.workspace_bytes(chunk_), b.mlp.workspace_bytes(chunk_)});
    ws_.reserve(bytes + 4096);
  }

  void prefill(std::span<const std::int32_t> tokens) override { run(tokens, std::nullopt); }

  void prefill_all(std::span<const std::int32_t> tokens, tensor_view<float, 2> out) override {
    expect_extents<2>(out.extents(), {static_cast<index_t>(tokens.size()), model_.config().vocab}, "prefill_all: logits");
    run(tokens, out);
  }

  void step(std::int32_t token) override { run(std::span<const std::int32_t>(&token, 1), std::nullopt); }

  tensor_view<const float, 1> logits() const override { return s_.logits.cview(); }
  index_t position() const noexcept override { return s_.position; }
  index_t max_len() const noexcept override { return max_len_; }

  session_snapshot snapshot() const override { return {&model_, std::make_any<state>(s_)}; }

  void restore(const session_snapshot& snap) override {
    const state* st = std::any_cast<state>(&snap.state);
    if (snap.model != &model_ || st == nullptr)
      throw range_error("session::restore: the snapshot was taken from a session of another model");
    s_ = *st;
  }

  void reset() override {
    for (auto& cache : s_.caches) cache.clear();
    if (uses_rope()) s_.rope = model_.weights().rope.initial_state();
    s_.position = 0;
  }

 private:
  bool uses_rope() const {
    const auto& blocks = model_.weights().blocks;
    return !blocks.empty() && blocks.front().attn.shape().rope;
  }

  void run(std::span<const std::int32_t> tokens, std::optional<tensor_view<float, 2>> all_logits) {
    const auto& c = model_.config();
    if (tokens.empty()) throw range_error("prefill: the prompt is empty (give at least one token)");
    detail::check_token_ids(tokens, c.vocab);
    const index_t n = static_cast<index_t>(tokens.size());
    if (s_.position + n > max_len_)
      throw range_error("context overflow: " + std::to_string(s_.position) + " tokens in the session + " +
                        std::to_string(n) + " new > max_len " + std::to_string(max_len_));
    for (index_t i0 = 0; i0 < n; i0 += chunk_) {
      const index_t m = std::min(chunk_, n - i0);
      std::optional<tensor_view<float, 2>> out;
      if (all_logits) out = all_logits->slice(0, i0, i0 + m);
      forward(tokens.subspan(static_cast<std::size_t>(i0), static_cast<std::size_t>(m)), out);
    }
  }

  // One chunk of m <= chunk_ tokens at positions position .. position + m - 1.
  void forward(std::span<const std::int32_t> tokens, std::optional<tensor_view<float, 2>> all_logits) {
    const auto& w = model_.weights();
    const index_t m = static_cast<index_t>(tokens.size());
    auto x = x_.view().slice(0, 0, m);  // (m, d_model) residual stream
    auto h = h_.view().slice(0, 0, m);  // (m, d_model) normalized
    auto t = t_.view().slice(0, 0, m);  // (m, d_model) block output
    auto pos = positions_.view().slice(0, 0, m);
    for (index_t i = 0; i < m; ++i) pos(i) = static_cast<std::int32_t>(s_.position + i);
    if (uses_rope()) w.rope.update(s_.position + m, s_.rope);

    detail::embed_rows(w.embed, tokens, x);                      // token embeddings
    if (w.pos_embed) {                                           // learned positions (GPT-2)
      detail::embed_rows(*w.pos_embed, {pos.data(), static_cast<std::size_t>(m)}, t);
      ops::add_inplace(x, t);
    }
    for (std::size_t i = 0; i < w.blocks.size(); ++i) {
      const Block& b = w.blocks[i];
      b.attn_norm.forward(x, h);                                 // attention norm
      b.attn.forward(h, pos, s_.rope, s_.caches[i], t, ws_);     // self-attention (appends to the cache)
      ops::add_inplace(x, t);                                    // residual
      b.mlp_norm.forward(x, h);                                  // mlp norm
      b.mlp.forward(h, t, ws_);                                  // feed-forward
      ops::add_inplace(x, t);                                    // residual
    }
    if (all_logits) {                                            // logits of every token
      w.final_norm.forward(x, h);
      w.lm_head.forward(h, *all_logits, ws_);
      const auto last = (*all_logits)[m - 1];
      for (index_t j = 0; j < last.extent(0); ++j) s_.logits(j) = last(j);
    } else {                                                     // only the last token's
      auto last_h = h.slice(0, 0, 1);
      w.final_norm.forward(x.slice(0, m - 1, m), last_h);
      w.lm_head.forward(last_h, s_.logits.view().template reshape<2>({1, s_.logits.extent(0)}), ws_);
    }
    s_.position += m;
  }

  const decoder<Block>& model_;
  index_t max_len_ = 0;
  index_t chunk_ = 0;
  state s_;
  tensor<float, 2> x_, h_, t_;
  tensor<std::int32_t, 1> positions_;
  workspace ws_;
};

}  // namespace v0
}  // namespace tessera
