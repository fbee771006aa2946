// Fréchet distance and Inception score: the values a user compares GAN runs by, checked against
// closed forms, plus clear errors on bad shapes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <string>

#include "saddle/error.h"
#include "saddle/metrics/frechet.h"

namespace {

using saddle::feature_statistics;
using saddle::frechet_distance;
using saddle::inception_score;

at::Generator make_gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// Expects `fn` to throw saddle::Error whose message contains `needle`.
template <typename Fn>
void expect_error(Fn fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no saddle::Error thrown (expected '" << needle << "')";
  } catch (const saddle::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Frechet, SetAgainstItselfIsZero) {
  auto gen = make_gen(1);
  // Correlated features, so the covariance is far from diagonal.
  const torch::Tensor mix = torch::randn({16, 16}, gen, torch::kFloat64);
  const torch::Tensor x = torch::randn({500, 16}, gen, torch::kFloat64).matmul(mix) + 3.0;
  EXPECT_NEAR(frechet_distance(x, x), 0.0, 1e-8);
  EXPECT_NEAR(frechet_distance(x.to(torch::kFloat32), x.to(torch::kFloat32)), 0.0, 1e-4);
}

TEST(Frechet, ShiftAddsSquaredDistanceOfMeans) {
  auto gen = make_gen(2);
  const torch::Tensor x = torch::randn({400, 8}, gen, torch::kFloat64);
  const torch::Tensor shift = torch::full({8}, 2.0, torch::kFloat64);
  EXPECT_NEAR(frechet_distance(x, x + shift), 4.0 * 8, 1e-8);
}

TEST(Frechet, MatchesClosedFormForDiagonalGaussians) {
  // For N(m_a, diag(s_a^2)) and N(m_b, diag(s_b^2)): |m_a - m_b|^2 + sum (s_a - s_b)^2.
  const torch::Tensor m_a = torch::tensor({0.0, 1.0, -2.0, 0.5}, torch::kFloat64);
  const torch::Tensor m_b = torch::tensor({1.0, 1.0, 0.0, -0.5}, torch::kFloat64);
  const torch::Tensor s_a = torch::tensor({1.0, 2.0, 0.5, 1.0}, torch::kFloat64);
  const torch::Tensor s_b = torch::tensor({3.0, 1.0, 0.5, 0.1}, torch::kFloat64);
  const double exact = ((m_a - m_b).pow(2).sum() + (s_a - s_b).pow(2).sum()).item<double>();

  // Exact statistics.
  saddle::FeatureStatistics a{m_a, torch::diag(s_a.pow(2)), 2};
  saddle::FeatureStatistics b{m_b, torch::diag(s_b.pow(2)), 2};
  EXPECT_NEAR(frechet_distance(a, b), exact, 1e-10);

  // Samples: the estimate is close to the closed form (whitened so that the sample moments are
  // exact up to the 1/(N-1) normalization).
  auto gen = make_gen(3);
  torch::Tensor z = torch::randn({20000, 4}, gen, torch::kFloat64);
  z = (z - z.mean(0)) / z.std(0, /*unbiased=*/true);
  const double sampled = frechet_distance(m_a + z * s_a, m_b + z.flip({0}) * s_b);
  EXPECT_NEAR(sampled, exact, 0.05 * exact);
}

TEST(Frechet, NoiseIsFarFromData) {
  auto gen = make_gen(4);
  const torch::Tensor data = torch::randn({300, 10}, gen, torch::kFloat64) * 0.1 + 1.0;
  const torch::Tensor noise = torch::randn({300, 10}, gen, torch::kFloat64) * 3.0;
  const double near = frechet_distance(data, data.flip({0}) + 1e-3);
  const double far = frechet_distance(data, noise);
  EXPECT_LT(near, 1e-4);
  EXPECT_GT(far, 10.0);
  EXPECT_NEAR(frechet_distance(noise, data), far, 1e-8 * far);  // symmetric
}

TEST(Frechet, RankDeficientCovariancesStayFinite) {
  // More dimensions than samples: singular covariances, as with few generated images.
  auto gen = make_gen(5);
  const torch::Tensor a = torch::randn({5, 32}, gen);
  const torch::Tensor b = torch::randn({5, 32}, gen) + 0.5;
  const double d = frechet_distance(a, b);
  EXPECT_TRUE(std::isfinite(d));
  EXPECT_GT(d, 0.0);
}

TEST(Frechet, BadShapesAreClearErrors) {
  const torch::Tensor ok = torch::randn({10, 4});
  expect_error([&] { frechet_distance(torch::randn({1, 4}), ok); }, "at least 2 samples");
  expect_error([&] { frechet_distance(ok, torch::randn({10, 5})); }, "dimensions differ (4 vs 5)");
  expect_error([&] { frechet_distance(torch::randn({10}), ok); }, "2-D");
  expect_error(
      [&] {
        frechet_distance(ok, torch::ones({10, 4}, torch::kInt64));
      },
      "floating-point");
  expect_error([&] { feature_statistics(torch::full({3, 2}, NAN)); }, "NaN");
}

TEST(InceptionScore, IdenticalPredictionsScoreOne) {
  const torch::Tensor p = torch::softmax(torch::randn({1, 10}), 1).expand({50, 10}).contiguous();
  EXPECT_NEAR(inception_score(p), 1.0, 1e-9);
  EXPECT_NEAR(inception_score(torch::full({20, 10}, 0.1)), 1.0, 1e-9);
}

TEST(InceptionScore, UniformOneHotScoresNumberOfClasses) {
  const torch::Tensor labels = torch::arange(100) % 10;
  const torch::Tensor p = torch::one_hot(labels, 10).to(torch::kFloat32);
  EXPECT_NEAR(inception_score(p), 10.0, 1e-9);
  EXPECT_NEAR(inception_score(p, 5), 10.0, 1e-9);  // each split of 20 is uniform too
  // Confident but collapsed onto 2 of 10 classes (mode collapse) scores 2.
  EXPECT_NEAR(inception_score(torch::one_hot(torch::arange(40) % 2, 10).to(torch::kFloat64)), 2.0,
              1e-9);
}

TEST(InceptionScore, BadInputsAreClearErrors) {
  expect_error([] { inception_score(torch::ones({10})); }, "[samples, classes]");
  expect_error([] { inception_score(torch::full({4, 2}, 0.7)); }, "sum to 1");
  expect_error([] { inception_score(torch::full({4, 2}, 0.5), 5); }, "cannot be cut");
  expect_error([] { inception_score(torch::full({4, 2}, 0.5), 0); }, "splits");
}

}  // namespace
