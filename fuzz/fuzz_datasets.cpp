// Feeds arbitrary bytes to the dataset readers as the contents of a file: the first byte picks
// the reader (IDX images, IDX labels, a CIFAR-10 batch), the rest is the file (plain or gzip, as
// zlib reads both). saddle::Error is the expected answer to garbage; any other exception, crash
// or sanitizer report is a bug.
#include <torch/torch.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "saddle/data/datasets.h"
#include "saddle/error.h"

namespace {

const std::string& scratch() {
  // In memory (tmpfs) where there is one: the file system is the slow part of each run.
  static const std::string path = std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") +
                                  "/saddle_fuzz_datasets_" + std::to_string(::getpid());
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::ofstream(scratch(), std::ios::binary | std::ios::trunc)
      << std::string(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (data[0] % 3) {
      case 0: saddle::read_idx_images(scratch(), data[0] & 0x80 ? 5 : -1); break;
      case 1: saddle::read_idx_labels(scratch(), data[0] & 0x80 ? 5 : -1); break;
      default: {
        torch::Tensor images, labels;
        saddle::read_cifar10_batch(scratch(), &images, &labels, data[0] & 0x80 ? 2 : -1);
      }
    }
  } catch (const saddle::Error&) {
  }
  return 0;
}
