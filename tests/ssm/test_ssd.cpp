#include "ssm_test_util.hpp"

#include <limits>

#include <tessera/ssm/ssd.hpp>
#include <tessera/ssm/ssm_state.hpp>

using namespace tessera;
using namespace tessera::test::ssm_util;

namespace {

struct ssd_case {
  index_t l, d_inner, head_dim, n_groups, d_state, n_heads;
  tensor<float, 2> x, dt, B, C;
  tensor<float, 1> A, D, dt_bias;
  tensor<float, 3> h0;
  ssm::ssd_params params;
};

ssd_case make_case(index_t l, index_t d_inner, index_t head_dim, index_t n_groups, index_t d_state, float dt_max) {
  ssd_case c;
  c.l = l;
  c.d_inner = d_inner;
  c.head_dim = head_dim;
  c.n_groups = n_groups;
  c.d_state = d_state;
  c.n_heads = d_inner / head_dim;
  c.x = uniform<2>({l, d_inner}, -1.f, 1.f);
  c.dt = uniform<2>({l, c.n_heads}, -2.5f, -0.5f);
  c.dt_bias = uniform<1>({c.n_heads}, -1.5f, -0.5f);
  c.B = uniform<2>({l, n_groups * d_state}, -1.f, 1.f);
  c.C = uniform<2>({l, n_groups * d_state}, -1.f, 1.f);
  const auto mag = log_uniform<1>({c.n_heads}, 0.006f, 2.2f);  // decay exp(Δ A) in 0.5 .. 0.9999
  tensor<float, 1> A_log({c.n_heads});
  for (index_t h = 0; h < c.n_heads; ++h) A_log(h) = std::log(mag(h));
  c.A = tensor<float, 1>({c.n_heads});
  ssm::a_from_log(A_log.cview(), c.A.view());
  c.D = uniform<1>({c.n_heads}, 0.5f, 1.5f);
  c.h0 = uniform<3>({c.n_heads, head_dim, d_state}, -1.f, 1.f);
  c.params = {.head_dim = head_dim, .n_groups = n_groups, .chunk = 16, .dt_min = 0.f, .dt_max = dt_max};
  return c;
}

double delta_of(const ssd_case& c, index_t t, index_t h) {
  const double d = softplus(double(c.dt(t, h)) + c.dt_bias(h));
  return std::min<double>(std::max<double>(d, c.params.dt_min), c.params.dt_max);
}

/// Oracle 1: the recurrence in double (transformers' single-step path, token by token).
std::vector<double> recurrence_ref(const ssd_case& c, std::vector<double>& h) {
  h.assign(c.h0.begin(), c.h0.end());
  const index_t P = c.head_dim, N = c.d_state, hpg = c.n_heads / c.n_groups;
  std::vector<double> y(std::size_t(c.l * c.d_inner));
  for (index_t t = 0; t < c.l; ++t)
    for (index_t hd = 0; hd < c.n_heads; ++hd) {
      const index_t g = hd / hpg;
      const double delta = delta_of(c, t, hd), dA = std::exp(delta * c.A(hd));
      for (index_t p = 0; p < P; ++p) {
        double acc = 0;
        const double xv = c.x(t, hd * P + p);
        for (index_t n = 0; n < N; ++n) {
          double& s = h[std::size_t((hd * P + p) * N + n)];
          s = dA * s + delta * c.B(t, g * N + n) * xv;
          acc += s * c.C(t, g * N + n);
        }
        y[std::size_t(t * c.d_inner + hd * P + p)] = acc + c.D(hd) * xv;
      }
    }
  return y;
}

/// Oracle 2: the SSD "matrix mixer" view: per head, y = M x + D x + (decayed initial state), with
/// the explicit l x l lower-triangular M[t][s] = (C_t · B_s) exp(Σ_{s<k<=t} Δ_k A) Δ_s.
std::vector<double> matrix_ref(const ssd_case& c) {
  const index_t l = c.l, P = c.head_dim, N = c.d_state, hpg = c.n_heads / c.n_groups;
  std::vector<double> y(std::size_t(l * c.d_inner), 0.0);
  std::vector<double> M(static_cast<std::size_t>(l * l)), a(static_cast<std::size_t>(l)), acum(static_cast<std::size_t>(l + 1));
  for (index_t hd = 0; hd < c.n_heads; ++hd) {
    const index_t g = hd / hpg;
    acum[0] = 0;
    for (index_t t = 0; t < l; ++t) {
      a[std::size_t(t)] = delta_of(c, t, hd);
      acum[std::size_t(t + 1)] = acum[std::size_t(t)] + a[std::size_t(t)] * c.A(hd);
    }
    for (index_t t = 0; t < l; ++t)
      for (index_t s = 0; s < l; ++s) {
        double v = 0;
        if (s <= t) {
          double cb = 0;
          for (index_t n = 0; n < N; ++n) cb += double(c.C(t, g * N + n)) * c.B(s, g * N + n);
          v = cb * std::exp(acum[std::size_t(t + 1)] - acum[std::size_t(s + 1)]) * a[std::size_t(s)];
        }
        M[std::size_t(t * l + s)] = v;
      }
    for (index_t t = 0; t < l; ++t)
      for (index_t p = 0; p < P; ++p) {
        double acc = 0;
        for (index_t s = 0; s <= t; ++s) acc += M[std::size_t(t * l + s)] * c.x(s, hd * P + p);
        double off = 0;
        for (index_t n = 0; n < N; ++n) off += double(c.C(t, g * N + n)) * c.h0(hd, p, n);
        acc += std::exp(acum[std::size_t(t + 1)]) * off + c.D(hd) * double(c.x(t, hd * P + p));
        y[std::size_t(t * c.d_inner + hd * P + p)] = acc;
      }
  }
  return y;
}

ssm::ssd_weights weights_of(const ssd_case& c) { return {c.A.cview(), c.D.cview(), c.dt_bias.cview()}; }

}  // namespace

TEST_CASE("ssd: the two double oracles (recurrence and l x l matrix mixer) agree", "[ssd]") {
  test::rng(301);
  const auto c = make_case(100, 64, 16, 2, 8, std::numeric_limits<float>::infinity());
  std::vector<double> h;
  const auto y1 = recurrence_ref(c, h);
  const auto y2 = matrix_ref(c);
  REQUIRE(max_rel_err(y1.data(), y2.data(), index_t(y1.size())) < 1e-12);
}

TEST_CASE("ssd_prefill (chunked) and ssd_scan match both oracles on odd sizes", "[ssd]") {
  test::rng(302);
  struct shape { index_t d_inner, head_dim, n_groups, d_state; };
  const shape shapes[] = {{48, 16, 1, 16}, {48, 24, 2, 8}, {96, 16, 2, 16}, {96, 24, 1, 8}, {24, 24, 1, 16}};
  workspace ws;
  for (const auto& s : shapes)
    for (index_t l : {1, 3, 17, 100, 257}) {
      const float dt_max = l == 100 ? 0.1f : std::numeric_limits<float>::infinity();  // exercise the clamp
      auto c = make_case(l, s.d_inner, s.head_dim, s.n_groups, s.d_state, dt_max);
      std::vector<double> h_ref;
      const auto y_rec = recurrence_ref(c, h_ref);
      const auto y_mat = matrix_ref(c);
      REQUIRE(max_rel_err(y_rec.data(), y_mat.data(), index_t(y_rec.size())) < 1e-10);
      for (index_t chunk : {8, 16, 64}) {
        c.params.chunk = chunk;
        ws.reserve(ssm::ssd_prefill_workspace_bytes(c.n_heads, c.head_dim, c.d_state, c.n_groups, chunk));
        for (int form = 0; form < 4; ++form) {
          if (form >= 2 && chunk != 16) continue;  // the scans do not depend on the chunk
          auto h = c.h0;
          tensor<float, 2> y({l, c.d_inner});
          switch (form) {
            case 0: ssm::ssd_prefill(c.x.cview(), c.dt.cview(), c.B.cview(), c.C.cview(), weights_of(c), h.view(), y.view(), c.params, ws, simd::scalar{}); break;
            case 1: ssm::ssd_prefill(c.x.cview(), c.dt.cview(), c.B.cview(), c.C.cview(), weights_of(c), h.view(), y.view(), c.params, ws); break;
            case 2: ssm::ssd_scan(c.x.cview(), c.dt.cview(), c.B.cview(), c.C.cview(), weights_of(c), h.view(), y.view(), c.params, simd::scalar{}); break;
            default: ssm::ssd_scan(c.x.cview(), c.dt.cview(), c.B.cview(), c.C.cview(), weights_of(c), h.view(), y.view(), c.params); break;
          }
          INFO("d_inner=" << s.d_inner << " head_dim=" << s.head_dim << " n_groups=" << s.n_groups
                          << " d_state=" << s.d_state << " l=" << l << " chunk=" << chunk << " form=" << form);
          REQUIRE(max_rel_err(y.data(), y_mat.data(), y.size()) < 3e-5);
          REQUIRE(max_rel_err(y.data(), y_rec.data(), y.size()) < 3e-5);
          REQUIRE(max_rel_err(h.data(), h_ref.data(), h.size()) < 3e-5);
        }
      }
    }
  REQUIRE(ws.used() == 0);
}

TEST_CASE("ssd: prefill(n) then step x k, and prefill(n) then prefill(k), equal prefill(n + k)", "[ssd]") {
  test::rng(303);
  const index_t n = 37, k = 9;
  auto c = make_case(n + k, 96, 24, 2, 16, std::numeric_limits<float>::infinity());
  c.params.chunk = 16;
  workspace ws(ssm::ssd_prefill_workspace_bytes(c.n_heads, c.head_dim, c.d_state, c.n_groups, 16));
  auto h_full = c.h0;
  tensor<float, 2> y_full({n + k, c.d_inner});
  ssm::ssd_prefill(c.x.cview(), c.dt.cview(), c.B.cview(), c.C.cview(), weights_of(c), h_full.view(), y_full.view(), c.params, ws);
  auto rows = [](const tensor<float, 2>& t, index_t a, index_t b) { return t.cview().slice(0, a, b); };
  for (int mode = 0; mode < 3; ++mode) {
    auto h = c.h0;
    tensor<float, 2> y({n + k, c.d_inner});
    ssm::ssd_prefill(rows(c.x, 0, n), rows(c.dt, 0, n), rows(c.B, 0, n), rows(c.C, 0, n), weights_of(c), h.view(),
                     y.view().slice(0, 0, n), c.params, ws);
    if (mode == 2) {
      ssm::ssd_prefill(rows(c.x, n, n + k), rows(c.dt, n, n + k), rows(c.B, n, n + k), rows(c.C, n, n + k), weights_of(c),
                       h.view(), y.view().slice(0, n, n + k), c.params, ws);
    } else {
      for (index_t t = n; t < n + k; ++t) {
        if (mode == 0)
          ssm::ssd_step(c.x.cview()[t], c.dt.cview()[t], c.B.cview()[t], c.C.cview()[t], weights_of(c), h.view(), y.view()[t], c.params, simd::scalar{});
        else
          ssm::ssd_step(c.x.cview()[t], c.dt.cview()[t], c.B.cview()[t], c.C.cview()[t], weights_of(c), h.view(), y.view()[t], c.params);
      }
    }
    INFO("mode=" << mode);
    REQUIRE(max_rel_err(y.data(), y_full.data(), y.size()) < 2e-5);
    REQUIRE(max_rel_err(h.data(), h_full.data(), h.size()) < 2e-5);
  }
}

TEST_CASE("ssd rejects bad configurations and shapes, naming the value", "[ssd]") {
  test::rng(304);
  auto c = make_case(5, 48, 16, 1, 8, std::numeric_limits<float>::infinity());
  workspace ws(1 << 20);
  tensor<float, 2> y({5, 48});
  auto run = [&](const ssm::ssd_params& p, tensor_view<float, 3> h) {
    ssm::ssd_prefill(c.x.cview(), c.dt.cview(), c.B.cview(), c.C.cview(), weights_of(c), h, y.view(), p, ws);
  };
  auto h = c.h0;
  auto p = c.params;
  p.head_dim = 20;  // 48 % 20 != 0
  REQUIRE_THROWS_AS(run(p, h.view()), config_error);
  REQUIRE_THROWS_WITH(run(p, h.view()), Catch::Contains("d_inner 48") && Catch::Contains("head_dim 20"));
  p = c.params;
  p.n_groups = 2;  // 3 heads, 2 groups
  REQUIRE_THROWS_AS(run(p, h.view()), config_error);
  REQUIRE_THROWS_WITH(run(p, h.view()), Catch::Contains("n_heads 3") && Catch::Contains("n_groups 2"));
  tensor<float, 3> bad({3, 16, 16});
  REQUIRE_THROWS_AS(run(c.params, bad.view()), shape_error);
  REQUIRE_THROWS_WITH(run(c.params, bad.view()), Catch::Contains("ssm_state") && Catch::Contains("(3, 16, 16)"));
  REQUIRE_THROWS_AS(ssm::make_mamba2_state(3, 16, 8, 2, 4), config_error);
  const auto st = ssm::make_mamba2_state(24, 64, 128, 1, 4);
  REQUIRE(st.conv.extents() == extents<2>{3, 24 * 64 + 2 * 128});
  REQUIRE(st.ssm.extents() == extents<3>{24, 64, 128});
}
