// tessera/tessera.hpp: the umbrella header. Includes every module umbrella, the model tier and
// every registered family: `#include <tessera/tessera.hpp>` gives all that the README uses.
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
#include <tessera/layers/layers.hpp>
#include <tessera/models/models.hpp>
#include <tessera/families/registry.hpp>
