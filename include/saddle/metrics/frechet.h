// Image-quality scores in a feature space: the Fréchet distance between two sets of feature
// vectors (FID when the features come from a classifier's penultimate layer) and the Inception
// score of a set of class probabilities. These sit after the flow (game -> exchange -> solver):
// they judge a GAN game's samples, and the features come from saddle/metrics/classifier.h.
//
// All statistics are computed in float64 whatever the input dtype; bad shapes throw saddle::Error.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace saddle {

// Mean [D] and covariance [D, D] (unbiased, divided by count - 1) of feature rows, in float64.
// Computing these once for the real data and reusing them is what makes repeated FIDs cheap.
struct FeatureStatistics {
  torch::Tensor mean;
  torch::Tensor covariance;
  int64_t count = 0;

  int64_t dim() const { return mean.defined() ? mean.size(0) : 0; }
};

// Statistics of `features` [N, D] (rows are samples); N >= 2.
FeatureStatistics feature_statistics(const torch::Tensor& features);

// ||mu_a - mu_b||^2 + tr(C_a) + tr(C_b) - 2 tr((C_a^{1/2} C_b C_a^{1/2})^{1/2}).
// The trace term goes through symmetric matrices only: C_a^{1/2} from an eigendecomposition
// (negative eigenvalues from round-off clamped to 0), then the eigenvalues of the symmetric
// C_a^{1/2} C_b C_a^{1/2}, clamped to 0, square-rooted and summed. This equals
// tr((C_a C_b)^{1/2}) but never takes the square root of a non-symmetric matrix.
double frechet_distance(const FeatureStatistics& a, const FeatureStatistics& b);
// Same, from feature rows [N_a, D] and [N_b, D].
double frechet_distance(const torch::Tensor& features_a, const torch::Tensor& features_b);

// exp(E_x KL(p(y|x) || p(y))) of `class_probabilities` [N, K] (rows sum to 1), computed on
// `splits` contiguous chunks and averaged over them, as in Salimans et al. (2016). Ranges from 1
// (every row the same) to K (confident and uniformly spread over the classes).
double inception_score(const torch::Tensor& class_probabilities, int splits = 1);

}  // namespace saddle
