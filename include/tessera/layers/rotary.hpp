// tessera/layers/rotary.hpp: RoPE frequencies for every scaling type transformers knows.
//
// rope_frequencies turns a rope_config (theta, partial rotary factor, scaling) into inv_freq (rotary_dim / 2) and the
// attention scaling that multiplies cos and sin, exactly as transformers' modeling_rope_utils
// computes them (float32 arithmetic where it uses float32):
//   default: θ_i = 1 / theta^(2i / dim)
//   linear:  θ_i / factor
//   dynamic: NTK: theta' = theta · (factor · seq_len / max_position - (factor - 1))^(dim / (dim - 2))
//            once seq_len > max_position; recomputed as the sequence grows (rope_state)
//   yarn:    interpolation / extrapolation blend over a linear ramp between the correction dims
//            of beta_fast / beta_slow; attention scaling 0.1 · mscale · ln(factor) + 1
//   llama3:  wavelength bands: low frequencies / factor, high kept, a smooth blend between
//   longrope: short / long factors chosen by seq_len against original_max_position
// The dynamic and longrope kinds depend on the current sequence length, so a session carries a
// rope_state and calls update() before each forward (transformers' dynamic_rope_update).
#pragma once

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include <optional>
#include <string>

#include <tessera/core/error.hpp>
#include <tessera/core/tensor_view.hpp>

namespace tessera {
inline namespace v0 {

/// RoPE frequency scaling (transformers' rope_parameters / rope_scaling "rope_type").
enum class rope_scaling_type { none, linear, dynamic, yarn, llama3, longrope };

struct rope_config {
  float theta = 10000.f;                 // rope_theta (rope_parameters.rope_theta in transformers 5)
  float partial_rotary_factor = 1.f;     // partial_rotary_factor: fraction of head_dim rotated
  rope_scaling_type type = rope_scaling_type::none;
  float factor = 1.f;                    // factor
  index_t original_max_position = 0;     // original_max_position_embeddings
  // llama3
  float low_freq_factor = 1.f;
  float high_freq_factor = 4.f;
  // yarn
  float beta_fast = 32.f;
  float beta_slow = 1.f;
  std::optional<float> mscale;           // yarn: mscale
  std::optional<float> mscale_all_dim;   // yarn: mscale_all_dim
  std::optional<float> attention_factor; // yarn / longrope: attention_factor
  bool truncate = true;                  // yarn: truncate
  // longrope
  std::vector<float> long_factor, short_factor;
  bool neox = true;                      // pairing: rotate-half (HF) or interleaved pairs (GPT-J)
};

namespace layers {

/// The frequencies in use by one session (inv_freq is sized once; update() rewrites it in place).
struct rope_state {
  std::vector<float> inv_freq;       // (rotary_dim / 2)
  float attention_scaling = 1.f;
  index_t max_seq_len_cached = 0;    // dynamic NTK: the longest sequence the frequencies were made for

  tensor_view<const float, 1> view() const { return {inv_freq.data(), {static_cast<index_t>(inv_freq.size())}}; }
};

class rope_frequencies {
 public:
  rope_frequencies() = default;

  /// rotary_dim = head_dim · partial_rotary_factor (even, <= head_dim); max_position is the
  /// trained context (dynamic NTK, yarn and longrope read it); `source` names the config in errors.
  rope_frequencies(const rope_config& rope, index_t head_dim, index_t max_position, const std::string& source = "rope")
      : rope_(rope), max_position_(max_position) {
    dim_ = static_cast<index_t>(static_cast<float>(head_dim) * rope_.partial_rotary_factor);
    if (dim_ <= 0 || dim_ % 2 != 0 || dim_ > head_dim)
      throw config_error(source + ": rotary dimension " + std::to_string(dim_) + " (head_dim " +
                         std::to_string(head_dim) + ") must be even and at most head_dim");
    if (!(rope_.theta > 0.f)) throw config_error(source + ": rope_theta must be positive");
    if ((rope_.type == rope_scaling_type::dynamic || rope_.type == rope_scaling_type::linear ||
         rope_.type == rope_scaling_type::yarn || rope_.type == rope_scaling_type::llama3) && !(rope_.factor > 0.f))
      throw config_error(source + ": rope scaling factor must be positive");
    original_max_ = rope_.original_max_position > 0 ? rope_.original_max_position : max_position_;
  }

  const rope_config& config() const noexcept { return rope_; }

  index_t rotary_dim() const noexcept { return dim_; }

  /// A fresh session's state (frequencies for a sequence no longer than the original context).
  rope_state initial_state() const {
    rope_state s;
    s.inv_freq.resize(static_cast<std::size_t>(dim_ / 2));
    s.max_seq_len_cached = original_max_;
    compute(0, s);
    return s;
  }

  /// Before a forward whose largest position is seq_len - 1 (dynamic / longrope only; no allocation).
  void update(index_t seq_len, rope_state& s) const {
    if (rope_.type == rope_scaling_type::dynamic) {
      if (seq_len > s.max_seq_len_cached) {  // growth
        compute(seq_len, s);
        s.max_seq_len_cached = seq_len;
      }
      if (seq_len < original_max_ && s.max_seq_len_cached > original_max_) {  // reset
        compute(0, s);
        s.max_seq_len_cached = original_max_;
      }
    } else if (rope_.type == rope_scaling_type::longrope) {
      compute(seq_len, s);
    }
  }

 private:
  // base^(2i/dim) in float32, as torch computes `base ** (arange(0, dim, 2).float() / dim)`.
  float pos_freq(float base, index_t i) const {
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim_);
    return std::pow(base, e);
  }

  void compute(index_t seq_len, rope_state& s) const {
    const index_t half = dim_ / 2;
    float* inv = s.inv_freq.data();
    const float theta = rope_.theta;
    s.attention_scaling = 1.f;
    switch (rope_.type) {
      case rope_scaling_type::none:
        for (index_t i = 0; i < half; ++i) inv[i] = 1.f / pos_freq(theta, i);
        break;
      case rope_scaling_type::linear:
        for (index_t i = 0; i < half; ++i) inv[i] = (1.f / pos_freq(theta, i)) / rope_.factor;
        break;
      case rope_scaling_type::dynamic: {
        const double len = static_cast<double>(std::max(seq_len, max_position_));
        const double f = rope_.factor;
        const double base = static_cast<double>(theta) *
                            std::pow(f * len / static_cast<double>(max_position_) - (f - 1.0),
                                     static_cast<double>(dim_) / static_cast<double>(dim_ - 2));
        for (index_t i = 0; i < half; ++i) inv[i] = 1.f / pos_freq(static_cast<float>(base), i);
        break;
      }
      case rope_scaling_type::yarn: {
        const double factor = rope_.factor;
        auto get_mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
        if (rope_.attention_factor) s.attention_scaling = *rope_.attention_factor;
        else if (rope_.mscale && rope_.mscale_all_dim && *rope_.mscale != 0.f && *rope_.mscale_all_dim != 0.f)
          s.attention_scaling = static_cast<float>(get_mscale(factor, *rope_.mscale) / get_mscale(factor, *rope_.mscale_all_dim));
        else s.attention_scaling = static_cast<float>(get_mscale(factor, 1.0));
        const double beta_fast = rope_.beta_fast != 0.f ? rope_.beta_fast : 32.0;
        const double beta_slow = rope_.beta_slow != 0.f ? rope_.beta_slow : 1.0;
        const double d = static_cast<double>(dim_), b = theta, omax = static_cast<double>(original_max_);
        auto correction_dim = [&](double rot) { return d * std::log(omax / (rot * 2 * std::numbers::pi)) / (2 * std::log(b)); };
        double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
        if (rope_.truncate) {
          low = std::floor(low);
          high = std::ceil(high);
        }
        low = std::max(low, 0.0);
        high = std::min(high, d - 1);
        if (low == high) high += 0.001;
        for (index_t i = 0; i < half; ++i) {
          const float pf = pos_freq(theta, i);
          const float extrapolation = 1.f / pf;
          const float interpolation = 1.f / (static_cast<float>(factor) * pf);
          const float ramp = std::clamp((static_cast<float>(i) - static_cast<float>(low)) /
                                            (static_cast<float>(high) - static_cast<float>(low)), 0.f, 1.f);
          const float extra_factor = 1.f - ramp;
          inv[i] = interpolation * (1.f - extra_factor) + extrapolation * extra_factor;
        }
        break;
      }
      case rope_scaling_type::llama3: {
        const double old_len = static_cast<double>(original_max_);
        const double low_wavelen = old_len / rope_.low_freq_factor, high_wavelen = old_len / rope_.high_freq_factor;
        const float factor = rope_.factor;
        for (index_t i = 0; i < half; ++i) {
          const float f = 1.f / pos_freq(theta, i);
          const double wavelen = 2 * std::numbers::pi / static_cast<double>(f);
          float out = wavelen > low_wavelen ? f / factor : f;
          if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
            const float smooth = static_cast<float>((old_len / wavelen - rope_.low_freq_factor) /
                                                    (rope_.high_freq_factor - rope_.low_freq_factor));
            out = (1.f - smooth) * out / factor + smooth * out;
          }
          inv[i] = out;
        }
        break;
      }
      case rope_scaling_type::longrope: {
        const auto& ext = (seq_len > original_max_) ? rope_.long_factor : rope_.short_factor;
        if (static_cast<index_t>(ext.size()) != half)
          throw config_error("longrope: long_factor / short_factor must have rotary_dim / 2 = " + std::to_string(half) +
                             " entries, got " + std::to_string(ext.size()));
        double factor = rope_.factor;
        if (rope_.original_max_position > 0 && max_position_ > 0)
          factor = static_cast<double>(max_position_) / static_cast<double>(rope_.original_max_position);
        if (rope_.attention_factor) s.attention_scaling = *rope_.attention_factor;
        else s.attention_scaling = factor <= 1 ? 1.f : static_cast<float>(std::sqrt(1 + std::log(factor) / std::log(static_cast<double>(original_max_))));
        for (index_t i = 0; i < half; ++i) inv[i] = 1.f / (ext[static_cast<std::size_t>(i)] * pos_freq(theta, i));
        break;
      }
    }
  }

  rope_config rope_{};
  index_t max_position_ = 0;
  index_t original_max_ = 0;
  index_t dim_ = 0;
};

}  // namespace layers
}  // namespace v0
}  // namespace tessera
