// tools/cli/main.cpp: `tessera`, the command-line tool (docs/cli.md). Parses the command line with CLI11 and runs one command; every error ends
// as one line on stderr and a non-zero exit status (1: the model, file or input was refused;
// 2: the command line was wrong).
#include "cli.hpp"

#include <cstdio>
#include <exception>
#include <iostream>
#include <map>
#include <string>

#include <CLI/CLI.hpp>

#include <tessera/core/error.hpp>

namespace {

using namespace tessera;
using namespace tessera::cli;

// --cache-type f32|f16|q8_0: the KV cache's element type (f16 halves the attention memory, q8_0
// takes 0.27x of it).
void add_cache_type(CLI::App* cmd, kv_element& t) {
  cmd->add_option("--cache-type", t,
                  "KV cache element type: f32 (default), f16 (half the memory) or q8_0 (0.27x; head_dim a multiple of 32)")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, kv_element>{{"f32", kv_element::f32}, {"f16", kv_element::f16}, {"q8_0", kv_element::q8_0}},
          CLI::ignore_case));
}

void add_common(CLI::App* cmd, common_options& o) {
  cmd->add_option("-m,--model", o.model, "Hugging Face checkpoint folder or .gguf file (default: the bundled stories260K)");
  cmd->add_option("-t,--threads", o.threads, "number of threads (default: all cores)")->check(CLI::Range(1, 4096));
  cmd->add_flag("-v,--verbose", o.verbose, "load time and tokens/s on stderr");
}

// --max-memory and --quantize for the commands that load a model.
void add_load_options(CLI::App* cmd, common_options& o) {
  cmd->add_option("--max-memory", o.max_memory,
                  "refuse, before loading, a model whose weights and session need more than this (e.g. 8G, 512M)");
  cmd->add_option("--quantize", o.quantize,
                  "quantize f32/f16/bf16 matrices at load and compute in their blocks: q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, "
                  "q5_k, q6_k (quantized GGUF tensors stay as stored)")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, io::ggml_type>{{"q8_0", io::ggml_type::q8_0}, {"q4_0", io::ggml_type::q4_0},
                                               {"q4_1", io::ggml_type::q4_1}, {"q5_0", io::ggml_type::q5_0},
                                               {"q5_1", io::ggml_type::q5_1}, {"q4_k", io::ggml_type::q4_k},
                                               {"q5_k", io::ggml_type::q5_k}, {"q6_k", io::ggml_type::q6_k}},
          CLI::ignore_case));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tessera: run transformer, state-space and hybrid models on the CPU"};
  app.name("tessera");
  app.require_subcommand(1);

  generate_options gen;
  auto* g = app.add_subcommand("generate", "generate text from a prompt (streams it as it is generated)");
  add_common(g, gen.common);
  add_load_options(g, gen.common);
  g->add_option("-p,--prompt", gen.prompt, "prompt text (encoded with the checkpoint's special tokens, e.g. BOS)");
  g->add_option("--tokens", gen.tokens, "prompt as token ids, e.g. 1,2,3 (used exactly: no BOS added)");
  g->add_option("-n,--n-predict", gen.n_new, "number of new tokens (default 256)");
  g->add_option("--temperature,--temp", gen.sampling.temperature, "sampling temperature; 0 is greedy (default 0.8)");
  g->add_option("--top-k", gen.sampling.top_k, "keep the k most likely tokens; 0 is off (default 40)");
  g->add_option("--top-p", gen.sampling.top_p, "nucleus sampling mass in (0, 1]; 1 is off (default 0.95)");
  g->add_option("--min-p", gen.sampling.min_p, "drop tokens below min-p x the top probability; 0 is off (default 0.05)");
  g->add_option("--repeat-penalty", gen.sampling.repetition_penalty, "repetition penalty > 0; 1 is off (default 1)");
  g->add_option("-s,--seed", gen.seed, "random seed (default: a random one, shown with -v)");
  g->add_flag("--print-ids", gen.print_ids, "print only the generated token ids, space-separated, on one line");
  g->add_flag("--ignore-eos", gen.ignore_eos, "keep generating past end-of-sequence tokens");
  add_cache_type(g, gen.cache_type);

  run_options run;
  auto* r = app.add_subcommand("run", "one forward pass, as model(**inputs) in transformers");
  add_common(r, run.common);
  r->add_option("--inputs", run.inputs, "safetensors file with input_ids [b, l] (I64 or I32) and optionally attention_mask")->required();
  r->add_option("--outputs", run.outputs, "safetensors file to write (logits f32 [b, l, vocab])")->required();
  add_load_options(r, run.common);

  info_options info;
  auto* i = app.add_subcommand("info", "family, shapes, parameter count, dtypes, memory needed");
  add_common(i, info.common);
  add_load_options(i, info.common);
  i->add_option("-c,--context", info.context, "context length for the memory estimate (default: max_position)");
  i->add_flag("!--no-tensors", info.tensors, "do not list the tensors");

  bench_options bench;
  auto* b = app.add_subcommand("bench", "prefill and decode tokens/s on random token ids");
  add_common(b, bench.common);
  add_load_options(b, bench.common);
  b->add_option("-p,--n-prompt", bench.n_prompt, "prompt tokens (default 512)");
  b->add_option("-n,--n-gen", bench.n_gen, "decoded tokens (default 128)");
  b->add_option("-r,--reps", bench.reps, "repetitions; the median is printed (default 3)");
  b->add_option("--parallel", bench.parallel,
                "sequences prefilled and decoded together, each its own session (prefill_batch, step_batch: "
                "one weight read per step for all); tokens/s count every sequence's tokens (default 1)");
  add_cache_type(b, bench.cache_type);

  tokenize_options tok;
  auto* t = app.add_subcommand("tokenize", "print the token ids of a text");
  add_common(t, tok.common);
  auto* text_opt = t->add_option("--text", tok.text, "the text");
  auto* file_opt = t->add_option("--file", tok.file, "read the text from a file");
  text_opt->excludes(file_opt);
  t->add_flag("--no-special", tok.no_special, "add no special tokens (add_special_tokens=False)");

  detokenize_options detok;
  auto* d = app.add_subcommand("detokenize", "print the text of token ids");
  add_common(d, detok.common);
  d->add_option("--tokens", detok.tokens, "token ids, e.g. 1,2,3")->required();
  d->add_flag("--skip-special", detok.skip_special, "leave special tokens out");

  quantize_options quant;
  auto* q = app.add_subcommand("quantize", "write a GGUF file's weights in another type, with llama-quantize's presets and rules");
  q->add_option("input", quant.input, "GGUF file to read (F32, F16, BF16 or quantized)")->required();
  q->add_option("output", quant.output, "GGUF file to write")->required();
  q->add_option("--type", quant.type, "Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K_M, Q4_K_S, Q5_K_M, Q5_K_S, Q6_K, F16, BF16 or F32")->required();
  q->add_option("-t,--threads", quant.common.threads, "number of threads (default: all cores)")->check(CLI::Range(1, 4096));
  q->add_flag("-v,--verbose", quant.common.verbose, "each tensor's type on stderr");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help: 0; CLI11's own codes (105, 106, ...) are usage errors: 2
  }

  try {
    if (g->parsed()) return run_generate(gen);
    if (r->parsed()) return run_run(run);
    if (i->parsed()) return run_info(info);
    if (b->parsed()) return run_bench(bench);
    if (t->parsed()) return run_tokenize(tok);
    if (d->parsed()) return run_detokenize(detok);
    if (q->parsed()) return run_quantize(quant);
  } catch (const usage_error& e) {
    std::cout.flush();
    std::fprintf(stderr, "tessera: error: %s\n", e.what());
    return 2;
  } catch (const tessera::error& e) {
    std::cout.flush();
    std::fprintf(stderr, "tessera: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::fprintf(stderr, "tessera: error: %s\n", e.what());
    return 1;
  }
  return 2;
}
