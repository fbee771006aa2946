// The `saddle` command as a user runs it: outputs, determinism, and one-line errors with a
// non-zero exit for every kind of bad input (never a crash or a half-written output).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "cli_support.h"
#include "fmnist_support.h"
#include "paths.h"
#include "saddle/error.h"
#include "saddle/run/files.h"
#include "saddle/solver.h"

namespace {

using saddle::testing::CliResult;
using saddle::testing::expect_one_line_error;

std::string slurp(const saddle::testing::Path& path) { return saddle::testing::slurp_file(path); }

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = saddle::testing::temp_root() /
           (std::string("saddle_cli_") + info->name() + "_" + std::to_string(::getpid()));
    saddle::remove_tree(dir_);
    saddle::create_directories(dir_);
  }
  void TearDown() override { saddle::remove_tree(dir_); }

  CliResult run(const std::string& args, const std::string& program = SADDLE_CLI_PATH) {
    return saddle::testing::run_program(program, args, dir_);
  }

  std::string write(const std::string& name, const std::string& text) {
    const saddle::testing::Path path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }

  saddle::testing::Path dir_;
};

TEST_F(Cli, SolveWritesMetricsAndSummary) {
  const std::string out = (dir_ / "run").string();
  auto r =
      run("solve --game bilinear --solver eg --lr 0.5 --iters 300 --log-every 50 "
          "--averaging uniform --seed 3 --out " +
          out);
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream metrics(out + "/metrics.jsonl");
  std::string line;
  std::vector<nlohmann::json> records;
  while (std::getline(metrics, line)) records.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(records.size(), 7u);  // iterations 0, 50, ..., 300
  EXPECT_EQ(records.front()["iter"], 0);
  EXPECT_EQ(records.back()["iter"], 300);
  for (const auto& rec : records) {
    EXPECT_TRUE(rec.contains("operator_norm_sq"));
    EXPECT_TRUE(rec.contains("distance_sq"));
    EXPECT_TRUE(rec.contains("bytes_sent"));
  }
  EXPECT_TRUE(records.back().contains("distance_sq_avg"));
  auto summary = nlohmann::json::parse(slurp(out + "/summary.json"));
  EXPECT_EQ(summary["iterations"], 300);
  EXPECT_TRUE(summary.contains("wall_seconds"));
  // The ledger's phases and the records' time, each a part of the run's wall time.
  double booked = 0;
  for (const char* phase : {"compute", "encode", "communicate", "wait", "decode", "records"}) {
    ASSERT_TRUE(summary["seconds"].contains(phase)) << phase;
    EXPECT_GE(summary["seconds"][phase].get<double>(), 0.0) << phase;
    booked += summary["seconds"][phase].get<double>();
  }
  EXPECT_GT(summary["seconds"]["records"].get<double>(), 0.0);  // 7 records were written
  EXPECT_LE(booked, summary["wall_seconds"].get<double>());
  EXPECT_EQ(summary["distance_sq"], records.back()["distance_sq"]);
  EXPECT_EQ(summary["config"]["solver"], "eg");
  EXPECT_EQ(summary["config"]["lr"], 0.5);
  EXPECT_EQ(summary["config"]["step-size"], "auto");  // eg's default rule
  EXPECT_LT(summary["distance_sq"].get<double>(), records.front()["distance_sq"].get<double>());
  EXPECT_FALSE(saddle::path_exists(out + "/metrics.jsonl.partial"));
}

TEST_F(Cli, SameSeedGivesByteIdenticalMetrics) {
  const std::string args =
      "solve --game bilinear --noise absolute --solver qgenx --iters 200 --log-every 10 "
      "--quantizer qsgd --bits 4 --averaging ema --seed 11 --out ";
  ASSERT_EQ(run(args + (dir_ / "a").string()).code, 0);
  ASSERT_EQ(run(args + (dir_ / "b").string()).code, 0);
  const std::string a = slurp(dir_ / "a" / "metrics.jsonl");
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, slurp(dir_ / "b" / "metrics.jsonl"));
  // A different seed gives different numbers.
  const std::string other =
      "solve --game bilinear --noise absolute --solver qgenx --iters 200 "
      "--log-every 10 --quantizer qsgd --bits 4 --averaging ema --seed 12 --out ";
  ASSERT_EQ(run(other + (dir_ / "c").string()).code, 0);
  EXPECT_NE(a, slurp(dir_ / "c" / "metrics.jsonl"));
}

TEST_F(Cli, ConfigFileWithFlagsOverriding) {
  const std::string config =
      write("run.json", R"({"game": "quadratic", "solver": "ogda", "iters": 50, "lr": 0.3,
                            "player-lr": {"y": 0.2}, "dim": 4})");
  const std::string out = (dir_ / "run").string();
  auto r = run("solve --config " + config + " --iters 80 --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  auto summary = nlohmann::json::parse(slurp(out + "/summary.json"));
  EXPECT_EQ(summary["iterations"], 80);
  EXPECT_EQ(summary["game"], "quadratic");
  EXPECT_EQ(summary["solver"], "ogda");
  EXPECT_EQ(summary["config"]["dim"], 4);
}

// `saddle solve --game G --solver S` takes the game table's defaults for S unless a flag or the
// config file sets the option, says which it took, and warns of a pairing that does not train.
TEST_F(Cli, SolveUsesTheGamesDefaultsUnlessTold) {
  const std::string out = (dir_ / "run").string();
  auto r = run("solve --game quadratic --solver extra-adam --dim 4 --no-progress --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("quadratic with extra-adam: the game's defaults --iters 3000 --lr 0.01 "
                       "--beta2 0.9999"),
            std::string::npos)
      << r.err;
  auto summary = nlohmann::json::parse(slurp(out + "/summary.json"));
  EXPECT_EQ(summary["iterations"], 3000);
  EXPECT_EQ(summary["config"]["lr"], 0.01);
  EXPECT_EQ(summary["config"]["beta2"], 0.9999);
  EXPECT_EQ(summary["config"]["step-size"], "constant");

  const std::string config = write("run.json", R"({"lr": 0.02})");
  r = run("solve --config " + config +
          " --game quadratic --solver extra-adam --dim 4 --iters 30 --beta2 0.99 --overwrite "
          "--no-progress --out " +
          out);
  ASSERT_EQ(r.code, 0) << r.err;
  summary = nlohmann::json::parse(slurp(out + "/summary.json"));
  EXPECT_EQ(summary["iterations"], 30);
  EXPECT_EQ(summary["config"]["lr"], 0.02);     // from the file
  EXPECT_EQ(summary["config"]["beta2"], 0.99);  // from the flag
  EXPECT_EQ(r.err.find("poor solver"), std::string::npos) << r.err;

  r = run("solve --game bilinear --solver gda --iters 20 --no-progress");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("warn: gda is a poor solver for bilinear: simultaneous gradient"),
            std::string::npos)
      << r.err;
}

TEST_F(Cli, GamesListsEveryGamesDefaultsAndPoorPairings) {
  auto r = run("games");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* game : {"bilinear:", "quadratic:", "mog8:", "mog25:", "wgan-gp:"}) {
    EXPECT_NE(r.out.find(game), std::string::npos) << game;
  }
  EXPECT_NE(r.out.find("gda              poor: simultaneous"), std::string::npos) << r.out;
  r = run("games --game quadratic");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("extra-adam       --iters 3000 --step-size constant --lr 0.01 --beta2 "
                       "0.9999"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("bilinear"), std::string::npos) << r.out;
  expect_one_line_error(run("games --game chess"), "unknown game 'chess'");
}

// With an average, every evaluation draws the averaged players' picture beside the last
// iterate's (on the mixtures it is the averaged generator that captures the modes).
TEST_F(Cli, EvaluationsDrawTheAveragedPlayersToo) {
  const std::string out = (dir_ / "mog").string();
  auto r =
      run("solve --game mog8 --solver extra-adam --iters 20 --eval-every 10 --filters 8 "
          "--no-progress --out " +
          out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(saddle::path_exists(out + "/samples/iter_0000010.png"));
  EXPECT_TRUE(saddle::path_exists(out + "/samples/iter_0000010_avg.png"));
  EXPECT_TRUE(saddle::path_exists(out + "/samples/iter_0000020_avg.png"));
  EXPECT_FALSE(saddle::path_exists(out + "/samples/iter_0000000_avg.png"));  // no average yet
  auto summary = nlohmann::json::parse(slurp(out + "/summary.json"));
  EXPECT_TRUE(summary.contains("modes_captured_avg"));
  EXPECT_EQ(summary["config"]["averaging"], "ema");  // the game's default
}

TEST_F(Cli, StepMaxOnlyWithAutoAndNonNegative) {
  expect_one_line_error(run("solve --solver eg --step-size constant --step-max 2 --iters 5"),
                        "--step-max applies to --step-size auto only");
  expect_one_line_error(run("solve --solver eg --step-max -1 --iters 5"), "invalid --step-max -1");
  auto r = run("solve --solver eg --step-max 2 --iters 5 --no-progress");
  EXPECT_EQ(r.code, 0) << r.err;
  if (!saddle::testing::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  // wgan-gp's extra-gradient family takes a constant step by default, and says so; a flag
  // overrides it.
  const std::string args =
      "solve --game wgan-gp --solver qgenx --filters 4 --latent 8 --batch 4 --iters 1 "
      "--no-progress";
  r = run(args);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("--step-size constant"), std::string::npos) << r.err;
  r = run(args + " --step-size auto --step-max 1");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.find("--step-size constant"), std::string::npos) << r.err;
}

// Anchored dual averaging takes Q-GenX's rule by default; auto, whose step grows, made it diverge
// even on the deterministic bilinear game, and is refused for it.
TEST_F(Cli, DualAveragingTakesAStepThatNeverGrows) {
  const std::string out = (dir_ / "da").string();
  auto r = run("solve --solver qgenx --variant dual-averaging --lr 2 --iters 300 --no-progress "
               "--out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto summary = nlohmann::json::parse(slurp(out + "/summary.json"));
  EXPECT_EQ(summary["config"]["step-size"], "qgenx") << summary.dump();
  expect_one_line_error(
      run("solve --solver qgenx --variant dual-averaging --step-size auto --iters 5"),
      "--step-size auto cannot drive --variant dual-averaging");
  const std::vector<saddle::Player> players = {{"x", saddle::Role::kMin, 0, 2},
                                               {"y", saddle::Role::kMax, 2, 2}};
  EXPECT_THROW(saddle::make_solver("qgenx", torch::zeros({4}), players,
                                   saddle::SolverOptions()
                                       .step_size(saddle::StepSizeKind::kAuto)
                                       .variant(saddle::Variant::kDualAveraging)),
               saddle::Error);
}

TEST_F(Cli, UnknownGameOrSolver) {
  expect_one_line_error(run("solve --game chess --iters 10"), "unknown game 'chess'");
  expect_one_line_error(run("solve --solver sgd --iters 10"), "unknown solver 'sgd'");
  expect_one_line_error(run("solve --quantizer zip --iters 10"), "zip");
  expect_one_line_error(run("solve --collective ring --iters 10"),
                        "invalid --collective 'ring' (expected allgather, two-phase or auto)");
  expect_one_line_error(run("solve --collective two-phase --second-bits 9 --iters 10"),
                        "invalid --second-bits 9 (2..8)");
  expect_one_line_error(run("solve --game separable --noise finite-sum --iters 10"),
                        "the separable game has no finite-sum oracle");
  expect_one_line_error(run("solve --frobnicate 3"), "frobnicate");
  expect_one_line_error(run("solve --cuda-graphs maybe --iters 10"),
                        "invalid --cuda-graphs 'maybe' (expected on or off)");
}

TEST_F(Cli, NonPositiveIterations) {
  expect_one_line_error(run("solve --iters 0"), "--iters 0");
  expect_one_line_error(run("solve --iters -5"), "--iters -5");
}

TEST_F(Cli, MalformedOrMistypedConfig) {
  expect_one_line_error(run("solve --config " + write("bad.json", "{\"iters\": 10,")),
                        "invalid JSON");
  expect_one_line_error(run("solve --config " + write("typed.json", R"({"iters": "100"})")),
                        "key 'iters' must be an integer");
  expect_one_line_error(run("solve --config " + write("lr.json", R"({"lr": "fast"})")),
                        "key 'lr' must be a number");
  expect_one_line_error(run("solve --config " + write("unknown.json", R"({"iterations": 10})")),
                        "unknown key 'iterations'");
  expect_one_line_error(run("solve --config " + write("list.json", R"([1, 2])")),
                        "must be a JSON object");
  expect_one_line_error(run("solve --config " + (dir_ / "missing.json").string()),
                        "missing.json: no such file");
}

TEST_F(Cli, UnwritableOut) {
  const std::string file = write("plain-file", "x");
  expect_one_line_error(run("solve --iters 10 --out " + file + "/run"), "cannot write to --out");
}

TEST_F(Cli, DivergingRunIsReportedWithItsIteration) {
  const std::string out = (dir_ / "run").string();
  auto r =
      run("solve --game bilinear --solver gda --lr 2 --iters 100000 --log-every 1 --out " + out);
  expect_one_line_error(r, "diverged at iteration");
  EXPECT_FALSE(saddle::path_exists(out + "/metrics.jsonl"));
  EXPECT_FALSE(saddle::path_exists(out + "/summary.json"));
  // The records up to the divergence stay, marked partial, and never hold nan or inf.
  const std::string partial = slurp(out + "/metrics.jsonl.partial");
  EXPECT_FALSE(partial.empty());
  EXPECT_EQ(partial.find("nan"), std::string::npos);
  EXPECT_EQ(partial.find("inf"), std::string::npos);
  EXPECT_EQ(partial.find("null"), std::string::npos);
}

TEST_F(Cli, VariantOnlyWithQgenx) {
  expect_one_line_error(run("solve --solver eg --variant optimistic --iters 10"),
                        "--variant applies to --solver qgenx only");
  expect_one_line_error(run("solve --solver qgenx --variant sideways --iters 10"),
                        "unknown qgenx variant 'sideways'");
}

TEST_F(Cli, HelpListsEverything) {
  auto top = run("--help");
  EXPECT_EQ(top.code, 0);
  EXPECT_NE(top.out.find("solve"), std::string::npos);
  EXPECT_NE(top.out.find("demo"), std::string::npos);
  EXPECT_NE(top.out.find("games"), std::string::npos);
  auto solve = run("solve --help");
  EXPECT_EQ(solve.code, 0);
  for (const char* flag :
       {"--game", "--solver", "--iters", "--seed", "--out", "--step-size", "--lr", "--player-lr",
        "--variant", "--averaging", "--config", "--quantizer", "--bits", "--bucket-size", "--norm",
        "--coder", "--noise"}) {
    EXPECT_NE(solve.out.find(flag), std::string::npos) << flag;
  }
}

TEST_F(Cli, CompareTablesEverySolverThatTrainsOnTheGame) {
  auto r = run("compare --iters 300");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* solver : {"eg", "ogda", "extra-adam", "optimistic-adam", "qgenx"}) {
    EXPECT_NE(r.out.find("\n" + std::string(solver) + " "), std::string::npos) << solver << r.out;
  }
  // gda and alt-gda are poor pairings for the bilinear game: rows only when asked for.
  EXPECT_EQ(r.out.find("\ngda "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("median [min, max] over seeds"), std::string::npos) << r.out;
}

// Rows from flags, several seeds: one folder per row and seed, compare.jsonl with one line per
// row, seed and record, summary.json with each row's spread over seeds, two plots; a second
// comparison into the same --out is refused before anything runs, unless --overwrite.
TEST_F(Cli, CompareWritesRowsSeedsJsonlSummaryAndPlots) {
  const std::string out = (dir_ / "cmp").string();
  const std::string args =
      "compare --dim 8 --seeds 2 --row eg --row 'eg-const: --solver eg --step-size constant "
      "--lr 0.5' --out " +
      out;
  auto r = run(args + " --iters 50");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* row : {"eg", "eg-const"}) {
    for (const char* seed : {"seed-0", "seed-1"}) {
      EXPECT_TRUE(saddle::path_exists(out + "/" + row + "/" + seed + "/summary.json"))
          << row << "/" << seed;
    }
  }
  for (const char* plot : {"distance_sq_by_iteration.png", "distance_sq_by_bytes.png"}) {
    EXPECT_TRUE(saddle::path_exists(out + "/" + plot)) << plot;
    EXPECT_NE(r.out.find(plot), std::string::npos) << r.out;
  }
  std::set<std::pair<std::string, int>> seen;
  std::istringstream lines(slurp(out + "/compare.jsonl"));
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    seen.insert({j["row"].get<std::string>(), j["seed"].get<int>()});
    EXPECT_TRUE(j.contains("iter") && j.contains("distance_sq")) << line;
  }
  EXPECT_EQ(seen.size(), 4u);
  const auto summary = nlohmann::json::parse(slurp(out + "/summary.json"));
  ASSERT_EQ(summary["rows"].size(), 2u);
  const auto& eg = summary["rows"][0];
  EXPECT_EQ(eg["name"], "eg");
  EXPECT_EQ(eg["seeds"].size(), 2u);
  EXPECT_LE(eg["distance_sq"]["min"].get<double>(), eg["distance_sq"]["median"].get<double>());
  EXPECT_LE(eg["distance_sq"]["median"].get<double>(), eg["distance_sq"]["max"].get<double>());
  // The two seeds draw different games: their results differ.
  EXPECT_NE(eg["seeds"][0]["final"]["distance_sq"], eg["seeds"][1]["final"]["distance_sq"]);
  expect_one_line_error(run(args + " --iters 50"), "already holds a comparison");
  r = run(args + " --iters 60 --overwrite");
  ASSERT_EQ(r.code, 0) << r.err;
  auto one = nlohmann::json::parse(slurp(out + "/eg-const/seed-1/summary.json"));
  EXPECT_EQ(one["iterations"], 60);
}

TEST_F(Cli, CompareOnAMixtureOfGaussiansOverSeeds) {
  const std::string out = (dir_ / "mog").string();
  auto r = run("compare --game mog8 --iters 20 --seeds 2 --with '--batch 32 --eval-every 10' "
               "--row extra-adam --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("modes_captured"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 finished"), std::string::npos) << r.out;
  EXPECT_TRUE(saddle::path_exists(out + "/modes_captured_by_iteration.png"));
  EXPECT_TRUE(saddle::path_exists(out + "/modes_captured_avg_by_bytes.png"));
}

TEST_F(Cli, CompareOnWganGpPlotsFidOverSeeds) {
  if (!saddle::testing::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  const std::string data = saddle::testing::write_tiny_fashion_mnist(dir_ / "data", 256, 128);
  const std::string out = (dir_ / "wgan").string();
  auto r = run("compare --game wgan-gp --iters 4 --seeds 2 --row extra-adam --row qgenx --with "
               "'--filters 4 --latent 8 --batch 8 --eval-every 2 --fid-samples 64 --data-dir " +
               data + " --classifier " + (dir_ / "c.pt").string() + "' --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("fid (lower is better)"), std::string::npos) << r.out;
  EXPECT_TRUE(saddle::path_exists(out + "/fid_by_iteration.png")) << r.out;
  const auto summary = nlohmann::json::parse(slurp(out + "/summary.json"));
  EXPECT_GT(summary["rows"][0]["fid"]["median"].get<double>(), 0.0) << summary.dump();
}

// --budget-bytes gives every row the same bytes instead of the same iterations: 4-bit rows run
// about eight times the iterations of fp32 ones, and the by-bytes plot ends at the budget.
TEST_F(Cli, CompareAtAByteBudget) {
  const std::string out = (dir_ / "budget").string();
  auto r =
      run("compare --dim 64 --seeds 2 --budget-bytes 64KiB --row 'fp32: --solver qgenx "
          "--quantizer none' --row 'alq4: --solver qgenx --quantizer alq --bits 4' --out " +
          out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("budget 64.0 KiB per row"), std::string::npos) << r.out;
  const auto summary = nlohmann::json::parse(slurp(out + "/summary.json"));
  EXPECT_EQ(summary["budget_bytes"], 65536);
  ASSERT_EQ(summary["rows"].size(), 2u);
  std::vector<double> iterations;
  for (const auto& row : summary["rows"]) {
    for (const auto& seed : row["seeds"]) {
      EXPECT_GE(seed["bytes_sent"].get<int64_t>(), 65536) << row.dump();
    }
    iterations.push_back(row["iterations"]["median"].get<double>());
  }
  EXPECT_GT(iterations[1], 4 * iterations[0]) << summary.dump();
  EXPECT_TRUE(saddle::path_exists(out + "/distance_sq_by_bytes.png"));
  expect_one_line_error(run("compare --budget-bytes 0"), "invalid --budget-bytes 0");
  expect_one_line_error(run("compare --budget-bytes lots"), "invalid --budget-bytes 'lots'");
}

TEST_F(Cli, CompareRefusesBadRowsBeforeRunningAny) {
  const std::string out = (dir_ / "bad").string();
  expect_one_line_error(run("compare --row 'x y: --lr 1' --out " + out), "invalid row name 'x y'");
  expect_one_line_error(run("compare --row 'fast: --lr 1'"), "'fast' is not a solver");
  expect_one_line_error(run("compare --row 'eg: --seed 3'"), "--seed is set by saddle compare");
  expect_one_line_error(run("compare --row eg --row 'eg: --lr 0.5'"), "two rows are named 'eg'");
  expect_one_line_error(run("compare --row eg --row 'later: --solver eg --lr abc'"),
                        "row 'later'");
  expect_one_line_error(run("compare --row 'e: --solver sgd'"), "unknown solver 'sgd'");
  expect_one_line_error(run("compare --seeds 0"), "invalid --seeds 0");
  expect_one_line_error(run("compare --game mog8 --dim 3"), "--dim applies to the analytic games");
  const std::string rows = (dir_ / "rows.json").string();
  saddle::write_file_atomic(rows, "[{\"solver\": \"eg\"}, 3]");
  expect_one_line_error(run("compare --rows " + rows), "row 2: expected an object");
  expect_one_line_error(run("compare --rows " + rows + ".missing"), "no such file");
  EXPECT_FALSE(saddle::path_exists(out)) << "nothing written for a refused comparison";
}

// A row that diverges on every seed is recorded as such, and the next row still runs.
TEST_F(Cli, CompareRecordsADivergenceAndGoesOn) {
  auto r = run("compare --dim 8 --iters 300 --seeds 2 --row 'gda: --lr 50' --row eg");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("2 of 2 diverged (at iteration "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\neg "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 finished"), std::string::npos) << r.out;
}

// saddle quantizers: the measured variance of each quantizer on the game's own operators agrees
// with what its levels predict, QSGD stays under its worst-case bound, and the files are written.
TEST_F(Cli, QuantizersMeasureVarianceBesideTheirPredictionAndBound) {
  const std::string out = (dir_ / "q").string();
  auto r = run("quantizers --dim 32 --iters 30 --samples 2 --draws 40 --quantizers qsgd,alq "
               "--bits 3,4 --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* file : {"quantizers.jsonl", "summary.json", "variance.png"}) {
    EXPECT_TRUE(saddle::path_exists(out + "/" + file)) << file;
  }
  const auto summary = nlohmann::json::parse(slurp(out + "/summary.json"));
  ASSERT_EQ(summary["rows"].size(), 4u) << summary.dump();
  for (const auto& row : summary["rows"]) {
    const double measured = row["measured_median"], predicted = row["predicted_median"];
    EXPECT_NEAR(measured / predicted, 1.0, 0.25) << row.dump();
    if (row["quantizer"] == "qsgd") EXPECT_LE(measured, row["qsgd_bound"].get<double>()) << row;
  }
  // Adaptive levels beat QSGD's uniform ones at the same width on the same operators.
  EXPECT_LT(summary["rows"][3]["measured_median"].get<double>(),
            summary["rows"][1]["measured_median"].get<double>());
  EXPECT_NE(r.out.find("alq 3-bit levels"), std::string::npos) << r.out;
  expect_one_line_error(run("quantizers --bits 9"), "invalid --bits entry '9'");
  expect_one_line_error(run("quantizers --quantizers bf16"), "bf16 is a cast");
  expect_one_line_error(run("quantizers --quantizers zip"), "zip");
  expect_one_line_error(run("quantizers --out " + out), "already holds a measurement");
}

TEST_F(Cli, CompareRowsFromAJsonFile) {
  const std::string rows = (dir_ / "rows.json").string();
  saddle::write_file_atomic(rows,
                            "[{\"name\": \"eg-fast\", \"solver\": \"eg\", \"step-size\": "
                            "\"constant\", \"lr\": 0.5}, {\"solver\": \"ogda\"}]");
  auto r = run("compare --dim 8 --iters 40 --rows " + rows);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\neg-fast "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\nogda "), std::string::npos) << r.out;
}

TEST_F(Cli, DemoTrainsAQuantizedGanAndReportsFidBytesAndSamples) {
  if (!saddle::testing::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  const std::string data = saddle::testing::write_tiny_fashion_mnist(dir_ / "data", 256, 128);
  const saddle::testing::Path classifier = dir_ / "classifier.pt", out = dir_ / "demo";
  auto r =
      run("demo --iters 4 --eval-every 2 --filters 4 --batch 8 --fid-samples 64 --no-progress "
          "--log-level warn --data-dir " +
          data + " --classifier " + classifier.string() + " --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(saddle::path_exists(classifier)) << "the demo trains and caches its classifier";
  for (const char* needle : {"alq 4-bit", "FID", "bytes sent by all ranks",
                             "where fp32 would have sent", "ranks agree: yes"}) {
    EXPECT_NE(r.out.find(needle), std::string::npos) << needle << "\n" << r.out;
  }
  const std::string grid = (out / "samples" / "iter_0000004.png").string();
  EXPECT_NE(r.out.find("samples: " + grid), std::string::npos) << r.out;
  EXPECT_TRUE(saddle::path_exists(grid));
  // One row per evaluation (iterations 0, 2, 4) in the printed table and in summary.json.
  for (const char* row : {"\n        0 ", "\n        2 ", "\n        4 "}) {
    EXPECT_NE(r.out.find(row), std::string::npos) << row << r.out;
  }
  const auto summary = nlohmann::json::parse(slurp(out / "summary.json"));
  EXPECT_TRUE(summary.contains("fid")) << summary.dump();
  EXPECT_LT(summary["bytes_sent"].get<double>(), 0.2 * summary["bytes_sent_fp32"].get<double>());
}

TEST_F(Cli, DemoBadArgumentsAreOneLineErrors) {
  expect_one_line_error(run("demo --iters 0"), "invalid --iters 0");
  expect_one_line_error(run("demo --eval-every 0"), "invalid --eval-every 0");
  expect_one_line_error(run("demo --quantizer zip"), "zip");
  expect_one_line_error(run("demo --bits 9"), "bits");
  const std::string missing = (dir_ / "none").string();
  expect_one_line_error(
      run("demo --classifier " + (dir_ / "c.pt").string() + " --data-dir " + missing), missing);
  EXPECT_FALSE(saddle::path_exists(dir_ / "c.pt"));
}

TEST_F(Cli, CustomGameExampleConverges) {
#ifndef SADDLE_EXAMPLE_PATH
  GTEST_SKIP() << "the examples are not built (-DSADDLE_BUILD_EXAMPLES=OFF)";
#else
  auto r = run("", SADDLE_EXAMPLE_PATH);
  ASSERT_EQ(r.code, 0) << r.err;
  const double distance = std::stod(r.out.substr(r.out.find("distance_sq") + 12));
  EXPECT_LT(distance, 1e-6) << r.out;
#endif
}

}  // namespace

namespace {

TEST_F(Cli, ResumeContinuesExactlyAsAnUninterruptedRun) {
  const std::string common =
      "solve --game bilinear --noise absolute --solver extra-adam --lr 0.01 --averaging ema "
      "--ema-decay 0.9 --quantizer alq --bits 4 --log-every 5 --seed 4 --no-progress ";
  const std::string whole = (dir_ / "whole").string(), parts = (dir_ / "parts").string();
  ASSERT_EQ(run(common + "--iters 60 --out " + whole).code, 0);
  ASSERT_EQ(run(common + "--iters 30 --out " + parts).code, 0);
  auto resumed = run(common + "--iters 60 --resume " + parts);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  const std::string expected = slurp(dir_ / "whole" / "metrics.jsonl");
  EXPECT_FALSE(expected.empty());
  EXPECT_EQ(slurp(dir_ / "parts" / "metrics.jsonl"), expected);
  auto summary = nlohmann::json::parse(slurp(dir_ / "parts" / "summary.json"));
  EXPECT_EQ(summary["resumed_from"], 30);
}

// --max-bytes: the run stops after the iteration whose exchange spends the budget, records about
// every hundredth of it, and a run cut short by --iters resumes to the same records.
TEST_F(Cli, MaxBytesStopsAtTheBudgetAndResumesExactly) {
  // 4-bit ALQ on dim 10: 46 bytes per exchange, two exchanges an iteration; 46000 bytes is 500
  // iterations and a record every 460 bytes (5 iterations).
  const std::string common =
      "solve --game bilinear --noise absolute --solver qgenx --quantizer alq --bits 4 --seed 2 "
      "--max-bytes 46000 --no-progress ";
  const std::string whole = (dir_ / "whole").string(), parts = (dir_ / "parts").string();
  auto r = run(common + "--iters 100000 --out " + whole);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("(byte budget spent)"), std::string::npos) << r.out;
  const auto summary = nlohmann::json::parse(slurp(dir_ / "whole" / "summary.json"));
  EXPECT_TRUE(summary["budget_reached"].get<bool>());
  const int64_t bytes = summary["bytes_sent"].get<int64_t>();
  const int64_t iterations = summary["iterations"].get<int64_t>();
  EXPECT_GE(bytes, 46000);
  EXPECT_LT(bytes - bytes / iterations, 46000) << "one iteration fewer would not have spent it";
  std::vector<nlohmann::json> records;
  std::istringstream lines(slurp(dir_ / "whole" / "metrics.jsonl"));
  for (std::string line; std::getline(lines, line);) records.push_back(nlohmann::json::parse(line));
  EXPECT_GE(records.size(), 95u);
  EXPECT_LE(records.size(), 102u);
  EXPECT_EQ(records.back()["iter"].get<int64_t>(), iterations);
  ASSERT_EQ(run(common + "--iters 30 --out " + parts).code, 0);
  auto resumed = run(common + "--iters 100000 --resume " + parts);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(slurp(dir_ / "parts" / "metrics.jsonl"), slurp(dir_ / "whole" / "metrics.jsonl"));
  for (const char* bad : {"12x", "-5", "1.5Q", "inf", "k"}) {
    expect_one_line_error(run(std::string("solve --game bilinear --max-bytes ") + bad),
                          "invalid --max-bytes");
  }
}

// The preconditioner's second moment is part of the checkpoint: a resumed run continues exactly.
TEST_F(Cli, PreconditionedQgenxResumesExactlyAndRefusesOtherSolvers) {
  const std::string common =
      "solve --game bilinear --noise absolute --solver qgenx --precondition adam --quantizer alq "
      "--bits 4 --log-every 5 --seed 7 --no-progress ";
  const std::string whole = (dir_ / "whole").string(), parts = (dir_ / "parts").string();
  ASSERT_EQ(run(common + "--iters 60 --out " + whole).code, 0);
  ASSERT_EQ(run(common + "--iters 30 --out " + parts).code, 0);
  auto resumed = run(common + "--iters 60 --resume " + parts);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(slurp(dir_ / "parts" / "metrics.jsonl"), slurp(dir_ / "whole" / "metrics.jsonl"));
  expect_one_line_error(run("solve --game bilinear --solver extra-adam --precondition adam"),
                        "--precondition applies to the extra-gradient family");
  expect_one_line_error(run("solve --game bilinear --solver qgenx --precondition rms"),
                        "unknown --precondition 'rms'");
  expect_one_line_error(
      run("solve --game bilinear --solver qgenx --variant dual-averaging --precondition adam"),
      "cannot drive --variant dual-averaging");
}

TEST_F(Cli, ResumeRefusesAnotherGameOrShape) {
  const std::string out = (dir_ / "run").string();
  ASSERT_EQ(run("solve --game bilinear --iters 10 --no-progress --out " + out).code, 0);
  expect_one_line_error(run("solve --game quadratic --iters 20 --resume " + out),
                        "--game was \"bilinear\" when checkpoint");
  expect_one_line_error(run("solve --game bilinear --dim 3 --iters 20 --resume " + out),
                        "--dim was 10 when checkpoint");
  expect_one_line_error(run("solve --iters 20 --resume " + (dir_ / "nothing").string()),
                        "no such directory");
  EXPECT_FALSE(saddle::path_exists((dir_ / "nothing").string())) << "a failed resume created it";
  std::ofstream(out + "/checkpoint.rank0.pt") << "not a checkpoint";
  std::ofstream(out + "/checkpoint.rank0.prev.pt") << "SADDLE-CHECKPOINT 1\n{}\n";
  const auto r = run("solve --game bilinear --iters 20 --resume " + out);
  expect_one_line_error(r, "is not a saddle checkpoint");
  EXPECT_NE(r.err.find("has another format"), std::string::npos) << r.err;
}

}  // namespace

namespace {

// A GAN run resumes exactly too: batch-norm statistics and the data sampler travel in the
// checkpoint (Fashion-MNIST from Debian's dataset-fashion-mnist).
TEST_F(Cli, WganGpResumesExactly) {
  if (!saddle::testing::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  const std::string common =
      "solve --game wgan-gp --filters 4 --latent 8 --batch 4 --solver extra-adam --lr 1e-4 "
      "--player-lr critic=5e-4 --log-every 1 --seed 2 --no-progress --device cpu ";
  const std::string whole = (dir_ / "whole").string(), parts = (dir_ / "parts").string();
  ASSERT_EQ(run(common + "--iters 6 --out " + whole).code, 0);
  ASSERT_EQ(run(common + "--iters 3 --out " + parts).code, 0);
  auto resumed = run(common + "--iters 6 --resume " + parts);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  const std::string expected = slurp(dir_ / "whole" / "metrics.jsonl");
  EXPECT_FALSE(expected.empty());
  EXPECT_EQ(slurp(dir_ / "parts" / "metrics.jsonl"), expected);
}

}  // namespace

namespace {

TEST_F(Cli, MalformedListOptions) {
  expect_one_line_error(run("solve --iters 5 --player-lr y=0.2x"), "'0.2x' is not a number");
  expect_one_line_error(run("solve --iters 5 --player-lr =0.2"), "expected NAME=LR");
  expect_one_line_error(run("solve --iters 5 --player-lr z=0.2"), "unknown player 'z'");
  expect_one_line_error(run("solve --iters 5 --level-schedule 0 -1"),
                        "invalid --level-schedule entry '-1'");
}

}  // namespace
