// tools/cli/common.cpp: model path resolution, thread count, id lists.
#include "cli.hpp"

#include <cerrno>
#include <cstdlib>
#include <system_error>

#include <tessera/core/error.hpp>
#include <tessera/core/parallel.hpp>

#ifndef TESSERA_DEFAULT_MODEL
#define TESSERA_DEFAULT_MODEL ""
#endif

namespace tessera::cli {

namespace fs = std::filesystem;

namespace {
fs::path executable_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}
}  // namespace

fs::path resolve_model(const std::string& model) {
  std::error_code ec;
  if (!model.empty()) {
    const fs::path p(model);
    if (!fs::exists(p, ec)) throw io_error("--model '" + model + "' does not exist");
    return p;
  }
  const char* file_name = "stories260K.gguf";
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("TESSERA_DEFAULT_MODEL"); env && *env) candidates.emplace_back(env);
  if (const fs::path dir = executable_dir(); !dir.empty()) {
    candidates.push_back(dir / file_name);
    candidates.push_back(dir / "models" / file_name);
    candidates.push_back(dir / ".." / "share" / "tessera" / "models" / file_name);
  }
  if (*TESSERA_DEFAULT_MODEL) candidates.emplace_back(TESSERA_DEFAULT_MODEL);
  candidates.push_back(fs::path("examples") / "models" / file_name);
  std::string tried;
  for (const auto& c : candidates) {
    if (fs::is_regular_file(c, ec)) return c;
    tried += "\n  " + c.string();
  }
  throw io_error("no --model given and the bundled default model was not found; looked at:" + tried);
}

void apply_threads(const common_options& o) {
  if (o.threads != 0) set_num_threads(o.threads);
}

std::vector<std::int32_t> parse_ids(const std::string& text, const char* option) {
  std::vector<std::int32_t> ids;
  std::size_t i = 0;
  const auto is_sep = [](char c) { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (i < text.size()) {
    while (i < text.size() && is_sep(text[i])) ++i;
    if (i == text.size()) break;
    std::size_t j = i;
    while (j < text.size() && !is_sep(text[j])) ++j;
    const std::string item = text.substr(i, j - i);
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (end != item.c_str() + item.size() || errno == ERANGE || v < 0 || v > INT32_MAX)
      throw usage_error(std::string(option) + ": '" + item + "' is not a token id (a non-negative integer)");
    ids.push_back(static_cast<std::int32_t>(v));
    i = j;
  }
  if (ids.empty()) throw usage_error(std::string(option) + ": no token ids given (empty list)");
  return ids;
}

}  // namespace tessera::cli
