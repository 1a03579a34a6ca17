// Stream tokens with a sampler of your own: here, "typical" sampling written in a dozen lines
// against the session's logits, and a snapshot to continue the same prompt two ways.
//
//   example_stream_custom_sampler [PATH]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <random>
#include <span>
#include <string_view>

#include <tessera/families/registry.hpp>
#include <tessera/models/generate.hpp>
#include <tessera/tokenizer/tokenizer.hpp>

// Locally typical sampling (Meister et al.): keep the tokens whose surprise is closest to the
// entropy until their mass reaches tau, then draw among them.
std::int32_t typical_sample(tessera::tensor_view<const float, 1> logits, float tau, std::mt19937& rng,
                            std::vector<double>& p, std::vector<std::int32_t>& order) {
  const auto n = static_cast<std::size_t>(logits.extent(0));
  const float m = *std::max_element(logits.data(), logits.data() + n);
  double z = 0, h = 0;
  for (std::size_t i = 0; i < n; ++i) z += p[i] = std::exp(double(logits(tessera::index_t(i)) - m));
  for (std::size_t i = 0; i < n; ++i) p[i] /= z, h -= p[i] > 0 ? p[i] * std::log(p[i]) : 0;
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return std::abs(-std::log(p[a]) - h) < std::abs(-std::log(p[b]) - h); });
  double mass = 0;
  std::size_t keep = 0;
  while (keep < n && mass < tau) mass += p[static_cast<std::size_t>(order[keep++])];
  std::uniform_real_distribution<double> u(0, mass);
  double r = u(rng);
  for (std::size_t i = 0; i < keep; ++i)
    if ((r -= p[static_cast<std::size_t>(order[i])]) <= 0) return order[i];
  return order[keep - 1];
}

int main(int argc, char** argv) try {
  const std::string path = argc > 1 ? argv[1] : TESSERA_EXAMPLES_DIR "/models/stories260K.gguf";
  auto model = tessera::load_language_model(path);
  auto tok = tessera::tokenizer::load(path);
  auto session = model->new_session({.max_len = 256});
  std::vector<double> p(static_cast<std::size_t>(model->config().vocab));
  std::vector<std::int32_t> order(p.size());

  const std::vector<std::int32_t> prompt = tok.encode("The little dog");
  session->prefill(prompt);
  const auto after_prompt = session->snapshot();  // prompt cache: reuse it for both continuations
  for (unsigned seed : {1u, 2u}) {
    session->restore(after_prompt);
    std::mt19937 rng(seed);
    tessera::tokenizer::stream_decoder out(tok, /*skip_special_tokens=*/true);
    std::cout << "[seed " << seed << "] ";
    for (std::int32_t id : prompt) std::cout << out.push(id);  // the prompt, through the same decoder
    // the session already holds the prompt: generate from its logits, with our own sampling rule
    auto typical = [&](tessera::tensor_view<const float, 1> logits, std::span<const std::int32_t>) {
      return typical_sample(logits, 0.9f, rng, p, order);
    };
    tessera::continue_generation(*session, prompt, typical,
                                 {.max_new_tokens = 32, .detokenize = [&](std::int32_t id) { return out.push(id); }},
                                 [](std::int32_t, std::string_view piece) {
                                   std::cout << piece << std::flush;
                                   return true;
                                 });
    std::cout << out.flush() << "\n";
  }
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
