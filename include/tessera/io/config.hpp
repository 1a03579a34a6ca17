// tessera/io/config.hpp: typed access to config.json objects (json_fields) and JSON files.
//
// What the fields mean is the families' business (families/<name>.hpp read them through
// families/family.hpp); this header only reads: JSON null counts as absent, a field of the wrong
// type or a missing required one is a config_error naming the field and the file, and
// transformers' {"__float__": "Infinity"} encoding of non-finite floats is understood.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <tessera/config.hpp>
#include <tessera/core/error.hpp>
#include <tessera/io/mmap.hpp>

namespace tessera {
inline namespace v0 {
namespace io {

namespace detail {
inline std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

inline const char* json_type(const nlohmann::json& j) { return j.type_name(); }
}  // namespace detail

/// Typed access to one JSON object; errors name the file and the field.
class json_fields {
 public:
  json_fields(const nlohmann::json& j, std::string file) : j_(j), file_(std::move(file)) {}

  /// The value, or nullptr when absent or null.
  const nlohmann::json* find(const std::string& key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  bool has(const std::string& key) const { return find(key) != nullptr; }

  [[noreturn]] void wrong(const std::string& key, const nlohmann::json& v, const char* want) const {
    throw config_error(file_ + ": field '" + key + "' has type " + detail::json_type(v) + ", expected " + want);
  }
  [[noreturn]] void missing(const std::string& key) const {
    throw config_error(file_ + ": required field '" + key + "' is missing");
  }

  static std::optional<double> as_number(const nlohmann::json& v) {
    if (v.is_number()) return v.get<double>();
    // transformers writes non-finite floats as {"__float__": "Infinity"}
    if (v.is_object() && v.contains("__float__") && v["__float__"].is_string()) {
      const std::string s = v["__float__"].get<std::string>();
      if (s == "Infinity" || s == "inf") return std::numeric_limits<double>::infinity();
      if (s == "-Infinity" || s == "-inf") return -std::numeric_limits<double>::infinity();
      if (s == "NaN" || s == "nan") return std::numeric_limits<double>::quiet_NaN();
    }
    return std::nullopt;
  }

  /// Integers of a config are sizes and token ids: anything beyond ±2^31 is refused here, so that
  /// products of two fields (hidden_size · expand, ...) cannot overflow.
  std::optional<std::int64_t> opt_int(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    std::int64_t x = 0;
    if (v->is_number_unsigned() && v->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      out_of_range(key, *v);
    if (v->is_number_integer()) x = v->get<std::int64_t>();
    else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() && std::abs(v->get<double>()) < 0x1p62)
      x = static_cast<std::int64_t>(v->get<double>());
    else if (v->is_number_float()) wrong(key, *v, "an integer");
    else wrong(key, *v, "an integer");
    if (x > int_limit || x < -int_limit) out_of_range(key, *v);
    return x;
  }
  static constexpr std::int64_t int_limit = std::int64_t{1} << 31;
  [[noreturn]] void out_of_range(const std::string& key, const nlohmann::json& v) const {
    throw config_error(file_ + ": field '" + key + "' = " + v.dump() + " is out of range (a size or id of at most 2^31)");
  }
  std::optional<double> opt_float(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (auto d = as_number(*v)) return d;
    wrong(key, *v, "a number");
  }
  std::optional<bool> opt_bool(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) wrong(key, *v, "a boolean");
    return v->get<bool>();
  }
  std::optional<std::string> opt_string(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) wrong(key, *v, "a string");
    return v->get<std::string>();
  }

  index_t get_int(const std::string& key, index_t def) const { return static_cast<index_t>(opt_int(key).value_or(def)); }
  index_t req_int(const std::string& key) const {
    if (auto v = opt_int(key)) return static_cast<index_t>(*v);
    missing(key);
  }
  float get_float(const std::string& key, double def) const { return static_cast<float>(opt_float(key).value_or(def)); }
  bool get_bool(const std::string& key, bool def) const { return opt_bool(key).value_or(def); }
  std::string get_string(const std::string& key, const std::string& def) const { return opt_string(key).value_or(def); }

  /// An int or a list of ints (eos_token_id).
  std::vector<std::int32_t> int_list(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return {};
    std::vector<std::int32_t> out;
    auto one = [&](const nlohmann::json& x) {
      if (!x.is_number_integer()) wrong(key, *v, "an integer or a list of integers");
      if (x.is_number_unsigned() ? x.get<std::uint64_t>() > 0x7fffffffu
                                 : (x.get<std::int64_t>() > 0x7fffffff || x.get<std::int64_t>() < -0x7fffffffll - 1))
        out_of_range(key, x);
      out.push_back(static_cast<std::int32_t>(x.get<std::int64_t>()));
    };
    if (v->is_array()) {
      for (const auto& x : *v) one(x);
    } else if (v->is_number_integer()) {
      one(*v);
    } else {
      wrong(key, *v, "an integer or a list of integers");
    }
    return out;
  }

  std::vector<std::string> string_list(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return {};
    if (!v->is_array()) wrong(key, *v, "a list of strings");
    std::vector<std::string> out;
    for (const auto& x : *v) {
      if (!x.is_string()) wrong(key, *v, "a list of strings");
      out.push_back(x.get<std::string>());
    }
    return out;
  }

  std::vector<float> float_list(const std::string& key) const {
    const auto* v = find(key);
    if (!v) return {};
    if (!v->is_array()) wrong(key, *v, "a list of numbers");
    std::vector<float> out;
    for (const auto& x : *v) {
      auto d = as_number(x);
      if (!d) wrong(key, *v, "a list of numbers");
      out.push_back(static_cast<float>(*d));
    }
    return out;
  }

  const nlohmann::json& json() const noexcept { return j_; }
  const std::string& file() const noexcept { return file_; }

 private:
  const nlohmann::json& j_;
  std::string file_;
};

/// A config.json larger than this is not a config (real ones are a few KB).
inline constexpr std::size_t max_config_bytes = std::size_t{64} << 20;

inline nlohmann::json read_json_file(const std::filesystem::path& p) {
  const std::string text = read_text_file(p, max_config_bytes);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw config_error(p.string() + ": not valid JSON: " + e.what());
  }
}

}  // namespace io
}  // namespace v0
}  // namespace tessera
