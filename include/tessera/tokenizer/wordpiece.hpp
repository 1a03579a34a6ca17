// tessera/tokenizer/wordpiece.hpp: WordPiece (BERT), greedy longest-match-first per word.
//
// A word is matched from its start against the vocabulary, longest piece first; pieces after the
// first carry `continuing_prefix` ("##" in tokenizer.json). A word with a character no piece
// covers, or longer than `max_input_chars_per_word` characters, becomes the single unknown token.
// GGUF `bert` vocabularies spell pieces the other way round (llama.cpp's convention): a
// word-initial piece starts with U+2581 and continuations carry no prefix; `word_prefix` and
// `continuing_prefix` express both. Candidate lengths are capped by the longest vocabulary piece,
// so the work per word is O(length x longest piece).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <tessera/tokenizer/common.hpp>
#include <tessera/tokenizer/unicode.hpp>

namespace tessera {
inline namespace v0 {
namespace tok {

class wordpiece_model final : public model {
 public:
  struct options {
    std::string unk_token = "[UNK]";
    std::string word_prefix;               // "" (HF) or U+2581 (GGUF)
    std::string continuing_prefix = "##";  // "##" (HF) or "" (GGUF)
    index_t max_input_chars_per_word = 100;
  };

  wordpiece_model(std::vector<std::string> vocab, options o) : o_(std::move(o)) {
    set_vocab(std::move(vocab));
    init();
  }

  static std::unique_ptr<wordpiece_model> from_json(const json& j) {
    options o;
    o.unk_token = detail::value_or<std::string>(j, "unk_token", "[UNK]");
    o.continuing_prefix = detail::value_or<std::string>(j, "continuing_subword_prefix", "##");
    o.max_input_chars_per_word = detail::value_or<index_t>(j, "max_input_chars_per_word", 100);
    auto p = std::unique_ptr<wordpiece_model>(new wordpiece_model(std::move(o)));
    p->set_vocab_from_json(j.at("vocab"), "WordPiece");
    p->init();
    return p;
  }

  const options& opts() const noexcept { return o_; }

  void encode(std::string_view word, std::vector<std::int32_t>& out) const override {
    if (word.empty()) return;
    if (static_cast<index_t>(utf8_count(word)) > o_.max_input_chars_per_word) {
      out.push_back(unk());
      return;
    }
    const std::size_t before = out.size();
    std::string cand;
    for (std::size_t start = 0; start < word.size();) {
      const std::string& prefix = start == 0 ? o_.word_prefix : o_.continuing_prefix;
      std::size_t end = std::min(word.size(), start + max_piece_bytes_);
      while (end < word.size() && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80) --end;  // char boundary
      std::int32_t found = -1;
      while (end > start) {
        cand.assign(prefix);
        cand.append(word.substr(start, end - start));
        found = token_to_id(cand);
        if (found >= 0) break;
        do { --end; } while (end > start && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80);
      }
      if (found < 0) {
        out.resize(before);
        out.push_back(unk());
        return;
      }
      out.push_back(found);
      start = end;
    }
  }

 private:
  explicit wordpiece_model(options o) : o_(std::move(o)) {}

  void init() {
    unk_id_ = token_to_id(o_.unk_token);
    max_piece_bytes_ = 1;
    for (const auto& t : id_to_token_) max_piece_bytes_ = std::max(max_piece_bytes_, t.size());
  }

  std::int32_t unk() const {
    if (unk_id_ < 0) throw config_error("tokenizer: WordPiece unknown token \"" + o_.unk_token + "\" is not in the vocabulary");
    return unk_id_;
  }

  options o_;
  std::int32_t unk_id_ = -1;
  std::size_t max_piece_bytes_ = 1;
};

}  // namespace tok
}  // namespace v0
}  // namespace tessera
