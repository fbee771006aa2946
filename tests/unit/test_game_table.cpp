// The game table (saddle/games/registry.h): every row is well formed, and every solver trains
// each analytic game with the table's defaults alone — or fails there as the table says it will.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "saddle/error.h"
#include "test_support.h"

namespace saddle {
namespace {

TEST(GameTable, RowsAreWellFormed) {
  std::set<std::string> names;
  for (const auto& spec : game_specs()) {
    EXPECT_TRUE(names.insert(spec.name).second) << "game listed twice: " << spec.name;
    EXPECT_FALSE(spec.description.empty()) << spec.name;
    EXPECT_TRUE(spec.make) << spec.name;
    EXPECT_TRUE(spec.defaults.iterations.has_value()) << spec.name << " names no iterations";
    std::set<std::string> paired;
    for (const auto& pairing : spec.solvers) {
      EXPECT_NO_THROW(solver_spec(pairing.solver)) << spec.name << " pairs " << pairing.solver;
      EXPECT_TRUE(paired.insert(pairing.solver).second) << spec.name << "/" << pairing.solver;
    }
  }
  EXPECT_EQ(names.size(), game_names().size());
  EXPECT_EQ(analytic_game_names(),
            (std::vector<std::string>{"bilinear", "separable", "quadratic"}));
  try {
    make_game("chess", GameOptions());
    ADD_FAILURE() << "an unknown game was made";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown game 'chess'"), std::string::npos) << e.what();
  }
}

TEST(GameTable, SolverDefaultsLayOverTheGames) {
  const GameSpec& quadratic = game_spec("quadratic");
  const RunDefaults adam = quadratic.defaults_for("extra-adam");
  EXPECT_EQ(adam.lr, 0.01);
  EXPECT_EQ(adam.beta2, 0.9999);
  EXPECT_EQ(adam.iterations, 3000);
  EXPECT_EQ(quadratic.defaults_for("eg").iterations, quadratic.defaults.iterations);
  EXPECT_FALSE(quadratic.defaults_for("eg").lr.has_value());
  EXPECT_EQ(quadratic.solver_options("eg").step_size(), StepSizeKind::kAuto);
  EXPECT_EQ(quadratic.solver_options("extra-adam").step_size(), StepSizeKind::kConstant);
  EXPECT_EQ(quadratic.solver_options("extra-adam").beta2(), 0.9999);
  EXPECT_EQ(adam.describe(), "--iters 3000 --lr 0.01 --beta2 0.9999");

  const GameSpec& mog = game_spec("mog25");
  EXPECT_EQ(mog.game_options("extra-adam").gan_loss, "nonsaturating");
  EXPECT_EQ(mog.game_options("extra-adam").latent, 2);
  EXPECT_EQ(mog.game_options("extra-adam").filters, 128);
  EXPECT_EQ(mog.solver_options("extra-adam").player_lr().at("generator"), 8e-3);
  EXPECT_TRUE(mog.poor_pairing("qgenx").empty());  // in Adam's metric and momentum
  EXPECT_EQ(mog.solver_options("qgenx").precondition(), Precondition::kAdam);
  EXPECT_EQ(mog.solver_options("qgenx").step_size(), StepSizeKind::kConstant);
  EXPECT_FALSE(mog.poor_pairing("eg").empty());
  EXPECT_EQ(mog.solver_options("eg").precondition(), Precondition::kNone);

  // Every pairing's defaults make a valid solver (e.g. a ceiling only where the rule is auto).
  for (const auto& spec : game_specs()) {
    for (const auto& solver : solver_names()) {
      const SolverOptions options = spec.solver_options(solver);
      EXPECT_TRUE(options.step_max() == 0.0 || options.step_size() == StepSizeKind::kAuto)
          << spec.name << "/" << solver;
    }
  }
  EXPECT_EQ(game_spec("wgan-gp").solver_options("qgenx").step_size(), StepSizeKind::kConstant);
  EXPECT_EQ(game_spec("wgan-gp").solver_options("qgenx").lr(), 0.01);
  EXPECT_EQ(game_spec("wgan-gp").solver_options("extra-adam").step_max(), 0.0);
}

// Each analytic game, each solver, the table's defaults and nothing else: a solver that trains
// the game brings distance_sq below 1e-2 of its start (the extra-gradient family far below), a
// poor pairing does not. Deterministic games: no seed's luck is involved.
TEST(GameTable, AnalyticGamesTrainWithTheirDefaults) {
  for (const auto& name : analytic_game_names()) {
    const GameSpec& spec = game_spec(name);
    for (const auto& solver_name : solver_names()) {
      GameOptions options = spec.game_options(solver_name);
      // The separable game's 10^6 coordinates change nothing of its spectrum's range: small here.
      if (name == "separable") options.dim = 1000;
      auto game = make_game(name, options);
      auto solver = make_solver(solver_name, game->params(), game->players(),
                                spec.solver_options(solver_name));
      const std::vector<double> d =
          testing::trajectory(*game, *solver, *spec.defaults_for(solver_name).iterations);
      const double ratio = d.back() / d.front();
      const std::string pair = name + "/" + solver_name;
      if (!spec.poor_pairing(solver_name).empty()) {
        EXPECT_TRUE(!std::isfinite(ratio) || ratio > 0.1) << pair << " is listed as poor but "
                                                          << "converged: ratio " << ratio;
        continue;
      }
      const bool extragradient = solver_spec(solver_name).default_step == StepSizeKind::kAuto;
      EXPECT_LT(ratio, extragradient ? 1e-8 : 1e-2) << pair << " with its defaults";
    }
  }
}

}  // namespace
}  // namespace saddle
