// kernels::gemm_panel (f32 / f16 / bf16 weights in GEMM panels of 16 rows, block_x16) against the double
// reference on random data: every m from decode to past several row tiles, k across panel slices
// (panel_kc) and odd, one and two threads, the SIMD kernel and its scalar twin; the layout's round
// trip, ops::linear's route with a bias, shape errors and no allocation.
#include <catch2/catch.hpp>

#include <tessera/kernels/gemm_panel.hpp>
#include <tessera/ops/linear.hpp>

#include "common/alloc_counter.hpp"
#include "matmul_util.hpp"

using namespace tessera;
using namespace tessera::test;

namespace {

constexpr double kTol = 2e-6;  // as test_gemm: relative to sum |a w|

/// w (n, k), n a multiple of 16, as (n / 16, k) panels (interleaved column by column).
template <class E>
std::vector<block_x16<E>> panels_of(const tensor_view<const E, 2>& w) {
  const index_t n = w.extent(0), k = w.extent(1);
  std::vector<block_x16<E>> y(static_cast<std::size_t>(n / 16 * k));
  for (index_t q = 0; q < n / 16; ++q)
    for (index_t p = 0; p < k; ++p) {
      const E* rows[16];
      for (int r = 0; r < 16; ++r) rows[r] = &w(16 * q + r, p);
      y[static_cast<std::size_t>(q * k + p)] = interleave(rows);
    }
  return y;
}

template <class E, class Arch>
double run_panel(index_t m, index_t n, index_t k, index_t pad, Arch arch) {
  strided_matrix<float> a(m, k, pad);
  strided_matrix<E> w(n, k, 0);
  strided_matrix<float> c(m, n, pad);
  std::vector<double> ref, bound;
  reference_gemm(a.cview(), w.cview(), ref, bound);
  const auto p = panels_of(w.cview());
  const std::vector<float> before = c.storage;
  kernels::gemm_panel(a.cview(), tensor_view<const block_x16<E>, 2>(p.data(), {n / 16, k}), c.view(), arch);
  for (index_t i = 0; i < m; ++i)  // the padding between rows of c is never written
    for (index_t j = n; j < c.stride; ++j) REQUIRE(c.storage[std::size_t(i * c.stride + j)] == before[std::size_t(i * c.stride + j)]);
  return worst_error(c.cview(), ref, bound);
}

}  // namespace

TEMPLATE_TEST_CASE("block_x16: each row's element comes back, column by column or 16 columns at a time",
                   "[gemm][panel]", float, f16, bf16) {
  using E = TestType;
  const strided_matrix<E> w(48, 37);
  const auto p = panels_of(w.cview());
  std::vector<block_x16<E>> fast(p.size());
  for (index_t q = 0; q < 3; ++q) {
    const E* rows[16];
    for (int r = 0; r < 16; ++r) rows[r] = &w.cview()(16 * q + r, 0);
    interleave_rows(rows, 37, fast.data() + q * 37);
  }
  for (index_t j = 0; j < 48; ++j)
    for (index_t c = 0; c < 37; ++c) {
      REQUIRE(to_float(row_block(p[std::size_t(j / 16 * 37 + c)], int(j % 16))) == to_float(w.cview()(j, c)));
      REQUIRE(to_float(row_block(fast[std::size_t(j / 16 * 37 + c)], int(j % 16))) == to_float(w.cview()(j, c)));
    }
}

TEMPLATE_TEST_CASE("gemm_panel matches the double reference: decode, batched decode and prefill", "[gemm][panel]",
                   float, f16, bf16) {
  using E = TestType;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (index_t m : {1, 2, 3, 5, 6, 7, 12, 13, 33, 64, 70})
      for (index_t n : {16, 48, 272})
        for (index_t k : {1, 7, 255, 256, 257, 800}) {
          INFO("m=" << m << " n=" << n << " k=" << k << " threads=" << threads);
          REQUIRE(run_panel<E>(m, n, k, 0, simd::default_arch{}) < kTol);
          if (threads == 1 && m * n * k <= 70 * 272 * 257) REQUIRE(run_panel<E>(m, n, k, 0, simd::scalar{}) < kTol);
        }
  }
}

TEST_CASE("gemm_panel on strided rows of a and c", "[gemm][panel]") {
  set_num_threads(2);
  for (index_t m : {1, 4, 9, 40}) {
    INFO("m=" << m);
    REQUIRE(run_panel<float>(m, 32, 300, 5, simd::default_arch{}) < kTol);
    REQUIRE(run_panel<f16>(m, 32, 300, 5, simd::default_arch{}) < kTol);
    REQUIRE(run_panel<float>(m, 32, 300, 3, simd::scalar{}) < kTol);
  }
}

TEST_CASE("ops::linear on panels adds the bias, needs no scratch and allocates nothing", "[gemm][panel]") {
  set_num_threads(2);
  const index_t n = 64, k = 300;
  const strided_matrix<float> w(n, k);
  const auto p = panels_of<float>(w.cview());
  const tensor_view<const block_f32x16, 2> pv(p.data(), {n / 16, k});
  const auto bias = random_vector(n);
  const tensor_view<const float, 1> bv(bias.data(), {n});
  CHECK(ops::linear_workspace_bytes<block_f32x16>(70, k) == 0);
  workspace ws(0);
  for (index_t m : {1, 5, 70}) {
    INFO("m=" << m);
    const strided_matrix<float> x(m, k);
    std::vector<float> got(std::size_t(m * n)), want(std::size_t(m * n));
    const tensor_view<float, 2> gv(got.data(), {m, n}), wv(want.data(), {m, n});
    ops::linear(x.cview(), pv, bv, gv, ws);  // warm up (OpenMP's pool)
    start_counting_allocations();
    ops::linear(x.cview(), pv, bv, gv, ws);
    CHECK(stop_counting_allocations() == 0);
    workspace gws(ops::linear_workspace_bytes<float>(k));
    ops::linear(x.cview(), w.cview(), bv, wv, gws);
    for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == Approx(want[i]).epsilon(1e-5).margin(1e-5));
  }
}

TEST_CASE("gemm_panel: shape errors name the op", "[gemm][panel]") {
  std::vector<block_f32x16> p(2 * 10);
  std::vector<float> x(3 * 10), c(3 * 32);
  const tensor_view<const block_f32x16, 2> pv(p.data(), {2, 10});
  REQUIRE_THROWS_WITH(kernels::gemm_panel(tensor_view<const float, 2>(x.data(), {3, 9}), pv,
                                          tensor_view<float, 2>(c.data(), {3, 32})),
                      Catch::Contains("gemm_panel") && Catch::Contains("k"));
  REQUIRE_THROWS_WITH(kernels::gemm_panel(tensor_view<const float, 2>(x.data(), {3, 10}), pv,
                                          tensor_view<float, 2>(c.data(), {3, 31})),
                      Catch::Contains("gemm_panel") && Catch::Contains("16"));
  REQUIRE_THROWS_WITH(kernels::gemm_panel(tensor_view<const float, 2>(x.data(), {3, 10}), pv,
                                          tensor_view<float, 2>(c.data(), {2, 32})),
                      Catch::Contains("gemm_panel") && Catch::Contains("rows"));
}
