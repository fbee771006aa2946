// Exchange: encode -> allgather -> decode every rank's message in rank order -> average.
#include "saddle/comm/exchange.h"

#include <cstring>

#include <algorithm>
#include <chrono>
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

Exchange::Exchange(Communicator& communicator, const ExchangeOptions& options, const Logger& logger)
    : communicator_(communicator), options_(options), logger_(logger), codec_(options.codec()) {
  SADDLE_CHECK(options.level_every() >= 0, "level_every must be >= 0 (0: no periodic refit), got ",
               options.level_every());
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
  const std::vector<float>& levels = codec_.levels();
  torch::Tensor level_tensor = torch::empty({static_cast<int64_t>(levels.size())}, torch::kFloat32);
  if (!levels.empty())
    std::memcpy(level_tensor.data_ptr<float>(), levels.data(), levels.size() * sizeof(float));
  torch::Tensor counters =
      torch::tensor({calls_, ledger_.bytes_sent, ledger_.bytes_received, ledger_.coordinates_sent,
                     ledger_.exchanges, ledger_.level_updates},
                    torch::kInt64);
  torch::Tensor seconds =
      torch::tensor({ledger_.seconds_encode, ledger_.seconds_communicate, ledger_.seconds_decode,
                     ledger_.seconds_compute, predicted_variance_},
                    torch::kFloat64);
  std::vector<std::pair<std::string, torch::Tensor>> out = {{"exchange_levels", level_tensor},
                                                            {"exchange_counters", counters},
                                                            {"exchange_seconds", seconds}};
  // The qgenx step rule compares the next operators with these.
  if (keep_ranks_ && rank_last_.defined()) out.emplace_back("exchange_rank_operators", rank_last_);
  return out;
}

void Exchange::load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state) {
  for (const auto& [name, tensor] : state) {
    if (name == "exchange_levels" && tensor.numel() > 0 && codec_.adaptive()) {
      torch::Tensor t = tensor.to(torch::kFloat32).contiguous();
      codec_.set_levels(std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel()));
      adapt_pending_ = false;
    } else if (name == "exchange_counters") {
      SADDLE_CHECK(tensor.numel() == 6, "checkpoint: exchange counters have ", tensor.numel(),
                   " entries, expected 6");
      torch::Tensor t = tensor.to(torch::kInt64).contiguous();
      const int64_t* c = t.data_ptr<int64_t>();
      set_calls(c[0]);
      ledger_.bytes_sent = c[1];
      ledger_.bytes_received = c[2];
      ledger_.coordinates_sent = c[3];
      ledger_.exchanges = c[4];
      ledger_.level_updates = c[5];
      if (!codec_.adaptive()) adapt_pending_ = false;
    } else if (name == "exchange_rank_operators" && keep_ranks_) {
      rank_last_ = tensor.clone();
    } else if (name == "exchange_seconds" && tensor.numel() == 5) {
      torch::Tensor t = tensor.to(torch::kFloat64).contiguous();
      const double* c = t.data_ptr<double>();
      ledger_.seconds_encode = c[0];
      ledger_.seconds_communicate = c[1];
      ledger_.seconds_decode = c[2];
      ledger_.seconds_compute = c[3];
      predicted_variance_ = c[4];
    }
  }
}

namespace {
constexpr char kNonFinite[] = "saddle:non-finite";  // not a codec message: no magic, too short

torch::Tensor non_finite_marker() {
  torch::Tensor m = torch::empty({static_cast<int64_t>(sizeof kNonFinite - 1)}, torch::kUInt8);
  std::memcpy(m.data_ptr(), kNonFinite, sizeof kNonFinite - 1);
  return m;
}

bool is_non_finite_marker(const torch::Tensor& message) {
  if (message.numel() != static_cast<int64_t>(sizeof kNonFinite - 1)) return false;
  const torch::Tensor host = message.cpu().contiguous();
  return std::memcmp(host.data_ptr(), kNonFinite, sizeof kNonFinite - 1) == 0;
}
}  // namespace

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
  std::vector<torch::Tensor> gathered = communicator_.allgather_bytes(host);
  std::vector<int64_t> sizes;
  for (const auto& m : gathered) sizes.push_back(m.numel());
  torch::Tensor all = torch::cat(gathered).to(device);
  std::vector<torch::Tensor> out;
  int64_t offset = 0;
  for (int64_t s : sizes) {
    out.push_back(all.narrow(0, offset, s));
    offset += s;
  }
  return out;
}

void Exchange::keep_rank_operators(bool keep) {
  keep_ranks_ = keep;
  if (!keep) rank_last_ = rank_previous_ = torch::Tensor();
}

double Exchange::rank_sq_difference(bool against_previous) const {
  SADDLE_CHECK(keep_ranks_ && rank_last_.defined(),
               "Exchange::rank_sq_difference: the ranks' operators are not kept");
  double total = 0.0;
  for (int64_t r = 0; r < rank_last_.size(0); ++r) {
    const bool paired = against_previous && rank_previous_.defined();
    total += detail::fixed_order_sum_squares(rank_last_[r],
                                             paired ? rank_previous_[r] : torch::Tensor());
  }
  return total;
}

torch::Tensor Exchange::average(const torch::Tensor& local, bool local_finite) {
  SADDLE_CHECK(local.defined(), "Exchange::average: undefined tensor");
  SADDLE_CHECK(local.dim() == 1, "Exchange::average: expected a 1-D tensor, got shape ",
               local.sizes());
  SADDLE_CHECK(local.scalar_type() == torch::kFloat32, "Exchange::average: dtype ",
               local.scalar_type(), " (expected kFloat32)");
  SADDLE_CHECK(local.device().is_cpu() || local.device().is_cuda(), "Exchange::average: tensor on ",
               local.device(), " (expected a CPU or CUDA tensor)");
  const torch::Tensor input = local.contiguous();
  const torch::Device device = input.device();
  const int ranks = communicator_.size();
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
    if (statistics[0].sum().item<double>() > 0) predicted_variance_ = codec_.adapt(statistics);
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

  // Distinct streams for every (rank, call): ranks' quantization noise is independent.
  const uint64_t stream =
      static_cast<uint64_t>(calls_) * static_cast<uint64_t>(ranks) + static_cast<uint64_t>(me);
  auto start = Clock::now();
  // A rank whose operator is not finite sends a marker no codec message can be (those begin with
  // the codec's magic and are at least a header long) instead of a message.
  torch::Tensor message = local_finite ? codec_.encode(input, options_.seed(), stream)
                                       : non_finite_marker().to(device);
  auto encoded = Clock::now();
  std::vector<torch::Tensor> messages = communicator_.device_collectives(device)
                                            ? communicator_.allgather_bytes(message)
                                            : allgather_staged(message);
  auto gathered = Clock::now();
  SADDLE_CHECK(static_cast<int>(messages.size()) == ranks, "allgather_bytes returned ",
               messages.size(), " messages for ", ranks, " ranks");
  for (int r = 0; r < ranks; ++r) {
    if (is_non_finite_marker(messages[r])) throw NonFiniteOperator(r);
  }

  torch::Tensor average = torch::empty({input.numel()}, input.options());
  const float weight = 1.0f / static_cast<float>(ranks);
  try {
    codec_.decode_average(messages, average, weight);
  } catch (const MalformedMessage& e) {
    if (e.index() == me) {
      throw Error(detail::concat("cannot decode this rank's own message: ", e.what()));
    }
    throw Error(detail::concat("malformed message from rank ", e.index(), ": ", e.what()));
  }
  if (keep_ranks_) {
    // Each rank's own decoded operator (weight 1), for the qgenx step rule.
    rank_previous_ = rank_last_.defined() ? rank_last_.to(device) : rank_last_;
    rank_last_ = torch::empty({ranks, input.numel()}, input.options());
    for (int r = 0; r < ranks; ++r) {
      torch::Tensor row = rank_last_[r];
      codec_.decode_average({messages[r]}, row, 1.0f);
    }
  }
  synchronize(device);  // the decode's time belongs to the decode
  auto decoded = Clock::now();

  ledger_.seconds_encode += seconds_between(start, encoded);
  ledger_.seconds_communicate += seconds_between(encoded, gathered);
  ledger_.seconds_decode += seconds_between(gathered, decoded);
  ledger_.bytes_sent += message.numel();
  for (int r = 0; r < ranks; ++r) {
    if (r != me) ledger_.bytes_received += messages[r].numel();
  }
  ledger_.coordinates_sent += input.numel();
  ++ledger_.exchanges;
  ++calls_;
  return average;
}

}  // namespace saddle
