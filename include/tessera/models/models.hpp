// tessera/models/models.hpp: module umbrella: the runtimes, sampling and generation.
#pragma once

#include <tessera/models/causal_lm.hpp>
#include <tessera/models/generate.hpp>
#include <tessera/models/language_model.hpp>
#include <tessera/models/model_config.hpp>
#include <tessera/models/sampling.hpp>
