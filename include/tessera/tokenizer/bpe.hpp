// tessera/tokenizer/bpe.hpp: byte-pair encoding by merge rank (HF tokenizers `models::bpe`).
//
// Used by GPT-2, Llama-3, Qwen2 (byte-level pieces) and by SentencePiece-converted tokenizers in
// tokenizer.json (with byte_fallback). A word starts as one symbol per character; a min-heap of
// candidate merges ordered by (rank, position) over a linked list of symbols merges the
// lowest-ranked adjacent pair until none applies: O(n log n) per word, never quadratic.
// Results for short words are cached (thread-safe).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <tessera/tokenizer/common.hpp>
#include <tessera/tokenizer/unicode.hpp>

namespace tessera {
inline namespace v0 {
namespace tok {

class bpe_model final : public model {
 public:
  struct options {
    std::optional<std::string> unk_token;
    std::string continuing_subword_prefix;
    std::string end_of_word_suffix;
    bool fuse_unk = false;
    bool byte_fallback = false;
    bool ignore_merges = false;
  };

  /// `merges` are (left, right) token strings in rank order; a merge whose tokens are not in the
  /// vocabulary is a config_error when `strict`, skipped otherwise (GGUF files carry a few).
  bpe_model(std::vector<std::string> vocab, const std::vector<std::pair<std::string, std::string>>& merges,
            options o, bool strict = true)
      : o_(std::move(o)) {
    set_vocab(std::move(vocab));
    init(merges, strict);
  }

  /// From a tokenizer.json "model" object of type BPE.
  static std::unique_ptr<bpe_model> from_json(const json& j) {
    options o;
    if (j.contains("dropout") && !j["dropout"].is_null() && j["dropout"].get<double>() != 0.0)
      throw config_error("tokenizer.json: BPE dropout is not supported (encoding would be random)");
    o.unk_token = j.contains("unk_token") && !j["unk_token"].is_null()
                      ? std::optional<std::string>(j["unk_token"].get<std::string>())
                      : std::nullopt;
    o.continuing_subword_prefix = detail::value_or<std::string>(j, "continuing_subword_prefix", "");
    o.end_of_word_suffix = detail::value_or<std::string>(j, "end_of_word_suffix", "");
    o.fuse_unk = detail::value_or(j, "fuse_unk", false);
    o.byte_fallback = detail::value_or(j, "byte_fallback", false);
    o.ignore_merges = detail::value_or(j, "ignore_merges", false);
    std::vector<std::pair<std::string, std::string>> merges;
    for (const auto& m : j.at("merges")) {
      if (m.is_string()) {
        merges.push_back(split_merge(m.get<std::string>()));
      } else if (m.is_array() && m.size() == 2) {
        merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        throw config_error("tokenizer.json: BPE merge is neither \"a b\" nor [a, b]: " + m.dump());
      }
    }
    auto p = std::unique_ptr<bpe_model>(new bpe_model(std::move(o)));
    p->set_vocab_from_json(j.at("vocab"), "BPE");
    p->init(merges, true);
    return p;
  }

  /// "a b" -> (a, b), splitting at the first space after the first character.
  static std::pair<std::string, std::string> split_merge(const std::string& m) {
    const auto pos = m.find(' ', 1);
    if (pos == std::string::npos) throw config_error("tokenizer: BPE merge without a space: \"" + m + "\"");
    return {m.substr(0, pos), m.substr(pos + 1)};
  }

  void encode(std::string_view word, std::vector<std::int32_t>& out) const override {
    if (word.empty()) return;
    if (o_.ignore_merges) {
      const std::int32_t id = token_to_id(word);
      if (id >= 0) {
        out.push_back(id);
        return;
      }
    }
    const bool cacheable = word.size() <= max_cached_bytes;
    if (cacheable) {
      std::shared_lock lock(cache_mutex_);
      const auto it = cache_.find(word);
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    const std::size_t before = out.size();
    merge_word(word, out);
    if (cacheable) {
      std::unique_lock lock(cache_mutex_);
      if (cache_.size() >= max_cache_entries) cache_.clear();
      cache_.emplace(std::string(word), std::vector<std::int32_t>(out.begin() + static_cast<std::ptrdiff_t>(before), out.end()));
    }
  }

 private:
  static constexpr std::size_t max_cached_bytes = 256;
  static constexpr std::size_t max_cache_entries = 1 << 16;

  explicit bpe_model(options o) : o_(std::move(o)) {}

  struct merge_info {
    std::int32_t rank, new_id;
  };
  static std::uint64_t key(std::int32_t a, std::int32_t b) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }

  void init(const std::vector<std::pair<std::string, std::string>>& merges, bool strict) {
    merges_.reserve(merges.size());
    const std::size_t plen = o_.continuing_subword_prefix.size();
    for (std::size_t r = 0; r < merges.size(); ++r) {
      const auto& [a, b] = merges[r];
      const std::int32_t ia = token_to_id(a), ib = token_to_id(b);
      std::string merged = a;
      merged += (plen && b.compare(0, plen, o_.continuing_subword_prefix) == 0) ? b.substr(plen) : b;
      const std::int32_t in = token_to_id(merged);
      if (ia < 0 || ib < 0 || in < 0) {
        if (strict) throw config_error("tokenizer: BPE merge \"" + a + " " + b + "\" uses a token not in the vocabulary");
        continue;
      }
      merges_.emplace(key(ia, ib), merge_info{static_cast<std::int32_t>(r), in});
    }
    unk_id_ = o_.unk_token ? token_to_id(*o_.unk_token) : -1;
    byte_ids_.fill(-1);
    if (o_.byte_fallback) {
      char buf[8];
      for (int b = 0; b < 256; ++b) {
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        byte_ids_[static_cast<std::size_t>(b)] = token_to_id(buf);
      }
    }
  }

  struct symbol {
    std::int32_t id;
    std::int32_t prev, next;
    std::uint32_t len;  // bytes of the original word; 0 once merged away
  };
  struct candidate {
    std::int32_t rank, pos, new_id;
    bool operator<(const candidate& o) const noexcept {  // max-heap on "greater" = lower rank, lower pos
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };

  void merge_word(std::string_view w, std::vector<std::int32_t>& out) const {
    std::vector<symbol> syms;
    syms.reserve(w.size());
    auto add = [&](std::int32_t id, std::size_t len) {
      const auto n = static_cast<std::int32_t>(syms.size());
      syms.push_back({id, n - 1, -1, static_cast<std::uint32_t>(len)});
      if (n > 0) syms[static_cast<std::size_t>(n - 1)].next = n;
    };
    std::int32_t unk_pending = -1;
    std::size_t unk_len = 0;
    std::string tmp;
    for (std::size_t i = 0; i < w.size();) {
      const std::size_t b = i;
      i += std::min<std::size_t>(static_cast<std::size_t>(utf8_len(static_cast<unsigned char>(w[i]))), w.size() - i);
      const std::string_view ch = w.substr(b, i - b);
      std::int32_t id;
      if (o_.continuing_subword_prefix.empty() && o_.end_of_word_suffix.empty()) {
        id = token_to_id(ch);
      } else {
        tmp.clear();
        if (b > 0) tmp += o_.continuing_subword_prefix;
        tmp += ch;
        if (i == w.size()) tmp += o_.end_of_word_suffix;
        id = token_to_id(tmp);
      }
      if (id >= 0) {
        if (unk_pending >= 0) { add(unk_pending, unk_len); unk_pending = -1; }
        add(id, ch.size());
        continue;
      }
      if (o_.byte_fallback) {
        bool all = true;
        for (unsigned char c : ch) all &= byte_ids_[c] >= 0;
        if (all) {
          if (unk_pending >= 0) { add(unk_pending, unk_len); unk_pending = -1; }
          for (unsigned char c : ch) add(byte_ids_[c], 1);
          continue;
        }
      }
      if (unk_id_ >= 0) {
        if (unk_pending >= 0 && o_.fuse_unk) {
          unk_len += ch.size();
        } else {
          if (unk_pending >= 0) add(unk_pending, unk_len);
          unk_pending = unk_id_;
          unk_len = ch.size();
        }
      }
    }
    if (unk_pending >= 0) add(unk_pending, unk_len);

    std::vector<candidate> heap;
    heap.reserve(syms.size());
    auto push = [&](std::int32_t pos) {
      const auto& s = syms[static_cast<std::size_t>(pos)];
      if (s.next < 0) return;
      const auto it = merges_.find(key(s.id, syms[static_cast<std::size_t>(s.next)].id));
      if (it == merges_.end()) return;
      heap.push_back({it->second.rank, pos, it->second.new_id});
      std::push_heap(heap.begin(), heap.end());
    };
    for (std::int32_t p = 0; p + 1 < static_cast<std::int32_t>(syms.size()); ++p) push(p);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      const candidate top = heap.back();
      heap.pop_back();
      auto& s = syms[static_cast<std::size_t>(top.pos)];
      if (s.len == 0 || s.next < 0) continue;
      auto& r = syms[static_cast<std::size_t>(s.next)];
      const auto it = merges_.find(key(s.id, r.id));
      if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // stale entry
      s.id = top.new_id;
      s.len += r.len;
      r.len = 0;
      s.next = r.next;
      if (s.next >= 0) syms[static_cast<std::size_t>(s.next)].prev = top.pos;
      if (s.prev >= 0) push(s.prev);
      push(top.pos);
    }
    for (const auto& s : syms)
      if (s.len) out.push_back(s.id);
  }

  options o_;
  std::unordered_map<std::uint64_t, merge_info> merges_;
  std::int32_t unk_id_ = -1;
  std::array<std::int32_t, 256> byte_ids_{};
  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<std::int32_t>, string_hash, std::equal_to<>> cache_;
};

}  // namespace tok
}  // namespace v0
}  // namespace tessera
