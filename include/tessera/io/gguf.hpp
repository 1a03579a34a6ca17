// tessera/io/gguf.hpp: GGUF v2/v3 reader (metadata, tensor infos, tensor bytes).
//
// Layout (little-endian; https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
//   "GGUF" u32 version  u64 n_tensors  u64 n_kv
//   n_kv      x { string key, u32 type, value }
//   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
//   padding to general.alignment (default 32), then the data section; offsets are relative to it.
// A string is u64 length + bytes (no terminator); an array is u32 element type + u64 count +
// elements (arrays may nest). ggml dims `ne` are innermost-first: a tensor with ne = [k, n] is
// an (n, k) row-major matrix, which `gguf_tensor_info::extents` gives outermost-first.
//
// The file is mapped, never read whole; every length, count and offset is checked against the
// file size before use, so a truncated or hostile file is a format_error naming the file (and the
// key or tensor), never a crash. Metadata is parsed at open; tensor bytes stay in the mapping.
// What parsing allocates is bounded before it is allocated: counts are checked against the bytes
// left in the file, containers grow with what was actually read (never reserved from a count),
// and the parsed metadata may take at most `max_metadata_bytes` of memory (a tokenizer of 256K
// tokens and merges takes ~50 MB), so that a small file cannot make the reader take gigabytes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <tessera/config.hpp>
#include <tessera/core/error.hpp>
#include <tessera/io/mmap.hpp>

namespace tessera {
inline namespace v0 {
namespace io {

/// GGUF metadata value types (gguf.md, `gguf_metadata_value_type`).
enum class gguf_type : std::uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
  string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};

inline std::string_view gguf_type_name(gguf_type t) noexcept {
  switch (t) {
    case gguf_type::u8: return "u8";
    case gguf_type::i8: return "i8";
    case gguf_type::u16: return "u16";
    case gguf_type::i16: return "i16";
    case gguf_type::u32: return "u32";
    case gguf_type::i32: return "i32";
    case gguf_type::f32: return "f32";
    case gguf_type::boolean: return "bool";
    case gguf_type::string: return "string";
    case gguf_type::array: return "array";
    case gguf_type::u64: return "u64";
    case gguf_type::i64: return "i64";
    case gguf_type::f64: return "f64";
  }
  return "?";
}

inline bool gguf_is_integer(gguf_type t) noexcept {
  switch (t) {
    case gguf_type::u8: case gguf_type::i8: case gguf_type::u16: case gguf_type::i16:
    case gguf_type::u32: case gguf_type::i32: case gguf_type::u64: case gguf_type::i64: return true;
    default: return false;
  }
}
inline bool gguf_is_float(gguf_type t) noexcept { return t == gguf_type::f32 || t == gguf_type::f64; }

/// ggml tensor types (ggml.h `enum ggml_type`; gaps are types ggml removed).
enum class ggml_type : std::uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
  q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
  iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23,
  i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30,
  tq1_0 = 34, tq2_0 = 35, mxfp4 = 39,
};

/// Block geometry of a ggml type: `block` elements take `bytes` bytes.
struct ggml_type_traits {
  std::string_view name;
  std::int64_t block = 0;  // 0: unknown type
  std::int64_t bytes = 0;
};

inline ggml_type_traits ggml_traits(ggml_type t) noexcept {
  switch (t) {
    case ggml_type::f32: return {"F32", 1, 4};
    case ggml_type::f16: return {"F16", 1, 2};
    case ggml_type::q4_0: return {"Q4_0", 32, 18};
    case ggml_type::q4_1: return {"Q4_1", 32, 20};
    case ggml_type::q5_0: return {"Q5_0", 32, 22};
    case ggml_type::q5_1: return {"Q5_1", 32, 24};
    case ggml_type::q8_0: return {"Q8_0", 32, 34};
    case ggml_type::q8_1: return {"Q8_1", 32, 36};
    case ggml_type::q2_k: return {"Q2_K", 256, 84};
    case ggml_type::q3_k: return {"Q3_K", 256, 110};
    case ggml_type::q4_k: return {"Q4_K", 256, 144};
    case ggml_type::q5_k: return {"Q5_K", 256, 176};
    case ggml_type::q6_k: return {"Q6_K", 256, 210};
    case ggml_type::q8_k: return {"Q8_K", 256, 292};
    case ggml_type::iq2_xxs: return {"IQ2_XXS", 256, 66};
    case ggml_type::iq2_xs: return {"IQ2_XS", 256, 74};
    case ggml_type::iq3_xxs: return {"IQ3_XXS", 256, 98};
    case ggml_type::iq1_s: return {"IQ1_S", 256, 50};
    case ggml_type::iq4_nl: return {"IQ4_NL", 32, 18};
    case ggml_type::iq3_s: return {"IQ3_S", 256, 110};
    case ggml_type::iq2_s: return {"IQ2_S", 256, 82};
    case ggml_type::iq4_xs: return {"IQ4_XS", 256, 136};
    case ggml_type::i8: return {"I8", 1, 1};
    case ggml_type::i16: return {"I16", 1, 2};
    case ggml_type::i32: return {"I32", 1, 4};
    case ggml_type::i64: return {"I64", 1, 8};
    case ggml_type::f64: return {"F64", 1, 8};
    case ggml_type::iq1_m: return {"IQ1_M", 256, 56};
    case ggml_type::bf16: return {"BF16", 1, 2};
    case ggml_type::tq1_0: return {"TQ1_0", 256, 54};
    case ggml_type::tq2_0: return {"TQ2_0", 256, 66};
    case ggml_type::mxfp4: return {"MXFP4", 32, 17};
  }
  return {"unknown", 0, 0};
}

inline std::string ggml_type_name(ggml_type t) {
  const auto tr = ggml_traits(t);
  return tr.block ? std::string(tr.name) : "type " + std::to_string(static_cast<std::uint32_t>(t));
}

/// One metadata value. Scalars: `i` holds every integer type (u64 bitwise) and bool, `f` both
/// float types, `s` strings. Arrays: `elem` is the element type and exactly one of `ints`,
/// `floats`, `strings`, `arrays` (nested) holds the elements, by element type.
struct gguf_value {
  gguf_type type = gguf_type::u8;
  std::int64_t i = 0;
  double f = 0;
  std::string s;
  gguf_type elem = gguf_type::u8;
  std::vector<std::int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<gguf_value> arrays;

  bool is_array() const noexcept { return type == gguf_type::array; }
  /// Number of elements of an array (0 for a scalar).
  std::size_t size() const noexcept {
    if (!is_array()) return 0;
    if (elem == gguf_type::string) return strings.size();
    if (elem == gguf_type::array) return arrays.size();
    if (gguf_is_float(elem)) return floats.size();
    return ints.size();
  }
  /// "u32", "array<string>", "array<array<i32>>".
  std::string type_name() const {
    if (!is_array()) return std::string(gguf_type_name(type));
    if (elem == gguf_type::array) return "array<" + (arrays.empty() ? std::string("array") : arrays.front().type_name()) + ">";
    return "array<" + std::string(gguf_type_name(elem)) + ">";
  }
};

/// One tensor's header entry.
struct gguf_tensor_info {
  std::string name;
  std::vector<std::int64_t> ne;     // ggml dims, innermost first
  std::vector<index_t> extents;     // outermost first (our convention): reverse of ne
  ggml_type type = ggml_type::f32;
  std::uint64_t offset = 0;         // relative to the data section
  std::uint64_t file_offset = 0;    // absolute
  std::uint64_t nbytes = 0;
  std::int64_t numel = 0;
};

/// A GGUF file: parsed metadata and tensor infos over a shared read-only mapping.
class gguf_file {
 public:
  /// Maps and parses `path`. Throws io_error (cannot open) or format_error (malformed).
  explicit gguf_file(const std::filesystem::path& path) : gguf_file(map_file(path)) {}
  /// Parses an existing mapping (tests pass in-memory bytes this way).
  explicit gguf_file(std::shared_ptr<const mapped_file> file) : file_(std::move(file)) { parse(); }

  /// Memory the parsed metadata and tensor infos may take (strings, arrays, their containers).
  static constexpr std::uint64_t max_metadata_bytes = std::uint64_t{1} << 30;

  std::uint32_t version() const noexcept { return version_; }
  std::uint64_t alignment() const noexcept { return alignment_; }
  /// Absolute offset of the data section.
  std::uint64_t data_offset() const noexcept { return data_offset_; }
  const std::string& path() const noexcept { return file_->name(); }
  const std::shared_ptr<const mapped_file>& mapping() const noexcept { return file_; }

  // ---- metadata ----------------------------------------------------------------------------
  /// Keys and values in file order.
  const std::vector<std::pair<std::string, gguf_value>>& metadata() const noexcept { return kv_; }
  bool contains(std::string_view key) const { return index_.count(std::string(key)) != 0; }
  /// The value of `key`, or nullptr when absent.
  const gguf_value* find(std::string_view key) const {
    auto it = index_.find(std::string(key));
    return it == index_.end() ? nullptr : &kv_[it->second].second;
  }
  /// The value of `key`; format_error naming the file and key when absent.
  const gguf_value& at(std::string_view key) const {
    if (const gguf_value* v = find(key)) return *v;
    throw format_error(path() + ": GGUF metadata key '" + std::string(key) + "' is missing");
  }

  std::string get_string(std::string_view key) const { return as_string(key, at(key)); }
  /// Any integer type (u64 values above INT64_MAX are a format_error).
  std::int64_t get_int(std::string_view key) const { return as_int(key, at(key)); }
  /// f32 or f64 (integers are accepted and converted).
  double get_float(std::string_view key) const { return as_float(key, at(key)); }
  bool get_bool(std::string_view key) const { return as_bool(key, at(key)); }
  std::vector<std::string> get_string_array(std::string_view key) const {
    const gguf_value& v = at(key);
    if (!v.is_array() || v.elem != gguf_type::string) wrong_type(key, v, "array<string>");
    return v.strings;
  }
  /// An array of any float or integer type, as float.
  std::vector<float> get_float_array(std::string_view key) const {
    const gguf_value& v = at(key);
    if (!v.is_array() || !(gguf_is_float(v.elem) || gguf_is_integer(v.elem))) wrong_type(key, v, "array of numbers");
    std::vector<float> out;
    if (gguf_is_float(v.elem)) out.assign(v.floats.begin(), v.floats.end());
    else for (std::int64_t x : v.ints) out.push_back(static_cast<float>(x));
    return out;
  }
  /// An array of any integer type (or bool).
  std::vector<std::int64_t> get_int_array(std::string_view key) const {
    const gguf_value& v = at(key);
    if (!v.is_array() || !(gguf_is_integer(v.elem) || v.elem == gguf_type::boolean)) wrong_type(key, v, "array of integers");
    if (v.elem == gguf_type::u64)
      for (std::int64_t x : v.ints)
        if (x < 0) throw format_error(path() + ": GGUF metadata key '" + std::string(key) + "': u64 element does not fit in i64");
    return v.ints;
  }

  // Optional forms: std::nullopt when absent, format_error when present with the wrong type.
  std::optional<std::string> try_string(std::string_view key) const {
    const gguf_value* v = find(key);
    return v ? std::optional<std::string>(as_string(key, *v)) : std::nullopt;
  }
  std::optional<std::int64_t> try_int(std::string_view key) const {
    const gguf_value* v = find(key);
    return v ? std::optional<std::int64_t>(as_int(key, *v)) : std::nullopt;
  }
  std::optional<double> try_float(std::string_view key) const {
    const gguf_value* v = find(key);
    return v ? std::optional<double>(as_float(key, *v)) : std::nullopt;
  }
  std::optional<bool> try_bool(std::string_view key) const {
    const gguf_value* v = find(key);
    return v ? std::optional<bool>(as_bool(key, *v)) : std::nullopt;
  }

  // ---- tensors -----------------------------------------------------------------------------
  const std::vector<gguf_tensor_info>& tensors() const noexcept { return tensors_; }
  /// The tensor named `name`, or nullptr.
  const gguf_tensor_info* find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(std::string(name));
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }
  /// The tensor's bytes inside the mapping (checked at open to lie within the file).
  const std::byte* tensor_data(const gguf_tensor_info& t) const noexcept { return file_->data() + t.file_offset; }

 private:
  static constexpr int max_depth = 8;  // nested arrays deeper than this are refused

  [[noreturn]] void wrong_type(std::string_view key, const gguf_value& v, const char* want) const {
    throw format_error(path() + ": GGUF metadata key '" + std::string(key) + "' has type " + v.type_name() +
                       ", expected " + want);
  }
  std::string as_string(std::string_view key, const gguf_value& v) const {
    if (v.type != gguf_type::string) wrong_type(key, v, "string");
    return v.s;
  }
  std::int64_t as_int(std::string_view key, const gguf_value& v) const {
    if (!gguf_is_integer(v.type)) wrong_type(key, v, "an integer");
    if (v.type == gguf_type::u64 && v.i < 0)
      throw format_error(path() + ": GGUF metadata key '" + std::string(key) + "': u64 value does not fit in i64");
    return v.i;
  }
  double as_float(std::string_view key, const gguf_value& v) const {
    if (gguf_is_float(v.type)) return v.f;
    if (gguf_is_integer(v.type)) return static_cast<double>(v.i);
    wrong_type(key, v, "a number");
  }
  bool as_bool(std::string_view key, const gguf_value& v) const {
    if (v.type != gguf_type::boolean) wrong_type(key, v, "bool");
    return v.i != 0;
  }

  std::string read_string(detail::byte_reader& r, const char* what) {
    const auto n = r.read<std::uint64_t>(what);
    if (n > r.remaining()) r.fail(std::string(what) + ": string length " + std::to_string(n) + " exceeds the file");
    charge(r, sizeof(std::string) + n, what);
    return std::string(r.read_bytes(static_cast<std::size_t>(n), what));
  }

  // Counts `bytes` of memory against max_metadata_bytes; format_error naming `what` past it.
  void charge(detail::byte_reader& r, std::uint64_t bytes, std::string_view what) {
    if (bytes > max_metadata_bytes - metadata_bytes_)
      r.fail(std::string(what) + ": the metadata and tensor infos would take more than " + std::to_string(max_metadata_bytes >> 20) + " MiB of memory");
    metadata_bytes_ += bytes;
  }

  // A vector's first reservation: what the count asks for, but never more than a small bound
  // (a count is only a claim; the container grows with the elements actually read).
  static std::size_t first_reserve(std::uint64_t n) noexcept { return static_cast<std::size_t>(std::min<std::uint64_t>(n, 1024)); }

  static std::size_t min_size(gguf_type t) noexcept {
    switch (t) {
      case gguf_type::u8: case gguf_type::i8: case gguf_type::boolean: return 1;
      case gguf_type::u16: case gguf_type::i16: return 2;
      case gguf_type::u32: case gguf_type::i32: case gguf_type::f32: return 4;
      case gguf_type::u64: case gguf_type::i64: case gguf_type::f64: case gguf_type::string: return 8;
      case gguf_type::array: return 12;
    }
    return 1;
  }

  static bool valid_type(std::uint32_t t) noexcept { return t <= 12; }

  /// Elements a file of `bytes` bytes can hold at most (ggml's densest types take > 1/8 byte each).
  static std::uint64_t max_elements(std::uint64_t bytes) noexcept { return bytes * 8 + 8; }

  // Reads one scalar of type t into v (integers to v.i, floats to v.f, strings to v.s).
  void read_scalar(detail::byte_reader& r, gguf_type t, gguf_value& v, const std::string& key) {
    const char* what = "metadata value";
    switch (t) {
      case gguf_type::u8: v.i = r.read<std::uint8_t>(what); break;
      case gguf_type::i8: v.i = r.read<std::int8_t>(what); break;
      case gguf_type::u16: v.i = r.read<std::uint16_t>(what); break;
      case gguf_type::i16: v.i = r.read<std::int16_t>(what); break;
      case gguf_type::u32: v.i = r.read<std::uint32_t>(what); break;
      case gguf_type::i32: v.i = r.read<std::int32_t>(what); break;
      case gguf_type::u64: v.i = static_cast<std::int64_t>(r.read<std::uint64_t>(what)); break;
      case gguf_type::i64: v.i = r.read<std::int64_t>(what); break;
      case gguf_type::f32: v.f = r.read<float>(what); break;
      case gguf_type::f64: v.f = r.read<double>(what); break;
      case gguf_type::boolean: {
        const auto b = r.read<std::uint8_t>(what);
        if (b > 1) r.fail("metadata key '" + key + "': bool value " + std::to_string(b) + " is neither 0 nor 1");
        v.i = b;
        break;
      }
      case gguf_type::string: v.s = read_string(r, "metadata string"); break;
      case gguf_type::array: break;  // handled by read_value
    }
  }

  gguf_value read_value(detail::byte_reader& r, gguf_type t, const std::string& key, int depth) {
    gguf_value v;
    v.type = t;
    if (t != gguf_type::array) {
      read_scalar(r, t, v, key);
      return v;
    }
    if (depth >= max_depth) r.fail("metadata key '" + key + "': arrays nested deeper than " + std::to_string(max_depth));
    const auto et = r.read<std::uint32_t>("array element type");
    if (!valid_type(et)) r.fail("metadata key '" + key + "': unknown array element type " + std::to_string(et));
    v.elem = static_cast<gguf_type>(et);
    const auto n = r.read<std::uint64_t>("array length");
    // Every element takes at least min_size bytes: a count the file cannot hold is refused before
    // anything is allocated.
    if (n > r.remaining() / min_size(v.elem))
      r.fail("metadata key '" + key + "': array of " + std::to_string(n) + " " + std::string(gguf_type_name(v.elem)) +
             " exceeds the file");
    const auto count = static_cast<std::size_t>(n);
    const std::uint64_t elem_bytes = v.elem == gguf_type::array    ? sizeof(gguf_value)
                                     : v.elem == gguf_type::string ? 0  // charged by read_string
                                     : gguf_is_float(v.elem)       ? sizeof(double)
                                                                   : sizeof(std::int64_t);
    charge(r, elem_bytes * n, "metadata key '" + key + "'");  // n < file size, elem_bytes <= 256: no overflow
    if (v.elem == gguf_type::array) {
      v.arrays.reserve(first_reserve(count));
      for (std::size_t k = 0; k < count; ++k) v.arrays.push_back(read_value(r, gguf_type::array, key, depth + 1));
    } else if (v.elem == gguf_type::string) {
      v.strings.reserve(first_reserve(count));
      for (std::size_t k = 0; k < count; ++k) v.strings.push_back(read_string(r, "array string"));
    } else if (gguf_is_float(v.elem)) {
      v.floats.reserve(first_reserve(count));
      gguf_value tmp;
      for (std::size_t k = 0; k < count; ++k) {
        read_scalar(r, v.elem, tmp, key);
        v.floats.push_back(tmp.f);
      }
    } else {
      v.ints.reserve(first_reserve(count));
      gguf_value tmp;
      for (std::size_t k = 0; k < count; ++k) {
        read_scalar(r, v.elem, tmp, key);
        v.ints.push_back(tmp.i);
      }
    }
    return v;
  }

  void parse() {
    const mapped_file& f = *file_;
    detail::byte_reader r(f.data(), f.size(), f.name());
    const std::string_view magic = r.read_bytes(4, "GGUF magic");
    if (magic != "GGUF") r.fail("not a GGUF file (bad magic)");
    version_ = r.read<std::uint32_t>("GGUF version");
    if (version_ == 1) r.fail("GGUF version 1 is not supported (re-convert the model to v3)");
    if (version_ != 2 && version_ != 3) {
      if (version_ == 0x02000000u || version_ == 0x03000000u) r.fail("big-endian GGUF files are not supported");
      r.fail("unsupported GGUF version " + std::to_string(version_));
    }
    const auto n_tensors = r.read<std::uint64_t>("tensor count");
    const auto n_kv = r.read<std::uint64_t>("metadata count");
    // Each kv takes >= 8 + 4 + 1 bytes and each tensor info >= 8 + 4 + 4 + 8 bytes.
    if (n_kv > r.remaining() / 13) r.fail("metadata count " + std::to_string(n_kv) + " exceeds the file");
    if (n_tensors > r.remaining() / 24) r.fail("tensor count " + std::to_string(n_tensors) + " exceeds the file");

    kv_.reserve(first_reserve(n_kv));
    for (std::uint64_t k = 0; k < n_kv; ++k) {
      std::string key = read_string(r, "metadata key");
      const auto t = r.read<std::uint32_t>("metadata value type");
      if (!valid_type(t)) r.fail("metadata key '" + key + "': unknown value type " + std::to_string(t));
      charge(r, sizeof(std::pair<std::string, gguf_value>) + 64, "metadata key '" + key + "'");  // + the index entry
      gguf_value v = read_value(r, static_cast<gguf_type>(t), key, 0);
      if (!index_.emplace(key, kv_.size()).second) r.fail("duplicate metadata key '" + key + "'");
      kv_.emplace_back(std::move(key), std::move(v));
    }

    if (const gguf_value* a = find("general.alignment")) {
      if (a->type != gguf_type::u32) r.fail("general.alignment has type " + a->type_name() + ", expected u32");
      if (a->i == 0 || (a->i & (a->i - 1)) != 0) r.fail("general.alignment " + std::to_string(a->i) + " is not a power of two");
      alignment_ = static_cast<std::uint64_t>(a->i);
    }

    tensors_.reserve(first_reserve(n_tensors));
    for (std::uint64_t k = 0; k < n_tensors; ++k) {
      gguf_tensor_info t;
      t.name = read_string(r, "tensor name");
      charge(r, sizeof(gguf_tensor_info) + 128, "tensor '" + t.name + "'");  // + dims and the index entry
      const auto n_dims = r.read<std::uint32_t>("tensor rank");
      if (n_dims > 4) r.fail("tensor '" + t.name + "': rank " + std::to_string(n_dims) + " > 4");
      std::int64_t numel = 1;
      std::uint64_t nonzero = 1;  // product of the non-zero dims: what loops over an empty tensor run
      for (std::uint32_t d = 0; d < n_dims; ++d) {
        const auto ne = r.read<std::int64_t>("tensor dimension");
        if (ne < 0) r.fail("tensor '" + t.name + "': negative dimension " + std::to_string(ne));
        if (ne != 0 && numel > INT64_MAX / ne) r.fail("tensor '" + t.name + "': element count overflows");
        numel *= ne;
        if (ne != 0) nonzero = nonzero > max_elements(f.size()) / static_cast<std::uint64_t>(ne) ? max_elements(f.size()) + 1 : nonzero * static_cast<std::uint64_t>(ne);
        t.ne.push_back(ne);
      }
      // Even an empty tensor (a zero dim) may not claim more rows than the file could hold: a
      // (2^60, 0) matrix has no bytes, but transposing it loops 2^60 times.
      if (nonzero > max_elements(f.size()))
        r.fail("tensor '" + t.name + "': dims describe more than the " + std::to_string(max_elements(f.size())) +
               " elements a file of " + std::to_string(f.size()) + " bytes can hold");
      t.numel = numel;
      t.extents.assign(t.ne.rbegin(), t.ne.rend());
      const auto ty = r.read<std::uint32_t>("tensor type");
      t.type = static_cast<ggml_type>(ty);
      const auto tr = ggml_traits(t.type);
      if (tr.block == 0) r.fail("tensor '" + t.name + "': unknown ggml type " + std::to_string(ty));
      if (!t.ne.empty() && t.ne[0] % tr.block != 0)
        r.fail("tensor '" + t.name + "': row length " + std::to_string(t.ne[0]) + " is not a multiple of the " +
               std::string(tr.name) + " block size " + std::to_string(tr.block));
      if (numel / tr.block > INT64_MAX / tr.bytes) r.fail("tensor '" + t.name + "': byte size overflows");
      t.nbytes = static_cast<std::uint64_t>(numel / tr.block * tr.bytes);
      t.offset = r.read<std::uint64_t>("tensor offset");
      if (t.offset % alignment_ != 0)
        r.fail("tensor '" + t.name + "': data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
               std::to_string(alignment_));
      if (!tensor_index_.emplace(t.name, tensors_.size()).second) r.fail("duplicate tensor name '" + t.name + "'");
      tensors_.push_back(std::move(t));
    }

    // Data section: aligned after the header. Every tensor must lie inside the file, and no two
    // may overlap.
    const std::uint64_t header_end = r.pos();
    data_offset_ = (header_end + alignment_ - 1) / alignment_ * alignment_;
    const std::uint64_t size = f.size();
    for (auto& t : tensors_) {
      if (t.offset > size || data_offset_ > size - t.offset || t.nbytes > size - data_offset_ - t.offset)
        throw format_error(path() + ": tensor '" + t.name + "' (" + ggml_type_name(t.type) + ", " +
                           std::to_string(t.nbytes) + " bytes at data offset " + std::to_string(t.offset) +
                           ") lies outside the file of " + std::to_string(size) + " bytes (truncated?)");
      t.file_offset = data_offset_ + t.offset;
    }
    std::vector<const gguf_tensor_info*> by_offset;
    for (const auto& t : tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (std::size_t k = 1; k < by_offset.size(); ++k)
      if (by_offset[k - 1]->nbytes > 0 && by_offset[k - 1]->offset + by_offset[k - 1]->nbytes > by_offset[k]->offset)
        throw format_error(path() + ": tensors '" + by_offset[k - 1]->name + "' and '" + by_offset[k]->name +
                           "' overlap in the data section");
  }

  std::shared_ptr<const mapped_file> file_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::uint64_t metadata_bytes_ = 0;  // memory charged so far (parse only)
  std::vector<std::pair<std::string, gguf_value>> kv_;
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<gguf_tensor_info> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

}  // namespace io
}  // namespace v0
}  // namespace tessera
