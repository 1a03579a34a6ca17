// tessera/io/safetensors.hpp: safetensors reader (mapped, zero-copy) and a small writer.
//
// Layout (https://github.com/huggingface/safetensors, "Format"):
//   u64 N (little-endian) | N bytes of UTF-8 JSON header | data
//   header = { "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//              "__metadata__": {"<key>": "<string>", ...} }        (offsets relative to data)
// The checks the format asks for are all made at open: N within the file (and <= 100 MB), the
// header a JSON object starting with '{', every entry well-typed, end - begin == numel x dtype
// size, offsets within the data block, and the tensors tiling the data block exactly (sorted by
// offset, each starting where the previous ended, the last ending at the end of the file: no
// overlaps and no holes), no name given twice (JSON would keep the last silently), and no shape
// whose byte size exceeds the data block (checked before it is multiplied, so it cannot
// overflow). Any failure is a format_error naming the file (and the tensor).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include <tessera/config.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/io/mmap.hpp>

namespace tessera {
inline namespace v0 {
namespace io {

/// Element size of a safetensors dtype name in bits (0: unknown name). Sub-byte F4 / F6 types are
/// recognized so that their files open; tessera cannot convert them.
inline int safetensors_dtype_bits(std::string_view name) noexcept {
  struct entry {
    std::string_view name;
    int bits;
  };
  static constexpr entry table[] = {
      {"BOOL", 8},  {"U8", 8},   {"I8", 8},   {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8},
      {"I16", 16},  {"U16", 16}, {"F16", 16}, {"BF16", 16},   {"I32", 32},    {"U32", 32},
      {"F32", 32},  {"F64", 64}, {"I64", 64}, {"U64", 64},    {"F4", 4},      {"F6_E2M3", 6},
      {"F6_E3M2", 6}, {"C64", 64}};
  for (const auto& e : table)
    if (e.name == name) return e.bits;
  return 0;
}

/// The tessera dtype of a safetensors dtype name, or nullopt for types tessera does not store
/// (F8_*, U16/U32/U64, sub-byte floats).
inline std::optional<dtype> safetensors_to_dtype(std::string_view name) noexcept {
  if (name == "F32") return dtype::f32;
  if (name == "F16") return dtype::f16;
  if (name == "BF16") return dtype::bf16;
  if (name == "F64") return dtype::f64;
  if (name == "I64") return dtype::i64;
  if (name == "I32") return dtype::i32;
  if (name == "I16") return dtype::i16;
  if (name == "I8") return dtype::i8;
  if (name == "U8") return dtype::u8;
  if (name == "BOOL") return dtype::boolean;
  return std::nullopt;
}

/// The safetensors dtype name of a tessera dtype.
inline std::string_view safetensors_dtype_name(dtype t) noexcept {
  switch (t) {
    case dtype::f32: return "F32";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::f64: return "F64";
    case dtype::i64: return "I64";
    case dtype::i32: return "I32";
    case dtype::i16: return "I16";
    case dtype::i8: return "I8";
    case dtype::u8: return "U8";
    case dtype::boolean: return "BOOL";
  }
  return "?";
}

/// One tensor's header entry.
struct safetensors_tensor {
  std::string name;
  std::string dtype_name;         // as in the file: "F32", "BF16", "F8_E4M3", ...
  std::optional<dtype> type;      // nullopt when tessera cannot store the dtype
  std::vector<index_t> extents;   // outermost first
  std::int64_t numel = 0;
  std::uint64_t begin = 0, end = 0;  // relative to the data block
  std::uint64_t file_offset = 0;     // absolute
  std::uint64_t nbytes() const noexcept { return end - begin; }
};

/// A safetensors file: parsed header over a shared read-only mapping.
class safetensors_file {
 public:
  static constexpr std::uint64_t max_header_bytes = 100'000'000;  // as the reference implementation

  explicit safetensors_file(const std::filesystem::path& path) : safetensors_file(map_file(path)) {}
  explicit safetensors_file(std::shared_ptr<const mapped_file> file) : file_(std::move(file)) { parse(); }

  const std::string& path() const noexcept { return file_->name(); }
  const std::shared_ptr<const mapped_file>& mapping() const noexcept { return file_; }
  /// Tensors in file order (sorted by offset).
  const std::vector<safetensors_tensor>& tensors() const noexcept { return tensors_; }
  const safetensors_tensor* find(std::string_view name) const {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  /// The `__metadata__` block (string to string).
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  const std::byte* tensor_data(const safetensors_tensor& t) const noexcept { return file_->data() + t.file_offset; }
  std::uint64_t data_offset() const noexcept { return data_offset_; }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw format_error(path() + ": " + what); }

  static std::uint64_t get_u64(const nlohmann::json& j, bool& ok) {
    if (!j.is_number_integer()) {
      ok = false;
      return 0;
    }
    if (j.is_number_unsigned()) return j.get<std::uint64_t>();
    const auto v = j.get<std::int64_t>();
    if (v < 0) ok = false;
    return static_cast<std::uint64_t>(v);
  }

  void parse() {
    const mapped_file& f = *file_;
    detail::byte_reader r(f.data(), f.size(), f.name());
    if (f.size() < 8) fail("truncated: " + std::to_string(f.size()) + " bytes, too short for the safetensors header length");
    const auto n = r.read<std::uint64_t>("header length");
    if (n > f.size() - 8)
      fail("header length " + std::to_string(n) + " exceeds the file of " + std::to_string(f.size()) + " bytes (truncated?)");
    if (n > max_header_bytes) fail("header length " + std::to_string(n) + " exceeds the 100 MB limit");
    if (n < 2) fail("header of " + std::to_string(n) + " bytes is too short for a JSON object");
    const std::string_view text = r.read_bytes(static_cast<std::size_t>(n), "header");
    if (text.front() != '{') fail("header does not start with '{'");
    data_offset_ = 8 + n;

    nlohmann::json header;
    std::string duplicate;  // a tensor name given twice (the parser would keep the last)
    std::unordered_map<std::string, int> seen;
    const nlohmann::json::parser_callback_t no_duplicates = [&](int depth, nlohmann::json::parse_event_t event,
                                                                nlohmann::json& parsed) {
      if (depth == 1 && event == nlohmann::json::parse_event_t::key && duplicate.empty() &&
          ++seen[parsed.get<std::string>()] == 2)
        duplicate = parsed.get<std::string>();
      return true;
    };
    try {
      header = nlohmann::json::parse(text.begin(), text.end(), no_duplicates);
    } catch (const nlohmann::json::exception& e) {
      fail(std::string("header is not valid JSON: ") + e.what());
    }
    if (!duplicate.empty()) fail("tensor '" + duplicate + "' appears twice in the header");
    if (!header.is_object()) fail("header is not a JSON object");

    const std::uint64_t data_size = f.size() - data_offset_;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const nlohmann::json& e = it.value();
      if (name == "__metadata__") {
        if (!e.is_object()) fail("__metadata__ is not an object");
        for (auto m = e.begin(); m != e.end(); ++m) {
          if (!m.value().is_string()) fail("__metadata__ value of '" + m.key() + "' is not a string");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      const std::string where = "tensor '" + name + "'";
      if (!e.is_object()) fail(where + ": entry is not an object");
      const auto dt = e.find("dtype");
      const auto shape = e.find("shape");
      const auto offs = e.find("data_offsets");
      if (dt == e.end() || !dt->is_string()) fail(where + ": missing or non-string \"dtype\"");
      if (shape == e.end() || !shape->is_array()) fail(where + ": missing or non-array \"shape\"");
      if (offs == e.end() || !offs->is_array() || offs->size() != 2) fail(where + ": \"data_offsets\" is not [begin, end]");

      safetensors_tensor t;
      t.name = name;
      t.dtype_name = dt->get<std::string>();
      const int bits = safetensors_dtype_bits(t.dtype_name);
      if (bits == 0) fail(where + ": unknown dtype \"" + t.dtype_name + "\"");
      t.type = safetensors_to_dtype(t.dtype_name);
      std::uint64_t numel = 1;
      std::uint64_t nonzero = 1;  // product of the non-zero dims: what loops over an empty tensor run
      const std::uint64_t most = f.size() * 8 + 8;  // elements a file this size can hold (>= 1 bit each)
      for (const auto& d : *shape) {
        bool ok = true;
        const std::uint64_t x = get_u64(d, ok);
        if (!ok) fail(where + ": shape entries must be non-negative integers");
        if (x != 0 && numel > (std::uint64_t{1} << 62) / x) fail(where + ": element count overflows");
        numel *= x;
        if (x != 0) nonzero = nonzero > most / x ? most + 1 : nonzero * x;
        t.extents.push_back(static_cast<index_t>(x));
      }
      // Even an empty tensor (a zero dim) may not claim more rows than the file could hold.
      if (nonzero > most)
        fail(where + ": shape " + to_shape_string(t.extents) + " describes more than the " + std::to_string(most) +
             " elements a file of " + std::to_string(f.size()) + " bytes can hold");
      t.numel = static_cast<std::int64_t>(numel);
      // numel · bits / 8 must fit the data block; compared before multiplying (2^62 · 64 wraps).
      if (numel > data_size / static_cast<std::uint64_t>(bits) * 8 + 7)
        fail(where + ": shape " + to_shape_string(t.extents) + " of " + t.dtype_name + " needs more bytes than the data block of " +
             std::to_string(data_size) + " bytes");
      bool ok = true;
      t.begin = get_u64((*offs)[0], ok);
      t.end = get_u64((*offs)[1], ok);
      if (!ok) fail(where + ": data_offsets must be non-negative integers");
      if (t.end < t.begin) fail(where + ": data_offsets end " + std::to_string(t.end) + " < begin " + std::to_string(t.begin));
      if (t.end > data_size)
        fail(where + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
             ") past the end of the data block of " + std::to_string(data_size) + " bytes (truncated?)");
      const std::uint64_t want_bits = numel * static_cast<std::uint64_t>(bits);
      if (want_bits % 8 != 0 || t.end - t.begin != want_bits / 8)
        fail(where + ": " + std::to_string(t.end - t.begin) + " bytes in data_offsets but shape " +
             to_shape_string(t.extents) + " of " + t.dtype_name + " needs " + std::to_string(want_bits / 8));
      t.file_offset = data_offset_ + t.begin;
      tensors_.push_back(std::move(t));
    }

    // The tensors must tile the data block: sorted by offset, contiguous, ending at the file end.
    std::stable_sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t pos = 0;
    for (const auto& t : tensors_) {
      if (t.begin < pos)
        fail("tensor '" + t.name + "' overlaps the previous tensor (data_offsets begin " + std::to_string(t.begin) +
             " < " + std::to_string(pos) + ")");
      if (t.begin > pos)
        fail("hole in the data block before tensor '" + t.name + "' (bytes " + std::to_string(pos) + " to " +
             std::to_string(t.begin) + " belong to no tensor)");
      pos = t.end;
    }
    if (pos != data_size)
      fail("data block has " + std::to_string(data_size) + " bytes but the tensors cover " + std::to_string(pos) +
           (pos > data_size ? " (truncated?)" : " (trailing bytes)"));
    for (std::size_t k = 0; k < tensors_.size(); ++k) index_.emplace(tensors_[k].name, k);
  }

  static std::string to_shape_string(const std::vector<index_t>& e) {
    std::string s = "[";
    for (std::size_t i = 0; i < e.size(); ++i) s += (i ? ", " : "") + std::to_string(e[i]);
    return s + "]";
  }

  std::shared_ptr<const mapped_file> file_;
  std::uint64_t data_offset_ = 0;
  std::vector<safetensors_tensor> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

/// Builds a safetensors file in memory and writes it. Tensors are laid out in insertion order;
/// the header is padded with spaces to a multiple of 8 bytes, as the reference writer does, so
/// that every tensor of 8-byte or smaller elements is aligned when the file is mapped.
class safetensors_writer {
 public:
  /// Adds raw bytes of dtype `type` and extents `ext` (bytes.size() must be numel x dtype size).
  void add(std::string name, dtype type, std::vector<index_t> ext, std::span<const std::byte> bytes) {
    add_raw(std::move(name), std::string(safetensors_dtype_name(type)), std::move(ext), bytes);
  }

  /// Adds a raw entry with any dtype name (tests use this to write F8 and other dtypes).
  void add_raw(std::string name, std::string dtype_name, std::vector<index_t> ext, std::span<const std::byte> bytes) {
    if (name == "__metadata__" || names_.count(name)) throw format_error("safetensors_writer: duplicate or reserved name '" + name + "'");
    const int bits = safetensors_dtype_bits(dtype_name);
    std::uint64_t numel = 1;
    for (index_t x : ext) {
      if (x < 0) throw shape_error("safetensors_writer: negative extent for '" + name + "'");
      numel *= static_cast<std::uint64_t>(x);
    }
    if (bits == 0 || numel * static_cast<std::uint64_t>(bits) != bytes.size() * 8)
      throw shape_error("safetensors_writer: '" + name + "' has " + std::to_string(bytes.size()) + " bytes, expected " +
                        std::to_string(numel * static_cast<std::uint64_t>(bits) / 8) + " for its dtype and extents");
    names_.insert({name, entries_.size()});
    entries_.push_back({std::move(name), std::move(dtype_name), std::move(ext),
                        std::vector<std::byte>(bytes.begin(), bytes.end())});
  }

  /// Adds a view (any strides: a strided one is gathered densely first).
  template <class T, std::size_t Rank>
  void add(std::string name, const tensor_view<T, Rank>& v) {
    using U = std::remove_const_t<T>;
    std::vector<index_t> ext(v.extents().begin(), v.extents().end());
    auto add_dense = [&](const U* data) {
      add(std::move(name), dtype_of<U>(), std::move(ext),
          std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), static_cast<std::size_t>(v.size()) * sizeof(U)));
    };
    if (v.is_contiguous()) return add_dense(v.data());
    const auto dense = tensor<U, Rank>::copy_of(v);
    add_dense(dense.data());
  }
  template <class T, std::size_t Rank>
  void add(std::string name, const tensor<T, Rank>& t) {
    add(std::move(name), t.cview());
  }

  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  std::vector<std::byte> bytes() const {
    const std::string text = header_text();
    std::uint64_t data_size = 0;
    for (const auto& e : entries_) data_size += e.data.size();
    std::vector<std::byte> out(8 + text.size() + data_size);
    const std::uint64_t n = text.size();
    std::memcpy(out.data(), &n, 8);
    std::memcpy(out.data() + 8, text.data(), text.size());
    std::byte* p = out.data() + 8 + text.size();
    for (const auto& e : entries_) {
      if (!e.data.empty()) std::memcpy(p, e.data.data(), e.data.size());
      p += e.data.size();
    }
    return out;
  }

  /// Writes the file (to `path`.tmp, then renamed); io_error when that fails. The tensors are
  /// written one after the other: no second copy of the file in memory.
  void write(const std::filesystem::path& path) const {
    const std::string text = header_text();
    const std::uint64_t n = text.size();
    const std::filesystem::path tmp = path.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) throw io_error(tmp.string() + ": cannot open for writing");
      out.write(reinterpret_cast<const char*>(&n), 8);
      out.write(text.data(), static_cast<std::streamsize>(text.size()));
      for (const auto& e : entries_)
        if (!e.data.empty()) out.write(reinterpret_cast<const char*>(e.data.data()), static_cast<std::streamsize>(e.data.size()));
      if (!out) throw io_error(tmp.string() + ": write failed");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) throw io_error(path.string() + ": cannot rename the written file: " + ec.message());
  }

 private:
  /// The JSON header, padded with spaces so that the data starts at a multiple of 8.
  std::string header_text() const {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::uint64_t off = 0;
    for (const auto& e : entries_) {
      header[e.name] = {{"dtype", e.dtype_name}, {"shape", e.extents}, {"data_offsets", {off, off + e.data.size()}}};
      off += e.data.size();
    }
    std::string text = header.dump();
    text.resize((text.size() + 8 + 7) / 8 * 8 - 8, ' ');
    return text;
  }

  struct entry {
    std::string name, dtype_name;
    std::vector<index_t> extents;
    std::vector<std::byte> data;
  };
  std::vector<entry> entries_;
  std::unordered_map<std::string, std::size_t> names_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace io
}  // namespace v0
}  // namespace tessera
