// core/blocks.hpp: layouts, dequantize (bit-exact against each element's layout formula in
// double) and the reference quantizers' round trip error, with the bounds docs/quant.md lists.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <string>
#include <cmath>
#include <vector>

#include <tessera/core/blocks.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/io/gguf.hpp>
#include <tessera/io/gguf_quants.hpp>
#include <tessera/kernels/quant_dequant.hpp>

#include "quant/quant_test_util.hpp"

using namespace tessera;
using namespace tessera::test;

static_assert(block_elements_v<float> == 1 && block_elements_v<const f16> == 1 && block_elements_v<bf16> == 1);
static_assert(block_elements_v<block_q4_K> == 256 && block_elements_v<const block_q8_0> == 32);
static_assert(quant_block<block_q6_K> && !quant_block<float>);

TEMPLATE_TEST_CASE("dequantize: every element equals the layout's formula", "[quant][blocks]", TESSERA_WEIGHT_BLOCKS) {
  using B = TestType;
  rng(17);
  constexpr index_t nb = 5;
  const auto blocks = random_blocks<B>(nb);
  std::vector<float> got(static_cast<std::size_t>(nb * B::block_size), -1234.f);
  dequantize(blocks.data(), got.data(), nb);
  const auto want = elements(blocks.data(), nb);
  // every product of the formula is exact in float: one rounding of the exact value
  for (std::size_t j = 0; j < got.size(); ++j) REQUIRE(got[j] == static_cast<float>(want[j]));
}

TEMPLATE_TEST_CASE("dequantize: io::dequantize takes the same blocks (one copy of the formulas)", "[quant][blocks]",
                   TESSERA_WEIGHT_BLOCKS) {
  using B = TestType;
  rng(18);
  constexpr index_t nb = 3;
  const auto blocks = random_blocks<B>(nb);
  const io::ggml_type t = std::is_same_v<B, block_q8_0>   ? io::ggml_type::q8_0
                          : std::is_same_v<B, block_q4_0> ? io::ggml_type::q4_0
                          : std::is_same_v<B, block_q4_1> ? io::ggml_type::q4_1
                          : std::is_same_v<B, block_q5_0> ? io::ggml_type::q5_0
                          : std::is_same_v<B, block_q5_1> ? io::ggml_type::q5_1
                          : std::is_same_v<B, block_q4_K> ? io::ggml_type::q4_k
                          : std::is_same_v<B, block_q5_K> ? io::ggml_type::q5_k
                          : std::is_same_v<B, block_q6_K> ? io::ggml_type::q6_k
                          : std::is_same_v<B, block_iq4_nl> ? io::ggml_type::iq4_nl
                                                            : io::ggml_type::iq4_xs;
  CHECK(io::ggml_traits(t).bytes == index_t(sizeof(B)));
  CHECK(io::ggml_traits(t).block == B::block_size);
  std::vector<float> a(static_cast<std::size_t>(nb * B::block_size)), b(a.size());
  dequantize(blocks.data(), a.data(), nb);
  // an odd address: io copies block by block
  std::vector<std::byte> shifted(sizeof(B) * nb + 1);
  std::memcpy(shifted.data() + 1, blocks.data(), sizeof(B) * nb);
  io::dequantize(t, shifted.data() + 1, b.data(), nb * B::block_size);
  CHECK(a == b);
}

namespace {

/// Round trip of n_blocks blocks of data x: returns the per-element errors |x - dequant(quant(x))|.
template <class B>
std::vector<double> round_trip_errors(const std::vector<float>& x, std::vector<B>& blocks) {
  const index_t nb = static_cast<index_t>(x.size()) / B::block_size;
  blocks.resize(static_cast<std::size_t>(nb));
  quantize(x.data(), blocks.data(), nb);
  std::vector<float> y(x.size());
  dequantize(blocks.data(), y.data(), nb);
  std::vector<double> e(x.size());
  for (std::size_t j = 0; j < x.size(); ++j) e[j] = std::abs(double(x[j]) - double(y[j]));
  return e;
}

/// max |x| of the block holding element j.
template <index_t QK>
double block_amax(const std::vector<float>& x, std::size_t j) {
  const std::size_t b0 = j / QK * QK;
  double m = 0;
  for (std::size_t i = b0; i < b0 + QK; ++i) m = std::max(m, std::abs(double(x[i])));
  return m;
}

double nmse_of(const std::vector<double>& err, const std::vector<float>& x) {
  double num = 0, den = 0;
  for (std::size_t j = 0; j < x.size(); ++j) num += err[j] * err[j], den += double(x[j]) * x[j];
  return num / den;
}

/// Test data: normal rows, a row with an outlier, a constant block, a zero block, tiny values.
std::vector<float> round_trip_data(index_t qk) {
  auto x = normal_vector(64 * 256);
  x[1000] = 25.f;                                                         // an outlier
  std::fill(x.begin() + 4 * 256, x.begin() + 4 * 256 + qk, 0.75f);        // a constant block
  std::fill(x.begin() + 8 * 256, x.begin() + 8 * 256 + qk, 0.f);          // a zero block
  for (index_t j = 12 * 256; j < 13 * 256; ++j) x[std::size_t(j)] *= 1e-4f;  // small scales
  return x;
}

}  // namespace

// Written bounds (docs/quant.md, "Round trip"): amax is max |x| of the element's block.
TEST_CASE("quantize round trip: q8_0 within (0.5 + 2^-4) amax / 127 per element", "[quant][blocks]") {
  rng(21);
  const auto x = round_trip_data(32);
  std::vector<block_q8_0> b;
  const auto e = round_trip_errors(x, b);
  // |x - q d| <= d / 2, plus d's f16 rounding times |q| <= 127: 127 · 2^-11 d, or 127 · 2^-25 where
  // d is an f16 subnormal (below 6.1e-5)
  for (std::size_t j = 0; j < x.size(); ++j) {
    const double amax = block_amax<32>(x, j);
    REQUIRE(e[j] <= amax / 254 + amax / 2048 + 127.0 / 33554432);
  }
  CHECK(nmse_of(e, x) < 4e-5);  // measured 3.3e-5
}

TEST_CASE("quantize round trip: q4_0 / q5_0 within amax / 2^(bits-1) per element", "[quant][blocks]") {
  rng(22);
  const auto x = round_trip_data(32);
  std::vector<block_q4_0> b4;
  std::vector<block_q5_0> b5;
  const auto e4 = round_trip_errors(x, b4), e5 = round_trip_errors(x, b5);
  // d = amax / 8 (16): error <= d / 2 inside the range, up to d where +amax clamps to 7 (15), plus
  // d's f16 rounding times |q| <= 8 (16): 2^-11 relative, or 2^-25 absolute for a subnormal d
  for (std::size_t j = 0; j < x.size(); ++j) {
    REQUIRE(e4[j] <= 1.005 * block_amax<32>(x, j) / 8 + 8.0 / 33554432);
    REQUIRE(e5[j] <= 1.01 * block_amax<32>(x, j) / 16 + 16.0 / 33554432);
  }
  CHECK(nmse_of(e4, x) < 1e-2);    // measured 8.2e-3
  CHECK(nmse_of(e5, x) < 2.6e-3);  // 2.1e-3
}

TEST_CASE("quantize round trip: q4_1 / q5_1 within (max - min) / 2 levels per element", "[quant][blocks]") {
  rng(23);
  const auto x = round_trip_data(32);
  std::vector<block_q4_1> b4;
  std::vector<block_q5_1> b5;
  const auto e4 = round_trip_errors(x, b4), e5 = round_trip_errors(x, b5);
  for (std::size_t j = 0; j < x.size(); ++j) {
    const std::size_t b0 = j / 32 * 32;
    const auto [lo, hi] = std::minmax_element(x.begin() + long(b0), x.begin() + long(b0) + 32);
    const double range = double(*hi) - double(*lo);
    // d = range / 15 (31): d / 2, plus the f16 rounding of d (times q <= 15) and of m
    const double f16_err = (range + std::abs(double(*lo))) / 1024 + 32.0 / 33554432;
    REQUIRE(e4[j] <= range / 30 + f16_err + 1e-30);
    REQUIRE(e5[j] <= range / 62 + f16_err + 1e-30);
  }
  CHECK(nmse_of(e4, x) < 8e-3);
  CHECK(nmse_of(e5, x) < 2e-3);
}

TEST_CASE("quantize round trip: K-quants, error against the block's largest magnitude", "[quant][blocks]") {
  rng(24);
  const auto x = round_trip_data(256);
  std::vector<block_q4_K> b4;
  std::vector<block_q5_K> b5;
  std::vector<block_q6_K> b6;
  const auto e4 = round_trip_errors(x, b4), e5 = round_trip_errors(x, b5), e6 = round_trip_errors(x, b6);
  // Sub-block scales are fitted (not max-based) and then rounded to 6 / 8 bits, so a few elements
  // clamp; the bound is per super-block: |err| <= amax · c with c measured x 1.5 (docs/quant.md)
  double w4 = 0, w5 = 0, w6 = 0;
  for (std::size_t j = 0; j < x.size(); ++j) {
    if (j / 256 == 12) continue;  // the block of tiny values: below
    const double a = block_amax<256>(x, j) + 1e-30;
    w4 = std::max(w4, e4[j] / a), w5 = std::max(w5, e5[j] / a), w6 = std::max(w6, e6[j] / a);
  }
  double t4 = 0, t5 = 0, t6 = 0;
  for (std::size_t j = 12 * 256; j < 13 * 256; ++j) {
    const double a = block_amax<256>(x, j);
    t4 = std::max(t4, e4[j] / a), t5 = std::max(t5, e5[j] / a), t6 = std::max(t6, e6[j] / a);
  }
  // values ~1e-4: the super-block scale d falls below f16's normal range (6.1e-5; q6_K's d is
  // max / 32 / 128 ~ 1e-7) and keeps only a few bits, as in ggml's format
  CHECK(t4 < 0.08);
  CHECK(t5 < 0.045);
  CHECK(t6 < 0.35);
  CHECK(w4 < 0.12);  // measured 0.082
  CHECK(w5 < 0.06);  // 0.041
  CHECK(w6 < 0.025);  // 0.016
  CHECK(nmse_of(e4, x) < 6.5e-3);  // 5.3e-3
  CHECK(nmse_of(e5, x) < 1.7e-3);  // 1.35e-3
  CHECK(nmse_of(e6, x) < 4.5e-4);  // 3.3e-4
  // the zero block stays zero
  for (std::size_t j = 8 * 256; j < 9 * 256; ++j) REQUIRE((e4[j] == 0 && e5[j] == 0 && e6[j] == 0));
  UNSCOPED_INFO("worst |err| / amax: q4_K " << w4 << " q5_K " << w5 << " q6_K " << w6 << "; nmse " << nmse_of(e4, x)
                                            << " " << nmse_of(e5, x) << " " << nmse_of(e6, x));
}

TEST_CASE("quantize: activation blocks q8_sum and q8_K within d / 2 per element, sums exact", "[quant][blocks]") {
  rng(25);
  auto x = normal_vector(8 * 256, 0.3f);
  std::fill(x.begin() + 256, x.begin() + 512, 0.f);
  std::vector<block_q8_sum> a(8 * 8);
  std::vector<block_q8_K> k(8);
  quantize(x.data(), a.data(), 64);
  quantize(x.data(), k.data(), 8);
  std::vector<float> ya(x.size()), yk(x.size());
  dequantize(a.data(), ya.data(), 64);
  dequantize(k.data(), yk.data(), 8);
  for (std::size_t j = 0; j < x.size(); ++j) {
    REQUIRE(std::abs(double(x[j]) - ya[j]) <= 0.5001 * std::abs(double(a[j / 32].d)));
    REQUIRE(std::abs(double(x[j]) - yk[j]) <= 0.5001 * std::abs(double(k[j / 256].d)));
  }
  for (const auto& b : a) {
    int s = 0;
    for (int j = 0; j < 32; ++j) {
      s += b.qs[j];
      REQUIRE(b.qs[j] >= -127);
    }
    REQUIRE(s == b.sum);
  }
  for (const auto& b : k)
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) {
        s += b.qs[16 * g + j];
        REQUIRE(b.qs[16 * g + j] >= -127);
      }
      REQUIRE(s == b.bsums[g]);
    }
}

TEMPLATE_TEST_CASE("dequantize_row: the default arch's SIMD body = the scalar formulas, bit for bit", "[quant][blocks]",
                   TESSERA_WEIGHT_BLOCKS) {
  using B = TestType;
  rng(19);
  for (index_t nb : {1, 7}) {
    const auto blocks = random_blocks<B>(nb);
    std::vector<float> s(static_cast<std::size_t>(nb * B::block_size)), v(s.size(), -1.f);
    kernels::dequantize_row(blocks.data(), s.data(), nb, simd::scalar{});
    kernels::dequantize_row(blocks.data(), v.data(), nb, simd::default_arch{});
    CHECK(std::memcmp(s.data(), v.data(), s.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("quantize reproduces gguf-py's q8_0 / q4_0 / q5_0 blocks from their dequantized values", "[quant][blocks]") {
  // tests/data/gguf/quants_gguf_py.gguf (tools/fixtures/make_gguf_quants.py) holds gguf-py's
  // quantization q.<TYPE> of random normals and ref.<TYPE>, its dequantization. Each of these
  // blocks holds the quant its scale came from (±127 for q8_0, 0 for q4_0 / q5_0, i.e. -8 d and
  // -16 d), so requantizing the dequantized values must give the same scale and quants back: a
  // check of the quantizers' conventions (which sign, which rounding) against ggml's.
  const io::gguf_file f(std::filesystem::path(TESSERA_TEST_DATA_DIR) / "gguf" / "quants_gguf_py.gguf");
  auto check = [&f](const char* name, auto block) {
    using B = decltype(block);
    const io::gguf_tensor_info* q = f.find_tensor(std::string("q.") + name);
    const io::gguf_tensor_info* r = f.find_tensor(std::string("ref.") + name);
    REQUIRE(q != nullptr);
    REQUIRE(r != nullptr);
    const index_t nb = q->numel / B::block_size;
    std::vector<float> x(static_cast<std::size_t>(r->numel));
    std::memcpy(x.data(), f.tensor_data(*r), x.size() * sizeof(float));
    std::vector<B> mine(static_cast<std::size_t>(nb));
    quantize(x.data(), mine.data(), nb);
    INFO(name);
    CHECK(std::memcmp(mine.data(), f.tensor_data(*q), static_cast<std::size_t>(nb) * sizeof(B)) == 0);
  };
  check("Q8_0", block_q8_0{});
  check("Q4_0", block_q4_0{});
  check("Q5_0", block_q5_0{});
}
