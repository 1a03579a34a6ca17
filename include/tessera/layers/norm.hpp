// tessera/layers/norm.hpp: normalization layers (weights widened to f32 once at load).
//
//   rms_norm_layer:   y = x / sqrt(mean(x²) + eps) · weight              (Llama, Mistral, Qwen2, Mamba)
//                     Gemma: · (1 + weight), the 1 added at load
//   layer_norm_layer: y = (x - mean) / sqrt(var + eps) · weight + bias   (GPT-2, BERT)
//   x, y: (l, d_model); weight, bias: (d_model)
#pragma once

#include <optional>
#include <string>

#include <tessera/core/tensor.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/ops/norm.hpp>

namespace tessera {
inline namespace v0 {
namespace layers {

class rms_norm_layer {
 public:
  rms_norm_layer() = default;
  /// `<prefix>.weight`; `offset` is added to it once (Gemma's RMSNorm multiplies by 1 + weight).
  static rms_norm_layer load(const io::weight_map& w, const std::string& prefix, float eps, float offset = 0.f) {
    rms_norm_layer n;
    n.weight_ = tensor<float, 1>::copy_of(w.f32<1>(prefix + ".weight"));
    if (offset != 0.f)
      for (auto& x : n.weight_) x += offset;
    n.eps_ = eps;
    return n;
  }
  /// From a weight already in memory.
  static rms_norm_layer from(tensor<float, 1> weight, float eps) {
    rms_norm_layer n;
    n.weight_ = std::move(weight);
    n.eps_ = eps;
    return n;
  }
  index_t dim() const noexcept { return weight_.extent(0); }
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out) const {
    ops::rms_norm(x, weight_.cview(), out, eps_);
  }

 private:
  tensor<float, 1> weight_;
  float eps_ = 1e-6f;
};

class layer_norm_layer {
 public:
  layer_norm_layer() = default;
  static layer_norm_layer load(const io::weight_map& w, const std::string& prefix, float eps) {
    layer_norm_layer n;
    n.weight_ = tensor<float, 1>::copy_of(w.f32<1>(prefix + ".weight"));
    if (w.contains(prefix + ".bias")) n.bias_ = tensor<float, 1>::copy_of(w.f32<1>(prefix + ".bias"));
    n.eps_ = eps;
    return n;
  }
  index_t dim() const noexcept { return weight_.extent(0); }
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out) const {
    std::optional<tensor_view<const float, 1>> b;
    if (bias_) b = bias_->cview();
    ops::layer_norm(x, weight_.cview(), b, out, eps_);
  }

 private:
  tensor<float, 1> weight_;
  std::optional<tensor<float, 1>> bias_;
  float eps_ = 1e-5f;
};

}  // namespace layers
}  // namespace v0
}  // namespace tessera
