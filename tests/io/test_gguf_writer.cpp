// GGUF writer: what it writes, io::gguf_file reads back identically (every metadata type, every
// tensor type, alignments, data in pieces), byte for byte as gguf-py lays a file out; what the
// reader would refuse is refused when it is given, and no half-written file takes the path.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <tessera/core/blocks.hpp>
#include <tessera/io/gguf.hpp>
#include <tessera/io/gguf_quants.hpp>
#include <tessera/io/gguf_writer.hpp>

#include "io_test_util.hpp"

using namespace tessera;
using io::ggml_type;
using io::gguf_type;

namespace {

/// Field-by-field equality of two metadata values (floats compared bitwise through ==, no NaN).
bool same_value(const io::gguf_value& a, const io::gguf_value& b) {
  if (a.type != b.type) return false;
  if (!a.is_array()) return a.i == b.i && a.f == b.f && a.s == b.s;
  if (a.elem != b.elem || a.size() != b.size()) return false;
  if (a.elem == gguf_type::array) {
    for (std::size_t k = 0; k < a.arrays.size(); ++k)
      if (!same_value(a.arrays[k], b.arrays[k])) return false;
    return true;
  }
  return a.ints == b.ints && a.floats == b.floats && a.strings == b.strings;
}

io::gguf_value int_array(gguf_type elem, std::vector<std::int64_t> v) {
  io::gguf_value g;
  g.type = gguf_type::array;
  g.elem = elem;
  g.ints = std::move(v);
  return g;
}

io::gguf_value array_of(std::vector<io::gguf_value> v) {
  io::gguf_value g;
  g.type = gguf_type::array;
  g.elem = gguf_type::array;
  g.arrays = std::move(v);
  return g;
}

/// Every value type at its limits, strings, arrays of every element type, nested arrays.
void set_every_type(io::gguf_writer& w) {
  w.set_string("general.architecture", "llama");
  w.set_u8("k.u8", 255);
  w.set_i8("k.i8", -128);
  w.set_u16("k.u16", 65535);
  w.set_i16("k.i16", -32768);
  w.set_u32("k.u32", 4294967295u);
  w.set_i32("k.i32", -2147483647 - 1);
  w.set_u64("k.u64", 18446744073709551615ull);
  w.set_i64("k.i64", -(1ll << 62));
  w.set_f32("k.f32", 1.5f);
  w.set_f64("k.f64", 0.1);
  w.set_bool("k.true", true);
  w.set_bool("k.false", false);
  w.set_string("k.str", "h\xc3\xa9llo");
  w.set_string("k.empty", "");
  w.set_array("k.strs", {"a", "", "ccc"});
  w.set_array("k.f32s", gguf_type::f32, std::vector<double>{0.5, -2, 3.25});
  w.set_array("k.f64s", gguf_type::f64, std::vector<double>{0.1, -1e300});
  w.set_array("k.u8s", gguf_type::u8, std::vector<std::int64_t>{0, 255});
  w.set_array("k.i8s", gguf_type::i8, std::vector<std::int64_t>{-128, 127});
  w.set_array("k.u16s", gguf_type::u16, std::vector<std::int64_t>{1, 65535});
  w.set_array("k.i16s", gguf_type::i16, std::vector<std::int64_t>{-32768, 2});
  w.set_array("k.u32s", gguf_type::u32, std::vector<std::int64_t>{4294967295ll});
  w.set_array("k.i32s", gguf_type::i32, std::vector<std::int64_t>{7, -8, 9});
  w.set_array("k.u64s", gguf_type::u64, std::vector<std::int64_t>{-1, 5});  // -1: 2^64 - 1, bitwise
  w.set_array("k.i64s", gguf_type::i64, std::vector<std::int64_t>{-(1ll << 62)});
  w.set_array("k.bools", gguf_type::boolean, std::vector<std::int64_t>{1, 0, 1});
  w.set_array("k.none", gguf_type::i32, std::vector<std::int64_t>{});
  // array<array<u16>> = [[1, 2], [3]]; array<array<array<string>>> = [[["x"]], []]
  w.set("k.nested", array_of({int_array(gguf_type::u16, {1, 2}), int_array(gguf_type::u16, {3})}));
  io::gguf_value strs;
  strs.type = gguf_type::array;
  strs.elem = gguf_type::string;
  strs.strings = {"x"};
  w.set("k.nested3", array_of({array_of({strs}), array_of({})}));
}

/// `n` random bytes (seeded).
std::vector<std::byte> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> b(n);
  for (auto& x : b) x = static_cast<std::byte>(rng() & 0xFF);
  return b;
}

struct tensor_case {
  std::string name;
  ggml_type type;
  std::vector<std::int64_t> ne;
};

/// One tensor of each type the writer is asked for, with shapes of 1 to 4 dims.
std::vector<tensor_case> every_tensor_type() {
  return {{"t.f32", ggml_type::f32, {3, 5}},          {"t.f16", ggml_type::f16, {7}},
          {"t.bf16", ggml_type::bf16, {2, 3, 4}},     {"t.q8_0", ggml_type::q8_0, {64, 3}},
          {"t.q4_0", ggml_type::q4_0, {32, 2, 2, 2}}, {"t.q4_1", ggml_type::q4_1, {96, 1}},
          {"t.q5_0", ggml_type::q5_0, {32, 5}},       {"t.q5_1", ggml_type::q5_1, {64, 2}},
          {"t.q4_K", ggml_type::q4_k, {256, 3}},      {"t.q5_K", ggml_type::q5_k, {512, 1}},
          {"t.q6_K", ggml_type::q6_k, {256, 2}},      {"t.empty", ggml_type::q8_0, {32, 0}},
          {"t.i32", ggml_type::i32, {4}}};
}

std::uint64_t nbytes_of(const tensor_case& t) {
  const auto tr = io::ggml_traits(t.type);
  std::int64_t n = 1;
  for (auto d : t.ne) n *= d;
  return static_cast<std::uint64_t>(n / tr.block * tr.bytes);
}

/// Writes every type of value and tensor to `path` with `alignment` (0: the default).
std::vector<std::vector<std::byte>> write_sample(const std::filesystem::path& path, std::uint32_t alignment) {
  io::gguf_writer w(path);
  set_every_type(w);
  if (alignment) w.set_u32("general.alignment", alignment);
  std::vector<std::vector<std::byte>> data;
  unsigned seed = 1;
  for (const auto& t : every_tensor_type()) {
    CHECK(w.add_tensor(t.name, t.type, t.ne) == nbytes_of(t));
    data.push_back(random_bytes(nbytes_of(t), seed++));
  }
  const auto cases = every_tensor_type();
  for (std::size_t k = 0; k < cases.size(); ++k) w.write_tensor_data(cases[k].name, data[k]);
  const std::uint64_t size = w.finish();
  CHECK(size == std::filesystem::file_size(path));
  return data;
}

template <class E, class F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    FAIL("expected an error containing '" << needle << "'");
  } catch (const E& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find(needle) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("gguf_writer: every metadata value and tensor byte reads back identically", "[io][gguf_writer]") {
  test::temp_dir dir("gguf_writer");
  for (const std::uint32_t alignment : {0u, 1u, 64u, 256u}) {
    INFO("alignment " << alignment);
    const auto path = dir / ("sample" + std::to_string(alignment) + ".gguf");
    const auto data = write_sample(path, alignment);
    CHECK_FALSE(std::filesystem::exists(path.string() + ".tmp"));

    const io::gguf_file f(path);
    CHECK(f.version() == 3);
    CHECK(f.alignment() == (alignment ? alignment : 32u));
    CHECK(f.data_offset() % f.alignment() == 0);

    // metadata: the same keys in the same order with the same values
    test::temp_dir ref_dir("gguf_writer_ref");
    io::gguf_writer ref(ref_dir / "ref.gguf");
    set_every_type(ref);
    if (alignment) ref.set_u32("general.alignment", alignment);
    REQUIRE(f.metadata().size() == ref.metadata().size());
    for (std::size_t k = 0; k < ref.metadata().size(); ++k) {
      INFO(ref.metadata()[k].first);
      CHECK(f.metadata()[k].first == ref.metadata()[k].first);
      CHECK(same_value(f.metadata()[k].second, ref.metadata()[k].second));
    }
    CHECK(static_cast<std::uint64_t>(f.find("k.u64s")->ints.at(0)) == 18446744073709551615ull);
    CHECK(static_cast<std::uint64_t>(f.at("k.u64").i) == 18446744073709551615ull);
    CHECK(f.get_float("k.f64") == 0.1);
    CHECK(f.get_string("k.str") == "h\xc3\xa9llo");

    // tensors: names, types, dims, aligned offsets in order, bytes
    const auto cases = every_tensor_type();
    REQUIRE(f.tensors().size() == cases.size());
    std::uint64_t offset = 0;
    for (std::size_t k = 0; k < cases.size(); ++k) {
      const auto& t = f.tensors()[k];
      INFO(t.name);
      CHECK(t.name == cases[k].name);
      CHECK(t.type == cases[k].type);
      CHECK(t.ne == cases[k].ne);
      CHECK(t.offset == offset);
      CHECK(t.nbytes == data[k].size());
      CHECK((data[k].empty() || std::memcmp(f.tensor_data(t), data[k].data(), data[k].size()) == 0));
      offset += (t.nbytes + f.alignment() - 1) / f.alignment() * f.alignment();
    }
    CHECK(f.data_offset() + offset == std::filesystem::file_size(path));  // the last tensor is padded too
  }
}

TEST_CASE("gguf_writer: the same bytes as the gguf-py layout of test::gguf_builder", "[io][gguf_writer]") {
  test::temp_dir dir("gguf_writer_layout");
  test::gguf_builder g;
  g.kv_str("general.architecture", "llama");
  g.kv_u32("llama.block_count", 2);
  g.kv_f32("llama.rope.freq_base", 10000.f);
  g.kv_bool("k.bool", true);
  g.kv_str_array("tokenizer.ggml.tokens", {"<s>", "a", ""});
  g.kv_array<std::int32_t>("tokenizer.ggml.token_type", gguf_type::i32, {3, 1, 1});
  const auto q = random_bytes(3 * 144, 7);
  const auto e = random_bytes(5 * 4 * 4, 8);
  g.tensor("blk.0.attn_q.weight", ggml_type::q4_k, {256, 3}, q);
  g.tensor("token_embd.weight", ggml_type::f32, {4, 5}, e);

  io::gguf_writer w(dir / "w.gguf");
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  w.set_f32("llama.rope.freq_base", 10000.f);
  w.set_bool("k.bool", true);
  w.set_array("tokenizer.ggml.tokens", {"<s>", "a", ""});
  w.set_array("tokenizer.ggml.token_type", gguf_type::i32, std::vector<std::int64_t>{3, 1, 1});
  w.add_tensor("blk.0.attn_q.weight", ggml_type::q4_k, {256, 3});
  w.add_tensor("token_embd.weight", ggml_type::f32, {4, 5});
  // in pieces: 100 + 0 + the rest bytes of the first tensor, then the second whole
  w.write_tensor_data("blk.0.attn_q.weight", std::span(q).first(100));
  w.write_tensor_data("blk.0.attn_q.weight", std::span(q).subspan(100, 0));
  w.write_tensor_data("blk.0.attn_q.weight", std::span(q).subspan(100));
  w.write_tensor_data("token_embd.weight", e);
  w.finish();
  CHECK(test::read_file(dir / "w.gguf") == g.bytes());
}

TEST_CASE("gguf_writer: stories260K copied through the writer is the same file", "[io][gguf_writer]") {
  const io::gguf_file in(test::bundled_model);
  test::temp_dir dir("gguf_writer_copy");
  io::gguf_writer w(dir / "copy.gguf");
  for (const auto& kv : in.metadata()) w.set(kv.first, kv.second);
  for (const auto& t : in.tensors()) w.add_tensor(t.name, t.type, t.ne);
  for (const auto& t : in.tensors()) w.write_tensor_data(t.name, std::span(in.tensor_data(t), t.nbytes));
  w.finish();
  CHECK(test::read_file(dir / "copy.gguf") == test::read_file(test::bundled_model));
}

TEST_CASE("gguf_writer: quantized blocks read back and dequantize to the same values", "[io][gguf_writer]") {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(4 * 512);  // (4, 512)
  for (float& v : x) v = normal(rng);
  std::vector<block_q4_K> q4(x.size() / 256);
  std::vector<block_q8_0> q8(x.size() / 32);
  quantize(x.data(), q4.data(), static_cast<index_t>(q4.size()));
  quantize(x.data(), q8.data(), static_cast<index_t>(q8.size()));

  test::temp_dir dir("gguf_writer_quants");
  io::gguf_writer w(dir / "q.gguf");
  w.add_tensor("q4", ggml_type::q4_k, {512, 4});
  w.add_tensor("q8", ggml_type::q8_0, {512, 4});
  w.write_tensor_data("q4", std::as_bytes(std::span(q4)));
  w.write_tensor_data("q8", std::as_bytes(std::span(q8)));
  w.finish();

  const io::gguf_file f(dir / "q.gguf");
  std::vector<float> expected(x.size()), got(x.size());
  dequantize(q4.data(), expected.data(), static_cast<index_t>(q4.size()));
  io::dequantize(ggml_type::q4_k, f.tensor_data(*f.find_tensor("q4")), got.data(), static_cast<std::int64_t>(got.size()));
  CHECK(got == expected);
  dequantize(q8.data(), expected.data(), static_cast<index_t>(q8.size()));
  io::dequantize(ggml_type::q8_0, f.tensor_data(*f.find_tensor("q8")), got.data(), static_cast<std::int64_t>(got.size()));
  CHECK(got == expected);
}

TEST_CASE("gguf_writer: a file without tensor data, and a key set twice keeps its place", "[io][gguf_writer]") {
  test::temp_dir dir("gguf_writer_meta");
  io::gguf_writer w(dir / "m.gguf");
  w.set_u32("a", 1);
  w.set_string("b", "x");
  w.set_u32("a", 2);
  CHECK(w.remove("b"));
  CHECK_FALSE(w.remove("b"));
  w.set_string("c", "y");
  w.add_tensor("empty", ggml_type::q4_0, {32, 0});  // no bytes: its data need not be given
  w.finish();
  const io::gguf_file f(dir / "m.gguf");
  REQUIRE(f.metadata().size() == 2);
  CHECK(f.metadata()[0].first == "a");
  CHECK(f.get_int("a") == 2);
  CHECK(f.metadata()[1].first == "c");
  REQUIRE(f.tensors().size() == 1);
  CHECK(f.tensors()[0].nbytes == 0);
}

TEST_CASE("gguf_writer: what the reader would refuse is refused when given", "[io][gguf_writer]") {
  test::temp_dir dir("gguf_writer_bad");
  const auto path = dir / "bad.gguf";
  io::gguf_writer w(path);

  // tensors
  expect_error<shape_error>([&] { w.add_tensor("w", ggml_type::q4_k, {64, 2}); }, "row length 64 is not a multiple of the Q4_K block size 256");
  expect_error<shape_error>([&] { w.add_tensor("w", ggml_type::q8_0, {33}); }, "block size 32");
  expect_error<format_error>([&] { w.add_tensor("w", static_cast<ggml_type>(4), {32}); }, "unknown ggml type 4");
  expect_error<format_error>([&] { w.add_tensor("w", ggml_type::f32, {}); }, "rank 0");
  expect_error<format_error>([&] { w.add_tensor("w", ggml_type::f32, {1, 1, 1, 1, 1}); }, "rank 5");
  expect_error<format_error>([&] { w.add_tensor("w", ggml_type::f32, {2, -1}); }, "negative dimension -1");
  expect_error<format_error>([&] { w.add_tensor("w", ggml_type::f32, {1ll << 40, 1ll << 40}); }, "overflows");
  expect_error<format_error>([&] { w.add_tensor("", ggml_type::f32, {1}); }, "empty");
  expect_error<format_error>([&] { w.add_tensor(std::string(64, 'n'), ggml_type::f32, {1}); }, "longer than 63 bytes");
  w.add_tensor(std::string(63, 'n'), ggml_type::f32, {1});
  w.add_tensor("w", ggml_type::f32, {2});
  expect_error<format_error>([&] { w.add_tensor("w", ggml_type::f16, {2}); }, "'w' is added twice");

  // metadata
  expect_error<range_error>([&] { w.set("k", int_array(gguf_type::u8, {256})); }, "256 does not fit in u8");
  expect_error<range_error>([&] { w.set("k", int_array(gguf_type::boolean, {2})); }, "does not fit in bool");
  io::gguf_value big;
  big.type = gguf_type::i32;
  big.i = 1ll << 31;
  expect_error<range_error>([&] { w.set("k", big); }, "2147483648 does not fit in i32");
  big.type = static_cast<gguf_type>(13);
  expect_error<format_error>([&] { w.set("k", big); }, "unknown value type 13");
  expect_error<format_error>([&] { w.set("", big); }, "key is empty");
  expect_error<format_error>([&] { w.set("k", array_of({int_array(gguf_type::u8, {}), io::gguf_value{}})); }, "has type u8");
  io::gguf_value deep = int_array(gguf_type::u8, {1});
  for (int d = 1; d < io::gguf_writer::max_depth; ++d) deep = array_of({deep});
  w.set("k.deep8", deep);  // 8 levels: read back below
  expect_error<format_error>([&] { w.set("k", array_of({deep})); }, "nested deeper than 8");
  expect_error<range_error>([&] { w.set_u32("general.alignment", 48); }, "48 is not a power of two");
  expect_error<format_error>([&] { w.set_u64("general.alignment", 64); }, "must be u32");
  CHECK(w.alignment() == 32);
  CHECK(w.metadata().size() == 1);

  // data: in order, never more than a tensor holds
  const std::vector<std::byte> four(4), twelve(12);
  expect_error<format_error>([&] { w.write_tensor_data("w", four); }, "is next");
  w.write_tensor_data(std::string(63, 'n'), four);
  expect_error<format_error>([&] { w.write_tensor_data("w", twelve); }, "holds 8 bytes");
  // the header is out: no more metadata or tensors
  expect_error<error>([&] { w.set_u32("late", 1); }, "after tensor data was written");
  expect_error<error>([&] { w.add_tensor("late", ggml_type::f32, {1}); }, "after tensor data was written");
  // an incomplete tensor at finish: refused, and nothing at the path
  w.write_tensor_data("w", four);
  expect_error<format_error>([&] { w.finish(); }, "tensor 'w' got 4 of its 8 bytes");
  CHECK_FALSE(std::filesystem::exists(path));
  w.write_tensor_data("w", four);
  expect_error<format_error>([&] { w.write_tensor_data("w", four); }, "no more tensor data");
  w.finish();
  expect_error<error>([&] { w.finish(); }, "finished");

  const io::gguf_file f(path);
  CHECK(f.tensors().size() == 2);
  CHECK(f.find("k.deep8")->type_name() == "array<array<array<array<array<array<array<array<u8>>>>>>>>");
}

TEST_CASE("gguf_writer: an unfinished writer leaves nothing, unwritable paths are io_errors naming them", "[io][gguf_writer]") {
  test::temp_dir dir("gguf_writer_io");
  const auto path = dir / "out.gguf";
  {
    io::gguf_writer w(path);
    w.add_tensor("w", ggml_type::f32, {4});
    w.write_tensor_data("w", std::vector<std::byte>(8));
    CHECK(std::filesystem::exists(path.string() + ".tmp"));
  }  // destroyed unfinished (as by an exception)
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK_FALSE(std::filesystem::exists(path.string() + ".tmp"));

  const auto missing = dir / "no_such_folder" / "out.gguf";
  expect_error<io_error>([&] { io::gguf_writer w(missing); }, missing.string() + ": cannot create the file: No such file or directory");

  std::filesystem::create_directory(dir / "a_folder");
  io::gguf_writer w(dir / "a_folder");  // the path is a folder: the rename at finish fails
  expect_error<io_error>([&] { w.finish(); }, (dir / "a_folder").string() + ": cannot rename");
  CHECK(std::filesystem::is_directory(dir / "a_folder"));
}
