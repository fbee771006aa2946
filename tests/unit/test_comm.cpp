// Communicators without mpirun: the in-process group (threads as ranks) and the single process.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "saddle/comm/communicator.h"
#include "saddle/comm/in_process.h"
#include "saddle/error.h"

namespace saddle {
namespace {

using namespace std::chrono_literals;

torch::Tensor filled_bytes(int64_t n, int value) { return torch::full({n}, value, torch::kUInt8); }

// Runs `body` and expects it to throw saddle::Error whose message contains `needle`.
template <typename Body>
void expect_error(Body&& body, const std::string& needle) {
  try {
    body();
    FAIL() << "expected saddle::Error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(InProcessGroup, AllgatherOfDifferentSizedMessages) {
  for (int size : {2, 3, 4}) {
    InProcessGroup group(size);
    group.run([&](Communicator& comm) {
      const int r = comm.rank();
      // Rank 1 sends nothing: empty messages are legal.
      auto messages = comm.allgather_bytes(filled_bytes(r == 1 ? 0 : 3 * r + 2, 10 + r));
      ASSERT_EQ(static_cast<int>(messages.size()), size);
      for (int s = 0; s < size; ++s) {
        ASSERT_EQ(messages[s].numel(), s == 1 ? 0 : 3 * s + 2) << "from rank " << s;
        EXPECT_TRUE(torch::equal(messages[s], filled_bytes(messages[s].numel(), 10 + s)));
      }
    });
  }
}

TEST(InProcessGroup, AllreduceSumIsIdenticalOnEveryRank) {
  const int size = 4;
  InProcessGroup group(size);
  std::mutex mutex;
  std::vector<torch::Tensor> float_sums(size);
  group.run([&](Communicator& comm) {
    const int r = comm.rank();
    auto gen = at::make_generator<at::CPUGeneratorImpl>(100 + r);
    torch::Tensor x64 = torch::randn({257}, gen, torch::kFloat64);
    torch::Tensor x32 = x64.to(torch::kFloat32);
    torch::Tensor i64 = torch::arange(5, torch::kInt64) * (r + 1);
    comm.allreduce_sum(x64);
    comm.allreduce_sum(x32);
    comm.allreduce_sum(i64);
    EXPECT_TRUE(torch::equal(i64, torch::arange(5, torch::kInt64) * 10));  // 1+2+3+4
    std::lock_guard<std::mutex> lock(mutex);
    float_sums[r] = torch::cat({x64, x32.to(torch::kFloat64)});
  });
  torch::Tensor expected = torch::zeros({257}, torch::kFloat64);
  for (int r = 0; r < size; ++r) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(100 + r);
    expected += torch::randn({257}, gen, torch::kFloat64);
  }
  for (int r = 0; r < size; ++r) {
    EXPECT_TRUE(torch::equal(float_sums[r], float_sums[0])) << "rank " << r << " differs";
    EXPECT_TRUE(torch::allclose(float_sums[r].slice(0, 0, 257), expected));
    EXPECT_TRUE(torch::allclose(float_sums[r].slice(0, 257), expected, 1e-5, 1e-5));
  }
}

TEST(InProcessGroup, BroadcastResizesReceivers) {
  InProcessGroup group(3);
  group.run([](Communicator& comm) {
    torch::Tensor bytes = comm.rank() == 2 ? torch::arange(7, torch::kUInt8) : filled_bytes(2, 0);
    comm.broadcast_bytes(bytes, 2);
    EXPECT_TRUE(torch::equal(bytes, torch::arange(7, torch::kUInt8)));
    comm.barrier();
  });
}

TEST(InProcessGroup, RejectsBadInputsWithClearErrors) {
  InProcessGroup group(2);
  Communicator& comm = group.rank(0);  // validation throws before the rendezvous
  expect_error([&] { comm.allgather_bytes(torch::zeros({4}, torch::kFloat32)); },
               "expected kUInt8");
  expect_error([&] { comm.allgather_bytes(torch::zeros({2, 2}, torch::kUInt8)); }, "2-D");
  expect_error([&] { comm.allgather_bytes(torch::zeros({8}, torch::kUInt8).slice(0, 0, 8, 2)); },
               "non-contiguous");
  torch::Tensor ints = torch::zeros({3}, torch::kInt32);
  expect_error([&] { comm.allreduce_sum(ints); }, "Int");
  torch::Tensor strided = torch::zeros({4, 4}, torch::kFloat64).t();
  expect_error([&] { comm.allreduce_sum(strided); }, "non-contiguous");
  torch::Tensor bytes = filled_bytes(3, 1);
  expect_error([&] { comm.broadcast_bytes(bytes, 5); }, "root 5");
  expect_error([&] { group.rank(2); }, "rank 2");
  expect_error([] { InProcessGroup bad(0); }, "size must be >= 1, got 0");
}

TEST(InProcessGroup, MismatchedCollectivesFailOnEveryRank) {
  InProcessGroup group(2);
  std::atomic<int> failures{0};
  group.run([&](Communicator& comm) {
    try {
      if (comm.rank() == 0) {
        comm.barrier();
      } else {
        comm.allgather_bytes(filled_bytes(1, 1));
      }
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("collective mismatch"), std::string::npos) << e.what();
      ++failures;
    }
  });
  EXPECT_EQ(failures.load(), 2);
}

TEST(InProcessGroup, AbortReleasesRanksWaitingInACollective) {
  InProcessGroup group(3);
  auto start = std::chrono::steady_clock::now();
  expect_error(
      [&] {
        group.run([](Communicator& comm) {
          if (comm.rank() == 1) comm.abort(3);
          comm.barrier();  // ranks 0 and 2 would wait here forever
        });
      },
      "rank 1 aborted the group with code 3");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  // The group stays aborted, like a job after MPI_Abort.
  expect_error([&] { group.run([](Communicator& comm) { comm.barrier(); }); }, "aborted");
}

TEST(InProcessGroup, RunRethrowsTheRootCauseAndReleasesTheOthers) {
  InProcessGroup group(4);
  expect_error(
      [&] {
        group.run([](Communicator& comm) {
          if (comm.rank() == 2) throw Error("injected failure on rank 2");
          comm.allgather_bytes(filled_bytes(4, 0));
        });
      },
      "injected failure on rank 2");
}

TEST(InProcessGroup, MissingRankTimesOut) {
  InProcessGroup group(2, 200ms);
  expect_error(
      [&] {
        group.run([](Communicator& comm) {
          if (comm.rank() == 0) comm.barrier();
        });
      },
      "timed out after 200 ms");
}

TEST(SingleProcessCommunicator, CollectivesAreIdentities) {
  auto comm = make_single_process_communicator();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  auto messages = comm->allgather_bytes(filled_bytes(5, 9));
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_TRUE(torch::equal(messages[0], filled_bytes(5, 9)));
  torch::Tensor x = torch::ones({3}, torch::kFloat64);
  comm->allreduce_sum(x);
  EXPECT_TRUE(torch::equal(x, torch::ones({3}, torch::kFloat64)));
}

}  // namespace
}  // namespace saddle
