// Exchange: encode -> allgather -> decode every rank's message in rank order -> average.
#include "saddle/comm/exchange.h"

#include <cstring>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <string>

#include "../detail/reduce.h"
#include "saddle/device.h"
#include "saddle/error.h"
#include "saddle/quant/level_set.h"

namespace saddle {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double>(end - start).count();
}

[[maybe_unused]] std::string format_levels(const torch::Tensor& levels) {
  if (!levels.defined()) return "[]";
  torch::Tensor values = levels.to(torch::kFloat64).contiguous().view(-1);
  const double* data = values.data_ptr<double>();
  std::string out = "[";
  for (int64_t i = 0; i < values.numel(); ++i)
    out += fmt::format("{}{:.6g}", i ? ", " : "", data[i]);
  return out + "]";
}

template <typename Container>
std::string format_levels(const Container& levels) {
  std::string out = "[";
  bool first = true;
  for (const auto& value : levels) {
    out += fmt::format("{}{:.6g}", first ? "" : ", ", static_cast<double>(value));
    first = false;
  }
  return out + "]";
}

}  // namespace

std::string resolve_collective(const std::string& spec, int ranks) {
  SADDLE_CHECK(spec == "auto" || spec == "allgather" || spec == "two-phase",
               "invalid --collective '", spec, "' (expected allgather, two-phase or auto)");
  if (ranks <= 1) return "allgather";
  if (spec == "auto") return ranks >= kTwoPhaseFromRanks ? "two-phase" : "allgather";
  return spec;
}

int resolve_overlap(const std::string& spec, int64_t dim, int64_t bucket, int ranks) {
  int64_t pieces = 1;
  if (spec == "auto") {
    pieces = ranks > 1 ? std::min<int64_t>(kOverlapMaxPieces, dim / kOverlapPieceCoordinates) : 1;
  } else if (spec != "off") {
    size_t used = 0;
    try {
      pieces = std::stoll(spec, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SADDLE_CHECK(used == spec.size() && used > 0 && pieces >= 1 && pieces <= 64,
                 "invalid --overlap '", spec, "' (expected off, auto or a piece count 1..64)");
  }
  const int64_t buckets = bucket > 0 ? (dim + bucket - 1) / bucket : 0;
  return static_cast<int>(std::max<int64_t>(1, std::min(pieces, buckets)));
}

namespace {
// Host messages moved to `device` in one copy, as views of one buffer there.
std::vector<torch::Tensor> to_device(const std::vector<torch::Tensor>& messages,
                                     const torch::Device& device) {
  const torch::Tensor all = torch::cat(messages).to(device);
  std::vector<torch::Tensor> out;
  int64_t offset = 0;
  for (const auto& m : messages) {
    out.push_back(all.narrow(0, offset, m.numel()));
    offset += m.numel();
  }
  return out;
}

// Adaptive levels as a checkpoint tensor, and back.
torch::Tensor levels_tensor(const std::vector<float>& levels) {
  torch::Tensor out = torch::empty({static_cast<int64_t>(levels.size())}, torch::kFloat32);
  if (!levels.empty())
    std::memcpy(out.data_ptr<float>(), levels.data(), levels.size() * sizeof(float));
  return out;
}

std::vector<float> levels_of(const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.to(torch::kFloat32).contiguous();
  return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
}

CodecOptions second_codec_options(const ExchangeOptions& options) {
  SADDLE_CHECK(options.second_bits() >= 2 && options.second_bits() <= 8, "invalid --second-bits ",
               options.second_bits(), " (2..8)");
  return CodecOptions(options.codec()).bits(options.second_bits());
}
}  // namespace

Exchange::Exchange(Communicator& communicator, const ExchangeOptions& options, const Logger& logger)
    : communicator_(communicator),
      options_(options),
      logger_(logger),
      codec_(options.codec()),
      second_codec_(second_codec_options(options)),
      collective_(resolve_collective(options.collective(), communicator.size())) {
  SADDLE_CHECK(options.level_every() >= 0, "level_every must be >= 0 (0: no periodic refit), got ",
               options.level_every());
  resolve_overlap(options.overlap(), 0, 1, 1);  // a malformed --overlap fails here
  for (int64_t t : options.level_schedule()) {
    SADDLE_CHECK(t >= 0, "level_schedule holds a negative iteration: ", t);
  }
}

bool Exchange::level_update_due(int64_t iteration) const {
  const auto& schedule = options_.level_schedule();
  if (std::find(schedule.begin(), schedule.end(), iteration) != schedule.end()) return true;
  const int64_t last = schedule.empty() ? -1 : *std::max_element(schedule.begin(), schedule.end());
  return options_.level_every() > 0 && iteration > last && iteration % options_.level_every() == 0;
}

void Exchange::begin_iteration(int64_t iteration) {
  iteration_ = iteration;
  if (level_update_due(iteration)) adapt_pending_ = true;
}

void Exchange::set_calls(int64_t calls) {
  SADDLE_CHECK(calls >= 0, "Exchange::set_calls: calls must be >= 0, got ", calls);
  calls_ = calls;
}

std::vector<std::pair<std::string, torch::Tensor>> Exchange::state() const {
  torch::Tensor counters =
      torch::tensor({calls_, ledger_.bytes_sent, ledger_.bytes_received, ledger_.coordinates_sent,
                     ledger_.exchanges, ledger_.level_updates, ledger_.bytes_all_ranks},
                    torch::kInt64);
  torch::Tensor seconds = torch::tensor(
      {ledger_.seconds_encode, ledger_.seconds_communicate, ledger_.seconds_decode,
       ledger_.seconds_compute, predicted_variance_, ledger_.seconds_wait, ledger_.seconds_records},
      torch::kFloat64);
  std::vector<std::pair<std::string, torch::Tensor>> out = {
      {"exchange_levels", levels_tensor(codec_.levels())},
      {"exchange_second_levels", levels_tensor(second_codec_.levels())},
      {"exchange_counters", counters},
      {"exchange_seconds", seconds}};
  // The qgenx step rule compares the next operators with these.
  if (keep_ranks_ && rank_last_.defined()) out.emplace_back("exchange_rank_operators", rank_last_);
  return out;
}

void Exchange::load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state) {
  for (const auto& [name, tensor] : state) {
    if (name == "exchange_levels" && tensor.numel() > 0 && codec_.adaptive()) {
      codec_.set_levels(levels_of(tensor));
      adapt_pending_ = false;
    } else if (name == "exchange_second_levels" && tensor.numel() > 0 && second_codec_.adaptive()) {
      second_codec_.set_levels(levels_of(tensor));
    } else if (name == "exchange_counters") {
      SADDLE_CHECK(tensor.numel() == 6 || tensor.numel() == 7,
                   "checkpoint: exchange counters have ", tensor.numel(), " entries, expected 7");
      torch::Tensor t = tensor.to(torch::kInt64).contiguous();
      const int64_t* c = t.data_ptr<int64_t>();
      set_calls(c[0]);
      ledger_.bytes_sent = c[1];
      ledger_.bytes_received = c[2];
      ledger_.coordinates_sent = c[3];
      ledger_.exchanges = c[4];
      ledger_.level_updates = c[5];
      // Checkpoints before the two-phase collective all-gathered: every rank saw every message.
      ledger_.bytes_all_ranks = tensor.numel() == 7 ? c[6] : c[1] + c[2];
      if (!codec_.adaptive()) adapt_pending_ = false;
    } else if (name == "exchange_rank_operators" && keep_ranks_) {
      rank_last_ = tensor.clone();
    } else if (name == "exchange_seconds" && tensor.numel() >= 5 && tensor.numel() <= 7) {
      torch::Tensor t = tensor.to(torch::kFloat64).contiguous();
      const double* c = t.data_ptr<double>();
      ledger_.seconds_encode = c[0];
      ledger_.seconds_communicate = c[1];
      ledger_.seconds_decode = c[2];
      ledger_.seconds_compute = c[3];
      predicted_variance_ = c[4];
      // Older checkpoints booked no wait (5 entries) or no records (6).
      ledger_.seconds_wait = tensor.numel() >= 6 ? c[5] : 0.0;
      ledger_.seconds_records = tensor.numel() == 7 ? c[6] : 0.0;
    }
  }
}

// A device message through a host-memory transport: out through a pinned buffer (reused), the
// gathered messages back to the device as one buffer.
std::vector<torch::Tensor> Exchange::allgather_staged(const torch::Tensor& message) {
  const torch::Device device = message.device();
  const int64_t size = message.numel();
  if (!pinned_.defined() || pinned_.numel() < size) {
    pinned_ = torch::empty({std::max<int64_t>(size, 1)},
                           torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(true));
  }
  torch::Tensor host = pinned_.narrow(0, 0, size);
  host.copy_(message);
  return to_device(communicator_.allgather_bytes(host), device);
}

void Exchange::keep_rank_operators(bool keep) {
  keep_ranks_ = keep;
  if (!keep) rank_last_ = rank_previous_ = torch::Tensor();
}

namespace {
// sum over rows r of ||last[r] - previous[r]||^2 (against_previous, when there is a previous) or
// of ||last[r]||^2, each row in the fixed order of detail/reduce.h.
double sum_rank_squares(const torch::Tensor& last, const torch::Tensor& previous,
                        bool against_previous) {
  double total = 0.0;
  for (int64_t r = 0; r < last.size(0); ++r) {
    const bool paired = against_previous && previous.defined();
    total += detail::fixed_order_sum_squares(last[r], paired ? previous[r] : torch::Tensor());
  }
  return total;
}
}  // namespace

double Exchange::rank_sq_difference(bool against_previous) const {
  SADDLE_CHECK(keep_ranks_ && rank_last_.defined(),
               "Exchange::rank_sq_difference: the ranks' operators are not kept");
  if (collective_ == "two-phase") return against_previous ? chunk_sq_difference_ : chunk_sq_norm_;
  return sum_rank_squares(rank_last_, rank_previous_, against_previous);
}

namespace {
void check_operator(const torch::Tensor& local) {
  SADDLE_CHECK(local.defined(), "Exchange::average: undefined tensor");
  SADDLE_CHECK(local.dim() == 1, "Exchange::average: expected a 1-D tensor, got shape ",
               local.sizes());
  SADDLE_CHECK(local.scalar_type() == torch::kFloat32, "Exchange::average: dtype ",
               local.scalar_type(), " (expected kFloat32)");
  SADDLE_CHECK(local.device().is_cpu() || local.device().is_cuda(), "Exchange::average: tensor on ",
               local.device(), " (expected a CPU or CUDA tensor)");
}
}  // namespace

// An overlapped all-gather in flight: the pieces of whole buckets, which of them are final, and
// the order this rank started them in (every rank starts them in the same order).
struct Exchange::Pipeline {
  int64_t dim = 0;
  torch::Device device = torch::kCPU;
  bool deferred = false;  // one piece, or a level refit first: all of it at finish_average()
  uint64_t stream = 0;
  std::vector<int64_t> bounds;   // piece p is [bounds[p], bounds[p + 1])
  std::vector<int64_t> missing;  // coordinates of piece p not final yet
  std::vector<int> order;        // pieces in the order they were started
  bool finite = true;            // every slice offered so far was finite
  int64_t sent = 0;              // this rank's bytes
};

Exchange::~Exchange() = default;

int Exchange::pieces_for(int64_t dim, const torch::Device& device) const {
  // NCCL moves device messages in one collective of its own: not split; nor the two-phase one.
  const bool host_transport = device.is_cpu() || !communicator_.device_collectives(device);
  if (collective_ != "allgather" || !host_transport) return 1;
  return resolve_overlap(options_.overlap(), dim, codec_.options().bucket_size(),
                         communicator_.size());
}

void Exchange::begin_average(int64_t dim, const torch::Device& device) {
  SADDLE_CHECK(!pipeline_, "Exchange::begin_average: the previous average is not finished");
  SADDLE_CHECK(dim >= 0, "Exchange::begin_average: dim ", dim);
  const int pieces = pieces_for(dim, device);
  // Adaptive levels due for a refit need the whole operator's statistics before any encoding.
  const bool refit = adapt_pending_ && codec_.adaptive();
  pipeline_ = open_pipeline(dim, device, refit ? 1 : pieces);
}

void Exchange::offer(const torch::Tensor& f, int64_t begin, int64_t end, bool finite) {
  SADDLE_CHECK(pipeline_, "Exchange::offer: no begin_average() before it");
  Pipeline& pipe = *pipeline_;
  if (pipe.deferred) return;
  SADDLE_CHECK(f.dim() == 1 && f.numel() == pipe.dim && f.is_contiguous() &&
                   f.scalar_type() == torch::kFloat32,
               "Exchange::offer: expected a contiguous float32 vector of ", pipe.dim,
               " entries, got shape ", f.sizes(), " and dtype ", f.scalar_type());
  SADDLE_CHECK(0 <= begin && begin <= end && end <= pipe.dim, "Exchange::offer: slice [", begin,
               ", ", end, ") outside [0, ", pipe.dim, ")");
  pipe.finite = pipe.finite && finite;
  const int pieces = static_cast<int>(pipe.missing.size());
  for (int p = 0; p < pieces; ++p) {
    const int64_t covered = std::min(end, pipe.bounds[p + 1]) - std::max(begin, pipe.bounds[p]);
    if (covered <= 0) continue;
    pipe.missing[p] -= covered;
    SADDLE_CHECK(pipe.missing[p] >= 0, "Exchange::offer: slice [", begin, ", ", end,
                 ") was offered before");
    if (pipe.missing[p] == 0) start_piece(pipe, f, p);
  }
}

int Exchange::pieces_started() const {
  return pipeline_ ? static_cast<int>(pipeline_->order.size()) : 0;
}

torch::Tensor Exchange::finish_average(const torch::Tensor& local, bool local_finite) {
  std::unique_ptr<Pipeline> pipe = std::move(pipeline_);
  if (!pipe || pipe->deferred) return average(local, local_finite);
  check_operator(local);
  SADDLE_CHECK(local.numel() == pipe->dim && local.is_contiguous(),
               "Exchange::finish_average: expected the contiguous vector of ", pipe->dim,
               " entries begun, got shape ", local.sizes());
  pipe->finite = pipe->finite && local_finite;
  torch::Tensor average = close_pipeline(*pipe, local);
  count_call(local.numel());
  return average;
}

void Exchange::count_call(int64_t dim) {
  ledger_.coordinates_sent += dim;
  ++ledger_.exchanges;
  ++calls_;
}

torch::Tensor Exchange::average(const torch::Tensor& local, bool local_finite) {
  check_operator(local);
  SADDLE_CHECK(!pipeline_, "Exchange::average: an average begun is not finished");
  const torch::Tensor input = local.contiguous();
  const int me = communicator_.rank();

  if (adapt_pending_ && codec_.adaptive()) {
    // Every rank refits from the same summed statistics, so all hold identical levels.
    auto start = Clock::now();
    // A non-finite operator adds nothing (the refit is moot: every rank throws below).
    torch::Tensor statistics =
        local_finite ? codec_.statistics(input).contiguous()  // on the CPU
                     : torch::zeros({3, kLevelStatBins}, torch::kFloat64);
    auto summed = Clock::now();
    ledger_.seconds_encode += seconds_between(start, summed);
    communicator_.allreduce_sum(statistics);
    auto reduced = Clock::now();
    ledger_.seconds_communicate += seconds_between(summed, reduced);
    if (statistics[0].sum().item<double>() > 0) {
      predicted_variance_ = codec_.adapt(statistics);
      if (collective_ == "two-phase") second_codec_.adapt(statistics);
    }
    ledger_.seconds_encode += seconds_between(reduced, Clock::now());
    ++ledger_.level_updates;
    // The statistics' third row sums v_i^2 over every coordinate of every rank: the variance as a
    // fraction of that is the quantizer's relative variance, comparable across refits.
    const double squared_norm = statistics[2].sum().item<double>();
    logger_.log(me == 0 ? LogLevel::kInfo : LogLevel::kDebug,
                "levels refit at iteration {}: levels {}, predicted variance {:.6g} ({:.4g} of the "
                "operators' squared norm)",
                iteration_, format_levels(codec_.levels()), predicted_variance_,
                squared_norm > 0 ? predicted_variance_ / squared_norm : 0.0);
  }
  adapt_pending_ = false;

  torch::Tensor average;
  last_pieces_ = 1;  // close_pipeline() sets its own count
  if (collective_ == "two-phase") {
    average = average_two_phase(input, local_finite);
  } else if (const int pieces = pieces_for(input.numel(), input.device()); pieces > 1) {
    std::unique_ptr<Pipeline> pipe = open_pipeline(input.numel(), input.device(), pieces);
    pipe->finite = local_finite;
    average = close_pipeline(*pipe, input);
  } else {
    average = average_allgather(input, local_finite);
  }
  count_call(input.numel());
  return average;
}

namespace {
constexpr char kNonFinite[] = "saddle:non-finite";  // not a codec message: no magic, too short

torch::Tensor non_finite_marker(const torch::Device& device) {
  torch::Tensor m = torch::empty({static_cast<int64_t>(sizeof kNonFinite - 1)}, torch::kUInt8);
  std::memcpy(m.data_ptr(), kNonFinite, sizeof kNonFinite - 1);
  return m.to(device);
}

bool is_non_finite_marker(const torch::Tensor& message) {
  if (message.numel() != static_cast<int64_t>(sizeof kNonFinite - 1)) return false;
  const torch::Tensor host = message.cpu().contiguous();
  return std::memcmp(host.data_ptr(), kNonFinite, sizeof kNonFinite - 1) == 0;
}

// Throws NonFiniteOperator naming the first rank whose message is the non-finite marker.
void throw_if_non_finite(const std::vector<torch::Tensor>& messages) {
  for (size_t r = 0; r < messages.size(); ++r) {
    if (is_non_finite_marker(messages[r])) throw NonFiniteOperator(static_cast<int>(r));
  }
}

int64_t total_bytes(const std::vector<torch::Tensor>& messages) {
  int64_t total = 0;
  for (const auto& m : messages) total += m.numel();
  return total;
}

// What a two-phase owner sends before its codec message: how many bytes the ranks sent it in the
// first phase (so every rank can count all ranks' bytes), and its chunk's sums for the qgenx step
// rule (zero when unused).
struct OwnerHeader {
  int64_t first_phase_bytes = 0;
  double sq_difference = 0.0;
  double sq_norm = 0.0;
};
constexpr int64_t kOwnerHeaderBytes = 24;
static_assert(sizeof(OwnerHeader) == kOwnerHeaderBytes, "OwnerHeader must be packed");

// The stream of a two-phase quantization: disjoint from the all-gather's calls * K + rank, from
// each other, and over (call, sender, owner). Bit 63 marks the two-phase streams, bit 62 the
// second phase.
uint64_t two_phase_stream(int64_t call, int ranks, int sender, int owner, bool second) {
  const uint64_t k = static_cast<uint64_t>(ranks);
  const uint64_t index = (static_cast<uint64_t>(call) * k + static_cast<uint64_t>(sender)) * k +
                         static_cast<uint64_t>(owner);
  return (uint64_t{1} << 63) | (second ? uint64_t{1} << 62 : 0) | index;
}
}  // namespace

std::vector<torch::Tensor> Exchange::allgather_messages(const torch::Tensor& message) {
  std::vector<torch::Tensor> messages = communicator_.device_collectives(message.device())
                                            ? communicator_.allgather_bytes(message)
                                            : allgather_staged(message);
  SADDLE_CHECK(static_cast<int>(messages.size()) == communicator_.size(),
               "allgather_bytes returned ", messages.size(), " messages for ", communicator_.size(),
               " ranks");
  return messages;
}

void Exchange::book_communication(double seconds) {
  const double wait = std::min(seconds, communicator_.last_wait_seconds());
  ledger_.seconds_wait += wait;
  ledger_.seconds_communicate += seconds - wait;
}

void Exchange::decode_from_ranks(const Codec& codec, const std::vector<torch::Tensor>& messages,
                                 torch::Tensor& out, float weight, int first_rank,
                                 std::vector<torch::Tensor>* rows) const {
  try {
    if (rows) {
      codec.decode_average(messages, out, weight, *rows);
    } else {
      codec.decode_average(messages, out, weight);
    }
  } catch (const MalformedMessage& e) {
    const int sender = first_rank + e.index();
    if (sender == communicator_.rank()) {
      throw Error(detail::concat("cannot decode this rank's own message: ", e.what()));
    }
    throw Error(detail::concat("malformed message from rank ", sender, ": ", e.what()));
  }
}

void Exchange::keep_rank_rows(const torch::Tensor& decoded) {
  rank_previous_ = rank_last_.defined() ? rank_last_.to(decoded.device()) : rank_last_;
  rank_last_ = decoded;
}

namespace {

// A fresh [ranks, n] tensor for the per-rank operators and its rows (none without keep).
std::vector<torch::Tensor> rank_rows(bool keep, int ranks, int64_t n, const torch::Tensor& like,
                                     torch::Tensor& all) {
  std::vector<torch::Tensor> rows;
  if (!keep) return rows;
  all = torch::empty({ranks, n}, like.options());
  for (int r = 0; r < ranks; ++r) rows.push_back(all[r]);
  return rows;
}

}  // namespace

// Distinct streams for every (rank, call): ranks' quantization noise is independent.
uint64_t Exchange::allgather_stream() const {
  return static_cast<uint64_t>(calls_) * static_cast<uint64_t>(communicator_.size()) +
         static_cast<uint64_t>(communicator_.rank());
}

torch::Tensor Exchange::average_allgather(const torch::Tensor& input, bool local_finite) {
  const torch::Device device = input.device();
  const int ranks = communicator_.size();
  const uint64_t stream = allgather_stream();
  auto start = Clock::now();
  // A rank whose operator is not finite sends a marker no codec message can be (those begin with
  // the codec's magic and are at least a header long) instead of a message.
  torch::Tensor message =
      local_finite ? codec_.encode(input, options_.seed(), stream) : non_finite_marker(device);
  auto encoded = Clock::now();
  std::vector<torch::Tensor> messages = allgather_messages(message);
  auto gathered = Clock::now();
  throw_if_non_finite(messages);

  torch::Tensor average = torch::empty({input.numel()}, input.options());
  // With keep_ranks_, each rank's own decoded operator (weight 1) too, for the qgenx step rule.
  torch::Tensor per_rank;
  std::vector<torch::Tensor> rows = rank_rows(keep_ranks_, ranks, input.numel(), input, per_rank);
  decode_from_ranks(codec_, messages, average, 1.0f / static_cast<float>(ranks), 0,
                    keep_ranks_ ? &rows : nullptr);
  if (keep_ranks_) keep_rank_rows(per_rank);
  synchronize(device);  // the decode's time belongs to the decode
  auto decoded = Clock::now();

  ledger_.seconds_encode += seconds_between(start, encoded);
  book_communication(seconds_between(encoded, gathered));
  ledger_.seconds_decode += seconds_between(gathered, decoded);
  ledger_.bytes_sent += message.numel();
  ledger_.bytes_received += total_bytes(messages) - message.numel();
  ledger_.bytes_all_ranks += total_bytes(messages);
  return average;
}

// The all-gather as a pipeline of pieces of whole buckets: each piece is encoded and sent as soon
// as its coordinates are final (offer()), the earlier ones decoded while the last travel. Each
// piece is quantized at its index in this call's stream, so the average is the same bits as in one
// piece, whatever order the pieces went in. The ledger books the time this rank spends in each
// phase; transfers that proceed under the game's computation, the encoding and the decoding leave
// less to wait for, which shows as fewer seconds communicating.
std::unique_ptr<Exchange::Pipeline> Exchange::open_pipeline(int64_t dim,
                                                            const torch::Device& device,
                                                            int pieces) {
  auto pipe = std::make_unique<Pipeline>();
  pipe->dim = dim;
  pipe->device = device;
  pipe->deferred = pieces <= 1;
  if (pipe->deferred) return pipe;
  pipe->stream = allgather_stream();  // the unsplit exchange's: the same quantization
  const int64_t bucket = codec_.options().bucket_size();
  const int64_t buckets = (dim + bucket - 1) / bucket;
  pipe->bounds.resize(pieces + 1);
  for (int p = 0; p <= pieces; ++p) pipe->bounds[p] = std::min(dim, buckets * p / pieces * bucket);
  for (int p = 0; p < pieces; ++p) pipe->missing.push_back(pipe->bounds[p + 1] - pipe->bounds[p]);
  return pipe;
}

void Exchange::start_piece(Pipeline& pipe, const torch::Tensor& input, int p) {
  auto t0 = Clock::now();
  // A rank whose operator is not finite (so far) sends the non-finite marker in this piece.
  const int64_t first = pipe.bounds[p];
  torch::Tensor message = pipe.finite
                              ? codec_
                                    .encode(input.narrow(0, first, pipe.bounds[p + 1] - first),
                                            options_.seed(), pipe.stream, first)
                                    .cpu()
                              : non_finite_marker(torch::kCPU);
  auto t1 = Clock::now();
  communicator_.start_allgather(message);
  ledger_.seconds_encode += seconds_between(t0, t1);
  ledger_.seconds_communicate += seconds_between(t1, Clock::now());
  pipe.sent += message.numel();
  pipe.order.push_back(p);
  pipe.missing[p] = 0;
}

torch::Tensor Exchange::close_pipeline(Pipeline& pipe, const torch::Tensor& input) {
  const torch::Device device = pipe.device;
  const int ranks = communicator_.size();
  const int pieces = static_cast<int>(pipe.missing.size());
  last_pieces_ = pieces;
  // Pieces no slice completed go now, in index order.
  for (int p = 0; p < pieces; ++p) {
    if (std::find(pipe.order.begin(), pipe.order.end(), p) == pipe.order.end()) {
      start_piece(pipe, input, p);
    }
  }
  torch::Tensor average = torch::empty({pipe.dim}, input.options());
  torch::Tensor per_rank;
  std::vector<torch::Tensor> rows = rank_rows(keep_ranks_, ranks, pipe.dim, input, per_rank);
  double communicate = 0.0, wait = 0.0, decode = 0.0;
  int64_t everyone = 0;
  int non_finite = -1;  // the lowest rank that sent the marker in any piece
  for (const int p : pipe.order) {
    auto t0 = Clock::now();
    std::vector<torch::Tensor> messages = communicator_.finish_allgather();
    const double moved = seconds_between(t0, Clock::now());
    const double waited = std::min(moved, communicator_.last_wait_seconds());
    wait += waited;
    communicate += moved - waited;
    SADDLE_CHECK(static_cast<int>(messages.size()) == ranks, "finish_allgather returned ",
                 messages.size(), " messages for ", ranks, " ranks");
    everyone += total_bytes(messages);
    for (int r = 0; r < ranks; ++r) {
      if (is_non_finite_marker(messages[r]) && (non_finite < 0 || r < non_finite)) non_finite = r;
    }
    if (non_finite >= 0) continue;  // every rank throws once every piece has arrived
    auto t1 = Clock::now();
    if (!device.is_cpu()) messages = to_device(messages, device);
    const int64_t length = pipe.bounds[p + 1] - pipe.bounds[p];
    torch::Tensor out = average.narrow(0, pipe.bounds[p], length);
    std::vector<torch::Tensor> piece_rows;
    for (const auto& row : rows) piece_rows.push_back(row.narrow(0, pipe.bounds[p], length));
    decode_from_ranks(codec_, messages, out, 1.0f / static_cast<float>(ranks), 0,
                      keep_ranks_ ? &piece_rows : nullptr);
    communicator_.progress();
    decode += seconds_between(t1, Clock::now());
  }
  auto t0 = Clock::now();
  synchronize(device);  // the decode's time belongs to the decode
  decode += seconds_between(t0, Clock::now());
  if (non_finite >= 0) throw NonFiniteOperator(non_finite);
  if (keep_ranks_) keep_rank_rows(per_rank);

  ledger_.seconds_communicate += communicate;
  ledger_.seconds_wait += wait;
  ledger_.seconds_decode += decode;
  ledger_.bytes_sent += pipe.sent;
  ledger_.bytes_received += everyone - pipe.sent;
  ledger_.bytes_all_ranks += everyone;
  return average;
}

torch::Tensor Exchange::average_two_phase(const torch::Tensor& input, bool local_finite) {
  const torch::Device device = input.device();
  const int ranks = communicator_.size();
  const int me = communicator_.rank();
  const int64_t dim = input.numel();
  // Chunks of whole buckets, as even as the buckets allow (an owner may get none).
  const int64_t bucket = codec_.options().bucket_size();
  const int64_t buckets = (dim + bucket - 1) / bucket;
  std::vector<int64_t> bounds(ranks + 1);
  for (int r = 0; r <= ranks; ++r) bounds[r] = std::min(dim, buckets * r / ranks * bucket);
  const auto chunk_of = [&](const torch::Tensor& v, int r) {
    return v.narrow(0, bounds[r], bounds[r + 1] - bounds[r]);
  };

  // Phase 1: each chunk, quantized, to its owner (through host memory).
  auto start = Clock::now();
  // An empty chunk travels as an empty message: both ends know its length.
  std::vector<torch::Tensor> pieces;
  for (int r = 0; r < ranks; ++r) {
    const torch::Tensor part = chunk_of(input, r);
    if (!local_finite) {
      pieces.push_back(non_finite_marker(torch::kCPU));
    } else if (part.numel() == 0) {
      pieces.push_back(torch::empty({0}, torch::kUInt8));
    } else {
      const uint64_t stream = two_phase_stream(calls_, ranks, me, r, false);
      pieces.push_back(codec_.encode(part, options_.seed(), stream).cpu());
    }
  }
  auto encoded = Clock::now();
  std::vector<torch::Tensor> received = communicator_.alltoall_bytes(pieces);
  auto exchanged = Clock::now();
  book_communication(seconds_between(encoded, exchanged));
  SADDLE_CHECK(static_cast<int>(received.size()) == ranks, "alltoall_bytes returned ",
               received.size(), " messages for ", ranks, " ranks");
  // A non-finite rank sent its marker to every owner: every rank throws here, together.
  throw_if_non_finite(received);

  // The owner's average of its chunk, in rank order.
  const int64_t mine = bounds[me + 1] - bounds[me];
  torch::Tensor chunk = torch::empty({mine}, input.options());
  std::vector<torch::Tensor> on_device;
  for (const auto& m : received) on_device.push_back(m.to(device));
  torch::Tensor per_rank;
  std::vector<torch::Tensor> rows = rank_rows(keep_ranks_, ranks, mine, input, per_rank);
  if (mine > 0) {
    decode_from_ranks(codec_, on_device, chunk, 1.0f / static_cast<float>(ranks), 0,
                      keep_ranks_ ? &rows : nullptr);
  } else {
    for (int r = 0; r < ranks; ++r) {
      SADDLE_CHECK(received[r].numel() == 0, "malformed message from rank ", r, ": ",
                   received[r].numel(), " bytes for an empty chunk");
    }
  }
  OwnerHeader header;
  header.first_phase_bytes = total_bytes(received);
  if (keep_ranks_) {
    keep_rank_rows(per_rank);
    header.sq_difference = sum_rank_squares(rank_last_, rank_previous_, true);
    header.sq_norm = sum_rank_squares(rank_last_, rank_previous_, false);
  }
  synchronize(device);
  auto reduced = Clock::now();

  // Phase 2: the owner's chunk, quantized again, to every rank.
  const torch::Tensor body =
      mine > 0 ? second_codec_.encode(chunk, options_.seed(),
                                      two_phase_stream(calls_, ranks, me, me, true))
               : torch::empty({0}, torch::TensorOptions().dtype(torch::kUInt8).device(device));
  torch::Tensor message = torch::empty({kOwnerHeaderBytes + body.numel()},
                                       torch::TensorOptions().dtype(torch::kUInt8).device(device));
  torch::Tensor header_bytes = torch::empty({kOwnerHeaderBytes}, torch::kUInt8);
  std::memcpy(header_bytes.data_ptr(), &header, kOwnerHeaderBytes);
  message.narrow(0, 0, kOwnerHeaderBytes).copy_(header_bytes);
  message.narrow(0, kOwnerHeaderBytes, body.numel()).copy_(body);
  auto reencoded = Clock::now();
  std::vector<torch::Tensor> owners = allgather_messages(message);
  auto gathered = Clock::now();

  torch::Tensor average = torch::empty({dim}, input.options());
  std::vector<torch::Tensor> header_views;
  for (int r = 0; r < ranks; ++r) {
    SADDLE_CHECK(owners[r].numel() >= kOwnerHeaderBytes, "malformed message from rank ", r, ": ",
                 owners[r].numel(), " bytes, shorter than the two-phase header (",
                 kOwnerHeaderBytes, ")");
    header_views.push_back(owners[r].narrow(0, 0, kOwnerHeaderBytes));
  }
  const torch::Tensor headers = torch::stack(header_views).cpu().contiguous();  // one copy
  int64_t first_phase_all = 0;
  double sq_difference = 0.0, sq_norm = 0.0;
  for (int r = 0; r < ranks; ++r) {
    OwnerHeader theirs;
    std::memcpy(&theirs, headers[r].data_ptr(), kOwnerHeaderBytes);
    SADDLE_CHECK(theirs.first_phase_bytes >= 0 && std::isfinite(theirs.sq_difference) &&
                     std::isfinite(theirs.sq_norm),
                 "malformed message from rank ", r, ": invalid two-phase header");
    first_phase_all += theirs.first_phase_bytes;
    sq_difference += theirs.sq_difference;
    sq_norm += theirs.sq_norm;
    torch::Tensor out = chunk_of(average, r);
    const torch::Tensor payload =
        owners[r].narrow(0, kOwnerHeaderBytes, owners[r].numel() - kOwnerHeaderBytes);
    if (out.numel() == 0) {
      SADDLE_CHECK(payload.numel() == 0, "malformed message from rank ", r, ": ", payload.numel(),
                   " bytes for an empty chunk");
      continue;
    }
    decode_from_ranks(second_codec_, {payload}, out, 1.0f, r);
  }
  chunk_sq_difference_ = sq_difference;
  chunk_sq_norm_ = sq_norm;
  synchronize(device);
  auto decoded = Clock::now();

  ledger_.seconds_encode += seconds_between(start, encoded) + seconds_between(reduced, reencoded);
  book_communication(seconds_between(reencoded, gathered));
  ledger_.seconds_decode +=
      seconds_between(exchanged, reduced) + seconds_between(gathered, decoded);
  ledger_.bytes_sent += total_bytes(pieces) + message.numel();
  ledger_.bytes_received +=
      total_bytes(received) - received[me].numel() + total_bytes(owners) - message.numel();
  ledger_.bytes_all_ranks += first_phase_all + total_bytes(owners);
  return average;
}

}  // namespace saddle
