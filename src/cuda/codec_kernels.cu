// The codec's CUDA kernels; see codec_kernels.h. Every arithmetic step follows
// src/quant/quantize_math.h, compiled with --fmad=false so that no multiply-add is contracted.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstring>

#include "cuda/codec_kernels.h"
#include "quant/quantize_math.h"

namespace saddle::cuda_kernels {

namespace {

using quant_detail::BucketScale;
using quant_detail::kNormLanes;

constexpr int kThreads = kNormLanes;  // one block sums one bucket in the canonical order
constexpr int kMaxLevels = 128;       // 2^(8 - 1)
constexpr int kMaxBlocks = 65535;

thread_local cudaError_t last_status = cudaSuccess;

void record_launch() {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess && last_status == cudaSuccess) last_status = status;
}

int blocks_for(int64_t work, int64_t per_block) {
  const int64_t blocks = (work + per_block - 1) / per_block;
  return static_cast<int>(blocks < 1 ? 1 : blocks > kMaxBlocks ? kMaxBlocks : blocks);
}

__device__ float load_float(const uint8_t* p) {
  float x;
  memcpy(&x, p, sizeof x);  // messages after the first need not be 4-byte aligned
  return x;
}

// The levels and 1 / gaps in shared memory, loaded by every block.
struct SharedLevels {
  float levels[kMaxLevels];
  float inv_gap[kMaxLevels];
};

__device__ void load_levels(const QuantConfig& q, SharedLevels& s) {
  for (int k = threadIdx.x; k < q.count; k += blockDim.x) {
    s.levels[k] = q.levels[k];
    s.inv_gap[k] = q.inv_gap[k];
  }
}

// The norm of the bucket x[0, m) in the canonical order (quantize_math.h): thread l is lane l.
// Every thread of the block gets the result. Non-finite values and float32 overflow are reported
// with the bucket's first coordinate; the norm is then 0 (the message is discarded anyway).
__device__ float block_norm(const float* __restrict__ x, int64_t m, bool linf, int64_t first,
                            DeviceErrors* errors) {
  __shared__ float lanes[kThreads];
  __shared__ double wide[kThreads];
  __shared__ int bad;
  const int l = threadIdx.x;
  if (l == 0) bad = 0;
  __syncthreads();
  double total;
  if (linf) {
    float acc = 0.0f;
    bool nonfinite = false;
    for (int64_t i = l; i < m; i += kThreads) {
      const float a = fabsf(x[i]);
      nonfinite |= !(a <= 3.402823466e38f);
      acc = fmaxf(acc, a);
    }
    if (nonfinite) atomicOr(&bad, 1);
    lanes[l] = acc;
    __syncthreads();
    for (int h = kThreads / 2; h >= 1; h /= 2) {
      if (l < h) lanes[l] = fmaxf(lanes[l], lanes[l + h]);
      __syncthreads();
    }
    total = bad ? __longlong_as_double(0x7ff8000000000000LL) : lanes[0];
  } else {
    float acc = 0.0f;
    for (int64_t i = l; i < m; i += kThreads) {
      const float t = x[i];
      acc = acc + t * t;
    }
    lanes[l] = acc;
    __syncthreads();
    for (int h = kThreads / 2; h >= 1; h /= 2) {
      if (l < h) lanes[l] = lanes[l] + lanes[l + h];
      __syncthreads();
    }
    total = lanes[0];
    if (!quant_detail::sum_in_safe_range(total)) {  // the same for every thread of the block
      double dacc = 0.0;
      for (int64_t i = l; i < m; i += kThreads) {
        const double t = x[i];
        dacc = dacc + t * t;
      }
      wide[l] = dacc;
      __syncthreads();
      for (int h = kThreads / 2; h >= 1; h /= 2) {
        if (l < h) wide[l] = wide[l] + wide[l + h];
        __syncthreads();
      }
      total = wide[0];
    }
    total = sqrt(total);
  }
  __syncthreads();  // lanes and wide are reused by the next bucket
  // As bucket_norm in kernels.cpp: NaN or infinity, else a norm that float32 cannot hold.
  const bool nonfinite = !quant_detail::finite(total);
  const bool overflow = !nonfinite && !(static_cast<float>(total) <= 3.4e38f);
  if (l == 0 && nonfinite) atomicMin(&errors->non_finite, static_cast<unsigned long long>(first));
  if (l == 0 && overflow) atomicMin(&errors->overflow, static_cast<unsigned long long>(first));
  return nonfinite || overflow ? 0.0f : static_cast<float>(total);
}

// The symbol of coordinate i (global index) of value x, in a bucket scaled by `sc`.
__device__ uint8_t quantize(float x, int64_t i, const QuantConfig& q, const BucketScale& sc,
                            const SharedLevels& s, uint32_t key) {
  const float u = detail::uniform24(static_cast<uint32_t>(i), key);
  if (q.uniform) {
    return sc.wide
               ? quant_detail::quantize_uniform_one<double>(x, sc.precise, q.count - 1, q.bits, u)
               : quant_detail::quantize_uniform_one<float>(x, sc.narrow, q.count - 1, q.bits, u);
  }
  return sc.wide ? quant_detail::quantize_levels_one<double>(x, sc.precise, s.levels, s.inv_gap,
                                                             q.count, q.bits, u)
                 : quant_detail::quantize_levels_one<float>(x, sc.narrow, s.levels, s.inv_gap,
                                                            q.count, q.bits, u);
}

// The stream's key for coordinate i: one per 2^32 coordinates.
__device__ uint32_t key_for(const QuantConfig& q, int64_t i) {
  return detail::block_key(q.seed, q.stream, static_cast<uint64_t>(i) >> 32);
}

// One block per bucket (grid-stride): the norm, then every coordinate's symbol, packed into the
// bitstream (kPack) or written as bytes. Packed words that a bucket shares with its neighbours
// are combined with atomicOr into the zeroed output; the others are plain stores.
template <bool kPack>
__global__ void __launch_bounds__(kThreads)
    encode_kernel(const float* __restrict__ v, int64_t n, QuantConfig q, float* __restrict__ norms,
                  uint8_t* __restrict__ out, DeviceErrors* errors) {
  __shared__ SharedLevels s;
  __shared__ bool scale_wide;  // the bucket's BucketScale (no constructors in shared memory)
  __shared__ float scale_narrow;
  __shared__ double scale_precise;
  load_levels(q, s);
  const int64_t buckets = (n + q.bucket - 1) / q.bucket;
  for (int64_t b = blockIdx.x; b < buckets; b += gridDim.x) {
    const int64_t first = b * q.bucket;
    const int64_t m = q.bucket < n - first ? q.bucket : n - first;
    const float norm = block_norm(v + first, m, q.linf, first, errors);
    if (threadIdx.x == 0) {
      norms[b] = norm;
      const BucketScale sc = quant_detail::scale_for(norm, q.uniform, q.count);
      scale_wide = sc.wide;
      scale_narrow = sc.narrow;
      scale_precise = sc.precise;
    }
    __syncthreads();
    BucketScale sc;
    sc.wide = scale_wide;
    sc.narrow = scale_narrow;
    sc.precise = scale_precise;
    const uint32_t key_first = key_for(q, first), key_last = key_for(q, first + m - 1);
    if (kPack) {
      const int64_t bits = q.bits;
      const int64_t bit_begin = first * bits, bit_end = (first + m) * bits;
      const int64_t w0 = bit_begin >> 5, w1 = (bit_end - 1) >> 5;
      auto* words = reinterpret_cast<unsigned int*>(out);
      for (int64_t w = w0 + threadIdx.x; w <= w1; w += blockDim.x) {
        const int64_t lo = w * 32, hi = lo + 32;
        int64_t i_begin = lo / bits, i_end = (hi + bits - 1) / bits;
        i_begin = i_begin < first ? first : i_begin;
        i_end = i_end > first + m ? first + m : i_end;
        unsigned int word = 0;
        for (int64_t i = i_begin; i < i_end; ++i) {
          const uint32_t key =
              (static_cast<uint64_t>(i) >> 32) == (static_cast<uint64_t>(first) >> 32) ? key_first
                                                                                       : key_last;
          const unsigned int sym = quantize(v[i], i, q, sc, s, key);
          const int64_t offset = i * bits - lo;
          word |= offset >= 0 ? sym << offset : sym >> -offset;
        }
        if (lo >= bit_begin && hi <= bit_end) {
          words[w] = word;
        } else {
          atomicOr(&words[w], word);
        }
      }
    } else {
      for (int64_t i = first + threadIdx.x; i < first + m; i += blockDim.x) {
        const uint32_t key =
            (static_cast<uint64_t>(i) >> 32) == (static_cast<uint64_t>(first) >> 32) ? key_first
                                                                                     : key_last;
        out[i] = quantize(v[i], i, q, sc, s, key);
      }
    }
    __syncthreads();  // the scale is rewritten by the next bucket
  }
}

__global__ void reset_errors_kernel(DeviceErrors* errors) {
  errors->non_finite = kNoError;
  errors->overflow = kNoError;
}

__global__ void check_norms_kernel(Messages messages, int64_t buckets, int* bad) {
  const int64_t total = buckets * messages.count;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(k / buckets);
    const int64_t b = k - r * buckets;
    const float norm = load_float(messages.base + r * messages.stride + 32 + 4 * b);
    if (!(norm >= 0.0f && norm <= 3.402823466e38f)) bad[r] = 1;
  }
}

// The symbol of coordinate i from an LSB-first bitstream (reads only the bytes it covers).
__device__ unsigned int unpack(const uint8_t* __restrict__ packed, int64_t i, int bits) {
  const int64_t bit = i * bits;
  const int64_t byte = bit >> 3;
  const int shift = static_cast<int>(bit & 7);
  unsigned int x = packed[byte] >> shift;
  if (shift + bits > 8) x |= static_cast<unsigned int>(packed[byte + 1]) << (8 - shift);
  return x & ((1u << bits) - 1u);
}

// weight * norm * level, negated for the upper half of the symbols: the CPU's per-bucket table.
__device__ float decoded(unsigned int sym, float weight, float norm, const QuantConfig& q,
                         const SharedLevels& s) {
  const unsigned int half = 1u << (q.bits - 1);
  const unsigned int k = sym & (half - 1u);
  const float magnitude = (weight * norm) * s.levels[k];
  return sym >= half ? -magnitude : magnitude;
}

__global__ void decode_fixed_kernel(Messages messages, int64_t n, QuantConfig q, float weight,
                                    float* __restrict__ out) {
  __shared__ SharedLevels s;
  load_levels(q, s);
  __syncthreads();
  const int64_t buckets = (n + q.bucket - 1) / q.bucket;
  const int64_t body = 32 + 4 * buckets;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / q.bucket;
    float acc = 0.0f;
    for (int r = 0; r < messages.count; ++r) {
      const uint8_t* m = messages.base + r * messages.stride;
      const float norm = load_float(m + 32 + 4 * b);
      acc = acc + decoded(unpack(m + body, i, q.bits), weight, norm, q, s);
    }
    out[i] = acc;
  }
}

__global__ void decode_cast_kernel(Messages messages, int64_t n, int kind, float weight,
                                   float* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float acc = 0.0f;
    for (int r = 0; r < messages.count; ++r) {
      const uint8_t* body = messages.base + r * messages.stride + 32;
      float x;
      if (kind == 0) {
        x = load_float(body + 4 * i);
      } else {
        uint16_t bits;
        memcpy(&bits, body + 2 * i, 2);
        x = kind == 1 ? __half2float(__ushort_as_half(bits))
                      : __uint_as_float(static_cast<unsigned int>(bits) << 16);
      }
      acc = acc + weight * x;
    }
    out[i] = acc;
  }
}

__global__ void __launch_bounds__(kThreads)
    statistics_kernel(const float* __restrict__ v, int64_t n, QuantConfig q, double* stats,
                      int64_t bins, DeviceErrors* errors) {
  const int64_t buckets = (n + q.bucket - 1) / q.bucket;
  for (int64_t b = blockIdx.x; b < buckets; b += gridDim.x) {
    const int64_t first = b * q.bucket;
    const int64_t m = q.bucket < n - first ? q.bucket : n - first;
    const float norm = block_norm(v + first, m, q.linf, first, errors);
    if (norm == 0.0f) continue;  // the same for the whole block
    const double weight = static_cast<double>(norm) * norm, inv = 1.0 / norm;
    for (int64_t i = first + threadIdx.x; i < first + m; i += blockDim.x) {
      double r = fabsf(v[i]) * inv;
      r = r < 1.0 ? r : 1.0;
      int64_t k = static_cast<int64_t>(sqrt(r) * bins);
      k = k < bins - 1 ? k : bins - 1;
      atomicAdd(stats + k, weight);
      atomicAdd(stats + bins + k, weight * r);
      atomicAdd(stats + 2 * bins + k, weight * r * r);
    }
  }
}

}  // namespace

void reset_errors(DeviceErrors* errors, cudaStream_t stream) {
  reset_errors_kernel<<<1, 1, 0, stream>>>(errors);
  record_launch();
}

void encode_fixed(const float* v, int64_t n, const QuantConfig& q, float* norms, uint8_t* packed,
                  DeviceErrors* errors, cudaStream_t stream) {
  const int64_t words = (n * q.bits + 31) / 32;
  if (words > 0 && cudaMemsetAsync(packed, 0, words * 4, stream) != cudaSuccess) record_launch();
  if (n == 0) return;
  encode_kernel<true>
      <<<blocks_for(n, q.bucket), kThreads, 0, stream>>>(v, n, q, norms, packed, errors);
  record_launch();
}

void quantize_symbols(const float* v, int64_t n, const QuantConfig& q, float* norms,
                      uint8_t* symbols, DeviceErrors* errors, cudaStream_t stream) {
  if (n == 0) return;
  encode_kernel<false>
      <<<blocks_for(n, q.bucket), kThreads, 0, stream>>>(v, n, q, norms, symbols, errors);
  record_launch();
}

void check_norms(const Messages& messages, int64_t buckets, int* bad, cudaStream_t stream) {
  if (cudaMemsetAsync(bad, 0, sizeof(int) * messages.count, stream) != cudaSuccess) record_launch();
  if (buckets == 0 || messages.count == 0) return;
  check_norms_kernel<<<blocks_for(buckets * messages.count, 256), 256, 0, stream>>>(messages,
                                                                                    buckets, bad);
  record_launch();
}

void decode_average_fixed(const Messages& messages, int64_t n, const QuantConfig& q, float weight,
                          float* out, cudaStream_t stream) {
  if (n == 0) return;
  decode_fixed_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(messages, n, q, weight, out);
  record_launch();
}

void decode_average_cast(const Messages& messages, int64_t n, int kind, float weight, float* out,
                         cudaStream_t stream) {
  if (n == 0) return;
  decode_cast_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(messages, n, kind, weight, out);
  record_launch();
}

void accumulate_statistics(const float* v, int64_t n, const QuantConfig& q, double* stats,
                           int64_t bins, DeviceErrors* errors, cudaStream_t stream) {
  if (n == 0) return;
  statistics_kernel<<<blocks_for(n, q.bucket), kThreads, 0, stream>>>(v, n, q, stats, bins, errors);
  record_launch();
}

const char* last_error() {
  const cudaError_t status = last_status;
  last_status = cudaSuccess;
  return status == cudaSuccess ? "" : cudaGetErrorString(status);
}

}  // namespace saddle::cuda_kernels
