// The environment of the MPI test binary (tests/mpi/main.cpp): MPI is initialized once for the
// whole run, and every test talks through the same private world communicator. Tests must call
// collectives in the same order on every rank; EXPECT_* failures keep ranks in step, while an
// exception escaping a test ends the job (exceptions are not caught by GoogleTest here), so a
// broken test never leaves the other ranks hanging.
#pragma once

#include "saddle/comm/communicator.h"
#include "saddle/comm/mpi.h"

namespace saddle::testing {

// The world communicator (backend "mpi"), valid for the whole test run.
Communicator& test_world();
// The run's MPI runtime, for tests that need another communicator (world() is collective).
MpiRuntime& test_runtime();

}  // namespace saddle::testing
