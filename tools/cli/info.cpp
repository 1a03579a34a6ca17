// tools/cli/info.cpp: what `tessera info` prints about a checkpoint: config, weights, and the
// memory a session would need (KV cache, SSM state) for a given context.
#include "cli.hpp"

#include <algorithm>
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
  std::uint64_t f32_weight_bytes = 0;        // weights held as f32 (non-f32 tensors converted once)
};

/// Estimated f32 KV-cache bytes for `context` tokens (batch 1); sliding-window layers hold at most
/// the window.
std::uint64_t estimate_kv_bytes(const model_config& c, index_t context) {
  std::uint64_t total = 0;
  for (index_t i = 0; i < c.n_layers; ++i) {
    const char kind = i < static_cast<index_t>(c.layer_schedule.size()) ? c.layer_schedule[static_cast<std::size_t>(i)] : 'A';
    if (kind != 'A') continue;
    index_t len = context;
    bool sliding = c.sliding_window.has_value();
    if (!c.layer_types.empty()) sliding = c.sliding_window && c.layer_types[static_cast<std::size_t>(i)] == "sliding_attention";
    if (sliding) len = std::min(len, *c.sliding_window);
    total += 2ull * static_cast<std::uint64_t>(c.n_kv_heads * c.head_dim) * static_cast<std::uint64_t>(len) * 4;
  }
  return total;
}

/// Estimated f32 recurrent-state bytes (conv + SSM) of the Mamba layers (batch 1).
std::uint64_t estimate_ssm_state_bytes(const model_config& c) {
  std::uint64_t per_layer = 0;
  if (c.family == "mamba2") {
    const index_t conv_dim = c.d_inner + 2 * c.n_groups * c.d_state;
    per_layer = static_cast<std::uint64_t>(c.ssm_n_heads * c.ssm_head_dim * c.d_state + conv_dim * (c.d_conv - 1)) * 4;
  } else if (c.d_state > 0) {
    per_layer = static_cast<std::uint64_t>(c.d_inner * c.d_state + c.d_inner * (c.d_conv - 1)) * 4;
  }
  const auto n_m = static_cast<std::uint64_t>(std::count(c.layer_schedule.begin(), c.layer_schedule.end(), 'M'));
  return per_layer * n_m;
}

/// Gathers config, weights and memory estimates for `context` tokens (0: max_position, or 2048
/// when that is unknown).
checkpoint_summary summarize(const std::filesystem::path& path, index_t context = 0) {
  checkpoint_summary s;
  s.config = load_config(path);
  const auto m = io::weight_map::open(path);
  s.files = m.files();
  if (m.gguf()) s.format = "gguf v" + std::to_string(m.gguf()->version());
  else s.format = s.files.size() > 1 ? "safetensors (" + std::to_string(s.files.size()) + " shards)" : "safetensors";
  s.n_params = m.total_numel();
  s.bytes = m.total_bytes();
  s.dtype_counts = m.dtype_counts();
  for (const auto& n : m.names()) {
    const auto& i = m.info(n);
    s.tensors.push_back({n, i.type_name, i.extents});
    s.f32_weight_bytes += static_cast<std::uint64_t>(i.numel) * 4;
  }
  s.context = context > 0 ? context : (s.config.max_position > 0 ? s.config.max_position : 2048);
  s.kv_cache_bytes = estimate_kv_bytes(s.config, s.context);
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
  o << "memory (context " << s.context << "): weights as f32 " << human_bytes(s.f32_weight_bytes)
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

int run_info(const info_options& o) {
  apply_threads(o.common);
  const auto path = resolve_model(o.common.model);
  const auto summary = summarize(path, o.context);
  std::cout << to_string(summary, o.tensors);
  return 0;
}

}  // namespace tessera::cli
