// A small Fashion-MNIST classifier that saddle trains itself, whose penultimate layer is the
// feature space of the GAN image scores (FID and Inception score, saddle/metrics/frechet.h):
// no Inception weights can be downloaded, and an Inception network trained on ImageNet would be a
// poor judge of 32x32 grayscale clothes anyway. Like the scores, it sits after the flow: it judges
// a GAN game's samples and never takes part in a run.
//
// Training is deterministic given the seed (explicit generators for the initialization and the
// shuffling, never LibTorch's global one) and the thread count. A trained classifier is cached in
// one file, written atomically, with a header that load_classifier checks before it trusts the
// weights: a wrong or corrupt file is a saddle::Error naming the file.
#pragma once

#include <torch/arg.h>
#include <torch/nn.h>
#include <torch/types.h>

#include <cstdint>
#include <string>

#include "saddle/data/datasets.h"
#include "saddle/log.h"
#include "saddle/metrics/frechet.h"

namespace saddle {

// [N, 1, 32, 32] in [-1, 1] -> conv 1->32 (3x3, ReLU) -> max-pool 2 -> conv 32->64 -> pool ->
// conv 64->128 -> pool -> [128, 4, 4] -> linear 2048->256, ReLU (the features) -> linear 256->10.
// Every conv: kernel 3, padding 1. No batch norm or dropout: features() is the same function in
// training and evaluation mode, and scoring depends only on the weights.
class ClassifierImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kChannels = 1;
  static constexpr int64_t kImageSize = 32;
  static constexpr int64_t kFeatures = 256;
  static constexpr int64_t kClasses = 10;

  ClassifierImpl();

  // Logits [N, 10].
  torch::Tensor forward(const torch::Tensor& images);
  // Penultimate activations [N, 256] (after the ReLU).
  torch::Tensor features(const torch::Tensor& images);
  // Logits from features: forward(x) == head(features(x)).
  torch::Tensor head(const torch::Tensor& features);
  // softmax(forward(x)) [N, 10].
  torch::Tensor probabilities(const torch::Tensor& images);

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(Classifier);

// PyTorch's default initialization (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases)
// drawn from a generator seeded with `seed`.
Classifier make_classifier(uint64_t seed);

struct ClassifierOptions {
  // 3 epochs reach 90.7% test accuracy in about a minute on two cores (62 s measured).
  TORCH_ARG(int64_t, epochs) = 3;
  TORCH_ARG(uint64_t, seed) = 0;
  // Fashion-MNIST folder; empty: kFashionMnistDir.
  TORCH_ARG(std::string, data_dir) = "";
  // Intra-op threads while training (restored afterwards); 0 leaves LibTorch's setting alone.
  TORCH_ARG(int, threads) = 0;
  TORCH_ARG(int64_t, batch_size) = 64;
  // Adam's learning rate; it is halved at the start of each epoch after the first.
  TORCH_ARG(double, lr) = 2e-3;
  // Random horizontal flips of the training images (drawn from the seeded generator).
  TORCH_ARG(bool, flip) = false;
  // First N training / test images only (-1: all); for tests and quick checks.
  TORCH_ARG(int64_t, train_limit) = -1;
  TORCH_ARG(int64_t, test_limit) = -1;
  // Where to train (the weights are saved from the CPU either way).
  TORCH_ARG(torch::Device, device) = torch::kCPU;
};

// What a trained classifier was trained with and how well it does; stored in the file's header.
struct ClassifierInfo {
  uint64_t seed = 0;
  int64_t epochs = 0;
  int64_t train_images = 0;
  int64_t test_images = 0;
  double test_accuracy = 0;  // fraction of the test images classified correctly
  double train_seconds = 0;
};

struct TrainedClassifier {
  Classifier model{nullptr};
  ClassifierInfo info;
};

// Trains on the Fashion-MNIST training set with Adam and reports accuracy on the test set.
// Throws saddle::Error on invalid options or unreadable data. `logger` (optional) gets one line
// per epoch at info level.
TrainedClassifier train_classifier(const ClassifierOptions& options,
                                   const Logger* logger = nullptr);

// Fraction of `data` classified correctly (evaluation mode, no gradients, in batches).
double classifier_accuracy(Classifier& model, const ImageDataset& data, int64_t batch_size = 500);

// Features [N, 256] and/or probabilities [N, 10] of `images` [N, 1, 32, 32] computed in batches,
// in evaluation mode without gradients, on the model's device, returned as float32 on the CPU.
// Either output may be null.
void classify_images(Classifier& model, const torch::Tensor& images, torch::Tensor* features,
                     torch::Tensor* probabilities, int64_t batch_size = 500);

// Writes the classifier and its info to `path` atomically (temporary file, then rename).
void save_classifier(const TrainedClassifier& classifier, const std::string& path);
// Reads a file written by save_classifier; throws saddle::Error naming `path` if it is missing,
// is not a saddle classifier, has another format version or architecture, or is corrupt.
TrainedClassifier load_classifier(const std::string& path);
// The classifier cached at `path` if that file exists (a corrupt file is an error, never silently
// retrained over), else trains one with `options` and caches it there.
TrainedClassifier load_or_train_classifier(const std::string& path,
                                           const ClassifierOptions& options, const Logger& logger);

// FID and Inception score of generated images against real data, in the classifier's feature
// space. The Inception score uses 1 split.
struct ImageScores {
  double fid = 0;
  double inception_score = 0;
};

// The real data's feature statistics: compute them once and pass them to every score_images call.
FeatureStatistics real_feature_statistics(Classifier& model, const torch::Tensor& real_images,
                                          int64_t batch_size = 500);
ImageScores score_images(const Classifier& model, const torch::Tensor& generated,
                         const FeatureStatistics& real, int64_t batch_size = 500);
// `real_features_or_images`: real features [M, 256] or real images [M, 1, 32, 32].
ImageScores score_images(const Classifier& model, const torch::Tensor& generated,
                         const torch::Tensor& real_features_or_images, int64_t batch_size = 500);

}  // namespace saddle
