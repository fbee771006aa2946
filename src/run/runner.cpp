#include "saddle/run/runner.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "saddle/error.h"
#include "saddle/run/files.h"
#include "saddle/run/progress.h"

namespace saddle {

uint64_t stream_seed(uint64_t seed, uint64_t stream) {
  // splitmix64 of a combination, so nearby (seed, stream) pairs give unrelated generators.
  uint64_t z = seed * 0x9E3779B97F4A7C15ULL + stream + 0x632BE59BD9B4E019ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t tensor_hash(const torch::Tensor& tensor) {
  torch::Tensor t = tensor.contiguous();
  const auto* bytes = static_cast<const unsigned char*>(t.data_ptr());
  const size_t n = static_cast<size_t>(t.numel()) * t.element_size();
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; ++i) {
    h ^= bytes[i];
    h *= 1099511628211ULL;
  }
  return h;
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
  void write(const nlohmann::ordered_json& record) {
    if (!enabled()) return;
    out_ << record.dump() << '\n';
    out_.flush();
    SADDLE_CHECK(out_.good(), "cannot write ", partial_path_);
  }
  void commit() {
    if (!enabled()) return;
    out_.close();
    std::error_code ec;
    std::filesystem::rename(partial_path_, final_path_, ec);
    SADDLE_CHECK(!ec, "cannot rename ", partial_path_, " to ", final_path_, ": ", ec.message());
  }

 private:
  std::string final_path_, partial_path_;
  std::ofstream out_;
};

}  // namespace

RunResult run(Game& game, Solver& solver, Exchange& exchange, const RunOptions& options,
              const Logger& logger, const nlohmann::ordered_json& config) {
  const int64_t iterations = options.iterations();
  SADDLE_CHECK(iterations > 0, "invalid --iters ", iterations, " (must be > 0)");
  SADDLE_CHECK(options.log_every() >= 0, "invalid --log-every ", options.log_every(),
               " (must be >= 0)");
  SADDLE_CHECK(options.simulate_ranks() >= 1, "invalid --simulate-ranks ",
               options.simulate_ranks(), " (must be >= 1)");
  Communicator& comm = exchange.communicator();
  const int rank = comm.rank();
  const int ranks = comm.size();
  SADDLE_CHECK(ranks == 1 || options.simulate_ranks() == 1,
               "--simulate-ranks stands in for mpirun in one process; do not combine it with "
               "mpirun (", ranks, " ranks)");
  const bool writer = rank == 0 && !options.out_dir().empty();
  if (writer) prepare_output_dir(options.out_dir());
  MetricsWriter metrics_out(writer ? options.out_dir() : "");

  // Rank r (or simulated rank r) draws its samples from stream (seed, r).
  std::vector<at::Generator> generators;
  for (int64_t r = 0; r < options.simulate_ranks(); ++r) {
    const uint64_t stream = options.simulate_ranks() > 1 ? r : rank;
    generators.push_back(at::make_generator<at::CPUGeneratorImpl>(stream_seed(options.seed(), stream)));
  }

  Ledger& ledger = exchange.ledger();
  Oracle oracle = [&]() -> torch::Tensor {
    const auto start = Clock::now();
    torch::Tensor local = game.operator_at(generators[0]);
    for (size_t r = 1; r < generators.size(); ++r) local.add_(game.operator_at(generators[r]));
    if (generators.size() > 1) local.div_(static_cast<double>(generators.size()));
    ledger.seconds_compute += seconds_since(start);
    return exchange.average(local);
  };

  IterateAverage average(options.averaging(), options.ema_decay());
  torch::Tensor z = game.params();
  const int64_t log_every =
      options.log_every() > 0 ? options.log_every() : std::max<int64_t>(1, iterations / 100);

  ProgressBar progress(iterations, options.progress() && rank == 0,
                       ProgressBar::stderr_is_terminal());
  std::string status;
  Metrics last;

  auto total_bytes = [&]() {
    torch::Tensor counts = torch::tensor({ledger.bytes_sent, ledger.coordinates_sent}, torch::kInt64);
    comm.allreduce_sum(counts);
    return std::make_pair(counts[0].item<int64_t>(), counts[1].item<int64_t>());
  };
  auto diverged = [&](int64_t t, const std::string& what) {
    std::string where = metrics_out.enabled()
                            ? fmt::format(" (records so far in {})", metrics_out.partial_path())
                            : std::string();
    return Error(fmt::format("diverged at iteration {}: {}{}", t, what, where));
  };
  auto record = [&](int64_t t) {
    const auto [bytes_all, coords_all] = total_bytes();
    if (rank != 0) return;
    Metrics metrics = game.metrics();
    if (average.enabled() && average.count() > 0) {
      torch::NoGradGuard no_grad;
      torch::Tensor saved = z.clone();
      z.copy_(average.value());
      for (const auto& [name, value] : game.metrics()) metrics.emplace_back(name + "_avg", value);
      z.copy_(saved);
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
                   : fmt::format("{} {:.3e}", metrics.front().first, metrics.front().second);
  };

  const auto start = Clock::now();
  record(0);
  for (int64_t t = 0; t < iterations; ++t) {
    exchange.begin_iteration(t);
    solver.step(oracle);
    // Every rank holds the same z, so every rank detects a divergence at the same iteration.
    if (!torch::isfinite(z).all().item<bool>()) throw diverged(t + 1, "parameters are not finite");
    average.update(z);
    if ((t + 1) % log_every == 0 || t + 1 == iterations) record(t + 1);
    progress.update(t + 1, status);
  }
  const double wall = seconds_since(start);
  progress.finish(status);

  RunResult result;
  result.iterations = iterations;
  result.wall_seconds = wall;
  result.final_metrics = last;
  result.ledger = ledger;
  result.ranks = ranks;
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
  summary["config"] = config;
  result.summary = summary;

  if (writer) {
    metrics_out.commit();
    write_file_atomic(options.out_dir() + "/summary.json", summary.dump(2) + "\n");
  }
  logger.debug("run finished: {} iterations in {:.3f} s", iterations, wall);
  return result;
}

}  // namespace saddle
