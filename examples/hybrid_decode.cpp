// hybrid_decode: builds a small random-weight hybrid LM from a layer schedule and decodes greedily.
//
//   example_hybrid_decode [MIXERS FFNS]     e.g.  example_hybrid_decode "S-S-A-S-" "-F-F-F-F"
//
// Mixer letters: M Mamba-1, S Mamba-2, A softmax attention, R retention, G gated delta rule, - none;
// feed-forward letters: F dense MLP, E mixture of experts, - none (models/hybrid.hpp). Without
// arguments it runs a Jamba-like stack (Mamba + attention every 4th layer, MoE every 2nd) and a
// Qwen3-Next-like one (gated delta rule with softmax attention every 3rd layer). It shows the
// composite session state at work: a prompt prefix is prefilled once, snapshotted, and continued
// with two different suffixes.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <tessera/families/hybrid.hpp>

#include "random_checkpoint/random_hybrid.hpp"

using namespace tessera;

static int argmax(tensor_view<const float, 1> v) {
  index_t b = 0;
  for (index_t i = 1; i < v.extent(0); ++i)
    if (v(i) > v(b)) b = i;
  return static_cast<int>(b);
}

static void run(const families::hybrid_schedule& schedule) {
  model_config cfg;
  cfg.family = "hybrid";
  cfg.vocab = 256, cfg.d_model = 64, cfg.n_layers = schedule.n_layers(), cfg.norm_eps = 1e-5f;
  cfg.d_inner = 128, cfg.d_state = 16, cfg.d_conv = 4, cfg.dt_rank = 4;                 // Mamba-1
  cfg.ssm_n_heads = 4, cfg.ssm_head_dim = 32, cfg.n_groups = 1, cfg.chunk = 16;         // Mamba-2
  cfg.time_step_limit_hi = 1e30f;
  cfg.n_heads = 4, cfg.n_kv_heads = 2, cfg.head_dim = 16;                               // attention
  cfg.d_ff = 128, cfg.n_experts = 4, cfg.n_experts_per_tok = 2;                         // MLP / MoE
  const auto file = std::filesystem::temp_directory_path() / "tessera_hybrid_decode.safetensors";
  testing::write_random_hybrid(cfg, schedule, {}, file, 42);
  auto weights = std::make_shared<const io::weight_map>(io::weight_map::open(file));
  auto model = families::load_hybrid(cfg, schedule, {}, weights);
  std::filesystem::remove(file);
  std::printf("schedule  mixers %s  ffns %s\n", schedule.mixers.c_str(), schedule.ffns.c_str());

  auto session = model->new_session({.max_len = 256, .max_prefill = 64});
  const std::vector<std::int32_t> prefix = {1, 17, 42, 99, 7, 3, 250, 64, 128, 5};
  session->prefill(prefix);
  const auto snap = session->snapshot();  // the prefix, prefilled once
  for (const std::vector<std::int32_t>& suffix : {std::vector<std::int32_t>{11, 12}, std::vector<std::int32_t>{200}}) {
    session->restore(snap);
    session->prefill(suffix);
    std::printf("  suffix of %zu token(s) → greedy:", suffix.size());
    const auto t0 = std::chrono::steady_clock::now();
    const int n = 16;
    for (int i = 0; i < n; ++i) {
      const int id = argmax(session->logits());
      std::printf(" %d", id);
      session->step(id);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("   (%.0f tok/s, position %lld)\n", n / s, static_cast<long long>(session->position()));
  }
}

int main(int argc, char** argv) {
  try {
    if (argc == 3) {
      const std::string m = argv[1], f = argv[2];
      run(families::hybrid_schedule::parse(m, f, static_cast<index_t>(m.size())));
      return 0;
    }
    run(families::hybrid_schedule::periodic(8, 4, 2, 2, 1, 'M'));   // Jamba-like
    run(families::hybrid_schedule::every_kth(6, 'G', 'A', 3, 'F'));  // gated delta + softmax every 3rd
    run(families::hybrid_schedule::parse("S-S-A-S-", "-F-F-F-F", 8)); // Mamba-2-Hybrid-like
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hybrid_decode: %s\n", e.what());
    return 1;
  }
  return 0;
}
