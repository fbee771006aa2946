// MPI runtime and the MPI Communicator: the only translation unit that knows <mpi.h>.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
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
    std::vector<int64_t> sizes(size_);
    check_mpi(MPI_Allgather(&mine, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, comm_),
              "MPI_Allgather");
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
      // Common case: one MPI_Allgatherv straight into the result.
      for (int r = 0; r < size_; ++r) {
        counts[r] = static_cast<int>(sizes[r]);
        displs[r] = static_cast<int>(offsets[r]);
      }
      check_mpi(MPI_Allgatherv(in, counts[rank_], MPI_BYTE, out, counts.data(), displs.data(),
                               MPI_BYTE, comm_),
                "MPI_Allgatherv");
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
        check_mpi(MPI_Allgatherv(in + std::min(start, mine), counts[rank_], MPI_BYTE,
                                 staging.data(), counts.data(), displs.data(), MPI_BYTE, comm_),
                  "MPI_Allgatherv");
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

  void allreduce_sum(torch::Tensor& tensor) override {
    MPI_Datatype type = reduce_type(tensor);
    const bool exact = tensor.scalar_type() == torch::kInt64;
    auto* base = static_cast<char*>(tensor.data_ptr());
    const int64_t element = tensor.element_size();
    for (int64_t start = 0; start < tensor.numel(); start += chunk_) {
      const int count = static_cast<int>(std::min<int64_t>(chunk_, tensor.numel() - start));
      void* data = base + start * element;
      if (exact) {
        check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, count, type, MPI_SUM, comm_), "MPI_Allreduce");
      } else {
        // Floating-point sums depend on the reduction order, and MPI does not promise every rank
        // the same order; reduce on rank 0 and broadcast so every rank holds the same bits (the
        // adaptive quantization levels are refit from this sum and must agree everywhere).
        check_mpi(MPI_Reduce(rank_ == 0 ? MPI_IN_PLACE : data, rank_ == 0 ? data : nullptr, count,
                             type, MPI_SUM, 0, comm_),
                  "MPI_Reduce");
        check_mpi(MPI_Bcast(data, count, type, 0, comm_), "MPI_Bcast");
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
    check_mpi(MPI_Bcast(&length, 1, MPI_INT64_T, root, comm_), "MPI_Bcast");
    if (rank_ != root) bytes = torch::empty({length}, torch::kUInt8);
    auto* data = bytes.data_ptr<uint8_t>();
    for (int64_t start = 0; start < length; start += chunk_) {
      const int count = static_cast<int>(std::min<int64_t>(chunk_, length - start));
      check_mpi(MPI_Bcast(data + start, count, MPI_BYTE, root, comm_), "MPI_Bcast");
    }
  }

  void barrier() override { check_mpi(MPI_Barrier(comm_), "MPI_Barrier"); }

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
