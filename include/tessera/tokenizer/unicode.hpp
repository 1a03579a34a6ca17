// tessera/tokenizer/unicode.hpp: UTF-8 helpers, utf8proc normalization and character classes,
// and a thread-safe PCRE2 regex (UTF + UCP, JIT where available).
//
// Unicode data comes from libraries, not hand-written tables: utf8proc for normalization forms,
// general categories and case mapping; PCRE2 for the `\p{L}` / `\p{N}` pre-tokenizer regexes.
// Only the tiny White_Space property list (25 code points, what Rust's char::is_whitespace and
// HF tokenizers use) and the BERT "Chinese character" ranges are spelled out here.
//
// Invalid UTF-8 is never passed to either library: tokenizer input is first made valid with
// `sanitize_utf8`, which replaces each maximal invalid subsequence by U+FFFD exactly as Rust's
// String::from_utf8_lossy does (what a Python str reaching HF tokenizers would hold).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#define TESSERA_UNDEF_PCRE2_WIDTH
#endif
#include <pcre2.h>
#ifdef TESSERA_UNDEF_PCRE2_WIDTH
#undef PCRE2_CODE_UNIT_WIDTH
#undef TESSERA_UNDEF_PCRE2_WIDTH
#endif
#include <utf8proc.h>

#include <tessera/config.hpp>
#include <tessera/core/error.hpp>

namespace tessera {
inline namespace v0 {
namespace tok {

// ---- UTF-8 -------------------------------------------------------------------------------

/// U+FFFD REPLACEMENT CHARACTER, UTF-8 encoded.
inline constexpr std::string_view replacement_utf8 = "\xEF\xBF\xBD";

/// Byte length of the UTF-8 sequence a lead byte announces (1 for stray continuation bytes).
inline int utf8_len(unsigned char lead) noexcept {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

/// Appends the UTF-8 encoding of `cp` to `out`.
inline void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// Length of the valid UTF-8 sequence at s[pos], or 0 when it is invalid; on invalid input
/// `bad` receives the length of the maximal invalid prefix (WHATWG / from_utf8_lossy rule).
inline std::size_t utf8_valid_len(std::string_view s, std::size_t pos, std::size_t& bad) noexcept {
  const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(pos);
  bad = 1;
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (std::size_t k = 1; k < n; ++k) {
    if (pos + k >= s.size()) { bad = k; return 0; }
    const unsigned char x = b(pos + k);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (x < l || x > h) { bad = k; return 0; }
  }
  return n;
}

/// True when `s` is valid UTF-8.
inline bool is_valid_utf8(std::string_view s) noexcept {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_valid_len(s, i, bad);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

/// `s` with each maximal invalid UTF-8 subsequence replaced by U+FFFD (from_utf8_lossy).
inline std::string sanitize_utf8(std::string_view s) {
  if (is_valid_utf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_valid_len(s, i, bad);
    if (n == 0) {
      out += replacement_utf8;
      i += bad;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

/// Decodes the (valid) UTF-8 code point at s[pos] and advances pos.
inline char32_t utf8_next(std::string_view s, std::size_t& pos) noexcept {
  const auto b = [&](std::size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(s[i])); };
  const char32_t c = b(pos);
  const int n = utf8_len(static_cast<unsigned char>(c));
  if (n == 1 || pos + static_cast<std::size_t>(n) > s.size()) {
    ++pos;
    return c;
  }
  char32_t cp = c & (0x7F >> n);
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (b(pos + k) & 0x3F);
  pos += static_cast<std::size_t>(n);
  return cp;
}

/// The code points of a valid UTF-8 string.
inline std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) out += utf8_next(s, i);
  return out;
}

/// Number of code points in a valid UTF-8 string.
inline std::size_t utf8_count(std::string_view s) noexcept {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// ---- character classes (utf8proc) -----------------------------------------------------------

/// Unicode general category of `cp` (utf8proc_category_t).
inline utf8proc_category_t category(char32_t cp) noexcept {
  return utf8proc_category(static_cast<utf8proc_int32_t>(cp));
}

/// Unicode White_Space (Rust char::is_whitespace, used by HF tokenizers).
inline bool is_whitespace(char32_t c) noexcept {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

/// General category P* (Rust char::is_punctuation in the unicode_categories crate).
inline bool is_punctuation(char32_t c) noexcept {
  switch (category(c)) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
      return true;
    default:
      return false;
  }
}

/// BERT punctuation: ASCII punctuation or Unicode P*.
inline bool is_bert_punctuation(char32_t c) noexcept {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
         (c >= 123 && c <= 126) || is_punctuation(c);
}

/// General category N* (Rust char::is_numeric).
inline bool is_numeric(char32_t c) noexcept {
  const auto k = category(c);
  return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/// General category C* other than Cs: Cc, Cf, Cn, Co (BertNormalizer's is_control, minus tab/LF/CR).
inline bool is_other(char32_t c) noexcept {
  const auto k = category(c);
  return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CN ||
         k == UTF8PROC_CATEGORY_CO || k == UTF8PROC_CATEGORY_CS;
}

/// CJK Unified Ideographs blocks, as BERT defines "Chinese character".
inline bool is_chinese_char(char32_t c) noexcept {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/// Lower-case mapping of a valid UTF-8 string (utf8proc simple case mapping; U+0130 maps to
/// "i\u0307" as Rust's full mapping does).
inline std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t start = i;
    const char32_t c = utf8_next(s, i);
    if (c < 0x80) {
      out += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    } else if (c == 0x130) {
      out += "i\xCC\x87";
    } else {
      const char32_t l = static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
      if (l == c) out.append(s.data() + start, i - start);
      else utf8_append(out, l);
    }
  }
  return out;
}

// ---- normalization forms (utf8proc) ---------------------------------------------------------

enum class normal_form { nfc, nfd, nfkc, nfkd };

/// Unicode normalization of a valid UTF-8 string.
inline std::string normalize(std::string_view s, normal_form form) {
  if (s.empty()) return {};
  bool ascii = true;
  for (unsigned char c : s) ascii &= c < 0x80;
  if (ascii) return std::string(s);
  int options = UTF8PROC_STABLE;
  switch (form) {
    case normal_form::nfc: options |= UTF8PROC_COMPOSE; break;
    case normal_form::nfd: options |= UTF8PROC_DECOMPOSE; break;
    case normal_form::nfkc: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case normal_form::nfkd: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                          static_cast<utf8proc_ssize_t>(s.size()), &dst,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0) {
    std::free(dst);
    throw format_error(std::string("tokenizer: utf8proc normalization failed: ") +
                       utf8proc_errmsg(n));
  }
  std::string out(reinterpret_cast<const char*>(dst), static_cast<std::size_t>(n));
  std::free(dst);
  return out;
}

/// True for General_Category Mark (Mn, Mc, Me): what HF calls a combining mark.
inline bool is_mark(char32_t c) noexcept {
  const auto k = category(c);
  return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC || k == UTF8PROC_CATEGORY_ME;
}

/// Drops combining marks (HF's StripAccents normalizer; it is used after NFD).
inline std::string drop_marks(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t start = i;
    const char32_t c = utf8_next(s, i);
    if (c < 0x300 || !is_mark(c)) out.append(s.data() + start, i - start);
  }
  return out;
}

/// NFD, then drops combining marks: "Führer" -> "Fuhrer".
inline std::string strip_accents(std::string_view s) { return drop_marks(normalize(s, normal_form::nfd)); }

// ---- regex (PCRE2) --------------------------------------------------------------------------

/// A compiled PCRE2 pattern (UTF + UCP, JIT when available). Immutable after construction and
/// safe to share between threads: each search makes its own match data.
class regex {
 public:
  regex() = default;
  explicit regex(std::string_view pattern) : pattern_(pattern) {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    pcre2_code_8* code = pcre2_compile_8(reinterpret_cast<PCRE2_SPTR8>(pattern.data()), pattern.size(),
                                         PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
    if (!code) {
      PCRE2_UCHAR8 buf[256];
      pcre2_get_error_message_8(err, buf, sizeof buf);
      throw config_error("tokenizer: invalid regex '" + pattern_ + "' at offset " +
                         std::to_string(err_off) + ": " + reinterpret_cast<const char*>(buf));
    }
    code_.reset(code, pcre2_code_free_8);
    pcre2_jit_compile_8(code, PCRE2_JIT_COMPLETE);  // best effort: falls back to the interpreter
  }

  const std::string& pattern() const noexcept { return pattern_; }
  bool empty() const noexcept { return !code_; }

  /// Calls f(begin, end) for each successive non-overlapping match in the valid UTF-8 `s`
  /// (an empty match advances one character).
  template <class F>
  void for_each_match(std::string_view s, F&& f) const {
    if (!code_) return;
    std::unique_ptr<pcre2_match_data_8, void (*)(pcre2_match_data_8*)> md(
        pcre2_match_data_create_from_pattern_8(code_.get(), nullptr), pcre2_match_data_free_8);
    const auto* subject = reinterpret_cast<PCRE2_SPTR8>(s.data());
    std::size_t pos = 0;
    while (pos <= s.size()) {
      int rc = pcre2_match_8(code_.get(), subject, s.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match_8(code_.get(), subject, s.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                           md.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) return;
      if (rc < 0) {
        PCRE2_UCHAR8 buf[256];
        pcre2_get_error_message_8(rc, buf, sizeof buf);
        throw range_error("tokenizer: regex '" + pattern_ + "' failed: " + reinterpret_cast<const char*>(buf));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer_8(md.get());
      const std::size_t b = ov[0], e = ov[1];
      f(b, e);
      if (e > b) {
        pos = e;
      } else {
        if (e >= s.size()) return;
        pos = e + static_cast<std::size_t>(utf8_len(static_cast<unsigned char>(s[e])));
      }
    }
  }

 private:
  std::string pattern_;
  std::shared_ptr<pcre2_code_8> code_;
};

/// `s` with every regex metacharacter escaped (a literal pattern).
inline std::string regex_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::strchr("\\^$.|?*+()[]{}-#/ ", c) && c != '\0') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace tok
}  // namespace v0
}  // namespace tessera
