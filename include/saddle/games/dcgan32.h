// The DCGAN-32 generator and critic of Gidel et al., "A variational inequality perspective on
// generative adversarial networks" (ICLR 2019), as used in the Q-GenX experiments; the players of
// the wgan-gp game (games/wgan_gp/wgan_gp.h). Written like pytorch/examples cpp/dcgan.
#pragma once

#include <torch/nn.h>
#include <torch/types.h>

#include <cstdint>

namespace saddle {

struct DCGAN32Options {
  int64_t latent = 128;  // generator input size
  int64_t filters = 64;  // F: widths F, 2F, 4F
  int64_t channels = 1;  // C: image channels (1 fashion-mnist, 3 cifar10)
};

// A transposed convolution with kernel 4, stride 2 and padding 1 (the generator's upsampling layer;
// same weight [in, out, 4, 4], bias and initialization as torch::nn::ConvTranspose2d), computed as
// four stride-1 convolutions with 2x2 kernels, one per output phase (sub-pixel convolution), whose
// outputs interleave into the 2H x 2W map. Same arithmetic; but LibTorch 1.13 runs transposed
// convolutions, forward and backward, on a slow im2col path, and regular ones on oneDNN: this is
// about 10x faster for the generator's backward pass.
class UpConv2dImpl : public torch::nn::Module {
 public:
  UpConv2dImpl(int64_t in, int64_t out);
  // [N, in, H, W] -> [N, out, 2H, 2W].
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight, bias;
};
TORCH_MODULE(UpConv2d);

// latent -> linear 4*4*4F -> BN, ReLU -> [4F,4,4] -> convT 4F->2F (BN, ReLU) -> convT 2F->F
// (BN, ReLU) -> convT F->C -> tanh: [N, C, 32, 32] in (-1, 1). Every convT: kernel 4, stride 2,
// padding 1. Batch norm's running statistics are buffers, not parameters.
class DCGAN32GeneratorImpl : public torch::nn::Module {
 public:
  explicit DCGAN32GeneratorImpl(const DCGAN32Options& options);
  torch::Tensor forward(const torch::Tensor& z);

 private:
  DCGAN32Options options_;
  torch::nn::Linear fc_{nullptr};
  torch::nn::BatchNorm1d bn0_{nullptr};
  UpConv2d deconv1_{nullptr}, deconv2_{nullptr}, deconv3_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
};
TORCH_MODULE(DCGAN32Generator);

// [N, C, 32, 32] -> conv C->F -> conv F->2F -> conv 2F->4F (kernel 4, stride 2, padding 1, each
// followed by LeakyReLU(0.2)) -> linear 4*4*4F -> 1: one unbounded score per image. No batch norm:
// the gradient penalty is per sample, and batch norm would couple the samples of a batch.
class DCGAN32CriticImpl : public torch::nn::Module {
 public:
  explicit DCGAN32CriticImpl(const DCGAN32Options& options);
  // [N] scores.
  torch::Tensor forward(const torch::Tensor& x);

 private:
  DCGAN32Options options_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(DCGAN32Critic);

// PyTorch's default initialization (weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), batch
// norm scale 1 and shift 0) drawn from `gen`, so that the networks depend only on the game's seed
// and never on LibTorch's global generator.
void reset_parameters(torch::nn::Module& module, at::Generator& gen);

}  // namespace saddle
