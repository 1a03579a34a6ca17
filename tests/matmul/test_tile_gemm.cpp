#include <catch2/catch.hpp>

#include <tessera/kernels/tile_gemm.hpp>
#include <tessera/simd/vec.hpp>

#include "matmul_util.hpp"

using namespace tessera;
using namespace tessera::test;

namespace {

/// c (m × n) (+)= a · b through kernels::tile_gemm against a double reference, a read row-major
/// (lda = k + 3) or transposed in place (a stored (k, m + 5)), b and c in aligned padded rows.
template <class Arch>
void check_tile_gemm(index_t m, index_t n, index_t k, bool transposed, bool accumulate, kernels::tile_triangle tri) {
  const index_t ld = n + 16;  // a multiple of every vector width: rows stay 64-byte aligned
  const index_t a_ld = transposed ? m + 5 : k + 3;
  const auto a = random_vector((transposed ? k : m) * a_ld);
  const auto b_src = random_vector(k * ld);
  const auto c0 = random_vector(m * ld);
  tensor<float, 2> b({k, ld}), c({m, ld});
  std::copy(b_src.begin(), b_src.end(), b.data());
  std::copy(c0.begin(), c0.end(), c.data());
  std::vector<float> a_used(a.begin(), a.end());
  const auto a_at = [&](index_t i, index_t p) -> float& { return transposed ? a_used[p * a_ld + i] : a_used[i * a_ld + p]; };
  if (tri == kernels::tile_triangle::lower_a)  // a lower-triangular a: zero above its diagonal
    for (index_t i = 0; i < m; ++i)
      for (index_t p = i + 1; p < k; ++p) a_at(i, p) = 0.f;
  kernels::tile_gemm<Arch>(m, n, k, a_used.data(), transposed ? 1 : a_ld, transposed ? a_ld : 1, b.data(), ld, c.data(),
                           ld, accumulate, tri);
  double worst = 0;
  for (index_t i = 0; i < m; ++i)
    // lower_c promises the columns up to the diagonal only
    for (index_t j = 0; j < (tri == kernels::tile_triangle::lower_c ? std::min(n, i + 1) : n); ++j) {
      double want = accumulate ? c0[i * ld + j] : 0.0, bound = std::abs(want);
      for (index_t p = 0; p < k; ++p) {
        const double t = static_cast<double>(a_at(i, p)) * b(p, j);
        want += t;
        bound += std::abs(t);
      }
      worst = std::max(worst, std::abs(c(i, j) - want) / (bound + 1e-30));
    }
  INFO("m=" << m << " n=" << n << " k=" << k << " transposed=" << transposed << " accumulate=" << accumulate
            << " tri=" << static_cast<int>(tri));
  REQUIRE(worst < 2e-6);
}

}  // namespace

TEST_CASE("tile_gemm matches a double reference: odd row counts, 1-5 vectors of columns, both a layouts, triangles",
          "[kernels]") {
  using arch = simd::default_arch;
  if constexpr (simd::is_scalar_v<arch>) {
    SUCCEED("tile_gemm is the vector path; a scalar build has no vector arch to test");
  } else {
    constexpr index_t W = simd::lanes_v<arch>;
    for (index_t m : {1, 5, 6, 7, 13, 64})
      for (index_t nv : {1, 2, 3, 4, 5})
        for (index_t k : {1, 7, 64, 100})
          for (bool transposed : {false, true})
            for (bool accumulate : {false, true})
              for (auto tri : {kernels::tile_triangle::none, kernels::tile_triangle::lower_c,
                               kernels::tile_triangle::lower_a})
                check_tile_gemm<arch>(m, nv * W, k, transposed, accumulate, tri);
  }
}
