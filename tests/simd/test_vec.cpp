#include <catch2/catch.hpp>

#include <tessera/simd/vec.hpp>

#include "common/test_util.hpp"

using namespace tessera;

namespace {
template <class Arch>
void check_vec_helpers() {
  if constexpr (simd::is_scalar_v<Arch>) {
    REQUIRE(simd::lanes_v<Arch> == 1);
  } else {
    constexpr index_t L = simd::lanes_v<Arch>;
    std::vector<float> src(L), dst(L + 1, -7.f);
    for (index_t i = 0; i < L; ++i) src[i] = float(i + 1);
    for (index_t n = 0; n < L; ++n) {
      const auto v = simd::load_partial<Arch>(src.data(), n, 100.f);
      REQUIRE(simd::reduce_add<Arch>(v) == Approx(n * (n + 1) / 2 + 100.f * (L - n)));
      REQUIRE(simd::reduce_max<Arch>(v) == (n < L ? 100.f : float(L)));
      simd::store_partial<Arch>(dst.data(), v, n);
      for (index_t i = 0; i < n; ++i) REQUIRE(dst[i] == src[i]);
      for (index_t i = n; i <= L; ++i) REQUIRE(dst[i] == -7.f);
    }
    // widened loads of f16 / bf16
    std::vector<f16> h(L);
    std::vector<bf16> b(L);
    for (index_t i = 0; i < L; ++i) {
      h[i] = f16(0.25f * float(i) - 1.f);
      b[i] = bf16(-0.5f * float(i) + 3.f);
    }
    alignas(64) float out[64];
    simd::load_widened<Arch>(h.data()).store_aligned(out);
    for (index_t i = 0; i < L; ++i) REQUIRE(out[i] == to_float(h[i]));
    simd::load_widened<Arch>(b.data()).store_aligned(out);
    for (index_t i = 0; i < L; ++i) REQUIRE(out[i] == to_float(b[i]));
    simd::load_widened_partial<Arch>(b.data(), 3).store_aligned(out);
    for (index_t i = 0; i < L; ++i) REQUIRE(out[i] == (i < 3 ? to_float(b[i]) : 0.f));
  }
}
}  // namespace

TEST_CASE("partial loads and stores touch only n lanes, reductions", "[simd][vec]") {
  check_vec_helpers<simd::default_arch>();
  STATIC_REQUIRE(simd::arch_tag<simd::scalar>);
  STATIC_REQUIRE(simd::arch_tag<simd::default_arch>);
  STATIC_REQUIRE_FALSE(simd::arch_tag<tensor_view<float, 2>>);
}
