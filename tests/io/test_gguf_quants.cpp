// Dequantization: blocks packed by hand from logical values (scales, mins, quants) following the
// documented block layouts; the expected value of each element is the layout's formula on those
// logical values. All products are exact in float, so the comparison is bit-exact (==).
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <vector>

#include <tessera/io/gguf_quants.hpp>

#include "common/test_util.hpp"
#include "io_test_util.hpp"

using namespace tessera;
using io::ggml_type;

namespace {

std::mt19937& gen() {
  static std::mt19937 g(1234);
  return g;
}
int rand_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen()); }

/// A random normal f16 scale in [0.25, 4) with a random mantissa (its bits, and its value).
std::uint16_t rand_scale_bits() {
  const float v = std::uniform_real_distribution<float>(0.25f, 4.f)(gen());
  return f16(v).bits;
}
float f16_value(std::uint16_t b) { return static_cast<float>(f16::from_bits(b)); }
void put_u16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v & 0xff);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}

std::vector<float> run(ggml_type t, const std::vector<std::uint8_t>& bytes, std::int64_t n) {
  std::vector<float> out(static_cast<std::size_t>(n), -12345.f);
  io::dequantize(t, reinterpret_cast<const std::byte*>(bytes.data()), out.data(), n);
  return out;
}

constexpr int n_blocks = 3;

}  // namespace

TEST_CASE("dequantize: Q4_0, Q4_1", "[io][quants]") {
  for (bool with_min : {false, true}) {
    const int bb = with_min ? 20 : 18;
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(bb * n_blocks));
    std::vector<float> expect;
    for (int b = 0; b < n_blocks; ++b) {
      std::uint8_t* blk = bytes.data() + b * bb;
      const std::uint16_t d = rand_scale_bits(), m = f16(-std::uniform_real_distribution<float>(0.5f, 2.f)(gen())).bits;
      put_u16(blk, d);
      if (with_min) put_u16(blk + 2, m);
      std::uint8_t* qs = blk + (with_min ? 4 : 2);
      int q[32];
      for (int e = 0; e < 32; ++e) q[e] = rand_int(0, 15);
      for (int j = 0; j < 16; ++j) qs[j] = static_cast<std::uint8_t>(q[j] | (q[j + 16] << 4));
      for (int e = 0; e < 32; ++e)
        expect.push_back(with_min ? static_cast<float>(static_cast<double>(q[e]) * f16_value(d) + f16_value(m))
                                  : static_cast<float>((q[e] - 8) * static_cast<double>(f16_value(d))));
    }
    const auto got = run(with_min ? ggml_type::q4_1 : ggml_type::q4_0, bytes, 32 * n_blocks);
    CHECK(got == expect);
  }
}

TEST_CASE("dequantize: Q5_0, Q5_1", "[io][quants]") {
  for (bool with_min : {false, true}) {
    const int bb = with_min ? 24 : 22;
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(bb * n_blocks));
    std::vector<float> expect;
    for (int b = 0; b < n_blocks; ++b) {
      std::uint8_t* blk = bytes.data() + b * bb;
      const std::uint16_t d = rand_scale_bits(), m = f16(-std::uniform_real_distribution<float>(4.f, 8.f)(gen())).bits;
      put_u16(blk, d);
      if (with_min) put_u16(blk + 2, m);
      std::uint8_t* qh = blk + (with_min ? 4 : 2);
      std::uint8_t* qs = qh + 4;
      int q[32];
      std::uint32_t h = 0;
      for (int e = 0; e < 32; ++e) {
        q[e] = rand_int(0, 31);
        h |= static_cast<std::uint32_t>(q[e] >> 4) << e;  // element e's 5th bit is bit e of qh
      }
      std::memcpy(qh, &h, 4);
      for (int j = 0; j < 16; ++j) qs[j] = static_cast<std::uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
      for (int e = 0; e < 32; ++e)
        expect.push_back(with_min ? static_cast<float>(static_cast<double>(q[e]) * f16_value(d) + f16_value(m))
                                  : static_cast<float>((q[e] - 16) * static_cast<double>(f16_value(d))));
    }
    const auto got = run(with_min ? ggml_type::q5_1 : ggml_type::q5_0, bytes, 32 * n_blocks);
    CHECK(got == expect);
  }
}

TEST_CASE("dequantize: Q8_0", "[io][quants]") {
  std::vector<std::uint8_t> bytes(34 * n_blocks);
  std::vector<float> expect;
  for (int b = 0; b < n_blocks; ++b) {
    std::uint8_t* blk = bytes.data() + b * 34;
    const std::uint16_t d = rand_scale_bits();
    put_u16(blk, d);
    for (int e = 0; e < 32; ++e) {
      const int q = e == 0 ? -128 : rand_int(-128, 127);
      blk[2 + e] = static_cast<std::uint8_t>(static_cast<std::int8_t>(q));
      expect.push_back(static_cast<float>(q * static_cast<double>(f16_value(d))));
    }
  }
  CHECK(run(ggml_type::q8_0, bytes, 32 * n_blocks) == expect);
}

namespace {
/// Packs 8 six-bit scales and mins the way Q4_K / Q5_K store them (12 bytes).
void pack_scales_k4(const int sc[8], const int m[8], std::uint8_t* q) {
  for (int j = 0; j < 4; ++j) {
    q[j] = static_cast<std::uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    q[j + 4] = static_cast<std::uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    q[j + 8] = static_cast<std::uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}
}  // namespace

TEST_CASE("dequantize: Q4_K, Q5_K", "[io][quants]") {
  for (bool five : {false, true}) {
    const int bb = five ? 176 : 144;
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(bb * n_blocks));
    std::vector<float> expect;
    for (int b = 0; b < n_blocks; ++b) {
      std::uint8_t* blk = bytes.data() + b * bb;
      const std::uint16_t d = rand_scale_bits(), dmin = rand_scale_bits();
      put_u16(blk, d);
      put_u16(blk + 2, dmin);
      int sc[8], m[8];
      for (int s = 0; s < 8; ++s) {
        sc[s] = rand_int(0, 63);
        m[s] = rand_int(0, 63);
      }
      sc[7] = 63;  // exercise the high bits
      m[5] = 63;
      pack_scales_k4(sc, m, blk + 4);
      std::uint8_t* qh = blk + 16;
      std::uint8_t* qs = blk + (five ? 48 : 16);
      for (int e = 0; e < 256; ++e) {
        const int q = rand_int(0, five ? 31 : 15);
        const int s = e / 32, l = e % 32, pair = s / 2;
        // sub-block s: low nibbles of qs[32*pair + l] when s is even, high nibbles when odd
        qs[32 * pair + l] |= static_cast<std::uint8_t>((q & 15) << (s % 2 ? 4 : 0));
        if (five) qh[l] |= static_cast<std::uint8_t>((q >> 4) << s);  // 5th bit: bit s of qh[l]
        expect.push_back(static_cast<float>(static_cast<double>(f16_value(d)) * sc[s] * q -
                                            static_cast<double>(f16_value(dmin)) * m[s]));
      }
    }
    CHECK(run(five ? ggml_type::q5_k : ggml_type::q4_k, bytes, 256 * n_blocks) == expect);
  }
}

TEST_CASE("dequantize: Q6_K", "[io][quants]") {
  std::vector<std::uint8_t> bytes(210 * n_blocks);
  std::vector<float> expect;
  for (int b = 0; b < n_blocks; ++b) {
    std::uint8_t* blk = bytes.data() + b * 210;
    std::uint8_t* ql = blk;
    std::uint8_t* qh = blk + 128;
    auto* scales = reinterpret_cast<std::int8_t*>(blk + 192);
    const std::uint16_t d = rand_scale_bits();
    put_u16(blk + 208, d);
    for (int s = 0; s < 16; ++s) scales[s] = static_cast<std::int8_t>(rand_int(-128, 127));
    scales[3] = -128;
    for (int e = 0; e < 256; ++e) {
      const int q = rand_int(0, 63);  // stored 6-bit value; the weight is q - 32
      const int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
      // quarters 0/1: low nibbles of ql[l] / ql[l + 32]; quarters 2/3: their high nibbles
      const int ql_index = 64 * half + l + (quarter % 2) * 32;
      ql[ql_index] |= static_cast<std::uint8_t>((q & 15) << (quarter >= 2 ? 4 : 0));
      qh[32 * half + l] |= static_cast<std::uint8_t>((q >> 4) << (2 * quarter));
      expect.push_back(static_cast<float>(static_cast<double>(f16_value(d)) * scales[e / 16] * (q - 32)));
    }
  }
  CHECK(run(ggml_type::q6_k, bytes, 256 * n_blocks) == expect);
}

TEST_CASE("dequantize: F32, F16, BF16, F64 and integers", "[io][quants]") {
  const auto src = test::random_vector(37, -3.f, 3.f);
  std::vector<std::uint8_t> b32(37 * 4), b16(37 * 2), bb16(37 * 2), b64(37 * 8), bi16(37 * 2);
  std::vector<float> e16, ebf16, e64, ei16;
  for (int i = 0; i < 37; ++i) {
    std::memcpy(b32.data() + 4 * i, &src[i], 4);
    const f16 h(src[i]);
    put_u16(b16.data() + 2 * i, h.bits);
    e16.push_back(static_cast<float>(h));
    const bf16 g(src[i]);
    put_u16(bb16.data() + 2 * i, g.bits);
    ebf16.push_back(static_cast<float>(g));
    const double dd = static_cast<double>(src[i]) * 1.000000001;
    std::memcpy(b64.data() + 8 * i, &dd, 8);
    e64.push_back(static_cast<float>(dd));
    const std::int16_t s = static_cast<std::int16_t>(i * 997 - 18000);
    std::memcpy(bi16.data() + 2 * i, &s, 2);
    ei16.push_back(static_cast<float>(s));
  }
  CHECK(run(ggml_type::f32, b32, 37) == src);
  CHECK(run(ggml_type::f16, b16, 37) == e16);
  CHECK(run(ggml_type::bf16, bb16, 37) == ebf16);
  CHECK(run(ggml_type::f64, b64, 37) == e64);
  CHECK(run(ggml_type::i16, bi16, 37) == ei16);
}

TEST_CASE("dequantize: unsupported types and bad counts are format_errors", "[io][quants]") {
  std::vector<std::uint8_t> bytes(1024, 1);
  CHECK_FALSE(io::can_dequantize(ggml_type::iq2_xxs));
  CHECK_THROWS_WITH(run(ggml_type::q2_k, bytes, 256), Catch::Contains("Q2_K is not supported"));
  CHECK_THROWS_WITH(run(ggml_type::q8_0, bytes, 33), Catch::Contains("not a multiple of the Q8_0 block size 32"));
}

TEST_CASE("dequantize: a Q8_0 tensor read through gguf_file", "[io][quants]") {
  test::gguf_builder g;
  std::vector<std::byte> blk(34 * 2);
  std::vector<float> expect;
  for (int b = 0; b < 2; ++b) {
    const std::uint16_t d = f16(0.5f).bits;
    std::memcpy(blk.data() + 34 * b, &d, 2);
    for (int e = 0; e < 32; ++e) {
      const int q = (e * 7 + b * 3) % 255 - 127;
      blk[34 * b + 2 + e] = static_cast<std::byte>(static_cast<std::int8_t>(q));
      expect.push_back(0.5f * q);
    }
  }
  g.tensor("w", ggml_type::q8_0, {32, 2}, blk);
  auto file = std::make_shared<const io::mapped_file>(io::mapped_file::from_bytes(g.bytes(), "q8.gguf"));
  io::gguf_file f(file);
  const auto* t = f.find_tensor("w");
  REQUIRE(t);
  CHECK(t->nbytes == 68);
  CHECK(t->extents == std::vector<index_t>{2, 32});
  std::vector<float> out(64);
  io::dequantize(t->type, f.tensor_data(*t), out.data(), t->numel);
  CHECK(out == expect);
}
