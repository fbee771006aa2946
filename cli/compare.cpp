// `saddle compare`: every solver on the same stochastic bilinear game, side by side, as a table;
// under mpirun each rank draws its own samples and the operators travel quantized.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "commands.h"
#include "saddle/comm/exchange.h"
#include "saddle/error.h"
#include "saddle/run/runner.h"

namespace saddle::cli {

namespace {

// Settings that work for each solver on the compared game (condition 5, largest singular value 1).
struct CompareEntry {
  std::string solver;
  double lr;
  StepSizeKind step;
};

// A row's output folder: the solver's name, with the step rule where the solver has two rows.
std::string entry_dir(const std::vector<CompareEntry>& entries, const CompareEntry& entry) {
  const auto same = std::count_if(entries.begin(), entries.end(),
                                  [&](const CompareEntry& e) { return e.solver == entry.solver; });
  return same > 1 ? entry.solver + "-" + step_size_name(entry.step) : entry.solver;
}

const std::vector<CompareEntry>& compare_entries() {
  static const std::vector<CompareEntry> kEntries = {
      {"gda", 0.1, StepSizeKind::kConstant},
      {"alt-gda", 0.1, StepSizeKind::kConstant},
      {"eg", 0.5, StepSizeKind::kConstant},
      {"ogda", 0.5, StepSizeKind::kConstant},
      {"extra-adam", 0.01, StepSizeKind::kConstant},
      {"optimistic-adam", 0.01, StepSizeKind::kConstant},
      {"qgenx", 1.0, StepSizeKind::kAuto},
      {"qgenx", 0.5, StepSizeKind::kConstant}};
  return kEntries;
}

}  // namespace

CompareCommand::CompareCommand(CLI::App& app)
    : app_(
          app.add_subcommand("compare", "Every solver on one bilinear game, compared in a table")) {
  app_->add_option("--iters", iters_, "Iterations per solver")->capture_default_str();
  app_->add_option("--seed", seed_, "Seed of the game")->capture_default_str();
  app_->add_option("--dim", dim_, "Dimension of each player")->capture_default_str();
  app_->add_option("--noise", noise_, "Stochastic oracle: none | absolute | relative | finite-sum")
      ->capture_default_str();
  app_->add_option("--noise-scale", noise_scale_, "Scale of the oracle noise")
      ->capture_default_str();
  app_->add_option("--quantizer", quantizer_, "Operator compression on the wire")
      ->capture_default_str();
  app_->add_option("--bits", bits_, "Bits per coordinate (2..8)")->capture_default_str();
  app_->add_option("--out", out_, "Directory for one output folder per solver")
      ->capture_default_str();
  app_->add_flag("--overwrite", overwrite_, "Replace the comparison that --out already holds");
  device_.add_to(*app_);
  app_->add_option("--log-level", log_level_, "error | warn | info | debug")->capture_default_str();
}

int CompareCommand::run(Communicator& comm) {
  Logger logger(rank_log_level(parse_log_level(log_level_), comm.rank()), comm.rank(), comm.size());
  SADDLE_CHECK(iters_ > 0, "invalid --iters ", iters_, " (must be > 0)");
  const auto& entries = compare_entries();
  if (!out_.empty() && !overwrite_) {
    for (const auto& entry : entries) {
      const std::string dir = out_ + "/" + entry_dir(entries, entry);
      SADDLE_CHECK(run_files(dir, 0).empty(), "--out ", out_, " already holds a comparison (", dir,
                   "): replace it with --overwrite, or choose another --out");
    }
  }
  RunDevice where(device_, comm, logger);
  GameOptions game_options;
  game_options.device = where.device();
  game_options.dim = dim_;
  game_options.seed = seed_;
  game_options.noise = noise_;
  game_options.noise_scale = noise_scale_;
  game_options.rank = comm.rank();
  game_options.ranks = comm.size();
  ExchangeFlags flags;
  flags.quantizer = quantizer_;
  flags.bits = bits_;
  std::string table = fmt::format(
      "bilinear game, dim {} per player, condition {}, noise {} {}, {} iterations, {} rank(s), "
      "exchange {}\n\n",
      dim_, game_options.condition, noise_, noise_scale_, iters_, comm.size(),
      exchange_label(quantizer_, bits_));
  table += fmt::format("{:<16} {:>9} {:>6} {:>7} {:>11} {:>11} {:>11} {:>11} {:>7}  {}\n", "solver",
                       "step", "lr", "calls", "distance_sq", "||F||^2", "bytes sent", "fp32 bytes",
                       "seconds", "result");
  int64_t total_bytes = 0, total_fp32 = 0;
  for (const auto& entry : entries) {
    auto game = make_game("bilinear", game_options);
    SolverOptions options;
    options.lr(entry.lr).step_size(entry.step);
    auto solver = make_solver(entry.solver, game->params(), game->players(), options);
    Exchange exchange(where.comm(), exchange_options(flags, seed_), logger);
    RunOptions run_options;
    run_options.iterations(iters_)
        .seed(seed_)
        .progress(false)
        .precision(where.precision())
        .overwrite(overwrite_)
        .out_dir(out_.empty() ? "" : out_ + "/" + entry_dir(entries, entry));
    const double start_distance = *find_metric(game->metrics(), "distance_sq");
    std::string result_text;
    double distance = 0, op = 0, seconds = 0;
    int64_t bytes = 0, fp32 = 0;
    try {
      RunResult result = saddle::run(*game, *solver, exchange, run_options, logger);
      distance = *find_metric(result.final_metrics, "distance_sq");
      op = *find_metric(result.final_metrics, "operator_norm_sq");
      seconds = result.wall_seconds;
      bytes = result.bytes_sent_all;
      fp32 = result.fp32_bytes_all;
      total_bytes += bytes;
      total_fp32 += fp32;
      result_text = distance < 1e-8 * start_distance ? "converged"
                    : distance < start_distance      ? "slowly converging"
                                                     : "not converging";
    } catch (const AgreedError& e) {
      // A divergence that every rank saw at the same iteration (any other error ends the job:
      // it may have happened on one rank only, and the others would wait for it).
      result_text = e.what();
      distance = op = std::numeric_limits<double>::quiet_NaN();
    }
    table += fmt::format(
        "{:<16} {:>9} {:>6} {:>7} {:>11.3e} {:>11.3e} {:>11} {:>11} {:>7.2f}  {}\n", entry.solver,
        step_size_name(entry.step), entry.lr, solver->oracle_calls_per_step() * iters_, distance,
        op, human_bytes(bytes), human_bytes(fp32), seconds, result_text);
  }
  if (total_fp32 > 0) {
    table +=
        fmt::format("\nall ranks sent {} where fp32 would have sent {} ({:.1f}%)\n",
                    human_bytes(total_bytes), human_bytes(total_fp32),
                    100.0 * static_cast<double>(total_bytes) / static_cast<double>(total_fp32));
  }
  if (!out_.empty())
    table += fmt::format(
        "\nper-solver metrics.jsonl and summary.json in {}/<solver>/ (qgenx-auto, "
        "qgenx-constant)\n",
        out_);
  if (comm.rank() == 0) std::fwrite(table.data(), 1, table.size(), stdout);
  return 0;
}

}  // namespace saddle::cli
