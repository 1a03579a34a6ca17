// tools/cli/quantize.cpp: `tessera quantize IN OUT.gguf --type TYPE`, llama-quantize's presets
// (docs/cli.md): every key/value copied, each weight matrix re-encoded with core/blocks.hpp's
// reference quantizers, the type of each tensor chosen by llama.cpp's rules (src/llama-quant.cpp
// at c392e5094, llama_tensor_get_type; without an importance matrix).
#include "cli.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tessera/core/blocks.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/io/gguf.hpp>
#include <tessera/io/gguf_quants.hpp>
#include <tessera/io/gguf_writer.hpp>

namespace tessera::cli {

namespace {

using io::ggml_type;

/// One of llama-quantize's presets: its name, llama.cpp's LLAMA_FTYPE (general.file_type) and
/// the ggml type of the weight matrices it starts from.
struct preset {
  std::string_view name;
  std::uint32_t ftype;
  ggml_type type;
};

// llama.h's LLAMA_FTYPE_* values of the presets below.
enum : std::uint32_t {
  ftype_all_f32 = 0, ftype_f16 = 1, ftype_q4_0 = 2, ftype_q4_1 = 3, ftype_q8_0 = 7, ftype_q5_0 = 8,
  ftype_q5_1 = 9, ftype_q4_k_s = 14, ftype_q4_k_m = 15, ftype_q5_k_s = 16, ftype_q5_k_m = 17,
  ftype_q6_k = 18, ftype_bf16 = 32,
};

constexpr preset presets[] = {
    {"Q4_0", ftype_q4_0, ggml_type::q4_0},     {"Q4_1", ftype_q4_1, ggml_type::q4_1},
    {"Q5_0", ftype_q5_0, ggml_type::q5_0},     {"Q5_1", ftype_q5_1, ggml_type::q5_1},
    {"Q4_K", ftype_q4_k_m, ggml_type::q4_k},   {"Q4_K_S", ftype_q4_k_s, ggml_type::q4_k},
    {"Q4_K_M", ftype_q4_k_m, ggml_type::q4_k}, {"Q5_K", ftype_q5_k_m, ggml_type::q5_k},
    {"Q5_K_S", ftype_q5_k_s, ggml_type::q5_k}, {"Q5_K_M", ftype_q5_k_m, ggml_type::q5_k},
    {"Q6_K", ftype_q6_k, ggml_type::q6_k},     {"Q8_0", ftype_q8_0, ggml_type::q8_0},
    {"F16", ftype_f16, ggml_type::f16},        {"BF16", ftype_bf16, ggml_type::bf16},
    {"F32", ftype_all_f32, ggml_type::f32},
};

/// The preset named `name` (any case, as llama-quantize); range_error listing them otherwise.
preset find_preset(const std::string& name) {
  std::string upper = name;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const preset& p : presets)
    if (p.name == upper) return p;
  std::string names;
  for (const preset& p : presets) names += (names.empty() ? "" : ", ") + std::string(p.name);
  throw range_error("unknown quantization type '" + name + "' (one of: " + names + ")");
}

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

std::int64_t block_of(ggml_type t) { return io::ggml_traits(t).block; }

/// ggml_n_dims: the rank without trailing dims of 1 (at least 1).
int n_dims(const io::gguf_tensor_info& t) {
  int n = static_cast<int>(t.ne.size());
  while (n > 1 && t.ne[static_cast<std::size_t>(n - 1)] == 1) --n;
  return std::max(n, 1);
}

/// llama-quant.cpp's llama_model_quantize_impl: which tensors are quantized at all (the rest
/// are copied as they are). Weights only, of 2 or more dims; no norms, MoE router, positional
/// or token-type embeddings, Mamba conv1d, RWKV time-mix or T5 relative-bias tensors.
bool is_quantizable(const io::gguf_tensor_info& t) {
  const std::string_view name = t.name;
  if (name.size() < 6 || name.substr(name.size() - 6) != "weight") return false;
  if (n_dims(t) < 2) return false;
  for (std::string_view skip : {"_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d.weight", "time_mix_first.weight",
                                "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_decay_w1.weight",
                                "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight"})
    if (contains(name, skip)) return false;
  return name != "position_embd.weight" && name != "token_types.weight";
}

/// What llama_tensor_get_type counts across the model (quantize_state_impl).
struct quant_state {
  std::uint32_t ftype = 0;
  std::string arch;
  int n_expert = 1;        // <arch>.expert_count
  bool is_70b = false;     // llama with 80 layers and GQA (LLM_TYPE_70B)
  bool has_output = false; // an output.weight separate from token_embd.weight
  int n_attention_wv = 0, i_attention_wv = 0;
  int n_layer = 0, i_ffn_down = 0, i_ffn_gate = 0, i_ffn_up = 0;
  int n_fallback = 0;
  int n_f16_fallback = 0;  // of which llama.cpp has no fallback for the preset's type (it refuses)
};

/// llama.cpp's use_more_bits: the first and last eighth of the layers and every third between.
bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

/// The layer of an ffn tensor: its index among its kind, or with experts its "blk.N." number
/// (experts of a layer need not be consecutive).
int layer_of(const quant_state& qs, int counter, const std::string& name) {
  if (qs.n_expert <= 1) return counter;
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) throw format_error("failed to determine the layer of tensor " + name);
  if (layer < 0 || layer >= qs.n_layer)
    throw format_error("tensor " + name + ": layer " + std::to_string(layer) + " is not in [0, " + std::to_string(qs.n_layer) + ")");
  return layer;
}

/// llama_tensor_get_type for the presets above: the type of one quantizable tensor, given the
/// preset's type. Branches of presets tessera does not offer (IQ*, Q2_K, Q3_K_*, TQ*) and those
/// that need an importance matrix are left out; the order of the checks is llama.cpp's.
ggml_type tensor_type(quant_state& qs, ggml_type new_type, const io::gguf_tensor_info& t, bool& fell_back) {
  const std::string& name = t.name;
  const std::uint32_t ftype = qs.ftype;
  const bool falcon = qs.arch == "falcon";
  fell_back = false;

  // A model without output.weight uses token_embd.weight as the output: it gets the output's type.
  if (name == "output.weight" || (!qs.has_output && name == "token_embd.weight")) {
    if (falcon || t.ne[0] % block_of(new_type) != 0) new_type = ggml_type::q8_0;
    else if (new_type != ggml_type::q8_0) new_type = ggml_type::q6_k;
  } else if (name == "token_embd.weight") {
    // (only the IQ and TQ presets change it)
  } else if (contains(name, "attn_v.weight")) {
    if ((ftype == ftype_q4_k_m || ftype == ftype_q5_k_m) && use_more_bits(qs.i_attention_wv, qs.n_attention_wv))
      new_type = ggml_type::q6_k;
    else if (ftype == ftype_q4_k_s && qs.i_attention_wv < 4)
      new_type = ggml_type::q5_k;
    // 70B: attn_v is 8x smaller than attn_q (GQA), so more bits cost little.
    if (qs.is_70b && new_type == ggml_type::q4_k) new_type = ggml_type::q5_k;
    if (qs.n_expert == 8) new_type = ggml_type::q8_0;
    ++qs.i_attention_wv;
  } else if (contains(name, "attn_k.weight")) {
    if (qs.n_expert == 8) new_type = ggml_type::q8_0;
  } else if (contains(name, "attn_q.weight")) {
    // (only IQ3_XS / IQ3_XXS change it)
  } else if (contains(name, "ffn_down")) {
    const int i_layer = layer_of(qs, qs.i_ffn_down, name), n_layer = qs.n_layer;
    if (ftype == ftype_q4_k_m) {
      if (falcon)
        new_type = i_layer < n_layer / 16 ? ggml_type::q6_k : use_more_bits(i_layer, n_layer) ? ggml_type::q5_k : ggml_type::q4_k;
      else if (use_more_bits(i_layer, n_layer))
        new_type = ggml_type::q6_k;
    } else if (ftype == ftype_q5_k_m && use_more_bits(i_layer, n_layer)) {
      new_type = ggml_type::q6_k;
    } else if (ftype == ftype_q4_k_s && !falcon && i_layer < n_layer / 8) {
      new_type = ggml_type::q5_k;
    }
    ++qs.i_ffn_down;
  } else if (contains(name, "attn_output.weight")) {
    if (!falcon && qs.n_expert == 8 && (ftype == ftype_q4_k_s || ftype == ftype_q4_k_m)) new_type = ggml_type::q5_k;
  } else if (contains(name, "attn_qkv.weight")) {
    if (ftype == ftype_q4_k_m) new_type = ggml_type::q5_k;
    else if (ftype == ftype_q5_k_m) new_type = ggml_type::q6_k;
  } else if (contains(name, "ffn_gate")) {
    layer_of(qs, qs.i_ffn_gate, name);
    ++qs.i_ffn_gate;
  } else if (contains(name, "ffn_up")) {
    layer_of(qs, qs.i_ffn_up, name);
    ++qs.i_ffn_up;
  }

  // A row length the type's blocks do not divide: llama.cpp's fallback (Q4_K → Q5_0, Q5_K → Q5_1,
  // Q6_K → Q8_0), then F16 when that does not divide it either. For the 32-element types
  // llama.cpp has no fallback and refuses the model; tessera writes F16 (docs/cli.md).
  if (t.ne[0] % block_of(new_type) != 0) {
    switch (new_type) {
      case ggml_type::q4_k: new_type = ggml_type::q5_0; break;
      case ggml_type::q5_k: new_type = ggml_type::q5_1; break;
      case ggml_type::q6_k: new_type = ggml_type::q8_0; break;
      default:
        new_type = ggml_type::f16;
        ++qs.n_f16_fallback;
        break;
    }
    if (t.ne[0] % block_of(new_type) != 0) new_type = ggml_type::f16;
    fell_back = true;
    ++qs.n_fallback;
  }
  return new_type;
}

/// llama-model-loader's weight_name_comparer: tensors outside the layers first, then layer by
/// layer ("blk.N."), by name within each. llama-quantize writes (and counts layers) in this order.
bool weight_name_less(const std::string& a, const std::string& b) {
  int la = -1, lb = -1;
  std::sscanf(a.c_str(), "blk.%d.", &la);
  std::sscanf(b.c_str(), "blk.%d.", &lb);
  return la != lb ? la < lb : a < b;
}

/// f32 → `type`: n elements (a multiple of its block size) from x into y (n / block blocks).
void encode(ggml_type type, const float* x, std::byte* y, std::int64_t n) {
  const auto nb = static_cast<index_t>(n / block_of(type));
  switch (type) {
    case ggml_type::f32: std::memcpy(y, x, static_cast<std::size_t>(n) * sizeof(float)); break;
    case ggml_type::f16:
      for (std::int64_t i = 0; i < n; ++i) {
        const std::uint16_t h = tessera::detail::float_to_half_bits(x[i]);
        std::memcpy(y + 2 * i, &h, 2);
      }
      break;
    case ggml_type::bf16:
      for (std::int64_t i = 0; i < n; ++i) {
        const std::uint16_t h = tessera::detail::float_to_bf16_bits(x[i]);
        std::memcpy(y + 2 * i, &h, 2);
      }
      break;
    case ggml_type::q8_0: quantize(x, reinterpret_cast<block_q8_0*>(y), nb); break;
    case ggml_type::q4_0: quantize(x, reinterpret_cast<block_q4_0*>(y), nb); break;
    case ggml_type::q4_1: quantize(x, reinterpret_cast<block_q4_1*>(y), nb); break;
    case ggml_type::q5_0: quantize(x, reinterpret_cast<block_q5_0*>(y), nb); break;
    case ggml_type::q5_1: quantize(x, reinterpret_cast<block_q5_1*>(y), nb); break;
    case ggml_type::q4_k: quantize(x, reinterpret_cast<block_q4_K*>(y), nb); break;
    case ggml_type::q5_k: quantize(x, reinterpret_cast<block_q5_K*>(y), nb); break;
    case ggml_type::q6_k: quantize(x, reinterpret_cast<block_q6_K*>(y), nb); break;
    default: throw format_error("quantize: cannot encode ggml type " + io::ggml_type_name(type));
  }
}

/// Types a weight can be converted from: floats and the block formats io::dequantize reads.
bool is_convertible(ggml_type t) {
  switch (t) {
    case ggml_type::f32: case ggml_type::f16: case ggml_type::bf16:
    case ggml_type::q4_0: case ggml_type::q4_1: case ggml_type::q5_0: case ggml_type::q5_1: case ggml_type::q8_0:
    case ggml_type::q4_k: case ggml_type::q5_k: case ggml_type::q6_k: return true;
    default: return false;
  }
}

/// One tensor of the output: where it comes from and what it becomes.
struct tensor_plan {
  const io::gguf_tensor_info* in = nullptr;
  ggml_type type = ggml_type::f32;
  std::uint64_t nbytes = 0;
  bool fell_back = false;
};

/// Re-encodes tensor `p` a chunk of rows at a time (at most ~16 MB of f32), rows spread over the
/// threads, each chunk written as soon as it is done.
void convert(const io::gguf_file& in, const tensor_plan& p, io::gguf_writer& out) {
  const io::gguf_tensor_info& t = *p.in;
  const std::int64_t row = t.ne.empty() ? 1 : t.ne[0];
  const std::int64_t rows = row == 0 ? 0 : t.numel / row;
  const auto in_tr = io::ggml_traits(t.type), out_tr = io::ggml_traits(p.type);
  const std::int64_t in_row_bytes = row / in_tr.block * in_tr.bytes, out_row_bytes = row / out_tr.block * out_tr.bytes;
  const std::int64_t chunk_rows = std::clamp<std::int64_t>((std::int64_t{4} << 20) / std::max<std::int64_t>(row, 1), 1, std::max<std::int64_t>(rows, 1));
  std::vector<float> f32(static_cast<std::size_t>(chunk_rows * row));
  std::vector<std::byte> bytes(static_cast<std::size_t>(chunk_rows * out_row_bytes));
  const std::byte* src = in.tensor_data(t);
  for (std::int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
    const std::int64_t n = std::min(chunk_rows, rows - r0);
    parallel_for(0, n, std::max<index_t>(1, 16384 / std::max<std::int64_t>(row, 1)), [&](index_t lo, index_t hi) {
      io::dequantize(t.type, src + (r0 + lo) * in_row_bytes, f32.data() + lo * row, (hi - lo) * row);
      encode(p.type, f32.data() + lo * row, bytes.data() + lo * out_row_bytes, (hi - lo) * row);
    });
    out.write_tensor_data(t.name, std::span(bytes).first(static_cast<std::size_t>(n * out_row_bytes)));
  }
}

std::string mib(std::uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

/// The type of every tensor of `in` under preset `pre`, in llama-quantize's order; qs gets the
/// counts the rules need (and the fallbacks they took).
std::vector<tensor_plan> plan_tensors(const io::gguf_file& in, const preset& pre, quant_state& qs) {
  qs.ftype = pre.ftype;
  qs.arch = in.try_string("general.architecture").value_or("");
  const std::string a = qs.arch + ".";
  qs.n_expert = static_cast<int>(std::max<std::int64_t>(1, in.try_int(a + "expert_count").value_or(1)));
  std::vector<const io::gguf_tensor_info*> order;
  for (const auto& t : in.tensors()) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* x, auto* y) { return weight_name_less(x->name, y->name); });
  int n_ffn_down = 0;
  for (const auto* t : order) {
    if (contains(t->name, "attn_v.weight") || contains(t->name, "attn_qkv.weight") || contains(t->name, "attn_kv_b.weight"))
      ++qs.n_attention_wv;
    else if (t->name == "output.weight")
      qs.has_output = true;
    if (contains(t->name, "ffn_down")) ++n_ffn_down;
  }
  qs.n_layer = static_cast<int>(in.try_int(a + "block_count").value_or(n_ffn_down));
  qs.is_70b = qs.arch == "llama" && qs.n_expert <= 1 && qs.n_layer == 80 &&
              in.try_int(a + "attention.head_count").value_or(0) != in.try_int(a + "attention.head_count_kv").value_or(0);

  std::vector<tensor_plan> plan;
  for (const auto* t : order) {
    tensor_plan p{t, t->type, 0, false};
    if (is_quantizable(*t)) {
      p.type = pre.type;
      if (block_of(pre.type) > 1) p.type = tensor_type(qs, pre.type, *t, p.fell_back);
      if (p.type != t->type && !is_convertible(t->type))
        throw format_error(in.path() + ": tensor '" + t->name + "' is " + io::ggml_type_name(t->type) +
                           ", which tessera cannot convert (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)");
    }
    p.nbytes = static_cast<std::uint64_t>(t->numel / block_of(p.type) * io::ggml_traits(p.type).bytes);
    plan.push_back(p);
  }
  return plan;
}

/// stdout: tensors and bytes per type, the totals, the fallbacks; stderr: a note when tessera
/// wrote F16 where llama-quantize would have refused the model.
void print_summary(const quantize_options& o, const preset& pre, const quant_state& qs, const std::vector<tensor_plan>& plan,
                   std::uint64_t file_bytes) {
  std::map<std::string, std::pair<int, std::uint64_t>> by_type;
  std::uint64_t in_bytes = 0, out_bytes = 0;
  for (const auto& p : plan) {
    auto& [count, bytes] = by_type[io::ggml_type_name(p.type)];
    ++count;
    bytes += p.nbytes;
    in_bytes += p.in->nbytes;
    out_bytes += p.nbytes;
  }
  std::cout << o.output << ": " << pre.name << " (general.file_type " << pre.ftype << "), " << plan.size() << " tensors\n";
  for (const auto& [name, stats] : by_type)
    std::printf("  %-6s %4d tensors  %s\n", name.c_str(), stats.first, mib(stats.second).c_str());
  std::cout << "tensors: " << mib(in_bytes) << " -> " << mib(out_bytes) << "; file: " << mib(file_bytes) << "\n";
  if (qs.n_fallback > 0)
    std::cout << qs.n_fallback << " tensors took a fallback type: their row length is not a multiple of the block size\n";
  std::cout.flush();
  if (qs.n_f16_fallback > 0)
    std::fprintf(stderr, "tessera: note: %d tensors are F16 because their rows do not divide into %s blocks; llama-quantize refuses such a model\n",
                 qs.n_f16_fallback, io::ggml_type_name(pre.type).c_str());
}

}  // namespace

int run_quantize(const quantize_options& o) {
  const preset pre = find_preset(o.type);
  apply_threads(o.common);
  const io::gguf_file in(o.input);
  quant_state qs;
  const std::vector<tensor_plan> plan = plan_tensors(in, pre, qs);

  // Metadata: every key/value of IN in its order, split keys dropped, then (as llama.cpp's
  // gguf_set_val_u32 does: moved to the end) the quantization version and the file type.
  io::gguf_writer out(o.output);
  for (const auto& [key, value] : in.metadata())
    if (key != "split.no" && key != "split.count" && key != "split.tensors.count") out.set(key, value);
  out.remove("general.quantization_version");
  out.set_u32("general.quantization_version", 2);  // GGML_QNT_VERSION
  out.remove("general.file_type");
  out.set_u32("general.file_type", pre.ftype);
  for (const auto& p : plan) out.add_tensor(p.in->name, p.type, p.in->ne);

  // Data: each tensor copied or converted, in the plan's order.
  for (const auto& p : plan) {
    if (o.common.verbose)
      std::fprintf(stderr, "%-36s %-6s -> %-6s%s\n", p.in->name.c_str(), io::ggml_type_name(p.in->type).c_str(),
                   io::ggml_type_name(p.type).c_str(), p.fell_back ? " (fallback: row length)" : "");
    if (p.type == p.in->type) out.write_tensor_data(p.in->name, std::span(in.tensor_data(*p.in), p.in->nbytes));
    else convert(in, p, out);
  }
  print_summary(o, pre, qs, plan, out.finish());
  return 0;
}

}  // namespace tessera::cli
