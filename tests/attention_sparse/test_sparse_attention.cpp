// Sparse attention (block-sparse CSR, Longformer, BigBird) against a dense double-precision
// reference that builds the mask (with multiplicities) explicitly; default arch against
// simd::scalar; the BigBird full fallback; bad input.
#include <catch2/catch.hpp>

#include <tessera/attention/sparse_attention.hpp>

#include "common/test_util.hpp"

using namespace tessera;
using namespace tessera::attention;
using namespace tessera::test;

namespace {

/// count(h, i, j): how many times query i of head h sees key j (0 = masked); per-row q/k/v source.
struct dense_case {
  index_t l, l_k, n_heads, n_kv_heads, d, d_v;
  std::vector<int> count;  // (n_heads, l, l_k)
  int& at(index_t h, index_t i, index_t j) { return count[std::size_t((h * l + i) * l_k + j)]; }
};

/// out[i,h] = Σ_j c_ij e^{s_ij} v_j / Σ_j c_ij e^{s_ij} (zeros when Σ c = 0), in double;
/// rows with use_alt[i] use (qa, ka, va) instead.
std::vector<double> dense_reference(dense_case& c, const tensor<float, 3>& q, const tensor<float, 3>& k,
                                    const tensor<float, 3>& v, double scale, const std::vector<bool>& use_alt = {},
                                    const tensor<float, 3>* qa = nullptr, const tensor<float, 3>* ka = nullptr,
                                    const tensor<float, 3>* va = nullptr) {
  std::vector<double> out(std::size_t(c.l * c.n_heads * c.d_v), 0.0);
  const index_t group = c.n_heads / c.n_kv_heads;
  for (index_t h = 0; h < c.n_heads; ++h)
    for (index_t i = 0; i < c.l; ++i) {
      const bool alt = !use_alt.empty() && use_alt[std::size_t(i)];
      const auto& Q = alt ? *qa : q;
      const auto& K = alt ? *ka : k;
      const auto& V = alt ? *va : v;
      std::vector<double> s(std::size_t(c.l_k));
      double mx = -1e300;
      for (index_t j = 0; j < c.l_k; ++j) {
        double dot = 0;
        for (index_t p = 0; p < c.d; ++p) dot += double(Q(i, h, p)) * K(j, h / group, p);
        s[std::size_t(j)] = dot * scale;
        if (c.at(h, i, j)) mx = std::max(mx, s[std::size_t(j)]);
      }
      double den = 0;
      std::vector<double> o(std::size_t(c.d_v), 0.0);
      for (index_t j = 0; j < c.l_k; ++j) {
        const int n = c.at(h, i, j);
        if (!n) continue;
        const double e = n * std::exp(s[std::size_t(j)] - mx);
        den += e;
        for (index_t p = 0; p < c.d_v; ++p) o[std::size_t(p)] += e * V(j, h / group, p);
      }
      if (den > 0)
        for (index_t p = 0; p < c.d_v; ++p) out[std::size_t((i * c.n_heads + h) * c.d_v + p)] = o[std::size_t(p)] / den;
    }
  return out;
}

double err(const tensor<float, 3>& a, const std::vector<double>& b) { return max_rel_err(a.data(), b.data(), a.size()); }

std::uint64_t bits(std::mt19937_64& g) { return g(); }

}  // namespace

TEST_CASE("block_sparse_attention matches the dense masked reference (CSR, duplicates, causal, padding, GQA)",
          "[block_sparse]") {
  rng(201);
  auto& g = rng();
  for (index_t l : {1, 5, 17, 63, 200})
    for (index_t d : {8, 24, 64}) {
      const index_t bs = l < 20 ? 4 : 16, n_heads = 4, n_kv = d == 24 ? 2 : 4, d_v = d == 64 ? 24 : d;
      const index_t nb = (l + bs - 1) / bs;
      for (bool per_head : {false, true})
        for (bool causal : {false, true}) {
          INFO("l=" << l << " d=" << d << " per_head=" << per_head << " causal=" << causal);
          auto q = random_tensor<3>({l, n_heads, d}), k = random_tensor<3>({l, n_kv, d}), v = random_tensor<3>({l, n_kv, d_v});
          tensor<std::uint8_t, 1> kmask({l});
          for (index_t t = 0; t < l; ++t) kmask(t) = (bits(g) % 5) != 0;  // ~20% padding
          // random CSR: every query block lists its diagonal block, a few random ones, sometimes twice
          const index_t heads = per_head ? n_heads : 1;
          std::vector<std::vector<std::vector<int>>> lists(static_cast<std::size_t>(heads), std::vector<std::vector<int>>(static_cast<std::size_t>(nb)));
          index_t per_row = 0;
          for (index_t i = 0; i < nb; ++i) {
            const index_t extra = index_t(bits(g) % 3);
            for (index_t h = 0; h < heads; ++h) {
              auto& row = lists[std::size_t(h)][std::size_t(i)];
              row.push_back(int(i));
              for (index_t e = 0; e < extra; ++e) row.push_back(int(bits(g) % std::uint64_t(nb)));
            }
            per_row += 1 + extra;
          }
          tensor<std::int32_t, 1> row_ptr({nb + 1});
          tensor<std::int32_t, 2> col({heads, per_row});
          index_t p = 0;
          for (index_t i = 0; i < nb; ++i) {
            row_ptr(i) = std::int32_t(p);
            for (index_t h = 0; h < heads; ++h)
              for (std::size_t e = 0; e < lists[std::size_t(h)][std::size_t(i)].size(); ++e)
                col(h, p + index_t(e)) = lists[std::size_t(h)][std::size_t(i)][e];
            p += index_t(lists[0][std::size_t(i)].size());
          }
          row_ptr(nb) = std::int32_t(p);
          dense_case c{l, l, n_heads, n_kv, d, d_v, std::vector<int>(std::size_t(n_heads * l * l), 0)};
          for (index_t h = 0; h < n_heads; ++h)
            for (index_t i = 0; i < l; ++i)
              for (int kb : lists[std::size_t(per_head ? h : 0)][std::size_t(i / bs)])
                for (index_t j = kb * bs; j < std::min(l, (kb + 1) * bs); ++j)
                  if (kmask(j) && (!causal || j <= i)) c.at(h, i, j) += 1;
          const auto ref = dense_reference(c, q, k, v, 1.0 / std::sqrt(double(d)));
          block_sparse_layout layout{.block_size = bs, .row_ptr = row_ptr.cview(), .col_idx = col.cview()};
          block_sparse_params prm{.causal = causal};
          workspace ws(block_sparse_attention_workspace_bytes(bs, d, d_v));
          tensor<float, 3> out({l, n_heads, d_v}), out_s({l, n_heads, d_v});
          block_sparse_attention(q.cview(), k.cview(), v.cview(), layout, kmask.cview(), out.view(), prm, ws);
          block_sparse_attention(q.cview(), k.cview(), v.cview(), layout, kmask.cview(), out_s.view(), prm, ws,
                                 simd::scalar{});
          CHECK(err(out, ref) < 1e-5);
          CHECK(err(out_s, ref) < 1e-5);
        }
    }
}

TEST_CASE("block_sparse_attention expresses a dilated window, fully masked rows give zeros", "[block_sparse]") {
  rng(202);
  const index_t l = 63, bs = 8, nb = 8, h = 2, d = 24;
  auto q = random_tensor<3>({l, h, d}), k = random_tensor<3>({l, h, d}), v = random_tensor<3>({l, h, d});
  // dilated: query block i sees key blocks i, i-2, i-4 (when they exist)
  tensor<std::int32_t, 1> row_ptr({nb + 1});
  std::vector<std::int32_t> cols;
  for (index_t i = 0; i < nb; ++i) {
    row_ptr(i) = std::int32_t(cols.size());
    for (index_t b = i; b >= 0 && b >= i - 4; b -= 2) cols.push_back(std::int32_t(b));
  }
  row_ptr(nb) = std::int32_t(cols.size());
  tensor<std::int32_t, 2> col({1, index_t(cols.size())});
  std::copy(cols.begin(), cols.end(), col.data());
  dense_case c{l, l, h, h, d, d, std::vector<int>(std::size_t(h * l * l), 0)};
  tensor<std::uint8_t, 1> kmask({l}, 1);
  for (index_t j = 8; j < 16; ++j) kmask(j) = 0;  // block 1 entirely padding: query block 1 sees nothing
  for (index_t hh = 0; hh < h; ++hh)
    for (index_t i = 0; i < l; ++i)
      for (index_t b = i / bs; b >= 0 && b >= i / bs - 4; b -= 2)
        for (index_t j = b * bs; j < std::min(l, (b + 1) * bs); ++j) c.at(hh, i, j) = kmask(j);
  const auto ref = dense_reference(c, q, k, v, 0.5);
  workspace ws(block_sparse_attention_workspace_bytes(bs, d, d));
  tensor<float, 3> out({l, h, d});
  block_sparse_attention(q.cview(), k.cview(), v.cview(), {bs, row_ptr.cview(), col.cview()}, kmask.cview(), out.view(),
                         {.scale = 0.5f}, ws);
  CHECK(err(out, ref) < 1e-5);
  for (index_t i = 8; i < 16; ++i) REQUIRE(out(i, 1, 3) == 0.f);  // fully masked rows → zeros
}

TEST_CASE("longformer_attention matches the dense masked reference (window, globals, padding)", "[longformer]") {
  rng(203);
  auto& g = rng();
  for (index_t l : {1, 5, 17, 63, 200})
    for (index_t w : {2, 8, 16, 64})
      for (index_t d : {8, 24, 64}) {
        if (d != 24 && w != 16) continue;  // keep the run short: all windows at d=24, all d at w=16
        INFO("l=" << l << " w=" << w << " d=" << d);
        const index_t h = 3, d_v = d;
        auto q = random_tensor<3>({l, h, d}), k = random_tensor<3>({l, h, d}), v = random_tensor<3>({l, h, d_v});
        auto qg = random_tensor<3>({l, h, d}), kg = random_tensor<3>({l, h, d}), vg = random_tensor<3>({l, h, d_v});
        tensor<std::int8_t, 1> role({l}, 1);
        for (index_t t = 0; t < l; ++t) {
          const auto u = bits(g) % 10;
          role(t) = u == 0 ? 2 : (u == 1 ? 0 : 1);
        }
        if (l > 3) role(0) = 2, role(l - 1) = 0, role(l - 2) = 0;  // a CLS global and right padding
        dense_case c{l, l, h, h, d, d_v, std::vector<int>(std::size_t(h * l * l), 0)};
        std::vector<bool> is_global(static_cast<std::size_t>(l));
        for (index_t hh = 0; hh < h; ++hh)
          for (index_t i = 0; i < l; ++i) {
            is_global[std::size_t(i)] = role(i) == 2;
            for (index_t j = 0; j < l; ++j) {
              if (role(i) == 0) continue;  // padding rows: zeros
              if (role(i) == 2) c.at(hh, i, j) = role(j) != 0;
              else c.at(hh, i, j) = role(j) == 2 || (role(j) == 1 && std::abs(i - j) <= w / 2);
            }
          }
        const auto ref = dense_reference(c, q, k, v, 1.0 / std::sqrt(double(d)), is_global, &qg, &kg, &vg);
        workspace ws(longformer_attention_workspace_bytes(l, d, d_v));
        tensor<float, 3> out({l, h, d_v}, 7.f), out_s({l, h, d_v}, 7.f);
        longformer_global_qkv glob{qg.cview(), kg.cview(), vg.cview()};
        longformer_attention(q.cview(), k.cview(), v.cview(), glob, role.cview(), out.view(), {.attention_window = w}, ws);
        longformer_attention(q.cview(), k.cview(), v.cview(), glob, role.cview(), out_s.view(), {.attention_window = w},
                             ws, simd::scalar{});
        CHECK(err(out, ref) < 1e-5);
        CHECK(err(out_s, ref) < 1e-5);
      }
}

namespace {
/// BigBird's pattern as a count matrix (duplicates counted), per transformers' five parts.
void bigbird_counts(dense_case& c, index_t bs, index_t r, const tensor<std::int32_t, 3>& rand_attn,
                    const tensor<std::uint8_t, 1>& kmask) {
  const index_t n = c.l / bs;
  for (index_t h = 0; h < c.n_heads; ++h)
    for (index_t qb = 0; qb < n; ++qb) {
      std::vector<index_t> blocks;
      if (qb == 0 || qb == n - 1) for (index_t b = 0; b < n; ++b) blocks.push_back(b);
      else if (qb == 1) blocks = {0, 1, 2, n - 1};
      else if (qb == n - 2) blocks = {0, n - 3, n - 2, n - 1};
      else blocks = {0, qb - 1, qb, qb + 1, n - 1};
      if (qb != 0 && qb != n - 1)
        for (index_t j = 0; j < r; ++j) blocks.push_back(rand_attn(h, qb - 1, j));
      for (index_t i = qb * bs; i < (qb + 1) * bs; ++i) {
        if (!kmask(i)) continue;  // padding query rows: zeros (context_layer * from_mask)
        for (index_t b : blocks)
          for (index_t j = b * bs; j < (b + 1) * bs; ++j) c.at(h, i, j) += kmask(j);
      }
    }
}
}  // namespace

TEST_CASE("bigbird_attention matches the dense masked reference (block-sparse and full fallback)", "[bigbird]") {
  rng(204);
  auto& g = rng();
  struct cfg { index_t l, bs, r, d; bool eval_zeros; };
  for (const cfg& f : {cfg{200, 8, 3, 24, false}, cfg{200, 8, 3, 64, true}, cfg{96, 8, 2, 8, false},
                       cfg{63, 8, 3, 24, false} /* full: 63 <= 88 */, cfg{17, 4, 1, 8, false} /* full */,
                       cfg{5, 4, 0, 24, false}, cfg{1, 2, 1, 8, false}, cfg{104, 8, 4, 24, true} /* 104 <= 104: full */}) {
    INFO("l=" << f.l << " bs=" << f.bs << " r=" << f.r << " d=" << f.d);
    const index_t h = 2, l = f.l;
    const bool full = l <= (5 + 2 * f.r) * f.bs;
    auto q = random_tensor<3>({l, h, f.d}), k = random_tensor<3>({l, h, f.d}), v = random_tensor<3>({l, h, f.d});
    tensor<std::uint8_t, 1> kmask({l}, 1);
    for (index_t t = l - std::min<index_t>(l / 2, 11); t < l; ++t) kmask(t) = 0;  // right padding
    const index_t n = l / f.bs;
    tensor<std::int32_t, 3> rand_attn({h, full ? 0 : n - 2, f.r});
    for (auto& x : rand_attn) x = f.eval_zeros ? 0 : std::int32_t(1 + bits(g) % std::uint64_t(n - 2));
    dense_case c{l, l, h, h, f.d, f.d, std::vector<int>(std::size_t(h * l * l), 0)};
    if (full) {
      for (index_t hh = 0; hh < h; ++hh)
        for (index_t i = 0; i < l; ++i)
          for (index_t j = 0; j < l; ++j) c.at(hh, i, j) = kmask(j);
    } else {
      bigbird_counts(c, f.bs, f.r, rand_attn, kmask);
    }
    const auto ref = dense_reference(c, q, k, v, 1.0 / std::sqrt(double(f.d)));
    workspace ws(bigbird_attention_workspace_bytes(l, h, f.d, f.d, f.bs, f.r));
    tensor<float, 3> out({l, h, f.d}), out_s({l, h, f.d});
    bigbird_params prm{.block_size = f.bs, .num_random_blocks = f.r};
    bigbird_attention(q.cview(), k.cview(), v.cview(), rand_attn.cview(), kmask.cview(), out.view(), prm, ws);
    bigbird_attention(q.cview(), k.cview(), v.cview(), rand_attn.cview(), kmask.cview(), out_s.view(), prm, ws,
                      simd::scalar{});
    CHECK(err(out, ref) < 1e-5);
    CHECK(err(out_s, ref) < 1e-5);
  }
}

TEST_CASE("sparse attention: bad input is a shape_error or range_error", "[sparse][errors]") {
  rng(205);
  const index_t l = 64, h = 2, d = 8;
  auto q = random_tensor<3>({l, h, d}), k = random_tensor<3>({l, h, d}), v = random_tensor<3>({l, h, d});
  tensor<float, 3> out({l, h, d});
  workspace ws(bigbird_attention_workspace_bytes(l, h, d, d, 8, 1) + longformer_attention_workspace_bytes(l, d, d));
  tensor<std::int8_t, 1> role({l}, 1);
  longformer_global_qkv glob{q.cview(), k.cview(), v.cview()};
  // windows that do not fit
  REQUIRE_THROWS_AS(longformer_attention(q.cview(), k.cview(), v.cview(), glob, role.cview(), out.view(),
                                         {.attention_window = 7}, ws), range_error);
  REQUIRE_THROWS_WITH(longformer_attention(q.cview(), k.cview(), v.cview(), glob, role.cview(), out.view(),
                                           {.attention_window = 0}, ws), Catch::Contains("attention_window"));
  // mask of the wrong shape, and a mask value that means nothing
  tensor<std::int8_t, 1> short_role({l - 1}, 1);
  REQUIRE_THROWS_AS(longformer_attention(q.cview(), k.cview(), v.cview(), glob, short_role.cview(), out.view(),
                                         {.attention_window = 8}, ws), shape_error);
  role(5) = 3;
  REQUIRE_THROWS_AS(longformer_attention(q.cview(), k.cview(), v.cview(), glob, role.cview(), out.view(),
                                         {.attention_window = 8}, ws), range_error);
  // BigBird: l not a multiple of the block size, rand_attn of the wrong shape or out of range
  auto q2 = random_tensor<3>({100, h, d}), k2 = random_tensor<3>({100, h, d}), v2 = random_tensor<3>({100, h, d});
  tensor<float, 3> out2({100, h, d});
  tensor<std::int32_t, 3> ra({h, 10, 1});
  REQUIRE_THROWS_AS(bigbird_attention(q2.cview(), k2.cview(), v2.cview(), ra.cview(), std::nullopt, out2.view(),
                                      {.block_size = 8, .num_random_blocks = 1}, ws), shape_error);
  tensor<std::int32_t, 3> ra_bad_shape({h, 5, 1});
  REQUIRE_THROWS_AS(bigbird_attention(q.cview(), k.cview(), v.cview(), ra_bad_shape.cview(), std::nullopt, out.view(),
                                      {.block_size = 8, .num_random_blocks = 1}, ws), shape_error);
  tensor<std::int32_t, 3> ra_range({h, 6, 1}, 8);
  REQUIRE_THROWS_AS(bigbird_attention(q.cview(), k.cview(), v.cview(), ra_range.cview(), std::nullopt, out.view(),
                                      {.block_size = 8, .num_random_blocks = 1}, ws), range_error);
  tensor<std::uint8_t, 1> kmask_short({l - 3}, 1);
  REQUIRE_THROWS_AS(bigbird_attention(q.cview(), k.cview(), v.cview(), ra_range.cview(), kmask_short.cview(),
                                      out.view(), {.block_size = 8, .num_random_blocks = 1}, ws), shape_error);
  // CSR: row_ptr of the wrong length, a column out of range, a block size of 0
  tensor<std::int32_t, 1> rp({5});
  tensor<std::int32_t, 2> ci({1, 0});
  REQUIRE_THROWS_AS(block_sparse_attention(q.cview(), k.cview(), v.cview(), {8, rp.cview(), ci.cview()}, std::nullopt,
                                           out.view(), {}, ws), shape_error);
  tensor<std::int32_t, 1> rp2({9}, 0);
  rp2(8) = 1;
  for (index_t i = 1; i < 8; ++i) rp2(i) = 0;
  tensor<std::int32_t, 2> ci2({1, 1}, 8);
  REQUIRE_THROWS_AS(block_sparse_attention(q.cview(), k.cview(), v.cview(), {8, rp2.cview(), ci2.cview()}, std::nullopt,
                                           out.view(), {}, ws), range_error);
  REQUIRE_THROWS_AS(block_sparse_attention(q.cview(), k.cview(), v.cview(), {0, rp2.cview(), ci2.cview()}, std::nullopt,
                                           out.view(), {}, ws), range_error);
  // mismatched heads
  auto k3 = random_tensor<3>({l, 3, d});
  REQUIRE_THROWS_AS(block_sparse_attention(q.cview(), k3.cview(), k3.cview(), {8, rp2.cview(), ci2.cview()},
                                           std::nullopt, out.view(), {}, ws), shape_error);
}
