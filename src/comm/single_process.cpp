// The communicator of a one-process run: every collective is an identity.
#include <cstdlib>

#include "saddle/comm/communicator.h"

namespace saddle {

namespace {
class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single"; }
  bool device_collectives(const torch::Device&) const override { return true; }
  std::vector<torch::Tensor> allgather_bytes(const torch::Tensor& message) override {
    return {message};
  }
  std::vector<torch::Tensor> alltoall_bytes(const std::vector<torch::Tensor>& messages) override {
    check_alltoall_messages(messages, 1);
    return messages;
  }
  void allreduce_sum(torch::Tensor&) override {}
  void broadcast_bytes(torch::Tensor&, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code) override { std::exit(code); }
};
}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator() {
  return std::make_unique<SingleProcessCommunicator>();
}

}  // namespace saddle
