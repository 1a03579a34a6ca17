// tessera/simd/simd.hpp: the SIMD backend module.
#pragma once

#include <tessera/simd/arch.hpp>
#include <tessera/simd/math.hpp>
#include <tessera/simd/vec.hpp>
