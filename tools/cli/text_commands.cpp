// tools/cli/text_commands.cpp: `tessera tokenize`, `tessera detokenize` (no model weights are run).
#include "cli.hpp"

#include <fstream>
#include <iostream>
#include <iterator>

#include <tessera/io/mmap.hpp>
#include <tessera/tokenizer/tokenizer.hpp>

namespace tessera::cli {

struct text_codec::impl {
  tokenizer tk;
  std::optional<tokenizer::stream_decoder> stream;
};

text_codec text_codec::load(const std::filesystem::path& path) {
  text_codec c;
  c.p_ = std::make_shared<impl>(impl{tokenizer::load(path), std::nullopt});
  return c;
}
std::vector<std::int32_t> text_codec::encode(const std::string& text, bool add_special_tokens) const {
  return p_->tk.encode(text, add_special_tokens);
}
std::string text_codec::decode(const std::vector<std::int32_t>& ids, bool skip_special_tokens) const {
  return p_->tk.decode(ids, skip_special_tokens);
}
std::vector<std::int32_t> text_codec::eos_ids() const { return p_->tk.eos_ids(); }
void text_codec::stream_begin(bool skip_special_tokens) { p_->stream.emplace(p_->tk, skip_special_tokens); }
std::string text_codec::stream_push(std::int32_t id) { return p_->stream->push(id); }
std::string text_codec::stream_flush() { return p_->stream->flush(); }

namespace {
/// `tokenize --file` reads at most this much text.
constexpr std::size_t max_text_bytes = std::size_t{256} << 20;

void print_ids(const std::vector<std::int32_t>& ids) {
  std::string line;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += std::to_string(ids[i]);
  }
  std::cout << line << '\n';
}
}  // namespace

int run_tokenize(const tokenize_options& o) {
  apply_threads(o.common);
  std::string text;
  if (o.text) {
    text = *o.text;
  } else if (o.file) {
    // A file or a pipe, up to max_text_bytes (a device such as /dev/zero is refused at once).
    try {
      text = io::read_text_file(*o.file, max_text_bytes);
    } catch (const io_error& e) {
      throw io_error(std::string("--file: ") + e.what());
    }
  } else {
    throw usage_error("tokenize: give --text or --file");
  }
  const auto tk = text_codec::load(resolve_model(o.common.model));
  print_ids(tk.encode(text, !o.no_special));
  return 0;
}

int run_detokenize(const detokenize_options& o) {
  apply_threads(o.common);
  const auto ids = parse_ids(o.tokens, "--tokens");
  const auto tk = text_codec::load(resolve_model(o.common.model));
  std::cout << tk.decode(ids, o.skip_special) << '\n';
  return 0;
}

}  // namespace tessera::cli
