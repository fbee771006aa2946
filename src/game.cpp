#include "saddle/game.h"

#include "saddle/error.h"

namespace saddle {

const char* role_name(Role role) { return role == Role::kMin ? "min" : "max"; }

std::optional<double> find_metric(const Metrics& metrics, const std::string& key) {
  for (const auto& [name, value] : metrics) {
    if (name == key) return value;
  }
  return std::nullopt;
}

torch::Tensor Game::operator_in_slices(at::Generator& gen, const SliceReady& ready) {
  torch::Tensor f = operator_at(gen);
  ready(f, 0, f.numel());
  return f;
}

void Game::init_params(std::vector<Player> players, torch::Tensor initial) {
  int64_t offset = 0;
  for (auto& player : players) {
    SADDLE_CHECK(player.numel > 0, "player '", player.name, "' has no parameters");
    player.offset = offset;
    offset += player.numel;
  }
  SADDLE_CHECK(initial.dim() == 1 && initial.numel() == offset, "game '", name(),
               "': initial point has ", initial.numel(), " entries, players need ", offset);
  players_ = std::move(players);
  params_ = initial.contiguous().clone();
}

void Game::bind_parameters(const std::vector<PlayerTensors>& groups) {
  std::vector<Player> players;
  int64_t total = 0;
  torch::ScalarType dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
  for (const auto& group : groups) {
    int64_t numel = 0;
    for (const auto& t : group.tensors) {
      numel += t.numel();
      dtype = t.scalar_type();
      device = t.device();
    }
    players.push_back(Player{group.name, group.role, total, numel});
    total += numel;
  }
  // On the tensors' device: move the modules there before binding them, never after.
  torch::Tensor flat = torch::empty({total}, torch::TensorOptions().dtype(dtype).device(device));
  bound_.clear();
  int64_t offset = 0;
  torch::NoGradGuard no_grad;
  for (const auto& group : groups) {
    for (const auto& t : group.tensors) {
      torch::Tensor slice = flat.narrow(0, offset, t.numel());
      slice.copy_(t.detach().reshape({-1}));
      // The module keeps its Parameter object; only its storage now lives inside z.
      const_cast<torch::Tensor&>(t).set_data(slice.view(t.sizes()));
      bound_.emplace_back(t, group.role);
      offset += t.numel();
    }
  }
  players_ = std::move(players);
  params_ = flat;
}

torch::Tensor Game::negate_max_players(torch::Tensor grad) const {
  for (const auto& player : players_) {
    if (player.role == Role::kMax) grad.narrow(0, player.offset, player.numel).neg_();
  }
  return grad;
}

torch::Tensor Game::flat_operator_from_grads() const {
  torch::Tensor out = torch::zeros_like(params_);
  int64_t offset = 0;
  for (const auto& [tensor, role] : bound_) {
    const int64_t n = tensor.numel();
    const torch::Tensor& grad = tensor.grad();
    if (grad.defined()) {
      torch::Tensor slice = out.narrow(0, offset, n);
      if (role == Role::kMin) {
        slice.copy_(grad.reshape({-1}));
      } else {
        slice.copy_(grad.reshape({-1})).neg_();
      }
    }
    offset += n;
  }
  return out;
}

}  // namespace saddle
