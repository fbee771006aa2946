// Text shared by the commands' tables: byte counts and the name of the exchange.
#include <fmt/format.h>

#include "commands.h"
#include "saddle/quant/codec.h"

namespace saddle::cli {

std::string human_bytes(int64_t bytes) {
  if (bytes < 10 * 1024) return fmt::format("{} B", bytes);
  if (bytes < 10 * 1024 * 1024) return fmt::format("{:.1f} KiB", bytes / 1024.0);
  return fmt::format("{:.1f} MiB", bytes / (1024.0 * 1024.0));
}

std::string exchange_label(const std::string& quantizer, int bits) {
  const Codec codec(CodecOptions().quantizer(quantizer).bits(bits));
  return codec.levels().empty() ? quantizer : fmt::format("{} {}-bit", quantizer, bits);
}

}  // namespace saddle::cli
