// tessera/models/causal_lm.hpp: the one causal-LM runtime (docs/architecture.md, "Runtimes").
//
//   h = embed(ids) · embed_scale [+ learned positions]         (rows, d_model), every sequence packed
//   for each layer:  layer.forward(h, states, ctx, ws)          residual wiring inside (layers/residual.hpp)
//   logits = softcap(logit_scale · lm_head(final_norm(h)))     (vocab) for each sequence's last row,
//                                                               or (rows, vocab) for prefill_all
//
// Layer is any block with the layer contract's shape (a stack of prenorm / sandwich / parallel
// blocks; for a hybrid, blocks over one_of<...> mixers chosen per layer at load). FinalNorm is
// the final norm's type. Families (families/) build the layers from a checkpoint; this file knows
// nothing of config files or weight names.
//
// Memory lives in sessions: one per sequence, each with one state per layer (KV caches that grow
// with use, recurrent states), its position, its logits and last hidden state. A session owns a
// workspace sized for max_prefill rows, so decoding allocates nothing (a KV cache allocates only
// when it doubles). Batches: prefill_batch / step_batch pack several sessions' rows into one
// forward (weights read once) using the first session's workspace.
#pragma once

#include <algorithm>
#include <atomic>
#include <any>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <omp.h>

#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/layers/batch.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/layers/residual.hpp>
#include <tessera/models/language_model.hpp>
#include <tessera/models/model_config.hpp>
#include <tessera/ops/elementwise.hpp>
#include <tessera/ops/embedding.hpp>

namespace tessera {
inline namespace v0 {
namespace detail {
/// shape_error unless the embedding table is (vocab, d_model).
inline void check_embedding_table(const layers::weight_matrix& table, const model_config& c) {
  if (table.rows() != c.vocab || table.cols() != c.d_model)
    throw shape_error(c.source + ": embedding table is (" + std::to_string(table.rows()) + ", " +
                      std::to_string(table.cols()) + "), the config says (vocab " + std::to_string(c.vocab) +
                      ", d_model " + std::to_string(c.d_model) + ")");
}
}  // namespace detail


namespace models {

/// Token (and learned position) embeddings: norm(tokens(ids) · scale + positions(pos + offset)).
template <class Norm>
struct embedding_stage {
  layers::weight_matrix tokens;                    // (vocab, d_model)
  std::optional<layers::weight_matrix> positions;  // (max_position [+ offset], d_model): GPT-2, BART
  index_t position_offset = 0;                     // BART's learned positions start at row 2
  float scale = 1.f;                               // Gemma: sqrt(d_model); BART: scale_embedding
  std::optional<Norm> norm;                        // BART's layernorm_embedding
};

/// Final norm, LM head, logit scaling.
template <class FinalNorm>
struct lm_head_stage {
  std::optional<FinalNorm> final_norm;  // absent: BART's decoder has none
  layers::linear lm_head;               // (vocab, d_model) [+ bias: BART's final_logits_bias]; tied: the embedding table
  float logit_scale = 1.f;              // multiplies the logits (Cohere, Granite: 1 / logits_scaling)
  float softcap = 0.f;                  // final_logit_softcapping (Gemma 2): softcap · tanh(logits / softcap); 0: off
};

/// Everything a causal LM (or the decoder of an encoder-decoder) is made of; families fill it.
template <class Layer, class FinalNorm>
struct causal_lm_parts {
  model_config config;
  std::shared_ptr<const void> keep_alive;  // the mapped checkpoint the weights view into
  embedding_stage<FinalNorm> embed;
  std::vector<Layer> layers;
  lm_head_stage<FinalNorm> head;
  std::shared_ptr<const text_encoder> encoder;  // encoder-decoder models: runs over the source once
  bool has_attention = true;                // false: no per-token memory (default context unbounded)
  index_t trained_context = 0;              // tokens the model was made for (0: config.max_position);
                                            // a session's default is this capped at default_context
};

template <class Layer, class FinalNorm>
class causal_lm_session;

/// Per-thread OpenMP thread count for the duration of a forward (a session's `threads`).
class thread_scope {
 public:
  explicit thread_scope(int n) : saved_(num_threads()) {
    if (n > 0 && n != saved_) omp_set_num_threads(n), changed_ = true;
  }
  ~thread_scope() {
    if (changed_) omp_set_num_threads(saved_);
  }
  thread_scope(const thread_scope&) = delete;
  thread_scope& operator=(const thread_scope&) = delete;

 private:
  int saved_;
  bool changed_ = false;
};

template <class Layer, class FinalNorm>
class causal_lm final : public language_model {
 public:
  using layer_type = Layer;
  using state_type = typename Layer::state_type;
  using session_type = causal_lm_session<Layer, FinalNorm>;

  explicit causal_lm(causal_lm_parts<Layer, FinalNorm> p) : p_(std::move(p)) {
    const auto& c = p_.config;
    detail::check_embedding_table(p_.embed.tokens, c);
    if (p_.embed.positions && p_.embed.positions->cols() != c.d_model)
      throw shape_error(c.source + ": position embeddings have " + std::to_string(p_.embed.positions->cols()) +
                        " columns, d_model is " + std::to_string(c.d_model));
    expect_equal(p_.head.lm_head.in_features(), c.d_model, "causal_lm: lm_head columns vs d_model");
    expect_equal(p_.head.lm_head.out_features(), c.vocab, "causal_lm: lm_head rows vs vocab");
    expect_equal(static_cast<index_t>(p_.layers.size()), c.n_layers, "causal_lm: layers vs num_hidden_layers");
  }

  const model_config& config() const noexcept override { return p_.config; }
  const causal_lm_parts<Layer, FinalNorm>& parts() const noexcept { return p_; }

  std::unique_ptr<lm_session> new_session(const session_limits& limits = {}) const override {
    return std::make_unique<session_type>(*this, limits);
  }
  bool is_encoder_decoder() const noexcept override { return p_.encoder != nullptr; }
  /// The concrete session (tests, benchmarks).
  std::unique_ptr<session_type> new_typed_session(const session_limits& limits = {}) const {
    return std::make_unique<session_type>(*this, limits);
  }

  void prefill_batch(std::span<lm_session* const> sessions,
                     std::span<const std::span<const std::int32_t>> prompts) const override {
    if (sessions.size() != prompts.size())
      throw shape_error("prefill_batch: " + std::to_string(sessions.size()) + " sessions for " +
                        std::to_string(prompts.size()) + " prompts");
    std::vector<segment> segs;
    segs.reserve(sessions.size());
    for (std::size_t i = 0; i < sessions.size(); ++i) segs.push_back({own(sessions[i], i), prompts[i], std::nullopt});
    run(segs);
  }

  void step_batch(std::span<lm_session* const> sessions, std::span<const std::int32_t> tokens) const override {
    if (sessions.size() != tokens.size())
      throw shape_error("step_batch: " + std::to_string(sessions.size()) + " sessions for " +
                        std::to_string(tokens.size()) + " tokens");
    if (sessions.empty()) return;
    session_type* first = own(sessions[0], 0);
    // decode: at most max_prefill sequences per forward (the first session's workspace)
    for (std::size_t b = 0; b < sessions.size(); b += static_cast<std::size_t>(first->chunk_)) {
      const std::size_t e = std::min(sessions.size(), b + static_cast<std::size_t>(first->chunk_));
      segment* segs = first->decode_segments_.data();
      for (std::size_t i = b; i < e; ++i) segs[i - b] = {own(sessions[i], i), tokens.subspan(i, 1), std::nullopt};
      run(std::span<segment>(segs, e - b));
    }
  }

 private:
  friend class causal_lm_session<Layer, FinalNorm>;

  /// One sequence's share of a forward: its tokens, and where every row's logits go (prefill_all).
  struct segment {
    session_type* session = nullptr;
    std::span<const std::int32_t> tokens;
    std::optional<tensor_view<float, 2>> all_logits;  // (tokens, vocab)
  };

  // Debug builds (NDEBUG not defined): marks the sessions of one call in use, so that a call on
  // one of them from another thread at the same time throws before it touches anything
  // (docs/architecture.md, "Threads and sessions"). A session named twice in one batch is taken
  // once (run() then refuses the batch with its own message).
  class in_use_guard {
   public:
    explicit in_use_guard(std::span<const segment> segs) : segs_(segs) {
#ifndef NDEBUG
      for (; taken_ < segs_.size(); ++taken_) {
        if (repeated(taken_)) continue;
        if (segs_[taken_].session->in_use_.exchange(true, std::memory_order_acquire)) {
          release();
          throw error("session: used from two threads at once (a session is used by one thread at a time; "
                      "give each thread its own session: docs/architecture.md, \"Threads and sessions\")");
        }
      }
#endif
    }
    ~in_use_guard() { release(); }
    in_use_guard(const in_use_guard&) = delete;
    in_use_guard& operator=(const in_use_guard&) = delete;

   private:
    bool repeated(std::size_t i) const noexcept {
      for (std::size_t j = 0; j < i; ++j)
        if (segs_[j].session == segs_[i].session) return true;
      return false;
    }
    void release() noexcept {
      for (std::size_t i = 0; i < taken_; ++i)
        if (!repeated(i)) segs_[i].session->in_use_.store(false, std::memory_order_release);
      taken_ = 0;
    }
    std::span<const segment> segs_;
    std::size_t taken_ = 0;
  };

  session_type* own(lm_session* s, std::size_t i) const {
    auto* t = dynamic_cast<session_type*>(s);
    if (!t || &t->model_ != this)
      throw range_error("batch: session " + std::to_string(i) + " was not made by this model");
    return t;
  }

  // Checks every segment, then runs them in forwards of at most the first session's chunk rows;
  // a long prompt spans several forwards, a forward may hold several sequences.
  void run(std::span<segment> segs) const {
    if (segs.empty()) return;
    const in_use_guard in_use(segs);  // debug builds: refuses a session another thread is in
    const auto& c = p_.config;
    for (std::size_t i = 0; i < segs.size(); ++i) {
      const segment& g = segs[i];
      if (g.tokens.empty()) throw range_error("batch: sequence " + std::to_string(i) + " has no tokens");
      detail::check_token_ids(g.tokens, c.vocab);
      const index_t n = static_cast<index_t>(g.tokens.size());
      if (g.session->position_ + n > g.session->max_len_)
        throw range_error("context overflow: " + std::to_string(g.session->position_) + " tokens in the session + " +
                          std::to_string(n) + " new > max_len " + std::to_string(g.session->max_len_) +
                          (segs.size() > 1 ? " (batch sequence " + std::to_string(i) + ")" : std::string()));
      for (std::size_t j = 0; j < i; ++j)
        if (segs[j].session == g.session) throw range_error("batch: a session appears twice");
      if (p_.encoder && g.session->memory_.last_hidden_state.size() == 0)
        throw range_error("encoder-decoder: call encode(source) on the session before decoding");
    }
    session_type& host = *segs[0].session;  // whose buffers and workspace the forwards use
    const thread_scope threads(host.threads_);
    const index_t chunk = host.chunk_;
    std::size_t si = 0;
    index_t offset = 0;  // tokens of segs[si] already run
    while (si < segs.size()) {
      // gather up to `chunk` rows from the segments, in order
      index_t rows = 0, n_seq = 0;
      std::size_t sj = si;
      index_t off = offset;
      while (sj < segs.size() && rows < chunk) {
        const index_t take = std::min(chunk - rows, static_cast<index_t>(segs[sj].tokens.size()) - off);
        host.pieces_[static_cast<std::size_t>(n_seq)] = {&segs[sj], off, take};
        ++n_seq;
        rows += take;
        off += take;
        if (off == static_cast<index_t>(segs[sj].tokens.size())) ++sj, off = 0;
      }
      forward(host, n_seq, rows);
      si = sj;
      offset = off;
    }
  }

  // One forward over host.pieces_[0, n_seq): `rows` rows in all.
  void forward(session_type& host, index_t n_seq, index_t rows) const {
    const auto& c = p_.config;
    workspace& ws = host.ws_;
    workspace::frame frame(ws);
    auto h = host.h_.view().slice(0, 0, rows);  // (rows, d_model) the residual stream
    auto* starts = host.starts_.data();
    auto* pos = host.positions_.data();
    auto* ids = host.ids_.data();
    starts[0] = 0;
    for (index_t s = 0; s < n_seq; ++s) {
      const auto& pc = host.pieces_[static_cast<std::size_t>(s)];
      const index_t r0 = starts[s];
      for (index_t i = 0; i < pc.n; ++i) {
        ids[r0 + i] = pc.seg->tokens[static_cast<std::size_t>(pc.offset + i)];
        pos[r0 + i] = static_cast<std::int32_t>(pc.seg->session->position_ + i);
      }
      starts[s + 1] = r0 + pc.n;
    }
    // encoder-decoder: each sequence's encoder output, for the cross-attention layers
    auto* mem = ws.alloc<tensor_view<const float, 2>>(n_seq);
    layers::encoder_memory memory{std::span<const tensor_view<const float, 2>>(mem, static_cast<std::size_t>(n_seq))};
    if (p_.encoder)
      for (index_t s = 0; s < n_seq; ++s) mem[s] = host.pieces_[static_cast<std::size_t>(s)].seg->session->memory_.last_hidden_state.cview();
    const layers::batch_context ctx{std::span<const index_t>(starts, static_cast<std::size_t>(n_seq) + 1),
                                    std::span<const std::int32_t>(pos, static_cast<std::size_t>(rows)),
                                    layers::attention_mode::causal, p_.encoder ? &memory : nullptr};
    const std::span<const std::int32_t> row_ids(ids, static_cast<std::size_t>(rows));

    // token embeddings (× scale), learned positions, embedding norm
    std::visit([&](const auto& t) { ops::get_rows(t, row_ids, h); }, p_.embed.tokens.view());
    if (p_.embed.scale != 1.f) ops::scale(h, p_.embed.scale);
    if (p_.embed.positions) {
      auto t = ws.alloc_view<float, 2>({rows, c.d_model});
      auto* shifted = ws.alloc<std::int32_t>(rows);
      for (index_t r = 0; r < rows; ++r) shifted[r] = pos[r] + static_cast<std::int32_t>(p_.embed.position_offset);
      std::visit([&](const auto& t_pos) { ops::get_rows(t_pos, std::span<const std::int32_t>(shifted, static_cast<std::size_t>(rows)), t); },
                 p_.embed.positions->view());
      ops::add_inplace(h, tensor_view<const float, 2>(t));
    }
    if (p_.embed.norm) p_.embed.norm->forward(h, h);
    // the layers
    auto** st = ws.alloc<state_type*>(n_seq);
    for (std::size_t i = 0; i < p_.layers.size(); ++i) {
      for (index_t s = 0; s < n_seq; ++s) st[s] = &host.pieces_[static_cast<std::size_t>(s)].seg->session->states_[i];
      p_.layers[i].forward(h, layers::state_refs<state_type>(st, static_cast<std::size_t>(n_seq)), ctx, ws);
    }
    // the head: every row for prefill_all, each sequence's last row otherwise
    for (index_t s = 0; s < n_seq; ++s) {
      const auto& pc = host.pieces_[static_cast<std::size_t>(s)];
      if (pc.seg->all_logits) {
        const auto [r0, r1] = ctx.rows_of(s);
        auto out = pc.seg->all_logits->slice(0, pc.offset, pc.offset + pc.n);
        auto normed = ws.alloc_view<float, 2>({r1 - r0, c.d_model});
        head(h.slice(0, r0, r1), normed, out, ws);
      }
    }
    auto last = ws.alloc_view<float, 2>({n_seq, c.d_model});   // (n_seq, d_model)
    auto normed = ws.alloc_view<float, 2>({n_seq, c.d_model});
    index_t n_last = 0;
    for (index_t s = 0; s < n_seq; ++s) {
      const auto& pc = host.pieces_[static_cast<std::size_t>(s)];
      if (pc.offset + pc.n != static_cast<index_t>(pc.seg->tokens.size()) || pc.seg->all_logits) continue;
      std::copy(h.row(ctx.rows_of(s).second - 1), h.row(ctx.rows_of(s).second - 1) + c.d_model, last.row(n_last));
      host.last_index_[static_cast<std::size_t>(n_last++)] = s;
    }
    if (n_last > 0) {
      auto logits = ws.alloc_view<float, 2>({n_last, c.vocab});
      head(last.slice(0, 0, n_last), normed.slice(0, 0, n_last), logits, ws);
      for (index_t j = 0; j < n_last; ++j) {
        session_type& se = *host.pieces_[static_cast<std::size_t>(host.last_index_[static_cast<std::size_t>(j)])].seg->session;
        std::copy(logits.row(j), logits.row(j) + c.vocab, se.logits_.view().data());
        std::copy(normed.row(j), normed.row(j) + c.d_model, se.hidden_.view().data());
      }
    }
    // positions advance
    for (index_t s = 0; s < n_seq; ++s) {
      const auto& pc = host.pieces_[static_cast<std::size_t>(s)];
      session_type& se = *pc.seg->session;
      se.position_ += pc.n;
      if (pc.seg->all_logits && pc.offset + pc.n == static_cast<index_t>(pc.seg->tokens.size())) {
        const auto lastrow = pc.seg->all_logits->row(static_cast<index_t>(pc.seg->tokens.size()) - 1);
        std::copy(lastrow, lastrow + c.vocab, se.logits_.view().data());
        const auto [r0, r1] = ctx.rows_of(s);
        final_norm(h.slice(0, r1 - 1, r1), se.hidden_.view().template reshape<2>({1, c.d_model}));
      }
    }
  }

  // normed = final_norm(x); logits = softcap(scale · lm_head(normed))
  void head(tensor_view<const float, 2> x, tensor_view<float, 2> normed, tensor_view<float, 2> logits, workspace& ws) const {
    final_norm(x, normed);
    p_.head.lm_head.forward(normed, logits, ws);
    if (p_.head.logit_scale != 1.f) ops::scale(logits, p_.head.logit_scale);
    if (p_.head.softcap > 0.f) {
      const float cap = p_.head.softcap;
      for (index_t r = 0; r < logits.extent(0); ++r) {
        float* l = logits.row(r);
        for (index_t j = 0; j < logits.extent(1); ++j) l[j] = cap * std::tanh(l[j] / cap);
      }
    }
  }

  void final_norm(tensor_view<const float, 2> x, tensor_view<float, 2> out) const {
    if (p_.head.final_norm) p_.head.final_norm->forward(x, out);
    else std::copy(x.data(), x.data() + x.size(), out.data());  // dense rows of the same extents
  }

  causal_lm_parts<Layer, FinalNorm> p_;
};

template <class Layer, class FinalNorm>
class causal_lm_session final : public lm_session {
  using model_type = causal_lm<Layer, FinalNorm>;
  using state_type = typename Layer::state_type;
  using segment = typename model_type::segment;

  /// What snapshot() copies.
  struct memory {
    std::vector<state_type> states;
    index_t position = 0;
    tensor<float, 1> logits, hidden;
    encoder_output source;  // encoder-decoder: the encoded source
  };

 public:
  causal_lm_session(const model_type& m, const session_limits& lim) : model_(m) {
    const auto& c = m.p_.config;
    if (lim.max_len < 0 || lim.max_prefill < 0 || lim.reserve < 0 || lim.rollback < 0 || lim.threads < 0)
      throw range_error("session: negative session limits");
    const index_t trained = m.p_.trained_context > 0 ? m.p_.trained_context
                            : c.max_position > 0    ? c.max_position
                                                    : default_context;
    const index_t unbounded = std::numeric_limits<index_t>::max() / 4;
    max_len_ = lim.max_len > 0 ? lim.max_len : m.p_.has_attention ? std::min(trained, default_context) : unbounded;
    if (m.p_.embed.positions && max_len_ > m.p_.embed.positions->rows())
      throw range_error("session: max_len " + std::to_string(max_len_) + " exceeds the model's " +
                        std::to_string(m.p_.embed.positions->rows()) + " learned positions");
    chunk_ = std::max<index_t>(1, std::min(lim.max_prefill > 0 ? lim.max_prefill : 512, max_len_));
    threads_ = lim.threads;
    spec_ = {.max_len = max_len_,
             .reserve = lim.reserve > 0 ? lim.reserve : std::min<index_t>(max_len_, 512),
             .rollback = lim.rollback,
             .kv_type = lim.kv_type};
    const layers::state_spec& spec = spec_;
    std::size_t ws = 0;
    states_.reserve(m.p_.layers.size());
    for (const auto& layer : m.p_.layers) {
      states_.push_back(layer.make_state(spec));
      ws = std::max(ws, layer.workspace_bytes(chunk_));
    }
    const index_t d = c.d_model, rows = chunk_;
    // the head (prefill_all: every row) and the embedding stage
    ws += 3 * workspace::bytes_for<float>(rows * d) + workspace::bytes_for<float>(rows * c.vocab) +
          workspace::bytes_for<state_type*>(rows) + workspace::bytes_for<tensor_view<const float, 2>>(rows) +
          workspace::bytes_for<std::int32_t>(rows) + m.p_.head.lm_head.workspace_bytes(rows) + 4096;
    ws_.reserve(ws);
    h_ = tensor<float, 2>({rows, d});
    logits_ = tensor<float, 1>({c.vocab});
    hidden_ = tensor<float, 1>({d});
    starts_.assign(static_cast<std::size_t>(rows) + 1, 0);
    positions_.assign(static_cast<std::size_t>(rows), 0);
    ids_.assign(static_cast<std::size_t>(rows), 0);
    pieces_.resize(static_cast<std::size_t>(rows));
    last_index_.assign(static_cast<std::size_t>(rows), 0);
    decode_segments_.resize(static_cast<std::size_t>(rows));
  }

  void prefill(std::span<const std::int32_t> tokens) override {
    segment s{this, tokens, std::nullopt};
    model_.run(std::span<segment>(&s, 1));
  }

  void prefill_all(std::span<const std::int32_t> tokens, tensor_view<float, 2> out) override {
    expect_extents<2>(out.extents(), {static_cast<index_t>(tokens.size()), model_.config().vocab}, "prefill_all: logits");
    segment s{this, tokens, out};
    model_.run(std::span<segment>(&s, 1));
  }

  void step(std::int32_t token) override {
    segment s{this, std::span<const std::int32_t>(&token, 1), std::nullopt};
    model_.run(std::span<segment>(&s, 1));
  }

  tensor_view<const float, 1> logits() const override { return logits_.cview(); }
  tensor_view<const float, 1> last_hidden_state() const override { return hidden_.cview(); }
  index_t position() const noexcept override { return position_; }
  index_t max_len() const noexcept override { return max_len_; }

  session_snapshot snapshot() const override {
    return {&model_, std::make_any<memory>(memory{states_, position_, logits_, hidden_, memory_})};
  }

  void restore(const session_snapshot& snap) override {
    const segment self{this, {}, std::nullopt};
    const typename model_type::in_use_guard in_use(std::span<const segment>(&self, 1));
    if (snap.model != &model_)
      throw range_error("session::restore: the snapshot was taken from a session of another model");
    const memory* m = std::any_cast<memory>(&snap.state);
    if (m == nullptr || m->states.size() != states_.size())
      throw shape_error("session::restore: the snapshot does not hold this model's session state");
    if (m->position > max_len_)
      throw range_error("session::restore: the snapshot holds " + std::to_string(m->position) +
                        " tokens, more than this session's max_len " + std::to_string(max_len_));
    for (std::size_t i = 0; i < states_.size(); ++i) states_[i] = m->states[i];
    if (model_.p_.encoder) memory_ = m->source;
    position_ = m->position;
    std::copy(m->logits.begin(), m->logits.end(), logits_.view().data());
    std::copy(m->hidden.begin(), m->hidden.end(), hidden_.view().data());
  }

  void truncate(index_t n) override {
    const segment self{this, {}, std::nullopt};
    const typename model_type::in_use_guard in_use(std::span<const segment>(&self, 1));
    if (n < 0 || n > position_)
      throw range_error("session::truncate: n = " + std::to_string(n) + " outside [0, " + std::to_string(position_) + "]");
    if (n == position_) return;
    for (std::size_t i = 0; i < states_.size(); ++i)
      if (!layers::can_truncate(states_[i], n))
        throw range_error("session::truncate: layer " + std::to_string(i) +
                          " cannot forget tokens (a recurrent state, or a sliding window ring without enough "
                          "rollback slots: session_limits::rollback); restore a snapshot() taken at " +
                          std::to_string(n) + " tokens instead");
    for (auto& s : states_) layers::truncate_state(s, n);
    position_ = n;
    std::fill(logits_.view().data(), logits_.view().data() + logits_.size(), 0.f);
  }

  void reset() override {
    const segment self{this, {}, std::nullopt};
    const typename model_type::in_use_guard in_use(std::span<const segment>(&self, 1));
    for (std::size_t i = 0; i < states_.size(); ++i) {
      if (layers::can_truncate(states_[i], 0)) layers::truncate_state(states_[i], 0);  // keeps the storage
      else states_[i] = model_.p_.layers[i].make_state(spec_);
    }
    position_ = 0;
    std::fill(logits_.view().data(), logits_.view().data() + logits_.size(), 0.f);
  }

  std::size_t memory_bytes() const override {
    std::size_t b = ws_.capacity() + static_cast<std::size_t>(h_.size() + logits_.size() + hidden_.size() +
                                                              memory_.last_hidden_state.size()) * sizeof(float);
    for (const auto& s : states_) b += layers::state_bytes(s);
    return b;
  }

  void encode(std::span<const std::int32_t> source) override {
    const segment self{this, {}, std::nullopt};
    const typename model_type::in_use_guard in_use(std::span<const segment>(&self, 1));
    if (!model_.p_.encoder)
      throw config_error(model_.config().source + ": '" + model_.config().family +
                         "' is a decoder-only model: give the prompt to prefill(), not encode()");
    const std::span<const std::int32_t> one[1] = {source};
    memory_ = model_.p_.encoder->encode(one, {}, threads_);  // checks ids and length
    for (std::size_t i = 0; i < states_.size(); ++i) states_[i] = model_.p_.layers[i].make_state(spec_);
    position_ = 0;
    std::fill(logits_.view().data(), logits_.view().data() + logits_.size(), 0.f);
  }

  tensor_view<const float, 2> encoder_hidden_state() const override { return memory_.last_hidden_state.cview(); }

  /// Bytes of workspace this session reserved.
  std::size_t workspace_capacity() const noexcept { return ws_.capacity(); }

 private:
  friend class causal_lm<Layer, FinalNorm>;

  /// A piece of a segment in one forward: rows [offset, offset + n) of its tokens.
  struct piece {
    const segment* seg = nullptr;
    index_t offset = 0, n = 0;
  };

  const model_type& model_;
  std::atomic<bool> in_use_{false};  // set during a call that changes the session (debug builds)
  index_t max_len_ = 0, chunk_ = 0;
  layers::state_spec spec_;
  int threads_ = 0;
  std::vector<state_type> states_;  // one per layer
  encoder_output memory_;           // encoder-decoder: the encoded source
  index_t position_ = 0;
  tensor<float, 1> logits_, hidden_;  // (vocab), (d_model)
  // buffers of the forwards this session hosts (sized once: decoding allocates nothing)
  tensor<float, 2> h_;                // (chunk, d_model)
  std::vector<index_t> starts_;       // (chunk + 1)
  std::vector<std::int32_t> positions_, ids_;
  std::vector<piece> pieces_;
  std::vector<index_t> last_index_;
  std::vector<segment> decode_segments_;
  workspace ws_;
};

}  // namespace models
}  // namespace v0
}  // namespace tessera
