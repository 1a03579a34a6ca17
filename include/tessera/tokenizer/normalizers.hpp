// tessera/tokenizer/normalizers.hpp: text normalizers (HF tokenizers `normalizers`).
//
// NFC / NFD / NFKC / NFKD, StripAccents, Lowercase, BertNormalizer, Replace, Prepend, Strip,
// Sequence, plus Precompiled (SentencePiece's charsmap, see precompiled.hpp). Input and output
// are valid UTF-8.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <tessera/tokenizer/common.hpp>
#include <tessera/tokenizer/precompiled.hpp>
#include <tessera/tokenizer/unicode.hpp>

namespace tessera {
inline namespace v0 {
namespace tok {

/// Unicode normalization form.
class unicode_normalizer final : public normalizer {
 public:
  explicit unicode_normalizer(normal_form f) : form_(f) {}
  void normalize(std::string& s) const override { s = tok::normalize(s, form_); }

 private:
  normal_form form_;
};

/// Drops combining marks (use after NFD).
class strip_accents_normalizer final : public normalizer {
 public:
  void normalize(std::string& s) const override { s = drop_marks(s); }
};

class lowercase_normalizer final : public normalizer {
 public:
  void normalize(std::string& s) const override { s = to_lower(s); }
};

/// BERT's normalizer: clean_text (drop NUL, U+FFFD and control characters, map whitespace to a
/// space), pad CJK ideographs with spaces, strip accents (default: as lowercase), lowercase.
class bert_normalizer final : public normalizer {
 public:
  struct options {
    bool clean_text = true;
    bool handle_chinese_chars = true;
    bool strip_accents = true;
    bool lowercase = true;
  };
  explicit bert_normalizer(options o) : o_(o) {}

  void normalize(std::string& s) const override {
    if (o_.clean_text || o_.handle_chinese_chars) {
      std::string out;
      out.reserve(s.size() + s.size() / 4);
      for (std::size_t i = 0; i < s.size();) {
        const std::size_t start = i;
        const char32_t c = utf8_next(s, i);
        if (o_.clean_text) {
          const bool ws = c == '\t' || c == '\n' || c == '\r' || is_whitespace(c);
          if (ws) { out += ' '; continue; }
          if (c == 0 || c == 0xFFFD || is_other(c)) continue;
        }
        if (o_.handle_chinese_chars && is_chinese_char(c)) {
          out += ' ';
          out.append(s.data() + start, i - start);
          out += ' ';
          continue;
        }
        out.append(s.data() + start, i - start);
      }
      s = std::move(out);
    }
    if (o_.strip_accents) s = strip_accents(s);
    if (o_.lowercase) s = to_lower(s);
  }

 private:
  options o_;
};

/// Replaces every match of a literal string or a regex with `content`.
class replace_normalizer final : public normalizer {
 public:
  replace_normalizer(regex re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void normalize(std::string& s) const override { s = replace_all(s); }
  std::string replace_all(std::string_view s) const {
    std::string out;
    std::size_t prev = 0;
    re_.for_each_match(s, [&](std::size_t b, std::size_t e) {
      out.append(s.data() + prev, b - prev);
      out += content_;
      prev = e;
    });
    out.append(s.data() + prev, s.size() - prev);
    return out;
  }

 private:
  regex re_;
  std::string content_;
};

/// Prepends `prefix` to a non-empty string.
class prepend_normalizer final : public normalizer {
 public:
  explicit prepend_normalizer(std::string p) : prefix_(std::move(p)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

/// Strips whitespace on the left and/or right.
class strip_normalizer final : public normalizer {
 public:
  strip_normalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s) const override {
    const std::u32string cps = utf8_decode(s);
    std::size_t b = 0, e = cps.size();
    if (left_) while (b < e && is_whitespace(cps[b])) ++b;
    if (right_) while (e > b && is_whitespace(cps[e - 1])) --e;
    std::string out;
    for (std::size_t i = b; i < e; ++i) utf8_append(out, cps[i]);
    s = std::move(out);
  }

 private:
  bool left_, right_;
};

/// SentencePiece's precompiled character map (T5, ALBERT, XLM-R, ...).
class precompiled_normalizer final : public normalizer {
 public:
  explicit precompiled_normalizer(precompiled_charsmap m) : map_(std::move(m)) {}
  void normalize(std::string& s) const override { s = map_.normalize(s); }

 private:
  precompiled_charsmap map_;
};

class sequence_normalizer final : public normalizer {
 public:
  explicit sequence_normalizer(std::vector<std::unique_ptr<normalizer>> n) : items_(std::move(n)) {}
  void normalize(std::string& s) const override {
    for (const auto& n : items_) n->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<normalizer>> items_;
};

namespace detail {

/// A `{"String": s}` or `{"Regex": r}` pattern object as a regex.
inline regex pattern_from_json(const json& p, const char* what) {
  if (p.is_string()) return regex(regex_escape(p.get<std::string>()));
  if (p.is_object() && p.contains("String")) return regex(regex_escape(p["String"].get<std::string>()));
  if (p.is_object() && p.contains("Regex")) return regex(p["Regex"].get<std::string>());
  throw config_error(std::string("tokenizer.json: ") + what + " pattern is neither String nor Regex");
}

}  // namespace detail

/// A normalizer from its tokenizer.json object; nullptr for null. Unsupported types are a
/// config_error naming them.
inline std::unique_ptr<normalizer> normalizer_from_json(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = detail::type_of(j, "normalizer");
  if (type == "NFC") return std::make_unique<unicode_normalizer>(normal_form::nfc);
  if (type == "NFD") return std::make_unique<unicode_normalizer>(normal_form::nfd);
  if (type == "NFKC") return std::make_unique<unicode_normalizer>(normal_form::nfkc);
  if (type == "NFKD") return std::make_unique<unicode_normalizer>(normal_form::nfkd);
  if (type == "StripAccents") return std::make_unique<strip_accents_normalizer>();
  if (type == "Lowercase") return std::make_unique<lowercase_normalizer>();
  if (type == "BertNormalizer") {
    bert_normalizer::options o;
    o.clean_text = detail::value_or(j, "clean_text", true);
    o.handle_chinese_chars = detail::value_or(j, "handle_chinese_chars", true);
    o.lowercase = detail::value_or(j, "lowercase", true);
    o.strip_accents = detail::value_or(j, "strip_accents", o.lowercase);
    return std::make_unique<bert_normalizer>(o);
  }
  if (type == "Replace")
    return std::make_unique<replace_normalizer>(detail::pattern_from_json(j.at("pattern"), "Replace"),
                                                j.at("content").get<std::string>());
  if (type == "Prepend") return std::make_unique<prepend_normalizer>(j.at("prepend").get<std::string>());
  if (type == "Strip")
    return std::make_unique<strip_normalizer>(detail::value_or(j, "strip_left", true),
                                              detail::value_or(j, "strip_right", true));
  if (type == "Precompiled") {
    const auto& m = j.at("precompiled_charsmap");
    if (m.is_null()) return nullptr;
    return std::make_unique<precompiled_normalizer>(precompiled_charsmap::from_base64(m.get<std::string>()));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<normalizer>> items;
    for (const auto& n : j.at("normalizers"))
      if (auto p = normalizer_from_json(n)) items.push_back(std::move(p));
    return std::make_unique<sequence_normalizer>(std::move(items));
  }
  detail::unsupported("normalizer", type);
}

}  // namespace tok
}  // namespace v0
}  // namespace tessera
