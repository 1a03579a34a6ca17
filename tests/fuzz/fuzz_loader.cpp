// Fuzz target: the whole loader on a Hugging Face checkpoint: config.json and model.safetensors
// (parts of the input) through parse_config, weight_map and load_language_model, then a session's
// prefill and step. load_language_model(folder) does the same after reading the two files.
#include "fuzz_common.hpp"

#include <tessera/families/registry.hpp>

using namespace tessera;

TESSERA_FUZZ_TARGET(loader) {
  fuzz::single_thread();
  const auto parts = fuzz::split_parts(data, size, 2);
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(parts[0]);
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
  return fuzz::refusals_ok([&] {
    const model_config cfg = parse_config(config, "config.json");
    auto st = std::make_shared<io::safetensors_file>(fuzz::as_file(parts[1], "model.safetensors"));
    auto weights = std::make_shared<const io::weight_map>(io::weight_map::from_safetensors({st}, "fuzz"));
    const auto model = load_language_model(cfg, weights);
    const auto session = model->new_session({.max_len = 8, .max_prefill = 4});
    if (model->is_encoder_decoder()) {
      const std::int32_t src[] = {0, 1 % static_cast<std::int32_t>(cfg.vocab)};
      session->encode(src);
    }
    const std::int32_t ids[] = {0, 1 % static_cast<std::int32_t>(cfg.vocab), 2 % static_cast<std::int32_t>(cfg.vocab)};
    session->prefill(ids);
    session->step(0);
    (void)session->logits();
  });
}
