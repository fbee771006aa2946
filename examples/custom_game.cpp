// A game of your own in about 30 lines: f(x, y) = x^T A y + lambda/2 (|x|^2 - |y|^2), written as
// a loss and differentiated by autograd. x minimizes, y maximizes; the equilibrium is (0, 0).
// Run it with any solver and exchange, on one process or many, on CPUs or GPUs:
//   ./my_game 4 alq                          # one process, 4-bit ALQ, a GPU when there is one
//   mpirun -np 8 ./my_game 4 alq cuda        # 8 ranks, each on its own GPU of the node
#include <ATen/CPUGeneratorImpl.h>
#include <saddle/comm/mpi.h>
#include <saddle/device.h>
#include <saddle/saddle.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <string>

class RegularizedMatrixGame : public saddle::Game {
 public:
  RegularizedMatrixGame(int64_t n, double lambda, torch::Device device) : n_(n), lambda_(lambda) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(7);  // the same A on every rank
    a_ = (torch::randn({n, n}, gen) / std::sqrt(n)).to(device);
    init_params({{"x", saddle::Role::kMin, 0, n}, {"y", saddle::Role::kMax, 0, n}},
                torch::ones({2 * n}, torch::TensorOptions().device(device)));
  }
  std::string name() const override { return "regularized-matrix"; }
  torch::Tensor operator_at(at::Generator&) override {  // F(z) by autograd on the loss
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
  saddle::MpiRuntime mpi(argc, argv);  // one rank per process; works without mpirun too
  auto comm = mpi.world();
  const int bits = argc > 1 ? std::stoi(argv[1]) : 4;
  const std::string quantizer = argc > 2 ? argv[2] : "alq";
  const torch::Device device = saddle::resolve_device(
      argc > 3 ? argv[3] : "auto", comm->local_rank(), saddle::cuda_device_count());
  RegularizedMatrixGame game(16, 0.5, device);
  auto solver =
      saddle::make_solver("qgenx", game.params(), game.players(),
                          saddle::SolverOptions().lr(1.0).step_size(saddle::StepSizeKind::kAuto));
  saddle::Logger logger(saddle::LogLevel::kWarn, comm->rank(), comm->size());
  saddle::Exchange exchange(
      *comm,
      saddle::ExchangeOptions().codec(saddle::CodecOptions().quantizer(quantizer).bits(bits)),
      logger);
  auto result = saddle::run(game, *solver, exchange,
                            saddle::RunOptions().iterations(3000).progress(false), logger);
  if (comm->rank() == 0) {
    std::printf("distance_sq %.3e after %lld iterations on %d rank(s), %.2f bits/coordinate\n",
                *saddle::find_metric(result.final_metrics, "distance_sq"),
                static_cast<long long>(result.iterations), comm->size(),
                result.ledger.bits_per_coordinate());
  }
  return 0;
}
