#include "saddle/metrics/classifier.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "../detail/hash.h"
#include "saddle/error.h"
#include "saddle/run/files.h"

namespace saddle {

namespace nn = torch::nn;

namespace {

constexpr const char* kMagic = "saddle-classifier";
constexpr int kFormatVersion = 1;
// Names the layer shapes; a file for another architecture is refused before torch::load.
constexpr const char* kArchitecture = "fmnist-cnn-c16-c32-c64-f256-10";
constexpr size_t kMaxHeaderBytes = 4096;

nn::Conv2dOptions conv(int64_t in, int64_t out) { return nn::Conv2dOptions(in, out, 3).padding(1); }

void check_images(const torch::Tensor& images, const char* what) {
  SADDLE_CHECK(images.defined(), what, ": undefined image tensor");
  SADDLE_CHECK(images.dim() == 4 && images.size(1) == ClassifierImpl::kChannels &&
                   images.size(2) == ClassifierImpl::kImageSize &&
                   images.size(3) == ClassifierImpl::kImageSize,
               what, ": expected images [N, 1, 32, 32], got ", images.sizes());
  SADDLE_CHECK(images.is_floating_point(), what, ": expected floating-point images, got ",
               images.scalar_type());
}

// Sets LibTorch's intra-op thread count for a scope and puts the old one back.
class ThreadsGuard {
 public:
  explicit ThreadsGuard(int threads) : previous_(at::get_num_threads()) {
    if (threads > 0) at::set_num_threads(threads);
  }
  ~ThreadsGuard() {
    if (at::get_num_threads() != previous_) at::set_num_threads(previous_);
  }
  ThreadsGuard(const ThreadsGuard&) = delete;
  ThreadsGuard& operator=(const ThreadsGuard&) = delete;

 private:
  int previous_;
};

// Keeps a module in evaluation mode for a scope.
class EvalGuard {
 public:
  explicit EvalGuard(nn::Module& module) : module_(module), was_training_(module.is_training()) {
    module_.eval();
  }
  ~EvalGuard() { module_.train(was_training_); }
  EvalGuard(const EvalGuard&) = delete;
  EvalGuard& operator=(const EvalGuard&) = delete;

 private:
  nn::Module& module_;
  bool was_training_;
};

uint64_t fnv1a64(const std::string& bytes, size_t begin) {
  return begin >= bytes.size() ? detail::kFnv64Offset
                               : detail::fnv1a64(bytes.data() + begin, bytes.size() - begin);
}

std::string hex64(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016" PRIx64, value);
  return text;
}

void check_options(const ClassifierOptions& o) {
  SADDLE_CHECK(o.epochs() >= 1, "invalid classifier epochs ", o.epochs(), " (must be >= 1)");
  SADDLE_CHECK(o.batch_size() >= 1, "invalid classifier batch size ", o.batch_size(),
               " (must be >= 1)");
  SADDLE_CHECK(std::isfinite(o.lr()) && o.lr() > 0, "invalid classifier learning rate ", o.lr(),
               " (must be > 0)");
  SADDLE_CHECK(o.threads() >= 0, "invalid classifier threads ", o.threads(), " (must be >= 0)");
  SADDLE_CHECK(o.train_limit() == -1 || o.train_limit() >= 1, "invalid classifier train_limit ",
               o.train_limit(), " (-1 or >= 1)");
  SADDLE_CHECK(o.test_limit() == -1 || o.test_limit() >= 1, "invalid classifier test_limit ",
               o.test_limit(), " (-1 or >= 1)");
}

}  // namespace

ClassifierImpl::ClassifierImpl() {
  conv1_ = register_module("conv1", nn::Conv2d(conv(kChannels, 16)));
  conv2_ = register_module("conv2", nn::Conv2d(conv(16, 32)));
  conv3_ = register_module("conv3", nn::Conv2d(conv(32, 64)));
  fc1_ = register_module("fc1", nn::Linear(64 * 4 * 4, kFeatures));
  fc2_ = register_module("fc2", nn::Linear(kFeatures, kClasses));
}

torch::Tensor ClassifierImpl::features(const torch::Tensor& images) {
  torch::Tensor x = torch::max_pool2d(torch::relu(conv1_->forward(images)), 2);
  x = torch::max_pool2d(torch::relu(conv2_->forward(x)), 2);
  x = torch::max_pool2d(torch::relu(conv3_->forward(x)), 2);
  return torch::relu(fc1_->forward(x.flatten(1)));
}

torch::Tensor ClassifierImpl::head(const torch::Tensor& features) {
  return fc2_->forward(features);
}

torch::Tensor ClassifierImpl::forward(const torch::Tensor& images) {
  return head(features(images));
}

torch::Tensor ClassifierImpl::probabilities(const torch::Tensor& images) {
  return torch::softmax(forward(images), 1);
}

Classifier make_classifier(uint64_t seed) {
  Classifier model;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::NoGradGuard no_grad;
  for (const auto& m : model->modules(/*include_self=*/true)) {
    auto params = m->named_parameters(/*recurse=*/false);
    torch::Tensor* weight = params.find("weight");
    torch::Tensor* bias = params.find("bias");
    if (weight == nullptr) continue;
    const double bound = 1.0 / std::sqrt(static_cast<double>(weight->numel() / weight->size(0)));
    weight->uniform_(-bound, bound, gen);
    if (bias != nullptr) bias->uniform_(-bound, bound, gen);
  }
  return model;
}

double classifier_accuracy(Classifier& model, const ImageDataset& data, int64_t batch_size) {
  SADDLE_CHECK(data.size() > 0, "classifier_accuracy: empty dataset");
  SADDLE_CHECK(data.labels.defined() && data.labels.size(0) == data.size(),
               "classifier_accuracy: ", data.size(), " images but ",
               data.labels.defined() ? data.labels.size(0) : 0, " labels");
  torch::Tensor probabilities;
  classify_images(model, data.images, nullptr, &probabilities, batch_size);
  const int64_t correct = (probabilities.argmax(1) == data.labels).sum().item<int64_t>();
  return static_cast<double>(correct) / static_cast<double>(data.size());
}

void classify_images(Classifier& model, const torch::Tensor& images, torch::Tensor* features,
                     torch::Tensor* probabilities, int64_t batch_size) {
  SADDLE_CHECK(!model.is_empty(), "classify_images: the classifier is empty");
  check_images(images, "classify_images");
  SADDLE_CHECK(batch_size >= 1, "classify_images: batch size must be >= 1, got ", batch_size);
  torch::NoGradGuard no_grad;
  EvalGuard eval(*model);
  const torch::Device device = model->parameters().front().device();
  const torch::Tensor x = images.detach();
  std::vector<torch::Tensor> feature_parts, probability_parts;
  for (int64_t begin = 0; begin < x.size(0); begin += batch_size) {
    const torch::Tensor batch = x.slice(0, begin, begin + batch_size).to(device, torch::kFloat32);
    const torch::Tensor f = model->features(batch);
    if (features != nullptr) feature_parts.push_back(f.to(torch::kCPU));
    if (probabilities != nullptr) {
      probability_parts.push_back(torch::softmax(model->head(f), 1).to(torch::kCPU));
    }
  }
  if (features != nullptr) {
    *features = feature_parts.empty() ? torch::zeros({0, ClassifierImpl::kFeatures})
                                      : torch::cat(feature_parts);
  }
  if (probabilities != nullptr) {
    *probabilities = probability_parts.empty() ? torch::zeros({0, ClassifierImpl::kClasses})
                                               : torch::cat(probability_parts);
  }
}

TrainedClassifier train_classifier(const ClassifierOptions& options, const Logger* logger) {
  check_options(options);
  ThreadsGuard threads(options.threads());
  const auto start = std::chrono::steady_clock::now();
  const ImageDataset train =
      load_fashion_mnist(options.data_dir(), /*train=*/true, options.train_limit());
  const ImageDataset test =
      load_fashion_mnist(options.data_dir(), /*train=*/false, options.test_limit());

  TrainedClassifier result;
  result.model = make_classifier(options.seed());
  Classifier& model = result.model;
  model->to(options.device());
  model->train();
  // Shuffling and flips draw from their own stream, so they do not shift with the initialization.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed() ^ 0x5DEECE66DULL);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(options.lr()));
  const int64_t n = train.size();
  for (int64_t epoch = 0; epoch < options.epochs(); ++epoch) {
    const double lr = options.lr() * std::pow(0.5, static_cast<double>(epoch));
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    }
    const torch::Tensor order = torch::randperm(n, gen, torch::kInt64);
    double loss_sum = 0;
    int64_t correct = 0;
    for (int64_t begin = 0; begin < n; begin += options.batch_size()) {
      const torch::Tensor idx = order.slice(0, begin, begin + options.batch_size());
      torch::Tensor x = train.images.index_select(0, idx);
      torch::Tensor y = train.labels.index_select(0, idx);
      if (options.flip()) {
        const torch::Tensor flip = (torch::rand({x.size(0)}, gen) < 0.5).view({-1, 1, 1, 1});
        x = torch::where(flip, x.flip({3}), x);
      }
      x = x.to(options.device());
      y = y.to(options.device());
      optimizer.zero_grad();
      const torch::Tensor logits = model->forward(x);
      const torch::Tensor loss = torch::cross_entropy_loss(logits, y);
      loss.backward();
      optimizer.step();
      loss_sum += loss.item<double>() * static_cast<double>(idx.size(0));
      correct += (logits.argmax(1) == y).sum().item<int64_t>();
    }
    if (logger != nullptr) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      logger->info(
          "classifier epoch {}/{}: lr {:.2g}, train loss {:.4f}, train accuracy {:.4f} "
          "({:.0f} s)",
          epoch + 1, options.epochs(), lr, loss_sum / static_cast<double>(n),
          static_cast<double>(correct) / static_cast<double>(n), seconds);
    }
  }
  model->eval();
  result.info.test_accuracy = classifier_accuracy(model, test);
  model->to(torch::kCPU);  // saved and returned from the CPU; callers move it where they score
  result.info.seed = options.seed();
  result.info.epochs = options.epochs();
  result.info.train_images = train.size();
  result.info.test_images = test.size();
  result.info.train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

void save_classifier(const TrainedClassifier& classifier, const std::string& path) {
  SADDLE_CHECK(!classifier.model.is_empty(), "save_classifier: the classifier is empty");
  SADDLE_CHECK(!path.empty(), "save_classifier: empty path");
  std::ostringstream payload_stream;
  torch::save(classifier.model, payload_stream);
  const std::string payload = payload_stream.str();
  const ClassifierInfo& info = classifier.info;
  std::ostringstream header;
  header.precision(17);
  header << kMagic << "\n"
         << "format " << kFormatVersion << "\n"
         << "architecture " << kArchitecture << "\n"
         << "seed " << info.seed << "\n"
         << "epochs " << info.epochs << "\n"
         << "train_images " << info.train_images << "\n"
         << "test_images " << info.test_images << "\n"
         << "test_accuracy " << info.test_accuracy << "\n"
         << "train_seconds " << info.train_seconds << "\n"
         << "payload_bytes " << payload.size() << "\n"
         << "payload_fnv1a64 " << hex64(fnv1a64(payload, 0)) << "\n"
         << "end\n";
  const std::string parent = parent_directory(path);
  if (!parent.empty()) create_directories(parent);
  write_file_atomic(path, header.str() + payload);
}

TrainedClassifier load_classifier(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SADDLE_CHECK(in.good(), "cannot open classifier file ", path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  const std::string bad = "classifier file " + path + " ";
  const std::string magic_line = std::string(kMagic) + "\n";
  SADDLE_CHECK(bytes.compare(0, magic_line.size(), magic_line) == 0, bad,
               "is not a saddle classifier (no '", kMagic, "' header)");
  const size_t end = bytes.find("\nend\n");
  SADDLE_CHECK(end != std::string::npos && end < kMaxHeaderBytes, bad,
               "is corrupt (header not terminated)");
  const size_t payload_begin = end + 5;
  std::map<std::string, std::string> fields;
  std::istringstream header(bytes.substr(magic_line.size(), end + 1 - magic_line.size()));
  std::string line;
  while (std::getline(header, line)) {
    const size_t space = line.find(' ');
    SADDLE_CHECK(space != std::string::npos, bad, "is corrupt (header line '", line, "')");
    fields[line.substr(0, space)] = line.substr(space + 1);
  }
  auto field = [&](const std::string& key) -> const std::string& {
    auto it = fields.find(key);
    SADDLE_CHECK(it != fields.end(), bad, "is corrupt (header lacks '", key, "')");
    return it->second;
  };
  auto number = [&](const std::string& key) -> double {
    const std::string& text = field(key);
    try {
      size_t used = 0;
      const double value = std::stod(text, &used);
      if (used == text.size()) return value;
    } catch (const std::exception&) {
    }
    throw Error(bad + "is corrupt (" + key + " '" + text + "' is not a number)");
  };
  SADDLE_CHECK(field("format") == std::to_string(kFormatVersion), bad, "has format version ",
               field("format"), "; this saddle reads version ", kFormatVersion);
  SADDLE_CHECK(field("architecture") == kArchitecture, bad, "holds architecture ",
               field("architecture"), ", expected ", kArchitecture);
  const double payload_bytes = number("payload_bytes");
  SADDLE_CHECK(payload_bytes == static_cast<double>(bytes.size() - payload_begin), bad,
               "is corrupt or truncated (", bytes.size() - payload_begin,
               " weight bytes, header says ", field("payload_bytes"), ")");
  SADDLE_CHECK(field("payload_fnv1a64") == hex64(fnv1a64(bytes, payload_begin)), bad,
               "is corrupt (checksum mismatch)");

  TrainedClassifier result;
  result.info.seed = static_cast<uint64_t>(number("seed"));
  result.info.epochs = static_cast<int64_t>(number("epochs"));
  result.info.train_images = static_cast<int64_t>(number("train_images"));
  result.info.test_images = static_cast<int64_t>(number("test_images"));
  result.info.test_accuracy = number("test_accuracy");
  result.info.train_seconds = number("train_seconds");
  result.model = Classifier();
  std::istringstream payload(bytes.substr(payload_begin));
  try {
    torch::load(result.model, payload);
  } catch (const c10::Error& e) {
    throw Error(bad + "is corrupt (weights unreadable: " + e.what_without_backtrace() + ")");
  }
  result.model->eval();
  return result;
}

TrainedClassifier load_or_train_classifier(const std::string& path,
                                           const ClassifierOptions& options, const Logger& logger) {
  SADDLE_CHECK(!path.empty(), "load_or_train_classifier: empty path");
  if (path_exists(path)) {
    TrainedClassifier cached = load_classifier(path);
    logger.info("classifier: loaded {} (test accuracy {:.4f})", path, cached.info.test_accuracy);
    return cached;
  }
  logger.info("classifier: {} not found; training one ({} epochs, seed {})", path, options.epochs(),
              options.seed());
  TrainedClassifier trained = train_classifier(options, &logger);
  save_classifier(trained, path);
  logger.info("classifier: test accuracy {:.4f} after {:.0f} s; saved to {}",
              trained.info.test_accuracy, trained.info.train_seconds, path);
  return trained;
}

FeatureStatistics real_feature_statistics(Classifier& model, const torch::Tensor& real_images,
                                          int64_t batch_size) {
  torch::Tensor features;
  classify_images(model, real_images, &features, nullptr, batch_size);
  return feature_statistics(features);
}

ImageScores score_images(const Classifier& model, const torch::Tensor& generated,
                         const FeatureStatistics& real, int64_t batch_size) {
  SADDLE_CHECK(real.dim() == ClassifierImpl::kFeatures, "score_images: real statistics have ",
               real.dim(), " features, the classifier has ", ClassifierImpl::kFeatures);
  Classifier m = model;  // shares the module; classify_images restores its mode
  torch::Tensor features, probabilities;
  classify_images(m, generated, &features, &probabilities, batch_size);
  ImageScores scores;
  scores.fid = frechet_distance(feature_statistics(features), real);
  scores.inception_score = inception_score(probabilities, 1);
  return scores;
}

ImageScores score_images(const Classifier& model, const torch::Tensor& generated,
                         const torch::Tensor& real_features_or_images, int64_t batch_size) {
  const torch::Tensor& real = real_features_or_images;
  SADDLE_CHECK(real.defined() && (real.dim() == 2 || real.dim() == 4),
               "score_images: real data must be features [M, 256] or images [M, 1, 32, 32], got ",
               real.defined() ? real.sizes() : torch::IntArrayRef{});
  if (real.dim() == 4) {
    Classifier m = model;
    return score_images(model, generated, real_feature_statistics(m, real, batch_size), batch_size);
  }
  SADDLE_CHECK(real.size(1) == ClassifierImpl::kFeatures, "score_images: real features have ",
               real.size(1), " columns, the classifier has ", ClassifierImpl::kFeatures);
  return score_images(model, generated, feature_statistics(real), batch_size);
}

}  // namespace saddle
