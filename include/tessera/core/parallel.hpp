// tessera/core/parallel.hpp: parallel_for over index ranges, on OpenMP threads.
//
// OpenMP is used so that Eigen's GEMM and our kernels share one pool of threads. The thread
// count is process-wide (set_num_threads); parallel_for splits [begin, end) into contiguous
// ranges, one per thread, and calls f(range_begin, range_end) on each. Kernels receive ranges,
// so they never see thread ids (ggml's ith/nth, passed from outside).
#pragma once

#include <algorithm>

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

/// parallel_for with a grain of 1.
template <class F>
void parallel_for(index_t begin, index_t end, F&& f) {
  parallel_for(begin, end, 1, std::forward<F>(f));
}

}  // namespace v0
}  // namespace tessera
