// tessera/models/language_model.hpp: the runtime interface every causal LM family implements.
//
// Families are templates (decoder<Block>, hybrid<...>); the CLI and applications that pick a
// checkpoint at run time hold them through this small virtual interface. One virtual call per
// forward pass, nothing per token inside the layers.
//
//   auto model = load_language_model("path/to/folder-or.gguf");    // families/registry.hpp
//   auto s = model->new_session({.max_len = 2048});
//   s->prefill(prompt_ids);           // logits() now holds the last prompt token's logits
//   while (...) { int id = sample(s->logits()); s->step(id); }
//   auto snap = s->snapshot(); ... s->restore(snap);                 // exact state, any family
#pragma once

#include <any>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include <tessera/core/error.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/models/model_config.hpp>

namespace tessera {
inline namespace v0 {

/// Sizes a session once: the only place caches are sized (ARCHITECTURE.md).
struct session_limits {
  index_t max_len = 0;       // tokens the session can hold; 0: the model's max_position (or 4096 when unknown)
  index_t max_prefill = 512; // tokens per internal prefill chunk (workspace size); longer prompts are chunked
};

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

  virtual session_snapshot snapshot() const = 0;
  /// range_error/shape_error if the snapshot comes from another model.
  virtual void restore(const session_snapshot&) = 0;

  /// Forget everything (position 0).
  virtual void reset() = 0;
};

class language_model {
 public:
  virtual ~language_model() = default;
  virtual const model_config& config() const noexcept = 0;
  virtual std::unique_ptr<lm_session> new_session(const session_limits& limits = {}) const = 0;
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
