// tessera/io/weights.hpp: weight_map, name → typed view over a checkpoint's mapped files.
//
// A weight_map opens a Hugging Face folder (model.safetensors, or shards listed in
// model.safetensors.index.json) or one .gguf file, and hands out tensors by their Hugging Face
// name, in the Hugging Face layout, whatever the file:
//   - GGUF names become HF names through a gguf_tensor_mapper given to open() / from_gguf(): each
//     family knows its own (families/<name>.hpp, `blk.0.attn_q.weight` →
//     `model.layers.0.self_attn.q_proj.weight`, written with gguf_rename and a table) and what
//     llama.cpp's convert_hf_to_gguf.py changed, which the map undoes on read (weight_transform:
//     llama's q/k row permutation, GPT-2's transposed Conv1D weights, Mamba's A = -exp(A_log);
//     reshaped extents). Without a mapper, or for a tensor it does not rename, the GGUF name stays.
//   - ggml dims are innermost-first: a GGUF tensor with ne = [k, n] is our (n, k).
// view<T, Rank>(name) is zero-copy into the mapping when the stored dtype is T, nothing needs
// undoing and the data is aligned; otherwise the tensor is materialized once into owned aligned
// storage. f32<Rank>(name) converts f16 / bf16 / quantized tensors to f32 once and caches the
// result. After open() every member may be called from many threads at once.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include <tessera/config.hpp>
#include <tessera/core/blocks.hpp>
#include <tessera/core/blocks_interleaved.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/io/gguf.hpp>
#include <tessera/io/gguf_quants.hpp>
#include <tessera/io/mmap.hpp>
#include <tessera/io/safetensors.hpp>

namespace tessera {
inline namespace v0 {
namespace io {

/// The ggml type id of a block layout (core/blocks.hpp).
template <quant_block B>
constexpr ggml_type ggml_type_of() noexcept {
  if constexpr (std::is_same_v<B, block_q4_0>) return ggml_type::q4_0;
  else if constexpr (std::is_same_v<B, block_q4_1>) return ggml_type::q4_1;
  else if constexpr (std::is_same_v<B, block_q5_0>) return ggml_type::q5_0;
  else if constexpr (std::is_same_v<B, block_q5_1>) return ggml_type::q5_1;
  else if constexpr (std::is_same_v<B, block_q8_0>) return ggml_type::q8_0;
  else if constexpr (std::is_same_v<B, block_q4_K>) return ggml_type::q4_k;
  else if constexpr (std::is_same_v<B, block_q5_K>) return ggml_type::q5_k;
  else if constexpr (std::is_same_v<B, block_q6_K>) return ggml_type::q6_k;
  else if constexpr (std::is_same_v<B, block_iq4_nl>) return ggml_type::iq4_nl;
  else if constexpr (std::is_same_v<B, block_iq4_xs>) return ggml_type::iq4_xs;
  else static_assert(sizeof(B) == 0, "ggml_type_of: a block layout without a ggml type id");
}

/// Calls f(B{}) with the block layout of ggml type t; false (f not called) when t has none here.
/// Every layout the kernels compute in; the ones tessera can also write are encodable_block.
template <class F>
bool with_block_layout(ggml_type t, F&& f) {
  switch (t) {
    case ggml_type::q8_0: f(block_q8_0{}); return true;
    case ggml_type::q4_0: f(block_q4_0{}); return true;
    case ggml_type::q4_1: f(block_q4_1{}); return true;
    case ggml_type::q5_0: f(block_q5_0{}); return true;
    case ggml_type::q5_1: f(block_q5_1{}); return true;
    case ggml_type::q4_k: f(block_q4_K{}); return true;
    case ggml_type::q5_k: f(block_q5_K{}); return true;
    case ggml_type::q6_k: f(block_q6_K{}); return true;
    case ggml_type::iq4_nl: f(block_iq4_nl{}); return true;
    case ggml_type::iq4_xs: f(block_iq4_xs{}); return true;
    default: return false;
  }
}

/// What one weight is, as models see it.
struct weight_info {
  std::string name;               // Hugging Face name
  std::string file;               // the file it lives in
  std::string file_name;          // its name inside that file (the GGUF name for GGUF)
  std::string type_name;          // stored type as the file names it: "F32", "BF16", "Q4_K", "F8_E4M3"
  std::optional<dtype> type;      // the tessera dtype, nullopt when quantized / unsupported
  std::vector<index_t> extents;   // outermost first, Hugging Face layout
  std::int64_t numel = 0;
  std::uint64_t nbytes = 0;       // bytes in the file
};

/// What a GGUF-to-HF mapping does to a tensor's data besides renaming it.
enum class weight_transform {
  none,
  unpermute_rope,   // llama q/k: rows (n_head, head_dim/2, 2) → (n_head, 2, head_dim/2)
  transpose,        // GPT-2 Conv1D: (out, in) → (in, out)
  log_neg,          // Mamba A = -exp(A_log) → A_log = log(-A)
  minus_one,        // Gemma RMSNorm weights: llama.cpp stores 1 + w → w
};

/// Whether `t` changes the values (read through f32() only), not just their order.
constexpr bool changes_values(weight_transform t) noexcept {
  return t == weight_transform::log_neg || t == weight_transform::minus_one;
}

namespace detail {

/// Levenshtein distance (for "did you mean" suggestions).
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

/// One renaming rule: GGUF name part → HF name ("{}" stands for the layer index).
struct gguf_name_rule {
  std::string_view gguf;  // per-layer part after "blk.N." (or the whole name for global rules), without suffix
  std::string_view hf;    // with "{}" for the layer index
};

}  // namespace detail

using detail::gguf_name_rule;

/// The HF name of GGUF tensor `gguf_name` by a family's tables: `global` for whole names
/// ("token_embd" → "model.embed_tokens"), `layer` for the part after "blk.N."; the .weight /
/// .bias suffix is kept. "" when no rule matches.
inline std::string gguf_rename(std::span<const gguf_name_rule> global, std::span<const gguf_name_rule> layer,
                               std::string_view gguf_name) {
  std::string_view base = gguf_name, suffix;
  for (std::string_view s : {std::string_view(".weight"), std::string_view(".bias")})
    if (base.size() > s.size() && base.ends_with(s)) {
      suffix = s;
      base.remove_suffix(s.size());
      break;
    }
  if (base.starts_with("blk.")) {
    const std::size_t dot = base.find('.', 4);
    if (dot == std::string_view::npos) return {};
    const std::string_view bid = base.substr(4, dot - 4);
    if (bid.empty() || !std::all_of(bid.begin(), bid.end(), [](char c) { return c >= '0' && c <= '9'; })) return {};
    const std::string_view rest = base.substr(dot + 1);
    for (const auto& r : layer)
      if (r.gguf == rest) {
        std::string hf(r.hf);
        hf.replace(hf.find("{}"), 2, bid);
        return hf + std::string(suffix);
      }
    return {};
  }
  for (const auto& r : global)
    if (r.gguf == base) return std::string(r.hf) + std::string(suffix);
  return {};
}

/// What a family's GGUF map says about one tensor: its HF name and what to undo on read.
struct gguf_tensor_fix {
  std::string name;                     // HF name; "" keeps the GGUF name
  std::vector<index_t> extents;         // HF-layout extents, outermost first (preset to the file's)
  weight_transform transform = weight_transform::none;
  index_t rope_heads = 0;               // unpermute_rope: heads of the projection
};

/// Called once per GGUF tensor with the file (its metadata) and the tensor's GGUF name.
using gguf_tensor_mapper = std::function<void(const gguf_file&, std::string_view gguf_name, gguf_tensor_fix&)>;

class weight_map {
 public:
  weight_map() = default;
  weight_map(const weight_map&) = delete;
  weight_map& operator=(const weight_map&) = delete;
  weight_map(weight_map&&) noexcept = default;
  weight_map& operator=(weight_map&&) noexcept = default;

  /// Opens a Hugging Face folder (single or sharded safetensors), a .safetensors file, a
  /// model.safetensors.index.json, or a .gguf file. io_error when nothing can be read there,
  /// format_error for malformed files.
  static weight_map open(const std::filesystem::path& path, const gguf_tensor_mapper& map = {}) {
    namespace fs = std::filesystem;
    weight_map m;
    m.source_ = path.string();
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      if (fs::exists(path / "model.safetensors.index.json")) {
        m.load_index(path / "model.safetensors.index.json");
      } else if (fs::exists(path / "model.safetensors")) {
        m.load_safetensors(std::make_shared<safetensors_file>(path / "model.safetensors"));
      } else {
        std::vector<fs::path> st, gg;
        for (const auto& e : fs::directory_iterator(path)) {
          if (e.path().extension() == ".safetensors") st.push_back(e.path());
          if (e.path().extension() == ".gguf") gg.push_back(e.path());
        }
        std::sort(st.begin(), st.end());
        if (!st.empty()) {
          for (const auto& p : st) m.load_safetensors(std::make_shared<safetensors_file>(p));
        } else if (gg.size() == 1) {
          m.load_gguf(std::make_shared<gguf_file>(gg[0]), map);
        } else {
          throw io_error(path.string() + ": no model.safetensors, model.safetensors.index.json, *.safetensors or single "
                                         "*.gguf in this folder");
        }
      }
    } else if (!fs::exists(path, ec)) {
      throw io_error(path.string() + ": no such file or folder");
    } else if (path.filename().string().ends_with(".index.json")) {
      m.load_index(path);
    } else {
      auto file = map_file(path);
      if (file->size() >= 4 && std::memcmp(file->data(), "GGUF", 4) == 0)
        m.load_gguf(std::make_shared<gguf_file>(file), map);
      else
        m.load_safetensors(std::make_shared<safetensors_file>(file));
    }
    m.finish();
    return m;
  }

  /// A weight_map over files already opened (in-memory mappings included: tests and fuzzers load
  /// a checkpoint without touching the disk this way). `source` names the checkpoint in messages.
  static weight_map from_safetensors(std::vector<std::shared_ptr<safetensors_file>> files, std::string source) {
    weight_map m;
    m.source_ = std::move(source);
    for (auto& f : files) m.load_safetensors(std::move(f));
    m.finish();
    return m;
  }
  static weight_map from_gguf(std::shared_ptr<gguf_file> file, const gguf_tensor_mapper& map = {}) {
    weight_map m;
    m.source_ = file->path();
    m.load_gguf(std::move(file), map);
    m.finish();
    return m;
  }

  /// The path given to open().
  const std::string& source() const noexcept { return source_; }
  /// The GGUF file (tokenizer metadata, architecture), or nullptr for safetensors checkpoints.
  const gguf_file* gguf() const noexcept { return gguf_.get(); }
  /// The files the weights live in.
  std::vector<std::string> files() const {
    std::vector<std::string> f;
    for (const auto& s : st_files_) f.push_back(s->path());
    if (gguf_) f.push_back(gguf_->path());
    return f;
  }

  bool contains(std::string_view name) const { return index_.count(std::string(name)) != 0; }
  /// format_error naming the tensor, the checkpoint and the closest names when absent.
  const weight_info& info(std::string_view name) const { return entry_of(name).info; }
  /// All weight names, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const auto& e : entries_) n.push_back(e->info.name);
    std::sort(n.begin(), n.end());
    return n;
  }
  std::size_t size() const noexcept { return entries_.size(); }
  /// Bytes of all weights in their files.
  std::uint64_t total_bytes() const noexcept {
    std::uint64_t b = 0;
    for (const auto& e : entries_) b += e->info.nbytes;
    return b;
  }
  /// Number of elements of all weights.
  std::int64_t total_numel() const noexcept {
    std::int64_t n = 0;
    for (const auto& e : entries_) n += e->info.numel;
    return n;
  }
  /// Memory the weights take once a model holds them all as f32 (4 bytes per element, mapped
  /// or converted): what a load needs, known before anything is read (--max-memory checks it).
  std::uint64_t f32_bytes() const noexcept {
    std::uint64_t b = 0;
    for (const auto& e : entries_) b += static_cast<std::uint64_t>(e->info.numel) * 4;  // numel < 2^62 / file bytes
    return b;
  }
  /// Memory the weights take once a model holds them, known before anything is read: stored
  /// bytes for what is read in place (f32 / f16 / bf16 and matrices of ggml blocks), the encoded
  /// size for matrices quantized on load (set_matrix_quantization), 4 bytes per element for what
  /// is widened to f32 (--max-memory and load_options::max_memory check it).
  std::uint64_t resident_bytes() const {
    std::uint64_t b = 0;
    for (const auto& e : entries_) {
      const auto numel = static_cast<std::uint64_t>(e->info.numel);
      const bool matrix = e->info.extents.size() == 2;
      std::uint64_t q = 0;  // bytes as blocks, 0 when not held in blocks
      if (matrix && e->ggml)
        with_block_layout(*e->ggml, [&](auto tag) {
          using B = decltype(tag);
          q = stored_as<B>(*e) || stored_transposed_as<B>(*e) ? e->info.nbytes : 0;
        });
      if (!q && matrix && quantize_ && e->info.type && is_floating(*e->info.type))
        with_block_layout(*quantize_, [&](auto tag) {
          using B = decltype(tag);
          if (encodable_block<B> && e->info.extents[1] % B::block_size == 0) q = numel / B::block_size * sizeof(B);
        });
      if (q) b += q;
      else if (e->info.type == dtype::f16 || e->info.type == dtype::bf16) b += numel * 2;
      else b += numel * 4;
    }
    return b;
  }

  /// Stored type name ("F32", "Q4_K", ...) → number of tensors.
  std::map<std::string, index_t> dtype_counts() const {
    std::map<std::string, index_t> c;
    for (const auto& e : entries_) ++c[e->info.type_name];
    return c;
  }

  /// A view of `name` as stored (dtype T, rank Rank): zero-copy into the mapping when possible.
  template <class T, std::size_t Rank>
  tensor_view<const T, Rank> view(std::string_view name) const {
    const entry& e = entry_of(name);
    const extents<Rank> ext = check_rank<Rank>(e, "view");
    if (e.info.type != dtype_of<T>())
      throw format_error("weight_map::view: tensor '" + e.info.name + "' in " + e.info.file + " has dtype " +
                         e.info.type_name + ", requested " + std::string(dtype_name(dtype_of<T>())) +
                         (e.info.type ? "" : " (use f32() to dequantize)"));
    if (e.transform == weight_transform::none && reinterpret_cast<std::uintptr_t>(e.data) % alignof(T) == 0)
      return tensor_view<const T, Rank>(reinterpret_cast<const T*>(e.data), ext);
    std::call_once(*e.native_once, [&] { e.native = materialize_native(e); });
    return tensor_view<const T, Rank>(reinterpret_cast<const T*>(e.native.get()), ext);
  }

  /// Whether `name` is a matrix stored in ggml blocks of type B (block_q4_K, ...) that blocks<B>()
  /// hands out as they are: 2-D, rows of whole blocks, not reshaped, transposed or log-transformed
  /// by the family's GGUF map (a llama q/k row permutation is fine: it moves whole rows).
  template <quant_block B>
  bool stored_as(std::string_view name) const {
    return stored_as<B>(entry_of(name));
  }

  /// `name` as its stored ggml blocks: a (rows, cols / B::block_size) matrix of B, zero-copy into
  /// the mapping (GGUF aligns tensor data to 32 bytes; a block needs 2), or with its rows put back
  /// in order once into owned storage when the family's map un-permutes them. format_error naming
  /// the tensor when it is stored otherwise (ask stored_as<B>() first, or use f32()).
  template <quant_block B>
  tensor_view<const B, 2> blocks(std::string_view name) const {
    const entry& e = entry_of(name);
    if (!stored_as<B>(e))
      throw format_error("weight_map::blocks: tensor '" + e.info.name + "' in " + e.info.file + " is stored as " +
                         e.info.type_name + " (rank " + std::to_string(e.info.extents.size()) + "), not as a matrix of " +
                         std::string(ggml_type_name(ggml_type_of<B>())) + " blocks the model can read in place");
    const extents<2> ext{e.info.extents[0], e.info.extents[1] / B::block_size};
    if (e.transform == weight_transform::none && reinterpret_cast<std::uintptr_t>(e.data) % alignof(B) == 0)
      return tensor_view<const B, 2>(reinterpret_cast<const B*>(e.data), ext);
    std::call_once(*e.native_once, [&] {
      e.native = tessera::detail::aligned_buffer<std::byte>(static_cast<index_t>(std::max<std::uint64_t>(1, e.info.nbytes)));
      const std::size_t row_bytes = static_cast<std::size_t>(ext[1]) * sizeof(B);
      if (e.transform == weight_transform::unpermute_rope) unpermute_rows(e, e.data, e.native.get(), row_bytes);
      else std::memcpy(e.native.get(), e.data, static_cast<std::size_t>(e.info.nbytes));
    });
    return tensor_view<const B, 2>(reinterpret_cast<const B*>(e.native.get()), ext);
  }

  /// Whether `name` is handed out as the transpose of the matrix its file stores (GPT-2's Conv1D
  /// weights in a GGUF: stored (out, in), handed out in HF's (in, out)) and that stored matrix is
  /// of T (float, f16, bf16 or a block type, rows of whole blocks), readable in place: then
  /// stored_transpose<T>() hands it out without copying, and a layer that wants (out, in) reads it
  /// as it is (a quantized one stays in its blocks).
  template <class T>
  bool stored_transposed_as(std::string_view name) const {
    return stored_transposed_as<T>(entry_of(name));
  }

  /// The stored (out, in) matrix of a transposed tensor (stored_transposed_as<T>(name)), zero-copy:
  /// (rows, cols / block size) of T. format_error naming the tensor otherwise.
  template <class T>
  tensor_view<const T, 2> stored_transpose(std::string_view name) const {
    const entry& e = entry_of(name);
    if (!stored_transposed_as<T>(e))
      throw format_error("weight_map::stored_transpose: tensor '" + e.info.name + "' in " + e.info.file +
                         " is not a transposed matrix stored as " + element_name<T>());
    return tensor_view<const T, 2>(reinterpret_cast<const T*>(e.data),
                                   {e.stored_extents[0], e.stored_extents[1] / block_elements_v<T>});
  }

  /// Matrices stored as floats (f32 / f16 / bf16 / f64) are handed out quantized to blocks of
  /// `type` by layers::weight_matrix::load (load_options::quantize, `tessera --quantize`); nullopt:
  /// as stored. Set it before building the model. format_error for a type with no block layout.
  void set_matrix_quantization(std::optional<ggml_type> type) {
    if (type && !quantizable_to(*type))
      throw format_error("weight_map: cannot quantize matrices to " + std::string(ggml_type_name(*type)) +
                         " (supported: Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K)");
    quantize_ = type;
  }
  std::optional<ggml_type> matrix_quantization() const noexcept { return quantize_; }

  /// Whether quantized<B>(name) can encode `name`: a floating-point matrix whose rows are whole
  /// blocks of B.
  template <quant_block B>
  bool quantizable(std::string_view name) const {
    const entry& e = entry_of(name);
    return e.info.type && is_floating(*e.info.type) && e.info.extents.size() == 2 &&
           e.info.extents[1] % B::block_size == 0;
  }

  /// `name` encoded into blocks of B (core/blocks.hpp's quantize) once, kept, and handed out as a
  /// (rows, cols / B::block_size) matrix; the f32 rows it was made from are not kept (a stored f32
  /// matrix is read in place, others are widened into a temporary). format_error unless
  /// quantizable<B>(name).
  template <encodable_block B>
  tensor_view<const B, 2> quantized(std::string_view name) const {
    const entry& e = entry_of(name);
    if (!quantizable<B>(name))
      throw format_error("weight_map::quantized: tensor '" + e.info.name + "' in " + e.info.file + " (" + e.info.type_name +
                         ", rank " + std::to_string(e.info.extents.size()) + ") is not a floating-point matrix with rows of whole " +
                         std::string(ggml_type_name(ggml_type_of<B>())) + " blocks of " + std::to_string(B::block_size));
    const index_t rows = e.info.extents[0], blocks_per_row = e.info.extents[1] / B::block_size;
    std::call_once(*e.quant_once, [&] {
      fbuffer widened;
      const float* x = nullptr;
      if (e.info.type == dtype::f32 && e.transform == weight_transform::none &&
          reinterpret_cast<std::uintptr_t>(e.data) % alignof(float) == 0) {
        x = reinterpret_cast<const float*>(e.data);
      } else {
        widened = materialize_f32(e);
        x = widened.get();
      }
      e.quant = tessera::detail::aligned_buffer<std::byte>(
          std::max<index_t>(1, rows * blocks_per_row * static_cast<index_t>(sizeof(B))));
      B* y = reinterpret_cast<B*>(e.quant.get());
      const index_t cols = e.info.extents[1];
      parallel_for(0, rows, 16, [&](index_t r0, index_t r1) {
        for (index_t r = r0; r < r1; ++r) quantize(x + r * cols, y + r * blocks_per_row, blocks_per_row);
      });
    });
    return tensor_view<const B, 2>(reinterpret_cast<const B*>(e.quant.get()), {rows, blocks_per_row});
  }

  /// Whether interleaved<B>(name) applies: `name` is stored as a matrix of B::row_block (q4_0,
  /// q4_K, ..., or f32 / f16 / bf16 for the panels block_x16) read in place or with its rows reordered, with a multiple
  /// of B::rows rows.
  template <interleaved_block B>
  bool interleavable(std::string_view name) const {
    using R = typename B::row_block;
    const entry& e = entry_of(name);
    return stored_rows_as<R>(e) && e.info.extents[0] % B::rows == 0 &&
           reinterpret_cast<std::uintptr_t>(e.data) % alignof(R) == 0;
  }

  /// `name` (interleavable<B>) rewritten once into rows interleaved B::rows at a time: a
  /// (rows / 8, cols / block) matrix of B (core/blocks_interleaved.hpp: block_q4_0x8, block_q4_Kx8, ...), rows
  /// reordered first where the map un-permutes them, kept on huge pages (io::huge_page_arena). The
  /// stored bytes are not read again: their pages leave the process's resident set
  /// (io::mapped_file::drop_resident), so memory stays about the file's size. format_error naming
  /// the tensor unless interleavable<B>(name).
  template <interleaved_block B>
  tensor_view<const B, 2> interleaved(std::string_view name) const {
    using R = typename B::row_block;
    const entry& e = entry_of(name);
    if (!interleavable<B>(name))
      throw format_error("weight_map::interleaved: tensor '" + e.info.name + "' in " + e.info.file + " (" +
                         e.info.type_name + ") is not a matrix of " + element_name<R>() + " with a multiple of " +
                         std::to_string(B::rows) + " rows");
    const index_t groups = e.info.extents[0] / B::rows, kb = e.info.extents[1] / B::block_size;
    std::call_once(*e.quant_once, [&] {
      e.interleaved = arena_->allocate(static_cast<std::size_t>(groups * kb) * sizeof(B));
      auto* y = reinterpret_cast<B*>(e.interleaved);
      const auto* x = reinterpret_cast<const R*>(e.data);
      const index_t head_dim = e.transform == weight_transform::unpermute_rope ? e.info.extents[0] / e.rope_heads : 0;
      auto stored_row = [&](index_t r) { return head_dim ? static_cast<index_t>(rope_source_row(r, head_dim)) : r; };
      // slabs of ~4 MB of the stored matrix, each dropped from the resident set once rewritten (the
      // whole matrix at the end when rows are reordered), so that the peak holds one slab twice
      const std::size_t row_bytes = static_cast<std::size_t>(kb) * sizeof(R);
      const index_t slab = std::max<index_t>(1, static_cast<index_t>((std::size_t{4} << 20) / (B::rows * row_bytes)));
      for (index_t s0 = 0; s0 < groups; s0 += slab) {
        const index_t s1 = std::min(groups, s0 + slab);
        parallel_for(s0, s1, 16, [&](index_t p0, index_t p1) {
          for (index_t p = p0; p < p1; ++p) {
            const R* rows[B::rows];
            for (index_t r = 0; r < B::rows; ++r) rows[r] = x + stored_row(B::rows * p + r) * kb;
            interleave_rows(rows, kb, y + p * kb);
          }
        });
        if (e.mapping && !head_dim)
          e.mapping->drop_resident(e.data + static_cast<std::size_t>(s0 * B::rows) * row_bytes,
                                   static_cast<std::size_t>((s1 - s0) * B::rows) * row_bytes);
      }
      if (e.mapping) e.mapping->drop_resident(e.data, static_cast<std::size_t>(e.info.nbytes));
    });
    return tensor_view<const B, 2>(reinterpret_cast<const B*>(e.interleaved), {groups, kb});
  }

  /// `name` as f32: zero-copy for aligned f32 tensors, converted once (and cached) otherwise.
  /// A weight is a floating-point tensor (F32, F16, BF16, F64 or a GGUF quantization): integer and
  /// bool tensors are a format_error naming the tensor and its dtype, never numbers made up.
  template <std::size_t Rank>
  tensor_view<const float, Rank> f32(std::string_view name) const {
    const entry& e = entry_of(name);
    const extents<Rank> ext = check_rank<Rank>(e, "f32");
    if (e.info.type && !is_floating(*e.info.type))
      throw format_error("weight_map::f32: tensor '" + e.info.name + "' in " + e.info.file + " has integer dtype " +
                         e.info.type_name + "; a weight must be floating-point (F32, F16, BF16, F64 or quantized)");
    if (e.info.type == dtype::f32 && !changes_values(e.transform)) return view<float, Rank>(name);
    std::call_once(*e.f32_once, [&] { e.f32 = materialize_f32(e); });
    return tensor_view<const float, Rank>(e.f32.get(), ext);
  }

 private:
  using buffer = std::unique_ptr<std::byte[], tessera::detail::aligned_deleter>;
  using fbuffer = std::unique_ptr<float[], tessera::detail::aligned_deleter>;

  struct entry {
    weight_info info;
    const std::byte* data = nullptr;           // the stored bytes in the mapping
    const mapped_file* mapping = nullptr;      // the file's mapping (owned by st_files_ / gguf_)
    std::optional<ggml_type> ggml;             // GGUF storage type
    std::vector<index_t> stored_extents;       // extents in the file (before transforms)
    weight_transform transform = weight_transform::none;
    index_t rope_heads = 0;                    // unpermute_rope: number of heads
    mutable std::unique_ptr<std::once_flag> native_once = std::make_unique<std::once_flag>();
    mutable std::unique_ptr<std::once_flag> f32_once = std::make_unique<std::once_flag>();
    mutable std::unique_ptr<std::once_flag> quant_once = std::make_unique<std::once_flag>();
    mutable buffer native;
    mutable fbuffer f32;
    mutable buffer quant;                       // quantized<B>(): the matrix encoded on request
    mutable std::byte* interleaved = nullptr;   // interleaved<B>(), in arena_
  };

  static bool quantizable_to(ggml_type t) {
    bool ok = false;
    with_block_layout(t, [&](auto tag) { ok = encodable_block<decltype(tag)>; });
    return ok;
  }

  template <class T>
  static std::string element_name() {
    if constexpr (quant_block<T>) return ggml_type_name(ggml_type_of<T>());
    else return std::string(dtype_name(dtype_of<T>()));
  }

  template <class T>
  static bool stored_transposed_as(const entry& e) noexcept {
    if (e.transform != weight_transform::transpose || e.stored_extents.size() != 2 || !e.data) return false;
    const index_t rows = e.stored_extents[0], cols = e.stored_extents[1];
    if constexpr (quant_block<T>) {
      if (e.ggml != ggml_type_of<T>() || cols % T::block_size != 0) return false;
    } else {
      if (e.info.type != dtype_of<T>()) return false;
    }
    return reinterpret_cast<std::uintptr_t>(e.data) % alignof(T) == 0 &&
           e.info.nbytes == static_cast<std::uint64_t>(rows) * static_cast<std::uint64_t>(cols / block_elements_v<T>) * sizeof(T);
  }

  template <quant_block B>
  static bool stored_as(const entry& e) noexcept {
    return e.ggml == ggml_type_of<B>() && e.info.extents.size() == 2 && e.info.extents == e.stored_extents &&
           e.info.extents[1] % B::block_size == 0 &&
           (e.transform == weight_transform::none || e.transform == weight_transform::unpermute_rope) &&
           e.info.nbytes == static_cast<std::uint64_t>(e.info.extents[0]) *
                                static_cast<std::uint64_t>(e.info.extents[1] / B::block_size) * sizeof(B);
  }

  /// Whether e is a matrix of R (a ggml block, or float / f16 / bf16) read in place or with its rows
  /// reordered.
  template <class R>
  static bool stored_rows_as(const entry& e) noexcept {
    if constexpr (std::is_same_v<R, float> || std::is_same_v<R, f16> || std::is_same_v<R, bf16>)
      return e.info.type == dtype_of<R>() && e.info.extents.size() == 2 && e.info.extents == e.stored_extents &&
             (e.transform == weight_transform::none || e.transform == weight_transform::unpermute_rope) &&
             e.info.nbytes == static_cast<std::uint64_t>(e.info.extents[0]) *
                                  static_cast<std::uint64_t>(e.info.extents[1]) * sizeof(R);
    else return stored_as<R>(e);
  }

  static bool is_floating(dtype t) noexcept {
    return t == dtype::f32 || t == dtype::f16 || t == dtype::bf16 || t == dtype::f64;
  }

  const entry& entry_of(std::string_view name) const {
    auto it = index_.find(std::string(name));
    if (it != index_.end()) return *entries_[it->second];
    std::vector<std::pair<std::size_t, std::string>> near;
    for (const auto& e : entries_) near.emplace_back(detail::edit_distance(name, e->info.name), e->info.name);
    std::sort(near.begin(), near.end());
    std::string msg = "weight_map: tensor '" + std::string(name) + "' not found in " + source_;
    if (!near.empty()) {
      msg += " (closest:";
      for (std::size_t k = 0; k < std::min<std::size_t>(3, near.size()); ++k) msg += (k ? ", '" : " '") + near[k].second + "'";
      msg += ")";
    }
    throw format_error(msg);
  }

  template <std::size_t Rank>
  static extents<Rank> check_rank(const entry& e, const char* op) {
    if (e.info.extents.size() != Rank) {
      std::string s = "(";
      for (std::size_t i = 0; i < e.info.extents.size(); ++i) s += (i ? ", " : "") + std::to_string(e.info.extents[i]);
      throw shape_error(std::string("weight_map::") + op + ": tensor '" + e.info.name + "' in " + e.info.file +
                        " has shape " + s + ") of rank " + std::to_string(e.info.extents.size()) + ", requested rank " +
                        std::to_string(Rank));
    }
    extents<Rank> ext{};
    for (std::size_t i = 0; i < Rank; ++i) ext[i] = e.info.extents[i];
    return ext;
  }

  // Row index mapping of the llama q/k un-permutation: HF row h*hd + j*hd/2 + i comes from GGUF
  // row h*hd + 2*i + j (convert_hf_to_gguf's reshape(n_head, 2, hd/2, ...).swapaxes(1, 2)).
  static std::int64_t rope_source_row(std::int64_t hf_row, std::int64_t head_dim) {
    const std::int64_t h = hf_row / head_dim, r = hf_row % head_dim, half = head_dim / 2;
    const std::int64_t j = r / half, i = r % half;
    return h * head_dim + 2 * i + j;
  }

  // The llama q/k un-permutation of whole rows of `row_bytes` bytes (elements or quantized blocks).
  static void unpermute_rows(const entry& e, const std::byte* src, std::byte* dst, std::size_t row_bytes) {
    const std::int64_t rows = e.stored_extents[0];
    const std::int64_t head_dim = rows / e.rope_heads;
    for (std::int64_t r = 0; r < rows; ++r)
      std::memcpy(dst + static_cast<std::size_t>(r) * row_bytes,
                  src + static_cast<std::size_t>(rope_source_row(r, head_dim)) * row_bytes, row_bytes);
  }

  // Applies the entry's transform to `src` (stored layout, elements of `elem` bytes) into `dst`.
  static void apply_transform(const entry& e, const std::byte* src, std::byte* dst, std::size_t elem) {
    const auto n = static_cast<std::size_t>(e.info.numel);
    switch (e.transform) {
      case weight_transform::none:
        if (n) std::memcpy(dst, src, n * elem);
        return;
      case weight_transform::unpermute_rope: {
        const std::int64_t rows = e.stored_extents[0];
        const std::int64_t cols = rows ? e.info.numel / rows : 0;
        unpermute_rows(e, src, dst, static_cast<std::size_t>(cols) * elem);
        return;
      }
      case weight_transform::transpose: {
        const std::int64_t rows = e.stored_extents[0], cols = e.stored_extents[1];
        for (std::int64_t r = 0; r < rows; ++r)
          for (std::int64_t c = 0; c < cols; ++c)
            std::memcpy(dst + static_cast<std::size_t>(c * rows + r) * elem, src + static_cast<std::size_t>(r * cols + c) * elem, elem);
        return;
      }
      case weight_transform::log_neg:
      case weight_transform::minus_one:
        if (n) std::memcpy(dst, src, n * elem);  // the values are changed by the f32 path only
        return;
    }
  }

  static buffer materialize_native(const entry& e) {
    if (changes_values(e.transform))
      throw format_error("weight_map::view: tensor '" + e.info.name + "' in " + e.info.file +
                         (e.transform == weight_transform::log_neg ? " is stored as A = -exp(A_log)" : " is stored as 1 + w") +
                         "; use f32() to read it");
    const std::size_t elem = dtype_size(*e.info.type);
    buffer b = tessera::detail::aligned_buffer<std::byte>(static_cast<index_t>(std::max<std::size_t>(1, e.info.numel * elem)));
    apply_transform(e, e.data, b.get(), elem);
    return b;
  }

  static fbuffer materialize_f32(const entry& e) {
    const auto n = static_cast<index_t>(e.info.numel);
    fbuffer raw = tessera::detail::aligned_buffer<float>(std::max<index_t>(1, n));
    // 1. convert the stored elements to f32 (stored layout)
    if (e.ggml) {
      if (!can_dequantize(*e.ggml))
        throw format_error("weight_map::f32: tensor '" + e.info.name + "' in " + e.info.file + " has ggml type " +
                           e.info.type_name + ", which tessera cannot dequantize");
      dequantize(*e.ggml, e.data, raw.get(), n);
    } else {
      if (!e.info.type)
        throw format_error("weight_map::f32: tensor '" + e.info.name + "' in " + e.info.file + " has dtype " +
                           e.info.type_name + ", which tessera does not support");
      const auto* p = e.data;
      auto widen = [&](auto tag) {
        using S = decltype(tag);
        for (index_t i = 0; i < n; ++i) {
          S v;
          std::memcpy(&v, p + i * static_cast<index_t>(sizeof(S)), sizeof(S));
          raw[static_cast<std::size_t>(i)] = static_cast<float>(v);
        }
      };
      switch (*e.info.type) {
        case dtype::f32: widen(float{}); break;
        case dtype::f16: widen(f16{}); break;
        case dtype::bf16: widen(bf16{}); break;
        case dtype::f64: widen(double{}); break;
        case dtype::i64: widen(std::int64_t{}); break;
        case dtype::i32: widen(std::int32_t{}); break;
        case dtype::i16: widen(std::int16_t{}); break;
        case dtype::i8: widen(std::int8_t{}); break;
        case dtype::u8: widen(std::uint8_t{}); break;
        case dtype::boolean: widen(std::uint8_t{}); break;
      }
    }
    // 2. undo what the converter did
    if (e.transform == weight_transform::none) return raw;
    if (e.transform == weight_transform::log_neg) {
      for (index_t i = 0; i < n; ++i) raw[static_cast<std::size_t>(i)] = std::log(-raw[static_cast<std::size_t>(i)]);
      return raw;
    }
    if (e.transform == weight_transform::minus_one) {  // exact for stored values in [0.5, 2] (Sterbenz)
      for (index_t i = 0; i < n; ++i) raw[static_cast<std::size_t>(i)] -= 1.f;
      return raw;
    }
    fbuffer out = tessera::detail::aligned_buffer<float>(std::max<index_t>(1, n));
    apply_transform(e, reinterpret_cast<const std::byte*>(raw.get()), reinterpret_cast<std::byte*>(out.get()), sizeof(float));
    return out;
  }

  void add(std::unique_ptr<entry> e) {
    if (!index_.emplace(e->info.name, entries_.size()).second)
      throw format_error(source_ + ": tensor '" + e->info.name + "' appears twice (" + entries_[index_[e->info.name]]->info.file +
                         " and " + e->info.file + ")");
    entries_.push_back(std::move(e));
  }

  void load_safetensors(std::shared_ptr<safetensors_file> f) {
    for (const auto& t : f->tensors()) {
      auto e = std::make_unique<entry>();
      e->info.name = e->info.file_name = t.name;
      e->info.file = f->path();
      e->info.type_name = t.dtype_name;
      e->info.type = t.type;
      e->info.extents = e->stored_extents = t.extents;
      e->info.numel = t.numel;
      e->info.nbytes = t.nbytes();
      e->data = f->tensor_data(t);
      e->mapping = f->mapping().get();
      add(std::move(e));
    }
    st_files_.push_back(std::move(f));
  }

  void load_index(const std::filesystem::path& index_path) {
    const std::string where = index_path.string();
    nlohmann::json j;
    {
      auto file = map_file(index_path);
      try {
        const auto* p = reinterpret_cast<const char*>(file->data());
        j = nlohmann::json::parse(p, p + file->size());
      } catch (const nlohmann::json::exception& ex) {
        throw format_error(where + ": not valid JSON: " + ex.what());
      }
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw format_error(where + ": missing \"weight_map\" object");
    std::map<std::string, std::vector<std::string>> by_file;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw format_error(where + ": weight_map entry '" + it.key() + "' is not a string");
      const std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos || shard == ".." )
        throw format_error(where + ": shard name '" + shard + "' must be a file name in the same folder");
      by_file[shard].push_back(it.key());
    }
    const auto folder = index_path.parent_path();
    for (const auto& [shard, names] : by_file) {
      auto f = std::make_shared<safetensors_file>(folder / shard);
      for (const auto& n : names)
        if (!f->find(n))
          throw format_error(where + ": tensor '" + n + "' is listed in shard " + shard + " but " + f->path() + " does not hold it");
      load_safetensors(std::move(f));
    }
  }

  void load_gguf(std::shared_ptr<gguf_file> g, const gguf_tensor_mapper& map) {
    for (const auto& t : g->tensors()) {
      auto e = std::make_unique<entry>();
      gguf_tensor_fix fix;
      fix.extents = t.extents;
      if (map) map(*g, t.name, fix);
      e->info.name = fix.name.empty() ? t.name : fix.name;
      e->info.file_name = t.name;
      e->info.file = g->path();
      e->info.type_name = ggml_type_name(t.type);
      e->ggml = t.type;
      switch (t.type) {
        case ggml_type::f32: e->info.type = dtype::f32; break;
        case ggml_type::f16: e->info.type = dtype::f16; break;
        case ggml_type::bf16: e->info.type = dtype::bf16; break;
        case ggml_type::f64: e->info.type = dtype::f64; break;
        case ggml_type::i8: e->info.type = dtype::i8; break;
        case ggml_type::i16: e->info.type = dtype::i16; break;
        case ggml_type::i32: e->info.type = dtype::i32; break;
        case ggml_type::i64: e->info.type = dtype::i64; break;
        default: break;
      }
      e->stored_extents = t.extents;
      e->info.extents = std::move(fix.extents);
      e->info.numel = t.numel;
      e->info.nbytes = t.nbytes;
      e->data = g->tensor_data(t);
      e->mapping = g->mapping().get();
      e->transform = fix.transform;
      e->rope_heads = fix.rope_heads;
      check_fix(*e, g->path());
      add(std::move(e));
    }
    gguf_ = std::move(g);
  }

  // What a mapper asked for must fit the stored tensor: same element count, and for the data
  // transforms the shapes they assume.
  static void check_fix(const entry& e, const std::string& path) {
    const std::string what = path + ": tensor '" + e.info.file_name + "'";
    std::int64_t numel = 1;
    for (index_t x : e.info.extents) numel *= x;
    if (numel != e.info.numel) throw format_error(what + ": the family's GGUF map reshapes it to another element count");
    if (e.transform == weight_transform::unpermute_rope) {
      const index_t rows = e.stored_extents.empty() ? 0 : e.stored_extents[0];
      if (e.rope_heads <= 0 || rows % (2 * e.rope_heads) != 0)
        throw format_error(what + " has " + std::to_string(rows) + " rows, not a multiple of 2 x " +
                           std::to_string(e.rope_heads) + " heads");
    }
    if (e.transform == weight_transform::transpose && e.stored_extents.size() != 2)
      throw format_error(what + ": only a matrix can be transposed");
  }

  void finish() {
    if (entries_.empty()) throw format_error(source_ + ": the checkpoint holds no tensors");
  }

  std::string source_;
  std::optional<ggml_type> quantize_;
  std::vector<std::unique_ptr<entry>> entries_;
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<std::shared_ptr<safetensors_file>> st_files_;
  std::shared_ptr<gguf_file> gguf_;
  std::unique_ptr<huge_page_arena> arena_ = std::make_unique<huge_page_arena>();  // interleaved<B>()
};

}  // namespace io
}  // namespace v0
}  // namespace tessera
