// tessera/core/tensor_view.hpp: tensor_view<T, Rank>, a strided non-owning view.
//
// A view is a pointer, extents and strides (in elements, outermost first). It never owns memory.
// tensor_view<const T, Rank> is the read-only form; a tensor_view<T> converts to it implicitly.
// Offsets, strides and casts live here, never in model code (STYLE.md rule 6).
#pragma once

#include <cassert>
#include <string>
#include <type_traits>
#include <utility>

#include <tessera/config.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/extents.hpp>

namespace tessera {
inline namespace v0 {

template <class T, std::size_t Rank>
class tensor_view {
 public:
  using value_type = std::remove_const_t<T>;
  using element_type = T;
  static constexpr std::size_t rank = Rank;

  tensor_view() = default;

  /// A dense row-major view of `ext` starting at `data`.
  tensor_view(T* data, const extents<Rank>& ext) : data_(data), ext_(ext), str_(row_major_strides(ext)) {
    check_non_negative();
  }

  /// A strided view; strides are in elements and may be any non-negative values.
  tensor_view(T* data, const extents<Rank>& ext, const extents<Rank>& strides)
      : data_(data), ext_(ext), str_(strides) {
    check_non_negative();
  }

  /// tensor_view<T> -> tensor_view<const T>.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  tensor_view(const tensor_view<U, Rank>& other)  // NOLINT(google-explicit-constructor)
      : data_(other.data()), ext_(other.extents()), str_(other.strides()) {}

  T* data() const noexcept { return data_; }
  const tessera::extents<Rank>& extents() const noexcept { return ext_; }
  const tessera::extents<Rank>& strides() const noexcept { return str_; }
  index_t extent(std::size_t i) const noexcept { return ext_[i]; }
  index_t stride(std::size_t i) const noexcept { return str_[i]; }
  index_t size() const noexcept { return numel(ext_); }
  bool empty() const noexcept { return size() == 0; }

  /// True when the elements are dense and row-major (strides of row_major_strides(extents)).
  bool is_contiguous() const noexcept {
    index_t acc = 1;
    for (std::size_t i = Rank; i-- > 0;) {
      if (ext_[i] != 1 && str_[i] != acc) return false;
      acc *= ext_[i];
    }
    return true;
  }

  /// True when the innermost dimension is dense (stride 1): rows can be handed to vector kernels.
  bool rows_contiguous() const noexcept { return Rank == 0 || ext_[Rank - 1] <= 1 || str_[Rank - 1] == 1; }

  /// Element access; bounds are asserted in debug builds.
  template <class... I>
  T& operator()(I... idx) const noexcept {
    static_assert(sizeof...(I) == Rank, "tensor_view: wrong number of indices");
    index_t off = 0;
    std::size_t d = 0;
    ((assert(static_cast<index_t>(idx) >= 0 && static_cast<index_t>(idx) < ext_[d]),
      off += static_cast<index_t>(idx) * str_[d], ++d),
     ...);
    return data_[off];
  }

  /// The (Rank-1)-view at index i of the outermost dimension.
  tensor_view<T, Rank - 1> operator[](index_t i) const noexcept requires(Rank > 1) {
    assert(i >= 0 && i < ext_[0]);
    tessera::extents<Rank - 1> e{}, s{};
    for (std::size_t d = 1; d < Rank; ++d) {
      e[d - 1] = ext_[d];
      s[d - 1] = str_[d];
    }
    return tensor_view<T, Rank - 1>(data_ + i * str_[0], e, s);
  }

  /// Pointer to row i of a rank-2 view (a convenience for kernels on contiguous rows).
  T* row(index_t i) const noexcept requires(Rank == 2) {
    assert(i >= 0 && i < ext_[0]);
    return data_ + i * str_[0];
  }

  /// The sub-range [begin, end) along dimension `dim`; throws range_error when out of bounds.
  tensor_view slice(std::size_t dim, index_t begin, index_t end) const {
    if (dim >= Rank || begin < 0 || end < begin || end > ext_[dim])
      throw range_error("tensor_view::slice: [" + std::to_string(begin) + ", " + std::to_string(end) +
                        ") on dimension " + std::to_string(dim) + " of a view of extents " +
                        to_string(ext_));
    tessera::extents<Rank> e = ext_;
    e[dim] = end - begin;
    return tensor_view(data_ + begin * str_[dim], e, str_);
  }

  /// Swap two dimensions (no copy).
  tensor_view transpose(std::size_t a, std::size_t b) const noexcept {
    tessera::extents<Rank> e = ext_, s = str_;
    std::swap(e[a], e[b]);
    std::swap(s[a], s[b]);
    return tensor_view(data_, e, s);
  }

  /// The same elements seen with new extents; the view must be contiguous.
  template <std::size_t NewRank>
  tensor_view<T, NewRank> reshape(const tessera::extents<NewRank>& e) const {
    if (!is_contiguous() || numel(e) != size())
      throw shape_error("tensor_view::reshape: cannot view " + to_string(ext_) + " as " + to_string(e) +
                        (is_contiguous() ? " (element counts differ)" : " (view is not contiguous)"));
    return tensor_view<T, NewRank>(data_, e);
  }

 private:
  void check_non_negative() const {
    for (std::size_t i = 0; i < Rank; ++i)
      if (ext_[i] < 0 || str_[i] < 0) throw shape_error("tensor_view: negative extent or stride in " + to_string(ext_));
    if (data_ == nullptr && numel(ext_) != 0) throw shape_error("tensor_view: null data for extents " + to_string(ext_));
  }

  T* data_ = nullptr;
  tessera::extents<Rank> ext_{};
  tessera::extents<Rank> str_{};
};

template <class T, std::size_t Rank>
using cview = tensor_view<const T, Rank>;

/// A dense view of a pointer: make_view(p, {l, d_model}).
template <class T, std::size_t Rank>
tensor_view<T, Rank> make_view(T* data, const extents<Rank>& e) {
  return tensor_view<T, Rank>(data, e);
}

/// Throws shape_error unless `got` equals `want`; `what` names the operand ("rms_norm: weight").
template <std::size_t Rank>
inline void expect_extents(const extents<Rank>& got, const extents<Rank>& want, const char* what) {
  if (got != want)
    throw shape_error(std::string(what) + ": expected extents " + to_string(want) + ", got " + to_string(got));
}

/// Throws shape_error unless `a == b`; `what` names the relation ("linear: x columns vs weight columns").
inline void expect_equal(index_t a, index_t b, const char* what) {
  if (a != b) throw shape_error(std::string(what) + ": " + std::to_string(a) + " != " + std::to_string(b));
}

/// Throws shape_error unless the innermost stride of `v` is 1.
template <class T, std::size_t Rank>
inline void expect_rows_contiguous(const tensor_view<T, Rank>& v, const char* what) {
  if (!v.rows_contiguous())
    throw shape_error(std::string(what) + ": innermost dimension must have stride 1 (extents " +
                      to_string(v.extents()) + ")");
}

/// An operand's name in an error message, in parts ("op", "op_form: what"), formatted only when a
/// check fails: shape checks run on every decoded token and must not allocate when they pass.
struct check_name {
  const char* op;
  const char* form = nullptr;  // appended as "_form"
  const char* what = nullptr;  // appended as ": what"
  std::string str() const {
    std::string s(op);
    if (form) (s += '_') += form;
    if (what) (s += ": ") += what;
    return s;
  }
};

template <std::size_t Rank>
inline void expect_extents(const extents<Rank>& got, const extents<Rank>& want, const check_name& name) {
  if (got != want) expect_extents(got, want, name.str().c_str());
}

inline void expect_equal(index_t a, index_t b, const check_name& name) {
  if (a != b) expect_equal(a, b, name.str().c_str());
}

template <class T, std::size_t Rank>
inline void expect_rows_contiguous(const tensor_view<T, Rank>& v, const check_name& name) {
  if (!v.rows_contiguous()) expect_rows_contiguous(v, name.str().c_str());
}

}  // namespace v0
}  // namespace tessera
