// tessera/attention/kv_cache.hpp: a per-layer key/value cache with a fixed capacity, or a ring
// buffer of a sliding window.
//
//   kv_cache(capacity, n_kv_heads, head_dim)          linear cache: holds up to `capacity` tokens
//   kv_cache(capacity, n_kv_heads, head_dim, window)  ring cache of a sliding window: holds the
//                                                     last `window + rollback` tokens in that many
//                                                     slots and accepts any number of tokens;
//                                                     memory stays flat however long decoding runs
//                                                     (capacity is ignored)
//   append(k, v)   k, v: (n, n_kv_heads, head_dim); the tokens at positions size() .. size()+n-1.
//                  A linear cache throws range_error when size() + n > capacity.
//   size()         tokens seen so far = position of the next token
//   truncate(n)    rollback to n tokens (n <= size()). A ring cache can roll back only while the
//                  keys the next query needs are still stored: range_error otherwise (give the
//                  constructor `rollback` > 0 slots of slack for speculative decoding).
//   keys(), values()   (size(), n_kv_heads, head_dim) views, linear caches only
//   segments(out)      the stored tokens as at most two runs of consecutive positions
//                      (the ring wraps once), oldest first: what the attention kernels read.
//
// Element type (the constructor's last argument): f32, or f16, which halves the memory; append
// rounds to f16 and the attention kernels widen each tile of keys and values to f32 in registers
// or scratch as they read it (runs carry k16/v16 views instead of k/v then).
//
// Layout: storage is head-major, (n_kv_heads, slots, head_dim), so the keys of one kv head are
// contiguous and decode streams them at full bandwidth (token-major rows sit n_kv_heads x head_dim
// floats apart: a new 4 KiB page per key, which neither the prefetchers nor L1's sets handle).
// keys(), values() and segments() show it as the (n, n_kv_heads, head_dim) views the attention
// kernels take, with strides (head_dim, slots x head_dim, 1); GQA/MQA: the kernels index the
// shared kv head, nothing is repeated. The class is a value: copying it snapshots the state
// (session snapshot/restore).
#pragma once

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>

#include <tessera/core/dtype.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>

namespace tessera {
inline namespace v0 {
namespace attention {

/// A run of cached tokens at consecutive positions pos0, pos0 + 1, ...: k, v of an f32 cache, or
/// k16, v16 of an f16 cache (the other pair is empty).
struct kv_run {
  tensor_view<const float, 3> k;  // (n, n_kv_heads, head_dim)
  tensor_view<const float, 3> v;  // (n, n_kv_heads, head_dim)
  index_t pos0 = 0;
  tensor_view<const f16, 3> k16;  // (n, n_kv_heads, head_dim)
  tensor_view<const f16, 3> v16;
};

class kv_cache {
 public:
  kv_cache() = default;

  /// `reserve`: tokens of storage allocated now (negative: all of it); the storage grows
  /// geometrically with use up to slots().
  kv_cache(index_t capacity, index_t n_kv_heads, index_t head_dim, std::optional<index_t> window = {},
           index_t rollback = 0, index_t reserve = -1, dtype element = dtype::f32)
      : capacity_(capacity), n_kv_heads_(n_kv_heads), head_dim_(head_dim), window_(window), half_(element == dtype::f16) {
    if (element != dtype::f32 && element != dtype::f16)
      throw config_error("kv_cache: element type must be f32 or f16, got " + std::string(dtype_name(element)));
    if (n_kv_heads < 1) throw range_error("kv_cache: n_kv_heads must be >= 1, got " + std::to_string(n_kv_heads));
    if (head_dim < 1) throw range_error("kv_cache: head_dim must be >= 1, got " + std::to_string(head_dim));
    if (rollback < 0) throw range_error("kv_cache: rollback must be >= 0, got " + std::to_string(rollback));
    if (window) {
      if (*window < 1) throw range_error("kv_cache: window must be >= 1, got " + std::to_string(*window));
      slots_ = *window + rollback;
    } else {
      if (capacity < 0) throw range_error("kv_cache: capacity must be >= 0, got " + std::to_string(capacity));
      slots_ = capacity;
    }
    allocate(reserve < 0 ? slots_ : std::min(reserve, slots_));
  }

  /// A copy holds only the stored tokens (a session snapshot copies what is used, not the capacity).
  kv_cache(const kv_cache& o)
      : capacity_(o.capacity_), n_kv_heads_(o.n_kv_heads_), head_dim_(o.head_dim_), slots_(o.slots_),
        window_(o.window_), half_(o.half_), size_(o.size_), lo_(o.lo_) {
    allocate(std::min(o.size_, o.slots_));
    copy_stored(o);
  }
  kv_cache& operator=(const kv_cache& o) {
    if (this == &o) return *this;
    const bool fits = n_kv_heads_ == o.n_kv_heads_ && head_dim_ == o.head_dim_ && slots_ == o.slots_ &&
                      half_ == o.half_ && alloc_ >= std::min(o.size_, o.slots_);
    capacity_ = o.capacity_, n_kv_heads_ = o.n_kv_heads_, head_dim_ = o.head_dim_, slots_ = o.slots_;
    window_ = o.window_, half_ = o.half_, size_ = o.size_, lo_ = o.lo_;
    if (!fits) allocate(std::min(o.size_, o.slots_));
    copy_stored(o);
    return *this;
  }
  kv_cache(kv_cache&&) noexcept = default;
  kv_cache& operator=(kv_cache&&) noexcept = default;

  index_t size() const noexcept { return size_; }
  index_t capacity() const noexcept { return capacity_; }
  /// Rows of storage: capacity for a linear cache, window + rollback for a ring.
  index_t slots() const noexcept { return slots_; }
  std::optional<index_t> window() const noexcept { return window_; }
  bool is_ring() const noexcept { return window_.has_value(); }
  index_t n_kv_heads() const noexcept { return n_kv_heads_; }
  index_t head_dim() const noexcept { return head_dim_; }
  /// f32 or f16.
  dtype element() const noexcept { return half_ ? dtype::f16 : dtype::f32; }
  /// The oldest position still stored.
  index_t first_position() const noexcept { return std::max(lo_, size_ - slots_); }
  /// Bytes of storage held now (it grows with use up to slots() tokens).
  std::size_t memory_bytes() const noexcept {
    return 2 * static_cast<std::size_t>(alloc_ * n_kv_heads_ * head_dim_) * (half_ ? sizeof(f16) : sizeof(float));
  }
  /// Tokens of storage allocated now.
  index_t allocated() const noexcept { return alloc_; }

  /// Throws range_error unless n more tokens fit (always true for a ring).
  void check_room(index_t n, const char* what) const {
    if (!window_ && size_ + n > capacity_)
      throw range_error(std::string(what) + ": kv_cache overflow: " + std::to_string(size_) + " tokens + " +
                        std::to_string(n) + " new > capacity " + std::to_string(capacity_));
  }

  /// Appends the tokens at positions size() .. size() + n - 1.  k, v: (n, n_kv_heads, head_dim).
  void append(tensor_view<const float, 3> k, tensor_view<const float, 3> v) {
    const auto [n, kv_heads, dim] = k.extents();
    expect_extents(k.extents(), {n, n_kv_heads_, head_dim_}, "kv_cache::append: k (n, n_kv_heads, head_dim)");
    expect_extents(v.extents(), {n, n_kv_heads_, head_dim_}, "kv_cache::append: v (n, n_kv_heads, head_dim)");
    (void)kv_heads;
    (void)dim;
    check_room(n, "kv_cache::append");
    grow_for(size_ + n);
    const index_t first = window_ ? std::max<index_t>(0, n - slots_) : 0;  // a ring keeps the last slots
    for (index_t t = first; t < n; ++t) {
      const index_t slot = (size_ + t) % slots_;  // no wrap before the storage is whole (grow_for)
      if (half_) {
        copy_token(k[t], k16_.view().transpose(0, 1)[slot]);
        copy_token(v[t], v16_.view().transpose(0, 1)[slot]);
      } else {
        copy_token(k[t], k_.view().transpose(0, 1)[slot]);
        copy_token(v[t], v_.view().transpose(0, 1)[slot]);
      }
    }
    size_ += n;
    lo_ = std::max(lo_, size_ - slots_);
  }

  /// Whether truncate(n) can succeed (a ring keeps only window + rollback tokens).
  bool can_truncate(index_t n) const noexcept {
    if (n < 0 || n > size_) return false;
    return !window_ || first_position() <= std::max<index_t>(0, n - *window_ + 1);
  }

  /// Rolls back to n tokens.
  void truncate(index_t n) {
    if (n < 0 || n > size_)
      throw range_error("kv_cache::truncate: n = " + std::to_string(n) + " outside [0, " + std::to_string(size_) + "]");
    if (window_) {
      const index_t needed = std::max<index_t>(0, n - *window_ + 1);
      if (first_position() > needed)
        throw range_error("kv_cache::truncate: cannot roll back a window ring from " + std::to_string(size_) +
                          " to " + std::to_string(n) + " tokens: position " + std::to_string(needed) +
                          " was overwritten (oldest stored: " + std::to_string(first_position()) +
                          "); construct the cache with more rollback slots");
    }
    size_ = n;
    if (n == 0) lo_ = 0;
  }

  void clear() noexcept {
    size_ = 0;
    lo_ = 0;
  }

  /// (size(), n_kv_heads, head_dim): the cached keys of a linear f32 cache.
  tensor_view<const float, 3> keys() const {
    check_linear("kv_cache::keys");
    return tokens(k_).slice(0, 0, size_);
  }
  /// (size(), n_kv_heads, head_dim): the cached values of a linear f32 cache.
  tensor_view<const float, 3> values() const {
    check_linear("kv_cache::values");
    return tokens(v_).slice(0, 0, size_);
  }

  /// Fills out[0..r) with the stored tokens as runs of consecutive positions, oldest first;
  /// returns r (0, 1 or 2).
  int segments(kv_run out[2]) const {
    const index_t lo = first_position();
    if (size_ == lo) return 0;
    if (!window_) {
      out[0] = run(0, size_, 0);
      return 1;
    }
    const index_t s0 = lo % slots_;
    const index_t count = size_ - lo;
    const index_t first_len = std::min(count, slots_ - s0);
    out[0] = run(s0, s0 + first_len, lo);
    if (first_len == count) return 1;
    out[1] = run(0, count - first_len, lo + first_len);
    return 2;
  }

 private:
  // Slots [s0, s1) as a run whose first token is at position pos0.
  kv_run run(index_t s0, index_t s1, index_t pos0) const {
    if (half_) return {{}, {}, pos0, tokens(k16_).slice(0, s0, s1), tokens(v16_).slice(0, s0, s1)};
    return {tokens(k_).slice(0, s0, s1), tokens(v_).slice(0, s0, s1), pos0, {}, {}};
  }

  // Storage for `tokens` slots (head-major), uninitialized beyond what copy_stored writes.
  void allocate(index_t tokens) {
    alloc_ = std::max<index_t>(tokens, 0);
    if (half_) {
      k16_ = tensor<f16, 3>({n_kv_heads_, alloc_, head_dim_});
      v16_ = tensor<f16, 3>({n_kv_heads_, alloc_, head_dim_});
    } else {
      k_ = tensor<float, 3>({n_kv_heads_, alloc_, head_dim_});
      v_ = tensor<float, 3>({n_kv_heads_, alloc_, head_dim_});
    }
  }

  // Room for positions up to `needed` - 1: doubles the storage (at least 64 tokens), up to slots_;
  // a ring takes its whole storage before it wraps.
  void grow_for(index_t needed) {
    if (alloc_ >= slots_ || needed <= alloc_) return;
    const index_t target = needed > slots_ ? slots_ : std::min(slots_, std::max({needed, 2 * alloc_, index_t{64}}));
    const auto grow = [&](auto& k_store, auto& v_store) {
      using T = typename std::remove_reference_t<decltype(k_store)>::value_type;
      tensor<T, 3> k({n_kv_heads_, target, head_dim_}), v({n_kv_heads_, target, head_dim_});
      for (index_t g = 0; g < n_kv_heads_ && size_ > 0; ++g) {  // size_ <= alloc_ < slots_: no wrap yet
        std::memcpy(&k(g, 0, 0), &k_store(g, 0, 0), static_cast<std::size_t>(size_ * head_dim_) * sizeof(T));
        std::memcpy(&v(g, 0, 0), &v_store(g, 0, 0), static_cast<std::size_t>(size_ * head_dim_) * sizeof(T));
      }
      k_store = std::move(k), v_store = std::move(v);
    };
    if (half_) grow(k16_, v16_);
    else grow(k_, v_);
    alloc_ = target;
  }

  // The stored tokens of o into this storage (same slot numbering and element type).
  void copy_stored(const kv_cache& o) {
    const index_t lo = o.first_position();
    const auto copy = [&](auto& k_store, auto& v_store, const auto& k_from, const auto& v_from) {
      using T = typename std::remove_reference_t<decltype(k_store)>::value_type;
      for (index_t pos = lo; pos < o.size_; ++pos) {
        const index_t slot = pos % o.slots_;
        for (index_t g = 0; g < n_kv_heads_; ++g) {
          std::memcpy(&k_store(g, slot, 0), &k_from(g, slot, 0), static_cast<std::size_t>(head_dim_) * sizeof(T));
          std::memcpy(&v_store(g, slot, 0), &v_from(g, slot, 0), static_cast<std::size_t>(head_dim_) * sizeof(T));
        }
      }
    };
    if (half_) copy(k16_, v16_, o.k16_, o.v16_);
    else copy(k_, v_, o.k_, o.v_);
  }

  void check_linear(const char* what) const {
    if (window_) throw range_error(std::string(what) + ": a window ring has no contiguous view; use segments()");
    if (half_) throw range_error(std::string(what) + ": an f16 cache has no f32 view; use segments()");
  }
  /// (slots, n_kv_heads, head_dim) view of head-major storage.
  template <class T>
  static tensor_view<const T, 3> tokens(const tensor<T, 3>& t) {
    return t.cview().transpose(0, 1);
  }
  static void copy_token(tensor_view<const float, 2> src, tensor_view<float, 2> dst) {
    const index_t kv_heads = src.extent(0), dim = src.extent(1);
    for (index_t g = 0; g < kv_heads; ++g) {
      if (src.stride(1) == 1) std::memcpy(&dst(g, 0), &src(g, 0), static_cast<std::size_t>(dim) * sizeof(float));
      else
        for (index_t e = 0; e < dim; ++e) dst(g, e) = src(g, e);
    }
  }
  static void copy_token(tensor_view<const float, 2> src, tensor_view<f16, 2> dst) {  // rounds to f16
    const index_t kv_heads = src.extent(0), dim = src.extent(1);
    for (index_t g = 0; g < kv_heads; ++g)
      for (index_t e = 0; e < dim; ++e) dst(g, e) = f16(src(g, e));
  }

  index_t capacity_ = 0, n_kv_heads_ = 0, head_dim_ = 0, slots_ = 0;
  index_t alloc_ = 0;   // slots allocated now (<= slots_)
  std::optional<index_t> window_;
  bool half_ = false;   // f16 storage (k16_, v16_) instead of f32 (k_, v_)
  index_t size_ = 0;
  index_t lo_ = 0;  // the oldest position whose slot has not been reused since (rollback bound)
  tensor<float, 3> k_;  // (n_kv_heads, slots, head_dim)
  tensor<float, 3> v_;  // (n_kv_heads, slots, head_dim)
  tensor<f16, 3> k16_, v16_;
};

}  // namespace attention
}  // namespace v0
}  // namespace tessera
