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
      : comm_(comm),
        chunk_(std::min<int64_t>(options.max_chunk(), INT_MAX)),
        segment_(std::min<int64_t>(options.segment_bytes(), chunk_)) {
    check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    // The ranks that share this node's memory: their order gives each its GPU.
    MPI_Comm node = MPI_COMM_NULL;
    check_mpi(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
              "MPI_Comm_split_type");
    check_mpi(MPI_Comm_rank(node, &local_rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(node, &local_size_), "MPI_Comm_size");
    // Which ranks share this node: messages to them go through shared memory, unsegmented.
    MPI_Group node_group = MPI_GROUP_NULL, group = MPI_GROUP_NULL;
    check_mpi(MPI_Comm_group(node, &node_group), "MPI_Comm_group");
    check_mpi(MPI_Comm_group(comm_, &group), "MPI_Comm_group");
    std::vector<int> local(local_size_), global(local_size_);
    for (int i = 0; i < local_size_; ++i) local[i] = i;
    check_mpi(
        MPI_Group_translate_ranks(node_group, local_size_, local.data(), group, global.data()),
        "MPI_Group_translate_ranks");
    same_node_.assign(size_, false);
    for (const int r : global) same_node_.at(r) = true;
    MPI_Group_free(&node_group);
    MPI_Group_free(&group);
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

  // Every message travels point to point (what MPI_Allgatherv and MPI_Alltoallv do underneath,
  // with the same bytes per rank): sizes first, then the bytes in segments (no int-count limit;
  // to other nodes, no handshake before each: MpiOptions::segment_bytes), so that a rank whose
  // bytes never arrive (stopped, crashed, cut off) can be named by the others.
  std::vector<torch::Tensor> allgather_bytes(const torch::Tensor& message) override {
    check_message_bytes(message, "allgather_bytes");
    const char* what = "the exchange's all-gather";
    const std::vector<int64_t> sizes =
        exchange_sizes(std::vector<int64_t>(size_, message.numel()), what);
    std::vector<int64_t> offsets(size_ + 1, 0);
    for (int r = 0; r < size_; ++r) offsets[r + 1] = offsets[r] + sizes[r];
    torch::Tensor all = torch::empty({offsets[size_]}, torch::kUInt8);
    auto* out = all.data_ptr<uint8_t>();
    const auto* in = message.data_ptr<uint8_t>();
    std::copy_n(in, sizes[rank_], out + offsets[rank_]);
    std::vector<Transfer> sends, receives;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      receives.push_back({r, out + offsets[r], sizes[r]});
      sends.push_back({r, const_cast<uint8_t*>(in), sizes[rank_]});
    }
    transfer(sends, receives, what);
    std::vector<torch::Tensor> messages;
    messages.reserve(size_);
    for (int r = 0; r < size_; ++r) messages.push_back(all.narrow(0, offsets[r], sizes[r]));
    return messages;
  }

  // The split all-gather: start posts the size announcements and the sends of this rank's bytes
  // (tags of their own, so they never match the blocking collectives' messages); progress() posts
  // a gather's receives once its sizes are in, oldest gather first, so that receives from one rank
  // are posted in the order its sends were (MPI matches them in order).
  void start_allgather(const torch::Tensor& message) override {
    check_message_bytes(message, "start_allgather");
    gathers_.emplace_back();
    Gather& g = gathers_.back();  // a deque: its address stays while newer gathers are added
    g.message = message;
    g.mine = message.numel();
    g.sizes.assign(size_, 0);
    g.sizes[rank_] = g.mine;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      g.size_requests.emplace_back();
      g.size_from.push_back(r);
      check_mpi(
          MPI_Irecv(&g.sizes[r], 1, MPI_INT64_T, r, kGatherSizeTag, comm_, &g.size_requests.back()),
          "MPI_Irecv");
    }
    auto* data = const_cast<uint8_t*>(message.data_ptr<uint8_t>());
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      g.size_requests.emplace_back();
      check_mpi(
          MPI_Isend(&g.mine, 1, MPI_INT64_T, r, kGatherSizeTag, comm_, &g.size_requests.back()),
          "MPI_Isend");
      for_each_segment(r, data, g.mine, [&](uint8_t* p, int count) {
        g.sends.emplace_back();
        check_mpi(MPI_Isend(p, count, MPI_BYTE, r, kGatherDataTag, comm_, &g.sends.back()),
                  "MPI_Isend");
      });
    }
    progress();
  }

  void progress() override {
    post_ready_receives();
    // One test drives MPI's progress engine for every pending transfer.
    if (!gathers_.empty() && !gathers_.back().receives.empty()) {
      int done = 0;
      check_mpi(MPI_Test(&gathers_.back().receives.back(), &done, MPI_STATUS_IGNORE), "MPI_Test");
    }
  }

  std::vector<torch::Tensor> finish_allgather() override {
    SADDLE_CHECK(!gathers_.empty(), "finish_allgather: no all-gather was started");
    const char* what = "the exchange's all-gather";
    Gather& g = gathers_.front();
    const auto start = std::chrono::steady_clock::now();
    if (!g.receiving) {
      wait(g.size_requests, what, late_ranks(g.size_requests, g.size_from));
      post_gather_receives(g);
    }
    last_wait_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::vector<MPI_Request> requests = g.receives;  // receives first: late_ranks reads them
    requests.insert(requests.end(), g.sends.begin(), g.sends.end());
    // While this one completes, the later gathers' receives are posted as their sizes come in,
    // so that their bytes can flow too.
    wait(requests, what, late_ranks(requests, g.receive_from), [this] { post_ready_receives(); });
    std::vector<torch::Tensor> messages;
    messages.reserve(size_);
    for (int r = 0; r < size_; ++r) messages.push_back(g.all.narrow(0, g.offsets[r], g.sizes[r]));
    gathers_.pop_front();
    return messages;
  }

  std::vector<torch::Tensor> alltoall_bytes(const std::vector<torch::Tensor>& messages) override {
    check_alltoall_messages(messages, size_);
    const char* what = "the two-phase exchange's all-to-all";
    std::vector<int64_t> mine(size_);
    for (int r = 0; r < size_; ++r) mine[r] = messages[r].numel();
    const std::vector<int64_t> sizes = exchange_sizes(mine, what);
    std::vector<torch::Tensor> received(size_);
    std::vector<Transfer> sends, receives;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) {
        received[r] = messages[r].clone();
        continue;
      }
      received[r] = torch::empty({sizes[r]}, torch::kUInt8);
      receives.push_back({r, received[r].data_ptr<uint8_t>(), sizes[r]});
      sends.push_back({r, messages[r].data_ptr<uint8_t>(), mine[r]});
    }
    transfer(sends, receives, what);
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
  double last_wait_seconds() const override { return last_wait_; }

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
  int64_t chunk_;    // the most bytes (elements for sums) in one MPI call
  int64_t segment_;  // the most bytes in one point-to-point message to another node (<= chunk_)
  std::vector<bool> same_node_;  // by rank: shares this rank's node (shared memory)
  // Both ends of a transfer split it alike: a peer on this node shares the node with it too.
  int64_t segment_for(int peer) const { return same_node_[peer] ? chunk_ : segment_; }
  // Calls post(p, count) for each segment [p, p + count) of the bytes [data, data + size) sent to
  // or received from `peer`: one MPI_Isend or MPI_Irecv each.
  template <typename Post>
  void for_each_segment(int peer, uint8_t* data, int64_t size, Post post) const {
    const int64_t segment = segment_for(peer);
    for (int64_t start = 0; start < size; start += segment) {
      post(data + start, static_cast<int>(std::min<int64_t>(segment, size - start)));
    }
  }
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  double timeout_ = 0.0;
  double last_wait_ = 0.0;  // the last exchange_sizes(): waiting for every rank to arrive
  struct PendingFlag {
    int in;
    int out;
    MPI_Request request;
  };
  std::deque<PendingFlag> pending_;  // deque: posted buffers keep their addresses

  // A started all-gather (start_allgather), oldest first.
  struct Gather {
    torch::Tensor message;  // this rank's bytes, kept alive while they are sent
    int64_t mine = 0;
    std::vector<int64_t> sizes, offsets;
    std::vector<MPI_Request> size_requests;  // receives (from size_from), then sends
    std::vector<int> size_from;
    std::vector<MPI_Request> sends, receives;
    std::vector<int> receive_from;
    torch::Tensor all;       // every rank's bytes, back to back
    bool receiving = false;  // sizes known, receives posted
  };
  std::deque<Gather> gathers_;

  static constexpr int kSizeTag = 7301;
  static constexpr int kDataTag = 7302;
  static constexpr int kGatherSizeTag = 7303;
  static constexpr int kGatherDataTag = 7304;

  // Posts the receives of every started gather whose sizes are in, oldest first, stopping at the
  // first whose sizes are not: receives from one rank are then posted in the order of its sends.
  void post_ready_receives() {
    for (Gather& g : gathers_) {
      if (g.receiving) continue;
      int done = 0;
      check_mpi(MPI_Testall(static_cast<int>(g.size_requests.size()), g.size_requests.data(), &done,
                            MPI_STATUSES_IGNORE),
                "MPI_Testall");
      if (!done) return;
      post_gather_receives(g);
    }
  }

  void post_gather_receives(Gather& g) {
    for (int r = 0; r < size_; ++r) {
      SADDLE_CHECK(g.sizes[r] >= 0, "the exchange's all-gather: rank ", r, " announced ",
                   g.sizes[r], " bytes");
    }
    g.offsets.assign(size_ + 1, 0);
    for (int r = 0; r < size_; ++r) g.offsets[r + 1] = g.offsets[r] + g.sizes[r];
    g.all = torch::empty({g.offsets[size_]}, torch::kUInt8);
    auto* out = g.all.data_ptr<uint8_t>();
    std::copy_n(g.message.data_ptr<uint8_t>(), g.mine, out + g.offsets[rank_]);
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      for_each_segment(r, out + g.offsets[r], g.sizes[r], [&](uint8_t* p, int count) {
        g.receives.emplace_back();
        g.receive_from.push_back(r);
        check_mpi(MPI_Irecv(p, count, MPI_BYTE, r, kGatherDataTag, comm_, &g.receives.back()),
                  "MPI_Irecv");
      });
    }
    g.receiving = true;
  }

  struct Transfer {
    int peer;
    uint8_t* data;
    int64_t size;
  };

  // Sends mine[r] to every other rank r and returns what each rank sent this one (this rank's own
  // entry: mine[rank_]). A negative size is refused.
  std::vector<int64_t> exchange_sizes(std::vector<int64_t> mine, const char* what) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<int64_t> sizes(size_);
    sizes[rank_] = mine[rank_];
    std::vector<MPI_Request> requests;
    std::vector<int> from;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      requests.emplace_back();
      from.push_back(r);
      check_mpi(MPI_Irecv(&sizes[r], 1, MPI_INT64_T, r, kSizeTag, comm_, &requests.back()),
                "MPI_Irecv");
    }
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      requests.emplace_back();
      check_mpi(MPI_Isend(&mine[r], 1, MPI_INT64_T, r, kSizeTag, comm_, &requests.back()),
                "MPI_Isend");
    }
    wait(requests, what, late_ranks(requests, from));
    last_wait_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (int r = 0; r < size_; ++r) {
      SADDLE_CHECK(sizes[r] >= 0, what, ": rank ", r, " announced ", sizes[r], " bytes");
    }
    return sizes;
  }

  // Posts every receive, then every send, in segments of at most segment_for(peer) bytes, and
  // completes them.
  void transfer(const std::vector<Transfer>& sends, const std::vector<Transfer>& receives,
                const char* what) {
    std::vector<MPI_Request> requests;
    std::vector<int> from;
    for (const Transfer& t : receives) {
      for_each_segment(t.peer, t.data, t.size, [&](uint8_t* p, int count) {
        requests.emplace_back();
        from.push_back(t.peer);
        check_mpi(MPI_Irecv(p, count, MPI_BYTE, t.peer, kDataTag, comm_, &requests.back()),
                  "MPI_Irecv");
      });
    }
    for (const Transfer& t : sends) {
      for_each_segment(t.peer, t.data, t.size, [&](uint8_t* p, int count) {
        requests.emplace_back();
        check_mpi(MPI_Isend(p, count, MPI_BYTE, t.peer, kDataTag, comm_, &requests.back()),
                  "MPI_Isend");
      });
    }
    wait(requests, what, late_ranks(requests, from));
  }

  // The ranks whose receives, the first from.size() of `requests`, are not complete: "rank 2, 3".
  static std::function<std::string()> late_ranks(std::vector<MPI_Request>& requests,
                                                 const std::vector<int>& from) {
    return [&requests, &from]() {
      std::string late;
      int last = -1;
      for (size_t k = 0; k < from.size(); ++k) {
        int done = 0;
        MPI_Test(&requests[k], &done, MPI_STATUS_IGNORE);
        if (done || from[k] == last) continue;
        late += (late.empty() ? "rank " : ", ") + std::to_string(from[k]);
        last = from[k];
      }
      return late;
    };
  }
  static constexpr auto kSpinFor = std::chrono::milliseconds(20);

  // Completes `requests`, testing instead of blocking so that a rank that never arrives (stopped,
  // crashed, cut off) ends this one after timeout_ seconds with a line naming the operation and,
  // from `late`, the ranks it waited for. Spins briefly, then sleeps: a waiting rank does not burn
  // a core.
  void wait(std::vector<MPI_Request>& requests, const char* what,
            const std::function<std::string()>& late = {},
            const std::function<void()>& between = {}) {
    const auto start = std::chrono::steady_clock::now();
    auto nap = std::chrono::microseconds(20);
    for (;;) {
      int done = 0;
      check_mpi(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done,
                            MPI_STATUSES_IGNORE),
                "MPI_Testall");
      if (done) return;
      if (between) between();
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
  SADDLE_CHECK(options.segment_bytes() >= 1, "MpiOptions::segment_bytes must be >= 1, got ",
               options.segment_bytes());
  MPI_Comm comm = MPI_COMM_NULL;
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup");
  check_mpi(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  return std::make_unique<MpiCommunicator>(comm, options);
}

}  // namespace saddle
