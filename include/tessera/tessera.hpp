// tessera/tessera.hpp: the umbrella header. Includes every module umbrella.
#pragma once

#include <tessera/config.hpp>
#include <tessera/core/core.hpp>
#include <tessera/simd/simd.hpp>
#include <tessera/kernels/kernels.hpp>
#include <tessera/ops/ops.hpp>
#include <tessera/attention/attention.hpp>
#include <tessera/io/io.hpp>
#include <tessera/ssm/ssm.hpp>
#include <tessera/tokenizer/tokenizer.hpp>
