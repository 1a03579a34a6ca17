// tessera/ops/ops.hpp: the ops module (view-level ops: shape checks, row loops over threads, kernels).
#pragma once

#include <tessera/ops/activation.hpp>
#include <tessera/ops/elementwise.hpp>
#include <tessera/ops/embedding.hpp>
#include <tessera/ops/linear.hpp>
#include <tessera/ops/norm.hpp>
#include <tessera/ops/rope.hpp>
#include <tessera/ops/rows.hpp>
#include <tessera/ops/softmax.hpp>
