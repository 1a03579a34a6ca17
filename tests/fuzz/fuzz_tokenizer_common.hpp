// tests/fuzz/fuzz_tokenizer_common.hpp: what the two tokenizer targets do with a loaded tokenizer.
#pragma once

#include <tessera/tokenizer/tokenizer.hpp>

namespace tessera::fuzz {

/// encode (with and without special tokens), decode, decode of arbitrary ids (skipping specials
/// or not), and the stream decoder over the same ids.
inline void exercise(const tokenizer& tk, std::string_view text) {
  const auto ids = tk.encode(text, true);
  (void)tk.encode(text, false);
  (void)tk.decode(ids);
  const auto vocab = static_cast<std::uint32_t>(tk.vocab_size());
  if (vocab == 0) return;
  std::vector<std::int32_t> any;  // ids from the text's bytes: byte tokens, specials, anything
  for (std::size_t i = 0; i + 1 < text.size() && any.size() < 64; i += 2)
    any.push_back(static_cast<std::int32_t>((static_cast<std::uint8_t>(text[i]) << 8 | static_cast<std::uint8_t>(text[i + 1])) % vocab));
  for (bool skip : {false, true}) {
    (void)tk.decode(any, skip);
    tokenizer::stream_decoder sd(tk, skip);
    std::string streamed;
    for (const auto id : any) streamed += sd.push(id);
    streamed += sd.flush();
  }
}

}  // namespace tessera::fuzz
