// weight_map: safetensors (single and sharded) and GGUF, HF names and layout, errors, threads.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include <tessera/io/weights.hpp>

#include "common/test_util.hpp"
#include "io_test_util.hpp"

using namespace tessera;
using io::ggml_type;

namespace {


template <std::size_t R>
bool same(const tensor_view<const float, R>& a, const tensor_view<const float, R>& b) {
  if (a.extents() != b.extents()) return false;
  const auto ta = tensor<float, R>::copy_of(a), tb = tensor<float, R>::copy_of(b);
  return std::memcmp(ta.data(), tb.data(), static_cast<std::size_t>(ta.size()) * 4) == 0;
}

/// convert_hf_to_gguf.py's LlamaModel.permute on the rows of a (rows, cols) row-major matrix.
std::vector<float> llama_permute(const std::vector<float>& w, index_t rows, index_t cols, index_t n_head) {
  // reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2): out[h, i, j] = in[h, j, i]
  const index_t half = rows / n_head / 2;
  std::vector<float> out(w.size());
  for (index_t h = 0; h < n_head; ++h)
    for (index_t i = 0; i < half; ++i)
      for (index_t j = 0; j < 2; ++j)
        for (index_t c = 0; c < cols; ++c)
          out[static_cast<std::size_t>(((h * half + i) * 2 + j) * cols + c)] =
              w[static_cast<std::size_t>(((h * 2 + j) * half + i) * cols + c)];
  return out;
}

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

TEST_CASE("weight_map: single and sharded safetensors load identically", "[io][weights]") {
  test::temp_dir dir("wm_shard");
  std::filesystem::create_directories(dir / "single");
  std::filesystem::create_directories(dir / "sharded");
  auto emb = test::random_tensor<2>({11, 6});
  auto q = test::random_tensor<2>({6, 6});
  tensor<bf16, 1> norm({6});
  for (index_t i = 0; i < 6; ++i) norm(i) = bf16(1.f + 0.125f * static_cast<float>(i));
  io::safetensors_writer all;
  all.add("model.embed_tokens.weight", emb);
  all.add("model.layers.0.self_attn.q_proj.weight", q);
  all.add("model.norm.weight", norm);
  all.write(dir / "single" / "model.safetensors");
  io::safetensors_writer s1, s2;
  s1.add("model.embed_tokens.weight", emb);
  s2.add("model.layers.0.self_attn.q_proj.weight", q);
  s2.add("model.norm.weight", norm);
  s1.write(dir / "sharded" / "model-00001-of-00002.safetensors");
  s2.write(dir / "sharded" / "model-00002-of-00002.safetensors");
  {
    std::ofstream idx(dir / "sharded" / "model.safetensors.index.json");
    idx << R"({"metadata": {"total_size": 0}, "weight_map": {
      "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
      "model.layers.0.self_attn.q_proj.weight": "model-00002-of-00002.safetensors",
      "model.norm.weight": "model-00002-of-00002.safetensors"}})";
  }
  const auto a = io::weight_map::open(dir / "single");
  const auto b = io::weight_map::open(dir / "sharded");
  CHECK(a.names() == b.names());
  CHECK(a.total_bytes() == b.total_bytes());
  CHECK(a.total_bytes() == 11 * 6 * 4 + 36 * 4 + 6 * 2);
  CHECK(a.dtype_counts() == std::map<std::string, index_t>{{"BF16", 1}, {"F32", 2}});
  CHECK(b.files().size() == 2);
  for (const auto& n : a.names()) {
    INFO(n);
    if (a.info(n).extents.size() == 2) CHECK(same(a.f32<2>(n), b.f32<2>(n)));
    else CHECK(same(a.f32<1>(n), b.f32<1>(n)));
  }
  // zero-copy for f32: the view points into the mapping
  const auto v = a.view<float, 2>("model.embed_tokens.weight");
  CHECK(v.data() == a.f32<2>("model.embed_tokens.weight").data());
  CHECK(std::memcmp(v.data(), emb.data(), 66 * 4) == 0);
  CHECK(a.f32<1>("model.norm.weight")(3) == 1.375f);
  CHECK(a.view<bf16, 1>("model.norm.weight")(3) == bf16(1.375f));
  CHECK(a.info("model.norm.weight").file.ends_with("model.safetensors"));
  CHECK(a.gguf() == nullptr);
  // Also: open the file itself and the index itself.
  CHECK(io::weight_map::open(dir / "single" / "model.safetensors").size() == 3);
  CHECK(io::weight_map::open(dir / "sharded" / "model.safetensors.index.json").size() == 3);

  SECTION("errors") {
    CHECK_THROWS_WITH(a.info("model.embed_token.weight"),
                      Catch::Contains("'model.embed_token.weight' not found") && Catch::Contains("closest: 'model.embed_tokens.weight'") &&
                          Catch::Contains("single"));
    CHECK_THROWS_WITH((a.view<f16, 1>("model.norm.weight")), Catch::Contains("has dtype BF16, requested f16") && Catch::Contains("model.safetensors"));
    CHECK_THROWS_WITH((a.f32<3>("model.embed_tokens.weight")), Catch::Contains("shape (11, 6) of rank 2, requested rank 3"));
    CHECK_THROWS_AS((a.f32<3>("model.embed_tokens.weight")), shape_error);
    CHECK_THROWS_AS(io::weight_map::open(dir / "absent"), io_error);
    std::filesystem::create_directories(dir / "empty");
    CHECK_THROWS_AS(io::weight_map::open(dir / "empty"), io_error);
    // index naming a tensor its shard does not hold
    std::filesystem::create_directories(dir / "bad");
    std::filesystem::copy(dir / "sharded" / "model-00001-of-00002.safetensors", dir / "bad" / "a.safetensors");
    {
      std::ofstream idx(dir / "bad" / "model.safetensors.index.json");
      idx << R"({"weight_map": {"x.weight": "a.safetensors"}})";
    }
    CHECK_THROWS_WITH(io::weight_map::open(dir / "bad"), Catch::Contains("'x.weight' is listed in shard a.safetensors"));
    {
      std::ofstream idx(dir / "bad" / "model.safetensors.index.json");
      idx << R"({"weight_map": {"x.weight": "../a.safetensors"}})";
    }
    CHECK_THROWS_AS(io::weight_map::open(dir / "bad"), format_error);
    {
      std::ofstream idx(dir / "bad" / "model.safetensors.index.json");
      idx << R"({"weight_map": )";
    }
    CHECK_THROWS_WITH(io::weight_map::open(dir / "bad"), Catch::Contains("not valid JSON"));
  }
}

TEST_CASE("weight_map: GGUF llama names, q/k un-permutation, f16 and Q8_0", "[io][weights]") {
  // A tiny llama: d_model 32, 4 heads of 8, 2 KV heads.
  const index_t d = 32, n_head = 4, n_kv = 2, hd = 8;
  const auto q = test::random_vector(n_head * hd * d), k = test::random_vector(n_kv * hd * d);
  const auto qb = test::random_vector(n_head * hd), emb = test::random_vector(7 * d);
  test::gguf_builder g;
  g.kv_str("general.architecture", "llama");
  g.kv_u32("llama.attention.head_count", static_cast<std::uint32_t>(n_head));
  g.kv_u32("llama.attention.head_count_kv", static_cast<std::uint32_t>(n_kv));
  g.tensor_f32("token_embd.weight", {d, 7}, emb);
  g.tensor_f32("blk.0.attn_q.weight", {d, n_head * hd}, llama_permute(q, n_head * hd, d, n_head));
  g.tensor_f32("blk.0.attn_q.bias", {n_head * hd}, llama_permute(qb, n_head * hd, 1, n_head));
  g.tensor("blk.0.attn_k.weight", ggml_type::f16, {d, n_kv * hd}, as_f16_bytes(llama_permute(k, n_kv * hd, d, n_kv)));
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

  const auto m = io::weight_map::open(dir / "m.gguf");
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

TEST_CASE("weight_map: GGUF gpt2 transposes and mamba A", "[io][weights]") {
  test::temp_dir dir("wm_arch");
  {
    test::gguf_builder g;
    g.kv_str("general.architecture", "gpt2");
    const auto w = test::random_vector(5 * 3);  // GGUF stores (out = 5, in = 3)
    g.tensor_f32("blk.1.attn_qkv.weight", {3, 5}, w);
    g.tensor_f32("blk.1.attn_qkv.bias", {5}, test::random_vector(5));
    g.tensor_f32("position_embd.weight", {3, 4}, test::random_vector(12));
    test::write_file(dir / "g.gguf", g.bytes());
    const auto m = io::weight_map::open(dir / "g.gguf");
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
    const auto m = io::weight_map::open(dir / "m.gguf");
    const auto al = m.f32<2>("backbone.layers.0.mixer.A_log");
    for (std::size_t i = 0; i < a_log.size(); ++i) CHECK(al.data()[i] == Approx(a_log[i]).epsilon(1e-6));
    CHECK(m.info("backbone.layers.0.mixer.conv1d.weight").extents == std::vector<index_t>{4, 1, 2});
    CHECK(m.f32<3>("backbone.layers.0.mixer.conv1d.weight").extent(2) == 2);
    CHECK(m.contains("backbone.layers.0.mixer.D"));
    CHECK(m.contains("backbone.embeddings.weight"));
  }
  CHECK(io::gguf_to_hf_name("qwen2", "blk.12.ffn_down.weight") == "model.layers.12.mlp.down_proj.weight");
  CHECK(io::gguf_to_hf_name("qwen3", "blk.3.attn_k_norm.weight") == "model.layers.3.self_attn.k_norm.weight");
  CHECK(io::gguf_to_hf_name("qwen3", "blk.0.attn_q.weight") == "model.layers.0.self_attn.q_proj.weight");
  CHECK(io::gguf_to_hf_name("llama", "output.weight") == "lm_head.weight");
  CHECK(io::gguf_to_hf_name("llama", "output_norm.weight") == "model.norm.weight");
  CHECK(io::gguf_to_hf_name("mamba2", "blk.3.ssm_dt.bias") == "backbone.layers.3.mixer.dt_bias");
  CHECK(io::gguf_to_hf_name("mamba2", "blk.3.ssm_norm.weight") == "backbone.layers.3.mixer.norm.weight");
  CHECK(io::gguf_to_hf_name("bert", "blk.0.attn_q.weight").empty());
  CHECK(io::gguf_to_hf_name("llama", "blk.x.attn_q.weight").empty());
}

TEST_CASE("weight_map: stories260K.gguf", "[io][weights]") {
  const auto m = io::weight_map::open(test::bundled_model);
  CHECK(m.size() == 48);
  CHECK(m.contains("model.layers.4.self_attn.k_proj.weight"));
  CHECK(m.contains("lm_head.weight"));
  CHECK(m.info("model.layers.0.self_attn.k_proj.weight").extents == std::vector<index_t>{32, 64});
  CHECK(m.dtype_counts().at("F32") == 48);
  CHECK(m.f32<2>("model.embed_tokens.weight").extents() == extents<2>{512, 64});
  CHECK(m.gguf()->get_string_array("tokenizer.ggml.tokens").size() == 512);
}

TEST_CASE("weight_map: concurrent f32() conversions give one cached tensor", "[io][weights]") {
  test::temp_dir dir("wm_threads");
  io::safetensors_writer w;
  tensor<bf16, 2> t({64, 33});
  for (index_t i = 0; i < 64; ++i)
    for (index_t j = 0; j < 33; ++j) t(i, j) = bf16(static_cast<float>(i - j) * 0.5f);
  w.add("w", t);
  w.write(dir / "model.safetensors");
  const auto m = io::weight_map::open(dir.path);
  std::vector<const float*> ptrs(8);
  std::vector<std::thread> threads;
  for (int k = 0; k < 8; ++k) threads.emplace_back([&, k] { ptrs[static_cast<std::size_t>(k)] = m.f32<2>("w").data(); });
  for (auto& th : threads) th.join();
  for (auto* p : ptrs) CHECK(p == ptrs[0]);
  CHECK(m.f32<2>("w")(10, 3) == 3.5f);
}

TEST_CASE("weight_map: opening a 512 MB f32 file reads none of it", "[io][weights]") {
  test::temp_dir dir("wm_big");
  const std::int64_t n = 128ll * 1024 * 1024;  // 512 MB of f32
  const std::string header = R"({"big":{"dtype":"F32","shape":[)" + std::to_string(n) + R"(],"data_offsets":[0,)" +
                             std::to_string(n * 4) + "]}}";
  std::string padded = header;
  padded.resize((padded.size() + 7) / 8 * 8, ' ');
  {
    std::ofstream out(dir / "model.safetensors", std::ios::binary);
    const std::uint64_t len = padded.size();
    out.write(reinterpret_cast<const char*>(&len), 8);
    out.write(padded.data(), static_cast<std::streamsize>(padded.size()));
  }
  std::filesystem::resize_file(dir / "model.safetensors", 8 + padded.size() + static_cast<std::uint64_t>(n) * 4);  // sparse
  const auto t0 = std::chrono::steady_clock::now();
  const auto m = io::weight_map::open(dir.path);
  const auto v = m.view<float, 1>("big");
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  CHECK(v.extent(0) == n);
  CHECK(v(n - 1) == 0.f);
  CHECK(m.total_bytes() == static_cast<std::uint64_t>(n) * 4);
  INFO("open + view of 512 MB: " << ms << " ms");
  CHECK(ms < 200.0);  // mapping is O(header); reading 512 MB takes far longer
}

TEST_CASE("weight_map: a HF checkpoint and its GGUF conversion load to identical tensors", "[io][weights]") {
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
    const std::string gguf_name = test::gguf_name_for("llama", name, candidates);
    INFO(name);
    REQUIRE(!gguf_name.empty());
    const auto& info = hf.info(name);
    std::vector<float> data(static_cast<std::size_t>(info.numel));
    if (info.extents.size() == 2) std::memcpy(data.data(), hf.f32<2>(name).data(), data.size() * 4);
    else std::memcpy(data.data(), hf.f32<1>(name).data(), data.size() * 4);
    if (gguf_name.find("attn_q") != std::string::npos) data = llama_permute(data, info.extents[0], info.extents[1], n_head);
    if (gguf_name.find("attn_k") != std::string::npos) data = llama_permute(data, info.extents[0], info.extents[1], n_kv);
    g.tensor_f32(gguf_name, std::vector<std::int64_t>(info.extents.rbegin(), info.extents.rend()), data);
  }
  test::temp_dir dir("wm_convert");
  test::write_file(dir / "llama.gguf", g.bytes());
  const auto gg = io::weight_map::open(dir / "llama.gguf");
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
