// Image datasets for the GAN games: readers for the gzip IDX files of (Fashion-)MNIST and the
// binary batches of CIFAR-10, each rank's disjoint shard, and an epoch-reshuffling batch sampler.
// Data sits before the first stage of the flow: a data-backed game draws its batches here inside
// operator_at(gen), so everything downstream (exchange, solver) sees only the operator.
//
// Every reader checks what it reads and throws saddle::Error naming the file and the problem.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>

namespace saddle {

// Where Debian's dataset-fashion-mnist package installs the files.
constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// Images as float [N, C, 32, 32] in [-1, 1] and labels as int64 [N].
struct ImageDataset {
  torch::Tensor images;
  torch::Tensor labels;

  int64_t size() const { return images.defined() ? images.size(0) : 0; }
  // The rows `indices` (int64, 1-D) of images and labels.
  ImageDataset select(const torch::Tensor& indices) const;
};

// Raw IDX readers (gzip or plain, read with zlib). Images: magic 0x00000803, uint8 [N, rows, cols].
// Labels: magic 0x00000801, uint8 [N] returned as int64. `limit` >= 0 reads only the first `limit`
// items (and then does not read, or check, the rest of the file); -1 reads all and checks that the
// file holds exactly the declared bytes.
torch::Tensor read_idx_images(const std::string& path, int64_t limit = -1);
torch::Tensor read_idx_labels(const std::string& path, int64_t limit = -1);

// One CIFAR-10 binary batch: records of 1 label byte + 3072 bytes (3 x 32 x 32, CHW). The file
// size must be a positive multiple of 3073 and labels must be < 10. Images come back as uint8
// [N, 3, 32, 32], labels int64 [N]. `limit` as above.
void read_cifar10_batch(const std::string& path, torch::Tensor* images, torch::Tensor* labels,
                        int64_t limit = -1);

// uint8 [N, C, H, W] (or [N, H, W]) -> float [N, C, 32, 32] in [-1, 1]; smaller images are
// centred and padded with -1 (the background of (Fashion-)MNIST after scaling).
torch::Tensor to_unit_range_32(const torch::Tensor& pixels);

// Fashion-MNIST from `dir` (empty: kFashionMnistDir): train-{images-idx3,labels-idx1}-ubyte.gz or
// t10k-*. Images [N, 1, 32, 32].
ImageDataset load_fashion_mnist(const std::string& dir, bool train = true, int64_t limit = -1);

// CIFAR-10 from `dir` (the folder with data_batch_1..5.bin and test_batch.bin, or the folder that
// holds cifar-10-batches-bin/). There is no default location: an empty dir is an error.
ImageDataset load_cifar10(const std::string& dir, bool train = true, int64_t limit = -1);

// "fashion-mnist" | "cifar10".
ImageDataset load_dataset(const std::string& name, const std::string& dir, bool train = true,
                          int64_t limit = -1);
// The same images as stored, uint8 [N, C, H, W] (28 x 28 for Fashion-MNIST): a game keeps these
// bytes on its device (a quarter of the floats' memory) and scales each batch there with
// to_unit_range_32, which gives exactly load_dataset's values.
ImageDataset load_dataset_pixels(const std::string& name, const std::string& dir, bool train = true,
                                 int64_t limit = -1);

// The indices this rank reads: a permutation of [0, n) seeded by `seed` (the same on every rank)
// cut into `ranks` contiguous parts whose sizes differ by at most one. Disjoint and covering.
torch::Tensor shard_indices(int64_t n, int rank, int ranks, uint64_t seed);
ImageDataset shard(const ImageDataset& data, int rank, int ranks, uint64_t seed);

// Draws batches of indices into a dataset of `size` items without replacement: each epoch is a
// fresh permutation drawn from the generator passed to next_batch, so a run is reproducible from
// its seed. A batch that runs past the end of an epoch is completed from the next one, so every
// item appears exactly once per epoch.
class BatchSampler {
 public:
  explicit BatchSampler(int64_t size);

  // int64 [batch_size] indices.
  torch::Tensor next_batch(int64_t batch_size, at::Generator& gen);

  int64_t size() const { return size_; }
  // The epoch the last batch ended in: 0 during the first pass over the data.
  int64_t epoch() const { return epoch_ < 0 ? 0 : epoch_; }

  // The epoch, the position in it and the epoch's order, for checkpoints: a sampler restored
  // with load_state() draws exactly the batches the saved one would have drawn.
  torch::Tensor state() const;
  void load_state(const torch::Tensor& state);

 private:
  int64_t size_;
  int64_t epoch_ = -1;  // the first next_batch starts epoch 0
  int64_t position_ = 0;
  torch::Tensor order_;
};

}  // namespace saddle
