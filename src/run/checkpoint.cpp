#include "saddle/run/checkpoint.h"

#include <c10/util/Exception.h>
#include <torch/serialize.h>

#include <cstring>
#include <sstream>

#include "saddle/error.h"
#include "saddle/run/files.h"

namespace saddle {

namespace {
constexpr int kFormat = 1;

torch::Tensor bytes_of(const std::string& text) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(text.size())}, torch::kUInt8);
  if (!text.empty()) std::memcpy(t.data_ptr(), text.data(), text.size());
  return t;
}
}  // namespace

const torch::Tensor& Checkpoint::get(const std::string& name) const {
  for (const auto& [key, tensor] : tensors) {
    if (key == name) return tensor;
  }
  throw Error("checkpoint has no entry '" + name + "'");
}

std::string checkpoint_path(const std::string& dir, int rank) {
  return dir + "/checkpoint.rank" + std::to_string(rank) + ".pt";
}

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  nlohmann::ordered_json meta = checkpoint.meta;
  meta["format"] = kFormat;
  nlohmann::json names = nlohmann::json::array();
  torch::serialize::OutputArchive archive;
  for (size_t i = 0; i < checkpoint.tensors.size(); ++i) {
    names.push_back(checkpoint.tensors[i].first);
    // Archive keys are attribute names: index them and keep the real names in the metadata.
    archive.write("t" + std::to_string(i),
                  checkpoint.tensors[i].second.detach().to(torch::kCPU).contiguous());
  }
  meta["entries"] = names;
  archive.write("meta", bytes_of(meta.dump()));
  // Serialized into memory first: LibTorch's file writer reports a failed write (a full disk)
  // from a destructor, where it ends the program; write_file_atomic checks every write instead
  // and leaves the previous checkpoint in place when one fails.
  std::ostringstream bytes;
  try {
    archive.save_to(bytes);
  } catch (const c10::Error& e) {
    throw Error("cannot serialize checkpoint " + path + ": " + e.what_without_backtrace());
  }
  write_file_atomic(path, bytes.str());
}

Checkpoint load_checkpoint(const std::string& path) {
  SADDLE_CHECK(path_exists(path), "checkpoint ", path, ": no such file");
  Checkpoint checkpoint;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    torch::Tensor meta_bytes;
    archive.read("meta", meta_bytes);
    meta_bytes = meta_bytes.contiguous();
    const std::string text(static_cast<const char*>(meta_bytes.data_ptr()),
                           static_cast<size_t>(meta_bytes.numel()));
    checkpoint.meta = nlohmann::ordered_json::parse(text);
    SADDLE_CHECK(checkpoint.meta.value("format", 0) == kFormat, "checkpoint ", path,
                 ": unsupported format ", checkpoint.meta.value("format", 0));
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
