// kernels/quant_linear.hpp: out = x · dequantize(w)ᵀ for every block type, decode (m = 1),
// batched decode (m = 3) and prefill (m = 17, 70) on odd row counts, against a double reference
// with the bound of the path taken; the scalar twin; shape errors; no allocation. The same for
// q4_0 rows interleaved 8 at a time (kernels/quant_interleaved.hpp).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include <tessera/kernels/quant_interleaved.hpp>
#include <tessera/kernels/quant_linear.hpp>

#include "common/alloc_counter.hpp"
#include "quant/quant_test_util.hpp"

using namespace tessera;
using namespace tessera::test;
using kernels::activation_block_t;

namespace {

template <class B>
struct linear_case {
  using A = activation_block_t<B>;
  index_t m, n, kb, k;
  std::vector<B> w;
  std::vector<float> x;
  std::vector<double> ref, float_err, act_err;  // per output: exact value and the two error bounds

  linear_case(index_t m_, index_t n_, index_t kb_, bool random_bytes)
      : m(m_), n(n_), kb(kb_), k(kb_ * B::block_size), x(normal_vector(m_ * kb_ * B::block_size, 0.2f)) {
    if (random_bytes) {
      w = random_blocks<B>(n * kb);
    } else {
      const auto v = normal_vector(n * k);
      w.resize(static_cast<std::size_t>(n * kb));
      encode_for_test(v.data(), w.data(), n * kb);
    }
    // exact products in double; the bounds: (k + 16) u Σ (|ŵ| + |offset|)(|x| + |d_a|) for the
    // float rounding (covers both paths), Σ |ŵ| |d_a| / 2 · 1.0001 for the activation's quantization
    const auto wd = elements(w.data(), n * kb);
    std::vector<A> a(static_cast<std::size_t>(m * k / A::block_size));
    quantize(x.data(), a.data(), static_cast<index_t>(a.size()));
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) {
        double s = 0, f = 0, q = 0;
        for (index_t p = 0; p < k; ++p) {
          const double wv = wd[std::size_t(j * k + p)], xv = x[std::size_t(i * k + p)];
          const double da = std::abs(double(a[std::size_t((i * k + p) / A::block_size)].d));
          const double off = offset_magnitude(w[std::size_t(j * kb + p / B::block_size)], int(p % B::block_size));
          s += wv * xv;
          f += (std::abs(wv) + off) * (std::abs(xv) + da);
          q += std::abs(wv) * 0.5001 * da;
        }
        ref.push_back(s);
        float_err.push_back(double(k + 16) * float_u * f);
        act_err.push_back(q);
      }
  }
  tensor_view<const float, 2> xv() const { return tensor_view<const float, 2>(x.data(), {m, k}); }
  tensor_view<const B, 2> wv() const { return tensor_view<const B, 2>(w.data(), {n, kb}); }

  /// Runs quant_linear with Arch and returns the worst |out - ref| / bound (<= 1 passes).
  template <class Arch>
  double worst(bool quantized_activations) const {
    std::vector<float> out(static_cast<std::size_t>(m * n), -777.f);
    workspace ws(kernels::quant_linear_workspace_bytes<B>(m, k));
    kernels::quant_linear(xv(), wv(), tensor_view<float, 2>(out.data(), {m, n}), ws, Arch{});
    double worst = 0;
    for (std::size_t t = 0; t < out.size(); ++t) {
      const double bound = float_err[t] + (quantized_activations ? act_err[t] : 0.0);
      worst = std::max(worst, std::abs(double(out[t]) - ref[t]) / bound);
    }
    return worst;
  }
};

}  // namespace

TEMPLATE_TEST_CASE("quant_linear: decode, batched decode and prefill against a double reference", "[quant][linear]",
                   TESSERA_WEIGHT_BLOCKS) {
  using B = TestType;
  rng(51);
  // several blocks per row: 5 blocks of 32 (k = 160) or 3 of 256 (k = 768)
  const index_t kb = B::block_size == 32 ? 5 : 3;
  for (index_t m : {1, 3, 17, 23, 70})
    for (index_t n : {37, 129})
      for (bool random_bytes : {true, false}) {
        const linear_case<B> c(m, n, kb, random_bytes);
        // prefill (m > quant_rows_max_m) multiplies the f32 activations (float rounding only),
        // but for q4_0, q8_0 and iq4_nl, whose prefill runs in int8 on 8-bit activations as decode does
        const bool int_path = m <= kernels::quant_rows_max_m<B> || kernels::quant_int8_prefill<B>;
        INFO("m " << m << " n " << n << (random_bytes ? " random bytes" : " quantized normals"));
        CHECK(c.template worst<simd::default_arch>(int_path) <= 1.0);
        CHECK(c.template worst<simd::scalar>(int_path) <= 1.0);
      }
}

TEST_CASE("quant_linear: k in several packing steps, one and two threads", "[quant][linear]") {
  rng(52);
  const int saved = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    const linear_case<block_q4_K> k4(70, 67, 5, false);  // k = 1280: 5 steps of 256
    CHECK(k4.worst<simd::default_arch>(false) <= 1.0);
    const linear_case<block_q8_0> q8(33, 131, 25, true);  // k = 800; int8 panels, threads over them
    CHECK(q8.worst<simd::default_arch>(true) <= 1.0);
    const linear_case<block_q4_0> q4(41, 203, 25, false);
    CHECK(q4.worst<simd::default_arch>(true) <= 1.0);
    const linear_case<block_q5_1> q51(33, 131, 25, true);  // k = 800: 384 + 384 + 32
    CHECK(q51.worst<simd::default_arch>(false) <= 1.0);
    const linear_case<block_q5_0> q5(2, 300, 25, true);  // batched decode over several chunks
    CHECK(q5.worst<simd::default_arch>(true) <= 1.0);
  }
  set_num_threads(saved);
}

TEST_CASE("quant_linear: shape errors name the op", "[quant][linear]") {
  std::vector<block_q4_0> w(4 * 3);
  std::vector<float> x(2 * 96), out(2 * 4), wide(2 * 100);
  workspace ws(kernels::quant_linear_workspace_bytes<block_q4_0>(2, 96));
  const tensor_view<const block_q4_0, 2> wv(w.data(), {4, 3});
  const tensor_view<const float, 2> xv(x.data(), {2, 96});
  CHECK_THROWS_WITH(kernels::quant_linear(tensor_view<const float, 2>(wide.data(), {2, 100}), wv,
                                          tensor_view<float, 2>(out.data(), {2, 4}), ws),
                    Catch::Contains("quant_linear") && Catch::Contains("q4_0"));
  CHECK_THROWS_WITH(kernels::quant_linear(xv, wv, tensor_view<float, 2>(out.data(), {2, 3}), ws),
                    Catch::Contains("quant_linear: out columns"));
  CHECK_THROWS_WITH(kernels::quant_linear(xv, wv, tensor_view<float, 2>(out.data(), {1, 4}), ws),
                    Catch::Contains("quant_linear: out rows"));
  CHECK_THROWS_WITH(kernels::quant_linear(tensor_view<const float, 2>(x.data(), {2, 96}, {1, 2}), wv,
                                          tensor_view<float, 2>(out.data(), {2, 4}), ws),
                    Catch::Contains("quant_linear: x"));
  CHECK_THROWS_AS(kernels::quant_linear(tensor_view<const float, 2>(x.data(), {2, 96}, {1, 2}), wv,
                                        tensor_view<float, 2>(out.data(), {2, 4}), ws),
                  shape_error);
}

TEMPLATE_TEST_CASE("quant_linear: allocates nothing with the workspace it asks for", "[quant][linear]", block_q4_0,
                   block_q6_K) {
  using B = TestType;
  rng(53);
  for (index_t m : {1, 8, 40}) {
    const linear_case<B> c(m, 50, 4, true);
    std::vector<float> out(static_cast<std::size_t>(m * 50));
    workspace ws(kernels::quant_linear_workspace_bytes<B>(m, c.k));
    const tensor_view<float, 2> ov(out.data(), {m, 50});
    kernels::quant_linear(c.xv(), c.wv(), ov, ws);  // warm up (OpenMP's pool)
    start_counting_allocations();
    kernels::quant_linear(c.xv(), c.wv(), ov, ws);
    CHECK(stop_counting_allocations() == 0);
    CHECK(ws.used() == 0);
  }
}

namespace {

/// w's rows interleaved 8 at a time (n a multiple of 8).
template <class B>
std::vector<B> interleave_rows(const std::vector<typename B::row_block>& w, index_t n, index_t kb) {
  std::vector<B> y(static_cast<std::size_t>(n / 8 * kb));
  for (index_t p = 0; p < n / 8; ++p)
    for (index_t b = 0; b < kb; ++b) {
      const typename B::row_block* rows[8];
      for (index_t r = 0; r < 8; ++r) rows[r] = &w[std::size_t((8 * p + r) * kb + b)];
      y[std::size_t(p * kb + b)] = interleave(rows);
    }
  return y;
}

}  // namespace

TEMPLATE_TEST_CASE("interleave: each row's block comes back byte for byte", "[quant][linear][interleaved]", block_q4_0x8,
                   block_iq4_nlx8, block_q8_0x8, block_q4_Kx8, block_q5_Kx8, block_q6_Kx8, block_iq4_xsx8) {
  using B = TestType;
  using R = typename B::row_block;
  rng(54);
  const auto w = random_blocks<R>(8 * 7);
  const auto y = interleave_rows<B>(w, 8, 7);
  for (index_t b = 0; b < 7; ++b)
    for (int r = 0; r < 8; ++r) {
      const R back = row_block(y[std::size_t(b)], r);
      CHECK(std::memcmp(&back, &w[std::size_t(r * 7 + b)], sizeof(R)) == 0);
    }
}

TEMPLATE_TEST_CASE("quant_linear on interleaved rows: decode, batched decode and prefill within the bound, one and two threads",
                   "[quant][linear][interleaved]", block_q4_0x8, block_iq4_nlx8, block_q8_0x8,
                   block_q4_Kx8, block_q5_Kx8, block_q6_Kx8, block_iq4_xsx8) {
  using B = TestType;
  using R = typename B::row_block;
  rng(55);
  const int saved = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (index_t m : {1, 2, 3, 4, 5, 17, 21, 70})
      for (index_t n : {8, 136})
        for (index_t kb : R::block_size == 32 ? std::vector<index_t>{1, 5, 25} : std::vector<index_t>{1, 3}) {
          const linear_case<R> c(m, n, kb, (m + n + kb) % 2 == 0);
          const auto y = interleave_rows<B>(c.w, n, kb);
          const tensor_view<const B, 2> yv(y.data(), {n / 8, kb});
          INFO("threads " << threads << " m " << m << " n " << n << " kb " << kb);
          for (bool scalar : {false, true}) {
            std::vector<float> out(static_cast<std::size_t>(m * n), -777.f);
            workspace ws(kernels::quant_linear_workspace_bytes<B>(m, c.k));
            const tensor_view<float, 2> ov(out.data(), {m, n});
            if (scalar) kernels::quant_linear(c.xv(), yv, ov, ws, simd::scalar{});
            else kernels::quant_linear(c.xv(), yv, ov, ws);
            double worst = 0;
            for (std::size_t t = 0; t < out.size(); ++t)
              worst = std::max(worst, std::abs(double(out[t]) - c.ref[t]) / (c.float_err[t] + c.act_err[t]));
            CHECK(worst <= 1.0);
          }
        }
  }
  set_num_threads(saved);
}

TEMPLATE_TEST_CASE("quant_linear on interleaved rows: shape errors name the layout, nothing allocated",
                   "[quant][linear][interleaved]", block_q4_0x8, block_iq4_nlx8, block_q8_0x8,
                   block_q4_Kx8, block_q5_Kx8, block_q6_Kx8, block_iq4_xsx8) {
  using B = TestType;
  using R = typename B::row_block;
  rng(56);
  const linear_case<R> c(3, 16, 2, true);
  const auto y = interleave_rows<B>(c.w, 16, 2);
  const tensor_view<const B, 2> yv(y.data(), {2, 2});
  std::vector<float> out(3 * 16), wide(static_cast<std::size_t>(3 * (c.k + 32)));
  workspace ws(kernels::quant_linear_workspace_bytes<B>(40, c.k));
  CHECK_THROWS_WITH(kernels::quant_linear(tensor_view<const float, 2>(wide.data(), {3, c.k + 32}), yv,
                                          tensor_view<float, 2>(out.data(), {3, 16}), ws),
                    Catch::Contains("quant_linear") && Catch::Contains(std::string("interleaved ") + std::string(R::name)));
  CHECK_THROWS_WITH(kernels::quant_linear(c.xv(), yv, tensor_view<float, 2>(out.data(), {3, 8}), ws),
                    Catch::Contains("out columns"));
  for (index_t m : {1, 3}) {
    const tensor_view<float, 2> ov(out.data(), {m, 16});
    const tensor_view<const float, 2> xv(c.x.data(), {m, c.k});
    kernels::quant_linear(xv, yv, ov, ws);  // warm up (OpenMP's pool)
    start_counting_allocations();
    kernels::quant_linear(xv, yv, ov, ws);
    CHECK(stop_counting_allocations() == 0);
    CHECK(ws.used() == 0);
  }
}
