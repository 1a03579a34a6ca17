#include "ssm_test_util.hpp"

#include <tessera/ssm/gated_rms_norm.hpp>

using namespace tessera;
using namespace tessera::test::ssm_util;

TEST_CASE("gated_rms_norm matches transformers' MambaRMSNormGated and the norm-before-gate form", "[gated_rms_norm]") {
  test::rng(401);
  for (index_t d : {24, 96, 100})
    for (index_t gs : {index_t(0), d / 2, d / 4})
      for (bool before : {false, true}) {
        const index_t l = 7;
        const auto x = uniform<2>({l, d}, -2.f, 2.f);
        const auto z = uniform<2>({l, d}, -3.f, 3.f);
        const auto w = uniform<1>({d}, 0.5f, 1.5f);
        const index_t g = gs == 0 ? d : gs;
        std::vector<double> ref(std::size_t(l * d));
        for (index_t t = 0; t < l; ++t)
          for (index_t g0 = 0; g0 < d; g0 += g) {
            double ss = 0;
            for (index_t i = g0; i < g0 + g; ++i) {
              const double u = before ? x(t, i) : x(t, i) * silu(z(t, i));
              ss += u * u;
            }
            const double r = 1 / std::sqrt(ss / double(g) + 1e-5);
            for (index_t i = g0; i < g0 + g; ++i)
              ref[std::size_t(t * d + i)] = before ? w(i) * x(t, i) * r * silu(z(t, i)) : w(i) * x(t, i) * silu(z(t, i)) * r;
          }
        const ssm::gated_rms_norm_params p{.eps = 1e-5f, .group_size = gs, .norm_before_gate = before};
        tensor<float, 2> o1({l, d}), o2({l, d});
        ssm::gated_rms_norm(x.cview(), z.cview(), w.cview(), o1.view(), p, simd::scalar{});
        ssm::gated_rms_norm(x.cview(), z.cview(), w.cview(), o2.view(), p);
        auto inplace = x;
        ssm::gated_rms_norm(inplace.cview(), z.cview(), w.cview(), inplace.view(), p);
        INFO("d=" << d << " group=" << gs << " before=" << before);
        REQUIRE(max_rel_err(o1.data(), ref.data(), o1.size()) < 1e-5);
        REQUIRE(max_rel_err(o2.data(), ref.data(), o2.size()) < 1e-5);
        REQUIRE(max_rel_err(inplace.data(), ref.data(), inplace.size()) < 1e-5);
      }
  const auto x = uniform<2>({2, 24}, -1.f, 1.f);
  const auto w = uniform<1>({24}, -1.f, 1.f);
  tensor<float, 2> o({2, 24});
  REQUIRE_THROWS_AS(ssm::gated_rms_norm(x.cview(), x.cview(), w.cview(), o.view(), {.group_size = 7}), config_error);
  REQUIRE_THROWS_WITH(ssm::gated_rms_norm(x.cview(), x.cview(), w.cview(), o.view(), {.group_size = 7}),
                      Catch::Contains("group_size 7"));
}
