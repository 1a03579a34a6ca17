// Tests of the `tessera` executable, run as a user runs it: stdout, stderr and exit status.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <tessera/core/tensor.hpp>
#include <tessera/io/safetensors.hpp>

using namespace tessera;
namespace fs = std::filesystem;

namespace {

const std::string data_dir = TESSERA_TEST_DATA_DIR;

struct cli_result {
  int rc = -1;
  std::string out, err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

fs::path scratch_dir() {
  const fs::path d = fs::path(TESSERA_BINARY_DIR) / "tests" / "cli_scratch";
  fs::create_directories(d);
  return d;
}

/// Runs `tessera args...` in the build tree's scratch folder (not the source tree, so the default
/// model is found through the compiled-in path); stderr goes to a file named by pid, so that
/// `ctest -j` runs do not collide.
cli_result tessera_cli(const std::vector<std::string>& args) {
  static int counter = 0;
  const fs::path err_file = scratch_dir() / ("stderr_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + ".txt");
  std::string cmd = "cd " + quote(scratch_dir().string()) + " && " + quote(TESSERA_CLI_BINARY);
  for (const auto& a : args) cmd += " " + quote(a);
  cmd += " 2>" + quote(err_file.string());
  cli_result r;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  r.err = read_text(err_file);
  fs::remove(err_file);
  return r;
}

std::string join(const std::vector<std::int64_t>& ids, const char* sep) {
  std::string s;
  for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? sep : "") + std::to_string(ids[i]);
  return s;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(read_text(p)); }

/// Checks a process that must fail cleanly: non-zero status, not a signal, a message on stderr,
/// nothing on stdout.
void check_clean_failure(const cli_result& r, const std::string& message_part) {
  INFO("stderr: " << r.err << "\nstdout: " << r.out);
  CHECK(r.rc != 0);
  CHECK(r.rc < 128);  // not killed by a signal (no crash)
  CHECK(r.err.find("error") != std::string::npos);
  CHECK(r.err.find(message_part) != std::string::npos);
  CHECK(r.out.empty());
}

const char* bundled_greedy_40 =
    "403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 "
    "410 408 419 292 411 322 265 282 295 433 426 385 328 432 358 394 261 370 432 352";

}  // namespace

// ---- the bundled default model --------------------------------------------------------------

TEST_CASE("bundled default: greedy ids from BOS equal llama2.c's", "[cli]") {
  const auto r = tessera_cli({"generate", "-n", "40", "--temperature", "0", "--print-ids", "--ignore-eos"});
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(trim(r.out) == bundled_greedy_40);
  CHECK(r.err.empty());
  // the same through --tokens 1 (BOS given explicitly: no tokenizer needed) and -t 2
  const auto r2 = tessera_cli({"generate", "--tokens", "1", "-n", "40", "--temp", "0", "--print-ids", "--ignore-eos", "-t", "2"});
  REQUIRE(r2.rc == 0);
  CHECK(trim(r2.out) == bundled_greedy_40);
}

TEST_CASE("bundled default: --cache-type f16 gives the same greedy ids, a bad type is refused", "[cli]") {
  const auto r = tessera_cli({"generate", "-n", "40", "--temp", "0", "--print-ids", "--ignore-eos", "--cache-type", "f16"});
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(trim(r.out) == bundled_greedy_40);
  const auto bad = tessera_cli({"generate", "-n", "4", "--cache-type", "q4"});
  CHECK(bad.rc == 2);
  CHECK(bad.err.find("--cache-type") != std::string::npos);
  const auto b = tessera_cli({"bench", "-p", "16", "-n", "8", "-r", "1", "--cache-type", "f16"});
  INFO(b.err);
  CHECK(b.rc == 0);
  // q8_0 stores blocks of 32: stories260K's head_dim of 8 is refused by name, not rounded
  const auto q8 = tessera_cli({"generate", "-n", "4", "--cache-type", "q8_0"});
  CHECK(q8.rc == 1);
  CHECK(q8.err.find("q8_0 cache needs head_dim a multiple of 32, got 8") != std::string::npos);
}

TEST_CASE("bundled default: --quantize q8_0 computes in blocks, info counts the blocks, a bad type is refused", "[cli]") {
  // stories260K (dim 64, ffn 172): every matrix but ffn_down (rows of 172) becomes q8_0 blocks
  const auto r = tessera_cli({"generate", "-n", "40", "--temp", "0", "--print-ids", "--ignore-eos", "--quantize", "q8_0"});
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(trim(r.out) == bundled_greedy_40);  // a trained model: 8-bit weights keep the greedy path
  auto weights_line = [](const std::string& out) {
    const auto p = out.find("memory (context");
    return p == std::string::npos ? std::string() : out.substr(p, out.find('\n', p) - p);
  };
  const auto f32 = tessera_cli({"info", "--no-tensors"}), q = tessera_cli({"info", "--no-tensors", "--quantize", "Q8_0"});
  REQUIRE(f32.rc == 0);
  REQUIRE(q.rc == 0);
  CHECK(weights_line(f32.out).find("weights 1.") != std::string::npos);    // ~1.1 MiB as f32
  CHECK(weights_line(q.out).find("weights 4") != std::string::npos);       // ~0.4 MiB with q8_0 matrices
  const auto bad = tessera_cli({"generate", "-n", "4", "--quantize", "q3_k"});
  CHECK(bad.rc == 2);
  CHECK(bad.err.find("--quantize") != std::string::npos);
}

TEST_CASE("bundled default: text streams on stdout, timings only with -v on stderr", "[cli]") {
  const auto r = tessera_cli({"generate", "-n", "30", "--temp", "0"});
  REQUIRE(r.rc == 0);
  CHECK(r.out.rfind("Once upon a time, there was a little girl named Lily.", 0) == 0);
  CHECK(r.err.empty());
  const auto v = tessera_cli({"generate", "-n", "30", "--temp", "0", "-v"});
  REQUIRE(v.rc == 0);
  CHECK(v.out == r.out);
  CHECK(v.err.find("prefill") != std::string::npos);
  CHECK(v.err.find("tokens/s") != std::string::npos);
  CHECK(v.err.find("loaded") != std::string::npos);
  // a prompt is echoed and continued
  const auto p = tessera_cli({"generate", "-p", "Once upon a time", "-n", "8", "--temp", "0"});
  REQUIRE(p.rc == 0);
  CHECK(p.out.rfind("Once upon a time,", 0) == 0);
}

TEST_CASE("generate stops at EOS unless --ignore-eos", "[cli]") {
  // the llama fixture's greedy continuation (transformers) has its EOS (2) at the 10th new token
  const fs::path dir = fs::path(data_dir) / "models" / "llama";
  const auto meta = read_json(dir / "meta.json")["references"]["reference.safetensors"];
  const auto prompt = meta["input_ids"].get<std::vector<std::int64_t>>();
  auto greedy = meta["greedy_ids"].get<std::vector<std::int64_t>>();
  const auto eos_at = std::find(greedy.begin(), greedy.end(), 2);
  REQUIRE(eos_at != greedy.end());
  const auto r = tessera_cli({"generate", "-m", dir.string(), "--tokens", join(prompt, ","), "--print-ids", "-n", "12", "--temp", "0"});
  INFO(r.err);
  REQUIRE(r.rc == 0);
  greedy.erase(eos_at + 1, greedy.end());  // EOS itself is printed, then generation stops
  CHECK(trim(r.out) == join(greedy, " "));
  const auto all = tessera_cli({"generate", "-m", dir.string(), "--tokens", join(prompt, ","), "--print-ids", "-n", "12",
                                "--temp", "0", "--ignore-eos"});
  REQUIRE(all.rc == 0);
  std::istringstream s2(all.out);
  int n = 0;
  for (int x; s2 >> x;) ++n;
  CHECK(n == 12);
}

TEST_CASE("sampled generation is reproducible for a seed", "[cli]") {
  const std::vector<std::string> base = {"generate", "-n", "40", "--temp", "1.0", "--top-k", "0", "--top-p", "0.9",
                                         "--min-p", "0.02", "--repeat-penalty", "1.1", "--print-ids", "--ignore-eos"};
  auto with_seed = [&](const char* seed) {
    auto args = base;
    args.push_back("-s");
    args.push_back(seed);
    return tessera_cli(args);
  };
  const auto a = with_seed("42"), b = with_seed("42"), c = with_seed("43");
  REQUIRE(a.rc == 0);
  CHECK(a.out == b.out);
  CHECK(a.out != c.out);
  CHECK(trim(a.out) != bundled_greedy_40);
}

TEST_CASE("info, bench, tokenize and detokenize on the bundled model", "[cli]") {
  const auto i = tessera_cli({"info"});
  REQUIRE(i.rc == 0);
  CHECK(i.out.find("family:        llama") != std::string::npos);
  CHECK(i.out.find("vocab:         512") != std::string::npos);
  CHECK(i.out.find("model.embed_tokens.weight  F32 [512, 64]") != std::string::npos);
  const auto b = tessera_cli({"bench", "-p", "32", "-n", "8", "--reps", "2", "-t", "1"});
  INFO(b.err);
  REQUIRE(b.rc == 0);
  CHECK(b.out.find("prefill pp32:") != std::string::npos);
  CHECK(b.out.find("decode  tg8:") != std::string::npos);
  const auto bp = tessera_cli({"bench", "-p", "8", "-n", "4", "--reps", "1", "--parallel", "3"});
  INFO(bp.err);
  REQUIRE(bp.rc == 0);
  CHECK(bp.out.find("prefill pp8 x 3 sequences:") != std::string::npos);
  CHECK(bp.out.find("decode  tg4 x 3 sequences:") != std::string::npos);
  check_clean_failure(tessera_cli({"bench", "--parallel", "0"}), "--parallel");
  check_clean_failure(tessera_cli({"bench", "--parallel", "100000"}), "--parallel");
  const auto t = tessera_cli({"tokenize", "--text", "Once upon a time"});
  REQUIRE(t.rc == 0);
  CHECK(trim(t.out).rfind("1 403 407", 0) == 0);
  const auto d = tessera_cli({"detokenize", "--tokens", trim(t.out)});
  REQUIRE(d.rc == 0);
  CHECK(trim(d.out) == "<s> Once upon a time");
  const auto d2 = tessera_cli({"detokenize", "--tokens", "403,407,261", "--skip-special"});
  REQUIRE(d2.rc == 0);
  CHECK(trim(d2.out) == "Once upon a");
}

TEST_CASE("info: memory for a context (KV cache of sliding and full layers, SSM state)", "[cli]") {
  const fs::path models = fs::path(TESSERA_TEST_DATA_DIR) / "models";
  // qwen2_sliding: layer 0 full (100 tokens), layers 1-2 sliding (window 6): 2 · kv_dim (2·16) · 4 B a token
  const auto q = tessera_cli({"info", "-m", (models / "qwen2_sliding").string(), "-c", "100"});
  REQUIRE(q.rc == 0);
  CHECK(q.out.find("family:        qwen2") != std::string::npos);
  CHECK(q.out.find("format:        safetensors") != std::string::npos);
  CHECK(q.out.find("model.layers.0.self_attn.q_proj.weight  F32 [64, 64]") != std::string::npos);
  CHECK(q.out.find("KV cache " + std::to_string(2 * 32 * 4 * (100 + 6 + 6) / 1024) + ".00 KiB") != std::string::npos);
  const auto g = tessera_cli({"info", "-c", "512"});  // the bundled stories260K: 5 layers, kv_dim 32
  REQUIRE(g.rc == 0);
  CHECK(g.out.find("format:        gguf v3") != std::string::npos);
  CHECK(g.out.find("KV cache 640.00 KiB") != std::string::npos);  // 5 · 2 · 32 · 512 · 4 B
  const auto j = tessera_cli({"info", "-m", (models / "jamba").string(), "-c", "10"});
  REQUIRE(j.rc == 0);
  CHECK(j.out.find("KV cache 3.75 KiB") != std::string::npos);    // 2 layers · 2 · 2·12 · 10 · 4 B
  CHECK(j.out.find("SSM state 8.25 KiB") != std::string::npos);   // 2 · (96·8 + 96·3) · 4 B
}

// ---- parity with transformers on the fixtures -----------------------------------------------

namespace {

/// Writes input_ids (b copies of the reference row) as `dtype` and returns the path.
fs::path write_inputs(const io::safetensors_file& ref, const std::string& name, index_t b, bool as_i32, bool with_mask) {
  const auto* t = ref.find("input_ids");
  REQUIRE(t != nullptr);
  REQUIRE(t->dtype_name == "I64");
  const index_t l = t->extents[1];
  std::vector<std::int64_t> row(static_cast<std::size_t>(l));
  std::memcpy(row.data(), ref.tensor_data(*t), static_cast<std::size_t>(l) * 8);
  io::safetensors_writer w;
  if (as_i32) {
    tensor<std::int32_t, 2> ids({b, l});
    for (index_t r = 0; r < b; ++r)
      for (index_t c = 0; c < l; ++c) ids(r, c) = static_cast<std::int32_t>(row[static_cast<std::size_t>(c)]);
    w.add("input_ids", ids);
  } else {
    tensor<std::int64_t, 2> ids({b, l});
    for (index_t r = 0; r < b; ++r)
      for (index_t c = 0; c < l; ++c) ids(r, c) = row[static_cast<std::size_t>(c)];
    w.add("input_ids", ids);
  }
  if (with_mask) {
    tensor<std::int64_t, 2> mask({b, l});
    for (auto& x : mask) x = 1;
    w.add("attention_mask", mask);
  }
  const fs::path p = scratch_dir() / (name + "_inputs.safetensors");
  w.write(p);
  return p;
}

/// max |out - ref| / max |ref| over the logits of every row.
double logits_error(const io::safetensors_file& ref, const fs::path& out_path, index_t b) {
  io::safetensors_file out(out_path);
  const auto* r = ref.find("logits");
  const auto* o = out.find("logits");
  REQUIRE(r != nullptr);
  REQUIRE(o != nullptr);
  REQUIRE(r->dtype_name == "F32");
  REQUIRE(o->dtype_name == "F32");
  REQUIRE(o->extents.size() == 3);
  REQUIRE(o->extents[0] == b);
  REQUIRE(o->extents[1] == r->extents[1]);
  REQUIRE(o->extents[2] == r->extents[2]);
  const auto n = static_cast<std::size_t>(r->numel);
  std::vector<float> rv(n), ov(n * static_cast<std::size_t>(b));
  std::memcpy(rv.data(), ref.tensor_data(*r), n * 4);
  std::memcpy(ov.data(), out.tensor_data(*o), ov.size() * 4);
  double max_err = 0, max_ref = 0;
  for (std::size_t i = 0; i < ov.size(); ++i) {
    max_err = std::max(max_err, std::abs(static_cast<double>(ov[i]) - rv[i % n]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(rv[i % n])));
  }
  return max_err / max_ref;
}

}  // namespace

TEST_CASE("run: a padded batch (left and right padding) gives each row's logits at its real positions", "[cli]") {
  // rows: the reference prompt; its first l-3 tokens left-padded by 3; its first l-4 right-padded
  // by 4. A prefix's logits are the reference's first rows (causal), so each is checked against it.
  for (const char* name : {"llama", "qwen2_sliding", "mamba2"}) {
    INFO(name);
    const fs::path dir = fs::path(data_dir) / "models" / name;
    io::safetensors_file ref(dir / (std::string(name) == "mamba2" ? "reference_l21.safetensors" : "reference.safetensors"));
    const auto* t = ref.find("input_ids");
    REQUIRE(t != nullptr);
    const index_t l = t->extents[1];
    std::vector<std::int64_t> row(static_cast<std::size_t>(l));
    std::memcpy(row.data(), ref.tensor_data(*t), static_cast<std::size_t>(l) * 8);
    tensor<std::int64_t, 2> ids({3, l}, 0), mask({3, l}, 0);
    for (index_t c = 0; c < l; ++c) ids(0, c) = row[static_cast<std::size_t>(c)], mask(0, c) = 1;
    for (index_t c = 3; c < l; ++c) ids(1, c) = row[static_cast<std::size_t>(c - 3)], mask(1, c) = 1;
    for (index_t c = 0; c < l - 4; ++c) ids(2, c) = row[static_cast<std::size_t>(c)], mask(2, c) = 1;
    io::safetensors_writer w;
    w.add("input_ids", ids);
    w.add("attention_mask", mask);
    const fs::path in = scratch_dir() / (std::string(name) + "_padded_inputs.safetensors");
    const fs::path out = scratch_dir() / (std::string(name) + "_padded_outputs.safetensors");
    w.write(in);
    const auto r = tessera_cli({"run", "-m", dir.string(), "--inputs", in.string(), "--outputs", out.string()});
    INFO(r.err);
    REQUIRE(r.rc == 0);
    io::safetensors_file got(out);
    const auto* o = got.find("logits");
    const auto* rl = ref.find("logits");
    REQUIRE(o != nullptr);
    REQUIRE(o->extents == std::vector<index_t>{3, l, rl->extents[2]});
    const index_t vocab = rl->extents[2];
    const auto* want = reinterpret_cast<const float*>(ref.tensor_data(*rl));  // (1, l, vocab)
    const auto* have = reinterpret_cast<const float*>(got.tensor_data(*o));  // (3, l, vocab)
    auto err = [&](index_t r_out, index_t c_out, index_t c_ref) {
      double e = 0, m = 0;
      for (index_t j = 0; j < vocab; ++j) {
        e = std::max(e, std::abs(static_cast<double>(have[(r_out * l + c_out) * vocab + j]) - want[c_ref * vocab + j]));
        m = std::max(m, std::abs(static_cast<double>(want[c_ref * vocab + j])));
      }
      return e / m;
    };
    for (index_t c = 0; c < l; ++c) CHECK(err(0, c, c) <= 1e-4);
    for (index_t c = 3; c < l; ++c) CHECK(err(1, c, c - 3) <= 1e-4);
    for (index_t c = 0; c < l - 4; ++c) CHECK(err(2, c, c) <= 1e-4);
    CHECK(have[(1 * l + 0) * vocab] == 0.f);  // padded positions: zeros
    CHECK(have[(2 * l + l - 1) * vocab] == 0.f);
  }
  // a mask that is not one run of ones, and a GPT-2 left-padded row, are refused
  const fs::path dir = fs::path(data_dir) / "models" / "gpt2";
  tensor<std::int64_t, 2> ids({1, 4}, 1), holes({1, 4}, 1), left({1, 4}, 1);
  holes(0, 1) = 0;
  left(0, 0) = 0;
  for (const auto& [m, what] : {std::pair{&holes, "one run of ones"}, std::pair{&left, "pad on the right"}}) {
    io::safetensors_writer w;
    w.add("input_ids", ids);
    w.add("attention_mask", *m);
    const fs::path in = scratch_dir() / "bad_mask_inputs.safetensors";
    w.write(in);
    check_clean_failure(tessera_cli({"run", "-m", dir.string(), "--inputs", in.string(), "--outputs",
                                     (scratch_dir() / "bad_mask_out.safetensors").string()}),
                        what);
  }
}

TEST_CASE("run: BERT (padded batch with token types) and BART (decoder_input_ids) outputs match transformers", "[cli]") {
  // the fixtures' reference files hold the inputs under the names transformers takes: run them as they are
  auto check = [&](const char* name, std::vector<std::string> inputs, std::vector<std::string> outputs, bool masked) {
    INFO(name);
    const fs::path dir = fs::path(data_dir) / "models" / name;
    io::safetensors_file ref(dir / "reference.safetensors");
    io::safetensors_writer w;
    for (const auto& n : inputs) {
      const auto* t = ref.find(n);
      REQUIRE(t != nullptr);
      tensor<std::int64_t, 2> v({t->extents[0], t->extents[1]});
      std::memcpy(v.data(), ref.tensor_data(*t), static_cast<std::size_t>(v.size()) * 8);
      w.add(n, v);
    }
    const fs::path in = scratch_dir() / (std::string(name) + "_run_inputs.safetensors");
    const fs::path out = scratch_dir() / (std::string(name) + "_run_outputs.safetensors");
    w.write(in);
    const auto r = tessera_cli({"run", "-m", dir.string(), "--inputs", in.string(), "--outputs", out.string()});
    INFO(r.err);
    REQUIRE(r.rc == 0);
    io::safetensors_file got(out);
    std::vector<std::int64_t> mask;
    if (masked) {
      const auto* m = ref.find("attention_mask");
      mask.resize(static_cast<std::size_t>(m->numel));
      std::memcpy(mask.data(), ref.tensor_data(*m), mask.size() * 8);
    }
    for (const auto& n : outputs) {
      INFO(n);
      const auto* a = got.find(n);
      const auto* b = ref.find(n);
      REQUIRE(a != nullptr);
      REQUIRE(a->extents == b->extents);
      const auto* x = reinterpret_cast<const float*>(got.tensor_data(*a));
      const auto* y = reinterpret_cast<const float*>(ref.tensor_data(*b));
      const index_t inner = b->extents.back(), rows = b->numel / inner;
      double e = 0, m = 0;
      for (index_t i = 0; i < rows; ++i) {
        if (masked && b->extents.size() == 3 && mask[static_cast<std::size_t>(i)] == 0) continue;  // padded position
        for (index_t j = 0; j < inner; ++j) {
          e = std::max(e, std::abs(static_cast<double>(x[i * inner + j]) - y[i * inner + j]));
          m = std::max(m, std::abs(static_cast<double>(y[i * inner + j])));
        }
      }
      CHECK(e / m <= 1e-4);
    }
  };
  check("bert", {"input_ids", "attention_mask", "token_type_ids"}, {"last_hidden_state", "pooler_output"}, true);
  check("bart", {"input_ids", "decoder_input_ids"}, {"logits", "encoder_last_hidden_state"}, false);
}

TEST_CASE("run: logits within 1e-4 of transformers, generate: the same greedy ids (decoders, Mamba, Mamba-2, Jamba)", "[cli]") {
  const std::pair<const char*, const char*> cases[] = {
      {"llama", "reference.safetensors"}, {"mistral", "reference.safetensors"}, {"qwen2", "reference.safetensors"},
      {"gpt2", "reference.safetensors"},  {"mamba", "reference.safetensors"},   {"mamba2", "reference_l21.safetensors"},
      {"jamba", "reference.safetensors"}};
  for (const auto& [name, ref_file] : cases) {
    SECTION(name) {
      const fs::path dir = fs::path(data_dir) / "models" / name;
      io::safetensors_file ref(dir / ref_file);
      const auto meta = read_json(dir / "meta.json")["references"][ref_file];

      const fs::path in = write_inputs(ref, name, 1, false, false);
      const fs::path out = scratch_dir() / (std::string(name) + "_outputs.safetensors");
      const auto r = tessera_cli({"run", "-m", dir.string(), "--inputs", in.string(), "--outputs", out.string()});
      INFO(r.err);
      REQUIRE(r.rc == 0);
      CHECK(r.out.empty());
      CHECK(logits_error(ref, out, 1) <= 1e-4);

      // a batch of 3 rows, input_ids as I32, with an all-ones attention mask
      const fs::path in3 = write_inputs(ref, std::string(name) + "_b3", 3, true, true);
      const auto r3 = tessera_cli({"run", "-m", dir.string(), "--inputs", in3.string(), "--outputs", out.string(), "-t", "2"});
      INFO(r3.err);
      REQUIRE(r3.rc == 0);
      CHECK(logits_error(ref, out, 3) <= 1e-4);

      const auto prompt = meta["input_ids"].get<std::vector<std::int64_t>>();
      const auto greedy = meta["greedy_ids"].get<std::vector<std::int64_t>>();
      const auto g = tessera_cli({"generate", "-m", dir.string(), "--tokens", join(prompt, ","), "--print-ids",
                                  "--ignore-eos", "-n", std::to_string(greedy.size()), "--temperature", "0"});
      INFO(g.err);
      REQUIRE(g.rc == 0);
      CHECK(trim(g.out) == join(greedy, " "));
    }
  }
}

// ---- tokenizers -------------------------------------------------------------------------------

namespace {
/// The test strings of a llama.cpp vocab test (.inp) and their ids (.out).
std::vector<std::pair<std::string, std::string>> vocab_cases(const fs::path& gguf) {
  const std::string inp = read_text(gguf.string() + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (std::size_t pos = 0; pos < inp.size();) {
    const std::size_t e = inp.find(sep, pos);
    if (e == std::string::npos) break;
    texts.push_back(inp.substr(pos, e - pos));
    pos = e + sep.size();
  }
  std::istringstream outs(read_text(gguf.string() + ".out"));
  std::vector<std::pair<std::string, std::string>> cases;
  std::string line;
  for (const auto& t : texts) {
    if (!std::getline(outs, line)) break;
    while (!line.empty() && line.front() == ' ') line.erase(line.begin());
    cases.emplace_back(t, line);
  }
  return cases;
}
}  // namespace

TEST_CASE("tokenize --no-special / detokenize on llama.cpp's GGUF vocabularies", "[cli]") {
  for (const char* file : {"ggml-vocab-gpt-2.gguf", "ggml-vocab-phi-3.gguf", "ggml-vocab-bert-bge.gguf"}) {
    SECTION(file) {
      const fs::path gguf = fs::path(data_dir) / "tokenizers" / file;
      const auto cases = vocab_cases(gguf);
      REQUIRE(cases.size() > 10);
      int checked = 0;
      for (const auto& [text, ids] : cases) {
        if (text.empty() || ids.empty()) continue;
        if (checked == 6) break;
        const fs::path f = scratch_dir() / "tokenize_input.txt";
        std::ofstream(f, std::ios::binary) << text;
        const auto r = tessera_cli({"tokenize", "-m", gguf.string(), "--file", f.string(), "--no-special"});
        INFO(file << ": '" << text << "'\n" << r.err);
        REQUIRE(r.rc == 0);
        CHECK(trim(r.out) == ids);
        ++checked;
      }
      CHECK(checked == 6);
    }
  }
  // detokenize inverts tokenize for the byte-level vocabulary
  const fs::path gpt2 = fs::path(data_dir) / "tokenizers" / "ggml-vocab-gpt-2.gguf";
  const auto t = tessera_cli({"tokenize", "-m", gpt2.string(), "--text", " Hello, world! 🦙 ½", "--no-special"});
  REQUIRE(t.rc == 0);
  const auto d = tessera_cli({"detokenize", "-m", gpt2.string(), "--tokens", trim(t.out)});
  REQUIRE(d.rc == 0);
  CHECK(trim(d.out) == " Hello, world! 🦙 ½");
}

TEST_CASE("tokenize / detokenize on Hugging Face tokenizer folders match transformers", "[cli]") {
  for (const char* name : {"spm_bpe_llama2", "bpe_bytelevel_llama3", "wordpiece_bert", "unigram_t5", "bpe_bytelevel_gpt2"}) {
    SECTION(name) {
      const fs::path dir = fs::path(data_dir) / "tokenizers_hf" / name;
      const auto cases = read_json(dir / "cases.json");
      int checked = 0;
      for (const auto& c : cases) {
        const auto text = c["text"].get<std::string>();
        if (text.empty() || text.find('\n') != std::string::npos) continue;
        if (checked == 3) break;
        const auto with = c["ids_with_special"].get<std::vector<std::int64_t>>();
        const auto without = c["ids_no_special"].get<std::vector<std::int64_t>>();
        const auto a = tessera_cli({"tokenize", "-m", dir.string(), "--text", text});
        const auto b = tessera_cli({"tokenize", "-m", dir.string(), "--text", text, "--no-special"});
        INFO(name << ": '" << text << "'\n" << a.err << b.err);
        REQUIRE(a.rc == 0);
        REQUIRE(b.rc == 0);
        CHECK(trim(a.out) == join(with, " "));
        CHECK(trim(b.out) == join(without, " "));
        if (!with.empty()) {
          const auto d = tessera_cli({"detokenize", "-m", dir.string(), "--tokens", join(with, ",")});
          REQUIRE(d.rc == 0);
          CHECK(trim(d.out) == trim(c["decoded_with_special"].get<std::string>()));
        }
        ++checked;
      }
      CHECK(checked == 3);
    }
  }
}

// ---- bad input: a clear message and a non-zero exit, never a crash -----------------------------

namespace {
/// A GGUF v3 file with only general.architecture = `arch` (no tensors).
fs::path write_gguf_with_arch(const std::string& arch) {
  const fs::path p = scratch_dir() / ("arch_" + arch + ".gguf");
  std::ofstream f(p, std::ios::binary);
  auto u32 = [&](std::uint32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
  auto u64 = [&](std::uint64_t v) { f.write(reinterpret_cast<const char*>(&v), 8); };
  auto str = [&](const std::string& s) {
    u64(s.size());
    f.write(s.data(), static_cast<std::streamsize>(s.size()));
  };
  f.write("GGUF", 4);
  u32(3);  // version
  u64(0);  // tensors
  u64(1);  // metadata entries
  str("general.architecture");
  u32(8);  // string
  str(arch);
  return p;
}
}  // namespace

TEST_CASE("bad input: clear errors and non-zero exits", "[cli]") {
  const std::string llama = (fs::path(data_dir) / "models" / "llama").string();
  check_clean_failure(tessera_cli({"generate", "-m", "/no/such/model", "-n", "4"}), "does not exist");
  check_clean_failure(tessera_cli({"info", "-m", "/no/such/model.gguf"}), "does not exist");

  const fs::path no_weights = scratch_dir() / "config_only";
  fs::create_directories(no_weights);
  fs::copy_file(fs::path(llama) / "config.json", no_weights / "config.json", fs::copy_options::overwrite_existing);
  check_clean_failure(tessera_cli({"generate", "-m", no_weights.string(), "--tokens", "1,2", "--print-ids", "-n", "2"}),
                      "config_only");
  check_clean_failure(tessera_cli({"run", "-m", no_weights.string(), "--inputs", "x", "--outputs", "y"}), "");

  const auto unsupported = write_gguf_with_arch("frobnicator");
  check_clean_failure(tessera_cli({"generate", "-m", unsupported.string(), "--tokens", "1", "--print-ids", "-n", "2"}),
                      "frobnicator");

  // token ids >= vocab (512 for the bundled model; 160 for the llama fixture)
  check_clean_failure(tessera_cli({"generate", "--tokens", "1,512", "--print-ids", "-n", "2"}), "512");
  check_clean_failure(tessera_cli({"generate", "-m", llama, "--tokens", "3,160", "--print-ids", "-n", "2"}), "160");
  check_clean_failure(tessera_cli({"detokenize", "--tokens", "1,99999"}), "99999");
  // malformed / empty id lists, empty prompts
  check_clean_failure(tessera_cli({"generate", "--tokens", "1,x", "--print-ids"}), "'x'");
  check_clean_failure(tessera_cli({"generate", "--tokens", "", "--print-ids"}), "empty");
  check_clean_failure(tessera_cli({"generate", "--tokens", " , ", "--print-ids"}), "empty");
  check_clean_failure(tessera_cli({"generate", "--tokens", "-3", "--print-ids"}), "-3");
  const std::string gpt2_vocab = (fs::path(data_dir) / "tokenizers" / "ggml-vocab-gpt-2.gguf").string();
  check_clean_failure(tessera_cli({"generate", "-m", gpt2_vocab, "-p", ""}), "prompt is empty");
  // text output without a tokenizer (the fixture folders have none) says how to do without
  check_clean_failure(tessera_cli({"generate", "-m", llama, "--tokens", "1,2", "-n", "2"}), "--print-ids");
  // a prompt longer than the context (llama fixture: max_position 256)
  std::string long_prompt = "5";
  for (int i = 0; i < 300; ++i) long_prompt += ",7";
  check_clean_failure(tessera_cli({"generate", "-m", llama, "--tokens", long_prompt, "--print-ids", "-n", "2"}), "context");
  check_clean_failure(tessera_cli({"bench", "-m", llama, "-p", "250", "-n", "10"}), "context");
  // sampling parameters out of range name themselves
  check_clean_failure(tessera_cli({"generate", "--temp", "-1", "-n", "2"}), "temperature");
  check_clean_failure(tessera_cli({"generate", "--top-p", "0", "-n", "2"}), "top_p");
  check_clean_failure(tessera_cli({"generate", "--top-p", "1.5", "-n", "2"}), "top_p");
  check_clean_failure(tessera_cli({"generate", "--min-p", "2", "-n", "2"}), "min_p");
  check_clean_failure(tessera_cli({"generate", "--top-k", "-5", "-n", "2"}), "top_k");
  check_clean_failure(tessera_cli({"generate", "--repeat-penalty", "0", "-n", "2"}), "repetition_penalty");
  // the command line itself
  check_clean_failure(tessera_cli({"generate", "--prompt", "a", "--tokens", "1"}), "not both");
  check_clean_failure(tessera_cli({"tokenize"}), "--text");
  const auto none = tessera_cli({});
  CHECK(none.rc != 0);
  const auto unknown = tessera_cli({"frobnicate"});
  CHECK(unknown.rc != 0);
  CHECK(!unknown.err.empty());
  const auto bad_threads = tessera_cli({"generate", "-t", "0", "-n", "2"});
  CHECK(bad_threads.rc != 0);
  CHECK(bad_threads.rc < 128);
}

TEST_CASE("run: bad inputs files are refused cleanly", "[cli]") {
  const std::string llama = (fs::path(data_dir) / "models" / "llama").string();
  const fs::path out = scratch_dir() / "bad_outputs.safetensors";
  check_clean_failure(tessera_cli({"run", "-m", llama, "--inputs", "/no/such/inputs.safetensors", "--outputs", out.string()}),
                      "inputs.safetensors");
  auto write = [&](const std::string& file, auto fill) {
    io::safetensors_writer w;
    fill(w);
    const fs::path p = scratch_dir() / file;
    w.write(p);
    return p.string();
  };
  const auto no_ids = write("no_ids.safetensors", [](io::safetensors_writer& w) {
    tensor<std::int64_t, 2> m({1, 3});
    for (auto& x : m) x = 1;
    w.add("attention_mask", m);
  });
  check_clean_failure(tessera_cli({"run", "-m", llama, "--inputs", no_ids, "--outputs", out.string()}), "input_ids");
  const auto big_id = write("big_id.safetensors", [](io::safetensors_writer& w) {
    tensor<std::int64_t, 2> ids({1, 3});
    ids(0, 0) = 4;
    ids(0, 1) = 1000;
    ids(0, 2) = 5;
    w.add("input_ids", ids);
  });
  check_clean_failure(tessera_cli({"run", "-m", llama, "--inputs", big_id, "--outputs", out.string()}), "1000");
  const auto padded = write("bad_mask.safetensors", [](io::safetensors_writer& w) {  // padding is fine, a 2 is not
    tensor<std::int64_t, 2> ids({1, 3}), m({1, 3});
    for (auto& x : ids) x = 7;
    m(0, 0) = 1;
    m(0, 1) = 1;
    m(0, 2) = 2;
    w.add("input_ids", ids);
    w.add("attention_mask", m);
  });
  check_clean_failure(tessera_cli({"run", "-m", llama, "--inputs", padded, "--outputs", out.string()}), "attention_mask");
  const auto floats = write("float_ids.safetensors", [](io::safetensors_writer& w) {
    tensor<float, 2> ids({1, 3});
    for (auto& x : ids) x = 1.f;
    w.add("input_ids", ids);
  });
  check_clean_failure(tessera_cli({"run", "-m", llama, "--inputs", floats, "--outputs", out.string()}), "F32");
}
