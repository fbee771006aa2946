// Checkpoints of a run (stage 4 of game -> exchange -> solver -> metrics): everything needed to
// continue a run exactly — z, the solver's and step size's state, the averaged iterate, the
// exchange's random-stream counter, levels and ledger, the game's own state and every sample
// stream's generator state. Each rank writes its own file, atomically (temporary file, rename).
#pragma once

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace saddle {

struct Checkpoint {
  // What the checkpoint belongs to: format version, game, dim, players, solver, iteration,
  // rank, ranks, simulate_ranks. A run refuses a checkpoint whose identity differs from its own.
  nlohmann::ordered_json meta;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  const torch::Tensor& get(const std::string& name) const;  // throws naming the missing entry
};

// DIR/checkpoint.rank<R>.pt
std::string checkpoint_path(const std::string& dir, int rank);

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
// Throws saddle::Error naming the file when it is missing, corrupt or not a saddle checkpoint.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace saddle
