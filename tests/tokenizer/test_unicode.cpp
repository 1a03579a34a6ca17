#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <tessera/tokenizer/decoders.hpp>
#include <tessera/tokenizer/normalizers.hpp>
#include <tessera/tokenizer/pre_tokenizers.hpp>
#include <tessera/tokenizer/unicode.hpp>

using namespace tessera;
using namespace tessera::tok;

TEST_CASE("sanitize_utf8 replaces maximal invalid subsequences like from_utf8_lossy", "[unicode]") {
  REQUIRE(sanitize_utf8("abc") == "abc");
  REQUIRE(sanitize_utf8("a\xFF" "b") == "a\xEF\xBF\xBD" "b");
  // truncated 3-byte sequence: one replacement for the maximal prefix
  REQUIRE(sanitize_utf8("\xE2\x82" "x") == "\xEF\xBF\xBD" "x");
  // surrogate encodings and overlongs are invalid byte by byte
  REQUIRE(sanitize_utf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  REQUIRE(sanitize_utf8("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");
  REQUIRE(is_valid_utf8("\xF0\x9F\xA6\x99"));
  REQUIRE_FALSE(is_valid_utf8("\xF0\x9F\xA6"));
}

TEST_CASE("utf8proc normalization forms and accents", "[unicode]") {
  const std::string e_acute_nfd = "e\xCC\x81";
  REQUIRE(normalize(e_acute_nfd, normal_form::nfc) == "\xC3\xA9");
  REQUIRE(normalize("\xC3\xA9", normal_form::nfd) == e_acute_nfd);
  REQUIRE(normalize("\xEF\xAC\x81", normal_form::nfkc) == "fi");  // ﬁ ligature
  REQUIRE(strip_accents("F\xC3\xBChrer") == "Fuhrer");
  REQUIRE(to_lower("\xC3\x9C" "BER") == "\xC3\xBC" "ber");
  REQUIRE(is_whitespace(0x3000));
  REQUIRE(is_bert_punctuation('$'));
  REQUIRE(is_chinese_char(0x4F60));
}

TEST_CASE("PCRE2 regex with Unicode classes: the GPT-2 split", "[unicode][regex]") {
  regex re(patterns::gpt2);
  std::vector<std::string> parts;
  const std::string s = "Hello world's 123  \xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE!!";
  re.for_each_match(s, [&](std::size_t b, std::size_t e) { parts.push_back(s.substr(b, e - b)); });
  REQUIRE(parts == std::vector<std::string>{"Hello", " world", "'s", " 123", " ", " \xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE", "!!"});
  REQUIRE_THROWS_AS(regex("(unclosed"), config_error);
}

TEST_CASE("Split behaviours follow HF", "[pre_tokenizer]") {
  auto run = [](split_behavior beh, bool invert) {
    std::vector<piece> p{{"a-b--c", true}};
    split_pre_tokenizer(regex("-"), beh, invert).pre_tokenize(p);
    std::vector<std::string> out;
    for (auto& x : p) out.push_back(x.text);
    return out;
  };
  using V = std::vector<std::string>;
  REQUIRE(run(split_behavior::removed, false) == V{"a", "b", "c"});
  REQUIRE(run(split_behavior::isolated, false) == V{"a", "-", "b", "-", "-", "c"});
  REQUIRE(run(split_behavior::merged_with_previous, false) == V{"a-", "b-", "-", "c"});
  REQUIRE(run(split_behavior::merged_with_next, false) == V{"a", "-b", "-", "-c"});
  REQUIRE(run(split_behavior::contiguous, false) == V{"a", "-", "b", "--", "c"});
  REQUIRE(run(split_behavior::removed, true) == V{"-", "-", "-"});
}

TEST_CASE("Metaspace and BertNormalizer", "[pre_tokenizer][normalizer]") {
  std::vector<piece> p{{"Hey friend", true}, {"again", false}};
  metaspace_pre_tokenizer("\xE2\x96\x81", prepend_scheme::first, true).pre_tokenize(p);
  REQUIRE(p.size() == 3);
  REQUIRE(p[0].text == "\xE2\x96\x81Hey");
  REQUIRE(p[1].text == "\xE2\x96\x81" "friend");
  REQUIRE(p[2].text == "again");
  std::string s = "Ah\tC\xC3\xA9SAR\x01 \xE4\xBD\xA0\xE5\xA5\xBD";
  bert_normalizer({}).normalize(s);
  REQUIRE(s == "ah cesar  \xE4\xBD\xA0  \xE5\xA5\xBD ");
}

// Regression (issue 18): the byte-fallback decoder parsed "<0xXX>" through a temporary string
// that died before its digits were checked (stack-use-after-scope under ASan, reached from every
// streamed generation that emits a byte token).
TEST_CASE("ByteFallback decoder: <0xXX> tokens to bytes, invalid runs to U+FFFD, others untouched", "[decoder]") {
  const byte_fallback_decoder d;
  std::vector<std::string> t = {"<0x41>", "a", "<0xE2>", "<0x96>", "<0x81>", "<0xzz>", "<0xff>", "<0x4a>", "<0x4A"};
  d.decode_chain(t);
  REQUIRE(t == std::vector<std::string>{"A", "a", "\xE2\x96\x81", "<0xzz>", "\xEF\xBF\xBD\xEF\xBF\xBD", "<0x4A"});
}
