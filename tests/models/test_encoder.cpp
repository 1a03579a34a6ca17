// models/encoder.hpp + families/bert.hpp against transformers 5.17 (tests/data/models/bert, made by
// tools/fixtures): a right-padded batch of 3 rows of different lengths with attention_mask and
// token_type_ids gives last_hidden_state (real positions) and pooler_output within 1e-4; the
// packed batch equals each row run alone; bad input is a clear error.
#include <catch2/catch.hpp>

#include <filesystem>
#include <span>
#include <vector>

#include <tessera/families/registry.hpp>

#include "common/test_util.hpp"

using namespace tessera;
namespace fs = std::filesystem;

namespace {

const fs::path bert_dir = fs::path(TESSERA_TEST_DATA_DIR) / "models" / "bert";

std::vector<std::vector<std::int32_t>> rows_of(const io::weight_map& m, const std::string& name,
                                               const std::vector<index_t>& lengths) {
  const auto v = m.view<std::int64_t, 2>(name);
  std::vector<std::vector<std::int32_t>> out;
  for (index_t r = 0; r < v.extent(0); ++r) {
    std::vector<std::int32_t> row;
    for (index_t i = 0; i < lengths[static_cast<std::size_t>(r)]; ++i) row.push_back(static_cast<std::int32_t>(v(r, i)));
    out.push_back(std::move(row));
  }
  return out;
}

double rel(const float* a, const float* b, index_t n) { return test::max_rel_err(a, b, n); }

}  // namespace

TEST_CASE("bert: a padded transformers batch, packed, matches last_hidden_state and pooler_output", "[models][encoder][parity]") {
  const auto ref = io::weight_map::open(bert_dir / "reference.safetensors");
  const auto mask = ref.view<std::int64_t, 2>("attention_mask");
  std::vector<index_t> lengths;
  for (index_t r = 0; r < mask.extent(0); ++r) {
    index_t n = 0;
    for (index_t i = 0; i < mask.extent(1); ++i) n += mask(r, i) != 0;
    lengths.push_back(n);
  }
  const auto ids = rows_of(ref, "input_ids", lengths);
  const auto types = rows_of(ref, "token_type_ids", lengths);
  const auto model = load_encoder(bert_dir);
  const index_t d = model->config().d_model;
  std::vector<std::span<const std::int32_t>> id_spans(ids.begin(), ids.end()), type_spans(types.begin(), types.end());
  const auto out = model->encode(id_spans, type_spans);
  REQUIRE(out.pooler_output.has_value());
  const auto want_h = ref.f32<3>("last_hidden_state");
  const auto want_p = ref.f32<2>("pooler_output");
  for (std::size_t s = 0; s < ids.size(); ++s) {
    INFO("row " << s << " (" << lengths[s] << " tokens)");
    for (index_t i = 0; i < lengths[s]; ++i) {
      const auto want_row = tensor<float, 1>::copy_of(want_h[static_cast<index_t>(s)][i]);
      CHECK(rel(out.last_hidden_state.cview().row(out.starts[s] + i), want_row.data(), d) <= 1e-4);
    }
    const auto want_pool = tensor<float, 1>::copy_of(want_p[static_cast<index_t>(s)]);
    CHECK(rel(out.pooler_output->cview().row(static_cast<index_t>(s)), want_pool.data(), d) <= 1e-4);
    // each row alone (transformers, no padding) and tessera alone
    const auto alone_p = ref.f32<2>("alone_" + std::to_string(s) + "_pooler_output");
    const auto alone_pool = tensor<float, 1>::copy_of(alone_p[0]);
    CHECK(rel(out.pooler_output->cview().row(static_cast<index_t>(s)), alone_pool.data(), d) <= 1e-4);
    const std::vector<std::span<const std::int32_t>> one_id = {ids[s]}, one_type = {types[s]};
    const auto alone = model->encode(one_id, one_type);
    CHECK(rel(alone.last_hidden_state.cview().data(), out.last_hidden_state.cview().row(out.starts[s]), lengths[s] * d) <= 1e-5);
  }
}

TEST_CASE("bert: bad input is a clear error", "[models][encoder][errors]") {
  const auto model = load_encoder(bert_dir);
  const index_t vocab = model->config().vocab;
  const std::vector<std::int32_t> ok = {1, 2, 3}, bad = {1, static_cast<std::int32_t>(vocab)}, empty;
  const std::vector<std::int32_t> long_row(static_cast<std::size_t>(model->config().max_position) + 1, 1);
  CHECK_THROWS_AS(model->encode(std::vector<std::span<const std::int32_t>>{ok, bad}), range_error);
  CHECK_THROWS_AS(model->encode(std::vector<std::span<const std::int32_t>>{empty}), range_error);
  CHECK_THROWS_AS(model->encode(std::vector<std::span<const std::int32_t>>{long_row}), range_error);
  const std::vector<std::int32_t> short_types = {0, 1}, bad_types = {0, 1, 7};
  CHECK_THROWS_AS(model->encode(std::vector<std::span<const std::int32_t>>{ok}, std::vector<std::span<const std::int32_t>>{short_types}),
                  shape_error);
  CHECK_THROWS_AS(model->encode(std::vector<std::span<const std::int32_t>>{ok}, std::vector<std::span<const std::int32_t>>{bad_types}),
                  range_error);
  CHECK_THROWS_AS(load_language_model(bert_dir), config_error);  // an encoder, not a causal LM
}
