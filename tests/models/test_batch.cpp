// models/causal_lm.hpp: batches (packed prefill, batched decode) equal the sequences run alone, for
// every family; sessions respect memory (default context, caches that grow, memory_bytes);
// truncate; bad input in a batch changes no session.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <random>
#include <span>
#include <vector>

#include <tessera/families/registry.hpp>

#include "common/alloc_counter.hpp"
#include "common/test_util.hpp"

using namespace tessera;
using tessera::test::argmax;
namespace fs = std::filesystem;

namespace {

const fs::path models_dir = fs::path(TESSERA_TEST_DATA_DIR) / "models";

std::vector<std::int32_t> random_ids(std::size_t n, index_t vocab, unsigned seed) {
  std::mt19937 g(seed);
  std::vector<std::int32_t> v(n);
  for (auto& x : v) x = static_cast<std::int32_t>(g() % static_cast<unsigned>(vocab));
  return v;
}

double rel(tensor_view<const float, 1> a, const std::vector<float>& b) {
  return test::max_rel_err(a.data(), b.data(), static_cast<index_t>(b.size()));
}

std::vector<float> copy(tensor_view<const float, 1> x) { return {x.data(), x.data() + x.extent(0)}; }

/// Three prompts of different lengths, prefilled together then stepped together 10 times, give the
/// logits of each sequence run alone (≤ 1e-5 relative), with forwards of `max_prefill` rows.
void check_batched_equals_single(const std::string& name, index_t max_prefill) {
  INFO(name << ", max_prefill " << max_prefill);
  const auto model = load_language_model(models_dir / name);
  const index_t vocab = model->config().vocab;
  const std::vector<std::vector<std::int32_t>> prompts = {random_ids(5, vocab, 1), random_ids(11, vocab, 2),
                                                          random_ids(8, vocab, 3)};
  constexpr int steps = 10;
  // alone: prefill, then greedy steps; record every logits vector
  std::vector<std::vector<std::vector<float>>> want(prompts.size());
  std::vector<std::vector<std::int32_t>> fed(prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    auto s = model->new_session({.max_len = 64});
    s->prefill(prompts[i]);
    want[i].push_back(copy(s->logits()));
    for (int t = 0; t < steps; ++t) {
      fed[i].push_back(argmax(s->logits()));
      s->step(fed[i].back());
      want[i].push_back(copy(s->logits()));
    }
  }
  // together
  std::vector<std::unique_ptr<lm_session>> owned;
  std::vector<lm_session*> sessions;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    owned.push_back(model->new_session({.max_len = 64, .max_prefill = max_prefill}));
    sessions.push_back(owned.back().get());
  }
  std::vector<std::span<const std::int32_t>> spans(prompts.begin(), prompts.end());
  model->prefill_batch(sessions, spans);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    CHECK(sessions[i]->position() == static_cast<index_t>(prompts[i].size()));
    CHECK(rel(sessions[i]->logits(), want[i][0]) <= 1e-5);
  }
  for (int t = 0; t < steps; ++t) {
    std::vector<std::int32_t> tokens;
    for (std::size_t i = 0; i < prompts.size(); ++i) tokens.push_back(fed[i][static_cast<std::size_t>(t)]);
    model->step_batch(sessions, tokens);
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      INFO("step " << t << ", sequence " << i);
      CHECK(rel(sessions[i]->logits(), want[i][static_cast<std::size_t>(t) + 1]) <= 1e-5);
    }
  }
}

}  // namespace

TEST_CASE("batches: packed prefill of 3 prompts + 10 batched steps == each alone, every family", "[models][batch]") {
  for (const char* name : {"llama", "mistral", "qwen2_sliding", "qwen3", "gemma2", "gpt2", "mamba", "mamba2", "jamba"}) {
    check_batched_equals_single(name, 512);
    check_batched_equals_single(name, 7);  // forwards that split prompts and mix sequences
  }
}

TEST_CASE("batches: a batched decode step allocates nothing", "[models][batch]") {
  for (const char* name : {"llama", "jamba"}) {
    INFO(name);
    const auto model = load_language_model(models_dir / name);
    std::vector<std::unique_ptr<lm_session>> owned;
    std::vector<lm_session*> sessions;
    for (int i = 0; i < 4; ++i) {
      owned.push_back(model->new_session({.max_len = 64}));
      sessions.push_back(owned.back().get());
      owned.back()->prefill(std::vector<std::int32_t>{1, 2 + i, 3});
    }
    std::vector<std::int32_t> tokens = {4, 5, 6, 7};
    model->step_batch(sessions, tokens);  // warm-up
    test::start_counting_allocations();
    for (int t = 0; t < 10; ++t) model->step_batch(sessions, tokens);
    CHECK(test::stop_counting_allocations() == 0);
  }
}

TEST_CASE("batches: bad input is refused before any session changes", "[models][batch][errors]") {
  const auto model = load_language_model(models_dir / "llama");
  const auto other = load_language_model(models_dir / "mistral");
  auto a = model->new_session({.max_len = 8}), b = model->new_session({.max_len = 8});
  a->prefill(std::vector<std::int32_t>{1, 2, 3});
  b->prefill(std::vector<std::int32_t>{4, 5});
  const auto la = copy(a->logits());
  std::vector<lm_session*> both = {a.get(), b.get()};
  const index_t vocab = model->config().vocab;
  // an id out of range in one row
  CHECK_THROWS_AS(model->step_batch(both, std::vector<std::int32_t>{7, static_cast<std::int32_t>(vocab)}), range_error);
  // a row whose context would overflow
  const std::vector<std::int32_t> ok = {1, 2}, too_long = {1, 2, 3, 4, 5, 6, 7};
  const std::vector<std::span<const std::int32_t>> prompts = {ok, too_long};
  CHECK_THROWS_AS(model->prefill_batch(both, prompts), range_error);
  // mismatched counts, a session of another model, a session twice
  CHECK_THROWS_AS(model->step_batch(both, std::vector<std::int32_t>{1}), shape_error);
  auto foreign = other->new_session();
  std::vector<lm_session*> mixed = {a.get(), foreign.get()};
  CHECK_THROWS_AS(model->step_batch(mixed, std::vector<std::int32_t>{1, 1}), range_error);
  std::vector<lm_session*> twice = {a.get(), a.get()};
  CHECK_THROWS_AS(model->step_batch(twice, std::vector<std::int32_t>{1, 1}), range_error);
  // nothing changed
  CHECK(a->position() == 3);
  CHECK(b->position() == 2);
  CHECK(copy(a->logits()) == la);
}

TEST_CASE("sessions: default context capped, caches grow with use, memory_bytes", "[models][session][memory]") {
  // the llama fixture's weights under a Llama-3.1-shaped context: 131072 positions, llama3 factor 8
  model_config c = load_config(models_dir / "llama");
  c.max_position = 131072;
  c.rope.type = rope_scaling_type::llama3;
  c.rope.factor = 8.f;
  c.rope.original_max_position = 8192;
  const auto model = load_language_model(c, std::make_shared<const io::weight_map>(io::weight_map::open(models_dir / "llama")));
  auto s = model->new_session();
  CHECK(s->max_len() == default_context);
  CHECK(s->memory_bytes() < (std::size_t{1} << 30));
  auto small = model->new_session({.max_len = 1000, .reserve = 8});
  const std::size_t before = small->memory_bytes();
  small->prefill(random_ids(100, c.vocab, 9));
  const std::size_t after = small->memory_bytes();
  CHECK(after > before);
  for (int i = 0; i < 200; ++i) small->step(argmax(small->logits()));
  CHECK(small->memory_bytes() > after);
  // asked for more than the default: honoured
  CHECK(model->new_session({.max_len = 20000})->max_len() == 20000);
}

TEST_CASE("sessions: an f16 KV cache holds half the attention memory and gives the f32 cache's logits to ~1e-3",
          "[models][session][memory]") {
  for (const char* name : {"llama", "qwen2_sliding", "gpt2", "jamba"}) {
    INFO(name);
    const auto model = load_language_model(models_dir / name);
    const auto ids = random_ids(20, model->config().vocab, 7);
    auto full = model->new_session({.max_len = 64, .reserve = 64});
    auto half = model->new_session({.max_len = 64, .reserve = 64, .kv_type = kv_element::f16});
    const std::size_t full0 = full->memory_bytes(), half0 = half->memory_bytes();
    CHECK(half0 < full0);
    full->prefill(ids);
    half->prefill(ids);
    for (int t = 0; t < 12; ++t) {  // the same tokens into both (teacher forcing)
      CHECK(rel(half->logits(), copy(full->logits())) <= 5e-3);
      const std::int32_t next = argmax(full->logits());
      full->step(next);
      half->step(next);
    }
    // decode with an f16 cache allocates nothing either
    test::start_counting_allocations();
    half->step(1);
    CHECK(test::stop_counting_allocations() == 0);
    // snapshots of an f16 session restore into it
    const auto snap = half->snapshot();
    const auto at = copy(half->logits());
    half->step(2);
    half->restore(snap);
    CHECK(rel(half->logits(), at) == 0.0);
  }
  const auto llama = load_language_model(models_dir / "llama");
  auto full = llama->new_session({.max_len = 256, .reserve = 256});
  auto half = llama->new_session({.max_len = 256, .reserve = 256, .kv_type = kv_element::f16});
  // llama: every layer is attention; the f16 caches hold exactly half the bytes of the f32 ones
  const auto& c = llama->config();
  const std::size_t f32_caches = 2 * static_cast<std::size_t>(c.n_layers * 256 * c.n_kv_heads * c.head_dim) * sizeof(float);
  CHECK(full->memory_bytes() - half->memory_bytes() == f32_caches / 2);
}

TEST_CASE("sessions: truncate rolls attention caches back, recurrent states refuse", "[models][session]") {
  for (const char* name : {"llama", "qwen2_sliding", "gpt2"}) {
    INFO(name);
    const auto model = load_language_model(models_dir / name);
    const auto ids = random_ids(14, model->config().vocab, 5);
    auto s = model->new_session({.max_len = 32, .rollback = 4});  // a sliding ring keeps 4 tokens of slack
    s->prefill(std::span<const std::int32_t>(ids).first(9));
    const auto at9 = copy(s->logits());
    s->step(ids[9]);
    s->step(ids[10]);
    s->truncate(9);
    CHECK(s->position() == 9);
    s->step(ids[9]);
    auto fresh = model->new_session({.max_len = 32});
    fresh->prefill(std::span<const std::int32_t>(ids).first(10));
    CHECK(rel(s->logits(), copy(fresh->logits())) <= 1e-5);
    CHECK_THROWS_AS(s->truncate(11), range_error);
    CHECK_THROWS_AS(s->truncate(-1), range_error);
    s->truncate(9);
    CHECK(copy(s->logits()) != at9);  // logits are not restored by truncate: step or prefill next
  }
  {  // a ring without slack cannot roll back past its window: refused, nothing changed
    const auto model = load_language_model(models_dir / "qwen2_sliding");
    const auto ids = random_ids(14, model->config().vocab, 6);
    auto s = model->new_session({.max_len = 32});
    s->prefill(ids);
    CHECK_THROWS_AS(s->truncate(2), range_error);
    CHECK(s->position() == 14);
  }
  const auto mamba = load_language_model(models_dir / "mamba");
  auto m = mamba->new_session();
  m->prefill(std::vector<std::int32_t>{1, 2, 3, 4});
  CHECK_THROWS_WITH(m->truncate(2), Catch::Contains("snapshot"));
  CHECK(m->position() == 4);
  m->truncate(4);  // no-op
}

TEST_CASE("sessions: threads per session give the same logits", "[models][session]") {
  const auto model = load_language_model(models_dir / "llama");
  const auto ids = random_ids(20, model->config().vocab, 8);
  auto one = model->new_session({.threads = 1}), two = model->new_session({.threads = 2});
  one->prefill(ids);
  two->prefill(ids);
  CHECK(rel(one->logits(), copy(two->logits())) <= 1e-5);
  CHECK(num_threads() >= 1);  // the process default is untouched
}
