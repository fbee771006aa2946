// The subcommands of `saddle`. Each one registers its options on the CLI11 app, and run() builds
// the pieces (game, exchange, solver, runner) and runs the loop. Nothing here is library logic.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "config_binder.h"
#include "saddle/comm/communicator.h"
#include "saddle/comm/exchange.h"
#include "saddle/games/registry.h"
#include "saddle/log.h"
#include "saddle/metrics/classifier.h"
#include "saddle/precision.h"
#include "saddle/run/runner.h"

namespace saddle::cli {

// Whether Ctrl-C or SIGTERM asked the run to stop (main.cpp's signal handler).
bool stop_requested();

// Rank 0 logs at the chosen level; the other ranks only warn and fail, unless debugging.
inline LogLevel rank_log_level(LogLevel level, int rank) {
  return rank == 0 || level == LogLevel::kDebug ? level : std::min(level, LogLevel::kWarn);
}

// Options of `solve` for the exchange over ranks (`demo` and `compare` fill in a few).
struct ExchangeFlags {
  std::string quantizer = "none";
  int bits = 4;
  int64_t bucket_size = 1024;
  std::string norm = "l2";
  std::string coder = "fixed";
  std::vector<std::string> level_schedule = {"0", "100", "2000"};
  int64_t level_every = 10000;
  std::string collective = "auto";
  int second_bits = 8;
  std::string overlap = "off";
  void add_to(ConfigBinder& binder);
};

// Builds the exchange options from the flags; throws saddle::Error on invalid values.
ExchangeOptions exchange_options(const ExchangeFlags& flags, uint64_t seed);

// --device, --transport and --precision of the commands that run games.
struct DeviceFlags {
  std::string device = "auto";
  std::string transport = "auto";
  std::string precision = "fp32";
  std::string cuda_graphs = "on";
  void add_to(ConfigBinder& binder);
  void add_to(CLI::App& app);
  // Throws saddle::Error naming a malformed value; checks nothing that needs a device.
  void check_syntax() const;
};

// Where this rank runs: --device resolved by the node-local rank, --precision checked against it,
// and the NCCL communicator over `comm` when the transport is NCCL. Rank 0 logs every rank's
// device. comm() is what the run uses; `comm` must outlive this.
class RunDevice {
 public:
  RunDevice(const DeviceFlags& flags, Communicator& comm, const Logger& logger);
  const torch::Device& device() const { return device_; }
  Precision precision() const { return precision_; }
  const std::string& transport() const { return transport_; }
  // --cuda-graphs on, and this rank on a GPU: games replay their operator as a CUDA graph.
  bool cuda_graphs() const { return cuda_graphs_; }
  Communicator& comm() { return nccl_ ? *nccl_ : host_; }

 private:
  Communicator& host_;
  torch::Device device_ = torch::kCPU;
  Precision precision_ = Precision::kFp32;
  bool cuda_graphs_ = false;
  std::string transport_;
  std::unique_ptr<Communicator> nccl_;
};

// Text for the commands' tables (report.cpp).
// "812 B", "12.3 KiB", "45.6 MiB".
std::string human_bytes(int64_t bytes);
// A byte count as users write it: "250000", "64k", "1.5M", "2G" (powers of 1000) or "64KiB",
// "1.5MiB", "2GiB" (powers of 1024); "0" means none. Throws naming `flag` for anything else.
int64_t parse_byte_count(const std::string& text, const std::string& flag);
// "alq 4-bit", or the bare name of a cast ("none", "fp16", "bf16"); throws on a bad quantizer or
// bit count, so commands call it before anything slow.
std::string exchange_label(const std::string& quantizer, int bits);

class SolveCommand {
 public:
  explicit SolveCommand(CLI::App& app);
  CLI::App* app() { return app_; }
  ConfigBinder& binder() { return binder_; }
  int run(Communicator& comm);
  // The run itself, without printing its result (saddle compare runs its rows through it).
  RunResult execute(Communicator& comm);
  const std::string& solver() const { return solver_; }

 private:
  // The game table's defaults for this solver (saddle/games/registry.h) into every option that
  // neither a flag nor --config set; says which, and warns of a poor pairing.
  void apply_game_defaults(const Logger& logger);
  // The step rule the run takes: --step-size, else the solver's default (auto for the
  // extra-gradient family, qgenx for its dual-averaging variant, constant for the others).
  std::string resolved_step() const;

  CLI::App* app_;
  ConfigBinder binder_;
  std::string config_;
  std::string game_ = "bilinear";
  std::string solver_ = "eg";
  int64_t iters_ = 1000;
  std::string max_bytes_ = "0";
  uint64_t seed_ = 0;
  std::string out_;
  std::string step_size_;  // empty: adaptive for qgenx, constant otherwise
  double lr_ = 0.1;
  double step_max_ = 0.0;
  std::vector<std::string> player_lr_;
  std::string variant_ = "eg";
  std::string precondition_ = "none";
  double beta1_ = 0.5, beta2_ = 0.9, eps_ = 1e-8;
  std::string averaging_ = "none";
  double ema_decay_ = 0.999;
  GameOptions game_options_;
  ExchangeFlags exchange_;
  int64_t log_every_ = 0;
  int64_t eval_every_ = 0;
  int64_t checkpoint_every_ = 0;
  int64_t divergence_retries_ = 0;
  std::string resume_;
  int64_t simulate_ranks_ = 1;
  bool overwrite_ = false;
  double rank_timeout_ = 120.0;
  DeviceFlags device_;
  std::string log_level_ = "info";
  bool no_progress_ = false;
};

// `saddle demo`, the README's main job: WGAN-GP on Fashion-MNIST trained by qgenx with every
// rank's operator quantized by adaptive (ALQ) levels; ends with FID, bytes and the sample grid.
class DemoCommand {
 public:
  explicit DemoCommand(CLI::App& app);
  CLI::App* app() { return app_; }
  int run(Communicator& comm);

 private:
  CLI::App* app_;
  int64_t iters_ = 400;
  int64_t filters_ = 32;
  int64_t batch_ = 64;
  double lr_ = 0.01;
  std::string quantizer_ = "alq";
  int bits_ = 4;
  int64_t eval_every_ = 100;
  int64_t fid_samples_ = 1000;
  std::string classifier_ = "runs/fmnist_classifier.pt";
  std::string data_dir_;
  std::string out_ = "runs/demo";
  uint64_t seed_ = 0;
  double rank_timeout_ = 120.0;
  DeviceFlags device_;
  std::string log_level_ = "info";
  bool no_progress_ = false;
};

class CompareCommand {
 public:
  explicit CompareCommand(CLI::App& app);
  CLI::App* app() { return app_; }
  int run(Communicator& comm);

 private:
  CLI::App* app_;
  std::string game_ = "bilinear";
  std::vector<std::string> row_specs_;
  std::string rows_file_;
  std::string with_;
  int64_t iters_ = 0;
  std::string budget_bytes_;
  uint64_t seed_ = 0;
  int64_t seeds_ = 1;
  int64_t dim_ = 128;
  std::string noise_ = "relative";
  double noise_scale_ = 0.2;
  std::string quantizer_ = "alq";
  int bits_ = 4;
  std::string out_;
  bool overwrite_ = false;
  double rank_timeout_ = 120.0;
  DeviceFlags device_;
  std::string log_level_ = "warn";
};

// `saddle quantizers`: the variance each quantizer adds to operators sampled while a game trains,
// beside what its levels predict and QSGD's bound (issue 10's quantizer experiment).
class QuantizersCommand {
 public:
  explicit QuantizersCommand(CLI::App& app);
  CLI::App* app() { return app_; }
  int run(Communicator& comm);

 private:
  CLI::App* app_;
  std::string game_ = "bilinear";
  std::string solver_;
  int64_t iters_ = 200;
  int64_t samples_ = 3;
  std::string quantizers_ = "qsgd,qsgd-inf,nuq,terngrad,alq,amq";
  std::string bits_ = "2,3,4,5,6,7,8";
  int64_t bucket_size_ = 1024;
  int64_t draws_ = 20;
  int64_t dim_ = 128;
  int64_t filters_ = 0;
  std::string data_dir_;
  uint64_t seed_ = 0;
  std::string out_;
  bool overwrite_ = false;
  std::string log_level_ = "warn";
};

// `saddle games`: the game table, each game's defaults for every solver and the poor pairings.
class GamesCommand {
 public:
  explicit GamesCommand(CLI::App& app);
  CLI::App* app() { return app_; }
  int run(Communicator& comm);

 private:
  CLI::App* app_;
  std::string game_;
};

// `saddle classifier`: trains the Fashion-MNIST classifier of the GAN image scores (FID, IS).
class ClassifierCommand {
 public:
  explicit ClassifierCommand(CLI::App& app);
  CLI::App* app() { return app_; }
  int run(Communicator& comm);

 private:
  CLI::App* app_;
  std::string out_;
  int64_t epochs_ = ClassifierOptions().epochs();
  uint64_t seed_ = 0;
  double lr_ = ClassifierOptions().lr();
  int64_t batch_size_ = ClassifierOptions().batch_size();
  bool flip_ = ClassifierOptions().flip();
  std::string data_dir_;
  int threads_ = 0;
  std::string device_ = "auto";
  std::string log_level_ = "info";
};

}  // namespace saddle::cli
