#include <catch2/catch.hpp>

#include <tessera/kernels/gemm.hpp>

#include "matmul_util.hpp"

using namespace tessera;
using namespace tessera::test;

namespace {

constexpr double kTol = 2e-6;  // relative to sum |a w|: k = 800 float adds stay far below this

template <class W, class Arch>
double run_gemm(index_t m, index_t n, index_t k, index_t pad, bool accumulate, Arch arch) {
  strided_matrix<float> a(m, k, pad);
  strided_matrix<W> w(n, k, pad);
  strided_matrix<float> c(m, n, pad);
  std::vector<double> ref, bound, base;
  reference_gemm(a.cview(), w.cview(), ref, bound);
  if (accumulate)
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) base.push_back(c.cview()(i, j));
  const std::vector<float> before = c.storage;
  workspace ws(kernels::gemm_workspace_bytes<W>(k));
  if (accumulate) kernels::gemm_accumulate(a.cview(), w.cview(), c.view(), ws, arch);
  else kernels::gemm(a.cview(), w.cview(), c.view(), ws, arch);
  REQUIRE(ws.used() == 0);
  for (index_t i = 0; i < m; ++i)  // the padding between rows of c is never written
    for (index_t j = n; j < c.stride; ++j) REQUIRE(c.storage[std::size_t(i * c.stride + j)] == before[std::size_t(i * c.stride + j)]);
  return worst_error(c.cview(), ref, bound, accumulate ? &base : nullptr);
}

template <class W>
void check_all_sizes() {
  const index_t sizes[] = {1, 7, 17, 33, 100, 257};
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (index_t m : sizes)
      for (index_t n : sizes)
        for (index_t k : sizes) {
          INFO("m=" << m << " n=" << n << " k=" << k << " threads=" << threads << " dtype=" << dtype_name(dtype_of<W>()));
          REQUIRE(run_gemm<W>(m, n, k, 0, false, simd::default_arch{}) < kTol);
          if (threads == 1 && m * n * k <= 100 * 100 * 100)
            REQUIRE(run_gemm<W>(m, n, k, 0, false, simd::scalar{}) < kTol);
        }
  }
}

}  // namespace

TEST_CASE("gemm f32 weights matches the double reference at odd sizes", "[gemm]") { check_all_sizes<float>(); }
TEST_CASE("gemm f16 weights matches the double reference at odd sizes", "[gemm]") { check_all_sizes<f16>(); }
TEST_CASE("gemm bf16 weights matches the double reference at odd sizes", "[gemm]") { check_all_sizes<bf16>(); }

TEST_CASE("gemm crosses every blocking boundary (k > KC, n > NC, m > MC)", "[gemm]") {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    INFO("threads=" << threads);
    REQUIRE(run_gemm<float>(150, 300, 800, 0, false, simd::default_arch{}) < kTol);
    REQUIRE(run_gemm<bf16>(13, 529, 777, 0, false, simd::default_arch{}) < kTol);
    REQUIRE(run_gemm<f16>(300, 70, 390, 0, false, simd::default_arch{}) < kTol);
  }
}

TEST_CASE("gemm on strided rows (row stride > k) for every weight type", "[gemm]") {
  set_num_threads(2);
  for (index_t m : {1, 3, 7, 33}) {
    INFO("m=" << m);
    REQUIRE(run_gemm<float>(m, 45, 100, 3, false, simd::default_arch{}) < kTol);
    REQUIRE(run_gemm<f16>(m, 45, 100, 5, false, simd::default_arch{}) < kTol);
    REQUIRE(run_gemm<bf16>(m, 45, 100, 16, false, simd::default_arch{}) < kTol);
    REQUIRE(run_gemm<float>(m, 45, 100, 3, false, simd::scalar{}) < kTol);
  }
}

TEST_CASE("gemm_accumulate adds a · wᵀ to c", "[gemm]") {
  set_num_threads(2);
  for (index_t m : {1, 2, 4, 5, 17, 130}) {
    INFO("m=" << m);
    REQUIRE(run_gemm<float>(m, 33, 400, 0, true, simd::default_arch{}) < kTol);
    REQUIRE(run_gemm<bf16>(m, 65, 17, 2, true, simd::default_arch{}) < kTol);
    REQUIRE(run_gemm<f16>(m, 7, 100, 0, true, simd::scalar{}) < kTol);
  }
}

TEST_CASE("gemm default arch agrees with the scalar overload", "[gemm]") {
  set_num_threads(2);
  strided_matrix<float> a(37, 257);
  strided_matrix<bf16> w(100, 257);
  strided_matrix<float> c1(37, 100), c2(37, 100);
  workspace ws(kernels::gemm_workspace_bytes<bf16>(257));
  kernels::gemm(a.cview(), w.cview(), c1.view(), ws);
  kernels::gemm(a.cview(), w.cview(), c2.view(), ws, simd::scalar{});
  REQUIRE(max_rel_err(c1.storage.data(), c2.storage.data(), 37 * 100) < 1e-5);
  REQUIRE(nmse(c1.storage.data(), c2.storage.data(), 37 * 100) < 1e-12);
}

TEST_CASE("gemm rejects mismatched shapes, strided columns and a small workspace", "[gemm]") {
  strided_matrix<float> a(8, 16), w(12, 16), w_bad(12, 15), c(8, 12), c_bad(8, 11), c_bad_rows(7, 12);
  workspace ws(kernels::gemm_workspace_bytes<float>(16));
  REQUIRE_THROWS_AS(kernels::gemm(a.cview(), w_bad.cview(), c.view(), ws), shape_error);
  REQUIRE_THROWS_WITH(kernels::gemm(a.cview(), w_bad.cview(), c.view(), ws), Catch::Contains("gemm") && Catch::Contains("16 != 15"));
  REQUIRE_THROWS_AS(kernels::gemm(a.cview(), w.cview(), c_bad.view(), ws), shape_error);
  REQUIRE_THROWS_AS(kernels::gemm(a.cview(), w.cview(), c_bad_rows.view(), ws), shape_error);
  REQUIRE_THROWS_AS(kernels::gemm(a.cview(), w_bad.cview(), c.view(), ws, simd::scalar{}), shape_error);
  // a transposed view has a column stride != 1
  strided_matrix<float> at(16, 8);
  REQUIRE_THROWS_WITH(kernels::gemm(at.cview().transpose(0, 1), w.cview(), c.view(), ws), Catch::Contains("gemm: a"));
  if constexpr (!simd::is_scalar_v<simd::default_arch>) {  // only the packed kernel (m > gemv_rows_max_m) takes scratch
    workspace tiny(64);
    strided_matrix<float> a_big(kernels::gemv_rows_max_m<> + 1, 16), c_big(kernels::gemv_rows_max_m<> + 1, 12);
    REQUIRE_THROWS_AS(kernels::gemm(a_big.cview(), w.cview(), c_big.view(), tiny), range_error);
    REQUIRE_NOTHROW(kernels::gemm(a.cview(), w.cview(), c.view(), tiny));  // m = 8: gemv_rows, no scratch
  }
  REQUIRE(kernels::gemm_workspace_bytes<f16>(4096, 2) == 2 * kernels::gemm_workspace_bytes<f16>(4096, 1));
}
