#include "saddle/comm/communicator.h"

#include <cstring>

#include "../detail/hash.h"
#include "saddle/error.h"

namespace saddle {

void check_message_bytes(const torch::Tensor& bytes, const char* what) {
  SADDLE_CHECK(bytes.defined(), what, ": undefined tensor (expected a 1-D kUInt8 tensor)");
  SADDLE_CHECK(bytes.scalar_type() == torch::kUInt8, what, ": dtype ", bytes.scalar_type(),
               " (expected kUInt8)");
  SADDLE_CHECK(bytes.dim() == 1, what, ": ", bytes.dim(), "-D tensor (expected 1-D)");
  SADDLE_CHECK(bytes.device().is_cpu(), what, ": tensor on ", bytes.device(), " (expected CPU)");
  SADDLE_CHECK(bytes.is_contiguous(), what, ": non-contiguous tensor");
}

void check_alltoall_messages(const std::vector<torch::Tensor>& messages, int ranks) {
  SADDLE_CHECK(static_cast<int>(messages.size()) == ranks, "alltoall_bytes: ", messages.size(),
               " messages for ", ranks, " ranks (expected one per rank)");
  for (const auto& m : messages) check_message_bytes(m, "alltoall_bytes");
}

}  // namespace saddle

namespace saddle {

namespace {

torch::Tensor text_bytes(const std::string& text) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(text.size())}, torch::kUInt8);
  if (!text.empty()) std::memcpy(t.data_ptr(), text.data(), text.size());
  return t;
}

std::string text_of(const torch::Tensor& bytes) {
  const torch::Tensor t = bytes.contiguous();
  return std::string(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()));
}

std::string shown(const nlohmann::ordered_json& object, const std::string& key) {
  return object.contains(key) ? object.at(key).dump() : std::string("(not set)");
}

}  // namespace

void Communicator::post_flag(bool flag) {
  if (size() == 1) {  // nothing to agree with; no tensors in a small game's inner loop
    posted_.push_back(flag);
    return;
  }
  torch::Tensor mine = torch::tensor({static_cast<uint8_t>(flag ? 1 : 0)}, torch::kUInt8);
  bool any = false;
  for (const auto& other : allgather_bytes(mine))
    any = any || other.numel() != 1 || other[0].item<uint8_t>() != 0;
  posted_.push_back(any);
}

void Communicator::start_allgather(const torch::Tensor& message) {
  started_.push_back(allgather_bytes(message));
}

std::vector<torch::Tensor> Communicator::finish_allgather() {
  SADDLE_CHECK(!started_.empty(), "finish_allgather: no all-gather was started");
  std::vector<torch::Tensor> messages = std::move(started_.front());
  started_.pop_front();
  return messages;
}

bool Communicator::collect_flag() {
  SADDLE_CHECK(!posted_.empty(), "collect_flag: no flag was posted");
  const bool any = posted_.front();
  posted_.pop_front();
  return any;
}

std::string first_difference(const nlohmann::ordered_json& a, const nlohmann::ordered_json& b) {
  for (const auto& [key, value] : a.items()) {
    if (!b.contains(key) || b.at(key) != value) return key;
  }
  for (const auto& [key, value] : b.items()) {
    if (!a.contains(key)) return key;
  }
  return "";
}

void check_ranks_agree(Communicator& comm, const nlohmann::ordered_json& config) {
  if (comm.size() == 1) return;
  const std::string mine = config.dump();
  const uint64_t hash = detail::fnv1a64(mine.data(), mine.size());
  torch::Tensor hash_bytes = torch::empty({8}, torch::kUInt8);
  std::memcpy(hash_bytes.data_ptr(), &hash, 8);
  bool same = true;
  for (const auto& other : comm.allgather_bytes(hash_bytes))
    same = same && torch::equal(other, hash_bytes);
  if (same) return;
  // Some rank differs: every rank learns every configuration and names the same first difference.
  const std::vector<torch::Tensor> all = comm.allgather_bytes(text_bytes(mine));
  const auto zero = nlohmann::ordered_json::parse(text_of(all[0]), nullptr, false);
  for (size_t r = 1; r < all.size(); ++r) {
    const auto theirs = nlohmann::ordered_json::parse(text_of(all[r]), nullptr, false);
    if (theirs == zero) continue;
    const std::string key = first_difference(zero, theirs);
    throw AgreedError(detail::concat("ranks disagree on the configuration: --", key, " is ",
                                     shown(zero, key), " on rank 0 but ", shown(theirs, key),
                                     " on rank ", r, " (every rank must get the same options)"));
  }
  throw AgreedError("ranks disagree on the configuration (every rank must get the same options)");
}

}  // namespace saddle
