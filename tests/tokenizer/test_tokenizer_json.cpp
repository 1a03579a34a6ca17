// tokenizer.json fixtures made with the Hugging Face `tokenizers` library (tests/data/tokenizers_hf,
// see tools/ for the generator): ids with and without special tokens, token strings and decoded
// text must all be exact.
#include <catch2/catch.hpp>

#include <ctime>

#include <chrono>
#include <fstream>
#include <string>

#include <tessera/tokenizer/tokenizer.hpp>

using namespace tessera;
using tok::json;

namespace {

std::string fixture_dir(const std::string& name) { return std::string(TESSERA_TEST_DATA_DIR) + "/tokenizers_hf/" + name; }

json read_json(const std::string& path) {
  std::ifstream f(path);
  REQUIRE(f.good());
  return json::parse(f);
}

void check_fixture(const std::string& name, const std::string& file = "cases.json") {
  const tokenizer tk = tokenizer::from_hf(fixture_dir(name));
  const json cases = read_json(fixture_dir(name) + "/" + file);
  REQUIRE(cases.size() > 10);
  int failures = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    INFO(name << " text [" << text << "]");
    const auto with = c.at("ids_with_special").get<std::vector<std::int32_t>>();
    const auto without = c.at("ids_no_special").get<std::vector<std::int32_t>>();
    const auto got_with = tk.encode(text, true);
    const auto got_without = tk.encode(text, false);
    CHECK(got_without == without);
    CHECK(got_with == with);
    bool ok = got_with == with && got_without == without;
    if (c.contains("tokens_no_special")) {
      // HF reports the covered text as the token string of an unknown token; compare the others
      auto expected = c["tokens_no_special"].get<std::vector<std::string>>();
      std::vector<std::string> pieces;
      for (std::size_t i = 0; i < without.size(); ++i) {
        pieces.push_back(tk.id_to_piece(without[i]));
        if (tk.is_special(without[i]) && i < expected.size()) expected[i] = pieces.back();
      }
      CHECK(pieces == expected);
      ok = ok && pieces == expected;
    }
    if (c.contains("decoded")) {
      const auto d = tk.decode(without);
      CHECK(d == c["decoded"].get<std::string>());
      ok = ok && d == c["decoded"].get<std::string>();
    }
    if (c.contains("decoded_with_special")) {
      const auto d = tk.decode(with);
      CHECK(d == c["decoded_with_special"].get<std::string>());
      ok = ok && d == c["decoded_with_special"].get<std::string>();
    }
    if (c.contains("decoded_with_special_skip")) {
      const auto d = tk.decode(with, true);
      CHECK(d == c["decoded_with_special_skip"].get<std::string>());
      ok = ok && d == c["decoded_with_special_skip"].get<std::string>();
    }
    failures += !ok;
  }
  REQUIRE(failures == 0);
}

}  // namespace

TEST_CASE("tokenizer.json byte-level BPE (GPT-2 style) is exact", "[hf][bpe]") { check_fixture("bpe_bytelevel_gpt2"); }
TEST_CASE("tokenizer.json byte-level BPE (Llama-3 style) is exact", "[hf][bpe]") { check_fixture("bpe_bytelevel_llama3"); }
TEST_CASE("tokenizer.json SentencePiece-style BPE with byte fallback (Llama-2) is exact", "[hf][spm]") { check_fixture("spm_bpe_llama2"); }
TEST_CASE("tokenizer.json WordPiece (BERT) is exact", "[hf][wordpiece]") { check_fixture("wordpiece_bert"); }
TEST_CASE("tokenizer.json Unigram (T5 style) is exact", "[hf][unigram]") { check_fixture("unigram_t5"); }

// cases_runs.json (tools/fixtures/make_tokenizer_run_cases.py): runs of repeated characters and the
// benchmark text's lines that hold them, where Unigram meets exact score ties and BPE merges cascade.
TEST_CASE("tokenizer.json fixtures are exact on runs of repeated characters", "[hf][runs]") {
  for (const char* name : {"bpe_bytelevel_gpt2", "bpe_bytelevel_llama3", "spm_bpe_llama2", "wordpiece_bert", "unigram_t5"}) {
    INFO(name);
    check_fixture(name, "cases_runs.json");
  }
}

namespace {

/// A minimal WordPiece tokenizer.json with `field` replaced by `value`.
json tiny_wordpiece() {
  return json::parse(R"({
    "added_tokens": [{"id": 0, "content": "[UNK]", "special": true, "normalized": false, "lstrip": false, "rstrip": false, "single_word": false},
                     {"id": 5, "content": "<tool>", "special": false, "normalized": false, "lstrip": true, "rstrip": true, "single_word": false}],
    "normalizer": {"type": "BertNormalizer", "lowercase": true},
    "pre_tokenizer": {"type": "BertPreTokenizer"},
    "post_processor": null,
    "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
              "vocab": {"[UNK]": 0, "a": 1, "##a": 2, "b": 3, "##b": 4, "<tool>": 5}}
  })");
}

}  // namespace

TEST_CASE("unsupported tokenizer.json components are a config_error naming them", "[hf][errors]") {
  auto with = [](const char* field, const char* component) {
    json j = tiny_wordpiece();
    j[field] = json::parse(component);
    return j;
  };
  auto message = [](const json& j) -> std::string {
    try {
      (void)tokenizer::from_hf_json(j);
    } catch (const config_error& e) {
      return e.what();
    }
    return "no error";
  };
  REQUIRE(message(with("normalizer", R"({"type": "NFKC_Casefold"})")).find("NFKC_Casefold") != std::string::npos);
  REQUIRE(message(with("pre_tokenizer", R"({"type": "UnicodeScripts"})")).find("UnicodeScripts") != std::string::npos);
  REQUIRE(message(with("decoder", R"({"type": "CTC"})")).find("CTC") != std::string::npos);
  REQUIRE(message(with("post_processor", R"({"type": "Mystery"})")).find("Mystery") != std::string::npos);
  REQUIRE(message(with("model", R"({"type": "WordLevel", "vocab": {}})")).find("WordLevel") != std::string::npos);
  REQUIRE(message(with("pre_tokenizer", R"({"type": "Split", "pattern": {"Regex": "(("}, "behavior": "Isolated"})"))
              .find("regex") != std::string::npos);
  REQUIRE(message(with("pre_tokenizer", R"({"type": "Split", "pattern": {"String": "x"}, "behavior": "Sideways"})"))
              .find("Sideways") != std::string::npos);
  REQUIRE_THROWS_AS(tokenizer::from_hf("/nonexistent/folder"), io_error);
}

TEST_CASE("a Metaspace replacement that is not one character is a config_error naming it", "[hf][errors]") {
  // Found by fuzz_tokenizer_json (tests/fuzz/crashes/tokenizer_json/metaspace_empty_replacement):
  // an empty replacement reached the split on its first character, std::out_of_range at encode.
  // HF tokenizers reads the field as a char, so one character (of any UTF-8 length) is the rule.
  auto load = [](const char* field, const char* component) {
    json j = tiny_wordpiece();
    j[field] = json::parse(component);
    return tokenizer::from_hf_json(j);
  };
  for (const char* bad : {R"("")", R"("ab")", R"("▁▁")"}) {
    const std::string pre = std::string(R"({"type": "Metaspace", "prepend_scheme": "always", "replacement": )") + bad + "}";
    CHECK_THROWS_WITH(load("pre_tokenizer", pre.c_str()),
                      Catch::Contains("pre_tokenizer Metaspace \"replacement\" must be one character"));
    const std::string dec = std::string(R"({"type": "Metaspace", "replacement": )") + bad + "}";
    CHECK_THROWS_WITH(load("decoder", dec.c_str()), Catch::Contains("decoder Metaspace \"replacement\" must be one character"));
  }
  // Also found by the fuzzer (crashes/tokenizer_json/strip_start_2e95): integer fields read
  // through json's unchecked conversion, undefined for a float or an out-of-range value.
  CHECK_THROWS_WITH(load("decoder", R"({"type": "Strip", "content": " ", "start": 2.2e95, "stop": 0})"),
                    Catch::Contains("\"start\" is 2.2e+95, not an integer in [0, "));
  CHECK_THROWS_WITH(load("decoder", R"({"type": "Strip", "content": " ", "start": 1, "stop": -1})"),
                    Catch::Contains("\"stop\" is -1, not an integer"));
  CHECK_THROWS_WITH(load("model", R"({"type": "WordPiece", "unk_token": "[UNK]", "max_input_chars_per_word": 1.5,
                                      "vocab": {"[UNK]": 0, "a": 1}})"),
                    Catch::Contains("\"max_input_chars_per_word\" is 1.5, not an integer"));
  CHECK_NOTHROW(load("decoder", R"({"type": "Strip", "content": " ", "start": 1, "stop": 0})"));
  // one character, one byte or three, and the default, load and split on it
  for (const char* good : {R"(, "replacement": "_")", R"(, "replacement": "▁")", ""}) {
    const std::string pre = std::string(R"({"type": "Metaspace", "prepend_scheme": "never", "split": true)") + good + "}";
    const tokenizer tk = load("pre_tokenizer", pre.c_str());
    CHECK_NOTHROW(tk.encode("ab ab"));
  }
}

TEST_CASE("WordPiece: unknown words, long words, added tokens with lstrip/rstrip", "[hf][wordpiece]") {
  const tokenizer tk = tokenizer::from_hf_json(tiny_wordpiece());
  REQUIRE(tk.encode("ab aab") == std::vector<std::int32_t>{1, 4, 1, 2, 4});
  REQUIRE(tk.encode("abc") == std::vector<std::int32_t>{0});  // one [UNK] for the whole word
  REQUIRE(tk.encode(std::string(101, 'a')) == std::vector<std::int32_t>{0});
  REQUIRE(tk.encode(std::string(100, 'a')).size() == 100);
  REQUIRE(tk.encode("a  <tool>  b") == std::vector<std::int32_t>{1, 5, 3});
  REQUIRE(tk.decode(std::vector<std::int32_t>{1, 4, 1, 2, 4}) == "ab aab");
  REQUIRE(tk.encode("").empty());
}

TEST_CASE("1 MB without spaces is linear: BPE, SPM BPE, WordPiece, Unigram", "[hf][performance]") {
  for (const char* name : {"bpe_bytelevel_gpt2", "spm_bpe_llama2", "unigram_t5", "wordpiece_bert"}) {
    const tokenizer tk = tokenizer::from_hf(fixture_dir(name));
    std::string small, big;
    const std::string unit = "abcdefghij0123456789";
    while (small.size() < 50'000) small += unit;
    while (big.size() < 500'000) big += unit;
    // This thread's CPU time, best of 3: time the machine spends on other work is not counted.
    auto cpu_seconds = [] {
      timespec t{};
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
      return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
    };
    auto time = [&](const std::string& s) {
      double best = 1e30;
      for (int r = 0; r < 3; ++r) {
        const double t0 = cpu_seconds();
        const auto ids = tk.encode(s, false);
        REQUIRE(!ids.empty());
        best = std::min(best, cpu_seconds() - t0);
      }
      return best;
    };
    const double ts = time(small), tb = time(big);
    INFO(name << ": 50 KB " << ts << " s, 500 KB " << tb << " s");
    REQUIRE(tb < 60 * ts + 0.05);  // 10x the input: quadratic would be 100x; slack for cache effects
  }
}

// serde_json's fast path (see unigram.hpp) is exact where the significand and the power of ten are.
TEST_CASE("serde_json_f64 agrees with strtod where both are exact", "[hf][unigram]") {
  for (double v : {-7.25, 0.5, -0.125, 3.0, -1e-3, 12345.0})
    CHECK(tok::detail::serde_json_f64(v) == v);
}
