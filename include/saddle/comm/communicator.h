// Communicator: how ranks talk (stage 2 of game -> exchange -> solver -> metrics). The Exchange
// builds on the few collectives below; implementations: a single-process one, an in-process group
// of threads for unit tests (in_process.h), and MPI (mpi.h; src/comm/mpi_communicator.cpp is the
// only file that knows <mpi.h>). Nothing here assumes shared memory or one host. Collectives must
// be called by every rank in the same order; invalid arguments throw saddle::Error before any
// communication, so the failing rank can abort() the job.
#pragma once

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "saddle/error.h"

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

  // The all-gather split in two, so that an exchange can encode and decode while bytes travel
  // (Exchange's overlap): start_allgather() posts this rank's message (1-D kUInt8 CPU) and returns
  // without waiting; finish_allgather() completes the oldest started one and returns what
  // allgather_bytes would. Every rank starts and finishes them in the same order, and finishes all
  // it started before calling another collective. progress() lets started transfers advance while
  // the caller computes (MPI moves bytes only inside its calls). The default gathers at start.
  virtual void start_allgather(const torch::Tensor& message);
  virtual std::vector<torch::Tensor> finish_allgather();
  virtual void progress() {}

  // Personalized exchange: messages[r] (1-D kUInt8 CPU, any size, empty allowed) goes to rank r.
  // Returns the message each rank sent to this one, in rank order (this rank's own included).
  // The two-phase exchange's first phase: each rank sends each owner its chunk.
  virtual std::vector<torch::Tensor> alltoall_bytes(const std::vector<torch::Tensor>& messages) = 0;

  // Seconds the last allgather_bytes or alltoall_bytes spent waiting for the other ranks to
  // arrive (its round of sizes), as opposed to moving the bytes; 0 where not measured. The
  // ledger books it apart: ranks that reach an exchange at different times (load imbalance,
  // cores shared) are not a cost of the link.
  virtual double last_wait_seconds() const { return 0.0; }

  // Elementwise sum over ranks, in place, of a contiguous kFloat64, kFloat32 or kInt64 tensor.
  // Every rank gets the same bits (floating-point sums included): state refit from the sum, such
  // as adaptive quantization levels, must agree on all ranks.
  virtual void allreduce_sum(torch::Tensor& tensor) = 0;

  // Rank `root`'s bytes to every rank (resized on receivers).
  virtual void broadcast_bytes(torch::Tensor& bytes, int root) = 0;

  virtual void barrier() = 0;

  // The longest a collective waits for the other ranks, in seconds (0: no limit). A collective
  // that waits longer throws saddle::Error naming the operation and, where it can tell, the ranks
  // it waited for; the program then ends the job (abort), so a stopped rank cannot hang the
  // others. Communicators without a transport to wait on ignore it.
  virtual void set_timeout(double seconds) {}
  virtual double timeout() const { return 0.0; }

  // A collective OR that does not stall a loop: post_flag() starts it with this rank's flag,
  // collect_flag() completes the oldest posted one and returns whether any rank posted true.
  // Every rank posts and collects in the same order. The default is a blocking allgather.
  virtual void post_flag(bool flag);
  virtual bool collect_flag();

  // Ends every rank of the job with `code` (MPI_Abort under MPI): used when one rank fails, so that
  // an error on one rank never leaves the others hanging in a collective.
  [[noreturn]] virtual void abort(int code) = 0;

 private:
  std::deque<bool> posted_;  // results of the default post_flag, oldest first
  std::deque<std::vector<torch::Tensor>> started_;  // the default start_allgather's results
};

// An error that every rank raises together, after agreeing on it (a configuration the ranks
// disagree on, a directory that cannot be resumed, an interrupted run): a program prints it once
// (rank 0) and every rank exits with exit_code(), with no job abort needed.
class AgreedError : public Error {
 public:
  explicit AgreedError(const std::string& what, int exit_code = 1)
      : Error(what), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// Checks that every rank holds the same `config` (hashes first, then the first differing key by
// name). Throws AgreedError on every rank, e.g. "ranks disagree on the configuration: --iters is
// 3000 on rank 0 but 2000 on rank 1". Collective.
void check_ranks_agree(Communicator& comm, const nlohmann::ordered_json& config);

// The first key (in a's order, then b's) whose value differs between two JSON objects, or "".
std::string first_difference(const nlohmann::ordered_json& a, const nlohmann::ordered_json& b);

// For implementations: throws saddle::Error unless `bytes` is a defined, contiguous, 1-D kUInt8
// CPU tensor; `what` names the collective in the message.
void check_message_bytes(const torch::Tensor& bytes, const char* what);
// The same for each of alltoall_bytes' messages, and that there is one per rank.
void check_alltoall_messages(const std::vector<torch::Tensor>& messages, int ranks);

// Size 1: collectives are identities.
std::unique_ptr<Communicator> make_single_process_communicator();

}  // namespace saddle
