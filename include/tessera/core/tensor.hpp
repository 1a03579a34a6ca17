// tessera/core/tensor.hpp: tensor<T, Rank>, owning, dense, row-major, 64-byte aligned.
//
// A tensor owns its buffer; view() and cview() hand out tensor_views over it. Construction
// zero-fills. Tensors are movable and copyable (a copy is a deep copy).
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>

#include <tessera/config.hpp>
#include <tessera/core/tensor_view.hpp>

namespace tessera {
inline namespace v0 {

namespace detail {
struct aligned_deleter {
  void operator()(void* p) const noexcept { ::operator delete(p, std::align_val_t(buffer_alignment)); }
};

/// Uninitialized, 64-byte aligned storage for n objects of T (T must be trivially copyable).
template <class T>
std::unique_ptr<T[], aligned_deleter> aligned_buffer(index_t n) {
  static_assert(std::is_trivially_copyable_v<T>, "tessera buffers hold trivially copyable types");
  if (n < 0) throw shape_error("aligned_buffer: negative size " + std::to_string(n));
  if (n == 0) return nullptr;
  void* p = ::operator new(static_cast<std::size_t>(n) * sizeof(T), std::align_val_t(buffer_alignment));
  return std::unique_ptr<T[], aligned_deleter>(static_cast<T*>(p));
}
}  // namespace detail

namespace detail {
/// Copies src into dst element by element (same extents; any strides).
template <class U, class T, std::size_t Rank>
void copy_view(const tensor_view<U, Rank>& src, const tensor_view<T, Rank>& dst) {
  expect_extents(dst.extents(), src.extents(), "copy_view");
  if constexpr (Rank == 0) {
    *dst.data() = *src.data();
  } else if constexpr (Rank == 1) {
    for (index_t i = 0; i < src.extent(0); ++i) dst(i) = src(i);
  } else {
    for (index_t i = 0; i < src.extent(0); ++i) copy_view(src[i], dst[i]);
  }
}
}  // namespace detail

template <class T, std::size_t Rank>
class tensor {
  static_assert(!std::is_const_v<T>, "tensor<const T>: use tensor_view<const T> for read-only access");

 public:
  using value_type = T;
  static constexpr std::size_t rank = Rank;

  tensor() = default;

  /// A zero-filled tensor of the given extents.
  explicit tensor(const extents<Rank>& e) : ext_(e), data_(detail::aligned_buffer<T>(numel(e))) {
    for (index_t x : e)
      if (x < 0) throw shape_error("tensor: negative extent in " + to_string(e));
    if (data_) std::memset(static_cast<void*>(data_.get()), 0, sizeof(T) * static_cast<std::size_t>(numel(e)));
  }

  /// A tensor filled with `value`.
  tensor(const extents<Rank>& e, T value) : tensor(e) { std::fill_n(data_.get(), size(), value); }

  tensor(const tensor& o) : tensor(o.ext_) {
    if (size()) std::memcpy(static_cast<void*>(data_.get()), o.data_.get(), sizeof(T) * static_cast<std::size_t>(size()));
  }
  tensor& operator=(const tensor& o) {
    if (this != &o) *this = tensor(o);
    return *this;
  }
  tensor(tensor&&) noexcept = default;
  tensor& operator=(tensor&&) noexcept = default;

  /// A deep copy of any view (strided views are gathered densely).
  template <class U>
  static tensor copy_of(const tensor_view<U, Rank>& v) {
    tensor t(v.extents());
    detail::copy_view(v, t.view());
    return t;
  }

  T* data() noexcept { return data_.get(); }
  const T* data() const noexcept { return data_.get(); }
  const tessera::extents<Rank>& extents() const noexcept { return ext_; }
  index_t extent(std::size_t i) const noexcept { return ext_[i]; }
  index_t size() const noexcept { return numel(ext_); }
  bool empty() const noexcept { return size() == 0; }

  tensor_view<T, Rank> view() noexcept { return {data_.get(), ext_}; }
  tensor_view<const T, Rank> view() const noexcept { return {data_.get(), ext_}; }
  tensor_view<const T, Rank> cview() const noexcept { return {data_.get(), ext_}; }
  operator tensor_view<T, Rank>() noexcept { return view(); }                 // NOLINT
  operator tensor_view<const T, Rank>() const noexcept { return cview(); }    // NOLINT

  template <class... I>
  T& operator()(I... idx) noexcept { return view()(idx...); }
  template <class... I>
  const T& operator()(I... idx) const noexcept { return cview()(idx...); }

  T* begin() noexcept { return data_.get(); }
  T* end() noexcept { return data_.get() + size(); }
  const T* begin() const noexcept { return data_.get(); }
  const T* end() const noexcept { return data_.get() + size(); }

 private:
  tessera::extents<Rank> ext_{};
  std::unique_ptr<T[], detail::aligned_deleter> data_;
};

}  // namespace v0
}  // namespace tessera
