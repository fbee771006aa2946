#include "saddle/games/wgan_gp.h"

#include <torch/autograd.h>
#include <torch/nn/functional.h>

#include <fmt/format.h>

#include <cmath>

#include "saddle/device.h"
#include "saddle/error.h"
#include "saddle/run/images.h"

namespace saddle {

namespace {

const GameOptions& checked(const GameOptions& options) {
  SADDLE_CHECK(options.filters > 0, "invalid --filters ", options.filters, " (must be > 0)");
  SADDLE_CHECK(options.latent > 0, "invalid --latent ", options.latent, " (must be > 0)");
  SADDLE_CHECK(options.batch >= 0, "invalid --batch ", options.batch,
               " (must be >= 0; 0: ", kDefaultGanBatch, ")");
  SADDLE_CHECK(options.gp_lambda >= 0.0 && std::isfinite(options.gp_lambda), "invalid --gp-lambda ",
               options.gp_lambda, " (must be >= 0)");
  parse_gan_loss(options.gan_loss);
  return options;
}

// The flat concatenation of `grads` (undefined: unused, zero) in the layout of `params`.
void copy_grads(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                torch::Tensor out, double scale) {
  int64_t offset = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t n = params[i].numel();
    torch::Tensor slice = out.narrow(0, offset, n);
    if (grads[i].defined()) {
      slice.copy_(grads[i].reshape({-1}));
      if (scale != 1.0) slice.mul_(scale);
    } else {
      slice.zero_();
    }
    offset += n;
  }
}

// Restores a module's buffers (batch-norm running statistics) when it goes out of scope, so that
// metrics() can run the generator in training mode without side effects.
class BufferSnapshot {
 public:
  explicit BufferSnapshot(torch::nn::Module& module) : buffers_(module.buffers()) {
    for (const auto& b : buffers_) saved_.push_back(b.clone());
  }
  ~BufferSnapshot() {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < buffers_.size(); ++i) buffers_[i].copy_(saved_[i]);
  }
  BufferSnapshot(const BufferSnapshot&) = delete;
  BufferSnapshot& operator=(const BufferSnapshot&) = delete;

 private:
  std::vector<torch::Tensor> buffers_, saved_;
};

}  // namespace

GanLoss parse_gan_loss(const std::string& name) {
  if (name == "wgan-gp") return GanLoss::kWganGp;
  if (name == "nonsaturating") return GanLoss::kNonSaturating;
  throw Error("unknown --gan-loss '" + name + "' (expected wgan-gp or nonsaturating)");
}

WganGpGame::WganGpGame(const GameOptions& options)
    : WganGpGame(options, dataset_source(checked(options))) {}

WganGpGame::WganGpGame(const GameOptions& options, RealBatches real, int64_t channels,
                       torch::Dtype dtype)
    : batch_(checked(options).batch == 0 ? kDefaultGanBatch : options.batch),
      channels_(channels),
      latent_(options.latent),
      gp_lambda_(options.gp_lambda),
      loss_(parse_gan_loss(options.gan_loss)),
      dtype_(dtype),
      real_(std::move(real)),
      classifier_path_(options.classifier),
      data_dir_(options.data_dir),
      dataset_(options.dataset),
      fid_samples_(options.fid_samples),
      seed_(options.seed),
      use_graphs_(options.cuda_graphs && DeviceGraph::supported(options.device)) {
  SADDLE_CHECK(options.fid_samples >= 2, "invalid --fid-samples ", options.fid_samples,
               " (must be >= 2)");
  SADDLE_CHECK(channels > 0, "wgan-gp: invalid number of image channels ", channels);
  SADDLE_CHECK(real_, "wgan-gp: no source of real images");
  SADDLE_CHECK(dtype == torch::kFloat32 || dtype == torch::kFloat64,
               "wgan-gp: parameters must be float32 or float64, got ", dtype);
  const DCGAN32Options net{options.latent, options.filters, channels};
  generator_ = DCGAN32Generator(net);
  critic_ = DCGAN32Critic(net);
  // Identical on every rank: everything below depends only on the seed.
  at::Generator init = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  reset_parameters(*generator_, init);
  reset_parameters(*critic_, init);
  // On the run's device before bind_parameters makes z their storage.
  generator_->to(options.device, dtype);
  critic_->to(options.device, dtype);
  generator_params_ = generator_->parameters();
  critic_params_ = critic_->parameters();
  bind_parameters(
      {{"generator", Role::kMin, generator_params_}, {"critic", Role::kMax, critic_params_}});
  // The evaluation batch of metrics(): fixed, but not the same stream as any training draw.
  at::Generator eval = at::make_generator<at::CPUGeneratorImpl>(options.seed ^ 0x5eed'e7a1'0000ULL);
  eval_ = draw(eval);
}

WganGpGame::Draw WganGpGame::draw(at::Generator& gen) {
  Draw d;
  d.real = real_(batch_, gen).to(device(), dtype_);
  SADDLE_CHECK(d.real.dim() == 4 && d.real.size(0) == batch_ && d.real.size(1) == channels_ &&
                   d.real.size(2) == 32 && d.real.size(3) == 32,
               "wgan-gp: real batch has shape ", d.real.sizes(), ", expected [", batch_, ", ",
               channels_, ", 32, 32]");
  // Drawn on the CPU (the stream is a CPU generator), then moved without waiting for the device:
  // the same draw on every device.
  const auto opts = torch::TensorOptions().dtype(dtype_);
  d.latent = to_device(torch::randn({batch_, latent_}, gen, opts), device());
  d.mix = to_device(torch::rand({batch_, 1, 1, 1}, gen, opts), device());
  return d;
}

torch::Tensor WganGpGame::penalty(const Draw& d, const torch::Tensor& fake) {
  torch::Tensor xhat = (d.mix * d.real + (1 - d.mix) * fake.detach()).requires_grad_(true);
  torch::Tensor scores = critic_->forward(xhat);
  // Scaled like the losses (fp16 loss scaling), so the inner gradient does not underflow either.
  torch::Tensor g = torch::autograd::grad({scores.sum() * loss_scale_}, {xhat}, {},
                                          /*retain_graph=*/true, /*create_graph=*/true)[0] /
                    loss_scale_;
  return (g.flatten(1).norm(2, 1) - 1).square().mean();
}

WganGpGame::Forward WganGpGame::forward(const Draw& d, bool with_penalty) {
  generator_->train();
  critic_->train();
  Forward f;
  f.fake = generator_->forward(d.latent);
  // One critic pass over real and fake images: the critic has no batch norm, so this equals two
  // passes, with larger matrix products.
  torch::Tensor scores = critic_->forward(torch::cat({d.real, f.fake}));
  f.real_scores = scores.narrow(0, 0, batch_);
  f.fake_scores = scores.narrow(0, batch_, batch_);
  if (with_penalty) f.penalty = penalty(d, f.fake);
  return f;
}

WganGpGame::Losses WganGpGame::losses(const Draw& d) {
  torch::AutoGradMode grad_mode(true);  // the penalty differentiates the critic
  Forward f = forward(d, /*with_penalty=*/true);
  Losses l;
  l.penalty = f.penalty;
  l.wasserstein = f.real_scores.mean() - f.fake_scores.mean();
  if (loss_ == GanLoss::kWganGp) {
    l.generator = -f.fake_scores.mean();
    l.critic = -l.wasserstein + gp_lambda_ * f.penalty;
  } else {
    namespace F = torch::nn::functional;
    l.generator = F::softplus(-f.fake_scores).mean();
    l.critic = F::softplus(-f.real_scores).mean() + F::softplus(f.fake_scores).mean() +
               gp_lambda_ * f.penalty;
  }
  return l;
}

torch::Tensor WganGpGame::operator_at(const Draw& d, const SliceReady& ready) {
  torch::AutoGradMode grad_mode(true);
  Forward f = forward(d, /*with_penalty=*/gp_lambda_ > 0);
  torch::Tensor out = torch::empty_like(params_);
  const Player& gen = players_[0];
  const Player& critic = players_[1];
  torch::Tensor out_gen = out.narrow(0, gen.offset, gen.numel);
  torch::Tensor out_critic = out.narrow(0, critic.offset, critic.numel);
  torch::Tensor l_critic = loss_ == GanLoss::kWganGp
                               ? f.fake_scores.mean() - f.real_scores.mean()
                               : torch::nn::functional::softplus(-f.real_scores).mean() +
                                     torch::nn::functional::softplus(f.fake_scores).mean();
  if (f.penalty.defined()) l_critic = l_critic + gp_lambda_ * f.penalty;
  // Losses times the loss scale (1 unless fp16), gradients divided by it in copy_grads.
  const double unscale = 1.0 / loss_scale_;
  l_critic = l_critic * loss_scale_;
  // The critic's half of F is final before the generator's backward pass starts: `ready` lets the
  // exchange send it meanwhile.
  const auto critic_ready = [&] {
    if (ready) ready(out, critic.offset, critic.offset + critic.numel);
  };
  if (loss_ == GanLoss::kWganGp) {
    // L_G = -(the fake term of L_D) and the penalty sees G(z) detached, so the backward pass of
    // L_D through both networks gives grad_phi L_D and grad_theta L_D = -grad_theta L_G. It is cut
    // at G(z): through the critic to its parameters and to the fake images, then from those
    // through the generator (the same operations as one pass).
    std::vector<torch::Tensor> inputs = critic_params_;
    inputs.push_back(f.fake);
    auto grads = torch::autograd::grad({l_critic}, inputs, {}, /*retain_graph=*/false,
                                       /*create_graph=*/false, /*allow_unused=*/true);
    const torch::Tensor grad_fake = grads.back();
    grads.pop_back();
    copy_grads(critic_params_, grads, out_critic, unscale);
    critic_ready();
    std::vector<torch::Tensor> g_gen(generator_params_.size());
    if (grad_fake.defined()) {
      g_gen = torch::autograd::grad({f.fake}, generator_params_, {grad_fake},
                                    /*retain_graph=*/false, /*create_graph=*/false,
                                    /*allow_unused=*/true);
    }
    copy_grads(generator_params_, g_gen, out_gen, -unscale);
  } else {
    torch::Tensor l_gen = torch::nn::functional::softplus(-f.fake_scores).mean() * loss_scale_;
    auto g_critic = torch::autograd::grad({l_critic}, critic_params_, {}, /*retain_graph=*/true,
                                          /*create_graph=*/false, /*allow_unused=*/true);
    copy_grads(critic_params_, g_critic, out_critic, unscale);
    critic_ready();
    auto g_gen = torch::autograd::grad({l_gen}, generator_params_, {}, /*retain_graph=*/false,
                                       /*create_graph=*/false, /*allow_unused=*/true);
    copy_grads(generator_params_, g_gen, out_gen, unscale);
  }
  if (ready) ready(out, gen.offset, gen.offset + gen.numel);
  return out;
}

torch::Tensor WganGpGame::operator_at(at::Generator& gen) {
  const Draw d = draw(gen);
  return use_graphs_ ? graphed_operator_at(d) : operator_at(d);
}

torch::Tensor WganGpGame::operator_in_slices(at::Generator& gen, const SliceReady& ready) {
  // A graph replay computes the whole of F at once: the default reports it whole.
  if (use_graphs_) return Game::operator_in_slices(gen, ready);
  return operator_at(draw(gen), ready);
}

torch::Tensor WganGpGame::graphed_operator_at(const Draw& d) {
  // The kernels baked into the graph depend on the autocast precision, the loss scale (a constant
  // of the recorded multiplications) and where z lives (the modules' parameters are views of it).
  const std::string context =
      DeviceGraph::context(device(), fmt::format("scale={} z={}", loss_scale_, params_.data_ptr()));
  if (!graph_ || context != graph_context_) {
    graph_out_ = torch::Tensor();
    graph_.reset();  // frees the previous graph's memory first
    graph_in_ = {d.real.clone(), d.latent.clone(), d.mix.clone()};
    graph_ = std::make_unique<DeviceGraph>(device());
    {
      // The warm-up evaluations must not move the batch-norm statistics: only the replays do,
      // once per draw, as eager evaluations would.
      BufferSnapshot keep(*generator_);
      graph_->capture([this] { graph_out_ = operator_at(graph_in_); });
    }
    graph_context_ = context;
    ++graph_captures_;
  } else {
    graph_in_.real.copy_(d.real);
    graph_in_.latent.copy_(d.latent);
    graph_in_.mix.copy_(d.mix);
  }
  graph_->replay();
  // The solvers keep operators across evaluations; the next replay overwrites graph_out_.
  return graph_out_.clone();
}

Metrics WganGpGame::metrics() {
  BufferSnapshot keep(*generator_);
  Losses l = losses(eval_);
  return {{"wasserstein", l.wasserstein.item<double>()},
          {"generator_loss", l.generator.item<double>()},
          {"critic_loss", l.critic.item<double>()},
          {"gradient_penalty", l.penalty.item<double>()}};
}

torch::Tensor WganGpGame::sample(int64_t n, uint64_t seed) {
  SADDLE_CHECK(n > 0, "wgan-gp: cannot sample ", n, " images");
  torch::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::Tensor z =
      torch::randn({n, latent_}, gen, torch::TensorOptions().dtype(dtype_)).to(device());
  generator_->eval();
  torch::Tensor images = generator_->forward(z);
  generator_->train();
  return images;
}

void WganGpGame::write_samples(const std::string& path, int64_t n, uint64_t seed, int64_t columns) {
  write_image_grid(path, sample(n, seed).to(torch::kFloat32), columns);
}

}  // namespace saddle

namespace saddle {

bool WganGpGame::write_samples(const std::string& path) {
  write_samples(path, 64, seed_ ^ 0x5A5A5A5AULL, 8);
  return true;
}

Metrics WganGpGame::evaluation_metrics() {
  if (classifier_path_.empty()) return {};
  SADDLE_CHECK(dataset_ == "fashion-mnist", "--classifier scores Fashion-MNIST images only; ",
               "the dataset is ", dataset_);
  if (!classifier_) {
    // Trained once (deterministically) and cached; every later run loads it.
    Logger logger(LogLevel::kWarn);
    classifier_ =
        load_or_train_classifier(classifier_path_,
                                 ClassifierOptions().data_dir(data_dir_).device(device()), logger)
            .model;
    classifier_->to(device());
    classifier_->eval();
    const ImageDataset test = load_fashion_mnist(data_dir_, /*train=*/false);
    real_statistics_ = real_feature_statistics(classifier_, test.images);
  }
  // The same latents at every evaluation, so the curve shows the generator, not the draw.
  std::vector<torch::Tensor> chunks;
  constexpr int64_t kChunk = 500;
  for (int64_t done = 0; done < fid_samples_; done += kChunk) {
    const int64_t n = std::min(kChunk, fid_samples_ - done);
    chunks.push_back(
        sample(n, seed_ + 7919 * static_cast<uint64_t>(done / kChunk + 1)).to(torch::kFloat32));
  }
  const ImageScores scores = score_images(classifier_, torch::cat(chunks), *real_statistics_);
  return {{"fid", scores.fid}, {"inception_score", scores.inception_score}};
}

Game::State WganGpGame::state() const {
  State out;
  for (const auto& item : generator_->named_buffers())
    out.emplace_back("generator." + item.key(), item.value());
  for (const auto& item : critic_->named_buffers())
    out.emplace_back("critic." + item.key(), item.value());
  if (source_state_) out.emplace_back("sampler", source_state_());
  return out;
}

void WganGpGame::load_state(const State& state) {
  torch::NoGradGuard no_grad;
  auto restore = [&](torch::nn::Module& module, const std::string& prefix) {
    for (auto& item : module.named_buffers()) {
      bool found = false;
      for (const auto& [name, tensor] : state) {
        if (name != prefix + item.key()) continue;
        SADDLE_CHECK(tensor.sizes() == item.value().sizes(), "checkpoint: buffer ", name,
                     " has shape ", tensor.sizes(), ", the game's has ", item.value().sizes());
        item.value().copy_(tensor);
        found = true;
      }
      SADDLE_CHECK(found, "checkpoint has no buffer ", prefix, item.key());
    }
  };
  restore(*generator_, "generator.");
  restore(*critic_, "critic.");
  for (const auto& [name, tensor] : state) {
    if (name == "sampler" && source_load_state_) source_load_state_(tensor);
  }
}

}  // namespace saddle
