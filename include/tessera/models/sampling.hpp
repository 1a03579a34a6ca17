// tessera/models/sampling.hpp: picking the next token from logits.
//
//   sampler s(model.config().vocab, {.temperature = 0.7f, .top_k = 40, .seed = 42});
//   std::int32_t next = s.sample(session->logits(), generated_so_far);
//
// The pipeline follows transformers' generate() order: repetition penalty over the ids seen so far
// (a logit < 0 is multiplied by the penalty, one >= 0 divided, once per distinct id), then
// temperature, top-k, top-p (nucleus), min-p, then one draw from the renormalized distribution.
// temperature == 0 is greedy: the argmax after the penalty, the lowest index on ties.
//
// The random stream is xoshiro256** seeded through splitmix64 and turned into floats by the
// sampler itself (no std::*_distribution, whose output differs between standard libraries), so a
// seed gives the same tokens on every platform. After construction sample() allocates nothing.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <tessera/core/error.hpp>
#include <tessera/core/tensor_view.hpp>

namespace tessera {
inline namespace v0 {

struct sampling_params {
  float temperature = 0.8f;        // 0: greedy (argmax); must be >= 0
  index_t top_k = 40;              // keep the k most likely tokens; 0: off
  float top_p = 0.95f;             // keep the smallest set with probability mass >= top_p; 1: off; (0, 1]
  float min_p = 0.05f;             // drop tokens with p < min_p * p_max; 0: off; [0, 1]
  float repetition_penalty = 1.f;  // > 0; 1: off (transformers' RepetitionPenaltyLogitsProcessor)
  std::uint64_t seed = 0;
};

namespace detail {
/// splitmix64: expands a 64-bit seed into xoshiro's state.
inline std::uint64_t splitmix64(std::uint64_t& x) noexcept {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// xoshiro256**: small, fast, fully specified (the same stream everywhere).
class xoshiro256 {
 public:
  explicit xoshiro256(std::uint64_t seed = 0) noexcept { reseed(seed); }
  void reseed(std::uint64_t seed) noexcept {
    for (auto& w : s_) w = splitmix64(seed);
  }
  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};
}  // namespace detail

/// Throws range_error naming the first parameter out of range.
inline void check_sampling_params(const sampling_params& p) {
  auto bad = [](const char* name, double v, const char* want) {
    char value[32];
    std::snprintf(value, sizeof value, "%g", v);
    throw range_error(std::string("sampling: ") + name + " = " + value + " is out of range (" + want + ")");
  };
  if (!(p.temperature >= 0.f) || !std::isfinite(p.temperature)) bad("temperature", p.temperature, "must be >= 0; 0 is greedy");
  if (p.top_k < 0) bad("top_k", static_cast<double>(p.top_k), "must be >= 0; 0 is off");
  if (!(p.top_p > 0.f && p.top_p <= 1.f)) bad("top_p", p.top_p, "must be in (0, 1]; 1 is off");
  if (!(p.min_p >= 0.f && p.min_p <= 1.f)) bad("min_p", p.min_p, "must be in [0, 1]; 0 is off");
  if (!(p.repetition_penalty > 0.f) || !std::isfinite(p.repetition_penalty))
    bad("repetition_penalty", p.repetition_penalty, "must be > 0; 1 is off");
}

/// Picks tokens from logits with the configured pipeline; buffers are sized to the vocabulary once.
/// Not thread-safe: one sampler per sequence.
class sampler {
 public:
  sampler(index_t vocab, const sampling_params& params) : vocab_(vocab), p_(params), rng_(params.seed) {
    if (vocab <= 0) throw range_error("sampler: vocab must be > 0, got " + std::to_string(vocab));
    check_sampling_params(p_);
    const auto n = static_cast<std::size_t>(vocab);
    work_.resize(n);
    order_.resize(n);
    seen_.assign(n, 0);
  }

  const sampling_params& params() const noexcept { return p_; }
  index_t vocab() const noexcept { return vocab_; }

  /// Restarts the random stream (the same seed gives the same tokens again).
  void reseed(std::uint64_t seed) noexcept {
    p_.seed = seed;
    rng_.reseed(seed);
  }

  /// The next token for `logits` (vocab); `history` holds the ids the repetition penalty looks at
  /// (prompt and generated so far, as transformers does). shape_error if logits has the wrong
  /// size, range_error for a history id outside the vocabulary.
  std::int32_t sample(tensor_view<const float, 1> logits, std::span<const std::int32_t> history = {}) {
    if (logits.extent(0) != vocab_)
      throw shape_error("sampler::sample: logits have " + std::to_string(logits.extent(0)) +
                        " entries, the sampler was built for vocab " + std::to_string(vocab_));
    float* z = work_.data();
    for (index_t i = 0; i < vocab_; ++i) z[i] = logits(i);
    if (p_.repetition_penalty != 1.f) apply_repetition_penalty(z, history);
    if (p_.temperature == 0.f) return argmax(z, vocab_);

    const float inv_t = 1.f / p_.temperature;
    for (index_t i = 0; i < vocab_; ++i) z[i] *= inv_t;

    // Candidates in order_[0, n): sorted by descending logit (index ascending on ties) when top-k
    // or top-p need an order, all tokens in index order otherwise.
    index_t n = vocab_;
    std::int32_t* idx = order_.data();
    for (index_t i = 0; i < vocab_; ++i) idx[i] = static_cast<std::int32_t>(i);
    const bool use_k = p_.top_k > 0 && p_.top_k < vocab_;
    const bool use_p = p_.top_p < 1.f;
    auto before = [z](std::int32_t a, std::int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
    if (use_k) {
      n = p_.top_k;
      std::nth_element(idx, idx + n - 1, idx + vocab_, before);
    }
    const bool sorted = use_k || use_p;
    if (sorted) std::sort(idx, idx + n, before);

    // Unnormalized probabilities in place of the logits of the candidates.
    float z_max = -std::numeric_limits<float>::infinity();
    for (index_t i = 0; i < n; ++i) z_max = std::max(z_max, z[idx[i]]);
    if (!std::isfinite(z_max)) return argmax(z, vocab_);  // all -inf / NaN: nothing to draw from
    double total = 0;
    for (index_t i = 0; i < n; ++i) {
      const float e = std::exp(z[idx[i]] - z_max);
      z[idx[i]] = e;
      total += e;
    }

    if (use_p) {  // keep token i while the mass before it is < top_p
      const double limit = static_cast<double>(p_.top_p) * total;
      double cum = 0;
      index_t keep = 0;
      while (keep < n && cum < limit) cum += z[idx[keep++]];
      n = std::max<index_t>(keep, 1);
    }

    // min-p, relative to the most likely candidate (p_max = 1 unnormalized); then the draw.
    const float floor = p_.min_p;  // p_i >= min_p * p_max  <=>  e_i >= min_p
    total = 0;
    for (index_t i = 0; i < n; ++i) {
      const float e = z[idx[i]];
      if (e >= floor) total += e;
    }
    const double target = rng_.uniform() * total;
    double cum = 0;
    std::int32_t last = idx[0];
    for (index_t i = 0; i < n; ++i) {
      const float e = z[idx[i]];
      if (e < floor) continue;
      last = idx[i];
      cum += e;
      if (target < cum) return last;
    }
    return last;  // rounding: the last kept candidate
  }

 private:
  static std::int32_t argmax(const float* z, index_t n) noexcept {
    index_t best = 0;
    for (index_t i = 1; i < n; ++i)
      if (z[i] > z[best] || (std::isnan(z[best]) && !std::isnan(z[i]))) best = i;
    return static_cast<std::int32_t>(best);
  }

  void apply_repetition_penalty(float* z, std::span<const std::int32_t> history) {
    const float penalty = p_.repetition_penalty;
    for (std::size_t i = 0; i < history.size(); ++i) {
      const std::int32_t id = history[i];
      if (id < 0 || id >= vocab_) {
        for (std::size_t j = 0; j < i; ++j) seen_[static_cast<std::size_t>(history[j])] = 0;
        throw range_error("sampler::sample: history id " + std::to_string(id) + " at index " + std::to_string(i) +
                          " is out of range: the vocabulary has " + std::to_string(vocab_) + " tokens");
      }
      auto& s = seen_[static_cast<std::size_t>(id)];
      if (s) continue;
      s = 1;
      z[id] = z[id] < 0.f ? z[id] * penalty : z[id] / penalty;
    }
    for (std::int32_t id : history) seen_[static_cast<std::size_t>(id)] = 0;
  }

  index_t vocab_;
  sampling_params p_;
  detail::xoshiro256 rng_;
  std::vector<float> work_;          // (vocab) penalized / scaled logits, then probabilities
  std::vector<std::int32_t> order_;  // (vocab) candidate ids
  std::vector<std::uint8_t> seen_;   // (vocab) ids already penalized in this call
};

}  // namespace v0
}  // namespace tessera
