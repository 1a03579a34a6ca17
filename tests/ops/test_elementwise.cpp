#include <catch2/catch.hpp>

#include <tessera/ops/elementwise.hpp>

#include "ops/ops_test_util.hpp"

using namespace tessera;
using namespace tessera::test;

TEST_CASE("add, mul, add_inplace and scale, dense, strided and broadcast", "[elementwise]") {
  for (index_t d : {1, 7, 16, 33, 1000}) {
    tensor<float, 2> as, bs;
    auto a = random_strided(as, 4, d, d + 1);
    auto b = random_strided(bs, 4, d, d);
    auto row = random_tensor<2>({1, d});
    tensor<float, 2> sum({4, d}), prod({4, d}), bsum({4, d});
    ops::add(a, b, sum.view());
    ops::mul(a, b, prod.view());
    ops::add(a, row.cview(), bsum.view());
    for (index_t t = 0; t < 4; ++t)
      for (index_t i = 0; i < d; ++i) {
        REQUIRE(sum(t, i) == a(t, i) + b(t, i));
        REQUIRE(prod(t, i) == a(t, i) * b(t, i));
        REQUIRE(bsum(t, i) == a(t, i) + row(0, i));
      }
    auto acc = tensor<float, 2>::copy_of(a);
    ops::add_inplace(acc.view(), b);
    ops::scale(acc.view(), 0.5f);
    auto a0 = tensor<float, 2>::copy_of(a);
    ops::scale(a, 3.f, simd::scalar{});  // strided, in place
    for (index_t t = 0; t < 4; ++t)
      for (index_t i = 0; i < d; ++i) {
        REQUIRE(acc(t, i) == 0.5f * (a0(t, i) + b(t, i)));
        REQUIRE(a(t, i) == 3.f * a0(t, i));
      }
  }
}

TEST_CASE("elementwise copies and shape errors", "[elementwise]") {
  auto a = random_tensor<2>({3, 5});
  auto b = random_tensor<2>({3, 5});
  auto c = ops::add_copy(a.cview(), b.cview());
  auto m = ops::mul_copy(a.cview(), b.cview(), simd::scalar{});
  auto s = ops::scale_copy(a.cview(), 2.f);
  REQUIRE(c(2, 4) == a(2, 4) + b(2, 4));
  REQUIRE(m(1, 3) == a(1, 3) * b(1, 3));
  REQUIRE(s(0, 0) == 2.f * a(0, 0));
  auto bad = random_tensor<2>({2, 5});
  tensor<float, 2> out({3, 5});
  REQUIRE_THROWS_WITH(ops::add(a.cview(), bad.cview(), out.view()),
                      Catch::Contains("add") && Catch::Contains("(3, 5)") && Catch::Contains("(2, 5)"));
  REQUIRE_THROWS_AS(ops::mul(a.cview(), b.cview(), bad.view()), shape_error);
  REQUIRE_THROWS_AS(ops::add_inplace(a.view(), a.cview().transpose(0, 1).slice(0, 0, 3).slice(1, 0, 3)), shape_error);
}
