// Mamba, Mamba-2 and Jamba from the transformers fixtures (tests/data/models, docs/fixtures.md):
// full-sequence logits within 1e-4 relative, greedy ids identical, prefill + steps == prefill,
// snapshot/restore exact, prompt-prefix cache, no allocation while decoding.
#include <catch2/catch.hpp>

#include <memory>
#include <numeric>

#include <tessera/families/jamba.hpp>
#include <tessera/families/mamba.hpp>
#include <tessera/families/mamba2.hpp>
#include <tessera/families/registry.hpp>

#include "common/alloc_counter.hpp"
#include "ssm_models_test_util.hpp"

using namespace tessera;
using tessera::test::argmax;
using tessera::test::copy_logits;
using tessera::test::rel_err;

namespace {

std::unique_ptr<families::hybrid_model> load_family(const std::string& name) {
  const auto dir = test::model_dir(name);
  const auto cfg = load_config(dir);
  auto w = std::make_shared<const io::weight_map>(io::weight_map::open(dir));
  if (cfg.family == "mamba") return families::load_mamba(cfg, w);
  if (cfg.family == "mamba2") return families::load_mamba2(cfg, w);
  return families::load_jamba(cfg, w);
}

void check_parity(const std::string& name, const std::string& ref_file = "reference.safetensors") {
  INFO("fixture " << name << " / " << ref_file);
  auto model = load_family(name);
  const auto ref = test::load_reference(test::model_dir(name) / ref_file);
  const index_t l = static_cast<index_t>(ref.input_ids.size()), V = model->config().vocab;
  REQUIRE(ref.logits.extent(0) == l);
  REQUIRE(ref.logits.extent(1) == V);
  // full-sequence forward
  auto s = model->new_session();
  tensor<float, 2> logits({l, V});
  s->prefill_all(ref.input_ids, logits.view());
  const double e = rel_err(logits.cview().data(), ref.logits.cview().data(), static_cast<std::size_t>(l * V));
  INFO("full-sequence logits rel err " << e);
  CHECK(e < 1e-4);
  test::check_greedy(*model, ref);
}

}  // namespace

TEST_CASE("mamba: transformers parity (f32, bf16)", "[ssm_models][mamba]") {
  check_parity("mamba");
  check_parity("mamba_bf16");
}

TEST_CASE("mamba2: transformers parity at l = 8, 13, 21 (chunk 8)", "[ssm_models][mamba2]") {
  check_parity("mamba2");
  check_parity("mamba2", "reference_l8.safetensors");
  check_parity("mamba2", "reference_l13.safetensors");
  check_parity("mamba2", "reference_l21.safetensors");
}

TEST_CASE("jamba: transformers parity (MoE, attention without RoPE, dt/B/C norms)", "[ssm_models][jamba]") {
  auto model = load_family("jamba");
  CHECK(model->config().layer_schedule == "MAMA");
  CHECK(model->config().ffn_schedule == "EFEF");
  check_parity("jamba");
}

TEST_CASE("every family: prefill(n) then steps == prefill(n + k), chunked prefill == whole", "[ssm_models]") {
  for (const char* name : {"mamba", "mamba2", "jamba"}) {
    INFO(name);
    auto model = load_family(name);
    const auto ref = test::load_reference(test::model_dir(name) / "reference.safetensors");
    std::vector<std::int32_t> ids = ref.input_ids;
    ids.insert(ids.end(), ref.greedy_ids.begin(), ref.greedy_ids.end());  // 13+ tokens
    const std::size_t n_total = ids.size();
    auto whole = model->new_session();
    whole->prefill(ids);
    const auto want = copy_logits(*whole);
    for (std::size_t n : {std::size_t(1), std::size_t(5), n_total - 3}) {
      auto s = model->new_session();
      s->prefill(std::span<const std::int32_t>(ids).first(n));
      for (std::size_t i = n; i < n_total; ++i) s->step(ids[i]);
      CHECK(s->position() == static_cast<index_t>(n_total));
      CHECK(rel_err(s->logits().data(), want.data(), want.size()) < 2e-5);
      // prefill in two parts
      auto p = model->new_session();
      p->prefill(std::span<const std::int32_t>(ids).first(n));
      p->prefill(std::span<const std::int32_t>(ids).subspan(n));
      CHECK(rel_err(p->logits().data(), want.data(), want.size()) < 2e-5);
    }
    // internal chunking (max_prefill 4) == one chunk
    auto c = model->new_session({.max_len = 0, .max_prefill = 4});
    tensor<float, 2> all({static_cast<index_t>(n_total), model->config().vocab});
    c->prefill_all(ids, all.view());
    CHECK(rel_err(c->logits().data(), want.data(), want.size()) < 2e-5);
    CHECK(rel_err(all.cview()[static_cast<index_t>(n_total) - 1].data(), want.data(), want.size()) < 2e-5);
  }
}

TEST_CASE("every family: decoding a token allocates nothing (1 and 2 threads)", "[ssm_models]") {
  const int threads_before = num_threads();
  for (const char* name : {"mamba", "mamba2", "jamba"}) {
    for (int threads : {1, 2}) {
      INFO(name << ", " << threads << " threads");
      set_num_threads(threads);
      auto model = load_family(name);
      auto s = model->new_session();
      s->prefill(std::vector<std::int32_t>{1, 5, 7, 9});
      s->step(3);  // warm-up (first touch of anything made lazily)
      test::start_counting_allocations();
      for (int i = 0; i < 10; ++i) s->step(argmax(s->logits()));
      CHECK(test::stop_counting_allocations() == 0);
    }
  }
  set_num_threads(threads_before);
}

TEST_CASE("every family: snapshot/restore is exact, prompt-prefix cache", "[ssm_models]") {
  for (const char* name : {"mamba", "mamba2", "jamba"}) {
    INFO(name);
    auto model = load_family(name);
    const std::vector<std::int32_t> prefix = {5, 17, 99, 3, 42, 7, 150, 11, 64};
    const std::vector<std::int32_t> suffix_a = {8, 9, 10}, suffix_b = {120, 1, 33, 77};
    auto s = model->new_session();
    s->prefill(prefix);
    const auto snap = s->snapshot();
    // decode after restore equals decode without it (bitwise)
    std::vector<std::vector<float>> first;
    for (auto id : suffix_a) s->step(id), first.push_back(copy_logits(*s));
    s->restore(snap);
    CHECK(s->position() == static_cast<index_t>(prefix.size()));
    for (std::size_t i = 0; i < suffix_a.size(); ++i) {
      s->step(suffix_a[i]);
      CHECK(copy_logits(*s) == first[i]);
    }
    // prefix cache: the same snapshot continues two different suffixes; each equals a fresh run
    for (const auto* suffix : {&suffix_a, &suffix_b}) {
      s->restore(snap);
      s->prefill(*suffix);
      std::vector<std::int32_t> all = prefix;
      all.insert(all.end(), suffix->begin(), suffix->end());
      auto fresh = model->new_session();
      fresh->prefill(all);
      const auto want = copy_logits(*fresh);
      CHECK(rel_err(s->logits().data(), want.data(), want.size()) < 2e-5);
      CHECK(s->position() == fresh->position());
    }
    // a snapshot restored into a second session of the same model
    auto s2 = model->new_session();
    s2->restore(snap);
    s2->step(suffix_a[0]);
    CHECK(copy_logits(*s2) == first[0]);
    // reset
    s2->reset();
    CHECK(s2->position() == 0);
    s2->prefill(prefix);
    s->restore(snap);
    CHECK(copy_logits(*s2) == copy_logits(*s));
  }
}

TEST_CASE("families: bad input", "[ssm_models]") {
  auto mamba = load_family("mamba");
  auto mamba2 = load_family("mamba2");
  auto s = mamba->new_session();
  auto s2 = mamba2->new_session();
  s->prefill(std::vector<std::int32_t>{1, 2, 3});
  // snapshot of another model
  CHECK_THROWS_AS(s2->restore(s->snapshot()), range_error);
  // another instance of the same checkpoint is another model too
  auto mamba_again = load_family("mamba");
  CHECK_THROWS_AS(mamba_again->new_session()->restore(s->snapshot()), range_error);
  // token ids out of range
  CHECK_THROWS_AS(s->step(160), range_error);
  CHECK_THROWS_AS(s->step(-1), range_error);
  CHECK_THROWS_AS(s->prefill(std::vector<std::int32_t>{1, 160}), range_error);
  CHECK(s->position() == 3);  // nothing changed
  CHECK_THROWS_AS(s->prefill(std::vector<std::int32_t>{}), range_error);
  // context overflow in Jamba's attention layers
  auto jamba = load_family("jamba");
  auto j = jamba->new_session({.max_len = 6, .max_prefill = 512});
  j->prefill(std::vector<std::int32_t>{1, 2, 3, 4, 5});
  j->step(6);
  CHECK_THROWS_AS(j->step(7), range_error);
  CHECK_THROWS_AS(jamba->new_session({.max_len = 4, .max_prefill = 512})->prefill(std::vector<std::int32_t>{1, 2, 3, 4, 5}),
                  range_error);
  // the default session length of Jamba is max_position_embeddings; pure SSMs are unbounded
  CHECK(jamba->new_session()->max_len() == 256);
  CHECK(mamba->new_session()->max_len() > (index_t(1) << 40));
  // wrong family
  CHECK_THROWS_AS(families::load_mamba2(test::model_dir("mamba")), config_error);
}

TEST_CASE("families: load_language_model dispatches mamba, mamba2, jamba", "[ssm_models]") {
  for (const char* name : {"mamba", "mamba2", "jamba"}) {
    INFO(name);
    auto model = load_language_model(test::model_dir(name));
    const auto ref = test::load_reference(test::model_dir(name) / "reference.safetensors");
    auto s = model->new_session();
    s->prefill(ref.input_ids);
    const index_t l = static_cast<index_t>(ref.input_ids.size());
    CHECK(rel_err(s->logits().data(), ref.logits.cview()[l - 1].data(), static_cast<std::size_t>(model->config().vocab)) < 1e-4);
  }
}
