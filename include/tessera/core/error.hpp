// tessera/core/error.hpp: the one error hierarchy (docs/architecture.md).
//
// Every message names the offending file, tensor, field or value.
#pragma once

#include <stdexcept>
#include <string>

#include <tessera/config.hpp>

namespace tessera {
inline namespace v0 {

/// Base of every exception tessera throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A malformed file: truncated, inconsistent header, bad offsets, unknown dtype.
class format_error : public error {
 public:
  using error::error;
};

/// A config.json / GGUF metadata field that is missing, of the wrong type or unsupported.
class config_error : public error {
 public:
  using error::error;
};

/// Extents that do not fit together (views, weights, states).
class shape_error : public error {
 public:
  using error::error;
};

/// A value out of its range: token id >= vocab, position past the context, capacity exceeded.
class range_error : public error {
 public:
  using error::error;
};

/// The operating system refused: a file that does not exist, cannot be read or mapped.
class io_error : public error {
 public:
  using error::error;
};

}  // namespace v0
}  // namespace tessera
