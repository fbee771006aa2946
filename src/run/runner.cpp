#include "saddle/run/runner.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>

#include "../detail/hash.h"
#include "saddle/device.h"
#include "saddle/error.h"
#include "saddle/run/checkpoint.h"
#include "saddle/run/files.h"
#include "saddle/run/progress.h"

namespace saddle {

uint64_t stream_seed(uint64_t seed, uint64_t stream) {
  // splitmix64 of a combination, so nearby (seed, stream) pairs give unrelated generators.
  return detail::mix64(seed * detail::kGolden64 + stream + 0x632BE59BD9B4E019ULL);
}

uint64_t tensor_hash(const torch::Tensor& tensor) {
  torch::Tensor t = tensor.to(torch::kCPU).contiguous();
  return detail::fnv1a64(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Records of metrics.jsonl, streamed to a ".partial" file that becomes metrics.jsonl only when
// the run completes: a failed run never leaves a metrics.jsonl that looks finished.
class MetricsWriter {
 public:
  explicit MetricsWriter(const std::string& dir) {
    if (dir.empty()) return;
    final_path_ = dir + "/metrics.jsonl";
    partial_path_ = final_path_ + ".partial";
    out_.open(partial_path_, std::ios::trunc);
    SADDLE_CHECK(out_.good(), "cannot write to --out ", dir, ": cannot create ", partial_path_);
  }
  bool enabled() const { return !final_path_.empty(); }
  const std::string& partial_path() const { return partial_path_; }
  void write(const nlohmann::ordered_json& record) { write_raw(record.dump() + "\n"); }
  void write_raw(const std::string& text) {
    if (!enabled() || text.empty()) return;
    out_ << text;
    out_.flush();
    SADDLE_CHECK(out_.good(), "cannot write ", partial_path_);
  }
  void commit() {
    if (!enabled()) return;
    out_.close();
    rename_file(partial_path_, final_path_);
  }

 private:
  std::string final_path_, partial_path_;
  std::ofstream out_;
};

}  // namespace

namespace {

// Whether every entry is finite. The oracle asks this of every operator, so the common case (a
// contiguous CPU float tensor) is one pass without tensor ops: their dispatch alone would cost
// more than a small game's whole step. v * 0 is NaN exactly for non-finite v.
bool all_finite(const torch::Tensor& t) {
  if (!(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous())) {
    return torch::isfinite(t).all().item<bool>();
  }
  const float* v = t.data_ptr<float>();
  const int64_t n = t.numel();
  float bad[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) bad[k] += v[i + k] * 0.0f;
  for (; i < n; ++i) bad[0] += v[i] * 0.0f;
  float total = 0;
  for (float b : bad) total += b;
  return total == 0;
}

// Keeps the records of an earlier run's metrics file that come before iteration `before`.
std::string records_before(const std::string& dir, int64_t before) {
  std::string kept;
  // The partial file, when there is one, is the newest (a run that stopped after the last one
  // that completed).
  for (const std::string& name : {dir + "/metrics.jsonl.partial", dir + "/metrics.jsonl"}) {
    std::ifstream in(name);
    if (!in.good()) continue;
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const auto record = nlohmann::ordered_json::parse(line, nullptr, false);
      SADDLE_CHECK(!record.is_discarded() && record.contains("iter"), "cannot resume: ", name,
                   " holds a line that is not a metrics record");
      if (record["iter"].get<int64_t>() < before) kept += line + "\n";
    }
    return kept;
  }
  throw Error("cannot resume: " + dir + " has no metrics.jsonl");
}

nlohmann::ordered_json identity(const Game& game, const Solver& solver, int rank, int ranks,
                                const RunOptions& options) {
  nlohmann::ordered_json players = nlohmann::ordered_json::array();
  for (const auto& p : game.players()) {
    players.push_back({{"name", p.name}, {"role", role_name(p.role)}, {"numel", p.numel}});
  }
  return {{"game", game.name()},
          {"dim", game.dim()},
          {"players", players},
          {"solver", solver.name()},
          {"rank", rank},
          {"ranks", ranks},
          {"simulate_ranks", options.simulate_ranks()},
          {"averaging", averaging_name(options.averaging())}};
}

}  // namespace

RunResult run(Game& game, Solver& solver, Exchange& exchange, const RunOptions& options,
              const Logger& logger, const nlohmann::ordered_json& config) {
  const int64_t iterations = options.iterations();
  SADDLE_CHECK(iterations > 0, "invalid --iters ", iterations, " (must be > 0)");
  SADDLE_CHECK(options.log_every() >= 0, "invalid --log-every ", options.log_every(),
               " (must be >= 0)");
  SADDLE_CHECK(options.eval_every() >= 0, "invalid --eval-every ", options.eval_every(),
               " (must be >= 0)");
  SADDLE_CHECK(options.checkpoint_every() >= 0, "invalid --checkpoint-every ",
               options.checkpoint_every(), " (must be >= 0)");
  SADDLE_CHECK(options.simulate_ranks() >= 1, "invalid --simulate-ranks ", options.simulate_ranks(),
               " (must be >= 1)");
  SADDLE_CHECK(!options.resume() || !options.out_dir().empty(),
               "--resume needs the run's directory");
  Communicator& comm = exchange.communicator();
  const int rank = comm.rank();
  const int ranks = comm.size();
  SADDLE_CHECK(ranks == 1 || options.simulate_ranks() == 1,
               "--simulate-ranks stands in for mpirun in one process; do not combine it with "
               "mpirun (",
               ranks, " ranks)");
  const std::string& dir = options.out_dir();
  const bool writer = rank == 0 && !dir.empty();
  // Every rank checkpoints into the directory (its own file), so every rank needs it.
  if (!dir.empty()) prepare_output_dir(dir);

  // Rank r (or simulated rank r) draws its samples from stream (seed, r).
  std::vector<at::Generator> generators;
  for (int64_t r = 0; r < options.simulate_ranks(); ++r) {
    const uint64_t stream = options.simulate_ranks() > 1 ? r : rank;
    generators.push_back(
        at::make_generator<at::CPUGeneratorImpl>(stream_seed(options.seed(), stream)));
  }

  Ledger& ledger = exchange.ledger();
  const torch::Device device = game.device();
  check_precision(options.precision(), device);
  // Energy: the whole run on every device; per phase on a GPU, where the phases end with a
  // synchronization anyway (the finiteness check, the decode).
  EnergyProbe energy = open_energy_meter(device, options.energy());
  const bool energy_per_phase = energy.meter != nullptr && device.is_cuda();
  const double joules_at_start = energy.meter ? energy.meter->joules() : 0.0;
  LossScaler scaler;
  // One operator evaluation in the run's precision. fp16 scales the losses; an evaluation that
  // overflows is redone from the same sample (generator, sampler and batch-norm state restored)
  // with a smaller scale.
  auto evaluate = [&](at::Generator& gen) -> torch::Tensor {
    if (options.precision() == Precision::kFp32) return game.operator_at(gen);
    AutocastScope autocast(options.precision(), device);
    if (options.precision() != Precision::kFp16) return game.operator_at(gen);
    Game::State snapshot = game.state();
    for (auto& entry : snapshot) entry.second = entry.second.clone();
    const torch::Tensor gen_state = gen.get_state();
    for (;;) {
      game.set_loss_scale(scaler.scale());
      torch::Tensor f = game.operator_at(gen);
      if (scaler.update(all_finite(f)) || scaler.overflows_in_a_row() > 40) return f;
      game.load_state(snapshot);
      gen.set_state(gen_state);
    }
  };
  int64_t current = 0;  // the iteration being computed, for error messages
  std::function<Error(int64_t, const std::string&)> diverged;
  Oracle oracle = [&]() -> torch::Tensor {
    const auto start = Clock::now();
    const double j0 = energy_per_phase ? energy.meter->joules() : 0.0;
    torch::Tensor local = evaluate(generators[0]);
    for (size_t r = 1; r < generators.size(); ++r) local.add_(evaluate(generators[r]));
    if (generators.size() > 1) local.div_(static_cast<double>(generators.size()));
    // Caught here, before the exchange, so the message names the cause rather than the codec.
    const bool finite = all_finite(local);
    ledger.seconds_compute += seconds_since(start);
    if (!finite) {
      throw diverged(current + 1, fmt::format("the operator on rank {} is not finite (a smaller "
                                              "learning rate may help)",
                                              rank));
    }
    const double j1 = energy_per_phase ? energy.meter->joules() : 0.0;
    torch::Tensor averaged = exchange.average(local);
    if (energy_per_phase) {
      const double j2 = energy.meter->joules();
      ledger.joules_compute += j1 - j0;
      ledger.joules_exchange += j2 - j1;
    }
    return averaged;
  };

  IterateAverage average(options.averaging(), options.ema_decay());
  torch::Tensor z = game.params();
  const int64_t log_every =
      options.log_every() > 0 ? options.log_every() : std::max<int64_t>(1, iterations / 100);
  const nlohmann::ordered_json me = identity(game, solver, rank, ranks, options);

  // Resume: restore every piece of state, and keep the records before the checkpoint.
  int64_t first = 0;
  std::string kept_records;
  if (options.resume()) {
    const std::string path = checkpoint_path(dir, rank);
    Checkpoint checkpoint = load_checkpoint(path);
    nlohmann::ordered_json theirs = checkpoint.meta;
    const int64_t at = theirs.value("iteration", int64_t{-1});
    for (const char* key : {"format", "entries", "iteration"}) theirs.erase(key);
    SADDLE_CHECK(theirs == me, "checkpoint ", path, " belongs to another run: it holds ",
                 theirs.dump(), ", this run is ", me.dump());
    SADDLE_CHECK(at >= 0 && at <= iterations, "checkpoint ", path, " is at iteration ", at,
                 ", beyond --iters ", iterations);
    torch::NoGradGuard no_grad;
    SADDLE_CHECK(checkpoint.get("z").numel() == z.numel(), "checkpoint ", path, ": z has ",
                 checkpoint.get("z").numel(), " entries, the game has ", z.numel());
    z.copy_(checkpoint.get("z"));
    Solver::State solver_state;
    Game::State game_state;
    std::vector<std::pair<std::string, torch::Tensor>> exchange_state;
    for (const auto& [name, tensor] : checkpoint.tensors) {
      if (name.rfind("solver/", 0) == 0) solver_state.emplace_back(name.substr(7), tensor);
      if (name.rfind("game/", 0) == 0) game_state.emplace_back(name.substr(5), tensor);
      if (name.rfind("exchange_", 0) == 0) exchange_state.emplace_back(name, tensor);
    }
    solver.load_state(solver_state);
    game.load_state(game_state);
    exchange.load_state(exchange_state);
    if (average.enabled() && checkpoint.get("average_count").item<int64_t>() > 0) {
      average.restore(checkpoint.get("average").to(z.device()).clone(),
                      checkpoint.get("average_count").item<int64_t>());
    }
    for (size_t r = 0; r < generators.size(); ++r) {
      generators[r].set_state(checkpoint.get("generator/" + std::to_string(r)));
    }
    first = at;
    if (writer) kept_records = records_before(dir, first);
    logger.info("resumed from {} at iteration {}", path, first);
  }
  MetricsWriter metrics_out(writer ? dir : "");
  metrics_out.write_raw(kept_records);

  auto save = [&](int64_t t) {
    if (dir.empty()) return;
    Checkpoint checkpoint;
    checkpoint.meta = me;
    checkpoint.meta["iteration"] = t;
    checkpoint.tensors.emplace_back("z", z);
    for (const auto& [name, tensor] : solver.state())
      checkpoint.tensors.emplace_back("solver/" + name, tensor);
    for (const auto& [name, tensor] : game.state())
      checkpoint.tensors.emplace_back("game/" + name, tensor);
    for (const auto& entry : exchange.state()) checkpoint.tensors.push_back(entry);
    checkpoint.tensors.emplace_back(
        "average", average.value().defined() ? average.value() : torch::zeros({0}));
    checkpoint.tensors.emplace_back("average_count",
                                    torch::tensor({average.count()}, torch::kInt64));
    for (size_t r = 0; r < generators.size(); ++r) {
      checkpoint.tensors.emplace_back("generator/" + std::to_string(r), generators[r].get_state());
    }
    save_checkpoint(checkpoint_path(dir, rank), checkpoint);
  };

  ProgressBar progress(iterations - first, options.progress() && rank == 0,
                       ProgressBar::stderr_is_terminal());
  std::string status;
  Metrics last;
  std::string samples_path;
  std::vector<std::pair<int64_t, Metrics>> evaluations;

  auto total_bytes = [&]() {
    torch::Tensor counts =
        torch::tensor({ledger.bytes_sent, ledger.coordinates_sent}, torch::kInt64);
    comm.allreduce_sum(counts);
    return std::make_pair(counts[0].item<int64_t>(), counts[1].item<int64_t>());
  };
  diverged = [&](int64_t t, const std::string& what) {
    std::string where = metrics_out.enabled()
                            ? fmt::format(" (records so far in {})", metrics_out.partial_path())
                            : std::string();
    return Error(fmt::format("diverged at iteration {}: {}{}", t, what, where));
  };
  // The game's metrics at the current z, then at the averaged iterate with the suffix "_avg".
  auto with_average = [&](const std::function<Metrics()>& measure) {
    Metrics metrics = measure();
    if (average.enabled() && average.count() > 0) {
      torch::NoGradGuard no_grad;
      torch::Tensor saved = z.clone();
      z.copy_(average.value());
      for (const auto& [name, value] : measure()) metrics.emplace_back(name + "_avg", value);
      z.copy_(saved);
    }
    return metrics;
  };
  auto record = [&](int64_t t, bool evaluate) {
    const auto [bytes_all, coords_all] = total_bytes();
    if (rank != 0) return;
    Metrics metrics = with_average([&]() { return game.metrics(); });
    if (evaluate) {
      const Metrics evaluation = with_average([&]() { return game.evaluation_metrics(); });
      metrics.insert(metrics.end(), evaluation.begin(), evaluation.end());
      if (!evaluation.empty()) evaluations.emplace_back(t, evaluation);
      if (writer) {
        create_directories(dir + "/samples");
        const std::string path = fmt::format("{}/samples/iter_{:07d}.png", dir, t);
        if (game.write_samples(path)) samples_path = path;
      }
    }
    nlohmann::ordered_json line;
    line["iter"] = t;
    for (const auto& [name, value] : metrics) {
      if (!std::isfinite(value)) throw diverged(t, fmt::format("{} is {}", name, value));
      line[name] = value;
    }
    line["step_scale"] = solver.step_size().scale();
    line["bytes_sent"] = bytes_all;
    metrics_out.write(line);
    last = metrics;
    const auto shown = find_metric(metrics, "distance_sq");
    status = shown ? fmt::format("distance_sq {:.3e}", *shown)
                   : fmt::format("{} {:.4g}", metrics.front().first, metrics.front().second);
  };
  auto evaluation_due = [&](int64_t t) {
    return t == 0 || t == iterations || (options.eval_every() > 0 && t % options.eval_every() == 0);
  };

  const auto start = Clock::now();
  if (first % log_every == 0 || evaluation_due(first)) record(first, evaluation_due(first));
  for (int64_t t = first; t < iterations; ++t) {
    current = t;
    exchange.begin_iteration(t);
    solver.step(oracle);
    // Every rank holds the same z, so every rank detects a divergence at the same iteration.
    if (!torch::isfinite(z).all().item<bool>()) throw diverged(t + 1, "parameters are not finite");
    average.update(z);
    const bool evaluate = evaluation_due(t + 1);
    if ((t + 1) % log_every == 0 || t + 1 == iterations || evaluate) record(t + 1, evaluate);
    if (options.checkpoint_every() > 0 && (t + 1) % options.checkpoint_every() == 0 &&
        t + 1 < iterations) {
      save(t + 1);
    }
    progress.update(t + 1 - first, status);
  }
  synchronize(device);
  const double wall = seconds_since(start);
  progress.finish(status);
  save(iterations);

  RunResult result;
  result.iterations = iterations;
  result.wall_seconds = wall;
  result.final_metrics = last;
  result.ledger = ledger;
  result.ranks = ranks;
  result.resumed_from = first;
  result.samples_path = samples_path;
  result.evaluations = std::move(evaluations);
  if (energy.meter) result.joules = energy.meter->joules() - joules_at_start;
  const auto [bytes_all, coords_all] = total_bytes();
  result.bytes_sent_all = bytes_all;
  result.fp32_bytes_all = coords_all * 4;

  // Ranks agree when every rank's parameter hash equals rank 0's.
  const uint64_t hash = tensor_hash(z);
  torch::Tensor mine = torch::empty({8}, torch::kUInt8);
  std::memcpy(mine.data_ptr(), &hash, 8);
  for (const auto& other : comm.allgather_bytes(mine)) {
    if (!torch::equal(other, mine)) result.ranks_agree = false;
  }

  nlohmann::ordered_json summary;
  summary["game"] = game.name();
  summary["solver"] = solver.name();
  summary["iterations"] = iterations;
  summary["wall_seconds"] = wall;
  for (const auto& [name, value] : last) summary[name] = value;
  summary["ranks"] = ranks;
  summary["ranks_agree"] = result.ranks_agree;
  summary["bytes_sent"] = result.bytes_sent_all;
  summary["bytes_sent_fp32"] = result.fp32_bytes_all;
  summary["bits_per_coordinate"] =
      coords_all > 0 ? 8.0 * static_cast<double>(bytes_all) / static_cast<double>(coords_all) : 0.0;
  summary["seconds"] = {{"compute", ledger.seconds_compute},
                        {"encode", ledger.seconds_encode},
                        {"communicate", ledger.seconds_communicate},
                        {"decode", ledger.seconds_decode}};
  summary["device"] = describe_device(device);
  summary["precision"] = precision_name(options.precision());
  if (energy.meter) {
    // Joules of the run on this rank's device (rank 0's in summary.json).
    nlohmann::ordered_json joules = {
        {"source", energy.meter->source()},
        {"joules", result.joules},
        {"joules_per_iteration", result.joules / static_cast<double>(iterations - first)}};
    if (energy_per_phase) {
      joules["joules_compute"] = ledger.joules_compute;
      joules["joules_exchange"] = ledger.joules_exchange;
    }
    summary["energy"] = joules;
  } else {
    summary["energy"] = {{"available", false}, {"reason", energy.unavailable}};
  }
  if (!samples_path.empty()) summary["samples"] = samples_path;
  if (first > 0) summary["resumed_from"] = first;
  summary["config"] = config;
  result.summary = summary;

  if (writer) {
    metrics_out.commit();
    write_file_atomic(dir + "/summary.json", summary.dump(2) + "\n");
  }
  logger.debug("run finished: {} iterations in {:.3f} s", iterations - first, wall);
  return result;
}

}  // namespace saddle
