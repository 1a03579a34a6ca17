// tessera/layers/mlp.hpp: the dense feed-forward layers (stateless; layers/batch.hpp contract).
//
//   gated_mlp (SwiGLU / GeGLU; Llama, Mistral, Qwen, Gemma, Jamba, experts):
//                                     y = down(act(gate(x)) ⊙ up(x))
//   mlp (GPT-2, BERT):                y = proj(act(fc(x)))
//   x, y: (rows, d_model); hidden: (rows, d_ff), scratch from the workspace
// Rows are independent: the batch context only says how many there are.
#pragma once

#include <string>

#include <tessera/core/workspace.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/layers/batch.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/ops/activation.hpp>

namespace tessera {
inline namespace v0 {
namespace layers {

class gated_mlp {
 public:
  using state_type = no_state;

  gated_mlp() = default;
  gated_mlp(linear gate, linear up, linear down, ops::activation act, const std::string& what = "gated_mlp")
      : gate_(std::move(gate)), up_(std::move(up)), down_(std::move(down)), act_(act) {
    if (up_.out_features() != gate_.out_features() || up_.in_features() != gate_.in_features() ||
        down_.in_features() != gate_.out_features() || down_.out_features() != gate_.in_features())
      throw shape_error(what + ": gate " + std::to_string(gate_.out_features()) + "x" +
                        std::to_string(gate_.in_features()) + ", up " + std::to_string(up_.out_features()) + "x" +
                        std::to_string(up_.in_features()) + ", down " + std::to_string(down_.out_features()) + "x" +
                        std::to_string(down_.in_features()) + " do not fit together");
  }

  /// `<prefix>.gate_proj`, `.up_proj`, `.down_proj` (biases when present).
  static gated_mlp load(const io::weight_map& w, const std::string& prefix, ops::activation act) {
    return gated_mlp(linear::load(w, prefix + ".gate_proj"), linear::load(w, prefix + ".up_proj"),
                     linear::load(w, prefix + ".down_proj"), act, prefix);
  }

  index_t d_model() const noexcept { return gate_.in_features(); }
  index_t d_ff() const noexcept { return up_.out_features(); }
  state_type make_state(const state_spec&) const noexcept { return {}; }
  std::size_t workspace_bytes(index_t rows) const noexcept {
    return 2 * workspace::bytes_for<float>(rows * d_ff()) +
           std::max({gate_.workspace_bytes(rows), up_.workspace_bytes(rows), down_.workspace_bytes(rows)}) + 128;
  }
  std::size_t weight_bytes() const noexcept {
    return gate_.weight().bytes() + up_.weight().bytes() + down_.weight().bytes();
  }

  // x: (rows, d_model) → out: (rows, d_model)
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, workspace& ws) const {
    workspace::frame frame(ws);
    const index_t rows = x.extent(0);
    auto gate = ws.alloc_view<float, 2>({rows, d_ff()});  // (rows, d_ff)
    auto up = ws.alloc_view<float, 2>({rows, d_ff()});    // (rows, d_ff)
    linear::forward_shared<2>(x, {&gate_, &up_}, {gate, up}, ws);
    ops::gated_activation(act_, gate, up, gate);  // act(gate) ⊙ up
    down_.forward(gate, out, ws);
  }
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_refs<state_type>, const batch_context&,
               workspace& ws) const {
    forward(x, out, ws);
  }

 private:
  linear gate_, up_, down_;
  ops::activation act_ = ops::activation::silu;
};

class mlp {
 public:
  using state_type = no_state;

  mlp() = default;
  mlp(linear fc, linear proj, ops::activation act) : fc_(std::move(fc)), proj_(std::move(proj)), act_(act) {
    expect_equal(proj_.in_features(), fc_.out_features(), "mlp: proj columns vs fc rows (d_ff)");
  }
  index_t d_ff() const noexcept { return fc_.out_features(); }
  state_type make_state(const state_spec&) const noexcept { return {}; }
  std::size_t workspace_bytes(index_t rows) const noexcept {
    return workspace::bytes_for<float>(rows * d_ff()) + std::max(fc_.workspace_bytes(rows), proj_.workspace_bytes(rows));
  }

  // x: (rows, d_model) → out: (rows, d_model)
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, workspace& ws) const {
    workspace::frame frame(ws);
    auto hidden = ws.alloc_view<float, 2>({x.extent(0), d_ff()});  // (rows, d_ff)
    fc_.forward(x, hidden, ws);
    ops::apply_activation(act_, hidden);
    proj_.forward(hidden, out, ws);
  }
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_refs<state_type>, const batch_context&,
               workspace& ws) const {
    forward(x, out, ws);
  }

 private:
  linear fc_, proj_;
  ops::activation act_ = ops::activation::gelu_tanh;
};

}  // namespace layers
}  // namespace v0
}  // namespace tessera
