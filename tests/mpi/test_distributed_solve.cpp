// Distributed solves through the runner: every rank ends with identical parameters, an fp32
// exchange across K ranks matches the one-process run that draws the same global samples, and
// Q-GenX with 4-bit adaptive (ALQ) quantization converges on the deterministic bilinear game.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "saddle/comm/exchange.h"
#include "saddle/games/registry.h"
#include "saddle/run/runner.h"

namespace saddle {
namespace {

using testing::test_world;

struct Solved {
  RunResult result;
  torch::Tensor params;
};

Solved solve(Communicator& comm, const GameOptions& game_options, const std::string& solver_name,
             const SolverOptions& solver_options, const CodecOptions& codec, int64_t iterations,
             int64_t simulate_ranks = 1, int64_t byte_budget = 0,
             const std::string& collective = "allgather") {
  auto game = make_game("bilinear", game_options);
  auto solver = make_solver(solver_name, game->params(), game->players(), solver_options);
  Logger logger(LogLevel::kWarn, comm.rank(), comm.size());
  Exchange exchange(
      comm, ExchangeOptions().codec(codec).seed(game_options.seed).collective(collective), logger);
  RunOptions options;
  options.iterations(iterations)
      .seed(game_options.seed)
      .progress(false)
      .simulate_ranks(simulate_ranks)
      .byte_budget(byte_budget);
  RunResult result = run(*game, *solver, exchange, options, logger);
  return {result, game->params().clone()};
}

TEST(DistributedSolve, QuantizedRanksEndIdentical) {
  GameOptions game_options;
  game_options.noise = "absolute";
  game_options.seed = 5;
  auto solved = solve(test_world(), game_options, "qgenx", SolverOptions().lr(0.5),
                      CodecOptions().quantizer("qsgd").bits(4), 200);
  EXPECT_TRUE(solved.result.ranks_agree);
  EXPECT_EQ(solved.result.ranks, test_world().size());
  EXPECT_GT(solved.result.bytes_sent_all, 0);
}

TEST(DistributedSolve, Fp32MatchesOneProcessWithTheSameGlobalSamples) {
  GameOptions game_options;
  game_options.noise = "finite-sum";
  game_options.samples = 32;
  game_options.batch = 2;
  game_options.seed = 9;
  const int ranks = test_world().size();
  auto distributed = solve(test_world(), game_options, "eg", SolverOptions().lr(0.3),
                           CodecOptions().quantizer("none"), 300);
  // Every rank computes the one-process reference locally: K simulated ranks, same streams.
  auto single = make_single_process_communicator();
  auto reference = solve(*single, game_options, "eg", SolverOptions().lr(0.3),
                         CodecOptions().quantizer("none"), 300, ranks);
  const double diff = (distributed.params - reference.params).abs().max().item<double>();
  const double scale = reference.params.abs().max().item<double>();
  EXPECT_LT(diff, 1e-4 * scale) << "max difference " << diff;
  EXPECT_TRUE(distributed.result.ranks_agree);
}

// Both collectives: the all-gather, and the two-phase exchange whose second quantization adds
// noise that vanishes with the operator as the first's does.
class Collectives : public ::testing::TestWithParam<std::string> {};

TEST_P(Collectives, QgenxWithFourBitAlqConvergesOnDeterministicBilinear) {
  GameOptions game_options;
  game_options.dim = 64;
  game_options.seed = 1;
  const bool two_phase = GetParam() == "two-phase";
  // Two-phase: buckets of 32 coordinates, so that every rank owns a chunk of the 128.
  const CodecOptions codec =
      CodecOptions().quantizer("alq").bits(4).bucket_size(two_phase ? 32 : 1024);
  // Quantization noise is relative to the operator, so it vanishes at the equilibrium and the
  // constant-step generalized extra-gradient keeps its linear rate.
  auto solved = solve(test_world(), game_options, "qgenx", SolverOptions().lr(0.5), codec, 3000, 1,
                      0, GetParam());
  const double distance = *find_metric(solved.result.final_metrics, "distance_sq");
  if (test_world().rank() == 0) EXPECT_LE(distance, 1e-8);
  EXPECT_TRUE(solved.result.ranks_agree);
  EXPECT_EQ(solved.result.summary["collective"].get<std::string>(),
            test_world().size() > 1 ? GetParam() : "allgather");
  // 4 bits a coordinate plus the header and one norm per bucket: far below fp32's 32.
  if (!two_phase) {
    EXPECT_LT(solved.result.summary["bits_per_coordinate"].get<double>(), 7.0);
  }
}

// A byte budget ends every rank after the same iteration, also when the ranks' messages differ in
// size (an entropy coder): every rank counts all ranks' bytes (all-gather: it sees every message;
// two-phase: each owner's message says what it was sent), the same total everywhere, and the
// total passes the budget only at the last iteration.
TEST_P(Collectives, ByteBudgetStopsEveryRankAfterTheSameIteration) {
  GameOptions game_options;
  game_options.noise = "absolute";
  game_options.seed = 6;
  game_options.dim = 64;
  const CodecOptions codec =
      CodecOptions().quantizer("alq").bits(4).coder(CoderKind::kEntropy).bucket_size(32);
  const int64_t budget = 80000;
  auto solved = solve(test_world(), game_options, "qgenx", SolverOptions().lr(0.3), codec, 100000,
                      1, budget, GetParam());
  EXPECT_TRUE(solved.result.budget_reached);
  EXPECT_TRUE(solved.result.ranks_agree);  // the same parameters, so the same iteration count
  EXPECT_LT(solved.result.iterations, 100000);
  EXPECT_GE(solved.result.bytes_sent_all, budget);
  // It stopped as soon as the total passed the budget: by less than about one iteration's bytes.
  const Ledger& ledger = solved.result.ledger;
  EXPECT_EQ(ledger.bytes_all_ranks, solved.result.bytes_sent_all);
  const int64_t per_iteration = solved.result.bytes_sent_all / solved.result.iterations;
  EXPECT_LT(solved.result.bytes_sent_all - budget, 3 * per_iteration);
  // The iteration count is the same on every rank.
  torch::Tensor count = torch::tensor({solved.result.iterations}, torch::kInt64);
  torch::Tensor total = count.clone();
  test_world().allreduce_sum(total);
  EXPECT_EQ(total.item<int64_t>(), count.item<int64_t>() * test_world().size());
}

INSTANTIATE_TEST_SUITE_P(Exchange, Collectives, ::testing::Values("allgather", "two-phase"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "two-phase" ? std::string("TwoPhase")
                                                            : std::string("Allgather");
                         });

}  // namespace
}  // namespace saddle
