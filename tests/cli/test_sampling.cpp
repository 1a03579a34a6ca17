// Tests of models/sampling.hpp: greedy, temperature, top-k, top-p, min-p, repetition penalty,
// seeds, parameter checks, no allocation per token.
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <vector>

#include <catch2/catch.hpp>

#include <tessera/models/sampling.hpp>

#include "common/alloc_counter.hpp"
#include "common/test_util.hpp"

using namespace tessera;

namespace {

tensor_view<const float, 1> view_of(const std::vector<float>& v) {
  return {v.data(), {static_cast<index_t>(v.size())}};
}

sampling_params plain(float temperature, std::uint64_t seed = 1) {
  sampling_params p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.f;
  p.min_p = 0.f;
  p.repetition_penalty = 1.f;
  p.seed = seed;
  return p;
}

std::vector<double> softmax(const std::vector<float>& z, double t) {
  double m = -1e300;
  for (float x : z) m = std::max(m, static_cast<double>(x));
  std::vector<double> p(z.size());
  double s = 0;
  for (std::size_t i = 0; i < z.size(); ++i) s += p[i] = std::exp((z[i] - m) / t);
  for (auto& x : p) x /= s;
  return p;
}

std::vector<double> frequencies(sampler& s, const std::vector<float>& logits, int draws) {
  std::vector<double> f(logits.size(), 0.0);
  for (int i = 0; i < draws; ++i) f[static_cast<std::size_t>(s.sample(view_of(logits)))] += 1.0 / draws;
  return f;
}

}  // namespace

TEST_CASE("greedy picks the argmax, the lowest index on ties", "[sampling]") {
  auto logits = test::random_vector(517, -4.f, 4.f);
  sampler s(517, plain(0.f));
  const auto best = std::max_element(logits.begin(), logits.end()) - logits.begin();
  CHECK(s.sample(view_of(logits)) == best);
  logits[100] = logits[400] = 10.f;
  CHECK(s.sample(view_of(logits)) == 100);
  std::vector<float> flat(33, -1.5f);
  CHECK(s.params().temperature == 0.f);
  sampler s2(33, plain(0.f));
  CHECK(s2.sample(view_of(flat)) == 0);
}

TEST_CASE("temperature sampling follows softmax(logits / T)", "[sampling]") {
  const std::vector<float> logits = {0.3f, -1.2f, 1.7f, 0.9f, -0.4f, 2.1f, 0.0f};
  for (float t : {0.5f, 1.0f, 1.7f}) {
    sampler s(7, plain(t, 99));
    const auto f = frequencies(s, logits, 40000);
    const auto p = softmax(logits, t);
    for (std::size_t i = 0; i < p.size(); ++i) CHECK(std::abs(f[i] - p[i]) < 0.012);
  }
}

TEST_CASE("a seed gives the same tokens, another seed other tokens", "[sampling]") {
  const auto logits = test::random_vector(301, -2.f, 2.f);
  auto draw = [&](std::uint64_t seed) {
    sampler s(301, plain(1.f, seed));
    std::vector<std::int32_t> ids;
    for (int i = 0; i < 64; ++i) ids.push_back(s.sample(view_of(logits)));
    return ids;
  };
  CHECK(draw(7) == draw(7));
  CHECK(draw(7) != draw(8));
  sampler s(301, plain(1.f, 5));
  std::vector<std::int32_t> a, b;
  for (int i = 0; i < 20; ++i) a.push_back(s.sample(view_of(logits)));
  s.reseed(5);
  for (int i = 0; i < 20; ++i) b.push_back(s.sample(view_of(logits)));
  CHECK(a == b);
}

TEST_CASE("top-k draws only from the k largest logits, in proportion", "[sampling]") {
  const auto logits = test::random_vector(211, -3.f, 3.f);
  std::vector<std::int32_t> order(211);
  for (int i = 0; i < 211; ++i) order[static_cast<std::size_t>(i)] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return logits[static_cast<std::size_t>(a)] > logits[static_cast<std::size_t>(b)]; });
  auto p = plain(1.f, 3);
  p.top_k = 5;
  sampler s(211, p);
  const auto f = frequencies(s, logits, 30000);
  double mass = 0;
  for (int i = 0; i < 5; ++i) mass += std::exp(static_cast<double>(logits[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])]));
  for (int r = 0; r < 211; ++r) {
    const auto id = static_cast<std::size_t>(order[static_cast<std::size_t>(r)]);
    if (r < 5) CHECK(std::abs(f[id] - std::exp(static_cast<double>(logits[id])) / mass) < 0.012);
    else CHECK(f[id] == 0.0);
  }
  // top-k = 1 is greedy at any temperature
  p.top_k = 1;
  p.temperature = 3.f;
  sampler g(211, p);
  for (int i = 0; i < 50; ++i) CHECK(g.sample(view_of(logits)) == order[0]);
}

TEST_CASE("top-p keeps the smallest set reaching the mass (transformers' rule)", "[sampling]") {
  // probabilities 0.5, 0.25, 0.125, 0.0625, ... (log-space logits)
  std::vector<float> logits;
  for (int i = 0; i < 9; ++i) logits.push_back(static_cast<float>(-i * std::log(2.0)));
  auto p = plain(1.f, 11);
  p.top_p = 0.8f;  // 0.5 + 0.25 = 0.75 < 0.8, + 0.125 = 0.875: three tokens
  sampler s(9, p);
  const auto f = frequencies(s, logits, 30000);
  CHECK(std::abs(f[0] - 0.5 / 0.875) < 0.012);
  CHECK(std::abs(f[1] - 0.25 / 0.875) < 0.012);
  CHECK(std::abs(f[2] - 0.125 / 0.875) < 0.012);
  for (std::size_t i = 3; i < 9; ++i) CHECK(f[i] == 0.0);
  p.top_p = 0.3f;  // the top token alone
  sampler one(9, p);
  for (int i = 0; i < 100; ++i) CHECK(one.sample(view_of(logits)) == 0);
}

TEST_CASE("min-p drops tokens below min_p x p_max", "[sampling]") {
  std::vector<float> logits = {std::log(0.4f), std::log(0.3f), std::log(0.15f), std::log(0.1f), std::log(0.05f)};
  auto p = plain(1.f, 21);
  p.min_p = 0.3f;  // threshold 0.12: keeps 0.4, 0.3, 0.15
  sampler s(5, p);
  const auto f = frequencies(s, logits, 30000);
  CHECK(std::abs(f[0] - 0.4 / 0.85) < 0.012);
  CHECK(std::abs(f[1] - 0.3 / 0.85) < 0.012);
  CHECK(std::abs(f[2] - 0.15 / 0.85) < 0.012);
  CHECK(f[3] == 0.0);
  CHECK(f[4] == 0.0);
}

TEST_CASE("filters combine: top-k then top-p then min-p", "[sampling]") {
  const auto logits = test::random_vector(97, -3.f, 3.f);
  auto p = plain(0.7f, 5);
  p.top_k = 10;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  sampler s(97, p);
  std::vector<std::int32_t> order(97);
  for (int i = 0; i < 97; ++i) order[static_cast<std::size_t>(i)] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return logits[static_cast<std::size_t>(a)] > logits[static_cast<std::size_t>(b)]; });
  const std::set<std::int32_t> top10(order.begin(), order.begin() + 10);
  for (int i = 0; i < 2000; ++i) CHECK(top10.count(s.sample(view_of(logits))) == 1);
}

TEST_CASE("repetition penalty: transformers' semantics over distinct history ids", "[sampling]") {
  // ids 0..3: logits 2.0, 1.9, -0.5, -0.6; penalty 1.5 on id 0 (2.0 -> 1.333) and id 2 (-0.5 -> -0.75)
  const std::vector<float> logits = {2.0f, 1.9f, -0.5f, -0.6f};
  auto p = plain(0.f);
  p.repetition_penalty = 1.5f;
  sampler s(4, p);
  CHECK(s.sample(view_of(logits)) == 0);  // no history: unchanged
  const std::vector<std::int32_t> h1 = {0, 0, 0};
  CHECK(s.sample(view_of(logits), h1) == 1);
  const std::vector<float> neg = {-0.5f, -0.6f, -3.f};
  sampler s2(3, p);
  const std::vector<std::int32_t> h2 = {0, 0};  // -0.5 * 1.5 = -0.75 < -0.6, once only (not -1.125)
  CHECK(s2.sample(view_of(neg), h2) == 1);
  const std::vector<float> neg2 = {-0.5f, -0.7f, -3.f};  // -0.75 > -0.7? no: -0.75 < -0.7 -> id 1
  CHECK(s2.sample(view_of(neg2), h2) == 1);
  const std::vector<float> neg3 = {-0.5f, -0.8f, -3.f};  // -0.75 > -0.8: id 0 stays (applied once)
  CHECK(s2.sample(view_of(neg3), h2) == 0);
  // a penalty below 1 favours seen tokens
  p.repetition_penalty = 0.5f;
  sampler s3(4, p);
  const std::vector<std::int32_t> h3 = {1};
  CHECK(s3.sample(view_of(logits), h3) == 1);  // 1.9 / 0.5 = 3.8
  // history ids outside the vocabulary
  const std::vector<std::int32_t> bad = {1, 4};
  CHECK_THROWS_AS(s3.sample(view_of(logits), bad), range_error);
  CHECK(s3.sample(view_of(logits)) == 0);  // and the sampler is still clean afterwards
}

TEST_CASE("parameters out of range are range_errors naming the parameter", "[sampling]") {
  auto expect = [](sampling_params p, const std::string& name) {
    try {
      sampler s(10, p);
      FAIL("no error for " << name);
    } catch (const range_error& e) {
      CHECK(std::string(e.what()).find(name) != std::string::npos);
    }
  };
  sampling_params p;
  p.temperature = -0.1f;
  expect(p, "temperature");
  p = {};
  p.temperature = NAN;
  expect(p, "temperature");
  p = {};
  p.top_k = -1;
  expect(p, "top_k");
  p = {};
  p.top_p = 0.f;
  expect(p, "top_p");
  p = {};
  p.top_p = 1.5f;
  expect(p, "top_p");
  p = {};
  p.min_p = -0.2f;
  expect(p, "min_p");
  p = {};
  p.min_p = 1.01f;
  expect(p, "min_p");
  p = {};
  p.repetition_penalty = 0.f;
  expect(p, "repetition_penalty");
  CHECK_THROWS_AS(sampler(0, sampling_params{}), range_error);
  sampler s(10, sampling_params{});
  const std::vector<float> wrong(11, 0.5f);
  CHECK_THROWS_AS(s.sample(view_of(wrong)), shape_error);
}

TEST_CASE("sampling a token allocates nothing", "[sampling]") {
  const auto logits = test::random_vector(32000, -5.f, 5.f);
  std::vector<std::int32_t> history = {5, 17, 31999, 5, 400};
  for (int variant = 0; variant < 4; ++variant) {
    sampling_params p;  // defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05
    if (variant == 1) p = plain(0.f);
    if (variant == 2) {
      p = plain(1.f);
      p.top_p = 0.9f;  // full sort
    }
    if (variant == 3) p.repetition_penalty = 1.3f;
    sampler s(32000, p);
    test::start_counting_allocations();
    std::int32_t sum = 0;
    for (int i = 0; i < 20; ++i) sum += s.sample(view_of(logits), history);
    CHECK(test::stop_counting_allocations() == 0);
    CHECK(sum >= 0);
  }
}
