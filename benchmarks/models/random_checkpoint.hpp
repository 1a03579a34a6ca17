// Writes random-weight Hugging Face checkpoints (config.json + model.safetensors) for benchmarks:
// the shapes of the peer table, f32 or bf16 weights.
#pragma once

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include <tessera/io/safetensors.hpp>

namespace tessera::bench {

struct llama_shape {
  std::string name;
  index_t d_model, n_layers, n_heads, n_kv_heads, d_ff, vocab;
  bool tied = false;
};

inline llama_shape llama_768x12() { return {"llama768x12", 768, 12, 12, 12, 2048, 32000, false}; }
inline llama_shape stories15m() { return {"stories15M", 288, 6, 6, 6, 768, 32000, true}; }

/// The folder for `shape` in `dtype` under the system temp dir, written once and reused.
inline std::filesystem::path random_llama(const llama_shape& s, dtype type) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("tessera_bench_" + s.name + "_" + std::string(dtype_name(type)));
  if (fs::exists(dir / "model.safetensors")) return dir;
  fs::create_directories(dir);
  nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},
                        {"hidden_size", s.d_model}, {"num_hidden_layers", s.n_layers},
                        {"num_attention_heads", s.n_heads}, {"num_key_value_heads", s.n_kv_heads},
                        {"intermediate_size", s.d_ff}, {"vocab_size", s.vocab}, {"max_position_embeddings", 4096},
                        {"rms_norm_eps", 1e-5}, {"tie_word_embeddings", s.tied}, {"hidden_act", "silu"},
                        {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
  std::ofstream(dir / "config.json") << cfg.dump(2);
  std::mt19937 g(1234);
  std::normal_distribution<float> nd(0.f, 0.02f);
  io::safetensors_writer w;
  auto add = [&](const std::string& name, index_t rows, index_t cols, bool norm) {
    if (norm) {
      tensor<float, 1> t({cols});
      for (auto& x : t) x = 1.f + nd(g);
      w.add(name, t);
      return;
    }
    if (type == dtype::bf16) {
      tensor<bf16, 2> t({rows, cols});
      for (auto& x : t) x = bf16(nd(g));
      w.add(name, t);
    } else if (type == dtype::f16) {
      tensor<f16, 2> t({rows, cols});
      for (auto& x : t) x = f16(nd(g));
      w.add(name, t);
    } else {
      tensor<float, 2> t({rows, cols});
      for (auto& x : t) x = nd(g);
      w.add(name, t);
    }
  };
  const index_t hd = s.d_model / s.n_heads;
  add("model.embed_tokens.weight", s.vocab, s.d_model, false);
  for (index_t i = 0; i < s.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i);
    add(p + ".input_layernorm.weight", 0, s.d_model, true);
    add(p + ".post_attention_layernorm.weight", 0, s.d_model, true);
    add(p + ".self_attn.q_proj.weight", s.n_heads * hd, s.d_model, false);
    add(p + ".self_attn.k_proj.weight", s.n_kv_heads * hd, s.d_model, false);
    add(p + ".self_attn.v_proj.weight", s.n_kv_heads * hd, s.d_model, false);
    add(p + ".self_attn.o_proj.weight", s.d_model, s.n_heads * hd, false);
    add(p + ".mlp.gate_proj.weight", s.d_ff, s.d_model, false);
    add(p + ".mlp.up_proj.weight", s.d_ff, s.d_model, false);
    add(p + ".mlp.down_proj.weight", s.d_model, s.d_ff, false);
  }
  add("model.norm.weight", 0, s.d_model, true);
  if (!s.tied) add("lm_head.weight", s.vocab, s.d_model, false);
  w.write(dir / "model.safetensors");
  return dir;
}

}  // namespace tessera::bench
