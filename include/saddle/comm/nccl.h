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
#include <string>
#include <vector>

#include "saddle/comm/communicator.h"

namespace saddle {

struct NcclOptions {
  TORCH_ARG(double, timeout_seconds) = 120.0;
};

// Whether this build has the NCCL transport (a CUDA build that found NCCL).
bool nccl_built();

// The transport of a run: "auto" (NCCL for a CUDA device with several ranks when built with it and
// each rank has a GPU of its own, else MPI), "nccl" or "mpi". `gpu_shared`: some GPU serves several
// ranks (NCCL refuses two ranks on one device). Throws saddle::Error naming --transport when the
// choice cannot work.
std::string resolve_transport(const std::string& spec, const torch::Device& device, int ranks,
                              bool gpu_shared = false);

// Whether two ranks share a CUDA device: `placements` holds each rank's host and device as
// "HOST cuda:N" (or "HOST cpu", which is never shared in this sense).
bool gpu_shared(const std::vector<std::string>& placements);

// A communicator whose allgather_bytes moves CUDA messages over NCCL on `device`; everything else
// goes to `host`, which must outlive it (its abort() aborts NCCL, then the host). Collective:
// every rank calls it with its own device. Throws saddle::Error when this build has no NCCL or
// NCCL fails to start.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host,
                                                     const torch::Device& device,
                                                     const NcclOptions& options = NcclOptions());

}  // namespace saddle
