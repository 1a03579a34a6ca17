// tessera/core/workspace.hpp: a bump arena so that kernels never allocate.
//
// A model or session owns one workspace sized once (reserve), and kernels take their scratch from
// it. Allocation is a pointer bump; a frame (RAII) gives back everything taken inside it:
//     workspace::frame f(ws);
//     float* scores = ws.alloc<float>(l);       // freed when f goes out of scope
// Asking for more than the reserved capacity is a range_error naming the sizes: a workspace that
// is too small is a bug in whoever sized it, never a hidden allocation.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include <tessera/config.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>

namespace tessera {
inline namespace v0 {

class workspace {
 public:
  workspace() = default;
  explicit workspace(std::size_t bytes) { reserve(bytes); }
  /// A workspace over `bytes` of memory that another owns and keeps alive (64-byte aligned), e.g.
  /// one thread's share of its caller's workspace; it frees nothing.
  workspace(std::byte* memory, std::size_t bytes) noexcept : base_(memory), capacity_(bytes) {}
  workspace(const workspace&) = delete;
  workspace& operator=(const workspace&) = delete;
  workspace(workspace&& o) noexcept
      : buffer_(std::move(o.buffer_)),
        base_(std::exchange(o.base_, nullptr)),
        capacity_(std::exchange(o.capacity_, 0)),
        used_(std::exchange(o.used_, 0)),
        high_water_(std::exchange(o.high_water_, 0)) {}
  workspace& operator=(workspace&& o) noexcept {
    if (this != &o) {
      buffer_ = std::move(o.buffer_);
      base_ = std::exchange(o.base_, nullptr);
      capacity_ = std::exchange(o.capacity_, 0);
      used_ = std::exchange(o.used_, 0);
      high_water_ = std::exchange(o.high_water_, 0);
    }
    return *this;
  }

  /// Grows the arena to at least `bytes` (only when nothing is in use). Allocates; call it at setup.
  void reserve(std::size_t bytes) {
    if (bytes <= capacity_) return;
    if (used_ != 0) throw range_error("workspace::reserve while " + std::to_string(used_) + " bytes are in use");
    buffer_ = detail::aligned_buffer<std::byte>(static_cast<index_t>(round_up(bytes)));
    base_ = buffer_.get();
    capacity_ = round_up(bytes);
  }

  /// n uninitialized, 64-byte aligned elements of T.
  template <class T>
  T* alloc(index_t n) {
    if (n < 0) throw range_error("workspace::alloc: negative count " + std::to_string(n));
    const std::size_t bytes = round_up(static_cast<std::size_t>(n) * sizeof(T));
    if (used_ + bytes > capacity_)
      throw range_error("workspace: asked for " + std::to_string(bytes) + " bytes with " +
                        std::to_string(capacity_ - used_) + " of " + std::to_string(capacity_) +
                        " free; the owner sized it too small");
    T* p = reinterpret_cast<T*>(base_ + used_);
    used_ += bytes;
    if (used_ > high_water_) high_water_ = used_;
    return p;
  }

  /// A dense view of uninitialized scratch.
  template <class T, std::size_t Rank>
  tensor_view<T, Rank> alloc_view(const extents<Rank>& e) {
    return tensor_view<T, Rank>(alloc<T>(numel(e)), e);
  }

  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t used() const noexcept { return used_; }
  /// The most bytes ever in use at once: how large a workspace the caller really needs.
  std::size_t high_water() const noexcept { return high_water_; }

  /// Gives back everything allocated since construction of the frame.
  class frame {
   public:
    explicit frame(workspace& ws) noexcept : ws_(ws), mark_(ws.used_) {}
    ~frame() { ws_.used_ = mark_; }
    frame(const frame&) = delete;
    frame& operator=(const frame&) = delete;

   private:
    workspace& ws_;
    std::size_t mark_;
  };

  /// Bytes a request for n elements of T takes, alignment included: for sizing.
  template <class T>
  static constexpr std::size_t bytes_for(index_t n) noexcept {
    return round_up(static_cast<std::size_t>(n) * sizeof(T));
  }

 private:
  static constexpr std::size_t round_up(std::size_t b) noexcept {
    return (b + buffer_alignment - 1) / buffer_alignment * buffer_alignment;
  }

  std::unique_ptr<std::byte[], detail::aligned_deleter> buffer_;  // null when the memory is borrowed
  std::byte* base_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t used_ = 0;
  std::size_t high_water_ = 0;
};

}  // namespace v0
}  // namespace tessera
