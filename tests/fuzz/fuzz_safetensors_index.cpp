// Fuzz target: a sharded checkpoint, model.safetensors.index.json + shards, opened from a folder
// as weight_map::open does (the index names the shards; the input's parts after the index are
// written as model-00001-of-00003.safetensors, model-00002-..., model-00003-...).
#include "fuzz_common.hpp"

#include <filesystem>
#include <fstream>

#include <unistd.h>

using namespace tessera;

namespace {

const std::filesystem::path& folder() {
  static const std::filesystem::path p = [] {
    auto d = std::filesystem::temp_directory_path() / ("tessera_fuzz_index_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return p;
}

void write(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TESSERA_FUZZ_TARGET(safetensors_index) {
  fuzz::single_thread();
  const auto parts = fuzz::split_parts(data, size, 4);
  const auto& dir = folder();
  write(dir / "model.safetensors.index.json", parts[0]);
  for (int k = 1; k <= 3; ++k)
    write(dir / ("model-0000" + std::to_string(k) + "-of-00003.safetensors"), parts[static_cast<std::size_t>(k)]);
  return fuzz::refusals_ok([&] {
    const auto m = io::weight_map::open(dir);
    fuzz::touch_all(m);
  });
}
