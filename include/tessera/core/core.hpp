// tessera/core/core.hpp: the core module (tensors, views, dtypes, errors, workspace, threads).
#pragma once

#include <tessera/core/blocks.hpp>
#include <tessera/core/blocks_interleaved.hpp>
#include <tessera/core/dtype.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/extents.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/core/workspace.hpp>
