#include <catch2/catch.hpp>

#include <tessera/kernels/gemm.hpp>
#include <tessera/kernels/gemv.hpp>
#include <tessera/kernels/gemv_rows.hpp>

#include "matmul_util.hpp"

using namespace tessera;
using namespace tessera::test;

namespace {

template <class W, class Arch>
double run_gemv(index_t n, index_t k, index_t pad, Arch arch) {
  strided_matrix<float> x(1, k);
  strided_matrix<W> w(n, k, pad);
  strided_matrix<float> y(1, n);
  std::vector<double> ref, bound;
  reference_gemm(x.cview(), w.cview(), ref, bound);
  kernels::gemv(x.cview()[0], w.cview(), y.view()[0], arch);
  return worst_error(y.cview(), ref, bound);
}

template <class W>
void check_all_sizes() {
  const index_t sizes[] = {1, 7, 17, 33, 100, 257, 1000};
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (index_t n : sizes)
      for (index_t k : sizes)
        for (index_t pad : {0, 3}) {
          INFO("n=" << n << " k=" << k << " pad=" << pad << " threads=" << threads << " dtype=" << dtype_name(dtype_of<W>()));
          REQUIRE(run_gemv<W>(n, k, pad, simd::default_arch{}) < 2e-6);
          REQUIRE(run_gemv<W>(n, k, pad, simd::scalar{}) < 2e-6);
        }
  }
}

/// Rows whose stride is a multiple of 16 elements (every row equally aligned: the kernel then
/// takes rows in blocks and sums them with one haddp), starting 0 or `shift` elements past an
/// aligned address (a uniform head of peeled elements), n not a multiple of the block.
template <class W>
void check_row_blocks() {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (index_t n : {1, 4, 5, 13, 100})
      for (index_t k : {16, 48, 80, 768, 784})
        for (index_t pad : {0, 16})
          for (index_t shift : {0, 1, 5}) {
            INFO("n=" << n << " k=" << k << " pad=" << pad << " shift=" << shift << " threads=" << threads);
            strided_matrix<float> x(1, k);
            strided_matrix<W> wm(n + 1, k + pad, 0);  // storage with room for the shift
            tensor_view<const W, 2> w(wm.storage.data() + shift, {n, k}, {k + pad, 1});
            strided_matrix<float> y(1, n);
            std::vector<double> ref, bound;
            reference_gemm(x.cview(), w, ref, bound);
            kernels::gemv(x.cview()[0], w, y.view()[0]);
            REQUIRE(worst_error(y.cview(), ref, bound) < 2e-6);
          }
  }
}

/// gemv_rows at (m, n, k) with row padding `pad` on a, w and c: worst error against the double
/// reference, and the largest difference from the scalar twin relative to the largest |value|.
template <class W>
std::pair<double, double> run_gemv_rows(index_t m, index_t n, index_t k, index_t pad) {
  strided_matrix<float> a(m, k, pad);
  strided_matrix<W> w(n, k, pad);
  strided_matrix<float> c(m, n, pad), cs(m, n);
  const std::vector<float> before = c.storage;
  std::vector<double> ref, bound;
  reference_gemm(a.cview(), w.cview(), ref, bound);
  kernels::gemv_rows(a.cview(), w.cview(), c.view());
  kernels::gemv_rows(a.cview(), w.cview(), cs.view(), simd::scalar{});
  for (index_t i = 0; i < m; ++i)  // the padding between rows of c is never written
    for (index_t j = n; j < c.stride; ++j) REQUIRE(c.storage[std::size_t(i * c.stride + j)] == before[std::size_t(i * c.stride + j)]);
  double vs_scalar = 0, scale = 0;
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      vs_scalar = std::max(vs_scalar, std::abs(double(c.cview()(i, j)) - double(cs.cview()(i, j))));
      scale = std::max(scale, std::abs(double(cs.cview()(i, j))));
    }
  const double err = std::max(worst_error(c.cview(), ref, bound), worst_error(cs.cview(), ref, bound));
  return {err, scale > 0 ? vs_scalar / scale : vs_scalar};
}

/// Every m from 2 to 17 (groups of rows of a of every size, m past the tile's M), odd n (rows of
/// w left over after the R-row tiles), k = 1, 7, 33, 769 (tails shorter than a vector, none of
/// the body), padded rows, 1 and 2 threads.
template <class W>
void check_gemv_rows() {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (index_t m = 2; m <= 17; ++m)
      for (index_t n : {1, 5, 33, 101})
        for (index_t k : {1, 7, 33, 769})
          for (index_t pad : {0, 3}) {
            INFO("m=" << m << " n=" << n << " k=" << k << " pad=" << pad << " threads=" << threads
                      << " dtype=" << dtype_name(dtype_of<W>()));
            const auto [err, vs_scalar] = run_gemv_rows<W>(m, n, k, pad);
            REQUIRE(err < 2e-6);
            REQUIRE(vs_scalar < 1e-5);
          }
  }
  set_num_threads(1);
}

}  // namespace

TEST_CASE("gemv_rows matches the double reference and its scalar twin: f32 weights", "[gemv][gemv_rows]") {
  check_gemv_rows<float>();
}
TEST_CASE("gemv_rows matches the double reference and its scalar twin: f16 weights", "[gemv][gemv_rows]") {
  check_gemv_rows<f16>();
}
TEST_CASE("gemv_rows matches the double reference and its scalar twin: bf16 weights", "[gemv][gemv_rows]") {
  check_gemv_rows<bf16>();
}

TEST_CASE("gemv_rows on many chunks and misaligned weight rows", "[gemv][gemv_rows]") {
  // n large enough for several parallel_for_dynamic chunks; w starting 1 element past an aligned
  // address with an odd row stride (every row differently aligned)
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (index_t m : {2, 8, 16}) {
      INFO("threads=" << threads << " m=" << m);
      strided_matrix<float> a(m, 300);
      strided_matrix<f16> wm(1201, 301, 0);
      tensor_view<const f16, 2> w(wm.storage.data() + 1, {1200, 300}, {301, 1});
      strided_matrix<float> c(m, 1200);
      std::vector<double> ref, bound;
      reference_gemm(a.cview(), w, ref, bound);
      kernels::gemv_rows(a.cview(), w, c.view());
      REQUIRE(worst_error(c.cview(), ref, bound) < 2e-6);
    }
  }
  set_num_threads(1);
}

TEST_CASE("gemv_rows_many equals one gemv_rows per matrix", "[gemv][gemv_rows]") {
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (index_t m : {2, 5, 16})
      for (index_t k : {7, 64, 257}) {
        strided_matrix<float> a(m, k);
        strided_matrix<bf16> w0(33, k), w1(5, k, 3), w2(100, k);
        strided_matrix<float> c0(m, 33), c1(m, 5, 2), c2(m, 100);
        kernels::gemv_rows_many<bf16, 3>(a.cview(), {w0.cview(), w1.cview(), w2.cview()}, {c0.view(), c1.view(), c2.view()});
        const strided_matrix<bf16>* ws[] = {&w0, &w1, &w2};
        const strided_matrix<float>* cs[] = {&c0, &c1, &c2};
        for (int i = 0; i < 3; ++i) {
          std::vector<double> ref, bound;
          reference_gemm(a.cview(), ws[i]->cview(), ref, bound);
          INFO("threads=" << threads << " m=" << m << " k=" << k << " matrix=" << i);
          REQUIRE(worst_error(cs[i]->cview(), ref, bound) < 2e-6);
        }
        strided_matrix<float> d0(m, 33), d1(m, 5, 2), d2(m, 100);
        kernels::gemv_rows_many<bf16, 3>(a.cview(), {w0.cview(), w1.cview(), w2.cview()}, {d0.view(), d1.view(), d2.view()},
                                         simd::scalar{});
        REQUIRE(max_rel_err(c2.storage.data(), d2.storage.data(), m * 100) < 1e-5);
      }
  }
  set_num_threads(1);
}

TEST_CASE("gemm and gemm_accumulate take gemv_rows for 2 .. gemv_rows_max_m rows", "[gemv][gemv_rows]") {
  set_num_threads(2);
  for (index_t m = 2; m <= kernels::gemv_rows_max_m<> + 1; ++m) {
    INFO("m=" << m);
    strided_matrix<float> a(m, 129);
    strided_matrix<f16> w(77, 129, 1);
    strided_matrix<float> c(m, 77, 1);
    std::vector<double> ref, bound, base;
    reference_gemm(a.cview(), w.cview(), ref, bound);
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < 77; ++j) base.push_back(c.cview()(i, j));
    workspace ws(kernels::gemm_workspace_bytes<f16>(129));
    kernels::gemm_accumulate(a.cview(), w.cview(), c.view(), ws);
    REQUIRE(worst_error(c.cview(), ref, bound, &base) < 2e-6);
    kernels::gemm(a.cview(), w.cview(), c.view(), ws);
    REQUIRE(worst_error(c.cview(), ref, bound) < 2e-6);
  }
  set_num_threads(1);
}

TEST_CASE("gemv_rows rejects mismatched and strided operands", "[gemv][gemv_rows]") {
  strided_matrix<float> a(4, 16), a_bad(4, 15), c(4, 12), c_bad(4, 13), c_rows(3, 12), w(12, 16);
  REQUIRE_THROWS_WITH(kernels::gemv_rows(a_bad.cview(), w.cview(), c.view()), Catch::Contains("gemv_rows") && Catch::Contains("15 != 16"));
  REQUIRE_THROWS_AS(kernels::gemv_rows(a.cview(), w.cview(), c_bad.view()), shape_error);
  REQUIRE_THROWS_AS(kernels::gemv_rows(a.cview(), w.cview(), c_rows.view()), shape_error);
  REQUIRE_THROWS_AS(kernels::gemv_rows(a.cview(), w.cview(), c_bad.view(), simd::scalar{}), shape_error);
  strided_matrix<float> at(16, 4);
  REQUIRE_THROWS_WITH(kernels::gemv_rows(at.cview().transpose(0, 1), w.cview(), c.view()), Catch::Contains("gemv_rows: a"));
  strided_matrix<float> c0(4, 8), c1(4, 9), w0(8, 16), w1(8, 16);
  REQUIRE_THROWS_AS((kernels::gemv_rows_many<float, 2>(a.cview(), {w0.cview(), w1.cview()}, {c0.view(), c1.view()})),
                    shape_error);
}

TEST_CASE("gemv f32 weights matches the double reference", "[gemv]") { check_all_sizes<float>(); }
TEST_CASE("gemv f16 weights matches the double reference", "[gemv]") { check_all_sizes<f16>(); }
TEST_CASE("gemv bf16 weights matches the double reference", "[gemv]") { check_all_sizes<bf16>(); }

TEST_CASE("gemv default arch agrees with the scalar overload", "[gemv]") {
  set_num_threads(2);
  strided_matrix<float> x(1, 1000), y1(1, 333), y2(1, 333);
  strided_matrix<f16> w(333, 1000, 7);
  kernels::gemv(x.cview()[0], w.cview(), y1.view()[0]);
  kernels::gemv(x.cview()[0], w.cview(), y2.view()[0], simd::scalar{});
  REQUIRE(max_rel_err(y1.storage.data(), y2.storage.data(), 333) < 1e-5);
}

TEST_CASE("gemv rejects mismatched and strided operands", "[gemv]") {
  strided_matrix<float> x(1, 16), x_bad(1, 15), y(1, 12), y_bad(1, 13), w(12, 16);
  REQUIRE_THROWS_WITH(kernels::gemv(x_bad.cview()[0], w.cview(), y.view()[0]), Catch::Contains("gemv") && Catch::Contains("15 != 16"));
  REQUIRE_THROWS_AS(kernels::gemv(x.cview()[0], w.cview(), y_bad.view()[0]), shape_error);
  REQUIRE_THROWS_AS(kernels::gemv(x.cview()[0], w.cview(), y_bad.view()[0], simd::scalar{}), shape_error);
  strided_matrix<float> xs(16, 2);  // a column of a (16, 2) matrix: stride 2
  tensor_view<const float, 1> x_strided(xs.storage.data(), {16}, {2});
  REQUIRE_THROWS_WITH(kernels::gemv(x_strided, w.cview(), y.view()[0]), Catch::Contains("gemv: x"));
  strided_matrix<float> wt(16, 12);
  REQUIRE_THROWS_WITH(kernels::gemv(x.cview()[0], wt.cview().transpose(0, 1), y.view()[0]), Catch::Contains("gemv: w"));
}

TEST_CASE("gemv takes equally aligned rows in blocks: f32, f16, bf16", "[gemv]") {
  check_row_blocks<float>();
  check_row_blocks<f16>();
  check_row_blocks<bf16>();
}

TEST_CASE("gemv_many equals one gemv per matrix (rows split across matrices and threads)", "[gemv]") {
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (index_t k : {7, 64, 257}) {
      // three matrices of odd row counts sharing x: thread ranges straddle their boundaries
      strided_matrix<float> x(1, k);
      strided_matrix<f16> w0(33, k), w1(5, k, 3), w2(100, k);
      strided_matrix<float> y0(1, 33), y1(1, 5), y2(1, 100);
      kernels::gemv_many<f16, 3>(x.cview()[0], {w0.cview(), w1.cview(), w2.cview()},
                                 {y0.view()[0], y1.view()[0], y2.view()[0]});
      const strided_matrix<f16>* ws[] = {&w0, &w1, &w2};
      const strided_matrix<float>* ys[] = {&y0, &y1, &y2};
      for (int i = 0; i < 3; ++i) {
        std::vector<double> ref, bound;
        reference_gemm(x.cview(), ws[i]->cview(), ref, bound);
        INFO("threads=" << threads << " k=" << k << " matrix=" << i);
        REQUIRE(worst_error(ys[i]->cview(), ref, bound) < 2e-6);
      }
    }
  }
  set_num_threads(1);
}

TEST_CASE("gemv_many rejects a y of the wrong length", "[gemv]") {
  strided_matrix<float> x(1, 16), y0(1, 8), y1(1, 9);
  strided_matrix<float> w0(8, 16), w1(8, 16);
  REQUIRE_THROWS_AS((kernels::gemv_many<float, 2>(x.cview()[0], {w0.cview(), w1.cview()}, {y0.view()[0], y1.view()[0]})),
                    shape_error);
}
