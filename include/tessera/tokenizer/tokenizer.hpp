// tessera/tokenizer/tokenizer.hpp: the tokenizer (text <-> token ids), loaded from a Hugging Face
// tokenizer.json (+ tokenizer_config.json, special_tokens_map.json, generation_config.json) or
// from GGUF metadata (tokenizer.ggml.*). Umbrella header of the tokenizer module.
//
//   auto tk = tessera::tokenizer::load("path/to/model_or_file.gguf");
//   std::vector<std::int32_t> ids = tk.encode("Hello world");        // with BOS/CLS/... as HF does
//   std::string text = tk.decode(ids);
//   tessera::tokenizer::stream_decoder sd(tk);                     // generation: text as it completes
//   for (auto id : generated) std::cout << sd.push(id);
//   std::cout << sd.flush();
//
// Pipeline (common.hpp): invalid UTF-8 is replaced by U+FFFD (from_utf8_lossy, as a Python str
// reaching HF would be), added/special tokens are split out first (non-normalized ones on the raw
// text, normalized ones after normalization; lstrip / rstrip / single_word honoured), then the
// normalizer, pre-tokenizer and model run on each remaining segment, then the post-processor.
// Unsupported components are a config_error naming them, never a silent fallback. A tokenizer is
// immutable and cheap to copy (shared state); encode / decode may run concurrently.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <tessera/config.hpp>
#include <tessera/core/error.hpp>
#include <tessera/io/gguf.hpp>
#include <tessera/tokenizer/bpe.hpp>
#include <tessera/tokenizer/common.hpp>
#include <tessera/tokenizer/decoders.hpp>
#include <tessera/tokenizer/normalizers.hpp>
#include <tessera/tokenizer/post_processors.hpp>
#include <tessera/tokenizer/pre_tokenizers.hpp>
#include <tessera/tokenizer/sentencepiece.hpp>
#include <tessera/tokenizer/unicode.hpp>
#include <tessera/tokenizer/unigram.hpp>
#include <tessera/tokenizer/wordpiece.hpp>

namespace tessera {
inline namespace v0 {

namespace tok {

/// A token matched in the text before any splitting (HF AddedToken).
struct added_token {
  std::int32_t id = -1;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

/// A piece of the input: text still to tokenize (id < 0) or an added token (id >= 0).
struct segment {
  std::string text;
  std::int32_t id = -1;
  bool first = false;
};

namespace detail {

inline bool is_word_char(char32_t c) noexcept {
  if (c < 0x80) return std::isalnum(static_cast<int>(c)) || c == '_';
  const auto k = category(c);
  return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_NO) || k == UTF8PROC_CATEGORY_PC;
}

/// Start of the UTF-8 character that ends just before `pos`.
inline std::size_t prev_char(std::string_view s, std::size_t pos) noexcept {
  do { --pos; } while (pos > 0 && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80);
  return pos;
}

/// Leftmost-longest matcher over a set of added tokens.
class added_matcher {
 public:
  void add(const added_token& t, std::string content) {
    if (content.empty()) return;
    entries_.push_back({t, std::move(content)});
  }
  void finalize() {
    for (auto& v : by_byte_) v.clear();
    for (std::size_t i = 0; i < entries_.size(); ++i)
      by_byte_[static_cast<unsigned char>(entries_[i].content[0])].push_back(i);
    for (auto& v : by_byte_)
      std::stable_sort(v.begin(), v.end(), [&](std::size_t a, std::size_t b) {
        return entries_[a].content.size() > entries_[b].content.size();
      });
  }
  bool empty() const noexcept { return entries_.empty(); }

  /// Splits every text segment of `segs` around matches.
  void split(std::vector<segment>& segs) const {
    if (entries_.empty()) return;
    std::vector<segment> out;
    for (auto& seg : segs) {
      if (seg.id >= 0) {
        out.push_back(std::move(seg));
        continue;
      }
      const std::string_view s = seg.text;
      std::size_t last = 0;  // start of text not yet emitted
      for (std::size_t pos = 0; pos < s.size();) {
        const entry* hit = nullptr;
        for (std::size_t i : by_byte_[static_cast<unsigned char>(s[pos])]) {
          const entry& e = entries_[i];
          if (s.compare(pos, e.content.size(), e.content) != 0) continue;
          if (e.token.single_word) {
            const std::size_t end = pos + e.content.size();
            std::size_t q = end;
            const bool before_ok = pos == 0 || !is_word_char([&] { std::size_t p = prev_char(s, pos); return utf8_next(s, p); }());
            const bool after_ok = end == s.size() || !is_word_char(utf8_next(s, q));
            if (!before_ok || !after_ok) continue;
          }
          hit = &e;
          break;
        }
        if (!hit) {
          ++pos;
          continue;
        }
        std::size_t start = pos, stop = pos + hit->content.size();
        if (hit->token.lstrip) {
          while (start > last) {
            std::size_t p = prev_char(s, start), q = p;
            if (!is_whitespace(utf8_next(s, q))) break;
            start = p;
          }
        }
        if (hit->token.rstrip) {
          while (stop < s.size()) {
            std::size_t q = stop;
            if (!is_whitespace(utf8_next(s, q))) break;
            stop = q;
          }
        }
        if (start > last) out.push_back({std::string(s.substr(last, start - last)), -1, seg.first && last == 0});
        out.push_back({hit->content, hit->token.id, false});
        last = pos = stop;
      }
      if (last < s.size()) out.push_back({std::string(s.substr(last)), -1, seg.first && last == 0});
    }
    segs = std::move(out);
  }

 private:
  struct entry {
    added_token token;
    std::string content;  // as matched (normalized for normalized tokens)
  };
  std::vector<entry> entries_;
  std::array<std::vector<std::size_t>, 256> by_byte_;
};

/// tokenizer.json files of real checkpoints stay under ~40 MB; this bounds what a pipe may feed.
inline constexpr std::size_t max_tokenizer_json_bytes = std::size_t{512} << 20;

inline std::string read_text_file(const std::filesystem::path& p) {
  try {
    return io::read_text_file(p, max_tokenizer_json_bytes);
  } catch (const io_error& e) {
    throw io_error(std::string("tokenizer: ") + e.what());
  }
}

inline json read_json_file(const std::filesystem::path& p) {
  const std::string text = read_text_file(p);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw format_error("tokenizer: " + p.string() + " is not valid JSON: " + e.what());
  }
}

/// A token given in tokenizer_config.json / special_tokens_map.json: "text" or {"content": ...}.
inline std::optional<std::string> token_text(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return std::nullopt;
  const auto& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

/// The Split regexes llama.cpp associates with a GGUF `tokenizer.ggml.pre` value (applied in
/// turn, each isolating its matches), and whether that family ignores merges for whole words.
struct gguf_pre {
  std::vector<std::string> regexes;
  bool ignore_merges = false;
  bool add_bos = false;
};

inline gguf_pre gguf_pre_for(const std::string& pre) {
  static const char* gpt2_no_ws = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
  auto any = [&](std::initializer_list<const char*> names) {
    return std::any_of(names.begin(), names.end(), [&](const char* n) { return pre == n; });
  };
  if (pre.empty() || pre == "default")
    return {{R"([\p{P}\$\+<=>\^~\|]+)", gpt2_no_ws, R"(\p{N}+)", "[0-9][0-9][0-9]"}, false, false};
  if (any({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "dbrx", "smaug-bpe"}))
    return {{patterns::llama3}, true, pre != "dbrx" && pre != "smaug-bpe"};
  if (any({"glm4", "chatglm-bpe"})) return {{patterns::llama3}, false, false};
  if (any({"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
           "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais", "trillion"}))
    return {{patterns::gpt2}, false, false};
  if (any({"qwen2", "deepseek-r1-qwen", "kormo", "stablelm2", "hunyuan"})) return {{patterns::qwen2}, false, false};
  if (any({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva"}))
    return {{R"(\p{N})", gpt2_no_ws}, false, false};
  if (pre == "falcon") return {{R"([\p{P}\$\+<=>\^~\|`]+)", gpt2_no_ws, "[0-9][0-9][0-9]"}, false, false};
  if (pre == "deepseek-coder")
    return {{"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+", R"(\p{N})"}, false, false};
  if (any({"poro-chat", "bloom", "gpt3-finnish"})) return {{R"( ?[^(\s|.,!?…。，、।۔،)]+)"}, false, false};
  if (pre == "tekken")
    return {{R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
            true, false};
  if (any({"gpt-4o", "minimax-m2"}))
    return {{R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
            false, false};
  throw config_error("tokenizer: GGUF tokenizer.ggml.pre \"" + pre + "\" is not supported");
}

}  // namespace detail
}  // namespace tok

/// Text <-> token ids for one checkpoint.
class tokenizer {
 public:
  class stream_decoder;

  /// From a Hugging Face folder (tokenizer.json and, when present, tokenizer_config.json,
  /// special_tokens_map.json, generation_config.json) or a tokenizer.json path.
  static tokenizer from_hf(const std::filesystem::path& folder_or_tokenizer_json) {
    namespace fs = std::filesystem;
    fs::path file = folder_or_tokenizer_json;
    if (fs::is_directory(file)) file /= "tokenizer.json";
    if (!fs::exists(file))
      throw io_error("tokenizer: " + file.string() + " does not exist (only tokenizer.json is supported, not "
                     "SentencePiece tokenizer.model)");
    const fs::path dir = file.parent_path();
    const tok::json j = tok::detail::read_json_file(file);
    tok::json config = tok::json::object(), special_map = tok::json::object(), generation = tok::json::object();
    if (fs::exists(dir / "tokenizer_config.json")) config = tok::detail::read_json_file(dir / "tokenizer_config.json");
    if (fs::exists(dir / "special_tokens_map.json")) special_map = tok::detail::read_json_file(dir / "special_tokens_map.json");
    if (fs::exists(dir / "generation_config.json")) generation = tok::detail::read_json_file(dir / "generation_config.json");
    try {
      return from_hf_json(j, config, special_map, generation);
    } catch (const tok::json::exception& e) {
      throw config_error("tokenizer: " + file.string() + ": " + e.what());
    } catch (const config_error& e) {
      throw config_error(std::string(e.what()) + " (" + file.string() + ")");
    }
  }

  /// From parsed tokenizer.json (+ optional tokenizer_config.json, special_tokens_map.json and
  /// generation_config.json objects).
  static tokenizer from_hf_json(const tok::json& j, const tok::json& config = tok::json::object(),
                                const tok::json& special_map = tok::json::object(),
                                const tok::json& generation = tok::json::object()) {
    using namespace tok;
    auto st = std::make_shared<state>();
    // model
    const tok::json& m = j.at("model");
    std::string mtype = m.contains("type") ? m["type"].get<std::string>() : "";
    if (mtype.empty()) {
      if (m.contains("merges")) mtype = "BPE";
      else if (m.contains("vocab") && m["vocab"].is_array()) mtype = "Unigram";
      else if (m.contains("max_input_chars_per_word")) mtype = "WordPiece";
    }
    if (mtype == "BPE") st->model = bpe_model::from_json(m);
    else if (mtype == "WordPiece") st->model = wordpiece_model::from_json(m);
    else if (mtype == "Unigram") st->model = unigram_model::from_json(m);
    else tok::detail::unsupported("model", mtype);
    // pipeline
    st->normalizer = normalizer_from_json(j.value("normalizer", tok::json()));
    st->pre_tokenizer = pre_tokenizer_from_json(j.value("pre_tokenizer", tok::json()));
    st->post_processor = post_processor_from_json(j.value("post_processor", tok::json()));
    st->decoder = decoder_from_json(j.value("decoder", tok::json()));
    // added tokens
    for (const auto& a : j.value("added_tokens", tok::json::array())) {
      added_token t;
      t.id = tok::detail::id_of(a.at("id"), "tokenizer.json: added token id");
      t.content = a.at("content").get<std::string>();
      t.single_word = tok::detail::value_or(a, "single_word", false);
      t.lstrip = tok::detail::value_or(a, "lstrip", false);
      t.rstrip = tok::detail::value_or(a, "rstrip", false);
      t.normalized = tok::detail::value_or(a, "normalized", false);
      t.special = tok::detail::value_or(a, "special", false);
      st->added.push_back(std::move(t));
    }
    st->finish();
    // special tokens named by tokenizer_config.json / special_tokens_map.json
    auto named = [&](const char* key) -> std::optional<std::int32_t> {
      auto text = tok::detail::token_text(config, key);
      if (!text) text = tok::detail::token_text(special_map, key);
      if (!text) return std::nullopt;
      const auto id = st->lookup(*text);
      return id >= 0 ? std::optional<std::int32_t>(id) : std::nullopt;
    };
    st->bos = named("bos_token");
    const auto eos = named("eos_token");
    if (eos) st->eos.push_back(*eos);
    if (generation.contains("eos_token_id")) {
      const auto& g = generation["eos_token_id"];
      auto add = [&](const tok::json& v) {
        if (v.is_number_integer()) {
          const auto id = tok::detail::id_of(v, "generation_config.json: eos_token_id");
          if (std::find(st->eos.begin(), st->eos.end(), id) == st->eos.end()) st->eos.push_back(id);
        }
      };
      if (g.is_array()) for (const auto& v : g) add(v);
      else add(g);
    }
    // add_bos_token / add_eos_token (LlamaTokenizerFast's update_post_processor): only where the
    // tokenizer.json post-processor adds nothing but BOS/EOS, so BERT-style templates stay intact.
    const bool has_bos_key = config.contains("add_bos_token") && config["add_bos_token"].is_boolean();
    const bool has_eos_key = config.contains("add_eos_token") && config["add_eos_token"].is_boolean();
    if (has_bos_key || has_eos_key) {
      const auto* tpl = dynamic_cast<const template_post_processor*>(st->post_processor.get());
      const bool plain = !st->post_processor ||
                         (tpl && tpl->prefix().size() <= 1 && tpl->suffix().size() <= 1 &&
                          (tpl->prefix().empty() || tpl->prefix()[0] == st->bos.value_or(-2)) &&
                          (tpl->suffix().empty() || tpl->suffix()[0] == (eos ? *eos : -2)));
      if (plain) {
        const bool add_bos = has_bos_key ? config["add_bos_token"].get<bool>() : (tpl && !tpl->prefix().empty());
        const bool add_eos = has_eos_key ? config["add_eos_token"].get<bool>() : (tpl && !tpl->suffix().empty());
        if (add_bos && !st->bos) throw config_error("tokenizer: add_bos_token is true but bos_token is unknown");
        if (add_eos && !eos) throw config_error("tokenizer: add_eos_token is true but eos_token is unknown");
        std::vector<std::int32_t> pre, post;
        if (add_bos) pre.push_back(*st->bos);
        if (add_eos) post.push_back(*eos);
        st->post_processor = std::make_unique<template_post_processor>(std::move(pre), std::move(post));
      }
    }
    return tokenizer(std::move(st));
  }

  /// From the tokenizer.ggml.* metadata of a GGUF file.
  static tokenizer from_gguf(const io::gguf_file& g) {
    using namespace tok;
    auto st = std::make_shared<state>();
    const std::string kind = g.get_string("tokenizer.ggml.model");
    std::vector<std::string> tokens = g.get_string_array("tokenizer.ggml.tokens");
    const auto n = tokens.size();
    std::vector<std::int64_t> types(n, 1);
    if (g.contains("tokenizer.ggml.token_type")) types = g.get_int_array("tokenizer.ggml.token_type");
    if (types.size() != n)
      throw format_error("tokenizer: " + g.path() + ": tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                         " entries for " + std::to_string(n) + " tokens");
    // An id of the vocabulary, or nullopt: a key's value or the kind's default (BERT's unk 100,
    // llama's bos 1, ...) outside the vocabulary is no id.
    auto id_key = [&](const char* key, std::optional<std::int32_t> dflt) -> std::optional<std::int32_t> {
      const auto v = g.try_int(key);
      if (!v) return dflt && *dflt >= 0 && static_cast<std::size_t>(*dflt) < n ? dflt : std::nullopt;
      if (*v < 0 || *v >= static_cast<std::int64_t>(n)) return std::nullopt;  // -1 / absent in practice
      return static_cast<std::int32_t>(*v);
    };
    const std::string pre = g.try_string("tokenizer.ggml.pre").value_or("");
    std::string name = g.try_string("general.name").value_or("");
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });

    std::optional<std::int32_t> bos, eos, unk;
    bool add_bos = false, add_eos = false;
    std::vector<std::int32_t> prefix, suffix;
    if (kind == "llama") {
      bos = id_key("tokenizer.ggml.bos_token_id", 1);
      eos = id_key("tokenizer.ggml.eos_token_id", 2);
      unk = id_key("tokenizer.ggml.unknown_token_id", 0);
      add_bos = true;
      const bool space_prefix = g.try_bool("tokenizer.ggml.add_space_prefix").value_or(true);
      std::vector<float> scores = g.contains("tokenizer.ggml.scores") ? g.get_float_array("tokenizer.ggml.scores")
                                                                      : std::vector<float>(n, 0.f);
      st->model = std::make_unique<spm_bpe_model>(tokens, std::move(scores), unk.value_or(0));
      std::vector<std::unique_ptr<normalizer>> norm;
      if (space_prefix) norm.push_back(std::make_unique<prepend_normalizer>("\xE2\x96\x81"));
      norm.push_back(std::make_unique<replace_normalizer>(regex(" "), "\xE2\x96\x81"));
      st->normalizer = std::make_unique<sequence_normalizer>(std::move(norm));
      std::vector<std::unique_ptr<tok::decoder>> dec;
      dec.push_back(std::make_unique<replace_decoder>(replace_normalizer(regex("\xE2\x96\x81"), " ")));
      dec.push_back(std::make_unique<byte_fallback_decoder>());
      dec.push_back(std::make_unique<fuse_decoder>());
      if (space_prefix) dec.push_back(std::make_unique<strip_decoder>(" ", 1, 0));
      st->decoder = std::make_unique<sequence_decoder>(std::move(dec));
    } else if (kind == "gpt2") {
      bos = id_key("tokenizer.ggml.bos_token_id", std::nullopt);
      eos = id_key("tokenizer.ggml.eos_token_id", std::nullopt);
      unk = id_key("tokenizer.ggml.unknown_token_id", std::nullopt);
      const auto p = tok::detail::gguf_pre_for(pre);
      add_bos = p.add_bos;
      std::vector<std::pair<std::string, std::string>> merges;
      for (const auto& s : g.get_string_array("tokenizer.ggml.merges")) merges.push_back(bpe_model::split_merge(s));
      bpe_model::options o;
      o.ignore_merges = p.ignore_merges;
      st->model = std::make_unique<bpe_model>(tokens, merges, o, false);
      std::vector<std::unique_ptr<pre_tokenizer>> pt;
      for (const auto& r : p.regexes) pt.push_back(std::make_unique<split_pre_tokenizer>(regex(r), split_behavior::isolated, false));
      pt.push_back(std::make_unique<byte_level_pre_tokenizer>(false, false));
      st->pre_tokenizer = std::make_unique<sequence_pre_tokenizer>(std::move(pt));
      st->decoder = std::make_unique<byte_level_decoder>();
    } else if (kind == "bert") {
      bos = id_key("tokenizer.ggml.cls_token_id", id_key("tokenizer.ggml.bos_token_id", 101));
      eos = id_key("tokenizer.ggml.seperator_token_id", id_key("tokenizer.ggml.eos_token_id", 102));
      unk = id_key("tokenizer.ggml.unknown_token_id", 100);
      add_bos = add_eos = true;
      wordpiece_model::options o;
      o.unk_token = unk ? tokens.at(static_cast<std::size_t>(*unk)) : "[UNK]";
      o.word_prefix = "\xE2\x96\x81";
      o.continuing_prefix = "";
      st->model = std::make_unique<wordpiece_model>(tokens, o);
      st->normalizer = std::make_unique<bert_normalizer>(bert_normalizer::options{});
      st->pre_tokenizer = make_bert_pre_tokenizer();
      st->decoder = std::make_unique<metaspace_wordpiece_decoder>();
    } else if (kind == "t5") {
      eos = id_key("tokenizer.ggml.eos_token_id", 1);
      unk = id_key("tokenizer.ggml.unknown_token_id", 2);
      bos = id_key("tokenizer.ggml.bos_token_id", std::nullopt);
      add_eos = true;
      std::vector<double> scores(n, 0.0);
      if (g.contains("tokenizer.ggml.scores")) {
        const std::vector<float> f = g.get_float_array("tokenizer.ggml.scores");
        scores.assign(f.begin(), f.end());
      }
      const bool byte_fallback = std::find(types.begin(), types.end(), 6) != types.end();
      st->model = std::make_unique<unigram_model>(tokens, std::move(scores), unk.value_or(-1), byte_fallback);
      std::vector<std::unique_ptr<normalizer>> norm;
      if (g.contains("tokenizer.ggml.precompiled_charsmap")) {
        const auto bytes = g.get_int_array("tokenizer.ggml.precompiled_charsmap");
        std::string blob(bytes.size(), '\0');
        for (std::size_t i = 0; i < bytes.size(); ++i) blob[i] = static_cast<char>(bytes[i] & 0xFF);
        norm.push_back(std::make_unique<precompiled_normalizer>(precompiled_charsmap(std::move(blob))));
      }
      norm.push_back(std::make_unique<replace_normalizer>(regex(" {2,}"), " "));
      st->normalizer = std::make_unique<sequence_normalizer>(std::move(norm));
      st->pre_tokenizer = std::make_unique<metaspace_pre_tokenizer>("\xE2\x96\x81", prepend_scheme::always, true);
      st->decoder = std::make_unique<metaspace_decoder>("\xE2\x96\x81", true);
    } else {
      throw config_error("tokenizer: " + g.path() + ": tokenizer.ggml.model \"" + kind + "\" is not supported");
    }
    add_bos = g.try_bool("tokenizer.ggml.add_bos_token").value_or(add_bos);
    add_eos = g.try_bool("tokenizer.ggml.add_eos_token").value_or(add_eos);
    if (add_bos) {
      if (!bos) throw config_error("tokenizer: " + g.path() + ": add_bos_token without a bos token id");
      prefix.push_back(*bos);
    }
    if (add_eos) {
      if (!eos) throw config_error("tokenizer: " + g.path() + ": add_eos_token without an eos token id");
      suffix.push_back(*eos);
    }
    st->post_processor = std::make_unique<template_post_processor>(std::move(prefix), std::move(suffix));
    // control (3), user-defined (4) and unknown (2) tokens are matched in the raw text
    const bool phi3 = name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos;
    for (std::size_t i = 0; i < n; ++i) {
      const auto t = types[i];
      if (t != 2 && t != 3 && t != 4) continue;
      added_token a;
      a.id = static_cast<std::int32_t>(i);
      a.content = tokens[i];
      a.special = t != 4;
      if (phi3) a.rstrip = t == 3 || a.content == "</s>";
      if (phi3 && (a.content == "<unk>" || a.content == "<s>" || a.content == "<|endoftext|>")) a.rstrip = false;
      st->added.push_back(std::move(a));
    }
    st->finish();
    st->bos = kind == "bert" ? std::nullopt : bos;
    if (eos) st->eos.push_back(*eos);
    for (const char* k : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
      const auto v = id_key(k, std::nullopt);
      if (v && std::find(st->eos.begin(), st->eos.end(), *v) == st->eos.end()) st->eos.push_back(*v);
    }
    for (const char* text : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>"}) {
      const auto id = st->lookup(text);
      if (id >= 0 && types[static_cast<std::size_t>(id)] == 3 &&
          std::find(st->eos.begin(), st->eos.end(), id) == st->eos.end())
        st->eos.push_back(id);
    }
    return tokenizer(std::move(st));
  }

  /// A .gguf file (by extension) or a Hugging Face folder / tokenizer.json.
  static tokenizer load(const std::filesystem::path& path) {
    std::string ext = path.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext == ".gguf" && !std::filesystem::is_directory(path)) return from_gguf(io::gguf_file(path));
    return from_hf(path);
  }

  /// Token ids of `text`; with add_special_tokens the post-processor adds BOS/CLS/SEP/EOS as the
  /// checkpoint's tokenizer does. Invalid UTF-8 is replaced by U+FFFD first.
  std::vector<std::int32_t> encode(std::string_view text, bool add_special_tokens = true) const {
    const state& s = *s_;
    std::vector<tok::segment> segs;
    segs.push_back({tok::sanitize_utf8(text), -1, true});
    s.raw_added.split(segs);
    if (s.normalizer)
      for (auto& seg : segs)
        if (seg.id < 0) s.normalizer->normalize(seg.text);
    s.normalized_added.split(segs);
    std::vector<std::int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    std::vector<tok::piece> pieces;
    for (auto& seg : segs) {
      if (seg.id >= 0) {
        ids.push_back(seg.id);
        continue;
      }
      if (seg.text.empty()) continue;
      pieces.clear();
      pieces.push_back({std::move(seg.text), seg.first});
      if (s.pre_tokenizer) s.pre_tokenizer->pre_tokenize(pieces);
      for (const auto& p : pieces) s.model->encode(p.text, ids);
    }
    if (s.post_processor) s.post_processor->process(ids, add_special_tokens);
    return ids;
  }

  /// Text of `ids` (range_error for an id outside the vocabulary).
  std::string decode(std::span<const std::int32_t> ids, bool skip_special_tokens = false) const {
    const state& s = *s_;
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (const std::int32_t id : ids) {
      check_id(id);
      if (skip_special_tokens && s.special[static_cast<std::size_t>(id)]) continue;
      tokens.push_back(s.pieces[static_cast<std::size_t>(id)]);
    }
    if (!s.decoder) {
      std::string out;
      for (std::size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
      return out;
    }
    s.decoder->decode_chain(tokens);
    std::string out;
    for (const auto& t : tokens) out += t;
    return out;
  }

  /// The vocabulary string of `id` (byte-level / U+2581 spelling as stored).
  std::string id_to_piece(std::int32_t id) const {
    check_id(id);
    return s_->pieces[static_cast<std::size_t>(id)];
  }

  /// The id of a vocabulary string (model token or added token), if any.
  std::optional<std::int32_t> piece_to_id(std::string_view piece) const {
    const auto id = s_->lookup(piece);
    return id >= 0 ? std::optional<std::int32_t>(id) : std::nullopt;
  }

  bool is_special(std::int32_t id) const {
    check_id(id);
    return s_->special[static_cast<std::size_t>(id)];
  }

  index_t vocab_size() const noexcept { return static_cast<index_t>(s_->pieces.size()); }
  std::optional<std::int32_t> bos_id() const noexcept { return s_->bos; }
  /// Every id that ends generation (eos_token, generation_config.json eos_token_id, GGUF
  /// eot/eom and the usual end-of-turn control tokens).
  std::vector<std::int32_t> eos_ids() const { return s_->eos; }

 private:
  struct state {
    static constexpr index_t max_added_id_gap = 1 << 16;
    std::unique_ptr<tok::normalizer> normalizer;
    std::unique_ptr<tok::pre_tokenizer> pre_tokenizer;
    std::unique_ptr<tok::model> model;
    std::unique_ptr<tok::post_processor> post_processor;
    std::unique_ptr<tok::decoder> decoder;
    std::vector<tok::added_token> added;
    tok::detail::added_matcher raw_added, normalized_added;
    std::vector<std::string> pieces;  // id -> string (added tokens override)
    std::vector<char> special;        // id -> special added token
    tok::token_map added_ids;
    std::optional<std::int32_t> bos;
    std::vector<std::int32_t> eos;

    std::int32_t lookup(std::string_view text) const {
      const auto it = added_ids.find(text);
      if (it != added_ids.end()) return it->second;
      return model->token_to_id(text);
    }

    void finish() {
      // Ids past the model's vocabulary come after it; a few holes are allowed, but the table
      // of pieces is sized by the largest id, so an id far past the end is refused, not allocated.
      index_t size = model->size();
      const index_t most = model->size() + static_cast<index_t>(added.size()) + max_added_id_gap;
      for (const auto& a : added) {
        if (a.id < 0) throw config_error("tokenizer: added token \"" + a.content + "\" has a negative id");
        if (a.id >= most)
          throw config_error("tokenizer: added token \"" + a.content + "\" has id " + std::to_string(a.id) +
                             ", far past the vocabulary of " + std::to_string(model->size()) + " tokens and " +
                             std::to_string(added.size()) + " added tokens");
        size = std::max<index_t>(size, index_t{a.id} + 1);
      }
      pieces.assign(static_cast<std::size_t>(size), std::string());
      special.assign(static_cast<std::size_t>(size), 0);
      for (index_t i = 0; i < model->size(); ++i) pieces[static_cast<std::size_t>(i)] = model->id_to_token(static_cast<std::int32_t>(i));
      for (const auto& a : added) {
        pieces[static_cast<std::size_t>(a.id)] = a.content;
        special[static_cast<std::size_t>(a.id)] = a.special;
        added_ids.emplace(a.content, a.id);
        if (a.normalized && normalizer) {
          std::string c = a.content;
          normalizer->normalize(c);
          normalized_added.add(a, std::move(c));
        } else {
          raw_added.add(a, a.content);
        }
      }
      raw_added.finalize();
      normalized_added.finalize();
    }
  };

  explicit tokenizer(std::shared_ptr<const state> s) : s_(std::move(s)) {}

  void check_id(std::int32_t id) const {
    if (id < 0 || id >= static_cast<std::int32_t>(s_->pieces.size()))
      throw range_error("tokenizer: token id " + std::to_string(id) + " is outside the vocabulary of " +
                        std::to_string(s_->pieces.size()));
  }

  std::shared_ptr<const state> s_;
};

/// Incremental decoding for generation: push ids one by one, get the text they complete. Text
/// is held back while it ends in an incomplete UTF-8 sequence (decodes to U+FFFD), and each new
/// token is decoded after its predecessor so that SentencePiece's leading space and WordPiece's
/// word joins come out as in a full decode. The concatenation of all push() results and flush()
/// equals decode(all ids) for the decoders tessera supports.
class tokenizer::stream_decoder {
 public:
  explicit stream_decoder(const tokenizer& tk, bool skip_special_tokens = false)
      : tk_(tk), skip_special_(skip_special_tokens) {}

  std::string push(std::int32_t id) {
    tk_.check_id(id);
    ids_.push_back(id);
    const std::string s = tk_.decode(ids_, skip_special_);
    const bool incomplete = s.size() >= 3 && s.compare(s.size() - 3, 3, tok::replacement_utf8) == 0;
    if (s.size() <= prefix_.size() || (incomplete && ids_.size() < max_pending) || s.compare(0, prefix_.size(), prefix_) != 0)
      return {};
    std::string out = s.substr(prefix_.size());
    ids_.erase(ids_.begin(), ids_.end() - 1);  // keep one token of context
    prefix_ = tk_.decode(ids_, skip_special_);
    return out;
  }

  /// Whatever is still held back (incomplete UTF-8 comes out as U+FFFD); resets the stream.
  std::string flush() {
    const std::string s = tk_.decode(ids_, skip_special_);
    std::string out = s.size() > prefix_.size() && s.compare(0, prefix_.size(), prefix_) == 0 ? s.substr(prefix_.size()) : std::string();
    ids_.clear();
    prefix_.clear();
    return out;
  }

 private:
  static constexpr std::size_t max_pending = 16;
  tokenizer tk_;
  bool skip_special_;
  std::vector<std::int32_t> ids_;
  std::string prefix_;
};

}  // namespace v0
}  // namespace tessera
