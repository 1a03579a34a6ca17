// tools/random_checkpoint/random_hybrid.hpp: random-weight checkpoints of schedule-defined hybrids
// (families/hybrid.hpp) for tests, examples and benchmarks. Not part of the library: the library
// reads checkpoints, it does not invent them.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <tessera/families/hybrid.hpp>
#include <tessera/io/safetensors.hpp>

namespace tessera::testing {

/// Writes a random-weight checkpoint in `names`' layout for `cfg` and `schedule` to `file`
/// (safetensors, f32): Linear weights N(0, 1/fan_in), norms 1 + N(0, 0.1²), embeddings N(0, 0.5²),
/// conv N(0, 1/d_conv), A_log = log(1..d_state) + N(0, 0.1²) (Mamba-2/G: log(1..n_heads)),
/// dt biases = inverse softplus of dt log-uniform in [1e-3, 1e-1], D = 1 + N(0, 0.2²).
inline void write_random_hybrid(const model_config& cfg, const families::hybrid_schedule& schedule,
                                const families::hybrid_layout& names,
                                const std::filesystem::path& file, std::uint64_t seed = 1) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  io::safetensors_writer out;
  auto add = [&](const std::string& name, std::vector<index_t> ext, auto gen) {
    index_t n = 1;
    for (auto e : ext) n *= e;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = gen(i, ext);
    out.add(name, dtype::f32, ext, std::as_bytes(std::span<const float>(v)));
  };
  auto normal = [&](float sd, float mean = 0.f) { return [&, sd, mean](index_t, const std::vector<index_t>&) { return mean + sd * nd(rng); }; };
  auto lin = [&](const std::string& p, index_t rows, index_t cols) {
    add(p + ".weight", {rows, cols}, normal(1.f / std::sqrt(static_cast<float>(cols))));
  };
  auto norm = [&](const std::string& p, index_t n) { add(p + ".weight", {n}, normal(0.1f, 1.f)); };
  auto inv_softplus_dt = [&](index_t, const std::vector<index_t>&) {
    const float dt = std::exp(std::log(1e-3f) + ud(rng) * (std::log(1e-1f) - std::log(1e-3f)));
    return dt + std::log(-std::expm1(-dt));
  };
  const index_t d = cfg.d_model;
  for (index_t i = 0; i < cfg.n_layers; ++i) {
    const char mk = schedule.mixers[static_cast<std::size_t>(i)], fk = schedule.ffns[static_cast<std::size_t>(i)];
    const std::string sp = families::hybrid_layout::at(names.ssm, i), ap = families::hybrid_layout::at(names.attention, i),
                      fp = families::hybrid_layout::at(names.ffn, i);
    if (mk != '-') norm(families::hybrid_layout::at(names.mixer_norm, i), d);
    if (fk != '-') norm(families::hybrid_layout::at(names.ffn_norm, i), d);
    if (mk == 'M') {
      const index_t di = cfg.d_inner, n = cfg.d_state, r = cfg.dt_rank;
      lin(sp + ".in_proj", 2 * di, d);
      add(sp + ".conv1d.weight", {di, 1, cfg.d_conv}, normal(1.f / std::sqrt(static_cast<float>(cfg.d_conv))));
      if (cfg.conv_bias) add(sp + ".conv1d.bias", {di}, normal(0.1f));
      lin(sp + ".x_proj", r + 2 * n, di);
      lin(sp + ".dt_proj", di, r);
      add(sp + ".dt_proj.bias", {di}, inv_softplus_dt);
      add(sp + ".A_log", {di, n}, [&](index_t j, const std::vector<index_t>&) {
        return std::log(static_cast<float>(j % n + 1)) + 0.1f * nd(rng);
      });
      add(sp + ".D", {di}, normal(0.2f, 1.f));
      lin(sp + ".out_proj", d, di);
      if (names.mamba_inner_norms) norm(sp + ".dt_layernorm", r), norm(sp + ".b_layernorm", n), norm(sp + ".c_layernorm", n);
    } else if (mk == 'S') {
      const index_t h = cfg.ssm_n_heads, di = h * cfg.ssm_head_dim, cd = di + 2 * cfg.n_groups * cfg.d_state;
      lin(sp + ".in_proj", di + cd + h, d);
      add(sp + ".conv1d.weight", {cd, 1, cfg.d_conv}, normal(1.f / std::sqrt(static_cast<float>(cfg.d_conv))));
      if (cfg.conv_bias) add(sp + ".conv1d.bias", {cd}, normal(0.1f));
      add(sp + ".dt_bias", {h}, inv_softplus_dt);
      add(sp + ".A_log", {h}, [&](index_t j, const std::vector<index_t>&) { return std::log(static_cast<float>(j + 1)) + 0.1f * nd(rng); });
      add(sp + ".D", {h}, normal(0.2f, 1.f));
      norm(sp + ".norm", di);
      lin(sp + ".out_proj", d, di);
    } else if (mk == 'A') {
      const index_t kv = cfg.n_kv_heads > 0 ? cfg.n_kv_heads : cfg.n_heads;
      lin(ap + ".q_proj", cfg.n_heads * cfg.head_dim, d);
      lin(ap + ".k_proj", kv * cfg.head_dim, d);
      lin(ap + ".v_proj", kv * cfg.head_dim, d);
      lin(ap + ".o_proj", d, cfg.n_heads * cfg.head_dim);
    } else if (mk == 'R' || mk == 'G') {
      const index_t hd = cfg.n_heads * cfg.head_dim;
      lin(ap + ".q_proj", hd, d), lin(ap + ".k_proj", hd, d), lin(ap + ".v_proj", hd, d), lin(ap + ".o_proj", d, hd);
      if (mk == 'G') {
        lin(ap + ".b_proj", cfg.n_heads, d), lin(ap + ".a_proj", cfg.n_heads, d);
        add(ap + ".A_log", {cfg.n_heads}, [&](index_t j, const std::vector<index_t>&) { return std::log(static_cast<float>(j + 1)) + 0.1f * nd(rng); });
        add(ap + ".dt_bias", {cfg.n_heads}, inv_softplus_dt);
      }
    }
    auto mlp = [&](const std::string& p) { lin(p + ".gate_proj", cfg.d_ff, d), lin(p + ".up_proj", cfg.d_ff, d), lin(p + ".down_proj", d, cfg.d_ff); };
    if (fk == 'F') mlp(fp);
    if (fk == 'E') {
      lin(fp + ".router", cfg.n_experts, d);
      for (index_t e = 0; e < cfg.n_experts; ++e) mlp(fp + ".experts." + std::to_string(e));
    }
  }
  add(names.embed, {cfg.vocab, d}, normal(0.5f));
  norm(names.final_norm, d);
  if (!cfg.tie_word_embeddings) lin(names.lm_head, cfg.vocab, d);
  out.write(file);
}

}  // namespace tessera::testing
