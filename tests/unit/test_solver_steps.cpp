// One step of every solver checked against a hand computation on f(x, y) = x y from (1, 1).
// F(x, y) = (y, -x). lr = 0.1 throughout.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "saddle/error.h"
#include "test_support.h"

namespace saddle {
namespace {

using testing::ScalarBilinear;
constexpr double kLr = 0.1;
constexpr double kTol = 1e-6;

struct Stepped {
  double x, y;
  int calls;
};

Stepped one_step(const std::string& name, SolverOptions options = SolverOptions().lr(kLr),
                 int steps = 1) {
  ScalarBilinear game;
  auto solver = make_solver(name, game.params(), game.players(), options);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  Oracle oracle = [&]() { return game.operator_at(gen); };
  for (int i = 0; i < steps; ++i) solver->step(oracle);
  return {game.x(), game.y(), game.calls};
}

TEST(SolverStep, SimultaneousGda) {
  // z1 = z0 - lr F(z0) = (1 - 0.1, 1 + 0.1)
  auto s = one_step("gda");
  EXPECT_NEAR(s.x, 0.9, kTol);
  EXPECT_NEAR(s.y, 1.1, kTol);
  EXPECT_EQ(s.calls, 1);
}

TEST(SolverStep, AlternatingGda) {
  // x moves first: x1 = 0.9; then F(0.9, 1) has y-part -0.9, so y1 = 1 + 0.1 * 0.9.
  auto s = one_step("alt-gda");
  EXPECT_NEAR(s.x, 0.9, kTol);
  EXPECT_NEAR(s.y, 1.09, kTol);
  EXPECT_EQ(s.calls, 2);
}

TEST(SolverStep, ExtraGradient) {
  // half = (0.9, 1.1); F(half) = (1.1, -0.9); z1 = (1 - 0.11, 1 + 0.09).
  auto s = one_step("eg");
  EXPECT_NEAR(s.x, 0.89, kTol);
  EXPECT_NEAR(s.y, 1.09, kTol);
  EXPECT_EQ(s.calls, 2);
}

TEST(SolverStep, OptimisticTwoSteps) {
  // Step 1 extrapolates with a real F(z0) = (1, -1) (an extra call), so it is an EG step:
  //         half = (0.9, 1.1), V = F(half) = (1.1, -0.9), z1 = (0.89, 1.09).
  // Step 2: half = z1 - 0.1 (1.1, -0.9) = (0.78, 1.18); F(half) = (1.18, -0.78);
  //         z2 = z1 - 0.1 (1.18, -0.78) = (0.772, 1.168).
  auto s1 = one_step("ogda");
  EXPECT_NEAR(s1.x, 0.89, kTol);
  EXPECT_NEAR(s1.y, 1.09, kTol);
  EXPECT_EQ(s1.calls, 2);
  auto s2 = one_step("ogda", SolverOptions().lr(kLr), 2);
  EXPECT_NEAR(s2.x, 0.772, kTol);
  EXPECT_NEAR(s2.y, 1.168, kTol);
  EXPECT_EQ(s2.calls, 3);  // then one call per step
}

TEST(SolverStep, QgenxAdaGradExtraGradient) {
  // Step 1 uses gamma_0: same as EG. It observes ||V_half - Vhat||^2 = 0.1^2 + 0.1^2 = 0.02,
  // so step 2 uses gamma_0 / sqrt(1.02): from (0.89, 1.09), F = (1.09, -0.89),
  // half = z1 - g (1.09, -0.89); F(half) = (1.09 + 0.89 g, -(0.89 - 1.09 g)); z2 = z1 - g F(half).
  SolverOptions options = SolverOptions().lr(kLr).step_size(StepSizeKind::kAdaGrad);
  auto s1 = one_step("qgenx", options);
  EXPECT_NEAR(s1.x, 0.89, kTol);
  EXPECT_NEAR(s1.y, 1.09, kTol);
  const double g = kLr / std::sqrt(1.02);
  const double hx = 0.89 - g * 1.09, hy = 1.09 + g * 0.89;
  auto s2 = one_step("qgenx", options, 2);
  EXPECT_NEAR(s2.x, 0.89 - g * hy, kTol);
  EXPECT_NEAR(s2.y, 1.09 + g * hx, kTol);
}

TEST(SolverStep, QgenxDualAveragingIsAnchored) {
  // Vhat = 0, X_{t+1} = X_0 - gamma_{t+1} sum_{s<=t} V_{s+1/2}. Step 1: V = F(z0) = (1, -1),
  // ||V||^2 = 2, gamma_1 = 0.1 / sqrt(3), z1 = (1 - g1, 1 + g1). Step 2: V = F(z1) =
  // (1 + g1, -(1 - g1)), ||V||^2 = 2 + 2 g1^2, gamma_2 = 0.1 / sqrt(5 + 2 g1^2),
  // sum = (2 + g1, -2 + g1), z2 = z0 - gamma_2 sum.
  SolverOptions options =
      SolverOptions().lr(kLr).step_size(StepSizeKind::kAdaGrad).variant(Variant::kDualAveraging);
  const double g1 = kLr / std::sqrt(3.0);
  auto s1 = one_step("qgenx", options);
  EXPECT_NEAR(s1.x, 1 - g1, kTol);
  EXPECT_NEAR(s1.y, 1 + g1, kTol);
  EXPECT_EQ(s1.calls, 1);
  const double g2 = kLr / std::sqrt(5.0 + 2 * g1 * g1);
  auto s2 = one_step("qgenx", options, 2);
  EXPECT_NEAR(s2.x, 1 - g2 * (2 + g1), kTol);
  EXPECT_NEAR(s2.y, 1 + g2 * (2 - g1), kTol);
}

TEST(SolverStep, QgenxOptimisticMatchesOgda) {
  SolverOptions options = SolverOptions().lr(kLr).variant(Variant::kOptimistic);
  auto a = one_step("qgenx", options, 3);
  auto b = one_step("ogda", SolverOptions().lr(kLr), 3);
  EXPECT_DOUBLE_EQ(a.x, b.x);
  EXPECT_DOUBLE_EQ(a.y, b.y);
}

TEST(SolverStep, ExtraAdam) {
  // beta1 = 0.5, beta2 = 0.9. Extrapolation on g1 = (1, -1): m = 0.5 g1, v = 0.1 g1^2, bias
  // corrected m/0.5 = g1, v/0.1 = g1^2, so d1 = g1 / (1 + eps) and half = (0.9, 1.1).
  // Update on g2 = F(half) = (1.1, -0.9): m = 0.25 g1 + 0.5 g2, v = 0.09 g1^2 + 0.1 g2^2,
  // corrections 1 - 0.5^2 and 1 - 0.9^2; z1 = z0 - lr * mhat / (sqrt(vhat) + eps).
  auto s = one_step("extra-adam");
  const double eps = 1e-8;
  auto expected = [&](double g1, double g2) {
    const double m = 0.25 * g1 + 0.5 * g2, v = 0.09 * g1 * g1 + 0.1 * g2 * g2;
    return (m / 0.75) / (std::sqrt(v / 0.19) + eps);
  };
  EXPECT_NEAR(s.x, 1.0 - kLr * expected(1.0, 1.1), kTol);
  EXPECT_NEAR(s.y, 1.0 - kLr * expected(-1.0, -0.9), kTol);
  EXPECT_EQ(s.calls, 2);
}

TEST(SolverStep, OptimisticAdam) {
  // First step, without d_{-1}: a plain Adam step. d1 = g1 / (1 + eps) = (1, -1);
  // z1 = z0 - lr d1 = (0.9, 1.1) (not the double step 2 d1 - 0).
  auto s = one_step("optimistic-adam");
  EXPECT_NEAR(s.x, 0.9, kTol);
  EXPECT_NEAR(s.y, 1.1, kTol);
  EXPECT_EQ(s.calls, 1);
}

TEST(SolverStep, PerPlayerLearningRates) {
  // gda with lr_x = 0.1, lr_y = 0.5: z1 = (1 - 0.1, 1 + 0.5).
  auto s = one_step("gda", SolverOptions().lr(kLr).player_lr({{"y", 0.5}}));
  EXPECT_NEAR(s.x, 0.9, kTol);
  EXPECT_NEAR(s.y, 1.5, kTol);
}

TEST(SolverStep, QgenxRuleReadsTheRanksOwnOperators) {
  // gamma_t = K / sqrt(1 + sum_s sum_k ||V^k_{s+1/2} - Vhat^k_s||^2) (times the learning rate).
  QgenxStepSize rule;
  EXPECT_DOUBLE_EQ(rule.scale(), 1.0);
  StepObservation o;
  o.ranks = 4;
  o.sq_difference = 0.25;
  o.sq_difference_ranks = 3.0;
  rule.observe(o);
  EXPECT_DOUBLE_EQ(rule.update_scale(), 1.0);
  EXPECT_DOUBLE_EQ(rule.scale(), 4.0 / 2.0);
  // Without the ranks' operators: K times the averaged difference stands in.
  QgenxStepSize fallback;
  o.sq_difference_ranks = std::numeric_limits<double>::quiet_NaN();
  fallback.observe(o);
  EXPECT_DOUBLE_EQ(fallback.scale(), 4.0 / std::sqrt(2.0));
}

// The solver hands the rule K from the exchange it is connected to (the runner connects it):
// before, the rule only ever saw K = 1, so its numerator K was never applied.
TEST(SolverStep, QgenxRuleLearnsTheNumberOfRanks) {
  ScalarBilinear game;
  auto solver = make_solver("eg", game.params(), game.players(),
                            SolverOptions().lr(kLr).step_size(StepSizeKind::kQgenx));
  solver->set_rank_differences(4, [](bool) { return 3.0; });
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  Oracle oracle = [&]() { return game.operator_at(gen); };
  solver->step(oracle);
  EXPECT_DOUBLE_EQ(solver->step_size().scale(), 4.0 / 2.0);
}

TEST(SolverStep, HalfStepIsWhereTheOperatorMovedTheIterate) {
  ScalarBilinear game;
  auto solver = make_solver("eg", game.params(), game.players(), SolverOptions().lr(kLr));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  Oracle oracle = [&]() { return game.operator_at(gen); };
  solver->step(oracle);
  EXPECT_NEAR(solver->half_step()[0].item<double>(), 0.9, kTol);
  EXPECT_NEAR(solver->half_step()[1].item<double>(), 1.1, kTol);
  EXPECT_DOUBLE_EQ(solver->half_step_weight(), 1.0);
}

TEST(SolverStep, AutoNeedsALipschitzEstimate) {
  ScalarBilinear game;
  for (const char* name : {"extra-adam", "optimistic-adam", "alt-gda"}) {
    EXPECT_THROW(make_solver(name, game.params(), game.players(),
                             SolverOptions().step_size(StepSizeKind::kAuto)),
                 Error)
        << name;
  }
}

TEST(SolverStep, RejectsBadOptions) {
  ScalarBilinear game;
  EXPECT_THROW(make_solver("sgd", game.params(), game.players(), SolverOptions()), Error);
  EXPECT_THROW(make_solver("eg", game.params(), game.players(), SolverOptions().lr(-1)), Error);
  EXPECT_THROW(
      make_solver("eg", game.params(), game.players(), SolverOptions().player_lr({{"z", 1.0}})),
      Error);
  try {
    make_solver("sgd", game.params(), game.players(), SolverOptions());
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown solver 'sgd'"), std::string::npos);
  }
}

TEST(SolverStep, ExtraGradientPreconditionedByAdamsMoments) {
  // beta2 0.9, eps 1e-8, constant step; first without momentum (beta1 0). The averages see
  // F(z0) = (1, -1) before the extrapolation, so its metric is 1 (bias-corrected): half =
  // (0.9, 1.1). They see V_{1/2} = (1.1, -0.9) before the update: v = 0.9 * 0.1 + 0.1 * (1.21,
  // 0.81) = (0.211, 0.171), corrected by 1 - 0.81, so x moves by 0.1 / sqrt(0.211 / 0.19) * 1.1
  // and y by 0.1 / sqrt(0.171 / 0.19) * 0.9: z1 = (0.895617366, 1.094868329). A second step, the
  // same way: z2 = (0.787914977, 1.183794802).
  auto options = SolverOptions().lr(kLr).beta1(0.0).beta2(0.9).precondition(Precondition::kAdam);
  auto one = one_step("eg", options);
  EXPECT_NEAR(one.x, 0.895617366, kTol);
  EXPECT_NEAR(one.y, 1.094868329, kTol);
  auto two = one_step("qgenx", options, 2);
  EXPECT_NEAR(two.x, 0.787914977, kTol);
  EXPECT_NEAR(two.y, 1.183794802, kTol);
  EXPECT_EQ(two.calls, 4);
  // With momentum (beta1 0.5) the update goes by the corrected average of F(z0) and V_{1/2},
  // (0.25 + 0.55, -0.25 - 0.45) / 0.75 = (1.0667, -0.9333), in the same metric:
  // z1 = (0.898780476, 1.098381971); z2 = (0.795552967, 1.193653431).
  options.beta1(0.5);
  one = one_step("eg", options);
  EXPECT_NEAR(one.x, 0.898780476, kTol);
  EXPECT_NEAR(one.y, 1.098381971, kTol);
  two = one_step("eg", options, 2);
  EXPECT_NEAR(two.x, 0.795552967, kTol);
  EXPECT_NEAR(two.y, 1.193653431, kTol);
}

TEST(SolverStep, PreconditionOnlyWhereItMeansSomething) {
  ScalarBilinear game;
  const auto adam = SolverOptions().precondition(Precondition::kAdam);
  for (const char* name : {"gda", "alt-gda", "extra-adam", "optimistic-adam"}) {
    try {
      make_solver(name, game.params(), game.players(), adam);
      ADD_FAILURE() << name << " took --precondition adam";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--precondition applies to the extra-gradient family"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(
      make_solver(
          "qgenx", game.params(), game.players(),
          SolverOptions(adam).variant(Variant::kDualAveraging).step_size(StepSizeKind::kQgenx)),
      Error);
  EXPECT_THROW(parse_precondition("rmsprop"), Error);
  for (const char* name : {"eg", "ogda", "qgenx"}) {
    EXPECT_NO_THROW(make_solver(name, game.params(), game.players(), adam)) << name;
  }
}

}  // namespace
}  // namespace saddle
