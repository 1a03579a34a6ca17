// Concurrency (docs/architecture.md, "Sessions"): a model is read-only, so sessions of one model
// decode on several std::threads at once and each gets what it gets alone; a session used from
// two threads at once is refused (debug builds). Its own executable: .ci/run builds it alone
// under ThreadSanitizer (TESSERA_SANITIZE=thread).
//
// Sessions run with threads = 1: no OpenMP runtime is TSan-instrumented (g++'s libgomp; clang's
// libomp only through its archer tool), and one OpenMP thread per session keeps every
// parallel_for on its calling std::thread, so TSan sees every access. The OpenMP runtime's own
// bookkeeping (per-thread state made at a thread's first omp_get_max_threads) is uninstrumented
// code: __tsan_default_options below ignores it (ignore_noninstrumented_modules).
//
// NDEBUG is undefined here so that the debug-build check of a session used from two threads at
// once is compiled in (and tested) in Release builds too. So this TU compiles and registers the
// families itself (it is not linked with common/families.cpp, built with NDEBUG): two definitions of
// the session code, one with the check and one without, broke the one-definition rule, and with
// clang 14 the linked one had no check (the test saw both threads inside the session).
#undef NDEBUG
#undef TESSERA_EXTERN_FAMILIES

#include <catch2/catch.hpp>

#include <atomic>
#include <barrier>
#include <chrono>
#include <filesystem>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <tessera/families/registry.hpp>

#include "common/test_util.hpp"

using namespace tessera;
using tessera::test::argmax;
namespace fs = std::filesystem;

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TESSERA_TEST_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(TESSERA_TEST_TSAN)
// TSan's defaults for this program (TSAN_OPTIONS adds to them): stop at the first report, and do
// not report the uninstrumented OpenMP runtime's accesses.
extern "C" const char* __tsan_default_options() { return "halt_on_error=1:ignore_noninstrumented_modules=1"; }
#endif
#undef TESSERA_TEST_TSAN

namespace {

const fs::path models_dir = fs::path(TESSERA_TEST_DATA_DIR) / "models";

constexpr int n_threads = 4;
constexpr int n_new = 8;  // greedy tokens per run

/// What one run gives: the greedy ids and the logits of the last step.
struct run_result {
  std::vector<std::int32_t> ids;
  std::vector<float> logits;
  bool operator==(const run_result&) const = default;
};

run_result snapshot_of(const lm_session& s, std::vector<std::int32_t> ids) {
  const auto l = s.logits();
  return {std::move(ids), std::vector<float>(l.data(), l.data() + l.extent(0))};
}

/// A prompt of `n` ids of the vocabulary, different for each `which`.
std::vector<std::int32_t> prompt_for(int which, index_t vocab, int n = 12) {
  std::vector<std::int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(static_cast<std::int32_t>((1 + 7 * i + 13 * which) % vocab));
  return p;
}

/// One session alone: (encode the source,) prefill the prompt, then n_new greedy steps.
run_result decode_alone(const language_model& model, int which) {
  const index_t vocab = model.config().vocab;
  auto s = model.new_session({.max_len = 64, .threads = 1});
  if (model.is_encoder_decoder()) s->encode(prompt_for(which + 1, vocab, 9));
  s->prefill(prompt_for(which, vocab));
  std::vector<std::int32_t> ids;
  for (int i = 0; i < n_new; ++i) {
    ids.push_back(argmax(s->logits()));
    s->step(ids.back());
  }
  return snapshot_of(*s, std::move(ids));
}

/// Two sessions of one thread decoded together: prefill_batch, then step_batch.
std::vector<run_result> decode_batched(const language_model& model, int which) {
  const index_t vocab = model.config().vocab;
  std::vector<std::unique_ptr<lm_session>> owned;
  std::vector<lm_session*> sessions;
  std::vector<std::vector<std::int32_t>> prompts;
  for (int k = 0; k < 2; ++k) {
    owned.push_back(model.new_session({.max_len = 64, .threads = 1}));
    sessions.push_back(owned.back().get());
    if (model.is_encoder_decoder()) owned.back()->encode(prompt_for(which + k + 1, vocab, 9));
    prompts.push_back(prompt_for(which + k, vocab, 10 + 3 * k));
  }
  const std::vector<std::span<const std::int32_t>> spans(prompts.begin(), prompts.end());
  model.prefill_batch(sessions, spans);
  std::vector<std::vector<std::int32_t>> ids(2);
  for (int i = 0; i < n_new; ++i) {
    std::vector<std::int32_t> next;
    for (std::size_t k = 0; k < 2; ++k) {
      next.push_back(argmax(sessions[k]->logits()));
      ids[k].push_back(next.back());
    }
    model.step_batch(sessions, next);
  }
  return {snapshot_of(*sessions[0], ids[0]), snapshot_of(*sessions[1], ids[1])};
}

/// Runs f(t) on n_threads std::threads released together; rethrows the first exception.
template <class F>
void on_threads(F&& f) {
  std::barrier start(n_threads);
  std::vector<std::exception_ptr> errors(n_threads);
  std::vector<std::thread> threads;
  for (int t = 0; t < n_threads; ++t)
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      try {
        f(t);
      } catch (...) {
        errors[std::size_t(t)] = std::current_exception();
      }
    });
  for (auto& th : threads) th.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

TEST_CASE("sessions of one model decode on several threads at once as each does alone", "[models][concurrency]") {
  for (const char* name : {"llama", "qwen2_sliding", "gpt2", "mamba", "mamba2", "jamba", "bart"}) {
    INFO("model " << name);
    const auto model = load_language_model(models_dir / name);

    // single-threaded references, one per prompt
    std::vector<run_result> alone;
    for (int t = 0; t < n_threads; ++t) alone.push_back(decode_alone(*model, t));
    std::vector<std::vector<run_result>> batched;
    for (int t = 0; t < n_threads; ++t) batched.push_back(decode_batched(*model, t));

    std::vector<run_result> got(n_threads);
    on_threads([&](int t) { got[std::size_t(t)] = decode_alone(*model, t); });
    for (int t = 0; t < n_threads; ++t) CHECK(got[std::size_t(t)] == alone[std::size_t(t)]);

    std::vector<std::vector<run_result>> got_batched(n_threads);
    on_threads([&](int t) { got_batched[std::size_t(t)] = decode_batched(*model, t); });
    for (int t = 0; t < n_threads; ++t) CHECK(got_batched[std::size_t(t)] == batched[std::size_t(t)]);
  }
}

TEST_CASE("a text encoder encodes on several threads at once as it does alone", "[models][concurrency]") {
  const auto model = load_encoder(models_dir / "bert");
  const index_t vocab = model->config().vocab;
  auto encode = [&](int t) {
    const auto ids = prompt_for(t, vocab, 7 + t);
    const std::span<const std::int32_t> one[1] = {ids};
    const auto out = model->encode(one, {}, 1);
    const auto h = out.last_hidden_state.cview();
    return std::vector<float>(h.data(), h.data() + h.size());
  };
  std::vector<std::vector<float>> alone, got(n_threads);
  for (int t = 0; t < n_threads; ++t) alone.push_back(encode(t));
  on_threads([&](int t) { got[std::size_t(t)] = encode(t); });
  for (int t = 0; t < n_threads; ++t) CHECK(got[std::size_t(t)] == alone[std::size_t(t)]);
}

TEST_CASE("a session used from two threads at once is refused in debug builds", "[models][concurrency]") {
  const auto model = load_language_model(models_dir / "llama");
  const index_t vocab = model->config().vocab;
  auto s = model->new_session({.max_len = 256, .threads = 1});
  const auto long_prompt = prompt_for(0, vocab, 200);
  // Thread a prefills long prompts while thread b steps the same session: sooner or later one
  // enters while the other is inside, and is refused before it touches the session.
  std::atomic<bool> refused{false}, done{false};
  std::atomic<int> refusals_a{0}, refusals_b{0};
  std::string message;
  auto note = [&](const error& e, std::atomic<int>& count) {
    if (!refused.exchange(true)) message = e.what();
    ++count;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::thread a([&] {
    while (!refused && std::chrono::steady_clock::now() < deadline) {
      try {
        s->reset();
        s->prefill(long_prompt);
      } catch (const range_error&) {
        // context full: b stepped between this reset and prefill (a loaded machine deschedules a)
      } catch (const error& e) {
        note(e, refusals_a);
      }
    }
    done = true;
  });
  std::thread b([&] {
    while (!done) {
      try {
        s->step(1);
      } catch (const range_error&) {
        // context full (a's prompt plus b's steps): a resets it
      } catch (const error& e) {
        note(e, refusals_b);
      }
    }
  });
  a.join();
  b.join();
  INFO("refused in a: " << refusals_a << ", in b: " << refusals_b);
  REQUIRE(refused);
  CHECK_THAT(message, Catch::Contains("two threads"));
  // the refused call changed nothing: the session still decodes as a fresh one does
  s->reset();
  s->prefill(prompt_for(0, vocab));
  auto fresh = model->new_session({.max_len = 256, .threads = 1});
  fresh->prefill(prompt_for(0, vocab));
  CHECK(snapshot_of(*s, {}) == snapshot_of(*fresh, {}));
}
