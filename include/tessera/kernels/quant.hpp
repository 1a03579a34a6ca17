// tessera/kernels/quant.hpp: kernels on quantized (GGUF block) weights.
//
//   kernels/quant_dot.hpp     activation quantizers (f32 → q8_sum / q8_K) and vec_dot per block type
//   kernels/quant_rows.hpp    vec_dot_rows4: four weight rows against one activation row
//   kernels/quant_linear.hpp  quant_linear: out = x · dequantize(w)ᵀ, decode and prefill paths
//   kernels/quant_interleaved.hpp  quant_linear on q4_0 rows interleaved 8 at a time (block_q4_0x8)
// The block types, dequantize and the reference quantizers are in core/blocks.hpp.
#pragma once

#include <tessera/core/blocks.hpp>
#include <tessera/kernels/quant_dot.hpp>
#include <tessera/kernels/quant_interleaved.hpp>
#include <tessera/kernels/quant_linear.hpp>
#include <tessera/kernels/quant_rows.hpp>
