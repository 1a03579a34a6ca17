// tessera/models/language_model.hpp: the runtime interface every causal LM family implements.
//
// Families compose a causal_lm<Layer> (models/causal_lm.hpp); the CLI and applications that pick
// a checkpoint at run time hold it through this small virtual interface. One virtual call per
// forward pass, nothing per token inside the layers.
//
//   auto model = load_language_model("path/to/folder-or.gguf");    // families/registry.hpp
//   auto s = model->new_session({.max_len = 2048});
//   s->prefill(prompt_ids);           // logits() now holds the last prompt token's logits
//   while (...) { int id = sample(s->logits()); s->step(id); }
//   auto snap = s->snapshot(); ... s->restore(snap);                 // exact state, any family
//   s->truncate(n);                   // roll back to n tokens (attention caches)
//   model->step_batch(sessions, ids); // one decode step for several sessions: weights read once
#pragma once

#include <any>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>
#include <span>
#include <string>

#include <tessera/attention/kv_cache.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/models/model_config.hpp>

namespace tessera {
inline namespace v0 {

/// Sizes a session once: the only place caches are sized (docs/architecture.md, "Sessions").
struct session_limits {
  index_t max_len = 0;       // tokens the session can hold; 0: the trained context capped at
                             // default_context (unbounded for models without attention)
  index_t max_prefill = 512; // rows per internal forward (workspace size); longer prompts are chunked
  index_t reserve = 0;       // tokens of KV cache allocated at creation (0: min(max_len, 512));
                             // caches grow with use (doubling) up to max_len
  index_t rollback = 0;      // tokens truncate() may roll back past a sliding window (ring slack)
  int threads = 0;           // threads of this session's forwards (0: the process default)
  kv_element kv_type = kv_element::f32;  // KV cache elements: f32; f16 (half the attention memory)
                                         // or q8_0 (0.27x; head_dim a multiple of 32): keys and
                                         // values rounded as stored, attention computed in f32
};

/// The default context of a session when the caller does not ask for more.
inline constexpr index_t default_context = 4096;

/// A copy of a session's whole state (caches, positions, logits), restorable into a session of
/// the same model. Opaque: the family decides what it holds.
struct session_snapshot {
  const void* model = nullptr;  // identity of the model that made it (restore checks it)
  std::any state;
};

/// One sequence being decoded: owns its caches and its workspace; several sessions may run on one
/// model from different threads. Decoding a token allocates nothing.
class lm_session {
 public:
  virtual ~lm_session() = default;

  /// Appends tokens (any number >= 1; chunked internally) and computes the logits of the last one.
  /// range_error if a token id is >= vocab or if the context would overflow max_len.
  virtual void prefill(std::span<const std::int32_t> tokens) = 0;

  /// Like prefill, but writes the logits of every token into out: (tokens.size(), vocab).
  virtual void prefill_all(std::span<const std::int32_t> tokens, tensor_view<float, 2> out) = 0;

  /// Appends one token and computes its logits.
  virtual void step(std::int32_t token) = 0;

  /// Logits of the last token processed: (vocab).
  virtual tensor_view<const float, 1> logits() const = 0;

  /// Tokens processed so far (the position of the next token).
  virtual index_t position() const noexcept = 0;

  /// Tokens the session can hold.
  virtual index_t max_len() const noexcept = 0;

  /// Hidden state of the last token after the final norm: (d_model) (transformers'
  /// last_hidden_state at the last position).
  virtual tensor_view<const float, 1> last_hidden_state() const = 0;

  virtual session_snapshot snapshot() const = 0;
  /// range_error/shape_error if the snapshot comes from another model.
  virtual void restore(const session_snapshot&) = 0;

  /// Rolls back to the first n tokens (n <= position()). range_error past the current length, or
  /// when a layer keeps a recurrent state (Mamba, linear attention): restore a snapshot instead.
  virtual void truncate(index_t n) = 0;

  /// Forget everything (position 0). An encoder-decoder session keeps its encoded source.
  virtual void reset() = 0;

  /// Encoder-decoder models: runs the encoder once over `source` and starts a new decoding (the
  /// decoder's caches are emptied; its cross-attention K/V are projected from this memory at the
  /// next forward). config_error for decoder-only models.
  virtual void encode(std::span<const std::int32_t> source) = 0;

  /// The encoder's output for the current source: (l_src, d_model); empty before encode().
  virtual tensor_view<const float, 2> encoder_hidden_state() const = 0;

  /// Bytes this session holds now: caches (growing with use), states, buffers, workspace.
  virtual std::size_t memory_bytes() const = 0;
};

class language_model {
 public:
  virtual ~language_model() = default;
  virtual const model_config& config() const noexcept = 0;
  virtual std::unique_ptr<lm_session> new_session(const session_limits& limits = {}) const = 0;

  /// Whether sessions need encode(source) before decoding (BART, T5, Marian).
  virtual bool is_encoder_decoder() const noexcept = 0;

  /// Packed prefill of several sessions of this model (prompts of any lengths, no padding): one
  /// forward reads every weight once for all of them. prompts[i] goes to sessions[i]; afterwards
  /// each session's logits() hold its last token's logits. Checked before anything runs:
  /// range_error (ids, context) or shape_error, and no session changes.
  virtual void prefill_batch(std::span<lm_session* const> sessions,
                             std::span<const std::span<const std::int32_t>> prompts) const = 0;

  /// One decode step for several sessions at once: tokens[i] is appended to sessions[i] (a GEMM
  /// where N GEMVs were). Same checks as prefill_batch.
  virtual void step_batch(std::span<lm_session* const> sessions, std::span<const std::int32_t> tokens) const = 0;
};

/// What an encoder computes for a packed batch.
struct encoder_output {
  tensor<float, 2> last_hidden_state;     // (rows, d_model): sequence s at rows [starts[s], starts[s+1])
  std::vector<index_t> starts;            // (n_seq + 1)
  std::optional<tensor<float, 2>> pooler_output;  // (n_seq, d_model) when the model has a pooler
};

/// The run-time interface of every encoder (what load_encoder returns).
class text_encoder {
 public:
  virtual ~text_encoder() = default;
  virtual const model_config& config() const noexcept = 0;
  /// ids[s]: sequence s's token ids; token_types: empty, or one span per sequence of the same
  /// lengths. range_error for ids out of range or sequences longer than the positions;
  /// shape_error for mismatched lengths. threads: 0 = the process default.
  virtual encoder_output encode(std::span<const std::span<const std::int32_t>> ids,
                                std::span<const std::span<const std::int32_t>> token_types = {}, int threads = 0) const = 0;
};

namespace detail {
/// Throws range_error unless every id is in [0, vocab).
inline void check_token_ids(std::span<const std::int32_t> tokens, index_t vocab) {
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab)
      throw range_error("token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                        " is out of range: the vocabulary has " + std::to_string(vocab) + " tokens");
}
}  // namespace detail

}  // namespace v0
}  // namespace tessera
