// Game: the first stage of saddle's flow (game -> exchange -> solver -> metrics).
//
// A game owns its players' parameters as ONE flat, contiguous 1-D tensor z (the VI variable) and
// evaluates the operator F(z) on a sample: the gradient of its loss for a minimizing player, the
// negated gradient for a maximizing player, laid out exactly like z. Because F is one flat buffer,
// an Exchange can average it across ranks and every Solver can use it without knowing the game.
// Games built from torch::nn modules make the modules' parameters views into z (bind_parameters).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace saddle {

enum class Role { kMin, kMax };

const char* role_name(Role role);

// One player's slice [offset, offset + numel) of z.
struct Player {
  std::string name;
  Role role = Role::kMin;
  int64_t offset = 0;
  int64_t numel = 0;
};

// Named scalar metrics in a fixed order (the order they are written in metrics.jsonl).
using Metrics = std::vector<std::pair<std::string, double>>;

// Returns the value stored under `key`, or std::nullopt.
std::optional<double> find_metric(const Metrics& metrics, const std::string& key);

class Game {
 public:
  virtual ~Game() = default;

  virtual std::string name() const = 0;

  // F at the current parameters, estimated from one sample drawn with `gen` (each rank passes its
  // own generator). Returns a new float tensor shaped like params(). Deterministic games ignore
  // gen.
  virtual torch::Tensor operator_at(at::Generator& gen) = 0;

  // Told, while the game evaluates F, that the slice [begin, end) of the result `f` is final: the
  // exchange sends the buckets it completes while the rest of F is computed (one player's
  // exchange overlapping the other player's backward pass).
  using SliceReady = std::function<void(const torch::Tensor& f, int64_t begin, int64_t end)>;
  // operator_at(gen), telling `ready` about disjoint slices that cover F exactly once, each as soon
  // as it is final; the same slices in the same order at every call (every rank must send its
  // pieces in one order). This default reports the whole of F once it is computed.
  virtual torch::Tensor operator_in_slices(at::Generator& gen, const SliceReady& ready);

  // The game's own metrics at the current parameters. Analytic games report at least
  // "operator_norm_sq" (of the exact, noise-free operator) and, where the equilibrium is known,
  // "distance_sq" = ||z - z*||^2.
  virtual Metrics metrics() = 0;

  // The equilibrium z*, when the game knows it.
  virtual std::optional<torch::Tensor> equilibrium() const { return std::nullopt; }

  // Metrics too expensive for every record (FID, modes captured), computed by the runner at its
  // evaluation points only, at the current parameters. Must be deterministic.
  virtual Metrics evaluation_metrics() { return {}; }

  // Writes a picture of the game's samples at the current parameters (a PNG grid of images or a
  // scatter over the modes) to `path`. Returns false when the game has nothing to draw.
  virtual bool write_samples(const std::string& path) { return false; }

  // State outside z that a checkpoint must hold to continue exactly: batch-norm buffers, the
  // position of a data sampler. Named tensors; load_state() receives what state() returned.
  using State = std::vector<std::pair<std::string, torch::Tensor>>;
  virtual State state() const { return {}; }
  virtual void load_state(const State& state) {}

  // Mixed precision (saddle/precision.h): games that differentiate losses multiply them by this
  // scale before differentiating and divide the gradients by it (fp16 loss scaling). 1 unless the
  // runner sets another.
  void set_loss_scale(double scale) { loss_scale_ = scale; }
  // CUDA graphs captured of the operator evaluation so far (saddle/device_graph.h); 0 for games
  // that evaluate eagerly.
  virtual int64_t graph_captures() const { return 0; }
  double loss_scale() const { return loss_scale_; }

  const std::vector<Player>& players() const { return players_; }
  // The flat parameter vector z. Solvers update it in place.
  torch::Tensor params() const { return params_; }
  int64_t dim() const { return params_.defined() ? params_.numel() : 0; }
  // The device of z (and of every tensor the game returns).
  torch::Device device() const { return params_.defined() ? params_.device() : torch::kCPU; }

 protected:
  // For games whose parameters are plain tensors: records the players (offsets are assigned in
  // order) and takes `initial` (1-D, sum of the players' sizes) as z.
  void init_params(std::vector<Player> players, torch::Tensor initial);

  // For games built from modules: copies each player's tensors into one flat z and makes every
  // tensor a view of its slice, so writing z moves the modules and their .grad() can be gathered
  // with flat_grad(). `groups` holds, per player, its name, role and tensors.
  struct PlayerTensors {
    std::string name;
    Role role;
    std::vector<torch::Tensor> tensors;
  };
  void bind_parameters(const std::vector<PlayerTensors>& groups);

  // The gradients of the bound tensors as one flat tensor, negated for maximizing players
  // (missing gradients count as zero).
  torch::Tensor flat_operator_from_grads() const;

  // Turns the gradient of a zero-sum loss f with respect to z into F: negates, in place, the
  // slices of maximizing players (they ascend f). Returns `grad`.
  torch::Tensor negate_max_players(torch::Tensor grad) const;

  std::vector<Player> players_;
  torch::Tensor params_;
  double loss_scale_ = 1.0;

 private:
  std::vector<std::pair<torch::Tensor, Role>> bound_;  // views into params_, in layout order
};

}  // namespace saddle
