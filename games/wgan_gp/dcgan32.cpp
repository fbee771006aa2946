#include "saddle/games/dcgan32.h"

#include <cmath>
#include <vector>

namespace saddle {

namespace nn = torch::nn;

namespace {

nn::Conv2dOptions down(int64_t in, int64_t out) {
  return nn::Conv2dOptions(in, out, 4).stride(2).padding(1);
}

}  // namespace

UpConv2dImpl::UpConv2dImpl(int64_t in, int64_t out) {
  weight = register_parameter("weight", torch::empty({in, out, 4, 4}));
  bias = register_parameter("bias", torch::empty({out}));
  // ConvTranspose2d's default initialization (fan_in = out * 4 * 4).
  torch::NoGradGuard no_grad;
  const double bound = 1.0 / std::sqrt(static_cast<double>(out * 16));
  weight.uniform_(-bound, bound);
  bias.uniform_(-bound, bound);
}

torch::Tensor UpConv2dImpl::forward(const torch::Tensor& x) {
  // Output row 2i + py receives input rows i - 1 + py and i + py through kernel rows 3 - py and
  // 1 - py: after flipping the kernel, rows py and py + 2, over the input padded by 1 - py above
  // and py below. Likewise for columns.
  const torch::Tensor flipped = weight.flip({2, 3}).transpose(0, 1);  // [out, in, 4, 4]
  std::vector<torch::Tensor> phases;
  phases.reserve(4);
  for (int64_t py = 0; py < 2; ++py) {
    for (int64_t px = 0; px < 2; ++px) {
      torch::Tensor kernel = flipped.slice(2, py, 4, 2).slice(3, px, 4, 2).contiguous();
      torch::Tensor padded = torch::constant_pad_nd(x, {1 - px, px, 1 - py, py});
      phases.push_back(torch::conv2d(padded, kernel, bias));
    }
  }
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3), out = weight.size(1);
  // [N, out, py, px, H, W] -> [N, out, H, py, W, px] = [N, out, 2H, 2W].
  return torch::stack(phases, 2)
      .view({n, out, 2, 2, h, w})
      .permute({0, 1, 4, 2, 5, 3})
      .reshape({n, out, 2 * h, 2 * w});
}

DCGAN32GeneratorImpl::DCGAN32GeneratorImpl(const DCGAN32Options& options) : options_(options) {
  const int64_t f = options.filters;
  fc_ = register_module("fc", nn::Linear(options.latent, 4 * 4 * 4 * f));
  bn0_ = register_module("bn0", nn::BatchNorm1d(4 * 4 * 4 * f));
  deconv1_ = register_module("deconv1", UpConv2d(4 * f, 2 * f));
  bn1_ = register_module("bn1", nn::BatchNorm2d(2 * f));
  deconv2_ = register_module("deconv2", UpConv2d(2 * f, f));
  bn2_ = register_module("bn2", nn::BatchNorm2d(f));
  deconv3_ = register_module("deconv3", UpConv2d(f, options.channels));
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
