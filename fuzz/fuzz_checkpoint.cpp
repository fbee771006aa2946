// Feeds arbitrary bytes to load_checkpoint and read_checkpoint_meta as the contents of a checkpoint
// file: saddle::Error is the expected answer to garbage; any other exception, crash or sanitizer
// report is a bug. The checksum stops random bytes before LibTorch's archive reader; the seeds
// (fuzz/corpus/checkpoint) are valid checkpoints, so mutations explore the header parser.
#include <torch/torch.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "saddle/error.h"
#include "saddle/run/checkpoint.h"

namespace {

const std::string& scratch() {
  // In memory (tmpfs) where there is one: the file system is the slow part of each run.
  static const std::string path = std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") +
                                  "/saddle_fuzz_checkpoint_" + std::to_string(::getpid());
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::ofstream(scratch(), std::ios::binary | std::ios::trunc)
      << std::string(reinterpret_cast<const char*>(data), size);
  try {
    saddle::read_checkpoint_meta(scratch());
  } catch (const saddle::Error&) {
  }
  try {
    saddle::load_checkpoint(scratch());
  } catch (const saddle::Error&) {
  }
  return 0;
}

// SADDLE_FUZZ_SEEDS=<dir>: writes valid checkpoints into <dir> as a seed corpus, then fuzzes.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("SADDLE_FUZZ_SEEDS");
  if (dir == nullptr) return 0;
  for (int k = 0; k < 3; ++k) {
    saddle::Checkpoint c;
    c.meta = {{"format", 2}, {"iteration", 10 * k}, {"rank", 0}, {"identity", {{"game", "x"}}}};
    c.tensors.emplace_back("z", torch::arange(4 * (k + 1), torch::kFloat32));
    if (k > 0) c.tensors.emplace_back("count", torch::tensor({k}, torch::kInt64));
    saddle::save_checkpoint(std::string(dir) + "/seed_" + std::to_string(k), c);
  }
  return 0;
}
