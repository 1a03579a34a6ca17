// tessera/layers/mlp.hpp: feed-forward blocks.
//
//   gated_mlp (SwiGLU / GeGLU; Llama, Mistral, Qwen2):  y = down(act(gate(x)) ⊙ up(x))
//   mlp (GPT-2, BERT):                                   y = proj(act(fc(x)))
//   x, y: (l, d_model); hidden: (l, d_ff), scratch from the workspace
#pragma once

#include <string>

#include <tessera/core/workspace.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/ops/activation.hpp>

namespace tessera {
inline namespace v0 {
namespace layers {

class gated_mlp {
 public:
  gated_mlp() = default;
  gated_mlp(linear gate, linear up, linear down, ops::activation act)
      : gate_(std::move(gate)), up_(std::move(up)), down_(std::move(down)), act_(act) {
    expect_equal(gate_.out_features(), up_.out_features(), "gated_mlp: gate vs up rows (d_ff)");
    expect_equal(down_.in_features(), up_.out_features(), "gated_mlp: down columns vs d_ff");
  }
  index_t d_ff() const noexcept { return up_.out_features(); }
  std::size_t workspace_bytes(index_t max_rows) const noexcept {
    return 2 * workspace::bytes_for<float>(max_rows * d_ff()) +
           std::max({gate_.workspace_bytes(), up_.workspace_bytes(), down_.workspace_bytes()});
  }

  // x: (l, d_model) → out: (l, d_model)
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, workspace& ws) const {
    workspace::frame frame(ws);
    const index_t l = x.extent(0);
    auto gate = ws.alloc_view<float, 2>({l, d_ff()});  // (l, d_ff)
    auto up = ws.alloc_view<float, 2>({l, d_ff()});    // (l, d_ff)
    linear::forward_shared<2>(x, {&gate_, &up_}, {gate, up}, ws);
    ops::gated_activation(act_, gate, up, gate);  // act(gate) ⊙ up
    down_.forward(gate, out, ws);
  }

 private:
  linear gate_, up_, down_;
  ops::activation act_ = ops::activation::silu;
};

class mlp {
 public:
  mlp() = default;
  mlp(linear fc, linear proj, ops::activation act) : fc_(std::move(fc)), proj_(std::move(proj)), act_(act) {
    expect_equal(proj_.in_features(), fc_.out_features(), "mlp: proj columns vs fc rows (d_ff)");
  }
  index_t d_ff() const noexcept { return fc_.out_features(); }
  std::size_t workspace_bytes(index_t max_rows) const noexcept {
    return workspace::bytes_for<float>(max_rows * d_ff()) + std::max(fc_.workspace_bytes(), proj_.workspace_bytes());
  }

  // x: (l, d_model) → out: (l, d_model)
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, workspace& ws) const {
    workspace::frame frame(ws);
    auto hidden = ws.alloc_view<float, 2>({x.extent(0), d_ff()});  // (l, d_ff)
    fc_.forward(x, hidden, ws);
    ops::apply_activation(act_, hidden);
    proj_.forward(hidden, out, ws);
  }

 private:
  linear fc_, proj_;
  ops::activation act_ = ops::activation::gelu_tanh;
};

}  // namespace layers
}  // namespace v0
}  // namespace tessera
