// The schedule-driven hybrid template with random weights: Mamba-2-Hybrid-style stacks, linear-
// attention hybrids (gated delta rule / retention with a softmax layer every k-th), Jamba-like
// Mamba + attention + MoE; prefill/step equivalence, snapshots, no allocation while decoding, bad
// schedules and configs.
#include <catch2/catch.hpp>

#include <filesystem>
#include <memory>
#include <random>

#include <tessera/families/hybrid.hpp>

#include "random_checkpoint/random_hybrid.hpp"

#include "common/alloc_counter.hpp"
#include "ssm_models_test_util.hpp"

using namespace tessera;
using tessera::test::copy_logits;
using tessera::test::rel_err;

namespace {

model_config small_config(index_t n_layers) {
  model_config c;
  c.family = "hybrid";
  c.vocab = 97;
  c.d_model = 40;
  c.n_layers = n_layers;
  c.norm_eps = 1e-5f;
  // Mamba-1
  c.d_inner = 80, c.d_state = 8, c.d_conv = 4, c.dt_rank = 3;
  // Mamba-2
  c.ssm_n_heads = 5, c.ssm_head_dim = 16, c.n_groups = 1, c.chunk = 8;
  c.time_step_limit_hi = std::numeric_limits<float>::infinity();
  // attention / linear attention
  c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 10;
  // MLP / MoE
  c.d_ff = 56, c.n_experts = 5, c.n_experts_per_tok = 2;
  return c;
}

std::filesystem::path temp_file(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("tessera_ssm_models_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir / name;
}

std::unique_ptr<families::hybrid_model> random_hybrid(const model_config& cfg, const families::hybrid_schedule& sch,
                                                    const std::string& name, families::hybrid_layout names = {}) {
  const auto file = temp_file(name + ".safetensors");
  testing::write_random_hybrid(cfg, sch, names, file, 1234);
  auto w = std::make_shared<const io::weight_map>(io::weight_map::open(file));
  return families::load_hybrid(cfg, sch, names, w);
}

std::vector<std::int32_t> random_ids(std::size_t n, index_t vocab) {
  std::mt19937 g(7);
  std::vector<std::int32_t> v(n);
  for (auto& x : v) x = static_cast<std::int32_t>(g() % static_cast<unsigned>(vocab));
  return v;
}

/// prefill(n) + steps == prefill(all) == prefill_all; two-part prefill; snapshot/restore exact;
/// a decode step allocates nothing.
void check_equivalence(families::hybrid_model& m) {
  const auto ids = random_ids(29, m.config().vocab);  // > several Mamba-2 / linear-attention chunks
  auto whole = m.new_session();
  whole->prefill(ids);
  const auto want = copy_logits(*whole);
  for (const double x : want) REQUIRE(std::isfinite(x));
  auto all = m.new_session();
  tensor<float, 2> logits({29, m.config().vocab});
  all->prefill_all(ids, logits.view());
  CHECK(rel_err(logits.cview()[28].data(), want.data(), want.size()) < 2e-5);
  for (std::size_t n : {std::size_t(1), std::size_t(9), std::size_t(20)}) {
    INFO("prefill " << n << " then steps");
    auto s = m.new_session();
    s->prefill(std::span<const std::int32_t>(ids).first(n));
    for (std::size_t i = n; i < ids.size(); ++i) {
      s->step(ids[i]);
      // every step's logits equal the full forward's row
      CHECK(rel_err(s->logits().data(), logits.cview()[static_cast<index_t>(i)].data(), want.size()) < 3e-5);
    }
  }
  {
    auto d = m.new_session();
    d->prefill(std::span<const std::int32_t>(ids).first(5));
    d->step(ids[5]);  // warm-up
    test::start_counting_allocations();
    for (std::size_t i = 6; i < 16; ++i) d->step(ids[i]);
    CHECK(test::stop_counting_allocations() == 0);
  }
  auto c = m.new_session({.max_len = 0, .max_prefill = 7});
  c->prefill(ids);
  CHECK(rel_err(c->logits().data(), want.data(), want.size()) < 2e-5);
  // long prompts in big chunks: the session's workspace is sized for max_prefill rows
  const auto long_ids = random_ids(300, m.config().vocab);
  auto big = m.new_session({.max_len = 400, .max_prefill = 300});
  REQUIRE_NOTHROW(big->prefill(long_ids));
  auto small = m.new_session({.max_len = 400, .max_prefill = 64});
  small->prefill(long_ids);
  CHECK(rel_err(big->logits().data(), small->logits().data(), want.size()) < 5e-5);
  // snapshot / restore: exact
  auto s = m.new_session();
  s->prefill(std::span<const std::int32_t>(ids).first(15));
  const auto snap = s->snapshot();
  std::vector<std::vector<float>> first;
  for (std::size_t i = 15; i < 20; ++i) s->step(ids[i]), first.push_back(copy_logits(*s));
  s->restore(snap);
  for (std::size_t i = 15; i < 20; ++i) {
    s->step(ids[i]);
    CHECK(copy_logits(*s) == first[i - 15]);
  }
}

}  // namespace

TEST_CASE("hybrid: Mamba-2-Hybrid-style stack from a schedule (Mamba-2, attention, MLP layers)", "[ssm_models][hybrid]") {
  // 14 layers: 6 Mamba-2 (43%), 1 attention (7%), 7 MLP (50%), as in NVIDIA's Mamba-2-Hybrid
  const auto sch = families::hybrid_schedule::parse("S-S-S-A-S-S-S-", "-F-F-F-F-F-F-F", 14);
  auto m = random_hybrid(small_config(14), sch, "m2h");
  CHECK(m->config().layer_schedule == "S-S-S-A-S-S-S-");
  check_equivalence(*m);
}

TEST_CASE("hybrid: linear-attention hybrids with a softmax layer every k-th", "[ssm_models][hybrid]") {
  SECTION("gated delta rule, softmax every 3rd (Qwen3-Next style)") {
    const auto sch = families::hybrid_schedule::every_kth(6, 'G', 'A', 3, 'F');
    CHECK(sch.mixers == "GGAGGA");
    auto m = random_hybrid(small_config(6), sch, "gdn");
    check_equivalence(*m);
  }
  SECTION("retention, softmax every 4th, MoE feed-forward (MiniMax style)") {
    const auto sch = families::hybrid_schedule::every_kth(4, 'R', 'A', 4, 'E');
    CHECK(sch.mixers == "RRRA");
    auto m = random_hybrid(small_config(4), sch, "ret");
    check_equivalence(*m);
  }
}

TEST_CASE("hybrid: Jamba-like periodic schedule with Mamba-1 + inner norms, MoE, tied embeddings", "[ssm_models][hybrid]") {
  auto cfg = small_config(8);
  cfg.tie_word_embeddings = true;
  const auto sch = families::hybrid_schedule::periodic(8, 4, 2, 2, 1, 'M');
  CHECK(sch.mixers == "MMAMMMAM");
  CHECK(sch.ffns == "FEFEFEFE");
  families::hybrid_layout names;
  names.mamba_inner_norms = true;
  auto m = random_hybrid(cfg, sch, "jamba_like", names);
  check_equivalence(*m);
  // a pure Mamba-1 stack and a mixed Mamba-1 / Mamba-2 stack come from the same template
  auto pure = random_hybrid(small_config(3), families::hybrid_schedule::parse("MMM", "---", 3), "pure");
  check_equivalence(*pure);
  auto mixed = random_hybrid(small_config(4), families::hybrid_schedule::parse("MSGA", "F-EF", 4), "mixed");
  check_equivalence(*mixed);
}

TEST_CASE("hybrid: a q8_0 KV cache follows the f32 cache's logits in 0.27x of its attention memory", "[ssm_models][hybrid]") {
  auto cfg = small_config(3);
  cfg.head_dim = 32;  // q8_0 stores blocks of 32
  auto m = random_hybrid(cfg, families::hybrid_schedule::parse("AMA", "FFF", 3), "kv_q8");
  const auto ids = random_ids(20, cfg.vocab);
  auto full = m->new_session({.max_len = 64, .reserve = 64});
  auto q8 = m->new_session({.max_len = 64, .reserve = 64, .kv_type = kv_element::q8_0});
  // two attention layers, 64 tokens, 2 kv heads, keys and values: 4 bytes per value against 34 per 32
  CHECK(full->memory_bytes() - q8->memory_bytes() == 2 * 64 * 2 * 2 * (32 * 4 - 34));
  full->prefill(ids);
  q8->prefill(ids);
  double worst = 0;
  for (int t = 0; t < 12; ++t) {  // the same tokens into both (teacher forcing)
    const auto want = copy_logits(*full);
    const auto got = copy_logits(*q8);
    worst = std::max(worst, rel_err(got.data(), want.data(), want.size()));
    const auto next = static_cast<std::int32_t>(std::max_element(want.begin(), want.end()) - want.begin());
    CHECK(std::max_element(got.begin(), got.end()) - got.begin() == next);  // greedy identical
    full->step(next);
    q8->step(next);
  }
  INFO("worst relative error of the logits " << worst);
  CHECK(worst < 1.5e-2);  // 0.0091 measured (8-bit keys: ~0.4% per element, amplified by the random model)
  CHECK(worst > 0);      // the keys and values were rounded
  // decode allocates nothing; a snapshot restores exactly
  test::start_counting_allocations();
  q8->step(1);
  CHECK(test::stop_counting_allocations() == 0);
  const auto snap = q8->snapshot();
  const auto at = copy_logits(*q8);
  q8->step(2);
  q8->restore(snap);
  CHECK(copy_logits(*q8) == at);
  // a head_dim that is not a multiple of 32 is refused by name
  CHECK_THROWS_WITH(random_hybrid(small_config(3), families::hybrid_schedule::parse("AMA", "FFF", 3), "kv_q8_10")
                        ->new_session({.kv_type = kv_element::q8_0}),
                    Catch::Contains("multiple of 32, got 10"));
}

TEST_CASE("hybrid: bad schedules, configs and inputs", "[ssm_models][hybrid]") {
  using S = families::hybrid_schedule;
  CHECK_THROWS_AS(S::parse("MMXM", "----", 4), config_error);   // unknown mixer letter
  CHECK_THROWS_AS(S::parse("MMAM", "--Q-", 4), config_error);   // unknown ffn letter
  CHECK_THROWS_AS(S::parse("MMAM", "----", 5), config_error);   // wrong length
  CHECK_THROWS_AS(S::parse("MMAM", "---", 4), config_error);    // lengths differ
  CHECK_THROWS_AS(S::parse("M-", "--", 2), config_error);       // empty layer
  CHECK_THROWS_AS(S::periodic(4, 2, 2, 2, 0), config_error);     // offset >= period
  CHECK_THROWS_AS(S::periodic(4, 0, 0, 2, 0), config_error);     // zero period
  try {
    S::parse("MMAZ", "----", 4);
  } catch (const config_error& e) {
    CHECK(std::string(e.what()).find("'Z'") != std::string::npos);
    CHECK(std::string(e.what()).find("layer 3") != std::string::npos);
  }
  // MoE with top-k > experts
  auto cfg = small_config(2);
  const auto file = temp_file("bad_moe.safetensors");
  testing::write_random_hybrid(cfg, S::parse("M-", "EF", 2), {}, file);
  auto w = std::make_shared<const io::weight_map>(io::weight_map::open(file));
  cfg.n_experts_per_tok = cfg.n_experts + 1;
  CHECK_THROWS_AS(families::load_hybrid(cfg, S::parse("M-", "EF", 2), {}, w), config_error);
  cfg.n_experts_per_tok = 2;
  // schedule and config disagree on the layer count
  CHECK_THROWS_AS(families::load_hybrid(cfg, S::parse("M-F", "EF-", 3), {}, w), config_error);
  // a schedule asking for weights the file does not have
  CHECK_THROWS_AS(families::load_hybrid(cfg, S::parse("A-", "EF", 2), {}, w), format_error);
  auto m = families::load_hybrid(cfg, S::parse("M-", "EF", 2), {}, w);
  auto s = m->new_session();
  CHECK_THROWS_AS(s->step(cfg.vocab), range_error);
  // snapshot of another model
  auto other = random_hybrid(small_config(2), S::parse("MM", "--", 2), "other");
  auto o = other->new_session();
  o->step(1);
  CHECK_THROWS_AS(s->restore(o->snapshot()), range_error);
  // a session_snapshot without hybrid state
  session_snapshot fake{m.get(), std::any(42)};
  CHECK_THROWS_AS(s->restore(fake), shape_error);
  // context overflow in the attention layers of a hybrid
  auto ha = random_hybrid(small_config(2), S::parse("AM", "F-", 2), "ctx");
  auto hs = ha->new_session({.max_len = 3, .max_prefill = 512});
  hs->prefill(std::vector<std::int32_t>{1, 2, 3});
  CHECK_THROWS_AS(hs->step(4), range_error);
  CHECK(hs->position() == 3);
}
