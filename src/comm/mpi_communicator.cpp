// MPI runtime and the MPI Communicator: the only translation unit that knows <mpi.h>.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "saddle/comm/mpi.h"
#include "saddle/error.h"

namespace saddle {

namespace {

void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) length = 0;
  throw Error(detail::concat(
      call, " failed: ",
      length > 0 ? std::string(text, length) : "MPI error code " + std::to_string(rc)));
}

MPI_Datatype reduce_type(const torch::Tensor& tensor) {
  SADDLE_CHECK(tensor.defined(), "allreduce_sum: undefined tensor");
  SADDLE_CHECK(tensor.device().is_cpu(), "allreduce_sum: tensor on ", tensor.device(),
               " (expected CPU)");
  SADDLE_CHECK(tensor.is_contiguous(), "allreduce_sum: non-contiguous tensor of shape ",
               tensor.sizes());
  switch (tensor.scalar_type()) {
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kInt64: return MPI_INT64_T;
    default:
      throw Error(detail::concat("allreduce_sum: dtype ", tensor.scalar_type(),
                                 " (expected kFloat64, kFloat32 or kInt64)"));
  }
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, const MpiOptions& options)
      : comm_(comm), chunk_(std::min<int64_t>(options.max_chunk(), INT_MAX)) {
    check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    // The ranks that share this node's memory: their order gives each its GPU.
    MPI_Comm node = MPI_COMM_NULL;
    check_mpi(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
              "MPI_Comm_split_type");
    check_mpi(MPI_Comm_rank(node, &local_rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(node, &local_size_), "MPI_Comm_size");
    MPI_Comm_free(&node);
  }

  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }

  std::vector<torch::Tensor> allgather_bytes(const torch::Tensor& message) override {
    check_message_bytes(message, "allgather_bytes");
    int64_t mine = message.numel();
    // The sizes travel point to point, so that a rank that never arrives can be named.
    std::vector<int64_t> sizes(size_);
    sizes[rank_] = mine;
    std::vector<MPI_Request> requests;
    std::vector<int> from;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      requests.emplace_back();
      from.push_back(r);
      check_mpi(MPI_Irecv(&sizes[r], 1, MPI_INT64_T, r, kSizeTag, comm_, &requests.back()),
                "MPI_Irecv");
    }
    const size_t receives = requests.size();
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      requests.emplace_back();
      check_mpi(MPI_Isend(&mine, 1, MPI_INT64_T, r, kSizeTag, comm_, &requests.back()),
                "MPI_Isend");
    }
    wait(requests, "the exchange's all-gather", [&]() {
      std::string late;
      for (size_t k = 0; k < receives; ++k) {
        int done = 0;
        MPI_Test(&requests[k], &done, MPI_STATUS_IGNORE);
        if (!done) late += (late.empty() ? "rank " : ", ") + std::to_string(from[k]);
      }
      return late;
    });
    std::vector<int64_t> offsets(size_ + 1, 0);
    for (int r = 0; r < size_; ++r) {
      SADDLE_CHECK(sizes[r] >= 0, "allgather_bytes: rank ", r, " announced ", sizes[r], " bytes");
      offsets[r + 1] = offsets[r] + sizes[r];
    }
    const int64_t largest = *std::max_element(sizes.begin(), sizes.end());
    torch::Tensor all = torch::empty({offsets[size_]}, torch::kUInt8);
    auto* out = all.data_ptr<uint8_t>();
    const auto* in = message.data_ptr<uint8_t>();

    std::vector<int> counts(size_), displs(size_);
    if (offsets[size_] <= chunk_) {
      // Common case: one MPI_Iallgatherv straight into the result.
      for (int r = 0; r < size_; ++r) {
        counts[r] = static_cast<int>(sizes[r]);
        displs[r] = static_cast<int>(offsets[r]);
      }
      std::vector<MPI_Request> request(1);
      check_mpi(MPI_Iallgatherv(in, counts[rank_], MPI_BYTE, out, counts.data(), displs.data(),
                                MPI_BYTE, comm_, &request[0]),
                "MPI_Iallgatherv");
      wait(request, "the exchange's all-gather");
    } else {
      // Too large for int counts/displacements: rounds in which every rank sends at most
      // `per_rank` bytes into a staging buffer, then copies land at their final offsets.
      const int64_t per_rank = std::max<int64_t>(1, chunk_ / size_);
      const int64_t rounds = (largest + per_rank - 1) / per_rank;
      std::vector<uint8_t> staging(static_cast<size_t>(per_rank * size_));
      for (int64_t round = 0; round < rounds; ++round) {
        const int64_t start = round * per_rank;
        for (int r = 0; r < size_; ++r) {
          counts[r] = static_cast<int>(std::clamp<int64_t>(sizes[r] - start, 0, per_rank));
          displs[r] = static_cast<int>(r * per_rank);
        }
        std::vector<MPI_Request> request(1);
        check_mpi(
            MPI_Iallgatherv(in + std::min(start, mine), counts[rank_], MPI_BYTE, staging.data(),
                            counts.data(), displs.data(), MPI_BYTE, comm_, &request[0]),
            "MPI_Iallgatherv");
        wait(request, "the exchange's all-gather");
        for (int r = 0; r < size_; ++r) {
          std::copy_n(staging.data() + displs[r], counts[r], out + offsets[r] + start);
        }
      }
    }
    std::vector<torch::Tensor> messages;
    messages.reserve(size_);
    for (int r = 0; r < size_; ++r) messages.push_back(all.narrow(0, offsets[r], sizes[r]));
    return messages;
  }

  // Point to point, as MPI_Alltoallv does underneath: sizes first (so a rank that never arrives
  // can be named), then each message in pieces of at most chunk_ bytes (no int-count limit).
  std::vector<torch::Tensor> alltoall_bytes(const std::vector<torch::Tensor>& messages) override {
    check_alltoall_messages(messages, size_);
    std::vector<int64_t> mine(size_), sizes(size_);
    for (int r = 0; r < size_; ++r) mine[r] = messages[r].numel();
    sizes[rank_] = mine[rank_];
    std::vector<MPI_Request> requests;
    std::vector<int> from;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      requests.emplace_back();
      from.push_back(r);
      check_mpi(MPI_Irecv(&sizes[r], 1, MPI_INT64_T, r, kAlltoallSizeTag, comm_, &requests.back()),
                "MPI_Irecv");
    }
    const size_t receives = requests.size();
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      requests.emplace_back();
      check_mpi(MPI_Isend(&mine[r], 1, MPI_INT64_T, r, kAlltoallSizeTag, comm_, &requests.back()),
                "MPI_Isend");
    }
    const auto late_of = [&](size_t count) {
      return [&, count]() {
        std::string late;
        for (size_t k = 0; k < count; ++k) {
          int done = 0;
          MPI_Test(&requests[k], &done, MPI_STATUS_IGNORE);
          if (!done) late += (late.empty() ? "rank " : ", ") + std::to_string(from[k]);
        }
        return late;
      };
    };
    wait(requests, "the two-phase exchange's all-to-all", late_of(receives));

    std::vector<torch::Tensor> received(size_);
    requests.clear();
    from.clear();
    for (int r = 0; r < size_; ++r) {
      SADDLE_CHECK(sizes[r] >= 0, "alltoall_bytes: rank ", r, " announced ", sizes[r], " bytes");
      if (r == rank_) {
        received[r] = messages[r].clone();
        continue;
      }
      received[r] = torch::empty({sizes[r]}, torch::kUInt8);
      auto* out = received[r].data_ptr<uint8_t>();
      for (int64_t start = 0; start < sizes[r]; start += chunk_) {
        requests.emplace_back();
        from.push_back(r);
        const int count = static_cast<int>(std::min<int64_t>(chunk_, sizes[r] - start));
        check_mpi(
            MPI_Irecv(out + start, count, MPI_BYTE, r, kAlltoallDataTag, comm_, &requests.back()),
            "MPI_Irecv");
      }
    }
    const size_t pieces = requests.size();
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      const auto* in = messages[r].data_ptr<uint8_t>();
      for (int64_t start = 0; start < mine[r]; start += chunk_) {
        requests.emplace_back();
        const int count = static_cast<int>(std::min<int64_t>(chunk_, mine[r] - start));
        check_mpi(
            MPI_Isend(in + start, count, MPI_BYTE, r, kAlltoallDataTag, comm_, &requests.back()),
            "MPI_Isend");
      }
    }
    wait(requests, "the two-phase exchange's all-to-all", late_of(pieces));
    return received;
  }

  void allreduce_sum(torch::Tensor& tensor) override {
    MPI_Datatype type = reduce_type(tensor);
    const bool exact = tensor.scalar_type() == torch::kInt64;
    auto* base = static_cast<char*>(tensor.data_ptr());
    const int64_t element = tensor.element_size();
    for (int64_t start = 0; start < tensor.numel(); start += chunk_) {
      const int count = static_cast<int>(std::min<int64_t>(chunk_, tensor.numel() - start));
      void* data = base + start * element;
      std::vector<MPI_Request> request(1);
      if (exact) {
        check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data, count, type, MPI_SUM, comm_, &request[0]),
                  "MPI_Iallreduce");
        wait(request, "a sum over ranks");
      } else {
        // Floating-point sums depend on the reduction order, and MPI does not promise every rank
        // the same order; reduce on rank 0 and broadcast so every rank holds the same bits (the
        // adaptive quantization levels are refit from this sum and must agree everywhere).
        check_mpi(MPI_Ireduce(rank_ == 0 ? MPI_IN_PLACE : data, rank_ == 0 ? data : nullptr, count,
                              type, MPI_SUM, 0, comm_, &request[0]),
                  "MPI_Ireduce");
        wait(request, "a sum over ranks");
        check_mpi(MPI_Ibcast(data, count, type, 0, comm_, &request[0]), "MPI_Ibcast");
        wait(request, "a sum over ranks");
      }
    }
  }

  void broadcast_bytes(torch::Tensor& bytes, int root) override {
    SADDLE_CHECK(root >= 0 && root < size_, "broadcast_bytes: root ", root, " is not a rank of ",
                 size_);
    int64_t length = 0;
    if (rank_ == root) {
      check_message_bytes(bytes, "broadcast_bytes");
      length = bytes.numel();
    }
    std::vector<MPI_Request> request(1);
    check_mpi(MPI_Ibcast(&length, 1, MPI_INT64_T, root, comm_, &request[0]), "MPI_Ibcast");
    wait(request, "a broadcast");
    if (rank_ != root) bytes = torch::empty({length}, torch::kUInt8);
    auto* data = bytes.data_ptr<uint8_t>();
    for (int64_t start = 0; start < length; start += chunk_) {
      const int count = static_cast<int>(std::min<int64_t>(chunk_, length - start));
      check_mpi(MPI_Ibcast(data + start, count, MPI_BYTE, root, comm_, &request[0]), "MPI_Ibcast");
      wait(request, "a broadcast");
    }
  }

  void barrier() override {
    std::vector<MPI_Request> request(1);
    check_mpi(MPI_Ibarrier(comm_, &request[0]), "MPI_Ibarrier");
    wait(request, "a barrier");
  }

  void set_timeout(double seconds) override {
    SADDLE_CHECK(seconds >= 0 && std::isfinite(seconds), "invalid --rank-timeout ", seconds,
                 " (seconds >= 0; 0: no limit)");
    timeout_ = seconds;
  }

  double timeout() const override { return timeout_; }

  void post_flag(bool flag) override {
    pending_.push_back(PendingFlag{flag ? 1 : 0, 0, MPI_REQUEST_NULL});
    PendingFlag& p = pending_.back();
    check_mpi(MPI_Iallreduce(&p.in, &p.out, 1, MPI_INT, MPI_MAX, comm_, &p.request),
              "MPI_Iallreduce");
  }

  bool collect_flag() override {
    SADDLE_CHECK(!pending_.empty(), "collect_flag: no flag was posted");
    std::vector<MPI_Request> request{pending_.front().request};
    wait(request, "the ranks' agreement on stopping");
    const bool any = pending_.front().out != 0;
    pending_.pop_front();
    return any;
  }

  [[noreturn]] void abort(int code) override {
    // The error line must reach mpirun before the processes are killed.
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] honest if it did
  }

 private:
  MPI_Comm comm_;
  int64_t chunk_;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  double timeout_ = 0.0;
  struct PendingFlag {
    int in;
    int out;
    MPI_Request request;
  };
  std::deque<PendingFlag> pending_;  // deque: posted buffers keep their addresses

  static constexpr int kSizeTag = 7301;
  static constexpr int kAlltoallSizeTag = 7302;
  static constexpr int kAlltoallDataTag = 7303;
  static constexpr auto kSpinFor = std::chrono::milliseconds(20);

  // Completes `requests`, testing instead of blocking so that a rank that never arrives (stopped,
  // crashed, cut off) ends this one after timeout_ seconds with a line naming the operation and,
  // from `late`, the ranks it waited for. Spins briefly, then sleeps: a waiting rank does not burn
  // a core.
  void wait(std::vector<MPI_Request>& requests, const char* what,
            const std::function<std::string()>& late = {}) {
    const auto start = std::chrono::steady_clock::now();
    auto nap = std::chrono::microseconds(20);
    for (;;) {
      int done = 0;
      check_mpi(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done,
                            MPI_STATUSES_IGNORE),
                "MPI_Testall");
      if (done) return;
      if (timeout_ > 0 &&
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >
              timeout_) {
        const std::string who = late ? late() : std::string();
        throw Error(detail::concat(what, " on rank ", rank_, " waited more than ", timeout_,
                                   " s for ", who.empty() ? std::string("the other ranks") : who,
                                   " (stopped, crashed or cut off; --rank-timeout sets the "
                                   "limit)"));
      }
      // A non-blocking collective only advances while its ranks test it: a rank asleep delays
      // every round of the others' protocol. Spin through the short waits of a balanced exchange;
      // nap (up to 1 ms) only once the wait is clearly long.
      if (std::chrono::steady_clock::now() - start < kSpinFor) continue;
      std::this_thread::sleep_for(nap);
      nap = std::min(nap * 2, std::chrono::microseconds(1000));
    }
  }
};

}  // namespace

MpiRuntime::MpiRuntime(int& argc, char**& argv) {
  int initialized = 0, finalized = 0;
  check_mpi(MPI_Initialized(&initialized), "MPI_Initialized");
  check_mpi(MPI_Finalized(&finalized), "MPI_Finalized");
  SADDLE_CHECK(!initialized && !finalized, "MpiRuntime: MPI is already ",
               finalized ? "finalized" : "initialized",
               " (build exactly one MpiRuntime per program)");
  int provided = 0;
  check_mpi(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (std::uncaught_exceptions() > 0 && size_ > 1) {
    std::fprintf(stderr,
                 "[rank %d/%d] error: an exception escaped while MPI was running; aborting the "
                 "job\n",
                 rank_, size_);
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
}

std::unique_ptr<Communicator> MpiRuntime::world(const MpiOptions& options) {
  SADDLE_CHECK(options.max_chunk() >= 1, "MpiOptions::max_chunk must be >= 1, got ",
               options.max_chunk());
  MPI_Comm comm = MPI_COMM_NULL;
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup");
  check_mpi(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  return std::make_unique<MpiCommunicator>(comm, options);
}

}  // namespace saddle
