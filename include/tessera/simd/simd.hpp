// tessera/simd/simd.hpp: the SIMD backend module.
#pragma once

#include <tessera/simd/arch.hpp>
