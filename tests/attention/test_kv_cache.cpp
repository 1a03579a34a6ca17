#include <catch2/catch.hpp>

#include <tessera/attention/kv_cache.hpp>
#include <tessera/attention/position_bias.hpp>
#include <tessera/attention/softmax_attention.hpp>
#include <tessera/attention/softmax_decode.hpp>

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

struct sequence {
  tensor<float, 3> q, k, v;  // (l, n_heads | n_kv_heads, head_dim)
};

sequence make_sequence(index_t l, index_t n_heads, index_t n_kv_heads, index_t head_dim) {
  return {random_tensor<3>({l, n_heads, head_dim}, -1.5f, 1.5f), random_tensor<3>({l, n_kv_heads, head_dim}, -1.5f, 1.5f),
          random_tensor<3>({l, n_kv_heads, head_dim}, -1.f, 1.f)};
}

/// Runs the sequence through the cache: prefill of `prompt` tokens in chunks of `chunk`, then one
/// decode step per remaining token (append, then decode_attention). Returns every output row.
template <class Arch>
tensor<float, 3> run_cached(const sequence& s, kv_cache& cache, index_t prompt, index_t chunk,
                            const attention_params& p, workspace& ws, Arch arch) {
  const auto [l, n_heads, head_dim] = s.q.extents();
  tensor<float, 3> out({l, n_heads, head_dim}, 9.f);
  for (index_t t0 = 0; t0 < prompt; t0 += chunk) {
    const index_t t1 = std::min(prompt, t0 + chunk);
    prefill_attention(s.q.cview().slice(0, t0, t1), s.k.cview().slice(0, t0, t1), s.v.cview().slice(0, t0, t1), cache,
                      out.view().slice(0, t0, t1), p, ws, arch);
  }
  for (index_t t = prompt; t < l; ++t) {
    cache.append(s.k.cview().slice(0, t, t + 1), s.v.cview().slice(0, t, t + 1));
    decode_attention(s.q.cview().slice(0, t, t + 1), cache, out.view().slice(0, t, t + 1), p, ws, arch);
  }
  return out;
}

}  // namespace

TEST_CASE("kv_cache: prefill then decode equals one full prefill (linear cache, GQA)", "[kv_cache]") {
  tessera::test::rng(21);
  for (auto [n_heads, n_kv_heads, head_dim] : {std::tuple<index_t, index_t, index_t>{8, 1, 64}, {6, 2, 24}, {3, 3, 80}}) {
    INFO("n_heads=" << n_heads << " n_kv_heads=" << n_kv_heads << " head_dim=" << head_dim);
    const index_t l = 90;
    const auto s = make_sequence(l, n_heads, n_kv_heads, head_dim);
    dense_spec sp;
    sp.qpos = iota_positions(l);
    sp.kpos = iota_positions(l);
    const auto want = dense_attention(s.q.cview(), s.k.cview(), s.v.cview(), sp);
    workspace ws(softmax_attention_workspace_bytes(n_heads, head_dim));
    for (index_t chunk : {7, 64}) {
      kv_cache cache(100, n_kv_heads, head_dim);
      const auto out = run_cached(s, cache, 40, chunk, {}, ws, simd::default_arch{});
      CHECK(rel_err(out.cview(), want) < tol);
      CHECK(cache.size() == l);
      kv_cache cache_ref(100, n_kv_heads, head_dim);
      const auto out_ref = run_cached(s, cache_ref, 40, chunk, {}, ws, simd::scalar{});
      CHECK(rel_err(out_ref.cview(), want) < tol);
    }
    // the cache's keys are the appended ones
    kv_cache cache(100, n_kv_heads, head_dim);
    cache.append(s.k.cview().slice(0, 0, 5), s.v.cview().slice(0, 0, 5));
    REQUIRE(cache.keys().extent(0) == 5);
    REQUIRE(cache.keys()(4, n_kv_heads - 1, 3) == s.k(4, n_kv_heads - 1, 3));
    REQUIRE(cache.values()(2, 0, 1) == s.v(2, 0, 1));
  }
}

TEST_CASE("kv_cache: prefill and decode with a relative bias (T5 decoder buckets) equal one full prefill",
          "[kv_cache]") {
  tessera::test::rng(23);
  const index_t l = 75, n_heads = 4, n_kv_heads = 2, head_dim = 16;
  const auto s = make_sequence(l, n_heads, n_kv_heads, head_dim);
  const tensor<float, 2> table = random_tensor<2>({12, n_heads}, -2.f, 2.f);
  const t5_bucket_params bp{false, 12, 24};
  tensor<float, 3> gathered({n_heads, l, l});
  t5_position_bias(table.cview(), bp, 0, gathered.view());
  const auto by_distance = make_t5_relative_bias(table.cview(), bp);
  dense_spec sp;
  sp.scale = 1.0;
  sp.qpos = iota_positions(l);
  sp.kpos = iota_positions(l);
  sp.bias = &gathered;
  const auto want = dense_attention(s.q.cview(), s.k.cview(), s.v.cview(), sp);
  const attention_params p{.scale = 1.f, .relative_bias = by_distance.cview()};
  workspace ws(softmax_attention_workspace_bytes(n_heads, head_dim));
  for (index_t chunk : {9, 50}) {
    kv_cache cache(l, n_kv_heads, head_dim);
    CHECK(rel_err(run_cached(s, cache, 50, chunk, p, ws, simd::default_arch{}).cview(), want) < tol);
    kv_cache cache_ref(l, n_kv_heads, head_dim);
    CHECK(rel_err(run_cached(s, cache_ref, 50, chunk, p, ws, simd::scalar{}).cview(), want) < tol);
  }
}

TEST_CASE("kv_cache: f16 and q8_0 caches (linear and ring) attend like f32 over the rounded keys, in less memory",
          "[kv_cache]") {
  for (const kv_element element : {kv_element::f16, kv_element::q8_0}) {
    INFO(kv_element_name(element));
    tessera::test::rng(24);
    // 300 keys: decode splits; head_dim 20 (f16): SIMD tail; q8_0 takes blocks of 32
    const index_t l = 300, n_heads = 6, n_kv_heads = 2, head_dim = element == kv_element::f16 ? 20 : 96;
    auto s = make_sequence(l, n_heads, n_kv_heads, head_dim);
    for (auto* t : {&s.k, &s.v})  // keys and values the cache stores exactly: rounded to f16, or through q8_0
      for (index_t i = 0; i < l; ++i)
        for (index_t g = 0; g < n_kv_heads; ++g) {
          float* row = &(*t)(i, g, 0);
          if (element == kv_element::f16) {
            for (index_t e = 0; e < head_dim; ++e) row[e] = static_cast<float>(f16(row[e]));
          } else {
            std::vector<block_q8_0> blocks(static_cast<std::size_t>(head_dim / 32));
            quantize(row, blocks.data(), head_dim / 32);
            dequantize(blocks.data(), row, head_dim / 32);
          }
        }
    workspace ws(softmax_attention_workspace_bytes(n_heads, head_dim));
    for (std::optional<index_t> window : {std::optional<index_t>{}, std::optional<index_t>{37}}) {
      INFO("window " << (window ? *window : -1));
      dense_spec sp;
      sp.window = window;
      sp.qpos = iota_positions(l);
      sp.kpos = iota_positions(l);
      const auto want = dense_attention(s.q.cview(), s.k.cview(), s.v.cview(), sp);
      const attention_params p{.window = window};
      kv_cache small(l, n_kv_heads, head_dim, window, 0, -1, element);
      kv_cache full(l, n_kv_heads, head_dim, window, 0, -1);
      REQUIRE(small.element() == element);
      if (element == kv_element::f16) REQUIRE(2 * small.memory_bytes() == full.memory_bytes());
      else REQUIRE(128 * small.memory_bytes() == 34 * full.memory_bytes());  // 34 bytes per 32 values
      CHECK(rel_err(run_cached(s, small, 130, 60, p, ws, simd::default_arch{}).cview(), want) < tol);
      kv_cache small_ref(l, n_kv_heads, head_dim, window, 0, -1, element);
      CHECK(rel_err(run_cached(s, small_ref, 130, 60, p, ws, simd::scalar{}).cview(), want) < tol);
      // a copy (snapshot) holds the same tokens: decoding on from it gives the same output
      kv_cache copy = small;
      REQUIRE(copy.element() == element);
      tensor<float, 3> a({1, n_heads, head_dim}), b({1, n_heads, head_dim});
      copy.truncate(copy.size());
      decode_attention(s.q.cview().slice(0, l - 1, l), small, a.view(), p, ws);
      decode_attention(s.q.cview().slice(0, l - 1, l), copy, b.view(), p, ws);
      CHECK(rel_err(a.cview(), std::vector<double>(b.data(), b.data() + b.size())) == 0.0);
    }
    kv_cache linear(8, n_kv_heads, head_dim, {}, 0, -1, element);
    REQUIRE_THROWS_AS(linear.keys(), range_error);
  }
  // q8_0 stores whole blocks: a head_dim that is not a multiple of 32 is refused by name
  REQUIRE_THROWS_WITH(kv_cache(8, 2, 48, {}, 0, -1, kv_element::q8_0),
                      Catch::Contains("q8_0 cache needs head_dim a multiple of 32, got 48"));
}

TEST_CASE("kv_cache: q8_0 keys and values of any value stay within the block's rounding of f32", "[kv_cache]") {
  tessera::test::rng(25);
  const index_t l = 200, n_heads = 4, n_kv_heads = 2, head_dim = 64;
  const auto s = make_sequence(l, n_heads, n_kv_heads, head_dim);
  dense_spec sp;
  sp.qpos = iota_positions(l);
  sp.kpos = iota_positions(l);
  const auto want = dense_attention(s.q.cview(), s.k.cview(), s.v.cview(), sp);
  workspace ws(softmax_attention_workspace_bytes(n_heads, head_dim));
  kv_cache q8(l, n_kv_heads, head_dim, {}, 0, -1, kv_element::q8_0);
  // 8-bit blocks: each key and value within amax / 254 of its block; the outputs within ~1% here
  CHECK(rel_err(run_cached(s, q8, 100, 30, {}, ws, simd::default_arch{}).cview(), want) < 2e-2);
}

TEST_CASE("kv_cache: a long decode splits keys over threads and merges (flash-decoding)", "[kv_cache]") {
  tessera::test::rng(22);
  const index_t l = 2600, n_heads = 4, n_kv_heads = 2, head_dim = 64;
  const auto s = make_sequence(l, n_heads, n_kv_heads, head_dim);
  kv_cache cache(l, n_kv_heads, head_dim);
  cache.append(s.k.cview(), s.v.cview());
  const std::vector<float> slopes = {0.5f, 0.25f, 0.125f, 0.0625f};
  for (bool alibi : {false, true}) {
    attention_params p;
    dense_spec sp;
    if (alibi) {
      p.alibi_slopes = tensor_view<const float, 1>(slopes.data(), {n_heads});
      sp.alibi = &slopes;
    }
    const auto q = s.q.cview().slice(0, l - 1, l);
    sp.qpos = {l - 1};
    sp.kpos = iota_positions(l);
    const auto want = dense_attention(q, s.k.cview(), s.v.cview(), sp);
    workspace ws(softmax_attention_workspace_bytes(n_heads, head_dim));
    tensor<float, 3> out({1, n_heads, head_dim}), out_ref({1, n_heads, head_dim});
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      decode_attention(q, cache, out.view(), p, ws);
      CHECK(rel_err(out.cview(), want) < tol);
    }
    decode_attention(q, cache, out_ref.view(), p, ws, simd::scalar{});
    CHECK(rel_err(out_ref.cview(), want) < tol);
  }
}

TEST_CASE("kv_cache: sliding-window ring past several wraps, prompt longer than the window", "[kv_cache]") {
  tessera::test::rng(23);
  const index_t l = 75, n_heads = 4, n_kv_heads = 2, head_dim = 24, window = 8;
  const auto s = make_sequence(l, n_heads, n_kv_heads, head_dim);
  dense_spec sp;
  sp.window = window;
  sp.qpos = iota_positions(l);
  sp.kpos = iota_positions(l);
  const auto want = dense_attention(s.q.cview(), s.k.cview(), s.v.cview(), sp);
  workspace ws(softmax_attention_workspace_bytes(n_heads, head_dim));
  for (index_t chunk : {20, 5, 3}) {
    INFO("prompt of 20 tokens in chunks of " << chunk);
    kv_cache cache(0, n_kv_heads, head_dim, window);
    const std::size_t bytes = cache.memory_bytes();
    const auto out = run_cached(s, cache, 20, chunk, {}, ws, simd::default_arch{});
    CHECK(rel_err(out.cview(), want) < tol);
    CHECK(cache.size() == l);
    CHECK(cache.slots() == window);
    CHECK(cache.memory_bytes() == bytes);  // flat
    kv_cache cache_ref(0, n_kv_heads, head_dim, window);
    const auto out_ref = run_cached(s, cache_ref, 20, chunk, {.window = window}, ws, simd::scalar{});
    CHECK(rel_err(out_ref.cview(), want) < tol);
  }
  // a window-8 cache holds the last 8 positions as at most two runs
  kv_cache cache(0, n_kv_heads, head_dim, window);
  cache.append(s.k.cview().slice(0, 0, 13), s.v.cview().slice(0, 0, 13));
  kv_run runs[2];
  REQUIRE(cache.segments(runs) == 2);
  REQUIRE(runs[0].pos0 == 5);
  REQUIRE(runs[0].k.extent(0) == 3);
  REQUIRE(runs[1].pos0 == 8);
  REQUIRE(runs[1].k.extent(0) == 5);
  REQUIRE(runs[0].k(0, 1, 2) == s.k(5, 1, 2));
  REQUIRE(runs[1].v(4, 0, 7) == s.v(12, 0, 7));
  REQUIRE_THROWS_AS(cache.keys(), range_error);
  // attention window must agree with the ring's
  tensor<float, 3> out({1, n_heads, head_dim});
  REQUIRE_THROWS_WITH(decode_attention(s.q.cview().slice(0, 0, 1), cache, out.view(), {.window = 5}, ws),
                      Catch::Contains("params.window = 5"));
}

TEST_CASE("kv_cache: truncate rolls back, snapshots are values", "[kv_cache]") {
  tessera::test::rng(24);
  const index_t l = 60, n_heads = 2, n_kv_heads = 1, head_dim = 16;
  const auto s = make_sequence(l, n_heads, n_kv_heads, head_dim);
  workspace ws(softmax_attention_workspace_bytes(n_heads, head_dim));
  for (bool ring : {false, true}) {
    INFO("ring=" << ring);
    std::optional<index_t> window;
    if (ring) window = 10;
    dense_spec sp;
    sp.window = window;
    sp.qpos = iota_positions(l);
    sp.kpos = iota_positions(l);
    const auto want = dense_attention(s.q.cview(), s.k.cview(), s.v.cview(), sp);
    kv_cache cache(l, n_kv_heads, head_dim, window, /*rollback=*/4);
    attention_params p;
    tensor<float, 3> out({l, n_heads, head_dim});
    prefill_attention(s.q.cview().slice(0, 0, 30), s.k.cview().slice(0, 0, 30), s.v.cview().slice(0, 0, 30), cache,
                      out.view().slice(0, 0, 30), p, ws);
    const kv_cache snapshot = cache;  // session snapshot
    // speculate 4 wrong tokens (random k/v), roll back, continue with the real ones
    const auto junk = make_sequence(4, n_heads, n_kv_heads, head_dim);
    tensor<float, 3> junk_out({4, n_heads, head_dim});
    prefill_attention(junk.q.cview(), junk.k.cview(), junk.v.cview(), cache, junk_out.view(), p, ws);
    REQUIRE(cache.size() == 34);
    cache.truncate(30);
    prefill_attention(s.q.cview().slice(0, 30, l), s.k.cview().slice(0, 30, l), s.v.cview().slice(0, 30, l), cache,
                      out.view().slice(0, 30, l), p, ws);
    CHECK(rel_err(out.cview(), want) < tol);
    // restore the snapshot and decode again: same result
    cache = snapshot;
    REQUIRE(cache.size() == 30);
    tensor<float, 3> again({l, n_heads, head_dim});
    for (index_t t = 30; t < l; ++t) {
      cache.append(s.k.cview().slice(0, t, t + 1), s.v.cview().slice(0, t, t + 1));
      decode_attention(s.q.cview().slice(0, t, t + 1), cache, again.view().slice(0, t, t + 1), p, ws);
    }
    for (index_t e = 0; e < head_dim; ++e) CHECK(again(l - 1, 1, e) == Approx(out(l - 1, 1, e)).margin(1e-6));
    if (ring) {
      // 4 slots of slack (+1: the window counts the query itself): rolling back 6 is refused
      REQUIRE_THROWS_AS(cache.truncate(l - 6), range_error);
      REQUIRE_THROWS_WITH(cache.truncate(l - 6), Catch::Contains("overwritten"));
      REQUIRE_NOTHROW(cache.truncate(l - 5));
    }
  }
}

TEST_CASE("kv_cache: bad input", "[kv_cache]") {
  tessera::test::rng(25);
  REQUIRE_THROWS_WITH(kv_cache(16, 2, 8, 0), Catch::Contains("window must be >= 1, got 0"));
  REQUIRE_THROWS_AS(kv_cache(16, 0, 8), range_error);
  kv_cache cache(10, 2, 8);
  const auto s = make_sequence(11, 4, 2, 8);
  REQUIRE_THROWS_WITH(cache.append(s.k.cview(), s.v.cview()),
                      Catch::Contains("overflow") && Catch::Contains("capacity 10"));
  REQUIRE(cache.size() == 0);
  cache.append(s.k.cview().slice(0, 0, 6), s.v.cview().slice(0, 0, 6));
  workspace ws(softmax_attention_workspace_bytes(4, 8));
  tensor<float, 3> out({5, 4, 8});
  // prefill that would overflow fails before touching anything
  REQUIRE_THROWS_AS(prefill_attention(s.q.cview().slice(0, 0, 5), s.k.cview().slice(0, 0, 5), s.v.cview().slice(0, 0, 5),
                                      cache, out.view(), {}, ws),
                    range_error);
  REQUIRE(cache.size() == 6);
  REQUIRE_THROWS_WITH(cache.truncate(7), Catch::Contains("n = 7"));
  const auto wrong = make_sequence(1, 4, 3, 8);
  REQUIRE_THROWS_AS(cache.append(wrong.k.cview(), wrong.v.cview()), shape_error);
  const auto odd = make_sequence(1, 3, 2, 8);
  tensor<float, 3> out1({1, 3, 8});
  REQUIRE_THROWS_WITH(decode_attention(odd.q.cview(), cache, out1.view(), {}, ws),
                      Catch::Contains("n_heads = 3") && Catch::Contains("n_kv_heads = 2"));
  tensor<float, 3> out2({2, 4, 8});
  REQUIRE_THROWS_AS(decode_attention(s.q.cview().slice(0, 0, 2), cache, out2.view(), {}, ws), shape_error);
  kv_cache empty(4, 2, 8);
  tensor<float, 3> out3({1, 4, 8});
  REQUIRE_THROWS_AS(decode_attention(s.q.cview().slice(0, 0, 1), empty, out3.view(), {}, ws), range_error);
}
