// The MPI Communicator under mpirun: variable-sized allgather, rank-identical allreduce,
// broadcast, the chunked paths for messages beyond MPI's int counts, and input validation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "mpi_test_env.h"
#include "saddle/comm/mpi.h"
#include "saddle/error.h"

namespace saddle {
namespace {

using testing::test_world;

// Rank r's message: `length(r)` bytes of a pattern that depends on r and the position.
torch::Tensor pattern(int rank, int64_t length) {
  return ((torch::arange(length, torch::kInt64) * 7 + rank * 31) % 251).to(torch::kUInt8);
}

int64_t length_of(int rank) { return rank == 1 ? 0 : 13 * rank + 3; }

// True when `tensor` holds the same bytes on every rank.
bool identical_on_all_ranks(Communicator& comm, const torch::Tensor& tensor) {
  torch::Tensor bytes = tensor.contiguous().view(-1).view(torch::kUInt8);
  auto all = comm.allgather_bytes(bytes);
  for (const auto& other : all) {
    if (!torch::equal(other, bytes)) return false;
  }
  return true;
}

void check_collectives(Communicator& comm) {
  const int rank = comm.rank(), size = comm.size();
  auto messages = comm.allgather_bytes(pattern(rank, length_of(rank)));
  ASSERT_EQ(static_cast<int>(messages.size()), size);
  for (int r = 0; r < size; ++r) {
    EXPECT_TRUE(torch::equal(messages[r], pattern(r, length_of(r)))) << "message of rank " << r;
  }

  auto gen = at::make_generator<at::CPUGeneratorImpl>(50 + rank);
  torch::Tensor x64 = torch::randn({37}, gen, torch::kFloat64);
  torch::Tensor x32 = x64.to(torch::kFloat32);
  torch::Tensor ints = torch::full({11}, rank + 1, torch::kInt64);
  comm.allreduce_sum(x64);
  comm.allreduce_sum(x32);
  comm.allreduce_sum(ints);
  torch::Tensor expected = torch::zeros({37}, torch::kFloat64);
  for (int r = 0; r < size; ++r) {
    auto g = at::make_generator<at::CPUGeneratorImpl>(50 + r);
    expected += torch::randn({37}, g, torch::kFloat64);
  }
  EXPECT_TRUE(torch::allclose(x64, expected));
  EXPECT_TRUE(torch::allclose(x32.to(torch::kFloat64), expected, 1e-5, 1e-5));
  EXPECT_TRUE(torch::equal(ints, torch::full({11}, size * (size + 1) / 2, torch::kInt64)));
  EXPECT_TRUE(identical_on_all_ranks(comm, x64));
  EXPECT_TRUE(identical_on_all_ranks(comm, x32));

  // All-to-all: rank s sends rank d a pattern of length 40 s + 7 d + 1 (rank 0 sends itself an
  // empty message too), seeded by s * size + d.
  std::vector<torch::Tensor> out;
  const auto personal_length = [](int s, int d) {
    return s == 0 && d == 0 ? 0 : 40 * s + 7 * d + 1;
  };
  for (int d = 0; d < size; ++d) out.push_back(pattern(rank * size + d, personal_length(rank, d)));
  auto in = comm.alltoall_bytes(out);
  ASSERT_EQ(static_cast<int>(in.size()), size);
  for (int s = 0; s < size; ++s) {
    EXPECT_TRUE(torch::equal(in[s], pattern(s * size + rank, personal_length(s, rank))))
        << "all-to-all message from rank " << s;
  }
  out.pop_back();
  EXPECT_THROW(comm.alltoall_bytes(out), Error);  // one message per rank, checked before sending

  const int root = size - 1;
  torch::Tensor bytes = rank == root ? pattern(root, 29) : torch::zeros({3}, torch::kUInt8);
  comm.broadcast_bytes(bytes, root);
  EXPECT_TRUE(torch::equal(bytes, pattern(root, 29)));
  comm.barrier();
}

TEST(MpiCommunicator, Identity) {
  Communicator& comm = test_world();
  EXPECT_EQ(comm.backend(), "mpi");
  EXPECT_GE(comm.size(), 1);
  EXPECT_LT(comm.rank(), comm.size());
  torch::Tensor ranks = torch::tensor({int64_t{1}}, torch::kInt64);
  comm.allreduce_sum(ranks);
  EXPECT_EQ(ranks.item<int64_t>(), comm.size());
}

TEST(MpiCommunicator, Collectives) { check_collectives(test_world()); }

// Tiny chunks force the multi-round paths that messages over 2 GiB take.
TEST(MpiCommunicator, ChunkedCollectives) {
  // world() is collective: every rank builds its duplicate here, in the same order.
  auto chunked = testing::test_runtime().world(MpiOptions().max_chunk(16));
  check_collectives(*chunked);
  auto big = chunked->allgather_bytes(pattern(chunked->rank(), 300 + chunked->rank()));
  for (int r = 0; r < chunked->size(); ++r) {
    EXPECT_TRUE(torch::equal(big[r], pattern(r, 300 + r))) << "message of rank " << r;
  }
  EXPECT_THROW(testing::test_runtime().world(MpiOptions().max_chunk(0)), Error);
}

// Short segments: every point-to-point message of the all-gathers (blocking and split) and the
// all-to-alls to another node goes as several, each under OpenMPI's eager limit by default. (Here
// every rank shares one node, and max_chunk splits those messages alike; the emulated cluster's
// tests send across nodes.)
TEST(MpiCommunicator, SegmentedMessages) {
  EXPECT_LT(kEagerSegmentBytes, 65536);
  EXPECT_EQ(MpiOptions().segment_bytes(), kEagerSegmentBytes);
  auto segmented = testing::test_runtime().world(MpiOptions().segment_bytes(7).max_chunk(5));
  check_collectives(*segmented);
  const int rank = segmented->rank();
  segmented->start_allgather(pattern(rank, 300 + rank));
  segmented->start_allgather(pattern(rank, 6));
  const auto first = segmented->finish_allgather();
  const auto second = segmented->finish_allgather();
  for (int r = 0; r < segmented->size(); ++r) {
    EXPECT_TRUE(torch::equal(first[r], pattern(r, 300 + r))) << "message of rank " << r;
    EXPECT_TRUE(torch::equal(second[r], pattern(r, 6))) << "message of rank " << r;
  }
  EXPECT_THROW(testing::test_runtime().world(MpiOptions().segment_bytes(0)), Error);
}

TEST(MpiCommunicator, RejectsBadInputsBeforeCommunicating) {
  Communicator& comm = test_world();
  EXPECT_THROW(comm.allgather_bytes(torch::zeros({4}, torch::kFloat32)), Error);
  EXPECT_THROW(comm.allgather_bytes(torch::zeros({8}, torch::kUInt8).slice(0, 0, 8, 2)), Error);
  torch::Tensor ints = torch::zeros({3}, torch::kInt32);
  try {
    comm.allreduce_sum(ints);
    ADD_FAILURE() << "allreduce_sum accepted kInt32";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected kFloat64, kFloat32 or kInt64"),
              std::string::npos)
        << e.what();
  }
  torch::Tensor bytes = torch::zeros({2}, torch::kUInt8);
  EXPECT_THROW(comm.broadcast_bytes(bytes, comm.size()), Error);
  comm.barrier();  // still usable
}

}  // namespace
}  // namespace saddle
