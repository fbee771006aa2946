// Exchange over an in-process group: identical averages on every rank, unbiased quantized
// averages, a consistent ledger, the adaptive-level schedule, and clear errors for bad messages.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "saddle/comm/exchange.h"
#include "saddle/comm/in_process.h"
#include "saddle/error.h"

namespace saddle {
namespace {

torch::Tensor local_operator(int rank, int64_t dim) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + rank);
  return torch::randn({dim}, gen, torch::kFloat32);
}

torch::Tensor true_mean(int ranks, int64_t dim) {
  torch::Tensor sum = torch::zeros({dim}, torch::kFloat64);
  for (int r = 0; r < ranks; ++r) sum += local_operator(r, dim).to(torch::kFloat64);
  return sum / ranks;
}

std::vector<double> as_doubles(const torch::Tensor& levels) {
  torch::Tensor values = levels.to(torch::kFloat64).contiguous().view(-1);
  return std::vector<double>(values.data_ptr<double>(), values.data_ptr<double>() + values.numel());
}
template <typename Container>
std::vector<double> as_doubles(const Container& levels) {
  return std::vector<double>(levels.begin(), levels.end());
}

CodecOptions codec(const std::string& quantizer, int bits = 4) {
  return CodecOptions().quantizer(quantizer).bits(bits);
}

// Every rank's outputs of `calls` averages, indexed [rank][call].
std::vector<std::vector<torch::Tensor>> run_averages(int ranks, const ExchangeOptions& options,
                                                     int64_t dim, int calls,
                                                     std::vector<Ledger>* ledgers = nullptr) {
  std::vector<std::vector<torch::Tensor>> out(ranks);
  if (ledgers) ledgers->assign(ranks, Ledger());
  InProcessGroup group(ranks);
  Logger quiet(LogLevel::kError);
  group.run([&](Communicator& comm) {
    Exchange exchange(comm, options, quiet);
    torch::Tensor local = local_operator(comm.rank(), dim);
    for (int c = 0; c < calls; ++c) {
      exchange.begin_iteration(c);
      out[comm.rank()].push_back(exchange.average(local));
    }
    if (ledgers) (*ledgers)[comm.rank()] = exchange.ledger();
  });
  return out;
}

TEST(Exchange, UnquantizedAverageIsTheExactMeanOnEveryRank) {
  for (int ranks : {1, 2, 3}) {
    std::vector<Ledger> ledgers;
    auto out = run_averages(ranks, ExchangeOptions().codec(codec("none")), 100, 2, &ledgers);
    for (int r = 0; r < ranks; ++r) {
      EXPECT_TRUE(torch::equal(out[r][0], out[0][0]))
          << ranks << " ranks: rank " << r << " differs";
      EXPECT_TRUE(torch::equal(out[r][1], out[0][0])) << "no quantization: calls agree";
    }
    EXPECT_TRUE(torch::allclose(out[0][0].to(torch::kFloat64), true_mean(ranks, 100), 1e-6, 1e-6));
    // The message of "none" carries the 32-bit floats plus a small header.
    const Ledger& ledger = ledgers[0];
    EXPECT_EQ(ledger.exchanges, 2);
    EXPECT_EQ(ledger.coordinates_sent, 200);
    EXPECT_GE(ledger.bits_per_coordinate(), 32.0);
    EXPECT_LT(ledger.bits_per_coordinate(), 40.0);
    EXPECT_EQ(ledger.bytes_received, (ranks - 1) * ledger.bytes_sent);
  }
}

TEST(Exchange, SingleProcessReturnsTheLocalOperator) {
  auto comm = make_single_process_communicator();
  Logger quiet(LogLevel::kError);
  Exchange exchange(*comm, ExchangeOptions().codec(codec("none")), quiet);
  torch::Tensor local = local_operator(0, 33);
  EXPECT_TRUE(torch::equal(exchange.average(local), local));
  EXPECT_GT(exchange.ledger().bytes_sent, 0);  // counted as what would be sent
  EXPECT_EQ(exchange.ledger().bytes_received, 0);
  EXPECT_THROW(exchange.average(local.to(torch::kFloat64)), Error);
  EXPECT_THROW(exchange.average(local.view({3, 11})), Error);
}

class QuantizedExchange : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantizedExchange, RanksAgreeAverageIsUnbiasedLedgerIsConsistent) {
  const int ranks = 3, calls = 400;
  const int64_t dim = 256;
  std::vector<Ledger> ledgers;
  auto options = ExchangeOptions().codec(codec(GetParam(), 4)).seed(7);
  auto out = run_averages(ranks, options, dim, calls, &ledgers);

  torch::Tensor samples = torch::stack(out[0]).to(torch::kFloat64);  // [calls, dim]
  for (int r = 1; r < ranks; ++r) {
    for (int c = 0; c < calls; ++c) {
      ASSERT_TRUE(torch::equal(out[r][c], out[0][c])) << "rank " << r << " call " << c;
    }
  }
  // Quantized (not the exact mean) and random across calls.
  torch::Tensor exact = true_mean(ranks, dim);
  EXPECT_FALSE(torch::allclose(samples[0], exact, 1e-4, 1e-4));
  EXPECT_FALSE(torch::equal(out[0][0], out[0][1]));
  // Unbiased: E||mean - exact||^2 = sum_i Var_i / calls; a biased codec overshoots 4x easily.
  torch::Tensor mean = samples.mean(0);
  const double error_sq = (mean - exact).square().sum().item<double>();
  const double expected_sq = samples.var(0).sum().item<double>() / calls;
  EXPECT_LT(error_sq, 4.0 * expected_sq + 1e-12)
      << GetParam() << ": |mean - exact|^2 = " << error_sq << ", expected about " << expected_sq;

  int64_t sent = 0, received = 0;
  for (const Ledger& ledger : ledgers) {
    EXPECT_EQ(ledger.exchanges, calls);
    EXPECT_EQ(ledger.coordinates_sent, calls * dim);
    EXPECT_GT(ledger.bytes_sent, 0);
    EXPECT_LT(ledger.bits_per_coordinate(), 8.0) << GetParam() << " at 4 bits";
    sent += ledger.bytes_sent;
    received += ledger.bytes_received;
  }
  // Every byte a rank sends is received by the K - 1 others.
  EXPECT_EQ(received, (ranks - 1) * sent);
}

INSTANTIATE_TEST_SUITE_P(Codecs, QuantizedExchange, ::testing::Values("qsgd", "alq"));

TEST(Exchange, RanksUseDistinctRandomStreams) {
  // Identical inputs on both ranks: with a shared stream the average would equal one rank's
  // quantization, a point of the coarse grid {norm * k / s}; independent streams average two.
  const int64_t dim = 512;
  InProcessGroup group(2);
  Logger quiet(LogLevel::kError);
  std::vector<torch::Tensor> out(2);
  group.run([&](Communicator& comm) {
    Exchange exchange(comm, ExchangeOptions().codec(codec("qsgd", 4)), quiet);
    out[comm.rank()] = exchange.average(local_operator(0, dim));
  });
  Codec reference(codec("qsgd", 4));
  torch::Tensor message = reference.encode(local_operator(0, dim), 0, 0);
  torch::Tensor single = torch::zeros({dim}, torch::kFloat32);
  reference.decode_accumulate(message, single, 1.0);
  EXPECT_FALSE(torch::allclose(out[0], single));
}

// A rank whose operator is not finite takes part with an empty message, and every rank then
// throws NonFiniteOperator naming it, at the same call: an agreed divergence, with adaptive levels
// due (the statistics reduction) and without.
TEST(Exchange, ANonFiniteOperatorOnOneRankIsSeenByEveryRank) {
  for (const char* q : {"alq", "qsgd", "none"}) {
    InProcessGroup group(3);
    Logger quiet(LogLevel::kError);
    std::vector<int> seen(3, -1);
    group.run([&](Communicator& comm) {
      Exchange exchange(comm, ExchangeOptions().codec(codec(q, 4)), quiet);
      exchange.average(local_operator(comm.rank(), 64));  // a finite call first
      exchange.begin_iteration(0);  // levels due again for alq: the statistics are reduced too
      try {
        exchange.average(local_operator(comm.rank(), 64), /*local_finite=*/comm.rank() != 1);
      } catch (const NonFiniteOperator& e) {
        seen[comm.rank()] = e.rank();
      }
    });
    EXPECT_EQ(seen, std::vector<int>({1, 1, 1})) << q;
  }
}

TEST(Exchange, LevelScheduleDefaults) {
  auto comm = make_single_process_communicator();
  Logger quiet(LogLevel::kError);
  Exchange exchange(*comm, ExchangeOptions().codec(codec("alq")), quiet);
  for (int64_t t : {0, 100, 2000, 10000, 20000, 1000000}) {
    EXPECT_TRUE(exchange.level_update_due(t)) << t;
  }
  for (int64_t t : {1, 99, 101, 1999, 2001, 5000, 12000, 19999}) {
    EXPECT_FALSE(exchange.level_update_due(t)) << t;
  }
  Exchange never_again(
      *comm, ExchangeOptions().codec(codec("alq")).level_schedule({0, 50}).level_every(0), quiet);
  EXPECT_TRUE(never_again.level_update_due(50));
  EXPECT_FALSE(never_again.level_update_due(100));
  EXPECT_THROW(Exchange(*comm, ExchangeOptions().level_every(-1), quiet), Error);
}

TEST(Exchange, AdaptiveLevelsRefitOnScheduleAndAgreeAcrossRanks) {
  const int ranks = 3;
  auto options = ExchangeOptions().codec(codec("alq", 3)).level_schedule({0, 3, 7}).level_every(10);
  std::FILE* log = std::tmpfile();
  ASSERT_NE(log, nullptr);
  std::vector<std::vector<double>> levels(ranks);
  std::vector<int64_t> updates(ranks);
  InProcessGroup group(ranks);
  group.run([&](Communicator& comm) {
    Logger logger(LogLevel::kInfo, comm.rank(), ranks, log);
    Exchange exchange(comm, options, logger);
    // Different scales per rank, so the summed statistics differ from every local one.
    torch::Tensor local = local_operator(comm.rank(), 200) * (1.0 + comm.rank());
    for (int64_t t = 0; t < 25; ++t) {
      exchange.begin_iteration(t);
      exchange.average(local);
      exchange.average(local);  // extra-gradient: the second call of an iteration never refits
    }
    levels[comm.rank()] = as_doubles(exchange.codec().levels());
    updates[comm.rank()] = exchange.ledger().level_updates;
    EXPECT_TRUE(std::isfinite(exchange.predicted_variance()));
  });
  EXPECT_NE(levels[0], as_doubles(Codec(options.codec()).levels())) << "alq refit nothing";
  for (int r = 0; r < ranks; ++r) {
    EXPECT_EQ(updates[r], 5) << "refits at 0, 3, 7, 10, 20";
    EXPECT_EQ(levels[r], levels[0]) << "rank " << r << " holds other levels";
  }
  std::rewind(log);
  std::string text;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, log)) > 0;) text.append(buffer, n);
  std::fclose(log);
  for (int t : {0, 3, 7, 10, 20}) {
    EXPECT_NE(text.find("[rank 0/3] info: levels refit at iteration " + std::to_string(t) + ":"),
              std::string::npos)
        << text;
  }
  EXPECT_NE(text.find("predicted variance"), std::string::npos);
  EXPECT_EQ(text.find("iteration 5:"), std::string::npos);
}

// Delivers rank `victim`'s message damaged by `damage` to the wrapped rank.
class CorruptingCommunicator final : public Communicator {
 public:
  CorruptingCommunicator(Communicator& inner, int victim,
                         std::function<torch::Tensor(torch::Tensor)> damage)
      : inner_(inner), victim_(victim), damage_(std::move(damage)) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  std::string backend() const override { return "corrupting"; }
  std::vector<torch::Tensor> allgather_bytes(const torch::Tensor& message) override {
    auto messages = inner_.allgather_bytes(message);
    messages[victim_] = damage_(messages[victim_]);
    return messages;
  }
  std::vector<torch::Tensor> alltoall_bytes(const std::vector<torch::Tensor>& messages) override {
    auto received = inner_.alltoall_bytes(messages);
    received[victim_] = damage_(received[victim_]);
    return received;
  }
  void allreduce_sum(torch::Tensor& tensor) override { inner_.allreduce_sum(tensor); }
  void broadcast_bytes(torch::Tensor& bytes, int root) override {
    inner_.broadcast_bytes(bytes, root);
  }
  void barrier() override { inner_.barrier(); }
  [[noreturn]] void abort(int code) override {
    inner_.abort(code);
    std::terminate();  // not reached: a virtual call does not carry [[noreturn]]
  }

 private:
  Communicator& inner_;
  int victim_;
  std::function<torch::Tensor(torch::Tensor)> damage_;
};

TEST(Exchange, MalformedMessageNamesTheSendingRank) {
  const std::vector<std::function<torch::Tensor(torch::Tensor)>> damages = {
      [](torch::Tensor m) { return m.narrow(0, 0, m.numel() / 2).clone(); },
      [](torch::Tensor) { return torch::empty({0}, torch::kUInt8); },
      [](torch::Tensor m) { return torch::full_like(m, 0xFF); },
  };
  for (const std::string quantizer : {"none", "qsgd"}) {
    for (size_t d = 0; d < damages.size(); ++d) {
      if (quantizer == "none" && d == 2) continue;  // raw floats: any bit pattern is a float
      InProcessGroup group(3);
      Logger quiet(LogLevel::kError);
      std::mutex mutex;
      std::vector<std::string> errors;
      group.run([&](Communicator& comm) {
        CorruptingCommunicator corrupting(comm, 1, damages[d]);
        // Ranks 0 and 2 receive a damaged copy of rank 1's message; rank 1 sees the real one.
        Communicator& used = comm.rank() == 1 ? comm : static_cast<Communicator&>(corrupting);
        Exchange exchange(used, ExchangeOptions().codec(codec(quantizer)), quiet);
        try {
          exchange.average(local_operator(comm.rank(), 64));
        } catch (const Error& e) {
          std::lock_guard<std::mutex> lock(mutex);
          errors.push_back(e.what());
        }
      });
      ASSERT_EQ(errors.size(), 2u) << quantizer << " damage " << d;
      for (const auto& error : errors) {
        EXPECT_EQ(error.rfind("malformed message from rank 1: ", 0), 0u) << error;
      }
    }
  }
}

TEST(Exchange, MismatchedLengthsAreReportedAsMalformed) {
  InProcessGroup group(2);
  Logger quiet(LogLevel::kError);
  std::mutex mutex;
  std::vector<std::string> errors;
  group.run([&](Communicator& comm) {
    Exchange exchange(comm, ExchangeOptions().codec(codec("qsgd")), quiet);
    try {
      exchange.average(local_operator(comm.rank(), comm.rank() == 0 ? 40 : 41));
    } catch (const Error& e) {
      std::lock_guard<std::mutex> lock(mutex);
      errors.push_back(e.what());
    }
  });
  ASSERT_EQ(errors.size(), 2u);
  for (const auto& error : errors)
    EXPECT_NE(error.find("malformed message from rank"), std::string::npos);
}

// ---- The two-phase collective -------------------------------------------------------------

ExchangeOptions two_phase(const CodecOptions& codec_options, int64_t bucket = 256) {
  CodecOptions c = codec_options;
  c.bucket_size(bucket);
  return ExchangeOptions().codec(c).collective("two-phase");
}

TEST(OverlappedExchange, PieceCountsAndBadSpecs) {
  EXPECT_EQ(resolve_overlap("off", 1 << 20, 1024, 4), 1);
  EXPECT_EQ(resolve_overlap("auto", 1 << 20, 1024, 1), 1);  // one rank: nothing travels
  EXPECT_EQ(resolve_overlap("auto", 1 << 20, 1024, 4), kOverlapMaxPieces);
  EXPECT_EQ(resolve_overlap("auto", 3 * kOverlapPieceCoordinates, 1024, 2), 3);
  EXPECT_EQ(resolve_overlap("auto", 1000, 1024, 2), 1);
  EXPECT_EQ(resolve_overlap("16", 5000, 1024, 2), 5);  // at most one piece per bucket
  EXPECT_EQ(resolve_overlap("3", 5000, 1024, 1), 3);
  for (const char* bad : {"0", "65", "x", "", "4x", "-2"}) {
    try {
      resolve_overlap(bad, 5000, 1024, 2);
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), std::string("invalid --overlap '") + bad +
                                           "' (expected off, auto or a piece count 1..64)");
    }
  }
  auto single = make_single_process_communicator();
  Logger quiet(LogLevel::kError);
  EXPECT_THROW(Exchange(*single, ExchangeOptions().overlap("many"), quiet), Error);
}

// The overlapped all-gather cuts the vector into pieces of whole buckets, each quantized at its
// place in the random stream: the averages, and each rank's decoded operator for the qgenx step
// rule, are the unsplit exchange's bits; the pieces' headers are the only extra bytes.
TEST(OverlappedExchange, PiecesGiveTheUnsplitAveragesBitForBit) {
  const int ranks = 3, calls = 3, pieces = 5;
  const int64_t dim = 1000;
  for (const char* q : {"none", "qsgd", "alq"}) {
    for (auto coder : {CoderKind::kFixed, CoderKind::kEntropy}) {
      if (std::string(q) == "none" && coder == CoderKind::kEntropy) continue;
      const ExchangeOptions base =
          ExchangeOptions().codec(codec(q).bucket_size(64).coder(coder)).seed(5);
      std::vector<Ledger> off_ledgers, on_ledgers;
      const auto off =
          run_averages(ranks, ExchangeOptions(base).overlap("off"), dim, calls, &off_ledgers);
      const auto on = run_averages(ranks, ExchangeOptions(base).overlap(std::to_string(pieces)),
                                   dim, calls, &on_ledgers);
      for (int r = 0; r < ranks; ++r) {
        for (int c = 0; c < calls; ++c) {
          EXPECT_TRUE(torch::equal(on[r][c], off[r][c]))
              << q << "/" << coder_name(coder) << ": rank " << r << ", call " << c;
        }
        if (coder == CoderKind::kEntropy) continue;  // each piece has its own rANS table too
        EXPECT_EQ(on_ledgers[r].bytes_sent,
                  off_ledgers[r].bytes_sent + calls * (pieces - 1) * Codec::kHeaderBytes)
            << q;
        EXPECT_EQ(on_ledgers[r].bytes_all_ranks, ranks * on_ledgers[r].bytes_sent) << q;
      }
    }
  }
  // The ranks' own decoded operators, which the qgenx step rule sums.
  std::vector<std::vector<double>> sums(2, std::vector<double>(ranks));
  for (int mode = 0; mode < 2; ++mode) {
    InProcessGroup group(ranks);
    Logger quiet(LogLevel::kError);
    group.run([&](Communicator& comm) {
      Exchange exchange(comm, ExchangeOptions().codec(codec("alq")).overlap(mode ? "4" : "off"),
                        quiet);
      exchange.keep_rank_operators(true);
      exchange.average(local_operator(comm.rank(), 5000));
      const double norm = exchange.rank_sq_difference(false);
      exchange.average(local_operator(comm.rank() + 10, 5000));
      EXPECT_EQ(exchange.overlap_pieces(), mode ? 4 : 1);
      sums[mode][comm.rank()] = exchange.rank_sq_difference(true) + 1e3 * norm;
    });
  }
  EXPECT_EQ(sums[0], sums[1]);
}

// A non-finite operator: the marker goes in every piece, every rank throws once all pieces have
// arrived, and the next average works (no all-gather was left behind).
TEST(OverlappedExchange, ANonFiniteOperatorOnOneRankIsSeenByEveryRank) {
  InProcessGroup group(3);
  Logger quiet(LogLevel::kError);
  std::vector<int> seen(3, -1);
  std::vector<bool> went_on(3, false);
  group.run([&](Communicator& comm) {
    Exchange exchange(comm, ExchangeOptions().codec(codec("alq").bucket_size(16)).overlap("4"),
                      quiet);
    try {
      exchange.average(local_operator(comm.rank(), 640), /*local_finite=*/comm.rank() != 1);
    } catch (const NonFiniteOperator& e) {
      seen[comm.rank()] = e.rank();
    }
    went_on[comm.rank()] = exchange.average(local_operator(comm.rank(), 640)).numel() == 640;
  });
  EXPECT_EQ(seen, std::vector<int>({1, 1, 1}));
  EXPECT_EQ(went_on, std::vector<bool>({true, true, true}));
}

// Fed slice by slice as a game computes them (the second half first, cut mid-bucket), each piece
// goes once its coordinates are final, and the averages are the unsplit exchange's bits. Levels
// due for a refit need the whole operator first: then nothing goes early.
TEST(OverlappedExchange, SlicesSentAsTheyAreFinalGiveTheUnsplitBits) {
  const int ranks = 3, calls = 3;
  const int64_t dim = 1000,
                cut = 617;  // 16 buckets of 64 in 5 pieces: [768, 1000) is in [cut, dim)
  for (const char* q : {"none", "qsgd", "alq"}) {
    const ExchangeOptions base = ExchangeOptions().codec(codec(q).bucket_size(64)).seed(5);
    const auto off = run_averages(ranks, ExchangeOptions(base).overlap("off"), dim, calls);
    InProcessGroup group(ranks);
    Logger quiet(LogLevel::kError);
    std::vector<std::vector<int>> started(ranks);
    group.run([&](Communicator& comm) {
      Exchange exchange(comm, ExchangeOptions(base).overlap("5"), quiet);
      for (int c = 0; c < calls; ++c) {
        exchange.begin_iteration(c);
        const torch::Tensor local = local_operator(comm.rank(), dim);  // as run_averages has it
        exchange.begin_average(dim, torch::kCPU);
        exchange.offer(local, cut, dim, true);
        started[comm.rank()].push_back(exchange.pieces_started());
        exchange.offer(local, 0, cut, true);
        started[comm.rank()].push_back(exchange.pieces_started());
        const torch::Tensor average = exchange.finish_average(local);
        EXPECT_TRUE(torch::equal(average, off[comm.rank()][c]))
            << q << ": rank " << comm.rank() << ", call " << c;
        EXPECT_EQ(exchange.overlap_pieces(), 5);  // after a refit too, all at once
      }
    });
    const std::vector<int> expected = std::string(q) == "alq" ? std::vector<int>{0, 0, 1, 5, 1, 5}
                                                              : std::vector<int>{1, 5, 1, 5, 1, 5};
    for (int r = 0; r < ranks; ++r) EXPECT_EQ(started[r], expected) << q << ": rank " << r;
  }
}

// A slice that is not finite: the pieces it completes, and every later one, carry the marker, and
// every rank throws naming the lowest such rank once all pieces have arrived (rank 2's first
// slice, rank 1's second), then goes on.
TEST(OverlappedExchange, ANonFiniteSliceIsSeenByEveryRank) {
  InProcessGroup group(3);
  Logger quiet(LogLevel::kError);
  std::vector<int> seen(3, -1);
  std::vector<bool> went_on(3, false);
  group.run([&](Communicator& comm) {
    Exchange exchange(comm, ExchangeOptions().codec(codec("qsgd").bucket_size(16)).overlap("4"),
                      quiet);
    const torch::Tensor local = local_operator(comm.rank(), 640);
    exchange.begin_average(640, torch::kCPU);
    exchange.offer(local, 320, 640, comm.rank() != 2);
    exchange.offer(local, 0, 320, comm.rank() != 1);
    try {
      exchange.finish_average(local, comm.rank() != 1);
    } catch (const NonFiniteOperator& e) {
      seen[comm.rank()] = e.rank();
    }
    went_on[comm.rank()] = exchange.average(local).numel() == 640;
  });
  EXPECT_EQ(seen, std::vector<int>({1, 1, 1}));
  EXPECT_EQ(went_on, std::vector<bool>({true, true, true}));
}

TEST(OverlappedExchange, MisusedSlicesAreRefused) {
  auto single = make_single_process_communicator();
  Logger quiet(LogLevel::kError);
  Exchange exchange(*single, ExchangeOptions().codec(codec("none").bucket_size(16)).overlap("4"),
                    quiet);
  const torch::Tensor local = local_operator(0, 640);
  EXPECT_THROW(exchange.offer(local, 0, 640, true), Error);  // no begin_average
  exchange.begin_average(640, torch::kCPU);
  EXPECT_THROW(exchange.begin_average(640, torch::kCPU), Error);
  EXPECT_THROW(exchange.offer(local, 600, 700, true), Error);
  EXPECT_THROW(exchange.offer(local.narrow(0, 0, 320), 0, 320, true), Error);
  exchange.offer(local, 0, 320, true);
  EXPECT_THROW(exchange.offer(local, 300, 400, true), Error);  // offered before
  EXPECT_THROW(exchange.average(local), Error);                // the begun one is not finished
  exchange.offer(local, 400, 640, true);
  EXPECT_TRUE(torch::equal(exchange.finish_average(local), local));
  EXPECT_TRUE(torch::equal(exchange.average(local), local));
}

TEST(TwoPhaseExchange, AutoPicksItFromEightRanksAndBadNamesAreRefused) {
  EXPECT_EQ(resolve_collective("auto", 1), "allgather");
  EXPECT_EQ(resolve_collective("auto", kTwoPhaseFromRanks - 1), "allgather");
  EXPECT_EQ(resolve_collective("auto", kTwoPhaseFromRanks), "two-phase");
  EXPECT_EQ(resolve_collective("two-phase", 1), "allgather");  // nothing to reduce
  EXPECT_EQ(resolve_collective("two-phase", 2), "two-phase");
  EXPECT_EQ(resolve_collective("allgather", 16), "allgather");
  try {
    resolve_collective("ring", 4);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "invalid --collective 'ring' (expected allgather, two-phase or auto)");
  }
}

// With fp32 both phases are exact, and each owner adds the ranks' chunks in the all-gather's
// order: the same bits as the all-gather, also where some owners get no bucket.
TEST(TwoPhaseExchange, UnquantizedItIsTheAllgathersAverageBitForBit) {
  for (int ranks : {2, 3, 5}) {
    for (int64_t dim : {int64_t{100}, int64_t{1300}, int64_t{5000}}) {
      const auto all = run_averages(ranks, ExchangeOptions().codec(codec("none")), dim, 1);
      const auto two = run_averages(ranks, two_phase(codec("none")), dim, 1);
      for (int r = 0; r < ranks; ++r) {
        EXPECT_TRUE(torch::equal(two[r][0], all[0][0]))
            << ranks << " ranks, dim " << dim << ": rank " << r << " differs";
      }
    }
  }
}

// Quantized: identical on every rank, unbiased, and its variance is the all-gather's plus the
// second quantization's, which the codec predicts from the averaged operator's statistics.
TEST(TwoPhaseExchange, RanksAgreeItIsUnbiasedAndAddsThePredictedVariance) {
  const int ranks = 4, calls = 400;
  const int64_t dim = 4096;
  const CodecOptions c = codec("qsgd", 4).bucket_size(256);
  std::vector<Ledger> ledgers, gather_ledgers;
  // Equal bits in both phases, to see the second quantization's share (the default gives it 8).
  auto out = run_averages(ranks, two_phase(c).seed(3).second_bits(4), dim, calls, &ledgers);
  auto gathered =
      run_averages(ranks, ExchangeOptions().codec(c).seed(3), dim, calls, &gather_ledgers);
  for (int r = 1; r < ranks; ++r) {
    for (int k = 0; k < calls; ++k) {
      ASSERT_TRUE(torch::equal(out[r][k], out[0][k])) << "rank " << r << " call " << k;
    }
  }
  const torch::Tensor exact = true_mean(ranks, dim);
  const auto variance = [&](const std::vector<torch::Tensor>& samples) {
    torch::Tensor s = torch::stack(samples).to(torch::kFloat64);
    return std::make_pair(s.mean(0), s.var(0).sum().item<double>());
  };
  const auto [mean, total_var] = variance(out[0]);
  const auto [gather_mean, gather_var] = variance(gathered[0]);
  (void)gather_mean;
  const double error_sq = (mean - exact).square().sum().item<double>();
  EXPECT_LT(error_sq, 4.0 * total_var / calls) << "biased: |mean - exact|^2 = " << error_sq;

  // The second quantization sees the first phase's average, distributed as the all-gather's
  // output (chunks of whole buckets, the same codec): its variance, averaged over those outputs.
  Codec reference(c);
  double second = 0.0;
  for (int k = 0; k < 100; ++k) {
    second += reference.predicted_variance(reference.statistics(gathered[0][k])) / 100;
  }
  const double added = total_var - gather_var;
  EXPECT_GT(added, 0.8 * second) << "two-phase " << total_var << ", all-gather " << gather_var;
  EXPECT_LT(added, 1.3 * second) << "two-phase " << total_var << ", all-gather " << gather_var;

  // Traffic: about 2 (K-1)/K messages' worth received per rank, against K-1 for the all-gather;
  // every rank counts the same bytes for all ranks, and they are what the ranks sent.
  int64_t sent = 0;
  for (int r = 0; r < ranks; ++r) sent += ledgers[r].bytes_sent;
  for (int r = 0; r < ranks; ++r) {
    EXPECT_EQ(ledgers[r].bytes_all_ranks, sent);
    const double ratio = static_cast<double>(ledgers[r].bytes_received) /
                         static_cast<double>(gather_ledgers[r].bytes_received);
    // 2 (K-1)/K / (K-1) = 2/K, plus the headers of the smaller messages.
    EXPECT_GT(ratio, 2.0 / ranks) << "rank " << r;
    EXPECT_LT(ratio, 2.0 / ranks + 0.06) << "rank " << r;
    EXPECT_EQ(ledgers[r].coordinates_sent, calls * dim);
  }
}

// The default: the second quantization at 8 bits. Its added variance is a small fraction of the
// all-gather's (at equal bits it is about K times it: one unaveraged quantization against K
// averaged ones), for about 1.5 times the 4-bit exchange's two-phase bytes.
TEST(TwoPhaseExchange, EightBitSecondPhaseAddsLittleVariance) {
  const int ranks = 4, calls = 200;
  const int64_t dim = 4096;
  const CodecOptions c = codec("alq", 4).bucket_size(256);
  std::vector<Ledger> eight(ranks), four(ranks);
  // As in training: the ranks' operators share most of their direction (one game, other samples),
  // so their average is about as long as each of them.
  const torch::Tensor shared = local_operator(99, dim);
  const auto variance = [&](const ExchangeOptions& options, std::vector<Ledger>* ledgers) {
    std::vector<torch::Tensor> out;
    InProcessGroup group(ranks);
    Logger quiet(LogLevel::kError);
    group.run([&](Communicator& comm) {
      Exchange exchange(comm, options, quiet);
      const torch::Tensor local = shared + 0.1 * local_operator(comm.rank(), dim);
      for (int k = 0; k < calls; ++k) {
        exchange.begin_iteration(k);
        torch::Tensor average = exchange.average(local);
        if (comm.rank() == 0) out.push_back(average);
      }
      if (ledgers) (*ledgers)[comm.rank()] = exchange.ledger();
    });
    return torch::stack(out).to(torch::kFloat64).var(0).sum().item<double>();
  };
  const double gathered = variance(ExchangeOptions().codec(c).seed(5), nullptr);
  const double with_eight = variance(two_phase(c).seed(5), &eight);
  const double with_four = variance(two_phase(c).seed(5).second_bits(4), &four);
  EXPECT_GT(with_four - gathered, 2.0 * gathered) << "equal bits: about K times the all-gather's";
  EXPECT_LT(with_eight - gathered, 0.25 * gathered)
      << "8 bits: " << with_eight << " against " << gathered;
  const double bytes = static_cast<double>(eight[0].bytes_received) / four[0].bytes_received;
  EXPECT_GT(bytes, 1.3);
  EXPECT_LT(bytes, 1.6);
}

TEST(TwoPhaseExchange, ANonFiniteOperatorOnOneRankIsSeenByEveryRank) {
  for (const char* q : {"alq", "none"}) {
    InProcessGroup group(3);
    Logger quiet(LogLevel::kError);
    std::vector<int> seen(3, -1);
    group.run([&](Communicator& comm) {
      Exchange exchange(comm, two_phase(codec(q, 4), 16), quiet);
      exchange.average(local_operator(comm.rank(), 64));
      try {
        exchange.average(local_operator(comm.rank(), 64), /*local_finite=*/comm.rank() != 2);
      } catch (const NonFiniteOperator& e) {
        seen[comm.rank()] = e.rank();
      }
    });
    EXPECT_EQ(seen, std::vector<int>({2, 2, 2})) << q;
  }
}

// The qgenx step rule's sums over ranks: each owner sums its chunk, the owners' sums travel with
// their messages. Unquantized they are the all-gather's sums up to the order of addition.
TEST(TwoPhaseExchange, RankDifferencesMatchTheAllgathers) {
  const int ranks = 3;
  const int64_t dim = 700;
  std::vector<std::vector<double>> sums(2, std::vector<double>(ranks));
  for (int mode = 0; mode < 2; ++mode) {
    InProcessGroup group(ranks);
    Logger quiet(LogLevel::kError);
    group.run([&](Communicator& comm) {
      const ExchangeOptions options =
          mode == 0 ? ExchangeOptions().codec(codec("none")) : two_phase(codec("none"), 64);
      Exchange exchange(comm, options, quiet);
      exchange.keep_rank_operators(true);
      exchange.average(local_operator(comm.rank(), dim));
      const double norm = exchange.rank_sq_difference(false);
      exchange.average(local_operator(comm.rank() + 10, dim));
      sums[mode][comm.rank()] = exchange.rank_sq_difference(true) + 1e3 * norm;
    });
  }
  for (int r = 0; r < ranks; ++r) {
    EXPECT_EQ(sums[1][r], sums[1][0]) << "ranks must agree bit for bit";
    EXPECT_NEAR(sums[1][r], sums[0][r], 1e-9 * sums[0][r]);
  }
}

TEST(TwoPhaseExchange, AMalformedChunkNamesTheSendingRank) {
  InProcessGroup group(3);
  Logger quiet(LogLevel::kError);
  std::mutex mutex;
  std::vector<std::string> errors(3);
  const auto body = [&](Communicator& comm) {
    CorruptingCommunicator corrupting(
        comm, 1, [](torch::Tensor m) { return m.narrow(0, 0, m.numel() / 2).clone(); });
    Communicator& used = comm.rank() == 1 ? comm : static_cast<Communicator&>(corrupting);
    Exchange exchange(used, two_phase(codec("qsgd"), 16), quiet);
    try {
      exchange.average(local_operator(comm.rank(), 64));
    } catch (const Error& e) {
      std::lock_guard<std::mutex> lock(mutex);
      errors[comm.rank()] = e.what();
      throw;  // as a program aborts the job: rank 1, in the second phase, is released
    }
  };
  // The first rank to fail names rank 1 (the other may be released by the abort first).
  try {
    group.run(body);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("malformed message from rank 1: ", 0), 0u) << e.what();
  }
  // Rank 1 received the true messages: it is only released by the abort.
  EXPECT_EQ(errors[1].find("malformed"), std::string::npos) << errors[1];
}

}  // namespace
}  // namespace saddle
