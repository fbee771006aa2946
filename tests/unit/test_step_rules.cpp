// The step rules as a user relies on them: the default (auto) reaches the equilibrium of a
// bilinear game from learning rates five orders of magnitude apart, under relative noise too, is
// scale-free, and shrinks like 1/sqrt(t) under absolute noise so that the averaged iterate
// converges; the sums that drive every rule come out the same whatever the thread count.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../../src/detail/reduce.h"
#include "saddle/averaging.h"
#include "saddle/error.h"
#include "saddle/games/registry.h"
#include "saddle/solver.h"
#include "test_support.h"

namespace saddle {
namespace {

// distance_sq relative to the start after `iterations` of qgenx (extra-gradient) with `step`.
double relative_distance(const GameOptions& options, double lr, StepSizeKind step,
                         int64_t iterations, uint64_t seed = 0) {
  auto game = make_game("bilinear", options);
  auto solver =
      make_solver("qgenx", game->params(), game->players(), SolverOptions().lr(lr).step_size(step));
  const auto d = testing::trajectory(*game, *solver, iterations, seed);
  return d.back() / d.front();
}

TEST(AutoStep, DeterministicBilinearFromAnyLearningRate) {
  for (int64_t dim : {10, 128}) {
    GameOptions options;
    options.dim = dim;
    options.condition = 5.0;
    for (double lr : {1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0}) {
      EXPECT_LE(relative_distance(options, lr, StepSizeKind::kAuto, 5000), 1e-8)
          << "dim " << dim << ", gamma_0 " << lr;
    }
  }
}

TEST(AutoStep, RelativeNoiseFromAnyLearningRate) {
  GameOptions options;
  options.dim = 10;
  options.noise = "relative";
  options.noise_scale = 0.2;
  for (double lr : {1e-3, 1.0, 100.0}) {
    // Three seeds, the median: a claim about the rule, not one sample path.
    std::vector<double> r;
    for (uint64_t seed : {1, 2, 3}) {
      r.push_back(relative_distance(options, lr, StepSizeKind::kAuto, 20000, seed));
    }
    std::sort(r.begin(), r.end());
    EXPECT_LE(r[1], 1e-6) << "gamma_0 " << lr << ": " << r[0] << " " << r[1] << " " << r[2];
  }
}

// --step-max: the rule adapts below a ceiling of step_max * gamma_0. From gamma_0 = 1e-3 the
// uncapped rule grows the step far above gamma_0; capped at 500 gamma_0 it never passes the cap,
// starts at gamma_0, and still converges (more slowly); a ceiling below 1 starts there.
TEST(AutoStep, StepMaxIsACeiling) {
  GameOptions options;
  options.dim = 10;
  auto run = [&](double step_max, double* largest) {
    auto game = make_game("bilinear", options);
    auto solver =
        make_solver("qgenx", game->params(), game->players(),
                    SolverOptions().lr(1e-3).step_size(StepSizeKind::kAuto).step_max(step_max));
    *largest = solver->step_size().scale();
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
    Oracle oracle = [&]() { return game->operator_at(gen); };
    const double start = *find_metric(game->metrics(), "distance_sq");
    for (int t = 0; t < 5000; ++t) {
      solver->step(oracle);
      *largest = std::max(*largest, solver->step_size().scale());
    }
    return *find_metric(game->metrics(), "distance_sq") / start;
  };
  double free_largest = 0, capped_largest = 0;
  EXPECT_LE(run(0.0, &free_largest), 1e-8);
  EXPECT_GT(free_largest, 600.0);  // about nu / (L gamma_0) = 900
  EXPECT_LE(run(500.0, &capped_largest), 1e-8);
  EXPECT_LE(capped_largest, 500.0);
  auto game = make_game("bilinear", options);
  auto below = make_solver("eg", game->params(), game->players(),
                           SolverOptions().lr(1.0).step_size(StepSizeKind::kAuto).step_max(0.25));
  EXPECT_EQ(below->step_size().scale(), 0.25);
  EXPECT_THROW(make_solver("eg", game->params(), game->players(),
                           SolverOptions().step_size(StepSizeKind::kConstant).step_max(2.0)),
               Error);
}

TEST(AutoStep, IsScaleFree) {
  // F scaled by c (a game whose matrix is c times larger) with gamma_0 / c follows the same
  // trajectory: the rule measures the operator, not its units.
  testing::ScalarBilinearScaled one(1.0), hundred(100.0);
  auto a = make_solver("eg", one.params(), one.players(),
                       SolverOptions().lr(0.3).step_size(StepSizeKind::kAuto));
  auto b = make_solver("eg", hundred.params(), hundred.players(),
                       SolverOptions().lr(0.003).step_size(StepSizeKind::kAuto));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  Oracle fa = [&]() { return one.operator_at(gen); };
  Oracle fb = [&]() { return hundred.operator_at(gen); };
  for (int t = 0; t < 50; ++t) {
    a->step(fa);
    b->step(fb);
  }
  EXPECT_TRUE(torch::allclose(one.params(), hundred.params(), 1e-4, 1e-6))
      << one.params() << hundred.params();
}

TEST(AutoStep, AbsoluteNoiseAveragedIterateShrinksLikeInverseSqrtT) {
  const std::vector<int64_t> checkpoints = {500, 2000, 8000};
  const auto err =
      testing::averaged_error_under_absolute_noise(StepSizeKind::kAuto, true, checkpoints, 6);
  const double slope = testing::distance_slope(err, checkpoints);
  EXPECT_LT(slope, -0.3) << "errors " << err[0] << " " << err[1] << " " << err[2];
  EXPECT_GT(slope, -1.2) << "errors " << err[0] << " " << err[1] << " " << err[2];
}

// The step gamma_t that auto settles at after 400 extra-gradient steps on the separable game
// with every coupling 1 (the operator's Lipschitz constant is exactly 1, along every direction),
// each of two simulated ranks adding its own noise (sigma 1 per coordinate, which dominates the
// operator once the iterate nears the equilibrium). `connected`: the solver reads the ranks' own
// operators, as the runner connects it to the exchange with several ranks.
double settled_step_under_rank_noise(bool connected, uint64_t seed) {
  GameOptions options;
  options.dim = 1000;
  options.condition = 1.0;
  auto game = make_game("separable", options);
  const double lr = 0.1;
  auto solver = make_solver("eg", game->params(), game->players(),
                            SolverOptions().lr(lr).step_size(StepSizeKind::kAuto));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::Tensor last, previous;  // [2, dim]: each rank's operator at the last two calls
  Oracle oracle = [&]() {
    const torch::Tensor f = game->operator_at(gen);
    previous = last;
    last = f.unsqueeze(0).repeat({2, 1}) + torch::randn({2, f.numel()}, gen);
    return last.mean(0);
  };
  if (connected) {
    solver->set_rank_differences(2, [&](bool against_previous) {
      double sum = 0.0;
      for (int64_t r = 0; r < 2; ++r) {
        sum += detail::fixed_order_sum_squares(
            last[r], against_previous && previous.defined() ? previous[r] : torch::Tensor());
      }
      return sum;
    });
  }
  for (int t = 0; t < 400; ++t) solver->step(oracle);
  return solver->step_size().scale() * lr;
}

// Under noise, the change of the averaged operator between two calls is mostly the ranks' noise;
// read as curvature it drives the step toward zero. With the ranks' own operators the rule
// separates the two (their pairwise inner products carry the signal alone) and settles near
// nu / L = 0.9. Median of three seeds.
TEST(AutoStep, RanksNoiseIsNotReadAsCurvature) {
  std::vector<double> with, without;
  for (uint64_t seed : {1, 2, 3}) {
    with.push_back(settled_step_under_rank_noise(true, seed));
    without.push_back(settled_step_under_rank_noise(false, seed));
  }
  std::sort(with.begin(), with.end());
  std::sort(without.begin(), without.end());
  EXPECT_GT(with[1], 0.5) << with[0] << " " << with[1] << " " << with[2];
  EXPECT_LT(with[1], 1.1) << with[0] << " " << with[1] << " " << with[2];
  EXPECT_LT(without[1], 0.5 * with[1]) << without[0] << " " << without[1] << " " << without[2];
}

// The rule's own arithmetic: a measured change whose noise part is known counts only its signal
// part; when noise is most of it, the estimates are averaged rather than maximized.
TEST(AutoStep, LeavesTheNoiseOutOfItsEstimate) {
  auto settle = [](double noise) {
    AutoStepSize rule;
    for (int t = 0; t < 200; ++t) {
      StepObservation o;
      o.sq_scaled_displacement = rule.scale() * rule.scale();  // a unit operator moved by scale
      o.sq_scaled_difference = 4.0 * o.sq_scaled_displacement + noise;  // L = 2, plus noise
      o.sq_scaled_noise = noise;
      o.sq_scaled_operator = 1.0;
      rule.observe(o);
    }
    return rule.scale();
  };
  EXPECT_NEAR(settle(0.0), AutoStepSize::kExtraGradientSafety / 2.0, 1e-6);
  // Noise ten times the signal, all of it known: the same step.
  EXPECT_NEAR(settle(40.0 * 0.45 * 0.45), AutoStepSize::kExtraGradientSafety / 2.0, 0.02);
}

TEST(FixedOrderSums, DoNotDependOnTheThreadCount) {
  torch::manual_seed(0);
  const torch::Tensor a = torch::randn({100003}), b = torch::randn({100003});
  const torch::Tensor w = torch::rand({100003});
  const int threads = torch::get_num_threads();
  std::vector<double> sums;
  for (int n : {1, 2, 4}) {
    torch::set_num_threads(n);
    sums.push_back(detail::fixed_order_sum_squares(a, b, w));
  }
  torch::set_num_threads(threads);
  EXPECT_EQ(sums[0], sums[1]);
  EXPECT_EQ(sums[0], sums[2]);
  const double exact =
      ((a.to(torch::kFloat64) - b.to(torch::kFloat64)).square() * w.to(torch::kFloat64))
          .sum()
          .item<double>();
  EXPECT_NEAR(sums[0], exact, 1e-9 * exact);
  EXPECT_DOUBLE_EQ(detail::fixed_order_sum_squares(torch::ones({5})), 5.0);
}

}  // namespace
}  // namespace saddle
