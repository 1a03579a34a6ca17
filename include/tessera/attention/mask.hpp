// tessera/attention/mask.hpp: which keys a query sees (the structural mask) and additive masks.
//
// Softmax attention never materializes an l × l mask. Visibility is a predicate on positions:
//
//   qpos: position of the query row, kpos: position of the key (tokens, 0-based, same axis)
//   causal:   visible iff kpos <= qpos, or kpos < prefix (prefix-LM: bidirectional over the
//             first `prefix` positions, causal after them; prefix = 0 is plain causal)
//   window w: visible iff qpos - kpos < w  (transformers' masking_utils sliding_window_overlay:
//             kv_idx > q_idx - sliding_window, so a query sees w keys counting itself);
//             when causal is false the window is symmetric: |qpos - kpos| < w
//   both conditions must hold. A key that is not visible gets score -inf.
//
// Additive key masks (l_kv) hold 0 for keys to keep and -inf (or any large negative) for
// padding; key_padding_mask() converts a 0/1 attention_mask (transformers' convention) to one.
//
// A query row that sees no key at all (every score -inf: a padded query in a fully padded batch
// row, a key mask of all -inf) has output zeros: defined, never NaN.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include <tessera/core/error.hpp>
#include <tessera/core/tensor_view.hpp>

namespace tessera {
inline namespace v0 {
namespace attention {

/// The structural part of an attention mask (everything but additive terms).
struct mask_spec {
  bool causal = true;
  index_t prefix = 0;              // prefix-LM: keys at positions < prefix are visible to all queries
  std::optional<index_t> window;   // sliding window (keys counted including the query itself)
};

/// True when key position kpos is visible to query position qpos under `m`.
inline bool is_visible(index_t qpos, index_t kpos, const mask_spec& m) noexcept {
  if (m.causal && kpos > qpos && kpos >= m.prefix) return false;
  if (m.window) {
    if (qpos - kpos >= *m.window) return false;
    if (!m.causal && kpos - qpos >= *m.window) return false;
  }
  return true;
}

/// How a rectangular tile of (query positions in [qlo, qhi]) × (key positions in [klo, khi])
/// looks under a mask: every pair visible, none visible, or mixed.
enum class tile_visibility { all, none, some };

/// Classifies a tile from the bounds of its positions (inclusive); exact for every mask_spec.
inline tile_visibility classify_tile(index_t qlo, index_t qhi, index_t klo, index_t khi,
                                     const mask_spec& m) noexcept {
  // None visible: every key is in the future of every query (and outside the prefix), or every key
  // is too old (or too far ahead) for every query.
  if (m.causal && klo > qhi && klo >= m.prefix) return tile_visibility::none;
  if (m.window) {
    if (qlo - khi >= *m.window) return tile_visibility::none;
    if (!m.causal && klo - qhi >= *m.window) return tile_visibility::none;
  }
  bool all = true;
  if (m.causal && !(khi <= qlo || khi < m.prefix)) all = false;
  if (m.window) {
    if (qhi - klo >= *m.window) all = false;
    if (!m.causal && khi - qlo >= *m.window) all = false;
  }
  return all ? tile_visibility::all : tile_visibility::some;
}

/// Throws range_error unless the mask fields are valid; `what` names the op.
inline void check_mask_spec(const mask_spec& m, const char* what) {
  if (m.window && *m.window <= 0)
    throw range_error(std::string(what) + ": window must be >= 1, got " + std::to_string(*m.window));
  if (m.prefix < 0) throw range_error(std::string(what) + ": prefix must be >= 0, got " + std::to_string(m.prefix));
}

/// out[j] = 0 where attention_mask[j] != 0 (keep), -inf where it is 0 (padding).
///   attention_mask: (l_kv) integers, transformers' 0/1 convention
///   out:            (l_kv) additive key mask for attention_params::key_mask
template <class I>
void key_padding_mask(tensor_view<const I, 1> attention_mask, tensor_view<float, 1> out) {
  expect_equal(out.extent(0), attention_mask.extent(0), "key_padding_mask: out length vs attention_mask length");
  const index_t l_kv = attention_mask.extent(0);
  for (index_t j = 0; j < l_kv; ++j)
    out(j) = attention_mask(j) != I(0) ? 0.f : -std::numeric_limits<float>::infinity();
}

}  // namespace attention
}  // namespace v0
}  // namespace tessera
