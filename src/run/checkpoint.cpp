#include "saddle/run/checkpoint.h"

#include <c10/util/Exception.h>
#include <torch/serialize.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "../detail/hash.h"
#include "saddle/error.h"
#include "saddle/run/files.h"

namespace saddle {

namespace {

constexpr const char* kMagic = "SADDLE-CHECKPOINT";
constexpr int kFormat = 2;
// The metadata line is small; a larger "header" means the file is not a checkpoint.
constexpr size_t kMaxMetaBytes = 1 << 20;

torch::Tensor bytes_of(const std::string& text) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(text.size())}, torch::kUInt8);
  if (!text.empty()) std::memcpy(t.data_ptr(), text.data(), text.size());
  return t;
}

std::string hex64(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016" PRIx64, value);
  return text;
}

struct Parsed {
  nlohmann::ordered_json meta;
  size_t payload_begin = 0;
  uint64_t checksum = 0;
  uint64_t payload_bytes = 0;
  std::string meta_line;
};

// The three header lines of `bytes` (the whole file, or its first part when `partial`).
Parsed parse_header(const std::string& bytes, const std::string& path, bool partial) {
  const std::string bad = "checkpoint " + path + " ";
  const size_t line1 = bytes.find('\n');
  SADDLE_CHECK(
      line1 != std::string::npos && bytes.compare(0, line1, std::string(kMagic) + " 2") == 0, bad,
      bytes.compare(0, std::strlen(kMagic), kMagic) == 0
          ? "has another format (written by another version of saddle; start a new run)"
          : "is not a saddle checkpoint");
  const size_t line2 = bytes.find('\n', line1 + 1);
  SADDLE_CHECK(line2 != std::string::npos && line2 - line1 < kMaxMetaBytes, bad,
               "is corrupt (metadata line not terminated)");
  const size_t line3 = bytes.find('\n', line2 + 1);
  SADDLE_CHECK(line3 != std::string::npos && line3 - line2 < 64, bad,
               "is corrupt (checksum line not terminated)");
  Parsed p;
  p.meta_line = bytes.substr(line1 + 1, line2 - line1 - 1);
  const std::string sums = bytes.substr(line2 + 1, line3 - line2 - 1);
  unsigned long long checksum = 0, payload = 0;
  SADDLE_CHECK(std::sscanf(sums.c_str(), "%16llx %llu", &checksum, &payload) == 2, bad,
               "is corrupt (checksum line '", sums, "')");
  p.checksum = checksum;
  p.payload_bytes = payload;
  p.payload_begin = line3 + 1;
  if (!partial) {
    SADDLE_CHECK(bytes.size() - p.payload_begin == payload, bad,
                 "is truncated or padded: ", bytes.size() - p.payload_begin,
                 " payload bytes where the header says ", payload);
    uint64_t h = detail::fnv1a64(p.meta_line.data(), p.meta_line.size());
    h = detail::fnv1a64(bytes.data() + p.payload_begin, payload, h);
    SADDLE_CHECK(h == checksum, bad, "is corrupt: checksum ", hex64(h), " where the file says ",
                 hex64(checksum));
  }
  p.meta = nlohmann::ordered_json::parse(p.meta_line, nullptr, false);
  SADDLE_CHECK(!p.meta.is_discarded() && p.meta.is_object(), bad,
               "is corrupt (metadata is not a JSON object)");
  return p;
}

}  // namespace

const torch::Tensor& Checkpoint::get(const std::string& name) const {
  for (const auto& [key, tensor] : tensors) {
    if (key == name) return tensor;
  }
  throw Error("checkpoint has no entry '" + name + "'");
}

std::string checkpoint_path(const std::string& dir, int rank, bool previous) {
  return join_path(dir,
                   "checkpoint.rank" + std::to_string(rank) + (previous ? ".prev" : "") + ".pt");
}

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  nlohmann::ordered_json meta = checkpoint.meta;
  nlohmann::json names = nlohmann::json::array();
  torch::serialize::OutputArchive archive;
  for (size_t i = 0; i < checkpoint.tensors.size(); ++i) {
    names.push_back(checkpoint.tensors[i].first);
    // Archive keys are attribute names: index them and keep the real names in the metadata.
    // CPU tensors: a checkpoint written on a GPU resumes on a CPU and back.
    archive.write("t" + std::to_string(i),
                  checkpoint.tensors[i].second.detach().to(torch::kCPU).contiguous());
  }
  meta["entries"] = names;
  // Serialized into memory first: LibTorch's file writer reports a failed write (a full disk)
  // from a destructor, where it ends the program; write_file_atomic checks every write instead
  // and leaves the previous checkpoint in place when one fails.
  std::ostringstream payload_stream;
  try {
    archive.save_to(payload_stream);
  } catch (const c10::Error& e) {
    throw Error("cannot serialize checkpoint " + path + ": " + e.what_without_backtrace());
  }
  const std::string payload = payload_stream.str();
  const std::string meta_line = meta.dump();
  uint64_t h = detail::fnv1a64(meta_line.data(), meta_line.size());
  h = detail::fnv1a64(payload.data(), payload.size(), h);
  write_file_atomic(path, std::string(kMagic) + " " + std::to_string(kFormat) + "\n" + meta_line +
                              "\n" + hex64(h) + " " + std::to_string(payload.size()) + "\n" +
                              payload);
}

nlohmann::ordered_json read_checkpoint_meta(const std::string& path) {
  SADDLE_CHECK(path_exists(path), "checkpoint ", path, ": no such file");
  // The header is at most a few lines: read the start of the file only.
  std::string head;
  try {
    head = read_file_prefix(path, kMaxMetaBytes + 128);
  } catch (const Error& e) {
    throw Error(std::string("checkpoint ") + path + ": " + e.what());
  }
  return parse_header(head, path, /*partial=*/true).meta;
}

Checkpoint load_checkpoint(const std::string& path) {
  SADDLE_CHECK(path_exists(path), "checkpoint ", path, ": no such file");
  const std::string bytes = read_file(path);
  const Parsed parsed = parse_header(bytes, path, /*partial=*/false);
  Checkpoint checkpoint;
  checkpoint.meta = parsed.meta;
  try {
    std::istringstream payload(bytes.substr(parsed.payload_begin));
    torch::serialize::InputArchive archive;
    archive.load_from(payload);
    const auto& names = checkpoint.meta.at("entries");
    for (size_t i = 0; i < names.size(); ++i) {
      torch::Tensor t;
      archive.read("t" + std::to_string(i), t);
      checkpoint.tensors.emplace_back(names[i].get<std::string>(), t);
    }
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Error("checkpoint " + path + ": not a readable saddle checkpoint (" +
                e.what_without_backtrace() + ")");
  } catch (const std::exception& e) {
    throw Error("checkpoint " + path + ": not a readable saddle checkpoint (" + e.what() + ")");
  }
  return checkpoint;
}

}  // namespace saddle
