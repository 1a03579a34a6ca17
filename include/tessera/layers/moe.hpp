// tessera/layers/moe.hpp: a sparse mixture of experts with a top-k softmax router (transformers
// JambaSparseMoeBlock, Mixtral's block without renormalization of the top-k weights); each expert
// is a gated_mlp (layers/mlp.hpp). Stateless (layers/batch.hpp contract).
//
//   sparse_moe:  p = softmax(router(x)) over n_experts; the top_k experts of each token
//                (largest p, torch.topk order) each add p_e · expert_e(x) to out; the k weights
//                are not renormalized (Jamba). router: (n_experts, d_model).
//                Experts are stored either one by one (`experts.{e}.gate_proj` / `up_proj` /
//                `down_proj`) or packed (`experts.gate_up_proj` (E, 2 d_ff, d_model) and
//                `experts.down_proj` (E, d_model, d_ff), transformers 5's layout).
//   x, out: (m, d_model)
// Prefill gathers, per expert, the rows routed to it and runs one GEMM per expert; decode (m = 1)
// runs k GEMVs. Scratch from the caller's workspace (workspace_bytes(m)); nothing is allocated.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <tessera/core/tensor.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/layers/batch.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/layers/mlp.hpp>
#include <tessera/ops/activation.hpp>

namespace tessera {
inline namespace v0 {
namespace layers {

struct moe_config {
  index_t n_experts = 0;   // num_experts
  index_t top_k = 2;       // num_experts_per_tok
  ops::activation act = ops::activation::silu;
};

class sparse_moe {
 public:
  using state_type = no_state;

  sparse_moe() = default;

  /// `<prefix>.router` and the experts under `<prefix>.experts` (one by one or packed).
  static sparse_moe load(const io::weight_map& w, const std::string& prefix, const moe_config& cfg) {
    if (cfg.n_experts < 1) throw config_error(prefix + ": num_experts must be >= 1, got " + std::to_string(cfg.n_experts));
    if (cfg.top_k < 1 || cfg.top_k > cfg.n_experts)
      throw config_error(prefix + ": num_experts_per_tok " + std::to_string(cfg.top_k) + " must be in [1, num_experts = " +
                         std::to_string(cfg.n_experts) + "]");
    sparse_moe s;
    s.cfg_ = cfg;
    s.router_ = linear::load(w, prefix + ".router");
    if (s.router_.out_features() != cfg.n_experts)
      throw shape_error("weight '" + prefix + ".router.weight': " + std::to_string(s.router_.out_features()) +
                        " rows, the config has num_experts = " + std::to_string(cfg.n_experts));
    const std::string packed = prefix + ".experts.gate_up_proj";
    for (index_t e = 0; e < cfg.n_experts; ++e) {
      const std::string ep = prefix + ".experts." + std::to_string(e);
      if (w.contains(packed)) {
        s.experts_.push_back(gated_mlp(packed_slice(w, packed, e, 0), packed_slice(w, packed, e, 1),
                                           packed_slice(w, prefix + ".experts.down_proj", e, -1), cfg.act, ep));
      } else {
        s.experts_.push_back(gated_mlp::load(w, ep, cfg.act));
      }
      if (s.experts_.back().d_model() != s.router_.in_features())
        throw shape_error(ep + ": d_model " + std::to_string(s.experts_.back().d_model()) + " differs from the router's " +
                          std::to_string(s.router_.in_features()));
    }
    return s;
  }

  /// From already built parts (tests, random-weight models).
  static sparse_moe from(linear router, std::vector<gated_mlp> experts, const moe_config& cfg) {
    if (cfg.top_k < 1 || cfg.top_k > static_cast<index_t>(experts.size()))
      throw config_error("sparse_moe: top_k " + std::to_string(cfg.top_k) + " must be in [1, num_experts = " +
                         std::to_string(experts.size()) + "]");
    sparse_moe s;
    s.cfg_ = cfg;
    s.cfg_.n_experts = static_cast<index_t>(experts.size());
    s.router_ = std::move(router);
    s.experts_ = std::move(experts);
    return s;
  }

  index_t n_experts() const noexcept { return cfg_.n_experts; }
  index_t top_k() const noexcept { return cfg_.top_k; }
  index_t d_model() const noexcept { return router_.in_features(); }
  state_type make_state(const state_spec&) const noexcept { return {}; }

  std::size_t workspace_bytes(index_t rows) const noexcept {
    std::size_t e = router_.workspace_bytes(rows);
    for (const auto& x : experts_) e = std::max(e, x.workspace_bytes(rows));
    return workspace::bytes_for<float>(rows * cfg_.n_experts) + workspace::bytes_for<index_t>(rows * cfg_.top_k) +
           workspace::bytes_for<float>(rows * cfg_.top_k) + workspace::bytes_for<index_t>(rows) +
           workspace::bytes_for<float>(rows) + 2 * workspace::bytes_for<float>(rows * d_model()) + e + 256;
  }

  // x: (m, d_model) → out: (m, d_model)
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, workspace& ws) const {
    const index_t m = x.extent(0), d = d_model(), E = cfg_.n_experts, K = cfg_.top_k;
    workspace::frame frame(ws);
    auto p = ws.alloc_view<float, 2>({m, E});    // (m, E): router probabilities
    index_t* top = ws.alloc<index_t>(m * K);     // (m, K): chosen experts
    float* wt = ws.alloc<float>(m * K);          // (m, K): their probabilities
    index_t* rows = ws.alloc<index_t>(m);        // rows routed to the current expert
    float* rw = ws.alloc<float>(m);              // and their weights
    auto xe = ws.alloc_view<float, 2>({m, d});   // gathered rows
    auto ye = ws.alloc_view<float, 2>({m, d});   // expert output
    // router → softmax (float) → top-k (descending p, lower index first on ties, as torch.topk on CPU)
    router_.forward(x, p, ws);
    for (index_t t = 0; t < m; ++t) {
      float* pr = p.row(t);
      float mx = pr[0];
      for (index_t e = 1; e < E; ++e) mx = std::max(mx, pr[e]);
      float s = 0.f;
      for (index_t e = 0; e < E; ++e) s += (pr[e] = std::exp(pr[e] - mx));
      for (index_t e = 0; e < E; ++e) pr[e] /= s;
      for (index_t k = 0; k < K; ++k) {
        index_t best = -1;
        for (index_t e = 0; e < E; ++e) {
          bool taken = false;
          for (index_t j = 0; j < k; ++j) taken = taken || top[t * K + j] == e;
          if (!taken && (best < 0 || pr[e] > pr[best])) best = e;
        }
        top[t * K + k] = best;
        wt[t * K + k] = pr[best];
      }
    }
    for (index_t t = 0; t < m; ++t)
      for (index_t c = 0; c < d; ++c) out(t, c) = 0.f;
    // per expert: gather its rows, run it, scatter-add weighted
    for (index_t e = 0; e < E; ++e) {
      index_t n = 0;
      for (index_t t = 0; t < m; ++t)
        for (index_t k = 0; k < K; ++k)
          if (top[t * K + k] == e) rows[n] = t, rw[n] = wt[t * K + k], ++n;
      if (n == 0) continue;
      auto xin = xe.slice(0, 0, n);
      auto yout = ye.slice(0, 0, n);
      for (index_t i = 0; i < n; ++i) std::copy(x.row(rows[i]), x.row(rows[i]) + d, xin.row(i));
      experts_[static_cast<std::size_t>(e)].forward(xin, yout, ws);
      for (index_t i = 0; i < n; ++i) {
        float* o = out.row(rows[i]);
        const float* yr = yout.row(i);
        for (index_t c = 0; c < d; ++c) o[c] += rw[i] * yr[c];
      }
    }
  }

  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_refs<state_type>, const batch_context&,
               workspace& ws) const {
    forward(x, out, ws);
  }

  std::size_t weight_bytes() const noexcept {
    std::size_t b = router_.weight().bytes();
    for (const auto& x : experts_) b += x.weight_bytes();
    return b;
  }

 private:
  /// Expert e of a packed (E, rows, cols) tensor; half 0/1 of gate_up (rows split in two), or -1: all rows.
  static linear packed_slice(const io::weight_map& w, const std::string& name, index_t e, int half) {
    const auto& info = w.info(name);
    if (info.extents.size() != 3) throw shape_error("weight '" + name + "': expected 3 dimensions (experts, rows, cols)");
    auto pick = [&](auto v) {
      using V = decltype(v);
      const index_t rows = v.extent(1), cols = v.extent(2);
      if (e >= v.extent(0)) throw shape_error("weight '" + name + "': has " + std::to_string(v.extent(0)) + " experts");
      const index_t r0 = half < 0 ? 0 : half * rows / 2, nr = half < 0 ? rows : rows / 2;
      using T = typename V::element_type;
      return weight_matrix(tensor_view<T, 2>(v.data() + e * v.stride(0) + r0 * v.stride(1), {nr, cols},
                                             {v.stride(1), v.stride(2)}));
    };
    if (info.type == dtype::f16) return linear::from(pick(w.view<f16, 3>(name)));
    if (info.type == dtype::bf16) return linear::from(pick(w.view<bf16, 3>(name)));
    return linear::from(pick(w.f32<3>(name)));
  }

  moe_config cfg_;
  linear router_;
  std::vector<gated_mlp> experts_;
};

}  // namespace layers
}  // namespace v0
}  // namespace tessera
