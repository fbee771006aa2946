// The real images of the wgan-gp game: this rank's shard of a dataset, drawn by an
// epoch-reshuffling sampler (saddle/data/datasets.h).
#include <memory>

#include "saddle/games/wgan_gp.h"
#include "saddle/data/datasets.h"
#include "saddle/error.h"

namespace saddle {

RealSource dataset_source(const GameOptions& options) {
  const std::string& name = options.dataset;
  SADDLE_CHECK(name == "fashion-mnist" || name == "cifar10", "unknown --dataset '", name,
               "' (expected fashion-mnist or cifar10)");
  SADDLE_CHECK(options.ranks > 0 && options.rank >= 0 && options.rank < options.ranks,
               "wgan-gp: invalid rank ", options.rank, " of ", options.ranks);
  // The shard permutation depends only on the seed, so the ranks' shards are disjoint.
  ImageDataset data = shard(load_dataset(name, options.data_dir, /*train=*/true), options.rank,
                            options.ranks, options.seed);
  SADDLE_CHECK(data.size() > 0, "wgan-gp: rank ", options.rank, " of ", options.ranks,
               " has no images of --dataset ", name);
  torch::Tensor images = data.images;
  // Shared by every copy of the function: one sampler walks the shard epoch by epoch.
  auto sampler = std::make_shared<BatchSampler>(data.size());
  RealSource source;
  source.channels = images.size(1);
  source.batches = [images, sampler](int64_t batch, at::Generator& gen) {
    return images.index_select(0, sampler->next_batch(batch, gen));
  };
  source.state = [sampler]() { return sampler->state(); };
  source.load_state = [sampler](const torch::Tensor& state) { sampler->load_state(state); };
  return source;
}

}  // namespace saddle
