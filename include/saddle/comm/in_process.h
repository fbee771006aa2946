// InProcessGroup: `size` communicators that talk through shared memory inside one process, one
// thread per rank — the Communicator used by unit tests of the Exchange and of distributed
// behaviour without mpirun (stage 2 of game -> exchange -> solver -> metrics).
//
// Every collective is a rendezvous (mutex + condition variable, generation-counted barrier): all
// ranks deposit their input, each computes its result from all inputs in rank order (so
// floating-point sums are bit-identical on every rank, as MPI's are made to be), then all leave.
// Ranks must call the same collectives in the same order, as under MPI; a mismatch is detected
// and thrown as saddle::Error on every rank.
//
// abort(code) stands in for MPI_Abort without ending the test process: it marks the group aborted
// and throws saddle::Error("rank r aborted the group with code c") in the calling thread; every
// rank waiting in, or later entering, a collective throws the same error, so no thread hangs.
// A collective that waits longer than `timeout` aborts the group too (a rank forgot to call it).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "saddle/comm/communicator.h"

namespace saddle {

class InProcessGroup {
 public:
  explicit InProcessGroup(int size, std::chrono::milliseconds timeout = std::chrono::seconds(60));
  ~InProcessGroup();
  InProcessGroup(const InProcessGroup&) = delete;
  InProcessGroup& operator=(const InProcessGroup&) = delete;

  int size() const { return static_cast<int>(ranks_.size()); }
  // Rank r's communicator; use it from one thread only.
  Communicator& rank(int r);

  // Runs body(rank(r)) on `size` threads and joins them. A rank whose body throws aborts the
  // group (as a program calls abort() on error), so the others are released; then the first
  // exception thrown (in time) is rethrown here.
  void run(const std::function<void(Communicator&)>& body);

  struct State;  // shared rendezvous state (src/comm/in_process.cpp)

 private:
  std::shared_ptr<State> state_;
  std::vector<std::unique_ptr<Communicator>> ranks_;
};

}  // namespace saddle
