// An encoder-decoder on the causal_lm runtime (families/bart.hpp) against transformers 5.17
// (tests/data/models/bart, made by tools/fixtures): encoder_last_hidden_state and the decoder's
// logits within 1e-4, greedy generation from decoder_start_token_id identical; cross-attention
// K/V projected once per source; batched sessions with different sources equal each alone.
#include <catch2/catch.hpp>

#include <filesystem>
#include <span>
#include <vector>

#include <tessera/families/registry.hpp>

#include "common/test_util.hpp"

using namespace tessera;
using tessera::test::argmax;
namespace fs = std::filesystem;

namespace {

const fs::path bart_dir = fs::path(TESSERA_TEST_DATA_DIR) / "models" / "bart";

std::vector<std::int32_t> ids_of(const io::weight_map& m, const std::string& name) {
  const auto v = m.view<std::int64_t, 2>(name);
  std::vector<std::int32_t> out;
  for (index_t i = 0; i < v.extent(1); ++i) out.push_back(static_cast<std::int32_t>(v(0, i)));
  return out;
}

double rel(const float* a, const float* b, index_t n) { return test::max_rel_err(a, b, n); }

}  // namespace

TEST_CASE("bart: encoder output, decoder logits and greedy generation match transformers", "[models][seq2seq][parity]") {
  const auto ref = io::weight_map::open(bart_dir / "reference.safetensors");
  const auto src = ids_of(ref, "input_ids"), tgt = ids_of(ref, "decoder_input_ids"), greedy = ids_of(ref, "greedy_ids");
  const auto model = load_language_model(bart_dir);
  REQUIRE(model->is_encoder_decoder());
  const index_t vocab = model->config().vocab, d = model->config().d_model;
  REQUIRE(model->config().decoder_start_token_id.has_value());

  auto s = model->new_session();
  s->encode(src);
  const auto enc = tensor<float, 2>::copy_of(ref.f32<3>("encoder_last_hidden_state")[0]);
  REQUIRE(s->encoder_hidden_state().extents() == enc.extents());
  CHECK(rel(s->encoder_hidden_state().data(), enc.data(), enc.size()) <= 1e-4);
  tensor<float, 2> logits({static_cast<index_t>(tgt.size()), vocab});
  s->prefill_all(tgt, logits.view());
  const auto want = tensor<float, 2>::copy_of(ref.f32<3>("logits")[0]);
  CHECK(rel(logits.cview().data(), want.data(), want.size()) <= 1e-4);

  // greedy from the start token, one step per token, as generate() does
  const auto want_steps = tensor<float, 2>::copy_of(ref.f32<3>("greedy_logits")[0]);
  auto g = model->new_session();
  g->encode(src);
  g->prefill(std::vector<std::int32_t>{*model->config().decoder_start_token_id});
  std::vector<std::int32_t> got;
  for (std::size_t i = 0; i < greedy.size(); ++i) {
    CHECK(rel(g->logits().data(), want_steps.cview()[static_cast<index_t>(i)].data(), vocab) <= 1e-4);
    got.push_back(argmax(g->logits()));
    g->step(got.back());
  }
  CHECK(got == greedy);
  (void)d;
}

TEST_CASE("bart: sessions with different sources batch together, snapshot, truncate, errors", "[models][seq2seq]") {
  const auto ref = io::weight_map::open(bart_dir / "reference.safetensors");
  const auto src = ids_of(ref, "input_ids");
  const auto model = load_language_model(bart_dir);
  const std::int32_t start = *model->config().decoder_start_token_id;
  const std::vector<std::int32_t> src2(src.begin(), src.begin() + static_cast<std::ptrdiff_t>(src.size() / 2));
  // alone
  std::vector<std::vector<float>> want[2];
  std::vector<std::int32_t> fed[2];
  for (int k = 0; k < 2; ++k) {
    auto s = model->new_session();
    s->encode(k == 0 ? src : src2);
    s->prefill(std::vector<std::int32_t>{start});
    for (int t = 0; t < 6; ++t) {
      want[k].emplace_back(s->logits().data(), s->logits().data() + s->logits().extent(0));
      fed[k].push_back(argmax(s->logits()));
      s->step(fed[k].back());
    }
  }
  // together
  auto a = model->new_session(), b = model->new_session();
  a->encode(src);
  b->encode(src2);
  std::vector<lm_session*> both = {a.get(), b.get()};
  const std::vector<std::int32_t> one = {start};
  model->prefill_batch(both, std::vector<std::span<const std::int32_t>>{one, one});
  for (int t = 0; t < 6; ++t) {
    CHECK(rel(a->logits().data(), want[0][static_cast<std::size_t>(t)].data(), a->logits().extent(0)) <= 1e-5);
    CHECK(rel(b->logits().data(), want[1][static_cast<std::size_t>(t)].data(), b->logits().extent(0)) <= 1e-5);
    model->step_batch(both, std::vector<std::int32_t>{fed[0][static_cast<std::size_t>(t)], fed[1][static_cast<std::size_t>(t)]});
  }
  // snapshot / restore into a fresh session (the source comes along); truncate keeps the source
  auto snap = a->snapshot();
  auto c = model->new_session();
  c->restore(snap);
  c->step(5);
  a->step(5);
  CHECK(std::vector<float>(c->logits().data(), c->logits().data() + c->logits().extent(0)) ==
        std::vector<float>(a->logits().data(), a->logits().data() + a->logits().extent(0)));
  a->truncate(1);
  a->step(fed[0][0]);
  CHECK(rel(a->logits().data(), want[0][1].data(), a->logits().extent(0)) <= 1e-5);
  // a decoder context shorter than the source: the cross-attention memory is not bounded by it
  auto short_ctx = model->new_session({.max_len = 3});
  short_ctx->encode(src);
  short_ctx->prefill(std::vector<std::int32_t>{start, fed[0][0]});
  CHECK(rel(short_ctx->logits().data(), want[0][1].data(), short_ctx->logits().extent(0)) <= 1e-5);
  // errors
  auto fresh = model->new_session();
  CHECK_THROWS_AS(fresh->prefill(one), range_error);  // no source yet
  CHECK_THROWS_AS(fresh->encode(std::vector<std::int32_t>{static_cast<std::int32_t>(model->config().vocab)}), range_error);
  CHECK_THROWS_AS(load_encoder(bart_dir), config_error);
  const auto llama = load_language_model(fs::path(TESSERA_TEST_DATA_DIR) / "models" / "llama");
  CHECK_FALSE(llama->is_encoder_decoder());
  CHECK_THROWS_AS(llama->new_session()->encode(one), config_error);
}
