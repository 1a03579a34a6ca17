// Decoder families against transformers 5.17 (tests/data/models, made by tools/fixtures):
// full-sequence logits within 1e-4 relative, greedy continuations identical; plus the session
// contract (prefill/step equivalence, snapshot/restore, no allocation while decoding, errors).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <tessera/families/registry.hpp>
#include <tessera/io/weights.hpp>

#include <nlohmann/json.hpp>

#include "common/alloc_counter.hpp"
#include "common/test_util.hpp"
#include "io/io_test_util.hpp"

using namespace tessera;
using tessera::test::argmax;
namespace fs = std::filesystem;

namespace {

const fs::path models_dir = fs::path(TESSERA_TEST_DATA_DIR) / "models";

struct reference {
  std::vector<std::int32_t> input_ids, greedy_ids;
  tensor<float, 2> logits, greedy_logits;  // (l, vocab), (l + n_new, vocab)
};

std::vector<std::int32_t> ids_of(const io::weight_map& m, const std::string& name) {
  const auto v = m.view<std::int64_t, 2>(name);
  std::vector<std::int32_t> out;
  for (index_t i = 0; i < v.extent(1); ++i) out.push_back(static_cast<std::int32_t>(v(0, i)));
  return out;
}

reference load_reference(const std::string& model_case) {
  const auto m = io::weight_map::open(models_dir / model_case / "reference.safetensors");
  reference r;
  r.input_ids = ids_of(m, "input_ids");
  r.greedy_ids = ids_of(m, "greedy_ids");
  r.logits = tensor<float, 2>::copy_of(m.f32<3>("logits")[0]);
  r.greedy_logits = tensor<float, 2>::copy_of(m.f32<3>("greedy_logits")[0]);
  return r;
}

double rel_err(tensor_view<const float, 2> a, tensor_view<const float, 2> b) {
  REQUIRE(a.extents() == b.extents());
  return test::max_rel_err(a.data(), b.data(), a.size());
}

void check_parity(const std::string& model_case, const fs::path& path) {
  INFO("case " << model_case << " from " << path);
  const auto ref = load_reference(model_case);
  const auto model = load_language_model(path);
  const index_t vocab = model->config().vocab;
  const index_t l = static_cast<index_t>(ref.input_ids.size());

  // full-sequence forward: logits of every prompt token
  auto s = model->new_session();
  tensor<float, 2> logits({l, vocab});
  s->prefill_all(ref.input_ids, logits.view());
  CHECK(rel_err(logits.cview(), ref.logits.cview()) <= 1e-4);

  // greedy continuation: prefill then one step per token, as generate() does
  std::vector<std::int32_t> greedy;
  auto g = model->new_session();
  g->prefill(ref.input_ids);
  for (std::size_t i = 0; i < ref.greedy_ids.size(); ++i) {
    greedy.push_back(argmax(g->logits()));
    g->step(greedy.back());
  }
  CHECK(greedy == ref.greedy_ids);

  // full forward over prompt + continuation (positions past the prompt, windows, ...)
  std::vector<std::int32_t> all = ref.input_ids;
  all.insert(all.end(), ref.greedy_ids.begin(), ref.greedy_ids.end());
  tensor<float, 2> all_logits({static_cast<index_t>(all.size()), vocab});
  model->new_session()->prefill_all(all, all_logits.view());
  CHECK(rel_err(all_logits.cview(), ref.greedy_logits.cview()) <= 1e-4);
}

}  // namespace

TEST_CASE("decoder families match transformers logits and greedy ids", "[models][parity]") {
  for (const char* c : {"llama", "llama_rope_llama3", "llama_rope_yarn", "llama_rope_linear", "mistral", "qwen2",
                        "qwen2_sliding", "gpt2", "llama_bf16"})
    check_parity(c, models_dir / c);
  check_parity("llama_sharded", models_dir / "llama_sharded");
}

TEST_CASE("Qwen3 (q/k RMSNorm per head before RoPE, explicit head_dim) matches transformers", "[models][parity]") {
  check_parity("qwen3", models_dir / "qwen3");
  const auto c = load_config(models_dir / "qwen3");
  CHECK(c.head_dim != c.d_model / c.n_heads);  // the fixture's head_dim is explicit
}

TEST_CASE("Gemma 2 (√d embedding, (1+w) RMSNorm, sandwich norms, both softcaps, query_pre_attn_scalar, sliding/global layers, GeGLU tanh) matches transformers",
          "[models][parity]") {
  check_parity("gemma2", models_dir / "gemma2");
  const auto c = load_config(models_dir / "gemma2");
  // the fixture makes every option bite: a window shorter than the prompt on the sliding layers,
  // query_pre_attn_scalar != head_dim, both softcaps small enough that tanh saturates (meta.json probe)
  CHECK(c.sliding_window < 14);
  CHECK(c.attention_multiplier != static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim))));
  CHECK(c.attn_logit_softcap > 0.f);
  CHECK(c.final_logit_softcap > 0.f);
  CHECK(c.layer_types == std::vector<std::string>{"sliding_attention", "full_attention", "sliding_attention"});
}

TEST_CASE("dynamic NTK rope: each full forward uses the frequencies of its own length", "[models][parity]") {
  // transformers recomputes the dynamic frequencies from the longest sequence seen; a fresh
  // session over the whole sequence reproduces its full forwards, and greedy_ids come from a loop
  // of full forwards (its cached generate() rotates old keys with stale frequencies).
  const auto ref = load_reference("llama_rope_dynamic");
  const auto model = load_language_model(models_dir / "llama_rope_dynamic");
  const index_t vocab = model->config().vocab;
  tensor<float, 2> logits({static_cast<index_t>(ref.input_ids.size()), vocab});
  model->new_session()->prefill_all(ref.input_ids, logits.view());
  CHECK(rel_err(logits.cview(), ref.logits.cview()) <= 1e-4);
  std::vector<std::int32_t> seq = ref.input_ids;
  for (std::size_t i = 0; i < ref.greedy_ids.size(); ++i) {
    auto s = model->new_session();
    s->prefill(seq);
    seq.push_back(argmax(s->logits()));
  }
  CHECK(std::vector<std::int32_t>(seq.begin() + static_cast<std::ptrdiff_t>(ref.input_ids.size()), seq.end()) == ref.greedy_ids);
}

namespace {
/// What convert_hf_to_gguf.py does for one architecture: llama.cpp's names, q/k rows permuted into
/// interleaved pairs (llama), keys beyond the common ones, values changed (Gemma's norms + 1).
struct gguf_conversion {
  std::string arch;
  bool permute_qk = false;
  std::vector<std::string> layer_tensors;
  std::function<void(test::gguf_builder&, const model_config&)> extra_keys = {};
  std::function<void(const std::string& gguf_name, std::vector<float>&)> edit = {};
};

/// Writes the HF folder `folder` (a fixture, or a copy of one) as a GGUF the way the converter
/// does (dims reversed) and checks its logits on `model_case`'s prompt against the folder's, and
/// against transformers' reference when the folder is the fixture itself.
void check_gguf_conversion(const std::string& model_case, const fs::path& folder, const gguf_conversion& conv) {
  INFO(model_case << " as GGUF " << conv.arch);
  const auto hf = io::weight_map::open(folder);
  const auto cfg = load_config(folder);
  test::gguf_builder g;
  const std::string p = conv.arch + ".";
  g.kv_str("general.architecture", conv.arch);
  g.kv_u32(p + "context_length", static_cast<std::uint32_t>(cfg.max_position));
  g.kv_u32(p + "embedding_length", static_cast<std::uint32_t>(cfg.d_model));
  g.kv_u32(p + "block_count", static_cast<std::uint32_t>(cfg.n_layers));
  g.kv_u32(p + "feed_forward_length", static_cast<std::uint32_t>(cfg.d_ff));
  g.kv_u32(p + "attention.head_count", static_cast<std::uint32_t>(cfg.n_heads));
  g.kv_u32(p + "attention.head_count_kv", static_cast<std::uint32_t>(cfg.n_kv_heads));
  g.kv_u32(p + "attention.key_length", static_cast<std::uint32_t>(cfg.head_dim));
  g.kv_u32(p + "vocab_size", static_cast<std::uint32_t>(cfg.vocab));
  g.kv_f32(p + "rope.freq_base", cfg.rope.theta);
  g.kv_f32(p + "attention.layer_norm_rms_epsilon", cfg.norm_eps);
  if (conv.extra_keys) conv.extra_keys(g, cfg);
  std::vector<std::string> candidates = {"token_embd.weight", "output_norm.weight", "output.weight"};
  for (index_t l = 0; l < cfg.n_layers; ++l)
    for (const auto& t : conv.layer_tensors) candidates.push_back("blk." + std::to_string(l) + "." + t + ".weight");
  for (const auto& name : hf.names()) {
    const std::string gname = test::gguf_name_for([&](std::string_view n) { return gguf_hf_name(conv.arch, n); }, name, candidates);
    REQUIRE(!gname.empty());
    const auto& info = hf.info(name);
    std::vector<float> data(static_cast<std::size_t>(info.numel));
    if (info.extents.size() == 2) std::memcpy(data.data(), hf.f32<2>(name).data(), data.size() * 4);
    else std::memcpy(data.data(), hf.f32<1>(name).data(), data.size() * 4);
    const bool q = gname.ends_with("attn_q.weight"), k = gname.ends_with("attn_k.weight");
    if (conv.permute_qk && (q || k)) data = test::llama_permute(data, info.extents[0], info.extents[1], q ? cfg.n_heads : cfg.n_kv_heads);
    if (conv.edit) conv.edit(gname, data);
    g.tensor_f32(gname, std::vector<std::int64_t>(info.extents.rbegin(), info.extents.rend()), data);
  }
  test::temp_dir dir("models_gguf_" + model_case);
  test::write_file(dir / "model.gguf", g.bytes());
  const auto ref = load_reference(model_case);
  const index_t l = static_cast<index_t>(ref.input_ids.size());
  tensor<float, 2> a({l, cfg.vocab}), b({l, cfg.vocab});
  load_language_model(dir / "model.gguf")->new_session()->prefill_all(ref.input_ids, a.view());
  load_language_model(folder)->new_session()->prefill_all(ref.input_ids, b.view());
  CHECK(rel_err(a.cview(), b.cview()) <= 1e-5);
  if (folder == models_dir / model_case) CHECK(rel_err(a.cview(), ref.logits.cview()) <= 1e-4);
}
}  // namespace

TEST_CASE("a GGUF conversion of the llama / qwen3 fixtures gives the same logits as the HF folder", "[models][gguf]") {
  const std::vector<std::string> llama_tensors = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                                  "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};
  check_gguf_conversion("llama", models_dir / "llama", {.arch = "llama", .permute_qk = true, .layer_tensors = llama_tensors});
  auto qwen3_tensors = llama_tensors;
  qwen3_tensors.insert(qwen3_tensors.end(), {"attn_q_norm", "attn_k_norm"});
  check_gguf_conversion("qwen3", models_dir / "qwen3", {.arch = "qwen3", .layer_tensors = qwen3_tensors});
}

TEST_CASE("a GGUF conversion of the Gemma 2 fixture gives the folder's logits (norms stored + 1, softcaps, window)",
          "[models][gguf]") {
  // llama.cpp's gemma2 files carry no query_pre_attn_scalar: it scales by head_dim (by d_model /
  // n_heads for the 46-layer 27B), as the released 2B / 9B configs do. The fixture's 24 != head_dim
  // 16 is not expressible there, so the folder compared is a copy with query_pre_attn_scalar = 16.
  test::temp_dir hf("models_gemma2_qpas");
  for (const char* f : {"model.safetensors", "generation_config.json"}) fs::copy_file(models_dir / "gemma2" / f, hf.path / f);
  auto cfg = nlohmann::json::parse(std::ifstream(models_dir / "gemma2" / "config.json"));
  cfg["query_pre_attn_scalar"] = cfg["head_dim"];
  std::ofstream(hf.path / "config.json") << cfg.dump(2);
  const gguf_conversion conv{
      .arch = "gemma2",
      .layer_tensors = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "post_attention_norm", "ffn_norm",
                        "post_ffw_norm", "ffn_gate", "ffn_up", "ffn_down"},
      .extra_keys =
          [](test::gguf_builder& g, const model_config& c) {
            g.kv_u32("gemma2.attention.value_length", static_cast<std::uint32_t>(c.head_dim));
            g.kv_f32("gemma2.attn_logit_softcapping", c.attn_logit_softcap);
            g.kv_f32("gemma2.final_logit_softcapping", c.final_logit_softcap);
            g.kv_u32("gemma2.attention.sliding_window", static_cast<std::uint32_t>(c.sliding_window.value()));
          },
      .edit =
          [](const std::string& gname, std::vector<float>& data) {
            if (gname.ends_with("norm.weight"))
              for (auto& x : data) x += 1.f;  // convert_hf_to_gguf.py's Gemma2Model: data_torch + 1
          }};
  check_gguf_conversion("gemma2", hf.path, conv);
}

TEST_CASE("the bundled stories260K gives llama2.c's greedy ids", "[models][gguf]") {
  const auto model = load_language_model(fs::path(TESSERA_SOURCE_DIR) / "examples/models/stories260K.gguf");
  auto s = model->new_session();
  s->prefill(std::vector<std::int32_t>{1});
  const float first[5] = {-6.22291f, 8.40434f, -6.22374f, -6.22254f, -6.22195f};
  for (int i = 0; i < 5; ++i) CHECK(s->logits()(i) == Approx(first[i]).margin(1e-4));
  const std::vector<std::int32_t> want = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
                                          426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282,
                                          295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352};
  std::vector<std::int32_t> got;
  for (std::size_t i = 0; i < want.size(); ++i) {
    got.push_back(argmax(s->logits()));
    s->step(got.back());
  }
  CHECK(got == want);
}

TEST_CASE("sessions: prefill(n) + steps == prefill(n + k), snapshot/restore, chunked prefill", "[models][session]") {
  for (const char* c : {"llama", "mistral", "gpt2", "qwen2_sliding"}) {
    INFO(c);
    const auto model = load_language_model(models_dir / c);
    const auto ref = load_reference(c);
    std::vector<std::int32_t> all = ref.input_ids;
    all.insert(all.end(), ref.greedy_ids.begin(), ref.greedy_ids.end());
    const index_t n = static_cast<index_t>(all.size()), vocab = model->config().vocab;
    tensor<float, 2> full({n, vocab});
    model->new_session()->prefill_all(all, full.view());

    // 5 tokens of prefill, then one step per token
    auto s = model->new_session();
    s->prefill(std::span(all).first(5));
    CHECK(test::max_rel_err(s->logits().data(), full.cview()[4].data(), vocab) <= 1e-5);
    const auto snap = s->snapshot();
    for (index_t i = 5; i < n; ++i) {
      s->step(all[std::size_t(i)]);
      CHECK(test::max_rel_err(s->logits().data(), full.cview()[i].data(), vocab) <= 1e-5);
    }
    CHECK(s->position() == n);
    // restore the state after 5 tokens and replay: identical logits
    s->restore(snap);
    CHECK(s->position() == 5);
    for (index_t i = 5; i < n; ++i) s->step(all[std::size_t(i)]);
    CHECK(test::max_rel_err(s->logits().data(), full.cview()[n - 1].data(), vocab) <= 1e-5);

    // prefill in chunks of 3 tokens (a prompt longer than the session's prefill chunk)
    auto c3 = model->new_session({.max_len = 0, .max_prefill = 3});
    tensor<float, 2> chunked({n, vocab});
    c3->prefill_all(all, chunked.view());
    CHECK(rel_err(chunked.cview(), full.cview()) <= 1e-5);
  }
}

TEST_CASE("decoding a token allocates nothing", "[models][session]") {
  for (const char* c : {"llama", "mistral", "gpt2", "llama_bf16"}) {
    INFO(c);
    const auto model = load_language_model(models_dir / c);
    auto s = model->new_session({.max_len = 64});
    s->prefill(std::vector<std::int32_t>{1, 5, 7, 9});
    s->step(3);  // warm-up (first-touch of lazily made buffers, if any)
    test::start_counting_allocations();
    for (int i = 0; i < 10; ++i) s->step(argmax(s->logits()));
    CHECK(test::stop_counting_allocations() == 0);
  }
}

TEST_CASE("several sessions decode one model from different threads", "[models][session]") {
  const auto model = load_language_model(models_dir / "llama");
  const auto ref = load_reference("llama");
  std::vector<std::vector<std::int32_t>> out(3);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      auto s = model->new_session();
      s->prefill(ref.input_ids);
      for (std::size_t i = 0; i < ref.greedy_ids.size(); ++i) {
        out[std::size_t(t)].push_back(argmax(s->logits()));
        s->step(out[std::size_t(t)].back());
      }
    });
  for (auto& th : threads) th.join();
  for (const auto& o : out) CHECK(o == ref.greedy_ids);
}

TEST_CASE("bad input: clear errors, never a crash", "[models][errors]") {
  const auto model = load_language_model(models_dir / "llama");
  auto s = model->new_session({.max_len = 8});
  CHECK_THROWS_AS(s->prefill(std::vector<std::int32_t>{}), range_error);
  CHECK_THROWS_WITH(s->prefill(std::vector<std::int32_t>{1, 160}), Catch::Contains("160") && Catch::Contains("vocabulary"));
  CHECK_THROWS_AS(s->prefill(std::vector<std::int32_t>{-1}), range_error);
  CHECK_THROWS_WITH(s->prefill(std::vector<std::int32_t>(9, 1)), Catch::Contains("context overflow"));
  s->prefill(std::vector<std::int32_t>(8, 1));
  CHECK_THROWS_AS(s->step(1), range_error);
  CHECK(s->position() == 8);
  const auto other = load_language_model(models_dir / "mistral");
  CHECK_THROWS_AS(s->restore(other->new_session()->snapshot()), range_error);
  CHECK_THROWS_AS(load_language_model(models_dir / "does_not_exist"), error);
  test::temp_dir dir("models_noweights");
  fs::copy_file(models_dir / "llama" / "config.json", dir / "config.json");
  CHECK_THROWS_AS(load_language_model(dir.path), error);
}
