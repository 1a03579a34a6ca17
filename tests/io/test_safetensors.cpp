// safetensors: writer/reader round trip for every dtype, the spec's checks, malformed input.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>

#include <tessera/io/safetensors.hpp>

#include "common/test_util.hpp"
#include "io_test_util.hpp"

using namespace tessera;

namespace {

std::shared_ptr<const io::mapped_file> in_memory(std::vector<std::byte> b, const std::string& name = "mem.safetensors") {
  return std::make_shared<const io::mapped_file>(io::mapped_file::from_bytes(std::move(b), name));
}

/// A file from a raw header string and `data_bytes` bytes of data.
std::vector<std::byte> raw_file(const std::string& header, std::size_t data_bytes, std::uint64_t declared = UINT64_MAX) {
  std::vector<std::byte> b(8 + header.size() + data_bytes, std::byte{7});
  const std::uint64_t n = declared == UINT64_MAX ? header.size() : declared;
  std::memcpy(b.data(), &n, 8);
  std::memcpy(b.data() + 8, header.data(), header.size());
  return b;
}

template <class F>
void expect_format_error(F&& f, const std::string& needle, const std::string& file = "mem.safetensors") {
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

io::safetensors_writer sample_writer() {
  io::safetensors_writer w;
  auto a = test::random_tensor<2>({3, 5});
  w.add("a", a);
  tensor<f16, 1> h({7});
  for (index_t i = 0; i < 7; ++i) h(i) = f16(0.5f * static_cast<float>(i) - 1.f);
  w.add("h", h);
  tensor<std::int64_t, 1> ids({3});
  ids(0) = 5;
  ids(1) = -9;
  ids(2) = 1ll << 40;
  w.add("input_ids", ids);
  w.set_metadata("format", "pt");
  return w;
}

}  // namespace

TEST_CASE("safetensors: round trip of every dtype and __metadata__", "[io][safetensors]") {
  test::temp_dir dir("st_roundtrip");
  io::safetensors_writer w;
  auto f32 = test::random_tensor<3>({2, 3, 5});
  w.add("f32", f32);
  tensor<double, 1> f64({3}, 0.1);
  w.add("f64", f64);
  tensor<f16, 2> h({2, 3});
  tensor<bf16, 2> g({2, 3});
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 3; ++j) {
      h(i, j) = f16(f32(i, j, 0));
      g(i, j) = bf16(f32(i, j, 1));
    }
  w.add("f16", h);
  w.add("bf16", g);
  tensor<std::int64_t, 1> i64({2}, -(1ll << 40));
  tensor<std::int32_t, 1> i32({3}, -70000);
  tensor<std::int16_t, 1> i16({5}, -300);
  tensor<std::int8_t, 1> i8({3}, -5);
  tensor<std::uint8_t, 1> u8({9}, 200);
  tensor<bool, 2> b({1, 3}, true);
  w.add("i64", i64);
  w.add("i32", i32);
  w.add("i16", i16);
  w.add("i8", i8);
  w.add("u8", u8);
  w.add("bool", b);
  tensor<float, 2> empty({0, 4});
  w.add("empty", empty);
  const std::byte f8[4] = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
  w.add_raw("f8", "F8_E4M3", {2, 2}, f8);
  w.add("strided", f32.cview()[1].transpose(0, 1));  // (5, 3), gathered densely
  w.set_metadata("format", "pt");
  w.set_metadata("note", "tessera test");
  w.write(dir / "x.safetensors");

  io::safetensors_file f(dir / "x.safetensors");
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.metadata().at("note") == "tessera test");
  CHECK(f.tensors().size() == 13);
  CHECK(f.data_offset() % 8 == 0);
  auto check_bytes = [&](const char* name, const void* want, std::size_t n, dtype t, std::vector<index_t> ext) {
    INFO(name);
    const auto* e = f.find(name);
    REQUIRE(e);
    CHECK(e->type == t);
    CHECK(e->extents == ext);
    REQUIRE(e->nbytes() == n);
    CHECK(std::memcmp(f.tensor_data(*e), want, n) == 0);
  };
  check_bytes("f32", f32.data(), 30 * 4, dtype::f32, {2, 3, 5});
  check_bytes("f64", f64.data(), 3 * 8, dtype::f64, {3});
  check_bytes("f16", h.data(), 6 * 2, dtype::f16, {2, 3});
  check_bytes("bf16", g.data(), 6 * 2, dtype::bf16, {2, 3});
  check_bytes("i64", i64.data(), 16, dtype::i64, {2});
  check_bytes("i32", i32.data(), 12, dtype::i32, {3});
  check_bytes("i16", i16.data(), 10, dtype::i16, {5});
  check_bytes("i8", i8.data(), 3, dtype::i8, {3});
  check_bytes("u8", u8.data(), 9, dtype::u8, {9});
  check_bytes("bool", b.data(), 3, dtype::boolean, {1, 3});
  CHECK(f.find("empty")->nbytes() == 0);
  CHECK(f.find("empty")->extents == std::vector<index_t>{0, 4});
  const auto* e8 = f.find("f8");
  REQUIRE(e8);
  CHECK(e8->dtype_name == "F8_E4M3");
  CHECK(!e8->type.has_value());
  const auto* s = f.find("strided");
  REQUIRE(s);
  CHECK(s->extents == std::vector<index_t>{5, 3});
  float x;
  std::memcpy(&x, f.tensor_data(*s) + 4 * (2 * 3 + 1), 4);  // strided(2, 1) = f32(1, 1, 2)
  CHECK(x == f32(1, 1, 2));
  CHECK(f.find("absent") == nullptr);
  // Same through the plain-read path.
  io::safetensors_file g2(io::map_file(dir / "x.safetensors", /*allow_mmap=*/false));
  CHECK(g2.mapping()->how() == io::mapped_file::mode::read);
  CHECK(std::memcmp(g2.tensor_data(*g2.find("f32")), f32.data(), 120) == 0);
}

TEST_CASE("safetensors: every byte-prefix of a valid file is a format_error naming the file", "[io][safetensors]") {
  const auto full = sample_writer().bytes();
  REQUIRE_NOTHROW(io::safetensors_file(in_memory(full)));
  for (std::size_t n = 0; n < full.size(); ++n) {
    INFO("prefix length " << n << " of " << full.size());
    std::vector<std::byte> prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    try {
      io::safetensors_file f(in_memory(std::move(prefix), "prefix.safetensors"));
      FAIL("prefix loaded");
    } catch (const format_error& e) {
      CHECK(std::string(e.what()).find("prefix.safetensors") != std::string::npos);
    }
  }
  test::temp_dir dir("st_prefix");
  for (std::size_t n : {std::size_t{0}, std::size_t{7}, std::size_t{8}, full.size() / 2, full.size() - 1}) {
    test::write_file(dir / "p.safetensors", full, n);
    CHECK_THROWS_AS(io::safetensors_file(dir / "p.safetensors"), format_error);
  }
  CHECK_THROWS_AS(io::safetensors_file(dir / "absent.safetensors"), io_error);
}

TEST_CASE("safetensors: hand-made malformed files", "[io][safetensors]") {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I16","shape":[3],"data_offsets":[8,14]}})";
  CHECK_NOTHROW(io::safetensors_file(in_memory(raw_file(ok, 14))));
  expect_format_error([&] { io::safetensors_file(in_memory(raw_file(ok, 14, 1ull << 40))); }, "header length 1099511627776 exceeds the file");
  expect_format_error([&] { io::safetensors_file(in_memory(raw_file(ok, 14, ok.size() + 15))); }, "exceeds the file");
  expect_format_error([&] { io::safetensors_file(in_memory(raw_file(ok, 13))); }, "past the end of the data block");
  expect_format_error([&] { io::safetensors_file(in_memory(raw_file(ok, 20))); }, "trailing bytes");
  expect_format_error([&] { io::safetensors_file(in_memory(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8))); }, "not valid JSON");
  expect_format_error([&] { io::safetensors_file(in_memory(raw_file(R"(  {})", 0))); }, "does not start with '{'");
  expect_format_error([&] { io::safetensors_file(in_memory(raw_file(R"({"a":[1]})", 0))); }, "tensor 'a': entry is not an object");
  expect_format_error(
      [&] { io::safetensors_file(in_memory(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12))); },
      "overlaps");
  expect_format_error(
      [&] { io::safetensors_file(in_memory(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12))); },
      "hole in the data block before tensor 'a'");
  expect_format_error(
      [&] { io::safetensors_file(in_memory(raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8))); },
      "tensor 'a': 8 bytes in data_offsets but shape [3] of F32 needs 12");
  expect_format_error(
      [&] { io::safetensors_file(in_memory(raw_file(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8))); },
      "unknown dtype \"Q4\"");
  expect_format_error(
      [&] { io::safetensors_file(in_memory(raw_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8))); },
      "non-negative integers");
  expect_format_error(
      [&] { io::safetensors_file(in_memory(raw_file(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8))); },
      "non-negative integers");
  expect_format_error(
      [&] { io::safetensors_file(in_memory(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8))); },
      "end 0 < begin 8");
  expect_format_error(
      [&] { io::safetensors_file(in_memory(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8))); },
      "[begin, end]");
  expect_format_error(
      [&] { io::safetensors_file(in_memory(raw_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8))); },
      "\"dtype\"");
  expect_format_error(
      [&] { io::safetensors_file(in_memory(raw_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})", 8))); },
      "overflows");
  expect_format_error([&] { io::safetensors_file(in_memory(raw_file(R"({"__metadata__":{"k":1}})", 0))); }, "not a string");
  expect_format_error([&] { io::safetensors_file(in_memory(raw_file(R"({"__metadata__":[]})", 0))); }, "__metadata__ is not an object");
  expect_format_error([&] { io::safetensors_file(in_memory(raw_file("{}", 0, 0))); }, "too short");
  // An empty but valid file.
  io::safetensors_file empty(in_memory(raw_file("{}", 0)));
  CHECK(empty.tensors().empty());
}

TEST_CASE("safetensors: writer refuses inconsistent input", "[io][safetensors]") {
  io::safetensors_writer w;
  const std::byte four[4] = {};
  CHECK_THROWS_AS(w.add("x", dtype::f32, {2}, four), shape_error);
  w.add("x", dtype::f32, {1}, four);
  CHECK_THROWS_AS(w.add("x", dtype::f32, {1}, four), format_error);
}
