// The hashes and counter-based random streams that several parts of saddle share: FNV-1a (levels
// hash on the wire, checkpoint and classifier checksums, parameter hashes) and splitmix64 (sample
// stream seeds, the quantizers' counter-based stream). Host and device code include the same
// functions, so the CUDA kernels draw exactly the numbers the CPU kernels draw.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define SADDLE_HOST_DEVICE __host__ __device__
#define SADDLE_FORCE_INLINE __forceinline__  // implies inline
#else
#define SADDLE_HOST_DEVICE
// The quantize loops' vectorized clones (target attributes) must inline the stream's functions.
#define SADDLE_FORCE_INLINE __attribute__((always_inline)) inline
#endif

namespace saddle::detail {

constexpr uint64_t kGolden64 = 0x9E3779B97F4A7C15ULL;
constexpr uint32_t kGolden32 = 0x9E3779B9U;
constexpr uint64_t kFnv64Offset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnv64Prime = 1099511628211ULL;
constexpr uint32_t kFnv32Offset = 2166136261U;
constexpr uint32_t kFnv32Prime = 16777619U;

// FNV-1a over bytes; continue a running hash by passing it as `h`.
inline uint64_t fnv1a64(const void* data, size_t size, uint64_t h = kFnv64Offset) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= kFnv64Prime;
  }
  return h;
}
inline uint32_t fnv1a32(const void* data, size_t size, uint32_t h = kFnv32Offset) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= kFnv32Prime;
  }
  return h;
}

// splitmix64's output function (Steele, Lea and Flood 2014): a bijective 64-bit mix.
SADDLE_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
// One splitmix64 step from state x.
SADDLE_HOST_DEVICE inline uint64_t splitmix64(uint64_t x) { return mix64(x + kGolden64); }

// The quantizers' counter-based stream: coordinate i of (seed, stream) draws
// mix32(i * golden + key), key a hash of (seed, stream, i >> 32). 32-bit arithmetic vectorizes on
// plain SSE2 and runs natively on GPUs; the top 24 bits give a uniform on a 2^-24 grid, which
// rounds a float fraction without bias (a fraction of a value >= 1 has at most 24 significant
// bits; below 1 the error is under 2^-24).
SADDLE_HOST_DEVICE inline uint32_t block_key(uint64_t seed, uint64_t stream, uint64_t block) {
  return static_cast<uint32_t>(splitmix64(splitmix64(seed ^ splitmix64(stream)) + block) >> 32);
}
SADDLE_HOST_DEVICE SADDLE_FORCE_INLINE uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}
SADDLE_HOST_DEVICE SADDLE_FORCE_INLINE float uniform24(uint32_t counter, uint32_t key) {
  return static_cast<float>(mix32(counter * kGolden32 + key) >> 8) * 0x1p-24f;
}

}  // namespace saddle::detail
