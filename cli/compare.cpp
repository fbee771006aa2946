// `saddle compare`: solver configurations side by side on any game, over several seeds. Each row
// is a `saddle solve` configuration (a solver with the game's defaults, or flags of its own) run
// once per seed through the same code as `saddle solve`; under mpirun every rank runs every row,
// and an error on one rank ends the job as it does for solve. Rank 0 prints the table (median and
// range over seeds) and, with --out, writes compare.jsonl (one line per row, seed and record),
// summary.json and the plots (the game's headline metric against iterations and bytes sent).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "saddle/error.h"
#include "saddle/run/files.h"
#include "saddle/run/plot.h"
#include "saddle/run/runner.h"
#include "saddle/solver.h"

namespace saddle::cli {

namespace {

// A row's iteration limit under --budget-bytes without --iters: the budget ends it long before.
constexpr int64_t kNoIterationLimit = 1'000'000'000;

struct Row {
  std::string name;
  std::vector<std::string> flags;  // solve's flags, --solver among them
};

// One run of one row: its final metrics and, from metrics.jsonl, its records.
struct Outcome {
  uint64_t seed = 0;
  bool diverged = false;
  int64_t diverged_at = 0;
  std::string error;
  int64_t iterations = 0;
  double seconds = 0.0;
  int64_t bytes = 0;
  int64_t received = 0;  // what crossed the wire, all ranks
  Metrics final_metrics;
  std::vector<nlohmann::ordered_json> records;
};

// Options that compare sets for every row: a row may not set them itself.
const std::set<std::string>& reserved_flags() {
  static const std::set<std::string> kReserved = {
      "game",      "seed",         "out",    "resume",    "config",    "overwrite",  "no-progress",
      "log-level", "rank-timeout", "device", "transport", "precision", "cuda-graphs"};
  return kReserved;
}

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// "a, b, c" (fmt::join moved to <fmt/ranges.h> in fmt 11; the torch wheel ships fmt 12).
std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out;
}

std::string trimmed(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

void check_flags(const std::string& what, const std::vector<std::string>& flags) {
  for (const std::string& f : flags) {
    if (f.rfind("--", 0) != 0) continue;
    const std::string name = f.substr(2, f.find('=') == std::string::npos ? std::string::npos
                                                                           : f.find('=') - 2);
    SADDLE_CHECK(reserved_flags().count(name) == 0, what, ": --", name,
                 " is set by saddle compare for every row (use compare's own --", name,
                 name == "seed" ? " and --seeds" : "", ")");
  }
}

bool has_flag(const std::vector<std::string>& flags, const std::string& name) {
  return std::any_of(flags.begin(), flags.end(), [&](const std::string& f) {
    return f == "--" + name || f.rfind("--" + name + "=", 0) == 0;
  });
}

void check_name(const std::string& what, const std::string& name) {
  const bool ok = !name.empty() && name != "." && name != ".." &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                           c == '.' || c == '=';
                  });
  SADDLE_CHECK(ok, what, ": invalid row name '", name,
               "' (letters, digits and - _ . = only: it names the row's folder)");
}

// A row needs a solver: named by --solver, or by the row's name.
Row finish_row(const std::string& what, std::string name, std::vector<std::string> flags) {
  check_name(what, name);
  check_flags(what, flags);
  if (!has_flag(flags, "solver")) {
    try {
      solver_spec(name);
    } catch (const Error& e) {
      throw Error(what + ": '" + name + "' is not a solver; name one with --solver (" + e.what() +
                  ")");
    }
    flags.insert(flags.begin(), {"--solver", name});
  }
  return {std::move(name), std::move(flags)};
}

// "--row SOLVER" or "--row NAME: FLAGS".
Row parse_row(const std::string& spec) {
  const std::string what = "--row '" + spec + "'";
  const size_t colon = spec.find(':');
  if (colon == std::string::npos) return finish_row(what, trimmed(spec), {});
  return finish_row(what, trimmed(spec.substr(0, colon)), words(spec.substr(colon + 1)));
}

// A JSON list of objects keyed by solve's long flag names, "name" naming the row.
std::vector<Row> rows_from_file(const std::string& path) {
  SADDLE_CHECK(is_regular_file(path), "--rows ", path, ": no such file");
  nlohmann::json list;
  try {
    list = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error("--rows " + path + ": not valid JSON (" + e.what() + ")");
  }
  SADDLE_CHECK(list.is_array() && !list.empty(), "--rows ", path,
               ": expected a non-empty JSON list of rows, e.g. [{\"name\": \"eg-fast\", "
               "\"solver\": \"eg\", \"lr\": 0.5}]");
  std::vector<Row> rows;
  for (size_t i = 0; i < list.size(); ++i) {
    const nlohmann::json& entry = list[i];
    const std::string what = fmt::format("--rows {}: row {}", path, i + 1);
    SADDLE_CHECK(entry.is_object(), what, ": expected an object of solve options");
    std::string name;
    std::vector<std::string> flags;
    for (const auto& [key, value] : entry.items()) {
      if (key == "name") {
        SADDLE_CHECK(value.is_string(), what, ": \"name\" must be a string");
        name = value.get<std::string>();
        continue;
      }
      auto text = [&](const nlohmann::json& v) {
        SADDLE_CHECK(v.is_string() || v.is_number(), what, ": \"", key,
                     "\" must be a string, a number, true or a list of them");
        return v.is_string() ? v.get<std::string>() : v.dump();
      };
      if (value.is_boolean()) {
        if (value.get<bool>()) flags.push_back("--" + key);
      } else if (value.is_array()) {
        flags.push_back("--" + key);
        for (const auto& v : value) flags.push_back(text(v));
      } else {
        flags.push_back("--" + key);
        flags.push_back(text(value));
      }
    }
    if (name.empty()) {
      SADDLE_CHECK(entry.contains("solver") && entry["solver"].is_string(), what,
                   ": give it a \"name\" or a \"solver\"");
      name = entry["solver"].get<std::string>();
    }
    rows.push_back(finish_row(what, name, flags));
  }
  return rows;
}

double median(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }),
          v.end());
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::pair<double, double> range_of(const std::vector<double>& v) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double x : v) {
    if (std::isfinite(x)) lo = std::min(lo, x), hi = std::max(hi, x);
  }
  if (!std::isfinite(lo)) return {std::nan(""), std::nan("")};
  return {lo, hi};
}

std::string spread(const std::vector<double>& v) {
  const double m = median(v);
  if (!std::isfinite(m)) return "-";
  const auto [lo, hi] = range_of(v);
  if (v.size() == 1 || lo == hi) return fmt::format("{:.4g}", m);
  return fmt::format("{:.4g} [{:.3g}, {:.3g}]", m, lo, hi);
}

double metric_of(const Metrics& metrics, const std::string& name) {
  return find_metric(metrics, name).value_or(std::numeric_limits<double>::quiet_NaN());
}

// One line per row: at the k-th record holding `metric`, the median over seeds and the range.
PlotSeries curve(const std::string& label, const std::vector<Outcome>& runs,
                 const std::string& metric, bool by_bytes) {
  PlotSeries s;
  s.label = label;
  size_t longest = 0;
  std::vector<std::vector<const nlohmann::ordered_json*>> kept(runs.size());
  for (size_t r = 0; r < runs.size(); ++r) {
    for (const auto& rec : runs[r].records) {
      if (rec.contains(metric) && rec[metric].is_number()) kept[r].push_back(&rec);
    }
    longest = std::max(longest, kept[r].size());
  }
  for (size_t k = 0; k < longest; ++k) {
    std::vector<double> xs, ys;
    for (const auto& recs : kept) {
      if (k >= recs.size()) continue;
      const nlohmann::ordered_json& rec = *recs[k];
      xs.push_back(by_bytes ? rec.value("bytes_sent", 0.0) : rec.value("iter", 0.0));
      ys.push_back(rec[metric].get<double>());
    }
    const auto [lo, hi] = range_of(ys);
    s.x.push_back(median(xs));
    s.y.push_back(median(ys));
    s.lo.push_back(lo);
    s.hi.push_back(hi);
  }
  return s;
}

}  // namespace

CompareCommand::CompareCommand(CLI::App& app)
    : app_(app.add_subcommand(
          "compare", "Solver configurations side by side on one game, over several seeds")) {
  app_->add_option("--game", game_, "Game: " + joined(game_names()))
      ->capture_default_str();
  app_->add_option("--row", row_specs_,
                   "A row: SOLVER (with the game's defaults), or NAME: FLAGS of saddle solve, "
                   "e.g. 'eg-fast: --solver eg --step-size constant --lr 0.5' (repeatable; "
                   "default: every solver that trains on the game)");
  app_->add_option("--rows", rows_file_,
                   "JSON list of rows keyed by solve's long flag names, e.g. [{\"name\": "
                   "\"eg-fast\", \"solver\": \"eg\", \"lr\": 0.5}]");
  app_->add_option("--with", with_, "solve flags for every row, e.g. '--dim 64 --noise absolute'");
  app_->add_option("--iters", iters_,
                   "Iterations of every row (0: each row's game defaults; with --budget-bytes "
                   "the most a row may run, 0: no limit)")
      ->capture_default_str();
  app_->add_option("--budget-bytes", budget_bytes_,
                   "Give every row the same bytes on the wire instead of the same iterations: "
                   "each stops once all ranks together sent this many (64k, 1.5M, 2G, 64KiB)");
  app_->add_option("--seed", seed_, "First seed")->capture_default_str();
  app_->add_option("--seeds", seeds_, "Seeds per row: --seed, --seed + 1, ...")
      ->capture_default_str();
  app_->add_option("--dim", dim_, "Analytic games: dimension of each player")
      ->capture_default_str();
  app_->add_option("--noise", noise_, "Analytic games: none | absolute | relative | finite-sum")
      ->capture_default_str();
  app_->add_option("--noise-scale", noise_scale_, "Analytic games: scale of the oracle noise")
      ->capture_default_str();
  app_->add_option("--quantizer", quantizer_, "Operator compression on the wire (none: fp32)")
      ->capture_default_str();
  app_->add_option("--bits", bits_, "Bits per coordinate (2..8)")->capture_default_str();
  app_->add_option("--out", out_,
                   "Directory: compare.jsonl, summary.json, the plots, and one folder per row "
                   "and seed")
      ->capture_default_str();
  app_->add_flag("--overwrite", overwrite_, "Replace the comparison that --out already holds");
  app_->add_option("--rank-timeout", rank_timeout_,
                   "Seconds a rank waits for the others in a collective before it ends the job")
      ->capture_default_str();
  device_.add_to(*app_);
  app_->add_option("--log-level", log_level_, "error | warn | info | debug")->capture_default_str();
}

int CompareCommand::run(Communicator& comm) {
  // Everything is checked before the first row runs: the game, the rows, the folders.
  const GameSpec& spec = game_spec(game_);
  SADDLE_CHECK(iters_ >= 0, "invalid --iters ", iters_, " (must be > 0, or 0 for the defaults)");
  const int64_t budget =
      budget_bytes_.empty() ? 0 : parse_byte_count(budget_bytes_, "--budget-bytes");
  SADDLE_CHECK(budget_bytes_.empty() || budget > 0, "invalid --budget-bytes ", budget_bytes_,
               " (must be > 0)");
  SADDLE_CHECK(seeds_ >= 1 && seeds_ <= 1000, "invalid --seeds ", seeds_, " (must be 1..1000)");
  SADDLE_CHECK(!app_->count("--out") || !out_.empty(), "invalid --out: empty path");
  std::string label = exchange_label(quantizer_, bits_);
  for (const char* flag : {"--dim", "--noise", "--noise-scale"}) {
    SADDLE_CHECK(spec.analytic || app_->count(flag) == 0, flag,
                 " applies to the analytic games (bilinear, quadratic), not ", game_);
  }
  const std::vector<std::string> with = words(with_);
  check_flags("--with", with);
  std::vector<Row> rows;
  for (const std::string& s : row_specs_) rows.push_back(parse_row(s));
  if (!rows_file_.empty()) {
    for (Row& r : rows_from_file(rows_file_)) rows.push_back(std::move(r));
  }
  if (rows.empty()) {
    for (const std::string& solver : solver_names()) {
      if (spec.poor_pairing(solver).empty()) rows.push_back({solver, {"--solver", solver}});
    }
  }
  // Rows that choose their own exchange: the table's and plots' titles say so.
  for (const Row& r : rows) {
    if (has_flag(r.flags, "quantizer") || has_flag(r.flags, "bits")) label = "set per row";
  }
  if (has_flag(with, "quantizer") || has_flag(with, "bits")) label = "set per row";
  std::set<std::string> names;
  for (const Row& r : rows) {
    SADDLE_CHECK(names.insert(r.name).second, "two rows are named '", r.name,
                 "' (each names its folder; give them different names)");
  }
  auto run_dir = [&](const Row& row, uint64_t seed) {
    return out_.empty() ? std::string() : fmt::format("{}/{}/seed-{}", out_, row.name, seed);
  };
  if (!out_.empty() && !overwrite_) {
    SADDLE_CHECK(!path_exists(out_ + "/compare.jsonl"), "--out ", out_,
                 " already holds a comparison: replace it with --overwrite, or choose another "
                 "--out");
    for (const Row& row : rows) {
      for (int64_t k = 0; k < seeds_; ++k) {
        const std::string dir = run_dir(row, seed_ + k);
        SADDLE_CHECK(run_files(dir, 0).empty(), "--out ", out_, " already holds a comparison (",
                     dir, "): replace it with --overwrite, or choose another --out");
      }
    }
  }

  // The solve command line of one row and seed, compare's settings first, the row's last.
  auto argv_of = [&](const Row& row, uint64_t seed) {
    // A row's warnings (a poor pairing, say) once, with its first seed.
    const std::string level = seed != seed_ && log_level_ == "warn" ? "error" : log_level_;
    std::vector<std::string> a = {"saddle", "solve",  "--game",
                                  game_,    "--seed", std::to_string(seed)};
    a.insert(a.end(), {"--no-progress", "--log-level", level, "--rank-timeout",
                       fmt::format("{}", rank_timeout_)});
    a.insert(a.end(), {"--device", device_.device, "--transport", device_.transport, "--precision",
                       device_.precision, "--cuda-graphs", device_.cuda_graphs});
    a.insert(a.end(), {"--quantizer", quantizer_, "--bits", std::to_string(bits_)});
    if (budget > 0) {
      // Rows run until the budget is spent: no iteration limit of their own unless --iters.
      a.insert(a.end(), {"--max-bytes", std::to_string(budget), "--iters",
                         std::to_string(iters_ > 0 ? iters_ : kNoIterationLimit)});
    } else if (iters_ > 0) {
      a.insert(a.end(), {"--iters", std::to_string(iters_)});
    }
    if (spec.analytic) {
      a.insert(a.end(), {"--dim", std::to_string(dim_), "--noise", noise_, "--noise-scale",
                         fmt::format("{}", noise_scale_)});
    }
    a.insert(a.end(), with.begin(), with.end());
    a.insert(a.end(), row.flags.begin(), row.flags.end());
    const std::string dir = run_dir(row, seed);
    if (!dir.empty()) a.insert(a.end(), {"--out", dir});
    if (!dir.empty() && overwrite_) a.push_back("--overwrite");
    return a;
  };
  // Parsed once up front, so that a bad flag in the last row fails before the first row runs.
  auto parse = [&](const Row& row, uint64_t seed, CLI::App& app) {
    const std::vector<std::string> a = argv_of(row, seed);
    std::vector<char*> argv;
    for (const std::string& s : a) argv.push_back(const_cast<char*>(s.c_str()));
    try {
      app.parse(static_cast<int>(argv.size()), argv.data());
    } catch (const CLI::ParseError& e) {
      throw Error("row '" + row.name + "': " + e.what());
    }
  };
  for (const Row& row : rows) {
    CLI::App app;
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    SolveCommand solve(app);
    parse(row, seed_, app);
    try {
      solver_spec(solve.solver());
    } catch (const Error& e) {
      throw Error("row '" + row.name + "': " + e.what());
    }
  }

  const Headline& headline = spec.headline;
  std::map<std::string, std::vector<Outcome>> results;
  for (const Row& row : rows) {
    for (int64_t k = 0; k < seeds_; ++k) {
      const uint64_t seed = seed_ + static_cast<uint64_t>(k);
      CLI::App app;
      app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
      SolveCommand solve(app);
      parse(row, seed, app);
      Outcome o;
      o.seed = seed;
      try {
        const RunResult r = solve.execute(comm);
        o.iterations = r.iterations;
        o.seconds = r.wall_seconds;
        o.bytes = r.bytes_sent_all;
        o.received = r.bytes_received_all;
        o.final_metrics = r.final_metrics;
      } catch (const Diverged& e) {
        // A divergence every rank saw at the same iteration: recorded, and the next row runs.
        // Any other error ends the job (on one rank only, the others would wait for it; on
        // every rank, as a disagreement on the configuration, it concerns every row).
        o.diverged = true;
        o.diverged_at = e.iteration();
        o.error = e.what();
      }
      const std::string dir = run_dir(row, seed);
      if (comm.rank() == 0 && !dir.empty() && is_regular_file(dir + "/metrics.jsonl")) {
        std::istringstream lines(read_file(dir + "/metrics.jsonl"));
        for (std::string line; std::getline(lines, line);) {
          if (line.empty()) continue;
          try {
            o.records.push_back(nlohmann::ordered_json::parse(line));
          } catch (const nlohmann::json::exception&) {
            break;  // a torn last line of a diverged run
          }
        }
      }
      results[row.name].push_back(std::move(o));
    }
  }
  if (comm.rank() != 0) return 0;

  // The table: the headline metric of the last iterate (and of the averaged one where the rows
  // average), bytes, seconds, over seeds.
  const std::string avg = headline.metric + "_avg";
  bool any_avg = false;
  for (const auto& [name, runs] : results) {
    for (const Outcome& o : runs) any_avg |= find_metric(o.final_metrics, avg).has_value();
  }
  std::string table = fmt::format(
      "{}: {} row(s), {} seed(s) from {}, {} rank(s), exchange {}{}; {} ({} is better), median "
      "[min, max] over seeds\n\n",
      game_, rows.size(), seeds_, seed_, comm.size(), label,
      budget > 0 ? fmt::format(", budget {} per row", human_bytes(budget)) : std::string(),
      headline.metric, headline.lower_is_better ? "lower" : "higher");
  table += fmt::format("{:<20} {:>6} {:>32} ", "row", "iters", headline.metric);
  if (any_avg) table += fmt::format("{:>32} ", avg);
  // With several ranks also what crossed the wire: an all-gather delivers each message K - 1
  // times, a two-phase exchange sends more than it delivers.
  const bool wire = comm.size() > 1;
  table += fmt::format("{:>11} ", "bytes sent");
  if (wire) table += fmt::format("{:>11} ", "received");
  table += fmt::format("{:>8}  {}\n", "seconds", "runs");
  nlohmann::ordered_json summary_rows = nlohmann::ordered_json::array();
  for (const Row& row : rows) {
    const std::vector<Outcome>& runs = results[row.name];
    std::vector<double> last, averaged, bytes, received, seconds, iters;
    int diverged = 0;
    nlohmann::ordered_json per_seed = nlohmann::ordered_json::array();
    for (const Outcome& o : runs) {
      diverged += o.diverged;
      last.push_back(o.diverged ? std::nan("") : metric_of(o.final_metrics, headline.metric));
      averaged.push_back(o.diverged ? std::nan("") : metric_of(o.final_metrics, avg));
      if (!o.diverged) {
        bytes.push_back(static_cast<double>(o.bytes));
        received.push_back(static_cast<double>(o.received));
        seconds.push_back(o.seconds);
        iters.push_back(static_cast<double>(o.iterations));
      }
      nlohmann::ordered_json s;
      s["seed"] = o.seed;
      s["diverged"] = o.diverged;
      if (o.diverged) s["error"] = o.error, s["diverged_at"] = o.diverged_at;
      s["iterations"] = o.iterations;
      s["seconds"] = o.seconds;
      s["bytes_sent"] = o.bytes;
      s["bytes_received"] = o.received;
      nlohmann::ordered_json m = nlohmann::ordered_json::object();
      for (const auto& [name, value] : o.final_metrics) {
        if (std::isfinite(value)) m[name] = value;
      }
      s["final"] = m;
      per_seed.push_back(s);
    }
    std::vector<std::string> at;
    for (const Outcome& o : runs) {
      if (o.diverged) at.push_back(std::to_string(o.diverged_at));
    }
    const std::string result =
        diverged == 0 ? fmt::format("{} finished", runs.size())
                      : fmt::format("{} of {} diverged (at iteration {})", diverged, runs.size(),
                                    joined(at));
    table += fmt::format("{:<20} {:>6} {:>32} ", row.name,
                         iters.empty() ? std::string("-") : fmt::format("{:.0f}", median(iters)),
                         spread(last));
    if (any_avg) table += fmt::format("{:>32} ", spread(averaged));
    const auto bytes_cell = [](const std::vector<double>& v) {
      return v.empty() ? std::string("-") : human_bytes(static_cast<int64_t>(median(v)));
    };
    table += fmt::format("{:>11} ", bytes_cell(bytes));
    if (wire) table += fmt::format("{:>11} ", bytes_cell(received));
    table += fmt::format(
        "{:>8}  {}\n", seconds.empty() ? std::string("-") : fmt::format("{:.2f}", median(seconds)),
        result);
    nlohmann::ordered_json r;
    r["name"] = row.name;
    r["flags"] = row.flags;
    auto stats = [&](const std::vector<double>& v) {
      const auto [lo, hi] = range_of(v);
      nlohmann::ordered_json j;
      j["median"] = std::isfinite(median(v)) ? nlohmann::ordered_json(median(v)) : nullptr;
      j["min"] = std::isfinite(lo) ? nlohmann::ordered_json(lo) : nullptr;
      j["max"] = std::isfinite(hi) ? nlohmann::ordered_json(hi) : nullptr;
      return j;
    };
    r[headline.metric] = stats(last);
    if (any_avg) r[avg] = stats(averaged);
    r["iterations"] = stats(iters);
    r["bytes_sent"] = stats(bytes);
    r["bytes_received"] = stats(received);
    r["seconds"] = stats(seconds);
    r["diverged"] = diverged;
    r["seeds"] = per_seed;
    summary_rows.push_back(r);
  }

  if (!out_.empty()) {
    std::string jsonl;
    for (const Row& row : rows) {
      for (const Outcome& o : results[row.name]) {
        for (const nlohmann::ordered_json& rec : o.records) {
          nlohmann::ordered_json line;
          line["row"] = row.name;
          line["seed"] = o.seed;
          for (const auto& [key, value] : rec.items()) line[key] = value;
          jsonl += line.dump() + "\n";
        }
      }
    }
    write_file_atomic(out_ + "/compare.jsonl", jsonl);
    nlohmann::ordered_json summary;
    summary["game"] = game_;
    summary["ranks"] = comm.size();
    summary["seeds"] = seeds_;
    summary["first_seed"] = seed_;
    summary["exchange"] = label;
    if (budget > 0) summary["budget_bytes"] = budget;
    summary["headline"] = {{"metric", headline.metric},
                           {"lower_is_better", headline.lower_is_better}};
    summary["rows"] = summary_rows;
    std::vector<std::string> plots;
    for (const std::string& metric : any_avg ? std::vector<std::string>{headline.metric, avg}
                                             : std::vector<std::string>{headline.metric}) {
      bool recorded = false;
      for (const Row& row : rows) {
        for (const Outcome& o : results[row.name]) {
          for (const auto& rec : o.records) recorded |= rec.contains(metric);
        }
      }
      if (!recorded) {
        table += fmt::format("\nno plot of {}: no run recorded it{}\n", metric,
                             game_ == "wgan-gp" ? " (FID needs --with '--classifier FILE')" : "");
        continue;
      }
      for (bool by_bytes : {false, true}) {
        std::vector<PlotSeries> series;
        for (const Row& row : rows) series.push_back(curve(row.name, results[row.name], metric,
                                                           by_bytes));
        PlotOptions options;
        options.title = fmt::format("{} on {}, {} seed(s), {} rank(s), {}: median and range",
                                    metric, game_, seeds_, comm.size(), label);
        options.x_label = by_bytes ? "bytes sent by all ranks" : "iteration";
        options.y_label = metric;
        options.log_y = headline.log_scale;
        const std::string path =
            fmt::format("{}/{}_by_{}.png", out_, metric, by_bytes ? "bytes" : "iteration");
        try {
          write_line_plot(path, series, options);
          plots.push_back(path);
        } catch (const Error& e) {
          table += fmt::format("\nno plot of {}: {}\n", metric, e.what());
        }
      }
    }
    summary["plots"] = plots;
    write_file_atomic(out_ + "/summary.json", summary.dump(1) + "\n");
    table += fmt::format("\nwritten: {0}/compare.jsonl, {0}/summary.json, one folder per row and "
                         "seed ({0}/<row>/seed-<seed>/)\n",
                         out_);
    for (const std::string& p : plots) table += fmt::format("plot: {}\n", p);
  }
  std::fwrite(table.data(), 1, table.size(), stdout);
  return 0;
}

}  // namespace saddle::cli
