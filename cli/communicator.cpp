#include "commands.h"

namespace saddle::cli {

std::unique_ptr<Communicator> make_communicator(bool under_mpi_launcher, int* argc, char*** argv) {
  (void)under_mpi_launcher;
  (void)argc;
  (void)argv;
  return make_single_process_communicator();
}

}  // namespace saddle::cli
