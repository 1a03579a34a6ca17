// tessera/tokenizer/sentencepiece.hpp: SentencePiece BPE by piece score (GGUF `llama` vocabularies:
// Llama-2, Mistral, Phi-3, ...), as llama.cpp's llm_tokenizer_spm and SentencePiece do.
//
// The text (spaces already replaced by U+2581) starts as one symbol per UTF-8 character. A
// max-heap of adjacent pairs whose concatenation is a vocabulary piece, ordered by that piece's
// score (ties: leftmost), merges greedily over a linked list of symbols. A final symbol that is
// not a piece (a character missing from the vocabulary) falls back to its bytes as <0xXX> tokens.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <string>
#include <string_view>
#include <vector>

#include <tessera/tokenizer/common.hpp>
#include <tessera/tokenizer/unicode.hpp>

namespace tessera {
inline namespace v0 {
namespace tok {

class spm_bpe_model final : public model {
 public:
  spm_bpe_model(std::vector<std::string> vocab, std::vector<float> scores, std::int32_t unk_id)
      : scores_(std::move(scores)), unk_id_(unk_id) {
    if (scores_.size() != vocab.size())
      throw config_error("tokenizer: " + std::to_string(scores_.size()) + " scores for " +
                         std::to_string(vocab.size()) + " tokens");
    set_vocab(std::move(vocab));
    char buf[8];
    for (int b = 0; b < 256; ++b) {
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      std::int32_t id = token_to_id(buf);
      if (id < 0) id = token_to_id(std::string(1, static_cast<char>(b)));
      byte_ids_[static_cast<std::size_t>(b)] = id >= 0 ? id : unk_id_;
    }
    // Pieces never span a U+2581 that follows another character (true of SentencePiece
    // vocabularies trained with split_by_whitespace): then each such word merges independently,
    // exactly as in the whole text, and repeated words can be cached.
    split_words_ = std::none_of(id_to_token_.begin(), id_to_token_.end(), [](const std::string& t) {
      const std::size_t first_other = t.find_first_not_of("\xE2\x96\x81");
      return first_other != std::string::npos && t.find(space, first_other) != std::string::npos;
    });
  }

  void encode(std::string_view text, std::vector<std::int32_t>& out) const override {
    if (!split_words_) return encode_word(text, out);
    std::size_t start = 0;
    for (std::size_t pos = text.find(space, 1); pos != std::string_view::npos; pos = text.find(space, pos + 3)) {
      if (pos >= 3 && text.compare(pos - 3, 3, space) == 0) continue;  // inside a run of U+2581
      cached_encode(text.substr(start, pos - start), out);
      start = pos;
    }
    cached_encode(text.substr(start), out);
  }

  float score(std::int32_t id) const { return scores_.at(static_cast<std::size_t>(id)); }

 private:
  static constexpr std::string_view space = "\xE2\x96\x81";

  void cached_encode(std::string_view word, std::vector<std::int32_t>& out) const {
    if (word.empty()) return;
    if (word.size() > 64) return encode_word(word, out);
    {
      std::shared_lock lock(cache_mutex_);
      const auto it = cache_.find(word);
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    const std::size_t before = out.size();
    encode_word(word, out);
    std::unique_lock lock(cache_mutex_);
    if (cache_.size() >= (1u << 16)) cache_.clear();
    cache_.emplace(std::string(word), std::vector<std::int32_t>(out.begin() + static_cast<std::ptrdiff_t>(before), out.end()));
  }

  void encode_word(std::string_view text, std::vector<std::int32_t>& out) const {
    struct symbol {
      std::int32_t prev, next;
      std::uint32_t off, len;
    };
    struct bigram {
      float score;
      std::int32_t left, right;
      std::uint32_t size;
      bool operator<(const bigram& o) const noexcept {  // top = highest score, then leftmost
        return score < o.score || (score == o.score && left > o.left);
      }
    };
    std::vector<symbol> syms;
    syms.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
      const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(utf8_len(static_cast<unsigned char>(text[i]))), text.size() - i);
      const auto idx = static_cast<std::int32_t>(syms.size());
      syms.push_back({idx - 1, i + n == text.size() ? -1 : idx + 1, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(n)});
      i += n;
    }
    std::vector<bigram> heap;
    heap.reserve(syms.size());
    auto try_add = [&](std::int32_t l, std::int32_t r) {
      if (l < 0 || r < 0) return;
      const auto& a = syms[static_cast<std::size_t>(l)];
      const auto& b = syms[static_cast<std::size_t>(r)];
      const std::int32_t id = token_to_id(text.substr(a.off, a.len + b.len));
      if (id < 0) return;
      heap.push_back({scores_[static_cast<std::size_t>(id)], l, r, a.len + b.len});
      std::push_heap(heap.begin(), heap.end());
    };
    for (std::int32_t i = 1; i < static_cast<std::int32_t>(syms.size()); ++i) try_add(i - 1, i);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      const bigram g = heap.back();
      heap.pop_back();
      auto& l = syms[static_cast<std::size_t>(g.left)];
      auto& r = syms[static_cast<std::size_t>(g.right)];
      if (l.len == 0 || r.len == 0 || l.len + r.len != g.size) continue;
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) syms[static_cast<std::size_t>(r.next)].prev = g.left;
      try_add(l.prev, g.left);
      try_add(g.left, l.next);
    }
    if (syms.empty()) return;
    for (std::int32_t i = 0; i != -1; i = syms[static_cast<std::size_t>(i)].next) {
      const auto& s = syms[static_cast<std::size_t>(i)];
      const std::string_view t = text.substr(s.off, s.len);
      const std::int32_t id = token_to_id(t);
      if (id >= 0) {
        out.push_back(id);
      } else {
        for (unsigned char c : t) out.push_back(byte_ids_[c]);
      }
    }
  }

  std::vector<float> scores_;
  std::int32_t unk_id_;
  std::array<std::int32_t, 256> byte_ids_{};
  bool split_words_ = false;
  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<std::int32_t>, string_hash, std::equal_to<>> cache_;
};

}  // namespace tok
}  // namespace v0
}  // namespace tessera
