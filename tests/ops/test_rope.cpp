#include <catch2/catch.hpp>

#include <tessera/ops/rope.hpp>

#include "conformance/reference.hpp"
#include "ops/ops_test_util.hpp"

using namespace tessera;
using namespace tessera::test;

namespace {
std::vector<double> dense3(tensor_view<const float, 3> v) {
  std::vector<double> r;
  for (index_t a = 0; a < v.extent(0); ++a)
    for (index_t b = 0; b < v.extent(1); ++b)
      for (index_t c = 0; c < v.extent(2); ++c) r.push_back(v(a, b, c));
  return r;
}
}  // namespace

TEST_CASE("rope_default_inv_freq is 1 / theta^(2i / rotary_dim) in float", "[rope]") {
  const auto inv8 = ops::rope_default_inv_freq(8, 10000.f);
  REQUIRE(inv8.size() == 4);
  CHECK(inv8[0] == 1.f);
  CHECK(inv8[1] == Approx(0.1).epsilon(1e-6));
  CHECK(inv8[2] == Approx(0.01).epsilon(1e-6));
  CHECK(inv8[3] == Approx(0.001).epsilon(1e-6));
  const auto inv128 = ops::rope_default_inv_freq(128, 500000.f);
  REQUIRE(inv128.size() == 64);
  for (index_t i = 0; i < 64; ++i)
    CHECK(inv128[i] == Approx(std::pow(500000.0, -2.0 * i / 128.0)).epsilon(2e-6));
  REQUIRE_THROWS_AS(ops::rope_default_inv_freq(7, 10000.f), config_error);
  REQUIRE_THROWS_AS(ops::rope_default_inv_freq(8, 0.f), config_error);
}

TEST_CASE("rope neox / gptj, full and partial rotary, with attention scaling, vs double", "[rope]") {
  struct shape_case {
    index_t l, n_heads, head_dim, rotary_dim;
  };
  for (auto [l, nh, hd, rd] : {shape_case{1, 1, 2, 2}, shape_case{5, 3, 16, 16}, shape_case{7, 2, 64, 32},
                               shape_case{3, 4, 80, 20}, shape_case{2, 2, 256, 256}, shape_case{4, 2, 34, 34}}) {
    for (auto mode : {ops::rope_mode::neox, ops::rope_mode::gptj}) {
      for (float scaling : {1.f, 1.25f}) {
        auto x0 = random_tensor<3>({l, nh, hd});
        std::vector<std::int32_t> pos(static_cast<std::size_t>(l));
        for (index_t t = 0; t < l; ++t) pos[t] = static_cast<std::int32_t>(t * 37 + 1000 * (t % 2));
        const auto inv = ops::rope_default_inv_freq(rd, 10000.f);
        const tensor_view<const std::int32_t, 1> pv(pos.data(), {l});
        const tensor_view<const float, 1> iv(inv.data(), {rd / 2});
        const ops::rope_params params{.mode = mode, .attention_scaling = scaling};
        const auto want = ref::rope(x0.cview(), pos, inv, mode == ops::rope_mode::neox, scaling);
        auto x = x0;
        ops::rope(x.view(), pv, iv, params);
        auto xs = x0;
        ops::rope(xs.view(), pv, iv, params, simd::scalar{});
        const auto got = dense3(x.cview()), got_s = dense3(xs.cview());
        CHECK(max_rel_err(got.data(), want.data(), static_cast<index_t>(want.size())) < 1e-5);
        CHECK(max_rel_err(got_s.data(), want.data(), static_cast<index_t>(want.size())) < 1e-5);
        // dims past rotary_dim pass through untouched
        for (index_t t = 0; t < l; ++t)
          for (index_t h = 0; h < nh; ++h)
            for (index_t i = rd; i < hd; ++i) REQUIRE(x(t, h, i) == x0(t, h, i));
      }
    }
  }
}

TEST_CASE("rope at position 0 is the identity and rotations compose", "[rope]") {
  auto x0 = random_tensor<3>({1, 2, 32});
  const auto inv = ops::rope_default_inv_freq(32, 10000.f);
  const tensor_view<const float, 1> iv(inv.data(), {16});
  std::int32_t p0 = 0;
  auto x = x0;
  ops::rope(x.view(), tensor_view<const std::int32_t, 1>(&p0, {1}), iv);
  for (index_t i = 0; i < 32; ++i) REQUIRE(x(0, 0, i) == x0(0, 0, i));
  // rope(3) then rope(4) == rope(7) up to rounding
  std::int32_t p3 = 3, p4 = 4, p7 = 7;
  ops::rope(x.view(), tensor_view<const std::int32_t, 1>(&p3, {1}), iv);
  ops::rope(x.view(), tensor_view<const std::int32_t, 1>(&p4, {1}), iv);
  auto y = x0;
  ops::rope(y.view(), tensor_view<const std::int32_t, 1>(&p7, {1}), iv);
  for (index_t h = 0; h < 2; ++h)
    for (index_t i = 0; i < 32; ++i) CHECK(x(0, h, i) == Approx(y(0, h, i)).margin(1e-5));
}

TEST_CASE("rope works on a strided q slice of a fused qkv tensor", "[rope]") {
  // qkv: (l, 3 * n_heads, head_dim); q = heads [0, n_heads)
  auto qkv = random_tensor<3>({4, 6, 16});
  auto q = qkv.view().slice(1, 0, 2);
  auto q_copy = tensor<float, 3>::copy_of(q);
  const auto inv = ops::rope_default_inv_freq(16, 10000.f);
  std::vector<std::int32_t> pos{5, 6, 7, 8};
  const tensor_view<const std::int32_t, 1> pv(pos.data(), {4});
  const tensor_view<const float, 1> iv(inv.data(), {8});
  auto k_before = tensor<float, 3>::copy_of(qkv.view().slice(1, 2, 6));
  ops::rope(q, pv, iv);
  ops::rope(q_copy.view(), pv, iv);
  for (index_t t = 0; t < 4; ++t)
    for (index_t h = 0; h < 2; ++h)
      for (index_t i = 0; i < 16; ++i) REQUIRE(q(t, h, i) == q_copy(t, h, i));
  for (index_t t = 0; t < 4; ++t)
    for (index_t h = 2; h < 6; ++h)
      for (index_t i = 0; i < 16; ++i) REQUIRE(qkv(t, h, i) == k_before(t, h - 2, i));
}

TEST_CASE("rope rejects bad shapes and negative positions", "[rope]") {
  auto x = random_tensor<3>({2, 2, 8});
  const auto inv = ops::rope_default_inv_freq(10, 10000.f);  // rotary_dim 10 > head_dim 8
  std::vector<std::int32_t> pos{0, 1}, neg{0, -3}, three{0, 1, 2};
  const tensor_view<const float, 1> iv(inv.data(), {5});
  REQUIRE_THROWS_WITH(ops::rope(x.view(), tensor_view<const std::int32_t, 1>(pos.data(), {2}), iv),
                      Catch::Contains("rope") && Catch::Contains("head_dim 8"));
  const tensor_view<const float, 1> iv4(inv.data(), {4});
  REQUIRE_THROWS_AS(ops::rope(x.view(), tensor_view<const std::int32_t, 1>(three.data(), {3}), iv4), shape_error);
  REQUIRE_THROWS_WITH(ops::rope(x.view(), tensor_view<const std::int32_t, 1>(neg.data(), {2}), iv4),
                      Catch::Contains("-3"));
}
