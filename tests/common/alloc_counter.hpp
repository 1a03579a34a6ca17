// Counts operator new calls in a test executable that links alloc_counter.cpp (it replaces the
// global operator new): for "decoding a token allocates nothing".
#pragma once

namespace tessera::test {
/// Starts counting allocations from zero, on every thread.
void start_counting_allocations() noexcept;
/// Stops counting and returns how many allocations were made since start_counting_allocations.
long stop_counting_allocations() noexcept;
}  // namespace tessera::test
