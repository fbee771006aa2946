// The wire format: exact round trips, sizes of both coders, determinism, and rejection of every
// kind of malformed message without touching the output.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <random>

#include "codec_reference.h"
#include "saddle/error.h"
#include "saddle/quant/codec.h"

namespace {

using saddle::Codec;
using saddle::CodecOptions;
using saddle::CoderKind;
using saddle::NormKind;

// Entries sign * 8 * level with every bucket holding a +-8: with the L-inf norm (8, a power of two)
// every normalized magnitude is exactly a level, so quantization is deterministic and exact.
torch::Tensor on_levels(const Codec& codec, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto& levels = codec.levels();
  auto v = torch::empty({n});
  for (int64_t i = 0; i < n; ++i) {
    const bool top = i % codec.options().bucket_size() == 0;
    const float level = top ? 1.0f : levels[rng() % levels.size()];
    v[i] = (rng() % 2 ? -8.0f : 8.0f) * level;
  }
  return v;
}

torch::Tensor decode(const Codec& codec, const torch::Tensor& message, int64_t n) {
  auto out = torch::zeros({n});
  codec.decode_accumulate(message, out, 1.0f);
  return out;
}

void expect_rejected(const Codec& codec, const torch::Tensor& message, int64_t n,
                     const std::string& what) {
  auto out = torch::full({n}, 3.0f);
  EXPECT_THROW(codec.decode_accumulate(message, out, 1.0f), saddle::Error) << what;
  EXPECT_TRUE(torch::equal(out, torch::full({n}, 3.0f))) << what << ": output modified on error";
}

std::vector<CodecOptions> small_configs() {
  std::vector<CodecOptions> configs;
  for (auto coder : {CoderKind::kFixed, CoderKind::kEntropy}) {
    configs.push_back(CodecOptions().quantizer("qsgd").bits(3).bucket_size(16).coder(coder));
    configs.push_back(CodecOptions().quantizer("alq").bits(5).bucket_size(7).coder(coder));
  }
  configs.push_back(CodecOptions().quantizer("none"));
  configs.push_back(CodecOptions().quantizer("bf16"));
  return configs;
}

}  // namespace

TEST(CodecRoundTrip, VectorsOnLevelsDecodeExactly) {
  for (auto coder : {CoderKind::kFixed, CoderKind::kEntropy}) {
    for (int64_t n : {0, 1, 5, 64, 100, 1030}) {
      std::vector<Codec> codecs = {
          Codec(CodecOptions()
                    .quantizer("nuq")
                    .bits(4)
                    .norm(NormKind::kLinf)
                    .bucket_size(64)
                    .coder(coder)),
          Codec(CodecOptions()
                    .quantizer("qsgd")
                    .bits(2)
                    .bucket_size(64)
                    .norm(NormKind::kLinf)
                    .coder(coder)),
          Codec(CodecOptions().quantizer("terngrad").bucket_size(100).coder(coder)),
          Codec(CodecOptions()
                    .quantizer("amq")
                    .bits(8)
                    .norm(NormKind::kLinf)
                    .bucket_size(64)
                    .coder(coder))};
      Codec alq(CodecOptions()
                    .quantizer("alq")
                    .bits(4)
                    .norm(NormKind::kLinf)
                    .bucket_size(33)
                    .coder(coder));
      alq.set_levels({0, 1.0f / 16, 1.0f / 8, 3.0f / 16, 0.25f, 0.5f, 0.75f, 1});
      codecs.push_back(alq);
      for (const auto& codec : codecs) {
        const auto v = on_levels(codec, n, 42 + n);
        EXPECT_TRUE(torch::equal(decode(codec, codec.encode(v, 9, 1), n), v))
            << codec.options().quantizer() << " n=" << n << " coder " << saddle::coder_name(coder);
      }
    }
  }
}

TEST(CodecRoundTrip, SingleCoordinateIsItsOwnNorm) {
  for (auto coder : {CoderKind::kFixed, CoderKind::kEntropy}) {
    for (const std::string name : {"qsgd", "nuq", "alq", "amq"}) {
      Codec codec(CodecOptions().quantizer(name).coder(coder));
      auto v = torch::tensor({-4.0f});
      EXPECT_TRUE(torch::equal(decode(codec, codec.encode(v, 1, 2), 1), v)) << name;
    }
  }
}

TEST(CodecRoundTrip, AccumulatesWithWeightAndIsDeterministic) {
  Codec codec(CodecOptions().quantizer("qsgd").bits(4).bucket_size(128));
  torch::manual_seed(1);
  auto v = torch::randn({1000});
  const auto a = codec.encode(v, 5, 6);
  EXPECT_TRUE(torch::equal(a, codec.encode(v, 5, 6)));
  EXPECT_FALSE(torch::equal(a, codec.encode(v, 5, 7)));
  EXPECT_FALSE(torch::equal(a, codec.encode(v, 6, 6)));
  auto out = torch::ones({1000});
  codec.decode_accumulate(a, out, 0.5f);
  EXPECT_TRUE(torch::allclose(out, 1 + 0.5 * decode(codec, a, 1000)));
}

namespace {

// The wire format read byte by byte, apart from the kernels: the 32-byte header, the bucket norms,
// then `bits`-bit symbols from the lowest bit up (sign in the top bit, level index below). Entry i
// is weight * norm * level, negated for a set sign bit, in the kernels' order of operations.
std::vector<float> reference_decode(const Codec& codec, const torch::Tensor& message, int64_t n,
                                    float weight) {
  const auto* p = message.data_ptr<uint8_t>() + Codec::kHeaderBytes;
  if (codec.is_cast()) {  // fp32 as is, bf16 and fp16 widened: weight * x
    const std::string q = codec.options().quantizer();
    std::vector<float> out(n);
    for (int64_t i = 0; i < n; ++i) {
      float x;
      uint16_t h;
      if (q == "none") {
        std::memcpy(&x, p + 4 * i, 4);
      } else if (std::memcpy(&h, p + 2 * i, 2); q == "bf16") {
        const uint32_t widened = static_cast<uint32_t>(h) << 16;
        std::memcpy(&x, &widened, 4);
      } else {
        x = static_cast<float>(c10::Half(h, c10::Half::from_bits()));
      }
      out[i] = weight * x;
    }
    return out;
  }
  const int bits = codec.options().bits(), half = 1 << (bits - 1);
  const int64_t bucket = codec.options().bucket_size(), buckets = (n + bucket - 1) / bucket;
  const uint8_t* packed = p + 4 * buckets;
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) {
    float norm;
    std::memcpy(&norm, p + 4 * (i / bucket), 4);
    int symbol = 0;
    for (int k = 0; k < bits; ++k) {
      const int64_t bit = i * bits + k;
      symbol |= ((packed[bit / 8] >> (bit % 8)) & 1) << k;
    }
    const float x = weight * norm * codec.levels()[symbol & (half - 1)];
    out[i] = symbol & half ? -x : x;
  }
  return out;
}

bool same_bits(const torch::Tensor& t, const std::vector<float>& expected) {
  return t.numel() == static_cast<int64_t>(expected.size()) &&
         std::memcmp(t.data_ptr<float>(), expected.data(), 4 * expected.size()) == 0;
}

}  // namespace

// decode_average with rows reads each message once (with CpuKernels::kVector the AVX2 kernels for
// 2 and 4 bits when buckets hold whole bytes, else and with kPortable the scalar ones; the casts):
// the average is the sum in rank order started from +0, each row the message at weight 1, bit for
// bit as the wire format says; a bad message is named by index and nothing is written.
TEST(CodecDecode, OnePassAverageAndRowsAreTheWireFormatsBits) {
  struct Case {
    const char* quantizer;
    int bits;
    int64_t bucket, n;
  };
  const Case cases[] = {{"alq", 4, 1024, 3001}, {"qsgd", 4, 8, 37},     {"qsgd", 2, 64, 1000},
                        {"qsgd", 2, 24, 203},   {"qsgd", 4, 100, 999},  {"nuq", 3, 1024, 2050},
                        {"alq", 8, 512, 1500},  {"qsgd-inf", 4, 16, 77},   {"none", 4, 1024, 1001},
                        {"bf16", 4, 1024, 777}, {"fp16", 4, 1024, 500}};
  for (const Case& c : cases) {
    for (auto kernels : {saddle::CpuKernels::kVector, saddle::CpuKernels::kPortable}) {
      const std::string what = std::string(c.quantizer) + "/b" + std::to_string(c.bits) + "/k" +
                               std::to_string(c.bucket) + "/n" + std::to_string(c.n) +
                               (kernels == saddle::CpuKernels::kVector ? "/vector" : "/portable");
      Codec codec(CodecOptions()
                      .quantizer(c.quantizer)
                      .bits(c.bits)
                      .bucket_size(c.bucket)
                      .cpu_kernels(kernels));
      const float weight = 1.0f / 3.0f;
      std::vector<torch::Tensor> messages;
      std::vector<float> average(c.n, 0.0f);
      std::vector<std::vector<float>> rows_expected;
      for (int r = 0; r < 3; ++r) {
        messages.push_back(codec.encode(saddle::testing::reference_input(c.n, 40 + r), 9,
                                        static_cast<uint64_t>(r)));
        const std::vector<float> part = reference_decode(codec, messages[r], c.n, weight);
        for (int64_t i = 0; i < c.n; ++i) average[i] = average[i] + part[i];
        std::vector<float> row = reference_decode(codec, messages[r], c.n, 1.0f);
        for (float& x : row) x = 0.0f + x;
        rows_expected.push_back(row);
      }
      torch::Tensor out = torch::full({c.n}, 7.0f);
      torch::Tensor all_rows = torch::full({3, c.n}, 7.0f);
      std::vector<torch::Tensor> rows = {all_rows[0], all_rows[1], all_rows[2]};
      codec.decode_average(messages, out, weight, rows);
      EXPECT_TRUE(same_bits(out, average)) << what;
      for (int r = 0; r < 3; ++r)
        EXPECT_TRUE(same_bits(rows[r], rows_expected[r])) << what << " row " << r;
      torch::Tensor plain = torch::full({c.n}, 7.0f);
      codec.decode_average(messages, plain, weight);
      EXPECT_TRUE(same_bits(plain, average)) << what << " without rows";

      std::vector<torch::Tensor> bad = messages;
      bad[1] = messages[1].narrow(0, 0, messages[1].numel() - 1).clone();
      torch::Tensor untouched = torch::full({c.n}, 3.0f),
                    untouched_rows = torch::full({3, c.n}, 3.0f);
      std::vector<torch::Tensor> bad_rows = {untouched_rows[0], untouched_rows[1],
                                             untouched_rows[2]};
      try {
        codec.decode_average(bad, untouched, weight, bad_rows);
        ADD_FAILURE() << what << ": a truncated message was accepted";
      } catch (const saddle::MalformedMessage& e) {
        EXPECT_EQ(e.index(), 1) << what;
      }
      EXPECT_TRUE(torch::equal(untouched, torch::full({c.n}, 3.0f))) << what;
      EXPECT_TRUE(torch::equal(untouched_rows, torch::full({3, c.n}, 3.0f))) << what;
    }
  }
}

// A vector encoded in pieces that start on bucket boundaries, each at its index in the random
// stream (`first`), decodes to the bits of the whole vector encoded at once: the overlapped
// exchange relies on it. Also across the stream's 2^32-index key boundary, which the last start
// puts inside a bucket and inside a piece.
TEST(CodecRoundTrip, PiecesEncodedAtTheirIndexQuantizeAsTheWhole) {
  torch::manual_seed(3);
  const auto v = torch::randn({1000});
  for (auto coder : {CoderKind::kFixed, CoderKind::kEntropy}) {
    for (const std::string name : {"qsgd", "nuq", "alq"}) {
      Codec codec(CodecOptions().quantizer(name).bits(4).bucket_size(64).coder(coder));
      if (codec.adaptive()) codec.adapt(codec.statistics(v));
      for (int64_t start : {int64_t{0}, int64_t{777}, (int64_t{1} << 32) - 300}) {
        const torch::Tensor whole = decode(codec, codec.encode(v, 3, 5, start), 1000);
        torch::Tensor pieces = torch::zeros({1000});
        const int64_t bounds[] = {0, 128, 512, 576, 1000};
        for (int k = 0; k + 1 < 5; ++k) {
          const int64_t len = bounds[k + 1] - bounds[k];
          torch::Tensor out = pieces.narrow(0, bounds[k], len);
          codec.decode_accumulate(
              codec.encode(v.narrow(0, bounds[k], len).contiguous(), 3, 5, start + bounds[k]), out,
              1.0f);
        }
        EXPECT_TRUE(torch::equal(whole, pieces)) << name << " from " << start;
        EXPECT_FALSE(torch::equal(whole, decode(codec, codec.encode(v, 3, 5, start + 1), 1000)))
            << name << ": the index must move the random stream";
      }
    }
  }
  Codec codec(CodecOptions().quantizer("qsgd"));
  EXPECT_THROW(codec.encode(v, 0, 0, -1), saddle::Error);
}

TEST(CodecSize, FixedCoderSpendsBitsPlusNorms) {
  const int64_t n = 1 << 16;
  torch::manual_seed(2);
  auto v = torch::randn({n});
  for (int bits : {2, 4, 8}) {
    Codec codec(CodecOptions().quantizer("qsgd").bits(bits).bucket_size(1024));
    const auto message = codec.encode(v, 1, 1);
    EXPECT_EQ(message.numel(), codec.max_encoded_bytes(n));
    EXPECT_LE(message.numel() * 8.0 / n, bits + 0.1) << bits;
  }
  EXPECT_EQ(Codec(CodecOptions().quantizer("fp16")).encode(v, 1, 1).numel(),
            Codec::kHeaderBytes + 2 * n);
}

TEST(CodecSize, EntropyCoderIsNearTheSymbolEntropy) {
  const int64_t n = 1 << 16, bucket = 1024;
  torch::manual_seed(3);
  auto v = torch::randn({n});
  for (const std::string name : {"qsgd", "nuq", "qsgd-inf"}) {
    for (int bits : {2, 4, 8}) {
      auto opts = CodecOptions().quantizer(name).bits(bits).bucket_size(bucket);
      Codec fixed(CodecOptions(opts).coder(CoderKind::kFixed)),
          entropy(CodecOptions(opts).coder(CoderKind::kEntropy));
      const auto f = fixed.encode(v, 4, 4), e = entropy.encode(v, 4, 4);
      // Same seed, same symbols: read them back from the fixed-width payload.
      const int64_t payload_start = Codec::kHeaderBytes + 4 * (n / bucket);
      const uint8_t* packed = f.data_ptr<uint8_t>() + payload_start;
      std::vector<double> counts(1 << bits, 0);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t bit = i * bits;
        const unsigned word =
            packed[bit / 8] |
            (bit / 8 + 1 < f.numel() - payload_start ? packed[bit / 8 + 1] << 8 : 0);
        counts[(word >> (bit % 8)) & ((1 << bits) - 1)] += 1;
      }
      double entropy_bits = 0;
      for (double c : counts)
        if (c > 0) entropy_bits -= c * std::log2(c / n);
      const double payload = (e.numel() - payload_start) * 8.0;
      const std::string where = name + " bits " + std::to_string(bits);
      EXPECT_LT(e.numel(), f.numel()) << where;
      EXPECT_LE(payload, 1.05 * entropy_bits)
          << where << " entropy " << entropy_bits / n << " bits/coordinate";
      EXPECT_TRUE(torch::equal(decode(fixed, f, n), decode(entropy, e, n))) << where;
    }
  }
}

TEST(CodecMalformed, EveryTruncationIsRejected) {
  for (const auto& opts : small_configs()) {
    Codec codec(opts);
    torch::manual_seed(4);
    const int64_t n = 40;
    const auto message = codec.encode(torch::randn({n}), 1, 1);
    for (int64_t len = 0; len < message.numel(); ++len)
      expect_rejected(codec, message.slice(0, 0, len).clone(), n,
                      opts.quantizer() + " prefix " + std::to_string(len));
    expect_rejected(codec, torch::cat({message, torch::zeros({1}, torch::kUInt8)}), n,
                    opts.quantizer() + " appended");
    expect_rejected(codec, message, n - 1, opts.quantizer() + " short output");
    expect_rejected(codec, message, n + 1, opts.quantizer() + " long output");
  }
}

TEST(CodecMalformed, EveryHeaderByteIsChecked) {
  for (const auto& opts : small_configs()) {
    Codec codec(opts);
    torch::manual_seed(5);
    const int64_t n = 40;
    const auto message = codec.encode(torch::randn({n}), 1, 1);
    for (int64_t byte = 0; byte < Codec::kHeaderBytes; ++byte) {
      for (int flip : {0x01, 0x80}) {
        auto bad = message.clone();
        bad[byte] = static_cast<uint8_t>(bad[byte].item<uint8_t>() ^ flip);
        expect_rejected(codec, bad, n, opts.quantizer() + " header byte " + std::to_string(byte));
      }
    }
  }
}

TEST(CodecMalformed, ErrorsNameTheProblem) {
  Codec codec(CodecOptions().quantizer("qsgd").bits(3).bucket_size(16));
  auto message = codec.encode(torch::randn({40}), 1, 1);
  auto out = torch::zeros({40});
  auto message_of = [&](const torch::Tensor& m) {
    try {
      codec.decode_accumulate(m, out, 1.0f);
    } catch (const saddle::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto v2 = message.clone();
  v2[4] = 2;
  EXPECT_NE(message_of(v2).find("version 2"), std::string::npos) << message_of(v2);
  EXPECT_NE(message_of(message.slice(0, 0, 10).clone()).find("truncated"), std::string::npos);
  auto nan_norm = message.clone();
  nan_norm.slice(0, Codec::kHeaderBytes, Codec::kHeaderBytes + 4).fill_(0xff);
  EXPECT_NE(message_of(nan_norm).find("norm"), std::string::npos) << message_of(nan_norm);
  auto other = Codec(CodecOptions().quantizer("nuq").bits(3).bucket_size(16))
                   .encode(torch::randn({40}), 1, 1);
  EXPECT_NE(message_of(other).find("quantizer 'nuq'"), std::string::npos) << message_of(other);
  EXPECT_THROW(codec.decode_accumulate(message.to(torch::kInt32), out, 1.0f), saddle::Error);
  auto doubles = torch::zeros({40}, torch::kFloat64);
  EXPECT_THROW(codec.decode_accumulate(message, doubles, 1.0f), saddle::Error);
}

TEST(CodecMalformed, LevelMismatchIsDetected) {
  for (auto coder : {CoderKind::kFixed, CoderKind::kEntropy}) {
    Codec a(CodecOptions().quantizer("alq").bits(4).coder(coder)),
        b(CodecOptions().quantizer("alq").bits(4).coder(coder));
    torch::manual_seed(6);
    auto v = torch::randn({3000});
    b.adapt(b.statistics(v));
    try {
      auto out = torch::zeros({3000});
      b.decode_accumulate(a.encode(v, 1, 1), out, 1.0f);
      ADD_FAILURE() << "level mismatch not detected";
    } catch (const saddle::Error& e) {
      EXPECT_NE(std::string(e.what()).find("hash"), std::string::npos) << e.what();
    }
  }
}

TEST(CodecMalformed, RandomCorruptionNeverCrashes) {
  std::mt19937 rng(7);
  for (const auto& opts : small_configs()) {
    Codec codec(opts);
    torch::manual_seed(8);
    const int64_t n = 200;
    const auto message = codec.encode(torch::randn({n}), 1, 1);
    for (int trial = 0; trial < 300; ++trial) {
      auto bad = message.clone();
      uint8_t* p = bad.data_ptr<uint8_t>();
      const int flips = 1 + rng() % 4;
      for (int k = 0; k < flips; ++k)
        p[Codec::kHeaderBytes + rng() % (bad.numel() - Codec::kHeaderBytes)] ^= 1 + rng() % 255;
      auto out = torch::zeros({n});
      try {
        codec.decode_accumulate(bad, out, 1.0f);
      } catch (const saddle::Error&) {
      }
    }
  }
}

TEST(CodecOptions, InvalidOptionsAreRejectedWithTheirValue) {
  auto error_of = [](const CodecOptions& o) {
    try {
      Codec c(o);
    } catch (const saddle::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error_of(CodecOptions().quantizer("qsgd").bits(9)), "invalid --bits 9 (expected 2..8)");
  EXPECT_NE(error_of(CodecOptions().bits(1)).find("--bits 1"), std::string::npos);
  EXPECT_NE(error_of(CodecOptions().quantizer("qsgd").bucket_size(0)).find("--bucket-size 0"),
            std::string::npos);
  EXPECT_NE(error_of(CodecOptions().quantizer("foo"))
                .find("unknown quantizer 'foo' (expected one of: none, fp16"),
            std::string::npos);
  EXPECT_THROW(saddle::parse_norm("l1"), saddle::Error);
  EXPECT_THROW(saddle::parse_coder("huffman"), saddle::Error);
  EXPECT_EQ(saddle::parse_norm(saddle::norm_name(NormKind::kLinf)), NormKind::kLinf);
  EXPECT_EQ(saddle::parse_coder(saddle::coder_name(CoderKind::kEntropy)), CoderKind::kEntropy);
  EXPECT_EQ(saddle::quantizer_names().size(), 9u);
  Codec codec(CodecOptions().quantizer("qsgd"));
  EXPECT_THROW(codec.encode(torch::tensor({1.0f, NAN}), 1, 1), saddle::Error);
  EXPECT_THROW(codec.encode(torch::tensor({1.0f, INFINITY}), 1, 1), saddle::Error);
  EXPECT_THROW(codec.encode(torch::ones({4, 4}), 1, 1), saddle::Error);
  EXPECT_THROW(codec.encode(torch::ones({8}, torch::kFloat64), 1, 1), saddle::Error);
}

TEST(CodecRoundTrip, TinyAndHugeMagnitudes) {
  for (const std::string name : {"qsgd", "nuq"}) {
    Codec codec(CodecOptions().quantizer(name).bits(4).bucket_size(4));
    auto v = torch::tensor({1e-40f, -2e-40f, 0.0f, 0.0f, 3e37f, -3e37f, 1.0f, 0.0f});
    auto out = decode(codec, codec.encode(v, 1, 1), 8);
    EXPECT_TRUE(torch::isfinite(out).all().item<bool>()) << name;
    EXPECT_EQ(out[2].item<float>(), 0.0f);
  }
}
