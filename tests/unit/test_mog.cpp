// Mixture-of-Gaussians GANs: layout and operator, the VEEGAN coverage metric, deterministic
// metrics, and extra-gradient capturing the modes of mog8 in a few seconds on one core.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <vector>

#include "paths.h"
#include "saddle/error.h"
#include "saddle/games/mog.h"
#include "saddle/games/registry.h"
#include "saddle/solver.h"

namespace saddle {
namespace {

// One LibTorch thread for the duration of a test: the suite shares 2 cores.
class OneThread {
 public:
  OneThread() : saved_(torch::get_num_threads()) { torch::set_num_threads(1); }
  ~OneThread() { torch::set_num_threads(saved_); }

 private:
  int saved_;
};

TEST(MogGame, LayoutModesAndOperator) {
  GameOptions options;
  auto game = make_game("mog8", options);
  ASSERT_EQ(game->players().size(), 2u);
  EXPECT_EQ(game->players()[0].name, "generator");
  EXPECT_EQ(game->players()[0].role, Role::kMin);
  EXPECT_EQ(game->players()[1].name, "critic");
  EXPECT_EQ(game->players()[1].role, Role::kMax);
  EXPECT_EQ(game->players()[0].numel + game->players()[1].numel, game->dim());
  auto& mog = dynamic_cast<MogGame&>(*game);
  EXPECT_EQ(mog.batch(), MogGame::kDefaultBatch);  // batch 1 means the default
  EXPECT_TRUE(mog.modes().norm(2, 1).allclose(torch::full({8}, 2.0f)));
  MogGame grid("mog25", options);
  EXPECT_EQ(grid.modes().size(0), 25);
  EXPECT_FLOAT_EQ(grid.modes().abs().max().item<float>(), 4.0f);

  for (const std::string loss : {"wgan-gp", "nonsaturating"}) {
    options.gan_loss = loss;
    options.batch = 32;
    MogGame a("mog8", options), b("mog8", options);
    EXPECT_TRUE(a.params().equal(b.params()));
    at::Generator ga = at::make_generator<at::CPUGeneratorImpl>(5);
    at::Generator gb = at::make_generator<at::CPUGeneratorImpl>(5);
    torch::Tensor fa = a.operator_at(ga);
    EXPECT_EQ(fa.sizes(), a.params().sizes());
    EXPECT_TRUE(fa.isfinite().all().item<bool>());
    EXPECT_GT(fa.narrow(0, 0, a.players()[0].numel).abs().sum().item<double>(), 0.0) << loss;
    EXPECT_GT(fa.narrow(0, a.players()[1].offset, a.players()[1].numel).abs().sum().item<double>(),
              0.0)
        << loss;
    EXPECT_TRUE(fa.equal(b.operator_at(gb))) << loss;
    EXPECT_FALSE(fa.equal(a.operator_at(ga))) << loss;  // fresh sample, fresh operator
  }
  options.gan_loss = "hinge";
  EXPECT_THROW(MogGame("mog8", options), Error);
  EXPECT_THROW(make_game("mog9", GameOptions()), Error);
}

TEST(MogCoverage, CountsModesAndHighQualitySamples) {
  GameOptions options;
  MogGame game("mog25", options);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const ModeCoverage real = mode_coverage(game.sample_real(2500, gen), game.modes(), game.stddev());
  EXPECT_EQ(real.modes_captured, 25);
  EXPECT_GT(real.high_quality_fraction, 0.97);  // P(|N(0, I)| < 3) = 0.989 in 2-D
  // Everything on one mode, plus a few far away and a NaN: one mode, 90% high quality.
  torch::Tensor collapsed = torch::zeros({100, 2});
  collapsed.narrow(0, 0, 9).fill_(10.0f);
  collapsed[9][0] = std::numeric_limits<float>::quiet_NaN();
  const ModeCoverage one = mode_coverage(collapsed, game.modes(), game.stddev());
  EXPECT_EQ(one.modes_captured, 1);
  EXPECT_DOUBLE_EQ(one.high_quality_fraction, 0.9);
  // A mode needs kMinSamplesPerMode high-quality samples.
  EXPECT_EQ(mode_coverage(collapsed.narrow(0, 80, 20), game.modes(), game.stddev()).modes_captured,
            1);
  EXPECT_EQ(mode_coverage(collapsed.narrow(0, 81, 19), game.modes(), game.stddev()).modes_captured,
            0);
}

// Extra-Adam with the non-saturating loss on mog8 (latent 2, width 64, batch 64, lr 2e-3) pulls
// the generator's samples onto the ring: the mean distance from a sample to its nearest mode falls
// from about 1.85 to 0.30-0.45 within 1000 iterations for every seed tried (0-4). The claim is the
// median over three seeds with a margin, not one seed's luck. (How many modes are captured at a
// given iteration swings with the seed; issue 9 owns that target.)
double mean_distance_to_nearest_mode(MogGame& game) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(99);
  const torch::Tensor x = game.sample_generator(2000, g).to(torch::kFloat64);
  const torch::Tensor d2 =
      (x.unsqueeze(1) - game.modes().to(torch::kFloat64).unsqueeze(0)).square().sum(2);
  return std::get<0>(d2.min(1)).sqrt().mean().item<double>();
}

GameOptions pull_options(uint64_t seed) {
  GameOptions options;
  options.gan_loss = "nonsaturating";
  options.latent = 2;
  options.batch = 64;
  options.seed = seed;
  return options;
}

// 1000 steps of `solver` on mog8 from seeds 0-2: each seed's mean distance of the generator's
// samples to their nearest mode, as a fraction of the start's, sorted; the last game is kept.
std::vector<double> pull_onto_modes(const std::string& solver_name, const SolverOptions& options,
                                    std::unique_ptr<MogGame>& last) {
  std::vector<double> ratios;
  for (uint64_t seed : {0, 1, 2}) {
    auto game = std::make_unique<MogGame>("mog8", pull_options(seed));
    auto solver = make_solver(solver_name, game->params(), game->players(), options);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed + 1);
    Oracle oracle = [&]() { return game->operator_at(gen); };
    const double before = mean_distance_to_nearest_mode(*game);
    for (int t = 0; t < 1000; ++t) solver->step(oracle);
    ratios.push_back(mean_distance_to_nearest_mode(*game) / before);
    last = std::move(game);
  }
  std::sort(ratios.begin(), ratios.end());
  return ratios;
}

// Q-GenX's template in Adam's metric and momentum (the game table's qgenx on the mixtures) pulls
// the generator's samples onto the modes as Extra-Adam does (median of seeds 0-2).
TEST(MogGame, PreconditionedQgenxPullsSamplesOntoTheModes) {
  OneThread one_thread;
  std::unique_ptr<MogGame> last;
  const auto ratios = pull_onto_modes(
      "qgenx", SolverOptions().lr(2e-3).beta1(0.5).beta2(0.9).precondition(Precondition::kAdam),
      last);
  EXPECT_LT(ratios[1], 0.3) << "median distance ratio over seeds 0-2: " << ratios[0] << ", "
                            << ratios[1] << ", " << ratios[2];
}

TEST(MogGame, ExtraAdamPullsSamplesOntoTheModes) {
  OneThread one_thread;
  std::unique_ptr<MogGame> last;
  const auto ratios =
      pull_onto_modes("extra-adam", SolverOptions().lr(2e-3).beta1(0.5).beta2(0.9), last);
  EXPECT_LT(ratios[1], 0.3) << "median distance ratio over seeds 0-2: " << ratios[0] << ", "
                            << ratios[1] << ", " << ratios[2];
  const Metrics after = last->metrics();
  MogGame& game = *last;
  // Metrics are a function of z alone.
  EXPECT_EQ(game.metrics(), after);
  MogGame twin("mog8", pull_options(2));
  twin.params().copy_(game.params());
  EXPECT_EQ(twin.metrics(), after);

  const std::string path =
      (saddle::testing::temp_root() / ("saddle_test_mog_" + std::to_string(::getpid()) + ".png"))
          .string();
  game.write_samples_png(path);
  std::ifstream in(path, std::ios::binary);
  char signature[8] = {};
  in.read(signature, 8);
  EXPECT_EQ(std::string(signature, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  saddle::remove_file(path);
}

}  // namespace
}  // namespace saddle
