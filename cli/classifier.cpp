// `saddle classifier`: trains the Fashion-MNIST classifier whose features the GAN image scores
// (FID, Inception score) use, prints its test accuracy and writes it to --out.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>

#include "commands.h"
#include "saddle/device.h"
#include "saddle/error.h"
#include "saddle/metrics/classifier.h"
#include "saddle/run/files.h"

namespace saddle::cli {

ClassifierCommand::ClassifierCommand(CLI::App& app)
    : app_(app.add_subcommand(
          "classifier", "Train the Fashion-MNIST classifier used for FID / Inception score")) {
  app_->add_option("--out", out_, "File to write the trained classifier to")->required();
  app_->add_option("--epochs", epochs_, "Training epochs")->capture_default_str();
  app_->add_option("--seed", seed_, "Seed of the initialization and the shuffling")
      ->capture_default_str();
  app_->add_option("--lr", lr_, "Adam learning rate of the first epoch (halved every epoch)")
      ->capture_default_str();
  app_->add_option("--batch-size", batch_size_, "Training batch size")->capture_default_str();
  app_->add_flag("--flip", flip_, "Augment with random horizontal flips");
  app_->add_option("--data-dir", data_dir_, "Fashion-MNIST folder (default: the Debian package's)");
  app_->add_option("--threads", threads_, "Intra-op threads (0: LibTorch's default)")
      ->capture_default_str();
  app_->add_option("--device", device_,
                   "Where to train: auto (a CUDA device when there is one), cpu, cuda or cuda:N")
      ->capture_default_str();
  app_->add_option("--log-level", log_level_, "error | warn | info | debug")->capture_default_str();
}

int ClassifierCommand::run(Communicator& comm) {
  Logger logger(rank_log_level(parse_log_level(log_level_), comm.rank()), comm.rank(), comm.size());
  SADDLE_CHECK(comm.size() == 1, "saddle classifier runs on one process (got ", comm.size(),
               " ranks)");
  SADDLE_CHECK(epochs_ >= 1, "invalid --epochs ", epochs_, " (must be >= 1)");
  SADDLE_CHECK(threads_ >= 0, "invalid --threads ", threads_, " (must be >= 0)");
  SADDLE_CHECK(std::isfinite(lr_) && lr_ > 0, "invalid --lr ", lr_, " (must be > 0)");
  SADDLE_CHECK(batch_size_ >= 1, "invalid --batch-size ", batch_size_, " (must be >= 1)");
  SADDLE_CHECK(!out_.empty(), "invalid --out: empty path");
  // Checked before minutes of training: the folder can be created and written, and --out is
  // not a folder itself.
  SADDLE_CHECK(!is_directory(out_), "invalid --out ", out_,
               ": it is a directory (give a file name)");
  const std::string parent = parent_directory(out_);
  try {
    prepare_output_dir(parent.empty() ? "." : parent);
  } catch (const Error& e) {
    throw Error("cannot write --out " + out_ + ": " + e.what());
  }
  const torch::Device device = resolve_device(device_, 0, cuda_device_count());
  const ClassifierOptions options = ClassifierOptions()
                                        .epochs(epochs_)
                                        .seed(seed_)
                                        .data_dir(data_dir_)
                                        .threads(threads_)
                                        .lr(lr_)
                                        .batch_size(batch_size_)
                                        .flip(flip_)
                                        .device(device);
  TrainedClassifier trained = train_classifier(options, &logger);
  save_classifier(trained, out_);
  const std::string line =
      fmt::format("test accuracy {:.4f} on {} images after {} epochs ({:.0f} s); wrote {}\n",
                  trained.info.test_accuracy, trained.info.test_images, trained.info.epochs,
                  trained.info.train_seconds, out_);
  std::fwrite(line.data(), 1, line.size(), stdout);
  return 0;
}

}  // namespace saddle::cli
