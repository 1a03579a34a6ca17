// tools/cli/info.cpp: what `tessera info` prints about a checkpoint: config, weights, and the
// memory a session would need (KV cache, SSM state) for a given context.
#include "cli.hpp"

#include <algorithm>
#include <cctype>
#include <limits>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>

#include <tessera/families/registry.hpp>
#include <tessera/io/weights.hpp>

namespace tessera::cli {

namespace {

/// What `tessera info` prints about a checkpoint.
struct checkpoint_summary {
  model_config config;
  std::string format;                        // "safetensors", "safetensors (4 shards)", "gguf v3"
  std::vector<std::string> files;
  std::int64_t n_params = 0;                 // elements of all weights
  std::uint64_t bytes = 0;                   // bytes of all weights in their files
  std::map<std::string, index_t> dtype_counts;
  struct tensor_row {
    std::string name, type;
    std::vector<index_t> extents;
  };
  std::vector<tensor_row> tensors;           // sorted by name
  index_t context = 0;                       // tokens the estimates are for
  std::uint64_t kv_cache_bytes = 0;          // f32 K and V of every attention layer, batch 1
  std::uint64_t ssm_state_bytes = 0;         // f32 conv + SSM states of every Mamba layer, batch 1
  std::uint64_t weight_bytes = 0;            // what a model holds: matrices in place (f16, bf16, blocks), the rest as f32
};

/// Products and sums of sizes, checked: a range_error naming `what` when one passes 2^64 bytes
/// (a context of 2^63 tokens printed a wrapped estimate).
struct checked_bytes {
  const std::string& what;
  std::uint64_t mul(std::uint64_t a, std::uint64_t b) const {
    std::uint64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) overflow();
    return r;
  }
  std::uint64_t add(std::uint64_t a, std::uint64_t b) const {
    std::uint64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) overflow();
    return r;
  }
  [[noreturn]] void overflow() const { throw range_error(what + " needs more than 2^64 bytes"); }
};

std::uint64_t size_of(index_t v) { return v > 0 ? static_cast<std::uint64_t>(v) : 0; }

/// Estimated KV-cache bytes for `context` tokens (batch 1, keys and values stored as `element`);
/// sliding-window layers hold at most the window. range_error past 2^64 bytes.
std::uint64_t estimate_kv_bytes(const model_config& c, index_t context, kv_element element) {
  const std::string what = "the KV cache of a context of " + std::to_string(context) + " tokens";
  const checked_bytes b{what};
  std::uint64_t total = 0;
  for (index_t i = 0; i < c.n_layers; ++i) {
    const char kind = i < static_cast<index_t>(c.layer_schedule.size()) ? c.layer_schedule[static_cast<std::size_t>(i)] : 'A';
    if (kind != 'A') continue;
    index_t len = context;
    bool sliding = c.sliding_window.has_value();
    if (!c.layer_types.empty() && static_cast<std::size_t>(i) < c.layer_types.size())
      sliding = c.sliding_window && c.layer_types[static_cast<std::size_t>(i)] == "sliding_attention";
    if (sliding) len = std::min(len, *c.sliding_window);
    const std::uint64_t row = b.mul(size_of(c.n_kv_heads), 2 * kv_row_bytes(element, c.head_dim));  // K and V
    total = b.add(total, b.mul(row, size_of(len)));
  }
  return total;
}

/// Estimated f32 recurrent-state bytes (conv + SSM) of the Mamba layers (batch 1).
std::uint64_t estimate_ssm_state_bytes(const model_config& c) {
  const std::string what = "the SSM state";
  const checked_bytes b{what};
  std::uint64_t per_layer = 0;
  const std::uint64_t conv_taps = size_of(c.d_conv - 1);
  if (c.family == "mamba2") {
    const std::uint64_t conv_dim = b.add(size_of(c.d_inner), b.mul(2 * size_of(c.n_groups), size_of(c.d_state)));
    per_layer = b.mul(b.add(b.mul(b.mul(size_of(c.ssm_n_heads), size_of(c.ssm_head_dim)), size_of(c.d_state)),
                            b.mul(conv_dim, conv_taps)), 4);
  } else if (c.d_state > 0) {
    per_layer = b.mul(b.mul(size_of(c.d_inner), size_of(c.d_state) + conv_taps), 4);
  }
  const auto n_m = static_cast<std::uint64_t>(std::count(c.layer_schedule.begin(), c.layer_schedule.end(), 'M'));
  return b.mul(per_layer, n_m);
}

/// Gathers config, weights and memory estimates for `context` tokens (0: max_position, or 2048
/// when that is unknown).
checkpoint_summary summarize(const std::filesystem::path& path, index_t context = 0,
                             std::optional<io::ggml_type> quantize = {}) {
  checkpoint_summary s;
  s.config = load_config(path);
  auto m = open_weights(path);
  m.set_matrix_quantization(quantize);
  s.files = m.files();
  if (m.gguf()) s.format = "gguf v" + std::to_string(m.gguf()->version());
  else s.format = s.files.size() > 1 ? "safetensors (" + std::to_string(s.files.size()) + " shards)" : "safetensors";
  s.n_params = m.total_numel();
  s.bytes = m.total_bytes();
  s.dtype_counts = m.dtype_counts();
  for (const auto& n : m.names()) {
    const auto& i = m.info(n);
    s.tensors.push_back({n, i.type_name, i.extents});
  }
  s.weight_bytes = m.resident_bytes();
  s.context = context > 0 ? context : (s.config.max_position > 0 ? s.config.max_position : 2048);
  s.kv_cache_bytes = estimate_kv_bytes(s.config, s.context, kv_element::f32);
  s.ssm_state_bytes = estimate_ssm_state_bytes(s.config);
  return s;
}

std::string human_bytes(std::uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", v, units[u]);
  return buf;
}

/// The text `tessera info` prints. `with_tensors` lists every tensor.
std::string to_string(const checkpoint_summary& s, bool with_tensors = true) {
  const auto& c = s.config;
  std::ostringstream o;
  o << "family:        " << c.family << "\n";
  o << "architecture:  " << c.architecture << "\n";
  o << "format:        " << s.format << "\n";
  for (const auto& f : s.files) o << "file:          " << f << "\n";
  o << "layers:        " << c.n_layers << " (" << c.layer_schedule << ")\n";
  o << "d_model:       " << c.d_model << "\n";
  o << "vocab:         " << c.vocab << "\n";
  if (c.n_heads > 0)
    o << "attention:     n_heads " << c.n_heads << ", n_kv_heads " << c.n_kv_heads << ", head_dim " << c.head_dim
      << ", d_ff " << c.d_ff << ", max_position " << c.max_position << "\n";
  if (c.d_state > 0)
    o << "ssm:           d_inner " << c.d_inner << ", d_state " << c.d_state << ", d_conv " << c.d_conv << ", dt_rank "
      << c.dt_rank << (c.ssm_n_heads ? ", n_heads " + std::to_string(c.ssm_n_heads) : std::string()) << "\n";
  if (c.n_experts > 0) o << "experts:       " << c.n_experts << " (top " << c.n_experts_per_tok << ")\n";
  o << "tied embeddings: " << (c.tie_word_embeddings ? "yes" : "no") << "\n";
  o << "parameters:    " << s.n_params << "\n";
  o << "weights:       " << human_bytes(s.bytes) << " in files;";
  for (const auto& [t, n] : s.dtype_counts) o << " " << t << " x" << n;
  o << "\n";
  o << "memory (context " << s.context << "): weights " << human_bytes(s.weight_bytes)
    << ", KV cache " << human_bytes(s.kv_cache_bytes) << ", SSM state " << human_bytes(s.ssm_state_bytes)
    << "\n";
  if (with_tensors)
    for (const auto& t : s.tensors) {
      o << "  " << t.name << "  " << t.type << " [";
      for (std::size_t i = 0; i < t.extents.size(); ++i) o << (i ? ", " : "") << t.extents[i];
      o << "]\n";
    }
  return o.str();
}

}  // namespace

std::uint64_t parse_bytes(const std::string& text, const char* option) {
  std::size_t pos = 0;
  std::uint64_t v = 0;
  while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, static_cast<std::uint64_t>(text[pos] - '0'), &v))
      throw usage_error(std::string(option) + " '" + text + "' is too large");
    ++pos;
  }
  std::string unit = text.substr(pos);
  for (auto& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  static const std::map<std::string, int> shifts = {{"", 0},  {"B", 0},   {"K", 10},  {"KB", 10}, {"KIB", 10},
                                                    {"M", 20}, {"MB", 20}, {"MIB", 20}, {"G", 30}, {"GB", 30},
                                                    {"GIB", 30}, {"T", 40}, {"TB", 40}, {"TIB", 40}};
  const auto it = shifts.find(unit);
  if (pos == 0 || it == shifts.end())
    throw usage_error(std::string(option) + " '" + text + "' is not a size (bytes, or a number with K, M, G or T)");
  if (it->second && v > (std::numeric_limits<std::uint64_t>::max() >> it->second))
    throw usage_error(std::string(option) + " '" + text + "' is too large");
  return v << it->second;
}

void check_max_memory(const common_options& o, const std::filesystem::path& path, index_t context,
                      kv_element kv_type, std::span<const std::vector<index_t>> f32_outputs,
                      index_t sessions) {
  if (!o.max_memory) return;
  const std::uint64_t limit = parse_bytes(*o.max_memory, "--max-memory");
  const model_config c = load_config(path);
  auto m = open_weights(path);  // headers only: nothing of the weights is read
  m.set_matrix_quantization(o.quantize);
  const std::string what = "the model";
  const checked_bytes b{what};
  const std::uint64_t weights = m.resident_bytes(),
                      kv = b.mul(estimate_kv_bytes(c, context, kv_type), size_of(sessions)),
                      ssm = b.mul(estimate_ssm_state_bytes(c), size_of(sessions));
  std::uint64_t outputs = 0;  // each output twice: the tensor and the writer's copy of its bytes (written from there)
  for (const auto& extents : f32_outputs) {
    std::uint64_t bytes = 2 * sizeof(float);
    for (const index_t e : extents) bytes = b.mul(bytes, size_of(e));
    outputs = b.add(outputs, bytes);
  }
  const std::uint64_t total = b.add(b.add(b.add(weights, kv), ssm), outputs);
  if (total > limit)
    throw range_error(path.string() + ": loading it needs about " + human_bytes(total) + " (weights " +
                      human_bytes(weights) + ", KV cache " + human_bytes(kv) + " for " + std::to_string(context) +
                      " tokens" + (sessions > 1 ? " × " + std::to_string(sessions) + " sequences" : std::string()) +
                      ", SSM state " + human_bytes(ssm) +
                      (f32_outputs.empty() ? std::string() : ", outputs as f32, held twice to be written, " + human_bytes(outputs)) +
                      "), more than --max-memory " + *o.max_memory);
}

int run_info(const info_options& o) {
  apply_threads(o.common);
  if (o.context < 0) throw usage_error("info: --context must be >= 0, got " + std::to_string(o.context));
  const auto path = resolve_model(o.common.model);
  if (o.common.max_memory) {
    const index_t trained = load_config(path).max_position;
    check_max_memory(o.common, path, o.context > 0 ? o.context : (trained > 0 ? trained : 2048), kv_element::f32);
  }
  const auto summary = summarize(path, o.context, o.common.quantize);
  std::cout << to_string(summary, o.tensors);
  return 0;
}

}  // namespace tessera::cli
