// Logger: a thin fmt wrapper that prefixes the rank in distributed runs. One Logger is built by the
// program (CLI or a user's main) and handed to the runner; the library keeps no global log state.
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <utility>

namespace saddle {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// "error", "warn", "info", "debug"; anything else throws saddle::Error.
LogLevel parse_log_level(const std::string& name);

class Logger {
 public:
  explicit Logger(LogLevel level = LogLevel::kInfo, int rank = 0, int ranks = 1,
                  std::FILE* out = stderr)
      : level_(level), rank_(rank), ranks_(ranks), out_(out) {}

  bool enabled(LogLevel level) const { return static_cast<int>(level) <= static_cast<int>(level_); }
  LogLevel level() const { return level_; }
  int rank() const { return rank_; }

  template <typename... Args>
  void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) const {
    if (enabled(level)) write(level, fmt::format(format, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void info(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kInfo, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kWarn, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void debug(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kDebug, format, std::forward<Args>(args)...);
  }

  // Writes one already formatted line, prefixed with "[rank r/K]" when there are several ranks.
  void write(LogLevel level, const std::string& message) const;

 private:
  LogLevel level_;
  int rank_;
  int ranks_;
  std::FILE* out_;
};

}  // namespace saddle
