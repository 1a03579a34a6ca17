// tessera/tokenizer/common.hpp: the interfaces of the tokenization pipeline.
//
//   text ─sanitize_utf8─▶ added-token split ─normalizer─▶ pre_tokenizer ─model─▶ ids
//        ─post_processor─▶ ids (+ BOS/CLS/SEP/EOS)          ids ─pieces─▶ decoder ─▶ text
//
// These mirror the Hugging Face `tokenizers` components one to one (normalizers, pre-tokenizers,
// models, post-processors, decoders), so that a tokenizer.json maps onto a pipeline directly and
// a GGUF vocabulary maps onto the same pieces. Components are immutable once built; encode and
// decode are const and safe to call from many threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <unordered_map>
#include <memory>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <tessera/config.hpp>
#include <tessera/core/error.hpp>

namespace tessera {
inline namespace v0 {
namespace tok {

using json = nlohmann::json;

/// One piece of text flowing through the pre-tokenizers. `first` is true while the piece starts
/// at offset 0 of the original input (Metaspace's prepend_scheme "first" needs it).
struct piece {
  std::string text;
  bool first = false;
};

/// A normalizer rewrites a (valid UTF-8) string.
class normalizer {
 public:
  virtual ~normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};

/// A pre-tokenizer splits (and may rewrite) the pieces.
class pre_tokenizer {
 public:
  virtual ~pre_tokenizer() = default;
  virtual void pre_tokenize(std::vector<piece>& pieces) const = 0;
};

/// Hash for string-keyed maps that accept string_view lookups.
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

/// token string -> id, looked up by string_view.
using token_map = std::unordered_map<std::string, std::int32_t, string_hash, std::equal_to<>>;

/// A model turns one pre-tokenized piece into ids (appended to `out`). It owns the vocabulary.
class model {
 public:
  virtual ~model() = default;
  virtual void encode(std::string_view text, std::vector<std::int32_t>& out) const = 0;

  /// Number of ids of the model's vocabulary (added tokens may extend it).
  index_t size() const noexcept { return static_cast<index_t>(id_to_token_.size()); }
  /// The id of `token`, or -1.
  std::int32_t token_to_id(std::string_view token) const {
    const auto it = token_to_id_.find(token);
    return it == token_to_id_.end() ? -1 : it->second;
  }
  /// The token string of `id` (empty for an id the model does not define).
  const std::string& id_to_token(std::int32_t id) const { return id_to_token_.at(static_cast<std::size_t>(id)); }

 protected:
  /// Fills both directions from an (id -> token) list; duplicate strings keep the first id.
  void set_vocab(std::vector<std::string> tokens) {
    id_to_token_ = std::move(tokens);
    token_to_id_.reserve(id_to_token_.size());
    for (std::size_t i = 0; i < id_to_token_.size(); ++i)
      token_to_id_.emplace(id_to_token_[i], static_cast<std::int32_t>(i));
  }
  /// Ids of a vocabulary object may leave holes, but the id table is sized by the largest id: one
  /// this far past the number of entries is refused before the table is allocated.
  static constexpr std::int64_t max_vocab_gap = 1 << 16;

  /// From a (token -> id) json object.
  void set_vocab_from_json(const json& vocab, const char* what) {
    if (!vocab.is_object()) throw config_error(std::string("tokenizer.json: ") + what + " vocab is not an object");
    std::int64_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const json& v = it.value();
      if (!v.is_number_integer())
        throw config_error(std::string("tokenizer.json: ") + what + " id of \"" + it.key() + "\" is not an integer");
      const auto id = v.get<std::int64_t>();
      if (id < 0) throw config_error(std::string("tokenizer.json: ") + what + " negative id for \"" + it.key() + "\"");
      if (id >= static_cast<std::int64_t>(vocab.size()) + max_vocab_gap)
        throw config_error(std::string("tokenizer.json: ") + what + " id " + std::to_string(id) + " of \"" + it.key() +
                           "\" is far past the vocabulary's " + std::to_string(vocab.size()) + " entries");
      max_id = std::max(max_id, id);
    }
    std::vector<std::string> tokens(static_cast<std::size_t>(max_id + 1));
    for (auto it = vocab.begin(); it != vocab.end(); ++it) tokens[it.value().get<std::size_t>()] = it.key();
    id_to_token_ = std::move(tokens);
    token_to_id_.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) token_to_id_.emplace(it.key(), it.value().get<std::int32_t>());
  }

  std::vector<std::string> id_to_token_;
  token_map token_to_id_;
};

/// A post-processor adds the special tokens of a single sequence.
class post_processor {
 public:
  virtual ~post_processor() = default;
  virtual void process(std::vector<std::int32_t>& ids, bool add_special_tokens) const = 0;
};

/// A decoder rewrites the list of token strings (HF `decode_chain`); the results are joined.
class decoder {
 public:
  virtual ~decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

namespace detail {

/// An integer json value as T, or a config_error naming `key` and the value: json's get<T>
/// converts a float or an out-of-range integer unchecked (undefined behaviour; fuzz_tokenizer_json
/// found a Strip decoder "start" of 2.2e95).
template <class T>
T integer_of(const json& v, const char* key) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  if (v.is_number_unsigned() && std::in_range<T>(v.get<std::uint64_t>())) return static_cast<T>(v.get<std::uint64_t>());
  if (v.is_number_integer() && !v.is_number_unsigned() && std::in_range<T>(v.get<std::int64_t>()))
    return static_cast<T>(v.get<std::int64_t>());
  const std::string shown = v.dump();
  throw config_error(std::string("tokenizer.json: \"") + key + "\" is " + shown.substr(0, 40) +
                     (shown.size() > 40 ? "..." : "") + ", not an integer in [" +
                     std::to_string(std::numeric_limits<T>::min()) + ", " + std::to_string(std::numeric_limits<T>::max()) + "]");
}

/// json field `key` of `j` as T, or `fallback` when absent or null (integers checked by integer_of).
template <class T>
T value_or(const json& j, const char* key, T fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) return integer_of<T>(*it, key);
  else return it->template get<T>();
}

/// A token id read from json: an integer in [0, 2^31 - 1], else a config_error naming `what` and
/// the value (json's get<int32_t> converts a float or a wider integer unchecked: undefined for a
/// float out of range, a wrapped id for an integer).
inline std::int32_t id_of(const json& v, const std::string& what) {
  if (!v.is_number_integer()) throw config_error(what + " " + v.dump() + " is not an integer token id");
  const auto id = v.get<std::int64_t>();  // an unsigned value past 2^63 reads negative: refused below
  if (id < 0 || id > std::numeric_limits<std::int32_t>::max())
    throw config_error(what + " " + v.dump() + " is not a token id (0 .. 2^31 - 1)");
  return static_cast<std::int32_t>(id);
}

/// The "type" of a component object; config_error naming `what` when missing.
inline std::string type_of(const json& j, const char* what) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw config_error(std::string("tokenizer.json: ") + what + " without a \"type\"");
  return j["type"].get<std::string>();
}

[[noreturn]] inline void unsupported(const char* what, const std::string& type) {
  throw config_error(std::string("tokenizer.json: unsupported ") + what + " \"" + type + "\"");
}

}  // namespace detail
}  // namespace tok
}  // namespace v0
}  // namespace tessera
