// Mixture-of-Gaussians GANs: the 2-D toy problems of the improved-WGAN paper (Gulrajani et al.,
// 2017), scored with the mode-coverage protocol of VEEGAN (Srivastava et al., 2017).
//   mog8:  8 Gaussians evenly spaced on a circle of radius 2, std 0.02.
//   mog25: 25 Gaussians on the grid {-4, -2, 0, 2, 4}^2, std 0.05.
// Players: "generator" (min), an MLP latent -> H -> H -> H -> 2 (ReLU) fed N(0, I) noise of
// GameOptions.latent dimensions; "critic" (max), an MLP 2 -> H -> H -> H -> 1 (ReLU), where the
// width H is GameOptions.filters (default 64). Both are bound into z, so the solver moves them as
// one flat vector.
// Losses (GameOptions.gan_loss), D the critic's raw output:
//   wgan-gp:       critic ascends E D(x) - E D(G(z)) - gp_lambda * E (|grad D(x^)| - 1)^2,
//                  generator descends -E D(G(z));
//   nonsaturating: critic ascends E log sigmoid D(x) + E log(1 - sigmoid D(G(z))),
//                  generator descends -E log sigmoid D(G(z)).
// GameOptions.batch is the number of real samples and latents per operator evaluation; batch 1
// (the CLI default, meant for analytic games) means 256.
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <string>

#include "saddle/game.h"
#include "saddle/games/registry.h"

namespace saddle {

// The VEEGAN protocol: a sample is high quality if it lies within 3 std of its nearest mode; a
// mode is captured when at least `min_count` high-quality samples have it as their nearest mode.
struct ModeCoverage {
  int64_t modes_captured = 0;
  double high_quality_fraction = 0.0;
};
constexpr int64_t kMinSamplesPerMode = 20;
ModeCoverage mode_coverage(const torch::Tensor& samples, const torch::Tensor& modes, double stddev,
                           int64_t min_count = kMinSamplesPerMode);

class MogGame final : public Game {
 public:
  // `name` is "mog8" or "mog25".
  MogGame(const std::string& name, const GameOptions& options);

  std::string name() const override { return name_; }
  torch::Tensor operator_at(at::Generator& gen) override;
  // modes_captured and high_quality_fraction of kMetricSamples generator samples, and the two
  // losses (without the gradient penalty) on as many real samples. The latents and real samples
  // come from a generator seeded by the game's seed: for fixed z the metrics are deterministic.
  Metrics metrics() override;

  // The scatter plot of the kMetricSamples metric samples over the modes.
  void write_samples_png(const std::string& path);
  // The runner's evaluation picture: the scatter of generator samples over the modes.
  bool write_samples(const std::string& path) override {
    write_samples_png(path);
    return true;
  }

  // n samples of the target mixture / of the generator.
  torch::Tensor sample_real(int64_t n, at::Generator& gen) const;
  torch::Tensor sample_generator(int64_t n, at::Generator& gen);

  const torch::Tensor& modes() const { return modes_; }
  double stddev() const { return stddev_; }
  int64_t batch() const { return batch_; }

  static constexpr int64_t kMetricSamples = 2500;
  static constexpr int64_t kDefaultBatch = 256;

 private:
  enum class Loss { kWganGp, kNonSaturating };

  // Critic's utility (ascended) and generator's loss on one batch; `fake_for_critic` is detached.
  torch::Tensor critic_utility(const torch::Tensor& real, const torch::Tensor& fake_for_critic,
                               at::Generator& gen, bool penalty);
  torch::Tensor generator_loss(const torch::Tensor& fake);
  at::Generator metric_generator() const;

  std::string name_;
  torch::Tensor modes_;  // [M, 2]
  double stddev_;
  int64_t batch_;
  int64_t latent_;
  int64_t hidden_;
  double gp_lambda_;
  Loss loss_;
  uint64_t seed_;
  torch::nn::Sequential generator_{nullptr};
  torch::nn::Sequential critic_{nullptr};
};

}  // namespace saddle
