// tessera/layers/layers.hpp: module umbrella: the layer contract and every layer.
#pragma once

#include <tessera/layers/attention.hpp>
#include <tessera/layers/batch.hpp>
#include <tessera/layers/linear.hpp>
#include <tessera/layers/linear_attention_mixer.hpp>
#include <tessera/layers/mamba2_mixer.hpp>
#include <tessera/layers/mamba_mixer.hpp>
#include <tessera/layers/mlp.hpp>
#include <tessera/layers/moe.hpp>
#include <tessera/layers/norm.hpp>
#include <tessera/layers/residual.hpp>
#include <tessera/layers/rotary.hpp>
