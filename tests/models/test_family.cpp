// families/family.hpp: load_config through the registered families: the HF fixtures
// (tests/data/models), GGUF metadata, transformers defaults, broken configs.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string_view>

#include <cstdint>

#include <tessera/families/registry.hpp>

#include "common/test_util.hpp"
#include "io/io_test_util.hpp"

using namespace tessera;
using io::ggml_type;

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

// ---- GGUF tensor names and what convert_hf_to_gguf.py changed, by family (families/*.hpp) ----

namespace {
std::vector<std::byte> as_bytes(const std::vector<float>& v) {
  std::vector<std::byte> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}
std::vector<std::byte> as_f16_bytes(const std::vector<float>& v) {
  std::vector<std::byte> b(v.size() * 2);
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto h = f16(v[i]).bits;
    std::memcpy(b.data() + 2 * i, &h, 2);
  }
  return b;
}
}  // namespace

TEST_CASE("GGUF names by family: GGUF llama names, q/k un-permutation, f16 and Q8_0", "[models][gguf]") {
  // A tiny llama: d_model 32, 4 heads of 8, 2 KV heads.
  const index_t d = 32, n_head = 4, n_kv = 2, hd = 8;
  const auto q = test::random_vector(n_head * hd * d), k = test::random_vector(n_kv * hd * d);
  const auto qb = test::random_vector(n_head * hd), emb = test::random_vector(7 * d);
  test::gguf_builder g;
  g.kv_str("general.architecture", "llama");
  g.kv_u32("llama.attention.head_count", static_cast<std::uint32_t>(n_head));
  g.kv_u32("llama.attention.head_count_kv", static_cast<std::uint32_t>(n_kv));
  g.tensor_f32("token_embd.weight", {d, 7}, emb);
  g.tensor_f32("blk.0.attn_q.weight", {d, n_head * hd}, test::llama_permute(q, n_head * hd, d, n_head));
  g.tensor_f32("blk.0.attn_q.bias", {n_head * hd}, test::llama_permute(qb, n_head * hd, 1, n_head));
  g.tensor("blk.0.attn_k.weight", ggml_type::f16, {d, n_kv * hd}, as_f16_bytes(test::llama_permute(k, n_kv * hd, d, n_kv)));
  // Q8_0 v_proj: one block per row, d = 0.25, q = (r * 5 + c) % 200 - 100
  std::vector<std::byte> vq;
  std::vector<float> v_expect;
  for (index_t r = 0; r < n_kv * hd; ++r) {
    const std::uint16_t scale = f16(0.25f).bits;
    vq.push_back(static_cast<std::byte>(scale & 0xff));
    vq.push_back(static_cast<std::byte>(scale >> 8));
    for (index_t c = 0; c < d; ++c) {
      const int qv = static_cast<int>((r * 5 + c) % 200) - 100;
      vq.push_back(static_cast<std::byte>(static_cast<std::int8_t>(qv)));
      v_expect.push_back(0.25f * static_cast<float>(qv));
    }
  }
  g.tensor("blk.0.attn_v.weight", ggml_type::q8_0, {d, n_kv * hd}, vq);
  g.tensor_f32("blk.0.ffn_gate.weight", {d, 3}, test::random_vector(3 * d));
  g.tensor_f32("rope_freqs.weight", {4}, {1.f, 2.f, 3.f, 4.f});
  test::temp_dir dir("wm_gguf");
  test::write_file(dir / "m.gguf", g.bytes());

  const auto m = open_weights(dir / "m.gguf");
  REQUIRE(m.gguf() != nullptr);
  CHECK(m.gguf()->get_string("general.architecture") == "llama");
  CHECK(m.contains("model.embed_tokens.weight"));
  CHECK(m.contains("model.layers.0.mlp.gate_proj.weight"));
  CHECK(m.contains("rope_freqs.weight"));  // no HF name: kept
  CHECK(m.info("model.layers.0.self_attn.q_proj.weight").file_name == "blk.0.attn_q.weight");
  CHECK(m.info("model.layers.0.self_attn.q_proj.weight").extents == std::vector<index_t>{n_head * hd, d});
  CHECK(m.info("model.layers.0.self_attn.v_proj.weight").type_name == "Q8_0");
  CHECK(!m.info("model.layers.0.self_attn.v_proj.weight").type.has_value());
  CHECK(m.dtype_counts() == std::map<std::string, index_t>{{"F16", 1}, {"F32", 5}, {"Q8_0", 1}});

  const auto qv = m.f32<2>("model.layers.0.self_attn.q_proj.weight");
  CHECK(std::memcmp(qv.data(), q.data(), q.size() * 4) == 0);  // HF layout restored
  CHECK(std::memcmp(m.view<float, 2>("model.layers.0.self_attn.q_proj.weight").data(), q.data(), q.size() * 4) == 0);
  CHECK(std::memcmp(m.f32<1>("model.layers.0.self_attn.q_proj.bias").data(), qb.data(), qb.size() * 4) == 0);
  const auto kv = m.f32<2>("model.layers.0.self_attn.k_proj.weight");
  const auto kh = m.view<f16, 2>("model.layers.0.self_attn.k_proj.weight");
  for (index_t r = 0; r < n_kv * hd; ++r)
    for (index_t c = 0; c < d; ++c) {
      const float want = static_cast<float>(f16(k[static_cast<std::size_t>(r * d + c)]));
      REQUIRE(kv(r, c) == want);
      REQUIRE(static_cast<float>(kh(r, c)) == want);
    }
  const auto vv = m.f32<2>("model.layers.0.self_attn.v_proj.weight");
  CHECK(std::memcmp(vv.data(), v_expect.data(), v_expect.size() * 4) == 0);
  CHECK_THROWS_WITH((m.view<float, 2>("model.layers.0.self_attn.v_proj.weight")), Catch::Contains("Q8_0") && Catch::Contains("f32()"));
  // zero-copy for untouched f32 tensors
  const auto e = m.view<float, 2>("model.embed_tokens.weight");
  CHECK(reinterpret_cast<const std::byte*>(e.data()) >= m.gguf()->mapping()->data());
  CHECK(std::memcmp(e.data(), emb.data(), emb.size() * 4) == 0);
}

TEST_CASE("GGUF names by family: GGUF gpt2 transposes and mamba A", "[models][gguf]") {
  test::temp_dir dir("wm_arch");
  {
    test::gguf_builder g;
    g.kv_str("general.architecture", "gpt2");
    const auto w = test::random_vector(5 * 3);  // GGUF stores (out = 5, in = 3)
    g.tensor_f32("blk.1.attn_qkv.weight", {3, 5}, w);
    g.tensor_f32("blk.1.attn_qkv.bias", {5}, test::random_vector(5));
    g.tensor_f32("position_embd.weight", {3, 4}, test::random_vector(12));
    test::write_file(dir / "g.gguf", g.bytes());
    const auto m = open_weights(dir / "g.gguf");
    CHECK(m.contains("transformer.wpe.weight"));
    CHECK(m.contains("transformer.h.1.attn.c_attn.bias"));
    const auto t = m.f32<2>("transformer.h.1.attn.c_attn.weight");  // HF Conv1D: (in, out)
    REQUIRE(t.extents() == extents<2>{3, 5});
    for (index_t i = 0; i < 3; ++i)
      for (index_t o = 0; o < 5; ++o) CHECK(t(i, o) == w[static_cast<std::size_t>(o * 3 + i)]);
    const auto tv = m.view<float, 2>("transformer.h.1.attn.c_attn.weight");
    CHECK(tv(2, 4) == w[4 * 3 + 2]);
  }
  {
    test::gguf_builder g;
    g.kv_str("general.architecture", "mamba");
    const auto a_log = test::random_vector(4 * 3, -2.f, 1.f);
    std::vector<float> a;
    for (float x : a_log) a.push_back(-std::exp(x));
    g.tensor_f32("blk.0.ssm_a", {3, 4}, a);
    g.tensor_f32("blk.0.ssm_d", {4}, test::random_vector(4));
    g.tensor_f32("blk.0.ssm_conv1d.weight", {2, 4}, test::random_vector(8));
    g.tensor_f32("token_embd.weight", {4, 2}, test::random_vector(8));
    test::write_file(dir / "m.gguf", g.bytes());
    const auto m = open_weights(dir / "m.gguf");
    const auto al = m.f32<2>("backbone.layers.0.mixer.A_log");
    for (std::size_t i = 0; i < a_log.size(); ++i) CHECK(al.data()[i] == Approx(a_log[i]).margin(1e-6));
    CHECK(m.info("backbone.layers.0.mixer.conv1d.weight").extents == std::vector<index_t>{4, 1, 2});
    CHECK(m.f32<3>("backbone.layers.0.mixer.conv1d.weight").extent(2) == 2);
    CHECK(m.contains("backbone.layers.0.mixer.D"));
    CHECK(m.contains("backbone.embeddings.weight"));
  }
  CHECK(gguf_hf_name("qwen2", "blk.12.ffn_down.weight") == "model.layers.12.mlp.down_proj.weight");
  CHECK(gguf_hf_name("qwen3", "blk.3.attn_k_norm.weight") == "model.layers.3.self_attn.k_norm.weight");
  CHECK(gguf_hf_name("qwen3", "blk.0.attn_q.weight") == "model.layers.0.self_attn.q_proj.weight");
  CHECK(gguf_hf_name("llama", "output.weight") == "lm_head.weight");
  CHECK(gguf_hf_name("llama", "output_norm.weight") == "model.norm.weight");
  CHECK(gguf_hf_name("mamba2", "blk.3.ssm_dt.bias") == "backbone.layers.3.mixer.dt_bias");
  CHECK(gguf_hf_name("mamba2", "blk.3.ssm_norm.weight") == "backbone.layers.3.mixer.norm.weight");
  CHECK(gguf_hf_name("bert", "blk.0.attn_q.weight").empty());
  CHECK(gguf_hf_name("llama", "blk.x.attn_q.weight").empty());
}

TEST_CASE("GGUF names by family: stories260K.gguf", "[models][gguf]") {
  const auto m = open_weights(test::bundled_model);
  CHECK(m.size() == 48);
  CHECK(m.contains("model.layers.4.self_attn.k_proj.weight"));
  CHECK(m.contains("lm_head.weight"));
  CHECK(m.info("model.layers.0.self_attn.k_proj.weight").extents == std::vector<index_t>{32, 64});
  CHECK(m.dtype_counts().at("F32") == 48);
  CHECK(m.f32<2>("model.embed_tokens.weight").extents() == extents<2>{512, 64});
  CHECK(m.gguf()->get_string_array("tokenizer.ggml.tokens").size() == 512);
}

TEST_CASE("GGUF names by family: a HF checkpoint and its GGUF conversion load to identical tensors", "[models][gguf]") {
  // Convert the llama fixture the way convert_hf_to_gguf.py does (rename, permute q/k rows,
  // reverse dims), then check that both load to the same HF-named, HF-layout tensors.
  const auto models = std::filesystem::path(TESSERA_TEST_DATA_DIR) / "models";
  const auto hf = io::weight_map::open(models / "llama");
  const index_t n_head = 6, n_kv = 2, n_layers = 3;
  std::vector<std::string> candidates = {"token_embd.weight", "output_norm.weight", "output.weight"};
  for (index_t l = 0; l < n_layers; ++l)
    for (const char* t : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"})
      candidates.push_back("blk." + std::to_string(l) + "." + t + ".weight");
  test::gguf_builder g;
  g.kv_str("general.architecture", "llama");
  g.kv_u32("llama.attention.head_count", static_cast<std::uint32_t>(n_head));
  g.kv_u32("llama.attention.head_count_kv", static_cast<std::uint32_t>(n_kv));
  for (const auto& name : hf.names()) {
    const std::string gguf_name = test::gguf_name_for([](std::string_view g) { return gguf_hf_name("llama", g); }, name, candidates);
    INFO(name);
    REQUIRE(!gguf_name.empty());
    const auto& info = hf.info(name);
    std::vector<float> data(static_cast<std::size_t>(info.numel));
    if (info.extents.size() == 2) std::memcpy(data.data(), hf.f32<2>(name).data(), data.size() * 4);
    else std::memcpy(data.data(), hf.f32<1>(name).data(), data.size() * 4);
    if (gguf_name.find("attn_q") != std::string::npos) data = test::llama_permute(data, info.extents[0], info.extents[1], n_head);
    if (gguf_name.find("attn_k") != std::string::npos) data = test::llama_permute(data, info.extents[0], info.extents[1], n_kv);
    g.tensor_f32(gguf_name, std::vector<std::int64_t>(info.extents.rbegin(), info.extents.rend()), data);
  }
  test::temp_dir dir("wm_convert");
  test::write_file(dir / "llama.gguf", g.bytes());
  const auto gg = open_weights(dir / "llama.gguf");
  REQUIRE(gg.names() == hf.names());
  for (const auto& name : hf.names()) {
    INFO(name);
    const auto& info = hf.info(name);
    REQUIRE(gg.info(name).extents == info.extents);
    const std::size_t bytes = static_cast<std::size_t>(info.numel) * 4;
    if (info.extents.size() == 2) CHECK(std::memcmp(gg.f32<2>(name).data(), hf.f32<2>(name).data(), bytes) == 0);
    else CHECK(std::memcmp(gg.f32<1>(name).data(), hf.f32<1>(name).data(), bytes) == 0);
  }
}

TEST_CASE("config: a GGUF context_length of 0 is refused, load_options::max_memory refuses before reading",
          "[io][config][errors]") {
  test::gguf_builder g;
  g.kv_str("general.architecture", "llama");
  g.kv_u32("llama.context_length", 0);
  g.kv_u32("llama.embedding_length", 8);
  g.kv_u32("llama.block_count", 1);
  g.kv_u32("llama.attention.head_count", 2);
  g.kv_u32("llama.vocab_size", 4);
  g.tensor_f32("token_embd.weight", {8, 4}, test::random_vector(32));
  test::temp_dir dir("ctx0");
  test::write_file(dir / "m.gguf", g.bytes());
  CHECK_THROWS_WITH(load_config(dir / "m.gguf"), Catch::Contains("llama.context_length' = 0 must be positive"));
  const auto llama = std::filesystem::path(TESSERA_TEST_DATA_DIR) / "models" / "llama";
  CHECK_THROWS_WITH(load_language_model(llama, {.max_memory = 1000}), Catch::Contains("max_memory = 1000"));
  CHECK(load_language_model(llama, {.max_memory = std::uint64_t{1} << 34}) != nullptr);
}
