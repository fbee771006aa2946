// The run loop: stage 4 of game -> exchange -> solver -> metrics, and the place they meet.
// Each iteration the solver calls the oracle; the oracle evaluates the game's operator on this
// rank's samples and hands it to the exchange, which returns the average over ranks. The runner
// logs the game's metrics (for the last and the averaged iterate), writes metrics.jsonl and
// summary.json on rank 0, shows progress, and stops with a saddle::Error naming the iteration if
// the run diverges (NaN/Inf is never written as a number).
//
// What a run directory promises (out_dir):
//   * One run at a time: the directory is locked for the run's lifetime; a second run into it
//     fails at once, naming the holder.
//   * A directory that already holds a run is never silently replaced: a fresh run refuses it
//     unless `overwrite` (which first removes that run's files), and `resume` continues it.
//   * Resume continues exactly: it restores the newest checkpoint that every rank holds (each
//     rank keeps its last two), refuses one written with other arithmetic (the first differing
//     option is named) or whose checksum fails, and keeps exactly the metrics records that the
//     checkpoint covers (records written after it, torn lines included, are dropped and counted).
//   * Nothing is half-written: every file is written to a new temporary name and renamed, no
//     write goes through an existing file or link, and a full disk is one error naming the file.
#pragma once

#include <torch/arg.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "saddle/averaging.h"
#include "saddle/comm/exchange.h"
#include "saddle/game.h"
#include "saddle/log.h"
#include "saddle/precision.h"
#include "saddle/run/energy.h"
#include "saddle/solver.h"

namespace saddle {

struct RunOptions {
  // Iterations between the in-memory snapshots a diverged run goes back to (divergence_retries).
  static constexpr int64_t kSnapshotEvery = 100;
  TORCH_ARG(int64_t, iterations) = 1000;
  // A budget of bytes sent by all ranks (0: none): the run stops after the first iteration at
  // which the messages sent so far reach it, and `iterations` is then a cap. Every rank decodes
  // every message, so every rank counts the same total and stops after the same iteration.
  TORCH_ARG(int64_t, byte_budget) = 0;
  // Seeds every rank's sample stream (rank r draws from stream (seed, r)).
  TORCH_ARG(uint64_t, seed) = 0;
  // Iterations between metric records; 0 picks about 100 records per run. The first and the
  // last iteration are always recorded.
  TORCH_ARG(int64_t, log_every) = 0;
  // Directory for metrics.jsonl and summary.json (rank 0 writes); empty writes nothing.
  TORCH_ARG(std::string, out_dir) = "";
  TORCH_ARG(AveragingKind, averaging) = AveragingKind::kNone;
  TORCH_ARG(double, ema_decay) = 0.999;
  // One process standing in for K ranks: the operator is the mean of K evaluations drawn from
  // the streams (seed, 0..K-1), exactly the samples a K-rank run draws. For reference runs.
  TORCH_ARG(int64_t, simulate_ranks) = 1;
  // Progress on stderr (rank 0): a bar on a terminal, a line every 10% otherwise.
  TORCH_ARG(bool, progress) = true;
  // Iterations between evaluations: the game's expensive metrics (FID, modes captured) and a
  // picture of its samples in out_dir/samples/. Always at the start and at the end; 0: only then.
  TORCH_ARG(int64_t, eval_every) = 0;
  // Iterations between checkpoints in out_dir (each rank writes its own file); one is always
  // written at the end when out_dir is set. 0: only at the end.
  TORCH_ARG(int64_t, checkpoint_every) = 0;
  // Continue the run checkpointed in out_dir: its metrics.jsonl continues exactly as if the run
  // had never stopped (same seed and options required; another game or shape is refused).
  TORCH_ARG(bool, resume) = false;
  // A fresh run into an out_dir that holds another run's files removes them first (else refused).
  TORCH_ARG(bool, overwrite) = false;
  // Everything that changes the arithmetic besides what the runner sees itself (the CLI passes
  // its resolved options minus those free to change, such as --iters and logging): a resumed
  // run refuses a checkpoint whose identity differs, naming the first differing key, and ranks
  // must agree on it at the start.
  TORCH_ARG(nlohmann::ordered_json, identity) = nlohmann::ordered_json::object();
  // Polled every iteration (Ctrl-C, a scheduler's SIGTERM): when it returns true on any rank,
  // every rank stops after the same iteration, checkpoints (with out_dir) and run() throws
  // Interrupted.
  TORCH_ARG(std::function<bool()>, stop_requested) = nullptr;
  // Divergences the run survives: when the operator or the parameters go non-finite, every rank
  // goes back to the last snapshot (one is taken every kSnapshotEvery iterations and at every
  // checkpoint, in memory), halves every learning rate and continues; the records written after
  // the snapshot are dropped, and summary.json lists each retry. 0: a divergence ends the run.
  TORCH_ARG(int64_t, divergence_retries) = 0;
  // Arithmetic of the operator evaluations (autocast; fp16 with dynamic loss scaling) on the
  // game's device.
  TORCH_ARG(Precision, precision) = Precision::kFp32;
  // Where the energy counters are read (NVML for a CUDA game, RAPL otherwise).
  TORCH_ARG(EnergyOptions, energy) = EnergyOptions();
};

struct RunResult {
  // Iterations run: fewer than options.iterations when the byte budget ended the run.
  int64_t iterations = 0;
  bool budget_reached = false;  // the byte budget ended the run
  double wall_seconds = 0.0;
  Metrics final_metrics;       // the game's metrics, then "<name>_avg" for the averaged iterate
  Ledger ledger;               // this rank's traffic and time
  int64_t bytes_sent_all = 0;  // over all ranks
  // Messages delivered to a rank from another, over all ranks: what crossed the wire (an
  // all-gather delivers each message K-1 times).
  int64_t bytes_received_all = 0;
  int64_t fp32_bytes_all = 0;  // what sending raw float32 would have cost, over all ranks
  int ranks = 1;
  bool ranks_agree = true;   // identical parameter hash on every rank at the end
  int64_t resumed_from = 0;  // the checkpoint's iteration when resumed
  std::string samples_path;  // the last sample picture written, if any
  // Joules this rank's device used during the run (NaN when no counter could be read).
  double joules = std::numeric_limits<double>::quiet_NaN();
  // Rank 0: the evaluation metrics (FID, modes, ...) at each evaluation point this call ran.
  std::vector<std::pair<int64_t, Metrics>> evaluations;
  nlohmann::ordered_json summary;  // what summary.json holds
};

// Thrown on every rank when the iterate stopped being finite: every rank holds the same z, so
// every rank sees it at the same iteration (a comparison records it and goes on to the next row).
class Diverged : public AgreedError {
 public:
  Diverged(const std::string& what, int64_t iteration) : AgreedError(what), iteration_(iteration) {}
  int64_t iteration() const { return iteration_; }

 private:
  int64_t iteration_;
};

// Thrown on every rank when a run stopped at options.stop_requested(): where it stopped and how
// to continue.
class Interrupted : public AgreedError {
 public:
  Interrupted(const std::string& what, int64_t iteration)
      : AgreedError(what, 130), iteration_(iteration) {}
  int64_t iteration() const { return iteration_; }

 private:
  int64_t iteration_;
};

// The files of a run in `dir` that `rank` writes or replaces (rank 0: also the metrics, summary
// and samples); empty when `dir` holds no run.
std::vector<std::string> run_files(const std::string& dir, int rank);

// Runs `options.iterations` iterations of `solver` on `game`, exchanging operators through
// `exchange`. `config` is the resolved configuration recorded in summary.json.
RunResult run(Game& game, Solver& solver, Exchange& exchange, const RunOptions& options,
              const Logger& logger, const nlohmann::ordered_json& config = {});

// The seed of sample stream `stream` of a run seeded with `seed` (a splitmix64 mix).
uint64_t stream_seed(uint64_t seed, uint64_t stream);

// A 64-bit FNV-1a hash of a tensor's bytes (contiguous copy), for checking ranks agree.
uint64_t tensor_hash(const torch::Tensor& tensor);

}  // namespace saddle
