// Running the `saddle` binary from tests as a user would, and checking its failures: a non-zero
// exit and one "saddle: error ..." line, the last on stderr (after any progress lines).
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "paths.h"

namespace saddle::testing {

struct CliResult {
  int code;
  std::string out;
  std::string err;
};

inline std::string slurp_file(const saddle::testing::Path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_bytes(const saddle::testing::Path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Runs `program args` with no input; its stdout and stderr go through files in `scratch`.
inline CliResult run_program(const std::string& program, const std::string& args,
                             const saddle::testing::Path& scratch) {
  const auto out = scratch / "stdout.txt", err = scratch / "stderr.txt";
  const std::string command =
      program + " " + args + " >" + out.string() + " 2>" + err.string() + " </dev/null";
  const int status = std::system(command.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp_file(out),
          slurp_file(err)};
}

// A failed command: non-zero exit without a crash, and exactly one error line, the last on
// stderr, that contains `needle`.
inline void expect_one_line_error(const CliResult& r, const std::string& needle) {
  EXPECT_NE(r.code, 0);
  EXPECT_LT(r.code, 128) << "crashed: " << r.err;
  ASSERT_FALSE(r.err.empty());
  ASSERT_EQ(r.err.back(), '\n');
  const size_t start = r.err.rfind('\n', r.err.size() - 2);
  const std::string last = r.err.substr(start == std::string::npos ? 0 : start + 1);
  EXPECT_EQ(last.rfind("saddle: error", 0), 0u) << "last line is not the error: " << r.err;
  EXPECT_NE(last.find(needle), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("saddle: error"), r.err.rfind("saddle: error")) << r.err;
}

}  // namespace saddle::testing
