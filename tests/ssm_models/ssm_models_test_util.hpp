// Helpers of the ssm_models tests: reference files, relative error (argmax: common/test_util.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <tessera/core/tensor.hpp>
#include <tessera/io/safetensors.hpp>
#include <tessera/models/language_model.hpp>

#include "common/test_util.hpp"

namespace tessera::test {

inline std::filesystem::path model_dir(const std::string& name) {
  return std::filesystem::path(TESSERA_TEST_DATA_DIR) / "models" / name;
}

struct reference {
  std::vector<std::int32_t> input_ids, greedy_ids;
  tensor<float, 2> logits, greedy_logits;  // (l, vocab), (l + 12, vocab)
};

inline reference load_reference(const std::filesystem::path& file) {
  io::safetensors_file f(file);
  auto ids = [&](const char* name) {
    const auto* t = f.find(name);
    REQUIRE(t);
    std::vector<std::int32_t> v(static_cast<std::size_t>(t->numel));
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::int64_t x;
      std::memcpy(&x, f.tensor_data(*t) + 8 * i, 8);
      v[i] = static_cast<std::int32_t>(x);
    }
    return v;
  };
  auto mat = [&](const char* name) {
    const auto* t = f.find(name);
    REQUIRE(t);
    REQUIRE(t->extents.size() == 3);
    tensor<float, 2> m({t->extents[1], t->extents[2]});
    std::memcpy(m.view().data(), f.tensor_data(*t), static_cast<std::size_t>(t->numel) * 4);
    return m;
  };
  return {ids("input_ids"), ids("greedy_ids"), mat("logits"), mat("greedy_logits")};
}

/// max |a - b| / max |b|.
inline double rel_err(const float* a, const float* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den > 0 ? num / den : num;
}

inline std::vector<float> copy_logits(const lm_session& s) {
  auto v = s.logits();
  return std::vector<float>(v.data(), v.data() + v.extent(0));
}

/// Greedy decode as transformers' generate does it (prefill, then one step per token): every
/// step's logits within 1e-4 of the reference's full-forward rows, and the ids identical.
/// Uses Catch2's macros: include this header from test files only.
inline void check_greedy(const language_model& model, const reference& ref) {
  const index_t l = static_cast<index_t>(ref.input_ids.size()), V = model.config().vocab;
  auto s = model.new_session();
  s->prefill(ref.input_ids);
  for (std::size_t i = 0; i < ref.greedy_ids.size(); ++i) {
    const auto row = ref.greedy_logits.cview()[l - 1 + static_cast<index_t>(i)];
    const double eg = rel_err(s->logits().data(), row.data(), static_cast<std::size_t>(V));
    INFO("greedy step " << i << " rel err " << eg);
    CHECK(eg < 1e-4);
    const std::int32_t id = argmax(s->logits());
    REQUIRE(id == ref.greedy_ids[i]);
    s->step(id);
  }
}

}  // namespace tessera::test
