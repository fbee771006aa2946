// The codec's CUDA kernels; see codec_kernels.h. Every arithmetic step follows
// src/quant/quantize_math.h, compiled with --fmad=false so that no multiply-add is contracted.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda/codec_kernels.h"
#include "quant/quantize_math.h"

// A kernel launch, SADDLE_LAUNCH(grid, block, stream, kernel)(arguments): kernel<<<...>>>, or,
// where tests/emulated/simt.h defines it, a run of the kernel's code on the host.
#ifndef SADDLE_LAUNCH
#define SADDLE_LAUNCH(grid, block, stream, ...) __VA_ARGS__<<<grid, block, 0, stream>>>
#endif

namespace saddle::cuda_kernels {

namespace {

using quant_detail::BucketScale;
using quant_detail::kNormLanes;

constexpr int kThreads = kNormLanes;  // one block sums one bucket in the canonical order
constexpr int kMaxLevels = 128;       // 2^(8 - 1)
constexpr int kMaxBlocks = 65535;
constexpr int kChunk = 2048;  // coordinates a block quantizes into shared memory at a time

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

struct Add {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// The block's pairwise tree over its threads' values in the canonical order (quantize_math.h):
// lane l += lane l + h for h = kThreads / 2, ..., 1. The steps h >= 32 go through shared memory,
// the last five through warp shuffles: lane l of warp 0 adds lane l + h's value, the same
// additions in the same order. Every thread gets the result.
template <typename T, typename Op>
__device__ T block_tree(T* lanes, T value, Op op) {
  const int l = threadIdx.x;
  lanes[l] = value;
  __syncthreads();
  for (int h = kThreads / 2; h >= 32; h /= 2) {
    if (l < h) lanes[l] = op(lanes[l], lanes[l + h]);
    __syncthreads();
  }
  if (l < 32) {
    T v = lanes[l];
    for (int h = 16; h >= 1; h /= 2) v = op(v, __shfl_down_sync(0xffffffffu, v, h));
    if (l == 0) lanes[0] = v;
  }
  __syncthreads();
  const T total = lanes[0];
  __syncthreads();  // lanes are written again by the next call
  return total;
}

// As bucket_norm in kernels.cpp: a NaN or infinite `total` (the L2 norm, or the L-inf norm already
// mapped to NaN when not finite), else a norm that float32 cannot hold, is reported (by the thread
// that says `report`) with the bucket's first coordinate, and the norm is then 0.
__device__ float checked_norm(double total, int64_t first, DeviceErrors* errors, bool report) {
  const bool nonfinite = !quant_detail::finite(total);
  const bool overflow = !nonfinite && !(static_cast<float>(total) <= 3.4e38f);
  if (report && nonfinite) atomicMin(&errors->non_finite, static_cast<unsigned long long>(first));
  if (report && overflow) atomicMin(&errors->overflow, static_cast<unsigned long long>(first));
  return nonfinite || overflow ? 0.0f : static_cast<float>(total);
}

// The norm of the bucket x[0, m) in the canonical order (quantize_math.h): thread l is lane l.
// Every thread of the block gets the result. Non-finite values and float32 overflow are reported
// with the bucket's first coordinate; the norm is then 0 (the message is discarded anyway).
__device__ float block_norm(const float* __restrict__ x, int64_t m, bool linf, int64_t first,
                            DeviceErrors* errors) {
  __shared__ float lanes[kThreads];
  __shared__ double wide[kThreads];
  const int l = threadIdx.x;
  double total;
  if (linf) {
    float acc = 0.0f;
    for (int64_t i = l; i < m; i += kThreads) {
      const float a = fabsf(x[i]);
      // A NaN or infinity makes the lane infinite, so the maximum is too (fmaxf drops NaNs).
      acc = a <= 3.402823466e38f ? fmaxf(acc, a) : __int_as_float(0x7f800000);
    }
    const float top = block_tree(lanes, acc, Max());
    total = top <= 3.402823466e38f ? top : __longlong_as_double(0x7ff8000000000000LL);
  } else {
    float acc = 0.0f;
    for (int64_t i = l; i < m; i += kThreads) {
      const float t = x[i];
      acc = acc + t * t;
    }
    total = block_tree(lanes, acc, Add());
    if (!quant_detail::sum_in_safe_range(total)) {  // the same for every thread of the block
      double dacc = 0.0;
      for (int64_t i = l; i < m; i += kThreads) {
        const double t = x[i];
        dacc = dacc + t * t;
      }
      total = block_tree(wide, dacc, Add());
    }
    total = sqrt(total);
  }
  return checked_norm(total, first, errors, l == 0);
}

// The symbol of coordinate i (global index) of value x, in a bucket scaled by `sc`.
__device__ uint8_t quantize(float x, int64_t i, const QuantConfig& q, const BucketScale& sc,
                            const SharedLevels& s, uint32_t key) {
  const float u = detail::uniform24(static_cast<uint32_t>(q.first + i), key);
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

// The stream's key for coordinate i of v: one per 2^32 indices of the stream (index q.first + i).
__device__ uint32_t key_for(const QuantConfig& q, int64_t i) {
  return detail::block_key(q.seed, q.stream, static_cast<uint64_t>(q.first + i) >> 32);
}

// Packs the symbols of coordinates [c0, c0 + count) (symbols[j] is coordinate c0 + j's) into the
// LSB-first bitstream `words`: each thread assembles whole 32-bit words. A word that this range
// shares with the one before or after is combined with atomicOr into the zeroed stream; the others
// (all of them when every range starts on a word boundary) are plain stores.
__device__ void pack_range(const uint8_t* symbols, int64_t c0, int count, int bits,
                           int64_t total_bits, unsigned int* __restrict__ words) {
  const int64_t bit_begin = c0 * bits, bit_end = bit_begin + static_cast<int64_t>(count) * bits;
  const int64_t w0 = bit_begin >> 5, w1 = (bit_end - 1) >> 5;
  const int range_bits = count * bits;
  for (int64_t w = w0 + threadIdx.x; w <= w1; w += kThreads) {
    const int rel = static_cast<int>(w * 32 - bit_begin);  // the word's first bit, from c0's
    const int j_begin = rel <= 0 ? 0 : rel / bits;
    int j_end = (rel + 32 + bits - 1) / bits;
    j_end = j_end < count ? j_end : count;
    unsigned int word = 0;
    for (int j = j_begin; j < j_end; ++j) {
      const int offset = j * bits - rel;
      const unsigned int sym = symbols[j];
      word |= offset >= 0 ? sym << offset : sym >> -offset;
    }
    const bool shared = rel < 0 || (rel + 32 > range_bits && bit_end < total_bits);
    if (shared) {
      atomicOr(&words[w], word);
    } else {
      words[w] = word;
    }
  }
}

// Buckets the register kernel (below) does not take, of any length: one block per bucket
// (grid-stride): the norm, then the bucket's symbols, kChunk coordinates at a time: every thread
// quantizes coordinates (coalesced reads), and the symbols are packed from shared memory (kPack) or
// written as bytes.
template <bool kPack>
__global__ void __launch_bounds__(kThreads)
    encode_kernel(const float* __restrict__ v, int64_t n, QuantConfig q, float* __restrict__ norms,
                  uint8_t* __restrict__ out, DeviceErrors* errors) {
  __shared__ SharedLevels s;
  __shared__ bool scale_wide;  // the bucket's BucketScale (no constructors in shared memory)
  __shared__ float scale_narrow;
  __shared__ double scale_precise;
  __shared__ uint8_t symbols[kChunk];
  load_levels(q, s);  // block_norm synchronizes before the levels are read
  const int64_t buckets = (n + q.bucket - 1) / q.bucket;
  const int64_t total_bits = n * q.bits;
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
    for (int64_t c0 = first; c0 < first + m; c0 += kChunk) {
      const int count = static_cast<int>(first + m - c0 < kChunk ? first + m - c0 : kChunk);
      for (int j = threadIdx.x; j < count; j += kThreads) {
        const int64_t i = c0 + j;
        const uint32_t key =
            static_cast<uint64_t>(q.first + i) >> 32 == static_cast<uint64_t>(q.first + first) >> 32
                ? key_first
                : key_last;
        const uint8_t sym = quantize(v[i], i, q, sc, s, key);
        if (kPack) {
          symbols[j] = sym;
        } else {
          out[i] = sym;
        }
      }
      if (kPack) {
        __syncthreads();
        pack_range(symbols, c0, count, q.bits, total_bits, reinterpret_cast<unsigned int*>(out));
        __syncthreads();  // the symbols are rewritten by the next chunk
      }
    }
    __syncthreads();  // the scale is rewritten by the next bucket
  }
}

// The register kernel, for buckets that are a multiple of 32 coordinates and at most kThreads * R
// long: thread l holds its canonical lane's coordinates l, l + kThreads, ... of the bucket in
// registers, read once. Two barriers per bucket: the lanes' partial norms go through shared memory
// to warp 0, which finishes the tree in registers and shuffles; then each warp quantizes its rows
// of 32 coordinates and packs a row's 32 * bits bits (whole words, since the bucket starts on a
// word boundary) with shuffles, its first `bits` lanes storing the words. Every word of the
// stream is written once, so nothing is zeroed first. What is the same for the whole launch (the
// bucket count, the random stream's keys, the level search's first step) comes from the host, so
// a coordinate costs its load, its share of the norm, one draw, the level search and its share of
// the packing.
static_assert(kThreads == 256, "warp_tree folds 256 lanes in one warp");

// lanes[0, 256) folded in block_tree's canonical order by warp 0 alone: lane t holds lanes t + 32k
// (k < 8) and folds h = 128, 64, 32 in registers, then h = 16, ..., 1 by shuffles. Lane 0 gets
// the result.
template <typename T, typename Op>
__device__ T warp_tree(const T* lanes, Op op) {
  const int t = threadIdx.x;
  T s[8];
#pragma unroll
  for (int k = 0; k < 8; ++k) s[k] = lanes[t + 32 * k];
#pragma unroll
  for (int k = 0; k < 4; ++k) s[k] = op(s[k], s[k + 4]);
  s[0] = op(s[0], s[2]);
  s[1] = op(s[1], s[3]);
  s[0] = op(s[0], s[1]);
  for (int h = 16; h >= 1; h /= 2) s[0] = op(s[0], __shfl_down_sync(0xffffffffu, s[0], h));
  return s[0];
}

__device__ unsigned int warp_or(unsigned int part) {
#if __CUDA_ARCH__ >= 800
  return __reduce_or_sync(0xffffffffu, part);
#else
  for (int h = 16; h >= 1; h /= 2) part |= __shfl_xor_sync(0xffffffffu, part, h);
  return part;
#endif
}

// What the register kernel takes from the host, the same for every bucket of a launch.
struct RowsSetup {
  int64_t buckets = 0;
  int64_t total_words = 0;      // of the packed stream
  uint64_t block0 = 0;          // the random stream's 2^32-block of v[0]
  uint32_t key0 = 0, key1 = 0;  // the keys of blocks block0 and block0 + 1
  int top = 0;         // the largest power of two <= count - 2, or 0: the level search's first step
  int log2_bits = -1;  // log2(bits) where bits is a power of two, else -1
};

RowsSetup rows_setup(int64_t n, const QuantConfig& q) {
  RowsSetup rs;
  rs.buckets = (n + q.bucket - 1) / q.bucket;
  rs.total_words = (n * q.bits + 31) / 32;
  rs.block0 = static_cast<uint64_t>(q.first) >> 32;
  rs.key0 = detail::block_key(q.seed, q.stream, rs.block0);
  rs.key1 = detail::block_key(q.seed, q.stream, rs.block0 + 1);
  while (rs.top * 2 <= q.count - 2) rs.top = rs.top == 0 ? 1 : rs.top * 2;
  if ((q.bits & (q.bits - 1)) == 0) rs.log2_bits = __builtin_ctz(static_cast<unsigned>(q.bits));
  return rs;
}

// The key of the stream's 2^32-block `block` (key_for's): from the host's two, or computed for a
// vector past 2^33 coordinates.
__device__ uint32_t key_of_block(const QuantConfig& q, const RowsSetup& rs, uint64_t block) {
  return block == rs.block0       ? rs.key0
         : block == rs.block0 + 1 ? rs.key1
                                  : detail::block_key(q.seed, q.stream, block);
}

// A warp's row of 32 symbols (lane j holds the row's coordinate j) packed into `bits` LSB-first
// words with shuffles: lane k < bits gets word k. Called by the whole warp. The constants that
// depend only on the lane and on `bits` are the thread's, computed once.
struct RowPacker {
  int bits = 4;
  bool pow2 = true;    // 1, 2, 4, 8 bits: a word holds the symbols of `per` whole lanes
  unsigned shift = 0;  // where the lane's symbol goes in its word
  int source = 0;      // the lane that ends up with the word this lane stores
  bool step[5] = {};   // the butterfly's steps 1, 2, 4, 8, 16 that `per` takes
  int lane = 0;

  __device__ RowPacker(int bits_, int log2_bits, int lane_) : bits(bits_), lane(lane_) {
    pow2 = log2_bits >= 0;
    if (pow2) {
      const int per = 32 >> log2_bits;
      shift = (lane << log2_bits) & 31;
      source = (lane & (bits - 1)) * per;
#pragma unroll
      for (int h = 0; h < 5; ++h) step[h] = (1 << h) < per;
    }
  }
  __device__ unsigned int operator()(unsigned int sym) const {
    if (pow2) {
      unsigned int word = sym << shift;
#pragma unroll
      for (int h = 0; h < 5; ++h) {
        if (step[h]) word |= __shfl_xor_sync(0xffffffffu, word, 1 << h);
      }
      return __shfl_sync(0xffffffffu, word, source);
    }
    unsigned int mine = 0;  // 3, 5, 6, 7 bits: symbols straddle words
    for (int k = 0; k < bits; ++k) {
      const int offset = lane * bits - 32 * k;  // the symbol's first bit in word k
      const unsigned int part = offset >= 32 || offset <= -bits ? 0u
                                : offset >= 0                   ? sym << offset
                                                                : sym >> -offset;
      const unsigned int word = warp_or(part);
      if (lane == k) mine = word;
    }
    return mine;
  }
};

// The largest j <= count - 2 with levels[j] <= r, as quantize_math.h's level_bracket, in the
// halvings from `top` down (unrolled; the steps above `top` are skipped alike by every thread).
__device__ int bracket_fixed(const float* levels, int count, int top, float r) {
  int j = 0;
#pragma unroll
  for (int step = kMaxLevels / 2; step > 0; step /= 2) {
    if (step <= top) {
      const int k = j + step;
      if (k <= count - 2 && levels[k] <= r) j = k;
    }
  }
  return j;
}

// How the register kernel finds a coordinate's level: uniform levels by arithmetic
// (quantize_uniform_one), at most 8 levels by quant_detail::FewLevels, more by bracket_fixed in
// shared memory.
enum RowsMode : int { kRowsUniform, kRowsFew, kRowsSearch };

template <int R, bool kPack, int kMode>
__global__ void __launch_bounds__(kThreads)
    encode_rows_kernel(const float* __restrict__ v, int64_t n, QuantConfig q, RowsSetup rs,
                       float* __restrict__ norms, uint8_t* __restrict__ out, DeviceErrors* errors) {
  __shared__ SharedLevels s;
  __shared__ float lanes[kThreads];
  __shared__ double wide[kThreads];
  __shared__ int scale_state;  // 0: narrow scale, 1: wide scale, 2: the norm needs the double sum
  __shared__ float scale_narrow;
  __shared__ double scale_precise;
  if (kMode != kRowsUniform) load_levels(q, s);  // the first barrier comes before they are read
  const int l = threadIdx.x, lane = l % 32, warp = l / 32;
  const quant_detail::FewLevels few(q.levels, kMode == kRowsFew ? q.count : 0);
  const RowPacker pack(q.bits, rs.log2_bits, lane);
  const unsigned int sign_bit = 1u << (q.bits - 1);
  auto* words = reinterpret_cast<unsigned int*>(out);
  // By lane 0 of warp 0: the bucket's norm from its total, stored, and its scale shared.
  auto finish = [&](double total, int64_t b, int64_t first) {
    const float norm = checked_norm(total, first, errors, true);
    norms[b] = norm;
    const BucketScale sc = quant_detail::scale_for(norm, q.uniform, q.count);
    scale_state = sc.wide ? 1 : 0;
    scale_narrow = sc.narrow;
    scale_precise = sc.precise;
  };
  for (int64_t b = blockIdx.x; b < rs.buckets; b += gridDim.x) {
    const int64_t first = b * q.bucket;
    const int m = static_cast<int>(q.bucket < n - first ? q.bucket : n - first);
    const bool whole = m == R * kThreads;  // every thread holds R coordinates: no bounds checks
    const float* __restrict__ p = v + first + l;
    float x[R];
#pragma unroll
    for (int r = 0; r < R; ++r) x[r] = whole || l + r * kThreads < m ? p[r * kThreads] : 0.0f;
    // The lane's part of the norm (the zeros past m change nothing), then the tree.
    float acc = 0.0f;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (q.linf) {
        const float a = fabsf(x[r]);
        acc = a <= 3.402823466e38f ? fmaxf(acc, a) : __int_as_float(0x7f800000);
      } else {
        acc = acc + x[r] * x[r];
      }
    }
    lanes[l] = acc;
    __syncthreads();
    if (warp == 0) {
      if (q.linf) {
        const float top_value = warp_tree(lanes, Max());
        const double total =
            top_value <= 3.402823466e38f ? top_value : __longlong_as_double(0x7ff8000000000000LL);
        if (lane == 0) finish(total, b, first);
      } else {
        const double sum = warp_tree(lanes, Add());
        const bool safe = quant_detail::sum_in_safe_range(sum);
        if (lane == 0 && safe) finish(sqrt(sum), b, first);
        if (lane == 0 && !safe) scale_state = 2;
      }
    }
    __syncthreads();
    if (scale_state == 2) {  // the same for the whole block: the same order in double
      double dacc = 0.0;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const double t = x[r];
        dacc = dacc + t * t;
      }
      wide[l] = dacc;
      __syncthreads();
      if (warp == 0) {
        const double sum = warp_tree(wide, Add());
        if (lane == 0) finish(sqrt(sum), b, first);
      }
      __syncthreads();
    }
    const bool wide_scale = scale_state == 1;
    const float narrow = scale_narrow;
    const double precise = scale_precise;
    // The stream's counter is the coordinate's index mod 2^32; its key changes where the counter
    // wraps (at most once in a bucket).
    const uint64_t at = static_cast<uint64_t>(q.first + first);
    const uint32_t c0 = static_cast<uint32_t>(at);
    const uint32_t key_first = key_of_block(q, rs, at >> 32);
    const uint32_t key_last = key_of_block(q, rs, (at + m - 1) >> 32);
    // Lane l's word of its warp's first row, and the distance to the next row of the same warp.
    const int64_t w0 = (first >> 5) * q.bits + warp * q.bits + lane;
    unsigned int* const wp = words + w0;
    const int64_t word_end = rs.total_words - w0;
    const int row_stride = (kThreads / 32) * q.bits;
    // The rows, in one of two copies: kFast for a whole bucket with a float scale whose counter
    // does not wrap (every bucket but the rarest), kFast false for the rest, which checks each.
    auto quantize_rows = [&](auto fast_tag) {
      constexpr bool kFast = decltype(fast_tag)::value;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int k = l + r * kThreads;
        const uint32_t counter = c0 + static_cast<uint32_t>(k);
        const bool valid = kFast || k < m;
        unsigned int sym = 0;
        if (valid) {
          const float u = detail::uniform24(counter, kFast || counter >= c0 ? key_first : key_last);
          int idx;
          if (kMode == kRowsUniform) {
            idx = kFast || !wide_scale
                      ? quant_detail::uniform_index<float>(x[r], narrow, q.count - 1, u)
                      : quant_detail::uniform_index<double>(x[r], precise, q.count - 1, u);
          } else {
            const float ratio = kFast || !wide_scale ? quant_detail::level_ratio(x[r], narrow)
                                                     : quant_detail::level_ratio(x[r], precise);
            const int j = kMode == kRowsFew ? few.bracket(ratio)
                                            : bracket_fixed(s.levels, q.count, rs.top, ratio);
            idx = quant_detail::rounded_level(ratio, j, s.levels, s.inv_gap, u);
          }
          sym = quant_detail::symbol_of(idx, x[r], sign_bit);
        }
        if (kPack) {
          if (kFast || r * kThreads + warp * 32 < m) {  // the row holds coordinates: whole warp
            const unsigned int word = pack(sym);
            const int offset = r * row_stride;
            if (lane < q.bits && (kFast || offset < word_end)) wp[offset] = word;
          }
        } else if (valid) {
          out[first + k] = static_cast<uint8_t>(sym);
        }
      }
    };
    const bool wraps = static_cast<uint32_t>(c0 + static_cast<uint32_t>(m - 1)) < c0;
    if (whole && !wide_scale && !wraps) {
      quantize_rows(std::true_type());
    } else {
      quantize_rows(std::false_type());
    }
  }
}

// The register kernel's R for a bucket, or 0 where the bucket does not fit it or the kernel is not
// chosen (see encode_fixed in codec_kernels.h).
int rows_per_thread(const QuantConfig& q) {
  const int64_t bucket = q.bucket;
  if (!q.register_encoder || bucket % 32 != 0) return 0;
  for (int r = 1; r <= 32; r *= 2) {
    if (bucket <= int64_t{kThreads} * r) return r;
  }
  return 0;
}

// Launches the register kernel with R rows per thread when the bucket wants that R. A block takes
// two buckets of up to 1024 coordinates (grid-stride), so that its setup (the levels, the packing
// constants) is shared by twice as many coordinates.
template <int R, bool kPack>
bool launch_rows_with(int want, const float* v, int64_t n, const QuantConfig& q,
                      const RowsSetup& rs, float* norms, uint8_t* out, DeviceErrors* errors,
                      cudaStream_t stream) {
  if (want != R) return false;
  const int blocks = blocks_for(n, q.bucket * (R <= 4 ? 2 : 1));
  const int mode = q.uniform                                       ? kRowsUniform
                   : q.count <= quant_detail::FewLevels::kMaxCount ? kRowsFew
                                                                   : kRowsSearch;
  if (mode == kRowsUniform) {
    SADDLE_LAUNCH(blocks, kThreads, stream, encode_rows_kernel<R, kPack, kRowsUniform>)
    (v, n, q, rs, norms, out, errors);
  } else if (mode == kRowsFew) {
    SADDLE_LAUNCH(blocks, kThreads, stream, encode_rows_kernel<R, kPack, kRowsFew>)
    (v, n, q, rs, norms, out, errors);
  } else {
    SADDLE_LAUNCH(blocks, kThreads, stream, encode_rows_kernel<R, kPack, kRowsSearch>)
    (v, n, q, rs, norms, out, errors);
  }
  return true;
}

// Launches the register kernel where the bucket fits it; false where it does not.
template <bool kPack>
bool launch_rows(const float* v, int64_t n, const QuantConfig& q, float* norms, uint8_t* out,
                 DeviceErrors* errors, cudaStream_t stream) {
  const int r = rows_per_thread(q);
  if (r == 0) return false;
  const RowsSetup rs = rows_setup(n, q);
  return launch_rows_with<1, kPack>(r, v, n, q, rs, norms, out, errors, stream) ||
         launch_rows_with<2, kPack>(r, v, n, q, rs, norms, out, errors, stream) ||
         launch_rows_with<4, kPack>(r, v, n, q, rs, norms, out, errors, stream) ||
         launch_rows_with<8, kPack>(r, v, n, q, rs, norms, out, errors, stream) ||
         launch_rows_with<16, kPack>(r, v, n, q, rs, norms, out, errors, stream) ||
         launch_rows_with<32, kPack>(r, v, n, q, rs, norms, out, errors, stream);
}

__global__ void write_header_kernel(uint8_t* dst, HeaderBytes header) {
  if (threadIdx.x < sizeof header.bytes) dst[threadIdx.x] = header.bytes[threadIdx.x];
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

// The `nbytes` (<= 8) bytes of a message body from byte `offset`, little-endian: as whole 32-bit
// words where the body is 4-byte aligned and the words stay inside it, else byte by byte.
__device__ uint64_t load_group(const uint8_t* __restrict__ body, int64_t offset, int nbytes,
                               int64_t body_bytes, bool aligned) {
  const int64_t w0 = offset >> 2, w1 = (offset + nbytes - 1) >> 2;
  if (aligned && (w1 + 1) * 4 <= body_bytes) {
    const auto* words = reinterpret_cast<const unsigned int*>(body);
    const int shift = static_cast<int>(offset & 3) * 8;
    uint64_t lo = words[w0];
    if (w1 > w0) lo |= static_cast<uint64_t>(words[w0 + 1]) << 32;
    uint64_t word = lo >> shift;
    if (w1 > w0 + 1) word |= static_cast<uint64_t>(words[w0 + 2]) << (64 - shift);
    return word;
  }
  uint64_t word = 0;
  for (int k = 0; k < nbytes; ++k) word |= static_cast<uint64_t>(body[offset + k]) << (8 * k);
  return word;
}

// One thread per group of 8 coordinates, whose symbols are exactly `bits` whole bytes of the
// bitstream: it reads them once per message (as whole words where the messages are 4-byte
// aligned), the bucket norm only where the bucket changes (never, kOneBucket: bucket % 8 == 0),
// and adds the messages in rank order into registers, as the CPU does; full groups are stored as
// two float4 where `out` is 16-byte aligned.
template <bool kOneBucket>
__global__ void decode_fixed_kernel(Messages messages, int64_t n, QuantConfig q, float weight,
                                    float* __restrict__ out, bool vector_store, bool aligned) {
  __shared__ SharedLevels s;
  load_levels(q, s);
  __syncthreads();
  const int bits = q.bits;
  const unsigned int mask = (1u << bits) - 1u;
  const unsigned int half = 1u << (bits - 1);
  const int64_t buckets = (n + q.bucket - 1) / q.bucket;
  const int64_t body = 32 + 4 * buckets;
  const int64_t body_bytes = (n * bits + 7) / 8;
  const int64_t groups = (n + 7) / 8;
  const bool narrow = n < (int64_t{1} << 31) && q.bucket < (int64_t{1} << 31);
  for (int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; g < groups;
       g += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i0 = g * 8;
    const int count = n - i0 < 8 ? static_cast<int>(n - i0) : 8;
    const int64_t b =
        narrow ? static_cast<int64_t>(static_cast<uint32_t>(i0) / static_cast<uint32_t>(q.bucket))
               : i0 / q.bucket;
    // Coordinate i0 + j lies in bucket b + step[j].
    int step[8] = {};
    if (!kOneBucket) {
      int64_t next = (b + 1) * q.bucket;
#pragma unroll
      for (int j = 0, k = 0; j < 8; ++j) {
        if (i0 + j >= next) {
          ++k;
          next += q.bucket;
        }
        step[j] = k;
      }
    }
    const int64_t left = body_bytes - g * bits;  // the last group may have fewer bytes
    const int group_bytes = left < bits ? static_cast<int>(left) : bits;
    float acc[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[j] = 0.0f;
    for (int r = 0; r < messages.count; ++r) {
      const uint8_t* m = messages.base + r * messages.stride;
      const uint64_t word = load_group(m + body, g * bits, group_bytes, body_bytes, aligned);
      auto norm_of = [&](int64_t bucket) {
        return aligned ? reinterpret_cast<const float*>(m + 32)[bucket]
                       : load_float(m + 32 + 4 * bucket);
      };
      int at = 0;
      // weight * norm * level, negated for the upper half of the symbols: the CPU's table.
      float scale = weight * norm_of(b);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        if (j < count) {
          if (!kOneBucket && step[j] != at) {
            at = step[j];
            scale = weight * norm_of(b + at);
          }
          const unsigned int sym = static_cast<unsigned int>(word >> (j * bits)) & mask;
          const float magnitude = scale * s.levels[sym & (half - 1u)];
          acc[j] = acc[j] + (sym >= half ? -magnitude : magnitude);
        }
      }
    }
    if (count == 8 && vector_store) {
      auto* o = reinterpret_cast<float4*>(out + i0);
      o[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
      o[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        if (j < count) out[i0 + j] = acc[j];  // unrolled: acc stays in registers
      }
    }
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

void write_header(uint8_t* dst, const HeaderBytes& header, cudaStream_t stream) {
  SADDLE_LAUNCH(1, 32, stream, write_header_kernel)(dst, header);
  record_launch();
}

void reset_errors(DeviceErrors* errors, cudaStream_t stream) {
  SADDLE_LAUNCH(1, 1, stream, reset_errors_kernel)(errors);
  record_launch();
}

void encode_fixed(const float* v, int64_t n, const QuantConfig& q, float* norms, uint8_t* packed,
                  DeviceErrors* errors, cudaStream_t stream) {
  if (n == 0) return;
  if (launch_rows<true>(v, n, q, norms, packed, errors, stream)) {
    record_launch();
    return;
  }
  // Words that two buckets share are ORed into a zeroed stream; when every bucket starts on a
  // word boundary, each word is stored once and nothing needs zeroing.
  const int64_t words = (n * q.bits + 31) / 32;
  const bool shared_words = (q.bucket * q.bits) % 32 != 0 && n > q.bucket;
  if (shared_words && words > 0 && cudaMemsetAsync(packed, 0, words * 4, stream) != cudaSuccess)
    record_launch();
  SADDLE_LAUNCH(blocks_for(n, q.bucket), kThreads, stream, encode_kernel<true>)
  (v, n, q, norms, packed, errors);
  record_launch();
}

void quantize_symbols(const float* v, int64_t n, const QuantConfig& q, float* norms,
                      uint8_t* symbols, DeviceErrors* errors, cudaStream_t stream) {
  if (n == 0) return;
  if (!launch_rows<false>(v, n, q, norms, symbols, errors, stream)) {
    SADDLE_LAUNCH(blocks_for(n, q.bucket), kThreads, stream, encode_kernel<false>)
    (v, n, q, norms, symbols, errors);
  }
  record_launch();
}

void check_norms(const Messages& messages, int64_t buckets, int* bad, cudaStream_t stream) {
  if (cudaMemsetAsync(bad, 0, sizeof(int) * messages.count, stream) != cudaSuccess) record_launch();
  if (buckets == 0 || messages.count == 0) return;
  SADDLE_LAUNCH(blocks_for(buckets * messages.count, 256), 256, stream, check_norms_kernel)
  (messages, buckets, bad);
  record_launch();
}

void decode_average_fixed(const Messages& messages, int64_t n, const QuantConfig& q, float weight,
                          float* out, cudaStream_t stream) {
  if (n == 0) return;
  const bool vector_store = reinterpret_cast<uintptr_t>(out) % 16 == 0;
  const bool aligned =
      reinterpret_cast<uintptr_t>(messages.base) % 4 == 0 && messages.stride % 4 == 0;
  const int blocks = blocks_for((n + 7) / 8, 256);
  if (q.bucket % 8 == 0) {
    SADDLE_LAUNCH(blocks, 256, stream, decode_fixed_kernel<true>)
    (messages, n, q, weight, out, vector_store, aligned);
  } else {
    SADDLE_LAUNCH(blocks, 256, stream, decode_fixed_kernel<false>)
    (messages, n, q, weight, out, vector_store, aligned);
  }
  record_launch();
}

void decode_average_cast(const Messages& messages, int64_t n, int kind, float weight, float* out,
                         cudaStream_t stream) {
  if (n == 0) return;
  SADDLE_LAUNCH(blocks_for(n, 256), 256, stream, decode_cast_kernel)
  (messages, n, kind, weight, out);
  record_launch();
}

void accumulate_statistics(const float* v, int64_t n, const QuantConfig& q, double* stats,
                           int64_t bins, DeviceErrors* errors, cudaStream_t stream) {
  if (n == 0) return;
  SADDLE_LAUNCH(blocks_for(n, q.bucket), kThreads, stream, statistics_kernel)
  (v, n, q, stats, bins, errors);
  record_launch();
}

const char* last_error() {
  const cudaError_t status = last_status;
  last_status = cudaSuccess;
  return status == cudaSuccess ? "" : cudaGetErrorString(status);
}

}  // namespace saddle::cuda_kernels
