// A llama.cpp GGUF conversion of the mamba fixture (tests/data/models/mamba) against the HF folder
// and the transformers reference: io::weight_map's `mamba` name table, A = -exp(A_log) → A_log,
// the conv1d reshape, and io::config_from_gguf's `mamba.*` metadata.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <tessera/families/registry.hpp>

#include <tessera/io/weights.hpp>

#include "io/io_test_util.hpp"
#include "ssm_models_test_util.hpp"

using namespace tessera;
using tessera::test::argmax;
using tessera::test::rel_err;

namespace {

/// The HF tensor `name` as f32, outermost dimension first.
std::vector<float> hf_data(const io::weight_map& m, const std::string& name) {
  const auto& info = m.info(name);
  std::vector<float> v(static_cast<std::size_t>(info.numel));
  const float* src = nullptr;
  switch (info.extents.size()) {
    case 1: src = m.f32<1>(name).data(); break;
    case 2: src = m.f32<2>(name).data(); break;
    case 3: src = m.f32<3>(name).data(); break;
    default: FAIL("unexpected rank of " << name);
  }
  std::memcpy(v.data(), src, v.size() * sizeof(float));
  return v;
}

/// What convert_hf_to_gguf.py (class MambaModel, --outtype f32) writes for the HF folder `dir`.
/// squeeze_conv: llama.cpp since PR #12573 (2025-03) squeezes conv1d.weight (d_inner, 1, d_conv)
/// to (d_inner, d_conv), the shape its loader wants; converters between PR #10784 (2024-12) and
/// that fix wrote it unsqueezed (the /tmp/llama.cpp snapshot does), so both occur in the wild.
std::vector<std::byte> convert_mamba(const std::filesystem::path& dir, bool squeeze_conv, bool dt_b_c_rms = false) {
  const auto hf = io::weight_map::open(dir);
  const auto cfg = load_config(dir);
  test::gguf_builder g;
  // set_gguf_parameters
  g.kv_str("general.architecture", "mamba");
  g.kv_u32("general.file_type", 0);                       // ALL_F32
  g.kv_u32("mamba.context_length", 1u << 20);             // "arbitrary value"
  g.kv_u32("mamba.embedding_length", static_cast<std::uint32_t>(cfg.d_model));
  g.kv_u32("mamba.feed_forward_length", 0);               // unused
  g.kv_u32("mamba.attention.head_count", 0);              // unused
  g.kv_u32("mamba.block_count", static_cast<std::uint32_t>(cfg.n_layers));
  g.kv_u32("mamba.ssm.conv_kernel", static_cast<std::uint32_t>(cfg.d_conv));
  g.kv_u32("mamba.ssm.inner_size", static_cast<std::uint32_t>(cfg.d_inner));
  g.kv_u32("mamba.ssm.state_size", static_cast<std::uint32_t>(cfg.d_state));
  g.kv_u32("mamba.ssm.time_step_rank", static_cast<std::uint32_t>(cfg.dt_rank));
  g.kv_f32("mamba.attention.layer_norm_rms_epsilon", cfg.norm_eps);
  g.kv_bool("mamba.ssm.dt_b_c_rms", dt_b_c_rms);  // true for FalconMamba
  // set_vocab: vocab_size rounded up to a multiple of 8 (160 already is; only the token list is
  // padded, never the embedding). The fixture has no tokenizer files, so the converter copies the
  // first vocab_size tokens of models/ggml-vocab-gpt-neox.gguf (bos = eos = 0); only the count
  // matters to the model, so the strings here are placeholders.
  const index_t padded_vocab = (cfg.vocab + 7) / 8 * 8;
  std::vector<std::string> tokens;
  for (index_t i = 0; i < padded_vocab; ++i) tokens.push_back("<t" + std::to_string(i) + ">");
  g.kv_str("tokenizer.ggml.model", "gpt2");
  g.kv_str("tokenizer.ggml.pre", "mpt");
  g.kv_str_array("tokenizer.ggml.tokens", tokens);
  g.kv_array("tokenizer.ggml.token_type", io::gguf_type::i32, std::vector<std::int32_t>(tokens.size(), 1));
  g.kv_u32("tokenizer.ggml.bos_token_id", 0);
  g.kv_u32("tokenizer.ggml.eos_token_id", 0);
  // modify_tensors: rename (gguf-py tensor_mapping.py), A = -exp(A_log), drop output.weight when
  // equal to token_embd.weight (the tied fixture has no lm_head.weight at all); ggml dims reversed.
  std::vector<std::string> candidates = {"token_embd.weight", "output_norm.weight", "output.weight"};
  for (index_t l = 0; l < cfg.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    for (const char* t : {"attn_norm.weight", "ssm_in.weight", "ssm_in.bias", "ssm_conv1d.weight", "ssm_conv1d.bias",
                          "ssm_x.weight", "ssm_dt.weight", "ssm_dt.bias", "ssm_a", "ssm_d", "ssm_out.weight",
                          "ssm_out.bias"})
      candidates.push_back(b + t);
  }
  REQUIRE(!hf.contains("lm_head.weight"));
  for (const auto& name : hf.names()) {
    const std::string gname = test::gguf_name_for([](std::string_view g) { return gguf_hf_name("mamba", g); }, name, candidates);
    INFO(name);
    REQUIRE(!gname.empty());
    std::vector<index_t> shape = hf.info(name).extents;
    std::vector<float> data = hf_data(hf, name);
    if (gname.ends_with(".ssm_a"))
      for (float& x : data) x = -std::exp(x);
    if (squeeze_conv && gname.ends_with(".ssm_conv1d.weight")) {
      REQUIRE(shape.size() == 3);
      REQUIRE(shape[1] == 1);
      shape = {shape[0], shape[2]};
    }
    g.tensor_f32(gname, std::vector<std::int64_t>(shape.rbegin(), shape.rend()), data);
  }
  return g.bytes();
}

}  // namespace

TEST_CASE("a GGUF conversion of the mamba fixture gives the same weights, config and logits as the HF folder",
          "[ssm_models][mamba][gguf]") {
  const auto dir = test::model_dir("mamba");
  const auto hf = io::weight_map::open(dir);
  const auto hf_cfg = load_config(dir);
  const auto ref = test::load_reference(dir / "reference.safetensors");
  const index_t l = static_cast<index_t>(ref.input_ids.size()), V = hf_cfg.vocab;
  tensor<float, 2> want({l, V});
  load_language_model(dir)->new_session()->prefill_all(ref.input_ids, want.view());

  test::temp_dir tmp("gguf_mamba");
  for (const bool squeeze_conv : {true, false}) {
    INFO("conv1d weight squeezed to 2-D: " << squeeze_conv);
    const auto file = tmp / (squeeze_conv ? "mamba.gguf" : "mamba_conv3d.gguf");
    test::write_file(file, convert_mamba(dir, squeeze_conv));

    // config from the mamba.* metadata
    const auto cfg = load_config(file);
    CHECK(cfg.family == "mamba");
    CHECK(cfg.architecture == hf_cfg.architecture);
    CHECK(cfg.d_model == hf_cfg.d_model);
    CHECK(cfg.n_layers == hf_cfg.n_layers);
    CHECK(cfg.vocab == hf_cfg.vocab);
    CHECK(cfg.d_inner == hf_cfg.d_inner);
    CHECK(cfg.d_state == hf_cfg.d_state);
    CHECK(cfg.d_conv == hf_cfg.d_conv);
    CHECK(cfg.dt_rank == hf_cfg.dt_rank);
    CHECK(cfg.norm_eps == hf_cfg.norm_eps);
    CHECK(cfg.conv_bias == hf_cfg.conv_bias);
    CHECK(cfg.proj_bias == hf_cfg.proj_bias);
    CHECK(cfg.tie_word_embeddings);
    CHECK(cfg.hidden_act == hf_cfg.hidden_act);
    CHECK(cfg.layer_schedule == hf_cfg.layer_schedule);
    CHECK(cfg.bos_token_id == hf_cfg.bos_token_id);

    // every HF tensor under its HF name and shape; A_log = log(-(-exp(A_log))) to rounding
    const auto gg = open_weights(file);
    CHECK(gg.size() == hf.size());
    for (const auto& name : hf.names()) {
      INFO(name);
      REQUIRE(gg.contains(name));
      REQUIRE(gg.info(name).extents == hf.info(name).extents);
      const auto a = hf_data(gg, name), b = hf_data(hf, name);
      if (name.ends_with(".A_log")) CHECK(rel_err(a.data(), b.data(), a.size()) <= 1e-6);
      else CHECK(a == b);
    }

    // full-sequence logits: GGUF load vs HF-folder load vs transformers
    const auto model = load_language_model(file);
    REQUIRE(model->config().vocab == V);
    tensor<float, 2> got({l, V});
    model->new_session()->prefill_all(ref.input_ids, got.view());
    const double e_hf = rel_err(got.cview().data(), want.cview().data(), static_cast<std::size_t>(l * V));
    const double e_ref = rel_err(got.cview().data(), ref.logits.cview().data(), static_cast<std::size_t>(l * V));
    INFO("logits rel err vs HF folder " << e_hf << ", vs transformers " << e_ref);
    CHECK(e_hf <= 1e-5);
    CHECK(e_ref <= 1e-4);

    test::check_greedy(*model, ref);  // prefill then steps: logits vs transformers, ids identical
  }
}

TEST_CASE("a FalconMamba GGUF (mamba.ssm.dt_b_c_rms) is refused with a config_error naming the key", "[ssm_models][mamba][gguf]") {
  test::temp_dir tmp("gguf_falcon_mamba");
  const auto file = tmp / "falcon_mamba.gguf";
  test::write_file(file, convert_mamba(test::model_dir("mamba"), true, /*dt_b_c_rms=*/true));
  CHECK_THROWS_AS(load_config(file), config_error);
  CHECK_THROWS_WITH(load_language_model(file), Catch::Contains("mamba.ssm.dt_b_c_rms"));
}
