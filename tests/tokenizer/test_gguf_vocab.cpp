// The three real vocabularies from llama.cpp's test suite, loaded from GGUF metadata, against the
// ids their reference (Hugging Face) tokenizers give: every case must be exact.
#include <catch2/catch.hpp>

#include <string>

#include <tessera/io/gguf.hpp>
#include <tessera/tokenizer/tokenizer.hpp>

#include "oracle.hpp"

using namespace tessera;

namespace {

std::string vocab_path(const std::string& name) {
  return std::string(TESSERA_TEST_DATA_DIR) + "/tokenizers/ggml-vocab-" + name + ".gguf";
}

const tokenizer& load_vocab(const std::string& name) {
  static std::map<std::string, tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, tokenizer::load(vocab_path(name))).first;
  return it->second;
}

void check_oracle(const std::string& name) {
  const tokenizer& tk = load_vocab(name);
  const auto cases = test::read_oracle(vocab_path(name));
  REQUIRE(cases.size() == 46);
  int failures = 0;
  for (const auto& c : cases) {
    const auto ids = tk.encode(c.text, false);
    if (ids != c.ids) ++failures;
    INFO(name << " text [" << c.text << "]");
    CHECK(ids == c.ids);
  }
  REQUIRE(failures == 0);
}

}  // namespace

TEST_CASE("GGUF gpt-2 byte-level BPE matches the reference ids", "[gguf][bpe]") { check_oracle("gpt-2"); }
TEST_CASE("GGUF phi-3 SentencePiece BPE matches the reference ids", "[gguf][spm]") { check_oracle("phi-3"); }
TEST_CASE("GGUF bert-bge WordPiece matches the reference ids", "[gguf][wordpiece]") { check_oracle("bert-bge"); }

TEST_CASE("GGUF vocabularies round-trip through decode", "[gguf][decode]") {
  const std::string text = "Hello, world! This is a test: 1234 apples.";
  for (const char* name : {"gpt-2", "phi-3"}) {
    const tokenizer& tk = load_vocab(name);
    INFO(name);
    REQUIRE(tk.decode(tk.encode(text, false)) == text);
  }
  const tokenizer& bert = load_vocab("bert-bge");
  REQUIRE(bert.decode(bert.encode("Hello World 42", false)) == "hello world 42");
}

TEST_CASE("GGUF special tokens: BOS/CLS/SEP and ids", "[gguf][special]") {
  const tokenizer& phi = load_vocab("phi-3");
  REQUIRE(phi.bos_id() == 1);
  const auto with = phi.encode("Hello");
  const auto without = phi.encode("Hello", false);
  REQUIRE(with.size() == without.size() + 1);
  REQUIRE(with.front() == 1);
  REQUIRE(phi.vocab_size() == 32064);
  const auto eos = phi.eos_ids();
  REQUIRE(std::find(eos.begin(), eos.end(), 32000) != eos.end());
  REQUIRE(std::find(eos.begin(), eos.end(), 32007) != eos.end());  // <|end|>
  // control tokens in the text are matched whole; phi-3's rstrip eats the space after <|user|>
  const auto chat = phi.encode("<|user|> Hi", false);
  REQUIRE(chat.front() == 32010);

  const tokenizer& bert = load_vocab("bert-bge");
  const auto b = bert.encode("hello");
  REQUIRE(b.front() == 101);
  REQUIRE(b.back() == 102);
  REQUIRE(b.size() == 3);
  REQUIRE_FALSE(bert.bos_id().has_value());

  const tokenizer& gpt2 = load_vocab("gpt-2");
  REQUIRE(gpt2.encode("Hello") == gpt2.encode("Hello", false));  // GPT-2 adds nothing
  REQUIRE(gpt2.encode("a<|endoftext|>b", false) == std::vector<std::int32_t>{64, 50256, 65});
  REQUIRE(gpt2.decode(std::vector<std::int32_t>{64, 50256, 65}, true) == "ab");
}

TEST_CASE("decode rejects ids out of range, bad input is defined", "[gguf][errors]") {
  const tokenizer& gpt2 = load_vocab("gpt-2");
  REQUIRE_THROWS_AS(gpt2.decode(std::vector<std::int32_t>{50257}), range_error);
  REQUIRE_THROWS_AS(gpt2.decode(std::vector<std::int32_t>{-1}), range_error);
  REQUIRE_THROWS_AS(gpt2.id_to_piece(1 << 20), range_error);
  REQUIRE(gpt2.encode("", true).empty());
  // invalid UTF-8 becomes U+FFFD before tokenization (as a Python str would hold it)
  REQUIRE(gpt2.encode("a\xFF" "b", false) == gpt2.encode("a\xEF\xBF\xBD" "b", false));
  REQUIRE(gpt2.encode("\xE2\x82", false) == gpt2.encode("\xEF\xBF\xBD", false));
  const tokenizer& phi = load_vocab("phi-3");
  REQUIRE(phi.decode(phi.encode("x\xC3(y", false)) == "x\xEF\xBF\xBD(y");
}

TEST_CASE("stream decoder output equals full decode", "[gguf][stream]") {
  const std::string text = "Hello world! Ünïcödé 你好 🦙 emoji, tabs\tand\nnewlines.";
  for (const char* name : {"gpt-2", "phi-3", "bert-bge"}) {
    const tokenizer& tk = load_vocab(name);
    const auto ids = tk.encode(text, false);
    tokenizer::stream_decoder sd(tk);
    std::string streamed;
    bool saw_partial_hold = false;
    for (auto id : ids) {
      const std::string piece = sd.push(id);
      if (piece.empty()) saw_partial_hold = true;
      // never emit an incomplete UTF-8 sequence
      REQUIRE(tok::is_valid_utf8(piece));
      streamed += piece;
    }
    streamed += sd.flush();
    INFO(name);
    REQUIRE(streamed == tk.decode(ids));
    if (std::string(name) == "gpt-2") REQUIRE(saw_partial_hold);  // the CJK/emoji bytes are split
  }
}
