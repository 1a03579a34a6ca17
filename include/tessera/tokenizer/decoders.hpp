// tessera/tokenizer/decoders.hpp: token strings back to text (HF tokenizers `decoders`):
// ByteLevel, Metaspace, WordPiece, ByteFallback, Fuse, Strip, Replace, Sequence. Each rewrites
// the list of token strings (HF's decode_chain); the final list is concatenated. Bytes that do not
// form valid UTF-8 become U+FFFD, as in HF.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <tessera/tokenizer/common.hpp>
#include <tessera/tokenizer/normalizers.hpp>
#include <tessera/tokenizer/pre_tokenizers.hpp>
#include <tessera/tokenizer/unicode.hpp>

namespace tessera {
inline namespace v0 {
namespace tok {

/// Printable code points back to bytes; one string for the whole list.
class byte_level_decoder final : public decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    const auto& inv = detail::unicode_to_byte();
    std::string bytes;
    for (const auto& t : tokens) {
      const std::size_t mark = bytes.size();
      bool ok = true;
      for (std::size_t i = 0; i < t.size();) {
        const char32_t c = utf8_next(t, i);
        if (c >= 512 || inv[c] < 0) { ok = false; break; }
        bytes += static_cast<char>(inv[c]);
      }
      if (!ok) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, sanitize_utf8(bytes));
  }
};

/// U+2581 -> ' '; the first token loses its replacement characters unless the scheme is never.
class metaspace_decoder final : public decoder {
 public:
  metaspace_decoder(std::string replacement, bool strip_first) : rep_(std::move(replacement)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (std::size_t k = 0; k < t.size();) {
        if (t.compare(k, rep_.size(), rep_) == 0) {
          if (!(i == 0 && strip_first_)) out += ' ';
          k += rep_.size();
        } else {
          out += t[k++];
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string rep_;
  bool strip_first_;
};

/// WordPiece: continuation prefix removed, other tokens after the first get a leading space;
/// optional cleanup of spaces before punctuation and contractions.
class wordpiece_decoder final : public decoder {
 public:
  wordpiece_decoder(std::string prefix, bool cleanup) : prefix_(std::move(prefix)), cleanup_(cleanup) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      if (i != 0) {
        if (t.compare(0, prefix_.size(), prefix_) == 0) t.erase(0, prefix_.size());
        else t.insert(0, 1, ' ');
      }
      if (cleanup_) t = cleanup(t);
    }
  }
  static std::string cleanup(std::string s) {
    static const std::pair<const char*, const char*> rules[] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [from, to] : rules) {
      const std::string f = from, t = to;
      std::string out;
      std::size_t prev = 0, pos;
      while ((pos = s.find(f, prev)) != std::string::npos) {
        out.append(s, prev, pos - prev);
        out += t;
        prev = pos + f.size();
      }
      out.append(s, prev, std::string::npos);
      s = std::move(out);
    }
    return s;
  }

 private:
  std::string prefix_;
  bool cleanup_;
};

/// GGUF `bert` pieces: a U+2581-prefixed piece starts a word (space before it unless first),
/// others continue the previous word.
class metaspace_wordpiece_decoder final : public decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    static const std::string rep = "\xE2\x96\x81";
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      if (t.compare(0, rep.size(), rep) == 0) {
        t.erase(0, rep.size());
        if (i != 0) t.insert(0, 1, ' ');
      } else if (i != 0 && !t.empty() && t.front() == '[' && t.back() == ']') {
        t.insert(0, 1, ' ');
      }
    }
  }
};

/// <0xXX> tokens back to bytes; a run that is not valid UTF-8 becomes one U+FFFD per byte.
class byte_fallback_decoder final : public decoder {
  static int hex_digit(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    std::size_t run_len = 0;
    auto flush = [&] {
      if (!run_len) return;
      if (is_valid_utf8(run)) out.push_back(run);
      else {
        std::string r;
        for (std::size_t k = 0; k < run_len; ++k) r += replacement_utf8;
        out.push_back(std::move(r));
      }
      run.clear();
      run_len = 0;
    };
    for (auto& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        // two hex digits, parsed in place (no temporary whose buffer could be read after it dies)
        const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
        if (hi >= 0 && lo >= 0) byte = hi * 16 + lo;
      }
      if (byte >= 0) {
        run += static_cast<char>(byte);
        ++run_len;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
};

class fuse_decoder final : public decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

/// Removes up to `start` leading and `stop` trailing `content` characters from each token.
class strip_decoder final : public decoder {
 public:
  strip_decoder(std::string content, std::size_t start, std::size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      for (std::size_t k = 0; k < start_ && t.compare(0, content_.size(), content_) == 0; ++k) t.erase(0, content_.size());
      for (std::size_t k = 0; k < stop_ && t.size() >= content_.size() &&
                              t.compare(t.size() - content_.size(), content_.size(), content_) == 0;
           ++k)
        t.resize(t.size() - content_.size());
    }
  }

 private:
  std::string content_;
  std::size_t start_, stop_;
};

class replace_decoder final : public decoder {
 public:
  explicit replace_decoder(replace_normalizer r) : r_(std::move(r)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) t = r_.replace_all(t);
  }

 private:
  replace_normalizer r_;
};

class sequence_decoder final : public decoder {
 public:
  explicit sequence_decoder(std::vector<std::unique_ptr<decoder>> d) : items_(std::move(d)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& d : items_) d->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<decoder>> items_;
};

/// A decoder from its tokenizer.json object; nullptr for null.
inline std::unique_ptr<decoder> decoder_from_json(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = detail::type_of(j, "decoder");
  if (type == "ByteLevel") return std::make_unique<byte_level_decoder>();
  if (type == "Metaspace") {
    const std::string rep = detail::metaspace_replacement(j, "decoder");
    bool strip = true;
    if (j.contains("prepend_scheme")) strip = j["prepend_scheme"].get<std::string>() != "never";
    else if (j.contains("add_prefix_space")) strip = j["add_prefix_space"].get<bool>();
    return std::make_unique<metaspace_decoder>(rep, strip);
  }
  if (type == "WordPiece")
    return std::make_unique<wordpiece_decoder>(detail::value_or<std::string>(j, "prefix", "##"),
                                               detail::value_or(j, "cleanup", true));
  if (type == "ByteFallback") return std::make_unique<byte_fallback_decoder>();
  if (type == "Fuse") return std::make_unique<fuse_decoder>();
  if (type == "Strip")
    return std::make_unique<strip_decoder>(j.at("content").get<std::string>(),
                                           detail::integer_of<std::size_t>(j.at("start"), "start"),
                                           detail::integer_of<std::size_t>(j.at("stop"), "stop"));
  if (type == "Replace")
    return std::make_unique<replace_decoder>(
        replace_normalizer(detail::pattern_from_json(j.at("pattern"), "Replace"), j.at("content").get<std::string>()));
  if (type == "Sequence") {
    std::vector<std::unique_ptr<decoder>> items;
    for (const auto& d : j.at("decoders"))
      if (auto q = decoder_from_json(d)) items.push_back(std::move(q));
    return std::make_unique<sequence_decoder>(std::move(items));
  }
  detail::unsupported("decoder", type);
}

}  // namespace tok
}  // namespace v0
}  // namespace tessera
