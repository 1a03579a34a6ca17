// Fuzz target: one safetensors file through the reader and weight_map (every tensor read as f32).
#include "fuzz_common.hpp"

using namespace tessera;

TESSERA_FUZZ_TARGET(safetensors) {
  fuzz::single_thread();
  return fuzz::refusals_ok([&] {
    auto f = std::make_shared<io::safetensors_file>(fuzz::as_file({reinterpret_cast<const char*>(data), size}, "fuzz.safetensors"));
    (void)f->metadata();
    const auto m = io::weight_map::from_safetensors({f}, "fuzz.safetensors");
    fuzz::touch_all(m);
  });
}
