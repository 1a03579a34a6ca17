// GGUF reader: real files, every metadata type, the typed API, and malformed input.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include <tessera/io/gguf.hpp>

#include "io_test_util.hpp"

using namespace tessera;
using io::gguf_type;
using io::ggml_type;

namespace {


std::shared_ptr<const io::mapped_file> in_memory(std::vector<std::byte> b, const std::string& name = "mem.gguf") {
  return std::make_shared<const io::mapped_file>(io::mapped_file::from_bytes(std::move(b), name));
}

/// Expects a format_error whose message contains `needle` (and the file name).
template <class F>
void expect_format_error(F&& f, const std::string& needle, const std::string& file = "mem.gguf") {
  try {
    f();
    FAIL("expected a format_error containing '" << needle << "'");
  } catch (const format_error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find(file) != std::string::npos);
    CHECK(msg.find(needle) != std::string::npos);
  }
}

/// A small valid GGUF: every scalar type, string and nested arrays, three tensors.
test::gguf_builder sample_builder() {
  test::gguf_builder g;
  g.kv_str("general.architecture", "llama");
  g.kv("k.u8", gguf_type::u8, std::uint8_t{200});
  g.kv("k.i8", gguf_type::i8, std::int8_t{-100});
  g.kv("k.u16", gguf_type::u16, std::uint16_t{60000});
  g.kv("k.i16", gguf_type::i16, std::int16_t{-30000});
  g.kv_u32("k.u32", 4000000000u);
  g.kv_i32("k.i32", -2000000000);
  g.kv_u64("k.u64", 1ull << 40);
  g.kv("k.i64", gguf_type::i64, std::int64_t{-(1ll << 50)});
  g.kv_f32("k.f32", 1.5f);
  g.kv("k.f64", gguf_type::f64, 0.1);
  g.kv_bool("k.bool", true);
  g.kv_str("k.str", "héllo");
  g.kv_str_array("k.strs", {"a", "", "ccc"});
  g.kv_array<float>("k.f32s", gguf_type::f32, {0.5f, -2.f, 3.25f});
  g.kv_array<std::int32_t>("k.i32s", gguf_type::i32, {7, -8, 9});
  {  // array<array<u16>> = [[1, 2], [3]]
    std::vector<std::byte> p;
    test::gguf_builder::put<std::uint32_t>(p, 9);
    test::gguf_builder::put<std::uint64_t>(p, 2);
    test::gguf_builder::put<std::uint32_t>(p, 2);
    test::gguf_builder::put<std::uint64_t>(p, 2);
    test::gguf_builder::put<std::uint16_t>(p, 1);
    test::gguf_builder::put<std::uint16_t>(p, 2);
    test::gguf_builder::put<std::uint32_t>(p, 2);
    test::gguf_builder::put<std::uint64_t>(p, 1);
    test::gguf_builder::put<std::uint16_t>(p, 3);
    g.kv_raw("k.nested", gguf_type::array, p);
  }
  g.kv_u32("general.alignment", 32);
  std::vector<float> a(3 * 5), b(8);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = 0.25f * static_cast<float>(i) - 1.f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = 1.f + static_cast<float>(i);
  g.tensor_f32("a.weight", {5, 3}, a);  // (3, 5)
  g.tensor_f32("b.weight", {8}, b);     // last tensor fills its 32 bytes: no trailing padding
  return g;
}

}  // namespace

TEST_CASE("gguf: every metadata type round-trips (v3 and v2)", "[io][gguf]") {
  for (std::uint32_t version : {3u, 2u}) {
    auto g = sample_builder();
    g.version = version;
    io::gguf_file f(in_memory(g.bytes()));
    CHECK(f.version() == version);
    CHECK(f.alignment() == 32);
    CHECK(f.metadata().size() == 18);
    CHECK(f.get_string("general.architecture") == "llama");
    CHECK(f.get_int("k.u8") == 200);
    CHECK(f.get_int("k.i8") == -100);
    CHECK(f.get_int("k.u16") == 60000);
    CHECK(f.get_int("k.i16") == -30000);
    CHECK(f.get_int("k.u32") == 4000000000ll);
    CHECK(f.get_int("k.i32") == -2000000000);
    CHECK(f.get_int("k.u64") == (1ll << 40));
    CHECK(f.get_int("k.i64") == -(1ll << 50));
    CHECK(f.get_float("k.f32") == 1.5);
    CHECK(f.get_float("k.f64") == 0.1);
    CHECK(f.get_float("k.u32") == 4e9);  // integers convert
    CHECK(f.get_bool("k.bool"));
    CHECK(f.get_string("k.str") == "héllo");
    CHECK(f.get_string_array("k.strs") == std::vector<std::string>{"a", "", "ccc"});
    CHECK(f.get_float_array("k.f32s") == std::vector<float>{0.5f, -2.f, 3.25f});
    CHECK(f.get_int_array("k.i32s") == std::vector<std::int64_t>{7, -8, 9});
    CHECK(f.get_float_array("k.i32s") == std::vector<float>{7.f, -8.f, 9.f});
    const io::gguf_value* nested = f.find("k.nested");
    REQUIRE(nested);
    CHECK(nested->type_name() == "array<array<u16>>");
    REQUIRE(nested->size() == 2);
    CHECK(nested->arrays[0].ints == std::vector<std::int64_t>{1, 2});
    CHECK(nested->arrays[1].ints == std::vector<std::int64_t>{3});
    CHECK(f.find("absent") == nullptr);
    CHECK(!f.try_int("absent").has_value());
    CHECK(f.try_int("k.u16") == 60000);

    REQUIRE(f.tensors().size() == 2);
    const auto* a = f.find_tensor("a.weight");
    REQUIRE(a);
    CHECK(a->ne == std::vector<std::int64_t>{5, 3});
    CHECK(a->extents == std::vector<index_t>{3, 5});
    CHECK(a->type == ggml_type::f32);
    CHECK(a->nbytes == 60);
    CHECK(a->file_offset % 32 == 0);
    float x;
    std::memcpy(&x, f.tensor_data(*a) + 4 * 7, 4);
    CHECK(x == 0.25f * 7 - 1.f);
    const auto* b = f.find_tensor("b.weight");
    REQUIRE(b);
    CHECK(b->offset == 64);
    std::memcpy(&x, f.tensor_data(*b) + 4 * 7, 4);
    CHECK(x == 8.f);
  }
}

TEST_CASE("gguf: typed getters name the file and key on missing or wrong-typed values", "[io][gguf]") {
  io::gguf_file f(in_memory(sample_builder().bytes()));
  expect_format_error([&] { f.get_string("tokenizer.ggml.model"); }, "'tokenizer.ggml.model' is missing");
  expect_format_error([&] { f.get_string("k.u32"); }, "'k.u32' has type u32, expected string");
  expect_format_error([&] { f.get_int("k.f32"); }, "'k.f32' has type f32, expected an integer");
  expect_format_error([&] { f.get_bool("k.u8"); }, "expected bool");
  expect_format_error([&] { f.get_string_array("k.f32s"); }, "'k.f32s' has type array<f32>, expected array<string>");
  expect_format_error([&] { f.get_int_array("k.f32s"); }, "expected array of integers");
  expect_format_error([&] { f.get_float_array("k.strs"); }, "expected array of numbers");
  expect_format_error([&] { f.get_float("k.str"); }, "expected a number");
}

TEST_CASE("gguf: stories260K.gguf", "[io][gguf]") {
  io::gguf_file f(test::bundled_model);
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 32);
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.get_int("llama.block_count") == 5);
  CHECK(f.get_int("llama.embedding_length") == 64);
  CHECK(f.get_int("llama.attention.head_count") == 8);
  CHECK(f.get_int("llama.attention.head_count_kv") == 4);
  CHECK(f.get_float("llama.attention.layer_norm_rms_epsilon") == Approx(1e-5));
  CHECK(f.get_string("tokenizer.ggml.model") == "llama");
  CHECK(f.get_string_array("tokenizer.ggml.tokens").size() == 512);
  CHECK(f.get_float_array("tokenizer.ggml.scores").size() == 512);
  CHECK(f.get_int_array("tokenizer.ggml.token_type").size() == 512);
  CHECK(f.get_int("tokenizer.ggml.bos_token_id") == 1);
  CHECK(f.get_int("tokenizer.ggml.eos_token_id") == 2);
  REQUIRE(f.tensors().size() == 48);
  const auto* emb = f.find_tensor("token_embd.weight");
  REQUIRE(emb);
  CHECK(emb->extents == std::vector<index_t>{512, 64});
  CHECK(emb->type == ggml_type::f32);
  const auto* ffn = f.find_tensor("blk.0.ffn_gate.weight");
  REQUIRE(ffn);
  CHECK(ffn->extents == std::vector<index_t>{172, 64});
  std::uint64_t end = 0;
  for (const auto& t : f.tensors()) end = std::max(end, t.file_offset + t.nbytes);
  CHECK(end <= std::filesystem::file_size(test::bundled_model));
}

TEST_CASE("gguf: tokenizer vocabularies", "[io][gguf]") {
  struct vocab {
    const char* file;
    const char* model;
    std::size_t n;
  };
  for (const vocab& v : {vocab{"ggml-vocab-bert-bge.gguf", "bert", 30522}, vocab{"ggml-vocab-gpt-2.gguf", "gpt2", 50257},
                         vocab{"ggml-vocab-phi-3.gguf", "llama", 32064}}) {
    INFO(v.file);
    io::gguf_file f(test::gguf_vocab_dir / v.file);
    CHECK(f.get_string("tokenizer.ggml.model") == v.model);
    CHECK(f.get_string_array("tokenizer.ggml.tokens").size() == v.n);
    if (std::string(v.model) == "gpt2") CHECK(!f.get_string_array("tokenizer.ggml.merges").empty());
    if (std::string(v.model) == "llama") CHECK(f.get_float_array("tokenizer.ggml.scores").size() == v.n);
  }
}

TEST_CASE("gguf: every byte-prefix of a valid file is a format_error naming the file", "[io][gguf]") {
  const auto full = sample_builder().bytes();
  REQUIRE_NOTHROW(io::gguf_file(in_memory(full)));
  for (std::size_t n = 0; n < full.size(); ++n) {
    INFO("prefix length " << n << " of " << full.size());
    std::vector<std::byte> prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    try {
      io::gguf_file f(in_memory(std::move(prefix), "prefix.gguf"));
      FAIL("prefix loaded");
    } catch (const format_error& e) {
      CHECK(std::string(e.what()).find("prefix.gguf") != std::string::npos);
    }
  }
  // The same through real files on disk (mapped), for a spread of lengths.
  test::temp_dir dir("gguf_prefix");
  for (std::size_t n : {std::size_t{0}, std::size_t{3}, std::size_t{23}, full.size() / 2, full.size() - 1}) {
    test::write_file(dir / "p.gguf", full, n);
    CHECK_THROWS_AS(io::gguf_file(dir / "p.gguf"), format_error);
  }
  test::write_file(dir / "p.gguf", full);
  CHECK_NOTHROW(io::gguf_file(dir / "p.gguf"));
  CHECK_THROWS_AS(io::gguf_file(dir / "absent.gguf"), io_error);
  CHECK_THROWS_AS(io::gguf_file(dir.path), io_error);
}

TEST_CASE("gguf: hand-made malformed files", "[io][gguf]") {
  using B = test::gguf_builder;
  auto header = [](std::uint32_t version, std::uint64_t n_tensors, std::uint64_t n_kv) {
    std::vector<std::byte> b;
    for (char c : std::string("GGUF")) b.push_back(static_cast<std::byte>(c));
    B::put<std::uint32_t>(b, version);
    B::put<std::uint64_t>(b, n_tensors);
    B::put<std::uint64_t>(b, n_kv);
    return b;
  };
  SECTION("bad magic and versions") {
    auto b = sample_builder().bytes();
    b[0] = std::byte{'X'};
    expect_format_error([&] { io::gguf_file(in_memory(b)); }, "bad magic");
    expect_format_error([&] { io::gguf_file(in_memory(header(1, 0, 0))); }, "version 1");
    expect_format_error([&] { io::gguf_file(in_memory(header(0x03000000u, 0, 0))); }, "big-endian");
    expect_format_error([&] { io::gguf_file(in_memory(header(7, 0, 0))); }, "unsupported GGUF version 7");
  }
  SECTION("huge counts and lengths") {
    expect_format_error([&] { io::gguf_file(in_memory(header(3, 0, 1ull << 62))); }, "metadata count");
    expect_format_error([&] { io::gguf_file(in_memory(header(3, 1ull << 62, 0))); }, "tensor count");
    auto b = header(3, 0, 1);
    B::put<std::uint64_t>(b, ~0ull);  // key length 2^64-1
    b.resize(b.size() + 64);
    expect_format_error([&] { io::gguf_file(in_memory(b)); }, "string length");
    b = header(3, 0, 1);
    B::put_str(b, "arr");
    B::put<std::uint32_t>(b, 9);
    B::put<std::uint32_t>(b, 4);
    B::put<std::uint64_t>(b, 1ull << 61);  // array of 2^61 u32
    b.resize(b.size() + 64);
    expect_format_error([&] { io::gguf_file(in_memory(b)); }, "'arr': array of 2305843009213693952 u32 exceeds the file");
    b = header(3, 0, 1);
    B::put_str(b, "strs");
    B::put<std::uint32_t>(b, 9);
    B::put<std::uint32_t>(b, 8);
    B::put<std::uint64_t>(b, 1);
    B::put<std::uint64_t>(b, 1ull << 40);  // one string of 2^40 bytes
    b.resize(b.size() + 64);
    expect_format_error([&] { io::gguf_file(in_memory(b)); }, "string length 1099511627776 exceeds the file");
  }
  SECTION("unknown value types, bools, nesting, duplicates") {
    auto b = header(3, 0, 1);
    B::put_str(b, "k");
    B::put<std::uint32_t>(b, 13);
    b.resize(b.size() + 64);
    expect_format_error([&] { io::gguf_file(in_memory(b)); }, "unknown value type 13");
    b = header(3, 0, 1);
    B::put_str(b, "k");
    B::put<std::uint32_t>(b, 9);
    B::put<std::uint32_t>(b, 99);
    b.resize(b.size() + 64);
    expect_format_error([&] { io::gguf_file(in_memory(b)); }, "unknown array element type 99");
    b = header(3, 0, 1);
    B::put_str(b, "k");
    B::put<std::uint32_t>(b, 7);
    B::put<std::uint8_t>(b, 2);
    b.resize(b.size() + 64);
    expect_format_error([&] { io::gguf_file(in_memory(b)); }, "neither 0 nor 1");
    b = header(3, 0, 1);
    B::put_str(b, "deep");
    B::put<std::uint32_t>(b, 9);
    for (int d = 0; d < 20; ++d) {
      B::put<std::uint32_t>(b, 9);
      B::put<std::uint64_t>(b, 1);
    }
    b.resize(b.size() + 64);
    expect_format_error([&] { io::gguf_file(in_memory(b)); }, "nested deeper");
    test::gguf_builder g;
    g.kv_u32("x", 1);
    g.kv_u32("x", 2);
    expect_format_error([&] { io::gguf_file(in_memory(g.bytes())); }, "duplicate metadata key 'x'");
  }
  SECTION("alignment") {
    test::gguf_builder g;
    g.kv_u32("general.alignment", 24);
    expect_format_error([&] { io::gguf_file(in_memory(g.bytes())); }, "not a power of two");
    test::gguf_builder h;
    h.kv_u64("general.alignment", 32);
    expect_format_error([&] { io::gguf_file(in_memory(h.bytes())); }, "expected u32");
    test::gguf_builder k;
    k.alignment = 64;
    k.kv_u32("general.alignment", 64);
    k.tensor_f32("t", {16}, std::vector<float>(16, 1.f));
    k.tensor_f32("u", {16}, std::vector<float>(16, 2.f));
    io::gguf_file f(in_memory(k.bytes()));
    CHECK(f.alignment() == 64);
    CHECK(f.find_tensor("u")->offset == 64);
    CHECK(f.data_offset() % 64 == 0);
  }
  // Tensor-info corruptions: patch the offset / type of the first tensor of a two-tensor file.
  auto two_tensors = [](std::uint64_t off_b, std::uint32_t type_a, std::int64_t ne_a) {
    std::vector<std::byte> b = [] {
      std::vector<std::byte> h;
      for (char c : std::string("GGUF")) h.push_back(static_cast<std::byte>(c));
      B::put<std::uint32_t>(h, 3);
      B::put<std::uint64_t>(h, 2);
      B::put<std::uint64_t>(h, 0);
      return h;
    }();
    B::put_str(b, "a");
    B::put<std::uint32_t>(b, 1);
    B::put<std::int64_t>(b, ne_a);
    B::put<std::uint32_t>(b, type_a);
    B::put<std::uint64_t>(b, 0);
    B::put_str(b, "b");
    B::put<std::uint32_t>(b, 1);
    B::put<std::int64_t>(b, 8);
    B::put<std::uint32_t>(b, 0);
    B::put<std::uint64_t>(b, off_b);
    b.resize((b.size() + 31) / 32 * 32 + 64);
    return b;
  };
  SECTION("tensor infos") {
    CHECK_NOTHROW(io::gguf_file(in_memory(two_tensors(32, 0, 8))));
    expect_format_error([&] { io::gguf_file(in_memory(two_tensors(32, 77, 8))); }, "unknown ggml type 77");
    expect_format_error([&] { io::gguf_file(in_memory(two_tensors(36, 0, 8))); }, "not a multiple of the alignment");
    expect_format_error([&] { io::gguf_file(in_memory(two_tensors(0, 0, 8))); }, "overlap");
    expect_format_error([&] { io::gguf_file(in_memory(two_tensors(64, 0, 8))); }, "lies outside the file");
    expect_format_error([&] { io::gguf_file(in_memory(two_tensors(1ull << 63, 0, 8))); }, "lies outside the file");
    expect_format_error([&] { io::gguf_file(in_memory(two_tensors(32, 8, 40))); }, "not a multiple of the Q8_0 block size");
    expect_format_error([&] { io::gguf_file(in_memory(two_tensors(32, 0, -1))); }, "negative dimension");
    expect_format_error([&] { io::gguf_file(in_memory(two_tensors(32, 0, 1ll << 62))); }, "tensor 'a'");
  }
}
