// Issue 18 through the `tessera` executable, as a user meets it: files and arguments with
// impossible sizes end in one clean error line, fast, with a small peak RSS (measured on the child
// process with wait4), and --max-memory refuses a model before loading it.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

const fs::path bad = fs::path(TESSERA_TEST_DATA_DIR) / "bad";

struct run_result {
  int rc = -1;
  std::string err;
  double seconds = 0;
  double max_rss_mb = 0;
};

/// Runs `tessera args...` (stdout discarded, stderr kept) and measures its time and peak RSS.
run_result tessera(const std::vector<std::string>& args) {
  static int counter = 0;
  const fs::path err_file =
      fs::temp_directory_path() / ("tessera_cli_limits_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::vector<std::string> all = {TESSERA_CLI_BINARY};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int err = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int out = ::open("/dev/null", O_WRONLY);
    ::dup2(err, 2);
    ::dup2(out, 1);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  struct rusage ru {};
  REQUIRE(::wait4(pid, &status, 0, &ru) == pid);
  run_result r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  r.max_rss_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux: kilobytes
  std::ifstream in(err_file);
  std::ostringstream s;
  s << in.rdbuf();
  r.err = s.str();
  fs::remove(err_file);
  return r;
}

/// A refusal: exit status 1, one error line containing `what`, under 2 s and 100 MB.
void check_refused(const std::vector<std::string>& args, const std::string& what) {
  const run_result r = tessera(args);
  INFO("tessera " << args[0] << " " << (args.size() > 2 ? args[2] : std::string()) << "\nstderr: " << r.err
                  << "time: " << r.seconds << " s, peak RSS " << r.max_rss_mb << " MB");
  CHECK(r.rc == 1);
  CHECK(r.err.rfind("tessera: error: ", 0) == 0);
  CHECK(r.err.find(what) != std::string::npos);
  CHECK(r.seconds < 2.0);
  CHECK(r.max_rss_mb < 100.0);
}

}  // namespace

TEST_CASE("tessera refuses impossible GGUF counts, lengths and sizes fast and small", "[cli][limits]") {
  check_refused({"info", "-m", (bad / "gguf_2e40_tensors.gguf").string()}, "tensor count 1099511627776 exceeds the file");
  check_refused({"info", "-m", (bad / "gguf_2e40_string.gguf").string()}, "string length 1099511627776 exceeds the file");
  check_refused({"info", "-m", (bad / "gguf_2e40_array.gguf").string()}, "array of 1099511627776 string exceeds the file");
  check_refused({"info", "-m", (bad / "gguf_block_count_2e40.gguf").string()}, "llama.block_count' = 1099511627776");
  check_refused({"generate", "-m", (bad / "gguf_block_count_2e40.gguf").string(), "-p", "hi"}, "llama.block_count");
}

TEST_CASE("tessera refuses absurd config sizes and integer weights", "[cli][limits]") {
  check_refused({"info", "-m", (bad / "config_hidden_2e40").string()}, "'hidden_size' = 1099511627776");
  check_refused({"info", "-m", (bad / "config_max_position_negative").string()}, "'max_position_embeddings'");
  check_refused({"generate", "-m", (bad / "int_weight").string(), "--tokens", "1,2", "--print-ids"}, "integer dtype I32");
}

TEST_CASE("tessera reads no devices: info -m /dev/zero, tokenize --file /dev/zero", "[cli][limits]") {
  REQUIRE(fs::exists("/dev/zero"));
  check_refused({"info", "-m", "/dev/zero"}, "/dev/zero: is a character device");
  check_refused({"tokenize", "--file", "/dev/zero"}, "--file: /dev/zero: is a character device");
}

TEST_CASE("tessera info -c 2^63-1: the KV-cache estimate overflows into an error, not a wrapped number", "[cli][limits]") {
  check_refused({"info", "-c", "9223372036854775807"}, "a context of 9223372036854775807 tokens needs more than 2^64 bytes");
  const run_result r = tessera({"info", "-c", "-1"});
  CHECK(r.rc == 2);
  CHECK(r.err.find("--context must be >= 0") != std::string::npos);
}

TEST_CASE("tessera --max-memory refuses a model before loading it", "[cli][limits]") {
  // the bundled stories260K: ~1 MB of weights as f32, a KV cache of 512 tokens
  check_refused({"generate", "--max-memory", "64K", "--tokens", "1", "-n", "1"}, "more than --max-memory 64K");
  check_refused({"bench", "--max-memory", "100000", "-p", "4", "-n", "1", "-r", "1"}, "more than --max-memory 100000");
  check_refused({"info", "--max-memory", "1K"}, "more than --max-memory 1K");
  const run_result ok = tessera({"generate", "--max-memory", "1G", "--tokens", "1", "-n", "2", "--temp", "0"});
  INFO(ok.err);
  CHECK(ok.rc == 0);
  const run_result wrong = tessera({"info", "--max-memory", "lots"});
  CHECK(wrong.rc == 2);
  CHECK(wrong.err.find("--max-memory 'lots' is not a size") != std::string::npos);
}

TEST_CASE("tessera run --max-memory counts the model, its cache and the outputs before loading", "[cli][limits]") {
  // input_ids [b, l] (I64, every id 7) for the bundled stories260K (vocab 512), written as a
  // safetensors file by hand: u64 header length, JSON header, data
  auto inputs = [](std::int64_t b, std::int64_t l) {
    const std::string header = "{\"input_ids\":{\"dtype\":\"I64\",\"shape\":[" + std::to_string(b) + "," + std::to_string(l) +
                               "],\"data_offsets\":[0," + std::to_string(b * l * 8) + "]}}";
    const std::uint64_t header_size = header.size();
    const std::vector<std::int64_t> ids(static_cast<std::size_t>(b * l), 7);
    const fs::path p = fs::temp_directory_path() / ("tessera_cli_limits_" + std::to_string(::getpid()) + "_inputs_" +
                                                    std::to_string(b) + "x" + std::to_string(l) + ".safetensors");
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(&header_size), sizeof header_size);  // little-endian hosts only
    f << header;
    f.write(reinterpret_cast<const char*>(ids.data()), static_cast<std::streamsize>(ids.size() * sizeof(std::int64_t)));
    return p;
  };
  const fs::path small = inputs(1, 4), wide = inputs(64, 512);
  const fs::path out = fs::temp_directory_path() / ("tessera_cli_limits_" + std::to_string(::getpid()) + "_outputs.safetensors");
  check_refused({"run", "--max-memory", "64K", "--inputs", small.string(), "--outputs", out.string()}, "more than --max-memory 64K");
  // weights and cache fit in 64 MiB; the logits [64, 512, 512] f32 (64 MiB, held twice) do not
  check_refused({"run", "--max-memory", "64M", "--inputs", wide.string(), "--outputs", out.string()},
                "outputs as f32, held twice to be written, 128.00 MiB), more than --max-memory 64M");
  CHECK(!fs::exists(out));
  const run_result ok = tessera({"run", "--max-memory", "1G", "--inputs", small.string(), "--outputs", out.string()});
  INFO(ok.err);
  CHECK(ok.rc == 0);
  CHECK(fs::file_size(out) > 4 * 512 * sizeof(float));
  const run_result wrong = tessera({"run", "--max-memory", "lots", "--inputs", small.string(), "--outputs", out.string()});
  CHECK(wrong.rc == 2);
  CHECK(wrong.err.find("--max-memory 'lots' is not a size") != std::string::npos);
  for (const auto& p : {small, wide, out}) fs::remove(p);
}
