#include "games/wgan_gp/dcgan32.h"

#include <cmath>

namespace saddle {

namespace nn = torch::nn;

namespace {

nn::ConvTranspose2dOptions up(int64_t in, int64_t out) {
  return nn::ConvTranspose2dOptions(in, out, 4).stride(2).padding(1);
}

nn::Conv2dOptions down(int64_t in, int64_t out) {
  return nn::Conv2dOptions(in, out, 4).stride(2).padding(1);
}

}  // namespace

DCGAN32GeneratorImpl::DCGAN32GeneratorImpl(const DCGAN32Options& options) : options_(options) {
  const int64_t f = options.filters;
  fc_ = register_module("fc", nn::Linear(options.latent, 4 * 4 * 4 * f));
  bn0_ = register_module("bn0", nn::BatchNorm1d(4 * 4 * 4 * f));
  deconv1_ = register_module("deconv1", nn::ConvTranspose2d(up(4 * f, 2 * f)));
  bn1_ = register_module("bn1", nn::BatchNorm2d(2 * f));
  deconv2_ = register_module("deconv2", nn::ConvTranspose2d(up(2 * f, f)));
  bn2_ = register_module("bn2", nn::BatchNorm2d(f));
  deconv3_ = register_module("deconv3", nn::ConvTranspose2d(up(f, options.channels)));
}

torch::Tensor DCGAN32GeneratorImpl::forward(const torch::Tensor& z) {
  torch::Tensor x = torch::relu(bn0_(fc_(z))).view({-1, 4 * options_.filters, 4, 4});
  x = torch::relu(bn1_(deconv1_(x)));
  x = torch::relu(bn2_(deconv2_(x)));
  return torch::tanh(deconv3_(x));
}

DCGAN32CriticImpl::DCGAN32CriticImpl(const DCGAN32Options& options) : options_(options) {
  const int64_t f = options.filters;
  conv1_ = register_module("conv1", nn::Conv2d(down(options.channels, f)));
  conv2_ = register_module("conv2", nn::Conv2d(down(f, 2 * f)));
  conv3_ = register_module("conv3", nn::Conv2d(down(2 * f, 4 * f)));
  fc_ = register_module("fc", nn::Linear(4 * 4 * 4 * f, 1));
}

torch::Tensor DCGAN32CriticImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = torch::leaky_relu(conv1_(x), 0.2);
  h = torch::leaky_relu(conv2_(h), 0.2);
  h = torch::leaky_relu(conv3_(h), 0.2);
  return fc_(h.flatten(1)).view({-1});
}

void reset_parameters(nn::Module& module, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  for (const auto& m : module.modules(/*include_self=*/true)) {
    auto params = m->named_parameters(/*recurse=*/false);
    torch::Tensor* weight = params.find("weight");
    torch::Tensor* bias = params.find("bias");
    if (weight == nullptr) continue;
    if (weight->dim() == 1) {  // batch norm
      weight->fill_(1.0);
      if (bias != nullptr) bias->zero_();
      continue;
    }
    // fan_in as torch.nn.init computes it: dim 1 times the receptive field (for a transposed
    // convolution, whose weight is [in, out, k, k], that is out * k * k, as in PyTorch).
    const double fan_in = static_cast<double>(weight->numel() / weight->size(0));
    const double bound = 1.0 / std::sqrt(fan_in);
    weight->uniform_(-bound, bound, gen);
    if (bias != nullptr) bias->uniform_(-bound, bound, gen);
  }
}

}  // namespace saddle
