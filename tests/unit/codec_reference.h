// Inputs and configurations for the codec's reference bytes, shared by the CPU test that pins them
// (test_codec_reference.cpp) and the GPU test that checks the CUDA encoder writes the same bytes
// (test_cuda.cpp). The inputs come from integer arithmetic only, so they are the same bits on every
// machine, whatever its CPU or libm.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "saddle/quant/codec.h"

namespace saddle::testing {

inline uint64_t reference_mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// n floats with a heavy tail: a uniform 24-bit mantissa in [-1, 1) times 2^e, e in [-12, 3];
// every tenth bucket-sized stretch holds values around 1e-25 (the norm's double-precision path).
inline torch::Tensor reference_input(int64_t n, uint64_t seed) {
  torch::Tensor v = torch::empty({n});
  float* x = v.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = reference_mix(seed * 1000003ULL + static_cast<uint64_t>(i));
    const float u = static_cast<float>(static_cast<int64_t>(r >> 40) - (1 << 23)) * 0x1p-23f;
    const int e = static_cast<int>((r >> 8) & 15) - 12;
    float value = std::ldexp(u, e);
    if ((i / 97) % 10 == 3) value = std::ldexp(u, -85);
    x[i] = value;
  }
  return v;
}

struct ReferenceCase {
  std::string name;
  CodecOptions options;
  int64_t n;
  uint64_t seed;
};

// Every quantizer of the table, with the bit widths, bucket sizes (1, odd, larger than the
// 256-lane norm, the default) and lengths that exercise the kernels' edges.
inline std::vector<ReferenceCase> reference_cases() {
  std::vector<ReferenceCase> cases;
  for (const auto& spec : quantizer_specs()) {
    const bool cast = spec.family == LevelFamily::kCast;
    for (int bits : cast ? std::vector<int>{4} : std::vector<int>{2, 3, 4, 5, 8}) {
      for (int64_t bucket : cast ? std::vector<int64_t>{1024} : std::vector<int64_t>{1, 97, 1024}) {
        for (auto coder : cast ? std::vector<CoderKind>{CoderKind::kFixed}
                               : std::vector<CoderKind>{CoderKind::kFixed, CoderKind::kEntropy}) {
          if (coder == CoderKind::kEntropy && (bucket != 97 || bits != 4)) continue;
          const int64_t n = bucket == 1 ? 333 : 3001;
          CodecOptions o =
              CodecOptions().quantizer(spec.name).bits(bits).bucket_size(bucket).coder(coder);
          const std::string name = std::string(spec.name) + "/b" + std::to_string(bits) + "/k" +
                                   std::to_string(bucket) + "/" + coder_name(coder);
          cases.push_back({name, o, n, 11 + cases.size()});
        }
      }
    }
  }
  return cases;
}

// 64-bit FNV-1a of a message's bytes.
inline uint64_t message_hash(const torch::Tensor& message) {
  const torch::Tensor m = message.to(torch::kCPU).contiguous();
  const auto* p = m.data_ptr<uint8_t>();
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int64_t i = 0; i < m.numel(); ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace saddle::testing
