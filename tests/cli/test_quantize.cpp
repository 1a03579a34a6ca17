// `tessera quantize`, run as a user runs it: the file it writes (metadata, llama.cpp's choice of
// type per tensor, blocks equal to core/blocks.hpp's quantizers), its summary, and bad input.
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <tessera/core/blocks.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/io/gguf.hpp>
#include <tessera/io/gguf_quants.hpp>
#include <tessera/io/gguf_writer.hpp>

using namespace tessera;
using io::ggml_type;
namespace fs = std::filesystem;

namespace {

const fs::path stories = fs::path(TESSERA_SOURCE_DIR) / "examples" / "models" / "stories260K.gguf";

/// A fresh folder for one test case's files (removed with its contents at the end).
struct scratch {
  fs::path dir;
  explicit scratch(const std::string& tag) {
    dir = fs::path(TESSERA_BINARY_DIR) / "tests" / "quantize_scratch" / tag;
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  fs::path operator/(const std::string& name) const { return dir / name; }
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct run_result {
  int rc = -1;
  std::string out, err;
};

/// `tessera quantize args...` with stdout and stderr captured in files of `s`.
run_result quantize_cli(const scratch& s, const std::vector<std::string>& args) {
  std::string cmd = "'" TESSERA_CLI_BINARY "' quantize";
  for (const auto& a : args) cmd += " '" + a + "'";  // (no quotes in the arguments used here)
  cmd += " >'" + (s / "stdout.txt").string() + "' 2>'" + (s / "stderr.txt").string() + "'";
  const int status = std::system(cmd.c_str());
  run_result r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(s / "stdout.txt");
  r.err = slurp(s / "stderr.txt");
  return r;
}

std::vector<float> as_f32(const io::gguf_file& f, const io::gguf_tensor_info& t) {
  std::vector<float> v(static_cast<std::size_t>(t.numel));
  io::dequantize(t.type, f.tensor_data(t), v.data(), t.numel);
  return v;
}

/// core/blocks.hpp's quantize() of x, as the bytes of a tensor of type B.
template <class B>
std::string reference_blocks(const std::vector<float>& x) {
  std::vector<B> b(x.size() / B::block_size);
  quantize(x.data(), b.data(), static_cast<index_t>(b.size()));
  return std::string(reinterpret_cast<const char*>(b.data()), b.size() * sizeof(B));
}

std::string bytes_of(const io::gguf_file& f, const io::gguf_tensor_info& t) {
  return std::string(reinterpret_cast<const char*>(f.tensor_data(t)), t.nbytes);
}

/// A random F32 model of architecture `arch` with u32 metadata `kv` and tensors (name, ne). Only
/// the names, shapes and metadata matter to the type rules.
void write_model(const fs::path& path, const std::string& arch, const std::vector<std::pair<std::string, std::uint32_t>>& kv,
                 const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& tensors) {
  io::gguf_writer w(path);
  w.set_string("general.architecture", arch);
  for (const auto& [key, value] : kv) w.set_u32(arch + "." + key, value);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.f, 0.02f);
  for (const auto& t : tensors) w.add_tensor(t.first, ggml_type::f32, t.second);
  for (const auto& t : tensors) {
    std::int64_t n = 1;
    for (const std::int64_t d : t.second) n *= d;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = normal(rng);
    w.write_tensor_data(t.first, std::as_bytes(std::span(v)));
  }
  w.finish();
}

/// A llama-named model: n_layer layers of attention and SwiGLU matrices with rows of `row`
/// elements (2 rows each) and ffn_down rows of `down_row`, norms, token_embd and (when
/// `with_output`) output.weight.
void write_llama_like(const fs::path& path, int n_layer, bool with_output, std::int64_t row = 256, std::int64_t down_row = 256,
                      std::vector<std::pair<std::string, std::uint32_t>> kv = {}) {
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> tensors = {{"token_embd.weight", {row, 2}},
                                                                            {"output_norm.weight", {row}}};
  if (with_output) tensors.push_back({"output.weight", {row, 2}});
  for (int i = 0; i < n_layer; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"}) tensors.push_back({b + m + ".weight", {row, 2}});
    tensors.push_back({b + "ffn_down.weight", {down_row, 2}});
    tensors.push_back({b + "attn_norm.weight", {row}});
    tensors.push_back({b + "ffn_norm.weight", {row}});
  }
  kv.emplace_back("block_count", static_cast<std::uint32_t>(n_layer));
  write_model(path, "llama", kv, tensors);
}

/// The type of each tensor of `path`, by name.
std::map<std::string, ggml_type> types_of(const fs::path& path) {
  const io::gguf_file f(path);
  std::map<std::string, ggml_type> m;
  for (const auto& t : f.tensors()) m[t.name] = t.type;
  return m;
}

}  // namespace

TEST_CASE("quantize: stories260K as Q8_0 keeps the metadata and writes ggml's reference blocks", "[cli][quantize]") {
  scratch s("q8_0");
  const auto r = quantize_cli(s, {stories.string(), (s / "q8.gguf").string(), "--type", "q8_0"});
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("Q8_0 (general.file_type 7), 48 tensors") != std::string::npos);
  CHECK(r.out.find("Q8_0     32 tensors") != std::string::npos);
  CHECK(r.out.find("F32      11 tensors") != std::string::npos);
  CHECK(r.out.find("F16       5 tensors") != std::string::npos);  // ffn_down: rows of 172
  CHECK(r.err == "tessera: note: 5 tensors are F16 because their rows do not divide into Q8_0 blocks; llama-quantize refuses such a model\n");

  const io::gguf_file in(stories), out(s / "q8.gguf");
  // metadata: every key of IN with its value, in order; then the quantization version and the
  // file type moved to the end, as llama.cpp's gguf_set_val_u32 leaves them
  const std::size_t added = (in.contains("general.quantization_version") ? 0 : 1) + (in.contains("general.file_type") ? 0 : 1);
  REQUIRE(out.metadata().size() == in.metadata().size() + added);
  std::size_t k = 0;
  for (const auto& kv : in.metadata()) {
    if (kv.first == "general.file_type" || kv.first == "general.quantization_version") continue;
    INFO(kv.first);
    CHECK(out.metadata()[k].first == kv.first);
    CHECK(out.metadata()[k].second.type_name() == kv.second.type_name());
    CHECK(out.metadata()[k].second.strings == kv.second.strings);
    CHECK(out.metadata()[k].second.floats == kv.second.floats);
    CHECK(out.metadata()[k].second.ints == kv.second.ints);
    CHECK(out.metadata()[k].second.s == kv.second.s);
    CHECK(out.metadata()[k].second.i == kv.second.i);
    ++k;
  }
  CHECK(out.metadata()[k].first == "general.quantization_version");
  CHECK(out.get_int("general.quantization_version") == 2);
  CHECK(out.metadata()[k + 1].first == "general.file_type");
  CHECK(out.at("general.file_type").type == io::gguf_type::u32);
  CHECK(out.get_int("general.file_type") == 7);

  // tensors: llama.cpp's order (outside the layers first, then layer by layer, by name)
  REQUIRE(out.tensors().size() == 48);
  CHECK(out.tensors()[0].name == "output.weight");
  CHECK(out.tensors()[1].name == "output_norm.weight");
  CHECK(out.tensors()[2].name == "token_embd.weight");
  CHECK(out.tensors()[3].name == "blk.0.attn_k.weight");
  CHECK(out.tensors()[47].name == "blk.4.ffn_up.weight");
  for (const auto& t : out.tensors()) {
    INFO(t.name);
    const auto* src = in.find_tensor(t.name);
    REQUIRE(src != nullptr);
    CHECK(t.ne == src->ne);
    const std::vector<float> x = as_f32(in, *src);
    if (t.ne.size() == 1) {
      CHECK(t.type == ggml_type::f32);
      CHECK(bytes_of(out, t) == bytes_of(in, *src));
    } else if (t.name.find("ffn_down") != std::string::npos) {
      CHECK(t.type == ggml_type::f16);  // 172 % 32 != 0: F16 (llama.cpp refuses the model here)
      std::string h;
      for (float v : x) {
        const std::uint16_t b = tessera::detail::float_to_half_bits(v);
        h.append(reinterpret_cast<const char*>(&b), 2);
      }
      CHECK(bytes_of(out, t) == h);
    } else {
      CHECK(t.type == ggml_type::q8_0);
      CHECK(bytes_of(out, t) == reference_blocks<block_q8_0>(x));
    }
  }
}

/// stories260K with its SwiGLU hidden size widened from 172 to 256 by zeros, as
/// tools/fixtures/make_quantized_stories.sh does before it runs llama-quantize.
void write_widened_stories(const fs::path& path) {
  const io::gguf_file in(stories);
  const std::int64_t old_ff = in.get_int("llama.feed_forward_length"), new_ff = 256;
  io::gguf_writer w(path);
  for (const auto& kv : in.metadata()) w.set(kv.first, kv.second);
  w.set_u32("llama.feed_forward_length", static_cast<std::uint32_t>(new_ff));
  const auto widened = [&](const io::gguf_tensor_info& t) {
    const bool gate_up = t.name.find("ffn_gate") != std::string::npos || t.name.find("ffn_up") != std::string::npos;
    std::vector<std::int64_t> ne = t.ne;
    if (gate_up) ne[1] = new_ff;                                         // (ff, d_model): zero rows
    else if (t.name.find("ffn_down") != std::string::npos) ne[0] = new_ff;  // (d_model, ff): zero columns
    return ne;
  };
  for (const auto& t : in.tensors()) w.add_tensor(t.name, t.type, widened(t));
  for (const auto& t : in.tensors()) {
    const std::vector<std::int64_t> ne = widened(t);
    const auto* x = reinterpret_cast<const float*>(in.tensor_data(t));
    std::vector<float> v(static_cast<std::size_t>(ne[0] * (ne.size() > 1 ? ne[1] : 1)), 0.f);
    const std::int64_t rows = t.numel / t.ne[0];
    for (std::int64_t r = 0; r < rows; ++r) std::copy(x + r * t.ne[0], x + (r + 1) * t.ne[0], v.begin() + r * ne[0]);
    w.write_tensor_data(t.name, std::as_bytes(std::span(v)));
  }
  w.finish();
  REQUIRE(old_ff == 172);
}

TEST_CASE("quantize: the widened stories260K comes out as llama-quantize's own files, byte for byte", "[cli][quantize]") {
  // tests/data/gguf/stories260K-*.gguf: written by llama.cpp c392e5094's llama-quantize
  scratch s("llama_files");
  write_widened_stories(s / "widened.gguf");
  for (const std::string type : {"Q8_0", "Q4_0", "Q4_K_M"}) {
    INFO(type);
    const auto r = quantize_cli(s, {(s / "widened.gguf").string(), (s / "out.gguf").string(), "--type", type});
    INFO(r.err);
    REQUIRE(r.rc == 0);
    CHECK(slurp(s / "out.gguf") == slurp(fs::path(TESSERA_TEST_DATA_DIR) / "gguf" / ("stories260K-" + type + ".gguf")));
  }
}

TEST_CASE("quantize: stories260K as Q4_K_M takes llama.cpp's fallbacks for rows of 64 and 172", "[cli][quantize]") {
  scratch s("q4_k_m");
  const auto r = quantize_cli(s, {stories.string(), (s / "q4km.gguf").string(), "--type", "Q4_K_M", "-t", "2", "-v"});
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("36 tensors took a fallback type") != std::string::npos);
  CHECK(r.err.find("blk.2.attn_v.weight                  F32    -> Q8_0   (fallback: row length)") != std::string::npos);
  const io::gguf_file in(stories), out(s / "q4km.gguf");
  for (const auto& t : out.tensors()) {
    INFO(t.name);
    const bool more_bits = t.name.rfind("blk.2.", 0) == 0 || t.name.rfind("blk.4.", 0) == 0;  // use_more_bits(i, 5)
    ggml_type expected = ggml_type::q5_0;  // Q4_K's fallback for rows of 64
    if (t.ne.size() == 1) expected = ggml_type::f32;
    else if (t.name == "output.weight") expected = ggml_type::q8_0;  // rows not a multiple of 256: Q8_0
    else if (t.name.find("ffn_down") != std::string::npos) expected = ggml_type::f16;  // Q6_K/Q4_K → Q8_0/Q5_0 → F16
    else if (t.name.find("attn_v") != std::string::npos && more_bits) expected = ggml_type::q8_0;  // Q6_K → Q8_0
    CHECK(t.type == expected);
    if (t.type == ggml_type::q5_0) CHECK(bytes_of(out, t) == reference_blocks<block_q5_0>(as_f32(in, *in.find_tensor(t.name))));
  }
}

TEST_CASE("quantize: the K-quant presets choose llama.cpp's type per tensor", "[cli][quantize]") {
  scratch s("k_rules");
  // 12 layers: use_more_bits is true for layers 0, 3, 6, 9, 10, 11
  write_llama_like(s / "tied.gguf", 12, false);
  write_llama_like(s / "untied.gguf", 12, true);
  const auto more_bits = [](int i) { return i == 0 || i == 3 || i == 6 || i == 9 || i == 10 || i == 11; };
  const auto layer_of = [](const std::string& name) { return name.rfind("blk.", 0) == 0 ? std::stoi(name.substr(4)) : -1; };

  struct preset_case {
    const char* name;
    ggml_type base;
  };
  for (const preset_case p : {preset_case{"Q4_K_M", ggml_type::q4_k}, preset_case{"Q5_K_M", ggml_type::q5_k},
                              preset_case{"Q4_K_S", ggml_type::q4_k}, preset_case{"Q5_K_S", ggml_type::q5_k},
                              preset_case{"Q6_K", ggml_type::q6_k}, preset_case{"Q4_0", ggml_type::q4_0},
                              preset_case{"Q8_0", ggml_type::q8_0}, preset_case{"F16", ggml_type::f16}}) {
    for (const char* model : {"tied", "untied"}) {
      INFO(p.name << " " << model);
      const auto r = quantize_cli(s, {(s / (std::string(model) + ".gguf")).string(), (s / "out.gguf").string(), "--type", p.name});
      INFO(r.err);
      REQUIRE(r.rc == 0);
      const std::string preset = p.name;
      const bool k_m = preset == "Q4_K_M" || preset == "Q5_K_M";
      for (const auto& [name, type] : types_of(s / "out.gguf")) {
        INFO(name);
        const int i = layer_of(name);
        ggml_type expected = p.base;
        if (name.find("_norm") != std::string::npos) expected = ggml_type::f32;
        else if (p.base == ggml_type::f16) expected = ggml_type::f16;  // F16: no per-tensor rules
        else if (name == "output.weight" || (name == "token_embd.weight" && std::string(model) == "tied"))
          expected = p.base == ggml_type::q8_0 ? ggml_type::q8_0 : ggml_type::q6_k;
        else if (name.find("attn_v") != std::string::npos && k_m && more_bits(i)) expected = ggml_type::q6_k;
        else if (name.find("ffn_down") != std::string::npos && k_m && more_bits(i)) expected = ggml_type::q6_k;
        else if (name.find("attn_v") != std::string::npos && preset == "Q4_K_S" && i < 4) expected = ggml_type::q5_k;
        else if (name.find("ffn_down") != std::string::npos && preset == "Q4_K_S" && i < 12 / 8) expected = ggml_type::q5_k;
        CHECK(type == expected);
      }
    }
  }
}

TEST_CASE("quantize: rows no block divides fall back as in llama.cpp, then to F16", "[cli][quantize]") {
  scratch s("fallback");
  write_llama_like(s / "odd.gguf", 2, true, 256, 96);  // ffn_down rows of 96: Q4_K no, Q5_0 yes
  auto r = quantize_cli(s, {(s / "odd.gguf").string(), (s / "q4km.gguf").string(), "--type", "Q4_K_M"});
  REQUIRE(r.rc == 0);
  // n_layer 2: use_more_bits(i, 2) is true for layer 1 only (i >= 7 * 2 / 8)
  CHECK(types_of(s / "q4km.gguf")["blk.0.ffn_down.weight"] == ggml_type::q5_0);  // Q4_K → Q5_0
  CHECK(types_of(s / "q4km.gguf")["blk.1.ffn_down.weight"] == ggml_type::q8_0);  // Q6_K → Q8_0
  r = quantize_cli(s, {(s / "odd.gguf").string(), (s / "q5km.gguf").string(), "--type", "Q5_K_S"});
  REQUIRE(r.rc == 0);
  CHECK(types_of(s / "q5km.gguf")["blk.0.ffn_down.weight"] == ggml_type::q5_1);  // Q5_K → Q5_1

  write_llama_like(s / "odder.gguf", 2, true, 256, 48);  // rows of 48: only F16 fits
  r = quantize_cli(s, {(s / "odder.gguf").string(), (s / "q4_0.gguf").string(), "--type", "Q4_0"});
  REQUIRE(r.rc == 0);
  CHECK(types_of(s / "q4_0.gguf")["blk.0.ffn_down.weight"] == ggml_type::f16);
  CHECK(types_of(s / "q4_0.gguf")["blk.0.ffn_up.weight"] == ggml_type::q4_0);
}

TEST_CASE("quantize: a quantized input is dequantized first, F32 gives its values back", "[cli][quantize]") {
  scratch s("requantize");
  REQUIRE(quantize_cli(s, {stories.string(), (s / "q4_0.gguf").string(), "--type", "Q4_0"}).rc == 0);
  const auto r = quantize_cli(s, {(s / "q4_0.gguf").string(), (s / "f32.gguf").string(), "--type", "F32"});
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const io::gguf_file q(s / "q4_0.gguf"), f(s / "f32.gguf");
  CHECK(f.get_int("general.file_type") == 0);
  for (const auto& t : f.tensors()) {
    INFO(t.name);
    CHECK(t.type == ggml_type::f32);
    CHECK(as_f32(f, t) == as_f32(q, *q.find_tensor(t.name)));
  }
  // BF16 of the F32 file: round to nearest even of each value
  REQUIRE(quantize_cli(s, {(s / "f32.gguf").string(), (s / "bf16.gguf").string(), "--type", "bf16"}).rc == 0);
  const io::gguf_file b(s / "bf16.gguf");
  const auto& t = *b.find_tensor("blk.0.attn_q.weight");
  CHECK(t.type == ggml_type::bf16);
  const std::vector<float> x = as_f32(f, *f.find_tensor(t.name)), y = as_f32(b, t);
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(y[i] == tessera::detail::bf16_bits_to_float(tessera::detail::float_to_bf16_bits(x[i])));
}

TEST_CASE("quantize: bad input is one message and status 1, usage mistakes status 2, no file written", "[cli][quantize]") {
  scratch s("bad");
  const std::string out = (s / "out.gguf").string();
  auto r = quantize_cli(s, {stories.string(), out, "--type", "Q3_K_M"});
  CHECK(r.rc == 1);
  CHECK(r.err.find("unknown quantization type 'Q3_K_M' (one of: Q4_0, Q4_1") != std::string::npos);
  r = quantize_cli(s, {(s / "missing.gguf").string(), out, "--type", "Q8_0"});
  CHECK(r.rc == 1);
  CHECK(r.err.find((s / "missing.gguf").string()) != std::string::npos);
  r = quantize_cli(s, {(fs::path(TESSERA_SOURCE_DIR) / "README.md").string(), out, "--type", "Q8_0"});
  CHECK(r.rc == 1);
  CHECK(r.err.find("not a GGUF file") != std::string::npos);
  const std::string unwritable = (s / "no_such_folder" / "out.gguf").string();
  r = quantize_cli(s, {stories.string(), unwritable, "--type", "Q8_0"});
  CHECK(r.rc == 1);
  CHECK(r.err.find(unwritable + ": cannot create the file") != std::string::npos);
  CHECK(r.out.empty());
  CHECK_FALSE(fs::exists(out));

  CHECK(quantize_cli(s, {stories.string(), out}).rc == 2);  // no --type
  CHECK(quantize_cli(s, {stories.string(), "--type", "Q8_0"}).rc == 2);  // no OUT
  CHECK(quantize_cli(s, {stories.string(), out, "--type", "Q8_0", "-t", "0"}).rc == 2);
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("quantize: llama.cpp's special cases - a 70B Llama, 8 experts, Falcon", "[cli][quantize]") {
  scratch s("special");
  const auto layer_of = [](const std::string& name) { return name.rfind("blk.", 0) == 0 ? std::stoi(name.substr(4)) : -1; };
  const auto quantize_q4_k_m = [&](const std::string& model) {
    const auto r = quantize_cli(s, {(s / model).string(), (s / "out.gguf").string(), "--type", "Q4_K_M"});
    INFO(r.err);
    REQUIRE(r.rc == 0);
    return types_of(s / "out.gguf");
  };

  // 80 layers with GQA: LLM_TYPE_70B, whose attn_v gets Q5_K where it would get Q4_K
  write_llama_like(s / "70b.gguf", 80, true, 256, 256, {{"attention.head_count", 64}, {"attention.head_count_kv", 8}});
  for (const auto& [name, type] : quantize_q4_k_m("70b.gguf")) {
    INFO(name);
    const int i = layer_of(name);
    const bool more_bits = i < 10 || i >= 70 || (i - 10) % 3 == 2;  // use_more_bits(i, 80)
    if (name.find("attn_v") != std::string::npos) CHECK(type == (more_bits ? ggml_type::q6_k : ggml_type::q5_k));
    else if (name.find("ffn_down") != std::string::npos) CHECK(type == (more_bits ? ggml_type::q6_k : ggml_type::q4_k));
  }

  // 8 experts: attn_v and attn_k Q8_0, attn_output Q5_K, ffn_down_exps by the layer in its name;
  // the router (ffn_gate_inp) is not quantized
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> moe = {{"token_embd.weight", {256, 2}}, {"output.weight", {256, 2}}};
  for (int i : {3, 0, 2, 1}) {  // experts' layers need not come in order
    const std::string b = "blk." + std::to_string(i) + ".";
    for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_inp"}) moe.push_back({b + m + ".weight", {256, 2}});
    for (const char* m : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}) moe.push_back({b + m + ".weight", {256, 2, 8}});
  }
  write_model(s / "moe.gguf", "llama", {{"block_count", 4}, {"expert_count", 8}}, moe);
  for (const auto& [name, type] : quantize_q4_k_m("moe.gguf")) {
    INFO(name);
    const int i = layer_of(name);
    ggml_type expected = ggml_type::q4_k;
    if (name == "output.weight") expected = ggml_type::q6_k;
    else if (name.find("attn_v") != std::string::npos || name.find("attn_k") != std::string::npos) expected = ggml_type::q8_0;
    else if (name.find("attn_output") != std::string::npos) expected = ggml_type::q5_k;
    else if (name.find("ffn_gate_inp") != std::string::npos) expected = ggml_type::f32;
    else if (name.find("ffn_down_exps") != std::string::npos && (i == 2 || i == 3)) expected = ggml_type::q6_k;  // use_more_bits(i, 4)
    CHECK(type == expected);
  }

  // Falcon: output Q8_0, attn_qkv Q5_K, ffn_down Q5_K where use_more_bits holds
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> falcon = {{"token_embd.weight", {256, 2}}, {"output.weight", {256, 2}}};
  for (int i = 0; i < 4; ++i)
    for (const char* m : {"attn_qkv", "attn_output", "ffn_up", "ffn_down"}) falcon.push_back({"blk." + std::to_string(i) + "." + m + ".weight", {256, 2}});
  write_model(s / "falcon.gguf", "falcon", {{"block_count", 4}}, falcon);
  for (const auto& [name, type] : quantize_q4_k_m("falcon.gguf")) {
    INFO(name);
    const int i = layer_of(name);
    ggml_type expected = ggml_type::q4_k;
    if (name == "output.weight") expected = ggml_type::q8_0;
    else if (name.find("attn_qkv") != std::string::npos) expected = ggml_type::q5_k;
    else if (name.find("ffn_down") != std::string::npos && (i == 2 || i == 3)) expected = ggml_type::q5_k;
    CHECK(type == expected);
  }
}
