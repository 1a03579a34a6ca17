// Issue 18's reproducers (tests/data/bad/, written by make_bad_inputs.py): files whose counts,
// lengths, sizes or offsets are impossible are refused with an error naming the field and the
// value, in milliseconds, before anything is allocated from them; reads of devices and pipes
// are bounded.
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

#include <tessera/families/registry.hpp>
#include <tessera/io/config.hpp>
#include <tessera/io/gguf.hpp>
#include <tessera/io/mmap.hpp>
#include <tessera/io/safetensors.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/tokenizer/tokenizer.hpp>

#include "io_test_util.hpp"

using namespace tessera;
namespace fs = std::filesystem;

namespace {

const fs::path bad = fs::path(TESSERA_TEST_DATA_DIR) / "bad";

/// Runs `f`, which must throw E; returns its message and checks that it took under `max_ms`.
template <class E, class F>
std::string refused_fast(F&& f, double max_ms = 100.0) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string msg;
  try {
    f();
    FAIL("accepted, expected a refusal");
  } catch (const E& e) {
    msg = e.what();
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  INFO(msg);
  CHECK(ms < max_ms);
  return msg;
}

}  // namespace

TEST_CASE("limits: GGUF counts and lengths beyond the file are format_errors naming them", "[io][limits]") {
  using Catch::Matchers::Contains;
  CHECK_THAT(refused_fast<format_error>([] { io::gguf_file(bad / "gguf_2e40_tensors.gguf"); }),
             Contains("tensor count 1099511627776 exceeds the file") && Contains("gguf_2e40_tensors.gguf"));
  CHECK_THAT(refused_fast<format_error>([] { io::gguf_file(bad / "gguf_2e40_kv.gguf"); }),
             Contains("metadata count 1099511627776 exceeds the file"));
  CHECK_THAT(refused_fast<format_error>([] { io::gguf_file(bad / "gguf_2e40_string.gguf"); }),
             Contains("string length 1099511627776 exceeds the file"));
  CHECK_THAT(refused_fast<format_error>([] { io::gguf_file(bad / "gguf_2e40_array.gguf"); }),
             Contains("'tokenizer.ggml.tokens': array of 1099511627776 string exceeds the file"));
  CHECK_THAT(refused_fast<format_error>([] { io::gguf_file(bad / "gguf_tensor_numel_overflow.gguf"); }),
             Contains("tensor 't': element count overflows"));
  CHECK_THAT(refused_fast<format_error>([] { io::gguf_file(bad / "gguf_tensor_past_end.gguf"); }),
             Contains("tensor 't'") && Contains("lies outside the file"));
}

TEST_CASE("limits: an empty tensor may not claim more rows than the file could hold", "[io][limits]") {
  // fuzz_gguf: a (2^60, 0) weight has no bytes, but the GPT-2 loader's transpose looped 2^60 times
  using Catch::Matchers::Contains;
  CHECK_THAT(refused_fast<format_error>([] { io::gguf_file(bad / "gguf_empty_tensor_2e60_rows.gguf"); }),
             Contains("tensor 't': dims describe more than the"));
  CHECK_THAT(refused_fast<format_error>([] { io::safetensors_file(bad / "st_empty_tensor_2e60_rows.safetensors"); }),
             Contains("tensor 't': shape [1152921504606846976, 0] describes more than the"));
}

TEST_CASE("limits: GGUF metadata sizes of a model are config_errors naming the key and value", "[io][limits]") {
  using Catch::Matchers::Contains;
  CHECK_THAT(refused_fast<config_error>([] { load_config(bad / "gguf_block_count_1e9.gguf"); }, 1e9),
             Contains("num_hidden_layers") && Contains("1000000000"));
  CHECK_THAT(refused_fast<config_error>([] { load_config(bad / "gguf_block_count_2e40.gguf"); }),
             Contains("llama.block_count") && Contains("1099511627776"));
  CHECK_THAT(refused_fast<config_error>([] { load_language_model(bad / "gguf_block_count_2e40.gguf"); }),
             Contains("llama.block_count"));
}

TEST_CASE("limits: safetensors overlapping offsets, a byte size past 64 bits and a name given twice", "[io][limits]") {
  using Catch::Matchers::Contains;
  CHECK_THAT(refused_fast<format_error>([] { io::safetensors_file(bad / "st_overlap.safetensors"); }),
             Contains("tensor 'b' overlaps the previous tensor"));
  // shape [2^61] of F64 is 2^67 bytes: the product wrapped to 0 and matched data_offsets [0, 0]
  CHECK_THAT(refused_fast<format_error>([] { io::safetensors_file(bad / "st_bytes_overflow.safetensors"); }),
             Contains("tensor 'big': shape [2305843009213693952] describes more than the 664 elements a file of 82 bytes"));
  // a shape the file could describe but whose bytes are not in the data block: checked before multiplying
  CHECK_THAT(refused_fast<format_error>([] { io::safetensors_file(bad / "st_bytes_past_data.safetensors"); }),
             Contains("tensor 'big': shape [100] of F64 needs more bytes than the data block of 0 bytes"));
  CHECK_THAT(refused_fast<format_error>([] { io::safetensors_file(bad / "st_duplicate_name.safetensors"); }),
             Contains("tensor 'w' appears twice"));
  // the same through weight_map (what loaders open)
  CHECK_THROWS_AS(io::weight_map::open(bad / "st_duplicate_name.safetensors"), format_error);
}

TEST_CASE("limits: an integer-typed weight is refused where a float weight is expected", "[io][limits]") {
  using Catch::Matchers::Contains;
  const auto m = io::weight_map::open(bad / "int_weight");
  const std::string q = "model.layers.0.self_attn.q_proj.weight";
  CHECK(m.info(q).type_name == "I32");
  CHECK_THAT(refused_fast<format_error>([&] { (void)m.f32<2>(q); }),
             Contains("'" + q + "'") && Contains("integer dtype I32"));
  CHECK_THAT(refused_fast<format_error>([] { load_language_model(bad / "int_weight"); }), Contains("integer dtype I32"));
  // the view of the stored integers is still there for whoever asks for them
  CHECK(m.view<std::int32_t, 2>(q)(0, 0) == 1);
}

TEST_CASE("limits: config.json sizes: hidden_size 2^40, 1e9 layers, negative max_position_embeddings", "[io][limits]") {
  using Catch::Matchers::Contains;
  CHECK_THAT(refused_fast<config_error>([] { load_config(bad / "config_hidden_2e40"); }),
             Contains("'hidden_size'") && Contains("1099511627776"));
  CHECK_THAT(refused_fast<config_error>([] { load_config(bad / "config_layers_1e9"); }),
             Contains("'num_hidden_layers'") && Contains("1000000000"));
  CHECK_THAT(refused_fast<config_error>([] { load_config(bad / "config_max_position_negative"); }),
             Contains("'max_position_embeddings'") && Contains("-5"));
}

// parse_config and config_from_gguf sized model_config::layer_schedule (one byte per layer: 1 GB,
// 2.5 s) before num_hidden_layers was bounded; every reader now checks it first
// (config_fields::check_layer_count).
TEST_CASE("limits: 1e9 layers are refused in milliseconds", "[io][limits]") {
  refused_fast<config_error>([] { load_config(bad / "gguf_block_count_1e9.gguf"); });
  refused_fast<config_error>([] { load_config(bad / "config_layers_1e9"); });
}

TEST_CASE("limits: a tokenizer.json added token id far past the vocabulary", "[io][limits][tokenizer]") {
  using Catch::Matchers::Contains;
  CHECK_THAT(refused_fast<config_error>([] { tokenizer::from_hf(bad / "tokenizer_added_id_2e31"); }),
             Contains("\"<huge>\" has id 2147483647"));
}

TEST_CASE("limits: devices are refused and pipes are read up to a bound", "[io][limits]") {
  using Catch::Matchers::Contains;
  REQUIRE(fs::exists("/dev/zero"));
  CHECK_THAT(refused_fast<io_error>([] { io::mapped_file::open("/dev/zero"); }),
             Contains("/dev/zero: is a character device, expected a regular file"));
  CHECK_THAT(refused_fast<io_error>([] { io::gguf_file("/dev/zero"); }), Contains("character device"));
  CHECK_THAT(refused_fast<io_error>([] { io::read_json_file("/dev/zero"); }), Contains("character device"));
  CHECK_THAT(refused_fast<io_error>([] { io::weight_map::open("/dev/zero"); }), Contains("character device"));

  // A pipe: read whole when it ends within the bound, an io_error naming the bound past it.
  std::signal(SIGPIPE, SIG_IGN);  // the writer below outlives its reader: EPIPE, not a signal
  test::temp_dir dir("pipe");
  const fs::path fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto feed = [&](std::size_t n) {
    return std::thread([&fifo, n] {
      std::FILE* f = std::fopen(fifo.c_str(), "wb");
      if (!f) return;
      const std::string chunk(4096, 'x');
      for (std::size_t done = 0; done < n; done += chunk.size()) {
        if (std::fwrite(chunk.data(), 1, std::min(chunk.size(), n - done), f) == 0) break;
      }
      std::fclose(f);
    });
  };
  {
    auto writer = feed(10000);
    CHECK(io::read_text_file(fifo, 10000).size() == 10000);
    writer.join();
  }
  {
    auto writer = feed(1 << 20);
    CHECK_THAT(refused_fast<io_error>([&] { io::read_text_file(fifo, 10000); }),
               Contains("more than 10000 bytes from a pipe"));
    writer.join();  // the writer ends on EPIPE once the reader is gone
  }
  // A regular file over the bound is refused before it is read.
  test::write_file(dir / "big.json", std::vector<std::byte>(20000, std::byte{' '}));
  CHECK_THAT(refused_fast<io_error>([&] { io::read_text_file(dir / "big.json", 10000); }),
             Contains("20000 bytes, more than the 10000"));
}

TEST_CASE("mmap: files of 2 MiB and more are mapped at a 2 MiB boundary, byte for byte", "[io][mmap]") {
  // Sizes around the huge-page threshold and a ragged tail (not a multiple of the 4 KiB page).
  test::temp_dir dir("mmap_huge");
  const std::size_t huge = io::mapped_file::huge_page_bytes;
  for (const std::size_t size : {huge - 1, huge, huge + 4096, 3 * huge + 12345}) {
    std::vector<std::byte> bytes(size);
    std::uint32_t x = static_cast<std::uint32_t>(size);
    for (auto& b : bytes) {
      x = x * 1664525u + 1013904223u;
      b = static_cast<std::byte>(x >> 24);
    }
    const fs::path p = dir / ("f" + std::to_string(size));
    test::write_file(p, bytes);
    for (int again = 0; again < 2; ++again) {  // a second mapping of the same file, the first released
      const auto f = io::map_file(p);
      CAPTURE(size, again);
      REQUIRE(f->how() == io::mapped_file::mode::mapped);
      REQUIRE(f->size() == size);
      if (size >= huge) CHECK(reinterpret_cast<std::uintptr_t>(f->data()) % huge == 0);
      CHECK(std::memcmp(f->data(), bytes.data(), size) == 0);
    }
  }
}
