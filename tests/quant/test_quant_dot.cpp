// kernels/quant_dot.hpp: the activation quantizers (SIMD = scalar, bit for bit) and every
// vec_dot: SIMD against the scalar twin, both against the double dot of the dequantized blocks,
// and against the unquantized activations (the activation's quantization error, bounded).
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <tessera/kernels/quant_dot.hpp>
#include <tessera/kernels/quant_rows.hpp>

#include "quant/quant_test_util.hpp"

using namespace tessera;
using namespace tessera::test;
using kernels::activation_block_t;
using kernels::vec_dot;

namespace {
using arch = simd::default_arch;

template <class A>
bool same_bits(const std::vector<A>& a, const std::vector<A>& b) {
  return std::memcmp(a.data(), b.data(), a.size() * sizeof(A)) == 0;
}
}  // namespace

TEMPLATE_TEST_CASE("quantize_activation: default arch = scalar, bit for bit", "[quant][dot]", block_q8_sum, block_q8_K) {
  using A = TestType;
  rng(31);
  constexpr index_t nb = 2048 / A::block_size;
  for (float mean : {0.f, 0.7f, -2.f}) {
    auto x = normal_vector(nb * A::block_size, mean);
    std::fill(x.begin(), x.begin() + A::block_size, 0.f);  // a zero block
    x[std::size_t(A::block_size) + 3] = -40.f;             // the largest magnitude negative
    x[std::size_t(A::block_size) + 5] = 40.f;              // and tied with a positive one later
    for (index_t j = 2 * A::block_size; j < 3 * A::block_size; ++j)  // values on rounding ties
      x[std::size_t(j)] = 0.5f * float(j % 9) - 2.f;
    std::vector<A> s(static_cast<std::size_t>(nb)), v(s.size());
    kernels::quantize_activation(x.data(), s.data(), nb, simd::scalar{});
    kernels::quantize_activation(x.data(), v.data(), nb, arch{});
    CHECK(same_bits(s, v));
    std::vector<A> ref(s.size());
    quantize(x.data(), ref.data(), nb);
    CHECK(same_bits(s, ref));
  }
}

namespace {

/// One vec_dot case: a weight row of nb blocks, an activation row x and its quantization.
template <class B>
struct dot_case {
  using A = activation_block_t<B>;
  index_t nb;
  std::vector<B> w;
  std::vector<float> x;
  std::vector<A> a;
  std::vector<double> wd, ad;  // dequantized, exactly
  double mag = 0;              // Σ (|ŵ| + |offset|) |â|: what the float rounding is relative to
  double act_err = 0;          // Σ |ŵ| |x - â|: the activation's quantization error, exactly
  double act_bound = 0;        // Σ |ŵ| · |d_a| / 2 · (1 + 1e-4): its bound

  dot_case(std::vector<B> blocks, std::vector<float> xs)
      : nb(static_cast<index_t>(blocks.size())), w(std::move(blocks)), x(std::move(xs)), a(w.size() * B::block_size / A::block_size) {
    quantize(x.data(), a.data(), static_cast<index_t>(a.size()));
    wd = elements(w.data(), nb);
    std::vector<float> af(x.size());
    dequantize(a.data(), af.data(), static_cast<index_t>(a.size()));
    for (std::size_t j = 0; j < x.size(); ++j) {
      ad.push_back(af[j]);
      const double off = offset_magnitude(w[j / B::block_size], int(j % B::block_size));
      mag += (std::abs(wd[j]) + off) * std::abs(ad[j]);
      act_err += std::abs(wd[j]) * std::abs(double(x[j]) - ad[j]);
      act_bound += std::abs(wd[j]) * 0.5001 * std::abs(double(a[j / A::block_size].d));
    }
  }
  double exact_quantized() const {  // Σ ŵ â in double (exact: every product has < 53 bits)
    double s = 0;
    for (std::size_t j = 0; j < wd.size(); ++j) s += wd[j] * ad[j];
    return s;
  }
  double exact_unquantized() const {
    double s = 0;
    for (std::size_t j = 0; j < wd.size(); ++j) s += wd[j] * double(x[j]);
    return s;
  }
  /// Float rounding of a vec_dot: each block's integer sum is exact; the block products and the
  /// sum over nb blocks (8 lanes, then a horizontal add, on AVX2) round: (nb + 16) u · mag.
  double float_bound() const { return double(nb + 16) * float_u * mag; }
};

template <class B>
std::vector<B> quantized_normals(index_t nb, float mean) {
  const auto v = normal_vector(nb * B::block_size, mean);
  std::vector<B> w(static_cast<std::size_t>(nb));
  encode_for_test(v.data(), w.data(), nb);
  return w;
}

}  // namespace

TEMPLATE_TEST_CASE("vec_dot: SIMD = scalar up to float rounding, both = the exact dot of the blocks", "[quant][dot]",
                   TESSERA_WEIGHT_BLOCKS) {
  using B = TestType;
  rng(41);
  for (index_t nb : {1, 3, 7, 24}) {
    for (int kind = 0; kind < 3; ++kind) {
      // random bytes with random scales; quantized normals; activations with a large mean (the sum terms)
      auto w = kind == 1 ? quantized_normals<B>(nb, 0.2f) : random_blocks<B>(nb);
      auto x = normal_vector(nb * B::block_size, kind == 2 ? 3.f : 0.1f);
      const dot_case<B> c(std::move(w), std::move(x));
      const double s = vec_dot(c.w.data(), c.a.data(), nb, simd::scalar{});
      const double v = vec_dot(c.w.data(), c.a.data(), nb, simd::default_arch{});
      const double exact = c.exact_quantized();
      INFO("nb " << nb << " kind " << kind << " scalar " << s << " simd " << v << " exact " << exact << " mag " << c.mag);
      CHECK(std::abs(s - exact) <= c.float_bound());
      CHECK(std::abs(v - exact) <= c.float_bound());
      CHECK(std::abs(v - s) <= 2 * c.float_bound());
      // against the f32 activations: the activation's quantization error, within its bound
      const double full = c.exact_unquantized();
      CHECK(c.act_err <= c.act_bound);
      CHECK(std::abs(v - full) <= c.act_err + c.float_bound());
      CHECK(std::abs(s - full) <= c.act_err + c.float_bound());
    }
  }
}

TEMPLATE_TEST_CASE("vec_dot: extreme quants (all -128 / all top, largest scales) do not saturate", "[quant][dot]",
                   TESSERA_WEIGHT_BLOCKS) {
  using B = TestType;
  rng(42);
  constexpr index_t nb = 4;
  auto w = random_blocks<B>(nb);
  for (auto& b : w) {  // every quant byte at its largest value
    auto* p = reinterpret_cast<unsigned char*>(&b);
    if constexpr (std::is_same_v<B, block_q8_0>) std::memset(b.qs, 0x80, sizeof(b.qs));  // -128
    else if constexpr (requires { b.ql; }) std::memset(p, 0xff, 192);                  // ql, qh
    else std::memset(b.qs, 0xff, sizeof(b.qs));
    if constexpr (requires { b.qh; } && !requires { b.ql; }) std::memset(b.qh, 0xff, sizeof(b.qh));
    if constexpr (requires { b.scales; }) {
      if constexpr (std::is_same_v<B, block_q6_K>) std::memset(b.scales, 0x80, sizeof(b.scales));  // -128
      else std::memset(b.scales, 0xff, sizeof(b.scales));                                           // 63
    }
  }
  std::vector<float> x(static_cast<std::size_t>(nb * B::block_size));
  for (std::size_t j = 0; j < x.size(); ++j) x[j] = j % 2 ? 1.f : -1.f;  // every activation ±127
  if constexpr (std::is_same_v<B, block_q8_0>) std::fill(x.begin(), x.end(), -1.f);
  const dot_case<B> c(std::move(w), std::move(x));
  const double exact = c.exact_quantized();
  CHECK(std::abs(vec_dot(c.w.data(), c.a.data(), nb, simd::scalar{}) - exact) <= c.float_bound());
  CHECK(std::abs(vec_dot(c.w.data(), c.a.data(), nb, simd::default_arch{}) - exact) <= c.float_bound());
}

TEMPLATE_TEST_CASE("vec_dot_rows4: four rows at once = vec_dot per row up to float rounding", "[quant][dot]",
                   TESSERA_WEIGHT_BLOCKS) {
  using B = TestType;
  rng(43);
  for (index_t nb : {1, 5, 24}) {
    const index_t ldw = nb + 3;  // rows further apart than their length
    auto w = random_blocks<B>(4 * ldw);
    const auto x = normal_vector(nb * B::block_size, 0.5f);
    std::vector<activation_block_t<B>> a(static_cast<std::size_t>(nb * B::block_size / activation_block_t<B>::block_size));
    quantize(x.data(), a.data(), static_cast<index_t>(a.size()));
    float four[4];
    kernels::vec_dot_rows4(w.data(), ldw, a.data(), nb, four, simd::default_arch{});
    for (int r = 0; r < 4; ++r) {
      const std::vector<B> row(w.begin() + r * ldw, w.begin() + r * ldw + nb);
      const dot_case<B> c(row, x);
      INFO("nb " << nb << " row " << r);
      CHECK(std::abs(double(four[r]) - c.exact_quantized()) <= c.float_bound());
      CHECK(std::abs(double(four[r]) - double(vec_dot(row.data(), a.data(), nb, simd::scalar{}))) <= 2 * c.float_bound());
    }
  }
}

TEMPLATE_TEST_CASE("vec_dot_rows4: four rows against 1-4 activation rows = vec_dot per pair", "[quant][dot]",
                   TESSERA_WEIGHT_BLOCKS) {
  using B = TestType;
  using A = activation_block_t<B>;
  rng(44);
  const index_t nb = 6, ldw = nb + 1, ka = nb * B::block_size / A::block_size;
  auto w = random_blocks<B>(4 * ldw);
  for (int m = 1; m <= 4; ++m) {
    const auto x = normal_vector(m * nb * B::block_size, 0.5f);
    std::vector<A> a(static_cast<std::size_t>(m * ka));
    quantize(x.data(), a.data(), m * ka);
    std::vector<float> out(static_cast<std::size_t>(m * 6), -1.f);  // ldo = 6: two untouched columns per row
    kernels::vec_dot_rows4(w.data(), ldw, a.data(), ka, m, nb, out.data(), 6, simd::default_arch{});
    for (int i = 0; i < m; ++i) {
      CHECK(out[std::size_t(i * 6 + 4)] == -1.f);
      for (int r = 0; r < 4; ++r) {
        const std::vector<B> row(w.begin() + r * ldw, w.begin() + r * ldw + nb);
        const dot_case<B> c(row, std::vector<float>(x.begin() + i * nb * B::block_size, x.begin() + (i + 1) * nb * B::block_size));
        INFO("m " << m << " activation row " << i << " weight row " << r);
        CHECK(std::abs(double(out[std::size_t(i * 6 + r)]) - c.exact_quantized()) <= c.float_bound());
      }
    }
  }
}

TEMPLATE_TEST_CASE("vec_dot_rows8: eight rows at once = vec_dot per row up to float rounding", "[quant][dot]",
                   TESSERA_WEIGHT_BLOCKS) {
  using B = TestType;
  rng(45);
  for (index_t nb : {1, 24}) {
    const index_t ldw = nb + 2;
    auto w = random_blocks<B>(8 * ldw);
    const auto x = normal_vector(nb * B::block_size, -0.5f);
    std::vector<activation_block_t<B>> a(static_cast<std::size_t>(nb * B::block_size / activation_block_t<B>::block_size));
    quantize(x.data(), a.data(), static_cast<index_t>(a.size()));
    float eight[8];
    kernels::vec_dot_rows8(w.data(), ldw, a.data(), nb, eight, simd::default_arch{});
    for (int r = 0; r < 8; ++r) {
      const std::vector<B> row(w.begin() + r * ldw, w.begin() + r * ldw + nb);
      const dot_case<B> c(row, x);
      INFO("nb " << nb << " row " << r);
      CHECK(std::abs(double(eight[r]) - c.exact_quantized()) <= c.float_bound());
    }
  }
}
