// The Fashion-MNIST classifier behind FID / Inception score: reproducible training, a cache file
// that round-trips and refuses to load when wrong or corrupt, scores that rank real data above
// noise, and the `saddle classifier` command. Trains on tiny subsets only, so the suite stays
// quick.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "cli_support.h"
#include "fmnist_support.h"
#include "paths.h"
#include "saddle/data/datasets.h"
#include "saddle/error.h"
#include "saddle/log.h"
#include "saddle/metrics/classifier.h"

namespace {

using saddle::ClassifierOptions;
using saddle::TrainedClassifier;

using saddle::testing::have_fashion_mnist;

using saddle::testing::slurp_file;
using saddle::testing::write_bytes;

ClassifierOptions tiny_options(uint64_t seed) {
  return ClassifierOptions().epochs(1).seed(seed).batch_size(32).train_limit(96).test_limit(64);
}

// Expects `fn` to throw saddle::Error whose message contains every needle.
template <typename Fn>
void expect_error(Fn fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no saddle::Error thrown";
  } catch (const saddle::Error& e) {
    for (const auto& needle : needles) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

class ClassifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = saddle::testing::temp_root() /
           (std::string("saddle_classifier_") + info->name() + "_" + std::to_string(::getpid()));
    saddle::remove_tree(dir_);
    saddle::create_directories(dir_);
  }
  void TearDown() override { saddle::remove_tree(dir_); }
  saddle::testing::Path dir_;
};

TEST_F(ClassifierTest, ShapesOfFeaturesAndProbabilities) {
  saddle::Classifier model = saddle::make_classifier(0);
  const torch::Tensor x = torch::rand({5, 1, 32, 32}) * 2 - 1;
  EXPECT_EQ(model->features(x).sizes(), (std::vector<int64_t>{5, 256}));
  const torch::Tensor p = model->probabilities(x);
  EXPECT_EQ(p.sizes(), (std::vector<int64_t>{5, 10}));
  EXPECT_TRUE(torch::allclose(p.sum(1), torch::ones({5})));
  EXPECT_TRUE(torch::allclose(model->forward(x), model->head(model->features(x))));
  // Batched evaluation matches one big batch.
  torch::Tensor features, probabilities;
  saddle::classify_images(model, x, &features, &probabilities, /*batch_size=*/2);
  EXPECT_TRUE(torch::allclose(features, model->features(x), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(probabilities, p, 1e-5, 1e-6));
  expect_error(
      [&] {
        saddle::classify_images(model, torch::zeros({2, 3, 32, 32}), &features, nullptr);
      },
      {"[N, 1, 32, 32]"});
}

TEST_F(ClassifierTest, InitializationDependsOnlyOnSeed) {
  auto a = saddle::make_classifier(7), b = saddle::make_classifier(7),
       c = saddle::make_classifier(8);
  const auto pa = a->parameters(), pb = b->parameters(), pc = c->parameters();
  bool any_differs = false;
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i]));
    any_differs = any_differs || !torch::equal(pa[i], pc[i]);
  }
  EXPECT_TRUE(any_differs);
}

TEST_F(ClassifierTest, TrainingIsDeterministicGivenSeed) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  TrainedClassifier a = saddle::train_classifier(tiny_options(3).threads(1));
  TrainedClassifier b = saddle::train_classifier(tiny_options(3).threads(1));
  const TrainedClassifier c = saddle::train_classifier(tiny_options(4).threads(1));
  const auto pa = a.model->parameters(), pb = b.model->parameters(), pc = c.model->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  bool any_differs = false;
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
    any_differs = any_differs || !torch::equal(pa[i], pc[i]);
  }
  EXPECT_TRUE(any_differs) << "another seed trained the same weights";
  const auto test = saddle::load_fashion_mnist("", /*train=*/false, 16);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(a.model->forward(test.images), b.model->forward(test.images)));
  EXPECT_EQ(a.info.test_accuracy, b.info.test_accuracy);
  EXPECT_EQ(a.info.train_images, 96);
  EXPECT_EQ(a.info.test_images, 64);
  // Training moved the weights away from the initialization.
  const auto init = saddle::make_classifier(3)->parameters();
  EXPECT_FALSE(torch::equal(init[0], pa[0]));
}

TEST_F(ClassifierTest, SaveLoadRoundTrip) {
  TrainedClassifier trained;
  trained.model = saddle::make_classifier(11);
  trained.info.seed = 11;
  trained.info.epochs = 3;
  trained.info.train_images = 60000;
  trained.info.test_images = 10000;
  trained.info.test_accuracy = 0.9123456789012345;
  trained.info.train_seconds = 42.5;
  const std::string path = (dir_ / "sub" / "c.pt").string();
  saddle::save_classifier(trained, path);
  // Written atomically: nothing but the file itself is left beside it.
  EXPECT_EQ(saddle::list_directory((dir_ / "sub").string()), std::vector<std::string>{"c.pt"});
  TrainedClassifier loaded = saddle::load_classifier(path);
  EXPECT_EQ(loaded.info.seed, 11u);
  EXPECT_EQ(loaded.info.epochs, 3);
  EXPECT_EQ(loaded.info.train_images, 60000);
  EXPECT_EQ(loaded.info.test_images, 10000);
  EXPECT_EQ(loaded.info.test_accuracy, trained.info.test_accuracy);
  EXPECT_EQ(loaded.info.train_seconds, 42.5);
  const auto p = trained.model->parameters(), q = loaded.model->parameters();
  ASSERT_EQ(p.size(), q.size());
  for (size_t i = 0; i < p.size(); ++i) EXPECT_TRUE(torch::equal(p[i], q[i]));
  const torch::Tensor x = torch::rand({3, 1, 32, 32}) * 2 - 1;
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(trained.model->forward(x), loaded.model->forward(x)));
}

TEST_F(ClassifierTest, WrongOrCorruptFilesAreRejectedNamingTheFile) {
  TrainedClassifier trained;
  trained.model = saddle::make_classifier(1);
  const saddle::testing::Path good = dir_ / "good.pt";
  saddle::save_classifier(trained, good.string());
  const std::string bytes = slurp_file(good);

  const saddle::testing::Path missing = dir_ / "missing.pt";
  expect_error([&] { saddle::load_classifier(missing.string()); },
               {missing.string(), "cannot open"});

  const saddle::testing::Path garbage = dir_ / "garbage.pt";
  write_bytes(garbage, "not a classifier at all");
  expect_error([&] { saddle::load_classifier(garbage.string()); },
               {garbage.string(), "not a saddle classifier"});

  const saddle::testing::Path truncated = dir_ / "truncated.pt";
  write_bytes(truncated, bytes.substr(0, bytes.size() - 100));
  expect_error([&] { saddle::load_classifier(truncated.string()); },
               {truncated.string(), "truncated"});

  const saddle::testing::Path flipped = dir_ / "flipped.pt";
  std::string changed = bytes;
  changed[changed.size() - 5000] ^= 0x40;
  write_bytes(flipped, changed);
  expect_error([&] { saddle::load_classifier(flipped.string()); }, {flipped.string(), "checksum"});

  const saddle::testing::Path other_arch = dir_ / "other_arch.pt";
  std::string arch = bytes;
  const size_t at = arch.find("architecture ");
  ASSERT_NE(at, std::string::npos);
  arch.replace(at, 13, "architecture X");
  write_bytes(other_arch, arch);
  expect_error([&] { saddle::load_classifier(other_arch.string()); },
               {other_arch.string(), "architecture"});

  // A corrupt cache is an error, never silently trained over.
  saddle::Logger quiet(saddle::LogLevel::kError);
  expect_error([&] { saddle::load_or_train_classifier(garbage.string(), tiny_options(0), quiet); },
               {garbage.string()});
  // A good cache is loaded without training (the data folder would not even be read).
  const auto cached = saddle::load_or_train_classifier(
      good.string(), tiny_options(0).data_dir((dir_ / "no-data-here").string()), quiet);
  EXPECT_TRUE(torch::equal(cached.model->parameters()[0], trained.model->parameters()[0]));
}

TEST_F(ClassifierTest, LoadOrTrainCachesTheClassifier) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  saddle::Logger quiet(saddle::LogLevel::kError);
  const std::string path = (dir_ / "cache.pt").string();
  const auto trained = saddle::load_or_train_classifier(path, tiny_options(5), quiet);
  ASSERT_TRUE(saddle::path_exists(path));
  const auto loaded = saddle::load_or_train_classifier(path, tiny_options(6), quiet);
  EXPECT_EQ(loaded.info.seed, 5u);
  EXPECT_TRUE(torch::equal(loaded.model->parameters()[0], trained.model->parameters()[0]));
}

TEST_F(ClassifierTest, ScoresRankRealImagesAboveNoise) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  TrainedClassifier trained = saddle::train_classifier(tiny_options(2));
  const auto real = saddle::load_fashion_mnist("", /*train=*/false, 200);
  const torch::Tensor a = real.images.slice(0, 0, 100), b = real.images.slice(0, 100, 200);
  const torch::Tensor noise = torch::rand({100, 1, 32, 32}) * 2 - 1;
  const auto stats = saddle::real_feature_statistics(trained.model, a);
  const auto same = saddle::score_images(trained.model, a, stats);
  const auto other_real = saddle::score_images(trained.model, b, stats);
  const auto noisy = saddle::score_images(trained.model, noise, stats);
  EXPECT_NEAR(same.fid, 0.0, 1e-3 * (1 + other_real.fid));
  EXPECT_LT(other_real.fid, noisy.fid);
  EXPECT_GE(same.inception_score, 1.0);
  // Images or features as the real set give the same score as precomputed statistics.
  torch::Tensor features;
  saddle::classify_images(trained.model, a, &features, nullptr);
  const auto from_images = saddle::score_images(trained.model, noise, a);
  const auto from_features = saddle::score_images(trained.model, noise, features);
  EXPECT_NEAR(from_images.fid, noisy.fid, 1e-9 * noisy.fid);
  EXPECT_NEAR(from_features.fid, noisy.fid, 1e-9 * noisy.fid);
  EXPECT_NEAR(from_images.inception_score, noisy.inception_score, 1e-9);
  expect_error([&] { saddle::score_images(trained.model, noise, torch::zeros({10, 5})); }, {"256"});
}

TEST_F(ClassifierTest, BadOptionsAreClearErrors) {
  expect_error([] { saddle::train_classifier(tiny_options(0).epochs(0)); }, {"epochs 0"});
  expect_error([] { saddle::train_classifier(tiny_options(0).lr(-1)); }, {"learning rate -1"});
  expect_error([] { saddle::train_classifier(tiny_options(0).batch_size(0)); }, {"batch size 0"});
  expect_error(
      [&] { saddle::train_classifier(tiny_options(0).data_dir((dir_ / "none").string())); },
      {(dir_ / "none").string()});
}

// ---- `saddle classifier` ----

using saddle::testing::CliResult;
using saddle::testing::expect_one_line_error;

class ClassifierCli : public ClassifierTest {
 protected:
  CliResult run(const std::string& args) {
    return saddle::testing::run_program(SADDLE_CLI_PATH, "classifier " + args, dir_);
  }

  std::string tiny_dataset(int64_t n_train, int64_t n_test) {
    return saddle::testing::write_tiny_fashion_mnist(dir_ / "data", n_train, n_test);
  }
};

TEST_F(ClassifierCli, BadArgumentsAreOneLineErrors) {
  expect_one_line_error(run(""), "--out");
  expect_one_line_error(run("--out x.pt --epochs 0"), "invalid --epochs 0");
  expect_one_line_error(run("--out x.pt --threads -2"), "invalid --threads -2");
  expect_one_line_error(run("--out x.pt --epochs two"), "--epochs");
  expect_one_line_error(run("--out x.pt --lr 0"), "invalid --lr 0");
  expect_one_line_error(run("--out x.pt --lr nan"), "invalid --lr nan");
  expect_one_line_error(run("--out x.pt --batch-size 0"), "invalid --batch-size 0");
  const std::string missing = (dir_ / "nowhere").string();
  auto r = run("--out " + (dir_ / "c.pt").string() + " --epochs 1 --data-dir " + missing);
  expect_one_line_error(r, missing);
  EXPECT_FALSE(saddle::path_exists(dir_ / "c.pt"));
}

TEST_F(ClassifierCli, TrainsPrintsAccuracyAndWritesALoadableFile) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  const std::string data = tiny_dataset(128, 64);
  const std::string out = (dir_ / "c.pt").string();
  auto r =
      run("--out " + out + " --epochs 1 --seed 4 --threads 1 --log-level warn --data-dir " + data);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("test accuracy"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(out), std::string::npos) << r.out;
  const auto loaded = saddle::load_classifier(out);
  EXPECT_EQ(loaded.info.seed, 4u);
  EXPECT_EQ(loaded.info.train_images, 128);
  EXPECT_EQ(loaded.info.test_images, 64);
}

}  // namespace
