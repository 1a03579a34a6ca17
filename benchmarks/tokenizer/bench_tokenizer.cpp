// Encode throughput (MB/s, single thread) per tokenizer algorithm on a few MB of mixed text, and
// the time of 100 KB vs 1 MB inputs without spaces (linear: ~10x, quadratic would be 100x).
//
// Vocabularies: the real GGUF ones of tests/data/tokenizers (GPT-2 byte-level BPE, Phi-3
// SentencePiece BPE, BGE WordPiece) and the tokenizer.json fixtures of tests/data/tokenizers_hf
// (tiny trained Llama-3-style BPE and T5-style Unigram).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <tessera/tokenizer/tokenizer.hpp>

using namespace tessera;

namespace {

const std::map<std::string, std::string>& sources() {
  static const std::map<std::string, std::string> m = {
      {"gpt2_bpe", "tokenizers/ggml-vocab-gpt-2.gguf"},
      {"phi3_spm", "tokenizers/ggml-vocab-phi-3.gguf"},
      {"bge_wordpiece", "tokenizers/ggml-vocab-bert-bge.gguf"},
      {"llama3_bpe_tiny", "tokenizers_hf/bpe_bytelevel_llama3"},
      {"t5_unigram_tiny", "tokenizers_hf/unigram_t5"},
  };
  return m;
}

const tokenizer& get(const std::string& name) {
  static std::map<std::string, tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end())
    it = cache.emplace(name, tokenizer::load(std::string(TESSERA_TEST_DATA_DIR) + "/" + sources().at(name))).first;
  return it->second;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// ~4 MB of mixed text: English licence texts (prose, code-like lists, numbers) interleaved with
/// the multilingual / emoji / whitespace test strings of llama.cpp's tokenizer tests.
const std::string& mixed_text() {
  static const std::string text = [] {
    std::string prose;
    for (const char* f : {"/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/Apache-2.0",
                          "/usr/share/common-licenses/LGPL-2.1", "/usr/share/common-licenses/MPL-2.0"})
      prose += slurp(f);
    const std::string intl = slurp(std::string(TESSERA_TEST_DATA_DIR) + "/tokenizers/ggml-vocab-gpt-2.gguf.inp");
    std::string out;
    while (out.size() < (4u << 20)) {
      out += prose;
      out += intl;
    }
    return out;
  }();
  return text;
}

void BM_encode(benchmark::State& state, std::string name) {
  const tokenizer& tk = get(name);
  const std::string& text = mixed_text();
  std::size_t n_ids = 0;
  for (auto _ : state) {
    auto ids = tk.encode(text, false);
    n_ids = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
  state.counters["bytes/token"] = static_cast<double>(text.size()) / static_cast<double>(n_ids);
}

void BM_encode_nospace(benchmark::State& state, std::string name) {
  const tokenizer& tk = get(name);
  const std::string unit = "Lorem_ipsum-dolor.sit/amet,consectetur;adipiscing+elit42";
  std::string text;
  while (text.size() < static_cast<std::size_t>(state.range(0))) text += unit;
  text.resize(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    auto ids = tk.encode(text, false);
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}

void BM_decode(benchmark::State& state, std::string name) {
  const tokenizer& tk = get(name);
  const auto ids = tk.encode(mixed_text().substr(0, 1 << 20), false);
  for (auto _ : state) {
    auto s = tk.decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * ids.size()));
}

const int registered = [] {
  for (const auto& [name, path] : sources()) {
    benchmark::RegisterBenchmark(("BM_encode/" + name + "/mixed_4MB").c_str(), BM_encode, name)
        ->Unit(benchmark::kMillisecond)->MinTime(1.0);
    benchmark::RegisterBenchmark(("BM_encode_nospace/" + name).c_str(), BM_encode_nospace, name)
        ->Arg(100 << 10)->Arg(1 << 20)->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("BM_decode/" + name + "/1MB").c_str(), BM_decode, name)->Unit(benchmark::kMillisecond);
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
