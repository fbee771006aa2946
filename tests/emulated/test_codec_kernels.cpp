// The codec's CUDA kernels (src/cuda/codec_kernels.cu), run on the host by the SIMT emulator
// (simt.h) and compared with the CPU codec: every encoder kernel writes the CPU encoder's bytes,
// the fused decode gives the CPU decode's bits, the entropy coder's symbols, the norm check, the
// errors and the statistics agree. This runs in every build, GPU or not, so a change to a kernel's
// index arithmetic, packing or summation order fails CI without a GPU; tests/unit/test_cuda.cpp
// checks the same on a real GPU.
#include "simt.h"  // first: it replaces CUDA C++'s keywords before the kernels are read

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <string>
#include <vector>

#include "../unit/codec_reference.h"
#include "quant/kernels.h"
#include "saddle/quant/codec.h"

// The kernels' CUDA runtime calls, on the host (macros: the names stay free for the real runtime,
// which a CUDA build also links).
inline cudaError_t simt_memset_async(void* p, int value, size_t bytes, cudaStream_t) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}
#define cudaMemsetAsync simt_memset_async
#define cudaGetLastError() cudaSuccess
#define cudaGetErrorString(status) ((void)(status), "emulated")
// In a namespace of their own, apart from a CUDA build's real kernels.
#define cuda_kernels cuda_kernels_emulated
#include "cuda/codec_kernels.cu"
#undef cuda_kernels

namespace {

namespace k = saddle::cuda_kernels_emulated;
using saddle::Codec;
using saddle::CodecOptions;

// The device configuration of `codec` (as src/cuda/codec_cuda.cpp builds it), with host tables.
struct HostConfig {
  std::vector<float> levels, inv_gap;
  k::QuantConfig q;

  HostConfig(const Codec& codec, bool register_encoder, uint64_t seed, uint64_t stream,
             int64_t first)
      : levels(codec.levels()), inv_gap(levels.size(), 0.0f) {
    for (size_t j = 0; j + 1 < levels.size(); ++j) inv_gap[j] = 1.0f / (levels[j + 1] - levels[j]);
    q.bits = codec.options().bits();
    q.count = static_cast<int>(levels.size());
    q.uniform = codec.spec().family == saddle::LevelFamily::kUniform;
    q.linf = codec.options().norm() == saddle::NormKind::kLinf;
    q.bucket = codec.options().bucket_size();
    q.register_encoder = register_encoder;
    q.seed = seed;
    q.stream = stream;
    q.first = first;
    q.levels = levels.data();
    q.inv_gap = inv_gap.data();
  }
};

using saddle::quant_detail::bucket_count;

// The emulated encode of v: the CPU message's header followed by the kernels' norms and body, and
// the errors the kernels reported.
struct Encoded {
  std::vector<uint8_t> message;
  k::DeviceErrors errors{k::kNoError, k::kNoError};
};

Encoded emulated_encode(const Codec& codec, const torch::Tensor& v, bool register_encoder,
                        uint64_t seed, uint64_t stream, int64_t first,
                        const torch::Tensor& cpu_message) {
  HostConfig c(codec, register_encoder, seed, stream, first);
  const int64_t n = v.numel(), buckets = bucket_count(n, c.q.bucket);
  const int64_t words = (n * c.q.bits + 31) / 32, body = (n * c.q.bits + 7) / 8;
  std::vector<float> norms(buckets, -1.0f);
  std::vector<uint32_t> packed(words + 2, 0xA5A5A5A5u);  // past the stream: must stay untouched
  Encoded e;
  k::reset_errors(&e.errors, nullptr);
  k::encode_fixed(v.data_ptr<float>(), n, c.q, norms.data(),
                  reinterpret_cast<uint8_t*>(packed.data()), &e.errors, nullptr);
  e.message.assign(cpu_message.data_ptr<uint8_t>(),
                   cpu_message.data_ptr<uint8_t>() + Codec::kHeaderBytes);
  const auto* nb = reinterpret_cast<const uint8_t*>(norms.data());
  e.message.insert(e.message.end(), nb, nb + 4 * buckets);
  const auto* pb = reinterpret_cast<const uint8_t*>(packed.data());
  e.message.insert(e.message.end(), pb, pb + body);
  // The bits past the last symbol, up to the word, are zero; nothing past the words is written.
  for (int64_t i = body; i < 4 * words; ++i) {
    if (pb[i] != 0) e.message.push_back(0xEE);  // makes the lengths differ
  }
  if (packed[words] != 0xA5A5A5A5u || packed[words + 1] != 0xA5A5A5A5u) e.message.push_back(0xEF);
  return e;
}

std::string where_differs(const std::vector<uint8_t>& a, const torch::Tensor& b, int64_t buckets) {
  if (static_cast<int64_t>(a.size()) != b.numel()) {
    return "lengths " + std::to_string(a.size()) + " and " + std::to_string(b.numel()) +
           " (bits past the stream written, or padding not zero)";
  }
  const auto* p = b.data_ptr<uint8_t>();
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != p[i]) {
      const int64_t at = static_cast<int64_t>(i);
      return at < Codec::kHeaderBytes + 4 * buckets
                 ? "the norm of bucket " + std::to_string((at - Codec::kHeaderBytes) / 4)
                 : "body byte " + std::to_string(at - Codec::kHeaderBytes - 4 * buckets);
    }
  }
  return "";
}

// Both encoder kernels (block, register), every level quantizer, bit widths whose symbols do and
// do not straddle words, buckets of 1, 32, 97 (the block kernel only), 256 and 1024 coordinates,
// vectors that end inside a bucket and a word, the norm's double-precision path (1e-25 stretches
// in the input), the wide scale (1e-42), and a stream index that crosses 2^32.
TEST(EmulatedCudaKernels, EncodersWriteTheCpuEncodersBytes) {
  int failures = 0, cases = 0;
  for (bool register_encoder : {false, true}) {
    for (const auto& spec : saddle::quantizer_specs()) {
      if (spec.family == saddle::LevelFamily::kCast) continue;
      for (int bits : {2, 3, 4, 8}) {
        if (spec.forced_bits != 0 && bits != spec.forced_bits) continue;
        for (int64_t bucket : {1, 32, 97, 256, 1024}) {
          for (double scale : {1.0, 1e-42}) {
            for (int64_t first : {int64_t{0}, (int64_t{1} << 32) - 700}) {
              if (scale != 1.0 && (first != 0 || bucket == 1)) continue;
              const int64_t n = bucket == 1 ? 77 : 1503;
              const torch::Tensor v = saddle::testing::reference_input(n, 11 + bits) * scale;
              Codec codec(CodecOptions().quantizer(spec.name).bits(bits).bucket_size(bucket));
              if (codec.adaptive()) codec.adapt(codec.statistics(v));
              const torch::Tensor cpu = codec.encode(v, 7, 3, first);
              const Encoded e = emulated_encode(codec, v, register_encoder, 7, 3, first, cpu);
              ++cases;
              const std::string diff = where_differs(e.message, cpu, bucket_count(n, bucket));
              EXPECT_EQ(e.errors.non_finite, k::kNoError);
              if (!diff.empty()) {
                ADD_FAILURE() << (register_encoder ? "register" : "block") << " kernel, "
                              << spec.name << "/b" << bits << "/k" << bucket << "/x" << scale
                              << "/first " << first << ": " << diff;
                if (++failures >= 10) return;
              }
            }
          }
        }
      }
    }
  }
  EXPECT_GT(cases, 200);
}

// The entropy coder's input: one symbol byte per coordinate, the fixed coder's symbols unpacked.
TEST(EmulatedCudaKernels, SymbolsForTheEntropyCoderAreTheFixedCodersSymbols) {
  for (bool register_encoder : {false, true}) {
    for (int bits : {2, 4, 5}) {
      const int64_t n = 1100;
      const torch::Tensor v = saddle::testing::reference_input(n, 5);
      Codec codec(CodecOptions().quantizer("alq").bits(bits).bucket_size(256));
      codec.adapt(codec.statistics(v));
      const torch::Tensor cpu = codec.encode(v, 2, 9);
      HostConfig c(codec, register_encoder, 2, 9, 0);
      const int64_t buckets = bucket_count(n, 256);
      std::vector<float> norms(buckets);
      std::vector<uint8_t> symbols(n);
      k::DeviceErrors errors{k::kNoError, k::kNoError};
      k::quantize_symbols(v.data_ptr<float>(), n, c.q, norms.data(), symbols.data(), &errors,
                          nullptr);
      const uint8_t* m = cpu.data_ptr<uint8_t>();
      EXPECT_EQ(std::memcmp(norms.data(), m + Codec::kHeaderBytes, 4 * buckets), 0) << bits;
      const uint8_t* body = m + Codec::kHeaderBytes + 4 * buckets;
      int wrong = 0;
      for (int64_t i = 0; i < n; ++i) {
        unsigned s = 0;
        for (int b = 0; b < bits; ++b) {
          const int64_t bit = i * bits + b;
          s |= ((body[bit >> 3] >> (bit & 7)) & 1u) << b;
        }
        wrong += s != symbols[i];
      }
      EXPECT_EQ(wrong, 0) << (register_encoder ? "register" : "block") << " kernel, " << bits
                          << " bits";
    }
  }
}

// The fused decode of K messages (back to back, as an all-gather leaves them) against the CPU's
// decode_average, bit for bit: bit widths with and without whole-byte groups, buckets of a
// multiple of 8 or not, K = 1, 3, 8, an output that is not 16-byte aligned, and the casts.
TEST(EmulatedCudaKernels, FusedDecodeGivesTheCpuBits) {
  for (const char* quantizer : {"alq", "qsgd", "nuq", "none", "fp16", "bf16"}) {
    for (int bits : {2, 3, 4, 8}) {
      for (int64_t bucket : {97, 1024}) {
        Codec probe(CodecOptions().quantizer(quantizer));
        if (probe.is_cast() && (bits != 4 || bucket != 1024)) continue;
        for (int count : {1, 3, 8}) {
          const int64_t n = 2001;
          const torch::Tensor v = saddle::testing::reference_input(n, 3);
          Codec codec(CodecOptions().quantizer(quantizer).bits(bits).bucket_size(bucket));
          if (codec.adaptive()) codec.adapt(codec.statistics(v));
          std::vector<torch::Tensor> messages;
          for (int r = 0; r < count; ++r) messages.push_back(codec.encode(v * (r + 1), 5, r));
          torch::Tensor expected = torch::empty({n});
          codec.decode_average(messages, expected, 1.0f / count);
          const torch::Tensor all = torch::cat(messages);
          k::Messages m;
          m.base = all.data_ptr<uint8_t>();
          m.stride = messages[0].numel();
          m.count = count;
          for (int aligned_out : {0, 1}) {
            // LibTorch's buffers are 64-byte aligned: one float in, the scalar stores.
            torch::Tensor out = torch::full({n + 1}, 9.0f);
            float* o = out.data_ptr<float>() + (aligned_out ? 0 : 1);
            if (codec.is_cast()) {
              const int kind = static_cast<int>(codec.spec().cast);
              k::decode_average_cast(m, n, kind, 1.0f / count, o, nullptr);
            } else {
              HostConfig c(codec, true, 0, 0, 0);
              k::decode_average_fixed(m, n, c.q, 1.0f / count, o, nullptr);
            }
            EXPECT_EQ(std::memcmp(o, expected.data_ptr<float>(), 4 * n), 0)
                << quantizer << "/b" << bits << "/k" << bucket << " K=" << count
                << (aligned_out ? " (16-byte aligned output)" : "");
          }
        }
      }
    }
  }
}

TEST(EmulatedCudaKernels, NormCheckNamesTheMessageWithABadNorm) {
  const int64_t n = 600;
  Codec codec(CodecOptions().quantizer("qsgd").bits(4).bucket_size(64));
  const torch::Tensor v = saddle::testing::reference_input(n, 1);
  std::vector<torch::Tensor> messages = {codec.encode(v, 1, 0), codec.encode(v, 1, 1),
                                         codec.encode(v, 1, 2)};
  const float nan = std::numeric_limits<float>::quiet_NaN(), negative = -1.0f;
  std::memcpy(messages[1].data_ptr<uint8_t>() + Codec::kHeaderBytes + 4 * 3, &nan, 4);
  std::memcpy(messages[2].data_ptr<uint8_t>() + Codec::kHeaderBytes + 4 * 9, &negative, 4);
  const torch::Tensor all = torch::cat(messages);
  k::Messages m{all.data_ptr<uint8_t>(), messages[0].numel(), 3};
  int bad[3] = {7, 7, 7};
  k::check_norms(m, bucket_count(n, 64), bad, nullptr);
  EXPECT_EQ(bad[0], 0);
  EXPECT_EQ(bad[1], 1);
  EXPECT_EQ(bad[2], 1);
}

// A non-finite coordinate is reported with its bucket's first coordinate, by both kernels.
TEST(EmulatedCudaKernels, NonFiniteValuesAreReportedWithTheirBucket) {
  for (bool register_encoder : {false, true}) {
    const int64_t n = 2048;
    torch::Tensor v = saddle::testing::reference_input(n, 4);
    v[1500] = std::numeric_limits<float>::infinity();
    Codec codec(CodecOptions().quantizer("qsgd").bits(4).bucket_size(512));
    HostConfig c(codec, register_encoder, 1, 1, 0);
    std::vector<float> norms(4);
    std::vector<uint32_t> packed(n / 8);
    k::DeviceErrors errors{k::kNoError, k::kNoError};
    k::encode_fixed(v.data_ptr<float>(), n, c.q, norms.data(),
                    reinterpret_cast<uint8_t*>(packed.data()), &errors, nullptr);
    EXPECT_EQ(errors.non_finite, 1024u) << register_encoder;
    EXPECT_EQ(errors.overflow, k::kNoError) << register_encoder;
  }
}

// The adaptive levels' statistics: the CPU's, up to the order of the double additions.
TEST(EmulatedCudaKernels, StatisticsMatchTheCpuUpToSummationOrder) {
  for (const char* quantizer : {"alq", "amq", "qsgd-inf"}) {
    const int64_t n = 5000;
    const torch::Tensor v = saddle::testing::reference_input(n, 5);
    Codec codec(CodecOptions().quantizer(quantizer).bits(3).bucket_size(97));
    const torch::Tensor cpu = codec.statistics(v);  // [3, bins] float64
    const int64_t bins = cpu.size(1);
    HostConfig c(codec, true, 0, 0, 0);
    std::vector<double> stats(3 * bins, 0.0);
    k::DeviceErrors errors{k::kNoError, k::kNoError};
    k::accumulate_statistics(v.data_ptr<float>(), n, c.q, stats.data(), bins, &errors, nullptr);
    const torch::Tensor got = torch::from_blob(stats.data(), {3, bins}, torch::kFloat64);
    EXPECT_TRUE(torch::allclose(got, cpu, 1e-12, 1e-30)) << quantizer;
  }
}

}  // namespace
