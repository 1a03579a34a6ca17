#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

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

TEST_CASE("a workspace over borrowed memory hands out that memory only, and moves", "[workspace]") {
  workspace parent(4096);
  workspace::frame f(parent);
  std::byte* share = parent.alloc<std::byte>(1024);
  workspace mine(share, 1024);  // one thread's share of its caller's scratch
  float* a = mine.alloc<float>(100);
  float* b = mine.alloc<float>(100);
  CHECK(reinterpret_cast<std::byte*>(a) == share);
  CHECK(reinterpret_cast<std::byte*>(b) == share + 448);  // 400 bytes rounded up to 64
  CHECK(mine.capacity() == 1024);
  CHECK_THROWS_WITH(mine.alloc<float>(200), Catch::Contains("asked for 832 bytes") && Catch::Contains("128 of 1024 free"));
  workspace moved(std::move(mine));
  CHECK(moved.used() == 896);
  CHECK(mine.capacity() == 0);
  CHECK_THROWS_AS(mine.alloc<float>(1), range_error);  // the moved-from one holds nothing
  CHECK_THROWS_AS(moved.reserve(8192), range_error);  // grows only with nothing in use
  workspace idle(share, 1024);
  idle.reserve(8192);  // then from its own buffer
  CHECK(idle.capacity() >= 8192);
  CHECK(reinterpret_cast<std::byte*>(idle.alloc<float>(1)) != share);
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

TEST_CASE("parallel_for_stealing covers the range exactly once, and a fast thread takes a slow one's work",
          "[parallel]") {
  const int before = num_threads();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (index_t n : {1, 2, 5, 24, 1001}) {
      for (int max_threads : {1, 2, 64}) {
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
        std::atomic<bool> bad_thread{false};
        parallel_for_stealing(3, 3 + n, 8, 2, max_threads, [&](index_t t, index_t lo, index_t hi) {
          if (t < 0 || t >= std::min(threads, max_threads) || hi - lo > 8 || lo >= hi) bad_thread = true;
          for (index_t i = lo; i < hi; ++i) hits[static_cast<std::size_t>(i - 3)]++;
        });
        INFO("threads " << threads << ", n " << n << ", max_threads " << max_threads);
        REQUIRE_FALSE(bad_thread.load());
        for (auto& h : hits) REQUIRE(h.load() == 1);
      }
    }
  }
  // thread 0 stalls on its first piece: thread 1 must finish thread 0's share from the back
  set_num_threads(2);
  std::vector<std::atomic<int>> by(200);
  parallel_for_stealing(0, 200, 10, 2, 2, [&](index_t t, index_t lo, index_t hi) {
    if (t == 0 && lo == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    for (index_t i = lo; i < hi; ++i) by[static_cast<std::size_t>(i)] = static_cast<int>(t) + 1;
  });
  int stolen = 0;
  for (std::size_t i = 10; i < 100; ++i) stolen += by[i].load() == 2;
  for (auto& b : by) REQUIRE(b.load() != 0);
  CHECK(stolen > 0);
  set_num_threads(before);
}
