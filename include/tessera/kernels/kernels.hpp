// tessera/kernels/kernels.hpp: the kernels module (contiguous leaf kernels; they never allocate).
#pragma once

#include <tessera/kernels/activation.hpp>
#include <tessera/kernels/elementwise.hpp>
#include <tessera/kernels/gemm.hpp>
#include <tessera/kernels/gemv.hpp>
#include <tessera/kernels/gemv_rows.hpp>
#include <tessera/kernels/quant.hpp>
#include <tessera/kernels/reduce.hpp>
