// The encoder's bytes, pinned: every quantizer of the table at several widths, bucket sizes and
// both coders encodes a fixed input (integer arithmetic only, the same bits on every machine) to
// messages whose hashes are written below. The CUDA encoder is tested against the same bytes on a
// GPU (test_cuda.cpp); a change here is a change of the wire format or of the arithmetic that CPU
// and GPU ranks share, and must be made on purpose. The bucket norm is also checked against an
// independent reading of its documented summation order (src/quant/quantize_math.h).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "codec_reference.h"
#include "quant/quantize_math.h"
#include "saddle/quant/codec.h"

namespace {

using saddle::Codec;
using saddle::testing::reference_cases;
using saddle::testing::reference_input;

// The codec of a case, with adaptive levels fit to the input (as an exchange would at iteration 0).
Codec make_codec(const saddle::testing::ReferenceCase& c, const torch::Tensor& v) {
  Codec codec(c.options);
  if (codec.adaptive()) codec.adapt(codec.statistics(v));
  return codec;
}

// The documented order, written out plainly: 256 lanes summed in index order, then the pairwise
// tree over all 256 lanes, in float; in double when the float sum leaves [1e-30, 1e37].
template <typename Acc>
Acc lane_tree_sum(const float* v, int64_t m) {
  Acc lanes[256] = {};
  for (int64_t i = 0; i < m; ++i) lanes[i % 256] += static_cast<Acc>(v[i]) * static_cast<Acc>(v[i]);
  for (int h = 128; h >= 1; h /= 2)
    for (int l = 0; l < h; ++l) lanes[l] += lanes[l + h];
  return lanes[0];
}

float documented_l2_norm(const float* v, int64_t m) {
  double sum = lane_tree_sum<float>(v, m);
  if (!(sum >= 1e-30 && sum <= 1e37)) sum = lane_tree_sum<double>(v, m);
  return static_cast<float>(std::sqrt(sum));
}

TEST(CodecReference, BucketNormsFollowTheDocumentedOrder) {
  for (const auto& c : reference_cases()) {
    if (c.options.quantizer() == "none" || c.options.quantizer() == "fp16" ||
        c.options.quantizer() == "bf16") {
      continue;
    }
    const torch::Tensor v = reference_input(c.n, c.seed);
    const Codec codec = make_codec(c, v);
    if (codec.options().norm() != saddle::NormKind::kL2) continue;
    const torch::Tensor message = codec.encode(v, 7, 3);
    const int64_t bucket = codec.options().bucket_size();
    const int64_t buckets = (c.n + bucket - 1) / bucket;
    for (int64_t b = 0; b < buckets; ++b) {
      float norm;
      std::memcpy(&norm, message.data_ptr<uint8_t>() + Codec::kHeaderBytes + 4 * b, 4);
      const int64_t m = std::min(bucket, c.n - b * bucket);
      const float expected = documented_l2_norm(v.data_ptr<float>() + b * bucket, m);
      ASSERT_EQ(std::memcmp(&norm, &expected, 4), 0)
          << c.name << " bucket " << b << ": " << norm << " vs " << expected;
    }
  }
}

// FNV-1a of every reference message (seed 7, stream 3), measured when the canonical norm order
// was introduced.
const std::map<std::string, uint64_t>& pinned() {
  static const std::map<std::string, uint64_t> kPinned = {
#include "codec_reference_hashes.inc"
  };
  return kPinned;
}

// With both CPU kernel choices: the AVX2 kernels (where this CPU has AVX2) and the portable
// paths that a CPU without it takes.
TEST(CodecReference, MessagesAreThePinnedBytes) {
  int missing = 0;
  for (const auto& c : reference_cases()) {
    const torch::Tensor v = reference_input(c.n, c.seed);
    const Codec codec = make_codec(c, v);
    const uint64_t hash = saddle::testing::message_hash(codec.encode(v, 7, 3));
    const auto it = pinned().find(c.name);
    if (it == pinned().end()) {
      std::printf("    {\"%s\", 0x%016" PRIx64 "ULL},\n", c.name.c_str(), hash);
      ++missing;
      continue;
    }
    EXPECT_EQ(hash, it->second) << c.name << ": the encoder's bytes changed";
    saddle::testing::ReferenceCase portable = c;
    portable.options.cpu_kernels(saddle::CpuKernels::kPortable);
    EXPECT_EQ(saddle::testing::message_hash(make_codec(portable, v).encode(v, 7, 3)), it->second)
        << c.name << ": the portable kernels' bytes differ";
  }
  EXPECT_EQ(missing, 0) << "cases without pinned bytes (printed above)";
  EXPECT_EQ(pinned().size(), reference_cases().size());
}

// The CUDA register encoder's level search and symbol (quantize_math.h's FewLevels and
// symbol_of) against level_bracket and make_symbol, which the CPU encoder's arithmetic follows:
// every level set of at most 8 levels that the table's quantizers make (fixed, and fitted to an
// input), and random increasing sets, probed at each level, just beside it, between, at 0, 1 and
// NaN. The GPU test (test_cuda.cpp) checks the kernel's bytes; this checks the search on any
// machine.
TEST(CodecReference, TheGpuLevelSearchIsTheCpus) {
  using saddle::quant_detail::FewLevels;
  std::vector<std::vector<float>> sets;
  const torch::Tensor v = reference_input(4096, 5);
  for (const char* quantizer : {"qsgd", "nuq", "alq", "amq"}) {
    for (int bits : {2, 3, 4}) {
      Codec codec(saddle::CodecOptions().quantizer(quantizer).bits(bits));
      if (codec.adaptive()) codec.adapt(codec.statistics(v));
      ASSERT_LE(codec.levels().size(), size_t{FewLevels::kMaxCount}) << quantizer << bits;
      sets.push_back(codec.levels());
    }
  }
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (int count = 2; count <= FewLevels::kMaxCount; ++count) {
    for (int draw = 0; draw < 20; ++draw) {
      std::vector<float> levels = {0.0f, 1.0f};
      while (static_cast<int>(levels.size()) < count) levels.push_back(unit(rng));
      std::sort(levels.begin(), levels.end());
      if (std::adjacent_find(levels.begin(), levels.end()) == levels.end()) sets.push_back(levels);
    }
  }
  const float inf = std::numeric_limits<float>::infinity();
  int64_t probes = 0;
  for (const auto& levels : sets) {
    const int count = static_cast<int>(levels.size());
    const FewLevels few(levels.data(), count);
    std::vector<float> rs = {0.0f, 1.0f, 0.5f, std::numeric_limits<float>::quiet_NaN()};
    for (float level : levels) {
      rs.insert(rs.end(), {level, std::nextafter(level, -inf), std::nextafter(level, inf)});
    }
    for (int k = 0; k < 50; ++k) rs.push_back(unit(rng));
    for (float r : rs) {
      if (r < 0.0f || r > 1.0f) continue;  // the encoder's r is |x| / norm clamped to 1
      ++probes;
      ASSERT_EQ(few.bracket(r), saddle::quant_detail::level_bracket(levels.data(), count, r))
          << "r = " << r << " among " << count << " levels";
    }
  }
  EXPECT_GT(probes, 2000);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int bits = 1; bits <= 8; ++bits) {
    for (int idx = 0; idx < 1 << (bits - 1); ++idx) {
      for (float x : {1.5f, -1.5f, 0.0f, -0.0f, nan, -nan, inf, -inf}) {
        ASSERT_EQ(saddle::quant_detail::symbol_of(idx, x, 1u << (bits - 1)),
                  saddle::quant_detail::make_symbol(idx, saddle::quant_detail::float_bits(x), bits))
            << "idx " << idx << ", bits " << bits << ", x " << x;
      }
    }
  }
}

}  // namespace
