// tools/cli/cli.hpp: the tessera command-line tool's options and shared helpers.
//
// One struct per command holds what CLI11 parsed; main.cpp builds the parser, the run_* functions
// do the work and return the exit status. Results go to stdout, everything else to stderr.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <tessera/attention/kv_cache.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/io/gguf.hpp>
#include <tessera/models/sampling.hpp>

namespace tessera::cli {

/// A mistake in the command line that CLI11 cannot see (exit status 2).
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Options every command takes.
struct common_options {
  std::string model;   // empty: the bundled default model
  int threads = 0;     // 0: leave the OpenMP default
  bool verbose = false;
  std::optional<std::string> max_memory;  // --max-memory: "8G", "512M", "1000000" (bytes)
  std::optional<io::ggml_type> quantize;  // --quantize: f32 / f16 / bf16 matrices encoded into these blocks at load
};

struct generate_options {
  common_options common;
  std::optional<std::string> prompt;
  std::optional<std::string> tokens;
  index_t n_new = 256;
  sampling_params sampling;
  std::optional<std::uint64_t> seed;
  bool print_ids = false;
  bool ignore_eos = false;
  kv_element cache_type = kv_element::f32;  // KV cache elements (--cache-type)
};

struct run_options {
  common_options common;
  std::string inputs, outputs;
};

struct info_options {
  common_options common;
  index_t context = 0;
  bool tensors = true;
};

struct bench_options {
  common_options common;
  index_t n_prompt = 512;
  index_t n_gen = 128;
  int reps = 3;
  kv_element cache_type = kv_element::f32;
  index_t parallel = 1;  // sequences prefilled and decoded together (prefill_batch / step_batch)
};

struct tokenize_options {
  common_options common;
  std::optional<std::string> text;
  std::optional<std::string> file;
  bool no_special = false;
};

struct detokenize_options {
  common_options common;
  std::string tokens;
  bool skip_special = false;
};

struct quantize_options {
  common_options common;  // -t and -v (no model: IN is the input)
  std::string input, output;
  std::string type;       // a llama-quantize preset name: Q4_K_M, Q8_0, ... (checked by run_quantize)
};

int run_generate(const generate_options&);
int run_run(const run_options&);
int run_info(const info_options&);
int run_bench(const bench_options&);
int run_tokenize(const tokenize_options&);
int run_detokenize(const detokenize_options&);
int run_quantize(const quantize_options&);

// ---- the tokenizer, behind a wall (text_commands.cpp) ------------------------------------
// tokenizer.hpp names tok::decoder unqualified inside namespace tessera, which clashes with the
// decoder<Block> template of the model headers; so the two never meet in one translation unit.
class text_codec {
 public:
  /// tokenizer::load(path): a .gguf file or a Hugging Face folder.
  static text_codec load(const std::filesystem::path& path);
  std::vector<std::int32_t> encode(const std::string& text, bool add_special_tokens) const;
  std::string decode(const std::vector<std::int32_t>& ids, bool skip_special_tokens) const;
  std::vector<std::int32_t> eos_ids() const;
  /// Streaming decode (tokenizer::stream_decoder): push ids, print what they complete.
  void stream_begin(bool skip_special_tokens);
  std::string stream_push(std::int32_t id);
  std::string stream_flush();

 private:
  struct impl;
  std::shared_ptr<impl> p_;
};

// ---- helpers (common.cpp) ------------------------------------------------------------------

/// The checkpoint to use: `model` when given (io_error when it does not exist), else the bundled
/// default model (looked for beside the executable, in ../share/tessera/models, and at the path
/// compiled in; $TESSERA_DEFAULT_MODEL overrides).
std::filesystem::path resolve_model(const std::string& model);

/// Applies -t (set_num_threads) when given.
void apply_threads(const common_options&);

/// --max-memory (info.cpp): when given, estimates what loading `path` and one session of
/// `context` tokens need (weights as the model holds them, --quantize counted; KV cache of `kv_type` elements, SSM state)
/// from the config and the files' headers, before anything is read or allocated, and throws a
/// range_error naming the estimate and the limit when it is larger. `f32_outputs` (run): the
/// extents of the f32 tensors the command writes, counted twice (the tensor and the writer's copy).
void check_max_memory(const common_options&, const std::filesystem::path& path, index_t context,
                      kv_element kv_type, std::span<const std::vector<index_t>> f32_outputs = {},
                      index_t sessions = 1);

/// "8G", "512M", "64KiB", "1000000" -> bytes (powers of 1024); usage_error naming `option`.
std::uint64_t parse_bytes(const std::string& text, const char* option);

/// "1,2,3" or "1 2 3" -> ids; usage_error naming the bad entry; empty -> usage_error.
std::vector<std::int32_t> parse_ids(const std::string& text, const char* option);

/// Seconds since `t0`.
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace tessera::cli
