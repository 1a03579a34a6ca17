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

TEST_CASE("weight_map: a gguf_tensor_mapper renames, reshapes and transforms on read, GGUF names stay without one",
          "[io][weights]") {
  test::gguf_builder g;
  g.kv_str("general.architecture", "toy");
  const auto w = test::random_vector(5 * 3);  // stored (5, 3): ggml ne = {3, 5}
  g.tensor_f32("blk.1.proj.weight", {3, 5}, w);
  g.tensor_f32("blk.1.scale", {4}, test::random_vector(4));
  test::temp_dir dir("wm_mapper");
  test::write_file(dir / "t.gguf", g.bytes());
  const io::gguf_tensor_mapper map = [](const io::gguf_file& file, std::string_view name, io::gguf_tensor_fix& fix) {
    CHECK(file.get_string("general.architecture") == "toy");
    static constexpr io::gguf_name_rule layer[] = {{"proj", "layers.{}.proj"}};
    fix.name = io::gguf_rename({}, layer, name);
    if (name == "blk.1.proj.weight") {
      fix.transform = io::weight_transform::transpose;
      fix.extents = {fix.extents[1], fix.extents[0]};
    }
    if (name == "blk.1.scale") fix.extents = {2, 2};
  };
  const auto m = io::weight_map::open(dir / "t.gguf", map);
  const auto t = m.f32<2>("layers.1.proj.weight");
  REQUIRE(t.extents() == extents<2>{3, 5});
  for (index_t i = 0; i < 3; ++i)
    for (index_t o = 0; o < 5; ++o) CHECK(t(i, o) == w[static_cast<std::size_t>(o * 3 + i)]);
  CHECK(m.info("blk.1.scale").extents == std::vector<index_t>{2, 2});  // not renamed: kept
  const auto plain = io::weight_map::open(dir / "t.gguf");
  CHECK(plain.contains("blk.1.proj.weight"));
  CHECK(plain.info("blk.1.proj.weight").extents == std::vector<index_t>{5, 3});
  // a mapper may not change the element count
  const io::gguf_tensor_mapper bad = [](const io::gguf_file&, std::string_view, io::gguf_tensor_fix& fix) { fix.extents = {7}; };
  CHECK_THROWS_AS(io::weight_map::open(dir / "t.gguf", bad), format_error);
  CHECK(io::gguf_rename({}, {}, "blk.1.proj.weight").empty());
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
