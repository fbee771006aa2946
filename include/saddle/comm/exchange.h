// Exchange: stage 2 of game -> exchange -> solver -> metrics. Turns each rank's local operator
// estimate into the average of all ranks' estimates, identically on every rank, by one of two
// collectives:
//
//  - allgather: flatten -> bucket -> quantize -> encode -> allgather -> decode -> average. Every
//    rank decodes every rank's message (its own included) in rank order with weight 1/K. Each rank
//    receives (K-1) messages of d coordinates: traffic grows with K. Overlapped (ExchangeOptions::
//    overlap), the vector goes in pieces of whole buckets: each piece is sent as soon as it is
//    encoded (fed by the game slice by slice, as soon as its coordinates are computed) and decoded
//    as soon as it has arrived, while the others travel; each piece is quantized at its place in
//    the random stream, so the average is the same bits as unsplit.
//  - two-phase (quantized reduce-scatter, then all-gather): rank r owns the r-th of K contiguous,
//    bucket-aligned chunks. Phase 1: each rank quantizes each chunk of its operator and sends it to
//    the chunk's owner (all-to-all); the owner decodes the K pieces in rank order with weight 1/K.
//    Phase 2: the owner quantizes that average again (unbiased, its own random stream) and the
//    owners' messages are all-gathered; every rank decodes all of them. Each rank receives
//    (K-1)/K of one first-phase and one second-phase message whatever K, at the price of a second
//    quantization (its variance adds to the first's, so it uses more bits:
//    ExchangeOptions::second_bits; with quantizer none both phases are exact).
//
// Either way all ranks return bit-identical averages (every rank decodes the same bytes in the
// same order), so the solvers' iterates never drift apart. Each quantization draws from its own
// random stream, a function of (seed, rank, chunk, phase, call index). Messages from other ranks
// are untrusted input: a decoding failure is thrown as saddle::Error("malformed message from rank
// r: ...").
//
// With one rank the Exchange still encodes and decodes: a one-process run sees the same
// quantization noise as a distributed one, and bytes_sent counts the encoded message (what this
// rank would send), so bits_per_coordinate describes the codec in every run; bytes_received is 0.
// With quantizer "none" this costs one copy.
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "saddle/comm/communicator.h"
#include "saddle/log.h"
#include "saddle/quant/codec.h"

namespace saddle {

struct ExchangeOptions {
  TORCH_ARG(CodecOptions, codec) = CodecOptions();
  // Iterations at which adaptive levels (alq, amq) are refit, then at every multiple of
  // `level_every` past the last of them (0: never again). Levels are also fit at the first
  // average() of an Exchange, so a run resumed from a checkpoint does not use unfitted levels.
  TORCH_ARG(std::vector<int64_t>, level_schedule) = std::vector<int64_t>{0, 100, 2000};
  TORCH_ARG(int64_t, level_every) = 10000;
  // Seeds the quantizers' random streams (each rank and call gets its own stream).
  TORCH_ARG(uint64_t, seed) = 0;
  // "allgather", "two-phase", or "auto": two-phase from kTwoPhaseFromRanks ranks on (see above).
  TORCH_ARG(std::string, collective) = "auto";
  // Bits of the two-phase exchange's second quantization (the owners' averages; level
  // quantizers): its noise reaches every rank unaveraged, where the first phase's K independent
  // quantizations are averaged, so at equal bits it would add about K times the all-gather's
  // variance. 8 bits make it small (its levels are fit from the same statistics).
  TORCH_ARG(int, second_bits) = 8;
  // allgather: how many pieces the pipeline above cuts the vector into: "off" (one: encode, then
  // send, then decode), a count 2..64, or "auto" (with two or more ranks, one piece per
  // kOverlapPieceCoordinates coordinates, at most kOverlapMaxPieces). Host transports only (CPU
  // tensors, or device messages staged through host memory); NCCL's all-gather is not split. Off
  // by default: they shorten exchanges between hosts, but not through one host's shared memory
  // (README, "Encoding, sending and decoding at once").
  TORCH_ARG(std::string, overlap) = "off";
};

constexpr int64_t kOverlapPieceCoordinates = int64_t{1} << 17;
constexpr int kOverlapMaxPieces = 8;
// The pieces `spec` (see ExchangeOptions::overlap) gives a vector of `dim` coordinates in buckets
// of `bucket` among `ranks` ranks: at least 1, at most one per bucket. Throws saddle::Error for a
// malformed spec.
int resolve_overlap(const std::string& spec, int64_t dim, int64_t bucket, int ranks);

// From this many ranks on, "auto" picks the two-phase collective: each rank then receives
// (K-1)/K (b + second_bits)/b instead of K-1 b-bit messages' worth (2.7x less at K = 8 and
// 4 bits), for one more quantization.
constexpr int kTwoPhaseFromRanks = 8;

// The collective `spec` ("allgather", "two-phase" or "auto") names for `ranks` ranks: "allgather"
// or "two-phase" (one rank always all-gathers: there is nothing to reduce). Throws saddle::Error
// for another name.
std::string resolve_collective(const std::string& spec, int ranks);

// Traffic and time of one rank, cumulative since the start of the run.
struct Ledger {
  // This rank's encoded messages (counted with one rank too, see above; two-phase: its chunks,
  // its own included, and its owner's message) and the other ranks' messages it received. The
  // small statistics summed at level refits are not counted.
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
  // bytes_sent summed over all ranks: the same on every rank, with no collective (all-gather:
  // every rank sees every message; two-phase: each owner's message tells how many bytes it was
  // sent). A byte budget is spent against it.
  int64_t bytes_all_ranks = 0;
  int64_t coordinates_sent = 0;  // float32 coordinates this rank has exchanged
  int64_t exchanges = 0;         // calls of average()
  int64_t level_updates = 0;     // refits of adaptive levels
  double seconds_encode = 0.0;
  double seconds_communicate = 0.0;  // moving the bytes
  double seconds_wait = 0.0;         // in an exchange, waiting for the other ranks to arrive
  double seconds_decode = 0.0;
  double seconds_compute = 0.0;  // operator evaluation, recorded by the runner
  // The runner's records: metrics, evaluations and sample images (rank 0), and every rank's wait
  // for them; apart from the iterations' own time.
  double seconds_records = 0.0;
  // Energy of the two phases on a GPU (NVML), recorded by the runner; 0 where not attributed.
  double joules_compute = 0.0;
  double joules_exchange = 0.0;
  // Wire bits per exchanged coordinate, headers and norms included.
  double bits_per_coordinate() const {
    return coordinates_sent > 0 ? 8.0 * static_cast<double>(bytes_sent) / coordinates_sent : 0.0;
  }
};

// Thrown on every rank by Exchange::average when some rank's operator was not finite.
class NonFiniteOperator : public AgreedError {
 public:
  explicit NonFiniteOperator(int rank)
      : AgreedError("the operator on rank " + std::to_string(rank) + " is not finite"),
        rank_(rank) {}
  int rank() const { return rank_; }

 private:
  int rank_;
};

class Exchange {
 public:
  // Throws saddle::Error for a bad option (the codec checks its own). `communicator` and `logger`
  // must outlive the Exchange.
  Exchange(Communicator& communicator, const ExchangeOptions& options, const Logger& logger);
  ~Exchange();

  // Called by the runner at the start of iteration t (drives the level-update schedule): when t is
  // due, the next average() first refits the levels from statistics summed over all ranks
  // (collective, so every rank must call begin_iteration with the same t).
  void begin_iteration(int64_t iteration);
  // Whether the schedule refits adaptive levels at iteration t.
  bool level_update_due(int64_t iteration) const;

  // The average over ranks of every rank's `local` (1-D float32, on the CPU or a CUDA device); the
  // same bits on every rank, on local's device. Device messages travel over the communicator's
  // device collectives (NCCL) or through pinned host memory. Returns a new tensor owned by the
  // caller. Collective: every rank calls it with the same numel.
  //
  // A rank whose `local` is not finite passes local_finite = false: it still takes part (zero
  // level statistics, and a short marker that no codec message can be in place of its message),
  // and then every rank throws NonFiniteOperator naming the first such rank, at the same call: an
  // agreed divergence rather than one rank ending the job.
  torch::Tensor average(const torch::Tensor& local, bool local_finite = true);

  // average() of an operator the game computes in slices (Game::operator_in_slices), overlapped
  // (ExchangeOptions::overlap) with its computation: begin_average() before the evaluation; offer()
  // each slice [begin, end) of `f` once it is final (and whether it is finite), which sends every
  // piece it completes while the game computes the rest; finish_average() with the whole operator
  // sends what is left and returns average(local, local_finite)'s bits. Every rank offers the same
  // slices in the same order. Where pieces cannot go early (one piece, the two-phase collective,
  // NCCL, or adaptive levels due for a refit, which needs the whole operator's statistics first),
  // offer() keeps nothing and finish_average() is average().
  void begin_average(int64_t dim, const torch::Device& device);
  void offer(const torch::Tensor& f, int64_t begin, int64_t end, bool finite);
  torch::Tensor finish_average(const torch::Tensor& local, bool local_finite = true);
  // Pieces of the average begun that offer() has already sent (0 outside one).
  int pieces_started() const;

  // The codec's predicted variance at the last level refit (NaN before the first).
  double predicted_variance() const { return predicted_variance_; }
  // Calls of average() so far; they index the random streams. A resumed run restores it so its
  // streams continue instead of repeating.
  int64_t calls() const { return calls_; }
  void set_calls(int64_t calls);

  // Everything a checkpoint needs to continue exactly: the call counter (random streams), the
  // adaptive levels and this rank's ledger. load_state() keeps the restored levels until the
  // schedule next refits them.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  void load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state);

  // Keeps each rank's decoded operator of the last two calls (2 x K x dim floats), for step rules
  // that read the ranks' own operators (qgenx). Off by default.
  void keep_rank_operators(bool keep);
  // The sum over ranks of ||V^k_last - V^k_previous||^2 (against_previous) or of ||V^k_last||^2,
  // in the fixed order of detail/reduce.h: the same bits on every rank. Needs keep_rank_operators.
  // Two-phase: each owner sums over its chunk of every rank's decoded first-phase operator and
  // sends the sums with its message; they are added in rank order.
  double rank_sq_difference(bool against_previous) const;

  const Ledger& ledger() const { return ledger_; }
  Ledger& ledger() { return ledger_; }
  Communicator& communicator() { return communicator_; }
  const Codec& codec() const { return codec_; }
  // The two-phase exchange's second quantization (the codec with second_bits).
  const Codec& second_codec() const { return second_codec_; }
  // "allgather" or "two-phase", as resolved for this communicator's size.
  const std::string& collective() const { return collective_; }
  // The pieces the last average() was cut into (1: not overlapped).
  int overlap_pieces() const { return last_pieces_; }

 private:
  std::vector<torch::Tensor> allgather_staged(const torch::Tensor& message);
  std::vector<torch::Tensor> allgather_messages(const torch::Tensor& message);
  // Books `seconds` of a collective: the communicator's wait for the other ranks apart.
  void book_communication(double seconds);
  torch::Tensor average_allgather(const torch::Tensor& input, bool local_finite);
  // The overlapped all-gather ("Overlapped" in the comment above): opened with the pieces'
  // bounds, each piece started once final, closed by finishing them in the order they started.
  struct Pipeline;
  int pieces_for(int64_t dim, const torch::Device& device) const;
  std::unique_ptr<Pipeline> open_pipeline(int64_t dim, const torch::Device& device, int pieces);
  void start_piece(Pipeline& pipe, const torch::Tensor& input, int p);
  torch::Tensor close_pipeline(Pipeline& pipe, const torch::Tensor& input);
  void count_call(int64_t dim);
  // The random stream of this rank's all-gather message in this call.
  uint64_t allgather_stream() const;
  torch::Tensor average_two_phase(const torch::Tensor& input, bool local_finite);
  // Decodes `messages` (from ranks first_rank, first_rank + 1, ...) into `out` with `weight`,
  // naming a bad message's rank; with `rows`, also each message at weight 1 into its row.
  void decode_from_ranks(const Codec& codec, const std::vector<torch::Tensor>& messages,
                         torch::Tensor& out, float weight, int first_rank = 0,
                         std::vector<torch::Tensor>* rows = nullptr) const;
  // This exchange's per-rank operators, decoded in full: the last ones become the previous.
  void keep_rank_rows(const torch::Tensor& decoded);

  Communicator& communicator_;
  ExchangeOptions options_;
  const Logger& logger_;
  Codec codec_;
  Codec second_codec_;
  std::string collective_;
  Ledger ledger_;
  int64_t iteration_ = 0;
  int64_t calls_ = 0;
  bool adapt_pending_ = true;
  double predicted_variance_ = std::numeric_limits<double>::quiet_NaN();
  torch::Tensor pinned_;  // host staging of device messages for host transports
  bool keep_ranks_ = false;
  int last_pieces_ = 1;
  std::unique_ptr<Pipeline> pipeline_;  // between begin_average() and finish_average()
  // [K, dim] decoded operators of the last two calls; two-phase: [K, chunk] of this rank's chunk,
  // and the owners' sums of the last call (against the previous call, and plain).
  torch::Tensor rank_last_, rank_previous_;
  double chunk_sq_difference_ = 0.0, chunk_sq_norm_ = 0.0;
};

}  // namespace saddle
