// Dequantization against llama.cpp's reference Python package: tests/data/gguf/quants_gguf_py.gguf
// was written by gguf-py's GGUFWriter (tools/fixtures/make_gguf_quants.py) and holds, per ggml
// type, the quantized tensor q.<TYPE> and ref.<TYPE> = gguf.quants.dequantize(q.<TYPE>) as F32.
// tessera's dequantization of q.<TYPE> must be bit-identical to ref.<TYPE>.
#include <catch2/catch.hpp>

#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <tessera/io/gguf.hpp>
#include <tessera/io/gguf_quants.hpp>
#include <tessera/io/weights.hpp>

#include "common/test_util.hpp"
#include "io_test_util.hpp"

using namespace tessera;
using io::ggml_type;

namespace {

const std::filesystem::path gguf_py_file =
    std::filesystem::path(TESSERA_TEST_DATA_DIR) / "gguf" / "quants_gguf_py.gguf";

struct gguf_py_case {
  const char* name;
  ggml_type type;
};

const gguf_py_case gguf_py_cases[] = {
    {"F32", ggml_type::f32},   {"F16", ggml_type::f16},   {"BF16", ggml_type::bf16}, {"Q8_0", ggml_type::q8_0},
    {"Q4_0", ggml_type::q4_0}, {"Q4_1", ggml_type::q4_1}, {"Q5_0", ggml_type::q5_0}, {"Q5_1", ggml_type::q5_1},
    {"Q4_K", ggml_type::q4_k}, {"Q5_K", ggml_type::q5_k}, {"Q6_K", ggml_type::q6_k}, {"IQ4_NL", ggml_type::iq4_nl},
    {"IQ4_XS", ggml_type::iq4_xs},
};

/// "" when a and b hold the same bits, else the first differing index and both values.
std::string first_difference(const float* a, const float* b, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const auto ba = std::bit_cast<std::uint32_t>(a[i]), bb = std::bit_cast<std::uint32_t>(b[i]);
    if (ba != bb) {
      std::ostringstream s;
      s.precision(9);
      s << "element " << i << ": tessera " << a[i] << " (0x" << std::hex << ba << "), gguf-py " << b[i] << " (0x" << bb
        << ")";
      return s.str();
    }
  }
  return "";
}

}  // namespace

TEST_CASE("GGUF dequantization is bit-exact against gguf-py on a file gguf-py wrote", "[io][gguf]") {
  REQUIRE(std::filesystem::exists(gguf_py_file));
  const io::gguf_file f(gguf_py_file);
  const auto m = io::weight_map::open(gguf_py_file);
  for (const auto& c : gguf_py_cases) {
    const std::string qn = std::string("q.") + c.name, rn = std::string("ref.") + c.name;
    INFO("type " << c.name);
    const io::gguf_tensor_info* q = f.find_tensor(qn);
    const io::gguf_tensor_info* r = f.find_tensor(rn);
    REQUIRE(q != nullptr);
    REQUIRE(r != nullptr);
    REQUIRE(q->type == c.type);
    REQUIRE(r->type == ggml_type::f32);
    REQUIRE(q->ne == r->ne);
    REQUIRE(q->extents == r->extents);
    REQUIRE(q->extents.size() == 2);
    REQUIRE(q->extents[0] == 3);
    REQUIRE(q->numel == r->numel);

    // The reference: the F32 bytes gguf-py wrote.
    std::vector<float> ref(static_cast<std::size_t>(r->numel));
    std::memcpy(ref.data(), f.tensor_data(*r), ref.size() * sizeof(float));

    // io::dequantize on the tensor's bytes.
    std::vector<float> got(static_cast<std::size_t>(q->numel), -12345.f);
    io::dequantize(q->type, f.tensor_data(*q), got.data(), q->numel);
    CHECK(first_difference(got.data(), ref.data(), q->numel) == "");

    // weight_map::f32 (the path models load through).
    const auto v = m.f32<2>(qn);
    REQUIRE(v.extent(0) == q->extents[0]);
    REQUIRE(v.extent(1) == q->extents[1]);
    const auto t = tensor<float, 2>::copy_of(v);
    CHECK(first_difference(t.data(), ref.data(), q->numel) == "");
  }
}
