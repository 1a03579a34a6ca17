// Define a new decoder family in one file from existing blocks: a Llama-style decoder whose MLP is
// GeGLU and whose weights use a naming scheme of its own, registered under its own model_type so
// that load_language_model() finds it from a config.json, then run on a checkpoint written on the
// fly. A family = the layer type it composes, the weight names, a config reader, a register call.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include <tessera/tessera.hpp>

namespace my_family {
using namespace tessera;
using layer = families::decoder_layer;  // prenorm(rms, attention) then prenorm(rms, gated MLP)

// Weight names: "tok.weight", "l{i}.norm1.weight", "l{i}.wq.weight" ... , "norm.weight", "head.weight".
inline std::unique_ptr<language_model> load(const model_config& c, std::shared_ptr<const io::weight_map> weights) {
  const io::weight_map& w = *weights;
  models::causal_lm_parts<layer, layers::rms_norm_layer> m;
  m.config = c;
  m.keep_alive = families::keep(weights);
  m.embed.tokens = layers::weight_matrix::load(w, "tok.weight");
  for (index_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "l" + std::to_string(i) + ".";
    layer l;
    auto& [attn, mlp] = l.blocks;
    attn.norm = layers::rms_norm_layer::load(w, p + "norm1", c.norm_eps);
    attn.sub = layers::attention_layer(layers::linear::load(w, p + "wq"), layers::linear::load(w, p + "wk"),
                                 layers::linear::load(w, p + "wv"), layers::linear::load(w, p + "wo"),
                                 families::attention_options_of(c, i));  // RoPE, GQA from the config
    mlp.norm = layers::rms_norm_layer::load(w, p + "norm2", c.norm_eps);
    mlp.sub = layers::gated_mlp(layers::linear::load(w, p + "gate"), layers::linear::load(w, p + "up"),
                                layers::linear::load(w, p + "down"), ops::activation::gelu_tanh);  // GeGLU
    m.layers.push_back(std::move(l));
  }
  m.head.final_norm = layers::rms_norm_layer::load(w, "norm", c.norm_eps);
  m.head.lm_head = layers::linear::load(w, "head");
  return std::make_unique<families::decoder_lm>(std::move(m));
}

// config.json fields, with this family's defaults.
inline void read_config(const io::json_fields& f, model_config& c) {
  c.vocab = f.req_int("vocab_size");
  c.d_model = f.req_int("hidden_size");
  c.n_layers = f.req_int("num_hidden_layers");
  c.n_heads = f.req_int("num_attention_heads");
  c.n_kv_heads = f.get_int("num_key_value_heads", c.n_heads);
  c.head_dim = f.get_int("head_dim", c.d_model / c.n_heads);
  c.d_ff = f.req_int("intermediate_size");
  c.max_position = f.get_int("max_position_embeddings", 2048);
  c.norm_eps = f.get_float("rms_norm_eps", 1e-5);
}

inline const bool registered = register_family({.name = "my_family",
                                                .model_types = {"my_family"},
                                                .architectures = {"MyFamilyForCausalLM"},
                                                .read_hf = read_config,
                                                .load = load});
}  // namespace my_family

int main() try {
  using namespace tessera;
  // A tiny random checkpoint in the family's own naming.
  model_config c;
  c.family = "my_family";
  c.vocab = 64, c.d_model = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8, c.d_ff = 48;
  c.max_position = 128, c.norm_eps = 1e-5f;
  const auto dir = std::filesystem::temp_directory_path() / "tessera_custom_family";
  std::filesystem::create_directories(dir);
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0.f, 0.3f);
  io::safetensors_writer out;
  auto add = [&](std::string name, index_t r, index_t k) {
    name += ".weight";  // layers load "<prefix>.weight" (and "<prefix>.bias" when present)
    if (r == 0) {
      tensor<float, 1> t({k}, 1.f);
      out.add(name, t);
      return;
    }
    tensor<float, 2> t({r, k});
    for (auto& x : t) x = nd(g);
    out.add(name, t);
  };
  add("tok", c.vocab, c.d_model);
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = "l" + std::to_string(i) + ".";
    add(p + "norm1", 0, c.d_model), add(p + "norm2", 0, c.d_model);
    add(p + "wq", c.n_heads * c.head_dim, c.d_model), add(p + "wk", c.n_kv_heads * c.head_dim, c.d_model);
    add(p + "wv", c.n_kv_heads * c.head_dim, c.d_model), add(p + "wo", c.d_model, c.n_heads * c.head_dim);
    add(p + "gate", c.d_ff, c.d_model), add(p + "up", c.d_ff, c.d_model), add(p + "down", c.d_model, c.d_ff);
  }
  add("norm", 0, c.d_model), add("head", c.vocab, c.d_model);
  out.write(dir / "model.safetensors");

  std::ofstream(dir / "config.json") << nlohmann::json{{"model_type", "my_family"}, {"vocab_size", c.vocab},
                                                      {"hidden_size", c.d_model}, {"num_hidden_layers", c.n_layers},
                                                      {"num_attention_heads", c.n_heads}, {"num_key_value_heads", c.n_kv_heads},
                                                      {"intermediate_size", c.d_ff}, {"max_position_embeddings", c.max_position},
                                                      {"rms_norm_eps", c.norm_eps}};
  auto model = load_language_model(dir);  // finds my_family by its model_type
  auto s = model->new_session();
  s->prefill(std::vector<std::int32_t>{1, 2, 3});
  std::printf("greedy:");
  for (int i = 0; i < 10; ++i) {
    const auto l = s->logits();
    const auto next = static_cast<std::int32_t>(std::max_element(l.data(), l.data() + l.extent(0)) - l.data());
    std::printf(" %d", next);
    s->step(next);
  }
  std::printf("\n");
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
