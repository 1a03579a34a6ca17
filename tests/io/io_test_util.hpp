// Helpers for the io tests: a small GGUF writer (the gguf-py layout) and temp-file handling.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include <tessera/io/gguf.hpp>
#include <tessera/io/weights.hpp>

namespace tessera::test {

/// Files shipped inside the project (never outside it: CI has only the clone).
inline const std::filesystem::path bundled_model =
    std::filesystem::path(TESSERA_SOURCE_DIR) / "examples" / "models" / "stories260K.gguf";
/// The GGUF name among `candidates` that `rename` (a family's GGUF → HF naming, e.g.
/// gguf_hf_name of families/family.hpp) maps onto the HF tensor `hf_name`, or "".
template <class Rename>
std::string gguf_name_for(const Rename& rename, const std::string& hf_name, const std::vector<std::string>& candidates) {
  for (const auto& c : candidates)
    if (rename(c) == hf_name) return c;
  return {};
}

/// convert_hf_to_gguf.py's LlamaModel.permute on the rows of a (rows, cols) row-major matrix.
inline std::vector<float> llama_permute(const std::vector<float>& w, index_t rows, index_t cols, index_t n_head) {
  // reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2): out[h, i, j] = in[h, j, i]
  const index_t half = rows / n_head / 2;
  std::vector<float> out(w.size());
  for (index_t h = 0; h < n_head; ++h)
    for (index_t i = 0; i < half; ++i)
      for (index_t j = 0; j < 2; ++j)
        for (index_t c = 0; c < cols; ++c)
          out[static_cast<std::size_t>(((h * half + i) * 2 + j) * cols + c)] =
              w[static_cast<std::size_t>(((h * 2 + j) * half + i) * cols + c)];
  return out;
}

inline const std::filesystem::path gguf_vocab_dir = std::filesystem::path(TESSERA_TEST_DATA_DIR) / "tokenizers";

/// A fresh, empty directory under the system temp dir, removed on destruction.
struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(const std::string& tag) {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("tessera_io_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path operator/(const std::string& name) const { return path / name; }
};

inline void write_file(const std::filesystem::path& p, const std::vector<std::byte>& bytes, std::size_t n = SIZE_MAX) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(std::min(n, bytes.size())));
}

inline std::vector<std::byte> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  if (!c.empty()) std::memcpy(b.data(), c.data(), c.size());
  return b;
}

/// Byte-level GGUF writer, following gguf-py's GGUFWriter: header, kv, tensor infos, padding to
/// the alignment, then each tensor's bytes padded to the alignment.
class gguf_builder {
 public:
  std::uint32_t version = 3;
  std::uint64_t alignment = 32;

  // ---- raw encoders (public so tests can hand-craft broken files) ----
  template <class T>
  static void put(std::vector<std::byte>& b, T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
  }
  static void put_str(std::vector<std::byte>& b, const std::string& s) {
    put<std::uint64_t>(b, s.size());
    for (char c : s) b.push_back(static_cast<std::byte>(c));
  }

  // ---- metadata ----
  void kv_raw(const std::string& key, io::gguf_type t, const std::vector<std::byte>& payload) {
    put_str(kv_, key);
    put<std::uint32_t>(kv_, static_cast<std::uint32_t>(t));
    kv_.insert(kv_.end(), payload.begin(), payload.end());
    ++n_kv_;
  }
  template <class T>
  void kv(const std::string& key, io::gguf_type t, T v) {
    std::vector<std::byte> p;
    put<T>(p, v);
    kv_raw(key, t, p);
  }
  void kv_u32(const std::string& k, std::uint32_t v) { kv(k, io::gguf_type::u32, v); }
  void kv_i32(const std::string& k, std::int32_t v) { kv(k, io::gguf_type::i32, v); }
  void kv_u64(const std::string& k, std::uint64_t v) { kv(k, io::gguf_type::u64, v); }
  void kv_f32(const std::string& k, float v) { kv(k, io::gguf_type::f32, v); }
  void kv_bool(const std::string& k, bool v) { kv(k, io::gguf_type::boolean, static_cast<std::uint8_t>(v)); }
  void kv_str(const std::string& k, const std::string& v) {
    std::vector<std::byte> p;
    put_str(p, v);
    kv_raw(k, io::gguf_type::string, p);
  }
  void kv_str_array(const std::string& k, const std::vector<std::string>& v) {
    std::vector<std::byte> p;
    put<std::uint32_t>(p, static_cast<std::uint32_t>(io::gguf_type::string));
    put<std::uint64_t>(p, v.size());
    for (auto& s : v) put_str(p, s);
    kv_raw(k, io::gguf_type::array, p);
  }
  template <class T>
  void kv_array(const std::string& k, io::gguf_type elem, const std::vector<T>& v) {
    std::vector<std::byte> p;
    put<std::uint32_t>(p, static_cast<std::uint32_t>(elem));
    put<std::uint64_t>(p, v.size());
    for (auto& x : v) put<T>(p, x);
    kv_raw(k, io::gguf_type::array, p);
  }

  // ---- tensors ----
  /// ne innermost first (ggml order); bytes must have the type's size.
  void tensor(const std::string& name, io::ggml_type t, std::vector<std::int64_t> ne, std::vector<std::byte> bytes) {
    tensors_.push_back({name, t, std::move(ne), std::move(bytes)});
  }
  void tensor_f32(const std::string& name, std::vector<std::int64_t> ne, const std::vector<float>& v) {
    std::vector<std::byte> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    tensor(name, io::ggml_type::f32, std::move(ne), std::move(b));
  }

  std::vector<std::byte> bytes() const {
    std::vector<std::byte> b;
    for (char c : std::string("GGUF")) b.push_back(static_cast<std::byte>(c));
    put<std::uint32_t>(b, version);
    put<std::uint64_t>(b, tensors_.size());
    put<std::uint64_t>(b, n_kv_);
    b.insert(b.end(), kv_.begin(), kv_.end());
    std::uint64_t off = 0;
    for (auto& t : tensors_) {
      put_str(b, t.name);
      put<std::uint32_t>(b, static_cast<std::uint32_t>(t.ne.size()));
      for (auto d : t.ne) put<std::uint64_t>(b, static_cast<std::uint64_t>(d));
      put<std::uint32_t>(b, static_cast<std::uint32_t>(t.type));
      put<std::uint64_t>(b, off);
      off += pad(t.bytes.size());
    }
    b.resize(pad(b.size()));
    for (auto& t : tensors_) {
      b.insert(b.end(), t.bytes.begin(), t.bytes.end());
      b.resize(pad(b.size()));
    }
    return b;
  }

 private:
  struct entry {
    std::string name;
    io::ggml_type type;
    std::vector<std::int64_t> ne;
    std::vector<std::byte> bytes;
  };
  std::uint64_t pad(std::uint64_t n) const { return (n + alignment - 1) / alignment * alignment; }
  std::vector<std::byte> kv_;
  std::uint64_t n_kv_ = 0;
  std::vector<entry> tensors_;
};

}  // namespace tessera::test
