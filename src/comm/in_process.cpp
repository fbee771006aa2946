// InProcessGroup: communicators for threads of one process (unit tests).
#include "saddle/comm/in_process.h"

#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "saddle/error.h"

namespace saddle {

struct InProcessGroup::State {
  State(int size, std::chrono::milliseconds timeout)
      : size(size), timeout(timeout), inputs(size), ops(size) {}

  const int size;
  const std::chrono::milliseconds timeout;
  std::mutex mutex;
  std::condition_variable cv;
  int64_t generation = 0;
  int arrived = 0;
  bool aborted = false;
  std::string abort_message;
  std::vector<torch::Tensor> inputs;  // one slot per rank, valid between the two barriers
  std::vector<std::string> ops;       // what each rank called, to detect mismatched collectives

  void abort_locked(std::string message) {
    if (!aborted) {
      aborted = true;
      abort_message = std::move(message);
    }
    cv.notify_all();
  }

  // Generation-counted barrier; the caller holds `lock`.
  void barrier_locked(std::unique_lock<std::mutex>& lock, int rank) {
    if (aborted) throw Error(abort_message);
    const int64_t entered = generation;
    if (++arrived == size) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return;
    }
    const bool released =
        cv.wait_for(lock, timeout, [&] { return generation != entered || aborted; });
    if (!released) {
      abort_locked(detail::concat("in-process collective timed out after ", timeout.count(),
                                  " ms on rank ", rank, " (a rank did not call it)"));
    }
    if (aborted) throw Error(abort_message);
  }
};

namespace {

using State = InProcessGroup::State;

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(std::shared_ptr<State> state, int rank)
      : state_(std::move(state)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return state_->size; }
  std::string backend() const override { return "in-process"; }

  std::vector<torch::Tensor> allgather_bytes(const torch::Tensor& message) override {
    check_message_bytes(message, "allgather_bytes");
    return collective("allgather_bytes", message, [](const std::vector<torch::Tensor>& inputs) {
      std::vector<torch::Tensor> messages;
      messages.reserve(inputs.size());
      for (const auto& input : inputs) messages.push_back(input.clone());
      return messages;
    });
  }

  std::vector<torch::Tensor> alltoall_bytes(const std::vector<torch::Tensor>& messages) override {
    check_alltoall_messages(messages, size());
    // One deposit per rank: its messages end to end, after a table of their sizes.
    const int ranks = size();
    int64_t total = 0;
    for (const auto& m : messages) total += m.numel();
    torch::Tensor packed = torch::empty({8 * ranks + total}, torch::kUInt8);
    auto* sizes = reinterpret_cast<int64_t*>(packed.data_ptr<uint8_t>());
    int64_t offset = 8 * ranks;
    for (int r = 0; r < ranks; ++r) {
      sizes[r] = messages[r].numel();
      packed.narrow(0, offset, sizes[r]).copy_(messages[r]);
      offset += sizes[r];
    }
    const int me = rank_;
    return collective("alltoall_bytes", packed, [me, ranks](const std::vector<torch::Tensor>& in) {
      std::vector<torch::Tensor> received;
      for (const auto& from : in) {
        const auto* table = reinterpret_cast<const int64_t*>(from.data_ptr<uint8_t>());
        int64_t start = 8 * ranks;
        for (int r = 0; r < me; ++r) start += table[r];
        received.push_back(from.narrow(0, start, table[me]).clone());
      }
      return received;
    });
  }

  void allreduce_sum(torch::Tensor& tensor) override {
    SADDLE_CHECK(tensor.defined(), "allreduce_sum: undefined tensor");
    const auto dtype = tensor.scalar_type();
    SADDLE_CHECK(dtype == torch::kFloat64 || dtype == torch::kFloat32 || dtype == torch::kInt64,
                 "allreduce_sum: dtype ", dtype, " (expected kFloat64, kFloat32 or kInt64)");
    SADDLE_CHECK(tensor.device().is_cpu(), "allreduce_sum: tensor on ", tensor.device(),
                 " (expected CPU)");
    SADDLE_CHECK(tensor.is_contiguous(), "allreduce_sum: non-contiguous tensor of shape ",
                 tensor.sizes());
    const std::string op = detail::concat("allreduce_sum(", dtype, ", numel=", tensor.numel(), ")");
    // Rank order, the same on every rank: bit-identical sums.
    torch::Tensor sum = collective(op, tensor, [](const std::vector<torch::Tensor>& inputs) {
      torch::Tensor total = inputs[0].clone();
      for (size_t r = 1; r < inputs.size(); ++r) total.add_(inputs[r]);
      return total;
    });
    tensor.copy_(sum);
  }

  void broadcast_bytes(torch::Tensor& bytes, int root) override {
    SADDLE_CHECK(root >= 0 && root < size(), "broadcast_bytes: root ", root, " is not a rank of ",
                 size());
    if (rank_ == root) check_message_bytes(bytes, "broadcast_bytes");
    const std::string op = detail::concat("broadcast_bytes(root=", root, ")");
    torch::Tensor received = collective(
        op, rank_ == root ? bytes : torch::Tensor(),
        [root](const std::vector<torch::Tensor>& inputs) { return inputs[root].clone(); });
    if (rank_ != root) bytes = received;
  }

  void barrier() override {
    collective("barrier", torch::Tensor(), [](const std::vector<torch::Tensor>&) { return 0; });
  }

  [[noreturn]] void abort(int code) override {
    std::string message;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->abort_locked(detail::concat("rank ", rank_, " aborted the group with code ", code));
      message = state_->abort_message;
    }
    throw Error(message);
  }

 private:
  // Deposit, wait for all, compute this rank's result from every input (outside the lock: no
  // rank can overwrite its slot before everyone passed the second barrier), wait for all again.
  template <typename Compute>
  std::invoke_result_t<Compute&, const std::vector<torch::Tensor>&> collective(
      const std::string& op, const torch::Tensor& input, Compute&& compute) {
    std::unique_lock<std::mutex> lock(state_->mutex);
    state_->inputs[rank_] = input;
    state_->ops[rank_] = op;
    state_->barrier_locked(lock, rank_);
    for (int r = 0; r < state_->size; ++r) {
      if (state_->ops[r] != op) {
        state_->abort_locked(detail::concat("collective mismatch: rank ", rank_, " called ", op,
                                            ", rank ", r, " called ", state_->ops[r]));
        throw Error(state_->abort_message);
      }
    }
    lock.unlock();
    auto result = compute(state_->inputs);
    lock.lock();
    state_->barrier_locked(lock, rank_);
    state_->inputs[rank_] = torch::Tensor();
    return result;
  }

  std::shared_ptr<State> state_;
  int rank_;
};

}  // namespace

InProcessGroup::InProcessGroup(int size, std::chrono::milliseconds timeout) {
  SADDLE_CHECK(size >= 1, "InProcessGroup: size must be >= 1, got ", size);
  SADDLE_CHECK(timeout.count() > 0, "InProcessGroup: timeout must be positive, got ",
               timeout.count(), " ms");
  state_ = std::make_shared<State>(size, timeout);
  for (int r = 0; r < size; ++r)
    ranks_.push_back(std::make_unique<InProcessCommunicator>(state_, r));
}

InProcessGroup::~InProcessGroup() = default;

Communicator& InProcessGroup::rank(int r) {
  SADDLE_CHECK(r >= 0 && r < size(), "InProcessGroup: rank ", r, " is not in [0, ", size(), ")");
  return *ranks_[r];
}

void InProcessGroup::run(const std::function<void(Communicator&)>& body) {
  std::mutex first_mutex;
  std::exception_ptr first;
  std::vector<std::thread> threads;
  threads.reserve(ranks_.size());
  for (int r = 0; r < size(); ++r) {
    threads.emplace_back([&, r] {
      try {
        body(*ranks_[r]);
      } catch (...) {
        {
          std::lock_guard<std::mutex> lock(first_mutex);
          if (!first) first = std::current_exception();
        }
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->abort_locked(detail::concat("rank ", r, " failed; the group was aborted"));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  if (first) std::rethrow_exception(first);
}

}  // namespace saddle
