// tessera/io/gguf_writer.hpp: GGUF v3 writer, tensor data streamed to the file.
//
// Writes the layout io/gguf.hpp reads (and llama.cpp's ggml gguf.cpp and gguf-py's GGUFWriter
// write): "GGUF" u32 3 u64 n_tensors u64 n_kv, the key/values, the tensor infos (name, n_dims,
// ne innermost first, ggml type, offset in the data section), zeros to `general.alignment`
// (default 32), then each tensor's bytes followed by zeros to the alignment (the last one too).
//
//   io::gguf_writer w("out.gguf");                 // opens out.gguf.tmp now: io_error if it can't
//   w.set_string("general.architecture", "llama");  // every value type, arrays, nested arrays
//   w.add_tensor("token_embd.weight", io::ggml_type::q8_0, {d_model, vocab});  // ne, innermost first
//   ...                                            // every tensor is declared before any data
//   w.write_tensor_data("token_embd.weight", bytes);  // in the order added; may come in pieces
//   w.finish();                                    // renames out.gguf.tmp to out.gguf
//
// Memory: the header (metadata and tensor infos) is composed in memory when the first data byte
// is written; tensor bytes go straight to the file, so a caller that quantizes a tensor a few
// rows at a time writes a 7B model in a few MB. Everything is checked when it is given, so that
// no file io::gguf_file would refuse comes out: value types and integer ranges, bools 0 or 1,
// array nesting (at most 8 deep), a power-of-two u32 `general.alignment`, duplicate keys and
// tensor names, rank 1..4, dims >= 0, a row length that is not a multiple of the type's block
// size (shape_error), every tensor's bytes complete at finish(). (Not checked: the reader's
// 1 GiB bound on parsed metadata, gguf_file::max_metadata_bytes.) Tensor names are at most 63
// bytes (llama.cpp's GGML_MAX_NAME - 1: its reader refuses longer ones); arrays of arrays are
// valid GGUF (gguf-py writes them, io::gguf_file reads them) but llama.cpp's reader refuses
// them, so a file meant for llama.cpp should not use them. The file is written
// as <path>.tmp and renamed at finish(); a writer destroyed before finish() (an exception, a
// refused value) removes it, so a half-written file never takes the path's name. Write
// failures (a full disk, a path in a folder that does not exist) are io_errors naming the path.
#pragma once

#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include <tessera/config.hpp>
#include <tessera/core/error.hpp>
#include <tessera/io/gguf.hpp>

namespace tessera {
inline namespace v0 {
namespace io {

namespace detail {

static_assert(std::endian::native == std::endian::little, "the GGUF writer writes the host's bytes: little-endian only");

/// Appends little-endian scalars and GGUF strings to a byte buffer (the header).
struct gguf_bytes {
  std::vector<std::byte> data;

  template <class T>
  void put(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    data.insert(data.end(), p, p + sizeof(T));
  }
  void put_string(std::string_view s) {
    put<std::uint64_t>(s.size());
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    data.insert(data.end(), p, p + s.size());
  }
};

/// The integer range of a GGUF integer type (u64 values are held bitwise in an int64_t: any).
inline bool gguf_int_fits(gguf_type t, std::int64_t v) noexcept {
  switch (t) {
    case gguf_type::u8: return v >= 0 && v <= 0xFF;
    case gguf_type::i8: return v >= -128 && v <= 127;
    case gguf_type::u16: return v >= 0 && v <= 0xFFFF;
    case gguf_type::i16: return v >= -32768 && v <= 32767;
    case gguf_type::u32: return v >= 0 && v <= 0xFFFFFFFFll;
    case gguf_type::i32: return v >= std::numeric_limits<std::int32_t>::min() && v <= std::numeric_limits<std::int32_t>::max();
    case gguf_type::boolean: return v == 0 || v == 1;
    default: return true;  // u64 (bitwise), i64
  }
}

/// Writes one scalar of type t from v (integers and bools from v.i, floats from v.f, strings v.s).
inline void put_gguf_scalar(gguf_bytes& b, gguf_type t, std::int64_t i, double f, const std::string* s) {
  switch (t) {
    case gguf_type::u8: b.put(static_cast<std::uint8_t>(i)); break;
    case gguf_type::i8: b.put(static_cast<std::int8_t>(i)); break;
    case gguf_type::u16: b.put(static_cast<std::uint16_t>(i)); break;
    case gguf_type::i16: b.put(static_cast<std::int16_t>(i)); break;
    case gguf_type::u32: b.put(static_cast<std::uint32_t>(i)); break;
    case gguf_type::i32: b.put(static_cast<std::int32_t>(i)); break;
    case gguf_type::u64: b.put(static_cast<std::uint64_t>(i)); break;
    case gguf_type::i64: b.put(i); break;
    case gguf_type::f32: b.put(static_cast<float>(f)); break;
    case gguf_type::f64: b.put(f); break;
    case gguf_type::boolean: b.put(static_cast<std::uint8_t>(i)); break;
    case gguf_type::string: b.put_string(*s); break;
    case gguf_type::array: break;  // put_gguf_value
  }
}

inline void put_gguf_value(gguf_bytes& b, const gguf_value& v) {
  if (!v.is_array()) {
    put_gguf_scalar(b, v.type, v.i, v.f, &v.s);
    return;
  }
  b.put(static_cast<std::uint32_t>(v.elem));
  b.put(static_cast<std::uint64_t>(v.size()));
  if (v.elem == gguf_type::array) {
    for (const gguf_value& a : v.arrays) put_gguf_value(b, a);
  } else if (v.elem == gguf_type::string) {
    for (const std::string& s : v.strings) b.put_string(s);
  } else if (gguf_is_float(v.elem)) {
    for (double f : v.floats) put_gguf_scalar(b, v.elem, 0, f, nullptr);
  } else {
    for (std::int64_t i : v.ints) put_gguf_scalar(b, v.elem, i, 0, nullptr);
  }
}

}  // namespace detail

/// Writes one GGUF v3 file (see the top of this file).
class gguf_writer {
 public:
  /// Nested arrays deeper than this are refused (io::gguf_file refuses them).
  static constexpr int max_depth = 8;
  /// Longest tensor name (llama.cpp's GGML_MAX_NAME is 64, with the terminator).
  static constexpr std::size_t max_name_bytes = 63;

  /// Creates <path>.tmp (io_error naming `path` when it cannot). Nothing is written yet.
  explicit gguf_writer(std::filesystem::path path) : path_(std::move(path)) {
    tmp_path_ = path_;
    tmp_path_ += ".tmp";
    file_.reset(std::fopen(tmp_path_.c_str(), "wb"));
    if (!file_) fail("cannot create the file");
  }

  gguf_writer(const gguf_writer&) = delete;
  gguf_writer& operator=(const gguf_writer&) = delete;

  /// A writer not finished removes its temporary file; `path` is never touched.
  ~gguf_writer() {
    if (!finished_) {
      file_.reset();
      std::error_code ec;
      std::filesystem::remove(tmp_path_, ec);
    }
  }

  const std::filesystem::path& path() const noexcept { return path_; }

  // ---- metadata ----------------------------------------------------------------------------
  /// Sets `key` to `v` (any type, arrays and nested arrays as io::gguf_file reads them): a new
  /// key goes last, an existing one keeps its place. Refused (format_error / range_error naming
  /// the key): an empty key, a value its type cannot hold, a bool other than 0 / 1, nesting
  /// deeper than max_depth, a general.alignment that is not a power-of-two u32; and any call
  /// once tensor data has been written (the header is out).
  void set(std::string_view key, gguf_value v) {
    check_header_open("set metadata '" + std::string(key) + "'");
    if (key.empty()) throw format_error(path_.string() + ": GGUF metadata key is empty");
    check_value(key, v, 0);
    if (key == "general.alignment") {
      if (v.type != gguf_type::u32)
        throw format_error(path_.string() + ": general.alignment has type " + v.type_name() + ", must be u32");
      if (v.i == 0 || (v.i & (v.i - 1)) != 0)
        throw range_error(path_.string() + ": general.alignment " + std::to_string(v.i) + " is not a power of two");
      alignment_ = static_cast<std::uint64_t>(v.i);
    }
    if (auto it = kv_index_.find(std::string(key)); it != kv_index_.end()) {
      kv_[it->second].second = std::move(v);
      return;
    }
    kv_index_.emplace(std::string(key), kv_.size());
    kv_.emplace_back(std::string(key), std::move(v));
  }

  void set_u8(std::string_view key, std::uint8_t v) { set(key, integer(gguf_type::u8, v)); }
  void set_i8(std::string_view key, std::int8_t v) { set(key, integer(gguf_type::i8, v)); }
  void set_u16(std::string_view key, std::uint16_t v) { set(key, integer(gguf_type::u16, v)); }
  void set_i16(std::string_view key, std::int16_t v) { set(key, integer(gguf_type::i16, v)); }
  void set_u32(std::string_view key, std::uint32_t v) { set(key, integer(gguf_type::u32, v)); }
  void set_i32(std::string_view key, std::int32_t v) { set(key, integer(gguf_type::i32, v)); }
  void set_u64(std::string_view key, std::uint64_t v) { set(key, integer(gguf_type::u64, static_cast<std::int64_t>(v))); }
  void set_i64(std::string_view key, std::int64_t v) { set(key, integer(gguf_type::i64, v)); }
  void set_bool(std::string_view key, bool v) { set(key, integer(gguf_type::boolean, v ? 1 : 0)); }
  void set_f32(std::string_view key, float v) { set(key, floating(gguf_type::f32, v)); }
  void set_f64(std::string_view key, double v) { set(key, floating(gguf_type::f64, v)); }
  void set_string(std::string_view key, std::string v) {
    gguf_value g;
    g.type = gguf_type::string;
    g.s = std::move(v);
    set(key, std::move(g));
  }
  /// An array of integers or bools of element type `elem` (each element must fit it).
  void set_array(std::string_view key, gguf_type elem, std::vector<std::int64_t> v) {
    if (!gguf_is_integer(elem) && elem != gguf_type::boolean)
      throw format_error(path_.string() + ": GGUF metadata key '" + std::string(key) + "': element type " +
                         std::string(gguf_type_name(elem)) + " is not an integer type");
    set(key, array(elem, [&](gguf_value& a) { a.ints = std::move(v); }));
  }
  /// An array of f32 or f64.
  void set_array(std::string_view key, gguf_type elem, std::vector<double> v) {
    if (!gguf_is_float(elem))
      throw format_error(path_.string() + ": GGUF metadata key '" + std::string(key) + "': element type " +
                         std::string(gguf_type_name(elem)) + " is not f32 or f64");
    set(key, array(elem, [&](gguf_value& a) { a.floats = std::move(v); }));
  }
  void set_array(std::string_view key, std::vector<std::string> v) {
    set(key, array(gguf_type::string, [&](gguf_value& a) { a.strings = std::move(v); }));
  }

  /// Removes `key` (true when it was there).
  bool remove(std::string_view key) {
    check_header_open("remove metadata '" + std::string(key) + "'");
    auto it = kv_index_.find(std::string(key));
    if (it == kv_index_.end()) return false;
    const std::size_t k = it->second;
    kv_index_.erase(it);
    kv_.erase(kv_.begin() + static_cast<std::ptrdiff_t>(k));
    for (auto& entry : kv_index_)
      if (entry.second > k) --entry.second;
    if (key == "general.alignment") alignment_ = 32;
    return true;
  }

  const std::vector<std::pair<std::string, gguf_value>>& metadata() const noexcept { return kv_; }
  std::uint64_t alignment() const noexcept { return alignment_; }

  // ---- tensors -----------------------------------------------------------------------------
  /// Declares a tensor of ggml type `type` and dims `ne` (innermost first, as in a GGUF file; an
  /// (n, k) matrix is ne = {k, n}); its data comes later, in the order tensors are added.
  /// Returns its byte size. format_error: an unknown type, an empty, duplicate or too long name,
  /// rank outside 1..4, a negative dim, a size that overflows; shape_error: ne[0] not a multiple
  /// of the type's block size.
  std::uint64_t add_tensor(std::string_view name, ggml_type type, std::vector<std::int64_t> ne) {
    const std::string what = path_.string() + ": tensor '" + std::string(name) + "'";
    check_header_open("add tensor '" + std::string(name) + "'");
    if (name.empty()) throw format_error(path_.string() + ": a tensor name is empty");
    if (name.size() > max_name_bytes)
      throw format_error(what + ": the name is longer than " + std::to_string(max_name_bytes) + " bytes");
    if (tensor_index_.count(std::string(name))) throw format_error(what + " is added twice");
    const auto tr = ggml_traits(type);
    if (tr.block == 0) throw format_error(what + ": unknown ggml type " + std::to_string(static_cast<std::uint32_t>(type)));
    if (ne.empty() || ne.size() > 4) throw format_error(what + ": rank " + std::to_string(ne.size()) + " is not 1..4");
    std::int64_t numel = 1;
    for (const std::int64_t d : ne) {
      if (d < 0) throw format_error(what + ": negative dimension " + std::to_string(d));
      if (d != 0 && numel > std::numeric_limits<std::int64_t>::max() / d) throw format_error(what + ": element count overflows");
      numel *= d;
    }
    if (ne[0] % tr.block != 0)
      throw shape_error(what + ": row length " + std::to_string(ne[0]) + " is not a multiple of the " +
                        std::string(tr.name) + " block size " + std::to_string(tr.block));
    if (numel / tr.block > std::numeric_limits<std::int64_t>::max() / tr.bytes) throw format_error(what + ": byte size overflows");
    tensor t;
    t.name = std::string(name);
    t.type = type;
    t.ne = std::move(ne);
    t.nbytes = static_cast<std::uint64_t>(numel / tr.block * tr.bytes);
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
    return tensors_.back().nbytes;
  }

  std::size_t tensor_count() const noexcept { return tensors_.size(); }

  /// Appends `bytes` to tensor `name`'s data. Tensors are written in the order they were added,
  /// each in one or more pieces; the first call writes the header. format_error: `name` is not
  /// the tensor being written, or more bytes than it holds; io_error: the write failed.
  void write_tensor_data(std::string_view name, std::span<const std::byte> bytes) {
    check_open("write tensor '" + std::string(name) + "'");
    if (!header_written_) write_header();
    skip_empty_tensors(name);
    if (current_ >= tensors_.size() || tensors_[current_].name != name) {
      const std::string expected = current_ < tensors_.size() ? "'" + tensors_[current_].name + "'" : "no more tensor data";
      throw format_error(path_.string() + ": data for tensor '" + std::string(name) + "' given while " + expected +
                         (current_ < tensors_.size() ? " is next" : " is expected") + " (tensors are written in the order they were added)");
    }
    tensor& t = tensors_[current_];
    if (bytes.size() > t.nbytes - written_)
      throw format_error(path_.string() + ": tensor '" + t.name + "' holds " + std::to_string(t.nbytes) + " bytes (" +
                         ggml_type_name(t.type) + "); " + std::to_string(written_ + bytes.size()) + " were given");
    write_raw(bytes.data(), bytes.size());
    written_ += bytes.size();
    if (written_ == t.nbytes) {
      pad();
      ++current_;
      written_ = 0;
    }
  }

  /// Writes the header if no data came (a file of metadata only), checks that every tensor's
  /// data is complete (format_error naming the first one that is not), flushes, closes and
  /// renames <path>.tmp to `path` (io_error naming `path` when any of it fails). Returns the
  /// file's size.
  std::uint64_t finish() {
    check_open("finish");
    if (!header_written_) write_header();
    skip_empty_tensors();
    if (current_ < tensors_.size())
      throw format_error(path_.string() + ": tensor '" + tensors_[current_].name + "' got " + std::to_string(written_) +
                         " of its " + std::to_string(tensors_[current_].nbytes) + " bytes");
    if (std::fflush(file_.get()) != 0) fail("write failed");
    std::FILE* f = file_.release();
    if (std::fclose(f) != 0) fail("write failed");
    std::error_code ec;
    std::filesystem::rename(tmp_path_, path_, ec);
    if (ec) throw io_error(path_.string() + ": cannot rename " + tmp_path_.string() + " to it: " + ec.message());
    finished_ = true;
    return size_;
  }

 private:
  struct tensor {
    std::string name;
    ggml_type type = ggml_type::f32;
    std::vector<std::int64_t> ne;  // innermost first
    std::uint64_t nbytes = 0;
  };
  struct file_closer {
    void operator()(std::FILE* f) const noexcept { std::fclose(f); }
  };

  static gguf_value integer(gguf_type t, std::int64_t v) {
    gguf_value g;
    g.type = t;
    g.i = v;
    return g;
  }
  static gguf_value floating(gguf_type t, double v) {
    gguf_value g;
    g.type = t;
    g.f = v;
    return g;
  }
  template <class Fill>
  static gguf_value array(gguf_type elem, Fill&& fill) {
    gguf_value g;
    g.type = gguf_type::array;
    g.elem = elem;
    fill(g);
    return g;
  }

  [[noreturn]] void fail(const std::string& what) const {
    const int e = errno;
    throw io_error(path_.string() + ": " + what + (e ? std::string(": ") + std::strerror(e) : std::string()));
  }

  void check_open(const std::string& what) const {
    if (finished_ || !file_) throw error(path_.string() + ": cannot " + what + ": the GGUF writer is finished");
  }
  // Metadata and tensor infos live in the header: they cannot change once it is written.
  void check_header_open(const std::string& what) const {
    check_open(what);
    if (header_written_) throw error(path_.string() + ": cannot " + what + " after tensor data was written (the header is out)");
  }

  void check_value(std::string_view key, const gguf_value& v, int depth) const {
    const auto bad = [&](const std::string& why) {
      return format_error(path_.string() + ": GGUF metadata key '" + std::string(key) + "': " + why);
    };
    if (static_cast<std::uint32_t>(v.type) > 12) throw bad("unknown value type " + std::to_string(static_cast<std::uint32_t>(v.type)));
    if (!v.is_array()) {
      if (!detail::gguf_int_fits(v.type, v.i))
        throw range_error(path_.string() + ": GGUF metadata key '" + std::string(key) + "': " + std::to_string(v.i) +
                          " does not fit in " + std::string(gguf_type_name(v.type)));
      return;
    }
    if (depth >= max_depth) throw bad("arrays nested deeper than " + std::to_string(max_depth));
    if (static_cast<std::uint32_t>(v.elem) > 12) throw bad("unknown array element type " + std::to_string(static_cast<std::uint32_t>(v.elem)));
    if (v.elem == gguf_type::array) {
      for (const gguf_value& a : v.arrays) {
        if (!a.is_array()) throw bad("an element of an array of arrays has type " + a.type_name());
        check_value(key, a, depth + 1);
      }
    } else if (gguf_is_integer(v.elem) || v.elem == gguf_type::boolean) {
      for (const std::int64_t i : v.ints)
        if (!detail::gguf_int_fits(v.elem, i))
          throw range_error(path_.string() + ": GGUF metadata key '" + std::string(key) + "': element " + std::to_string(i) +
                            " does not fit in " + std::string(gguf_type_name(v.elem)));
    }
  }

  void write_raw(const void* p, std::size_t n) {
    if (n == 0) return;
    errno = 0;
    if (std::fwrite(p, 1, n, file_.get()) != n) fail("write failed");
    size_ += n;
  }

  void pad() {
    static constexpr std::byte zeros[256] = {};
    std::uint64_t n = (alignment_ - size_ % alignment_) % alignment_;
    while (n > 0) {
      const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(n, sizeof zeros));
      write_raw(zeros, k);
      n -= k;
    }
  }

  // Header: magic, version, counts, key/values, tensor infos with their offsets, padding.
  void write_header() {
    detail::gguf_bytes b;
    for (char c : std::string_view("GGUF")) b.put(c);
    b.put<std::uint32_t>(3);
    b.put<std::uint64_t>(tensors_.size());
    b.put<std::uint64_t>(kv_.size());
    for (const auto& [key, value] : kv_) {
      b.put_string(key);
      b.put(static_cast<std::uint32_t>(value.type));
      detail::put_gguf_value(b, value);
    }
    std::uint64_t offset = 0;
    for (const tensor& t : tensors_) {
      b.put_string(t.name);
      b.put(static_cast<std::uint32_t>(t.ne.size()));
      for (const std::int64_t d : t.ne) b.put(d);
      b.put(static_cast<std::uint32_t>(t.type));
      b.put(offset);
      offset += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
    }
    header_written_ = true;
    write_raw(b.data.data(), b.data.size());
    pad();
  }

  // Tensors of no bytes (a zero dim) need no data: a caller may give them (0 bytes) or skip them.
  // Skips those before the tensor named `next` (all of them when `next` is empty).
  void skip_empty_tensors(std::string_view next = {}) {
    while (current_ < tensors_.size() && tensors_[current_].name != next && written_ == 0 && tensors_[current_].nbytes == 0)
      ++current_;
  }

  std::filesystem::path path_, tmp_path_;
  std::unique_ptr<std::FILE, file_closer> file_;
  bool header_written_ = false;
  bool finished_ = false;
  std::uint64_t alignment_ = 32;
  std::uint64_t size_ = 0;  // bytes written so far
  std::vector<std::pair<std::string, gguf_value>> kv_;
  std::unordered_map<std::string, std::size_t> kv_index_;
  std::vector<tensor> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
  std::size_t current_ = 0;      // the tensor whose data is being written
  std::uint64_t written_ = 0;    // bytes of it written
};

}  // namespace io
}  // namespace v0
}  // namespace tessera
