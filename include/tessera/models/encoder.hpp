// tessera/models/encoder.hpp: the encoder runtime (docs/architecture.md, "Runtimes"): BERT and
// friends, and the encoder half of a seq2seq model.
//
//   h = embed_norm(tokens(ids) · scale + positions(pos + offset) + token_types(tt))   (rows, d_model)
//   for each layer:  layer.forward(h, ctx{bidirectional}, ws)       residual wiring inside
//   [h = final_norm(h)]
//   pooler_output = tanh(pooler(h[first row of each sequence]))      (n_seq, d_model), when present
//
// A batch is packed: sequences of any lengths, no padding; attention sees each sequence's own rows
// only (bidirectional). encode() is stateless and may run from several threads at once; each call
// sizes its own buffers.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <tessera/core/tensor.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/layers/batch.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/layers/residual.hpp>
#include <tessera/models/causal_lm.hpp>
#include <tessera/models/language_model.hpp>
#include <tessera/models/model_config.hpp>
#include <tessera/ops/elementwise.hpp>
#include <tessera/ops/embedding.hpp>

namespace tessera {
inline namespace v0 {

namespace models {

/// Embeddings of an encoder: tokens, learned positions (with an offset: BART's 2), token types,
/// and a norm over their sum.
template <class EmbedNorm>
struct encoder_embeddings {
  layers::weight_matrix tokens;                      // (vocab, d_model)
  std::optional<layers::weight_matrix> positions;    // (max_position, d_model)
  index_t position_offset = 0;
  std::optional<layers::weight_matrix> token_types;  // (type_vocab, d_model)
  std::optional<EmbedNorm> norm;
  float scale = 1.f;                                 // BART's scale_embedding: sqrt(d_model)
};

template <class Layer, class Norm>
struct encoder_parts {
  model_config config;
  std::shared_ptr<const void> keep_alive;
  encoder_embeddings<Norm> embed;
  std::vector<Layer> layers;
  std::optional<Norm> final_norm;                    // pre-norm encoders (mBART, T5)
  std::optional<layers::linear> pooler;              // BERT: tanh(dense(h[CLS]))
};

template <class Layer, class Norm>
class encoder final : public text_encoder {
 public:
  using state_type = typename Layer::state_type;

  explicit encoder(encoder_parts<Layer, Norm> p) : p_(std::move(p)) {
    const auto& c = p_.config;
    detail::check_embedding_table(p_.embed.tokens, c);
    expect_equal(static_cast<index_t>(p_.layers.size()), c.n_layers, "encoder: layers vs num_hidden_layers");
  }

  const model_config& config() const noexcept override { return p_.config; }
  const encoder_parts<Layer, Norm>& parts() const noexcept { return p_; }

  encoder_output encode(std::span<const std::span<const std::int32_t>> ids,
                        std::span<const std::span<const std::int32_t>> token_types = {}, int threads = 0) const override {
    const auto& c = p_.config;
    const thread_scope scope(threads);
    if (ids.empty()) throw range_error("encode: the batch has no sequence");
    if (!token_types.empty() && token_types.size() != ids.size())
      throw shape_error("encode: " + std::to_string(token_types.size()) + " token_type rows for " +
                        std::to_string(ids.size()) + " sequences");
    encoder_output out;
    out.starts.assign(ids.size() + 1, 0);
    const index_t max_pos = p_.embed.positions ? p_.embed.positions->rows() - p_.embed.position_offset : -1;
    const index_t n_types = p_.embed.token_types ? p_.embed.token_types->rows() : 1;
    for (std::size_t s = 0; s < ids.size(); ++s) {
      const index_t n = static_cast<index_t>(ids[s].size());
      if (n == 0) throw range_error("encode: sequence " + std::to_string(s) + " is empty");
      if (max_pos >= 0 && n > max_pos)
        throw range_error("encode: sequence " + std::to_string(s) + " has " + std::to_string(n) +
                          " tokens, the model has " + std::to_string(max_pos) + " positions");
      detail::check_token_ids(ids[s], c.vocab);
      if (!token_types.empty()) {
        if (token_types[s].size() != ids[s].size())
          throw shape_error("encode: sequence " + std::to_string(s) + " has " + std::to_string(n) + " ids and " +
                            std::to_string(token_types[s].size()) + " token types");
        detail::check_token_ids(token_types[s], n_types);
      }
      out.starts[s + 1] = out.starts[s] + n;
    }
    const index_t rows = out.starts.back(), d = c.d_model, n_seq = static_cast<index_t>(ids.size());
    std::vector<std::int32_t> row_ids(static_cast<std::size_t>(rows)), pos(static_cast<std::size_t>(rows)),
        types(static_cast<std::size_t>(rows), 0);
    for (index_t s = 0; s < n_seq; ++s)
      for (index_t i = out.starts[static_cast<std::size_t>(s)]; i < out.starts[static_cast<std::size_t>(s) + 1]; ++i) {
        const auto j = static_cast<std::size_t>(i - out.starts[static_cast<std::size_t>(s)]);
        row_ids[static_cast<std::size_t>(i)] = ids[static_cast<std::size_t>(s)][j];
        pos[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(j);
        if (!token_types.empty()) types[static_cast<std::size_t>(i)] = token_types[static_cast<std::size_t>(s)][j];
      }
    // buffers and workspace for this call
    std::size_t wsb = 2 * workspace::bytes_for<float>(rows * d) + workspace::bytes_for<state_type*>(n_seq) + 4096;
    std::size_t lw = 0;
    for (const auto& l : p_.layers) lw = std::max(lw, l.workspace_bytes(rows));
    workspace ws(wsb + lw + (p_.pooler ? p_.pooler->workspace_bytes(rows) : 0));
    out.last_hidden_state = tensor<float, 2>({rows, d});
    auto h = out.last_hidden_state.view();
    embed(row_ids, pos, types, h, ws);
    // layers: bidirectional attention within each sequence; the states are empty (no cache)
    std::vector<index_t> starts(out.starts.begin(), out.starts.end());
    const layers::batch_context ctx{starts, pos, layers::attention_mode::bidirectional, nullptr};
    const layers::state_spec none{.max_len = 0, .reserve = 0};
    std::vector<state_type> states;
    std::vector<state_type*> ptrs;
    for (const auto& layer : p_.layers) {
      states.clear();
      ptrs.clear();
      for (index_t s = 0; s < n_seq; ++s) states.push_back(layer.make_state(none));
      for (auto& st : states) ptrs.push_back(&st);
      layer.forward(h, layers::state_refs<state_type>(ptrs.data(), ptrs.size()), ctx, ws);
    }
    if (p_.final_norm) p_.final_norm->forward(h, h);
    if (p_.pooler) {  // tanh(dense(first row of each sequence))
      tensor<float, 2> first({n_seq, d});
      for (index_t s = 0; s < n_seq; ++s) {
        const float* r = h.row(out.starts[static_cast<std::size_t>(s)]);
        std::copy(r, r + d, first.view().row(s));
      }
      out.pooler_output = tensor<float, 2>({n_seq, p_.pooler->out_features()});
      p_.pooler->forward(first.cview(), out.pooler_output->view(), ws);
      for (auto& x : *out.pooler_output) x = std::tanh(x);
    }
    return out;
  }

 private:
  void embed(const std::vector<std::int32_t>& ids, const std::vector<std::int32_t>& pos,
             const std::vector<std::int32_t>& types, tensor_view<float, 2> h, workspace& ws) const {
    const auto& e = p_.embed;
    workspace::frame frame(ws);
    std::visit([&](const auto& t) { ops::get_rows(t, ids, h); }, e.tokens.view());
    if (e.scale != 1.f) ops::scale(h, e.scale);
    auto t = ws.alloc_view<float, 2>(h.extents());
    if (e.positions) {
      std::vector<std::int32_t> shifted(pos);
      for (auto& p : shifted) p += static_cast<std::int32_t>(e.position_offset);
      std::visit([&](const auto& table) { ops::get_rows(table, shifted, t); }, e.positions->view());
      ops::add_inplace(h, tensor_view<const float, 2>(t));
    }
    if (e.token_types) {
      std::visit([&](const auto& table) { ops::get_rows(table, types, t); }, e.token_types->view());
      ops::add_inplace(h, tensor_view<const float, 2>(t));
    }
    if (e.norm) e.norm->forward(h, h);
  }

  encoder_parts<Layer, Norm> p_;
};

}  // namespace models
}  // namespace v0
}  // namespace tessera
