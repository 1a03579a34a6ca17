// tessera/layers/residual.hpp: residual wiring as small pieces (docs/architecture.md, "Blocks").
//
// A block updates the residual stream h (rows, d_model) in place around one layer or more:
//
//   prenorm<N, M>        h ← h + m · M(N(h))                 Llama, GPT-2, Mamba, Jamba
//   postnorm<N, M>       h ← N(h + M(h))                     BERT, BART (post-LN)
//   sandwich<N, M>       h ← h + m · N_post(M(N_pre(h)))     Gemma 2 / 3
//   parallel<N, M...>    h ← h + Σ_i m_i · M_i(N(h))         GPT-J, Phi-2, Falcon-H1 (one shared norm)
//   one_of<M...>         one layer kind chosen at load, or none (a hybrid's per-layer choice)
//   stack<B...>          blocks applied in order: one decoder / encoder layer
//
// Every block has the layer contract's shape (layers/batch.hpp) with the stream in place:
//   state_type, make_state(spec), workspace_bytes(rows), forward(h, states, ctx, ws).
// Scratch (the normalized rows, the layer's output) comes from the workspace.
#pragma once

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include <tessera/core/workspace.hpp>
#include <tessera/layers/batch.hpp>
#include <tessera/ops/elementwise.hpp>

namespace tessera {
inline namespace v0 {
namespace layers {

namespace detail {
/// h += m · t
inline void add_scaled(tensor_view<float, 2> h, tensor_view<float, 2> t, float m) {
  if (m != 1.f) ops::scale(t, m);
  ops::add_inplace(h, tensor_view<const float, 2>(t));
}

/// The per-sequence states of a part of a composite state, as a span of pointers in scratch:
/// part(*states[s]) for every sequence s.
template <class Part, class State, class Get>
state_refs<Part> project_states(state_refs<State> states, workspace& ws, Get&& get) {
  Part** p = ws.alloc<Part*>(static_cast<index_t>(states.size()));
  for (std::size_t s = 0; s < states.size(); ++s) p[s] = &get(*states[s]);
  return {p, states.size()};
}

template <class M>
bool is_empty_layer(const M& m) {
  if constexpr (requires { m.empty(); }) return m.empty();
  else return false;
}
}  // namespace detail

/// h ← h + multiplier · sub(norm(h))
template <class Norm, class Sub>
struct prenorm {
  using state_type = typename Sub::state_type;
  Norm norm;
  Sub sub;
  float multiplier = 1.f;  // residual multiplier (Granite, Falcon-H1)

  state_type make_state(const state_spec& spec) const { return sub.make_state(spec); }
  std::size_t workspace_bytes(index_t rows) const {
    return 2 * workspace::bytes_for<float>(rows * norm.dim()) + sub.workspace_bytes(rows) + 128;
  }
  void forward(tensor_view<float, 2> h, state_refs<state_type> states, const batch_context& ctx, workspace& ws) const {
    if (detail::is_empty_layer(sub)) return;
    workspace::frame frame(ws);
    auto n = ws.alloc_view<float, 2>(h.extents());  // (rows, d_model) normalized
    auto t = ws.alloc_view<float, 2>(h.extents());  // (rows, d_model) the layer's output
    norm.forward(h, n);
    sub.forward(n, t, states, ctx, ws);
    detail::add_scaled(h, t, multiplier);
  }
};

/// h ← norm(h + sub(h))
template <class Norm, class Sub>
struct postnorm {
  using state_type = typename Sub::state_type;
  Norm norm;
  Sub sub;

  state_type make_state(const state_spec& spec) const { return sub.make_state(spec); }
  std::size_t workspace_bytes(index_t rows) const {
    return workspace::bytes_for<float>(rows * norm.dim()) + sub.workspace_bytes(rows) + 64;
  }
  void forward(tensor_view<float, 2> h, state_refs<state_type> states, const batch_context& ctx, workspace& ws) const {
    workspace::frame frame(ws);
    auto t = ws.alloc_view<float, 2>(h.extents());
    sub.forward(h, t, states, ctx, ws);
    ops::add_inplace(h, tensor_view<const float, 2>(t));
    norm.forward(h, h);
  }
};

/// h ← h + multiplier · post(sub(pre(h)))
template <class Norm, class Sub>
struct sandwich {
  using state_type = typename Sub::state_type;
  Norm pre;
  Sub sub;
  Norm post;
  float multiplier = 1.f;

  state_type make_state(const state_spec& spec) const { return sub.make_state(spec); }
  std::size_t workspace_bytes(index_t rows) const {
    return 2 * workspace::bytes_for<float>(rows * pre.dim()) + sub.workspace_bytes(rows) + 128;
  }
  void forward(tensor_view<float, 2> h, state_refs<state_type> states, const batch_context& ctx, workspace& ws) const {
    workspace::frame frame(ws);
    auto n = ws.alloc_view<float, 2>(h.extents());
    auto t = ws.alloc_view<float, 2>(h.extents());
    pre.forward(h, n);
    sub.forward(n, t, states, ctx, ws);
    post.forward(t, t);
    detail::add_scaled(h, t, multiplier);
  }
};

/// h ← h + Σ_i multipliers[i] · sub_i(norm(h)): branches that read one normalized stream.
template <class Norm, class... Subs>
struct parallel {
  using state_type = std::tuple<typename Subs::state_type...>;
  Norm norm;
  std::tuple<Subs...> subs;
  std::array<float, sizeof...(Subs)> multipliers = filled(1.f);

  state_type make_state(const state_spec& spec) const {
    return std::apply([&](const auto&... s) { return state_type{s.make_state(spec)...}; }, subs);
  }
  std::size_t workspace_bytes(index_t rows) const {
    std::size_t sub = 0;
    std::apply([&](const auto&... s) { ((sub = std::max<std::size_t>(sub, s.workspace_bytes(rows))), ...); }, subs);
    return 2 * workspace::bytes_for<float>(rows * norm.dim()) + sub + 64 * (sizeof...(Subs) + 2) +
           sizeof...(Subs) * workspace::bytes_for<void*>(rows);
  }
  void forward(tensor_view<float, 2> h, state_refs<state_type> states, const batch_context& ctx, workspace& ws) const {
    workspace::frame frame(ws);
    auto n = ws.alloc_view<float, 2>(h.extents());
    auto t = ws.alloc_view<float, 2>(h.extents());
    norm.forward(h, n);
    // every branch reads n; the sums go into h once all have run (h is their input's source)
    auto acc = ws.alloc_view<float, 2>(h.extents());
    for (index_t r = 0; r < h.extent(0); ++r)
      for (index_t c = 0; c < h.extent(1); ++c) acc(r, c) = 0.f;
    run_branches(n, t, acc, states, ctx, ws, std::index_sequence_for<Subs...>{});
    ops::add_inplace(h, tensor_view<const float, 2>(acc));
  }

 private:
  static constexpr std::array<float, sizeof...(Subs)> filled(float v) {
    std::array<float, sizeof...(Subs)> a{};
    for (auto& x : a) x = v;
    return a;
  }
  template <std::size_t... I>
  void run_branches(tensor_view<float, 2> n, tensor_view<float, 2> t, tensor_view<float, 2> acc,
                    state_refs<state_type> states, const batch_context& ctx, workspace& ws,
                    std::index_sequence<I...>) const {
    (run_branch<I>(n, t, acc, states, ctx, ws), ...);
  }
  template <std::size_t I>
  void run_branch(tensor_view<float, 2> n, tensor_view<float, 2> t, tensor_view<float, 2> acc,
                  state_refs<state_type> states, const batch_context& ctx, workspace& ws) const {
    using sub_t = std::tuple_element_t<I, std::tuple<Subs...>>;
    workspace::frame frame(ws);
    auto part = detail::project_states<typename sub_t::state_type>(states, ws, [](state_type& s) -> auto& {
      return std::get<I>(s);
    });
    std::get<I>(subs).forward(n, t, part, ctx, ws);
    detail::add_scaled(acc, t, multipliers[I]);
  }
};

/// One of several layer kinds, chosen at load, or none (empty(): the enclosing block is skipped).
template <class... Alts>
class one_of {
 public:
  using state_type = std::variant<no_state, typename Alts::state_type...>;

  one_of() = default;
  template <class A>
    requires(std::is_same_v<std::decay_t<A>, Alts> || ...)
  one_of(A&& a) : v_(std::forward<A>(a)) {}  // NOLINT: implicit, like std::variant

  bool empty() const noexcept { return v_.index() == 0; }
  const std::variant<std::monostate, Alts...>& alternatives() const noexcept { return v_; }

  state_type make_state(const state_spec& spec) const { return make<0>(spec); }
  std::size_t workspace_bytes(index_t rows) const {
    return std::visit(
        [&](const auto& a) -> std::size_t {
          if constexpr (std::is_same_v<std::decay_t<decltype(a)>, std::monostate>) return 0;
          else return a.workspace_bytes(rows) + workspace::bytes_for<void*>(rows) + 64;
        },
        v_);
  }
  void forward(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_refs<state_type> states,
               const batch_context& ctx, workspace& ws) const {
    run<0>(x, out, states, ctx, ws);
  }

 private:
  template <std::size_t I>
  state_type make(const state_spec& spec) const {
    if constexpr (I == sizeof...(Alts)) {
      return state_type(std::in_place_index<0>);
    } else {
      if (v_.index() == I + 1) return state_type(std::in_place_index<I + 1>, std::get<I + 1>(v_).make_state(spec));
      return make<I + 1>(spec);
    }
  }
  template <std::size_t I>
  void run(tensor_view<const float, 2> x, tensor_view<float, 2> out, state_refs<state_type> states,
           const batch_context& ctx, workspace& ws) const {
    if constexpr (I < sizeof...(Alts)) {
      if (v_.index() != I + 1) return run<I + 1>(x, out, states, ctx, ws);
      using part_t = std::variant_alternative_t<I + 1, state_type>;
      workspace::frame frame(ws);
      auto part = detail::project_states<part_t>(states, ws, [](state_type& s) -> auto& {
        if (s.index() != I + 1) throw range_error("one_of: a state of another layer kind");
        return std::get<I + 1>(s);
      });
      std::get<I + 1>(v_).forward(x, out, part, ctx, ws);
    }
  }

  std::variant<std::monostate, Alts...> v_;
};

/// Blocks applied in order: one layer of a model (e.g. attention block, then MLP block).
template <class... Blocks>
struct stack {
  using state_type = std::tuple<typename Blocks::state_type...>;
  std::tuple<Blocks...> blocks;

  state_type make_state(const state_spec& spec) const {
    return std::apply([&](const auto&... b) { return state_type{b.make_state(spec)...}; }, blocks);
  }
  std::size_t workspace_bytes(index_t rows) const {
    std::size_t w = 0;
    std::apply([&](const auto&... b) { ((w = std::max<std::size_t>(w, b.workspace_bytes(rows))), ...); }, blocks);
    return w + workspace::bytes_for<void*>(rows) + 64;
  }
  void forward(tensor_view<float, 2> h, state_refs<state_type> states, const batch_context& ctx, workspace& ws) const {
    run(h, states, ctx, ws, std::index_sequence_for<Blocks...>{});
  }

 private:
  template <std::size_t... I>
  void run(tensor_view<float, 2> h, state_refs<state_type> states, const batch_context& ctx, workspace& ws,
           std::index_sequence<I...>) const {
    (run_block<I>(h, states, ctx, ws), ...);
  }
  template <std::size_t I>
  void run_block(tensor_view<float, 2> h, state_refs<state_type> states, const batch_context& ctx, workspace& ws) const {
    using block_t = std::tuple_element_t<I, std::tuple<Blocks...>>;
    workspace::frame frame(ws);
    auto part = detail::project_states<typename block_t::state_type>(states, ws, [](state_type& s) -> auto& {
      return std::get<I>(s);
    });
    std::get<I>(blocks).forward(h, part, ctx, ws);
  }
};

// ---- what a session does with any state ---------------------------------------------------------

/// Rolls a state back to n tokens: true when it could (KV caches, stateless layers), false for a
/// recurrent state (a Mamba or linear-attention state cannot forget tokens: use snapshots).
template <class S>
bool truncate_state(S& s, index_t n) {
  if constexpr (std::is_same_v<S, no_state>) {
    return true;
  } else if constexpr (requires { s.truncate(n); }) {
    s.truncate(n);
    return true;
  } else if constexpr (requires { std::tuple_size<S>::value; }) {
    return std::apply([&](auto&... p) { return (truncate_state(p, n) && ...); }, s);
  } else if constexpr (requires { s.index(); s.valueless_by_exception(); }) {
    return std::visit([&](auto& p) { return truncate_state(p, n); }, s);
  } else {
    return false;
  }
}

/// Whether truncate_state(s, n) can roll this state back (checked before anything changes).
template <class S>
bool can_truncate(const S& s, index_t n) {
  if constexpr (std::is_same_v<S, no_state>) return true;
  else if constexpr (requires { s.can_truncate(n); }) return s.can_truncate(n);
  else if constexpr (requires { std::tuple_size<S>::value; })
    return std::apply([&](const auto&... p) { return (can_truncate(p, n) && ...); }, s);
  else if constexpr (requires { s.index(); s.valueless_by_exception(); })
    return std::visit([&](const auto& p) { return can_truncate(p, n); }, s);
  else return false;
}

/// Bytes a state holds.
template <class S>
std::size_t state_bytes(const S& s) {
  if constexpr (std::is_same_v<S, no_state>) return 0;
  else if constexpr (requires { s.memory_bytes(); })
    return s.memory_bytes();
  else if constexpr (requires { std::tuple_size<S>::value; })
    return std::apply([&](const auto&... p) { return (std::size_t{0} + ... + state_bytes(p)); }, s);
  else if constexpr (requires { s.index(); s.valueless_by_exception(); })
    return std::visit([&](const auto& p) { return state_bytes(p); }, s);
  else if constexpr (requires { s.conv.size(); s.ssm.size(); })
    return static_cast<std::size_t>(s.conv.size() + s.ssm.size()) * sizeof(float);
  else if constexpr (requires { s.s.size(); })
    return static_cast<std::size_t>(s.s.size()) * sizeof(float);
  else return sizeof(S);
}

}  // namespace layers
}  // namespace v0
}  // namespace tessera
