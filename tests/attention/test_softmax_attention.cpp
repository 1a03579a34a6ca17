#include <catch2/catch.hpp>

#include <string>

#include <tessera/attention/position_bias.hpp>
#include <tessera/attention/softmax_attention.hpp>

#include "attention_test_util.hpp"

using namespace tessera;
using namespace tessera::attention;
using tessera::test::dense_attention;
using tessera::test::dense_spec;
using tessera::test::iota_positions;
using tessera::test::random_tensor;
using tessera::test::rel_err;

namespace {

constexpr double tol = 2e-5;

struct qkv {
  tensor<float, 3> q, k, v;
};

qkv make_qkv(index_t l, index_t l_kv, index_t n_heads, index_t n_kv_heads, index_t head_dim) {
  // scaled so that logits are O(1..3): softmax is far from uniform, errors show
  return {random_tensor<3>({l, n_heads, head_dim}, -1.5f, 1.5f), random_tensor<3>({l_kv, n_kv_heads, head_dim}, -1.5f, 1.5f),
          random_tensor<3>({l_kv, n_kv_heads, head_dim}, -1.f, 1.f)};
}

/// Runs the default arch and the scalar reference; checks both against the dense reference.
void check_both(const qkv& t, const attention_params& p, const dense_spec& sp, double tolerance = tol) {
  const auto [l, n_heads, head_dim] = t.q.extents();
  workspace ws(softmax_attention_workspace_bytes(n_heads, head_dim));
  const auto want = dense_attention(t.q.cview(), t.k.cview(), t.v.cview(), sp);
  tensor<float, 3> out({l, n_heads, head_dim}, 7.f), out_ref({l, n_heads, head_dim}, 7.f);
  softmax_attention(t.q.cview(), t.k.cview(), t.v.cview(), out.view(), p, ws);
  softmax_attention(t.q.cview(), t.k.cview(), t.v.cview(), out_ref.view(), p, ws, simd::scalar{});
  CHECK(rel_err(out.cview(), want) < tolerance);
  CHECK(rel_err(out_ref.cview(), want) < tolerance);
  CHECK(ws.used() == 0);
  CHECK(ws.high_water() <= ws.capacity());
}

}  // namespace

TEST_CASE("softmax_attention matches the dense reference over l, head_dim, GQA, causal or not",
          "[softmax_attention]") {
  tessera::test::rng(11);
  const index_t ls[] = {1, 5, 17, 63, 200};
  const index_t dims[] = {8, 24, 64, 80, 128};
  const index_t gqa[][2] = {{2, 2}, {4, 2}, {6, 2}, {8, 1}};
  int combo = 0;
  for (index_t l : ls)
    for (index_t head_dim : dims) {
      const auto [n_heads, n_kv_heads] = std::pair{gqa[combo % 4][0], gqa[combo % 4][1]};
      ++combo;
      for (bool causal : {true, false}) {
        INFO("l=" << l << " head_dim=" << head_dim << " n_heads=" << n_heads << " n_kv_heads=" << n_kv_heads
                  << " causal=" << causal);
        const auto t = make_qkv(l, l, n_heads, n_kv_heads, head_dim);
        dense_spec sp;
        sp.causal = causal;
        sp.qpos = iota_positions(l);
        sp.kpos = iota_positions(l);
        check_both(t, {.causal = causal}, sp);
      }
    }
}

TEST_CASE("softmax_attention: every GQA ratio, q_offset after a prefix", "[softmax_attention]") {
  tessera::test::rng(12);
  for (index_t rep : {1, 2, 3, 8}) {
    const index_t n_kv_heads = rep == 8 ? 1 : 2;
    const index_t n_heads = rep * n_kv_heads;
    INFO("rep=" << rep);
    const index_t l = 17, l_kv = 80;
    const auto t = make_qkv(l, l_kv, n_heads, n_kv_heads, 24);
    dense_spec sp;
    sp.qpos = iota_positions(l, l_kv - l);
    sp.kpos = iota_positions(l_kv);
    check_both(t, {.q_offset = l_kv - l}, sp);
  }
}

TEST_CASE("softmax_attention: sliding window (transformers semantics), bidirectional window, prefix-LM",
          "[softmax_attention]") {
  tessera::test::rng(13);
  const index_t l = 150;
  const auto t = make_qkv(l, l, 4, 2, 40);
  for (index_t w : {1, 8, 64, 129}) {
    INFO("window=" << w);
    dense_spec sp;
    sp.window = w;
    sp.qpos = iota_positions(l);
    sp.kpos = iota_positions(l);
    check_both(t, {.window = w}, sp);
    sp.causal = false;
    check_both(t, {.causal = false, .window = w}, sp);
  }
  for (index_t prefix : {1, 7, 70, 150}) {
    INFO("prefix=" << prefix);
    dense_spec sp;
    sp.prefix = prefix;
    sp.qpos = iota_positions(l);
    sp.kpos = iota_positions(l);
    check_both(t, {.prefix = prefix}, sp);
  }
  // the window counts the query itself: window 1 is attention to oneself only
  {
    attention_params p{.window = 1};
    workspace ws(softmax_attention_workspace_bytes(4, 40));
    tensor<float, 3> out({l, 4, 40});
    softmax_attention(t.q.cview(), t.k.cview(), t.v.cview(), out.view(), p, ws);
    CHECK(out(37, 3, 5) == Approx(t.v(37, 1, 5)).margin(1e-6));
  }
}

TEST_CASE("softmax_attention: key padding mask, ALiBi, bias tensor, softcap, scale override", "[softmax_attention]") {
  tessera::test::rng(14);
  const index_t l = 70, n_heads = 6, n_kv_heads = 3, head_dim = 32;
  const auto t = make_qkv(l, l, n_heads, n_kv_heads, head_dim);
  std::vector<float> key_mask(l, 0.f);
  for (index_t j = 0; j < l; j += 3) key_mask[std::size_t(j)] = -std::numeric_limits<float>::infinity();
  key_mask[1] = -0.75f;  // finite additive values are added
  const std::vector<float> slopes = {0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f, 0.015625f};
  const tensor<float, 3> bias = random_tensor<3>({n_heads, l, l}, -2.f, 2.f);
  const tensor<float, 3> bias1 = random_tensor<3>({1, l, l}, -2.f, 2.f);
  for (bool causal : {true, false}) {
    dense_spec sp;
    sp.causal = causal;
    sp.qpos = iota_positions(l);
    sp.kpos = iota_positions(l);
    sp.key_mask = &key_mask;
    attention_params p{.causal = causal, .key_mask = tensor_view<const float, 1>(key_mask.data(), {l})};
    SECTION("key mask") { check_both(t, p, sp); }
    SECTION("alibi + softcap + scale") {
      sp.alibi = &slopes;
      sp.softcap = 2.5;
      sp.scale = 0.3;
      p.alibi_slopes = tensor_view<const float, 1>(slopes.data(), {n_heads});
      p.softcap = 2.5f;
      p.scale = 0.3f;
      check_both(t, p, sp);
    }
    SECTION("bias per head and broadcast over heads, T5 style scale 1") {
      sp.bias = &bias;
      sp.scale = 1.0;
      p.bias = bias.cview();
      p.scale = 1.f;
      check_both(t, p, sp);
      sp.bias = &bias1;
      p.bias = bias1.cview();
      check_both(t, p, sp);
    }
  }
}

TEST_CASE("softmax_attention: relative bias by distance (T5 buckets) equals the gathered bias tensor",
          "[softmax_attention]") {
  tessera::test::rng(16);
  // l > 2 max_distance: the clamp to the last bucket of each side is exercised
  const index_t l = 61, n_heads = 4, n_kv_heads = 2, head_dim = 24, num_buckets = 10;
  const auto t = make_qkv(l, l, n_heads, n_kv_heads, head_dim);
  const tensor<float, 2> table = random_tensor<2>({num_buckets, n_heads}, -2.f, 2.f);
  for (bool causal : {true, false}) {
    const t5_bucket_params bp{!causal, num_buckets, 20};  // encoder: bidirectional buckets
    tensor<float, 3> gathered({n_heads, l, l});
    t5_position_bias(table.cview(), bp, 0, gathered.view());
    const auto by_distance = make_t5_relative_bias(table.cview(), bp);
    REQUIRE(by_distance.extent(1) == 41);
    dense_spec sp;
    sp.causal = causal;
    sp.scale = 1.0;
    sp.qpos = iota_positions(l);
    sp.kpos = iota_positions(l);
    sp.bias = &gathered;
    attention_params p{.scale = 1.f, .causal = causal, .relative_bias = by_distance.cview()};
    check_both(t, p, sp);
  }
  const tensor<float, 2> even({n_heads, 40});
  workspace ws(softmax_attention_workspace_bytes(n_heads, head_dim));
  tensor<float, 3> out({l, n_heads, head_dim});
  REQUIRE_THROWS_AS(softmax_attention(t.q.cview(), t.k.cview(), t.v.cview(), out.view(),
                                      attention_params{.relative_bias = even.cview()}, ws),
                    shape_error);
}

TEST_CASE("softmax_attention: explicit position ids (left padding, packed order)", "[softmax_attention]") {
  tessera::test::rng(15);
  const index_t l = 45;
  const auto t = make_qkv(l, l, 4, 4, 16);
  std::vector<index_t> pos(l);
  for (index_t i = 0; i < l; ++i) pos[std::size_t(i)] = (i * 7) % l;  // a permutation
  const std::vector<float> slopes = {0.5f, 0.25f, 0.125f, 0.0625f};
  dense_spec sp;
  sp.window = 9;
  sp.alibi = &slopes;
  sp.qpos = pos;
  sp.kpos = pos;
  attention_params p{.window = 9,
                     .alibi_slopes = tensor_view<const float, 1>(slopes.data(), {4}),
                     .q_positions = tensor_view<const index_t, 1>(pos.data(), {l}),
                     .k_positions = tensor_view<const index_t, 1>(pos.data(), {l})};
  check_both(t, p, sp);
}

TEST_CASE("softmax_attention: fully masked rows give zeros, never NaN", "[softmax_attention]") {
  tessera::test::rng(16);
  const index_t l = 90, head_dim = 24;
  const auto t = make_qkv(l, l, 2, 1, head_dim);
  workspace ws(softmax_attention_workspace_bytes(2, head_dim));
  tensor<float, 3> out({l, 2, head_dim}), out_ref({l, 2, head_dim});
  SECTION("every key padded") {
    std::vector<float> key_mask(l, -std::numeric_limits<float>::infinity());
    attention_params p{.key_mask = tensor_view<const float, 1>(key_mask.data(), {l})};
    softmax_attention(t.q.cview(), t.k.cview(), t.v.cview(), out.view(), p, ws);
    softmax_attention(t.q.cview(), t.k.cview(), t.v.cview(), out_ref.view(), p, ws, simd::scalar{});
    for (index_t i = 0; i < l; ++i)
      for (index_t e = 0; e < head_dim; ++e) {
        REQUIRE(out(i, 1, e) == 0.f);
        REQUIRE(out_ref(i, 0, e) == 0.f);
      }
  }
  SECTION("causal with queries before every key (negative q_offset): the first rows see nothing") {
    attention_params p{.q_offset = -70};
    softmax_attention(t.q.cview(), t.k.cview(), t.v.cview(), out.view(), p, ws);
    REQUIRE(tessera::test::all_finite(out.cview()));
    for (index_t e = 0; e < head_dim; ++e) REQUIRE(out(69, 0, e) == 0.f);
    dense_spec sp;
    sp.qpos = iota_positions(l, -70);
    sp.kpos = iota_positions(l);
    REQUIRE(rel_err(out.cview(), dense_attention(t.q.cview(), t.k.cview(), t.v.cview(), sp)) < tol);
  }
  SECTION("padding only on some keys of the diagonal tile") {
    std::vector<float> key_mask(l, 0.f);
    for (index_t j = 0; j < 20; ++j) key_mask[std::size_t(j)] = -std::numeric_limits<float>::infinity();
    dense_spec sp;
    sp.key_mask = &key_mask;
    sp.qpos = iota_positions(l);
    sp.kpos = iota_positions(l);
    check_both(t, {.key_mask = tensor_view<const float, 1>(key_mask.data(), {l})}, sp);
    softmax_attention(t.q.cview(), t.k.cview(), t.v.cview(), out.view(),
                      {.key_mask = tensor_view<const float, 1>(key_mask.data(), {l})}, ws);
    for (index_t e = 0; e < head_dim; ++e) REQUIRE(out(19, 0, e) == 0.f);
  }
}

TEST_CASE("softmax_attention: strided views (a fused qkv buffer)", "[softmax_attention]") {
  tessera::test::rng(17);
  const index_t l = 33, n_heads = 4, n_kv_heads = 2, head_dim = 20;
  // qkv: (l, n_heads + 2 n_kv_heads, head_dim), as a fused projection writes it
  const auto qkv_buf = random_tensor<3>({l, n_heads + 2 * n_kv_heads, head_dim}, -1.5f, 1.5f);
  const auto all = qkv_buf.cview();
  const auto q = all.slice(1, 0, n_heads), k = all.slice(1, n_heads, n_heads + n_kv_heads),
             v = all.slice(1, n_heads + n_kv_heads, n_heads + 2 * n_kv_heads);
  dense_spec sp;
  sp.qpos = iota_positions(l);
  sp.kpos = iota_positions(l);
  const auto want = dense_attention(q, k, v, sp);
  workspace ws(softmax_attention_workspace_bytes(n_heads, head_dim));
  tensor<float, 3> out({l, n_heads, head_dim});
  softmax_attention(q, k, v, out.view(), {}, ws);
  REQUIRE(rel_err(out.cview(), want) < tol);
}

TEST_CASE("merge_partial_state: split keys and merge equals the whole, in any grouping", "[softmax_attention]") {
  tessera::test::rng(18);
  const index_t l_kv = 100, head_dim = 16;
  const auto t = make_qkv(1, l_kv, 1, 1, head_dim);
  // partial states over [0,30), [30,31), [31,100) computed by hand
  auto partial = [&](index_t b, index_t e, float& m, float& s, std::vector<float>& o) {
    m = -std::numeric_limits<float>::infinity();
    for (index_t j = b; j < e; ++j) {
      float d = 0;
      for (index_t x = 0; x < head_dim; ++x) d += t.q(0, 0, x) * t.k(j, 0, x);
      m = std::max(m, d);
    }
    s = 0;
    o.assign(std::size_t(head_dim), 0.f);
    for (index_t j = b; j < e; ++j) {
      float d = 0;
      for (index_t x = 0; x < head_dim; ++x) d += t.q(0, 0, x) * t.k(j, 0, x);
      const float p = std::exp(d - m);
      s += p;
      for (index_t x = 0; x < head_dim; ++x) o[std::size_t(x)] += p * t.v(j, 0, x);
    }
  };
  float m1, s1, m2, s2, m3, s3, me, se;
  std::vector<float> o1, o2, o3, oe;
  partial(0, 30, m1, s1, o1);
  partial(30, 31, m2, s2, o2);
  partial(31, 100, m3, s3, o3);
  partial(50, 50, me, se, oe);  // empty: identity
  auto v1 = tensor_view<float, 1>(o1.data(), {head_dim});
  // (1 ∘ 2) ∘ 3 vs 1 ∘ (2 ∘ 3)
  float ma = m1, sa = s1;
  std::vector<float> oa = o1;
  merge_partial_state(ma, sa, tensor_view<float, 1>(oa.data(), {head_dim}), m2, s2,
                      tensor_view<const float, 1>(o2.data(), {head_dim}));
  merge_partial_state(ma, sa, tensor_view<float, 1>(oa.data(), {head_dim}), m3, s3,
                      tensor_view<const float, 1>(o3.data(), {head_dim}));
  float mb = m2, sb = s2;
  std::vector<float> ob = o2;
  merge_partial_state(mb, sb, tensor_view<float, 1>(ob.data(), {head_dim}), m3, s3,
                      tensor_view<const float, 1>(o3.data(), {head_dim}));
  merge_partial_state(mb, sb, tensor_view<float, 1>(ob.data(), {head_dim}), me, se,
                      tensor_view<const float, 1>(oe.data(), {head_dim}));
  merge_partial_state(m1, s1, v1, mb, sb, tensor_view<const float, 1>(ob.data(), {head_dim}));
  dense_spec sp;
  sp.causal = false;
  sp.scale = 1.0;
  sp.qpos = {0};
  sp.kpos = iota_positions(l_kv);
  const auto want = dense_attention(t.q.cview(), t.k.cview(), t.v.cview(), sp);
  for (index_t x = 0; x < head_dim; ++x) {
    REQUIRE(oa[std::size_t(x)] / sa == Approx(want[std::size_t(x)]).margin(1e-5));
    REQUIRE(o1[std::size_t(x)] / s1 == Approx(want[std::size_t(x)]).margin(1e-5));
  }
  REQUIRE(ma == m1);
}

TEST_CASE("softmax_attention: bad input names the value", "[softmax_attention]") {
  tessera::test::rng(19);
  workspace ws(softmax_attention_workspace_bytes(6, 8));
  const auto t = make_qkv(5, 5, 6, 4, 8);
  tensor<float, 3> out({5, 6, 8});
  REQUIRE_THROWS_AS(softmax_attention(t.q.cview(), t.k.cview(), t.v.cview(), out.view(), {}, ws), shape_error);
  REQUIRE_THROWS_WITH(softmax_attention(t.q.cview(), t.k.cview(), t.v.cview(), out.view(), {}, ws),
                      Catch::Contains("n_heads = 6") && Catch::Contains("n_kv_heads = 4"));
  const auto u = make_qkv(5, 7, 6, 3, 8);
  REQUIRE_THROWS_WITH(softmax_attention(u.q.cview(), u.k.cview(), u.v.cview(), out.view(), {.window = 0}, ws),
                      Catch::Contains("window must be >= 1, got 0"));
  std::vector<float> mask(6, 0.f);
  REQUIRE_THROWS_AS(softmax_attention(u.q.cview(), u.k.cview(), u.v.cview(), out.view(),
                                      {.key_mask = tensor_view<const float, 1>(mask.data(), {6})}, ws),
                    shape_error);
  REQUIRE_THROWS_WITH(softmax_attention(u.q.cview(), u.k.cview(), u.v.cview(), out.view(),
                                        {.key_mask = tensor_view<const float, 1>(mask.data(), {6})}, ws),
                      Catch::Contains("key_mask") && Catch::Contains("6 != 7"));
  const tensor<float, 3> bias({6, 5, 5}, 0.f);
  REQUIRE_THROWS_WITH(softmax_attention(u.q.cview(), u.k.cview(), u.v.cview(), out.view(), {.bias = bias.cview()}, ws),
                      Catch::Contains("bias columns") && Catch::Contains("5 != 7"));
  REQUIRE_THROWS_WITH(
      softmax_attention(u.q.cview(), u.k.cview(), u.v.cview(), out.view(),
                        {.alibi_slopes = tensor_view<const float, 1>(mask.data(), {5})}, ws),
      Catch::Contains("alibi_slopes") && Catch::Contains("5 != 6"));
  tensor<float, 3> bad_out({5, 6, 9});
  REQUIRE_THROWS_AS(softmax_attention(u.q.cview(), u.k.cview(), u.v.cview(), bad_out.view(), {}, ws), shape_error);
  REQUIRE_THROWS_AS(softmax_attention(u.q.cview(), u.k.cview(), u.v.cview(), out.view(), {.softcap = -1.f}, ws),
                    range_error);
}
