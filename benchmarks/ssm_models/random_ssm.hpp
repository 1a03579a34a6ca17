// Random-weight Mamba-130m- and Mamba-2-130m-shaped models (f32) for the ssm_models benchmarks:
// d_model 768, 24 layers, expand 2, d_conv 4, vocab 32000, tied embeddings;
//   'M' Mamba-1: d_state 16, dt_rank 48
//   'S' Mamba-2: 24 heads x 64, d_state 128, n_groups 1, chunk 256
// Weights are written once to a temporary safetensors file (~450 MB each), then mapped.
#pragma once

#include <filesystem>
#include <limits>
#include <memory>
#include <string>

#include <tessera/families/hybrid.hpp>

#include "random_checkpoint/random_hybrid.hpp"

namespace tessera::bench {

inline model_config mamba_130m_shape(char kind) {
  model_config c;
  c.family = kind == 'M' ? "mamba" : "mamba2";
  c.vocab = 32000, c.d_model = 768, c.n_layers = 24, c.norm_eps = 1e-5f, c.tie_word_embeddings = true;
  c.d_inner = 1536, c.d_conv = 4;
  if (kind == 'M') {
    c.d_state = 16, c.dt_rank = 48;
  } else {
    c.d_state = 128, c.ssm_n_heads = 24, c.ssm_head_dim = 64, c.n_groups = 1, c.chunk = 256;
    c.time_step_limit_hi = std::numeric_limits<float>::infinity();
  }
  return c;
}

/// The model of `kind` ('M' or 'S'), loaded once per process.
inline const families::hybrid_model& random_mamba_130m(char kind) {
  static std::unique_ptr<families::hybrid_model> m[2];
  auto& slot = m[kind == 'M' ? 0 : 1];
  if (!slot) {
    const auto cfg = mamba_130m_shape(kind);
    const auto sch = families::hybrid_schedule::parse(std::string(24, kind), std::string(24, '-'), 24);
    families::hybrid_layout names;
    names.mixer_norm = "backbone.layers.{}.norm", names.ssm = "backbone.layers.{}.mixer";
    names.embed = "backbone.embeddings.weight", names.final_norm = "backbone.norm_f";
    const auto file = std::filesystem::temp_directory_path() / (std::string("tessera_bench_") + kind + ".safetensors");
    if (!std::filesystem::exists(file)) testing::write_random_hybrid(cfg, sch, names, file, 3);
    auto w = std::make_shared<const io::weight_map>(io::weight_map::open(file));
    slot = families::load_hybrid(cfg, sch, names, w);
  }
  return *slot;
}

}  // namespace tessera::bench
