#include "saddle/games/mog.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <vector>

#include "saddle/device.h"
#include "saddle/error.h"
#include "saddle/run/images.h"

namespace saddle {

namespace {

// Seeds the metric generator apart from the game's own stream (same seed, different numbers).
constexpr uint64_t kMetricSeedOffset = 0x9e3779b97f4a7c15ULL;
constexpr double kPi = 3.14159265358979323846;

torch::nn::Sequential mlp(int64_t in, int64_t hidden, int64_t out) {
  return torch::nn::Sequential(torch::nn::Linear(in, hidden), torch::nn::ReLU(),
                               torch::nn::Linear(hidden, hidden), torch::nn::ReLU(),
                               torch::nn::Linear(hidden, hidden), torch::nn::ReLU(),
                               torch::nn::Linear(hidden, out));
}

// PyTorch's default Linear initialization, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and
// bias, but drawn from `gen`: the game's seed alone fixes the networks.
void init_linear_layers(torch::nn::Sequential& net, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  for (auto& module : net->modules(/*include_self=*/false)) {
    if (auto* linear = module->as<torch::nn::Linear>()) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(linear->weight.size(1)));
      linear->weight.uniform_(-bound, bound, gen);
      linear->bias.uniform_(-bound, bound, gen);
    }
  }
}

torch::Tensor mixture_modes(const std::string& name) {
  if (name == "mog8") {
    torch::Tensor angle = torch::arange(8, torch::kFloat32) * (2.0 * kPi / 8.0);
    return torch::stack({angle.cos(), angle.sin()}, 1) * 2.0;
  }
  if (name == "mog25") {
    torch::Tensor axis = torch::arange(-4, 5, 2, torch::kFloat32);
    std::vector<torch::Tensor> grid = torch::meshgrid({axis, axis}, "ij");
    return torch::stack({grid[0].reshape({-1}), grid[1].reshape({-1})}, 1);
  }
  throw Error("unknown mixture-of-Gaussians game '" + name + "' (expected mog8 or mog25)");
}

}  // namespace

ModeCoverage mode_coverage(const torch::Tensor& samples, const torch::Tensor& modes, double stddev,
                           int64_t min_count) {
  SADDLE_CHECK(samples.dim() == 2 && samples.size(1) == 2 && samples.size(0) > 0,
               "mode_coverage: expected samples [N, 2], got ", samples.sizes());
  SADDLE_CHECK(modes.dim() == 2 && modes.size(1) == 2 && modes.size(0) > 0,
               "mode_coverage: expected modes [M, 2], got ", modes.sizes());
  torch::NoGradGuard no_grad;
  torch::Tensor x = samples.detach().to(torch::kFloat64);
  torch::Tensor m = modes.to(torch::kFloat64);
  // Squared distances [N, M]; a non-finite sample is far from every mode.
  torch::Tensor d2 = (x.unsqueeze(1) - m.unsqueeze(0)).square().sum(2);
  d2 = torch::nan_to_num(d2, std::numeric_limits<double>::infinity());
  auto [nearest_d2, nearest] = d2.min(1);
  torch::Tensor good = nearest_d2 <= 9.0 * stddev * stddev;
  torch::Tensor counts = torch::bincount(nearest.index({good}), {}, modes.size(0));
  ModeCoverage out;
  out.modes_captured = (counts >= min_count).sum().item<int64_t>();
  out.high_quality_fraction = good.to(torch::kFloat64).mean().item<double>();
  return out;
}

MogGame::MogGame(const std::string& name, const GameOptions& options)
    : name_(name),
      modes_(mixture_modes(name)),
      stddev_(name == "mog8" ? 0.02 : 0.05),
      batch_(options.batch == 0 ? kDefaultBatch : options.batch),
      latent_(options.latent),
      hidden_(options.filters),
      gp_lambda_(options.gp_lambda),
      seed_(options.seed) {
  SADDLE_CHECK(options.filters >= 1, name, ": filters (hidden units) must be positive, got ",
               options.filters);
  SADDLE_CHECK(options.latent >= 1, name, ": latent must be positive, got ", options.latent);
  SADDLE_CHECK(options.batch >= 0, "invalid --batch ", options.batch,
               " (must be >= 0; 0: ", kDefaultBatch, ")");
  SADDLE_CHECK(options.gp_lambda >= 0, name, ": gp_lambda must be >= 0, got ", options.gp_lambda);
  if (options.gan_loss == "wgan-gp") {
    loss_ = Loss::kWganGp;
  } else if (options.gan_loss == "nonsaturating") {
    loss_ = Loss::kNonSaturating;
  } else {
    throw Error(detail::concat(name, ": unknown gan_loss '", options.gan_loss,
                               "' (expected wgan-gp or nonsaturating)"));
  }
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  generator_ = mlp(latent_, hidden_, 2);
  critic_ = mlp(2, hidden_, 1);
  init_linear_layers(generator_, gen);
  init_linear_layers(critic_, gen);
  generator_->to(options.device);
  critic_->to(options.device);
  modes_ = modes_.to(options.device);
  bind_parameters({PlayerTensors{"generator", Role::kMin, generator_->parameters()},
                   PlayerTensors{"critic", Role::kMax, critic_->parameters()}});
}

torch::Tensor MogGame::sample_real(int64_t n, at::Generator& gen) const {
  torch::Tensor which =
      to_device(torch::randint(modes_.size(0), {n}, gen, torch::kInt64), device());
  return modes_.index_select(0, which) +
         stddev_ * to_device(torch::randn({n, 2}, gen, torch::kFloat32), device());
}

torch::Tensor MogGame::sample_generator(int64_t n, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  return generator_->forward(to_device(torch::randn({n, latent_}, gen, torch::kFloat32), device()));
}

torch::Tensor MogGame::critic_utility(const torch::Tensor& real, const torch::Tensor& fake,
                                      at::Generator& gen, bool penalty) {
  torch::Tensor d_real = critic_->forward(real);
  torch::Tensor d_fake = critic_->forward(fake);
  if (loss_ == Loss::kNonSaturating) {
    return -(torch::softplus(-d_real).mean() + torch::softplus(d_fake).mean());
  }
  torch::Tensor utility = d_real.mean() - d_fake.mean();
  if (penalty && gp_lambda_ > 0) {
    torch::Tensor eps = to_device(torch::rand({real.size(0), 1}, gen, torch::kFloat32), device());
    torch::Tensor mixed = (eps * real + (1 - eps) * fake).detach().requires_grad_(true);
    torch::Tensor grad = torch::autograd::grad({critic_->forward(mixed).sum()}, {mixed},
                                               /*grad_outputs=*/{}, /*retain_graph=*/true,
                                               /*create_graph=*/true)[0];
    utility = utility - gp_lambda_ * (grad.norm(2, 1) - 1).square().mean();
  }
  return utility;
}

torch::Tensor MogGame::generator_loss(const torch::Tensor& fake) {
  torch::Tensor d_fake = critic_->forward(fake);
  return loss_ == Loss::kNonSaturating ? torch::softplus(-d_fake).mean() : -d_fake.mean();
}

torch::Tensor MogGame::operator_at(at::Generator& gen) {
  torch::Tensor real = sample_real(batch_, gen);
  torch::Tensor noise = to_device(torch::randn({batch_, latent_}, gen, torch::kFloat32), device());
  generator_->zero_grad();
  critic_->zero_grad();
  torch::Tensor fake = generator_->forward(noise);
  // Losses times the loss scale (1 unless fp16 mixed precision), the operator divided by it.
  (generator_loss(fake) * loss_scale_).backward();
  // That backward also reached the critic; its part of F comes from its own utility alone.
  critic_->zero_grad();
  (critic_utility(real, fake.detach(), gen, /*penalty=*/true) * loss_scale_).backward();
  torch::Tensor f = flat_operator_from_grads();
  return loss_scale_ == 1.0 ? f : f.div_(loss_scale_);
}

at::Generator MogGame::metric_generator() const {
  return at::make_generator<at::CPUGeneratorImpl>(seed_ + kMetricSeedOffset);
}

Metrics MogGame::metrics() {
  torch::NoGradGuard no_grad;
  at::Generator gen = metric_generator();
  torch::Tensor fake = sample_generator(kMetricSamples, gen);
  torch::Tensor real = sample_real(kMetricSamples, gen);
  const ModeCoverage coverage = mode_coverage(fake.cpu(), modes_.cpu(), stddev_);
  const double d_loss = -critic_utility(real, fake, gen, /*penalty=*/false).item<double>();
  const double g_loss = generator_loss(fake).item<double>();
  return {{"modes_captured", static_cast<double>(coverage.modes_captured)},
          {"high_quality_fraction", coverage.high_quality_fraction},
          {"d_loss", d_loss},
          {"g_loss", g_loss}};
}

void MogGame::write_samples_png(const std::string& path) {
  at::Generator gen = metric_generator();
  write_scatter(path, sample_generator(kMetricSamples, gen), modes_);
}

}  // namespace saddle
