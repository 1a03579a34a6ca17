// Load a Hugging Face Llama folder (or any supported checkpoint / .gguf) and generate text.
//
//   example_llama_generate [PATH] [PROMPT]     (PATH defaults to the bundled stories260K.gguf)
#include <cstdio>
#include <iostream>

#include <tessera/families/registry.hpp>
#include <tessera/models/sampling.hpp>
#include <tessera/tokenizer/tokenizer.hpp>

int main(int argc, char** argv) try {
  const std::string path = argc > 1 ? argv[1] : TESSERA_EXAMPLES_DIR "/models/stories260K.gguf";
  const std::string prompt = argc > 2 ? argv[2] : "Once upon a time";

  auto model = tessera::load_language_model(path);            // config + weights (mmap'd)
  auto tok = tessera::tokenizer::load(path);                  // tokenizer.json or GGUF vocab
  auto session = model->new_session({.max_len = 256});        // KV caches + workspace, sized once
  tessera::sampler sample(model->config().vocab, {.temperature = 0.f});  // greedy

  std::vector<std::int32_t> ids = tok.encode(prompt);         // BOS added as the checkpoint says
  session->prefill(ids);
  tessera::tokenizer::stream_decoder out(tok, /*skip_special_tokens=*/true);
  for (std::int32_t id : ids) std::cout << out.push(id);  // the prompt, through the same decoder
  for (int i = 0; i < 48; ++i) {
    const std::int32_t next = sample.sample(session->logits(), ids);
    const auto eos = tok.eos_ids();
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) break;
    ids.push_back(next);
    std::cout << out.push(next) << std::flush;
    session->step(next);
  }
  std::cout << out.flush() << "\n";
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
