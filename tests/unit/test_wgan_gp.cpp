// The wgan-gp game: parameter layout and roles, the operator against finite differences of each
// player's own loss (float64), determinism, extra-gradient steps, sampling, metrics, bad options.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "paths.h"
#include "saddle/data/datasets.h"
#include "saddle/error.h"
#include "saddle/games/registry.h"
#include "saddle/games/wgan_gp.h"
#include "saddle/solver.h"

namespace saddle {
namespace {

GameOptions tiny(const std::string& loss = "wgan-gp") {
  GameOptions o;
  o.filters = 4;
  o.batch = 4;
  o.latent = 8;
  o.seed = 3;
  o.gan_loss = loss;
  return o;
}

RealBatches noise_images(int64_t channels) {
  return [channels](int64_t batch, at::Generator& gen) {
    return torch::rand({batch, channels, 32, 32}, gen) * 2 - 1;
  };
}

class WganGp : public ::testing::Test {
 protected:
  void SetUp() override { torch::set_num_threads(1); }
};

// The generator's sub-pixel upsampling layer is exactly a transposed convolution (kernel 4,
// stride 2, padding 1), values and gradients.
TEST_F(WganGp, UpConvEqualsTransposedConvolution) {
  UpConv2d up(3, 5);
  up->to(torch::kFloat64);
  torch::Tensor x = torch::randn({2, 3, 4, 6}, torch::kFloat64).requires_grad_(true);
  torch::Tensor y = up(x);
  torch::Tensor ref = torch::conv_transpose2d(x, up->weight, up->bias, 2, 1);
  ASSERT_EQ(y.sizes(), ref.sizes());
  EXPECT_TRUE(torch::allclose(y, ref, 1e-12, 1e-12));
  torch::Tensor v = torch::randn_like(y);
  auto g = torch::autograd::grad({(y * v).sum()}, {x, up->weight, up->bias});
  auto r = torch::autograd::grad({(ref * v).sum()}, {x, up->weight, up->bias});
  for (size_t i = 0; i < g.size(); ++i) EXPECT_TRUE(torch::allclose(g[i], r[i], 1e-12, 1e-12)) << i;
}

TEST_F(WganGp, LayoutAndRoles) {
  WganGpGame game(tiny(), noise_images(3), 3);
  ASSERT_EQ(game.players().size(), 2u);
  const Player& g = game.players()[0];
  const Player& d = game.players()[1];
  EXPECT_EQ(g.name, "generator");
  EXPECT_EQ(g.role, Role::kMin);
  EXPECT_EQ(d.name, "critic");
  EXPECT_EQ(d.role, Role::kMax);
  int64_t gen_numel = 0, critic_numel = 0;
  for (const auto& p : game.generator()->parameters()) gen_numel += p.numel();
  for (const auto& p : game.critic()->parameters()) critic_numel += p.numel();
  EXPECT_EQ(g.offset, 0);
  EXPECT_EQ(g.numel, gen_numel);
  EXPECT_EQ(d.offset, gen_numel);
  EXPECT_EQ(d.numel, critic_numel);
  EXPECT_EQ(game.dim(), gen_numel + critic_numel);
  // Batch-norm running statistics are buffers, outside z.
  EXPECT_FALSE(game.generator()->buffers().empty());
  // The modules' parameters are views into z: moving z moves the networks.
  torch::Tensor before = game.sample(2, 1);
  game.params().narrow(0, 0, g.numel).mul_(1.5);
  EXPECT_FALSE(torch::equal(before, game.sample(2, 1)));
  // The generator's last layer has C output channels; the critic's first layer C input channels.
  EXPECT_EQ(game.sample(2, 1).sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  torch::Tensor f = game.operator_at(gen);
  EXPECT_EQ(f.sizes(), game.params().sizes());
  EXPECT_EQ(f.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::isfinite(f).all().item<bool>());
}

// F = (grad_theta L_G, grad_phi L_D): along a random direction d of one player's slice,
// <F_player, d> = (L_player(z + h d) - L_player(z - h d)) / 2h, both at the same sample.
void check_finite_differences(const std::string& loss) {
  WganGpGame game(tiny(loss), noise_images(1), 1, torch::kFloat64);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const WganGpGame::Draw draw = game.draw(gen);
  const torch::Tensor f = game.operator_at(draw);
  ASSERT_EQ(f.scalar_type(), torch::kFloat64);
  const torch::Tensor z0 = game.params().clone();
  at::Generator dir_gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const double h = 1e-6;
  for (const Player& player : game.players()) {
    torch::Tensor d = torch::zeros_like(z0);
    d.narrow(0, player.offset, player.numel)
        .copy_(torch::randn({player.numel}, dir_gen, torch::kFloat64));
    auto player_loss = [&](double step) {
      game.params().copy_(z0 + step * d);
      WganGpGame::Losses l = game.losses(draw);
      return (player.role == Role::kMin ? l.generator : l.critic).item<double>();
    };
    const double numeric = (player_loss(h) - player_loss(-h)) / (2 * h);
    game.params().copy_(z0);
    const double analytic = f.dot(d).item<double>();
    EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
        << loss << ", player " << player.name;
    EXPECT_GT(std::abs(analytic), 1e-8) << loss << ", player " << player.name;
  }
}

TEST_F(WganGp, OperatorMatchesFiniteDifferencesWganGp) { check_finite_differences("wgan-gp"); }

TEST_F(WganGp, OperatorMatchesFiniteDifferencesNonSaturating) {
  check_finite_differences("nonsaturating");
}

// In slices: the critic's, final before the generator's backward pass, then the generator's; the
// same operator as in one piece, for both losses.
TEST_F(WganGp, SlicesCoverTheOperatorCriticFirst) {
  for (const char* loss : {"wgan-gp", "nonsaturating"}) {
    WganGpGame game(tiny(loss), noise_images(1), 1);
    const Player& g = game.players()[0];
    const Player& d = game.players()[1];
    at::Generator ga = at::make_generator<at::CPUGeneratorImpl>(7);
    at::Generator gb = at::make_generator<at::CPUGeneratorImpl>(7);
    const torch::Tensor whole = game.operator_at(ga);
    std::vector<std::pair<int64_t, int64_t>> slices;
    torch::Tensor critic_when_ready;
    const torch::Tensor f =
        game.operator_in_slices(gb, [&](const torch::Tensor& out, int64_t begin, int64_t end) {
          slices.emplace_back(begin, end);
          if (slices.size() == 1) critic_when_ready = out.narrow(0, begin, end - begin).clone();
        });
    EXPECT_TRUE(torch::equal(f, whole)) << loss;
    const std::vector<std::pair<int64_t, int64_t>> expected = {{d.offset, d.offset + d.numel},
                                                               {g.offset, g.offset + g.numel}};
    EXPECT_EQ(slices, expected) << loss;
    EXPECT_TRUE(torch::equal(critic_when_ready, whole.narrow(0, d.offset, d.numel))) << loss;
  }
}

TEST_F(WganGp, SameSeedSameOperator) {
  WganGpGame a(tiny(), noise_images(1), 1);
  WganGpGame b(tiny(), noise_images(1), 1);
  EXPECT_TRUE(torch::equal(a.params(), b.params()));
  at::Generator ga = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Generator gb = at::make_generator<at::CPUGeneratorImpl>(7);
  torch::Tensor fa = a.operator_at(ga);
  EXPECT_TRUE(torch::equal(fa, b.operator_at(gb)));
  // Updating batch-norm statistics in between does not change the operator.
  at::Generator again = at::make_generator<at::CPUGeneratorImpl>(7);
  EXPECT_TRUE(torch::equal(fa, a.operator_at(again)));
  // Another seed, other networks.
  GameOptions other = tiny();
  other.seed = 4;
  EXPECT_FALSE(torch::equal(a.params(), WganGpGame(other, noise_images(1), 1).params()));
}

TEST_F(WganGp, ExtraGradientStepsMoveBothPlayers) {
  WganGpGame game(tiny("nonsaturating"), noise_images(1), 1);
  auto solver = make_solver("eg", game.params(), game.players(), SolverOptions().lr(1e-3));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  Oracle oracle = [&]() { return game.operator_at(gen); };
  const torch::Tensor z0 = game.params().clone();
  for (int t = 0; t < 3; ++t) solver->step(oracle);
  EXPECT_TRUE(torch::isfinite(game.params()).all().item<bool>());
  for (const Player& p : game.players()) {
    EXPECT_GT((game.params() - z0).narrow(0, p.offset, p.numel).abs().max().item<double>(), 0)
        << p.name;
  }
}

TEST_F(WganGp, MetricsAndSamplesAreDeterministicAndSideEffectFree) {
  WganGpGame game(tiny(), noise_images(1), 1);
  const Metrics m = game.metrics();
  for (const char* key : {"wasserstein", "generator_loss", "critic_loss", "gradient_penalty"}) {
    ASSERT_TRUE(find_metric(m, key).has_value()) << key;
  }
  // L_D = -W + lambda * GP (lambda = 10 by default).
  EXPECT_NEAR(*find_metric(m, "critic_loss"),
              -*find_metric(m, "wasserstein") + 10 * *find_metric(m, "gradient_penalty"), 1e-5);
  torch::Tensor s = game.sample(5, 9);
  EXPECT_EQ(s.sizes(), (std::vector<int64_t>{5, 1, 32, 32}));
  EXPECT_LE(s.abs().max().item<double>(), 1.0);
  EXPECT_FALSE(s.requires_grad());
  EXPECT_TRUE(torch::equal(s, game.sample(5, 9)));
  EXPECT_FALSE(torch::equal(s, game.sample(5, 10)));
  EXPECT_EQ(game.metrics(), m);
  // The running statistics: unchanged by metrics(), moved by the operator.
  std::vector<torch::Tensor> stats;
  for (const auto& b : game.generator()->buffers()) stats.push_back(b.clone());
  game.metrics();
  for (size_t i = 0; i < stats.size(); ++i) {
    EXPECT_TRUE(torch::equal(stats[i], game.generator()->buffers()[i]));
  }
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  game.operator_at(gen);
  EXPECT_FALSE(torch::equal(stats[0], game.generator()->buffers()[0]));
}

TEST_F(WganGp, WritesASampleGrid) {
  WganGpGame game(tiny(), noise_images(3), 3);
  const auto path = saddle::testing::temp_root() / "saddle_test_wgan_samples.png";
  game.write_samples(path.string(), 6, 0, 3);
  EXPECT_GT(saddle::file_size(path), 8u);
  saddle::remove_file(path);
}

TEST_F(WganGp, BadOptionsThrow) {
  auto expect_error = [](GameOptions o, const std::string& what) {
    try {
      make_game("wgan-gp", o);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  GameOptions o = tiny();
  o.dataset = "mnist";
  expect_error(o, "mnist");
  o = tiny();
  o.filters = 0;
  expect_error(o, "--filters 0");
  o.filters = -2;
  expect_error(o, "--filters -2");
  o = tiny();
  o.batch = -1;
  expect_error(o, "--batch -1");
  o = tiny();
  o.gan_loss = "hinge";
  expect_error(o, "hinge");
  o = tiny();
  o.gp_lambda = -1;
  expect_error(o, "--gp-lambda");
  o = tiny();
  o.dataset = "cifar10";
  o.data_dir = "/nonexistent/cifar";
  EXPECT_THROW(make_game("wgan-gp", o), Error);
  // A source of the wrong shape is named in the error.
  GameOptions t = tiny();
  EXPECT_THROW(WganGpGame(t, noise_images(1), 3), Error);
  EXPECT_THROW(WganGpGame(t, noise_images(1), 0), Error);
}

TEST_F(WganGp, ReadsFashionMnistShards) {
  if (!saddle::path_exists(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "no Fashion-MNIST in " << kFashionMnistDir;
  }
  GameOptions o = tiny();
  o.rank = 1;
  o.ranks = 2;
  auto game = make_game("wgan-gp", o);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  auto& wgan = dynamic_cast<WganGpGame&>(*game);
  EXPECT_EQ(wgan.channels(), 1);
  WganGpGame::Draw d = wgan.draw(gen);
  EXPECT_EQ(d.real.sizes(), (std::vector<int64_t>{4, 1, 32, 32}));
  EXPECT_GE(d.real.min().item<double>(), -1.0);
  EXPECT_LE(d.real.max().item<double>(), 1.0);
  EXPECT_TRUE(torch::isfinite(game->operator_at(gen)).all().item<bool>());
}

}  // namespace
}  // namespace saddle
