#include <catch2/catch.hpp>

#include <tessera/ops/embedding.hpp>

#include "ops/ops_test_util.hpp"

using namespace tessera;
using namespace tessera::test;

TEMPLATE_TEST_CASE("get_rows gathers and widens rows exactly", "[get_rows]", float, f16, bf16) {
  for (index_t d : {1, 7, 16, 33, 100}) {
    auto table = narrow<TestType>(random_tensor<2>({50, d}));
    std::vector<std::int32_t> ids{3, 0, 49, 3, 17};
    tensor<float, 2> outs({5, d + 4});
    auto out = outs.view().slice(1, 0, d);  // strided output rows
    tensor<float, 2> out_s({5, d});
    ops::get_rows(table.cview(), ids, out);
    ops::get_rows(table.cview(), ids, out_s.view(), simd::scalar{});
    for (index_t t = 0; t < 5; ++t)
      for (index_t i = 0; i < d; ++i) {
        REQUIRE(out(t, i) == to_float(table(ids[t], i)));
        REQUIRE(out_s(t, i) == to_float(table(ids[t], i)));
      }
    auto c = ops::get_rows_copy(table.cview(), ids);
    REQUIRE(c(2, 0) == to_float(table(49, 0)));
  }
}

TEST_CASE("get_rows names an id out of range and the vocab", "[get_rows]") {
  auto table = random_tensor<2>({10, 4});
  tensor<float, 2> out({2, 4}), out_bad({2, 5});
  std::vector<std::int32_t> big{1, 10}, neg{-1, 0}, ok{1, 2};
  REQUIRE_THROWS_AS(ops::get_rows(table.cview(), big, out.view()), range_error);
  REQUIRE_THROWS_WITH(ops::get_rows(table.cview(), big, out.view()),
                      Catch::Contains("10") && Catch::Contains("vocab of 10") && Catch::Contains("position 1"));
  REQUIRE_THROWS_WITH(ops::get_rows(table.cview(), neg, out.view(), simd::scalar{}), Catch::Contains("-1"));
  REQUIRE_THROWS_AS(ops::get_rows(table.cview(), ok, out_bad.view()), shape_error);
}
