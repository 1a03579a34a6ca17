// tessera/tokenizer/pre_tokenizers.hpp: pre-tokenizers (HF tokenizers `pre_tokenizers`).
//
// ByteLevel (GPT-2 regex optional, add_prefix_space, bytes -> printable code points), Split
// (regex or literal, behaviours Removed / Isolated / MergedWithPrevious / MergedWithNext /
// Contiguous, invert), Metaspace, Whitespace, WhitespaceSplit, BertPreTokenizer, Digits,
// Punctuation, Sequence. Splitting follows HF's NormalizedString::split exactly: a pattern
// yields (span, is_match) pairs covering the text, the behaviour merges or drops them, and empty
// pieces are dropped.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tessera/tokenizer/common.hpp>
#include <tessera/tokenizer/normalizers.hpp>
#include <tessera/tokenizer/unicode.hpp>

namespace tessera {
inline namespace v0 {
namespace tok {

/// The regexes of well-known pre-tokenizers (as in their tokenizer.json files).
namespace patterns {
inline constexpr const char* gpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr const char* llama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr const char* qwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}  // namespace patterns

enum class split_behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

namespace detail {

struct span {
  std::size_t b, e;
  bool is_match;
};

/// (span, is_match) pairs of regex matches and the gaps between them.
inline std::vector<span> regex_spans(const regex& re, std::string_view s, bool invert) {
  std::vector<span> out;
  if (s.empty()) {
    out.push_back({0, 0, invert});
    return out;
  }
  std::size_t prev = 0;
  re.for_each_match(s, [&](std::size_t b, std::size_t e) {
    if (prev != b) out.push_back({prev, b, invert});
    out.push_back({b, e, !invert});
    prev = e;
  });
  if (prev != s.size()) out.push_back({prev, s.size(), invert});
  return out;
}

/// Each character satisfying `pred` is a match of its own.
template <class Pred>
std::vector<span> char_spans(std::string_view s, Pred pred, bool invert = false) {
  std::vector<span> out;
  if (s.empty()) {
    out.push_back({0, 0, invert});
    return out;
  }
  std::size_t last = 0;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t b = i;
    const char32_t c = utf8_next(s, i);
    if (pred(c)) {
      if (last < b) out.push_back({last, b, invert});
      out.push_back({b, i, !invert});
      last = i;
    }
  }
  if (last < s.size()) out.push_back({last, s.size(), invert});
  return out;
}

/// Applies a split behaviour: the (begin, end) ranges to keep.
inline std::vector<std::pair<std::size_t, std::size_t>> apply_behavior(const std::vector<span>& m,
                                                                       split_behavior beh) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  switch (beh) {
    case split_behavior::isolated:
      for (const auto& x : m) out.emplace_back(x.b, x.e);
      break;
    case split_behavior::removed:
      for (const auto& x : m)
        if (!x.is_match) out.emplace_back(x.b, x.e);
      break;
    case split_behavior::contiguous: {
      bool prev = false;
      for (const auto& x : m) {
        if (x.is_match == prev && !out.empty()) out.back().second = x.e;
        else out.emplace_back(x.b, x.e);
        prev = x.is_match;
      }
      break;
    }
    case split_behavior::merged_with_previous: {
      bool prev = false;
      for (const auto& x : m) {
        if (x.is_match && !prev && !out.empty()) out.back().second = x.e;
        else out.emplace_back(x.b, x.e);
        prev = x.is_match;
      }
      break;
    }
    case split_behavior::merged_with_next: {
      bool prev = false;
      for (auto it = m.rbegin(); it != m.rend(); ++it) {
        if (it->is_match && !prev && !out.empty()) out.back().first = it->b;
        else out.emplace_back(it->b, it->e);
        prev = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  return out;
}

/// Replaces each piece by its non-empty sub-pieces computed by `spans_of(text)` + `beh`.
template <class SpansOf>
void split_pieces(std::vector<piece>& pieces, split_behavior beh, SpansOf&& spans_of) {
  std::vector<piece> out;
  out.reserve(pieces.size() * 2);
  for (auto& p : pieces) {
    const auto ranges = apply_behavior(spans_of(std::string_view(p.text)), beh);
    for (const auto& [b, e] : ranges)
      if (e > b) out.push_back({p.text.substr(b, e - b), p.first && b == 0});
  }
  pieces = std::move(out);
}

inline split_behavior behavior_from_json(const json& j) {
  const std::string b = j.get<std::string>();
  if (b == "Removed") return split_behavior::removed;
  if (b == "Isolated") return split_behavior::isolated;
  if (b == "MergedWithPrevious") return split_behavior::merged_with_previous;
  if (b == "MergedWithNext") return split_behavior::merged_with_next;
  if (b == "Contiguous") return split_behavior::contiguous;
  throw config_error("tokenizer.json: unsupported split behavior \"" + b + "\"");
}

/// GPT-2's byte -> printable code point table, each entry UTF-8 encoded.
inline const std::array<std::string, 256>& byte_to_unicode() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      utf8_append(t[static_cast<std::size_t>(b)], cp);
    }
    return t;
  }();
  return table;
}

/// The inverse: code point -> byte, -1 where none (code points < 512 only).
inline const std::array<int, 512>& unicode_to_byte() {
  static const std::array<int, 512> table = [] {
    std::array<int, 512> t;
    t.fill(-1);
    const auto& fwd = byte_to_unicode();
    for (int b = 0; b < 256; ++b) {
      std::size_t pos = 0;
      t[utf8_next(fwd[static_cast<std::size_t>(b)], pos)] = b;
    }
    return t;
  }();
  return table;
}

}  // namespace detail

/// GPT-2 byte-level: optional prefix space, optional GPT-2 regex split, then every byte mapped
/// to its printable code point.
class byte_level_pre_tokenizer final : public pre_tokenizer {
 public:
  byte_level_pre_tokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), re_(use_regex ? regex(patterns::gpt2) : regex()) {}

  void pre_tokenize(std::vector<piece>& pieces) const override {
    if (add_prefix_space_)
      for (auto& p : pieces)
        if (!p.text.empty() && p.text[0] != ' ') p.text.insert(0, 1, ' ');
    if (!re_.empty())
      detail::split_pieces(pieces, split_behavior::isolated,
                           [&](std::string_view s) { return detail::regex_spans(re_, s, false); });
    const auto& table = detail::byte_to_unicode();
    for (auto& p : pieces) {
      std::string mapped;
      mapped.reserve(p.text.size() * 2);
      for (unsigned char c : p.text) mapped += table[c];
      p.text = std::move(mapped);
    }
  }

 private:
  bool add_prefix_space_;
  regex re_;
};

/// Split on a regex (or literal) with a behaviour, optionally inverted.
class split_pre_tokenizer final : public pre_tokenizer {
 public:
  split_pre_tokenizer(regex re, split_behavior beh, bool invert)
      : re_(std::move(re)), beh_(beh), invert_(invert) {}
  void pre_tokenize(std::vector<piece>& pieces) const override {
    detail::split_pieces(pieces, beh_, [&](std::string_view s) { return detail::regex_spans(re_, s, invert_); });
  }

 private:
  regex re_;
  split_behavior beh_;
  bool invert_;
};

enum class prepend_scheme { always, first, never };

/// SentencePiece's whitespace: ' ' -> replacement (U+2581), prefix by scheme, split before each
/// replacement character.
class metaspace_pre_tokenizer final : public pre_tokenizer {
 public:
  metaspace_pre_tokenizer(std::string replacement, prepend_scheme scheme, bool split)
      : rep_(std::move(replacement)), scheme_(scheme), split_(split) {}

  void pre_tokenize(std::vector<piece>& pieces) const override {
    for (auto& p : pieces) {
      std::string t;
      t.reserve(p.text.size() + 8);
      for (char c : p.text) {
        if (c == ' ') t += rep_;
        else t += c;
      }
      const bool starts = t.compare(0, rep_.size(), rep_) == 0;
      if (!starts && (scheme_ == prepend_scheme::always || (scheme_ == prepend_scheme::first && p.first)))
        t.insert(0, rep_);
      p.text = std::move(t);
    }
    if (split_) {
      const char32_t rc = utf8_decode(rep_).at(0);
      detail::split_pieces(pieces, split_behavior::merged_with_next,
                           [&](std::string_view s) { return detail::char_spans(s, [&](char32_t c) { return c == rc; }); });
    }
  }

 private:
  std::string rep_;
  prepend_scheme scheme_;
  bool split_;
};

/// Splits on characters satisfying a predicate with a behaviour (WhitespaceSplit, Punctuation,
/// Digits, BertPreTokenizer's two steps).
class char_split_pre_tokenizer final : public pre_tokenizer {
 public:
  char_split_pre_tokenizer(std::function<bool(char32_t)> pred, split_behavior beh)
      : pred_(std::move(pred)), beh_(beh) {}
  void pre_tokenize(std::vector<piece>& pieces) const override {
    detail::split_pieces(pieces, beh_, [&](std::string_view s) { return detail::char_spans(s, pred_); });
  }

 private:
  std::function<bool(char32_t)> pred_;
  split_behavior beh_;
};

class sequence_pre_tokenizer final : public pre_tokenizer {
 public:
  explicit sequence_pre_tokenizer(std::vector<std::unique_ptr<pre_tokenizer>> items) : items_(std::move(items)) {}
  void pre_tokenize(std::vector<piece>& pieces) const override {
    for (const auto& p : items_) p->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<pre_tokenizer>> items_;
};

/// BERT: split on whitespace (removed), then isolate punctuation.
inline std::unique_ptr<pre_tokenizer> make_bert_pre_tokenizer() {
  std::vector<std::unique_ptr<pre_tokenizer>> v;
  v.push_back(std::make_unique<char_split_pre_tokenizer>(is_whitespace, split_behavior::removed));
  v.push_back(std::make_unique<char_split_pre_tokenizer>(is_bert_punctuation, split_behavior::isolated));
  return std::make_unique<sequence_pre_tokenizer>(std::move(v));
}

namespace detail {
/// Metaspace's "replacement" (U+2581 when absent): one character, as in HF tokenizers, where it
/// is a Rust `char`; an empty or longer string is a config_error naming it (the split on it and
/// the decoder's strip need exactly one).
inline std::string metaspace_replacement(const json& j, const char* where) {
  const std::string rep = value_or<std::string>(j, "replacement", "\xE2\x96\x81");
  if (utf8_count(rep) != 1)
    throw config_error(std::string("tokenizer.json: ") + where + " Metaspace \"replacement\" must be one character, got " +
                       std::to_string(utf8_count(rep)) + (rep.size() <= 32 ? " (\"" + rep + "\")" : std::string()));
  return rep;
}
}  // namespace detail

/// A pre-tokenizer from its tokenizer.json object; nullptr for null.
inline std::unique_ptr<pre_tokenizer> pre_tokenizer_from_json(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = detail::type_of(j, "pre_tokenizer");
  if (type == "ByteLevel")
    return std::make_unique<byte_level_pre_tokenizer>(detail::value_or(j, "add_prefix_space", true),
                                                      detail::value_or(j, "use_regex", true));
  if (type == "Split")
    return std::make_unique<split_pre_tokenizer>(detail::pattern_from_json(j.at("pattern"), "Split"),
                                                 detail::behavior_from_json(j.at("behavior")),
                                                 detail::value_or(j, "invert", false));
  if (type == "Metaspace") {
    const std::string rep = detail::metaspace_replacement(j, "pre_tokenizer");
    prepend_scheme scheme = prepend_scheme::always;
    if (j.contains("prepend_scheme")) {
      const std::string s = j["prepend_scheme"].get<std::string>();
      if (s == "always") scheme = prepend_scheme::always;
      else if (s == "first") scheme = prepend_scheme::first;
      else if (s == "never") scheme = prepend_scheme::never;
      else throw config_error("tokenizer.json: unsupported Metaspace prepend_scheme \"" + s + "\"");
    } else if (j.contains("add_prefix_space")) {
      scheme = j["add_prefix_space"].get<bool>() ? prepend_scheme::always : prepend_scheme::never;
    }
    return std::make_unique<metaspace_pre_tokenizer>(rep, scheme, detail::value_or(j, "split", true));
  }
  if (type == "Whitespace")
    return std::make_unique<split_pre_tokenizer>(regex(R"(\w+|[^\w\s]+)"), split_behavior::removed, true);
  if (type == "WhitespaceSplit")
    return std::make_unique<char_split_pre_tokenizer>(is_whitespace, split_behavior::removed);
  if (type == "BertPreTokenizer") return make_bert_pre_tokenizer();
  if (type == "Digits")
    return std::make_unique<char_split_pre_tokenizer>(
        is_numeric, detail::value_or(j, "individual_digits", false) ? split_behavior::isolated : split_behavior::contiguous);
  if (type == "Punctuation")
    return std::make_unique<char_split_pre_tokenizer>(
        is_bert_punctuation, j.contains("behavior") ? detail::behavior_from_json(j["behavior"]) : split_behavior::isolated);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<pre_tokenizer>> items;
    for (const auto& p : j.at("pretokenizers"))
      if (auto q = pre_tokenizer_from_json(p)) items.push_back(std::move(q));
    return std::make_unique<sequence_pre_tokenizer>(std::move(items));
  }
  detail::unsupported("pre_tokenizer", type);
}

}  // namespace tok
}  // namespace v0
}  // namespace tessera
