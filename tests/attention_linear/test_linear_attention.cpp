// Linear attention (feature map, retention, GLA, delta rule, gated delta rule): every form against
// the double-precision recurrence and the explicitly masked quadratic form, forms against each other,
// default arch against simd::scalar, prefill/step equivalence, bad input.
#include <catch2/catch.hpp>

#include <tessera/attention/delta_rule.hpp>
#include <tessera/attention/gated_linear_attention.hpp>
#include <tessera/attention/linear_attention.hpp>
#include <tessera/attention/retention.hpp>

#include "attention_linear/linear_reference.hpp"

using namespace tessera;
using namespace tessera::attention;
using namespace tessera::test;

namespace {

enum class form { parallel, recurrent, chunked };

struct la_result {
  tensor<float, 3> out, s;
  tensor<float, 2> z;
};

/// Runs one kernel on tokens [t0, t1) of the inputs, continuing from (s, z).
template <class Arch>
void run_range(const la_case& c, const la_inputs& in, form f, index_t chunk, index_t t0, index_t t1, la_result& r,
               workspace& ws, Arch arch) {
  auto q = in.q.cview().slice(0, t0, t1), k = in.k.cview().slice(0, t0, t1), v = in.v.cview().slice(0, t0, t1);
  auto gv = in.gv.cview().slice(0, t0, t1);
  auto gs = in.gs.cview().slice(0, t0, t1), beta = in.beta.cview().slice(0, t0, t1);
  auto out = r.out.view().slice(0, t0, t1);
  auto scale = c.scale != 0.f ? std::optional<float>(c.scale) : std::nullopt;
  switch (c.kind) {
    case la_kind::feature: {
      linear_attention_params p{.phi = c.phi == 0 ? feature_map::identity
                                       : c.phi == 1 ? feature_map::elu_plus_one : feature_map::relu,
                                .normalize = c.normalize, .scale = scale, .chunk_size = chunk};
      linear_attention_state st{r.s.view(), r.z.view()};
      if (f == form::parallel) linear_attention_parallel(q, k, v, out, st, p, ws, arch);
      if (f == form::recurrent) linear_attention_recurrent(q, k, v, out, st, p, ws, arch);
      if (f == form::chunked) linear_attention_chunked(q, k, v, out, st, p, ws, arch);
      break;
    }
    case la_kind::retention: {
      retention_params p{.scale = scale, .chunk_size = chunk};
      if (f == form::parallel) retention_parallel(q, k, v, in.gamma.cview(), out, r.s.view(), p, ws, arch);
      if (f == form::recurrent) retention_recurrent(q, k, v, in.gamma.cview(), out, r.s.view(), p, ws, arch);
      if (f == form::chunked) retention_chunked(q, k, v, in.gamma.cview(), out, r.s.view(), p, ws, arch);
      break;
    }
    case la_kind::gla: {
      gla_params p{.scale = scale, .chunk_size = chunk};
      if (f == form::parallel) gla_parallel(q, k, v, gv, out, r.s.view(), p, ws, arch);
      if (f == form::recurrent) gla_recurrent(q, k, v, gv, out, r.s.view(), p, ws, arch);
      if (f == form::chunked) gla_chunked(q, k, v, gv, out, r.s.view(), p, ws, arch);
      break;
    }
    case la_kind::delta: {
      delta_rule_params p{.l2norm_qk = c.l2norm, .scale = scale, .chunk_size = chunk};
      if (f == form::parallel) delta_rule_parallel(q, k, v, beta, out, r.s.view(), p, ws, arch);
      if (f == form::recurrent) delta_rule_recurrent(q, k, v, beta, out, r.s.view(), p, ws, arch);
      if (f == form::chunked) delta_rule_chunked(q, k, v, beta, out, r.s.view(), p, ws, arch);
      break;
    }
    case la_kind::gated_delta: {
      delta_rule_params p{.l2norm_qk = c.l2norm, .scale = scale, .chunk_size = chunk};
      if (f == form::parallel) gated_delta_rule_parallel(q, k, v, gs, beta, out, r.s.view(), p, ws, arch);
      if (f == form::recurrent) gated_delta_rule_recurrent(q, k, v, gs, beta, out, r.s.view(), p, ws, arch);
      if (f == form::chunked) gated_delta_rule_chunked(q, k, v, gs, beta, out, r.s.view(), p, ws, arch);
      break;
    }
  }
}

template <class Arch>
la_result run(const la_case& c, const la_inputs& in, form f, index_t chunk, Arch arch) {
  la_result r{tensor<float, 3>({c.l, c.n_heads, c.d_v}), in.s0, in.z0};
  const index_t rows = f == form::parallel ? c.l : f == form::recurrent ? 1 : std::min(chunk, c.l);
  workspace ws(linear_attention_workspace_bytes(rows, c.n_heads, c.d_k, c.d_v));
  run_range(c, in, f, chunk, 0, c.l, r, ws, arch);
  return r;
}

double err(const tensor<float, 3>& a, const std::vector<double>& b) { return max_rel_err(a.data(), b.data(), a.size()); }
double err(const tensor<float, 3>& a, const tensor<float, 3>& b) { return max_rel_err(a.data(), b.data(), a.size()); }

const char* kind_name(la_kind k) {
  switch (k) {
    case la_kind::feature: return "feature";
    case la_kind::retention: return "retention";
    case la_kind::gla: return "gla";
    case la_kind::delta: return "delta";
    case la_kind::gated_delta: return "gated_delta";
  }
  return "?";
}

/// Every form and arch of one case against the double references.
void check_case(const la_case& c, std::initializer_list<index_t> chunks, double tol = 2e-4) {
  const la_inputs in = la_inputs::make(c);
  const la_ref_result ref = la_reference_recurrent(c, in);
  const bool additive = c.kind != la_kind::delta && c.kind != la_kind::gated_delta;
  INFO(kind_name(c.kind) << " l=" << c.l << " heads=" << c.n_qk_heads << "/" << c.n_heads << " d_k=" << c.d_k
                         << " d_v=" << c.d_v << " phi=" << c.phi << " normalize=" << c.normalize);
  if (additive) {
    const auto quad = la_reference_quadratic(c, in);
    REQUIRE(max_rel_err(quad.data(), ref.out.data(), index_t(quad.size())) < 1e-10);
  }
  auto check = [&](const la_result& r, const char* what) {
    INFO(what);
    CHECK(err(r.out, ref.out) < tol);
    CHECK(max_rel_err(r.s.data(), ref.s.data(), r.s.size()) < tol);
    if (c.normalize) CHECK(max_rel_err(r.z.data(), ref.z.data(), r.z.size()) < tol);
  };
  const la_result par = run(c, in, form::parallel, 0, simd::default_arch{});
  check(par, "parallel");
  check(run(c, in, form::parallel, 0, simd::scalar{}), "parallel scalar");
  const la_result rec = run(c, in, form::recurrent, 0, simd::default_arch{});
  check(rec, "recurrent");
  check(run(c, in, form::recurrent, 0, simd::scalar{}), "recurrent scalar");
  CHECK(err(rec.out, par.out) < tol);
  for (index_t chunk : chunks) {
    INFO("chunk " << chunk);
    const la_result ch = run(c, in, form::chunked, chunk, simd::default_arch{});
    check(ch, "chunked");
    check(run(c, in, form::chunked, chunk, simd::scalar{}), "chunked scalar");
    CHECK(err(ch.out, par.out) < tol);
  }
}

}  // namespace

TEST_CASE("feature-map linear attention: all forms match the masked double reference", "[linear_attention]") {
  rng(101);
  for (index_t l : {1, 5, 17, 63, 200})
    for (int phi : {0, 1, 2}) {
      la_case c{.kind = la_kind::feature, .l = l, .n_qk_heads = 2, .n_heads = 2, .d_k = l % 2 ? 8 : 24, .d_v = 24,
                .phi = phi};
      check_case(c, {5, 16, 64});
    }
  for (index_t d : {8, 24, 64}) {
    la_case c{.kind = la_kind::feature, .l = 63, .n_qk_heads = 1, .n_heads = 3, .d_k = d, .d_v = d, .phi = 1,
              .normalize = true};
    check_case(c, {7, 21});
  }
}

TEST_CASE("retention: all forms match the masked double reference", "[retention]") {
  rng(102);
  for (index_t l : {1, 5, 17, 63, 200}) {
    la_case c{.kind = la_kind::retention, .l = l, .n_qk_heads = 3, .n_heads = 3, .d_k = 24, .d_v = 8};
    check_case(c, {4, 16, 64});
  }
  la_case c{.kind = la_kind::retention, .l = 70, .n_qk_heads = 2, .n_heads = 4, .d_k = 64, .d_v = 64, .scale = 0.3f};
  check_case(c, {32});
  // RetNet's decays
  tensor<float, 1> gamma({4});
  retnet_gamma(gamma.view());
  REQUIRE(gamma(0) == Approx(1.0 - 1.0 / 32));
  REQUIRE(gamma(3) == Approx(1.0 - 1.0 / 256));
}

TEST_CASE("gated linear attention: all forms match the masked double reference", "[gla]") {
  rng(103);
  for (index_t l : {1, 5, 17, 63, 200}) {
    la_case c{.kind = la_kind::gla, .l = l, .n_qk_heads = 2, .n_heads = 2, .d_k = l == 63 ? 64 : 24, .d_v = 8};
    check_case(c, {5, 16, 48});
  }
  // strong gates (up to e^-8 per step): the chunked form must not overflow
  la_case strong{.kind = la_kind::gla, .l = 130, .n_qk_heads = 1, .n_heads = 2, .d_k = 8, .d_v = 24,
                 .gate_lo = -8.f, .gate_hi = -0.001f};
  check_case(strong, {64, 33}, 5e-4);
}

TEST_CASE("delta rule: parallel, recurrent and chunked (WY/UT) forms match the recurrence", "[delta_rule]") {
  rng(104);
  for (index_t l : {1, 5, 17, 63, 200})
    for (bool l2 : {false, true}) {
      la_case c{.kind = la_kind::delta, .l = l, .n_qk_heads = 2, .n_heads = 2, .d_k = l % 2 ? 24 : 8, .d_v = 24,
                .l2norm = l2};
      check_case(c, {5, 16, 64}, 5e-4);
    }
}

TEST_CASE("gated delta rule (Qwen3-Next): all forms match the recurrence, GQA heads", "[gated_delta_rule]") {
  rng(105);
  for (index_t l : {1, 5, 17, 63, 200}) {
    la_case c{.kind = la_kind::gated_delta, .l = l, .n_qk_heads = 1, .n_heads = 2, .d_k = 24, .d_v = 8, .l2norm = true};
    check_case(c, {5, 16, 64}, 5e-4);
  }
  la_case c{.kind = la_kind::gated_delta, .l = 100, .n_qk_heads = 2, .n_heads = 4, .d_k = 64, .d_v = 64, .l2norm = true,
            .gate_lo = -3.f, .gate_hi = -0.01f};
  check_case(c, {64}, 5e-4);
}

TEST_CASE("linear attention: prefill(n) then step x k equals prefill(n + k)", "[linear_attention][state]") {
  rng(106);
  for (la_kind kind : {la_kind::feature, la_kind::retention, la_kind::gla, la_kind::delta, la_kind::gated_delta}) {
    INFO(kind_name(kind));
    la_case c{.kind = kind, .l = 45, .n_qk_heads = 2, .n_heads = 4, .d_k = 24, .d_v = 24, .phi = 1,
              .normalize = kind == la_kind::feature, .l2norm = true};
    const la_inputs in = la_inputs::make(c);
    const la_result full = run(c, in, form::chunked, 16, simd::default_arch{});
    la_result r{tensor<float, 3>({c.l, c.n_heads, c.d_v}), in.s0, in.z0};
    workspace ws(linear_attention_workspace_bytes(16, c.n_heads, c.d_k, c.d_v));
    const index_t n = 37;
    run_range(c, in, form::chunked, 16, 0, n, r, ws, simd::default_arch{});
    for (index_t t = n; t < c.l; ++t) run_range(c, in, form::recurrent, 16, t, t + 1, r, ws, simd::default_arch{});
    CHECK(err(r.out, full.out) < 1e-4);
    CHECK(max_rel_err(r.s.data(), full.s.data(), r.s.size()) < 1e-4);
    // and the parallel form continues a chunked prefill the same way
    la_result r2{tensor<float, 3>({c.l, c.n_heads, c.d_v}), in.s0, in.z0};
    workspace ws2(linear_attention_workspace_bytes(c.l, c.n_heads, c.d_k, c.d_v));
    run_range(c, in, form::chunked, 16, 0, 20, r2, ws2, simd::default_arch{});
    run_range(c, in, form::parallel, 16, 20, c.l, r2, ws2, simd::default_arch{});
    CHECK(err(r2.out, full.out) < 1e-4);
  }
}

TEST_CASE("linear attention: bad input is a shape_error or range_error", "[linear_attention][errors]") {
  rng(107);
  const index_t l = 9, h = 3, d = 8;
  auto q = random_tensor<3>({l, h, d}), k = random_tensor<3>({l, h, d}), v = random_tensor<3>({l, h, d});
  tensor<float, 3> out({l, h, d}), s({h, d, d});
  tensor<float, 2> z({h, d});
  workspace ws(linear_attention_workspace_bytes(l, h, d, d));
  linear_attention_params p;
  // chunk size that does not fit
  p.chunk_size = 0;
  REQUIRE_THROWS_AS(linear_attention_chunked(q.cview(), k.cview(), v.cview(), out.view(), {s.view(), z.view()}, p, ws),
                    range_error);
  p.chunk_size = 4;
  // wrong state shape
  tensor<float, 3> bad_s({h, d, d + 1});
  REQUIRE_THROWS_AS(linear_attention_chunked(q.cview(), k.cview(), v.cview(), out.view(), {bad_s.view(), z.view()}, p, ws),
                    shape_error);
  // normalizer without k_sum
  p.normalize = true;
  REQUIRE_THROWS_AS(linear_attention_recurrent(q.cview(), k.cview(), v.cview(), out.view(), {s.view(), {}}, p, ws),
                    shape_error);
  // value heads not a multiple of q/k heads
  auto k2 = random_tensor<3>({l, 2, d}), q2 = random_tensor<3>({l, 2, d});
  REQUIRE_THROWS_WITH(
      delta_rule_parallel(q2.cview(), k2.cview(), v.cview(), random_tensor<2>({l, h}).cview(), out.view(), s.view(),
                          delta_rule_params{}, ws),
      Catch::Contains("multiple"));
  // beta of the wrong length, gates of the wrong shape, gamma out of range
  REQUIRE_THROWS_AS(delta_rule_chunked(q.cview(), k.cview(), v.cview(), random_tensor<2>({l + 1, h}).cview(), out.view(),
                                       s.view(), delta_rule_params{}, ws),
                    shape_error);
  REQUIRE_THROWS_AS(gla_chunked(q.cview(), k.cview(), v.cview(), random_tensor<3>({l, h, d + 1}).cview(), out.view(),
                                s.view(), gla_params{}, ws),
                    shape_error);
  tensor<float, 1> gamma({h}, 1.5f);
  REQUIRE_THROWS_AS(retention_recurrent(q.cview(), k.cview(), v.cview(), gamma.cview(), out.view(), s.view(),
                                        retention_params{}, ws),
                    range_error);
  // a workspace that is too small
  workspace tiny(64);
  REQUIRE_THROWS_AS(retention_parallel(q.cview(), k.cview(), v.cview(), tensor<float, 1>({h}, 0.9f).cview(), out.view(),
                                       s.view(), retention_params{}, tiny),
                    range_error);
}
