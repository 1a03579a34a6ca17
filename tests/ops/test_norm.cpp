#include <catch2/catch.hpp>

#include <tessera/ops/norm.hpp>

#include "conformance/reference.hpp"
#include "ops/ops_test_util.hpp"

using namespace tessera;
using namespace tessera::test;

TEMPLATE_TEST_CASE("rms_norm matches double precision for f32/f16/bf16 weights", "[rms_norm]", float, f16, bf16) {
  for (index_t d : {1, 7, 16, 33, 100, 1000}) {
    tensor<float, 2> xs;
    auto x = random_strided(xs, 5, d, d + 3);
    auto wf = random_tensor<1>({d}, 0.5f, 1.5f);
    auto w = narrow<TestType>(wf);
    tensor<float, 2> out({5, d}), out_s({5, d});
    ops::rms_norm(x, w.cview(), out.view(), 1e-5f);
    ops::rms_norm(x, w.cview(), out_s.view(), 1e-5f, simd::scalar{});
    const auto want = ref::rms_norm<TestType>(x, w.cview(), 1e-5);
    CHECK(max_rel_vs(out.cview(), want) < 1e-5);
    CHECK(max_rel_vs(out_s.cview(), want) < 1e-5);
  }
}

TEST_CASE("rms_norm works in place and with non-const weight views", "[rms_norm]") {
  auto x = random_tensor<2>({3, 37}, -3.f, 3.f);
  auto w = random_tensor<1>({37});
  const auto want = ref::rms_norm<float>(x.cview(), w.cview(), 1e-6);
  ops::rms_norm(x.cview(), w.view(), x.view(), 1e-6f);
  CHECK(max_rel_vs(x.cview(), want) < 1e-5);
}

TEST_CASE("rms_norm and layer_norm reject mismatched shapes with shape_error", "[rms_norm][layer_norm]") {
  auto x = random_tensor<2>({3, 8});
  auto w = random_tensor<1>({7});
  tensor<float, 2> out({3, 8}), bad({2, 8});
  REQUIRE_THROWS_WITH(ops::rms_norm(x.cview(), w.cview(), out.view(), 1e-6f),
                      Catch::Contains("rms_norm") && Catch::Contains("weight") && Catch::Contains("(7)"));
  auto w8 = random_tensor<1>({8});
  REQUIRE_THROWS_AS(ops::rms_norm(x.cview(), w8.cview(), bad.view(), 1e-6f), shape_error);
  REQUIRE_THROWS_AS(ops::layer_norm(x.cview(), w8.cview(), w.cview(), out.view(), 1e-6f), shape_error);
  REQUIRE_THROWS_AS(ops::rms_norm(x.cview().transpose(0, 1), w.cview().slice(0, 0, 3), out.view().transpose(0, 1),
                                  1e-6f),
                    shape_error);
}

TEMPLATE_TEST_CASE("layer_norm matches double precision with and without bias", "[layer_norm]", float, f16, bf16) {
  for (index_t d : {1, 15, 17, 64, 1000}) {
    tensor<float, 2> xs;
    auto x = random_strided(xs, 4, d, d + 5, 1.f, 3.f);  // a mean far from 0 tests the two-pass variance
    auto w = narrow<TestType>(random_tensor<1>({d}, 0.5f, 1.5f));
    auto b = narrow<TestType>(random_tensor<1>({d}));
    tensor<float, 2> out({4, d}), out_s({4, d});
    ops::layer_norm(x, w.cview(), b.cview(), out.view(), 1e-5f);
    ops::layer_norm(x, w.cview(), b.cview(), out_s.view(), 1e-5f, simd::scalar{});
    const auto want = ref::layer_norm<TestType>(x, w.cview(), b.cview(), 1e-5);
    CHECK(nmse_vs(out.cview(), want) < 1e-10);
    CHECK(nmse_vs(out_s.cview(), want) < 1e-10);
    ops::layer_norm(x, w.cview(), std::nullopt, out.view(), 1e-5f);
    CHECK(nmse_vs(out.cview(), ref::layer_norm<TestType>(x, w.cview(), std::nullopt, 1e-5)) < 1e-10);
  }
}

TEST_CASE("norm copies return new tensors", "[rms_norm][layer_norm]") {
  auto x = random_tensor<2>({2, 9});
  auto w = random_tensor<1>({9});
  auto y = ops::rms_norm_copy(x.cview(), w.cview(), 1e-6f);
  CHECK(max_rel_vs(y.cview(), ref::rms_norm<float>(x.cview(), w.cview(), 1e-6)) < 1e-5);
  auto z = ops::layer_norm_copy(x.cview(), w.cview(), std::nullopt, 1e-6f);
  CHECK(nmse_vs(z.cview(), ref::layer_norm<float>(x.cview(), w.cview(), std::nullopt, 1e-6)) < 1e-10);
}
