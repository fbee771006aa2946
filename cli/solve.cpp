// `saddle solve`: one game, one solver, optionally many ranks and a quantized exchange.
#include <fmt/format.h>

#include <cstdio>
#include <optional>
#include <set>
#include <type_traits>

#include "commands.h"
#include "saddle/comm/exchange.h"
#include "saddle/error.h"
#include "saddle/run/files.h"
#include "saddle/run/runner.h"

namespace saddle::cli {

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// The whole of `text` as a number, or nothing (no partial parses such as "5e-4x").
template <typename T>
std::optional<T> parse_whole(const std::string& text) {
  size_t used = 0;
  try {
    const T value = std::is_integral_v<T> ? static_cast<T>(std::stoll(text, &used))
                                          : static_cast<T>(std::stod(text, &used));
    if (used == text.size() && !text.empty()) return value;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

std::vector<int64_t> parse_schedule(const std::vector<std::string>& items) {
  std::vector<int64_t> out;
  for (const auto& item : items) {
    const auto value = parse_whole<int64_t>(item);
    SADDLE_CHECK(value.has_value() && *value >= 0, "invalid --level-schedule entry '", item,
                 "' (expected iterations >= 0)");
    out.push_back(*value);
  }
  return out;
}

}  // namespace

void ExchangeFlags::add_to(ConfigBinder& binder) {
  binder.add("quantizer", quantizer,
             "Operator compression: " + join(quantizer_names()) + " (none sends fp32)");
  binder.add("bits", bits, "Bits per coordinate of level-set quantizers, sign included (2..8)");
  binder.add("bucket-size", bucket_size, "Coordinates per bucket; each bucket sends its own norm");
  binder.add("norm", norm, "Bucket normalization: l2 | linf");
  binder.add("coder", coder, "Wire coding of level indices: fixed (bit-packing) | entropy");
  binder.add("level-schedule", level_schedule,
             "Iterations at which adaptive levels (alq, amq) are refit");
  binder.add("level-every", level_every,
             "After the schedule, refit adaptive levels every N iterations");
  binder.add("collective", collective,
             "How ranks average: allgather (each rank receives every rank's message) | two-phase "
             "(quantized reduce-scatter then all-gather: per rank, under one message at --bits and "
             "one at --second-bits whatever the ranks) | auto (two-phase from " +
                 std::to_string(kTwoPhaseFromRanks) + " ranks)");
  binder.add("overlap", overlap,
             "allgather: cut the operator into N pieces of whole buckets, each sent as soon as the "
             "game has computed it (wgan-gp: the critic's while the generator's gradient is "
             "computed) and decoded as soon as it arrives (the same averages) | off | auto (with "
             "2+ ranks, one piece per " +
                 std::to_string(kOverlapPieceCoordinates) + " coordinates, at most " +
                 std::to_string(kOverlapMaxPieces) + ")");
  binder.add("second-bits", second_bits,
             "two-phase: bits of the owners' second quantization (its noise is not averaged over "
             "ranks, so it takes more bits than the first; level quantizers, 2..8)");
}

ExchangeOptions exchange_options(const ExchangeFlags& flags, uint64_t seed) {
  SADDLE_CHECK(flags.level_every > 0, "invalid --level-every ", flags.level_every,
               " (must be > 0)");
  CodecOptions codec;
  codec.quantizer(flags.quantizer)
      .bits(flags.bits)
      .bucket_size(flags.bucket_size)
      .norm(parse_norm(flags.norm))
      .coder(parse_coder(flags.coder));
  ExchangeOptions options;
  options.codec(codec)
      .level_schedule(parse_schedule(flags.level_schedule))
      .level_every(flags.level_every)
      .collective(flags.collective)
      .second_bits(flags.second_bits)
      .overlap(flags.overlap)
      .seed(seed);
  resolve_collective(flags.collective, 1);  // a bad name fails here, before any run
  resolve_overlap(flags.overlap, 0, 1, 1);
  return options;
}

namespace {
// Shown as the default of the options whose default the game table sets (README: per-game
// defaults).
constexpr const char* kPerGame = "the game's";
}  // namespace

SolveCommand::SolveCommand(CLI::App& app)
    : app_(app.add_subcommand("solve", "Solve one game with one solver")), binder_(*app_) {
  app_->add_option("--config", config_,
                   "JSON file of options keyed by long flag name (flags given here override it)");
  binder_.add("game", game_, "Game: " + join(game_names()));
  binder_.add("solver", solver_, "Solver: " + join(solver_names()));
  binder_.add("iters", iters_, "Iterations (> 0; with --max-bytes, the most it may run)")
      ->default_str(kPerGame);
  binder_.add("max-bytes", max_bytes_,
              "Stop after the iteration at which all ranks together have sent this many bytes "
              "(64k, 1.5M, 2G, 64KiB; 0: no budget)");
  binder_.add("seed", seed_, "Seed of the game instance, the samples and the quantizers");
  binder_.add("out", out_, "Directory for metrics.jsonl and summary.json (none: no files)");
  binder_
      .add("step-size", step_size_,
           "Step rule: auto | qgenx | adagrad | constant (default: auto for eg, ogda and qgenx, "
           "qgenx for qgenx --variant dual-averaging, constant otherwise)")
      ->default_str(kPerGame);
  binder_.add("lr", lr_, "Base learning rate gamma_0 of every player")->default_str(kPerGame);
  binder_
      .add("step-max", step_max_,
           "auto only: the largest step, in units of --lr, the rule may take (0: no limit)")
      ->default_str(kPerGame);
  binder_.add("player-lr", player_lr_, "Per-player learning rate NAME=LR (repeatable)");
  binder_.add("variant", variant_,
              "qgenx extrapolation: eg | optimistic | dual-averaging (anchored; its step never "
              "grows)");
  binder_
      .add("precondition", precondition_,
           "eg, ogda, qgenx: none | adam (Adam's momentum and metric on the exchanged "
           "operators inside the extra-gradient template; uses --beta1, --beta2 and --eps)")
      ->default_str(kPerGame);
  binder_.add("beta1", beta1_, "Adam-family first-moment decay")->default_str(kPerGame);
  binder_.add("beta2", beta2_, "Adam-family second-moment decay")->default_str(kPerGame);
  binder_.add("eps", eps_, "Adam-family epsilon");
  binder_
      .add("averaging", averaging_,
           "Iterate averaging reported beside the last iterate: none | uniform | weighted | ema")
      ->default_str(kPerGame);
  binder_.add("ema-decay", ema_decay_, "Decay of the exponential moving average")
      ->default_str(kPerGame);
  binder_
      .add("dim", game_options_.dim,
           "Analytic games: dimension of each player (10; separable: 500000)")
      ->default_str(kPerGame);
  binder_.add("condition", game_options_.condition, "Analytic games: condition number (>= 1)");
  binder_.add("noise", game_options_.noise,
              "Stochastic oracle: none | absolute | relative | finite-sum");
  binder_.add("noise-scale", game_options_.noise_scale, "Scale of the oracle noise");
  binder_.add("samples", game_options_.samples, "Finite-sum size (noise finite-sum)");
  binder_
      .add("batch", game_options_.batch,
           "Samples per operator evaluation on each rank (0: the game's default: 1 for bilinear "
           "and quadratic, 64 for wgan-gp, 256 for mog8/mog25)")
      ->default_str(kPerGame);
  binder_.add("dataset", game_options_.dataset, "wgan-gp: fashion-mnist | cifar10");
  binder_.add("data-dir", game_options_.data_dir,
              "Directory of the dataset files (default: /usr/share/datasets/fashion-mnist)");
  binder_.add("filters", game_options_.filters, "GAN games: width of the players' layers")
      ->default_str(kPerGame);
  binder_.add("latent", game_options_.latent, "GAN games: generator input size")
      ->default_str(kPerGame);
  binder_.add("gp-lambda", game_options_.gp_lambda, "WGAN-GP gradient-penalty weight");
  binder_.add("gan-loss", game_options_.gan_loss, "GAN loss: wgan-gp | nonsaturating")
      ->default_str(kPerGame);
  binder_.add("classifier", game_options_.classifier,
              "wgan-gp on fashion-mnist: classifier file for FID and Inception score at each "
              "evaluation (trained and cached there when missing; see saddle classifier)");
  binder_.add("fid-samples", game_options_.fid_samples, "Generated images per FID evaluation");
  exchange_.add_to(binder_);
  binder_.add("log-every", log_every_, "Iterations between metric records (0: about 100 records)");
  binder_.add("eval-every", eval_every_,
              "Iterations between evaluations (FID, modes, sample pictures in OUT/samples); 0: "
              "start and end only");
  binder_.add("checkpoint-every", checkpoint_every_,
              "Iterations between checkpoints in --out (one is always written at the end)");
  binder_
      .add("divergence-retries", divergence_retries_,
           "Divergences to survive: go back to the last snapshot (every 100 iterations and "
           "at each checkpoint) with every learning rate halved, dropping the records since "
           "(0: a divergence ends the run)")
      ->default_str(kPerGame);
  binder_.add("resume", resume_,
              "Continue the run checkpointed in this directory (same options; it becomes --out)");
  binder_.add("simulate-ranks", simulate_ranks_,
              "One process averaging the samples of K ranks before one exchange (a reference for an "
              "fp32 mpirun -np K; with a quantizer it quantizes the mean once)");
  binder_.add_flag("overwrite", overwrite_,
                   "Replace the run that --out already holds (its files are removed first)");
  binder_.add("rank-timeout", rank_timeout_,
              "Seconds a rank waits for the others in a collective before it ends the job "
              "(0: no limit)");
  device_.add_to(binder_);
  binder_.add("log-level", log_level_, "error | warn | info | debug");
  binder_.add_flag("no-progress", no_progress_, "Do not show progress");
}

namespace {

// Options free to change between a run and its resumption (they change neither the arithmetic
// nor the samples), and options each rank may set for itself.
const std::set<std::string>& resume_free_options() {
  static const std::set<std::string> kFree = {
      "iters",       "max-bytes",   "log-every", "eval-every", "log-level", "checkpoint-every",
      "no-progress", "out",         "resume",    "config",     "overwrite", "rank-timeout",
      "classifier",  "fid-samples", "device",    "transport"};
  return kFree;
}
const std::set<std::string>& per_rank_options() {
  static const std::set<std::string> kPerRank = {
      "out", "resume", "config", "device", "log-level", "no-progress", "rank-timeout"};
  return kPerRank;
}

nlohmann::ordered_json without(const nlohmann::ordered_json& config,
                               const std::set<std::string>& keys) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const auto& [key, value] : config.items()) {
    if (keys.count(key) == 0) out[key] = value;
  }
  return out;
}

}  // namespace

std::string SolveCommand::resolved_step() const {
  if (!step_size_.empty()) return step_size_;
  // Anchored dual averaging takes Q-GenX's own rule, whose step never grows.
  if (solver_ == "qgenx" && variant_ == "dual-averaging") return "qgenx";
  // The extra-gradient family adapts its step by default; the others keep their learning rate.
  return step_size_name(solver_spec(solver_).default_step);
}

void SolveCommand::apply_game_defaults(const Logger& logger) {
  const GameSpec& spec = game_spec(game_);
  const RunDefaults defaults = spec.defaults_for(solver_);
  RunDefaults applied;
  auto take = [this, &applied](const char* flag, auto& target, auto& applied_field,
                               const auto& value) {
    if (!value || binder_.given(flag)) return;
    target = *value;
    applied_field = value;
  };
  take("iters", iters_, applied.iterations, defaults.iterations);
  take("lr", lr_, applied.lr, defaults.lr);
  take("player-lr", player_lr_, applied.player_lr, defaults.player_lr);
  take("step-size", step_size_, applied.step_size, defaults.step_size);
  // The table's ceiling belongs to its auto rule: a step rule chosen by flag drops it.
  const bool auto_rule = parse_step_size(resolved_step()) == StepSizeKind::kAuto;
  if (auto_rule) take("step-max", step_max_, applied.step_max, defaults.step_max);
  take("precondition", precondition_, applied.precondition, defaults.precondition);
  take("beta1", beta1_, applied.beta1, defaults.beta1);
  take("beta2", beta2_, applied.beta2, defaults.beta2);
  take("averaging", averaging_, applied.averaging, defaults.averaging);
  take("ema-decay", ema_decay_, applied.ema_decay, defaults.ema_decay);
  take("batch", game_options_.batch, applied.batch, defaults.batch);
  take("latent", game_options_.latent, applied.latent, defaults.latent);
  take("filters", game_options_.filters, applied.filters, defaults.filters);
  take("gan-loss", game_options_.gan_loss, applied.gan_loss, defaults.gan_loss);
  take("dim", game_options_.dim, applied.dim, defaults.dim);
  take("divergence-retries", divergence_retries_, applied.divergence_retries,
       defaults.divergence_retries);
  if (!applied.describe().empty()) {
    logger.info("{} with {}: the game's defaults {} (flags override them)", game_, solver_,
                applied.describe());
  }
  const std::string poor = spec.poor_pairing(solver_);
  if (!poor.empty()) logger.warn("{} is a poor solver for {}: {}", solver_, game_, poor);
}

int SolveCommand::run(Communicator& comm) {
  const RunResult result = execute(comm);
  if (comm.rank() == 0) {
    std::string table = fmt::format("{} / {}: {} iterations in {:.2f} s on {} rank(s){}\n", game_,
                                    solver_, result.iterations, result.wall_seconds, result.ranks,
                                    result.budget_reached ? " (byte budget spent)" : "");
    for (const auto& [name, value] : result.final_metrics) {
      table += fmt::format("  {:<24} {:.6e}\n", name, value);
    }
    if (result.bytes_sent_all > 0) {
      table +=
          fmt::format("  {:<24} {} ({:.1f}% of the {} fp32 would send, {:.2f} bits/coordinate)\n",
                      "bytes_sent", result.bytes_sent_all,
                      100.0 * result.bytes_sent_all / std::max<int64_t>(1, result.fp32_bytes_all),
                      result.fp32_bytes_all, result.summary["bits_per_coordinate"].get<double>());
    }
    if (result.bytes_received_all > 0) {
      table +=
          fmt::format("  {:<24} {} ({}, {} per rank and exchange)\n", "bytes_received",
                      result.bytes_received_all, result.summary["collective"].get<std::string>(),
                      human_bytes(static_cast<int64_t>(
                          result.summary["bytes_received_per_rank_exchange"].get<double>())));
    }
    table += fmt::format("  {:<24} {}\n", "ranks_agree", result.ranks_agree ? "true" : "false");
    if (!result.samples_path.empty())
      table += fmt::format("  {:<24} {}\n", "samples", result.samples_path);
    if (!out_.empty()) table += fmt::format("  {:<24} {}/summary.json\n", "written", out_);
    std::fwrite(table.data(), 1, table.size(), stdout);
  }
  return 0;
}

RunResult SolveCommand::execute(Communicator& comm) {
  Logger logger(rank_log_level(parse_log_level(log_level_), comm.rank()), comm.rank(), comm.size());
  comm.set_timeout(rank_timeout_);
  // First of all, before anything a rank could wait on: every rank got the same options.
  check_ranks_agree(comm, without(binder_.resolved(), per_rank_options()));
  apply_game_defaults(logger);
  SADDLE_CHECK(iters_ > 0, "invalid --iters ", iters_, " (must be > 0)");
  const int64_t byte_budget = parse_byte_count(max_bytes_, "--max-bytes");
  SADDLE_CHECK(!binder_.given("out") || !out_.empty(), "invalid --out: empty path");
  SADDLE_CHECK(!binder_.given("resume") || !resume_.empty(), "invalid --resume: empty path");
  SADDLE_CHECK(!(overwrite_ && !resume_.empty()),
               "--resume continues the run in its directory; --overwrite would delete it");
  if (!resume_.empty()) {
    SADDLE_CHECK(out_.empty() || out_ == resume_, "--resume ", resume_,
                 " continues in its own directory; drop --out ", out_);
    SADDLE_CHECK(is_directory(resume_), "cannot resume ", resume_, ": no such directory");
    out_ = resume_;
  } else if (!out_.empty() && comm.rank() == 0) {
    prepare_output_dir(out_);  // an unwritable --out fails before the game loads its data
  }
  SADDLE_CHECK(!binder_.given("variant") || solver_ == "qgenx",
               "--variant applies to --solver qgenx only (got --solver ", solver_, ")");
  RunDevice where(device_, comm, logger);
  Communicator& run_comm = where.comm();

  GameOptions game_options = game_options_;
  game_options.seed = seed_;
  game_options.rank = comm.rank();
  game_options.ranks = comm.size();
  game_options.device = where.device();
  game_options.cuda_graphs = where.cuda_graphs();
  auto game = make_game(game_, game_options);

  const std::string step = resolved_step();
  SolverOptions solver_options;
  solver_options.lr(lr_)
      .player_lr(parse_player_rates(player_lr_))
      .step_size(parse_step_size(step))
      .step_max(step_max_)
      .variant(parse_variant(variant_))
      .precondition(parse_precondition(precondition_))
      .beta1(beta1_)
      .beta2(beta2_)
      .eps(eps_);
  auto solver = make_solver(solver_, game->params(), game->players(), solver_options);

  Exchange exchange(run_comm, exchange_options(exchange_, seed_), logger);

  // What the checkpoint must match on resume: every option that changes the arithmetic, the step
  // rule as resolved (qgenx's default is adaptive).
  nlohmann::ordered_json identity = without(binder_.resolved(), resume_free_options());
  identity["step-size"] = step;
  RunOptions run_options;
  run_options.iterations(iters_)
      .byte_budget(byte_budget)
      .seed(seed_)
      .log_every(log_every_)
      .out_dir(out_)
      .averaging(parse_averaging(averaging_))
      .ema_decay(ema_decay_)
      .simulate_ranks(simulate_ranks_)
      .eval_every(eval_every_)
      .checkpoint_every(checkpoint_every_)
      .divergence_retries(divergence_retries_)
      .resume(!resume_.empty())
      .overwrite(overwrite_)
      .identity(identity)
      .stop_requested([] { return stop_requested(); })
      .precision(where.precision())
      .progress(!no_progress_ && logger.enabled(LogLevel::kInfo));
  nlohmann::ordered_json config = binder_.resolved();
  config["step-size"] = step;
  config["ranks"] = comm.size();
  config["transport"] = where.transport();
  config["collective"] = exchange.collective();

  logger.info("{} on {} (dim {}), {} iterations, {} rank(s), exchange {} ({})", solver_, game_,
              game->dim(), iters_, comm.size(), exchange_.quantizer, exchange.collective());
  return saddle::run(*game, *solver, exchange, run_options, logger, config);
}

}  // namespace saddle::cli
