// tessera/core/parallel.hpp: parallel_for over index ranges, on OpenMP threads.
//
// OpenMP is used so that Eigen's GEMM and our kernels share one pool of threads. The thread
// count is process-wide (set_num_threads); parallel_for splits [begin, end) into contiguous
// ranges, one per thread, and calls f(range_begin, range_end) on each. Kernels receive ranges,
// so they never see thread ids (ggml's ith/nth, passed from outside).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include <tessera/config.hpp>
#include <tessera/core/error.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace tessera {
inline namespace v0 {

/// Sets the number of threads for tessera's kernels and Eigen's GEMM (n >= 1).
inline void set_num_threads(int n) {
  if (n < 1) throw range_error("set_num_threads: thread count must be >= 1, got " + std::to_string(n));
#if defined(_OPENMP)
  omp_set_num_threads(n);
#endif
}

/// The number of threads parallel_for uses.
inline int num_threads() noexcept {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// True inside a parallel region (nested parallel_for calls then run serially).
inline bool in_parallel() noexcept {
#if defined(_OPENMP)
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

/// Calls f(lo, hi) on disjoint ranges covering [begin, end), in parallel. Ranges hold at least
/// `grain` indices (except the last), so tiny loops stay on one thread.
namespace detail {
/// Threads for n indices in grains of `grain` (>= 1): at most one per grain, 1 when nested.
inline int threads_for(index_t n, index_t grain) noexcept {
  if (in_parallel()) return 1;
  return static_cast<int>(std::min<index_t>(num_threads(), (n + grain - 1) / grain));
}
}  // namespace detail

template <class F>
void parallel_for(index_t begin, index_t end, index_t grain, F&& f) {
  const index_t n = end - begin;
  if (n <= 0) return;
  const int threads = detail::threads_for(n, std::max<index_t>(grain, 1));
  if (threads <= 1) {
    f(begin, end);
    return;
  }
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
  {
    const index_t t = omp_get_thread_num();
    const index_t nt = omp_get_num_threads();
    const index_t lo = begin + n * t / nt;
    const index_t hi = begin + n * (t + 1) / nt;
    if (lo < hi) f(lo, hi);
  }
#else
  f(begin, end);
#endif
}

/// Calls f(lo, hi) on the chunks [begin + i * grain, ...) of [begin, end), handed out one at a
/// time to whichever thread is free (OpenMP's dynamic schedule). For memory-bound loops on a
/// shared machine: a thread that is descheduled for a while takes fewer chunks instead of
/// making the others wait at the barrier. f must not depend on which thread runs a chunk.
template <class F>
void parallel_for_dynamic(index_t begin, index_t end, index_t grain, F&& f) {
  const index_t n = end - begin;
  if (n <= 0) return;
  grain = std::max<index_t>(grain, 1);
  const int threads = detail::threads_for(n, grain);
  if (threads <= 1) {
    f(begin, end);
    return;
  }
#if defined(_OPENMP)
  const index_t chunks = (n + grain - 1) / grain;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (index_t i = 0; i < chunks; ++i) f(begin + i * grain, std::min(end, begin + (i + 1) * grain));
#else
  f(begin, end);
#endif
}

/// Calls f(thread, lo, hi) on pieces of [begin, end) on up to max_threads threads (one index at
/// least each). Each thread owns a contiguous share, as in parallel_for, and takes it from the
/// front in pieces of at most `piece`; a thread whose share is done then takes pieces of at most
/// `steal` from the back of the other shares, so a thread that is descheduled for a while (a
/// shared VM's vCPU) does not make the others wait at the join. When the threads run at the same
/// speed nothing is stolen and the pieces are those of a static split. `thread` (0 .. threads-1)
/// indexes per-thread scratch. Allocates nothing.
inline constexpr int max_stealing_threads = 64;

template <class F>
void parallel_for_stealing(index_t begin, index_t end, index_t piece, index_t steal, int max_threads, F&& f) {
  const index_t n = end - begin;
  if (n <= 0) return;
  piece = std::max<index_t>(piece, 1);
  steal = std::max<index_t>(steal, 1);
  const int threads = in_parallel() ? 1
                                    : static_cast<int>(std::min<index_t>(
                                          {index_t{num_threads()}, index_t{max_threads}, n, index_t{max_stealing_threads}}));
  if (threads <= 1 || n >= (index_t{1} << 31)) {  // (offsets are packed in 32 bits)
    for (index_t lo = begin; lo < end; lo += piece) f(index_t{0}, lo, std::min(end, lo + piece));
    return;
  }
#if defined(_OPENMP)
  // share t: [front, back) offsets from begin, packed in one word so that the owner (front) and
  // thieves (back) claim pieces with one compare-and-swap each
  struct alignas(64) share {
    std::atomic<std::uint64_t> range;
  };
  share shares[max_stealing_threads];
  const auto pack = [](index_t front, index_t back) {
    return (static_cast<std::uint64_t>(back) << 32) | static_cast<std::uint64_t>(front);
  };
  for (int t = 0; t < threads; ++t)
    shares[t].range.store(pack(n * t / threads, n * (t + 1) / threads), std::memory_order_relaxed);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    // own share, from the front
    for (;;) {
      std::uint64_t cur = shares[t].range.load(std::memory_order_relaxed);
      index_t front, take;
      do {
        front = static_cast<index_t>(cur & 0xffffffffu);
        const index_t back = static_cast<index_t>(cur >> 32);
        take = std::min(piece, back - front);
        if (take <= 0) break;
      } while (!shares[t].range.compare_exchange_weak(cur, pack(front + take, static_cast<index_t>(cur >> 32)),
                                                       std::memory_order_relaxed));
      if (take <= 0) break;
      f(static_cast<index_t>(t), begin + front, begin + front + take);
    }
    // the others' shares, from the back, the fullest first
    for (;;) {
      int victim = -1;
      index_t most = 0;
      for (int v = 0; v < threads; ++v) {
        const std::uint64_t cur = shares[v].range.load(std::memory_order_relaxed);
        const index_t left = static_cast<index_t>(cur >> 32) - static_cast<index_t>(cur & 0xffffffffu);
        if (left > most) most = left, victim = v;
      }
      if (victim < 0) break;
      std::uint64_t cur = shares[victim].range.load(std::memory_order_relaxed);
      const index_t front = static_cast<index_t>(cur & 0xffffffffu), back = static_cast<index_t>(cur >> 32);
      const index_t take = std::min(steal, back - front);
      if (take <= 0) continue;
      if (shares[victim].range.compare_exchange_weak(cur, pack(front, back - take), std::memory_order_relaxed))
        f(static_cast<index_t>(t), begin + back - take, begin + back);
    }
  }
#else
  f(index_t{0}, begin, end);
#endif
}

/// parallel_for with a grain of 1.
template <class F>
void parallel_for(index_t begin, index_t end, F&& f) {
  parallel_for(begin, end, 1, std::forward<F>(f));
}

}  // namespace v0
}  // namespace tessera
