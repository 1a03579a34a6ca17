// tessera/attention/attention.hpp: the attention module umbrella.
//
// Softmax attention (flash form, KV cache, sliding-window ring, ALiBi, T5 buckets):
//   mask.hpp, kv_cache.hpp, position_bias.hpp, softmax_attention.hpp
#pragma once

#include <tessera/attention/kv_cache.hpp>
#include <tessera/attention/mask.hpp>
#include <tessera/attention/position_bias.hpp>
#include <tessera/attention/softmax_attention.hpp>
#include <tessera/attention/softmax_decode.hpp>
