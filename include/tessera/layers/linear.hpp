// tessera/layers/linear.hpp: a linear layer that owns (views of) its weights, y = x·Wᵀ + b.
//
//   weight: (n, k) in the nn.Linear layout, stored as the checkpoint has it: f32, f16, bf16, or
//           GGUF blocks (Q8_0, Q4_0, Q4_K, ...: a (n, k / block) matrix of core/blocks.hpp
//           types, computed in their blocks by kernels/quant.hpp); other types widen to f32 once.
//           A Q4_0, IQ4_NL, Q8_0, Q4_K, Q5_K, Q6_K or IQ4_XS matrix is rewritten at load into rows
//           interleaved 8 at a time (block_q4_0x8, ...; kernels/quant_interleaved.hpp) where the
//           kernels for those layouts exist; an f32 / f16 / bf16 matrix (rows a multiple of 16)
//           into GEMM panels of 16 rows (block_x16; kernels/gemm_panel.hpp) on x86 with AVX2.
//   bias:   (n), widened to f32 once at load
//
// The weight's type is a run-time property of the checkpoint, so the layer keeps a view of each
// kind and dispatches once per call to the typed op (ops::linear → gemv for one row, gemv_rows
// for a few, gemm otherwise; quantized: kernels::quant_linear). Models stay free of dtype
// templates; kernels stay typed.
#pragma once

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include <tessera/core/blocks.hpp>
#include <tessera/core/blocks_interleaved.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/ops/linear.hpp>

namespace tessera {
inline namespace v0 {
namespace layers {

/// A read-only (n, k) weight of whichever type the checkpoint stores.
class weight_matrix {
 public:
  using any_view = std::variant<tensor_view<const float, 2>, tensor_view<const f16, 2>, tensor_view<const bf16, 2>,
                                tensor_view<const block_q8_0, 2>, tensor_view<const block_q4_0, 2>,
                                tensor_view<const block_q4_1, 2>, tensor_view<const block_q5_0, 2>,
                                tensor_view<const block_q5_1, 2>, tensor_view<const block_q4_K, 2>,
                                tensor_view<const block_q5_K, 2>, tensor_view<const block_q6_K, 2>,
                                tensor_view<const block_iq4_nl, 2>, tensor_view<const block_iq4_xs, 2>,
                                tensor_view<const block_q4_0x8, 2>, tensor_view<const block_iq4_nlx8, 2>,
                                tensor_view<const block_q8_0x8, 2>, tensor_view<const block_q4_Kx8, 2>,
                                tensor_view<const block_q5_Kx8, 2>, tensor_view<const block_iq4_xsx8, 2>,
                                tensor_view<const block_q6_Kx8, 2>, tensor_view<const block_f32x16, 2>,
                                tensor_view<const block_f16x16, 2>, tensor_view<const block_bf16x16, 2>>;

  weight_matrix() = default;
  explicit weight_matrix(any_view v) : view_(v) {}

  /// The tensor `name` of the map, zero-copy when stored as f32/f16/bf16 or as a matrix of ggml
  /// blocks the kernels compute in (any_view's block types), else widened to f32. When the map
  /// asks for quantized matrices (weight_map::set_matrix_quantization), a floating-point matrix
  /// whose rows are whole blocks is encoded into them once; other matrices stay as stored.
  static weight_matrix load(const io::weight_map& w, const std::string& name) {
    const auto& info = w.info(name);
    if (info.extents.size() != 2)
      throw shape_error("weight '" + name + "' in " + info.file + ": expected 2 dimensions, got " +
                        std::to_string(info.extents.size()));
    if (const auto q = w.matrix_quantization()) {
      std::optional<weight_matrix> m;
      io::with_block_layout(*q, [&](auto tag) {
        using B = decltype(tag);
        if constexpr (encodable_block<B>)
          if (w.quantizable<B>(name)) m = weight_matrix(w.quantized<B>(name));
      });
      if (m) return *m;
    }
    if (info.type == dtype::f16) return weight_matrix(w.view<f16, 2>(name));
    if (info.type == dtype::bf16) return weight_matrix(w.view<bf16, 2>(name));
    if (auto q = stored_blocks<block_q8_0, block_q4_0, block_q4_1, block_q5_0, block_q5_1, block_q4_K, block_q5_K,
                               block_q6_K, block_iq4_nl, block_iq4_xs>(w, name))
      return *q;
    return weight_matrix(w.f32<2>(name));
  }

  /// As load, for a matrix that is only multiplied (a linear layer's weight, not an embedding
  /// table): a Q4_0, IQ4_NL, Q8_0, Q4_K, Q5_K, Q6_K or IQ4_XS matrix stored in the file, rows a multiple of 8, is
  /// rewritten once into rows interleaved 8 at a time (io::weight_map::interleaved) where
  /// kernels::interleaved_available: decode streams the 4- and 6-bit ones 1.1-1.8x faster on Zen 3
  /// (docs/quant.md, "Session 21"). An f32, f16 or bf16 matrix, rows a multiple of 16, becomes
  /// GEMM panels in its own type (block_x16) where kernels::panels_available: prefill no longer
  /// packs it on every call, decode reads 4 panels as 4 streams (docs/gemm.md, "Panels at load").
  static weight_matrix load_product(const io::weight_map& w, const std::string& name) {
    if (kernels::interleaved_available() && !w.matrix_quantization()) {
      if (w.interleavable<block_q4_0x8>(name)) return weight_matrix(w.interleaved<block_q4_0x8>(name));
      if (w.interleavable<block_q8_0x8>(name)) return weight_matrix(w.interleaved<block_q8_0x8>(name));
      if (w.interleavable<block_iq4_nlx8>(name)) return weight_matrix(w.interleaved<block_iq4_nlx8>(name));
      if (w.interleavable<block_q4_Kx8>(name)) return weight_matrix(w.interleaved<block_q4_Kx8>(name));
      if (w.interleavable<block_q5_Kx8>(name)) return weight_matrix(w.interleaved<block_q5_Kx8>(name));
      if (w.interleavable<block_iq4_xsx8>(name)) return weight_matrix(w.interleaved<block_iq4_xsx8>(name));
      if (w.interleavable<block_q6_Kx8>(name)) return weight_matrix(w.interleaved<block_q6_Kx8>(name));
    }
    if (kernels::panels_available() && !w.matrix_quantization()) {
      if (w.interleavable<block_f32x16>(name)) return weight_matrix(w.interleaved<block_f32x16>(name));
      if (w.interleavable<block_f16x16>(name)) return weight_matrix(w.interleaved<block_f16x16>(name));
      if (w.interleavable<block_bf16x16>(name)) return weight_matrix(w.interleaved<block_bf16x16>(name));
    }
    return load(w, name);
  }

  /// The transpose of tensor `name` read in place, when the map stores it transposed
  /// (io::weight_map::stored_transposed_as: GPT-2's Conv1D weights in a GGUF, stored (out, in)) in
  /// any type a weight_matrix holds, blocks included; nullopt otherwise (the caller transposes).
  static std::optional<weight_matrix> stored_transpose(const io::weight_map& w, const std::string& name) {
    std::optional<weight_matrix> m;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (try_stored_transpose<std::remove_const_t<typename std::variant_alternative_t<I, any_view>::element_type>>(w, name, m),
       ...);
    }(std::make_index_sequence<std::variant_size_v<any_view>>{});
    return m;
  }

  /// The first of the block types B... that `name` is stored in, as it is stored.
  template <class... B>
  static std::optional<weight_matrix> stored_blocks(const io::weight_map& w, const std::string& name) {
    std::optional<weight_matrix> q;
    ((!q && w.stored_as<B>(name) ? void(q = weight_matrix(w.blocks<B>(name))) : void()), ...);
    return q;
  }

  index_t rows() const noexcept {
    return std::visit([](auto& v) { return v.extent(0) * block_rows_v<typename std::decay_t<decltype(v)>::value_type>; },
                      view_);
  }
  /// Columns in elements (k), whatever the storage: blocks hold block_elements_v of them each.
  index_t cols() const noexcept {
    return std::visit([](auto& v) { return v.extent(1) * block_elements_v<typename std::decay_t<decltype(v)>::value_type>; },
                      view_);
  }
  std::size_t bytes() const noexcept {
    return std::visit([](auto& v) { return static_cast<std::size_t>(v.size()) * sizeof(typename std::decay_t<decltype(v)>::value_type); }, view_);
  }
  const any_view& view() const noexcept { return view_; }

  /// Rows [r0, r1) of the matrix, in place (interleaved blocks: r0 and r1 multiples of their rows).
  weight_matrix row_slice(index_t r0, index_t r1) const {
    return std::visit(
        [&](auto& v) {
          constexpr index_t g = block_rows_v<typename std::decay_t<decltype(v)>::value_type>;
          if (r0 % g != 0 || r1 % g != 0)
            throw shape_error("weight_matrix::row_slice: rows [" + std::to_string(r0) + ", " + std::to_string(r1) +
                              ") of a matrix interleaved " + std::to_string(g) + " rows at a time");
          return weight_matrix(v.slice(0, r0 / g, r1 / g));
        },
        view_);
  }

 private:
  template <class T>
  static void try_stored_transpose(const io::weight_map& w, const std::string& name, std::optional<weight_matrix>& m) {
    if constexpr (!interleaved_block<T>)  // a file never stores that layout
      if (!m && w.stored_transposed_as<T>(name)) m = weight_matrix(w.stored_transpose<T>(name));
  }

  any_view view_;
};

class linear {
 public:
  linear() = default;

  /// Loads `<prefix>.weight` and, when present (or required), `<prefix>.bias`.
  static linear load(const io::weight_map& w, const std::string& prefix, bool bias = false) {
    linear l;
    l.weight_ = weight_matrix::load_product(w, prefix + ".weight");
    if (bias || w.contains(prefix + ".bias")) {
      auto b = w.f32<1>(prefix + ".bias");
      expect_equal(b.extent(0), l.weight_.rows(), (prefix + ".bias: length vs weight rows").c_str());
      l.bias_ = tensor<float, 1>::copy_of(b);
    }
    return l;
  }

  /// From an existing matrix (tied embeddings: the LM head is the embedding table; slices of a
  /// fused projection) and an optional bias.
  static linear from(weight_matrix w, std::optional<tensor<float, 1>> bias = {}) {
    linear l;
    l.weight_ = w;
    if (bias) expect_equal(bias->extent(0), w.rows(), "linear: bias length vs weight rows");
    l.bias_ = std::move(bias);
    return l;
  }

  index_t in_features() const noexcept { return weight_.cols(); }
  index_t out_features() const noexcept { return weight_.rows(); }
  const weight_matrix& weight() const noexcept { return weight_; }

  /// Workspace bytes forward() needs for up to `rows` rows of x.
  std::size_t workspace_bytes(index_t rows) const noexcept {
    return std::visit(
        [&](auto& v) {
          using T = typename std::decay_t<decltype(v)>::value_type;
          if constexpr (quant_block<T> || interleaved_block<T>) return ops::linear_workspace_bytes<T>(rows, in_features());
          else return ops::linear_workspace_bytes<T>(v.extent(1));
        },
        weight_.view());
  }

  // x: (m, in_features) → out: (m, out_features)
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, workspace& ws) const {
    std::optional<tensor_view<const float, 1>> b;
    if (bias_) b = bias_->cview();
    std::visit([&](auto& w) { ops::linear(x, w, b, out, ws); }, weight_.view());
  }

  /// outs[i] = layers[i]->forward(x) for layers that read the same x (q, k, v; gate, up). For one
  /// row (decode) with weights all of one type, one kernels::gemv_many; for 2 .. gemv_rows_max_m
  /// rows (batched decode), one kernels::gemv_rows_many: one parallel region for all N instead of
  /// one per layer. Otherwise (prefill) each layer's forward.
  template <std::size_t N>
  static void forward_shared(tensor_view<const float, 2> x, const std::array<const linear*, N>& layers,
                             const std::array<tensor_view<float, 2>, N>& outs, workspace& ws) {
    const auto type = layers[0]->weight_.view().index();
    const bool one_type =
        std::all_of(layers.begin(), layers.end(), [&](const linear* l) { return l->weight_.view().index() == type; });
    const bool blocks = std::visit(
        [](auto& v) {
          using T = typename std::decay_t<decltype(v)>::value_type;
          return quant_block<T> || interleaved_block<T>;
        },
        layers[0]->weight_.view());
    const index_t m = x.extent(0);
    if (m < 1 || m > kernels::gemv_rows_max_m<> || !one_type || blocks) {  // blocks: one quant_linear per layer
      for (std::size_t i = 0; i < N; ++i) layers[i]->forward(x, outs[i], ws);
      return;
    }
    std::visit(
        [&](auto& first) {
          using view = std::decay_t<decltype(first)>;
          if constexpr (!quant_block<typename view::value_type> && !interleaved_block<typename view::value_type>) {
            std::array<view, N> w;
            for (std::size_t i = 0; i < N; ++i) {
              w[i] = std::get<view>(layers[i]->weight_.view());
              expect_equal(outs[i].extent(0), m, "linear::forward_shared: out rows vs x rows");
            }
            if (m == 1) {
              std::array<tensor_view<float, 1>, N> y;
              for (std::size_t i = 0; i < N; ++i) y[i] = outs[i][0];
              kernels::gemv_many(x[0], w, y);
            } else {
              kernels::gemv_rows_many(x, w, outs);
            }
          }
        },
        layers[0]->weight_.view());
    for (std::size_t i = 0; i < N; ++i)
      if (layers[i]->bias_)
        for (index_t r = 0; r < m; ++r)
          kernels::vec_add(outs[i].extent(1), outs[i].row(r), layers[i]->bias_->data(), outs[i].row(r));
  }

 private:
  weight_matrix weight_;
  std::optional<tensor<float, 1>> bias_;
};

}  // namespace layers
}  // namespace v0
}  // namespace tessera
