#include <catch2/catch.hpp>

#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>

using namespace tessera;

TEST_CASE("tensor is 64-byte aligned, zero-filled and row-major", "[tensor]") {
  tensor<float, 3> t({2, 3, 5});
  REQUIRE(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
  REQUIRE(t.size() == 30);
  for (float x : t) REQUIRE(x == 0.f);
  t(1, 2, 4) = 7.f;
  REQUIRE(t.data()[1 * 15 + 2 * 5 + 4] == 7.f);
  const auto [b, l, d] = t.extents();
  REQUIRE(b == 2);
  REQUIRE(l == 3);
  REQUIRE(d == 5);
}

TEST_CASE("tensor_view slices, transposes and converts to const", "[tensor_view]") {
  tensor<float, 2> t({4, 6});
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 6; ++j) t(i, j) = float(10 * i + j);
  tensor_view<float, 2> v = t.view();
  auto s = v.slice(1, 2, 5);  // (4, 3), stride 6
  REQUIRE(s.extent(1) == 3);
  REQUIRE(s(3, 0) == 32.f);
  REQUIRE_FALSE(s.is_contiguous());
  REQUIRE(s.rows_contiguous());
  auto tr = v.transpose(0, 1);
  REQUIRE(tr(5, 3) == 35.f);
  REQUIRE_FALSE(tr.rows_contiguous());
  tensor_view<const float, 2> c = v;
  REQUIRE(c(2, 1) == 21.f);
  REQUIRE(v[2](1) == 21.f);
  auto copy = tensor<float, 2>::copy_of(s);
  REQUIRE(copy(1, 2) == 14.f);
  REQUIRE(copy.cview().is_contiguous());
}

TEST_CASE("tensor_view rejects bad shapes with shape_error / range_error", "[tensor_view]") {
  tensor<float, 2> t({4, 6});
  REQUIRE_THROWS_AS(t.view().slice(1, 4, 7), range_error);
  REQUIRE_THROWS_AS(t.view().slice(0, 3, 2), range_error);
  REQUIRE_THROWS_AS(t.view().reshape<2>({5, 5}), shape_error);
  REQUIRE_THROWS_AS(t.view().slice(1, 0, 3).reshape<1>({12}), shape_error);
  REQUIRE_THROWS_AS((tensor_view<float, 1>(nullptr, {3})), shape_error);
  REQUIRE_THROWS_AS((tensor<float, 1>({-1})), shape_error);
  REQUIRE_THROWS_WITH(expect_extents<2>({2, 3}, {2, 4}, "op: weight"), Catch::Contains("op: weight") && Catch::Contains("(2, 4)"));
  auto r = t.view().reshape<3>({2, 2, 6});
  REQUIRE(r(1, 1, 5) == t(3, 5));
}
