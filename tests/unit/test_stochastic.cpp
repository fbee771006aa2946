// Stochastic bilinear games: relative (multiplicative) noise vanishes at the equilibrium, so EG
// with the adaptive step converges to it; absolute (additive) noise does not vanish, and then the
// averaged iterate's error shrinks like O(1/sqrt(T)).
#include <gtest/gtest.h>

#include <cmath>

#include "saddle/averaging.h"
#include "saddle/error.h"
#include "test_support.h"

namespace saddle {
namespace {

TEST(StochasticBilinear, RelativeNoiseAdaptiveExtraGradientConverges) {
  GameOptions options;
  options.dim = 5;
  options.condition = 2.0;
  options.noise = "relative";
  options.noise_scale = 0.2;
  auto game = make_game("bilinear", options);
  auto solver = make_solver("qgenx", game->params(), game->players(),
                            SolverOptions().lr(1.0).step_size(StepSizeKind::kQgenx));
  auto d = testing::trajectory(*game, *solver, 4000, /*seed=*/3);
  EXPECT_LE(d.back(), 1e-6 * d.front());
}

TEST(StochasticBilinear, AbsoluteNoiseAveragedIterateShrinksLikeInverseSqrtT) {
  const std::vector<int64_t> checkpoints = {500, 2000, 8000};
  const auto err =
      testing::averaged_error_under_absolute_noise(StepSizeKind::kQgenx, false, checkpoints, 6);
  // O(1/sqrt(T)) means a slope of about -0.5. A loose check.
  const double slope = testing::distance_slope(err, checkpoints);
  EXPECT_LT(slope, -0.3) << "errors " << err[0] << " " << err[1] << " " << err[2];
  EXPECT_GT(slope, -1.2) << "errors " << err[0] << " " << err[1] << " " << err[2];
  EXPECT_LT(err[1], err[0]);
  EXPECT_LT(err[2], err[1]);
}

TEST(StochasticBilinear, FiniteSumAverageIsTheGame) {
  GameOptions options;
  options.dim = 3;
  options.noise = "finite-sum";
  options.samples = 8;
  options.batch = 4000;  // the mean of many samples approaches the exact operator
  auto game = make_game("bilinear", options);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  GameOptions exact_options = options;
  exact_options.noise = "none";
  auto exact = make_game("bilinear", exact_options);
  const torch::Tensor diff = game->operator_at(gen) - exact->operator_at(gen);
  EXPECT_LT(diff.abs().max().item<double>(), 0.05);
}

TEST(StochasticBilinear, RejectsBadOptions) {
  GameOptions options;
  options.noise = "gaussian";
  EXPECT_THROW(make_game("bilinear", options), Error);
  options.noise = "absolute";
  options.noise_scale = -1;
  EXPECT_THROW(make_game("bilinear", options), Error);
  options = GameOptions();
  options.dim = 0;
  EXPECT_THROW(make_game("quadratic", options), Error);
  EXPECT_THROW(make_game("chess", GameOptions()), Error);
  // --batch 0 is each game's default; a negative batch is an error for every game.
  for (const auto& name : game_names()) {
    options = GameOptions();
    options.batch = -3;
    try {
      make_game(name, options);
      ADD_FAILURE() << name << ": no error for --batch -3";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("invalid --batch -3"), std::string::npos)
          << name << ": " << e.what();
    }
  }
}

}  // namespace
}  // namespace saddle
