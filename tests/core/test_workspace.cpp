#include <catch2/catch.hpp>

#include <atomic>

#include <tessera/core/parallel.hpp>
#include <tessera/core/workspace.hpp>

using namespace tessera;

TEST_CASE("workspace hands out aligned scratch and frames give it back", "[workspace]") {
  workspace ws(1024);
  {
    workspace::frame f(ws);
    float* a = ws.alloc<float>(3);
    float* b = ws.alloc<float>(5);
    REQUIRE(reinterpret_cast<std::uintptr_t>(a) % 64 == 0);
    REQUIRE(reinterpret_cast<std::uintptr_t>(b) % 64 == 0);
    REQUIRE(ws.used() == 128);
  }
  REQUIRE(ws.used() == 0);
  REQUIRE(ws.high_water() == 128);
  REQUIRE_THROWS_AS(ws.alloc<float>(1000), range_error);
  REQUIRE_THROWS_WITH(ws.alloc<float>(1000), Catch::Contains("4032 bytes") || Catch::Contains("asked for"));
}

TEST_CASE("parallel_for covers the range exactly once", "[parallel]") {
  set_num_threads(2);
  std::vector<std::atomic<int>> hits(1001);
  parallel_for(0, 1001, 7, [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) hits[std::size_t(i)]++;
  });
  for (auto& h : hits) REQUIRE(h.load() == 1);
  REQUIRE_THROWS_AS(set_num_threads(0), range_error);
}
