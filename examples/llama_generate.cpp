// Load a Hugging Face Llama folder (or any supported checkpoint / .gguf) and generate text.
//
//   example_llama_generate [PATH] [PROMPT]     (PATH defaults to the bundled stories260K.gguf)
#include <cstdio>
#include <iostream>

#include <tessera/families/registry.hpp>
#include <tessera/models/generate.hpp>
#include <tessera/tokenizer/tokenizer.hpp>

int main(int argc, char** argv) try {
  const std::string path = argc > 1 ? argv[1] : TESSERA_EXAMPLES_DIR "/models/stories260K.gguf";
  const std::string prompt = argc > 2 ? argv[2] : "Once upon a time";

  auto model = tessera::load_language_model(path);            // config + weights (mmap'd)
  auto tok = tessera::tokenizer::load(path);                  // tokenizer.json or GGUF vocab
  auto session = model->new_session({.max_len = 256});        // KV caches + workspace, sized once
  tessera::sampler sample(model->config().vocab, {.temperature = 0.f});  // greedy

  const std::vector<std::int32_t> ids = tok.encode(prompt);   // BOS added as the checkpoint says
  tessera::tokenizer::stream_decoder out(tok, /*skip_special_tokens=*/true);
  for (std::int32_t id : ids) std::cout << out.push(id);  // the prompt, through the same decoder
  tessera::generate(*session, ids, sample,
                    {.max_new_tokens = 48,
                     .stop_ids = tok.eos_ids(),                                   // EOS: stop (prints nothing)
                     .detokenize = [&](std::int32_t id) { return out.push(id); }},  // streaming text per id
                    [](std::int32_t, std::string_view piece) {
                      std::cout << piece << std::flush;
                      return true;  // false would stop here
                    });
  std::cout << out.flush() << "\n";
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
