// The NCCL transport (saddle/comm/nccl.h): the only file that knows <nccl.h>.
#if SADDLE_WITH_NCCL

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "saddle/comm/nccl.h"
#include "saddle/error.h"

namespace saddle {

namespace {

using Clock = std::chrono::steady_clock;

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Communicator& host, const torch::Device& device, const NcclOptions& options)
      : host_(&host), device_(device), timeout_(options.timeout_seconds()) {
    SADDLE_CHECK(device.is_cuda() && device.has_index(),
                 "NCCL needs a CUDA device with an index, got ", device.str());
    SADDLE_CHECK(timeout_ > 0, "invalid NCCL timeout ", timeout_, " s (must be > 0)");
    c10::cuda::CUDAGuard guard(device_);
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (host_->rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    torch::Tensor bytes = torch::empty({static_cast<int64_t>(sizeof id)}, torch::kUInt8);
    std::memcpy(bytes.data_ptr(), &id, sizeof id);
    host_->broadcast_bytes(bytes, 0);
    SADDLE_CHECK(bytes.numel() == static_cast<int64_t>(sizeof id), "NCCL bootstrap: rank 0 sent a ",
                 bytes.numel(), "-byte id (expected ", sizeof id, ")");
    std::memcpy(&id, bytes.data_ptr(), sizeof id);
    // Non-blocking: a peer that never joins cannot hang this rank; wait() bounds every step.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t rc =
        ncclCommInitRankConfig(&comm_, host_->size(), id, host_->rank(), &config);
    if (rc != ncclInProgress) check(rc, "ncclCommInitRankConfig");
    settle("initialization");
  }

  ~NcclCommunicator() override {
    if (comm_ == nullptr) return;
    if (std::uncaught_exceptions() > 0) {
      ncclCommAbort(comm_);
      return;
    }
    // Flush, then free; a finalize that cannot finish (a dead peer) falls back to abort.
    ncclResult_t state = ncclCommFinalize(comm_);
    const auto start = Clock::now();
    while (state == ncclInProgress || state == ncclSuccess) {
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) break;
      if (state == ncclSuccess) {
        ncclCommDestroy(comm_);
        return;
      }
      if (seconds_since(start) > timeout_) break;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    ncclCommAbort(comm_);
  }

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string backend() const override { return "nccl"; }
  int local_rank() const override { return host_->local_rank(); }
  int local_size() const override { return host_->local_size(); }
  bool device_collectives(const torch::Device& device) const override {
    return device.is_cpu() || device == device_;
  }

  std::vector<torch::Tensor> allgather_bytes(const torch::Tensor& message) override {
    last_on_host_ = message.device().is_cpu();
    if (last_on_host_) return host_->allgather_bytes(message);
    SADDLE_CHECK(message.device() == device_, "allgather_bytes: message on ", message.device(),
                 ", the NCCL communicator runs on ", device_.str());
    SADDLE_CHECK(
        message.scalar_type() == torch::kUInt8 && message.dim() == 1 && message.is_contiguous(),
        "allgather_bytes: expected a 1-D contiguous kUInt8 tensor");
    // ncclAllGather moves equal counts: the sizes go over the host first (8 bytes each).
    const int64_t mine = message.numel();
    torch::Tensor size_bytes = torch::empty({8}, torch::kUInt8);
    std::memcpy(size_bytes.data_ptr(), &mine, 8);
    const std::vector<torch::Tensor> sizes = host_->allgather_bytes(size_bytes);
    for (int r = 0; r < size(); ++r) {
      int64_t theirs = 0;
      SADDLE_CHECK(sizes[r].numel() == 8, "NCCL all-gather: rank ", r, " announced its size in ",
                   sizes[r].numel(), " bytes");
      std::memcpy(&theirs, sizes[r].data_ptr(), 8);
      SADDLE_CHECK(theirs == mine, "NCCL all-gather needs equal message sizes: rank ", r, " sends ",
                   theirs, " bytes, this rank ", mine,
                   " (ranks configured differently? --coder entropy needs --transport mpi)");
    }
    c10::cuda::CUDAGuard guard(device_);
    torch::Tensor all = torch::empty({mine * size()}, message.options());
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream(device_.index()).stream();
    if (mine > 0) {
      const ncclResult_t rc = ncclAllGather(message.data_ptr(), all.data_ptr(),
                                            static_cast<size_t>(mine), ncclUint8, comm_, stream);
      if (rc != ncclInProgress) check(rc, "ncclAllGather");
      settle("all-gather");
      wait(stream, "all-gather");
    }
    std::vector<torch::Tensor> out;
    for (int r = 0; r < size(); ++r) out.push_back(all.narrow(0, r * mine, mine));
    return out;
  }

  // Host messages only (the exchange overlaps only what travels through host memory).
  void start_allgather(const torch::Tensor& message) override {
    last_on_host_ = true;
    host_->start_allgather(message);
  }
  std::vector<torch::Tensor> finish_allgather() override {
    last_on_host_ = true;
    return host_->finish_allgather();
  }
  void progress() override { host_->progress(); }

  // Host messages only (the exchange stages device chunks through host memory).
  std::vector<torch::Tensor> alltoall_bytes(const std::vector<torch::Tensor>& messages) override {
    last_on_host_ = true;
    return host_->alltoall_bytes(messages);
  }
  // NCCL's own collectives do not tell waiting from moving: 0 for them.
  double last_wait_seconds() const override {
    return last_on_host_ ? host_->last_wait_seconds() : 0.0;
  }
  void allreduce_sum(torch::Tensor& tensor) override { host_->allreduce_sum(tensor); }
  void broadcast_bytes(torch::Tensor& bytes, int root) override {
    host_->broadcast_bytes(bytes, root);
  }
  void barrier() override { host_->barrier(); }
  void set_timeout(double seconds) override {
    host_->set_timeout(seconds);
    if (seconds > 0) timeout_ = seconds;
  }
  double timeout() const override { return host_->timeout(); }
  void post_flag(bool flag) override { host_->post_flag(flag); }
  bool collect_flag() override { return host_->collect_flag(); }

  [[noreturn]] void abort(int code) override {
    if (comm_ != nullptr) ncclCommAbort(comm_);
    comm_ = nullptr;
    host_->abort(code);
  }

 private:
  static double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

  void check(ncclResult_t rc, const char* call) {
    if (rc == ncclSuccess) return;
    throw Error(detail::concat(call, " failed on rank ", host_->rank(), ": ",
                               ncclGetErrorString(rc), " (", ncclGetLastError(comm_), ")"));
  }

  // Waits until the communicator leaves ncclInProgress (non-blocking calls), within the timeout.
  void settle(const char* what) {
    const auto start = Clock::now();
    for (;;) {
      ncclResult_t state = ncclSuccess;
      check(ncclCommGetAsyncError(comm_, &state), "ncclCommGetAsyncError");
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) fail(what, ncclGetErrorString(state));
      if (seconds_since(start) > timeout_) timed_out(what);
      std::this_thread::yield();
    }
  }

  // Waits for the stream's work (the collective) while watching the communicator: an
  // asynchronous NCCL error or the timeout aborts it instead of waiting forever.
  void wait(cudaStream_t stream, const char* what) {
    const auto start = Clock::now();
    for (int spins = 0;; ++spins) {
      const cudaError_t status = cudaStreamQuery(stream);
      if (status == cudaSuccess) return;
      if (status != cudaErrorNotReady) fail(what, cudaGetErrorString(status));
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_, &state);
      if (state != ncclSuccess && state != ncclInProgress) fail(what, ncclGetErrorString(state));
      if (seconds_since(start) > timeout_) timed_out(what);
      if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  [[noreturn]] void fail(const char* what, const std::string& why) {
    ncclCommAbort(comm_);
    comm_ = nullptr;
    throw Error(detail::concat("NCCL ", what, " failed on rank ", host_->rank(), ": ", why));
  }

  [[noreturn]] void timed_out(const char* what) {
    ncclCommAbort(comm_);
    comm_ = nullptr;
    throw Error(detail::concat("NCCL ", what, " on rank ", host_->rank(), " waited more than ",
                               timeout_,
                               " s for the other ranks (a rank stopped or its link "
                               "failed); aborting the job"));
  }

  bool last_on_host_ = false;  // whether the last gather went through the host communicator
  Communicator* host_;
  torch::Device device_;
  double timeout_;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host,
                                                     const torch::Device& device,
                                                     const NcclOptions& options) {
  return std::make_unique<NcclCommunicator>(host, device, options);
}

}  // namespace saddle

#endif  // SADDLE_WITH_NCCL
