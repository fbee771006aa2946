// Reliability as a careless or hostile user meets it: resume never loses or mixes records, a run
// never silently replaces another, checkpoints are checked, ranks cannot hang each other, signals
// checkpoint and say how to continue, output directories are locked and never written through
// links, and bad input gets one line naming the option.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <tuple>

#include "cli_support.h"
#include "paths.h"
#include "saddle/data/datasets.h"
#include "saddle/error.h"
#include "saddle/run/checkpoint.h"
#include "saddle/run/files.h"

namespace {

using saddle::testing::CliResult;
using saddle::testing::expect_one_line_error;
using saddle::testing::Path;

constexpr const char* kQuick =
    "solve --game bilinear --noise absolute --solver extra-adam --lr 0.01 --seed 4 "
    "--log-every 10 --no-progress ";

// Waits (up to 30 s) until `path` exists: a run has started its loop once its records file is
// there.
void wait_for(const std::string& path) {
  for (int i = 0; i < 600 && !saddle::path_exists(path); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Starts `command` under /bin/sh (exec'd, so the pid is the program's own); returns its pid.
pid_t spawn(const std::string& command) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string exec = "exec " + command;
    ::execl("/bin/sh", "sh", "-c", exec.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

class Reliability : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = saddle::testing::fresh_temp_dir("saddle_reliability"); }
  void TearDown() override {
    for (const auto& mount : mounts_) ::umount2(mount.c_str(), MNT_DETACH);
    saddle::remove_tree(dir_);
  }

  CliResult run(const std::string& args) {
    return saddle::testing::run_program(SADDLE_CLI_PATH, args, dir_);
  }
  // `ranks` ranks of saddle with the same arguments, or an MPMD line ("-np 1 S a : -np 1 S b")
  // when `mpmd` is given.
  CliResult mpirun(int ranks, const std::string& args) {
    return saddle::testing::run_program(
        std::string(SADDLE_MPIRUN_PATH) + " -np " + std::to_string(ranks) +
            " --oversubscribe --allow-run-as-root --bind-to none " + SADDLE_CLI_PATH,
        args, dir_);
  }
  CliResult mpmd(const std::string& first, const std::string& second) {
    const std::string prefix = std::string(SADDLE_MPIRUN_PATH) +
                               " --oversubscribe --allow-run-as-root --bind-to none -np 1 " +
                               SADDLE_CLI_PATH + " ";
    return saddle::testing::run_program(prefix + first + " : -np 1 " + SADDLE_CLI_PATH, second,
                                        dir_);
  }
  std::string out(const std::string& name) const { return (dir_ / name).string(); }
  std::string slurp(const std::string& path) const { return saddle::testing::slurp_file(path); }

  // A small tmpfs at `path` (root and mount permission needed), or "" with the reason.
  std::string mount_tmpfs(const std::string& path, const std::string& size) {
    saddle::create_directories(path);
    if (::mount("tmpfs", path.c_str(), "tmpfs", 0, ("size=" + size).c_str()) != 0) {
      return std::string("cannot mount a tmpfs here: ") + std::strerror(errno);
    }
    mounts_.push_back(path);
    return "";
  }

  Path dir_;
  std::vector<std::string> mounts_;
};

// Item 1: resume uses exactly the records of the checkpoint it restores, or refuses.
TEST_F(Reliability, ResumeRefusesRecordsThatAreNotTheCheckpoints) {
  const std::string sp = out("sp");
  ASSERT_EQ(run(std::string(kQuick) + "--iters 200 --checkpoint-every 100 --out " + sp).code, 0);
  // Another run's records in place of this one's (what a failing run into the same folder left).
  const std::string other = out("other");
  ASSERT_EQ(run(std::string(kQuick) + "--iters 400 --lr 0.02 --out " + other).code, 0);
  std::ofstream(sp + "/metrics.jsonl.partial") << slurp(other + "/metrics.jsonl");
  expect_one_line_error(run(std::string(kQuick) + "--iters 400 --resume " + sp),
                        "are not those of the checkpoint at iteration 200");
}

// Item 2: a finished run is never silently replaced.
TEST_F(Reliability, AFinishedRunIsReplacedOnlyWithOverwrite) {
  const std::string sp = out("sp");
  ASSERT_EQ(run(std::string(kQuick) + "--iters 30 --checkpoint-every 10 --out " + sp).code, 0);
  const std::string before = slurp(sp + "/metrics.jsonl");
  const auto refused = run(std::string(kQuick) + "--iters 20 --lr 0.5 --solver gda --out " + sp);
  expect_one_line_error(refused, "already holds a finished run");
  EXPECT_NE(refused.err.find("--overwrite"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("--resume " + sp), std::string::npos) << refused.err;
  EXPECT_EQ(slurp(sp + "/metrics.jsonl"), before) << "the refused run touched the old one";
  const auto replaced = run(std::string(kQuick) + "--iters 20 --overwrite --out " + sp);
  ASSERT_EQ(replaced.code, 0) << replaced.err;
  EXPECT_FALSE(saddle::path_exists(sp + "/checkpoint.rank0.prev.pt"))
      << "a file of the replaced run survived";
  EXPECT_EQ(nlohmann::json::parse(slurp(sp + "/summary.json"))["iterations"], 20);
}

// Item 3: every option that changes the arithmetic must match on resume.
TEST_F(Reliability, ResumeRefusesOptionsThatChangeTheArithmetic) {
  const std::string sp = out("sp");
  ASSERT_EQ(run(std::string(kQuick) + "--iters 20 --quantizer alq --out " + sp).code, 0);
  for (const char* change : {"--quantizer qsgd", "--seed 5", "--lr 0.02", "--noise relative",
                             "--condition 7", "--averaging ema", "--bits 3"}) {
    const std::string args =
        std::string(kQuick) + "--quantizer alq --iters 40 --resume " + sp + " " + change;
    const std::string option = std::string(change).substr(0, std::string(change).find(' '));
    expect_one_line_error(run(args), option + " was ");
  }
  // What may change: the length of the run, logging, checkpoints.
  const auto ok = run(std::string(kQuick) +
                      "--quantizer alq --iters 40 --log-every 5 "
                      "--checkpoint-every 7 --resume " +
                      sp);
  EXPECT_EQ(ok.code, 0) << ok.err;
}

// Item 4: a flipped byte anywhere in a checkpoint is refused, naming the file.
TEST_F(Reliability, CorruptCheckpointsAreRefused) {
  const std::string sp = out("sp");
  ASSERT_EQ(run(std::string(kQuick) + "--iters 20 --quantizer alq --out " + sp).code, 0);
  const std::string path = sp + "/checkpoint.rank0.pt";
  const std::string good = slurp(path);
  for (size_t at : {good.size() / 3, good.size() / 2, good.size() - 5}) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    saddle::testing::write_bytes(path, bad);
    expect_one_line_error(run(std::string(kQuick) + "--quantizer alq --iters 40 --resume " + sp),
                          "checkpoint.rank0.pt");
  }
  saddle::testing::write_bytes(path, good.substr(0, good.size() - 100));
  expect_one_line_error(run(std::string(kQuick) + "--quantizer alq --iters 40 --resume " + sp),
                        "is truncated");
}

// Item 5: a torn record after the checkpoint (a crash mid-write) is dropped, and said so.
TEST_F(Reliability, TornRecordsAfterTheCheckpointAreDropped) {
  const std::string whole = out("whole"), parts = out("parts");
  ASSERT_EQ(run(std::string(kQuick) + "--iters 60 --out " + whole).code, 0);
  ASSERT_EQ(run(std::string(kQuick) + "--iters 60 --checkpoint-every 30 --out " + parts).code, 0);
  // As if the run had died after its checkpoint at 30, in the middle of writing a record.
  saddle::remove_file(parts + "/checkpoint.rank0.pt");
  saddle::remove_file(parts + "/summary.json");
  std::string records = slurp(parts + "/metrics.jsonl");
  saddle::remove_file(parts + "/metrics.jsonl");
  records.resize(records.size() - 40);  // ends inside the last record
  std::ofstream(parts + "/metrics.jsonl.partial") << records;
  const auto resumed =
      run(std::string(kQuick) + "--iters 60 --resume " + parts + " --log-level info");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("and a torn last line written after the checkpoint at iteration 30"),
            std::string::npos)
      << resumed.err;
  EXPECT_EQ(slurp(parts + "/metrics.jsonl"), slurp(whole + "/metrics.jsonl"));
}

// Item 6: an output path that cannot be written is refused before minutes of training.
TEST_F(Reliability, ClassifierChecksItsOutputFirst) {
  std::ofstream(out("afile")) << "x";
  const auto start = std::chrono::steady_clock::now();
  const auto r = run("classifier --out " + out("afile") + "/x.pt --epochs 1");
  expect_one_line_error(r, "cannot write --out");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 20.0);
  expect_one_line_error(run("classifier --out " + dir_.string()), "is a directory");
}

// Item 7: ranks given different options end at once with the first difference named.
TEST_F(Reliability, RanksWithDifferentOptionsStopWithOneLine) {
  const std::string base = "solve --game bilinear --no-progress ";
  for (const auto& [a, b, key] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"--iters 3000", "--iters 2000", "--iters is 3000 on rank 0 but 2000 on rank 1"},
           {"--quantizer alq", "--quantizer qsgd", "--quantizer is \"alq\" on rank 0"},
           {"--seed 1", "--seed 2", "--seed is 1 on rank 0 but 2 on rank 1"}}) {
    const auto r = mpmd(base + a, base + b);
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.err.find("ranks disagree on the configuration: " + key), std::string::npos)
        << r.err;
  }
}

// saddle compare under mpirun: every rank runs every row and seed, rank 0 prints one table; rows
// that differ between ranks end the job with one line, as solve's options do, instead of hanging.
TEST_F(Reliability, CompareUnderMpirunTablesOnceAndEndsOnDisagreement) {
  const std::string args = "compare --dim 8 --iters 40 --seeds 2 --row eg --row ogda --out ";
  const auto r = mpirun(2, args + out("cmp"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("2 rank(s)"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\neg "), r.out.rfind("\neg ")) << "one table, from rank 0: " << r.out;
  EXPECT_TRUE(saddle::path_exists(out("cmp") + "/ogda/seed-1/summary.json"));
  const auto bad = mpmd("compare --dim 8 --iters 40 --row eg", "compare --dim 8 --iters 40 --row "
                        "'eg: --lr 0.3'");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("ranks disagree on the configuration"), std::string::npos) << bad.err;
}

// Item 8: ranks killed between checkpoints resume from the newest one they all hold; with none
// in common they refuse without writing anything.
TEST_F(Reliability, RanksResumeFromACheckpointTheyAllHold) {
  const std::string whole = out("whole"), parts = out("parts");
  const std::string args = std::string(kQuick) + "--iters 60 --quantizer alq ";
  ASSERT_EQ(mpirun(2, args + "--out " + whole).code, 0);
  ASSERT_EQ(mpirun(2, args + "--checkpoint-every 30 --out " + parts).code, 0);
  saddle::remove_file(parts + "/checkpoint.rank1.pt");  // rank 1 died before checkpointing 60
  saddle::remove_file(parts + "/summary.json");
  const auto resumed = mpirun(2, args + "--resume " + parts);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(slurp(parts + "/metrics.jsonl"), slurp(whole + "/metrics.jsonl"));

  saddle::remove_file(parts + "/checkpoint.rank1.pt");
  saddle::remove_file(parts + "/checkpoint.rank1.prev.pt");
  const auto listing = saddle::list_directory(parts);
  const std::string zero = slurp(parts + "/checkpoint.rank0.pt");
  const auto refused = mpirun(2, args + "--resume " + parts);
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("no checkpoint iteration is held by every rank"), std::string::npos)
      << refused.err;
  EXPECT_EQ(saddle::list_directory(parts), listing);
  EXPECT_EQ(slurp(parts + "/checkpoint.rank0.pt"), zero) << "a refused resume wrote a checkpoint";
}

// Item 10: a full disk while checkpointing is one clear line, and the previous checkpoint stays.
TEST_F(Reliability, FullDiskIsOneLineAndThePreviousCheckpointSurvives) {
  const std::string disk = out("disk");
  const std::string why = mount_tmpfs(disk, "1m");
  if (!why.empty()) GTEST_SKIP() << why;
  const std::string sp = disk + "/run";
  ASSERT_EQ(run(std::string(kQuick) + "--iters 20 --out " + sp).code, 0);
  const std::string checkpoint = slurp(sp + "/checkpoint.rank0.pt");
  // Fill the disk to the last byte.
  {
    std::ofstream filler(disk + "/filler", std::ios::binary);
    const std::string block(4096, 'x');
    while (filler.write(block.data(), block.size())) {
    }
  }
  const auto r = run(std::string(kQuick) + "--iters 40 --resume " + sp);
  expect_one_line_error(r, "No space left on device");
  EXPECT_LT(r.code, 128) << "crashed: " << r.err;
  EXPECT_EQ(slurp(sp + "/checkpoint.rank0.pt"), checkpoint);
  saddle::remove_file(disk + "/filler");
  // Two ranks: the failing rank's own line shows before the job ends.
  saddle::remove_file(disk + "/filler");
  const std::string two = disk + "/two";
  ASSERT_EQ(mpirun(2, std::string(kQuick) + "--iters 20 --out " + two).code, 0);
  {
    std::ofstream filler(disk + "/filler", std::ios::binary);
    const std::string block(4096, 'x');
    while (filler.write(block.data(), block.size())) {
    }
  }
  const auto both = mpirun(2, std::string(kQuick) + "--iters 40 --resume " + two);
  EXPECT_NE(both.code, 0);
  EXPECT_NE(both.err.find("saddle: error on rank"), std::string::npos) << both.err;
  EXPECT_NE(both.err.find("No space left on device"), std::string::npos) << both.err;
  // The library on its own: a save that does not fit leaves the old file intact.
  saddle::Checkpoint big;
  big.meta = {{"iteration", 1}};
  big.tensors.emplace_back("z", torch::zeros({1 << 19}));
  EXPECT_THROW(saddle::save_checkpoint(sp + "/checkpoint.rank0.pt", big), saddle::Error);
  EXPECT_EQ(slurp(sp + "/checkpoint.rank0.pt"), checkpoint);
}

// Item 11: SIGTERM (a scheduler's preemption) checkpoints, says how to continue, and the resumed
// run equals an uninterrupted one; a second signal stops at once.
TEST_F(Reliability, SigtermCheckpointsAndTheRunContinuesExactly) {
  const std::string whole = out("whole"), parts = out("parts");
  const std::string args =
      "solve --game bilinear --solver eg --lr 0.5 --seed 3 --no-progress "
      "--log-every 5000 --iters 100000 ";
  ASSERT_EQ(run(args + "--out " + whole).code, 0);
  const std::string err = out("err.txt");
  const pid_t pid =
      spawn(std::string(SADDLE_CLI_PATH) + " " + args + "--out " + parts + " 2>" + err);
  ASSERT_GT(pid, 0);
  wait_for(parts + "/metrics.jsonl.partial");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by the signal instead of stopping cleanly";
  EXPECT_EQ(WEXITSTATUS(status), 143);
  const std::string message = slurp(err);
  EXPECT_NE(message.find("interrupted at iteration"), std::string::npos) << message;
  EXPECT_NE(message.find("--resume " + parts), std::string::npos) << message;
  ASSERT_TRUE(saddle::path_exists(parts + "/checkpoint.rank0.pt"));
  const auto resumed = run(args + "--resume " + parts);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(slurp(parts + "/metrics.jsonl"), slurp(whole + "/metrics.jsonl"));

  // Two signals: the second one ends the process at once.
  const pid_t again = spawn(std::string(SADDLE_CLI_PATH) + " " + args + "--iters 100000000 --out " +
                            out("again") + " 2>/dev/null");
  ASSERT_GT(again, 0);
  wait_for(out("again") + "/metrics.jsonl.partial");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ::kill(again, SIGINT);
  ::kill(again, SIGINT);
  ::waitpid(again, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) || WEXITSTATUS(status) == 130);
}

// Item 11 under mpirun: SIGTERM to mpirun reaches every rank; they stop after the same iteration,
// checkpoint, and the resumed job equals an uninterrupted one.
TEST_F(Reliability, SigtermToMpirunCheckpointsEveryRank) {
  const std::string whole = out("whole"), parts = out("parts");
  const std::string args =
      "solve --game bilinear --noise relative --solver eg --lr 0.5 --seed 3 "
      "--quantizer qsgd --no-progress --log-every 2000 --iters 60000 ";
  ASSERT_EQ(mpirun(2, args + "--out " + whole).code, 0);
  const std::string err = out("err.txt");
  const pid_t pid = spawn(std::string(SADDLE_MPIRUN_PATH) +
                          " -np 2 --oversubscribe --allow-run-as-root --bind-to none " +
                          SADDLE_CLI_PATH + " " + args + "--out " + parts + " 2>" + err);
  ASSERT_GT(pid, 0);
  wait_for(parts + "/metrics.jsonl.partial");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const std::string message = slurp(err);
  ASSERT_NE(message.find("interrupted at iteration"), std::string::npos) << message;
  EXPECT_TRUE(saddle::path_exists(parts + "/checkpoint.rank0.pt"));
  EXPECT_TRUE(saddle::path_exists(parts + "/checkpoint.rank1.pt"));
  const auto resumed = mpirun(2, args + "--resume " + parts);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(slurp(parts + "/metrics.jsonl"), slurp(whole + "/metrics.jsonl"));
}

// Item 12: links inside --out are never written through.
TEST_F(Reliability, LinksInsideTheOutputAreNeverFollowed) {
  const std::string sp = out("sp"), victim = out("victim");
  saddle::create_directories(sp);
  std::ofstream(victim) << "precious";
  for (const char* name : {".saddle-write-probe", "metrics.jsonl.partial",
                           "checkpoint.rank0.pt.tmp", "summary.json.tmp", "metrics.jsonl"}) {
    ASSERT_EQ(::symlink(victim.c_str(), (sp + "/" + name).c_str()), 0) << name;
  }
  const auto r = run(std::string(kQuick) + "--iters 20 --overwrite --out " + sp);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(victim), "precious");
  EXPECT_FALSE(saddle::is_symlink(sp + "/metrics.jsonl"));
  saddle::create_directories(out("sp2"));
  ASSERT_EQ(::symlink(dir_.c_str(), (out("sp2") + "/samples").c_str()), 0);
  expect_one_line_error(run(std::string(kQuick) + "--iters 5 --out " + out("sp2")),
                        "is a symbolic link");
}

// Item 13: two runs into one directory: the second says who holds it.
TEST_F(Reliability, ASecondRunIntoTheSameDirectoryIsRefused) {
  const std::string sp = out("sp");
  const pid_t pid =
      spawn(std::string(SADDLE_CLI_PATH) + " solve --iters 100000000 --no-progress --out " + sp +
            " >/dev/null 2>&1");
  ASSERT_GT(pid, 0);
  wait_for(sp + "/metrics.jsonl.partial");
  const auto second = run("solve --iters 10 --overwrite --out " + sp);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  expect_one_line_error(second, "is in use by another run: pid " + std::to_string(pid));
}

// Item 14: every bad input is one line naming the option or the file.
TEST_F(Reliability, BadInputIsOneLineNamingTheProblem) {
  expect_one_line_error(run("solve --iters 5 --config " + dir_.string()), "is a directory");
  expect_one_line_error(run("solve --iters 5 --lr 1e308"), "invalid --lr 1e+308");
  expect_one_line_error(run("solve --iters 5 --lr inf"), "invalid --lr inf");
  expect_one_line_error(run("solve --iters 5 --dim 1000000000"), "--dim 1000000000");
  const std::string nul = out("nul.json");
  saddle::testing::write_bytes(nul, std::string("{\"iters\": 5}\0{\"lr\": 9}", 23));
  expect_one_line_error(run("solve --config " + nul), "NUL byte at offset 12");
  const std::string twice = out("twice.json");
  std::ofstream(twice) << "{\"lr\": 0.1, \"iters\": 5, \"lr\": 0.2}";
  expect_one_line_error(run("solve --config " + twice), "key 'lr' appears more than once");
  expect_one_line_error(run("solve --iters 5 --out ''"), "invalid --out: empty path");
  expect_one_line_error(run("solve --iters 5 --resume ''"), "invalid --resume: empty path");
}

// Item 14: a CIFAR-10 batch cut on a record boundary has a valid size but not the others' count.
TEST_F(Reliability, CifarBatchCutOnARecordBoundaryIsRefused) {
  const std::string cifar = out("cifar");
  saddle::create_directories(cifar);
  auto batch = [&](const std::string& name, int records) {
    std::string bytes;
    for (int r = 0; r < records; ++r) {
      bytes += static_cast<char>(r % 10);
      bytes += std::string(3072, static_cast<char>(r));
    }
    saddle::testing::write_bytes(cifar + "/" + name, bytes);
  };
  for (int i = 1; i <= 5; ++i) batch("data_batch_" + std::to_string(i) + ".bin", i == 3 ? 2 : 3);
  try {
    saddle::load_cifar10(cifar);
    ADD_FAILURE() << "a cut batch was accepted";
  } catch (const saddle::Error& e) {
    EXPECT_NE(std::string(e.what()).find("data_batch_3.bin holds 2 records where"),
              std::string::npos)
        << e.what();
  }
  batch("data_batch_3.bin", 3);
  EXPECT_EQ(saddle::load_cifar10(cifar).size(), 15);
}

}  // namespace
