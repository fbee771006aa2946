// `saddle demo`: the README's main job. A WGAN-GP learns Fashion-MNIST on every rank at once:
// each rank computes the game's operator on its own shard, quantizes it with adaptive (ALQ)
// levels, and qgenx steps with the average of the decoded operators. It ends with the FID curve,
// the bytes sent beside what fp32 would have sent, and the path of the sample grid.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "commands.h"
#include "saddle/error.h"
#include "saddle/games/registry.h"
#include "saddle/run/files.h"
#include "saddle/run/runner.h"

namespace saddle::cli {

DemoCommand::DemoCommand(CLI::App& app)
    : app_(app.add_subcommand(
          "demo",
          "WGAN-GP on Fashion-MNIST with qgenx and adaptive quantization (run it under "
          "mpirun for several ranks): FID, bytes on the wire, sample pictures")) {
  app_->add_option("--iters", iters_, "Iterations")->capture_default_str();
  app_->add_option("--filters", filters_, "Width of the DCGAN-32 players")->capture_default_str();
  app_->add_option("--batch", batch_, "Images per operator evaluation on each rank")
      ->capture_default_str();
  app_->add_option("--lr", lr_, "Constant qgenx step size")->capture_default_str();
  app_->add_option("--quantizer", quantizer_, "Operator compression on the wire (none: fp32)")
      ->capture_default_str();
  app_->add_option("--bits", bits_, "Bits per coordinate (2..8)")->capture_default_str();
  app_->add_option("--eval-every", eval_every_, "Iterations between FID evaluations and pictures")
      ->capture_default_str();
  app_->add_option("--fid-samples", fid_samples_, "Generated images per FID evaluation")
      ->capture_default_str();
  app_->add_option("--classifier", classifier_,
                   "Fashion-MNIST classifier for FID (trained there once when missing)")
      ->capture_default_str();
  app_->add_option("--data-dir", data_dir_, "Fashion-MNIST folder (default: the Debian package's)");
  app_->add_option("--out", out_, "Output directory")->capture_default_str();
  app_->add_option("--seed", seed_, "Seed of the networks, the samples and the quantizers")
      ->capture_default_str();
  app_->add_option("--rank-timeout", rank_timeout_,
                   "Seconds a rank waits for the others in a collective before it ends the job "
                   "(0: no limit)")
      ->capture_default_str();
  device_.add_to(*app_);
  app_->add_option("--log-level", log_level_, "error | warn | info | debug")->capture_default_str();
  app_->add_flag("--no-progress", no_progress_, "Do not show progress");
}

int DemoCommand::run(Communicator& comm) {
  Logger logger(rank_log_level(parse_log_level(log_level_), comm.rank()), comm.rank(), comm.size());
  comm.set_timeout(rank_timeout_);
  check_ranks_agree(comm, {{"iters", iters_},
                           {"filters", filters_},
                           {"batch", batch_},
                           {"lr", lr_},
                           {"quantizer", quantizer_},
                           {"bits", bits_},
                           {"eval-every", eval_every_},
                           {"fid-samples", fid_samples_},
                           {"seed", seed_},
                           {"transport", device_.transport},
                           {"precision", device_.precision}});
  SADDLE_CHECK(iters_ > 0, "invalid --iters ", iters_, " (must be > 0)");
  SADDLE_CHECK(eval_every_ > 0, "invalid --eval-every ", eval_every_, " (must be > 0)");
  SADDLE_CHECK(!out_.empty(), "invalid --out: empty path");
  SADDLE_CHECK(!classifier_.empty(), "invalid --classifier: empty path");
  // Options are checked (codec, game, solver) before the classifier's training: a typo must not
  // cost a minute.
  const std::string exchange_text = exchange_label(quantizer_, bits_);
  device_.check_syntax();
  if (comm.rank() == 0) prepare_output_dir(out_);
  RunDevice where(device_, comm, logger);

  GameOptions game_options;
  game_options.seed = seed_;
  game_options.rank = comm.rank();
  game_options.ranks = comm.size();
  game_options.device = where.device();
  game_options.cuda_graphs = where.cuda_graphs();
  game_options.dataset = "fashion-mnist";
  game_options.data_dir = data_dir_;
  game_options.filters = filters_;
  game_options.batch = batch_;
  game_options.classifier = classifier_;
  game_options.fid_samples = fid_samples_;
  auto game = make_game("wgan-gp", game_options);

  SolverOptions solver_options;
  solver_options.lr(lr_).step_size(StepSizeKind::kConstant);
  auto solver = make_solver("qgenx", game->params(), game->players(), solver_options);

  ExchangeFlags flags;
  flags.quantizer = quantizer_;
  flags.bits = bits_;
  Exchange exchange(where.comm(), exchange_options(flags, seed_), logger);

  // The classifier before the run, on rank 0 alone, so its one-time training shows up as such
  // rather than as a silent first evaluation. The other ranks wait; an error on rank 0 ends them
  // all.
  if (comm.rank() == 0) {
    if (!path_exists(classifier_)) {
      logger.info(
          "the FID classifier {} is missing: training it once (about a minute on two "
          "idle cores; later runs load it)",
          classifier_);
    }
    load_or_train_classifier(
        classifier_, ClassifierOptions().data_dir(data_dir_).device(where.device()), logger);
  }
  // The others wait for rank 0's training without a time limit (a minute or more).
  comm.set_timeout(0);
  comm.barrier();
  comm.set_timeout(rank_timeout_);

  // The game table's divergence retries, as `saddle solve --game wgan-gp` takes them.
  const int64_t retries = game_spec("wgan-gp").defaults.divergence_retries.value_or(0);
  RunOptions run_options;
  run_options.iterations(iters_)
      .seed(seed_)
      .out_dir(out_)
      .eval_every(eval_every_)
      .divergence_retries(retries)
      .overwrite(true)  // the demo's folder is replaced by every demo
      .stop_requested([] { return stop_requested(); })
      .precision(where.precision())
      .progress(!no_progress_ && logger.enabled(LogLevel::kInfo));
  nlohmann::ordered_json config = {{"command", "demo"},
                                   {"game", "wgan-gp"},
                                   {"dataset", "fashion-mnist"},
                                   {"solver", "qgenx"},
                                   {"step-size", "constant"},
                                   {"lr", lr_},
                                   {"filters", filters_},
                                   {"batch", batch_},
                                   {"quantizer", quantizer_},
                                   {"bits", bits_},
                                   {"iters", iters_},
                                   {"eval-every", eval_every_},
                                   {"divergence-retries", retries},
                                   {"fid-samples", fid_samples_},
                                   {"classifier", classifier_},
                                   {"seed", seed_},
                                   {"ranks", comm.size()},
                                   {"device", device_.device},
                                   {"transport", where.transport()},
                                   {"precision", device_.precision}};
  logger.info(
      "wgan-gp on Fashion-MNIST ({} parameters, {} filters), qgenx lr {}, {} iterations "
      "on {} rank(s), operators exchanged as {}",
      game->dim(), filters_, lr_, iters_, comm.size(), exchange_text);
  RunResult result = saddle::run(*game, *solver, exchange, run_options, logger, config);
  if (comm.rank() != 0) return 0;

  std::string text = fmt::format(
      "\nwgan-gp on Fashion-MNIST, qgenx, {} rank(s), {} on the wire: {} iterations in {:.0f} "
      "s\n\n",
      result.ranks, exchange_text, result.iterations, result.wall_seconds);
  text += fmt::format("{:>9} {:>10} {:>16}\n", "iteration", "FID", "Inception score");
  for (const auto& [iteration, metrics] : result.evaluations) {
    const auto fid = find_metric(metrics, "fid");
    const auto score = find_metric(metrics, "inception_score");
    if (!fid || !score) continue;
    text += fmt::format("{:>9} {:>10.1f} {:>16.3f}\n", iteration, *fid, *score);
  }
  if (!result.evaluations.empty()) {
    const auto first = find_metric(result.evaluations.front().second, "fid");
    const auto last = find_metric(result.evaluations.back().second, "fid");
    if (first && last) {
      text +=
          fmt::format("\nFID {:.1f} -> {:.1f} (lower is better; features of the classifier {})\n",
                      *first, *last, classifier_);
    }
  }
  const double fraction = static_cast<double>(result.bytes_sent_all) /
                          static_cast<double>(std::max<int64_t>(1, result.fp32_bytes_all));
  text += fmt::format(
      "bytes sent by all ranks: {} where fp32 would have sent {} ({:.1f}%, {:.2f} "
      "bits/coordinate)\n",
      human_bytes(result.bytes_sent_all), human_bytes(result.fp32_bytes_all), 100.0 * fraction,
      result.summary["bits_per_coordinate"].get<double>());
  text += fmt::format("ranks agree: {}\n", result.ranks_agree ? "yes" : "NO");
  if (!result.samples_path.empty()) text += fmt::format("samples: {}\n", result.samples_path);
  text += fmt::format("metrics: {0}/metrics.jsonl, {0}/summary.json\n", out_);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

}  // namespace saddle::cli
