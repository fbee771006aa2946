// Every solver on every analytic game with a known equilibrium (ensmallen's FunctionTest idea):
// adding a solver means adding one line to kCases. Each case states what the solver must do on
// the game: converge (to a relative distance_sq), stay bounded, or diverge.
#include <gtest/gtest.h>

#include <cmath>

#include "saddle/error.h"
#include "test_support.h"

namespace saddle {
namespace {

enum class Expect { kConverge, kBounded, kDiverge };

struct Case {
  std::string game;
  std::string solver;
  SolverOptions options;
  int64_t iterations;
  Expect expect;
  double tolerance;  // converge: final distance_sq / initial distance_sq below this
};

std::string case_name(const Case& c) { return c.game + "/" + c.solver; }
void PrintTo(const Case& c, std::ostream* os) { *os << case_name(c); }

// Default game: dim 10 per player, condition 5 (singular values / eigenvalues in [0.2, 1]).
const std::vector<Case>& cases() {
  static const std::vector<Case> kCases = {
      // Bilinear: monotone, not strongly. GDA spirals out, alternating GDA cycles, the
      // extra-gradient family converges.
      {"bilinear", "gda", SolverOptions().lr(0.1), 1000, Expect::kDiverge, 0},
      {"bilinear", "alt-gda", SolverOptions().lr(0.1), 2000, Expect::kBounded, 0},
      {"bilinear", "eg", SolverOptions().lr(0.5), 2000, Expect::kConverge, 1e-8},
      {"bilinear", "ogda", SolverOptions().lr(0.5), 2000, Expect::kConverge, 1e-8},
      {"bilinear", "extra-adam", SolverOptions().lr(0.01), 2000, Expect::kConverge, 1e-2},
      {"bilinear", "optimistic-adam", SolverOptions().lr(0.01), 2500, Expect::kConverge, 1e-2},
      {"bilinear", "qgenx", SolverOptions().lr(1.0).step_size(StepSizeKind::kQgenx), 2000,
       Expect::kConverge, 1e-2},
      {"bilinear", "qgenx", SolverOptions().lr(0.5).variant(Variant::kOptimistic), 2000,
       Expect::kConverge, 1e-8},
      // Separable bilinear: the same couplings on a diagonal. The extra-gradient family behaves
      // as on the dense game; per-coordinate (Adam) steps and Q-GenX's never-growing rule settle
      // more slowly on the weakest couplings.
      {"separable", "gda", SolverOptions().lr(0.1), 1000, Expect::kDiverge, 0},
      {"separable", "alt-gda", SolverOptions().lr(0.1), 2000, Expect::kBounded, 0},
      {"separable", "eg", SolverOptions().lr(0.5), 2000, Expect::kConverge, 1e-8},
      {"separable", "ogda", SolverOptions().lr(0.5), 2000, Expect::kConverge, 1e-8},
      {"separable", "extra-adam", SolverOptions().lr(0.03), 2500, Expect::kConverge, 1e-2},
      {"separable", "optimistic-adam", SolverOptions().lr(0.01), 5000, Expect::kConverge, 1e-2},
      {"separable", "qgenx", SolverOptions().lr(1.0).step_size(StepSizeKind::kQgenx), 5000,
       Expect::kConverge, 1e-2},
      // Quadratic: strongly monotone; every solver converges linearly (far below float noise of
      // the start in a few thousand steps). The Adam family needs a long second-moment memory
      // to keep shrinking its steps as the operator vanishes.
      {"quadratic", "gda", SolverOptions().lr(0.3), 2000, Expect::kConverge, 1e-10},
      {"quadratic", "alt-gda", SolverOptions().lr(0.3), 2000, Expect::kConverge, 1e-10},
      {"quadratic", "eg", SolverOptions().lr(0.5), 1000, Expect::kConverge, 1e-10},
      {"quadratic", "ogda", SolverOptions().lr(0.3), 1000, Expect::kConverge, 1e-10},
      {"quadratic", "extra-adam", SolverOptions().lr(0.01).beta2(0.9999), 3000, Expect::kConverge,
       1e-10},
      {"quadratic", "optimistic-adam", SolverOptions().lr(0.01).beta2(0.9999), 3000,
       Expect::kConverge, 1e-10},
      {"quadratic", "qgenx", SolverOptions().lr(1.0).step_size(StepSizeKind::kQgenx), 1000,
       Expect::kConverge, 1e-10},
      {"quadratic", "qgenx", SolverOptions().lr(0.3).variant(Variant::kDualAveraging), 2000,
       Expect::kConverge, 1e-10},
  };
  return kCases;
}

class SolverOnGame : public ::testing::TestWithParam<Case> {};

TEST_P(SolverOnGame, BehavesAsExpected) {
  const Case& c = GetParam();
  auto game = make_game(c.game, GameOptions());
  auto solver = make_solver(c.solver, game->params(), game->players(), c.options);
  std::vector<double> d = testing::trajectory(*game, *solver, c.iterations);
  const double ratio = d.back() / d.front();
  switch (c.expect) {
    case Expect::kConverge: EXPECT_LT(ratio, c.tolerance) << case_name(c); break;
    case Expect::kBounded:
      EXPECT_GT(ratio, 0.1) << case_name(c) << " should not converge";
      EXPECT_LT(ratio, 10.0) << case_name(c) << " should not diverge";
      break;
    case Expect::kDiverge:
      EXPECT_TRUE(!std::isfinite(ratio) || ratio > 100.0) << case_name(c) << " ratio " << ratio;
      // And it grows steadily: every 100 steps the distance is larger.
      for (size_t t = 100; t < d.size(); t += 100) EXPECT_GT(d[t], d[t - 100]);
      break;
  }
}

INSTANTIATE_TEST_SUITE_P(AllSolvers, SolverOnGame, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string name =
                               case_name(info.param) + "_" + std::to_string(info.index);
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

// Every registered solver appears in the table for every game.
TEST(SolverOnGameTable, CoversEverySolverAndGame) {
  for (const auto& game : analytic_game_names()) {
    for (const auto& solver : solver_names()) {
      bool found = false;
      for (const auto& c : cases()) found |= c.game == game && c.solver == solver;
      EXPECT_TRUE(found) << solver << " is not tested on " << game;
    }
  }
}

TEST(BilinearGame, ExtraGradientAndOptimisticReachTightTolerance) {
  for (const auto& [name, lr] :
       std::vector<std::pair<std::string, double>>{{"eg", 0.5}, {"ogda", 0.5}}) {
    auto game = make_game("bilinear", GameOptions());
    auto solver = make_solver(name, game->params(), game->players(), SolverOptions().lr(lr));
    std::vector<double> d = testing::trajectory(*game, *solver, 3000);
    EXPECT_LE(d.back(), 1e-10) << name;
  }
}

// The adaptive step needs no tuning: it converges from a step far too large and from one far too
// small, on a bilinear game whose constant-step EG diverges at gamma = 1.
TEST(AdaptiveStepSize, ConvergesFromLargeAndSmallInitialSteps) {
  GameOptions options;
  options.dim = 2;
  options.condition = 1.0;
  {
    auto game = make_game("bilinear", options);
    auto constant = make_solver("eg", game->params(), game->players(), SolverOptions().lr(2.0));
    auto d = testing::trajectory(*game, *constant, 200);
    EXPECT_FALSE(d.back() <= d.front()) << "constant-step EG at gamma 2 should not converge";
  }
  {
    auto game = make_game("bilinear", options);
    auto solver = make_solver("qgenx", game->params(), game->players(),
                              SolverOptions().lr(2.0).step_size(StepSizeKind::kQgenx));
    auto d = testing::trajectory(*game, *solver, 2000);
    EXPECT_LE(d.back(), 1e-10);
  }
  {
    auto game = make_game("bilinear", options);
    auto solver = make_solver("qgenx", game->params(), game->players(),
                              SolverOptions().lr(1.0).step_size(StepSizeKind::kQgenx));
    auto d = testing::trajectory(*game, *solver, 2000);
    EXPECT_LE(d.back(), 1e-10);
  }
  {
    auto game = make_game("bilinear", options);
    auto solver = make_solver("qgenx", game->params(), game->players(),
                              SolverOptions().lr(0.01).step_size(StepSizeKind::kQgenx));
    auto d = testing::trajectory(*game, *solver, 40000);
    // gamma stays at most 0.01: the contraction is at most about 1e-4 per step, and the
    // accumulated differences shrink gamma a little further; the decrease is slow but steady.
    EXPECT_LE(d.back(), 0.25 * d.front());
    for (size_t t = 1000; t < d.size(); t += 1000) EXPECT_LT(d[t], d[t - 1000]);
  }
}

}  // namespace
}  // namespace saddle
