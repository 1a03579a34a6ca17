// tessera/ssm/ssm.hpp: the SSM kernel module (conv1d with state, Mamba-1 selective scan, Mamba-2
// SSD, gated RMSNorm, S4D). Stateless kernels on views; states in ssm_state.hpp.
#pragma once

#include <tessera/ssm/conv1d.hpp>
#include <tessera/ssm/gated_rms_norm.hpp>
#include <tessera/ssm/s4d.hpp>
#include <tessera/ssm/selective_scan.hpp>
#include <tessera/ssm/ssd.hpp>
#include <tessera/ssm/ssm_math.hpp>
#include <tessera/ssm/ssm_state.hpp>
