// A tiny consumer of tessera: normalizes one row and checks the result.
#include <cmath>
#include <cstdio>

#include <tessera/core/core.hpp>
#include <tessera/ops/norm.hpp>

int main() {
  using namespace tessera;
  tensor<float, 2> x({1, 4});
  tensor<float, 1> w({4}, 2.f);
  for (index_t i = 0; i < 4; ++i) x(0, i) = float(i + 1);  // mean(x^2) = 7.5
  tensor<float, 2> y({1, 4});
  ops::rms_norm(x.cview(), w.cview(), y.view(), 0.f);
  const float want = 2.f * 4.f / std::sqrt(7.5f);
  std::printf("tessera %d.%d.%d, arch %s: rms_norm(x)[3] = %g (want %g)\n", TESSERA_VERSION_MAJOR,
              TESSERA_VERSION_MINOR, TESSERA_VERSION_PATCH, simd::arch_name<simd::default_arch>(), y(0, 3), want);
  return std::abs(y(0, 3) - want) < 1e-5f ? 0 : 1;
}
