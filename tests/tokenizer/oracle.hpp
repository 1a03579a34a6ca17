// Reads llama.cpp-style tokenizer oracles: X.inp (strings separated by "\n__ggml_vocab_test__\n")
// and X.out (expected ids per line).
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace tessera::test {

struct oracle_case {
  std::string text;
  std::vector<std::int32_t> ids;
};

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::vector<oracle_case> read_oracle(const std::string& base) {
  const std::string inp = slurp(base + ".inp"), out = slurp(base + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<oracle_case> cases;
  for (std::size_t pos = 0; pos < inp.size();) {
    const std::size_t e = inp.find(sep, pos);
    if (e == std::string::npos) break;
    cases.push_back({inp.substr(pos, e - pos), {}});
    pos = e + sep.size();
  }
  std::istringstream lines(out);
  std::string line;
  for (auto& c : cases) {
    std::getline(lines, line);
    std::istringstream ids(line);
    std::int32_t id;
    while (ids >> id) c.ids.push_back(id);
  }
  return cases;
}

}  // namespace tessera::test
