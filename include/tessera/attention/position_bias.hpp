// tessera/attention/position_bias.hpp: ALiBi slopes and T5 relative-position buckets.
//
//   alibi_slopes(out)                 out: (n_heads) slopes, as transformers' BLOOM
//                                     build_alibi_tensor computes them (f32 pow), including
//                                     head counts that are not powers of two
//   t5_relative_position_bucket(rel, p)  bucket of rel = key position - query position, as
//                                     transformers' T5Attention._relative_position_bucket
//   t5_position_bias(table, p, q_offset, out)
//                                     table: (num_buckets, n_heads), the relative_attention_bias
//                                            embedding weight
//                                     out:   (n_heads, l, l_kv), out[h][i][j] =
//                                            table[bucket(j - (q_offset + i))][h]
//                                     ready for attention_params::bias (with scale = 1, as T5
//                                     does not scale its logits)
//   make_t5_relative_bias(table, p)   the same bias by distance: (n_heads, 2R + 1) with
//                                     R = max_distance, entry [h][d + R] = table[bucket(d)][h],
//                                     for attention_params::relative_bias (the kernel clamps
//                                     kpos - qpos to ±R: every |d| >= max_distance is in the last
//                                     bucket of its side, so the clamp is exact). No l × l_kv
//                                     tensor, any sequence length, decode included.
//
// ALiBi in the kernel: score(i, j) += slope[h] · (kpos - qpos). BLOOM adds slope · kpos; the two
// differ by a constant per query row, which softmax ignores.
#pragma once

#include <cmath>
#include <string>

#include <tessera/core/error.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>

namespace tessera {
inline namespace v0 {
namespace attention {

/// Fills out (n_heads) with the ALiBi slopes of BLOOM / MPT (transformers' build_alibi_tensor).
inline void alibi_slopes(tensor_view<float, 1> out) {
  const index_t n_heads = out.extent(0);
  if (n_heads < 1) throw range_error("alibi_slopes: n_heads must be >= 1, got " + std::to_string(n_heads));
  // closest_power_of_2 = 2 ** floor(log2(n_heads))
  index_t closest = 1;
  while (closest * 2 <= n_heads) closest *= 2;
  // base = 2 ** (-(2 ** -(log2(closest) - 3))), rounded to f32 as torch.tensor(..., float32) does
  const auto base_for = [](index_t p2) {
    return static_cast<float>(std::pow(2.0, -std::pow(2.0, -(std::log2(static_cast<double>(p2)) - 3.0))));
  };
  const float base = base_for(closest);
  for (index_t h = 0; h < closest; ++h) out(h) = std::pow(base, static_cast<float>(h + 1));
  if (closest != n_heads) {
    const float extra_base = base_for(2 * closest);
    const index_t remaining = std::min(closest, n_heads - closest);
    for (index_t r = 0; r < remaining; ++r) out(closest + r) = std::pow(extra_base, static_cast<float>(2 * r + 1));
  }
}

/// The slopes as an owning tensor (n_heads).
inline tensor<float, 1> make_alibi_slopes(index_t n_heads) {
  if (n_heads < 1) throw range_error("make_alibi_slopes: n_heads must be >= 1, got " + std::to_string(n_heads));
  tensor<float, 1> t({n_heads});
  alibi_slopes(t.view());
  return t;
}

/// T5's bucket parameters (config.json: relative_attention_num_buckets,
/// relative_attention_max_distance; bidirectional for the encoder, not for the decoder).
struct t5_bucket_params {
  bool bidirectional = true;
  index_t num_buckets = 32;
  index_t max_distance = 128;
};

/// transformers' T5Attention._relative_position_bucket for one relative position
/// (memory_position - query_position), with its float32 arithmetic.
inline index_t t5_relative_position_bucket(index_t relative_position, const t5_bucket_params& p) {
  if (p.num_buckets < 2 || (p.bidirectional && p.num_buckets < 4))
    throw range_error("t5_relative_position_bucket: num_buckets too small: " + std::to_string(p.num_buckets));
  index_t num_buckets = p.num_buckets;
  index_t bucket = 0;
  index_t rel = relative_position;
  if (p.bidirectional) {
    num_buckets /= 2;
    if (rel > 0) bucket += num_buckets;
    rel = rel < 0 ? -rel : rel;
  } else {
    rel = rel < 0 ? -rel : 0;  // -min(rel, 0)
  }
  const index_t max_exact = num_buckets / 2;
  if (max_exact < 1 || p.max_distance <= max_exact)
    throw range_error("t5_relative_position_bucket: max_distance " + std::to_string(p.max_distance) +
                      " must exceed num_buckets/4 (bidirectional) or num_buckets/2");
  if (rel < max_exact) return bucket + rel;
  // max_exact + (log(rel / max_exact) / log(max_distance / max_exact) * (num_buckets - max_exact)).long()
  const float ratio = static_cast<float>(rel) / static_cast<float>(max_exact);
  const float denom = static_cast<float>(std::log(static_cast<double>(p.max_distance) / static_cast<double>(max_exact)));
  const float scaled = std::log(ratio) / denom * static_cast<float>(num_buckets - max_exact);
  index_t large = max_exact + static_cast<index_t>(scaled);
  if (large > num_buckets - 1) large = num_buckets - 1;
  return bucket + large;
}

/// out[h][i][j] = table[bucket(j - (q_offset + i))][h].
///   table: (num_buckets, n_heads)   out: (n_heads, l, l_kv)
inline void t5_position_bias(tensor_view<const float, 2> table, const t5_bucket_params& p, index_t q_offset,
                             tensor_view<float, 3> out) {
  const auto [num_buckets, n_heads] = table.extents();
  const auto [out_heads, l, l_kv] = out.extents();
  expect_equal(num_buckets, p.num_buckets, "t5_position_bias: table rows vs num_buckets");
  expect_equal(out_heads, n_heads, "t5_position_bias: out heads vs table columns (n_heads)");
  for (index_t i = 0; i < l; ++i)
    for (index_t j = 0; j < l_kv; ++j) {
      const index_t bucket = t5_relative_position_bucket(j - (q_offset + i), p);
      for (index_t h = 0; h < n_heads; ++h) out(h, i, j) = table(bucket, h);
    }
}

/// table: (num_buckets, n_heads) → (n_heads, 2R + 1), R = max_distance: [h][d + R] = table[bucket(d)][h].
inline tensor<float, 2> make_t5_relative_bias(tensor_view<const float, 2> table, const t5_bucket_params& p) {
  const index_t num_buckets = table.extent(0), n_heads = table.extent(1);
  expect_equal(num_buckets, p.num_buckets, "make_t5_relative_bias: table rows vs num_buckets");
  const index_t reach = p.max_distance;
  // the clamp is exact only if the buckets saturate at ±R (they do: the last bucket of each side)
  if (t5_relative_position_bucket(reach, p) != t5_relative_position_bucket(reach + 1, p) ||
      t5_relative_position_bucket(-reach, p) != t5_relative_position_bucket(-reach - 1, p))
    throw range_error("make_t5_relative_bias: buckets do not saturate at max_distance " + std::to_string(reach));
  tensor<float, 2> out({n_heads, 2 * reach + 1});
  for (index_t d = -reach; d <= reach; ++d) {
    const index_t bucket = t5_relative_position_bucket(d, p);
    for (index_t h = 0; h < n_heads; ++h) out(h, d + reach) = table(bucket, h);
  }
  return out;
}

}  // namespace attention
}  // namespace v0
}  // namespace tessera
