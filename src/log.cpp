#include "saddle/log.h"

#include "saddle/error.h"

namespace saddle {

LogLevel parse_log_level(const std::string& name) {
  if (name == "error") return LogLevel::kError;
  if (name == "warn") return LogLevel::kWarn;
  if (name == "info") return LogLevel::kInfo;
  if (name == "debug") return LogLevel::kDebug;
  throw Error("unknown log level '" + name + "' (expected error, warn, info or debug)");
}

void Logger::write(LogLevel level, const std::string& message) const {
  static constexpr const char* kTags[] = {"error", "warn", "info", "debug"};
  const char* tag = kTags[static_cast<int>(level)];
  // One fwrite per line so that lines of different ranks do not interleave mid-line.
  std::string line = ranks_ > 1 ? fmt::format("[rank {}/{}] {}: {}\n", rank_, ranks_, tag, message)
                                : fmt::format("{}: {}\n", tag, message);
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

}  // namespace saddle
