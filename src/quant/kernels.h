// Private to src/quant: the fused CPU kernels behind Codec (quantize + pack in one pass over the
// input, unpack + accumulate in one pass over the output) and the rANS entropy coder. Raw pointers
// are fine here; Codec validates every size before calling in.
#pragma once

#include <cstdint>
#include <vector>

#include "saddle/quant/codec.h"

namespace saddle {
namespace quant_detail {

// Non-uniform level search: a grid of kLutCells cells over r in [0, 1].
constexpr int kLutBits = 12;
constexpr int kLutCells = 1 << kLutBits;
constexpr int32_t kLutScan = 0x80;  // the cell holds two or more levels above the one stored

struct QuantParams {
  int bits = 4;         // symbol width: sign in the top bit, level index below
  int count = 8;        // number of levels, 2^(bits-1)
  bool uniform = true;  // levels j / (count-1): index by multiply + floor
  NormKind norm = NormKind::kL2;
  int64_t bucket = 1024;
  const float* levels = nullptr;
  const float* inv_gap = nullptr;  // 1 / (l_{j+1} - l_j)
  const int32_t* lut =
      nullptr;  // kLutCells entries: level index | kLutScan (32-bit: AVX2 gathers them)
  uint64_t seed = 0, stream = 0;
  int64_t first = 0;  // the random stream's index of v[0] (Codec::encode's `first`)
  bool vector = true;  // the hand-written AVX2 kernels where the CPU has them (CpuKernels)
};

inline int64_t bucket_count(int64_t n, int64_t bucket) { return n == 0 ? 0 : (n - 1) / bucket + 1; }
inline int64_t packed_bytes(int64_t n, int bits) { return (n * bits + 7) / 8; }

// Writes bucket_count norms and packed_bytes(n, bits) bytes of fixed-width symbols.
void encode_fixed(const float* v, int64_t n, const QuantParams& p, float* norms, uint8_t* packed);
// Writes bucket_count norms and n one-byte symbols (input of the entropy coder).
void quantize_symbols(const float* v, int64_t n, const QuantParams& p, float* norms,
                      uint8_t* symbols);
// out[i] = (assign ? 0 : out[i]) + weight * decoded_i and, unless row is null, row[i] = 0 +
// decoded_i: a message into an average and into its own row in one pass. Assigning gives the
// bits of adding into zeros.
void decode_fixed_into(const uint8_t* packed, int64_t n, const float* norms, const QuantParams& p,
                       float weight, bool assign, float* out, float* row);
void accumulate_symbols(const uint8_t* symbols, int64_t n, const float* norms, const QuantParams& p,
                        float weight, float* out);
// Adds v's magnitude statistics into stats ([3, kLevelStatBins] row-major doubles).
void accumulate_statistics(const float* v, int64_t n, const QuantParams& p, double* stats);

// rANS over an alphabet of 2^bits symbols. Layout: u16 frequencies[alphabet] (summing to
// kRansScale), u32 stream length, the stream.
int64_t rans_max_bytes(int64_t n, int alphabet);
std::vector<uint8_t> rans_encode(const uint8_t* symbols, int64_t n, int alphabet);
// Throws saddle::Error unless `data` is exactly one valid coding of n symbols.
void rans_decode(const uint8_t* data, int64_t size, int64_t n, int alphabet, uint8_t* symbols);

}  // namespace quant_detail
}  // namespace saddle
