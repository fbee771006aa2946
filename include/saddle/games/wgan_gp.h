// The wgan-gp game: a DCGAN-32 generator (min player "generator") against a DCGAN-32 critic (max
// player "critic") on 32x32 images, trained with the WGAN gradient-penalty loss (Gulrajani et al.
// 2017) or the non-saturating GAN loss, as in Gidel et al. (ICLR 2019) and the Q-GenX experiments.
// Stage 1 of game -> exchange -> solver -> metrics: operator_at() returns both players' gradients
// as one flat F; the solver, not the game, decides how the players move.
//
// Sign convention. A GAN is not zero-sum (the penalty and the non-saturating loss belong to one
// player only), so F stacks each player's gradient of its OWN loss, the loss that player minimizes:
//   F = (grad_theta L_G, grad_phi L_D),
//   wgan-gp:       L_G = -mean D(G(z)),          L_D = mean D(G(z)) - mean D(x) + lambda * GP,
//   nonsaturating: L_G = mean softplus(-D(G(z))), L_D = mean softplus(-D(x)) + mean
//   softplus(D(G(z)))
//                  + lambda * GP,
//   GP = mean (||grad_xhat D(xhat)|| - 1)^2, xhat = eps x + (1 - eps) G(z), eps ~ U(0, 1) per
//   image.
// Every solver descends F on both slices. The critic is still Role::kMax: it maximizes its utility
// U_D = -L_D, and F = -grad U_D = grad L_D on its slice, exactly what Game's convention (negated
// gradient for max players) asks. So the critic's slice is NOT negated again here: the game fills F
// from autograd::grad itself instead of flat_operator_from_grads(), which would negate it.
//
// Batch norm: the generator's running statistics are buffers, not parameters, so they are not in z
// and never exchanged; each rank's copy follows its own batches. They do not affect F (training
// mode normalizes with batch statistics) and are used only by sample().
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "saddle/device_graph.h"
#include "saddle/game.h"
#include "saddle/games/dcgan32.h"
#include "saddle/games/registry.h"
#include "saddle/metrics/classifier.h"

namespace saddle {

// A source of real images: `batch` images [batch, C, 32, 32] in [-1, 1], drawn with `gen` (from
// this rank's shard).
using RealBatches = std::function<torch::Tensor(int64_t batch, at::Generator& gen)>;

struct RealSource {
  RealBatches batches;
  int64_t channels = 1;
  // Checkpoint support of a source with a position (the dataset sampler); optional.
  std::function<torch::Tensor()> state;
  std::function<void(const torch::Tensor&)> load_state;
};
// The real images of options.dataset for this rank (its disjoint shard). Throws saddle::Error
// naming an unknown dataset or unreadable files.
RealSource dataset_source(const GameOptions& options);

enum class GanLoss { kWganGp, kNonSaturating };
GanLoss parse_gan_loss(const std::string& name);  // "wgan-gp" | "nonsaturating"

// GameOptions::batch keeps the analytic games' default of 1, which no batch-norm generator can use:
// the GAN games read batch == 1 as "not set" and use this instead.
constexpr int64_t kDefaultGanBatch = 64;

class WganGpGame final : public Game {
 public:
  // Reads options.dataset ("fashion-mnist", 1 channel, or "cifar10", 3 channels) from
  // options.data_dir, this rank's shard.
  explicit WganGpGame(const GameOptions& options);
  // Any source of real images with `channels` channels (tests, benchmarks, user data). `dtype`
  // float64 serves finite-difference checks; the exchange and the solvers expect float32.
  WganGpGame(const GameOptions& options, RealBatches real, int64_t channels,
             torch::Dtype dtype = torch::kFloat32);
  WganGpGame(const GameOptions& options, RealSource source, torch::Dtype dtype = torch::kFloat32)
      : WganGpGame(options, source.batches, source.channels, dtype) {
    source_state_ = std::move(source.state);
    source_load_state_ = std::move(source.load_state);
  }

  std::string name() const override { return "wgan-gp"; }

  // One sample: real images, latents and penalty mixing weights, drawn with `gen` in that order.
  struct Draw {
    torch::Tensor real;    // [B, C, 32, 32]
    torch::Tensor latent;  // [B, latent]
    torch::Tensor mix;     // [B, 1, 1, 1]
  };
  Draw draw(at::Generator& gen);

  // On a CUDA device with options.cuda_graphs, the evaluation is captured once as a CUDA graph
  // and replayed for every later draw (the same kernels: the operator equals the eager one, up to
  // the order cuDNN's algorithms sum in); recaptured when the precision, the loss scale or z's
  // storage changes.
  torch::Tensor operator_at(at::Generator& gen) override;
  // The critic's slice of F first, once its backward pass is done (eagerly; a graph replay
  // reports the whole of F).
  torch::Tensor operator_in_slices(at::Generator& gen, const SliceReady& ready) override;
  // One evaluation at `draw`, run eagerly, telling `ready` (if set) about the critic's slice,
  // then the generator's.
  torch::Tensor operator_at(const Draw& draw, const SliceReady& ready = {});
  // CUDA graph captures so far (0: every evaluation ran eagerly).
  int64_t graph_captures() const override { return graph_captures_; }

  // Both losses at `draw` (training mode, as the operator sees them): 0-dim tensors.
  struct Losses {
    torch::Tensor generator;
    torch::Tensor critic;
    torch::Tensor penalty;      // GP (unweighted)
    torch::Tensor wasserstein;  // mean D(x) - mean D(G(z))
  };
  Losses losses(const Draw& draw);

  // On a fixed evaluation batch drawn from the seed (the same at every call): "wasserstein",
  // "generator_loss", "critic_loss", "gradient_penalty". Leaves batch-norm statistics unchanged.
  Metrics metrics() override;

  // n generator images [n, C, 32, 32] from latents drawn with `seed`, in eval mode (batch-norm
  // running statistics), without gradients.
  torch::Tensor sample(int64_t n, uint64_t seed);
  // Writes sample(n, seed) as one PNG grid with `columns` images per row.
  void write_samples(const std::string& path, int64_t n, uint64_t seed, int64_t columns);
  // The runner's evaluation picture: 64 samples from a fixed seed, 8 per row.
  bool write_samples(const std::string& path) override;

  // "fid" and "inception_score" of options.fid_samples generated images (fixed latents) in the
  // feature space of the Fashion-MNIST classifier at options.classifier; nothing without one.
  Metrics evaluation_metrics() override;

  // Batch-norm running statistics and the data sampler's position: with them a resumed run
  // continues exactly.
  State state() const override;
  void load_state(const State& state) override;

  int64_t channels() const { return channels_; }
  int64_t batch() const { return batch_; }
  GanLoss loss() const { return loss_; }
  DCGAN32Generator& generator() { return generator_; }
  DCGAN32Critic& critic() { return critic_; }

 private:
  // Scores of real and fake images, and the penalty, from one forward of the critic on both.
  struct Forward {
    torch::Tensor fake;
    torch::Tensor real_scores, fake_scores;
    torch::Tensor penalty;
  };
  Forward forward(const Draw& draw, bool with_penalty);
  // operator_at(draw) through the CUDA graph, capturing it first when needed.
  torch::Tensor graphed_operator_at(const Draw& draw);
  torch::Tensor penalty(const Draw& draw, const torch::Tensor& fake);

  int64_t batch_ = kDefaultGanBatch;
  int64_t channels_ = 1;
  int64_t latent_ = 128;
  double gp_lambda_ = 10.0;
  GanLoss loss_ = GanLoss::kWganGp;
  torch::Dtype dtype_ = torch::kFloat32;
  RealBatches real_;
  DCGAN32Generator generator_{nullptr};
  DCGAN32Critic critic_{nullptr};
  std::vector<torch::Tensor> generator_params_, critic_params_;
  Draw eval_;
  std::function<torch::Tensor()> source_state_;
  std::function<void(const torch::Tensor&)> source_load_state_;
  // Image metrics, set up on first use: the classifier and the real test images' statistics.
  std::string classifier_path_;
  std::string data_dir_;
  std::string dataset_;
  int64_t fid_samples_ = 10000;
  uint64_t seed_ = 0;
  Classifier classifier_{nullptr};
  std::optional<FeatureStatistics> real_statistics_;
  // The CUDA graph of operator_at: its inputs (each draw is copied into them), its output (the
  // graph's memory, overwritten by every replay) and the context it was captured in.
  bool use_graphs_ = false;
  std::unique_ptr<DeviceGraph> graph_;
  Draw graph_in_;
  torch::Tensor graph_out_;
  std::string graph_context_;
  int64_t graph_captures_ = 0;
};

}  // namespace saddle
