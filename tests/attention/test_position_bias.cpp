#include <catch2/catch.hpp>

#include <cmath>

#include <tessera/attention/position_bias.hpp>

#include "common/test_util.hpp"

namespace {
#include "t5_torch_table.inc"
}  // namespace

using namespace tessera;
using namespace tessera::attention;

namespace {
// transformers' build_alibi_tensor, in double
std::vector<double> alibi_formula(int n_heads) {
  const int closest = 1 << int(std::floor(std::log2(n_heads)));
  const double base = std::pow(2.0, -std::pow(2.0, -(std::log2(closest) - 3)));
  std::vector<double> s;
  for (int i = 1; i <= closest; ++i) s.push_back(std::pow(base, i));
  if (closest != n_heads) {
    const double extra = std::pow(2.0, -std::pow(2.0, -(std::log2(2 * closest) - 3)));
    const int remaining = std::min(closest, n_heads - closest);
    for (int i = 1; i < 1 + 2 * remaining; i += 2) s.push_back(std::pow(extra, i));
  }
  return s;
}
}  // namespace

TEST_CASE("alibi_slopes follow BLOOM's formula, also for head counts that are not powers of two",
          "[position_bias]") {
  // 8 heads: 2^-1, 2^-2, ..., 2^-8
  const auto s8 = make_alibi_slopes(8);
  for (index_t h = 0; h < 8; ++h) REQUIRE(s8(h) == Approx(std::pow(2.0, -(h + 1))).epsilon(1e-6));
  // 12 heads: the 8-head slopes, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5
  const auto s12 = make_alibi_slopes(12);
  const double extra[] = {std::pow(2.0, -0.5), std::pow(2.0, -1.5), std::pow(2.0, -2.5), std::pow(2.0, -3.5)};
  for (index_t h = 0; h < 8; ++h) REQUIRE(s12(h) == Approx(std::pow(2.0, -(h + 1))).epsilon(1e-6));
  for (index_t h = 0; h < 4; ++h) REQUIRE(s12(8 + h) == Approx(extra[h]).epsilon(1e-6));
  for (int n : {1, 3, 5, 16, 30, 71}) {
    const auto want = alibi_formula(n);
    const auto got = make_alibi_slopes(n);
    REQUIRE(got.size() == n);
    for (index_t h = 0; h < n; ++h) REQUIRE(got(h) == Approx(want[std::size_t(h)]).epsilon(1e-6));
  }
  REQUIRE_THROWS_AS(make_alibi_slopes(0), range_error);
}

TEST_CASE("t5_relative_position_bucket matches transformers' _relative_position_bucket", "[position_bias]") {
  // bidirectional, 32 buckets, max_distance 128: 16 per side, 8 exact.
  // rel = key - query; rel > 0 adds 16; |rel| < 8 exact; else 8 + int(log(|rel|/8)/log(16)*8), max 15
  const t5_bucket_params enc{true, 32, 128};
  const std::pair<index_t, index_t> enc_cases[] = {
      {0, 0},    {-1, 1},   {-7, 7},   {-8, 8},   {-11, 8},  {-12, 9},   {-16, 10},  {-22, 10}, {-23, 11},
      {-45, 12}, {-46, 13}, {-64, 14}, {-90, 14}, {-91, 15}, {-127, 15}, {-500, 15}, {1, 17},   {7, 23},
      {8, 24},   {16, 26},  {100, 31}, {128, 31}, {5000, 31}};
  for (auto [rel, bucket] : enc_cases) {
    INFO("rel=" << rel);
    REQUIRE(t5_relative_position_bucket(rel, enc) == bucket);
  }
  // causal (decoder), 32 buckets, max_distance 128: future → 0; 16 exact; 16 + int(log(n/16)/log(8)*16)
  const t5_bucket_params dec{false, 32, 128};
  const std::pair<index_t, index_t> dec_cases[] = {{5, 0},    {0, 0},    {-5, 5},    {-15, 15},  {-16, 16}, {-19, 17},
                                                   {-20, 17}, {-32, 21}, {-64, 26},  {-127, 31}, {-128, 31}, {-1000, 31}};
  for (auto [rel, bucket] : dec_cases) {
    INFO("rel=" << rel);
    REQUIRE(t5_relative_position_bucket(rel, dec) == bucket);
  }
  // other sizes: formula in double, away from integer boundaries it must agree
  for (const t5_bucket_params p : {t5_bucket_params{true, 64, 256}, t5_bucket_params{false, 16, 40}}) {
    for (index_t rel = -300; rel <= 300; ++rel) {
      index_t nb = p.num_buckets, b = 0, n = rel;
      if (p.bidirectional) {
        nb /= 2;
        b = rel > 0 ? nb : 0;
        n = std::abs(rel);
      } else {
        n = rel < 0 ? -rel : 0;
      }
      const index_t max_exact = nb / 2;
      double large = max_exact + std::log(double(n) / max_exact) / std::log(double(p.max_distance) / max_exact) *
                                     double(nb - max_exact);
      if (n >= max_exact && std::abs(large - std::round(large)) < 1e-4) continue;  // boundary: f32 decides
      const index_t want = b + (n < max_exact ? n : std::min<index_t>(index_t(large), nb - 1));
      INFO("rel=" << rel << " buckets=" << p.num_buckets);
      REQUIRE(t5_relative_position_bucket(rel, p) == want);
    }
  }
}

TEST_CASE("t5 buckets and ALiBi slopes equal PyTorch's, element for element", "[position_bias]") {
  for (const auto& row : t5_torch_table) {
    const t5_bucket_params p{row.bidirectional, row.num_buckets, row.max_distance};
    for (index_t rel = -300; rel <= 300; ++rel) {
      INFO("rel=" << rel << " bidirectional=" << row.bidirectional << " num_buckets=" << row.num_buckets
                  << " max_distance=" << row.max_distance);
      REQUIRE(t5_relative_position_bucket(rel, p) == row.buckets[rel + 300]);
    }
  }
  const auto s71 = make_alibi_slopes(71);
  for (index_t h = 0; h < 71; ++h) REQUIRE(s71(h) == Approx(alibi_torch_71[h]).epsilon(2e-7));
}

TEST_CASE("t5_position_bias gathers the table by bucket of key - query position", "[position_bias]") {
  tessera::test::rng(31);
  const t5_bucket_params p{true, 8, 20};
  const index_t n_heads = 3, l = 5, l_kv = 9, q_offset = 4;
  const auto table = tessera::test::random_tensor<2>({8, n_heads});
  tensor<float, 3> bias({n_heads, l, l_kv});
  t5_position_bias(table.cview(), p, q_offset, bias.view());
  for (index_t h = 0; h < n_heads; ++h)
    for (index_t i = 0; i < l; ++i)
      for (index_t j = 0; j < l_kv; ++j)
        REQUIRE(bias(h, i, j) == table(t5_relative_position_bucket(j - (q_offset + i), p), h));
  tensor<float, 3> wrong({n_heads + 1, l, l_kv});
  REQUIRE_THROWS_AS(t5_position_bias(table.cview(), p, 0, wrong.view()), shape_error);
  REQUIRE_THROWS_AS(t5_relative_position_bucket(3, t5_bucket_params{true, 2, 128}), range_error);
}
