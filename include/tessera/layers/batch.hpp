// tessera/layers/batch.hpp: the layer contract (docs/architecture.md, "The layer contract").
//
// Every mixer (attention, Mamba, Mamba-2, linear attention, ...) and every feed-forward (MLP,
// gated MLP, mixture of experts) has one shape:
//
//   using state_type = ...;                      // per sequence; no_state when stateless
//   state_type make_state(const state_spec&) const;   // the only place a state is sized
//   std::size_t workspace_bytes(index_t rows) const;  // scratch for a forward of `rows` rows
//   void forward(tensor_view<const float, 2> x,  // (rows, d_in): the rows of every sequence, packed
//                tensor_view<float, 2> out,      // (rows, d_out)
//                state_refs<state_type> states,  // one state per sequence of the batch
//                const batch_context& ctx,       // which rows belong to which sequence, positions
//                workspace& ws) const;
//
// One forward serves prefill (many rows per sequence) and decode (one row per sequence) alike;
// a batch packs several sequences without padding. Projections run once over all rows (one GEMM
// reads every weight once for the whole batch); what is per sequence (a KV cache, a recurrent
// state, RoPE frequencies) is run sequence by sequence over that sequence's rows.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <utility>

#include <tessera/attention/kv_cache.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/core/workspace.hpp>

namespace tessera {
inline namespace v0 {
namespace layers {

/// How a self-attention layer masks: causal (decoders) or bidirectional (encoders).
enum class attention_mode { causal, bidirectional };

/// The encoder's output that cross-attention layers attend to: one view per sequence of the batch.
struct encoder_memory {
  std::span<const tensor_view<const float, 2>> sequences;  // (n_seq): sequence s's memory (l_src, d_model)
};

/// What a forward's rows are. Sequence s owns rows [seq_starts[s], seq_starts[s + 1]); its rows
/// are consecutive tokens, row r at position positions[r] (the first at the sequence's current
/// length). No padding anywhere.
struct batch_context {
  std::span<const index_t> seq_starts;        // (n_seq + 1), seq_starts[0] == 0
  std::span<const std::int32_t> positions;    // (rows)
  attention_mode mode = attention_mode::causal;
  const encoder_memory* memory = nullptr;     // cross-attention only

  index_t n_seq() const noexcept { return static_cast<index_t>(seq_starts.size()) - 1; }
  index_t rows() const noexcept { return seq_starts.empty() ? 0 : seq_starts.back(); }
  /// Rows [first, second) of sequence s.
  std::pair<index_t, index_t> rows_of(index_t s) const noexcept {
    return {seq_starts[static_cast<std::size_t>(s)], seq_starts[static_cast<std::size_t>(s) + 1]};
  }
  /// Position of sequence s's first row in this batch (= the tokens it held before).
  index_t position0(index_t s) const noexcept { return positions[static_cast<std::size_t>(rows_of(s).first)]; }
  /// Positions of sequence s's rows: (rows of s).
  tensor_view<const std::int32_t, 1> positions_of(index_t s) const noexcept {
    const auto [r0, r1] = rows_of(s);
    return {positions.data() + r0, {r1 - r0}};
  }
};

/// What a state is sized for.
struct state_spec {
  index_t max_len = 0;   // tokens the sequence may hold (attention caches never grow past it)
  index_t reserve = 0;   // tokens to allocate room for at creation (caches grow beyond it with use)
  index_t rollback = 0;  // tokens a sliding-window ring keeps beyond its window (truncate)
  kv_element kv_type = kv_element::f32;  // element type of attention caches: f32, f16 or q8_0
};

/// The state of a stateless layer.
struct no_state {};

/// One state per sequence of the batch.
template <class State>
using state_refs = std::span<State* const>;

/// What every mixer and feed-forward provides (docs/architecture.md).
template <class L>
concept layer = requires(const L& l, const state_spec& spec, index_t rows, tensor_view<const float, 2> x,
                         tensor_view<float, 2> out, state_refs<typename L::state_type> st, const batch_context& ctx,
                         workspace& ws) {
  typename L::state_type;
  { l.make_state(spec) } -> std::same_as<typename L::state_type>;
  { l.workspace_bytes(rows) } -> std::convertible_to<std::size_t>;
  l.forward(x, out, st, ctx, ws);
};

/// A batch context for one sequence of `n` rows starting at position `pos0`; `seq_starts` (2)
/// and `positions` (n) are the caller's storage.
inline batch_context single_sequence(index_t pos0, index_t n, index_t (&seq_starts)[2], std::span<std::int32_t> positions,
                                     attention_mode mode = attention_mode::causal) {
  if (static_cast<index_t>(positions.size()) < n) throw shape_error("single_sequence: positions too short");
  seq_starts[0] = 0;
  seq_starts[1] = n;
  for (index_t i = 0; i < n; ++i) positions[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(pos0 + i);
  return {std::span<const index_t>(seq_starts, 2), std::span<const std::int32_t>(positions.data(), static_cast<std::size_t>(n)), mode};
}

}  // namespace layers
}  // namespace v0
}  // namespace tessera
