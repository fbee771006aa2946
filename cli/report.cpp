// Text shared by the commands' tables: byte counts and the name of the exchange.
#include <fmt/format.h>

#include <cmath>
#include <map>
#include <stdexcept>
#include <string>

#include "commands.h"
#include "saddle/error.h"
#include "saddle/quant/codec.h"

namespace saddle::cli {

std::string human_bytes(int64_t bytes) {
  if (bytes < 10 * 1024) return fmt::format("{} B", bytes);
  if (bytes < 10 * 1024 * 1024) return fmt::format("{:.1f} KiB", bytes / 1024.0);
  return fmt::format("{:.1f} MiB", bytes / (1024.0 * 1024.0));
}

int64_t parse_byte_count(const std::string& text, const std::string& flag) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = text.substr(used);
  static const std::map<std::string, double> kUnits = {
      {"", 1.0},       {"B", 1.0},         {"k", 1e3},           {"K", 1e3}, {"kB", 1e3},
      {"KB", 1e3},     {"M", 1e6},         {"MB", 1e6},          {"G", 1e9}, {"GB", 1e9},
      {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}};
  const auto it = kUnits.find(unit);
  SADDLE_CHECK(used > 0 && it != kUnits.end() && std::isfinite(value) && value >= 0 &&
                   value * it->second < 9e18,
               "invalid ", flag, " '", text,
               "' (expected a byte count such as 250000, 64k, 1.5M, 2G or 64KiB; 0 for none)");
  return static_cast<int64_t>(std::llround(value * it->second));
}

std::string exchange_label(const std::string& quantizer, int bits) {
  const Codec codec(CodecOptions().quantizer(quantizer).bits(bits));
  return codec.levels().empty() ? quantizer : fmt::format("{} {}-bit", quantizer, bits);
}

}  // namespace saddle::cli
