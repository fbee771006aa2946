// Feeds arbitrary bytes to Codec::decode_accumulate: the first byte picks one of a few codec
// configurations, the rest is the message. saddle::Error is the expected answer to garbage; any
// other exception, crash or sanitizer report is a bug. With SADDLE_FUZZ_SEEDS=<dir> set, the
// first run writes one valid message per configuration into <dir> as a seed corpus.
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "saddle/error.h"
#include "saddle/quant/codec.h"

namespace {

using saddle::Codec;
using saddle::CodecOptions;
using saddle::CoderKind;
using saddle::NormKind;

constexpr int64_t kMaxCoordinates = 1 << 16;

const std::vector<Codec>& codecs() {
  static const std::vector<Codec> all = [] {
    std::vector<Codec> c;
    for (auto coder : {CoderKind::kFixed, CoderKind::kEntropy}) {
      c.emplace_back(CodecOptions().quantizer("qsgd").bits(4).bucket_size(64).coder(coder));
      c.emplace_back(CodecOptions().quantizer("nuq").bits(3).bucket_size(7).coder(coder));
      c.emplace_back(CodecOptions()
                         .quantizer("alq")
                         .bits(8)
                         .bucket_size(128)
                         .norm(NormKind::kLinf)
                         .coder(coder));
      c.emplace_back(CodecOptions().quantizer("terngrad").bucket_size(1).coder(coder));
    }
    c.emplace_back(CodecOptions().quantizer("none"));
    c.emplace_back(CodecOptions().quantizer("fp16"));
    c.emplace_back(CodecOptions().quantizer("bf16"));
    return c;
  }();
  return all;
}

void write_seeds(const char* dir) {
  torch::manual_seed(0);
  for (size_t k = 0; k < codecs().size(); ++k) {
    for (int64_t n : {0, 1, 100, 1000}) {
      const auto m = codecs()[k].encode(torch::randn({n}), k, n);
      std::ofstream f(std::string(dir) + "/seed_" + std::to_string(k) + "_" + std::to_string(n),
                      std::ios::binary);
      const char tag = static_cast<char>(k);
      f.write(&tag, 1);
      f.write(reinterpret_cast<const char*>(m.data_ptr<uint8_t>()), m.numel());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("SADDLE_FUZZ_SEEDS")) write_seeds(dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const Codec& codec = codecs()[data[0] % codecs().size()];
  // An exact-size copy, so AddressSanitizer flags any read past the message.
  auto message = torch::empty({static_cast<int64_t>(size - 1)}, torch::kUInt8);
  if (size > 1) std::memcpy(message.data_ptr<uint8_t>(), data + 1, size - 1);
  // Size the output as the header declares (when small), so inputs can get past the count check.
  int64_t n = 0;
  if (size - 1 >= static_cast<size_t>(Codec::kHeaderBytes)) {
    uint64_t count;
    std::memcpy(&count, data + 1 + 16, 8);
    n = count <= static_cast<uint64_t>(kMaxCoordinates) ? static_cast<int64_t>(count) : 0;
  }
  auto out = torch::zeros({n});
  try {
    codec.decode_accumulate(message, out, 1.0f);
  } catch (const saddle::Error&) {
  }
  return 0;
}
