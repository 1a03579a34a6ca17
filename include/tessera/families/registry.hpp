// tessera/families/registry.hpp: load_language_model(path), the one entry point that picks the
// family from config.json's model_type (or GGUF's general.architecture).
#pragma once

#include <filesystem>
#include <memory>

#include <tessera/families/gpt2.hpp>
#include <tessera/families/jamba.hpp>
#include <tessera/families/llama.hpp>
#include <tessera/families/mamba.hpp>
#include <tessera/families/mamba2.hpp>
#include <tessera/io/config.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/models/language_model.hpp>

namespace tessera {
inline namespace v0 {

/// Loads a causal LM from a Hugging Face folder (config.json + *.safetensors) or a .gguf file.
inline std::unique_ptr<language_model> load_language_model(const std::filesystem::path& path) {
  const model_config cfg = io::load_config(path);
  auto weights = std::make_shared<const io::weight_map>(io::weight_map::open(path));
  const std::string& f = cfg.family;
  if (f == "llama" || f == "mistral" || f == "qwen2") return families::load_llama(cfg, std::move(weights));
  if (f == "gpt2") return families::load_gpt2(cfg, std::move(weights));
  if (f == "mamba") return families::load_mamba(cfg, std::move(weights));
  if (f == "mamba2") return families::load_mamba2(cfg, std::move(weights));
  if (f == "jamba") return families::load_jamba(cfg, std::move(weights));
  throw config_error(cfg.source + ": model family '" + f +
                     "' has no causal LM in tessera yet (supported: llama, mistral, qwen2, gpt2, mamba, mamba2, jamba)");
}

}  // namespace v0
}  // namespace tessera
