#include <catch2/catch.hpp>

#include <tessera/ops/activation.hpp>

#include "conformance/reference.hpp"
#include "ops/ops_test_util.hpp"

using namespace tessera;
using namespace tessera::test;

namespace {
double ref_act(ops::activation act, double x) {
  switch (act) {
    case ops::activation::identity: return x;
    case ops::activation::relu: return ref::relu(x);
    case ops::activation::relu2: return ref::relu(x) * ref::relu(x);
    case ops::activation::gelu: return ref::gelu(x);
    case ops::activation::gelu_tanh: return ref::gelu_tanh(x);
    case ops::activation::silu: return ref::silu(x);
    case ops::activation::quick_gelu: return ref::quick_gelu(x);
    case ops::activation::sigmoid: return ref::sigmoid(x);
    case ops::activation::tanh: return ref::tanh(x);
  }
  return 0;
}
constexpr ops::activation all_acts[] = {ops::activation::identity, ops::activation::relu,  ops::activation::relu2,
                                        ops::activation::gelu,     ops::activation::gelu_tanh, ops::activation::silu,
                                        ops::activation::quick_gelu, ops::activation::sigmoid, ops::activation::tanh};
}  // namespace

TEST_CASE("parse_activation knows transformers' ACT2FN names", "[activation]") {
  CHECK(ops::parse_activation("gelu") == ops::activation::gelu);
  CHECK(ops::parse_activation("gelu_python") == ops::activation::gelu);
  CHECK(ops::parse_activation("gelu_new") == ops::activation::gelu_tanh);
  CHECK(ops::parse_activation("gelu_pytorch_tanh") == ops::activation::gelu_tanh);
  CHECK(ops::parse_activation("gelu_fast") == ops::activation::gelu_tanh);
  CHECK(ops::parse_activation("silu") == ops::activation::silu);
  CHECK(ops::parse_activation("swish") == ops::activation::silu);
  CHECK(ops::parse_activation("relu") == ops::activation::relu);
  CHECK(ops::parse_activation("quick_gelu") == ops::activation::quick_gelu);
  CHECK(ops::activation_name(ops::activation::gelu_tanh) == "gelu_tanh");
  REQUIRE_THROWS_AS(ops::parse_activation("mish"), config_error);
  REQUIRE_THROWS_WITH(ops::parse_activation("mish"),
                      Catch::Contains("mish") && Catch::Contains("gelu_new") && Catch::Contains("swish"));
}

TEST_CASE("apply_activation matches double precision for every activation, dense and strided", "[activation]") {
  for (auto act : all_acts) {
    for (index_t d : {1, 7, 17, 100}) {
      tensor<float, 2> xs;
      auto x0 = random_strided(xs, 3, d, d + 2, -6.f, 6.f);
      auto dense0 = tensor<float, 2>::copy_of(x0);
      std::vector<double> want;
      for (index_t t = 0; t < 3; ++t)
        for (index_t i = 0; i < d; ++i) want.push_back(ref_act(act, x0(t, i)));
      auto y = ops::activation_copy(act, x0);  // strided input, dense output
      auto y_s = ops::activation_copy(act, x0, simd::scalar{});
      ops::apply_activation(act, dense0.view());  // dense, in place
      INFO(ops::activation_name(act) << " d=" << d);
      CHECK(max_rel_vs(y.cview(), want) < 2e-6);
      CHECK(max_rel_vs(y_s.cview(), want) < 2e-6);
      CHECK(max_rel_vs(dense0.cview(), want) < 2e-6);
    }
  }
}

TEST_CASE("named in-place activations and copies", "[activation]") {
  auto x = random_tensor<2>({2, 21}, -5.f, 5.f);
  auto silu_want = ops::activation_copy(ops::activation::silu, x.cview(), simd::scalar{});
  auto a = ops::silu_copy(x.cview());
  auto b = x;
  ops::silu(b.view());
  CHECK(max_rel_vs(a.cview(), dense(silu_want.cview())) < 2e-6);
  CHECK(max_rel_vs(b.cview(), dense(silu_want.cview())) < 2e-6);
  auto g = x;
  ops::gelu(g.view());
  CHECK(max_rel_vs(g.cview(), dense(ops::gelu_copy(x.cview(), simd::scalar{}).cview())) < 2e-6);
  auto r = x;
  ops::relu(r.view());
  for (index_t i = 0; i < 21; ++i) CHECK(r(0, i) == std::max(x(0, i), 0.f));
}

TEST_CASE("swiglu and gated activations match double, in place on gate", "[activation]") {
  for (auto act : all_acts) {
    auto gate = random_tensor<2>({3, 37}, -5.f, 5.f);
    auto up = random_tensor<2>({3, 37});
    std::vector<double> want;
    for (index_t t = 0; t < 3; ++t)
      for (index_t i = 0; i < 37; ++i) want.push_back(ref_act(act, gate(t, i)) * up(t, i));
    tensor<float, 2> out({3, 37}), out_s({3, 37});
    ops::gated_activation(act, gate.cview(), up.cview(), out.view());
    ops::gated_activation(act, gate.cview(), up.cview(), out_s.view(), simd::scalar{});
    INFO(ops::activation_name(act));
    CHECK(max_rel_vs(out.cview(), want) < 3e-6);
    CHECK(max_rel_vs(out_s.cview(), want) < 3e-6);
    if (act == ops::activation::silu) {
      ops::swiglu(gate.cview(), up.cview(), gate.view());
      CHECK(max_rel_vs(gate.cview(), want) < 3e-6);
    }
  }
  auto g = random_tensor<2>({2, 5});
  auto u = random_tensor<2>({2, 6});
  tensor<float, 2> o({2, 5});
  REQUIRE_THROWS_WITH(ops::swiglu(g.cview(), u.cview(), o.view()), Catch::Contains("swiglu") && Catch::Contains("up"));
}
