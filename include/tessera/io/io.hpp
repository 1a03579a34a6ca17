// tessera/io/io.hpp: the io module umbrella (checkpoint reading: mmap, GGUF, safetensors,
// weight_map, config).
#pragma once

#include <tessera/io/mmap.hpp>
#include <tessera/io/gguf.hpp>
#include <tessera/io/gguf_quants.hpp>
#include <tessera/io/safetensors.hpp>
#include <tessera/io/weights.hpp>
#include <tessera/io/config.hpp>
