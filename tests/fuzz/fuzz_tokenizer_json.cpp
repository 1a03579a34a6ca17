// Fuzz target: tokenizer.json (+ the text to encode after a part separator) through the loader,
// encode, decode and the stream decoder.
#include "fuzz_common.hpp"
#include "fuzz_tokenizer_common.hpp"

using namespace tessera;

TESSERA_FUZZ_TARGET(tokenizer_json) {
  fuzz::single_thread();
  const auto parts = fuzz::split_parts(data, size, 2);
  tok::json j;
  try {
    j = tok::json::parse(parts[0]);
  } catch (const tok::json::exception&) {
    return 0;  // not JSON: tokenizer::from_hf's format_error
  }
  return fuzz::refusals_ok([&] {
    tokenizer tk = [&] {
      try {
        return tokenizer::from_hf_json(j);
      } catch (const tok::json::exception& e) {
        throw config_error(e.what());  // what tokenizer::from_hf makes of a field of the wrong type
      }
    }();
    fuzz::exercise(tk, parts[1].empty() ? std::string_view("Hello world! 12 345 <s> caf\xC3\xA9 \xF0\x9F\x98\x80") : parts[1]);
  });
}
