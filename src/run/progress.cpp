#include "saddle/run/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>

namespace saddle {

ProgressBar::ProgressBar(int64_t total, bool enabled, bool terminal, std::FILE* out)
    : total_(std::max<int64_t>(total, 1)),
      enabled_(enabled),
      terminal_(terminal),
      out_(out),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

bool ProgressBar::stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

void ProgressBar::update(int64_t done, const std::string& status) {
  if (!enabled_ || finished_) return;
  if (terminal_) {
    // Redraw at most ~10 times a second: the loop may run thousands of iterations per second.
    auto now = std::chrono::steady_clock::now();
    if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    draw(done, status, false);
  } else if (done * 10 >= next_line_ * total_ && done < total_) {
    draw(done, status, false);
    next_line_ = done * 10 / total_ + 1;
  }
}

void ProgressBar::finish(const std::string& status) {
  if (!enabled_ || finished_) return;
  draw(total_, status, true);
  finished_ = true;
}

void ProgressBar::draw(int64_t done, const std::string& status, bool final) {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0.0;
  const int percent = static_cast<int>(100 * done / total_);
  std::string line;
  if (terminal_) {
    constexpr int kWidth = 28;
    const int filled = static_cast<int>(kWidth * done / total_);
    line = fmt::format("\r[{}{}] {:3d}% {}/{} {:.1f} it/s eta {:.0f}s {}\x1b[K",
                       std::string(filled, '#'), std::string(kWidth - filled, '.'), percent, done,
                       total_, rate, eta, status);
    if (final) line += "\n";
  } else {
    line = fmt::format("progress {:3d}% {}/{} {:.1f} it/s eta {:.0f}s {}\n", percent, done, total_,
                       rate, eta, status);
  }
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

}  // namespace saddle
