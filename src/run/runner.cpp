#include "saddle/run/runner.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <tuple>

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
using Json = nlohmann::ordered_json;

constexpr const char* kMetrics = "metrics.jsonl";
constexpr const char* kPartial = "metrics.jsonl.partial";
constexpr const char* kSummary = "summary.json";
constexpr const char* kSamples = "samples";

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string hex64(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016" PRIx64, value);
  return text;
}

// Whether every entry is finite and at most `limit` in magnitude. The oracle asks this of every
// operator, so the common case (a contiguous CPU float tensor) is one pass without tensor ops:
// their dispatch alone would cost more than a small game's whole step. v * 0 is NaN exactly for
// non-finite v.
bool all_finite(const torch::Tensor& t, float limit = std::numeric_limits<float>::infinity()) {
  if (!(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous())) {
    torch::Tensor ok = torch::isfinite(t);
    if (std::isfinite(limit)) ok.logical_and_(t.abs() <= limit);
    return ok.all().item<bool>();
  }
  const float* v = t.data_ptr<float>();
  const int64_t n = t.numel();
  float bad[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k)
      bad[k] += v[i + k] * 0.0f + static_cast<float>(std::fabs(v[i + k]) > limit);
  for (; i < n; ++i) bad[0] += v[i] * 0.0f + static_cast<float>(std::fabs(v[i]) > limit);
  float total = 0;
  for (float b : bad) total += b;
  return total == 0;
}

// An operator entry beyond this is a diverged run, and its bucket's float32 norm could overflow
// in the codec (a bucket of up to 1e16 such entries stays below 3.4e38).
constexpr float kLargestOperatorEntry = 1e30f;

torch::Tensor bytes_of(const std::string& text) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(text.size())}, torch::kUInt8);
  if (!text.empty()) std::memcpy(t.data_ptr(), text.data(), text.size());
  return t;
}

// Records of metrics.jsonl, streamed to metrics.jsonl.partial, which becomes metrics.jsonl only
// when the run completes: a failed run never leaves a metrics.jsonl that looks finished. It keeps
// a digest (lines, bytes, FNV-1a) of everything written, which checkpoints record so that a
// resumed run can prove which records belong to them.
class MetricsWriter {
 public:
  MetricsWriter() = default;
  MetricsWriter(const std::string& dir, const std::string& kept)
      : final_path_(join_path(dir, kMetrics)) {
    file_ = std::make_unique<AppendFile>(join_path(dir, kPartial), kept);
    count(kept);
  }
  bool enabled() const { return file_ != nullptr; }
  std::string partial_path() const { return file_ ? file_->path() : std::string(); }
  void write(const Json& record) {
    if (!file_) return;
    const std::string line = record.dump() + "\n";
    file_->append(line);
    count(line);
  }
  Json digest() const { return {{"lines", lines_}, {"bytes", bytes_}, {"fnv1a64", hex64(hash_)}}; }
  void commit() {
    if (!file_) return;
    file_->close();
    rename_file(file_->path(), final_path_);
  }

 private:
  void count(const std::string& text) {
    hash_ = detail::fnv1a64(text.data(), text.size(), hash_);
    bytes_ += static_cast<int64_t>(text.size());
    lines_ += static_cast<int64_t>(std::count(text.begin(), text.end(), '\n'));
  }

  std::string final_path_;
  std::unique_ptr<AppendFile> file_;
  uint64_t hash_ = detail::kFnv64Offset;
  int64_t bytes_ = 0;
  int64_t lines_ = 0;
};

}  // namespace

std::vector<std::string> run_files(const std::string& dir, int rank) {
  std::vector<std::string> found;
  std::vector<std::string> names = {checkpoint_path(dir, rank), checkpoint_path(dir, rank, true)};
  if (rank == 0) {
    for (const char* name : {kSummary, kMetrics, kPartial, kSamples})
      names.push_back(join_path(dir, name));
  }
  for (const auto& path : names) {
    if (path_exists(path)) found.push_back(path);
  }
  return found;
}

namespace {

// Every rank's bytes, in rank order.
std::vector<std::string> gather_text(Communicator& comm, const std::string& text) {
  std::vector<std::string> out;
  for (const auto& t : comm.allgather_bytes(bytes_of(text))) {
    const torch::Tensor c = t.contiguous();
    out.emplace_back(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()));
  }
  return out;
}

std::string shown(const Json& object, const std::string& key) {
  return object.contains(key) ? object.at(key).dump() : std::string("(not set)");
}

// One run of the loop, in named steps: check the options, agree with the other ranks, prepare
// the directory, restore a checkpoint, then iterate (exchange, record, checkpoint) and summarize.
class Runner {
 public:
  Runner(Game& game, Solver& solver, Exchange& exchange, const RunOptions& options,
         const Logger& logger, const Json& config)
      : game_(game),
        solver_(solver),
        exchange_(exchange),
        comm_(exchange.communicator()),
        options_(options),
        logger_(logger),
        config_(config),
        rank_(comm_.rank()),
        ranks_(comm_.size()),
        dir_(options.out_dir()),
        device_(game.device()),
        average_(options.averaging(), options.ema_decay()) {}

  RunResult run() {
    check_options();
    agree_on_identity();
    prepare_directory();
    make_generators();
    connect_step_rule();
    open_energy();
    const int64_t first = options_.resume() ? restore() : start_fresh();
    return loop(first);
  }

 private:
  void check_options() {
    SADDLE_CHECK(options_.iterations() > 0, "invalid --iters ", options_.iterations(),
                 " (must be > 0)");
    SADDLE_CHECK(options_.log_every() >= 0, "invalid --log-every ", options_.log_every(),
                 " (must be >= 0)");
    SADDLE_CHECK(options_.eval_every() >= 0, "invalid --eval-every ", options_.eval_every(),
                 " (must be >= 0)");
    SADDLE_CHECK(options_.checkpoint_every() >= 0, "invalid --checkpoint-every ",
                 options_.checkpoint_every(), " (must be >= 0)");
    SADDLE_CHECK(options_.byte_budget() >= 0, "invalid byte budget ", options_.byte_budget(),
                 " (must be >= 0, 0 for none)");
    SADDLE_CHECK(options_.divergence_retries() >= 0, "invalid --divergence-retries ",
                 options_.divergence_retries(), " (must be >= 0)");
    SADDLE_CHECK(options_.simulate_ranks() >= 1, "invalid --simulate-ranks ",
                 options_.simulate_ranks(), " (must be >= 1)");
    SADDLE_CHECK(!options_.resume() || !dir_.empty(), "--resume needs the run's directory");
    SADDLE_CHECK(!(options_.resume() && options_.overwrite()),
                 "--resume continues the run in its directory; --overwrite would delete it");
    SADDLE_CHECK(options_.identity().is_object(), "RunOptions::identity must be a JSON object");
    SADDLE_CHECK(ranks_ == 1 || options_.simulate_ranks() == 1,
                 "--simulate-ranks stands in for mpirun in one process; do not combine it with "
                 "mpirun (",
                 ranks_, " ranks)");
    check_precision(options_.precision(), device_);
    log_every_ = options_.log_every() > 0 ? options_.log_every()
                                          : std::max<int64_t>(1, options_.iterations() / 100);
  }

  // What a checkpoint must match to be resumed, and what the ranks must agree on: the game, the
  // solver and the layout seen here, plus the caller's identity (options that change the
  // arithmetic).
  Json identity() const {
    Json players = Json::array();
    for (const auto& p : game_.players()) {
      players.push_back({{"name", p.name}, {"role", role_name(p.role)}, {"numel", p.numel}});
    }
    Json id = {{"game", game_.name()},
               {"dim", game_.dim()},
               {"players", players},
               {"solver", solver_.name()},
               {"ranks", ranks_},
               {"simulate_ranks", options_.simulate_ranks()},
               {"averaging", averaging_name(options_.averaging())},
               {"precision", precision_name(options_.precision())}};
    for (const auto& [key, value] : options_.identity().items()) id[key] = value;
    return id;
  }

  // Before any other collective: ranks that disagree on the arithmetic or the iteration count
  // would wait on each other forever.
  void agree_on_identity() {
    Json all = identity();
    all["iters"] = options_.iterations();
    all["byte_budget"] = options_.byte_budget();
    all["resume"] = options_.resume();
    all["out-given"] = !dir_.empty();
    check_ranks_agree(comm_, all);
  }

  void prepare_directory() {
    if (dir_.empty()) return;
    SADDLE_CHECK(!options_.resume() || is_directory(dir_), "cannot resume ", dir_,
                 ": no such directory");
    // Every rank checkpoints into the directory (its own file), so every rank needs it.
    prepare_output_dir(dir_);
    const std::string samples = join_path(dir_, kSamples);
    SADDLE_CHECK(!is_symlink(samples), "--out ", dir_, ": ", samples,
                 " is a symbolic link (saddle writes only inside --out)");
    if (rank_ == 0) lock_ = std::make_unique<DirectoryLock>(dir_);
    comm_.barrier();  // rank 0 holds the lock before anyone touches a file
    if (options_.resume()) return;
    const std::vector<std::string> mine = run_files(dir_, rank_);
    torch::Tensor occupied = torch::tensor({static_cast<int64_t>(mine.size())}, torch::kInt64);
    comm_.allreduce_sum(occupied);
    if (occupied.item<int64_t>() == 0) return;
    if (!options_.overwrite()) {
      std::string what = "files of another run";
      if (rank_ == 0 && path_exists(join_path(dir_, kSummary))) {
        what = "a finished run (summary.json)";
      }
      throw AgreedError("--out " + dir_ + " already holds " + what +
                        ": continue it with --resume " + dir_ + ", or replace it with --overwrite");
    }
    for (const auto& path : mine) remove_tree(path);
    logger_.info("--overwrite: removed the previous run's files in {}", dir_);
    comm_.barrier();
  }

  // The qgenx step rule reads the ranks' own operators, and auto with several ranks estimates
  // their noise from them: the exchange keeps them.
  void connect_step_rule() {
    const StepSizeKind kind = solver_.step_size().kind();
    const int ranks = exchange_.communicator().size();
    if (kind != StepSizeKind::kQgenx && !(kind == StepSizeKind::kAuto && ranks > 1)) return;
    exchange_.keep_rank_operators(true);
    solver_.set_rank_differences(ranks, [this](bool against_previous) {
      return exchange_.rank_sq_difference(against_previous);
    });
  }

  void make_generators() {
    // Rank r (or simulated rank r) draws its samples from stream (seed, r).
    for (int64_t r = 0; r < options_.simulate_ranks(); ++r) {
      const uint64_t stream = options_.simulate_ranks() > 1 ? r : rank_;
      generators_.push_back(
          at::make_generator<at::CPUGeneratorImpl>(stream_seed(options_.seed(), stream)));
    }
  }

  void open_energy() {
    // The whole run on every device; per phase on a GPU, where the phases end with a
    // synchronization anyway (the finiteness check, the decode).
    energy_ = saddle::open_energy_meter(device_, options_.energy());
    energy_per_phase_ = energy_.meter != nullptr && device_.is_cuda();
    joules_at_start_ = energy_.meter ? energy_.meter->joules() : 0.0;
  }

  int64_t start_fresh() {
    if (rank_ == 0 && !dir_.empty()) metrics_ = MetricsWriter(dir_, "");
    return 0;
  }

  // Resume: the newest checkpoint every rank holds, its identity checked, every piece of state
  // restored, and exactly the metrics records it covers kept. Nothing is written before all of
  // that has succeeded.
  int64_t restore() {
    struct Candidate {
      int64_t iteration;
      std::string path;
    };
    std::vector<Candidate> candidates;
    std::string unreadable;
    for (bool previous : {false, true}) {
      const std::string path = checkpoint_path(dir_, rank_, previous);
      if (!path_exists(path)) continue;
      try {
        const Json meta = read_checkpoint_meta(path);
        candidates.push_back({meta.value("iteration", int64_t{-1}), path});
      } catch (const Error& e) {
        unreadable += std::string(unreadable.empty() ? "" : "; ") + e.what();
      }
    }
    Json mine = Json::array();
    for (const auto& c : candidates) mine.push_back(c.iteration);
    const std::vector<std::string> all = gather_text(comm_, mine.dump());
    // The newest iteration that every rank holds.
    int64_t chosen = -1;
    std::string held;
    for (const auto& c : candidates) {
      bool everywhere = c.iteration >= 0;
      for (size_t r = 0; r < all.size() && everywhere; ++r) {
        const Json theirs = Json::parse(all[r], nullptr, false);
        everywhere = theirs.is_array() &&
                     std::find(theirs.begin(), theirs.end(), Json(c.iteration)) != theirs.end();
      }
      if (everywhere) chosen = std::max(chosen, c.iteration);
    }
    for (size_t r = 0; r < all.size(); ++r) {
      held += fmt::format("{}rank {}: {}", r ? ", " : "", r,
                          all[r] == "[]" ? std::string("none") : all[r]);
    }
    if (chosen < 0) {
      throw AgreedError("cannot resume " + dir_ +
                        ": no checkpoint iteration is held by every rank (" + held + ")" +
                        (unreadable.empty() ? "" : "; " + unreadable));
    }
    const auto it = std::find_if(candidates.begin(), candidates.end(),
                                 [&](const Candidate& c) { return c.iteration == chosen; });
    if (it->path != checkpoint_path(dir_, rank_)) {
      logger_.warn(
          "resuming from {} (iteration {}): not every rank holds its newer checkpoint ({})",
          it->path, chosen, held);
    }
    const Checkpoint checkpoint = load_checkpoint(it->path);
    check_checkpoint_identity(checkpoint, it->path);
    SADDLE_CHECK(chosen <= options_.iterations(), "checkpoint ", it->path, " is at iteration ",
                 chosen, ", beyond --iters ", options_.iterations());
    const std::string kept = rank_ == 0 ? kept_records(checkpoint.meta, chosen) : std::string();
    restore_state(checkpoint);
    // The retries the run took before its checkpoint count against its allowance.
    backoffs_ = checkpoint.meta.value("divergence_retries", Json::array());
    retries_used_ = static_cast<int64_t>(backoffs_.size());
    // Every rank has its state: only now is anything written.
    comm_.barrier();
    if (rank_ == 0) metrics_ = MetricsWriter(dir_, kept);
    logger_.info("resumed from {} at iteration {}", it->path, chosen);
    return chosen;
  }

  void check_checkpoint_identity(const Checkpoint& checkpoint, const std::string& path) const {
    SADDLE_CHECK(checkpoint.meta.value("rank", -1) == rank_, "checkpoint ", path,
                 " belongs to rank ", checkpoint.meta.value("rank", -1), ", not rank ", rank_);
    const Json theirs = checkpoint.meta.value("identity", Json::object());
    const Json ours = identity();
    const std::string key = first_difference(theirs, ours);
    SADDLE_CHECK(key.empty(), "cannot resume ", dir_, ": --", key, " was ", shown(theirs, key),
                 " when checkpoint ", path, " was written, and is ", shown(ours, key),
                 " now (a resumed run must compute what the checkpointed one computed; only "
                 "--iters, logging, evaluation and checkpoint options may change)");
  }

  // The records the checkpoint covers, proven by its digest; records written after it (and a
  // torn last line) are dropped, and said so.
  std::string kept_records(const Json& meta, int64_t at) const {
    const Json digest = meta.value("records", Json::object());
    const int64_t bytes = digest.value("bytes", int64_t{-1});
    const std::string expected = digest.value("fnv1a64", std::string());
    std::string path = join_path(dir_, kPartial);
    if (!path_exists(path)) path = join_path(dir_, kMetrics);
    SADDLE_CHECK(path_exists(path), "cannot resume ", dir_, ": it has neither ", kPartial, " nor ",
                 kMetrics, " (the records of checkpoint iteration ", at, ")");
    const std::string text = read_file(path);
    SADDLE_CHECK(bytes >= 0 && static_cast<int64_t>(text.size()) >= bytes, "cannot resume ", dir_,
                 ": ", path, " holds ", text.size(), " bytes of records, fewer than the ", bytes,
                 " that the checkpoint at iteration ", at, " covers (records lost)");
    const std::string prefix = text.substr(0, static_cast<size_t>(bytes));
    SADDLE_CHECK(hex64(detail::fnv1a64(prefix.data(), prefix.size())) == expected, "cannot resume ",
                 dir_, ": the records in ", path, " are not those of the checkpoint at iteration ",
                 at, " (written by another run, or corrupt)");
    const std::string rest = text.substr(prefix.size());
    if (!rest.empty()) {
      const int64_t lines = std::count(rest.begin(), rest.end(), '\n');
      const bool torn = rest.back() != '\n';
      logger_.info(
          "resume: dropped {} record(s){} written after the checkpoint at iteration {} "
          "from {}",
          lines, torn ? " and a torn last line" : "", at, path);
    }
    return prefix;
  }

  void restore_state(const Checkpoint& checkpoint) {
    torch::NoGradGuard no_grad;
    torch::Tensor z = game_.params();
    SADDLE_CHECK(checkpoint.get("z").numel() == z.numel(), "checkpoint: z has ",
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
    solver_.load_state(solver_state);
    game_.load_state(game_state);
    exchange_.load_state(exchange_state);
    if (average_.enabled() && checkpoint.get("average_count").item<int64_t>() > 0) {
      average_.restore(checkpoint.get("average").to(z.device()).clone(),
                       checkpoint.get("average_count").item<int64_t>(),
                       checkpoint.get("average_weight").item<double>());
    }
    for (size_t r = 0; r < generators_.size(); ++r) {
      generators_[r].set_state(checkpoint.get("generator/" + std::to_string(r)));
    }
    scaler_ = LossScaler(checkpoint.meta.value("loss_scale", 65536.0));
  }

  // One operator evaluation in the run's precision. fp16 scales the losses; an evaluation that
  // overflows is redone from the same sample (generator, sampler and batch-norm state restored)
  // with a smaller scale.
  // With `ready` (not with fp16, whose retries would report slices twice), the game reports its
  // slices of F as they are final (Game::operator_in_slices).
  torch::Tensor evaluate(at::Generator& gen, const Game::SliceReady& ready = {}) {
    const auto once = [&] {
      return ready ? game_.operator_in_slices(gen, ready) : game_.operator_at(gen);
    };
    if (options_.precision() == Precision::kFp32) return once();
    AutocastScope autocast(options_.precision(), device_);
    if (options_.precision() != Precision::kFp16) return once();
    Game::State snapshot = game_.state();
    for (auto& entry : snapshot) entry.second = entry.second.clone();
    const torch::Tensor gen_state = gen.get_state();
    for (;;) {
      game_.set_loss_scale(scaler_.scale());
      torch::Tensor f = game_.operator_at(gen);
      if (scaler_.update(all_finite(f)) || scaler_.overflows_in_a_row() > 40) return f;
      game_.load_state(snapshot);
      gen.set_state(gen_state);
    }
  }

  // The solver's oracle: this rank's operator (the mean over simulated ranks), checked, then
  // averaged over ranks by the exchange.
  torch::Tensor oracle() {
    Ledger& ledger = exchange_.ledger();
    const auto start = Clock::now();
    const double j0 = energy_per_phase_ ? energy_.meter->joules() : 0.0;
    // The game's state (batch-norm statistics, ...) before the evaluation, for a solver that
    // retries: an evaluation that goes non-finite must not leave NaN in it for the retry.
    Game::State before;
    if (solver_.retries_non_finite()) {
      before = game_.state();
      for (auto& entry : before) entry.second = entry.second.clone();
    }
    // One evaluation per rank goes to the exchange slice by slice, so that an overlapped exchange
    // sends the slices the game has finished while it computes the others. (Several simulated
    // ranks' mean is known only at the end; fp16 may redo an evaluation; alone, nothing travels.)
    const bool in_slices =
        ranks_ > 1 && generators_.size() == 1 && options_.precision() != Precision::kFp16;
    const double exchange_before = ledger.seconds_encode + ledger.seconds_communicate;
    bool finite = true;
    torch::Tensor local;
    if (in_slices) {
      exchange_.begin_average(game_.dim(), game_.device());
      local = evaluate(generators_[0], [&](const torch::Tensor& f, int64_t begin, int64_t end) {
        // Caught here, before the exchange, so the message names the cause rather than the codec.
        const bool slice_finite =
            all_finite(f.narrow(0, begin, end - begin), kLargestOperatorEntry);
        finite = finite && slice_finite;
        exchange_.offer(f, begin, end, slice_finite);
      });
    } else {
      local = evaluate(generators_[0]);
      for (size_t r = 1; r < generators_.size(); ++r) local.add_(evaluate(generators_[r]));
      if (generators_.size() > 1) local.div_(static_cast<double>(generators_.size()));
      finite = all_finite(local, kLargestOperatorEntry);
    }
    // The pieces the exchange encoded and posted during the evaluation are booked as its own.
    ledger.seconds_compute += seconds_since(start) - (ledger.seconds_encode +
                                                      ledger.seconds_communicate - exchange_before);
    // A non-finite operator is an event every rank agrees on: alone at once, with several ranks
    // through the exchange, which tells every rank which rank it was. The solver may retry with a
    // shorter step (from the game's state before the evaluation); else loop() ends the run.
    auto non_finite = [this, &before](int rank) {
      if (!before.empty()) game_.load_state(before);
      return NonFiniteOracle(rank);
    };
    if (!finite && ranks_ == 1) throw non_finite(rank_);
    const double j1 = energy_per_phase_ ? energy_.meter->joules() : 0.0;
    torch::Tensor averaged;
    try {
      averaged =
          in_slices ? exchange_.finish_average(local, finite) : exchange_.average(local, finite);
    } catch (const NonFiniteOperator& e) {
      throw non_finite(e.rank());
    }
    if (energy_per_phase_) {
      const double j2 = energy_.meter->joules();
      ledger.joules_compute += j1 - j0;
      ledger.joules_exchange += j2 - j1;
    }
    return averaged;
  }

  Error diverged(int64_t t, const std::string& what) const {
    const std::string where = metrics_.enabled()
                                  ? fmt::format(" (records so far in {})", metrics_.partial_path())
                                  : std::string();
    return Error(fmt::format("diverged at iteration {}: {}{}", t, what, where));
  }

  // Bytes sent and received and coordinates sent by all ranks, and whether any rank raised
  // `flag`. Collective.
  struct Totals {
    int64_t bytes_sent = 0, bytes_received = 0, coordinates = 0;
    bool flagged = false;
  };
  Totals totals(bool flag = false) {
    const Ledger& ledger = exchange_.ledger();
    torch::Tensor counts = torch::tensor({ledger.bytes_sent, ledger.bytes_received,
                                          ledger.coordinates_sent, static_cast<int64_t>(flag)},
                                         torch::kInt64);
    comm_.allreduce_sum(counts);
    const int64_t* c = counts.data_ptr<int64_t>();
    return {c[0], c[1], c[2], c[3] > 0};
  }

  // Runs `fn` with the game's parameters set to the averaged iterate (then restores them);
  // false, without running it, when there is no average yet.
  bool at_average(const std::function<void()>& fn) {
    if (!average_.enabled() || average_.count() == 0) return false;
    torch::NoGradGuard no_grad;
    torch::Tensor z = game_.params();
    torch::Tensor saved = z.clone();
    z.copy_(average_.value());
    fn();
    z.copy_(saved);
    return true;
  }

  // The game's metrics at the current z, then at the averaged iterate with the suffix "_avg".
  Metrics with_average(const std::function<Metrics()>& measure) {
    Metrics metrics = measure();
    at_average([&]() {
      for (const auto& [name, value] : measure()) metrics.emplace_back(name + "_avg", value);
    });
    return metrics;
  }

  bool evaluation_due(int64_t t) const {
    return t == 0 || t == options_.iterations() ||
           (options_.eval_every() > 0 && t % options_.eval_every() == 0);
  }

  // A metrics record at iteration t (rank 0 writes it), with the evaluation metrics and a sample
  // picture when `evaluate`. One collective per record: the bytes sent by all ranks, and whether
  // rank 0's metrics are finite, so that a metric gone NaN (a GAN's critic overflowing while the
  // parameters are still finite) throws Diverged on every rank at the same iteration. With an
  // evaluation the other ranks wait for rank 0 without a time limit: FID on a large sample may
  // take minutes.
  void record(int64_t t, bool evaluate) {
    const auto start = Clock::now();
    record_unbooked(t, evaluate);
    exchange_.ledger().seconds_records += seconds_since(start);
  }

  void record_unbooked(int64_t t, bool evaluate) {
    Metrics metrics;
    std::string not_finite;
    if (rank_ == 0) {
      metrics = with_average([&]() { return game_.metrics(); });
      if (evaluate) {
        const Metrics evaluation = with_average([&]() { return game_.evaluation_metrics(); });
        metrics.insert(metrics.end(), evaluation.begin(), evaluation.end());
        if (!evaluation.empty()) evaluations_.emplace_back(t, evaluation);
        if (!dir_.empty()) {
          create_directories(join_path(dir_, kSamples));
          const std::string path = fmt::format("{}/samples/iter_{:07d}.png", dir_, t);
          if (game_.write_samples(path)) samples_path_ = path;
          // The averaged players' picture beside it (on a GAN often the better generator).
          at_average([&]() {
            game_.write_samples(fmt::format("{}/samples/iter_{:07d}_avg.png", dir_, t));
          });
        }
      }
      for (const auto& [name, value] : metrics) {
        if (!std::isfinite(value) && not_finite.empty()) {
          not_finite = fmt::format("{} is {}", name, value);
        }
      }
    }
    const double limit = comm_.timeout();
    if (evaluate && ranks_ > 1) comm_.set_timeout(0);
    const Totals all = totals(!not_finite.empty());
    comm_.set_timeout(limit);
    if (all.flagged) {
      throw Diverged(
          diverged(t, rank_ == 0 ? not_finite : "a metric on rank 0 is not finite").what(), t);
    }
    if (rank_ == 0) {
      Json line;
      line["iter"] = t;
      for (const auto& [name, value] : metrics) line[name] = value;
      line["step_scale"] = solver_.step_size().scale();
      line["bytes_sent"] = all.bytes_sent;
      line["bytes_received"] = all.bytes_received;
      metrics_.write(line);
      last_ = metrics;
      const auto shown_metric = find_metric(metrics, "distance_sq");
      status_ = shown_metric
                    ? fmt::format("distance_sq {:.3e}", *shown_metric)
                    : fmt::format("{} {:.4g}", metrics.front().first, metrics.front().second);
    }
  }

  // This rank's checkpoint at iteration t; the one before it is kept as checkpoint.rankR.prev.pt.
  void checkpoint(int64_t t) {
    if (dir_.empty()) return;
    const std::string path = checkpoint_path(dir_, rank_);
    if (path_exists(path)) rename_file(path, checkpoint_path(dir_, rank_, true));
    save_checkpoint(path, capture(t));
  }

  // Everything a run continues from at iteration t (its tensors alias the live state).
  Checkpoint capture(int64_t t) const {
    Checkpoint c;
    c.meta = {{"format", 2}, {"iteration", t}, {"rank", rank_}, {"identity", identity()}};
    if (rank_ == 0) c.meta["records"] = metrics_.digest();
    c.meta["loss_scale"] = scaler_.scale();
    if (!backoffs_.empty()) c.meta["divergence_retries"] = backoffs_;
    c.tensors.emplace_back("z", game_.params());
    for (const auto& [name, tensor] : solver_.state())
      c.tensors.emplace_back("solver/" + name, tensor);
    for (const auto& [name, tensor] : game_.state()) c.tensors.emplace_back("game/" + name, tensor);
    for (const auto& entry : exchange_.state()) c.tensors.push_back(entry);
    c.tensors.emplace_back("average",
                           average_.value().defined() ? average_.value() : torch::zeros({0}));
    c.tensors.emplace_back("average_count", torch::tensor({average_.count()}, torch::kInt64));
    c.tensors.emplace_back("average_weight",
                           torch::tensor({average_.total_weight()}, torch::kFloat64));
    for (size_t r = 0; r < generators_.size(); ++r) {
      c.tensors.emplace_back("generator/" + std::to_string(r), generators_[r].get_state());
    }
    return c;
  }

  static Checkpoint deep_copy(const Checkpoint& c) {
    Checkpoint out = c;
    for (auto& entry : out.tensors) entry.second = entry.second.detach().clone();
    return out;
  }

  // The state a diverged run goes back to (RunOptions::divergence_retries), with what rank 0 had
  // recorded by then.
  struct Snapshot {
    int64_t iteration = -1;
    Checkpoint state;
    int64_t record_bytes = 0;
    size_t evaluations = 0;
    Metrics last;
    std::string status;
    std::string samples_path;
  };

  void take_snapshot(int64_t t) {
    // No copy once no retry is left: a divergence then ends the run whatever the snapshot.
    if (retries_used_ >= options_.divergence_retries()) return;
    torch::NoGradGuard no_grad;
    snapshot_.iteration = t;
    snapshot_.state = deep_copy(capture(t));
    snapshot_.record_bytes = metrics_.enabled() ? metrics_.digest()["bytes"].get<int64_t>() : 0;
    snapshot_.evaluations = evaluations_.size();
    snapshot_.last = last_;
    snapshot_.status = status_;
    snapshot_.samples_path = samples_path_;
  }

  // A divergence found at iteration t (every rank finds it at the same iteration: the operators
  // and the parameters are the same everywhere after the exchange). With retries left, every
  // rank restores its snapshot, halves the learning rates and returns the snapshot's iteration;
  // else the run ends with Diverged.
  int64_t back_off(int64_t t, const std::string& what) {
    const int64_t allowed = options_.divergence_retries();
    if (retries_used_ >= allowed || snapshot_.iteration < 0) {
      const std::string tried = allowed > 0
                                    ? fmt::format(" after {} retr{} with halved learning rates",
                                                  retries_used_, retries_used_ == 1 ? "y" : "ies")
                                    : std::string();
      throw Diverged(diverged(t, what + tried).what(), t);
    }
    ++retries_used_;
    const int64_t back_to = snapshot_.iteration;
    {
      torch::NoGradGuard no_grad;
      // A copy: load_state may keep the tensors it is given, and the snapshot may be needed again.
      const Checkpoint state = deep_copy(snapshot_.state);
      restore_state(state);
      if (state.get("average_count").item<int64_t>() == 0) {
        average_ = IterateAverage(options_.averaging(), options_.ema_decay());
      }
    }
    solver_.scale_learning_rates(0.5);
    if (metrics_.enabled()) {
      const std::string text = read_file(metrics_.partial_path());
      const std::string kept = text.substr(0, static_cast<size_t>(snapshot_.record_bytes));
      metrics_ = MetricsWriter();
      metrics_ = MetricsWriter(dir_, kept);
    }
    evaluations_.resize(snapshot_.evaluations);
    last_ = snapshot_.last;
    status_ = snapshot_.status;
    samples_path_ = snapshot_.samples_path;
    backoffs_.push_back({{"diverged_at", t},
                         {"back_to", back_to},
                         {"lr_scale", solver_.learning_rate_scale()},
                         {"cause", what}});
    logger_.warn(
        "diverged at iteration {}: {}; back to iteration {} with every learning rate halved "
        "(now {} times the given ones; retry {} of {})",
        t, what, back_to, solver_.learning_rate_scale(), retries_used_, allowed);
    // The newest checkpoint is the state the run continues from, so a resume does the same.
    if (options_.checkpoint_every() > 0) checkpoint(back_to);
    return back_to;
  }

  // Bytes sent by all ranks so far (the same total on every rank, with no collective).
  int64_t bytes_so_far() const { return exchange_.ledger().bytes_all_ranks; }
  bool budget_spent() const {
    return options_.byte_budget() > 0 && bytes_so_far() >= options_.byte_budget();
  }

  RunResult loop(int64_t first) {
    const int64_t cap = options_.iterations();
    Oracle oracle = [this]() { return this->oracle(); };
    ProgressBar progress(cap - first, options_.progress() && rank_ == 0,
                         ProgressBar::stderr_is_terminal());
    const bool stoppable = static_cast<bool>(options_.stop_requested());
    bool posted = false;
    int64_t stopped_at = -1;
    // The last iteration: the cap, or the one that spent the byte budget (a run resumed from a
    // checkpoint written when the budget was spent runs no further).
    int64_t last = budget_spent() ? first : cap;
    const auto start = Clock::now();
    // A resumed run's record at its first iteration is among the records it kept.
    if (first == 0) record(0, evaluation_due(0));
    take_snapshot(first);
    for (int64_t t = first; t < last; ++t) {
      current_ = t;
      const int64_t bytes_before = bytes_so_far();
      exchange_.begin_iteration(t);
      try {
        solver_.step(oracle);
      } catch (const NonFiniteOracle& e) {
        t = back_off(t + 1, fmt::format("{} (a smaller learning rate may help)", e.what())) - 1;
        continue;
      }
      torch::Tensor z = game_.params();
      // Every rank holds the same z, so every rank detects this divergence at the same iteration.
      if (!torch::isfinite(z).all().item<bool>()) {
        t = back_off(t + 1, "parameters are not finite") - 1;
        continue;
      }
      // The ergodic averages average the points whose operators moved z (X_{t+1/2}); the EMA
      // averages the iterates.
      if (options_.averaging() == AveragingKind::kEma) {
        average_.update(z);
      } else {
        average_.update(solver_.half_step(), solver_.half_step_weight());
      }
      // A stop request is agreed one iteration late (the OR of the flags posted at the end of the
      // previous iteration), so that every rank stops after the same iteration without waiting.
      if (budget_spent()) last = t + 1;
      bool stop = false;
      if (stoppable) {
        if (posted) stop = comm_.collect_flag();
        posted = false;
        if (!stop && t + 1 < last) {
          comm_.post_flag(options_.stop_requested()());
          posted = true;
        }
      }
      const bool evaluate = evaluation_due(t + 1) || t + 1 == last;
      // (A stop adds no record of its own: the resumed run writes what an uninterrupted one would.)
      if (record_due(t + 1, bytes_before) || t + 1 == last || evaluate) record(t + 1, evaluate);
      if (stop) {
        stopped_at = t + 1;
        break;
      }
      const bool checkpoint_due = options_.checkpoint_every() > 0 &&
                                  (t + 1) % options_.checkpoint_every() == 0 && t + 1 < last;
      if (checkpoint_due) checkpoint(t + 1);
      // At every checkpoint too: a run never goes back past the newest one on disk.
      if (checkpoint_due || (t + 1) % RunOptions::kSnapshotEvery == 0) take_snapshot(t + 1);
      progress.update(progress_done(t + 1, first), status_);
    }
    if (posted) comm_.collect_flag();
    synchronize(device_);
    const double wall = seconds_since(start);
    progress.finish(status_);
    if (stopped_at >= 0) {
      checkpoint(stopped_at);
      throw Interrupted(
          dir_.empty()
              ? fmt::format("interrupted at iteration {} of {}; no --out was given, so nothing "
                            "was saved",
                            stopped_at, cap)
              : fmt::format("interrupted at iteration {} of {}: checkpoint written to {}; "
                            "continue with the same command and --resume {}",
                            stopped_at, cap, dir_, dir_),
          stopped_at);
    }
    checkpoint(last);
    return summarize(first, last, wall);
  }

  // Every --log-every iterations; with a byte budget and no --log-every, each time the bytes sent
  // pass another hundredth of the budget (about 100 records, evenly spaced in bytes, whatever
  // the codec's bits; a function of the checkpointed ledger, so a resumed run records the same).
  bool record_due(int64_t t, int64_t bytes_before) const {
    if (options_.log_every() == 0 && options_.byte_budget() > 0) {
      const double hundredth = static_cast<double>(options_.byte_budget()) / 100.0;
      return std::floor(static_cast<double>(bytes_so_far()) / hundredth) >
             std::floor(static_cast<double>(bytes_before) / hundredth);
    }
    return t % log_every_ == 0;
  }

  // Progress towards the cap, or towards the byte budget when that is nearer.
  int64_t progress_done(int64_t done_to, int64_t first) const {
    int64_t done = done_to - first;
    if (options_.byte_budget() > 0) {
      const double spent =
          static_cast<double>(bytes_so_far()) / static_cast<double>(options_.byte_budget());
      done = std::max(
          done, static_cast<int64_t>(spent * static_cast<double>(options_.iterations() - first)));
    }
    return std::min(done, options_.iterations() - first);
  }

  RunResult summarize(int64_t first, int64_t iterations, double wall) {
    const Ledger& ledger = exchange_.ledger();
    RunResult result;
    result.iterations = iterations;
    result.budget_reached = budget_spent();
    result.wall_seconds = wall;
    result.final_metrics = last_;
    result.ledger = ledger;
    result.ranks = ranks_;
    result.resumed_from = first;
    result.samples_path = samples_path_;
    result.evaluations = std::move(evaluations_);
    if (energy_.meter) result.joules = energy_.meter->joules() - joules_at_start_;
    const Totals all = totals();
    result.bytes_sent_all = all.bytes_sent;
    result.bytes_received_all = all.bytes_received;
    result.fp32_bytes_all = all.coordinates * 4;

    // Ranks agree when every rank's parameter hash equals rank 0's.
    const uint64_t hash = tensor_hash(game_.params());
    torch::Tensor mine = torch::empty({8}, torch::kUInt8);
    std::memcpy(mine.data_ptr(), &hash, 8);
    for (const auto& other : comm_.allgather_bytes(mine)) {
      if (!torch::equal(other, mine)) result.ranks_agree = false;
    }

    Json summary;
    summary["game"] = game_.name();
    summary["solver"] = solver_.name();
    summary["iterations"] = iterations;
    summary["non_finite_retries"] = solver_.non_finite_retries();
    if (options_.divergence_retries() > 0 || solver_.learning_rate_scale() != 1.0) {
      summary["divergence_retries"] = backoffs_;
      summary["lr_scale"] = solver_.learning_rate_scale();
    }
    if (options_.byte_budget() > 0) {
      summary["byte_budget"] = options_.byte_budget();
      summary["budget_reached"] = result.budget_reached;
    }
    summary["wall_seconds"] = wall;
    for (const auto& [name, value] : last_) summary[name] = value;
    summary["ranks"] = ranks_;
    summary["ranks_agree"] = result.ranks_agree;
    summary["collective"] = exchange_.collective();
    summary["overlap_pieces"] = exchange_.overlap_pieces();
    summary["bytes_sent"] = result.bytes_sent_all;
    summary["bytes_received"] = result.bytes_received_all;
    summary["bytes_received_per_rank_exchange"] =
        ledger.exchanges > 0 ? static_cast<double>(result.bytes_received_all) /
                                   static_cast<double>(ranks_ * ledger.exchanges)
                             : 0.0;
    summary["bytes_sent_fp32"] = result.fp32_bytes_all;
    summary["bits_per_coordinate"] =
        all.coordinates > 0
            ? 8.0 * static_cast<double>(all.bytes_sent) / static_cast<double>(all.coordinates)
            : 0.0;
    summary["seconds"] = {
        {"compute", ledger.seconds_compute},         {"encode", ledger.seconds_encode},
        {"communicate", ledger.seconds_communicate}, {"wait", ledger.seconds_wait},
        {"decode", ledger.seconds_decode},           {"records", ledger.seconds_records}};
    summary["device"] = describe_device(device_);
    summary["precision"] = precision_name(options_.precision());
    if (device_.is_cuda()) summary["cuda_graph_captures"] = game_.graph_captures();
    if (energy_.meter) {
      // Joules of the run on this rank's device (rank 0's in summary.json).
      Json joules = {
          {"source", energy_.meter->source()},
          {"joules", result.joules},
          {"joules_per_iteration", result.joules / static_cast<double>(iterations - first)}};
      if (energy_per_phase_) {
        joules["joules_compute"] = ledger.joules_compute;
        joules["joules_exchange"] = ledger.joules_exchange;
      }
      summary["energy"] = joules;
    } else {
      summary["energy"] = {{"available", false}, {"reason", energy_.unavailable}};
    }
    if (!samples_path_.empty()) summary["samples"] = samples_path_;
    if (first > 0) summary["resumed_from"] = first;
    summary["config"] = config_;
    result.summary = summary;

    if (rank_ == 0 && !dir_.empty()) {
      metrics_.commit();
      write_file_atomic(join_path(dir_, kSummary), summary.dump(2) + "\n");
    }
    logger_.debug("run finished: {} iterations in {:.3f} s", iterations - first, wall);
    return result;
  }

  Game& game_;
  Solver& solver_;
  Exchange& exchange_;
  Communicator& comm_;
  const RunOptions& options_;
  const Logger& logger_;
  const Json& config_;
  const int rank_;
  const int ranks_;
  const std::string dir_;
  const torch::Device device_;
  IterateAverage average_;
  int64_t log_every_ = 1;
  std::unique_ptr<DirectoryLock> lock_;
  std::vector<at::Generator> generators_;
  EnergyProbe energy_;
  bool energy_per_phase_ = false;
  double joules_at_start_ = 0;
  LossScaler scaler_;
  MetricsWriter metrics_;
  int64_t current_ = 0;  // the iteration being computed, for error messages
  std::string status_;
  Metrics last_;
  std::string samples_path_;
  std::vector<std::pair<int64_t, Metrics>> evaluations_;
  Snapshot snapshot_;
  int64_t retries_used_ = 0;
  Json backoffs_ = Json::array();
};

}  // namespace

RunResult run(Game& game, Solver& solver, Exchange& exchange, const RunOptions& options,
              const Logger& logger, const nlohmann::ordered_json& config) {
  return Runner(game, solver, exchange, options, logger, config).run();
}

}  // namespace saddle
