// Fashion-MNIST for tests: whether Debian's package is installed, and tiny copies of it that the
// classifier and the GAN demo train on in a second.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>

#include "cli_support.h"
#include "paths.h"
#include "saddle/data/datasets.h"

namespace saddle::testing {

inline bool have_fashion_mnist() {
  return saddle::path_exists(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz") &&
         saddle::path_exists(std::string(kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz");
}

// Writes into `dir` a Fashion-MNIST folder holding the first n_train / n_test items of the real
// one, as plain IDX files under the .gz names (zlib reads both); returns the folder.
inline std::string write_tiny_fashion_mnist(const saddle::testing::Path& dir, int64_t n_train,
                                            int64_t n_test) {
  saddle::create_directories(dir);
  auto be32 = [](uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                       static_cast<char>(v >> 8), static_cast<char>(v)};
  };
  for (const auto& [prefix, n] :
       {std::pair<std::string, int64_t>{"train", n_train}, {"t10k", n_test}}) {
    const std::string src = std::string(kFashionMnistDir) + "/" + prefix;
    const torch::Tensor images = read_idx_images(src + "-images-idx3-ubyte.gz", n).contiguous();
    const torch::Tensor labels =
        read_idx_labels(src + "-labels-idx1-ubyte.gz", n).to(torch::kUInt8).contiguous();
    std::string image_bytes = be32(0x803) + be32(n) + be32(images.size(1)) + be32(images.size(2));
    image_bytes.append(reinterpret_cast<const char*>(images.data_ptr<uint8_t>()), images.numel());
    std::string label_bytes = be32(0x801) + be32(n);
    label_bytes.append(reinterpret_cast<const char*>(labels.data_ptr<uint8_t>()), labels.numel());
    write_bytes(dir / (prefix + "-images-idx3-ubyte.gz"), image_bytes);
    write_bytes(dir / (prefix + "-labels-idx1-ubyte.gz"), label_bytes);
  }
  return dir.string();
}

}  // namespace saddle::testing
