// tests/fuzz/fuzz_common.hpp: what every fuzz target shares (docs/fuzzing.md).
//
// A target is one function, declared with TESSERA_FUZZ_TARGET(name): with libFuzzer
// (TESSERA_FUZZ=ON, clang) it is LLVMFuzzerTestOneInput; in the replay build (any compiler,
// always built with the tests) it registers itself with replay_main.cpp, which runs it on every
// file of the committed corpus and crash folders. A target may let tessera::error out (a refused
// input is the expected outcome); anything else escaping (std::bad_alloc, std::length_error, a
// nlohmann exception, a crash) is a finding.
//
// Inputs made of several files (config + weights, index + shards, tokenizer + text) separate their
// parts with `part_separator`; a part absent from the input is empty.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <tessera/core/error.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/io/mmap.hpp>
#include <tessera/io/weights.hpp>

namespace tessera::fuzz {

using target_fn = int (*)(const std::uint8_t*, std::size_t);
void register_target(const char* name, target_fn fn);

struct registrar {
  registrar(const char* name, target_fn fn) { register_target(name, fn); }
};

/// Between the parts of a multi-file input.
inline constexpr std::string_view part_separator = "\n--tessera-fuzz-part--\n";

/// The first `max_parts` parts of the input (the last one takes the rest, separators included).
inline std::vector<std::string_view> split_parts(const std::uint8_t* data, std::size_t size, std::size_t max_parts) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const auto at = s.find(part_separator);
    if (at == std::string_view::npos) break;
    parts.push_back(s.substr(0, at));
    s.remove_prefix(at + part_separator.size());
  }
  parts.push_back(s);
  parts.resize(max_parts);
  return parts;
}

/// Bytes as an in-memory file named `name` (the readers' messages name it).
inline std::shared_ptr<const io::mapped_file> as_file(std::string_view bytes, std::string name) {
  std::vector<std::byte> b(bytes.size());
  if (!bytes.empty()) std::memcpy(b.data(), bytes.data(), bytes.size());
  return std::make_shared<const io::mapped_file>(io::mapped_file::from_bytes(std::move(b), std::move(name)));
}

/// Reads every weight of `m` as f32 (conversions, dequantization, GGUF transforms), skipping
/// tensors of more than `max_numel` elements (they are backed by file bytes, so this only bounds
/// the time of one input).
inline void touch_all(const io::weight_map& m, std::int64_t max_numel = std::int64_t{1} << 20) {
  for (const auto& name : m.names()) {
    const auto& i = m.info(name);
    if (i.numel > max_numel) continue;
    switch (i.extents.size()) {
      case 1: (void)m.f32<1>(name); break;
      case 2: (void)m.f32<2>(name); break;
      case 3: (void)m.f32<3>(name); break;
      case 4: (void)m.f32<4>(name); break;
      default: break;
    }
  }
}

/// Runs `body`; a tessera::error (the input was refused, as it should be) ends it quietly, or
/// on stderr when $TESSERA_FUZZ_VERBOSE is set (to see which seeds load and which are refused).
template <class F>
int refusals_ok(F&& body) {
  static const bool verbose = std::getenv("TESSERA_FUZZ_VERBOSE") != nullptr;
  try {
    body();
    if (verbose) std::fprintf(stderr, "accepted\n");
  } catch (const tessera::error& e) {
    if (verbose) std::fprintf(stderr, "refused: %s\n", e.what());
  }
  return 0;
}

/// One thread: the fuzzer measures one core, and OpenMP teams would only add noise.
inline void single_thread() {
  static const bool once = [] {
    set_num_threads(1);
    return true;
  }();
  (void)once;
}

}  // namespace tessera::fuzz

#ifdef TESSERA_FUZZ_REPLAY
#define TESSERA_FUZZ_TARGET(name)                                                             \
  static int tessera_fuzz_##name(const std::uint8_t* data, std::size_t size);                 \
  static const ::tessera::fuzz::registrar tessera_fuzz_registrar_##name(#name, &tessera_fuzz_##name); \
  static int tessera_fuzz_##name(const std::uint8_t* data, std::size_t size)
#else
#define TESSERA_FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
#endif
