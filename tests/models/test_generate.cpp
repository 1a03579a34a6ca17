// generate() / continue_generation() (models/generate.hpp) on the bundled stories260K: the same
// ids as a hand-written prefill + pick + step loop, every stop reason, the context limit, seeded
// reproducibility, and no allocation per generated token.
#include <catch2/catch.hpp>

#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <tessera/families/registry.hpp>
#include <tessera/models/generate.hpp>
#include <tessera/tokenizer/tokenizer.hpp>

#include "common/alloc_counter.hpp"

using namespace tessera;
namespace fs = std::filesystem;

namespace {

const fs::path bundled = fs::path(TESSERA_SOURCE_DIR) / "examples/models/stories260K.gguf";

const language_model& stories() {
  static const auto model = load_language_model(bundled);
  return *model;
}

const std::vector<std::int32_t> bos = {1};

/// llama2.c's greedy ids for stories260K from BOS (test_decoder.cpp checks them step by step).
const std::vector<std::int32_t> greedy_40 = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
                                             426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282,
                                             295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352};

std::int32_t argmax(tensor_view<const float, 1> x) {
  index_t best = 0;
  for (index_t j = 1; j < x.extent(0); ++j)
    if (x(j) > x(best)) best = j;
  return static_cast<std::int32_t>(best);
}

/// The loop generate() replaces: prefill, then pick / step, `n` tokens.
std::vector<std::int32_t> hand_loop(lm_session& s, std::span<const std::int32_t> prompt, index_t n, sampler& pick) {
  std::vector<std::int32_t> history(prompt.begin(), prompt.end()), out;
  s.prefill(prompt);
  for (index_t i = 0; i < n; ++i) {
    const std::int32_t id = pick.sample(s.logits(), history);
    history.push_back(id);
    out.push_back(id);
    s.step(id);
  }
  return out;
}

std::vector<std::int32_t> first(const std::vector<std::int32_t>& v, std::size_t n) { return {v.begin(), v.begin() + n}; }

/// A detokenizer without a tokenizer: "<id>" per token.
std::string bracketed(std::int32_t id) { return "<" + std::to_string(id) + ">"; }

using reason = generate_result::stop_reason;

}  // namespace

TEST_CASE("generate: greedy equals a hand-written prefill + argmax + step loop", "[models][generate]") {
  auto s = stories().new_session();
  std::vector<std::int32_t> by_hand;
  s->prefill(bos);
  for (int i = 0; i < 40; ++i) {
    by_hand.push_back(argmax(s->logits()));
    s->step(by_hand.back());
  }
  CHECK(by_hand == greedy_40);

  auto g = stories().new_session();
  sampler greedy(stories().config().vocab, {.temperature = 0.f});
  std::vector<std::int32_t> seen;
  const auto r = generate(*g, bos, greedy, {.max_new_tokens = 40}, [&](std::int32_t id, std::string_view piece) {
    seen.push_back(id);
    CHECK(piece.empty());  // no detokenizer
    return true;
  });
  CHECK(r.tokens == greedy_40);
  CHECK(seen == greedy_40);
  CHECK(r.reason == reason::max_tokens);
  CHECK(r.steps == 39);             // the last token is sampled, not stepped
  CHECK(g->position() == 1 + 39);
  CHECK(r.prefill_seconds >= 0);
  CHECK(r.decode_seconds > 0);
  CHECK(std::string(to_string(r.reason)) == "max_tokens");

  // through sampling_params (a sampler built for the session's vocabulary), no callback
  auto p = stories().new_session();
  CHECK(generate(*p, bos, sampling_params{.temperature = 0.f}, {.max_new_tokens = 40}).tokens == greedy_40);
}

TEST_CASE("generate: stop ids end generation and are kept as the last token", "[models][generate]") {
  sampler greedy(stories().config().vocab, {.temperature = 0.f});
  // 261 first comes 3rd, 432 5th
  auto s = stories().new_session();
  auto r = generate(*s, bos, greedy, {.max_new_tokens = 40, .stop_ids = {432, 261}});
  CHECK(r.tokens == first(greedy_40, 3));
  CHECK(r.reason == reason::stop_id);
  CHECK(r.steps == 2);
  // ignored on request (llama.cpp's --ignore-eos)
  s->reset();
  r = generate(*s, bos, greedy, {.max_new_tokens = 40, .stop_ids = {432, 261}, .ignore_stop_ids = true});
  CHECK(r.tokens == greedy_40);
  CHECK(r.reason == reason::max_tokens);
}

TEST_CASE("generate: stop strings end generation (within one piece and across pieces)", "[models][generate]") {
  sampler greedy(stories().config().vocab, {.temperature = 0.f});
  auto s = stories().new_session();
  std::string text;
  std::size_t before_last = 0;  // text.size() before the last piece
  auto on_token = [&](std::int32_t, std::string_view piece) {
    before_last = text.size();
    text += piece;
    return true;
  };
  // "<261>" is the 3rd token's whole piece
  auto r = generate(*s, bos, greedy, {.max_new_tokens = 40, .stop_strings = {"<999>", "<261>"}, .detokenize = bracketed}, on_token);
  CHECK(r.tokens == first(greedy_40, 3));
  CHECK(r.reason == reason::stop_string);
  CHECK(text == "<403><407><261>");
  // "1><37" spans the 3rd and 4th pieces: the 4th completes it
  s->reset();
  text.clear();
  r = generate(*s, bos, greedy, {.max_new_tokens = 40, .stop_strings = {"1><37"}, .detokenize = bracketed}, on_token);
  CHECK(r.tokens == first(greedy_40, 4));
  CHECK(r.reason == reason::stop_string);
  // a stop id and a stop string on the same token: stop_id
  s->reset();
  r = generate(*s, bos, greedy, {.max_new_tokens = 40, .stop_ids = {261}, .stop_strings = {"<261>"}, .detokenize = bracketed});
  CHECK(r.reason == reason::stop_id);
  CHECK(r.tokens.size() == 3);

  // real text: the bundled tokenizer's streaming decoder ("Once upon a time, there was a little girl named Lily.")
  const auto tok = tokenizer::load(bundled);
  tokenizer::stream_decoder out(tok, /*skip_special_tokens=*/true);
  const auto prompt = tok.encode("Once upon a time");
  for (std::int32_t id : prompt) out.push(id);
  s->reset();
  text.clear();
  r = generate(*s, prompt, greedy,
               {.max_new_tokens = 48, .stop_strings = {"Lily"}, .detokenize = [&](std::int32_t id) { return out.push(id); }},
               on_token);
  CHECK(r.reason == reason::stop_string);
  const std::size_t at = text.find("Lily");
  REQUIRE(at != std::string::npos);
  CHECK(text.find("girl named") < at);
  CHECK(at + 4 > before_last);  // the last piece completed it
  CHECK(r.tokens.size() < 48);
}

TEST_CASE("generate: max_new_tokens 0 prefills and generates nothing", "[models][generate]") {
  auto s = stories().new_session();
  sampler greedy(stories().config().vocab, {.temperature = 0.f});
  int calls = 0;
  const auto r = generate(*s, std::vector<std::int32_t>{1, 403, 407}, greedy, {.max_new_tokens = 0}, [&](std::int32_t, std::string_view) {
    ++calls;
    return true;
  });
  CHECK(r.tokens.empty());
  CHECK(r.reason == reason::max_tokens);
  CHECK(r.steps == 0);
  CHECK(calls == 0);
  CHECK(s->position() == 3);
  CHECK(argmax(s->logits()) == greedy_40[2]);
}

TEST_CASE("generate: a full context stops generation, never overflows", "[models][generate]") {
  sampler greedy(stories().config().vocab, {.temperature = 0.f});
  // max_len 8, 1 prompt token: 7 steps fill the context, the 8th token comes from the full context
  auto s = stories().new_session({.max_len = 8});
  auto r = generate(*s, bos, greedy, {.max_new_tokens = 20});
  CHECK(r.tokens == first(greedy_40, 8));
  CHECK(r.reason == reason::context_full);
  CHECK(r.steps == 7);
  CHECK(s->position() == 8);
  // exactly enough room: max_tokens, not context_full
  s->reset();
  r = generate(*s, bos, greedy, {.max_new_tokens = 8});
  CHECK(r.tokens == first(greedy_40, 8));
  CHECK(r.reason == reason::max_tokens);
  // absurd max_new_tokens: the history is reserved for what the context holds, no overflow
  s->reset();
  r = generate(*s, bos, greedy, {.max_new_tokens = std::numeric_limits<index_t>::max()});
  CHECK(r.tokens == first(greedy_40, 8));
  CHECK(r.reason == reason::context_full);
  // a prompt that fills the context: one token, then context_full
  s->reset();
  const std::vector<std::int32_t> eight = {1, 403, 407, 261, 378, 432, 383, 286};
  r = generate(*s, eight, greedy, {.max_new_tokens = 5});
  CHECK(r.tokens == std::vector<std::int32_t>{greedy_40[7]});
  CHECK(r.reason == reason::context_full);
  // a prompt longer than the free context: range_error before anything runs
  s->reset();
  s->prefill(bos);
  CHECK_THROWS_AS(generate(*s, eight, greedy, {.max_new_tokens = 1}), range_error);
  CHECK(s->position() == 1);
}

TEST_CASE("generate: an unbounded session with an absurd max_new_tokens reserves a bounded history", "[models][generate]") {
  const auto mamba = load_language_model(fs::path(TESSERA_TEST_DATA_DIR) / "models" / "mamba");
  auto s = mamba->new_session();  // no attention: unbounded context
  REQUIRE(s->max_len() > (index_t{1} << 40));
  sampler greedy(mamba->config().vocab, {.temperature = 0.f});
  int n = 0;
  const auto r = generate(*s, std::vector<std::int32_t>{1, 5, 7}, greedy,
                          {.max_new_tokens = std::numeric_limits<index_t>::max()},
                          [&](std::int32_t, std::string_view) { return ++n < 10; });
  CHECK(r.tokens.size() == 10);
  CHECK(r.reason == reason::callback);
}

TEST_CASE("generate: the callback stops generation by returning false", "[models][generate]") {
  sampler greedy(stories().config().vocab, {.temperature = 0.f});
  auto s = stories().new_session();
  int calls = 0;
  const auto r = generate(*s, bos, greedy, {.max_new_tokens = 40}, [&](std::int32_t, std::string_view) { return ++calls < 5; });
  CHECK(calls == 5);
  CHECK(r.tokens == first(greedy_40, 5));
  CHECK(r.reason == reason::callback);
  CHECK(r.steps == 4);
}

TEST_CASE("generate: a seeded sampler is reproducible and matches the hand-written loop", "[models][generate]") {
  const index_t vocab = stories().config().vocab;
  const sampling_params sp{.temperature = 1.f, .top_k = 0, .top_p = 0.9f, .min_p = 0.02f, .repetition_penalty = 1.1f, .seed = 42};
  auto run = [&](std::uint64_t seed) {
    auto p = sp;
    p.seed = seed;
    sampler pick(vocab, p);
    auto s = stories().new_session();
    return generate(*s, bos, pick, {.max_new_tokens = 40}).tokens;
  };
  const auto a = run(42), b = run(42), c = run(43);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a != greedy_40);
  // the same ids, history (repetition penalty) included, as sampling by hand
  sampler pick(vocab, sp);
  auto s = stories().new_session();
  CHECK(hand_loop(*s, bos, 40, pick) == a);
  // and through sampling_params
  auto t = stories().new_session();
  CHECK(generate(*t, bos, sp, {.max_new_tokens = 40}).tokens == a);
}

TEST_CASE("continue_generation: continues a session from a snapshot with a custom picker", "[models][generate]") {
  auto s = stories().new_session();
  s->prefill(bos);
  const auto snap = s->snapshot();
  std::size_t last_history = 0;
  auto pick = [&](tensor_view<const float, 1> logits, std::span<const std::int32_t> history) {
    last_history = history.size();
    return argmax(logits);
  };
  for (int round = 0; round < 2; ++round) {
    s->restore(snap);
    const auto r = continue_generation(*s, bos, pick, {.max_new_tokens = 12});
    CHECK(r.tokens == first(greedy_40, 12));
    CHECK(last_history == 1 + 11);  // the context, then the generated ids
    CHECK(r.prefill_seconds == 0);
  }
  auto empty = stories().new_session();
  CHECK_THROWS_AS(continue_generation(*empty, {}, pick, {.max_new_tokens = 1}), range_error);
}

TEST_CASE("generate: errors", "[models][generate]") {
  sampler greedy(stories().config().vocab, {.temperature = 0.f});
  auto s = stories().new_session();
  CHECK_THROWS_AS(generate(*s, std::vector<std::int32_t>{}, greedy), range_error);
  CHECK_THROWS_AS(generate(*s, bos, greedy, {.max_new_tokens = -1}), range_error);
  CHECK_THROWS_AS(generate(*s, bos, greedy, {.max_new_tokens = 4, .stop_strings = {"x"}}), range_error);  // no detokenize
  CHECK_THROWS_AS(generate(*s, bos, greedy, {.max_new_tokens = 4, .stop_strings = {""}, .detokenize = bracketed}), range_error);
  CHECK_THROWS_AS(generate(*s, bos, sampling_params{.temperature = -1.f}), range_error);
  CHECK(s->position() == 0);  // all checked before the prefill
  auto bad_pick = [](tensor_view<const float, 1>, std::span<const std::int32_t>) { return std::int32_t{512}; };
  CHECK_THROWS_AS(generate(*s, bos, bad_pick, {.max_new_tokens = 2}), range_error);
}

TEST_CASE("generate: a decode step allocates nothing", "[models][generate]") {
  // counted between the callback of token 5 and that of token 45: pick (with a repetition-penalty
  // history), step, stop-id and stop-string checks; the detokenizer's pieces fit in std::string's
  // small buffer, so the caller's side allocates nothing either
  sampler pick(stories().config().vocab, {.temperature = 0.8f, .repetition_penalty = 1.1f, .seed = 7});
  auto s = stories().new_session({.max_len = 128});
  long allocations = -1;
  int n = 0;
  const auto r = generate(*s, bos, pick,
                          {.max_new_tokens = 60, .stop_ids = {9999}, .stop_strings = {"never appears in a story", "<>"},
                           .detokenize = [](std::int32_t id) { return std::string(1, static_cast<char>('a' + id % 26)); }},
                          [&](std::int32_t, std::string_view) {
                            ++n;
                            if (n == 5) test::start_counting_allocations();
                            if (n == 45) allocations = test::stop_counting_allocations();
                            return true;
                          });
  CHECK(r.tokens.size() == 60);
  CHECK(allocations == 0);
}
