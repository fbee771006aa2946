#include "saddle/solvers/gda.h"

#include <limits>

#include "../detail/reduce.h"

namespace saddle {

GdaSolver::GdaSolver(torch::Tensor params, const std::vector<Player>& players,
                     const SolverOptions& options, GdaUpdate update)
    : Solver(std::move(params), players, options), update_(update) {}

int GdaSolver::oracle_calls_per_step() const {
  return update_ == GdaUpdate::kAlternating ? static_cast<int>(players_.size()) : 1;
}

void GdaSolver::step(const Oracle& oracle) {
  const double scale = step_size_->scale();
  if (update_ == GdaUpdate::kSimultaneous) {
    const torch::Tensor point = z_.clone();
    torch::Tensor v = oracle();
    // No extrapolation: ||V_t||^2, and the Lipschitz estimate from consecutive evaluations.
    StepObservation o = measure(v, torch::Tensor(), /*against_previous=*/false);
    measure_lipschitz(o, v, previous_operator_, point, previous_point_);
    measure_noise(o, v, previous_operator_, /*measured_pair=*/false);  // measure() took ||V_t||^2
    step_size_->observe(o);
    record_half_step(point, step_size_->update_scale());
    move(z_, v, step_size_->update_scale());
    previous_point_ = point;
    previous_operator_ = v;
  } else {
    // Players move one after another, each on the operator re-evaluated after the previous move.
    record_half_step(z_, scale);
    double sq = 0.0;
    for (const auto& player : players_) {
      torch::Tensor v = oracle().narrow(0, player.offset, player.numel);
      torch::Tensor z = z_.narrow(0, player.offset, player.numel);
      z.addcmul_(lr_.narrow(0, player.offset, player.numel), v, -scale);
      sq += detail::fixed_order_sum_squares(v.contiguous());
    }
    StepObservation o;
    o.sq_difference = sq;
    o.sq_difference_ranks = std::numeric_limits<double>::quiet_NaN();
    step_size_->observe(o);  // the players' operators come from several exchanges: no rank sums
  }
  ++iteration_;
}

}  // namespace saddle
