#include "saddle/solvers/gda.h"

namespace saddle {

GdaSolver::GdaSolver(torch::Tensor params, const std::vector<Player>& players,
                     const SolverOptions& options, bool alternating)
    : Solver(std::move(params), players, options), alternating_(alternating) {}

int GdaSolver::oracle_calls_per_step() const {
  return alternating_ ? static_cast<int>(players_.size()) : 1;
}

void GdaSolver::step(const Oracle& oracle) {
  const double scale = step_size_->scale();
  if (!alternating_) {
    torch::Tensor v = oracle();
    move(z_, v, scale);
    step_size_->observe(v.square().sum().item<double>());
  } else {
    // Players move one after another, each on the operator re-evaluated after the previous move.
    double sq = 0.0;
    for (const auto& player : players_) {
      torch::Tensor v = oracle().narrow(0, player.offset, player.numel);
      torch::Tensor z = z_.narrow(0, player.offset, player.numel);
      z.addcmul_(lr_.narrow(0, player.offset, player.numel), v, -scale);
      sq += v.square().sum().item<double>();
    }
    step_size_->observe(sq);
  }
  ++iteration_;
}

}  // namespace saddle
