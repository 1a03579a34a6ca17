// tessera/tokenizer/unigram.hpp: the Unigram language model (T5, ALBERT, XLNet, SentencePiece
// unigram) with Viterbi decoding, as HF tokenizers' `models::unigram` (encode_optimized).
//
// best[e] = max over pieces text[b, e) of best[b] + score(piece); pieces are found with a byte
// trie walked from each character start. A character that starts no single-character piece gets
// an unknown edge scored min_score - 10. Consecutive unknowns are fused; with byte_fallback an
// unknown span becomes its <0xXX> byte tokens.
//
// Scores are the f64 values HF tokenizers holds: pieces of a run such as "-----..." can be
// ordered several ways whose score sums differ only in the last bit, so the winner depends on
// the exact doubles. HF reads tokenizer.json with serde_json's fast float path (significand as
// u64 → f64, then one multiply or divide by a power of ten), which is not always correctly
// rounded (24 of the 800 scores of the unigram_t5 fixture differ from strtod's by one ulp);
// `serde_json_f64` reproduces it. Ties are broken as HF does: the first candidate found stays.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <tessera/tokenizer/common.hpp>
#include <tessera/tokenizer/unicode.hpp>

namespace tessera {
inline namespace v0 {
namespace tok {
namespace detail {

/// The double serde_json (without its `float_roundtrip` feature, as HF tokenizers is built)
/// reads for the JSON number whose correctly rounded value is `v`. The number's text is taken to
/// be the shortest round-trip form of v (what serde_json / Python write); its decimal digits
/// accumulate into a u64 (digits past u64 overflow are dropped, integer ones raise the exponent)
/// and the result is `double(significand)` times or divided by 10^|exponent|.
inline double serde_json_f64(double v) {
  if (!std::isfinite(v) || v == 0) return v;
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  const std::string_view text(buf, static_cast<std::size_t>(res.ptr - buf));
  std::size_t i = 0;
  const bool negative = text[i] == '-';
  if (negative) ++i;
  std::uint64_t significand = 0;
  int exponent = 0;
  bool overflowed = false, fraction = false;
  for (; i < text.size() && text[i] != 'e'; ++i) {
    if (text[i] == '.') {
      fraction = true;
      continue;
    }
    const auto digit = static_cast<std::uint64_t>(text[i] - '0');
    constexpr std::uint64_t max = ~std::uint64_t{0};
    if (!overflowed && (significand > max / 10 || (significand == max / 10 && digit > max % 10))) overflowed = true;
    if (overflowed) {
      if (!fraction) ++exponent;  // integer digits past the overflow still scale the value
      continue;
    }
    significand = significand * 10 + digit;
    if (fraction) --exponent;
  }
  if (i < text.size()) exponent += std::atoi(text.data() + i + 1);
  static const auto pow10 = [] {
    std::array<double, 309> p{};
    for (int k = 0; k < 309; ++k) p[static_cast<std::size_t>(k)] = std::strtod(("1e" + std::to_string(k)).c_str(), nullptr);
    return p;
  }();
  double f = static_cast<double>(significand);
  while (true) {
    const int e = exponent < 0 ? -exponent : exponent;
    if (e < 309) {
      f = exponent >= 0 ? f * pow10[static_cast<std::size_t>(e)] : f / pow10[static_cast<std::size_t>(e)];
      break;
    }
    if (exponent >= 0) return v;  // out of serde's range: it would have refused the file
    f /= 1e308;
    exponent += 308;
  }
  return negative ? -f : f;
}

}  // namespace detail

class unigram_model final : public model {
 public:
  unigram_model(std::vector<std::string> vocab, std::vector<double> scores, std::int32_t unk_id, bool byte_fallback)
      : scores_(std::move(scores)), unk_id_(unk_id), byte_fallback_(byte_fallback) {
    if (scores_.size() != vocab.size())
      throw config_error("tokenizer: Unigram has " + std::to_string(scores_.size()) + " scores for " +
                         std::to_string(vocab.size()) + " pieces");
    set_vocab(std::move(vocab));
    init();
  }

  static std::unique_ptr<unigram_model> from_json(const json& j) {
    std::vector<std::string> vocab;
    std::vector<double> scores;
    for (const auto& e : j.at("vocab")) {
      vocab.push_back(e.at(0).get<std::string>());
      scores.push_back(detail::serde_json_f64(e.at(1).get<double>()));
    }
    const auto unk = j.contains("unk_id") && !j["unk_id"].is_null() ? detail::id_of(j["unk_id"], "tokenizer.json: Unigram unk_id") : -1;
    return std::make_unique<unigram_model>(std::move(vocab), std::move(scores), unk,
                                           detail::value_or(j, "byte_fallback", false));
  }

  void encode(std::string_view s, std::vector<std::int32_t>& out) const override {
    if (s.empty()) return;
    struct node {
      double score = 0;
      std::int32_t start = -1, id = -1;
    };
    std::vector<node> best(s.size() + 1);
    best[0].start = 0;
    const double unk_score = min_score_ - 10.0;
    for (std::size_t b = 0; b < s.size();) {
      const std::size_t mblen = std::min<std::size_t>(static_cast<std::size_t>(utf8_len(static_cast<unsigned char>(s[b]))), s.size() - b);
      const double base = best[b].score;
      bool single = false;
      std::int32_t n = 0;  // trie root
      for (std::size_t e = b; e < s.size(); ++e) {
        const auto it = edges_.find(edge_key(n, static_cast<unsigned char>(s[e])));
        if (it == edges_.end()) break;
        n = it->second;
        const std::int32_t id = node_value_[static_cast<std::size_t>(n)];
        if (id < 0) continue;
        const double cand = base + scores_[static_cast<std::size_t>(id)];
        node& t = best[e + 1];
        if (t.start < 0 || cand > t.score) t = {cand, static_cast<std::int32_t>(b), id};
        if (e + 1 - b == mblen) single = true;
      }
      if (!single) {
        if (unk_id_ < 0) throw config_error("tokenizer: Unigram needs an unk_id for text outside its vocabulary");
        node& t = best[b + mblen];
        const double cand = base + unk_score;
        if (t.start < 0 || cand > t.score) t = {cand, static_cast<std::int32_t>(b), unk_id_};
      }
      b += mblen;
    }
    // backtrack; fuse consecutive unknowns
    std::vector<std::pair<std::int32_t, std::pair<std::size_t, std::size_t>>> path;  // id, [b, e)
    for (std::size_t e = s.size(); e > 0;) {
      const node& t = best[e];
      const auto b = static_cast<std::size_t>(t.start);
      if (t.id == unk_id_ && !path.empty() && path.back().first == unk_id_) path.back().second.first = b;
      else path.push_back({t.id, {b, e}});
      e = b;
    }
    std::reverse(path.begin(), path.end());
    for (const auto& [id, range] : path) {
      if (id != unk_id_) {
        out.push_back(id);
        continue;
      }
      const std::string_view text = s.substr(range.first, range.second - range.first);
      const std::int32_t direct = token_to_id(text);
      if (direct >= 0) {
        out.push_back(direct);
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (unsigned char c : text) all &= byte_ids_[c] >= 0;
        if (all) {
          for (unsigned char c : text) out.push_back(byte_ids_[c]);
          continue;
        }
      }
      out.push_back(unk_id_);
    }
  }

 private:
  static std::uint64_t edge_key(std::int32_t n, unsigned char c) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(n)) << 8) | c;
  }

  void init() {
    min_score_ = std::numeric_limits<double>::max();
    for (double f : scores_) min_score_ = std::min(min_score_, f);
    node_value_.assign(1, -1);
    for (std::size_t id = 0; id < id_to_token_.size(); ++id) {
      const std::string& t = id_to_token_[id];
      if (t.empty()) continue;
      std::int32_t n = 0;
      for (unsigned char c : t) {
        const auto [it, inserted] = edges_.emplace(edge_key(n, c), static_cast<std::int32_t>(node_value_.size()));
        if (inserted) node_value_.push_back(-1);
        n = it->second;
      }
      if (node_value_[static_cast<std::size_t>(n)] < 0) node_value_[static_cast<std::size_t>(n)] = static_cast<std::int32_t>(id);
    }
    char buf[8];
    for (int b = 0; b < 256; ++b) {
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      byte_ids_[static_cast<std::size_t>(b)] = token_to_id(buf);
    }
  }

  std::vector<double> scores_;
  std::int32_t unk_id_;
  bool byte_fallback_;
  double min_score_ = 0;
  std::unordered_map<std::uint64_t, std::int32_t> edges_;
  std::vector<std::int32_t> node_value_;
  std::array<std::int32_t, 256> byte_ids_{};
};

}  // namespace tok
}  // namespace v0
}  // namespace tessera
