#include "ssm_test_util.hpp"

#include <complex>

#include <tessera/ssm/s4d.hpp>
#include <tessera/ssm/ssm_state.hpp>

using namespace tessera;
using namespace tessera::test::ssm_util;
using cd = std::complex<double>;

namespace {

struct s4d_case {
  index_t d_model, n_half;
  tensor<float, 1> log_dt, D;
  tensor<float, 2> log_A_real, A_imag;
  tensor<float, 3> C;
};

/// s4d.py's initialization: dt log-uniform in [0.001, 0.1], A = -0.5 + i π n (randomized a bit).
s4d_case make_case(index_t d_model, index_t n_half) {
  s4d_case c{d_model, n_half, {}, {}, {}, {}, {}};
  c.log_dt = uniform<1>({d_model}, std::log(0.001f), std::log(0.1f));
  c.D = uniform<1>({d_model}, -1.f, 1.f);
  c.log_A_real = uniform<2>({d_model, n_half}, std::log(0.3f), std::log(0.7f));
  c.A_imag = tensor<float, 2>({d_model, n_half});
  for (index_t h = 0; h < d_model; ++h)
    for (index_t n = 0; n < n_half; ++n) c.A_imag(h, n) = 3.14159265f * float(n) * (0.9f + 0.2f * float(h % 3) / 3.f);
  c.C = uniform<3>({d_model, n_half, 2}, -0.7f, 0.7f);
  return c;
}

/// The recurrence in double from the raw parameters (ZOH, B = 1), with GELU.
std::vector<double> ref(const s4d_case& c, const tensor<float, 2>& u, std::vector<cd>& x) {
  const index_t l = u.extent(0);
  std::vector<double> y(std::size_t(l * c.d_model));
  for (index_t h = 0; h < c.d_model; ++h) {
    const double dt = std::exp(double(c.log_dt(h)));
    for (index_t t = 0; t < l; ++t) {
      double acc = 0;
      for (index_t n = 0; n < c.n_half; ++n) {
        const cd A(-std::exp(double(c.log_A_real(h, n))), c.A_imag(h, n));
        const cd Cb = cd(c.C(h, n, 0), c.C(h, n, 1)) * (std::exp(A * dt) - 1.0) / A;
        cd& s = x[std::size_t(h * c.n_half + n)];
        s = std::exp(A * dt) * s + double(u(t, h));
        acc += 2 * (Cb * s).real();
      }
      const double v = acc + c.D(h) * double(u(t, h));
      y[std::size_t(t * c.d_model + h)] = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    }
  }
  return y;
}

}  // namespace

TEST_CASE("s4d: kernel (Vandermonde) form, recurrent scan and step match a double recurrence", "[s4d]") {
  test::rng(501);
  for (index_t d_model : {5, 24})
    for (index_t n_half : {4, 8})
      for (index_t l : {1, 3, 17, 100}) {
        const auto c = make_case(d_model, n_half);
        const auto disc = ssm::s4d_discretize(c.log_dt.cview(), c.log_A_real.cview(), c.A_imag.cview(), c.C.cview());
        const auto u = uniform<2>({l, d_model}, -1.f, 1.f);
        auto st0 = ssm::make_s4d_state(d_model, n_half);
        for (auto& v : st0.x) v = static_cast<float>(test::random_vector(1, -0.5f, 0.5f)[0]);
        std::vector<cd> x_ref(std::size_t(d_model * n_half));
        for (index_t h = 0; h < d_model; ++h)
          for (index_t n = 0; n < n_half; ++n) x_ref[std::size_t(h * n_half + n)] = cd(st0.x(h, 0, n), st0.x(h, 1, n));
        const auto y_ref = ref(c, u, x_ref);
        std::vector<double> st_ref;
        for (index_t h = 0; h < d_model; ++h) {
          for (index_t n = 0; n < n_half; ++n) st_ref.push_back(x_ref[std::size_t(h * n_half + n)].real());
          for (index_t n = 0; n < n_half; ++n) st_ref.push_back(x_ref[std::size_t(h * n_half + n)].imag());
        }
        workspace ws(ssm::s4d_prefill_workspace_bytes(d_model, l));
        for (int form = 0; form < 4; ++form) {
          auto st = st0;
          tensor<float, 2> y({l, d_model});
          if (form == 0) ssm::s4d_prefill(u.cview(), disc, c.D.cview(), st.x.view(), y.view(), {}, ws, simd::scalar{});
          if (form == 1) ssm::s4d_prefill(u.cview(), disc, c.D.cview(), st.x.view(), y.view(), {}, ws);
          if (form == 2) ssm::s4d_scan(u.cview(), disc, c.D.cview(), st.x.view(), y.view(), {});
          if (form == 3)
            for (index_t t = 0; t < l; ++t) ssm::s4d_step(u.cview()[t], disc, c.D.cview(), st.x.view(), y.view()[t], {});
          INFO("d_model=" << d_model << " n_half=" << n_half << " l=" << l << " form=" << form);
          REQUIRE(max_rel_err(y.data(), y_ref.data(), y.size()) < 2e-5);
          REQUIRE(max_rel_err(st.x.data(), st_ref.data(), st.x.size()) < 2e-5);
        }
      }
}

TEST_CASE("s4d: prefill(n) then step x k equals prefill(n + k), kernel and glu", "[s4d]") {
  test::rng(502);
  const index_t d_model = 6, n_half = 8, n = 11, k = 5;
  const auto c = make_case(d_model, n_half);
  const auto disc = ssm::s4d_discretize(c.log_dt.cview(), c.log_A_real.cview(), c.A_imag.cview(), c.C.cview());
  const auto u = uniform<2>({n + k, d_model}, -1.f, 1.f);
  workspace ws(ssm::s4d_prefill_workspace_bytes(d_model, n + k));
  auto s_full = ssm::make_s4d_state(d_model, n_half), s = ssm::make_s4d_state(d_model, n_half);
  tensor<float, 2> y_full({n + k, d_model}), y({n + k, d_model});
  ssm::s4d_prefill(u.cview(), disc, c.D.cview(), s_full.x.view(), y_full.view(), {}, ws);
  ssm::s4d_prefill(u.cview().slice(0, 0, n), disc, c.D.cview(), s.x.view(), y.view().slice(0, 0, n), {}, ws);
  for (index_t t = n; t < n + k; ++t) ssm::s4d_step(u.cview()[t], disc, c.D.cview(), s.x.view(), y.view()[t], {});
  REQUIRE(max_rel_err(y.data(), y_full.data(), y.size()) < 1e-5);
  REQUIRE(max_rel_err(s.x.data(), s_full.x.data(), s.x.size()) < 1e-5);

  // K[h, 0] = 2 Re Σ C̄ (the impulse response at lag 0)
  tensor<float, 2> K({d_model, 4});
  ssm::s4d_kernel(disc, K.view());
  double k0 = 0;
  for (index_t m = 0; m < n_half; ++m) k0 += 2.0 * disc.C_re(2, m);
  REQUIRE(std::abs(K(2, 0) - k0) < 1e-5 * (1 + std::abs(k0)));

  const auto g = uniform<2>({3, 8}, -2.f, 2.f);
  tensor<float, 2> o({3, 4});
  ssm::glu(g.cview(), o.view());
  REQUIRE(std::abs(o(1, 2) - g(1, 2) / (1 + std::exp(-g(1, 6)))) < 1e-6);
  auto bad = tensor<float, 3>({d_model, 2, n_half + 1});
  REQUIRE_THROWS_AS(ssm::s4d_scan(u.cview(), disc, c.D.cview(), bad.view(), y_full.view(), {}), shape_error);
  auto log_dt_bad = c.log_dt;
  log_dt_bad(1) = std::numeric_limits<float>::infinity();
  REQUIRE_THROWS_AS(ssm::s4d_discretize(log_dt_bad.cview(), c.log_A_real.cview(), c.A_imag.cview(), c.C.cview()), config_error);
}
