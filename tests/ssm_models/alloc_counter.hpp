// Counts operator new calls in this test executable (alloc_counter.cpp replaces the global
// operator new): for "decoding a token allocates nothing".
#pragma once

namespace tessera::test {
/// Starts counting allocations from zero, on every thread.
void start_counting_allocations() noexcept;
/// Stops counting and returns how many allocations were made since start_counting_allocations.
long stop_counting_allocations() noexcept;
}  // namespace tessera::test
