// saddle_mpi_fail_probe: proves that an error on one rank ends the whole MPI job, with the error
// printed, instead of leaving the other ranks waiting in a collective. Rank 1 fails while rank 0
// waits in a barrier. Modes:
//   catch  (default) the program's pattern: catch, print one line, Communicator::abort(1);
//   escape           no catch inside the runtime's scope: ~MpiRuntime aborts the job while the
//                    exception unwinds (the safety net), instead of MPI_Finalize hanging;
//   stall            rank 1 stops itself (SIGSTOP); rank 0's watchdog ends the job within the
//                    2 s --rank-timeout it sets, naming rank 1 and the collective.
#include <signal.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <exception>

#include "saddle/comm/mpi.h"
#include "saddle/error.h"

namespace {

void work(saddle::Communicator& world) {
  if (world.rank() == 1) throw saddle::Error("injected failure on rank 1");
  world.barrier();  // never completes: rank 1 does not come
}

// Rank 1 stops (as under SIGSTOP or a hung device) before the exchange's all-gather; rank 0's
// watchdog must end the job, naming rank 1.
void stall(saddle::Communicator& world) {
  world.set_timeout(2.0);
  if (world.rank() == 1) ::raise(SIGSTOP);
  world.allgather_bytes(torch::zeros({16}, torch::kUInt8));
}

}  // namespace

int main(int argc, char** argv) {
  const bool escape = argc > 1 && std::strcmp(argv[1], "escape") == 0;
  const bool stalled = argc > 1 && std::strcmp(argv[1], "stall") == 0;
  if (escape) {
    try {
      saddle::MpiRuntime mpi(argc, argv);
      auto world = mpi.world();
      work(*world);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());  // not reached on a multi-rank run
      return 1;
    }
    return 0;
  }
  saddle::MpiRuntime mpi(argc, argv);
  auto world = mpi.world();
  try {
    if (stalled) {
      stall(*world);
    } else {
      work(*world);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d/%d] error: %s\n", world->rank(), world->size(), e.what());
    if (world->size() > 1) world->abort(1);
    return 1;
  }
  return 0;
}
