#include "ssm_test_util.hpp"

#include <initializer_list>
#include <limits>

#include <tessera/ssm/selective_scan.hpp>
#include <tessera/ssm/ssm_state.hpp>

using namespace tessera;
using namespace tessera::test::ssm_util;

namespace {

struct mamba1_case {
  index_t l, d_inner, d_state;
  tensor<float, 2> x, dt, B, C, z, A, h0;
  tensor<float, 1> D, dt_bias;
};

/// Realistic ranges: Δ = softplus(dt + bias) in ~[0.02, 0.3] and |A| in [0.006, 2.2], so the
/// per-step decay exp(Δ A) spans 0.5 .. 0.9999.
mamba1_case make_case(index_t l, index_t d_inner, index_t d_state) {
  mamba1_case c{l, d_inner, d_state, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  c.x = uniform<2>({l, d_inner}, -1.f, 1.f);
  c.dt = uniform<2>({l, d_inner}, -2.5f, -0.5f);
  c.dt_bias = uniform<1>({d_inner}, -1.5f, -0.5f);
  c.B = uniform<2>({l, d_state}, -1.f, 1.f);
  c.C = uniform<2>({l, d_state}, -1.f, 1.f);
  c.z = uniform<2>({l, d_inner}, -2.f, 2.f);
  auto A_log = tensor<float, 2>({d_inner, d_state});
  const auto mag = log_uniform<2>({d_inner, d_state}, 0.006f, 2.2f);
  for (index_t i = 0; i < A_log.size(); ++i) A_log.data()[i] = std::log(mag.data()[i]);
  c.A = tensor<float, 2>({d_inner, d_state});
  ssm::a_from_log(A_log.cview(), c.A.view());
  c.D = uniform<1>({d_inner}, 0.5f, 1.5f);
  c.h0 = uniform<2>({d_inner, d_state}, -1.f, 1.f);
  return c;
}

/// transformers MambaMixer.slow_forward's loop, in double.
std::vector<double> scan_ref(const mamba1_case& c, bool gate, std::vector<double>& h) {
  h.assign(c.h0.begin(), c.h0.end());
  std::vector<double> y(static_cast<std::size_t>(c.l * c.d_inner));
  for (index_t t = 0; t < c.l; ++t)
    for (index_t ch = 0; ch < c.d_inner; ++ch) {
      const double delta = softplus(double(c.dt(t, ch)) + c.dt_bias(ch));
      double acc = 0;
      for (index_t n = 0; n < c.d_state; ++n) {
        double& hn = h[std::size_t(ch * c.d_state + n)];
        hn = std::exp(delta * c.A(ch, n)) * hn + delta * c.B(t, n) * c.x(t, ch);
        acc += hn * c.C(t, n);
      }
      acc += c.D(ch) * double(c.x(t, ch));
      if (gate) acc *= silu(c.z(t, ch));
      y[std::size_t(t * c.d_inner + ch)] = acc;
    }
  return y;
}

}  // namespace

TEST_CASE("selective_scan matches the double recurrence (scalar and vector, odd sizes)", "[selective_scan]") {
  test::rng(201);
  for (index_t d_inner : {20, 24, 48, 96})  // 20: channels past the last full vector
    for (index_t d_state : {8, 16, 20})
      for (index_t l : {1, 3, 17, 100})
        for (bool gate : {false, true}) {
          const auto c = make_case(l, d_inner, d_state);
          std::vector<double> h_ref;
          const auto y_ref = scan_ref(c, gate, h_ref);
          const ssm::selective_scan_weights w{c.A.cview(), c.D.cview(), c.dt_bias.cview()};
          std::optional<tensor_view<const float, 2>> z;
          if (gate) z = c.z.cview();
          for (int arch = 0; arch < 2; ++arch) {
            auto h = c.h0;
            tensor<float, 2> y({l, d_inner});
            if (arch == 0)
              ssm::selective_scan(c.x.cview(), c.dt.cview(), c.B.cview(), c.C.cview(), z, w, h.view(), y.view(), {}, simd::scalar{});
            else
              ssm::selective_scan(c.x.cview(), c.dt.cview(), c.B.cview(), c.C.cview(), z, w, h.view(), y.view(), {});
            INFO("d_inner=" << d_inner << " d_state=" << d_state << " l=" << l << " gate=" << gate << " arch=" << arch);
            REQUIRE(max_rel_err(y.data(), y_ref.data(), y.size()) < 2e-5);
            REQUIRE(max_rel_err(h.data(), h_ref.data(), h.size()) < 2e-5);
          }
        }
}

TEST_CASE("selective_scan: prefill(n) then selective_state_update x k equals prefill(n + k)", "[selective_scan]") {
  test::rng(202);
  const index_t n = 13, k = 7, d_inner = 48, d_state = 16;
  const auto c = make_case(n + k, d_inner, d_state);
  const ssm::selective_scan_weights w{c.A.cview(), c.D.cview(), c.dt_bias.cview()};
  auto h_full = c.h0;
  tensor<float, 2> y_full({n + k, d_inner});
  ssm::selective_scan(c.x.cview(), c.dt.cview(), c.B.cview(), c.C.cview(), c.z.cview(), w, h_full.view(), y_full.view(), {});
  for (int arch = 0; arch < 2; ++arch) {
    auto h = c.h0;
    tensor<float, 2> y({n + k, d_inner});
    auto rows = [&](const tensor<float, 2>& t, index_t a, index_t b) { return t.cview().slice(0, a, b); };
    ssm::selective_scan(rows(c.x, 0, n), rows(c.dt, 0, n), rows(c.B, 0, n), rows(c.C, 0, n), rows(c.z, 0, n), w, h.view(),
                        y.view().slice(0, 0, n), {});
    for (index_t t = n; t < n + k; ++t) {
      if (arch == 0)
        ssm::selective_state_update(c.x.cview()[t], c.dt.cview()[t], c.B.cview()[t], c.C.cview()[t], c.z.cview()[t], w,
                                    h.view(), y.view()[t], {}, simd::scalar{});
      else
        ssm::selective_state_update(c.x.cview()[t], c.dt.cview()[t], c.B.cview()[t], c.C.cview()[t], c.z.cview()[t], w,
                                    h.view(), y.view()[t], {});
    }
    REQUIRE(max_rel_err(y.data(), y_full.data(), y.size()) < 1e-5);
    REQUIRE(max_rel_err(h.data(), h_full.data(), h.size()) < 1e-5);
  }
}

TEST_CASE("selective_scan: fused dt_bias + softplus equals a precomputed Δ", "[selective_scan]") {
  test::rng(203);
  const auto c = make_case(17, 24, 16);
  tensor<float, 2> delta({17, 24});
  for (index_t t = 0; t < 17; ++t)
    for (index_t ch = 0; ch < 24; ++ch) delta(t, ch) = static_cast<float>(softplus(double(c.dt(t, ch)) + c.dt_bias(ch)));
  auto h1 = c.h0, h2 = c.h0;
  tensor<float, 2> y1({17, 24}), y2({17, 24});
  ssm::selective_scan(c.x.cview(), c.dt.cview(), c.B.cview(), c.C.cview(), std::nullopt,
                      {c.A.cview(), c.D.cview(), c.dt_bias.cview()}, h1.view(), y1.view(), {});
  ssm::selective_scan(c.x.cview(), delta.cview(), c.B.cview(), c.C.cview(), std::nullopt,
                      {c.A.cview(), c.D.cview(), std::nullopt}, h2.view(), y2.view(), {.dt_softplus = false});
  REQUIRE(max_rel_err(y1.data(), y2.data(), y1.size()) < 1e-5);
}

TEST_CASE("selective_scan rejects wrong state shapes and a_from_log rejects non-finite A_log", "[selective_scan]") {
  test::rng(204);
  const auto c = make_case(5, 24, 8);
  const ssm::selective_scan_weights w{c.A.cview(), c.D.cview(), std::nullopt};
  tensor<float, 2> bad_h({24, 16}), y({5, 24});
  REQUIRE_THROWS_AS(ssm::selective_scan(c.x.cview(), c.dt.cview(), c.B.cview(), c.C.cview(), std::nullopt, w,
                                        bad_h.view(), y.view(), {}),
                    shape_error);
  REQUIRE_THROWS_WITH(ssm::selective_scan(c.x.cview(), c.dt.cview(), c.B.cview(), c.C.cview(), std::nullopt, w,
                                          bad_h.view(), y.view(), {}),
                      Catch::Contains("ssm_state") && Catch::Contains("(24, 16)"));
  tensor<float, 2> A_log({2, 3}, 0.5f), A({2, 3});
  A_log(1, 2) = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_THROWS_AS(ssm::a_from_log(A_log.cview(), A.view()), config_error);
  REQUIRE_THROWS_WITH(ssm::a_from_log(A_log.cview(), A.view()), Catch::Contains("A_log[5]") && Catch::Contains("nan"));
  A_log(1, 2) = std::numeric_limits<float>::infinity();
  REQUIRE_THROWS_AS(ssm::a_from_log(A_log.cview(), A.view()), config_error);
}

namespace {
/// A vector exp of non-positive arguments (exp_neg, exp2_neg) against `want` in double: relative
/// error within 4e-7 over [lo, 0], exactly 0 below lo, exactly 1 above 0. They are only used by
/// the vector kernels; the scalar build has nothing to check.
template <class Arch, class F, class Ref>
void check_vector_exp(F f, Ref want, float lo, std::initializer_list<float> extra) {
  if constexpr (simd::is_scalar_v<Arch>) {
    SUCCEED("scalar build: no vector exp");
  } else {
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t W = batch::size;
    std::vector<float> xs;
    for (int i = 0; i <= 200000; ++i) xs.push_back(lo * static_cast<float>(i) / 200000.f);
    xs.insert(xs.end(), extra);
    while (xs.size() % W) xs.push_back(-1.f);
    double worst = 0;
    for (std::size_t i = 0; i < xs.size(); i += W) {
      alignas(64) float out[W];
      f(batch::load_unaligned(xs.data() + i)).store_aligned(out);
      for (index_t j = 0; j < W; ++j) {
        const double x = xs[i + j];
        if (x > 0) {
          REQUIRE(out[j] == 1.f);
        } else if (x < double(lo)) {
          REQUIRE(out[j] == 0.f);
        } else {
          worst = std::max(worst, std::abs(out[j] - want(x)) / want(x));
        }
      }
    }
    CAPTURE(worst);
    CHECK(worst < 4e-7);
  }
}
}  // namespace

TEST_CASE("exp_neg against std::exp in double: relative error within 4e-7 over [-87.3, 0], 0 below, 1 above",
          "[ssm][exp]") {
  using A = simd::default_arch;
  check_vector_exp<A>([](auto x) { return ssm::detail::exp_neg<A>(x); }, [](double x) { return std::exp(x); }, -87.3f,
                      {-87.29f, -50.f, -1e-30f, -0.f, 0.f, -0.3465736f, 0.3465736f, 1.f, 30.f, -87.31f, -90.f, -1e4f});
}

TEST_CASE("exp2_neg against std::exp2 in double: relative error within 4e-7 over [-125, 0], 0 below, 1 above",
          "[ssm][exp]") {
  using A = simd::default_arch;
  check_vector_exp<A>([](auto t) { return ssm::detail::exp2_neg<A>(t); }, [](double t) { return std::exp2(t); }, -125.f,
                      {-124.99f, -60.5f, -0.5f, -1.5f, -1e-30f, -0.f, 0.f, 0.5f, 1.f, 30.f, -125.01f, -130.f, -1e4f});
}

namespace {
/// The vector softplus and silu (division-free) against the definitions in double, over the
/// ranges Δ and z take and past torch's softplus threshold of 20.
template <class Arch>
void check_softplus_silu() {
  if constexpr (simd::is_scalar_v<Arch>) {
    SUCCEED("scalar build: no vector softplus / silu");
  } else {
    using batch = xsimd::batch<float, Arch>;
    constexpr index_t W = batch::size;
    std::vector<float> xs;
    for (int i = 0; i <= 200000; ++i) xs.push_back(-100.f + 130.f * static_cast<float>(i) / 200000.f);
    for (float x : {0.f, -0.f, 1e-30f, -1e-30f, 1e-7f, -1e-7f, 19.99f, 20.f, 20.01f, 88.f, -88.f, -1e4f, 1e4f})
      xs.push_back(x);
    while (xs.size() % W) xs.push_back(0.5f);
    double worst_softplus = 0, worst_silu = 0;
    for (std::size_t i = 0; i < xs.size(); i += W) {
      alignas(64) float sp[W], si[W];
      const batch x = batch::load_unaligned(xs.data() + i);
      ssm::detail::softplus<Arch>(x).store_aligned(sp);
      ssm::detail::silu<Arch>(x).store_aligned(si);
      for (index_t j = 0; j < W; ++j) {
        const double v = xs[i + j];
        const double want_sp = v > 20 ? v : std::log1p(std::exp(v));
        const double want_si = v / (1 + std::exp(-v));
        // relative errors away from float's underflow (below 1e-30 the results may flush to 0)
        if (want_sp > 1e-30) worst_softplus = std::max(worst_softplus, std::abs(sp[j] - want_sp) / want_sp);
        else REQUIRE(std::abs(sp[j] - want_sp) < 1e-30);
        if (std::abs(want_si) > 1e-30) worst_silu = std::max(worst_silu, std::abs(si[j] - want_si) / std::abs(want_si));
        else REQUIRE(std::abs(si[j] - want_si) < 1e-30);
      }
    }
    CAPTURE(worst_softplus, worst_silu);
    CHECK(worst_softplus < 1e-6);
    CHECK(worst_silu < 1e-6);
  }
}
}  // namespace

TEST_CASE("vector softplus and silu against their definitions in double: relative error within 1e-6 over [-100, 30]",
          "[ssm][exp]") {
  check_softplus_silu<simd::default_arch>();
}
