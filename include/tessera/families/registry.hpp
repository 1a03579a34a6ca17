// tessera/families/registry.hpp: every family, and load_language_model(path), the one entry point
// that picks the family from config.json's model_type (or GGUF's general.architecture).
//
// Each family registers itself when its header is included (families/family.hpp); this header
// includes every family checked against transformers. A family of your own registers the same way
// (examples/custom_family.cpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>

// Registration order is the order of the lists in messages ("supported: llama, mistral, ...").
// clang-format off
#include <tessera/families/family.hpp>
#include <tessera/families/llama.hpp>
#include <tessera/families/gemma2.hpp>
#include <tessera/families/gpt2.hpp>
#include <tessera/families/mamba.hpp>
#include <tessera/families/mamba2.hpp>
#include <tessera/families/jamba.hpp>
#include <tessera/families/bert.hpp>
#include <tessera/families/bart.hpp>
// clang-format on
#include <tessera/io/weights.hpp>
#include <tessera/models/language_model.hpp>

namespace tessera {
inline namespace v0 {

/// Loads a model of a registered family from its config and weights.
inline std::unique_ptr<language_model> load_language_model(const model_config& cfg,
                                                           std::shared_ptr<const io::weight_map> weights) {
  const family* f = find_family(cfg);
  if (!f || !f->load)
    throw config_error(cfg.source + ": model family '" + cfg.family + "' is not a causal LM in tessera" +
                       (f && f->load_encoder ? " (it is an encoder: load_encoder)" : "") + " (supported: " +
                       io::detail::join(supported_model_types()) + ")");
  return f->load(cfg, std::move(weights));
}

/// Loads an encoder (BERT and friends) of a registered family from its config and weights.
inline std::unique_ptr<text_encoder> load_encoder(const model_config& cfg, std::shared_ptr<const io::weight_map> weights) {
  const family* f = find_family(cfg);
  if (!f || !f->load_encoder)
    throw config_error(cfg.source + ": model family '" + cfg.family + "' is not an encoder in tessera" +
                       (f && f->load ? " (it is a causal LM: load_language_model)" : "") + " (supported: " +
                       io::detail::join(supported_model_types()) + ")");
  return f->load_encoder(cfg, std::move(weights));
}

/// Loads an encoder from a Hugging Face folder.
inline std::unique_ptr<text_encoder> load_encoder(const std::filesystem::path& path) {
  const model_config cfg = load_config(path);
  return load_encoder(cfg, std::make_shared<const io::weight_map>(open_weights(path)));
}

/// What a load may take.
struct load_options {
  std::uint64_t max_memory = 0;           // bytes the weights may take (io::weight_map::resident_bytes); 0: no limit
  std::optional<io::ggml_type> quantize;  // encode f32 / f16 / bf16 matrices into these blocks at load (Q8_0, Q4_K, ...)
};

/// Loads a causal LM from a Hugging Face folder (config.json + *.safetensors) or a .gguf file.
/// With opt.max_memory, a checkpoint whose weights need more is refused (range_error) before any
/// of them is read. With opt.quantize, floating-point matrices whose rows are whole blocks are
/// quantized once at load and computed in their blocks (quantized GGUF tensors stay as stored).
inline std::unique_ptr<language_model> load_language_model(const std::filesystem::path& path, const load_options& opt = {}) {
  const model_config cfg = load_config(path);
  io::weight_map w = open_weights(path);
  w.set_matrix_quantization(opt.quantize);
  if (opt.max_memory > 0 && w.resident_bytes() > opt.max_memory)
    throw range_error(path.string() + ": the weights need " + std::to_string(w.resident_bytes()) +
                      " bytes, more than load_options::max_memory = " + std::to_string(opt.max_memory));
  return load_language_model(cfg, std::make_shared<const io::weight_map>(std::move(w)));
}

}  // namespace v0
}  // namespace tessera
