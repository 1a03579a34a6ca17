// Define a new decoder family from existing blocks in a few dozen lines: a Llama-style decoder
// whose MLP is GeGLU and whose weights use a naming scheme of its own, run on a checkpoint
// written on the fly. Adding a
// family means: pick the block (decoder_block<Norm, Mlp>), map the weight names, fill
// decoder_weights, return a decoder<Block>.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include <tessera/families/llama.hpp>
#include <tessera/io/config.hpp>
#include <tessera/io/safetensors.hpp>

namespace my_family {
using namespace tessera;
using block = decoder_block<layers::rms_norm_layer, layers::gated_mlp>;

// Weight names: "tok.weight", "l{i}.norm1.weight", "l{i}.wq.weight" ... , "norm.weight", "head.weight".
inline std::unique_ptr<language_model> load(const model_config& c, std::shared_ptr<const io::weight_map> weights) {
  const io::weight_map& w = *weights;
  decoder_weights<block> d;
  d.config = c;
  d.checkpoint = weights;
  d.rope = layers::rope_frequencies(c);
  d.embed = layers::weight_matrix::load(w, "tok.weight");
  for (index_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "l" + std::to_string(i) + ".";
    block b;
    b.attn_norm = layers::rms_norm_layer::load(w, p + "norm1", c.norm_eps);
    b.attn = layers::attention_mixer(layers::linear::load(w, p + "wq"), layers::linear::load(w, p + "wk"),
                                     layers::linear::load(w, p + "wv"), layers::linear::load(w, p + "wo"),
                                     {.n_heads = c.n_heads, .n_kv_heads = c.n_kv_heads, .head_dim = c.head_dim});
    b.mlp_norm = layers::rms_norm_layer::load(w, p + "norm2", c.norm_eps);
    b.mlp = layers::gated_mlp(layers::linear::load(w, p + "gate"), layers::linear::load(w, p + "up"),
                              layers::linear::load(w, p + "down"), ops::activation::gelu_tanh);  // GeGLU
    d.blocks.push_back(std::move(b));
  }
  d.final_norm = layers::rms_norm_layer::load(w, "norm", c.norm_eps);
  d.lm_head = layers::linear::load(w, "head");
  return std::make_unique<decoder<block>>(std::move(d));
}
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

  auto model = my_family::load(c, std::make_shared<const io::weight_map>(io::weight_map::open(dir / "model.safetensors")));
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
