// Single-thread encode throughput of tessera's tokenizer, without Google Benchmark, so that one
// static executable can run next to HF `tokenizers` on another machine (compare_tokenizers_hf.py).
//
//   tokenizer_throughput [--lines] [--special] [--reps N] [--ids-dir DIR] <text file> <tokenizer>...
//
// For each tokenizer (a .gguf file, an HF folder or a tokenizer.json) it prints one line:
//   name bytes tokens best_seconds MB/s fnv1a64(ids) first_ids... last_ids...
// --lines     encode line by line (each line keeps its '\n'; empty pieces skipped) instead of one
//             encode() call on the whole text; the ids of all lines are concatenated.
// --special   add_special_tokens = true (default false, as bench_tokenizer).
// --reps N    best of N (default 5).
// --ids-dir   write the ids as little-endian int32 to DIR/<name>.ids (for the equality check).
//
// Build (static, so it runs wherever x86-64-v3 does):
//   g++ -std=c++20 -O3 -march=x86-64-v3 -static -I include tools/bench/tokenizer_throughput.cpp \
//       -o out/tokenizer_throughput -lpcre2-8 -lutf8proc
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <tessera/tokenizer/tokenizer.hpp>

namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + p.string());
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// "tests/data/tokenizers_hf/unigram_t5/tokenizer.json" -> "unigram_t5", "x/ggml-vocab-gpt-2.gguf" -> "ggml-vocab-gpt-2".
std::string name_of(fs::path p) {
  if (p.filename() == "tokenizer.json") p = p.parent_path();
  if (p.filename().empty()) p = p.parent_path();  // trailing '/'
  return p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t nl = text.find('\n', pos);
    std::size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
    lines.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return lines;
}

std::uint64_t fnv1a(const std::vector<std::int32_t>& ids) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::int32_t id : ids)
    for (int b = 0; b < 4; ++b) h = (h ^ ((static_cast<std::uint32_t>(id) >> (8 * b)) & 0xff)) * 1099511628211ull;
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  bool lines_mode = false, special = false;
  int reps = 5;
  std::string ids_dir;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--lines") lines_mode = true;
    else if (a == "--special") special = true;
    else if (a == "--reps" && i + 1 < argc) reps = std::stoi(argv[++i]);
    else if (a == "--ids-dir" && i + 1 < argc) ids_dir = argv[++i];
    else pos.push_back(a);
  }
  if (pos.size() < 2) {
    std::fprintf(stderr, "usage: %s [--lines] [--special] [--reps N] [--ids-dir DIR] <text file> <tokenizer>...\n", argv[0]);
    return 2;
  }
  const std::string text = slurp(pos[0]);
  const std::vector<std::string_view> lines = split_lines(text);
  std::printf("# mode=%s add_special_tokens=%d reps=%d text=%s\n", lines_mode ? "lines" : "whole", special, reps, pos[0].c_str());
  std::printf("# name bytes tokens best_s MB/s fnv1a64 first_ids last_ids\n");

  for (std::size_t t = 1; t < pos.size(); ++t) {
    const tessera::tokenizer tk = tessera::tokenizer::load(pos[t]);
    std::vector<std::int32_t> ids;
    double best = 1e300;
    for (int r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      if (lines_mode) {
        ids.clear();
        for (std::string_view line : lines) {
          auto part = tk.encode(line, special);
          ids.insert(ids.end(), part.begin(), part.end());
        }
      } else {
        ids = tk.encode(text, special);
      }
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    const std::string name = name_of(pos[t]);
    std::printf("%s %zu %zu %.4f %.2f %016llx", name.c_str(), text.size(), ids.size(), best,
                static_cast<double>(text.size()) / best / 1e6, static_cast<unsigned long long>(fnv1a(ids)));
    for (std::size_t i = 0; i < std::min<std::size_t>(4, ids.size()); ++i) std::printf(" %d", ids[i]);
    std::printf(" ...");
    for (std::size_t i = ids.size() - std::min<std::size_t>(4, ids.size()); i < ids.size(); ++i) std::printf(" %d", ids[i]);
    std::printf("\n");
    std::fflush(stdout);
    if (!ids_dir.empty()) {
      std::ofstream f(fs::path(ids_dir) / (name + ".ids"), std::ios::binary);
      f.write(reinterpret_cast<const char*>(ids.data()), static_cast<std::streamsize>(ids.size() * sizeof(std::int32_t)));
    }
  }
  return 0;
}
