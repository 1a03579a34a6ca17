// tests/fuzz/replay_main.cpp: runs fuzz targets on committed inputs, without libFuzzer.
//
//   fuzz_replay <target> <file or folder>...
//
// Every regular file (folders: recursively, in name order) goes through the target once. Any
// exception escaping the target (targets catch tessera::error themselves), or a crash, fails the
// run naming the file. ctest runs one `fuzz_replay.<target>` per target over
// tests/fuzz/corpus/<target> and tests/fuzz/crashes/<target> (docs/fuzzing.md).
#include "fuzz_common.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

namespace tessera::fuzz {

static std::map<std::string, target_fn>& targets() {
  static std::map<std::string, target_fn> t;
  return t;
}

void register_target(const char* name, target_fn fn) { targets()[name] = fn; }

}  // namespace tessera::fuzz

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  using namespace tessera::fuzz;
  if (argc < 2 || !targets().count(argv[1])) {
    std::fprintf(stderr, "usage: fuzz_replay <target> <file or folder>...\ntargets:");
    for (const auto& [name, fn] : targets()) std::fprintf(stderr, " %s", name.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  const target_fn fn = targets()[argv[1]];
  std::vector<fs::path> files;
  for (int a = 2; a < argc; ++a) {
    const fs::path p = argv[a];
    if (fs::is_directory(p)) {
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file() && e.path().filename().string()[0] != '.') files.push_back(e.path());
    } else if (fs::is_regular_file(p)) {
      files.push_back(p);
    } else if (fs::exists(p)) {
      std::fprintf(stderr, "fuzz_replay: %s is not a file or folder\n", p.c_str());
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& f : files) {
    if (std::getenv("TESSERA_FUZZ_VERBOSE")) std::fprintf(stderr, "%s: ", f.c_str());
    std::ifstream in(f, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    try {
      fn(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz_replay %s: %s: uncaught %s\n", argv[1], f.c_str(), e.what());
      return 1;
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("fuzz_replay %s: %zu inputs in %.2f s\n", argv[1], files.size(), s);
  return files.empty() ? 1 : 0;
}
