// The run loop's own duties: naming a divergence that starts inside an operator evaluation, and
// handing back every evaluation it made.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "paths.h"
#include "saddle/comm/communicator.h"
#include "saddle/comm/exchange.h"
#include "saddle/comm/in_process.h"
#include "saddle/error.h"
#include "saddle/log.h"
#include "saddle/run/files.h"
#include "saddle/run/runner.h"
#include "test_support.h"

namespace {

using saddle::testing::ScalarBilinear;

// x*y by extra-gradient with a constant step `lr`: each iteration multiplies |z| by
// sqrt(1 - lr^2 + lr^4), so lr 3 overflows within about 35 iterations, 1.5 within about 110, and
// 0.75 contracts. Checkpoints every 50 iterations into `dir` (when given).
saddle::RunResult run_diverging(int64_t iterations, int64_t retries, const std::string& dir,
                                bool resume = false) {
  ScalarBilinear game;
  auto solver = saddle::make_solver(
      "eg", game.params(), game.players(),
      saddle::SolverOptions().lr(3.0).step_size(saddle::StepSizeKind::kConstant));
  auto comm = saddle::make_single_process_communicator();
  saddle::Logger logger(saddle::LogLevel::kError);
  saddle::Exchange exchange(*comm, saddle::ExchangeOptions(), logger);
  return saddle::run(game, *solver, exchange,
                     saddle::RunOptions()
                         .iterations(iterations)
                         .divergence_retries(retries)
                         .out_dir(dir)
                         .checkpoint_every(dir.empty() ? 0 : 50)
                         .log_every(10)
                         .resume(resume)
                         .progress(false),
                     logger);
}

// A divergence goes back to the last snapshot (every 100 iterations, and at checkpoints) with every
// learning rate halved: lr 3 diverges before the first snapshot, 1.5 after the one at 100, and
// 0.75 trains to the end. The records are those of the path the run kept.
TEST(Runner, ADivergenceGoesBackToTheLastSnapshotWithHalvedRates) {
  const std::string dir = saddle::testing::fresh_temp_dir("diverge").string();
  const saddle::RunResult r = run_diverging(400, 3, dir);
  EXPECT_EQ(r.iterations, 400);
  const auto& retries = r.summary["divergence_retries"];
  ASSERT_EQ(retries.size(), 2u) << retries.dump();
  EXPECT_EQ(retries[0]["back_to"], 0) << retries.dump();
  EXPECT_EQ(retries[1]["back_to"], 100) << retries.dump();
  EXPECT_GT(retries[1]["diverged_at"].get<int64_t>(), 100);
  EXPECT_DOUBLE_EQ(r.summary["lr_scale"].get<double>(), 0.25);
  EXPECT_TRUE(std::isfinite(r.final_metrics.front().second));
  // One record per 10 iterations of the kept path, in order, none from the abandoned ones.
  const std::string text = saddle::read_file(saddle::join_path(dir, "metrics.jsonl"));
  std::vector<int64_t> iterations;
  size_t at = 0;
  while ((at = text.find("\"iter\":", at)) != std::string::npos) {
    at += 7;
    iterations.push_back(std::stoll(text.substr(at)));
  }
  ASSERT_EQ(iterations.size(), 41u);
  for (size_t i = 0; i < iterations.size(); ++i) EXPECT_EQ(iterations[i], 10 * (int64_t)i);
  saddle::remove_tree(dir);
}

// Stopped after a retry and resumed, the run writes what the uninterrupted one wrote: the newest
// checkpoint holds the halved rates and the retries taken.
TEST(Runner, ARunThatBackedOffResumesExactly) {
  const std::string whole = saddle::testing::fresh_temp_dir("diverge_whole").string();
  const std::string parts = saddle::testing::fresh_temp_dir("diverge_parts").string();
  const saddle::RunResult a = run_diverging(300, 3, whole);
  run_diverging(150, 3, parts);
  const saddle::RunResult b = run_diverging(300, 3, parts, /*resume=*/true);
  EXPECT_EQ(saddle::read_file(saddle::join_path(whole, "metrics.jsonl")),
            saddle::read_file(saddle::join_path(parts, "metrics.jsonl")));
  EXPECT_EQ(a.summary["divergence_retries"], b.summary["divergence_retries"]);
  EXPECT_EQ(a.summary["lr_scale"], b.summary["lr_scale"]);
  saddle::remove_tree(whole);
  saddle::remove_tree(parts);
}

// Out of retries, the run ends as a divergence that says how many it took.
TEST(Runner, ADivergenceAfterTheLastRetryEndsTheRun) {
  try {
    run_diverging(400, 1, "");
    FAIL() << "no error";
  } catch (const saddle::Diverged& e) {
    EXPECT_GT(e.iteration(), 100);
    EXPECT_NE(std::string(e.what()).find("after 1 retry with halved learning rates"),
              std::string::npos)
        << e.what();
  }
}

// x*y whose operator turns NaN at its `bad_call`-th evaluation while the parameters stay finite,
// as a GAN's does when a step overshoots; evaluation_metrics counts its calls.
class PoisonedBilinear final : public saddle::Game {
 public:
  explicit PoisonedBilinear(int bad_call) : bad_call_(bad_call) {
    init_params({saddle::Player{"x", saddle::Role::kMin, 0, 1},
                 saddle::Player{"y", saddle::Role::kMax, 0, 1}},
                torch::tensor({1.0f, 1.0f}));
  }
  std::string name() const override { return "poisoned-bilinear"; }
  torch::Tensor operator_at(at::Generator&) override {
    torch::Tensor f = torch::stack({params_[1], -params_[0]});
    if (++calls_ == bad_call_) f[0] = std::numeric_limits<float>::quiet_NaN();
    return f;
  }
  saddle::Metrics metrics() override { return {{"x", params_[0].item<double>()}}; }
  saddle::Metrics evaluation_metrics() override { return {{"evaluations", ++evaluations_}}; }

 private:
  int bad_call_;
  int calls_ = 0;
  double evaluations_ = 0;
};

saddle::RunResult run_eg(saddle::Game& game, int64_t iterations, int64_t eval_every,
                         const std::string& quantizer) {
  auto solver =
      saddle::make_solver("eg", game.params(), game.players(), saddle::SolverOptions().lr(0.1));
  auto comm = saddle::make_single_process_communicator();
  saddle::Logger logger(saddle::LogLevel::kError);
  saddle::Exchange exchange(
      *comm, saddle::ExchangeOptions().codec(saddle::CodecOptions().quantizer(quantizer)), logger);
  return saddle::run(
      game, *solver, exchange,
      saddle::RunOptions().iterations(iterations).eval_every(eval_every).progress(false), logger);
}

TEST(Runner, NonFiniteOperatorIsADivergenceAtItsIteration) {
  for (const char* quantizer : {"none", "alq"}) {
    // Extra-gradient: calls 5 and 6 belong to iteration 3; call 5 is F(X_t), where no shorter
    // step can help.
    PoisonedBilinear game(/*bad_call=*/5);
    try {
      run_eg(game, 10, 0, quantizer);
      FAIL() << quantizer << ": no error";
    } catch (const saddle::Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("diverged at iteration 3"), std::string::npos)
          << quantizer << ": " << what;
      EXPECT_NE(what.find("operator on rank 0 is not finite"), std::string::npos) << what;
    }
  }
}

// An extrapolation whose operator is not finite is redone with a quarter of the step: the run goes
// on (one retry, counted in summary.json), and ends where it would have ended had the retry been
// planned (the iterate is finite and moved towards the equilibrium).
TEST(Runner, ANonFiniteExtrapolationIsRetriedWithAShorterStep) {
  for (const char* quantizer : {"none", "alq"}) {
    PoisonedBilinear game(/*bad_call=*/6);  // V_{t+1/2} of iteration 3
    const saddle::RunResult result = run_eg(game, 10, 0, quantizer);
    EXPECT_EQ(result.iterations, 10) << quantizer;
    EXPECT_EQ(result.summary["non_finite_retries"], 1) << quantizer;
    EXPECT_TRUE(torch::isfinite(game.params()).all().item<bool>());
    EXPECT_LT(game.params().norm().item<double>(), std::sqrt(2.0));
  }
}

// Every extrapolation of iteration 3 non-finite: after its retries the run ends as a divergence.
class NanAfterBilinear final : public saddle::Game {
 public:
  explicit NanAfterBilinear(int from_call) : from_call_(from_call) {
    init_params({saddle::Player{"x", saddle::Role::kMin, 0, 1},
                 saddle::Player{"y", saddle::Role::kMax, 0, 1}},
                torch::tensor({1.0f, 1.0f}));
  }
  std::string name() const override { return "nan-after-bilinear"; }
  torch::Tensor operator_at(at::Generator&) override {
    torch::Tensor f = torch::stack({params_[1], -params_[0]});
    // Finite at X_t (the first call of iteration 3), then never again.
    if (++calls_ >= from_call_ + 1) f[0] = std::numeric_limits<float>::quiet_NaN();
    return f;
  }
  saddle::Metrics metrics() override { return {{"x", params_[0].item<double>()}}; }

 private:
  int from_call_;
  int calls_ = 0;
};

TEST(Runner, ExtrapolationsThatStayNonFiniteEndTheRun) {
  NanAfterBilinear game(/*from_call=*/5);
  try {
    run_eg(game, 10, 0, "none");
    FAIL() << "no error";
  } catch (const saddle::Diverged& e) {
    EXPECT_EQ(e.iteration(), 3);
    EXPECT_NE(std::string(e.what()).find("operator on rank 0 is not finite"), std::string::npos)
        << e.what();
  }
}

// With several ranks the failure on one rank is every rank's: all retry alike and end identical.
TEST(Runner, EveryRankRetriesTheSameExtrapolation) {
  saddle::InProcessGroup group(3);
  std::vector<int64_t> retries(3, -1);
  std::vector<bool> agree(3, false);
  group.run([&](saddle::Communicator& comm) {
    // Only rank 1's operator goes non-finite, at iteration 3's extrapolation.
    PoisonedBilinear game(comm.rank() == 1 ? 6 : -1);
    auto solver =
        saddle::make_solver("eg", game.params(), game.players(), saddle::SolverOptions().lr(0.1));
    saddle::Logger logger(saddle::LogLevel::kError);
    saddle::Exchange exchange(
        comm, saddle::ExchangeOptions().codec(saddle::CodecOptions().quantizer("alq")), logger);
    const saddle::RunResult result = saddle::run(
        game, *solver, exchange, saddle::RunOptions().iterations(10).progress(false), logger);
    retries[comm.rank()] = solver->non_finite_retries();
    agree[comm.rank()] = result.ranks_agree;
  });
  EXPECT_EQ(retries, std::vector<int64_t>({1, 1, 1}));
  EXPECT_EQ(agree, std::vector<bool>({true, true, true}));
}

TEST(Runner, ReturnsEveryEvaluation) {
  PoisonedBilinear game(/*bad_call=*/-1);
  const saddle::RunResult result = run_eg(game, 10, 4, "none");
  ASSERT_EQ(result.evaluations.size(), 4u);  // start, 4, 8, end
  const int64_t expected_iterations[] = {0, 4, 8, 10};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(result.evaluations[i].first, expected_iterations[i]);
    EXPECT_EQ(*saddle::find_metric(result.evaluations[i].second, "evaluations"),
              static_cast<double>(i + 1));
  }
  ScalarBilinear plain;  // no evaluation metrics: nothing recorded
  EXPECT_TRUE(run_eg(plain, 10, 4, "none").evaluations.empty());
}

// x*y whose reported metric turns NaN at its `bad_record`-th record while the parameters and the
// operator stay finite (a GAN's critic output overflowing). Only rank 0 computes metrics.
class NanMetricBilinear final : public saddle::Game {
 public:
  explicit NanMetricBilinear(int bad_record) : bad_record_(bad_record) {
    init_params({saddle::Player{"x", saddle::Role::kMin, 0, 1},
                 saddle::Player{"y", saddle::Role::kMax, 0, 1}},
                torch::tensor({1.0f, 1.0f}));
  }
  std::string name() const override { return "nan-metric-bilinear"; }
  torch::Tensor operator_at(at::Generator&) override {
    return torch::stack({params_[1], -params_[0]});
  }
  saddle::Metrics metrics() override {
    return {{"loss", ++records_ >= bad_record_ ? std::numeric_limits<double>::quiet_NaN() : 1.0}};
  }

 private:
  int bad_record_;
  int records_ = 0;
};

// A metric that rank 0 alone computes goes NaN: every rank throws Diverged after the same
// iteration (none is left waiting in the next exchange).
TEST(Runner, ANonFiniteMetricOnRankZeroIsADivergenceOnEveryRank) {
  saddle::InProcessGroup group(3);
  std::vector<int64_t> stopped(3, -1);
  group.run([&](saddle::Communicator& comm) {
    NanMetricBilinear game(/*bad_record=*/5);  // records at 0, 1, 2, 3, 4: the fifth is NaN
    auto solver =
        saddle::make_solver("eg", game.params(), game.players(), saddle::SolverOptions().lr(0.1));
    saddle::Logger logger(saddle::LogLevel::kError);
    saddle::Exchange exchange(comm, saddle::ExchangeOptions(), logger);
    try {
      saddle::run(game, *solver, exchange,
                  saddle::RunOptions().iterations(20).log_every(1).progress(false), logger);
    } catch (const saddle::Diverged& e) {
      stopped[comm.rank()] = e.iteration();
      if (comm.rank() == 0) {
        EXPECT_NE(std::string(e.what()).find("loss is nan"), std::string::npos) << e.what();
      }
    }
  });
  EXPECT_EQ(stopped, std::vector<int64_t>({4, 4, 4}));
}

}  // namespace
