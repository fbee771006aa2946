// NCCL transport (stage 2 of game -> exchange -> solver -> metrics): the exchange's per-step
// all-gather of messages from GPU memory to GPU memory. It wraps a host communicator (MPI) that
// bootstraps it (rank 0's NCCL id is broadcast over it) and carries everything else: message
// sizes, level statistics, control. Only src/cuda/nccl_communicator.cpp knows <nccl.h>.
//
// Failures end the job as they do over MPI: an error on one rank aborts the NCCL communicator and
// then the MPI job (Communicator::abort). A collective that waits longer than `timeout_seconds`
// for the other ranks (a rank stopped, a link failed) aborts the communicator and throws, naming
// the operation, so the job ends instead of hanging.
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <memory>

#include "saddle/comm/communicator.h"

namespace saddle {

struct NcclOptions {
  TORCH_ARG(double, timeout_seconds) = 120.0;
};

// Whether this build has the NCCL transport (a CUDA build that found NCCL).
bool nccl_built();

// The transport of a run: "auto" (NCCL for a CUDA device with several ranks when built with it,
// else MPI), "nccl" or "mpi". Throws saddle::Error naming --transport when the choice cannot work.
std::string resolve_transport(const std::string& spec, const torch::Device& device, int ranks);

// A communicator whose allgather_bytes moves CUDA messages over NCCL on `device`; everything else
// goes to `host`, which must outlive it (its abort() aborts NCCL, then the host). Collective:
// every rank calls it with its own device. Throws saddle::Error when this build has no NCCL or
// NCCL fails to start.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host,
                                                     const torch::Device& device,
                                                     const NcclOptions& options = NcclOptions());

}  // namespace saddle
