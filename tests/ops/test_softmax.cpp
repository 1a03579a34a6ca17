#include <catch2/catch.hpp>

#include <tessera/ops/softmax.hpp>

#include "conformance/reference.hpp"
#include "ops/ops_test_util.hpp"

using namespace tessera;
using namespace tessera::test;

TEST_CASE("softmax and log_softmax match double precision", "[softmax]") {
  for (index_t d : {1, 7, 16, 17, 31, 100, 1000}) {
    tensor<float, 2> xs;
    auto x = random_strided(xs, 3, d, d + 1, -10.f, 10.f);
    tensor<float, 2> out({3, d}), out_s({3, d});
    ops::softmax(x, out.view());
    ops::softmax(x, out_s.view(), simd::scalar{});
    const auto want = ref::softmax(x, std::nullopt, false);
    CHECK(max_rel_vs(out.cview(), want) < 1e-5);
    CHECK(max_rel_vs(out_s.cview(), want) < 1e-5);
    for (index_t t = 0; t < 3; ++t) {
      double s = 0;
      for (index_t i = 0; i < d; ++i) s += out(t, i);
      CHECK(s == Approx(1.0).epsilon(1e-5));
    }
    ops::log_softmax(x, out.view());
    ops::log_softmax(x, out_s.view(), simd::scalar{});
    const auto want_log = ref::softmax(x, std::nullopt, true);
    CHECK(nmse_vs(out.cview(), want_log) < 1e-12);
    CHECK(nmse_vs(out_s.cview(), want_log) < 1e-12);
  }
}

TEST_CASE("masked softmax: full and broadcast masks, fully masked rows, in place", "[softmax]") {
  const float ninf = -std::numeric_limits<float>::infinity();
  auto x = random_tensor<2>({4, 19}, -4.f, 4.f);
  auto mask = random_tensor<2>({4, 19}, -1.f, 0.f);
  mask(1, 3) = ninf;
  mask(2, 18) = ninf;
  for (index_t i = 0; i < 19; ++i) mask(3, i) = ninf;  // fully masked row
  tensor<float, 2> out({4, 19}), out_s({4, 19});
  ops::softmax(x.cview(), mask.cview(), out.view());
  ops::softmax(x.cview(), mask.cview(), out_s.view(), simd::scalar{});
  const auto want = ref::softmax(x.cview(), mask.cview(), false);
  for (index_t t = 0; t < 3; ++t)
    for (index_t i = 0; i < 19; ++i) {
      CHECK(out(t, i) == Approx(want[t * 19 + i]).epsilon(1e-5).margin(1e-7));
      CHECK(out_s(t, i) == Approx(want[t * 19 + i]).epsilon(1e-5).margin(1e-7));
    }
  CHECK(out(1, 3) == 0.f);
  for (index_t i = 0; i < 19; ++i) CHECK(out(3, i) == 0.f);
  for (index_t i = 0; i < 19; ++i) CHECK(out_s(3, i) == 0.f);

  // a (1, d) mask broadcasts over rows; in place on x
  auto row_mask = random_tensor<2>({1, 19}, -2.f, 0.f);
  row_mask(0, 5) = ninf;
  const auto want_b = ref::softmax(x.cview(), row_mask.cview(), false);
  ops::softmax(x.cview(), row_mask.cview(), x.view());
  CHECK(max_rel_vs(x.cview(), want_b) < 1e-5);
  CHECK(x(2, 5) == 0.f);
}

TEST_CASE("masked log_softmax and the copies", "[softmax]") {
  auto x = random_tensor<2>({3, 33}, -4.f, 4.f);
  auto mask = random_tensor<2>({1, 33}, -1.f, 0.f);
  tensor<float, 2> out({3, 33});
  ops::log_softmax(x.cview(), mask.cview(), out.view());
  CHECK(nmse_vs(out.cview(), ref::softmax(x.cview(), mask.cview(), true)) < 1e-12);
  auto s = ops::softmax_copy(x.cview());
  CHECK(max_rel_vs(s.cview(), ref::softmax(x.cview(), std::nullopt, false)) < 1e-5);
  auto l = ops::log_softmax_copy(x.cview());
  CHECK(nmse_vs(l.cview(), ref::softmax(x.cview(), std::nullopt, true)) < 1e-12);
}

TEST_CASE("softmax rejects mismatched shapes", "[softmax]") {
  auto x = random_tensor<2>({3, 8});
  tensor<float, 2> out({3, 8}), bad({3, 7});
  auto mask = random_tensor<2>({2, 8});
  REQUIRE_THROWS_WITH(ops::softmax(x.cview(), bad.view()), Catch::Contains("softmax") && Catch::Contains("(3, 7)"));
  REQUIRE_THROWS_WITH(ops::softmax(x.cview(), mask.cview(), out.view()),
                      Catch::Contains("additive_mask") && Catch::Contains("(2, 8)"));
  REQUIRE_THROWS_AS(ops::log_softmax(x.cview(), bad.view()), shape_error);
}
