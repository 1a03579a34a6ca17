// tools/cli/model_commands.cpp: `tessera generate`, `tessera run`, `tessera bench` (they run a
// model through the language_model / lm_session interface).
#include "cli.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <random>
#include <string_view>
#include <vector>

#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/families/registry.hpp>
#include <tessera/io/safetensors.hpp>
#include <tessera/models/generate.hpp>
#include <tessera/models/language_model.hpp>
#include <tessera/models/sampling.hpp>

namespace tessera::cli {

namespace {

struct loaded_model {
  std::unique_ptr<language_model> model;
  double load_seconds = 0;
};

loaded_model load_model(const std::filesystem::path& path, const common_options& o) {
  const auto t0 = std::chrono::steady_clock::now();
  loaded_model m;
  m.model = load_language_model(path, {.quantize = o.quantize});
  m.load_seconds = seconds_since(t0);
  if (o.verbose) {
    const auto& c = m.model->config();
    std::fprintf(stderr, "tessera: loaded %s (%s, %lld layers, vocab %lld) in %.1f ms\n", path.string().c_str(),
                 c.family.c_str(), static_cast<long long>(c.n_layers), static_cast<long long>(c.vocab),
                 m.load_seconds * 1e3);
  }
  return m;
}

/// a + b for counts >= 0, saturating at the largest index_t instead of overflowing.
index_t saturating_add(index_t a, index_t b) {
  return b > std::numeric_limits<index_t>::max() - a ? std::numeric_limits<index_t>::max() : a + b;
}

/// The context of a generate session when the model has no max_position (Mamba): the prompt plus
/// -n, at most this many tokens (a trillion: more than a session will ever decode).
constexpr index_t unbounded_context = index_t{1} << 40;

/// bench materializes -p + -n random ids: at most this many when the model has no max_position.
constexpr index_t unbounded_bench_context = index_t{1} << 24;

}  // namespace

// ---- generate -----------------------------------------------------------------------------

int run_generate(const generate_options& o) {
  apply_threads(o.common);
  if (o.prompt && o.tokens) throw usage_error("generate: give --prompt or --tokens, not both");
  if (o.n_new < 0) throw usage_error("generate: -n must be >= 0, got " + std::to_string(o.n_new));
  sampling_params sp = o.sampling;
  if (o.seed) sp.seed = *o.seed;
  else sp.seed = std::random_device{}();
  check_sampling_params(sp);  // before the (possibly slow) load

  const auto path = resolve_model(o.common.model);
  // A tokenizer is needed to encode a text prompt and to print text; --tokens --print-ids needs none.
  std::optional<text_codec> tk;
  if (!o.tokens || !o.print_ids) {
    try {
      tk = text_codec::load(path);
    } catch (const tessera::error& e) {
      if (!o.tokens) throw;
      throw io_error(std::string(e.what()) + "; printing text needs the tokenizer: add --print-ids to print token ids instead");
    }
  }

  std::vector<std::int32_t> prompt;
  if (o.tokens) prompt = parse_ids(*o.tokens, "--tokens");
  else prompt = tk->encode(o.prompt.value_or(""), true);
  if (prompt.empty())
    throw range_error("generate: the prompt is empty (the tokenizer adds no BOS token to an empty text): "
                      "give a non-empty --prompt or --tokens");

  if (o.common.max_memory) {  // the session below, estimated before the load
    const model_config c = load_config(path);
    const index_t want = saturating_add(static_cast<index_t>(prompt.size()), o.n_new);
    const index_t context = c.max_position > 0 ? c.max_position : std::min(want, unbounded_context);
    check_max_memory(o.common, path, std::max<index_t>(1, std::min(context, want)), o.cache_type);
  }
  auto m = load_model(path, o.common);
  const model_config& cfg = m.model->config();
  detail::check_token_ids(prompt, cfg.vocab);
  const auto n_prompt = static_cast<index_t>(prompt.size());
  // The session holds the prompt and the new tokens, within the model's context: -n past it is
  // clamped (generation stops with "the context is full"), whatever its size.
  const index_t want = saturating_add(n_prompt, o.n_new);
  const index_t context = cfg.max_position > 0 ? cfg.max_position : std::min(want, unbounded_context);
  if (n_prompt > context)
    throw range_error("generate: the prompt has " + std::to_string(n_prompt) + " tokens, more than the model's context of " +
                      std::to_string(context));
  const index_t max_len = std::max<index_t>(1, std::min(context, want));
  auto session = m.model->new_session({.max_len = max_len, .kv_type = o.cache_type});

  tessera::generate_options go{.max_new_tokens = o.n_new, .stop_ids = cfg.eos_token_ids, .ignore_stop_ids = o.ignore_eos};
  if (go.stop_ids.empty() && tk) go.stop_ids = tk->eos_ids();
  // An encoder-decoder reads the prompt with its encoder and writes from decoder_start_token_id;
  // a decoder-only model continues the prompt (printed first).
  const bool seq2seq = m.model->is_encoder_decoder();
  std::vector<std::int32_t> start = prompt;
  if (seq2seq) {
    if (!cfg.decoder_start_token_id) throw config_error(path.string() + ": the config has no decoder_start_token_id");
    session->encode(prompt);
    start = {*cfg.decoder_start_token_id};
  }
  if (!o.print_ids) {
    tk->stream_begin(/*skip_special_tokens=*/true);
    if (!seq2seq)
      for (std::int32_t id : prompt) std::cout << tk->stream_push(id);
    std::cout << std::flush;
    go.detokenize = [&](std::int32_t id) { return tk->stream_push(id); };
  }

  sampler pick(cfg.vocab, sp);
  std::string ids_line;
  const generate_result r = generate(*session, start, pick, go, [&](std::int32_t id, std::string_view piece) {
    if (o.print_ids) {
      if (!ids_line.empty()) ids_line += ' ';
      ids_line += std::to_string(id);
    } else {
      std::cout << piece << std::flush;
    }
    return true;
  });

  if (o.print_ids) std::cout << ids_line << '\n';
  else std::cout << tk->stream_flush() << '\n';
  std::cout << std::flush;
  const auto generated = static_cast<long long>(r.tokens.size());
  if (r.reason == generate_result::stop_reason::context_full)
    std::fprintf(stderr, "tessera: stopped after %lld tokens: the context of %lld tokens is full\n", generated,
                 static_cast<long long>(session->max_len()));
  if (o.common.verbose) {
    std::fprintf(stderr, "tessera: seed %llu\n", static_cast<unsigned long long>(sp.seed));
    std::fprintf(stderr, "tessera: prefill %lld tokens in %.1f ms (%.1f tokens/s)\n", static_cast<long long>(n_prompt),
                 r.prefill_seconds * 1e3, static_cast<double>(n_prompt) / r.prefill_seconds);
    std::fprintf(stderr, "tessera: decode %lld tokens in %.1f ms (%.1f tokens/s; %lld steps)\n", generated,
                 r.decode_seconds * 1e3, r.decode_seconds > 0 ? static_cast<double>(r.steps) / r.decode_seconds : 0.0,
                 static_cast<long long>(r.steps));
  }
  return 0;
}

// ---- run ----------------------------------------------------------------------------------

namespace {
/// input_ids / attention_mask as int64 (b, l) from an I64 or I32 safetensors entry.
tensor<std::int64_t, 2> read_int_matrix(const io::safetensors_file& f, const io::safetensors_tensor& t) {
  if (t.extents.size() != 2)
    throw shape_error(f.path() + ": '" + t.name + "' must have shape [b, l], got rank " + std::to_string(t.extents.size()));
  tensor<std::int64_t, 2> out({t.extents[0], t.extents[1]});
  const std::byte* p = f.tensor_data(t);
  const index_t n = out.size();
  if (t.dtype_name == "I64") {
    for (index_t i = 0; i < n; ++i) std::memcpy(out.data() + i, p + 8 * i, 8);
  } else if (t.dtype_name == "I32") {
    for (index_t i = 0; i < n; ++i) {
      std::int32_t v;
      std::memcpy(&v, p + 4 * i, 4);
      out.data()[i] = v;
    }
  } else {
    throw format_error(f.path() + ": '" + t.name + "' has dtype " + t.dtype_name + ", expected I64 or I32");
  }
  return out;
}
}  // namespace

namespace {

/// One row of a padded [b, l] batch: its real tokens are [begin, end) (left or right padding).
struct real_span {
  index_t begin = 0, end = 0;
};

/// The real positions of each row of attention_mask (all of l without one). A row must be one run
/// of ones: left-padded (0…0 1…1) or right-padded (1…1 0…0).
std::vector<real_span> real_positions(const std::optional<tensor<std::int64_t, 2>>& mask, index_t b, index_t l,
                                      const std::string& file, const std::string& name) {
  std::vector<real_span> out(static_cast<std::size_t>(b), real_span{0, l});
  if (!mask) return out;
  for (index_t r = 0; r < b; ++r) {
    index_t begin = 0, end = l;
    while (begin < l && (*mask)(r, begin) == 0) ++begin;
    while (end > begin && (*mask)(r, end - 1) == 0) --end;
    for (index_t c = 0; c < l; ++c) {
      const std::int64_t v = (*mask)(r, c);
      if (v != 0 && v != 1)
        throw range_error(file + ": " + name + "[" + std::to_string(r) + ", " + std::to_string(c) + "] = " + std::to_string(v) +
                          "; a mask holds 0 and 1");
      if ((c >= begin && c < end) != (v == 1))
        throw usage_error(file + ": " + name + " row " + std::to_string(r) +
                          " is not one run of ones (left or right padding); tessera run takes padded rows only");
    }
    if (begin == end) throw range_error(file + ": " + name + " row " + std::to_string(r) + " has no real token");
    out[static_cast<std::size_t>(r)] = {begin, end};
  }
  return out;
}

/// Row r's real ids, checked against the vocabulary.
std::vector<std::int32_t> row_ids(const tensor<std::int64_t, 2>& ids, index_t r, real_span s, index_t vocab,
                                  const std::string& file, const std::string& name) {
  std::vector<std::int32_t> row;
  for (index_t c = s.begin; c < s.end; ++c) {
    const std::int64_t v = ids(r, c);
    if (v < 0 || v >= vocab)
      throw range_error(file + ": " + name + "[" + std::to_string(r) + ", " + std::to_string(c) + "] = " + std::to_string(v) +
                        " is out of range: the vocabulary has " + std::to_string(vocab) + " tokens");
    row.push_back(static_cast<std::int32_t>(v));
  }
  return row;
}

}  // namespace

int run_run(const run_options& o) {
  apply_threads(o.common);
  const auto path = resolve_model(o.common.model);
  const model_config cfg = load_config(path);
  const family* fam = find_family(cfg);
  const bool is_encoder = fam && fam->load_encoder && !fam->load;
  io::safetensors_file in(o.inputs);
  std::map<std::string, tensor<std::int64_t, 2>> inputs;
  for (const auto& t : in.tensors()) {
    static const std::vector<std::string> known = {"input_ids", "attention_mask", "token_type_ids", "decoder_input_ids",
                                                   "decoder_attention_mask"};
    if (std::find(known.begin(), known.end(), t.name) == known.end())
      throw usage_error(o.inputs + ": input '" + t.name + "' is not supported (tessera run takes input_ids, attention_mask, "
                        "token_type_ids, decoder_input_ids, decoder_attention_mask)");
    inputs.emplace(t.name, read_int_matrix(in, t));
  }
  auto get = [&](const std::string& name) -> std::optional<tensor<std::int64_t, 2>> {
    auto it = inputs.find(name);
    if (it == inputs.end()) return std::nullopt;
    return std::move(it->second);
  };
  const auto ids = get("input_ids");
  if (!ids) throw format_error(o.inputs + ": no tensor named 'input_ids'");
  const auto [b, l] = ids->extents();
  if (b == 0 || l == 0) throw range_error(o.inputs + ": input_ids is empty (shape [" + std::to_string(b) + ", " + std::to_string(l) + "])");
  const auto mask = get("attention_mask");
  if (mask && mask->extents() != ids->extents())
    throw shape_error(o.inputs + ": attention_mask shape " + to_string(mask->extents()) + " differs from input_ids " +
                      to_string(ids->extents()));
  const auto spans = real_positions(mask, b, l, o.inputs, "attention_mask");
  const auto types = get("token_type_ids");
  if (types && types->extents() != ids->extents())
    throw shape_error(o.inputs + ": token_type_ids shape " + to_string(types->extents()) + " differs from input_ids " +
                      to_string(ids->extents()));
  const auto dec_ids = get("decoder_input_ids");
  const auto dec_mask = get("decoder_attention_mask");
  if (o.common.max_memory) {  // estimated from the inputs' shapes, before the model is loaded
    // One session at a time, of one row: an encoder-decoder caches its l encoder tokens (cross
    // attention) and its l_dec decoder tokens; an encoder's activations are counted as a cache of l.
    const index_t d = cfg.d_model, dl = dec_ids ? dec_ids->extent(1) : l;
    std::vector<std::vector<index_t>> outputs;
    if (is_encoder) outputs = {{b, l, d}, {b, d}};  // last_hidden_state, pooler_output
    else if (dec_ids) outputs = {{b, dl, cfg.vocab}, {b, l, d}};  // logits, encoder_last_hidden_state
    else outputs = {{b, l, cfg.vocab}};  // logits
    check_max_memory(o.common, path, dec_ids ? saturating_add(l, dl) : l, kv_element::f32, outputs);
  }
  io::safetensors_writer out;
  const auto t0 = std::chrono::steady_clock::now();

  if (is_encoder) {  // BERT and friends: last_hidden_state, pooler_output
    if (dec_ids) throw usage_error(o.inputs + ": decoder_input_ids given to an encoder-only model");
    for (const auto& s : spans)
      if (s.begin != 0)
        throw usage_error(o.inputs + ": left padding changes an encoder's absolute positions in transformers; "
                          "pad on the right");
    const auto enc = load_encoder(path);
    std::vector<std::vector<std::int32_t>> rows, row_types;
    for (index_t r = 0; r < b; ++r) {
      rows.push_back(row_ids(*ids, r, spans[static_cast<std::size_t>(r)], cfg.vocab, o.inputs, "input_ids"));
      if (types) {
        std::vector<std::int32_t> t;
        for (index_t c = 0; c < spans[static_cast<std::size_t>(r)].end; ++c) t.push_back(static_cast<std::int32_t>((*types)(r, c)));
        row_types.push_back(std::move(t));
      }
    }
    const std::vector<std::span<const std::int32_t>> id_spans(rows.begin(), rows.end()), type_spans(row_types.begin(), row_types.end());
    const auto res = enc->encode(id_spans, type_spans);
    const index_t d = cfg.d_model;
    tensor<float, 3> hidden({b, l, d}, 0.f);  // padded positions: zeros
    for (index_t r = 0; r < b; ++r)
      for (index_t c = 0; c < spans[static_cast<std::size_t>(r)].end; ++c)
        std::copy(res.last_hidden_state.cview().row(res.starts[static_cast<std::size_t>(r)] + c),
                  res.last_hidden_state.cview().row(res.starts[static_cast<std::size_t>(r)] + c) + d, &hidden(r, c, 0));
    out.add("last_hidden_state", hidden);
    if (res.pooler_output) out.add("pooler_output", *res.pooler_output);
  } else {
    if (types) throw usage_error(o.inputs + ": token_type_ids given to a causal language model");
    auto m = load_model(path, o.common);
    const bool seq2seq = m.model->is_encoder_decoder();
    if (seq2seq != dec_ids.has_value())
      throw usage_error(o.inputs + (seq2seq ? ": an encoder-decoder model needs decoder_input_ids"
                                            : ": decoder_input_ids given to a decoder-only model"));
    if (cfg.family == "gpt2")  // learned absolute positions: transformers numbers a left-padded row from its pads
      for (const auto& s : spans)
        if (s.begin != 0)
          throw usage_error(o.inputs + ": left padding shifts GPT-2's learned absolute positions in transformers; pad on the right");
    // what the decoder runs: input_ids (decoder-only) or decoder_input_ids (encoder-decoder)
    const auto& dids = seq2seq ? *dec_ids : *ids;
    const auto [db, dl] = dids.extents();
    if (db != b) throw shape_error(o.inputs + ": decoder_input_ids has " + std::to_string(db) + " rows, input_ids " + std::to_string(b));
    if (dec_mask && dec_mask->extents() != dids.extents())
      throw shape_error(o.inputs + ": decoder_attention_mask shape differs from decoder_input_ids");
    const auto dspans = seq2seq ? real_positions(dec_mask, db, dl, o.inputs, "decoder_attention_mask") : spans;
    tensor<float, 3> logits({b, dl, cfg.vocab}, 0.f);  // padded positions: zeros
    std::optional<tensor<float, 3>> enc_hidden;
    if (seq2seq) enc_hidden = tensor<float, 3>({b, l, cfg.d_model}, 0.f);
    for (index_t r = 0; r < b; ++r) {
      const auto ds = dspans[static_cast<std::size_t>(r)];
      const auto row = row_ids(dids, r, ds, cfg.vocab, o.inputs, seq2seq ? "decoder_input_ids" : "input_ids");
      auto session = m.model->new_session({.max_len = ds.end - ds.begin});
      if (seq2seq) {
        const auto s = spans[static_cast<std::size_t>(r)];
        session->encode(row_ids(*ids, r, s, cfg.vocab, o.inputs, "input_ids"));
        const auto h = session->encoder_hidden_state();
        for (index_t c = 0; c < h.extent(0); ++c) std::copy(h.row(c), h.row(c) + cfg.d_model, &(*enc_hidden)(r, s.begin + c, 0));
      }
      session->prefill_all(row, logits.view()[r].slice(0, ds.begin, ds.end));
    }
    out.add("logits", logits);
    if (enc_hidden) out.add("encoder_last_hidden_state", *enc_hidden);
  }
  if (o.common.verbose)
    std::fprintf(stderr, "tessera: forward of %lld x %lld tokens in %.1f ms\n", static_cast<long long>(b),
                 static_cast<long long>(l), seconds_since(t0) * 1e3);
  out.write(o.outputs);
  return 0;
}

// ---- bench --------------------------------------------------------------------------------

/// The most sequences `bench --parallel` runs together.
constexpr index_t max_bench_parallel = 256;

int run_bench(const bench_options& o) {
  apply_threads(o.common);
  if (o.n_prompt < 1) throw usage_error("bench: -p must be >= 1, got " + std::to_string(o.n_prompt));
  if (o.n_gen < 0) throw usage_error("bench: -n must be >= 0, got " + std::to_string(o.n_gen));
  if (o.reps < 1) throw usage_error("bench: --reps must be >= 1, got " + std::to_string(o.reps));
  if (o.parallel < 1 || o.parallel > max_bench_parallel)
    throw usage_error("bench: --parallel must be in [1, " + std::to_string(max_bench_parallel) + "], got " +
                      std::to_string(o.parallel));
  const auto path = resolve_model(o.common.model);
  if (o.common.max_memory) {  // the sessions below, estimated before the load
    const model_config c = load_config(path);
    const index_t context = c.max_position > 0 ? c.max_position : unbounded_bench_context;
    check_max_memory(o.common, path, std::min(saturating_add(o.n_prompt, o.n_gen), context), o.cache_type,
                     {}, o.parallel);
  }
  auto m = load_model(path, o.common);
  const model_config& cfg = m.model->config();
  // Checked before adding (-p and -n may be as large as index_t holds) and before the id buffers
  // are sized: a model without a context limit still gets at most unbounded_bench_context tokens.
  const index_t context = cfg.max_position > 0 ? cfg.max_position : unbounded_bench_context;
  if (o.n_prompt > context || o.n_gen > context - o.n_prompt)
    throw range_error("bench: -p " + std::to_string(o.n_prompt) + " + -n " + std::to_string(o.n_gen) + " tokens exceed " +
                      (cfg.max_position > 0 ? "the model's context of " + std::to_string(context)
                                            : std::to_string(context) + ", the most bench runs on a model without a context limit"));
  const index_t need = o.n_prompt + o.n_gen;
  const auto n_seq = static_cast<std::size_t>(o.parallel);
  std::vector<std::unique_ptr<lm_session>> owned;
  std::vector<lm_session*> sessions;
  for (std::size_t s = 0; s < n_seq; ++s) {
    owned.push_back(m.model->new_session({.max_len = need, .kv_type = o.cache_type}));
    sessions.push_back(owned.back().get());
  }

  // each sequence its own random prompt and continuation
  std::mt19937 gen(1234);
  std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(cfg.vocab - 1));
  std::vector<std::vector<std::int32_t>> prompt(n_seq, std::vector<std::int32_t>(static_cast<std::size_t>(o.n_prompt)));
  std::vector<std::vector<std::int32_t>> next(static_cast<std::size_t>(o.n_gen), std::vector<std::int32_t>(n_seq));
  for (auto& p : prompt)
    for (auto& t : p) t = pick(gen);
  for (auto& step : next)
    for (auto& t : step) t = pick(gen);
  std::vector<std::span<const std::int32_t>> prompts, warm;
  for (const auto& p : prompt) {
    prompts.emplace_back(p);
    warm.emplace_back(p.data(), std::min<std::size_t>(p.size(), 16));
  }

  // warm-up: page in the weights, size the thread pool
  m.model->prefill_batch(sessions, warm);
  if (o.n_gen > 0) m.model->step_batch(sessions, next[0]);

  std::vector<double> pp, tg;
  const double seqs = static_cast<double>(n_seq);
  for (int rep = 0; rep < o.reps; ++rep) {
    for (auto* s : sessions) s->reset();
    auto t0 = std::chrono::steady_clock::now();
    m.model->prefill_batch(sessions, prompts);
    pp.push_back(seqs * static_cast<double>(o.n_prompt) / seconds_since(t0));
    if (o.n_gen > 0) {
      t0 = std::chrono::steady_clock::now();
      for (const auto& step : next) m.model->step_batch(sessions, step);
      tg.push_back(seqs * static_cast<double>(o.n_gen) / seconds_since(t0));
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  };
  const std::string batch = o.parallel > 1 ? " x " + std::to_string(o.parallel) + " sequences" : std::string();
  std::printf("model: %s (%s, %lld layers, d_model %lld, vocab %lld), threads %d, reps %d\n", path.string().c_str(),
              cfg.family.c_str(), static_cast<long long>(cfg.n_layers), static_cast<long long>(cfg.d_model),
              static_cast<long long>(cfg.vocab), num_threads(), o.reps);
  std::printf("prefill pp%lld%s: %.1f tokens/s (median; min %.1f, max %.1f)\n", static_cast<long long>(o.n_prompt),
              batch.c_str(), median(pp), *std::min_element(pp.begin(), pp.end()), *std::max_element(pp.begin(), pp.end()));
  if (o.n_gen > 0)
    std::printf("decode  tg%lld%s: %.1f tokens/s (median; min %.1f, max %.1f)\n", static_cast<long long>(o.n_gen),
                batch.c_str(), median(tg), *std::min_element(tg.begin(), tg.end()), *std::max_element(tg.begin(), tg.end()));
  return 0;
}

}  // namespace tessera::cli
