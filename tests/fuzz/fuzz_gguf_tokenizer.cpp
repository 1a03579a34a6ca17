// Fuzz target: a GGUF file's tokenizer.ggml.* metadata (+ the text to encode after a part
// separator) through tokenizer::from_gguf, encode, decode and the stream decoder.
#include "fuzz_common.hpp"
#include "fuzz_tokenizer_common.hpp"

using namespace tessera;

TESSERA_FUZZ_TARGET(gguf_tokenizer) {
  fuzz::single_thread();
  const auto parts = fuzz::split_parts(data, size, 2);
  return fuzz::refusals_ok([&] {
    const io::gguf_file g(fuzz::as_file(parts[0], "fuzz.gguf"));
    const tokenizer tk = tokenizer::from_gguf(g);
    fuzz::exercise(tk, parts[1].empty() ? std::string_view("Hello world! 12 345 <s> caf\xC3\xA9 \xF0\x9F\x98\x80") : parts[1]);
  });
}
