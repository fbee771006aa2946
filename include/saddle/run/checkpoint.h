// Checkpoints of a run (stage 4 of game -> exchange -> solver -> metrics): everything needed to
// continue a run exactly — z, the solver's and step size's state, the averaged iterate, the
// exchange's random-stream counter, levels and ledger, the game's own state and every sample
// stream's generator state. Each rank writes its own file, atomically, and keeps the one before
// it, so that ranks stopped between two checkpoints can still resume from one they all hold.
//
// File layout (format 2): a line "SADDLE-CHECKPOINT 2", a line of JSON metadata, a line
// "<fnv1a64 hex> <payload bytes>" (the checksum covers the metadata line and the payload), then
// the payload, a LibTorch archive of the tensors. A flipped byte anywhere is caught on load.
#pragma once

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace saddle {

struct Checkpoint {
  // What the checkpoint belongs to (identity, iteration, rank, the metrics records it covers).
  nlohmann::ordered_json meta;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  const torch::Tensor& get(const std::string& name) const;  // throws naming the missing entry
};

// DIR/checkpoint.rank<R>.pt, or the one before it, DIR/checkpoint.rank<R>.prev.pt.
std::string checkpoint_path(const std::string& dir, int rank, bool previous = false);

// Writes `checkpoint` to `path` atomically (serialized in memory, every write checked): a full
// disk is a saddle::Error naming the file, and the file that was there stays intact.
void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
// Reads and verifies a checkpoint; throws saddle::Error naming the file when it is missing,
// corrupt (checksum), of another format, or not a saddle checkpoint.
Checkpoint load_checkpoint(const std::string& path);
// The metadata alone, without reading the tensors (the checksum is verified by load_checkpoint).
nlohmann::ordered_json read_checkpoint_meta(const std::string& path);

}  // namespace saddle
