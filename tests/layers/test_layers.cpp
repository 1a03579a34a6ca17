// layers/attention.hpp options and layers/residual.hpp blocks on random weights, each against the
// same computation written out with the ops and kernels it is made of: the output gate, ALiBi, the
// q/k norm across heads, bidirectional mode, and the parallel / sandwich / postnorm blocks. (The
// options and blocks that families use are also checked against transformers by the parity tests;
// the T5 relative bias against transformers' own T5Attention: tests/data/layers/t5_attention.)
#include <catch2/catch.hpp>

#include <cmath>
#include <deque>
#include <filesystem>
#include <vector>

#include <tessera/attention/position_bias.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/layers/attention.hpp>
#include <tessera/layers/mlp.hpp>
#include <tessera/layers/norm.hpp>
#include <tessera/layers/residual.hpp>
#include <tessera/ops/norm.hpp>

#include "common/test_util.hpp"

using namespace tessera;

namespace {

// Owns random weights and hands out views of them.
struct bank {
  std::deque<tensor<float, 2>> mats;
  layers::linear lin(index_t rows, index_t cols) {
    mats.push_back(test::random_tensor<2>({rows, cols}, -0.5f, 0.5f));
    return layers::linear::from(layers::weight_matrix(mats.back().cview()));
  }
};

constexpr index_t d = 24, H = 4, KV = 2, hd = 6, rows = 7;

double rel(tensor_view<const float, 2> a, tensor_view<const float, 2> b) {
  REQUIRE(a.extents() == b.extents());
  return test::max_rel_err(a.data(), b.data(), a.size());
}

// One sequence of `rows` rows at positions 0..rows-1.
struct one_sequence {
  index_t starts[2] = {0, rows};
  std::vector<std::int32_t> pos;
  layers::batch_context ctx;
  explicit one_sequence(layers::attention_mode mode = layers::attention_mode::causal) : pos(rows) {
    for (index_t i = 0; i < rows; ++i) pos[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
    ctx = {std::span<const index_t>(starts, 2), pos, mode, nullptr};
  }
};

template <class L>
tensor<float, 2> run(const L& layer, tensor_view<const float, 2> x, const layers::batch_context& ctx) {
  workspace ws(layer.workspace_bytes(x.extent(0)) + (1 << 16));
  auto st = layer.make_state({.max_len = 64, .reserve = 64});
  typename L::state_type* p = &st;
  tensor<float, 2> out({x.extent(0), d});
  layer.forward(x, out.view(), layers::state_refs<typename L::state_type>(&p, 1), ctx, ws);
  return out;
}

// softmax attention of q (rows, H, hd) over k, v (rows, KV, hd) then o_proj, written out.
tensor<float, 2> attend(tensor_view<const float, 3> q, tensor_view<const float, 3> k, tensor_view<const float, 3> v,
                        const layers::linear& o, const attention::attention_params& p) {
  workspace ws(attention::softmax_attention_workspace_bytes(H, hd) + o.workspace_bytes(rows) + (1 << 16));
  tensor<float, 3> att({rows, H, hd});
  attention::softmax_attention(q, k, v, att.view(), p, ws);
  tensor<float, 2> out({rows, d});
  o.forward(att.cview().reshape<2>({rows, H * hd}), out.view(), ws);
  return out;
}

tensor<float, 2> project(const layers::linear& l, tensor_view<const float, 2> x) {
  workspace ws(l.workspace_bytes(x.extent(0)) + 1024);
  tensor<float, 2> out({x.extent(0), l.out_features()});
  l.forward(x, out.view(), ws);
  return out;
}

}  // namespace

TEST_CASE("attention_layer: the output gate is o · sigmoid(gate), gate from q_proj's second half per head", "[layers]") {
  bank b;
  auto x = test::random_tensor<2>({rows, d});
  auto qg = b.lin(H * 2 * hd, d), k = b.lin(KV * hd, d), v = b.lin(KV * hd, d), o = b.lin(d, H * hd);
  layers::attention_options opt{.n_heads = H, .n_kv_heads = KV, .head_dim = hd, .output_gate = true};
  const layers::attention_layer layer(qg, k, v, o, opt);
  const one_sequence s;
  const auto got = run(layer, x.cview(), s.ctx);
  // by hand: q and gate interleaved per head in q_proj's rows
  const auto all = project(qg, x.cview());  // (rows, H · 2 hd)
  tensor<float, 3> q({rows, H, hd}), gate({rows, H, hd});
  for (index_t r = 0; r < rows; ++r)
    for (index_t h = 0; h < H; ++h)
      for (index_t e = 0; e < hd; ++e) q(r, h, e) = all(r, h * 2 * hd + e), gate(r, h, e) = all(r, h * 2 * hd + hd + e);
  const auto kk = project(k, x.cview()), vv = project(v, x.cview());
  workspace ws(attention::softmax_attention_workspace_bytes(H, hd) + o.workspace_bytes(rows) + (1 << 16));
  tensor<float, 3> att({rows, H, hd});
  attention::softmax_attention(q.cview(), kk.cview().reshape<3>({rows, KV, hd}), vv.cview().reshape<3>({rows, KV, hd}),
                               att.view(), {.causal = true}, ws);
  for (index_t r = 0; r < rows; ++r)
    for (index_t h = 0; h < H; ++h)
      for (index_t e = 0; e < hd; ++e) att(r, h, e) *= 1.f / (1.f + std::exp(-gate(r, h, e)));
  tensor<float, 2> want({rows, d});
  o.forward(att.cview().reshape<2>({rows, H * hd}), want.view(), ws);
  CHECK(rel(got.cview(), want.cview()) <= 1e-5);
}

TEST_CASE("attention_layer: ALiBi, a q/k norm across heads, bidirectional mode", "[layers]") {
  bank b;
  auto x = test::random_tensor<2>({rows, d});
  auto q = b.lin(H * hd, d), k = b.lin(KV * hd, d), v = b.lin(KV * hd, d), o = b.lin(d, H * hd);
  const auto qq = project(q, x.cview()), kk = project(k, x.cview()), vv = project(v, x.cview());
  const auto k3 = kk.cview().reshape<3>({rows, KV, hd}), v3 = vv.cview().reshape<3>({rows, KV, hd});
  {  // ALiBi: the kernel's slopes of BLOOM
    const layers::attention_layer layer(q, k, v, o, {.n_heads = H, .n_kv_heads = KV, .head_dim = hd, .alibi = true});
    const auto slopes = attention::make_alibi_slopes(H);
    const auto want = attend(qq.cview().reshape<3>({rows, H, hd}), k3, v3, o,
                             {.causal = true, .alibi_slopes = slopes.cview()});
    CHECK(rel(run(layer, x.cview(), one_sequence().ctx).cview(), want.cview()) <= 1e-5);
  }
  {  // RMSNorm over the whole q (H · hd) and k (KV · hd) projections before attention (OLMo 2)
    auto qw = test::random_tensor<2>({1, H * hd}, 0.5f, 1.5f), kw = test::random_tensor<2>({1, KV * hd}, 0.5f, 1.5f);
    layers::attention_norms norms{tensor<float, 1>::copy_of(qw.cview()[0]), tensor<float, 1>::copy_of(kw.cview()[0])};
    const layers::attention_layer layer(q, k, v, o,
                                        {.n_heads = H, .n_kv_heads = KV, .head_dim = hd,
                                         .qk_norm = layers::qk_norm_kind::across_heads, .qk_norm_eps = 1e-6f},
                                        std::move(norms));
    tensor<float, 2> qn({rows, H * hd}), kn({rows, KV * hd});
    ops::rms_norm(qq.cview(), qw.cview()[0], qn.view(), 1e-6f);
    ops::rms_norm(kk.cview(), kw.cview()[0], kn.view(), 1e-6f);
    const auto want = attend(qn.cview().reshape<3>({rows, H, hd}), kn.cview().reshape<3>({rows, KV, hd}), v3, o, {.causal = true});
    CHECK(rel(run(layer, x.cview(), one_sequence().ctx).cview(), want.cview()) <= 1e-5);
  }
  {  // bidirectional: every row sees every row of its sequence
    const layers::attention_layer layer(q, k, v, o, {.n_heads = H, .n_kv_heads = KV, .head_dim = hd});
    const auto want = attend(qq.cview().reshape<3>({rows, H, hd}), k3, v3, o, {.causal = false});
    CHECK(rel(run(layer, x.cview(), one_sequence(layers::attention_mode::bidirectional).ctx).cview(), want.cview()) <= 1e-5);
  }
}

TEST_CASE("attention_layer: T5 relative buckets, bidirectional and causal, prefill then decode", "[layers]") {
  bank b;
  auto x = test::random_tensor<2>({rows, d});
  auto q = b.lin(H * hd, d), k = b.lin(KV * hd, d), v = b.lin(KV * hd, d), o = b.lin(d, H * hd);
  const auto qq = project(q, x.cview()), kk = project(k, x.cview()), vv = project(v, x.cview());
  const auto q3 = qq.cview().reshape<3>({rows, H, hd});
  const auto k3 = kk.cview().reshape<3>({rows, KV, hd}), v3 = vv.cview().reshape<3>({rows, KV, hd});
  const auto table = test::random_tensor<2>({8, H}, -2.f, 2.f);  // relative_attention_bias.weight
  for (const auto mode : {layers::attention_mode::bidirectional, layers::attention_mode::causal}) {
    const bool causal = mode == layers::attention_mode::causal;
    const attention::t5_bucket_params bp{!causal, 8, 5};  // max_distance 5 < rows: the clamp matters
    const layers::attention_layer layer(q, k, v, o,
                                        {.n_heads = H, .n_kv_heads = KV, .head_dim = hd, .scale = 1.f,
                                         .relative_bias = attention::make_t5_relative_bias(table.cview(), bp)});
    tensor<float, 3> bias({H, rows, rows});  // T5's position_bias, gathered by bucket
    attention::t5_position_bias(table.cview(), bp, 0, bias.view());
    const auto want = attend(q3, k3, v3, o, {.scale = 1.f, .causal = causal, .bias = bias.cview()});
    const one_sequence s(mode);
    CHECK(rel(run(layer, x.cview(), s.ctx).cview(), want.cview()) <= 1e-5);
    if (!causal) continue;
    // decode: 3 rows of prefill, then one row at a time through the cache
    workspace ws(layer.workspace_bytes(rows) + (1 << 16));
    auto st = layer.make_state({.max_len = 64, .reserve = 8});
    layers::attention_layer::state_type* p = &st;
    tensor<float, 2> got({rows, d});
    for (index_t r0 = 0; r0 < rows;) {
      const index_t r1 = r0 == 0 ? 3 : r0 + 1;
      const index_t starts[2] = {0, r1 - r0};
      const layers::batch_context ctx{std::span<const index_t>(starts, 2),
                                      std::span<const std::int32_t>(s.pos).subspan(static_cast<std::size_t>(r0),
                                                                                    static_cast<std::size_t>(r1 - r0)),
                                      mode, nullptr};
      layer.forward(x.cview().slice(0, r0, r1), got.view().slice(0, r0, r1),
                    layers::state_refs<layers::attention_layer::state_type>(&p, 1), ctx, ws);
      r0 = r1;
    }
    CHECK(rel(got.cview(), want.cview()) <= 1e-5);
  }
}

TEST_CASE("attention_layer with T5 relative buckets = transformers' T5Attention (encoder and decoder self-attention)",
          "[layers]") {
  // tools/fixtures/make_t5_attention.py: d_model 40, 4 heads of 12, 10 buckets, max_distance 20,
  // 37 rows (past max_distance: the logarithmic buckets and the last bucket's clamp both occur)
  const auto dir = std::filesystem::path(TESSERA_TEST_DATA_DIR) / "layers" / "t5_attention";
  const auto w = io::weight_map::open(dir / "weights.safetensors");
  const auto ref = io::weight_map::open(dir / "reference.safetensors");
  const auto mat = [](const io::weight_map& m, const char* name) { return tensor<float, 2>::copy_of(m.f32<2>(name)); };
  const auto qw = mat(w, "q.weight"), kw = mat(w, "k.weight"), vw = mat(w, "v.weight"), ow = mat(w, "o.weight");
  const auto table = mat(w, "relative_attention_bias.weight");  // (num_buckets, n_heads)
  const auto x = mat(ref, "x");
  const index_t L = x.extent(0), dm = x.extent(1), nh = 4, dkv = 12;
  REQUIRE(table.extent(1) == nh);
  const auto lin = [](const tensor<float, 2>& t) { return layers::linear::from(layers::weight_matrix(t.cview())); };
  std::vector<std::int32_t> pos(static_cast<std::size_t>(L));
  for (index_t i = 0; i < L; ++i) pos[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  for (const bool decoder : {false, true}) {
    INFO((decoder ? "decoder" : "encoder") << " self-attention");
    const attention::t5_bucket_params bp{!decoder, table.extent(0), 20};
    // the bucket function and the gather: T5Attention.compute_bias, (n_heads, L, L)
    tensor<float, 3> bias({nh, L, L});
    attention::t5_position_bias(table.cview(), bp, 0, bias.view());
    const auto want_bias = tensor<float, 3>::copy_of(ref.f32<3>(decoder ? "decoder_bias" : "encoder_bias"));
    CHECK(test::max_rel_err(bias.data(), want_bias.data(), bias.size()) == 0.0);
    // the layer: no score scaling (T5), the bias by key - query distance
    const layers::attention_layer layer(lin(qw), lin(kw), lin(vw), lin(ow),
                                        {.n_heads = nh, .n_kv_heads = nh, .head_dim = dkv, .scale = 1.f,
                                         .relative_bias = attention::make_t5_relative_bias(table.cview(), bp)});
    const auto mode = decoder ? layers::attention_mode::causal : layers::attention_mode::bidirectional;
    const auto want = mat(ref, decoder ? "decoder_out" : "encoder_out");
    // the whole sequence as one forward; for the decoder also 5 rows of prefill, then one row at a
    // time through the cache
    for (const index_t first : decoder ? std::vector<index_t>{L, 5} : std::vector<index_t>{L}) {
      workspace ws(layer.workspace_bytes(L) + (1 << 16));
      auto st = layer.make_state({.max_len = 64, .reserve = 8});
      layers::attention_layer::state_type* p = &st;
      tensor<float, 2> got({L, dm});
      for (index_t r0 = 0; r0 < L;) {
        const index_t r1 = r0 == 0 ? first : r0 + 1;
        const index_t starts[2] = {0, r1 - r0};
        const layers::batch_context ctx{std::span<const index_t>(starts, 2),
                                        std::span<const std::int32_t>(pos).subspan(static_cast<std::size_t>(r0),
                                                                                   static_cast<std::size_t>(r1 - r0)),
                                        mode, nullptr};
        layer.forward(x.cview().slice(0, r0, r1), got.view().slice(0, r0, r1),
                      layers::state_refs<layers::attention_layer::state_type>(&p, 1), ctx, ws);
        r0 = r1;
      }
      INFO("first forward of " << first << " rows");
      CHECK(rel(got.cview(), want.cview()) <= 1e-5);
    }
  }
}

TEST_CASE("residual blocks: parallel, sandwich, postnorm, prenorm's multiplier", "[layers]") {
  bank b;
  auto h0 = test::random_tensor<2>({rows, d});
  auto nw = test::random_tensor<2>({1, d}, 0.5f, 1.5f), nw2 = test::random_tensor<2>({1, d}, 0.5f, 1.5f);
  auto rms_of = [](const tensor<float, 2>& w) {
    layers::rms_norm_layer n;
    n = layers::rms_norm_layer::from(tensor<float, 1>::copy_of(w.cview()[0]), 1e-6f);
    return n;
  };
  const layers::gated_mlp m1(b.lin(16, d), b.lin(16, d), b.lin(d, 16), ops::activation::silu);
  const layers::gated_mlp m2(b.lin(20, d), b.lin(20, d), b.lin(d, 20), ops::activation::gelu_tanh);
  const one_sequence s;
  auto apply = [&](const auto& block) {
    tensor<float, 2> h = tensor<float, 2>::copy_of(h0.cview());
    workspace ws(block.workspace_bytes(rows) + (1 << 16));
    auto st = block.make_state({});
    auto* p = &st;
    block.forward(h.view(), layers::state_refs<std::decay_t<decltype(st)>>(&p, 1), s.ctx, ws);
    return h;
  };
  auto mlp_of = [&](const layers::gated_mlp& m, tensor_view<const float, 2> x) {
    workspace ws(m.workspace_bytes(rows) + 1024);
    tensor<float, 2> out({rows, d});
    m.forward(x, out.view(), ws);
    return out;
  };
  tensor<float, 2> n({rows, d});
  ops::rms_norm(h0.cview(), nw.cview()[0], n.view(), 1e-6f);
  {  // parallel: h + 0.5 · m1(n) + 2 · m2(n)
    layers::parallel<layers::rms_norm_layer, layers::gated_mlp, layers::gated_mlp> blk{rms_of(nw), {m1, m2}, {0.5f, 2.f}};
    const auto a = mlp_of(m1, n.cview()), c = mlp_of(m2, n.cview());
    tensor<float, 2> want({rows, d});
    for (index_t r = 0; r < rows; ++r)
      for (index_t j = 0; j < d; ++j) want(r, j) = h0(r, j) + 0.5f * a(r, j) + 2.f * c(r, j);
    CHECK(rel(apply(blk).cview(), want.cview()) <= 1e-5);
  }
  {  // sandwich: h + post(m1(pre(h)))
    layers::sandwich<layers::rms_norm_layer, layers::gated_mlp> blk{rms_of(nw), m1, rms_of(nw2)};
    auto a = mlp_of(m1, n.cview());
    ops::rms_norm(a.cview(), nw2.cview()[0], a.view(), 1e-6f);
    tensor<float, 2> want({rows, d});
    for (index_t r = 0; r < rows; ++r)
      for (index_t j = 0; j < d; ++j) want(r, j) = h0(r, j) + a(r, j);
    CHECK(rel(apply(blk).cview(), want.cview()) <= 1e-5);
  }
  {  // postnorm: norm(h + m1(h)); prenorm with a multiplier: h + 0.25 · m1(norm(h))
    layers::postnorm<layers::rms_norm_layer, layers::gated_mlp> post{rms_of(nw), m1};
    const auto a = mlp_of(m1, h0.cview());
    tensor<float, 2> sum({rows, d}), want({rows, d});
    for (index_t r = 0; r < rows; ++r)
      for (index_t j = 0; j < d; ++j) sum(r, j) = h0(r, j) + a(r, j);
    ops::rms_norm(sum.cview(), nw.cview()[0], want.view(), 1e-6f);
    CHECK(rel(apply(post).cview(), want.cview()) <= 1e-5);
    layers::prenorm<layers::rms_norm_layer, layers::gated_mlp> pre{rms_of(nw), m1, 0.25f};
    const auto c = mlp_of(m1, n.cview());
    for (index_t r = 0; r < rows; ++r)
      for (index_t j = 0; j < d; ++j) want(r, j) = h0(r, j) + 0.25f * c(r, j);
    CHECK(rel(apply(pre).cview(), want.cview()) <= 1e-5);
  }
}
