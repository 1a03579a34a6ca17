// families/family.hpp: load_config through the registered families: the HF fixtures
// (tests/data/models), GGUF metadata, transformers defaults, broken configs.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

#include <tessera/families/registry.hpp>

#include "io/io_test_util.hpp"

using namespace tessera;

namespace {
const std::filesystem::path models_dir = std::filesystem::path(TESSERA_TEST_DATA_DIR) / "models";

model_config parse(const std::string& text) { return parse_config(nlohmann::json::parse(text), "cfg.json"); }

template <class F>
void expect_config_error(F&& f, const std::string& needle) {
  try {
    f();
    FAIL("expected a config_error containing '" << needle << "'");
  } catch (const config_error& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}
}  // namespace

TEST_CASE("config: HF fixtures", "[io][config]") {
  const auto llama = load_config(models_dir / "llama");
  CHECK(llama.family == "llama");
  CHECK(llama.architecture == "LlamaForCausalLM");
  CHECK(llama.vocab == 160);
  CHECK(llama.d_model == 72);
  CHECK(llama.n_layers == 3);
  CHECK(llama.n_heads == 6);
  CHECK(llama.n_kv_heads == 2);
  CHECK(llama.head_dim == 12);
  CHECK(llama.d_ff == 100);
  CHECK(llama.norm_eps == 1e-5f);
  CHECK(llama.rope.theta == 5000.f);
  CHECK(llama.rope.type == rope_scaling_type::none);
  CHECK(!llama.tie_word_embeddings);
  CHECK(llama.eos_token_ids == std::vector<std::int32_t>{2});
  CHECK(llama.bos_token_id == 1);
  CHECK(llama.layer_schedule == "AAA");

  const auto mistral = load_config(models_dir / "mistral");
  CHECK(mistral.sliding_window == 8);
  CHECK(mistral.head_dim == 16);

  const auto qwen = load_config(models_dir / "qwen2");
  CHECK(qwen.attention_bias);
  CHECK(!qwen.attention_out_bias);
  CHECK(!qwen.sliding_window.has_value());
  CHECK(qwen.tie_word_embeddings);
  const auto qsw = load_config(models_dir / "qwen2_sliding");
  CHECK(qsw.sliding_window == 6);
  CHECK(qsw.max_window_layers == 1);
  CHECK(qsw.layer_types == std::vector<std::string>{"full_attention", "sliding_attention", "sliding_attention"});

  const auto gpt2 = load_config(models_dir / "gpt2");
  CHECK(gpt2.d_model == 64);
  CHECK(gpt2.d_ff == 256);  // n_inner null → 4 * n_embd
  CHECK(gpt2.hidden_act == "gelu_new");
  CHECK(gpt2.max_position == 64);
  CHECK(gpt2.norm_eps == 1e-5f);
  CHECK(gpt2.tie_word_embeddings);
  CHECK(gpt2.eos_token_ids == std::vector<std::int32_t>{159});

  const auto mamba = load_config(models_dir / "mamba");
  CHECK(mamba.d_inner == 96);
  CHECK(mamba.d_state == 8);
  CHECK(mamba.dt_rank == 3);
  CHECK(mamba.d_conv == 4);
  CHECK(mamba.conv_bias);
  CHECK(!mamba.proj_bias);
  CHECK(mamba.layer_schedule == "MM");

  const auto m2 = load_config(models_dir / "mamba2");
  CHECK(m2.ssm_n_heads == 8);
  CHECK(m2.ssm_head_dim == 16);
  CHECK(m2.n_groups == 2);
  CHECK(m2.chunk == 8);
  CHECK(m2.d_inner == 128);
  CHECK(std::isinf(m2.time_step_limit_hi));
  CHECK(m2.time_step_limit_lo == 0.f);

  const auto jamba = load_config(models_dir / "jamba");
  CHECK(jamba.layer_schedule == "MAMA");
  CHECK(jamba.n_experts == 4);
  CHECK(jamba.n_experts_per_tok == 2);
  CHECK(jamba.expert_layer_period == 2);
  CHECK(jamba.expert_layer_offset == 0);
  CHECK(jamba.dt_rank == 3);
  CHECK(jamba.d_inner == 96);
  CHECK(jamba.d_state == 8);

  const auto yarn = load_config(models_dir / "llama_rope_yarn");
  CHECK(yarn.rope.type == rope_scaling_type::yarn);
  CHECK(yarn.rope.factor == 4.f);
  CHECK(yarn.rope.original_max_position == 64);
  const auto l3 = load_config(models_dir / "llama_rope_llama3");
  CHECK(l3.rope.type == rope_scaling_type::llama3);
  CHECK(l3.rope.factor == 8.f);
  CHECK(l3.rope.low_freq_factor == 1.f);
  CHECK(l3.rope.high_freq_factor == 4.f);
  CHECK(load_config(models_dir / "llama_rope_linear").rope.type == rope_scaling_type::linear);
  CHECK(load_config(models_dir / "llama_rope_dynamic").rope.type == rope_scaling_type::dynamic);
}

TEST_CASE("config: fixtures' weights load, sharded equals single", "[io][config][weights]") {
  for (const char* name : {"llama", "mistral", "qwen2", "gpt2", "mamba", "mamba2", "jamba", "llama_bf16", "mamba_bf16"}) {
    INFO(name);
    const auto m = io::weight_map::open(models_dir / name);
    CHECK(m.size() > 0);
    for (const auto& n : m.names()) {
      const auto& i = m.info(n);
      CHECK(i.numel > 0);
    }
  }
  const auto a = io::weight_map::open(models_dir / "llama");
  const auto b = io::weight_map::open(models_dir / "llama_sharded");
  REQUIRE(a.names() == b.names());
  CHECK(b.files().size() == 4);
  for (const auto& n : a.names()) {
    INFO(n);
    const auto& ia = a.info(n);
    REQUIRE(ia.extents == b.info(n).extents);
    const std::size_t bytes = static_cast<std::size_t>(ia.numel) * 4;
    if (ia.extents.size() == 2) CHECK(std::memcmp(a.f32<2>(n).data(), b.f32<2>(n).data(), bytes) == 0);
    else if (ia.extents.size() == 1) CHECK(std::memcmp(a.f32<1>(n).data(), b.f32<1>(n).data(), bytes) == 0);
  }
  const auto llama = load_config(models_dir / "llama");
  CHECK(a.info("model.layers.0.self_attn.k_proj.weight").extents == std::vector<index_t>{llama.kv_dim(), llama.d_model});
  CHECK(a.info("model.embed_tokens.weight").extents == std::vector<index_t>{llama.vocab, llama.d_model});
}

TEST_CASE("config: transformers defaults for absent fields", "[io][config]") {
  const auto l = parse(R"({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10, "num_hidden_layers": 1})");
  CHECK(l.norm_eps == 1e-6f);
  CHECK(l.rope.theta == 10000.f);
  CHECK(l.n_kv_heads == 4);
  CHECK(l.head_dim == 16);
  CHECK(l.d_ff == 11008);
  CHECK(l.max_position == 2048);
  CHECK(!l.tie_word_embeddings);
  CHECK(l.architecture == "LlamaForCausalLM");
  const auto m = parse(R"({"model_type": "mistral", "hidden_size": 64, "num_attention_heads": 16, "vocab_size": 10, "num_hidden_layers": 1})");
  CHECK(m.sliding_window == 4096);
  CHECK(m.n_kv_heads == 8);
  const auto old = parse(R"({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10, "num_hidden_layers": 1,
                           "rope_theta": 500000.0, "rope_scaling": {"type": "linear", "factor": 2.0}, "partial_rotary_factor": 0.5})");
  CHECK(old.rope.theta == 500000.f);
  CHECK(old.rope.type == rope_scaling_type::linear);
  CHECK(old.rope.factor == 2.f);
  CHECK(old.rope.partial_rotary_factor == 0.5f);
  const auto mb = parse(R"({"model_type": "mamba", "hidden_size": 40, "vocab_size": 10, "num_hidden_layers": 1, "time_step_rank": "auto"})");
  CHECK(mb.dt_rank == 3);
  CHECK(mb.d_inner == 80);
  CHECK(mb.tie_word_embeddings);
  const auto g = parse(R"({"model_type": "gpt2", "n_embd": 32, "n_head": 4, "vocab_size": 10, "n_layer": 1})");
  CHECK(g.d_ff == 128);
  CHECK(g.norm_eps == 1e-5f);
  const auto gen_json = nlohmann::json::parse(R"({"eos_token_id": [2, 7]})");
  const auto gen = parse_config(nlohmann::json::parse(R"({"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2, "vocab_size": 10, "num_hidden_layers": 1, "eos_token_id": 2})"),
                                    "c.json", &gen_json, "g.json");
  CHECK(gen.eos_token_ids == std::vector<std::int32_t>{2, 7});
}

TEST_CASE("config: broken configs name the field and file", "[io][config]") {
  expect_config_error([] { parse(R"({"model_type": "no_such_family"})"); }, "model_type \"no_such_family\" is not supported (supported: llama, mistral");
  expect_config_error([] { parse(R"({"hidden_size": 8})"); }, "'model_type' is missing");
  expect_config_error([] { parse(R"({"model_type": "llama", "architectures": ["LlamaForSequenceClassification"]})"); },
                      "architecture \"LlamaForSequenceClassification\" is not supported (supported: LlamaForCausalLM");
  expect_config_error([] { parse(R"({"model_type": "llama", "hidden_size": "64"})"); }, "cfg.json: field 'hidden_size' has type string, expected an integer");
  expect_config_error([] { parse(R"({"model_type": "llama", "rms_norm_eps": true})"); }, "field 'rms_norm_eps' has type boolean, expected a number");
  expect_config_error([] { parse(R"({"model_type": "llama", "tie_word_embeddings": 1})"); }, "'tie_word_embeddings' has type number, expected a boolean");
  expect_config_error([] { parse(R"({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 6, "num_key_value_heads": 4, "vocab_size": 3, "num_hidden_layers": 1})"); },
                      "not a multiple of num_key_value_heads");
  expect_config_error([] { parse(R"({"model_type": "llama", "rope_parameters": {"rope_type": "weird"}})"); }, "rope_type");
  expect_config_error([] { parse(R"({"model_type": "llama", "rope_parameters": {"rope_type": "linear"}})"); }, "'factor' is missing");
  expect_config_error([] { parse(R"({"model_type": "mamba", "time_step_rank": "big"})"); }, "'time_step_rank'");
  expect_config_error([] { parse(R"({"model_type": "llama", "eos_token_id": "x"})"); }, "'eos_token_id'");
  expect_config_error([] { parse(R"({"model_type": "llama", "vocab_size": 0})"); }, "'vocab_size' must be positive");
  test::temp_dir dir("cfg_bad");
  {
    std::ofstream(dir / "config.json") << R"({"model_type": "llama",)";
  }
  expect_config_error([&] { load_config(dir.path); }, "config.json: not valid JSON");
  CHECK_THROWS_AS(load_config(dir / "nothing"), io_error);
}

TEST_CASE("config: GGUF metadata", "[io][config]") {
  const auto c = load_config(test::bundled_model);
  CHECK(c.family == "llama");
  CHECK(c.architecture == "LlamaForCausalLM");
  CHECK(c.d_model == 64);
  CHECK(c.n_layers == 5);
  CHECK(c.n_heads == 8);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.head_dim == 8);
  CHECK(c.d_ff == 172);
  CHECK(c.vocab == 512);
  CHECK(c.max_position == 2048);
  CHECK(c.norm_eps == 1e-5f);
  CHECK(c.rope.theta == 10000.f);
  CHECK(c.rope.partial_rotary_factor == 1.f);
  CHECK(!c.tie_word_embeddings);  // the file carries output.weight
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_ids == std::vector<std::int32_t>{2});

  test::gguf_builder g;
  g.kv_str("general.architecture", "qwen2");
  g.kv_u32("qwen2.embedding_length", 32);
  g.kv_u32("qwen2.block_count", 2);
  g.kv_u32("qwen2.attention.head_count", 4);
  g.kv_u32("qwen2.attention.head_count_kv", 2);
  g.kv_u32("qwen2.context_length", 128);
  g.kv_f32("qwen2.rope.freq_base", 1e6f);
  g.kv_u32("tokenizer.ggml.eos_token_id", 9);
  g.tensor_f32("token_embd.weight", {32, 11}, std::vector<float>(32 * 11, 0.5f));
  test::temp_dir dir("cfg_gguf");
  test::write_file(dir / "q.gguf", g.bytes());
  const auto q = load_config(dir / "q.gguf");
  CHECK(q.vocab == 11);
  CHECK(q.tie_word_embeddings);
  CHECK(q.rope.theta == 1e6f);
  CHECK(q.attention_bias);
  CHECK(q.eos_token_ids == std::vector<std::int32_t>{9});
  test::gguf_builder bad;
  bad.kv_str("general.architecture", "falcon");
  test::write_file(dir / "f.gguf", bad.bytes());
  expect_config_error([&] { load_config(dir / "f.gguf"); }, "\"falcon\" is not supported (supported: llama");
  test::gguf_builder missing;
  missing.kv_str("general.architecture", "llama");
  test::write_file(dir / "m.gguf", missing.bytes());
  expect_config_error([&] { load_config(dir / "m.gguf"); }, "'llama.embedding_length' is missing");
}

TEST_CASE("config: absurd sizes are refused naming the field, before anything is sized", "[io][config][errors]") {
  // issue 18's reproducers: values near 2^62 (signed overflow in products before), 1e9 / 2^40 layers
  expect_config_error([] { parse(R"({"model_type": "gpt2", "n_embd": 4611686018427387904})"); }, "'n_embd'");
  expect_config_error([] { parse(R"({"model_type": "mamba", "hidden_size": 4611686018427387904})"); }, "'hidden_size'");
  expect_config_error([] { parse(R"({"model_type": "mamba2", "expand": 4611686018427387904})"); }, "'expand'");
  expect_config_error([] { parse(R"({"model_type": "jamba", "num_attention_heads": 4611686018427387904})"); },
                      "'num_attention_heads'");
  expect_config_error([] { parse(R"({"model_type": "llama", "num_hidden_layers": 1000000000})"); }, "'num_hidden_layers' = 1000000000 is absurd");
  expect_config_error([] { parse(R"({"model_type": "llama", "num_hidden_layers": 1099511627776})"); }, "'num_hidden_layers'");
  expect_config_error([] { parse(R"({"model_type": "llama", "hidden_size": 1099511627776})"); }, "'hidden_size'");
  expect_config_error([] { parse(R"({"model_type": "llama", "max_position_embeddings": -5})"); }, "'max_position_embeddings'");
  expect_config_error([] { parse(R"({"model_type": "llama", "eos_token_id": [2, 99999999999]})"); }, "'eos_token_id'");
  expect_config_error([] { parse(R"({"model_type": "llama", "vocab_size": 1.5e300})"); }, "'vocab_size'");
  expect_config_error([] { parse(R"({"model_type": "llama", "vocab_size": 18446744073709551615})"); }, "'vocab_size'");
}
