#include <catch2/catch.hpp>

#include <tessera/kernels/gemv.hpp>

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

}  // namespace

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
