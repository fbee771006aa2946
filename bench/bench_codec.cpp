// Codec throughput in GB/s of fp32 input, single-threaded, on ~4M Gaussian floats: quantize+encode
// and decode+accumulate for every quantizer at 2, 4 and 8 bits with both coders, beside a memcpy of
// the same buffer. Counters: vs_memcpy (throughput / memcpy throughput measured once in this
// process), bits_per_coord (wire cost, headers and norms included), rel_var (||Q(v) - v||^2 /
// ||v||^2 of one draw).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <chrono>
#include <cstring>

#include "saddle/quant/codec.h"

namespace {

using saddle::Codec;
using saddle::CodecOptions;
using saddle::CoderKind;

constexpr int64_t kN = int64_t{1} << 22;
constexpr double kBytes = kN * sizeof(float);

const torch::Tensor& input() {
  static const torch::Tensor v = [] {
    torch::manual_seed(0);
    return torch::randn({kN});
  }();
  return v;
}

// Bytes per second of memcpy on the input, best of a few rounds.
double memcpy_rate() {
  static const double rate = [] {
    std::vector<float> dst(kN);
    double best = 0;
    for (int round = 0; round < 20; ++round) {
      const auto t0 = std::chrono::steady_clock::now();
      std::memcpy(dst.data(), input().data_ptr<float>(), kBytes);
      benchmark::ClobberMemory();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, kBytes / s);
    }
    return best;
  }();
  return rate;
}

void report(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kBytes));
  state.counters["vs_memcpy"] =
      benchmark::Counter(state.iterations() * kBytes / memcpy_rate(), benchmark::Counter::kIsRate);
}

void BM_Memcpy(benchmark::State& state) {
  std::vector<float> dst(kN);
  for (auto _ : state) {
    std::memcpy(dst.data(), input().data_ptr<float>(), kBytes);
    benchmark::ClobberMemory();
  }
  report(state);
}

Codec make_codec(const std::string& quantizer, int bits, CoderKind coder) {
  Codec codec(CodecOptions().quantizer(quantizer).bits(bits).coder(coder).bucket_size(1024));
  if (codec.adaptive()) codec.adapt(codec.statistics(input().slice(0, 0, 1 << 20)));
  return codec;
}

void add_wire_counters(benchmark::State& state, const Codec& codec, const torch::Tensor& message) {
  auto decoded = torch::zeros({kN});
  codec.decode_accumulate(message, decoded, 1.0f);
  state.counters["bits_per_coord"] = message.numel() * 8.0 / kN;
  state.counters["rel_var"] =
      ((decoded - input()).pow(2).sum() / input().pow(2).sum()).item<double>();
}

void BM_Encode(benchmark::State& state, const std::string& quantizer, int bits, CoderKind coder) {
  const Codec codec = make_codec(quantizer, bits, coder);
  uint64_t seed = 0;
  torch::Tensor message;
  for (auto _ : state) {
    message = codec.encode(input(), seed++, 0);
    benchmark::DoNotOptimize(message.data_ptr());
  }
  report(state);
  add_wire_counters(state, codec, message);
}

void BM_Decode(benchmark::State& state, const std::string& quantizer, int bits, CoderKind coder) {
  const Codec codec = make_codec(quantizer, bits, coder);
  const torch::Tensor message = codec.encode(input(), 1, 0);
  auto out = torch::zeros({kN});
  for (auto _ : state) {
    codec.decode_accumulate(message, out, 0.5f);
    benchmark::ClobberMemory();
  }
  report(state);
}

// The magnitude statistics an adaptive quantizer's refit sums over ranks (Exchange books them as
// encoding time at the iterations of --level-schedule).
void BM_Statistics(benchmark::State& state) {
  const Codec codec = make_codec("alq", 4, CoderKind::kFixed);
  for (auto _ : state) {
    torch::Tensor stats = codec.statistics(input());
    benchmark::DoNotOptimize(stats.data_ptr());
  }
  report(state);
}

bool register_codec_benchmarks() {
  benchmark::RegisterBenchmark("Memcpy", BM_Memcpy)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("Statistics/alq", BM_Statistics)->Unit(benchmark::kMillisecond);
  for (const auto& q : saddle::quantizer_names()) {
    const bool cast = q == "none" || q == "fp16" || q == "bf16";
    for (int bits : {2, 4, 8}) {
      if ((cast && bits != 4) || (q == "terngrad" && bits != 2)) continue;
      for (auto coder : {CoderKind::kFixed, CoderKind::kEntropy}) {
        if (cast && coder == CoderKind::kEntropy) continue;
        const std::string tag =
            q + (cast ? "" : "/b" + std::to_string(bits) + "/" + saddle::coder_name(coder));
        benchmark::RegisterBenchmark(("Encode/" + tag).c_str(), BM_Encode, q, bits, coder)
            ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("Decode/" + tag).c_str(), BM_Decode, q, bits, coder)
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  return true;
}

const bool registered = register_codec_benchmarks();

}  // namespace
