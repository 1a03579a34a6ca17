#include "ssm_test_util.hpp"

#include <tessera/ssm/conv1d.hpp>

using namespace tessera;
using namespace tessera::test::ssm_util;

namespace {

/// Double reference over u = [state; x]; returns out (l * channels) and the new state.
std::vector<double> conv_ref(const tensor<float, 2>& x, const tensor<float, 2>& w, const tensor<float, 1>* bias,
                             tensor<float, 2> state, bool silu_act, std::vector<double>& new_state) {
  const auto [l, ch] = x.extents();
  const index_t K = w.extent(0);
  std::vector<double> u(static_cast<std::size_t>((K - 1 + l) * ch));
  for (index_t r = 0; r < K - 1; ++r)
    for (index_t c = 0; c < ch; ++c) u[std::size_t(r * ch + c)] = state(r, c);
  for (index_t t = 0; t < l; ++t)
    for (index_t c = 0; c < ch; ++c) u[std::size_t((K - 1 + t) * ch + c)] = x(t, c);
  std::vector<double> out(static_cast<std::size_t>(l * ch));
  for (index_t t = 0; t < l; ++t)
    for (index_t c = 0; c < ch; ++c) {
      double acc = bias ? (*bias)(c) : 0.0;
      for (index_t k = 0; k < K; ++k) acc += double(w(k, c)) * u[std::size_t((t + k) * ch + c)];
      out[std::size_t(t * ch + c)] = silu_act ? silu(acc) : acc;
    }
  new_state.assign(u.end() - (K - 1) * ch, u.end());
  return out;
}

}  // namespace

TEST_CASE("causal_conv1d matches a double reference for widths 1..6, with state, bias and SiLU", "[conv1d]") {
  test::rng(101);
  for (index_t K : {1, 2, 3, 4, 5, 6})
    for (index_t ch : {24, 37})
      for (index_t l : {1, 3, 17})
        for (bool use_bias : {false, true})
          for (bool act : {false, true}) {
            const auto x = uniform<2>({l, ch}, -1.f, 1.f);
            const auto w = uniform<2>({K, ch}, -0.5f, 0.5f);
            const auto b = uniform<1>({ch}, -0.3f, 0.3f);
            const auto st0 = uniform<2>({K - 1, ch}, -1.f, 1.f);
            std::vector<double> st_ref;
            const auto ref = conv_ref(x, w, use_bias ? &b : nullptr, st0, act, st_ref);
            std::optional<tensor_view<const float, 1>> bias;
            if (use_bias) bias = b.cview();
            for (int arch = 0; arch < 2; ++arch) {
              auto st = st0;
              tensor<float, 2> out({l, ch});
              if (arch == 0) ssm::causal_conv1d(x.cview(), w.cview(), bias, st.view(), out.view(), {.silu = act}, simd::scalar{});
              else ssm::causal_conv1d(x.cview(), w.cview(), bias, st.view(), out.view(), {.silu = act});
              INFO("K=" << K << " ch=" << ch << " l=" << l << " bias=" << use_bias << " silu=" << act << " arch=" << arch);
              REQUIRE(max_rel_err(out.data(), ref.data(), l * ch) < 1e-6);
              REQUIRE(max_rel_err(st.data(), st_ref.data(), (K - 1) * ch) == 0.0);
            }
          }
}

TEST_CASE("causal_conv1d: prefill(n) then step x k equals prefill(n + k)", "[conv1d]") {
  test::rng(102);
  const index_t ch = 40, K = 4, n = 5, k = 6;
  const auto x = uniform<2>({n + k, ch}, -1.f, 1.f);
  const auto w = uniform<2>({K, ch}, -0.5f, 0.5f);
  const auto b = uniform<1>({ch}, -0.3f, 0.3f);
  tensor<float, 2> st_full({K - 1, ch}), out_full({n + k, ch});
  ssm::causal_conv1d(x.cview(), w.cview(), b.cview(), st_full.view(), out_full.view(), {.silu = true});
  tensor<float, 2> st({K - 1, ch}), out({n + k, ch});
  ssm::causal_conv1d(x.cview().slice(0, 0, n), w.cview(), b.cview(), st.view(), out.view().slice(0, 0, n), {.silu = true});
  for (index_t t = n; t < n + k; ++t)
    ssm::causal_conv1d_step(x.cview()[t], w.cview(), b.cview(), st.view(), out.view()[t], {.silu = true});
  REQUIRE(max_rel_err(out.data(), out_full.data(), out.size()) < 1e-6);
  REQUIRE(max_rel_err(st.data(), st_full.data(), st.size()) == 0.0);
}

TEST_CASE("causal_conv1d reads a column slice of a wider projection (row stride > channels)", "[conv1d]") {
  test::rng(103);
  const index_t l = 9, ch = 33, wide = 80, K = 4;
  const auto proj = uniform<2>({l, wide}, -1.f, 1.f);
  const auto x = proj.cview().slice(1, 20, 20 + ch);
  const auto w = uniform<2>({K, ch}, -0.5f, 0.5f);
  const auto xd = tensor<float, 2>::copy_of(x);
  tensor<float, 2> s1({K - 1, ch}), s2({K - 1, ch}), o1({l, ch}), o2({l, ch});
  ssm::causal_conv1d(x, w.cview(), std::nullopt, s1.view(), o1.view(), {});
  ssm::causal_conv1d(xd.cview(), w.cview(), std::nullopt, s2.view(), o2.view(), {});
  REQUIRE(max_rel_err(o1.data(), o2.data(), o1.size()) == 0.0);
}

TEST_CASE("conv1d_weight_from_torch transposes and causal_conv1d rejects bad shapes", "[conv1d]") {
  test::rng(104);
  const auto wt = uniform<2>({7, 4}, -1.f, 1.f);
  tensor<float, 2> w({4, 7});
  ssm::conv1d_weight_from_torch(wt.cview(), w.view());
  REQUIRE(w(3, 6) == wt(6, 3));
  REQUIRE(w(0, 2) == wt(2, 0));
  const auto x = uniform<2>({5, 7}, -1.f, 1.f);
  tensor<float, 2> st({2, 7}), out({5, 7});
  REQUIRE_THROWS_AS(ssm::causal_conv1d(x.cview(), w.cview(), std::nullopt, st.view(), out.view(), {}), shape_error);
  REQUIRE_THROWS_WITH(ssm::causal_conv1d(x.cview(), w.cview(), std::nullopt, st.view(), out.view(), {}),
                      Catch::Contains("conv_state"));
  tensor<float, 2> st3({3, 7}), out_bad({4, 7});
  REQUIRE_THROWS_WITH(ssm::causal_conv1d(x.cview(), w.cview(), std::nullopt, st3.view(), out_bad.view(), {}),
                      Catch::Contains("out"));
}
