// tools/cli/model_commands.cpp: `tessera generate`, `tessera run`, `tessera bench` (they run a
// model through the language_model / lm_session interface).
#include "cli.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string_view>

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

loaded_model load_model(const std::filesystem::path& path, bool verbose) {
  const auto t0 = std::chrono::steady_clock::now();
  loaded_model m;
  m.model = load_language_model(path);
  m.load_seconds = seconds_since(t0);
  if (verbose) {
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

  auto m = load_model(path, o.common.verbose);
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
  auto session = m.model->new_session({.max_len = max_len});

  tessera::generate_options go{.max_new_tokens = o.n_new, .stop_ids = cfg.eos_token_ids, .ignore_stop_ids = o.ignore_eos};
  if (go.stop_ids.empty() && tk) go.stop_ids = tk->eos_ids();
  if (!o.print_ids) {
    tk->stream_begin(/*skip_special_tokens=*/true);
    for (std::int32_t id : prompt) std::cout << tk->stream_push(id);
    std::cout << std::flush;
    go.detokenize = [&](std::int32_t id) { return tk->stream_push(id); };
  }

  sampler pick(cfg.vocab, sp);
  std::string ids_line;
  const generate_result r = generate(*session, prompt, pick, go, [&](std::int32_t id, std::string_view piece) {
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

int run_run(const run_options& o) {
  apply_threads(o.common);
  const auto path = resolve_model(o.common.model);
  io::safetensors_file in(o.inputs);
  const io::safetensors_tensor* ids_entry = in.find("input_ids");
  if (!ids_entry) throw format_error(o.inputs + ": no tensor named 'input_ids'");
  for (const auto& t : in.tensors())
    if (t.name != "input_ids" && t.name != "attention_mask")
      throw usage_error(o.inputs + ": input '" + t.name + "' is not supported for causal language models "
                        "(tessera run takes input_ids and attention_mask)");
  const auto ids = read_int_matrix(in, *ids_entry);
  const auto [b, l] = ids.extents();
  if (b == 0 || l == 0) throw range_error(o.inputs + ": input_ids is empty (shape [" + std::to_string(b) + ", " + std::to_string(l) + "])");
  if (const auto* mask_entry = in.find("attention_mask")) {
    const auto mask = read_int_matrix(in, *mask_entry);
    if (mask.extents() != ids.extents())
      throw shape_error(o.inputs + ": attention_mask shape " + to_string(mask.extents()) + " differs from input_ids " +
                        to_string(ids.extents()));
    for (index_t r = 0; r < b; ++r)
      for (index_t c = 0; c < l; ++c)
        if (mask(r, c) != 1)
          throw usage_error(o.inputs + ": attention_mask row " + std::to_string(r) + " has " + std::to_string(mask(r, c)) +
                            " at position " + std::to_string(c) + "; tessera run takes unpadded rows only (all ones)");
  }

  auto m = load_model(path, o.common.verbose);
  const model_config& cfg = m.model->config();
  const std::string& arch = cfg.architecture;
  const bool causal = arch.empty() || arch.ends_with("ForCausalLM") || arch.ends_with("ForConditionalGeneration") ||
                      arch.ends_with("LMHeadModel");
  if (!causal) throw config_error(path.string() + ": tessera run does not support architecture '" + arch + "' yet");

  tensor<float, 3> logits({b, l, cfg.vocab});
  std::vector<std::int32_t> row(static_cast<std::size_t>(l));
  const auto t0 = std::chrono::steady_clock::now();
  for (index_t r = 0; r < b; ++r) {
    for (index_t c = 0; c < l; ++c) {
      const std::int64_t v = ids(r, c);
      if (v < 0 || v >= cfg.vocab)
        throw range_error(o.inputs + ": input_ids[" + std::to_string(r) + ", " + std::to_string(c) + "] = " +
                          std::to_string(v) + " is out of range: the vocabulary has " + std::to_string(cfg.vocab) + " tokens");
      row[static_cast<std::size_t>(c)] = static_cast<std::int32_t>(v);
    }
    auto session = m.model->new_session({.max_len = l});
    session->prefill_all(row, logits.view()[r]);
  }
  if (o.common.verbose)
    std::fprintf(stderr, "tessera: forward of %lld x %lld tokens in %.1f ms\n", static_cast<long long>(b),
                 static_cast<long long>(l), seconds_since(t0) * 1e3);
  io::safetensors_writer out;
  out.add("logits", logits);
  out.write(o.outputs);
  return 0;
}

// ---- bench --------------------------------------------------------------------------------

int run_bench(const bench_options& o) {
  apply_threads(o.common);
  if (o.n_prompt < 1) throw usage_error("bench: -p must be >= 1, got " + std::to_string(o.n_prompt));
  if (o.n_gen < 0) throw usage_error("bench: -n must be >= 0, got " + std::to_string(o.n_gen));
  if (o.reps < 1) throw usage_error("bench: --reps must be >= 1, got " + std::to_string(o.reps));
  const auto path = resolve_model(o.common.model);
  auto m = load_model(path, o.common.verbose);
  const model_config& cfg = m.model->config();
  // Checked before adding (-p and -n may be as large as index_t holds) and before the id buffers
  // are sized: a model without a context limit still gets at most unbounded_bench_context tokens.
  const index_t context = cfg.max_position > 0 ? cfg.max_position : unbounded_bench_context;
  if (o.n_prompt > context || o.n_gen > context - o.n_prompt)
    throw range_error("bench: -p " + std::to_string(o.n_prompt) + " + -n " + std::to_string(o.n_gen) + " tokens exceed " +
                      (cfg.max_position > 0 ? "the model's context of " + std::to_string(context)
                                            : std::to_string(context) + ", the most bench runs on a model without a context limit"));
  const index_t need = o.n_prompt + o.n_gen;
  auto session = m.model->new_session({.max_len = need});

  std::mt19937 gen(1234);
  std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(cfg.vocab - 1));
  std::vector<std::int32_t> prompt(static_cast<std::size_t>(o.n_prompt)), next(static_cast<std::size_t>(o.n_gen));
  for (auto& t : prompt) t = pick(gen);
  for (auto& t : next) t = pick(gen);

  // warm-up: page in the weights, size the thread pool
  session->prefill(std::span<const std::int32_t>(prompt.data(), std::min<std::size_t>(prompt.size(), 16)));
  if (o.n_gen > 0) session->step(next[0]);

  std::vector<double> pp, tg;
  for (int rep = 0; rep < o.reps; ++rep) {
    session->reset();
    auto t0 = std::chrono::steady_clock::now();
    session->prefill(prompt);
    pp.push_back(static_cast<double>(o.n_prompt) / seconds_since(t0));
    if (o.n_gen > 0) {
      t0 = std::chrono::steady_clock::now();
      for (std::int32_t t : next) session->step(t);
      tg.push_back(static_cast<double>(o.n_gen) / seconds_since(t0));
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  };
  std::printf("model: %s (%s, %lld layers, d_model %lld, vocab %lld), threads %d, reps %d\n", path.string().c_str(),
              cfg.family.c_str(), static_cast<long long>(cfg.n_layers), static_cast<long long>(cfg.d_model),
              static_cast<long long>(cfg.vocab), num_threads(), o.reps);
  std::printf("prefill pp%lld: %.1f tokens/s (median; min %.1f, max %.1f)\n", static_cast<long long>(o.n_prompt), median(pp),
              *std::min_element(pp.begin(), pp.end()), *std::max_element(pp.begin(), pp.end()));
  if (o.n_gen > 0)
    std::printf("decode  tg%lld: %.1f tokens/s (median; min %.1f, max %.1f)\n", static_cast<long long>(o.n_gen), median(tg),
                *std::min_element(tg.begin(), tg.end()), *std::max_element(tg.begin(), tg.end()));
  return 0;
}

}  // namespace tessera::cli
