// The codec's CUDA kernels (stage 2 of game -> exchange -> solver -> metrics), the device twins of
// src/quant/kernels.cpp: bucket norms + stochastic quantization + bit-packing in one launch,
// decoding + weighted accumulation of all K ranks' messages in one launch, and the adaptive
// levels' magnitude statistics. They follow quantize_math.h operation for operation, so a message
// encoded here is byte-identical to the CPU encoder's for the same input and seed (the rANS
// entropy coder stays on the CPU). Plain pointers and streams: no LibTorch header, compiled by nvcc
// alone; src/cuda/codec_cuda.cpp validates every size before calling in.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace saddle::cuda_kernels {

// The quantizer configuration for the device; `levels` and `inv_gap` point to device memory
// (`count` floats each, count <= 128; uniform sets pass their levels too, for decoding).
struct QuantConfig {
  int bits = 4;
  int count = 8;
  bool uniform = true;
  bool linf = false;  // bucket norm: L-inf instead of L2
  int64_t bucket = 1024;
  uint64_t seed = 0;
  uint64_t stream = 0;
  int64_t first = 0;  // the random stream's index of v[0] (Codec::encode's `first`)
  bool register_encoder = true;  // the register kernel where the bucket fits it (see below)
  const float* levels = nullptr;
  const float* inv_gap = nullptr;
};

// A message's 32-byte header, passed by value: written on the device without a copy from pageable
// host memory (which would wait for the device's queue).
struct HeaderBytes {
  unsigned char bytes[32];
};
void write_header(uint8_t* dst, const HeaderBytes& header, cudaStream_t stream);

// Errors found on the device, copied back by the caller: the first coordinate of the first
// bucket holding a non-finite value, and of the first whose norm overflows float32 (kNoError when
// none). `reset_errors` must run before the kernels that report into it.
constexpr unsigned long long kNoError = ~0ULL;
struct DeviceErrors {
  unsigned long long non_finite;
  unsigned long long overflow;
};
void reset_errors(DeviceErrors* errors, cudaStream_t stream);

// Fixed coder: writes buckets float norms to `norms` and the LSB-first bitstream of n symbols of
// `bits` bits to `packed`, which must be 4-byte aligned with at least ceil(n * bits / 32) * 4
// writable bytes (it is zeroed first; bits past n * bits stay zero).
//
// Two kernels write the same bytes: the block kernel (one block per bucket, any bucket size) and
// the register kernel (buckets of a multiple of 32 coordinates, at most 8192: the input read
// once, into registers, two barriers per bucket, the level search in registers for sets of at
// most 8 levels). The register kernel runs where q.register_encoder (CodecOptions::cuda_encoder,
// kRegister by default) asks for it and the bucket fits; Cuda.EncodersMatchTheCpuAtExtremeScales
// checks both against the CPU's bytes on a GPU, tests/emulated on the host (every build). On an
// H200 (4M floats, bucket 1024, 4 bits) it takes 26 us (ALQ) and 22 us (QSGD) against the block
// kernel's 35 and 28 (bench CudaEncode/<q>[/block]). quantize_symbols likewise.
void encode_fixed(const float* v, int64_t n, const QuantConfig& q, float* norms, uint8_t* packed,
                  DeviceErrors* errors, cudaStream_t stream);
// Entropy coder's input: the norms and one symbol byte per coordinate.
void quantize_symbols(const float* v, int64_t n, const QuantConfig& q, float* norms,
                      uint8_t* symbols, DeviceErrors* errors, cudaStream_t stream);

// `count` messages of `stride` bytes each, back to back from `base` (an allgather's output):
// message r starts at base + r * stride with the 32-byte header, then the norms (level
// quantizers) and the body.
struct Messages {
  const uint8_t* base = nullptr;
  int64_t stride = 0;
  int count = 0;
};
// bad[r] = 1 when a bucket norm of message r is negative or not finite (level quantizers).
void check_norms(const Messages& messages, int64_t buckets, int* bad, cudaStream_t stream);
// out[i] = sum over r in rank order of weight * decoded_r[i] (out is overwritten): the CPU's
// decode_accumulate of every message into a zeroed buffer, in one launch.
void decode_average_fixed(const Messages& messages, int64_t n, const QuantConfig& q, float weight,
                          float* out, cudaStream_t stream);
void decode_average_cast(const Messages& messages, int64_t n, int kind, float weight, float* out,
                         cudaStream_t stream);
// Adds v's magnitude statistics into stats ([3, bins] row-major doubles, see level_set.h), with
// atomic double additions: equal to the CPU's up to the order of the additions.
void accumulate_statistics(const float* v, int64_t n, const QuantConfig& q, double* stats,
                           int64_t bins, DeviceErrors* errors, cudaStream_t stream);

// The first error of the last launch on this thread ("" when none): the wrappers check it.
const char* last_error();

}  // namespace saddle::cuda_kernels
