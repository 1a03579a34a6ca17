// tessera/families/gpt2.hpp: GPT2LMHeadModel.
//
//   h = wte(ids) + wpe(positions)                                 learned absolute positions
//   for each layer:  h += attn(ln_1(h))                           fused c_attn, no RoPE
//                    h += mlp(ln_2(h))                            c_proj(gelu_new(c_fc(x)))
//   logits = lm_head(ln_f(h))                                     head tied to wte
//
// GPT-2's Conv1D stores weights (in, out): they are transposed once at load into the nn.Linear
// (out, in) layout, keeping their dtype (or quantized to the map's matrix_quantization, as
// weight_matrix::load does for other families); a GGUF stores them (out, in) already, read in
// place in any type, quantized blocks included. scale_attn_weights, scale_attn_by_inverse_layer_idx,
// layer_norm_epsilon, n_inner and activation_function are read from the config.
// Names: `transformer.h.0.attn.c_attn.weight` (save_pretrained) or `h.0.attn.c_attn.weight` (hub).
#pragma once

#include <cmath>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <tessera/families/common.hpp>
#include <tessera/families/family.hpp>
#include <tessera/ops/activation.hpp>

namespace tessera {
inline namespace v0 {
namespace families {

using gpt2_layer = layers::stack<layers::prenorm<ln, layers::attention_layer>, layers::prenorm<ln, layers::mlp>>;
using gpt2_model = models::causal_lm<gpt2_layer, ln>;

namespace detail {
/// Weights converted at load (transposed Conv1D), kept alive beside the mapped checkpoint.
struct gpt2_owned {
  std::shared_ptr<const io::weight_map> checkpoint;
  std::deque<std::variant<tensor<float, 2>, tensor<f16, 2>, tensor<bf16, 2>>> matrices;
  std::deque<std::shared_ptr<const void>> blocks;  // matrices quantized at load (std::vector<B>)
};

/// (in, out) Conv1D weight → (out, in) matrix: read in place where the file stores it so (a GGUF,
/// quantized blocks included), else an owned transposed copy of the same dtype.
inline layers::weight_matrix conv1d_transposed(const io::weight_map& w, const std::string& name, gpt2_owned& owned) {
  const auto& info = w.info(name);
  if (info.extents.size() != 2) throw shape_error("weight '" + name + "' in " + info.file + ": expected 2 dimensions");
  if (auto stored = layers::weight_matrix::stored_transpose(w, name)) return *stored;
  if (const auto q = w.matrix_quantization()) {  // --quantize: the transposed rows encoded into blocks
    std::optional<layers::weight_matrix> m;
    io::with_block_layout(*q, [&](auto tag) {
      using B = decltype(tag);
      if constexpr (encodable_block<B>) {
        if (!info.type || info.extents[0] % B::block_size != 0) return;  // rows of whole blocks only
        const auto src = w.f32<2>(name);
        const index_t in = src.extent(0), out = src.extent(1);
        std::vector<float> row(static_cast<std::size_t>(in));
        auto blocks = std::make_shared<std::vector<B>>(static_cast<std::size_t>(out * (in / B::block_size)));
        for (index_t o = 0; o < out; ++o) {
          for (index_t i = 0; i < in; ++i) row[static_cast<std::size_t>(i)] = src(i, o);
          quantize(row.data(), blocks->data() + o * (in / B::block_size), in / B::block_size);
        }
        m = layers::weight_matrix(tensor_view<const B, 2>(blocks->data(), {out, in / B::block_size}));
        owned.blocks.push_back(std::move(blocks));
      }
    });
    if (m) return *m;
  }
  auto transpose = [&](auto src) -> layers::weight_matrix {
    using T = typename decltype(src)::value_type;
    const auto [in, out] = src.extents();
    tensor<T, 2> t({out, in});
    for (index_t i = 0; i < in; ++i)
      for (index_t o = 0; o < out; ++o) t(o, i) = src(i, o);
    owned.matrices.emplace_back(std::move(t));
    return layers::weight_matrix(std::get<tensor<T, 2>>(owned.matrices.back()).cview());
  };
  if (info.type == dtype::f16) return transpose(w.view<f16, 2>(name));
  if (info.type == dtype::bf16) return transpose(w.view<bf16, 2>(name));
  return transpose(w.f32<2>(name));
}

}  // namespace detail

inline std::unique_ptr<language_model> load_gpt2(const model_config& c, std::shared_ptr<const io::weight_map> weights) {
  const io::weight_map& w = *weights;
  const std::string root = w.contains("transformer.wte.weight") ? "transformer." : "";
  auto owned = std::make_shared<detail::gpt2_owned>();
  owned->checkpoint = weights;
  models::causal_lm_parts<gpt2_layer, ln> m;
  m.config = c;
  m.embed.tokens = layers::weight_matrix::load(w, root + "wte.weight");
  m.embed.positions = layers::weight_matrix::load(w, root + "wpe.weight");
  const auto act = ops::parse_activation(c.hidden_act);
  const index_t dm = c.d_model;
  auto linear_of = [&](const std::string& name) {  // transposed Conv1D weight + its bias
    return layers::linear::from(detail::conv1d_transposed(w, name + ".weight", *owned),
                                tensor<float, 1>::copy_of(w.f32<1>(name + ".bias")));
  };
  for (index_t i = 0; i < c.n_layers; ++i) {
    const std::string p = root + "h." + std::to_string(i);
    auto opts = attention_options_of(c, i, /*rope=*/false);
    opts.scale = c.scale_attn_weights ? 1.f / std::sqrt(static_cast<float>(c.head_dim)) : 1.f;
    if (c.scale_attn_by_inverse_layer_idx) opts.scale /= static_cast<float>(i + 1);
    // c_attn: (d_model, 3 d_model) → q, k, v row blocks of the transposed (3 d_model, d_model)
    const auto qkv = detail::conv1d_transposed(w, p + ".attn.c_attn.weight", *owned);
    expect_equal(qkv.rows(), 3 * dm, (p + ".attn.c_attn.weight: output features vs 3 * n_embd").c_str());
    const auto qkv_bias = w.f32<1>(p + ".attn.c_attn.bias");
    auto part = [&](index_t k) {
      return layers::linear::from(qkv.row_slice(k * dm, (k + 1) * dm),
                                  tensor<float, 1>::copy_of(qkv_bias.slice(0, k * dm, (k + 1) * dm)));
    };
    gpt2_layer layer;
    auto& [attn, mlp] = layer.blocks;
    attn.norm = ln::load(w, p + ".ln_1", c.norm_eps);
    attn.sub = layers::attention_layer(part(0), part(1), part(2), linear_of(p + ".attn.c_proj"), opts);
    mlp.norm = ln::load(w, p + ".ln_2", c.norm_eps);
    mlp.sub = layers::mlp(linear_of(p + ".mlp.c_fc"), linear_of(p + ".mlp.c_proj"), act);
    m.layers.push_back(std::move(layer));
  }
  m.head.final_norm = ln::load(w, root + "ln_f", c.norm_eps);
  m.head.lm_head = lm_head_of(w, c, m.embed.tokens);
  m.keep_alive = std::shared_ptr<const void>(owned, owned.get());
  return std::make_unique<gpt2_model>(std::move(m));
}

/// config.json of GPT2Config (transformers 5 defaults).
inline void read_gpt2_config(const io::json_fields& f, model_config& c) {
  c.vocab = f.get_int("vocab_size", 50257);
  c.max_position = f.get_int("n_positions", 1024);
  c.d_model = f.get_int("n_embd", 768);
  c.n_layers = f.get_int("n_layer", 12);
  c.n_heads = f.get_int("n_head", 12);
  if (c.n_heads <= 0) throw config_error(f.file() + ": field 'n_head' must be positive");
  c.n_kv_heads = c.n_heads;
  c.head_dim = c.d_model / c.n_heads;
  c.d_ff = f.get_int("n_inner", 4 * c.d_model);
  c.hidden_act = f.get_string("activation_function", "gelu_new");
  c.norm_eps = f.get_float("layer_norm_epsilon", 1e-5);
  c.scale_attn_weights = f.get_bool("scale_attn_weights", true);
  c.scale_attn_by_inverse_layer_idx = f.get_bool("scale_attn_by_inverse_layer_idx", false);
  c.reorder_and_upcast_attn = f.get_bool("reorder_and_upcast_attn", false);
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", true);
  c.attention_bias = c.attention_out_bias = c.mlp_bias = true;
  c.bos_token_id = static_cast<std::int32_t>(f.get_int("bos_token_id", 50256));
  c.eos_token_ids = f.json().contains("eos_token_id") ? f.int_list("eos_token_id") : std::vector<std::int32_t>{50256};
  if (auto p = f.opt_int("pad_token_id")) c.pad_token_id = static_cast<std::int32_t>(*p);
}


/// GGUF metadata of llama.cpp's gpt2 architecture.
inline void read_gpt2_gguf(const io::gguf_file& g, model_config& c) {
  const gguf_keys k{g, "gpt2."};
  c.architecture = "GPT2LMHeadModel";
  c.n_heads = k.req("attention.head_count");
  c.n_kv_heads = k.opt("attention.head_count_kv").value_or(c.n_heads);
  c.d_ff = k.opt("feed_forward_length").value_or(4 * c.d_model);
  c.head_dim = k.opt("attention.key_length").value_or(c.n_heads > 0 ? c.d_model / c.n_heads : 0);
  c.norm_eps = static_cast<float>(k.optf("attention.layer_norm_epsilon").value_or(1e-5));
  c.hidden_act = "gelu_new";
  c.attention_bias = c.attention_out_bias = c.mlp_bias = true;
}

inline constexpr io::gguf_name_rule gpt2_gguf_global[] = {{"token_embd", "transformer.wte"},
                                                      {"position_embd", "transformer.wpe"},
                                                      {"output_norm", "transformer.ln_f"},
                                                      {"output", "lm_head"}};
inline constexpr io::gguf_name_rule gpt2_gguf_layer[] = {
    {"attn_norm", "transformer.h.{}.ln_1"},          {"attn_qkv", "transformer.h.{}.attn.c_attn"},
    {"attn_output", "transformer.h.{}.attn.c_proj"}, {"ffn_norm", "transformer.h.{}.ln_2"},
    {"ffn_up", "transformer.h.{}.mlp.c_fc"},         {"ffn_down", "transformer.h.{}.mlp.c_proj"}};

/// HF's GPT-2 stores Conv1D weights (in, out); convert_hf_to_gguf.py transposed them: back on read.
inline void fix_gpt2_gguf(const io::gguf_file&, std::string_view n, io::gguf_tensor_fix& fix) {
  if (fix.extents.size() == 2 && (n.ends_with(".attn_qkv.weight") || n.ends_with(".attn_output.weight") ||
                                  n.ends_with(".ffn_up.weight") || n.ends_with(".ffn_down.weight"))) {
    fix.transform = io::weight_transform::transpose;
    fix.extents = {fix.extents[1], fix.extents[0]};
  }
}

#ifndef TESSERA_EXTERN_FAMILIES  // defined: one other translation unit registers the families (docs/architecture.md)
inline const bool gpt2_registered = register_family({
    .name = "gpt2",
    .model_types = {"gpt2"},
    .architectures = {"GPT2LMHeadModel", "GPT2Model"},
    .gguf_architectures = {"gpt2"},
    .read_hf = read_gpt2_config,
    .read_gguf = read_gpt2_gguf,
    .gguf_name = [](std::string_view n) { return io::gguf_rename(gpt2_gguf_global, gpt2_gguf_layer, n); },
    .gguf_fix = fix_gpt2_gguf,
    .load = load_gpt2,
});
#endif

}  // namespace families
}  // namespace v0
}  // namespace tessera
