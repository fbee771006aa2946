// The Exchange over MPI: every rank returns the same bits, the unquantized average is the mean,
// quantized averages and adaptive levels agree across ranks, and the ledgers add up.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "mpi_test_env.h"
#include "saddle/comm/exchange.h"
#include "saddle/device.h"
#include "saddle/games/wgan_gp.h"

namespace saddle {
namespace {

using testing::test_world;

torch::Tensor local_operator(int rank, int64_t dim) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2000 + rank);
  return torch::randn({dim}, gen, torch::kFloat32) * (1.0 + rank);
}

bool identical_on_all_ranks(Communicator& comm, const torch::Tensor& tensor) {
  torch::Tensor bytes = tensor.contiguous().view(-1).view(torch::kUInt8);
  for (const auto& other : comm.allgather_bytes(bytes)) {
    if (!torch::equal(other, bytes)) return false;
  }
  return true;
}

torch::Tensor levels_tensor(const torch::Tensor& levels) { return levels.to(torch::kFloat64); }
template <typename Container>
torch::Tensor levels_tensor(const Container& levels) {
  std::vector<double> values(levels.begin(), levels.end());
  return torch::tensor(values, torch::kFloat64);
}

TEST(MpiExchange, UnquantizedAverageIsTheMeanOnEveryRank) {
  Communicator& comm = test_world();
  Logger quiet(LogLevel::kError);
  Exchange exchange(comm, ExchangeOptions().codec(CodecOptions().quantizer("none")), quiet);
  const int64_t dim = 1000;
  torch::Tensor average = exchange.average(local_operator(comm.rank(), dim));
  torch::Tensor mean = torch::zeros({dim}, torch::kFloat64);
  for (int r = 0; r < comm.size(); ++r) mean += local_operator(r, dim).to(torch::kFloat64);
  mean /= comm.size();
  EXPECT_TRUE(torch::allclose(average.to(torch::kFloat64), mean, 1e-6, 1e-6));
  EXPECT_TRUE(identical_on_all_ranks(comm, average));
  if (comm.size() == 1) EXPECT_TRUE(torch::equal(average, local_operator(0, dim)));
}

// The split all-gather under real MPI: pieces in flight two at a time, entropy-coded sizes that
// differ between ranks, and the unsplit exchange's bits on every rank.
TEST(MpiExchange, OverlappedPiecesGiveTheUnsplitBitsOnEveryRank) {
  Communicator& comm = test_world();
  Logger quiet(LogLevel::kError);
  for (const char* q : {"none", "alq"}) {
    for (auto coder : {CoderKind::kFixed, CoderKind::kEntropy}) {
      const auto codec = CodecOptions().quantizer(q).bits(4).bucket_size(128).coder(coder);
      Exchange off(comm, ExchangeOptions().codec(codec).overlap("off"), quiet);
      Exchange on(comm, ExchangeOptions().codec(codec).overlap("7"), quiet);
      for (int call = 0; call < 3; ++call) {
        const torch::Tensor local = local_operator(comm.rank() + call, 5000);
        const torch::Tensor a = off.average(local);
        const torch::Tensor b = on.average(local);
        EXPECT_TRUE(torch::equal(a, b)) << q << "/" << coder_name(coder) << ", call " << call;
        EXPECT_TRUE(identical_on_all_ranks(comm, b)) << q << ", call " << call;
      }
      EXPECT_EQ(on.overlap_pieces(), 7);
      if (coder == CoderKind::kFixed) {  // entropy: each piece has its own rANS table too
        EXPECT_EQ(on.ledger().bytes_received - off.ledger().bytes_received,
                  3 * (comm.size() - 1) * 6 * Codec::kHeaderBytes);
      }
    }
  }
}

// The game's slices under real MPI: the critic's pieces go while the generator's backward pass
// runs, so ranks post pieces out of index order, and every rank still gets the unsplit bits.
TEST(MpiExchange, AGamesSlicesGoEarlyAndGiveTheUnsplitBits) {
  Communicator& comm = test_world();
  Logger quiet(LogLevel::kError);
  GameOptions options;
  options.filters = 4;
  options.batch = 4;
  options.latent = 8;
  options.seed = 3;
  const RealBatches noise = [](int64_t batch, at::Generator& gen) {
    return torch::rand({batch, 1, 32, 32}, gen) * 2 - 1;
  };
  WganGpGame game(options, noise, 1);
  const auto codec = CodecOptions().quantizer("qsgd").bits(4).bucket_size(128);
  Exchange off(comm, ExchangeOptions().codec(codec).overlap("off"), quiet);
  Exchange on(comm, ExchangeOptions().codec(codec).overlap("6"), quiet);
  for (int call = 0; call < 2; ++call) {
    at::Generator a = at::make_generator<at::CPUGeneratorImpl>(100 * comm.rank() + call);
    at::Generator b = at::make_generator<at::CPUGeneratorImpl>(100 * comm.rank() + call);
    const torch::Tensor expected = off.average(game.operator_at(a));
    on.begin_average(game.dim(), torch::kCPU);
    int early = -1;
    const torch::Tensor local =
        game.operator_in_slices(b, [&](const torch::Tensor& f, int64_t begin, int64_t end) {
          on.offer(f, begin, end, true);
          if (early < 0) early = on.pieces_started();
        });
    const torch::Tensor average = on.finish_average(local);
    EXPECT_TRUE(torch::equal(average, expected)) << "call " << call;
    EXPECT_TRUE(identical_on_all_ranks(comm, average)) << "call " << call;
    // The critic's slice (the second half of z) completes the last pieces, not the first.
    EXPECT_GE(early, 1) << "call " << call;
    EXPECT_LT(early, 6) << "call " << call;
  }
}

class MpiQuantizedExchange : public ::testing::TestWithParam<std::string> {};

TEST_P(MpiQuantizedExchange, RanksAgreeAndLedgersAddUp) {
  Communicator& comm = test_world();
  Logger quiet(LogLevel::kError);
  auto options = ExchangeOptions()
                     .codec(CodecOptions().quantizer(GetParam()).bits(4))
                     .level_schedule({0, 5})
                     .level_every(8)
                     .seed(11);
  Exchange exchange(comm, options, quiet);
  torch::Tensor local = local_operator(comm.rank(), 300);
  torch::Tensor previous;
  for (int64_t t = 0; t < 20; ++t) {
    exchange.begin_iteration(t);
    torch::Tensor average = exchange.average(local);
    ASSERT_TRUE(identical_on_all_ranks(comm, average)) << GetParam() << " at iteration " << t;
    if (previous.defined()) EXPECT_FALSE(torch::equal(average, previous));
    previous = average;
  }
  const Ledger& ledger = exchange.ledger();
  EXPECT_EQ(ledger.exchanges, 20);
  EXPECT_EQ(ledger.coordinates_sent, 20 * 300);
  torch::Tensor totals = torch::tensor({ledger.bytes_sent, ledger.bytes_received}, torch::kInt64);
  comm.allreduce_sum(totals);
  EXPECT_EQ(totals[1].item<int64_t>(), (comm.size() - 1) * totals[0].item<int64_t>());
  if (exchange.codec().adaptive()) {
    EXPECT_EQ(ledger.level_updates, 4);  // 0, 5, 8, 16
    EXPECT_TRUE(identical_on_all_ranks(comm, levels_tensor(exchange.codec().levels())));
  }
}

INSTANTIATE_TEST_SUITE_P(Codecs, MpiQuantizedExchange, ::testing::Values("qsgd", "alq"));

// Ranks on a GPU and ranks on the CPU in one exchange (host-staged MPI; NCCL needs a GPU per rank):
// the CUDA encoder writes the CPU encoder's bytes, so all ranks still agree bit for bit. Every rank
// takes the same decision, so the collectives stay in step; skipped without a CUDA device.
TEST(MpiExchange, GpuAndCpuRanksAgree) {
  Communicator& comm = test_world();
  torch::Tensor without = torch::tensor({cuda_device_count() > 0 ? int64_t{0} : int64_t{1}});
  comm.allreduce_sum(without);
  if (without.item<int64_t>() > 0) GTEST_SKIP() << "needs a CUDA device on every rank";
  Logger quiet(LogLevel::kError);
  Exchange exchange(comm, ExchangeOptions().codec(CodecOptions().quantizer("alq").bits(4)), quiet);
  const torch::Device device =
      comm.rank() % 2 == 0 ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  for (int64_t t = 0; t < 5; ++t) {
    exchange.begin_iteration(t);
    torch::Tensor average = exchange.average(local_operator(comm.rank(), 3000).to(device));
    ASSERT_EQ(average.device(), device);
    ASSERT_TRUE(identical_on_all_ranks(comm, average.cpu())) << "iteration " << t;
  }
}

// A rank that reaches the exchange late is the others' wait, not their communication: the ledger
// books the round of sizes (every rank arrived) apart from moving the bytes, for both collectives.
TEST(MpiExchange, WaitingForALateRankIsBookedApart) {
  Communicator& comm = test_world();
  if (comm.size() < 2) GTEST_SKIP() << "needs two ranks";
  Logger quiet(LogLevel::kError);
  for (const char* collective : {"allgather", "two-phase"}) {
    Exchange exchange(comm, ExchangeOptions().collective(collective), quiet);
    const torch::Tensor local = local_operator(comm.rank(), 4096);
    exchange.average(local);  // connections set up
    const Ledger before = exchange.ledger();
    if (comm.rank() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(400));
    exchange.average(local);
    const Ledger& after = exchange.ledger();
    if (comm.rank() == 0) {
      EXPECT_GT(after.seconds_wait - before.seconds_wait, 0.3) << collective;
      EXPECT_LT(after.seconds_communicate - before.seconds_communicate, 0.3) << collective;
    }
  }
}

}  // namespace
}  // namespace saddle
