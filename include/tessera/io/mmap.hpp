// tessera/io/mmap.hpp: read-only file mappings (POSIX mmap, with a plain-read fallback).
//
// A mapped_file is the bytes of one file, immutable for its lifetime. Opening maps the file and
// reads nothing: pages come in when a tensor is first touched. When mmap is unavailable (a pipe,
// a file system that refuses it) the file is read once into an aligned buffer instead; a pipe is
// read up to `max_stream_bytes` (then an io_error), and devices (/dev/zero, a terminal) are refused,
// so that a stream without end cannot exhaust memory. Tests and writers can also wrap bytes they
// already hold (from_bytes). Readers share one mapping through a std::shared_ptr<const
// mapped_file>, so views into it stay valid as long as any owner lives. read_text_file reads a
// small text file (JSON) the same bounded way.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tessera/config.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/tensor.hpp>

namespace tessera {
inline namespace v0 {
namespace io {

/// The read-only bytes of one file: mapped, read, or given.
class mapped_file {
 public:
  enum class mode { mapped, read, memory };

  mapped_file() = default;
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& o) noexcept { swap(o); }
  mapped_file& operator=(mapped_file&& o) noexcept {
    if (this != &o) {
      mapped_file tmp(std::move(o));
      swap(tmp);
    }
    return *this;
  }
  ~mapped_file() { release(); }

  /// Bytes read at most from a pipe (a regular file of any size is mapped, not read).
  static constexpr std::size_t max_stream_bytes = std::size_t{1} << 30;

  /// Maps `path` read-only; throws io_error naming the file when it cannot be opened, is a
  /// directory or a device, or is a pipe longer than `max_stream` bytes.
  /// `allow_mmap = false` forces the plain-read path (tested; used where mmap is refused).
  static mapped_file open(const std::filesystem::path& path, bool allow_mmap = true,
                          std::size_t max_stream = max_stream_bytes) {
    mapped_file f;
    f.name_ = path.string();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw io_error(f.name_ + ": cannot open: " + std::strerror(errno));
    struct fd_closer {
      int fd;
      ~fd_closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw io_error(f.name_ + ": cannot stat: " + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) throw io_error(f.name_ + ": is a directory, expected a file");
    if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode))
      throw io_error(f.name_ + ": is a " + file_kind(st.st_mode) + ", expected a regular file (or a pipe)");
    if (S_ISREG(st.st_mode)) {
      f.size_ = static_cast<std::size_t>(st.st_size);
      if (f.size_ == 0) {
        f.mode_ = mode::read;
        return f;
      }
      if (allow_mmap) {
        if (const void* p = map_aligned(fd, f.size_)) {
          f.data_ = static_cast<const std::byte*>(p);
          f.mode_ = mode::mapped;
          return f;
        }
      }
    }
    f.read_all(fd, max_stream);
    return f;
  }

  /// Wraps bytes held in memory (tests, freshly written files); `name` appears in messages.
  static mapped_file from_bytes(std::vector<std::byte> bytes, std::string name) {
    mapped_file f;
    f.name_ = std::move(name);
    f.size_ = bytes.size();
    f.owned_ = std::move(bytes);
    f.owned_.shrink_to_fit();
    f.data_ = f.owned_.data();
    f.mode_ = mode::memory;
    return f;
  }

  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  /// The path (or given name) used in every error message about this file.
  const std::string& name() const noexcept { return name_; }
  mode how() const noexcept { return mode_; }

  /// Gives the whole pages inside [p, p + n) of the mapping back to the kernel (MADV_DONTNEED):
  /// they leave the process's resident set, stay in the page cache, and are read from it again if
  /// touched. For bytes the program has copied (io::weight_map::interleaved) and will not
  /// read again. Nothing for a file read into memory or a range outside the file.
  void drop_resident(const std::byte* p, std::size_t n) const noexcept {
    if (mode_ != mode::mapped || !data_ || p < data_ || n > size_ || p - data_ > static_cast<std::ptrdiff_t>(size_ - n))
      return;
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const std::uintptr_t lo = (reinterpret_cast<std::uintptr_t>(p) + page - 1) / page * page;
    const std::uintptr_t hi = (reinterpret_cast<std::uintptr_t>(p) + n) / page * page;
    if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
  }

  /// Files of at least this many bytes are mapped at a multiple of it and asked for huge pages.
  static constexpr std::size_t huge_page_bytes = std::size_t{2} << 20;

 private:
  /// mmap of the whole file, read-only; nullptr when refused. A file of huge_page_bytes or more is
  /// placed at a 2 MiB boundary and advised MADV_HUGEPAGE: pages the kernel then reads in for it
  /// go to the page cache as 2 MiB folios (on file systems with large folios, e.g. ext4 and xfs
  /// on Linux 6.x) and are mapped by one TLB entry each instead of 512. Decode streams every
  /// weight once per token, and with 4 KiB pages it waited on page walks: the Llama-768 f16 step
  /// 17 -> 14 ms for one sequence, 26.5 -> 22.8 ms for eight, on Zen 3 (docs/gemm.md, "Huge
  /// pages"). Pages a file already has in the page cache keep their size; a kernel without
  /// huge pages for files ignores the advice.
  static const void* map_aligned(int fd, std::size_t size) noexcept {
    if (size < huge_page_bytes) {
      void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      return p == MAP_FAILED ? nullptr : p;
    }
    // reserve size + 2 MiB of address space, map the file at its first 2 MiB boundary, give back
    // the rest of the reservation
    const std::size_t span = size + huge_page_bytes;
    void* r = ::mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) return nullptr;
    auto* base = static_cast<std::byte*>(r);
    const std::uintptr_t at = (reinterpret_cast<std::uintptr_t>(base) + huge_page_bytes - 1) & ~(huge_page_bytes - 1);
    auto* aligned = reinterpret_cast<std::byte*>(at);
    void* p = ::mmap(aligned, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
      ::munmap(base, span);
      return nullptr;
    }
    if (aligned > base) ::munmap(base, static_cast<std::size_t>(aligned - base));
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::byte* end = aligned + (size + page - 1) / page * page;  // the mapping covers whole pages
    if (end < base + span) ::munmap(end, static_cast<std::size_t>(base + span - end));
#if defined(MADV_HUGEPAGE)
    ::madvise(aligned, size, MADV_HUGEPAGE);
#endif
    return aligned;
  }

  static std::string file_kind(mode_t m) {
    if (S_ISCHR(m)) return "character device";
    if (S_ISBLK(m)) return "block device";
    if (S_ISSOCK(m)) return "socket";
    return "special file";
  }

  void read_all(int fd, std::size_t max_stream) {
    // Regular file refused by mmap: one read of the known size. Otherwise (pipe): grow as we go,
    // up to max_stream bytes.
    std::vector<std::byte> buf(size_);
    std::size_t got = 0;
    const std::size_t limit = size_ ? size_ : max_stream;
    for (;;) {
      if (got == buf.size()) {
        if (got >= limit) {
          if (size_) break;  // a regular file that grew while we read: its size at open
          std::byte probe;
          const ssize_t more = ::read(fd, &probe, 1);
          if (more == 0) break;
          throw io_error(name_ + ": more than " + std::to_string(max_stream) + " bytes from a pipe; give a regular file");
        }
        buf.resize(std::min(limit, buf.empty() ? std::size_t{65536} : buf.size() * 2));
      }
      const ssize_t n = ::read(fd, buf.data() + got, buf.size() - got);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw io_error(name_ + ": read failed: " + std::strerror(errno));
      }
      if (n == 0) break;
      got += static_cast<std::size_t>(n);
    }
    buf.resize(got);
    // Copy into 64-byte aligned storage so that aligned views work as with a mapping.
    size_ = got;
    aligned_ = tessera::detail::aligned_buffer<std::byte>(static_cast<index_t>(got));
    if (got) std::memcpy(aligned_.get(), buf.data(), got);
    data_ = aligned_.get();
    mode_ = mode::read;
  }

  void release() noexcept {
    if (mode_ == mode::mapped && data_) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }

  void swap(mapped_file& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(mode_, o.mode_);
    std::swap(name_, o.name_);
    std::swap(owned_, o.owned_);
    std::swap(aligned_, o.aligned_);
    // owned_ moved with its buffer: the pointer stays valid (vector move keeps the allocation).
  }

  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  mode mode_ = mode::memory;
  std::string name_;
  std::vector<std::byte> owned_;
  std::unique_ptr<std::byte[], tessera::detail::aligned_deleter> aligned_;
};

/// Opens `path` into a shared mapping (what readers keep).
inline std::shared_ptr<const mapped_file> map_file(const std::filesystem::path& path, bool allow_mmap = true) {
  return std::make_shared<const mapped_file>(mapped_file::open(path, allow_mmap));
}

/// The bytes of a small text file (config.json, tokenizer.json, a prompt) as a string; io_error
/// naming the file when it cannot be read, is not a regular file or a pipe, or holds more than
/// `max_bytes` (checked against the size before reading a regular file).
inline std::string read_text_file(const std::filesystem::path& path, std::size_t max_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) > max_bytes)
    throw io_error(path.string() + ": " + std::to_string(st.st_size) + " bytes, more than the " + std::to_string(max_bytes) +
                   " this file may have");
  const mapped_file f = mapped_file::open(path, true, max_bytes);
  return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

/// Anonymous memory for data a decode step streams whole (weights rewritten at load:
/// io::weight_map::interleaved), handed out in pieces from regions of at least 32 MiB mapped
/// at a 2 MiB boundary and advised MADV_HUGEPAGE, so that the pieces sit on 2 MiB pages where the
/// kernel allows it (transparent huge pages "always" or "madvise"). On 4 KiB pages a stream of
/// weights waits on a page walk every 4 KiB (docs/gemm.md, "Huge pages"), and a piece allocated
/// on its own (aligned_buffer) gets 4 KiB pages under "madvise". Pieces live until the arena
/// does; allocate is thread-safe.
class huge_page_arena {
 public:
  huge_page_arena() = default;
  huge_page_arena(const huge_page_arena&) = delete;
  huge_page_arena& operator=(const huge_page_arena&) = delete;
  huge_page_arena(huge_page_arena&& o) noexcept : regions_(std::move(o.regions_)), used_(o.used_) { o.regions_.clear(); }
  huge_page_arena& operator=(huge_page_arena&& o) noexcept {
    if (this != &o) {
      release();
      regions_ = std::move(o.regions_);
      used_ = o.used_;
      o.regions_.clear();
    }
    return *this;
  }
  ~huge_page_arena() { release(); }

  /// n bytes (at least 1), 64-byte aligned, uninitialized; std::bad_alloc when the system has no
  /// memory to map.
  std::byte* allocate(std::size_t n) {
    const std::lock_guard<std::mutex> lock(*mutex_);
    n = (std::max<std::size_t>(n, 1) + 63) / 64 * 64;
    if (regions_.empty() || regions_.back().size - used_ < n) {
      const std::size_t size = (std::max(n, region_bytes) + mapped_file::huge_page_bytes - 1) /
                               mapped_file::huge_page_bytes * mapped_file::huge_page_bytes;
      regions_.push_back({map_region(size), size});
      used_ = 0;
    }
    std::byte* p = regions_.back().base + used_;
    used_ += n;
    return p;
  }

  /// Bytes mapped (the regions, used or not).
  std::size_t mapped_bytes() const noexcept {
    std::size_t b = 0;
    for (const auto& r : regions_) b += r.size;
    return b;
  }

  static constexpr std::size_t region_bytes = std::size_t{32} << 20;

 private:
  struct region {
    std::byte* base;
    std::size_t size;
  };

  /// size bytes (a multiple of 2 MiB) at a 2 MiB boundary: map size + 2 MiB, unmap the ends.
  static std::byte* map_region(std::size_t size) {
    const std::size_t span = size + mapped_file::huge_page_bytes;
    void* r = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) throw std::bad_alloc();
    auto* base = static_cast<std::byte*>(r);
    const std::uintptr_t at = (reinterpret_cast<std::uintptr_t>(base) + mapped_file::huge_page_bytes - 1) &
                              ~(mapped_file::huge_page_bytes - 1);
    auto* aligned = reinterpret_cast<std::byte*>(at);
    if (aligned > base) ::munmap(base, static_cast<std::size_t>(aligned - base));
    if (aligned + size < base + span) ::munmap(aligned + size, static_cast<std::size_t>(base + span - (aligned + size)));
#if defined(MADV_HUGEPAGE)
    ::madvise(aligned, size, MADV_HUGEPAGE);
#endif
    return aligned;
  }

  void release() noexcept {
    for (const auto& r : regions_) ::munmap(r.base, r.size);
    regions_.clear();
  }

  std::vector<region> regions_;
  std::size_t used_ = 0;  // bytes handed out from the last region
  std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();
};

namespace detail {

/// Bounds-checked little-endian cursor over a byte range; every failure is a format_error that
/// names the file and what was being read. Never reads past `size`.
class byte_reader {
 public:
  byte_reader(const std::byte* data, std::size_t size, const std::string& file) noexcept
      : data_(data), size_(size), file_(file) {}

  std::size_t pos() const noexcept { return pos_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t remaining() const noexcept { return size_ - pos_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw format_error(file_ + ": " + what + " (at byte " + std::to_string(pos_) + " of " +
                       std::to_string(size_) + ")");
  }

  void need(std::size_t n, const char* what) const {
    if (n > size_ - pos_) fail(std::string("truncated: need ") + std::to_string(n) + " bytes for " + what);
  }

  template <class T>
  T read(const char* what) {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string_view read_bytes(std::size_t n, const char* what) {
    need(n, what);
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  void seek(std::size_t p, const char* what) {
    if (p > size_) fail(std::string("offset ") + std::to_string(p) + " past the end for " + what);
    pos_ = p;
  }

 private:
  const std::byte* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  const std::string& file_;
};

}  // namespace detail
}  // namespace io
}  // namespace v0
}  // namespace tessera
