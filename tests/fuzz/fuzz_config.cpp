// Fuzz target: config.json (+ generation_config.json after a part separator) through the
// families' readers into a model_config, as load_config does.
#include "fuzz_common.hpp"

#include <tessera/families/registry.hpp>

using namespace tessera;

TESSERA_FUZZ_TARGET(config) {
  fuzz::single_thread();
  const auto parts = fuzz::split_parts(data, size, 2);
  nlohmann::json config, generation;
  try {
    config = nlohmann::json::parse(parts[0]);
    if (!parts[1].empty()) generation = nlohmann::json::parse(parts[1]);
  } catch (const nlohmann::json::exception&) {
    return 0;  // not JSON: io::read_json_file's config_error, not the readers' business
  }
  return fuzz::refusals_ok([&] {
    const model_config c = parse_config(config, "config.json", parts[1].empty() ? nullptr : &generation, "generation_config.json");
    (void)c;
  });
}
