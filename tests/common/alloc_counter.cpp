// The global operator new of a test executable that links this file, counting while asked to.
#include "common/alloc_counter.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace tessera::test {
void start_counting_allocations() noexcept {
  g_allocations = 0;
  g_counting = true;
}
long stop_counting_allocations() noexcept {
  g_counting = false;
  return g_allocations.load();
}
}  // namespace tessera::test
