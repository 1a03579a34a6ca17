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
// Element type (the constructor's last argument, kv_element): f32; f16, which halves the memory;
// or q8_0, ggml's 8-bit blocks (32 values and an f16 scale in 34 bytes: 0.27x of f32, what
// llama.cpp's `--cache-type-k/v q8_0` stores; head_dim must be a multiple of 32). append rounds
// to the element type (q8_0: core/blocks.hpp's quantize, bit-identical to ggml's reference) and
// the attention kernels widen each tile of keys and values to f32 in scratch as they read it
// (runs carry k16/v16 or kq/vq views instead of k/v then).
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
#include <variant>

#include <tessera/core/blocks.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>

namespace tessera {
inline namespace v0 {
namespace attention {

/// What a kv_cache stores its keys and values as.
enum class kv_element : std::uint8_t {
  f32,
  f16,   // half the memory of f32
  q8_0,  // ggml's q8_0 blocks: 34 bytes per 32 values (head_dim a multiple of 32)
};

constexpr std::string_view kv_element_name(kv_element e) noexcept {
  switch (e) {
    case kv_element::f32: return "f32";
    case kv_element::f16: return "f16";
    case kv_element::q8_0: return "q8_0";
  }
  return "?";
}

/// Bytes that one head's keys (or values) of one token take: head_dim values as `e`.
constexpr std::size_t kv_row_bytes(kv_element e, index_t head_dim) noexcept {
  const auto n = static_cast<std::size_t>(head_dim);
  switch (e) {
    case kv_element::f32: return n * sizeof(float);
    case kv_element::f16: return n * sizeof(f16);
    case kv_element::q8_0: return (n + 31) / 32 * sizeof(block_q8_0);
  }
  return 0;
}

/// A run of cached tokens at consecutive positions pos0, pos0 + 1, ...: k, v of an f32 cache,
/// k16, v16 of an f16 cache, or kq, vq of a q8_0 cache (the other pairs are empty).
struct kv_run {
  tensor_view<const float, 3> k;  // (n, n_kv_heads, head_dim)
  tensor_view<const float, 3> v;  // (n, n_kv_heads, head_dim)
  index_t pos0 = 0;
  tensor_view<const f16, 3> k16;  // (n, n_kv_heads, head_dim)
  tensor_view<const f16, 3> v16;
  kv_element element = kv_element::f32;
  tensor_view<const block_q8_0, 3> kq;  // (n, n_kv_heads, head_dim / 32)
  tensor_view<const block_q8_0, 3> vq;
};

class kv_cache {
 public:
  kv_cache() = default;

  /// `reserve`: tokens of storage allocated now (negative: all of it); the storage grows
  /// geometrically with use up to slots().
  kv_cache(index_t capacity, index_t n_kv_heads, index_t head_dim, std::optional<index_t> window = {},
           index_t rollback = 0, index_t reserve = -1, kv_element element = kv_element::f32)
      : capacity_(capacity), n_kv_heads_(n_kv_heads), head_dim_(head_dim), window_(window), element_(element) {
    if (n_kv_heads < 1) throw range_error("kv_cache: n_kv_heads must be >= 1, got " + std::to_string(n_kv_heads));
    if (head_dim < 1) throw range_error("kv_cache: head_dim must be >= 1, got " + std::to_string(head_dim));
    if (element == kv_element::q8_0 && head_dim % block_q8_0::block_size != 0)
      throw config_error("kv_cache: a q8_0 cache needs head_dim a multiple of 32, got " + std::to_string(head_dim) +
                         " (use f16 for this model)");
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
        window_(o.window_), element_(o.element_), size_(o.size_), lo_(o.lo_) {
    allocate(std::min(o.size_, o.slots_));
    copy_stored(o);
  }
  kv_cache& operator=(const kv_cache& o) {
    if (this == &o) return *this;
    const bool fits = n_kv_heads_ == o.n_kv_heads_ && head_dim_ == o.head_dim_ && slots_ == o.slots_ &&
                      element_ == o.element_ && alloc_ >= std::min(o.size_, o.slots_);
    capacity_ = o.capacity_, n_kv_heads_ = o.n_kv_heads_, head_dim_ = o.head_dim_, slots_ = o.slots_;
    window_ = o.window_, element_ = o.element_, size_ = o.size_, lo_ = o.lo_;
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
  /// f32, f16 or q8_0.
  kv_element element() const noexcept { return element_; }
  /// The oldest position still stored.
  index_t first_position() const noexcept { return std::max(lo_, size_ - slots_); }
  /// Bytes of storage held now (it grows with use up to slots() tokens).
  std::size_t memory_bytes() const noexcept {
    return 2 * static_cast<std::size_t>(alloc_ * n_kv_heads_) * kv_row_bytes(element_, head_dim_);
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
    const index_t n = k.extent(0);  // (not a structured binding: clang 14 cannot capture one in a lambda)
    expect_extents(k.extents(), {n, n_kv_heads_, head_dim_}, "kv_cache::append: k (n, n_kv_heads, head_dim)");
    expect_extents(v.extents(), {n, n_kv_heads_, head_dim_}, "kv_cache::append: v (n, n_kv_heads, head_dim)");
    check_room(n, "kv_cache::append");
    grow_for(size_ + n);
    const index_t first = window_ ? std::max<index_t>(0, n - slots_) : 0;  // a ring keeps the last slots
    std::visit(
        [&](auto& store) {
          for (index_t t = first; t < n; ++t) {
            const index_t slot = (size_ + t) % slots_;  // no wrap before the storage is whole (grow_for)
            copy_token(k[t], store.k.view().transpose(0, 1)[slot]);
            copy_token(v[t], store.v.view().transpose(0, 1)[slot]);
          }
        },
        store_);
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
    return tokens(std::get<store<float>>(store_).k).slice(0, 0, size_);
  }
  /// (size(), n_kv_heads, head_dim): the cached values of a linear f32 cache.
  tensor_view<const float, 3> values() const {
    check_linear("kv_cache::values");
    return tokens(std::get<store<float>>(store_).v).slice(0, 0, size_);
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
  /// Keys and values as T, head-major: (n_kv_heads, slots, entries per head), entries being
  /// head_dim floats or halves, or head_dim / 32 blocks.
  template <class T>
  struct store {
    tensor<T, 3> k, v;
  };

  // Slots [s0, s1) as a run whose first token is at position pos0.
  kv_run run(index_t s0, index_t s1, index_t pos0) const {
    kv_run r;
    r.pos0 = pos0;
    r.element = element_;
    std::visit(
        [&](const auto& st) {
          using T = typename std::remove_reference_t<decltype(st.k)>::value_type;
          auto k = tokens(st.k).slice(0, s0, s1), v = tokens(st.v).slice(0, s0, s1);
          if constexpr (std::is_same_v<T, float>) r.k = k, r.v = v;
          else if constexpr (std::is_same_v<T, f16>) r.k16 = k, r.v16 = v;
          else r.kq = k, r.vq = v;
        },
        store_);
    return r;
  }

  // Entries of one head of one token: head_dim values, or head_dim / 32 blocks.
  index_t entries() const noexcept { return element_ == kv_element::q8_0 ? head_dim_ / block_q8_0::block_size : head_dim_; }

  // Storage for `tokens` slots (head-major), uninitialized beyond what copy_stored writes.
  void allocate(index_t tokens) {
    alloc_ = std::max<index_t>(tokens, 0);
    const auto make = [&]<class T>(std::type_identity<T>) {
      store_ = store<T>{tensor<T, 3>({n_kv_heads_, alloc_, entries()}), tensor<T, 3>({n_kv_heads_, alloc_, entries()})};
    };
    switch (element_) {
      case kv_element::f32: make(std::type_identity<float>{}); break;
      case kv_element::f16: make(std::type_identity<f16>{}); break;
      case kv_element::q8_0: make(std::type_identity<block_q8_0>{}); break;
    }
  }

  // Room for positions up to `needed` - 1: doubles the storage (at least 64 tokens), up to slots_;
  // a ring takes its whole storage before it wraps.
  void grow_for(index_t needed) {
    if (alloc_ >= slots_ || needed <= alloc_) return;
    const index_t target = needed > slots_ ? slots_ : std::min(slots_, std::max({needed, 2 * alloc_, index_t{64}}));
    std::visit(
        [&](auto& st) {
          using T = typename std::remove_reference_t<decltype(st.k)>::value_type;
          const index_t width = entries();
          tensor<T, 3> k({n_kv_heads_, target, width}), v({n_kv_heads_, target, width});
          for (index_t g = 0; g < n_kv_heads_ && size_ > 0; ++g) {  // size_ <= alloc_ < slots_: no wrap yet
            std::memcpy(&k(g, 0, 0), &st.k(g, 0, 0), static_cast<std::size_t>(size_ * width) * sizeof(T));
            std::memcpy(&v(g, 0, 0), &st.v(g, 0, 0), static_cast<std::size_t>(size_ * width) * sizeof(T));
          }
          st.k = std::move(k), st.v = std::move(v);
        },
        store_);
    alloc_ = target;
  }

  // The stored tokens of o into this storage (same slot numbering and element type).
  void copy_stored(const kv_cache& o) {
    const index_t lo = o.first_position();
    std::visit(
        [&](auto& st) {
          using S = std::remove_reference_t<decltype(st)>;
          using T = typename std::remove_reference_t<decltype(st.k)>::value_type;
          const S& from = std::get<S>(o.store_);
          const auto bytes = static_cast<std::size_t>(entries()) * sizeof(T);
          for (index_t pos = lo; pos < o.size_; ++pos) {
            const index_t slot = pos % o.slots_;
            for (index_t g = 0; g < n_kv_heads_; ++g) {
              std::memcpy(&st.k(g, slot, 0), &from.k(g, slot, 0), bytes);
              std::memcpy(&st.v(g, slot, 0), &from.v(g, slot, 0), bytes);
            }
          }
        },
        store_);
  }

  void check_linear(const char* what) const {
    if (window_) throw range_error(std::string(what) + ": a window ring has no contiguous view; use segments()");
    if (element_ != kv_element::f32)
      throw range_error(std::string(what) + ": an " + std::string(kv_element_name(element_)) +
                        " cache has no f32 view; use segments()");
  }
  /// (slots, n_kv_heads, entries) view of head-major storage.
  template <class T>
  static tensor_view<const T, 3> tokens(const tensor<T, 3>& t) {
    return t.cview().transpose(0, 1);
  }
  // One token's (n_kv_heads, head_dim) into its slot: copied, rounded to f16, or quantized to q8_0.
  template <class T>
  static void copy_token(tensor_view<const float, 2> src, tensor_view<T, 2> dst) {
    const index_t kv_heads = src.extent(0), dim = src.extent(1);
    for (index_t g = 0; g < kv_heads; ++g) {
      if constexpr (std::is_same_v<T, block_q8_0>) {
        float row[block_q8_0::block_size];
        for (index_t b = 0; b < dim / block_q8_0::block_size; ++b) {
          for (index_t e = 0; e < block_q8_0::block_size; ++e) row[e] = src(g, b * block_q8_0::block_size + e);
          quantize(row, &dst(g, b), 1);
        }
      } else if constexpr (std::is_same_v<T, float>) {
        if (src.stride(1) == 1) std::memcpy(&dst(g, 0), &src(g, 0), static_cast<std::size_t>(dim) * sizeof(float));
        else
          for (index_t e = 0; e < dim; ++e) dst(g, e) = src(g, e);
      } else {
        for (index_t e = 0; e < dim; ++e) dst(g, e) = T(src(g, e));
      }
    }
  }

  index_t capacity_ = 0, n_kv_heads_ = 0, head_dim_ = 0, slots_ = 0;
  index_t alloc_ = 0;   // slots allocated now (<= slots_)
  std::optional<index_t> window_;
  kv_element element_ = kv_element::f32;
  index_t size_ = 0;
  index_t lo_ = 0;  // the oldest position whose slot has not been reused since (rollback bound)
  std::variant<store<float>, store<f16>, store<block_q8_0>> store_;
};

}  // namespace attention

using attention::kv_element;

}  // namespace v0
}  // namespace tessera
