// A game of your own in about 30 lines: f(x, y) = x^T A y + lambda/2 (|x|^2 - |y|^2), written as
// a loss and differentiated by autograd. x minimizes, y maximizes; the equilibrium is (0, 0).
// Run it with any solver and exchange, e.g. `mpirun -np 8 saddle_example_custom_game 4 alq`.
#include <ATen/CPUGeneratorImpl.h>
#include <saddle/saddle.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <string>

class RegularizedMatrixGame : public saddle::Game {
 public:
  RegularizedMatrixGame(int64_t n, double lambda)
      : n_(n), lambda_(lambda), a_(torch::randn({n, n}, at::make_generator<at::CPUGeneratorImpl>(7)) / std::sqrt(n)) {
    init_params({{"x", saddle::Role::kMin, 0, n}, {"y", saddle::Role::kMax, 0, n}},
                torch::ones({2 * n}));
  }
  std::string name() const override { return "regularized-matrix"; }
  torch::Tensor operator_at(at::Generator&) override {
    torch::Tensor z = params_.detach().requires_grad_();
    torch::Tensor x = z.narrow(0, 0, n_), y = z.narrow(0, n_, n_);
    torch::Tensor loss = x.dot(a_.mv(y)) + 0.5 * lambda_ * (x.dot(x) - y.dot(y));
    return negate_max_players(torch::autograd::grad({loss}, {z})[0]);
  }
  saddle::Metrics metrics() override {
    return {{"distance_sq", params_.square().sum().item<double>()}};
  }

 private:
  int64_t n_;
  double lambda_;
  torch::Tensor a_;
};

int main(int argc, char** argv) {
  const int bits = argc > 1 ? std::stoi(argv[1]) : 4;
  const std::string quantizer = argc > 2 ? argv[2] : "alq";
  RegularizedMatrixGame game(16, 0.5);
  auto solver = saddle::make_solver("qgenx", game.params(), game.players(),
                                    saddle::SolverOptions().lr(1.0).step_size(saddle::StepSizeKind::kAdaptive));
  auto comm = saddle::make_single_process_communicator();
  saddle::Logger logger(saddle::LogLevel::kWarn);
  saddle::Exchange exchange(*comm, saddle::ExchangeOptions().codec(
      saddle::CodecOptions().quantizer(quantizer).bits(bits)), logger);
  auto result = saddle::run(game, *solver, exchange, saddle::RunOptions().iterations(3000).progress(false), logger);
  std::printf("distance_sq %.3e after %lld iterations, %.2f bits/coordinate\n",
              *saddle::find_metric(result.final_metrics, "distance_sq"),
              static_cast<long long>(result.iterations), result.ledger.bits_per_coordinate());
  return 0;
}
