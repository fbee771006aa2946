// The real images of the wgan-gp game: this rank's shard of a dataset, drawn by an
// epoch-reshuffling sampler (saddle/data/datasets.h).
#include <memory>

#include "saddle/data/datasets.h"
#include "saddle/device.h"
#include "saddle/error.h"
#include "saddle/games/wgan_gp.h"

namespace saddle {

RealSource dataset_source(const GameOptions& options) {
  const std::string& name = options.dataset;
  SADDLE_CHECK(name == "fashion-mnist" || name == "cifar10", "unknown --dataset '", name,
               "' (expected fashion-mnist or cifar10)");
  SADDLE_CHECK(options.ranks > 0 && options.rank >= 0 && options.rank < options.ranks,
               "wgan-gp: invalid rank ", options.rank, " of ", options.ranks);
  // The shard permutation depends only on the seed, so the ranks' shards are disjoint.
  ImageDataset data = shard(load_dataset_pixels(name, options.data_dir, /*train=*/true),
                            options.rank, options.ranks, options.seed);
  SADDLE_CHECK(data.size() > 0, "wgan-gp: rank ", options.rank, " of ", options.ranks,
               " has no images of --dataset ", name);
  // Uploaded once, as bytes; each batch is gathered and scaled to [-1, 1] on the device. The
  // sampler draws its indices on the CPU, so every device sees the same batches.
  const torch::Tensor pixels = data.images.to(options.device);
  // Shared by every copy of the function: one sampler walks the shard epoch by epoch.
  auto sampler = std::make_shared<BatchSampler>(data.size());
  RealSource source;
  source.channels = pixels.size(1);
  source.batches = [pixels, sampler](int64_t batch, at::Generator& gen) {
    const torch::Tensor indices = to_device(sampler->next_batch(batch, gen), pixels.device());
    return to_unit_range_32(pixels.index_select(0, indices));
  };
  source.state = [sampler]() { return sampler->state(); };
  source.load_state = [sampler](const torch::Tensor& state) { sampler->load_state(state); };
  return source;
}

}  // namespace saddle
