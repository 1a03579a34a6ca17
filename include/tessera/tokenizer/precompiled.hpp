// tessera/tokenizer/precompiled.hpp: SentencePiece's precompiled normalization charsmap.
//
// Blob layout (sentencepiece normalizer.cc): u32 trie_size (bytes, little-endian), a darts-clone
// double-array trie of trie_size/4 u32 units mapping input byte strings to offsets, then the
// NUL-separated replacement strings. Normalization walks the input: at each position the longest
// trie match is replaced by its string; otherwise one UTF-8 character is copied (as SentencePiece
// and llama.cpp's UGM tokenizer do).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <tessera/config.hpp>
#include <tessera/core/error.hpp>
#include <tessera/tokenizer/unicode.hpp>

namespace tessera {
inline namespace v0 {
namespace tok {

class precompiled_charsmap {
 public:
  precompiled_charsmap() = default;

  /// From the raw blob bytes; format_error when it is inconsistent.
  explicit precompiled_charsmap(std::string blob) : blob_(std::move(blob)) {
    if (blob_.size() < 4) throw format_error("tokenizer: precompiled_charsmap shorter than its header");
    std::uint32_t trie_size = 0;
    for (int k = 3; k >= 0; --k) trie_size = (trie_size << 8) | static_cast<unsigned char>(blob_[static_cast<std::size_t>(k)]);
    if (trie_size % 4 != 0 || 4 + std::size_t(trie_size) > blob_.size())
      throw format_error("tokenizer: precompiled_charsmap trie size " + std::to_string(trie_size) +
                         " does not fit the blob of " + std::to_string(blob_.size()) + " bytes");
    units_.resize(trie_size / 4);
    std::memcpy(units_.data(), blob_.data() + 4, trie_size);  // little-endian hosts only
    strings_off_ = 4 + std::size_t(trie_size);
  }

  /// From the base64 text tokenizer.json stores.
  static precompiled_charsmap from_base64(std::string_view b64) { return precompiled_charsmap(decode_base64(b64)); }

  bool empty() const noexcept { return units_.empty(); }

  /// Normalizes valid UTF-8 `s`.
  std::string normalize(std::string_view s) const {
    const std::string_view strings_ = std::string_view(blob_).substr(strings_off_);
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
      std::size_t len = 0;
      const std::int64_t v = longest_prefix(s.substr(i), len);
      if (v >= 0 && static_cast<std::size_t>(v) < strings_.size()) {
        const char* p = strings_.data() + v;
        out.append(p, strnlen(p, strings_.size() - static_cast<std::size_t>(v)));
        i += len;
      } else {
        const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(utf8_len(static_cast<unsigned char>(s[i]))), s.size() - i);
        out.append(s.data() + i, n);
        i += n;
      }
    }
    return out;
  }

 private:
  static std::string decode_base64(std::string_view in) {
    auto val = [](char c) -> int {
      if (c >= 'A' && c <= 'Z') return c - 'A';
      if (c >= 'a' && c <= 'z') return c - 'a' + 26;
      if (c >= '0' && c <= '9') return c - '0' + 52;
      if (c == '+' || c == '-') return 62;
      if (c == '/' || c == '_') return 63;
      return -1;
    };
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
      if (c == '=' || c == '\n' || c == '\r') continue;
      const int v = val(c);
      if (v < 0) throw format_error("tokenizer: precompiled_charsmap is not base64");
      acc = (acc << 6) | static_cast<std::uint32_t>(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += static_cast<char>((acc >> bits) & 0xFF);
      }
    }
    return out;
  }

  // darts-clone unit accessors
  static bool has_leaf(std::uint32_t u) noexcept { return (u >> 8) & 1; }
  static std::uint32_t value(std::uint32_t u) noexcept { return u & ((1U << 31) - 1); }
  static std::uint32_t label(std::uint32_t u) noexcept { return u & ((1U << 31) | 0xFF); }
  static std::uint32_t offset(std::uint32_t u) noexcept { return (u >> 10) << ((u & (1U << 9)) >> 6); }

  /// Value of the longest key that prefixes `key` (its length in `len`), or -1.
  std::int64_t longest_prefix(std::string_view key, std::size_t& len) const noexcept {
    if (units_.empty()) return -1;
    std::int64_t result = -1;
    std::size_t pos = offset(units_[0]);
    for (std::size_t i = 0; i < key.size(); ++i) {
      const auto c = static_cast<unsigned char>(key[i]);
      pos ^= c;
      if (pos >= units_.size()) break;
      const std::uint32_t u = units_[pos];
      if (label(u) != c) break;
      pos ^= offset(u);
      if (has_leaf(u)) {
        if (pos >= units_.size()) break;
        result = value(units_[pos]);
        len = i + 1;
      }
    }
    return result;
  }

  std::string blob_;
  std::vector<std::uint32_t> units_;
  std::size_t strings_off_ = 0;
};

}  // namespace tok
}  // namespace v0
}  // namespace tessera
