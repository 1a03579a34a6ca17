#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include <tessera/attention/mask.hpp>

#include "common/test_util.hpp"

using namespace tessera;
using namespace tessera::attention;

TEST_CASE("is_visible: causal, prefix-LM and sliding window as transformers defines them", "[mask]") {
  const mask_spec causal{};
  REQUIRE(is_visible(5, 5, causal));
  REQUIRE(is_visible(5, 0, causal));
  REQUIRE_FALSE(is_visible(5, 6, causal));
  const mask_spec prefix{true, 4, {}};
  REQUIRE(is_visible(0, 3, prefix));
  REQUIRE_FALSE(is_visible(2, 4, prefix));
  // Mistral, window 4096 counts the query: kv_idx > q_idx - sliding_window
  const mask_spec swa{true, 0, 3};
  REQUIRE(is_visible(10, 8, swa));
  REQUIRE_FALSE(is_visible(10, 7, swa));
  const mask_spec local{false, 0, 3};
  REQUIRE(is_visible(10, 12, local));
  REQUIRE_FALSE(is_visible(10, 13, local));
}

TEST_CASE("classify_tile agrees with is_visible on every pair", "[mask]") {
  tessera::test::rng(41);
  std::uniform_int_distribution<int> pos(0, 40), len(1, 9), win(1, 12), pre(0, 20);
  for (int trial = 0; trial < 3000; ++trial) {
    mask_spec m{trial % 2 == 0, trial % 3 == 0 ? index_t(pre(tessera::test::rng())) : 0, {}};
    if (trial % 5 < 3) m.window = win(tessera::test::rng());
    const index_t qlo = pos(tessera::test::rng()), qhi = qlo + len(tessera::test::rng()) - 1;
    const index_t klo = pos(tessera::test::rng()), khi = klo + len(tessera::test::rng()) - 1;
    bool any = false, all = true;
    for (index_t qp = qlo; qp <= qhi; ++qp)
      for (index_t kp = klo; kp <= khi; ++kp) {
        const bool v = is_visible(qp, kp, m);
        any |= v;
        all &= v;
      }
    const auto c = classify_tile(qlo, qhi, klo, khi, m);
    INFO("trial " << trial);
    REQUIRE((c == tile_visibility::none) == !any);
    REQUIRE((c == tile_visibility::all) == all);
  }
}

TEST_CASE("key_padding_mask turns a 0/1 attention_mask into 0/-inf", "[mask]") {
  const std::vector<std::int64_t> am = {0, 0, 1, 1, 1};
  std::vector<float> out(5, 3.f);
  key_padding_mask(tensor_view<const std::int64_t, 1>(am.data(), {5}), tensor_view<float, 1>(out.data(), {5}));
  REQUIRE(std::isinf(out[0]));
  REQUIRE(out[0] < 0);
  REQUIRE(out[2] == 0.f);
  std::vector<float> short_out(4);
  REQUIRE_THROWS_AS(
      key_padding_mask(tensor_view<const std::int64_t, 1>(am.data(), {5}), tensor_view<float, 1>(short_out.data(), {4})),
      shape_error);
  REQUIRE_THROWS_WITH(check_mask_spec(mask_spec{true, 0, 0}, "op"), Catch::Contains("window must be >= 1, got 0"));
}
