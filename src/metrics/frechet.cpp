#include "saddle/metrics/frechet.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <cmath>
#include <tuple>

#include "saddle/error.h"

namespace saddle {

namespace {

void check_features(const torch::Tensor& features, const char* what) {
  SADDLE_CHECK(features.defined(), what, ": undefined tensor");
  SADDLE_CHECK(features.dim() == 2, what, ": expected a 2-D tensor [samples, features], got ",
               features.dim(), "-D ", features.sizes());
  SADDLE_CHECK(features.size(0) >= 2, what, ": need at least 2 samples for a covariance, got ",
               features.size(0));
  SADDLE_CHECK(features.size(1) >= 1, what, ": feature dimension is 0");
  SADDLE_CHECK(features.is_floating_point(), what, ": expected floating-point features, got ",
               features.scalar_type());
}

void check_statistics(const FeatureStatistics& s, const char* what) {
  SADDLE_CHECK(s.mean.defined() && s.covariance.defined(), what, ": statistics are empty");
  SADDLE_CHECK(s.mean.dim() == 1 && s.covariance.dim() == 2 &&
                   s.covariance.size(0) == s.mean.size(0) && s.covariance.size(1) == s.mean.size(0),
               what, ": mean ", s.mean.sizes(), " and covariance ", s.covariance.sizes(),
               " do not match");
}

// Symmetric square root of a (numerically) positive semi-definite matrix.
torch::Tensor psd_sqrt(const torch::Tensor& m) {
  torch::Tensor values, vectors;
  std::tie(values, vectors) = at::linalg_eigh(m, "L");
  return torch::matmul(vectors * values.clamp_min(0).sqrt().unsqueeze(0), vectors.t());
}

}  // namespace

FeatureStatistics feature_statistics(const torch::Tensor& features) {
  check_features(features, "feature_statistics");
  torch::NoGradGuard no_grad;
  const torch::Tensor x = features.detach().to(torch::kFloat64);
  SADDLE_CHECK(torch::isfinite(x).all().item<bool>(),
               "feature_statistics: features contain NaN or infinity");
  FeatureStatistics s;
  s.count = x.size(0);
  s.mean = x.mean(0);
  const torch::Tensor centred = x - s.mean;
  s.covariance = torch::matmul(centred.t(), centred) / static_cast<double>(s.count - 1);
  // Exactly symmetric, so that eigh sees the matrix we mean.
  s.covariance = 0.5 * (s.covariance + s.covariance.t());
  return s;
}

double frechet_distance(const FeatureStatistics& a, const FeatureStatistics& b) {
  check_statistics(a, "frechet_distance (first set)");
  check_statistics(b, "frechet_distance (second set)");
  SADDLE_CHECK(a.dim() == b.dim(), "frechet_distance: feature dimensions differ (", a.dim(), " vs ",
               b.dim(), ")");
  torch::NoGradGuard no_grad;
  const torch::Tensor mu_a = a.mean.to(torch::kFloat64), mu_b = b.mean.to(torch::kFloat64);
  const torch::Tensor c_a = a.covariance.to(torch::kFloat64),
                      c_b = b.covariance.to(torch::kFloat64);
  const torch::Tensor root_a = psd_sqrt(c_a);
  torch::Tensor middle = torch::matmul(torch::matmul(root_a, c_b), root_a);
  middle = 0.5 * (middle + middle.t());
  const torch::Tensor eigenvalues = at::linalg_eigvalsh(middle, "L");
  const double trace_root = eigenvalues.clamp_min(0).sqrt().sum().item<double>();
  const double mean_term = (mu_a - mu_b).pow(2).sum().item<double>();
  const double value =
      mean_term + c_a.trace().item<double>() + c_b.trace().item<double>() - 2.0 * trace_root;
  SADDLE_CHECK(std::isfinite(value), "frechet_distance: result is not finite (", value, ")");
  // Round-off can leave a tiny negative number for identical sets.
  return value < 0 ? 0.0 : value;
}

double frechet_distance(const torch::Tensor& features_a, const torch::Tensor& features_b) {
  check_features(features_a, "frechet_distance (first set)");
  check_features(features_b, "frechet_distance (second set)");
  SADDLE_CHECK(features_a.size(1) == features_b.size(1),
               "frechet_distance: feature dimensions differ (", features_a.size(1), " vs ",
               features_b.size(1), ")");
  return frechet_distance(feature_statistics(features_a), feature_statistics(features_b));
}

double inception_score(const torch::Tensor& class_probabilities, int splits) {
  const torch::Tensor& p = class_probabilities;
  SADDLE_CHECK(p.defined() && p.dim() == 2,
               "inception_score: expected probabilities [samples, "
               "classes], got ",
               p.defined() ? p.dim() : 0, "-D");
  SADDLE_CHECK(p.size(1) >= 2, "inception_score: need at least 2 classes, got ", p.size(1));
  SADDLE_CHECK(splits >= 1, "inception_score: splits must be >= 1, got ", splits);
  SADDLE_CHECK(p.size(0) >= splits && p.size(0) >= 1, "inception_score: ", p.size(0),
               " samples cannot be cut into ", splits, " split(s)");
  torch::NoGradGuard no_grad;
  const torch::Tensor q = p.detach().to(torch::kFloat64);
  SADDLE_CHECK(torch::isfinite(q).all().item<bool>() && (q >= 0).all().item<bool>(),
               "inception_score: probabilities must be finite and non-negative");
  const double max_row_error = (q.sum(1) - 1).abs().max().item<double>();
  SADDLE_CHECK(max_row_error < 1e-3, "inception_score: rows must sum to 1 (off by up to ",
               max_row_error, ")");
  // 0 * log 0 = 0: xlogy-style, with the log of a clamped value where p is 0.
  constexpr double kTiny = 1e-300;
  double total = 0;
  const int64_t n = q.size(0);
  for (int s = 0; s < splits; ++s) {
    const int64_t begin = n * s / splits, end = n * (s + 1) / splits;
    const torch::Tensor part = q.slice(0, begin, end);
    const torch::Tensor marginal = part.mean(0, /*keepdim=*/true);
    const torch::Tensor kl =
        (part * (part.clamp_min(kTiny).log() - marginal.clamp_min(kTiny).log())).sum(1);
    total += std::exp(kl.mean().item<double>());
  }
  return total / splits;
}

}  // namespace saddle
