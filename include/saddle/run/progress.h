// Progress of a long run on stderr: a redrawn bar with rate and ETA on a terminal, and plain
// lines every 10% when stderr is a file or pipe (CI logs stay readable).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace saddle {

class ProgressBar {
 public:
  // `enabled` false prints nothing; `terminal` chooses the redrawn bar over plain lines.
  ProgressBar(int64_t total, bool enabled, bool terminal, std::FILE* out = stderr);
  // Whether stderr is a terminal.
  static bool stderr_is_terminal();

  // Reports that `done` of `total` are finished; `status` is shown beside the bar.
  void update(int64_t done, const std::string& status = "");
  // Ends the bar's line.
  void finish(const std::string& status = "");

 private:
  void draw(int64_t done, const std::string& status, bool final);

  int64_t total_;
  bool enabled_;
  bool terminal_;
  std::FILE* out_;
  int64_t next_line_ = 0;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace saddle
