// Main of saddle_mpi_tests, run by ctest under mpirun: MPI once for the run, GoogleTest on every
// rank, results printed by rank 0 only, and an exit code agreed across ranks so that a failure on
// any rank fails the run.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <memory>

#include "mpi_test_env.h"
#include "saddle/comm/mpi.h"

namespace saddle::testing {

namespace {
Communicator* world = nullptr;
MpiRuntime* runtime = nullptr;

// Ranks other than 0 print nothing but their own failures, tagged with the rank.
class RankFailurePrinter final : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] failure at %s:%d\n%s\n", rank_,
                 result.file_name() ? result.file_name() : "?", result.line_number(),
                 result.summary());
  }

 private:
  int rank_;
};
}  // namespace

Communicator& test_world() { return *world; }
MpiRuntime& test_runtime() { return *runtime; }

}  // namespace saddle::testing

int main(int argc, char** argv) {
  saddle::MpiRuntime mpi(argc, argv);
  saddle::testing::runtime = &mpi;
  ::testing::InitGoogleTest(&argc, argv);
  // An exception escaping a test on one rank would leave the others waiting in a collective;
  // letting it terminate the process makes mpirun end the job instead.
  GTEST_FLAG_SET(catch_exceptions, false);
  torch::set_num_threads(1);

  std::unique_ptr<saddle::Communicator> world = mpi.world();
  saddle::testing::world = world.get();
  if (world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new saddle::testing::RankFailurePrinter(world->rank()));
  }

  const int local = RUN_ALL_TESTS();
  torch::Tensor failed = torch::tensor({static_cast<int64_t>(local != 0)}, torch::kInt64);
  world->allreduce_sum(failed);
  const int64_t failing_ranks = failed.item<int64_t>();
  if (world->rank() == 0 && failing_ranks > 0) {
    std::fprintf(stderr, "saddle_mpi_tests: failures on %lld of %d ranks\n",
                 static_cast<long long>(failing_ranks), world->size());
  }
  saddle::testing::world = nullptr;
  world.reset();
  return failing_ranks > 0 ? 1 : 0;
}
