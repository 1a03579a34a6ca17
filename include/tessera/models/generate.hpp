// tessera/models/generate.hpp: the token-generation loop, written once: prefill the prompt, then
// pick a token from the logits, hand it to the caller, step, until a stop.
//
//   sampler pick(model->config().vocab, {.temperature = 0.f});           // or a sampling_params
//   tokenizer::stream_decoder text(tok, /*skip_special_tokens=*/true);
//   const auto r = generate(*session, prompt_ids, pick,
//                           {.max_new_tokens = 64, .stop_ids = tok.eos_ids(), .stop_strings = {"\n\n"},
//                            .detokenize = [&](std::int32_t id) { return text.push(id); }},
//                           [](std::int32_t id, std::string_view piece) { std::cout << piece; return true; });
//   r.tokens, r.reason (max_tokens, stop_id, stop_string, context_full, callback)
//
// The picker is a sampler, a sampling_params (a sampler is built for the session's vocabulary),
// or any callable `std::int32_t(tensor_view<const float, 1> logits, std::span<const std::int32_t>
// history)` (token_picker): your own sampling rule. `history` is the prompt followed by the ids
// generated so far, what the repetition penalty looks at (transformers' generate()).
//
// Per generated token, in this order:
//   1. id = pick(session.logits(), history); id is appended to history and to the result
//   2. piece = options.detokenize(id) when a detokenizer is given (else empty)
//   3. on_token(id, piece); returning false asks to stop
//   4. stop at a stop id (unless ignore_stop_ids), at a stop string now in the generated text, on
//      the callback's request, at max_new_tokens, or when the session's context is full
//   5. otherwise session.step(id) and go on
// So the token that stops generation (an EOS id, the end of a stop string) is the last entry of
// result.tokens and the callback has seen it; nothing generated is ever hidden. The last token is
// sampled but not stepped (a forward nobody would read): the session holds the prompt and every
// generated token but the last; step(result.tokens.back()) appends it when there is room.
//
// Stop strings are looked for in the generated text only (the pieces joined, across piece
// boundaries), never in the prompt.
//
// Context: a session holds max_len() tokens. When position + prompt + max_new_tokens - 1 (the
// steps) would pass it, generation fills the context, samples one last token from the full
// context's logits and stops with stop_reason::context_full: it never overflows the session and
// never throws for it, whatever max_new_tokens is.
//
// Allocation: the history buffer is reserved once (at most what the context can still hold, and at
// most max_reserved_tokens), the stop-string window once (it grows only for a piece longer than any
// before); a decode step then allocates nothing but what the caller's detokenizer and callback do.
// result.tokens is built at the end.
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <tessera/core/error.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/models/language_model.hpp>
#include <tessera/models/sampling.hpp>

namespace tessera {
inline namespace v0 {

/// When to stop and how to see the text.
struct generate_options {
  index_t max_new_tokens = 256;           // tokens to generate at most; >= 0
  std::vector<std::int32_t> stop_ids;     // e.g. the EOS ids: generating one stops (it is kept in tokens)
  std::vector<std::string> stop_strings;  // generated text containing one stops (needs detokenize)
  bool ignore_stop_ids = false;           // generate through stop_ids (llama.cpp's --ignore-eos)
  // Streaming text of each generated id, e.g. [&](std::int32_t id) { return decoder.push(id); } with
  // a tokenizer::stream_decoder primed with the prompt. Called once per generated id, in order.
  std::function<std::string(std::int32_t)> detokenize;
};

struct generate_result {
  enum class stop_reason {
    max_tokens,    // max_new_tokens generated
    stop_id,       // the last token is one of stop_ids
    stop_string,   // the last token completed one of stop_strings
    context_full,  // the session holds max_len() tokens: no room to step the last token
    callback,      // on_token returned false
  };
  std::vector<std::int32_t> tokens;  // (generated) ids, the one that stopped generation included
  stop_reason reason = stop_reason::max_tokens;
  index_t steps = 0;                 // decode forwards (session.step calls): tokens.size() - 1 at most
  double prefill_seconds = 0;        // the prompt's prefill (0 for continue_generation)
  double decode_seconds = 0;         // picking, stepping and the callback, all tokens
};

/// "max_tokens", "stop_id", "stop_string", "context_full" or "callback".
inline const char* to_string(generate_result::stop_reason r) noexcept {
  switch (r) {
    case generate_result::stop_reason::max_tokens: return "max_tokens";
    case generate_result::stop_reason::stop_id: return "stop_id";
    case generate_result::stop_reason::stop_string: return "stop_string";
    case generate_result::stop_reason::context_full: return "context_full";
    case generate_result::stop_reason::callback: return "callback";
  }
  return "unknown";
}

/// Called once per generated token with its id and its text piece (empty without a detokenizer);
/// return false to stop after this token.
using token_callback = std::function<bool(std::int32_t id, std::string_view piece)>;

/// A sampling rule: the next id from the last token's logits (vocab) and the history (prompt +
/// generated so far).
template <class Pick>
concept token_picker = std::invocable<Pick&, tensor_view<const float, 1>, std::span<const std::int32_t>> &&
                       std::convertible_to<std::invoke_result_t<Pick&, tensor_view<const float, 1>, std::span<const std::int32_t>>,
                                           std::int32_t>;

/// The history buffer is reserved for at most this many generated tokens; past it (unbounded
/// sessions asked for millions of tokens) it grows by doubling.
inline constexpr index_t max_reserved_tokens = index_t{1} << 20;

namespace detail {

inline void check_generate_options(const generate_options& o, const char* fn) {
  if (o.max_new_tokens < 0)
    throw range_error(std::string(fn) + ": max_new_tokens must be >= 0, got " + std::to_string(o.max_new_tokens));
  if (!o.stop_strings.empty() && !o.detokenize)
    throw range_error(std::string(fn) + ": stop_strings need a detokenize function (the text of each generated id)");
  for (const auto& s : o.stop_strings)
    if (s.empty()) throw range_error(std::string(fn) + ": an empty stop string would stop at once");
}

/// Appends `piece` to the window of generated text and reports whether a stop string now ends in
/// it; keeps only the last `keep` bytes (longest stop string - 1) so that the window never grows
/// past keep + the longest piece seen.
inline bool stop_string_found(std::string& window, std::string_view piece, const std::vector<std::string>& stops,
                              std::size_t keep) {
  window.append(piece);
  for (const auto& s : stops)
    if (window.find(s) != std::string::npos) return true;
  if (window.size() > keep) window.erase(0, window.size() - keep);
  return false;
}

/// The loop after the session's logits are those of the context's last token. `context`: the ids
/// before the generated ones that the picker sees in its history.
template <class Pick>
generate_result decode_loop(lm_session& s, std::span<const std::int32_t> context, Pick& pick, const generate_options& o,
                            const token_callback& on_token, generate_result r) {
  using reason = generate_result::stop_reason;
  // Tokens generated at most: max_new_tokens, or what fills the context plus one sampled from the
  // full context (room + 1 only when room < max_new_tokens: no overflow).
  const index_t room = std::max<index_t>(0, s.max_len() - s.position());  // steps the session can take
  const index_t n_max = o.max_new_tokens;
  const index_t limit = n_max <= room ? n_max : room + 1;
  const index_t vocab = s.logits().extent(0);

  std::vector<std::int32_t> history;  // (context + generated)
  history.reserve(context.size() + static_cast<std::size_t>(std::min(limit, max_reserved_tokens)));
  history.assign(context.begin(), context.end());

  std::size_t keep = 0;  // bytes of generated text a stop string can still need
  for (const auto& stop : o.stop_strings) keep = std::max(keep, stop.size() - 1);
  std::string window;  // the end of the generated text (stop strings only)
  if (!o.stop_strings.empty()) window.reserve(keep + 256);

  const auto t0 = std::chrono::steady_clock::now();
  index_t generated = 0;
  r.reason = reason::max_tokens;
  while (generated < limit) {
    const std::int32_t id = pick(s.logits(), std::span<const std::int32_t>(history));
    if (id < 0 || id >= vocab)
      throw range_error("generate: the picker returned token id " + std::to_string(id) +
                        ", outside the vocabulary of " + std::to_string(vocab) + " tokens");
    history.push_back(id);
    ++generated;
    const std::string piece = o.detokenize ? o.detokenize(id) : std::string();
    const bool go_on = on_token ? on_token(id, piece) : true;
    if (!o.ignore_stop_ids && std::find(o.stop_ids.begin(), o.stop_ids.end(), id) != o.stop_ids.end()) {
      r.reason = reason::stop_id;
      break;
    }
    if (!o.stop_strings.empty() && stop_string_found(window, piece, o.stop_strings, keep)) {
      r.reason = reason::stop_string;
      break;
    }
    if (!go_on) {
      r.reason = reason::callback;
      break;
    }
    if (generated == limit) {
      r.reason = limit < n_max ? reason::context_full : reason::max_tokens;
      break;
    }
    s.step(id);
    ++r.steps;
  }
  r.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens.assign(history.begin() + static_cast<std::ptrdiff_t>(context.size()), history.end());
  return r;
}

/// A picker calling sampler::sample.
inline auto picker_of(sampler& pick) {
  return [&pick](tensor_view<const float, 1> logits, std::span<const std::int32_t> history) {
    return pick.sample(logits, history);
  };
}

}  // namespace detail

/// Prefills `prompt` (appended to what the session holds), then generates (see the file comment).
/// range_error: empty prompt, a prompt longer than the session's free context, a token id outside
/// the vocabulary, max_new_tokens < 0, stop_strings without detokenize, an empty stop string.
template <token_picker Pick>
generate_result generate(lm_session& s, std::span<const std::int32_t> prompt, Pick&& pick,
                         const generate_options& options = {}, const token_callback& on_token = {}) {
  detail::check_generate_options(options, "generate");
  if (prompt.empty()) throw range_error("generate: the prompt is empty (give at least one token, e.g. BOS)");
  const index_t n_prompt = static_cast<index_t>(prompt.size());
  if (n_prompt > s.max_len() - s.position())
    throw range_error("generate: the prompt has " + std::to_string(n_prompt) + " tokens, more than the session's free context of " +
                      std::to_string(s.max_len() - s.position()) + " tokens (max_len " + std::to_string(s.max_len()) +
                      ", position " + std::to_string(s.position()) + ")");
  generate_result r;
  const auto t0 = std::chrono::steady_clock::now();
  s.prefill(prompt);
  r.prefill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return detail::decode_loop(s, prompt, pick, options, on_token, std::move(r));
}

/// generate() with a sampler (its random stream goes on from where it is).
inline generate_result generate(lm_session& s, std::span<const std::int32_t> prompt, sampler& pick,
                                const generate_options& options = {}, const token_callback& on_token = {}) {
  return generate(s, prompt, detail::picker_of(pick), options, on_token);
}

/// generate() with a sampler built from `params` for the session's vocabulary (range_error for
/// parameters out of range, checked before the prefill).
inline generate_result generate(lm_session& s, std::span<const std::int32_t> prompt, const sampling_params& params,
                                const generate_options& options = {}, const token_callback& on_token = {}) {
  check_sampling_params(params);
  std::optional<sampler> pick;  // sized from the logits, on the first token
  return generate(
      s, prompt,
      [&](tensor_view<const float, 1> logits, std::span<const std::int32_t> history) {
        if (!pick) pick.emplace(logits.extent(0), params);
        return pick->sample(logits, history);
      },
      options, on_token);
}

/// Generates from a session that already holds its context (after prefill, restore or step: its
/// logits() are the last token's), e.g. several continuations of one prompt from a snapshot.
/// `context`: the ids the picker's history starts with (usually the prompt; may be empty).
/// range_error for an empty session and as generate().
template <token_picker Pick>
generate_result continue_generation(lm_session& s, std::span<const std::int32_t> context, Pick&& pick,
                                    const generate_options& options = {}, const token_callback& on_token = {}) {
  detail::check_generate_options(options, "continue_generation");
  if (s.position() < 1)
    throw range_error("continue_generation: the session holds no tokens (no logits to start from): prefill a prompt first");
  return detail::decode_loop(s, context, pick, options, on_token, generate_result{});
}

/// continue_generation() with a sampler.
inline generate_result continue_generation(lm_session& s, std::span<const std::int32_t> context, sampler& pick,
                                           const generate_options& options = {}, const token_callback& on_token = {}) {
  return continue_generation(s, context, detail::picker_of(pick), options, on_token);
}

}  // namespace v0
}  // namespace tessera
