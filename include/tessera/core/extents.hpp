// tessera/core/extents.hpp: extents and row-major strides.
//
// Extents are outermost first, as in PyTorch: a (b, l, d_model) tensor has extents {b, l, d_model}.
// They are a std::array so that structured bindings name them (STYLE.md rule 5):
//     const auto [b, l, d_model] = x.extents();
// Except where a lambda (parallel_for, for_rows) or an OpenMP region uses them: clang 14 cannot
// capture a structured binding, and clang 16 still refuses one in an OpenMP region. There, name
// them one by one:
//     const index_t n = x.extent(0), d = x.extent(1);
#pragma once

#include <array>
#include <string>

#include <tessera/config.hpp>

namespace tessera {
inline namespace v0 {

template <std::size_t Rank>
using extents = std::array<index_t, Rank>;

/// Number of elements: the product of the extents (1 for rank 0).
template <std::size_t Rank>
constexpr index_t numel(const extents<Rank>& e) noexcept {
  index_t n = 1;
  for (index_t x : e) n *= x;
  return n;
}

/// Strides of a dense row-major (last index fastest) layout, in elements.
template <std::size_t Rank>
constexpr extents<Rank> row_major_strides(const extents<Rank>& e) noexcept {
  extents<Rank> s{};
  index_t acc = 1;
  for (std::size_t i = Rank; i-- > 0;) {
    s[i] = acc;
    acc *= e[i];
  }
  return s;
}

/// "(2, 3, 4)": extents as they appear in error messages.
template <std::size_t Rank>
inline std::string to_string(const extents<Rank>& e) {
  std::string s = "(";
  for (std::size_t i = 0; i < Rank; ++i) {
    if (i) s += ", ";
    s += std::to_string(e[i]);
  }
  return s + ")";
}

}  // namespace v0
}  // namespace tessera
