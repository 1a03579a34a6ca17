#include <catch2/catch.hpp>

#include <tessera/ops/linear.hpp>

#include "conformance/reference.hpp"
#include "ops/ops_test_util.hpp"

using namespace tessera;
using namespace tessera::test;

TEMPLATE_TEST_CASE("linear (gemv for one row, gemm otherwise) matches double, with and without bias", "[linear]",
                   float, f16, bf16) {
  for (index_t m : {1, 2, 7, 33}) {
    for (index_t k : {1, 17, 100}) {
      const index_t n = 19;
      tensor<float, 2> xs;
      auto x = random_strided(xs, m, k, k + 2);
      auto w = narrow<TestType>(random_tensor<2>({n, k}));
      auto bias = random_tensor<1>({n});
      workspace ws(ops::linear_workspace_bytes<TestType>(k));
      tensor<float, 2> out({m, n}), out_s({m, n});
      ops::linear(x, w.cview(), bias.cview(), out.view(), ws);
      ops::linear(x, w.cview(), bias.cview(), out_s.view(), ws, simd::scalar{});
      const auto want = ref::linear<TestType>(x, w.cview(), bias.cview());
      CHECK(nmse_vs(out.cview(), want) < 1e-11);
      CHECK(nmse_vs(out_s.cview(), want) < 1e-11);
      ops::linear(x, w.cview(), std::nullopt, out.view(), ws);
      CHECK(nmse_vs(out.cview(), ref::linear<TestType>(x, w.cview(), std::nullopt)) < 1e-11);
    }
  }
}

TEST_CASE("linear_copy and shape errors", "[linear]") {
  auto x = random_tensor<2>({3, 10});
  auto w = random_tensor<2>({4, 10});
  auto y = ops::linear_copy(x.cview(), w.cview());
  CHECK(nmse_vs(y.cview(), ref::linear<float>(x.cview(), w.cview(), std::nullopt)) < 1e-11);
  workspace ws(ops::linear_workspace_bytes<float>(10));
  auto w_bad = random_tensor<2>({4, 9});
  tensor<float, 2> out({3, 4}), out_bad({3, 5});
  auto bias_bad = random_tensor<1>({5});
  REQUIRE_THROWS_WITH(ops::linear(x.cview(), w_bad.cview(), std::nullopt, out.view(), ws),
                      Catch::Contains("linear") && Catch::Contains("(4, 9)"));
  REQUIRE_THROWS_AS(ops::linear(x.cview(), w.cview(), std::nullopt, out_bad.view(), ws), shape_error);
  REQUIRE_THROWS_WITH(ops::linear(x.cview(), w.cview(), bias_bad.cview(), out.view(), ws), Catch::Contains("bias"));
}
