// The Codec's CUDA path (src/quant/codec.cpp calls it in a CUDA build): tensors in, tensors out,
// on the input's device and its current stream, with the checks the kernels rely on. Errors that
// the kernels find (a non-finite value, a float32 overflow, a failed launch) are thrown as
// saddle::Error with the CPU encoder's wording.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace saddle::cuda_detail {

struct QuantSetup {
  int bits;
  int count;
  bool uniform;
  bool linf;
  int64_t bucket;
  bool register_encoder;  // CodecOptions::cuda_encoder is kRegister
  torch::Tensor tables;  // device float [2, count]: levels, 1 / gaps (undefined for casts)
};

// The whole message (header, norms, packed symbols) on v's device; `header` is its first 32 bytes.
torch::Tensor encode_fixed(const torch::Tensor& v, const QuantSetup& q, uint64_t seed,
                           uint64_t stream, int64_t first, const uint8_t* header,
                           int64_t message_bytes);
torch::Tensor encode_cast(const torch::Tensor& v, int kind, const uint8_t* header,
                          int64_t message_bytes);
// The entropy coder's input, on the CPU: norms float [buckets] and symbols uint8 [n].
void quantize_symbols(const torch::Tensor& v, const QuantSetup& q, uint64_t seed, uint64_t stream,
                      int64_t first, torch::Tensor* norms, torch::Tensor* symbols);

// `all` holds `count` messages of `stride` bytes back to back on a CUDA device.
// What the host checks before decoding, fetched in one copy: the 32-byte headers ([count * 32]
// uint8 on the CPU) and, for level quantizers (buckets >= 0) whose messages are long enough to
// hold their norms, the first message with a negative or non-finite bucket norm (-1 when none).
struct MessageFacts {
  torch::Tensor headers;
  bool norms_checked = false;
  int first_bad_norms = -1;
};
MessageFacts inspect_messages(const torch::Tensor& all, int count, int64_t stride, int64_t buckets);
void decode_average_fixed(const torch::Tensor& all, int count, int64_t stride, const QuantSetup& q,
                          float weight, torch::Tensor& out);
void decode_average_cast(const torch::Tensor& all, int count, int64_t stride, int kind,
                         float weight, torch::Tensor& out);

// The magnitude statistics of v (level_set.h), as a CPU float64 [3, bins] tensor.
torch::Tensor statistics(const torch::Tensor& v, const QuantSetup& q, int64_t bins);

}  // namespace saddle::cuda_detail
