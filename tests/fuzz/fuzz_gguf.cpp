// Fuzz target: a GGUF file through the reader, weight_map (names, transforms, dequantization),
// the families' GGUF metadata reader and, when that accepts it, the model loader and a short
// prefill + step (what `tessera info` / `generate` do with a downloaded .gguf).
#include "fuzz_common.hpp"

#include <tessera/families/registry.hpp>

using namespace tessera;

TESSERA_FUZZ_TARGET(gguf) {
  fuzz::single_thread();
  return fuzz::refusals_ok([&] {
    auto g = std::make_shared<io::gguf_file>(fuzz::as_file({reinterpret_cast<const char*>(data), size}, "fuzz.gguf"));
    for (const auto& [key, value] : g->metadata()) (void)value.type_name();
    auto weights = std::make_shared<const io::weight_map>(io::weight_map::from_gguf(g, map_gguf_tensor));
    fuzz::touch_all(*weights);
    const model_config cfg = config_from_gguf(*g);
    const auto model = load_language_model(cfg, weights);
    const auto session = model->new_session({.max_len = 8, .max_prefill = 4});
    const std::int32_t ids[] = {0, 1 % static_cast<std::int32_t>(cfg.vocab)};
    session->prefill(ids);
    session->step(0);
  });
}
