// MpiRuntime: MPI's lifetime in a saddle program, and the factory of its MPI Communicator (stage 2
// of game -> exchange -> solver -> metrics). The program (CLI or a user's main) owns exactly one
// MpiRuntime for as long as it talks MPI; the library never initializes MPI behind its back.
// This header does not include <mpi.h>: only src/comm/mpi_*.cpp knows MPI.
//
// Error handling contract (an error on one rank must end the whole job, never hang it):
//   * The program catches saddle::Error / std::exception around its work, prints one line and,
//     when size() > 1, calls Communicator::abort(code), which is MPI_Abort on MPI_COMM_WORLD.
//   * Safety net: if an exception is still propagating when the MpiRuntime is destroyed in a
//     multi-rank job (the program forgot to catch inside the runtime's scope), the destructor
//     prints a line and calls MPI_Abort instead of MPI_Finalize, which would wait forever for the
//     ranks still sitting in a collective.
//   * MPI's own failures (a bad count, a dead peer reported by MPI) are thrown as saddle::Error
//     naming the MPI call, because the private communicators use MPI_ERRORS_RETURN.
#pragma once

#include <torch/arg.h>

#include <cstdint>
#include <limits>
#include <memory>

#include "saddle/comm/communicator.h"

namespace saddle {

// 64 KiB, OpenMPI's default TCP eager limit, less 128 bytes for its message header.
constexpr int64_t kEagerSegmentBytes = 65536 - 128;

struct MpiOptions {
  // Largest number of bytes (elements for allreduce_sum) handed to one MPI call: MPI counts are
  // `int`, so larger messages travel in pieces of at most this size.
  // Lower it only to exercise the chunked path in tests.
  TORCH_ARG(int64_t, max_chunk) = std::numeric_limits<int>::max();
  // Largest point-to-point message of the exchange's all-gathers and all-to-alls to a rank on
  // another node (at most max_chunk): longer ones travel as several. (Ranks on one node talk
  // through shared memory, where this would only add calls.) OpenMPI's TCP transport sends a
  // message up to its eager limit (64 KiB by default, its header included) as soon as it is posted,
  // and a longer one only after a handshake with the receiver; on an emulated cluster those
  // handshakes stalled the overlapped exchange's pieces (README, "Encoding, sending and decoding at
  // once"). The default leaves room for the header.
  TORCH_ARG(int64_t, segment_bytes) = kEagerSegmentBytes;
};

class MpiRuntime {
 public:
  // MPI_Init_thread(MPI_THREAD_FUNNELED): only the thread that built the runtime calls MPI.
  // Throws saddle::Error if MPI was already initialized or finalized.
  MpiRuntime(int& argc, char**& argv);
  // MPI_Finalize, or MPI_Abort(MPI_COMM_WORLD, 1) while an exception unwinds a multi-rank job.
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int rank() const { return rank_; }  // in MPI_COMM_WORLD
  int size() const { return size_; }

  // A Communicator on a private MPI_Comm_dup of MPI_COMM_WORLD (Horovod-style), so saddle's
  // traffic never matches a user's messages. Collective: every rank calls it, in the same order.
  // The communicator must be destroyed before the runtime.
  std::unique_ptr<Communicator> world(const MpiOptions& options = MpiOptions());

 private:
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace saddle
