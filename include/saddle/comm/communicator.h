// Communicator: how ranks talk (stage 2 of game -> exchange -> solver -> metrics). The Exchange
// builds on the few collectives below; implementations: a single-process one, an in-process group
// of threads for unit tests (in_process.h), and MPI (mpi.h; src/comm/mpi_communicator.cpp is the
// only file that knows <mpi.h>). Nothing here assumes shared memory or one host. Collectives must
// be called by every rank in the same order; invalid arguments throw saddle::Error before any
// communication, so the failing rank can abort() the job.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

namespace saddle {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;
  // This rank's index among the ranks on its own node, and their number: a rank picks its GPU
  // by local_rank() (saddle/device.h).
  virtual int local_rank() const { return rank(); }
  virtual int local_size() const { return size(); }

  // Whether allgather_bytes takes and returns tensors on `device` as they are (CPU tensors always;
  // CUDA tensors over NCCL). Otherwise the Exchange stages device messages through host memory.
  virtual bool device_collectives(const torch::Device& device) const { return device.is_cpu(); }

  // Every rank contributes one 1-D kUInt8 message; sizes may differ between ranks (unless the
  // transport says otherwise). Returns every rank's message in rank order (this rank's included),
  // as views of one buffer, on the message's device.
  virtual std::vector<torch::Tensor> allgather_bytes(const torch::Tensor& message) = 0;

  // Elementwise sum over ranks, in place, of a contiguous kFloat64, kFloat32 or kInt64 tensor.
  // Every rank gets the same bits (floating-point sums included): state refit from the sum, such
  // as adaptive quantization levels, must agree on all ranks.
  virtual void allreduce_sum(torch::Tensor& tensor) = 0;

  // Rank `root`'s bytes to every rank (resized on receivers).
  virtual void broadcast_bytes(torch::Tensor& bytes, int root) = 0;

  virtual void barrier() = 0;

  // Ends every rank of the job with `code` (MPI_Abort under MPI): used when one rank fails, so that
  // an error on one rank never leaves the others hanging in a collective.
  [[noreturn]] virtual void abort(int code) = 0;
};

// For implementations: throws saddle::Error unless `bytes` is a defined, contiguous, 1-D kUInt8
// CPU tensor; `what` names the collective in the message.
void check_message_bytes(const torch::Tensor& bytes, const char* what);

// Size 1: collectives are identities.
std::unique_ptr<Communicator> make_single_process_communicator();

}  // namespace saddle
