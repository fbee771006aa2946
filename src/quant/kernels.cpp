// Fused quantize + pack and unpack + accumulate kernels. The stream is walked bucket by bucket (the
// bucket's norm is computed while it sits in L1, then its coordinates are quantized) and symbols go
// through a 64-entry buffer, so 64 coordinates always fill exactly `bits` 64-bit words: the packing
// and unpacking loops have compile-time shifts for every width. Nothing is allocated per call.
#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

#include "../detail/hash.h"
#include "quantize_math.h"
#include "saddle/error.h"
#include "saddle/quant/level_set.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the codec's wire format assumes little-endian");

namespace saddle {
namespace quant_detail {
namespace {

constexpr int kChunk = 64;

// Helpers of the quantize loops; forced inline so that the haswell-tuned copy below can inline
// them.
#define SADDLE_QUANT_INLINE __attribute__((always_inline))

using detail::block_key;
using detail::uniform24;

// Lane sums of squares in quantize_math.h's order, then the pairwise tree over the lanes.
template <typename Acc>
SADDLE_QUANT_INLINE inline Acc canonical_square_sum(const float* __restrict v, int64_t m) {
  alignas(64) Acc lanes[kNormLanes];
  const int used = static_cast<int>(std::min<int64_t>(m, kNormLanes));
  for (int l = 0; l < used; ++l) lanes[l] = static_cast<Acc>(v[l]) * static_cast<Acc>(v[l]);
  int64_t i = kNormLanes;
  for (; i + kNormLanes <= m; i += kNormLanes)
    for (int l = 0; l < kNormLanes; ++l)
      lanes[l] += static_cast<Acc>(v[i + l]) * static_cast<Acc>(v[i + l]);
  for (int l = 0; i + l < m; ++l)
    lanes[l] += static_cast<Acc>(v[i + l]) * static_cast<Acc>(v[i + l]);
  // Lanes past `used` hold zero, so the levels of the full tree above the smallest power of two
  // covering them add exact zeros: start the tree there.
  int width = 1;
  while (width < used) width *= 2;
  for (int l = used; l < width; ++l) lanes[l] = 0;
  for (int h = width / 2; h >= 1; h /= 2)
    for (int l = 0; l < h; ++l) lanes[l] += lanes[l + h];
  return lanes[0];
}

// The bucket's norm (quantize_math.h); throws on non-finite input rather than sending NaNs to
// every rank.
SADDLE_QUANT_INLINE inline float bucket_norm(const float* __restrict v, int64_t m, NormKind norm,
                                             int64_t first) {
  double total = 0;
  if (norm == NormKind::kL2) {
    total = canonical_square_sum<float>(v, m);
    // Squares of large finite values overflow float and those of tiny ones underflow to zero;
    // such sums are redone in double (this also lets NaN reach the check below).
    if (!sum_in_safe_range(total)) total = canonical_square_sum<double>(v, m);
    total = std::sqrt(total);
  } else {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float bad[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // v * 0 is NaN exactly for non-finite v
    int64_t i = 0;
    for (; i + 8 <= m; i += 8)
      for (int k = 0; k < 8; ++k) {
        acc[k] = std::max(acc[k], std::fabs(v[i + k]));
        bad[k] += v[i + k] * 0.0f;
      }
    for (; i < m; ++i) {
      acc[0] = std::max(acc[0], std::fabs(v[i]));
      bad[0] += v[i] * 0.0f;
    }
    for (int k = 0; k < 8; ++k) total = std::max<double>(total, acc[k] + bad[k]);
    for (int k = 0; k < 8; ++k)
      if (std::isnan(bad[k])) total = bad[k];
  }
  SADDLE_CHECK(std::isfinite(total) && !std::isnan(static_cast<float>(total)),
               "cannot quantize a non-finite value (bucket starting at coordinate ", first, ")");
  SADDLE_CHECK(static_cast<float>(total) <= 3.4e38f, "bucket norm ", total,
               " overflows float32 (bucket starting at coordinate ", first, ")");
  return static_cast<float>(total);
}

// The quantize loops get an AVX2 clone picked at load time (GCC function multiversioning): 8-wide
// 32-bit multiplies for the generator and gathers for the level table, while the binary still runs
// on any x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SADDLE_QUANT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SADDLE_QUANT_CLONES
#endif

// Uniform levels j/s: the index is floor(|v| * s / norm), rounded up with probability frac.
template <typename Scale>
SADDLE_QUANT_CLONES void quantize_uniform(const float* __restrict v, int m, Scale mul, int s,
                                          int bits, uint32_t counter, uint32_t key,
                                          uint8_t* __restrict out) {
  for (int i = 0; i < m; ++i) {
    uint32_t value_bits;
    std::memcpy(&value_bits, v + i, sizeof value_bits);
    const float a = static_cast<float>(std::fabs(v[i]) * mul);
    int floor_index = static_cast<int>(a);
    floor_index = floor_index < s - 1 ? floor_index : s - 1;
    const float frac = a - static_cast<float>(floor_index);
    const int idx = floor_index + (uniform24(counter + static_cast<uint32_t>(i), key) < frac);
    out[i] = make_symbol(idx, value_bits, bits);
  }
}

// Arbitrary levels: the grid cell of r gives the level just below the cell, one comparison moves to
// the next level when the cell holds one, then the same stochastic rounding with 1 / gap. Cells
// holding two or more levels (tiny levels of long exponential sets) are redone by a short scan.
template <typename Scale>
__attribute__((always_inline)) inline void quantize_table_body(const float* __restrict v, int m,
                                                               Scale inv_norm, const QuantParams& p,
                                                               uint32_t counter, uint32_t key,
                                                               uint8_t* __restrict out) {
  const float* __restrict levels = p.levels;
  const float* __restrict inv_gap = p.inv_gap;
  const int32_t* __restrict lut = p.lut;
  const int bits = p.bits, top = p.count - 2;
  int crowded = 0;
  for (int i = 0; i < m; ++i) {
    uint32_t value_bits;
    __builtin_memcpy(&value_bits, v + i, sizeof value_bits);
    // r and the cell are clamped separately (r * kLutCells is exact): a clamp shared by both lets
    // GCC thread a branch through the loop, which then no longer vectorizes.
    const float a = static_cast<float>(__builtin_fabsf(v[i]) * inv_norm);
    const float r = 1.0f < a ? 1.0f : a;  // std::min, spelled out to inline under any tuning
    const int cell =
        static_cast<int>(kLutCells - 1.0f < a * kLutCells ? kLutCells - 1.0f : a * kLutCells);
    const int entry = lut[cell];
    crowded |= entry;
    int j = entry & 0x7f;
    j += (j < top) & (levels[j + 1] <= r);
    const float frac = (r - levels[j]) * inv_gap[j];
    const int idx = j + (uniform24(counter + static_cast<uint32_t>(i), key) < frac);
    out[i] = make_symbol(idx, value_bits, bits);
  }
  if (!(crowded & kLutScan)) return;
  for (int i = 0; i < m; ++i) {
    const float a = static_cast<float>(__builtin_fabsf(v[i]) * inv_norm);
    const float r = 1.0f < a ? 1.0f : a;  // std::min, spelled out to inline under any tuning
    const int cell =
        static_cast<int>(kLutCells - 1.0f < a * kLutCells ? kLutCells - 1.0f : a * kLutCells);
    if (!(lut[cell] & kLutScan)) continue;
    uint32_t value_bits;
    __builtin_memcpy(&value_bits, v + i, sizeof value_bits);
    int j = lut[cell] & 0x7f;
    while (j < top && levels[j + 1] <= r) ++j;
    const float frac = (r - levels[j]) * inv_gap[j];
    const int idx = j + (uniform24(counter + static_cast<uint32_t>(i), key) < frac);
    out[i] = make_symbol(idx, value_bits, bits);
  }
}

// Few levels (bits <= 4, K <= 8): no table at all. The bracket is found by comparing r with every
// inner level held in registers, selecting the level and 1 / gap as it goes, which gives exactly
// the j of the table search (the largest j <= K - 2 with l_j <= r; levels strictly increase).
template <int K, typename Scale>
__attribute__((always_inline)) inline void quantize_few_body(const float* __restrict v, int m,
                                                             Scale inv_norm, const QuantParams& p,
                                                             uint32_t counter, uint32_t key,
                                                             uint8_t* __restrict out) {
  float lv[K], ig[K];
  for (int k = 0; k < K; ++k) {
    lv[k] = p.levels[k];
    ig[k] = p.inv_gap[k];
  }
  const int bits = p.bits;
  for (int i = 0; i < m; ++i) {
    uint32_t value_bits;
    __builtin_memcpy(&value_bits, v + i, sizeof value_bits);
    const float a = static_cast<float>(__builtin_fabsf(v[i]) * inv_norm);
    const float r = 1.0f < a ? 1.0f : a;
    int j = 0;
    float lo = lv[0], g = ig[0];
#pragma GCC unroll 8
    for (int k = 1; k + 1 < K; ++k) {
      const bool up = lv[k] <= r;
      j += up;
      lo = up ? lv[k] : lo;
      g = up ? ig[k] : g;
    }
    const float frac = (r - lo) * g;
    const int idx = j + (uniform24(counter + static_cast<uint32_t>(i), key) < frac);
    out[i] = make_symbol(idx, value_bits, bits);
  }
}

template <typename Scale>
__attribute__((always_inline)) inline void quantize_levels_body(const float* __restrict v, int m,
                                                                Scale inv_norm,
                                                                const QuantParams& p,
                                                                uint32_t counter, uint32_t key,
                                                                uint8_t* __restrict out) {
  switch (p.count) {
    case 2: return quantize_few_body<2, Scale>(v, m, inv_norm, p, counter, key, out);
    case 4: return quantize_few_body<4, Scale>(v, m, inv_norm, p, counter, key, out);
    case 8: return quantize_few_body<8, Scale>(v, m, inv_norm, p, counter, key, out);
    default: return quantize_table_body<Scale>(v, m, inv_norm, p, counter, key, out);
  }
}

// GCC's generic tuning (which target_clones keeps) turns gathers off, so the table loop would stay
// scalar in an "avx2" clone; a haswell-tuned AVX2 copy, picked once at load time, gathers the level
// table 8 lanes at a time.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SADDLE_QUANT_GATHER 1
template <typename Scale>
__attribute__((target("avx2,tune=haswell"))) void quantize_table_avx2(
    const float* __restrict v, int m, Scale inv_norm, const QuantParams& p, uint32_t counter,
    uint32_t key, uint8_t* __restrict out) {
  quantize_levels_body<Scale>(v, m, inv_norm, p, counter, key, out);
}

const bool kHasAvx2 = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") != 0;
}();
#endif

#ifdef SADDLE_QUANT_GATHER
#define SADDLE_AVX2_INLINE __attribute__((target("avx2"), always_inline)) inline

// The symbols of 8 consecutive coordinates at a time in AVX2 lanes, for uniform levels
// (uniform_index: truncation, the clamp at s - 1, the fraction above) or at most 8 others (j
// counts the inner levels <= r, and l_j, 1 / gap_j come from a lane permute instead of a gather or
// a chain of selects): the scalar code's arithmetic, and its random numbers, the generator's
// first step (counter + i) * golden + key advanced by 8 * golden (mod 2^32) from one group to the
// next.
template <bool kUniform>
struct Avx2Symbols {
  __m256 levels, gaps, inner[6], scale, one, abs_mask, unit24;
  __m256i top_index, mul1, mul2, h_next, h_step;
  __m128i sign_shift;
  int n_inner;

  SADDLE_AVX2_INLINE Avx2Symbols(const QuantParams& p, float inv_norm, uint32_t counter,
                                 uint32_t key) {
    alignas(32) float lv[8] = {0, 0, 0, 0, 0, 0, 0, 0}, ig[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 0; !kUniform && k < p.count; ++k) {
      lv[k] = p.levels[k];
      ig[k] = p.inv_gap[k];
    }
    levels = _mm256_load_ps(lv);
    gaps = _mm256_load_ps(ig);
    n_inner = kUniform ? 0 : p.count - 2;
    for (int k = 0; k < n_inner; ++k) inner[k] = _mm256_set1_ps(lv[k + 1]);
    top_index = _mm256_set1_epi32(p.count - 2);  // uniform: s - 1
    scale = _mm256_set1_ps(inv_norm);
    one = _mm256_set1_ps(1.0f);
    abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    unit24 = _mm256_set1_ps(0x1p-24f);
    mul1 = _mm256_set1_epi32(0x7feb352d);
    mul2 = _mm256_set1_epi32(static_cast<int>(0x846ca68bU));
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    h_next = _mm256_add_epi32(
        _mm256_mullo_epi32(_mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(counter)), lanes),
                           _mm256_set1_epi32(static_cast<int>(0x9E3779B9U))),
        _mm256_set1_epi32(static_cast<int>(key)));
    h_step = _mm256_set1_epi32(static_cast<int>(0x9E3779B9U * 8U));
    sign_shift = _mm_cvtsi32_si128(p.bits - 1);
  }

  // The symbols of v[0..8), one per 32-bit lane; the next call takes the next 8 coordinates.
  SADDLE_AVX2_INLINE __m256i next(const float* __restrict v) {
    const __m256 x = _mm256_loadu_ps(v);
    const __m256 a = _mm256_mul_ps(_mm256_and_ps(x, abs_mask), scale);
    __m256i j;
    __m256 frac;
    if constexpr (kUniform) {
      j = _mm256_min_epi32(_mm256_cvttps_epi32(a), top_index);  // a >= 0: truncation is floor
      frac = _mm256_sub_ps(a, _mm256_cvtepi32_ps(j));
    } else {
      const __m256 r = _mm256_min_ps(one, a);  // one < a ? one : a, as the scalar code
      j = _mm256_setzero_si256();
      for (int k = 0; k < n_inner; ++k)
        j = _mm256_sub_epi32(j, _mm256_castps_si256(_mm256_cmp_ps(inner[k], r, _CMP_LE_OQ)));
      const __m256 lo = _mm256_permutevar8x32_ps(levels, j);
      frac = _mm256_mul_ps(_mm256_sub_ps(r, lo), _mm256_permutevar8x32_ps(gaps, j));
    }
    __m256i h = h_next;
    h_next = _mm256_add_epi32(h_next, h_step);
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
    h = _mm256_mullo_epi32(h, mul1);
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 15));
    h = _mm256_mullo_epi32(h, mul2);
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
    const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(h, 8)), unit24);
    const __m256i idx =
        _mm256_sub_epi32(j, _mm256_castps_si256(_mm256_cmp_ps(u, frac, _CMP_LT_OQ)));
    const __m256i nonzero = _mm256_andnot_si256(_mm256_cmpeq_epi32(idx, _mm256_setzero_si256()),
                                                _mm256_srli_epi32(_mm256_castps_si256(x), 31));
    return _mm256_or_si256(idx, _mm256_sll_epi32(nonzero, sign_shift));
  }
};

// Few levels, one byte a symbol (the chunked path's buffer).
__attribute__((target("avx2"))) void quantize_few_avx2(const float* __restrict v, int m,
                                                       float inv_norm, const QuantParams& p,
                                                       uint32_t counter, uint32_t key,
                                                       uint8_t* __restrict out) {
  Avx2Symbols<false> symbols(p, inv_norm, counter, key);
  const __m256i low_bytes =
      _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,  //
                       0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i join = _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1);
  int i = 0;
  for (; i + 8 <= m; i += 8) {
    const __m256i sym = symbols.next(v + i);
    const __m256i packed = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(sym, low_bytes), join);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(packed));
  }
  if (i < m)
    quantize_levels_body<float>(v + i, m - i, inv_norm, p, counter + static_cast<uint32_t>(i), key,
                                out + i);
}
#endif  // SADDLE_QUANT_GATHER

template <typename Scale>
void quantize_table(const float* __restrict v, int m, Scale inv_norm, const QuantParams& p,
                    uint32_t counter, uint32_t key, uint8_t* __restrict out) {
#ifdef SADDLE_QUANT_GATHER
  if (kHasAvx2 && p.vector) {
    if constexpr (std::is_same_v<Scale, float>) {
      if (p.count <= 8) return quantize_few_avx2(v, m, inv_norm, p, counter, key, out);
    }
    return quantize_table_avx2<Scale>(v, m, inv_norm, p, counter, key, out);
  }
#endif
  quantize_levels_body<Scale>(v, m, inv_norm, p, counter, key, out);
}

void quantize_run(const float* v, int m, const QuantParams& p, const BucketScale& sc,
                  uint32_t counter, uint32_t key, uint8_t* out) {
  if (p.uniform) {
    if (sc.wide) {
      quantize_uniform<double>(v, m, sc.precise, p.count - 1, p.bits, counter, key, out);
    } else {
      quantize_uniform<float>(v, m, sc.narrow, p.count - 1, p.bits, counter, key, out);
    }
  } else if (sc.wide) {
    quantize_table<double>(v, m, sc.precise, p, counter, key, out);
  } else {
    quantize_table<float>(v, m, sc.narrow, p, counter, key, out);
  }
}

// Walks the input bucket by bucket and hands the sink chunks of kChunk symbols (the last one
// shorter); chunks are aligned to multiples of kChunk in the global index.
template <typename Sink>
void quantize_stream(const float* v, int64_t n, const QuantParams& p, float* norms, Sink&& sink) {
  alignas(64) uint8_t buf[kChunk];
  int fill = 0;
  uint64_t key_block = ~uint64_t{0};
  uint32_t key = 0;
  for (int64_t first = 0, b = 0; first < n; first += p.bucket, ++b) {
    const int64_t m = std::min(p.bucket, n - first);
    const float norm = bucket_norm(v + first, m, p.norm, first);
    norms[b] = norm;
    const BucketScale sc = scale_for(norm, p.uniform, p.count);
    for (int64_t i = first; i < first + m;) {
      // The stream's index of v[i]; a run ends where its key changes (every 2^32 indices).
      const uint64_t index = static_cast<uint64_t>(p.first + i);
      const int64_t key_left = static_cast<int64_t>((uint64_t{1} << 32) - (index & 0xffffffffULL));
      const int take = static_cast<int>(
          std::min<int64_t>(std::min<int64_t>(kChunk - fill, first + m - i), key_left));
      if (index >> 32 != key_block) {
        key_block = index >> 32;
        key = block_key(p.seed, p.stream, key_block);
      }
      quantize_run(v + i, take, p, sc, static_cast<uint32_t>(index), key, buf + fill);
      fill += take;
      i += take;
      if (fill == kChunk) {
        sink(buf, kChunk);
        fill = 0;
      }
    }
  }
  if (fill > 0) sink(buf, fill);
}

// kChunk symbols of B bits fill exactly B words. Widths that divide 8 pack whole bytes (a loop the
// compiler vectorizes); the others unroll with every shift a constant.
template <int B>
inline void pack_chunk(const uint8_t* __restrict s, uint64_t* __restrict w) {
  if constexpr (8 % B == 0) {
    constexpr int kPerByte = 8 / B;
    uint8_t bytes[8 * B];
    for (int k = 0; k < 8 * B; ++k) {
      uint8_t x = 0;
      for (int t = 0; t < kPerByte; ++t) x |= static_cast<uint8_t>(s[k * kPerByte + t] << (t * B));
      bytes[k] = x;
    }
    std::memcpy(w, bytes, sizeof bytes);
  } else {
    for (int k = 0; k < B; ++k) w[k] = 0;
#pragma GCC unroll 64
    for (int i = 0; i < kChunk; ++i) {
      const int bit = i * B, word = bit >> 6, shift = bit & 63;
      w[word] |= static_cast<uint64_t>(s[i]) << shift;
      if (shift + B > 64) w[word + 1] |= static_cast<uint64_t>(s[i]) >> (64 - shift);
    }
  }
}

template <int B>
inline void unpack_chunk(const uint64_t* __restrict w, uint8_t* __restrict s) {
  constexpr uint64_t kMask = (uint64_t{1} << B) - 1;
  if constexpr (8 % B == 0) {
    constexpr int kPerByte = 8 / B;
    uint8_t bytes[8 * B];
    std::memcpy(bytes, w, sizeof bytes);
    for (int k = 0; k < 8 * B; ++k)
      for (int t = 0; t < kPerByte; ++t)
        s[k * kPerByte + t] = static_cast<uint8_t>((bytes[k] >> (t * B)) & kMask);
  } else {
#pragma GCC unroll 64
    for (int i = 0; i < kChunk; ++i) {
      const int bit = i * B, word = bit >> 6, shift = bit & 63;
      uint64_t x = w[word] >> shift;
      if (shift + B > 64) x |= w[word + 1] << (64 - shift);
      s[i] = static_cast<uint8_t>(x & kMask);
    }
  }
}

template <int B>
void encode_fixed_stream(const float* v, int64_t n, const QuantParams& p, float* norms,
                         uint8_t* packed) {
  uint8_t* dst = packed;
  quantize_stream(v, n, p, norms, [&dst](uint8_t* buf, int count) {
    uint64_t words[B];
    if (count < kChunk) std::memset(buf + count, 0, kChunk - count);
    pack_chunk<B>(buf, words);
    const int64_t bytes = count == kChunk ? 8 * B : packed_bytes(count, B);
    std::memcpy(dst, words, bytes);
    dst += bytes;
  });
}

#ifdef SADDLE_QUANT_GATHER
// The same norm as bucket_norm, its lanes 8 at a time (each lane's sum in the same order).
__attribute__((target("avx2"))) float bucket_norm_avx2(const float* __restrict v, int64_t m,
                                                       NormKind norm, int64_t first) {
  return bucket_norm(v, m, norm, first);
}

// A bucket of m coordinates (float scale, one key), B in {2, 4}, uniform levels or at most 8
// others: the symbols of quantize_uniform or quantize_few_avx2, 8 to B packed bytes straight from
// the lanes (symbol k at bits k*B up), no buffer.
template <int B, bool kUniform>
__attribute__((target("avx2"))) void quantize_pack_avx2(const float* __restrict v, int64_t m,
                                                        float inv_norm, const QuantParams& p,
                                                        uint32_t counter, uint32_t key,
                                                        uint8_t* __restrict dst) {
  Avx2Symbols<kUniform> symbols(p, inv_norm, counter, key);
  const __m256i shifts = _mm256_setr_epi32(0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B);
  int64_t i = 0;
  for (; i + 8 <= m; i += 8) {
    const __m256i sym = symbols.next(v + i);
    // The lanes' bits are disjoint once shifted into place: OR them together.
    __m256i w = _mm256_sllv_epi32(sym, shifts);
    w = _mm256_or_si256(w, _mm256_shuffle_epi32(w, 0xB1));
    w = _mm256_or_si256(w, _mm256_shuffle_epi32(w, 0x4E));
    const uint32_t word = static_cast<uint32_t>(
        _mm_cvtsi128_si32(_mm_or_si128(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1))));
    std::memcpy(dst + i * B / 8, &word, B);
  }
  if (i < m) {                         // the last bucket's tail: fewer than 8 symbols
    alignas(32) uint8_t tail[kChunk];  // room for the vector stores GCC may use
    if constexpr (kUniform) {
      for (int64_t k = 0; i + k < m; ++k) {
        const float u = uniform24(counter + static_cast<uint32_t>(i + k), key);
        tail[k] = quantize_uniform_one(v[i + k], inv_norm, p.count - 1, B, u);
      }
    } else {
      quantize_levels_body<float>(v + i, static_cast<int>(m - i), inv_norm, p,
                                  counter + static_cast<uint32_t>(i), key, tail);
    }
    uint32_t word = 0;
    for (int64_t k = 0; i + k < m; ++k) word |= static_cast<uint32_t>(tail[k]) << (k * B);
    std::memcpy(dst + i * B / 8, &word, static_cast<size_t>(packed_bytes(m - i, B)));
  }
}

// 2- and 4-bit symbols of uniform levels (QSGD) or of at most 8 others (ALQ, NUQ, AMQ) with
// buckets of whole 64-symbol chunks: bucket by bucket, each bucket's bytes written where
// encode_fixed_stream writes them. A bucket whose scale needs double precision or whose indices
// cross a 2^32 key block is handed to encode_fixed_stream alone.
template <int B>
void encode_narrow_buckets(const float* v, int64_t n, const QuantParams& p, float* norms,
                           uint8_t* packed) {
  uint64_t key_block = ~uint64_t{0};
  uint32_t key = 0;
  for (int64_t first = 0, b = 0; first < n; first += p.bucket, ++b) {
    const int64_t m = std::min(p.bucket, n - first);
    uint8_t* dst = packed + first * B / 8;
    const uint64_t index = static_cast<uint64_t>(p.first + first);
    const float norm = bucket_norm_avx2(v + first, m, p.norm, first);
    const BucketScale sc = scale_for(norm, p.uniform, p.count);
    if (sc.wide || index >> 32 != (index + static_cast<uint64_t>(m) - 1) >> 32) {
      QuantParams one = p;
      one.first = p.first + first;
      encode_fixed_stream<B>(v + first, m, one, norms + b, dst);
      continue;
    }
    norms[b] = norm;
    if (index >> 32 != key_block) {
      key_block = index >> 32;
      key = block_key(p.seed, p.stream, key_block);
    }
    if (p.uniform) {
      quantize_pack_avx2<B, true>(v + first, m, sc.narrow, p, static_cast<uint32_t>(index), key,
                                  dst);
    } else {
      quantize_pack_avx2<B, false>(v + first, m, sc.narrow, p, static_cast<uint32_t>(index), key,
                                   dst);
    }
  }
}
#endif  // SADDLE_QUANT_GATHER

template <int B>
void encode_fixed_impl(const float* v, int64_t n, const QuantParams& p, float* norms,
                       uint8_t* packed) {
#ifdef SADDLE_QUANT_GATHER
  if constexpr (B == 2 || B == 4) {
    if (kHasAvx2 && p.vector && (p.uniform || p.count <= 8) && p.bucket % kChunk == 0) {
      return encode_narrow_buckets<B>(v, n, p, norms, packed);
    }
  }
#endif
  encode_fixed_stream<B>(v, n, p, norms, packed);
}

// Walks the output bucket by bucket with a per-bucket table of the 2^bits decoded values; the
// source fills chunks of kChunk symbols (the last one shorter). kAssign writes out[i] = 0 + x
// instead of out[i] += x (the same bits as adding into zeros, without reading `out`); kRow also
// writes row[i] = 0 + the coordinate decoded at weight 1.
template <bool kAssign, bool kRow, typename Source>
void accumulate_stream(int64_t n, const float* norms, const QuantParams& p, float weight,
                       float* out, float* row, Source&& source) {
  alignas(64) uint8_t buf[kChunk];
  float table[256], unit[256];
  const int half = 1 << (p.bits - 1);
  int avail = 0, pos = 0;
  for (int64_t first = 0, b = 0; first < n; first += p.bucket, ++b) {
    const int64_t m = std::min(p.bucket, n - first);
    const float scale = weight * norms[b];
    for (int k = 0; k < half; ++k) {
      table[k] = scale * p.levels[k];
      table[k + half] = -table[k];
      if constexpr (kRow) {
        unit[k] = 1.0f * norms[b] * p.levels[k];
        unit[k + half] = -unit[k];
      }
    }
    float* __restrict o = out;
    float* __restrict w = row;
    for (int64_t i = first; i < first + m;) {
      if (pos == avail) {
        avail = static_cast<int>(std::min<int64_t>(kChunk, n - i));
        source(buf, avail);
        pos = 0;
      }
      const int take = static_cast<int>(std::min<int64_t>(avail - pos, first + m - i));
      for (int k = 0; k < take; ++k) {
        const uint8_t s = buf[pos + k];
        o[i + k] = (kAssign ? 0.0f : o[i + k]) + table[s];
        if constexpr (kRow) w[i + k] = 0.0f + unit[s];
      }
      pos += take;
      i += take;
    }
  }
}

template <int B, bool kAssign, bool kRow>
void accumulate_fixed_impl(const uint8_t* packed, int64_t n, const float* norms,
                           const QuantParams& p, float weight, float* out, float* row) {
  const uint8_t* src = packed;
  accumulate_stream<kAssign, kRow>(n, norms, p, weight, out, row, [&src](uint8_t* buf, int count) {
    uint64_t words[B] = {};
    const int64_t bytes = count == kChunk ? 8 * B : packed_bytes(count, B);
    std::memcpy(words, src, bytes);
    src += bytes;
    unpack_chunk<B>(words, buf);
  });
}

#ifdef SADDLE_QUANT_GATHER
// Widths of at most 4 bits whose buckets start on whole bytes (bucket % 8 == 0): 8 symbols (B
// bytes) at a time, the level of each from a lane permute of the bucket's scaled levels and the
// sign by flipping the float's sign bit: the same products and sums as accumulate_stream.
template <int B, bool kAssign, bool kRow>
__attribute__((target("avx2"))) void accumulate_narrow_avx2(const uint8_t* packed, int64_t n,
                                                            const float* norms,
                                                            const QuantParams& p, float weight,
                                                            float* out, float* row) {
  static_assert(B == 2 || B == 4, "8 symbols of B bits are B whole bytes");
  constexpr int kHalf = 1 << (B - 1);
  alignas(32) float lv[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int k = 0; k < kHalf; ++k) lv[k] = p.levels[k];
  const __m256 levels = _mm256_load_ps(lv), zero = _mm256_setzero_ps();
  const __m256i shifts = _mm256_setr_epi32(0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B);
  const __m256i index_mask = _mm256_set1_epi32(kHalf - 1), sign_bit = _mm256_set1_epi32(kHalf);
// kHalf << (32 - B) is the float sign bit exactly when the symbol's sign bit is set.
#define SADDLE_SIGNED_LEVEL(table, s)                                             \
  _mm256_xor_ps(_mm256_permutevar8x32_ps(table, _mm256_and_si256(s, index_mask)), \
                _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(s, sign_bit), 32 - B)))
  for (int64_t first = 0, b = 0; first < n; first += p.bucket, ++b) {
    const int64_t m = std::min(p.bucket, n - first);
    const __m256 table = _mm256_mul_ps(_mm256_set1_ps(weight * norms[b]), levels);
    const __m256 unit = _mm256_mul_ps(_mm256_set1_ps(1.0f * norms[b]), levels);
    const uint8_t* src = packed + first * B / 8;
    float* o = out + first;
    float* w = row + first;
    int64_t i = 0;
    for (; i + 8 <= m; i += 8, src += B) {
      uint32_t word = 0;
      std::memcpy(&word, src, B);
      const __m256i s = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(word)), shifts);
      const __m256 base = kAssign ? zero : _mm256_loadu_ps(o + i);
      _mm256_storeu_ps(o + i, _mm256_add_ps(base, SADDLE_SIGNED_LEVEL(table, s)));
      if constexpr (kRow)
        _mm256_storeu_ps(w + i, _mm256_add_ps(zero, SADDLE_SIGNED_LEVEL(unit, s)));
    }
    // The last bucket's tail: fewer than 8 symbols, in the bytes the message still has.
    if (i < m) {
      const float scale = weight * norms[b];
      for (int64_t k = 0; i + k < m; ++k) {
        const int s = (src[k * B / 8] >> ((k * B) % 8)) & ((1 << B) - 1);
        const float level = p.levels[s & (kHalf - 1)];
        const float x = scale * level, u = 1.0f * norms[b] * level;
        o[i + k] = (kAssign ? 0.0f : o[i + k]) + (s & kHalf ? -x : x);
        if constexpr (kRow) w[i + k] = 0.0f + (s & kHalf ? -u : u);
      }
    }
  }
}
#undef SADDLE_SIGNED_LEVEL
#endif

template <int B, bool kAssign, bool kRow>
void accumulate_fixed_pick(const uint8_t* packed, int64_t n, const float* norms,
                           const QuantParams& p, float weight, float* out, float* row) {
#ifdef SADDLE_QUANT_GATHER
  if constexpr (B == 2 || B == 4) {
    if (kHasAvx2 && p.vector && p.bucket % 8 == 0) {
      return accumulate_narrow_avx2<B, kAssign, kRow>(packed, n, norms, p, weight, out, row);
    }
  }
#endif
  accumulate_fixed_impl<B, kAssign, kRow>(packed, n, norms, p, weight, out, row);
}

}  // namespace

#define SADDLE_QUANT_DISPATCH_BITS(bits, call)                   \
  switch (bits) {                                                \
    case 2: call(2); break;                                      \
    case 3: call(3); break;                                      \
    case 4: call(4); break;                                      \
    case 5: call(5); break;                                      \
    case 6: call(6); break;                                      \
    case 7: call(7); break;                                      \
    case 8: call(8); break;                                      \
    default: throw Error(detail::concat("invalid bits ", bits)); \
  }

void encode_fixed(const float* v, int64_t n, const QuantParams& p, float* norms, uint8_t* packed) {
#define SADDLE_CALL(B) encode_fixed_impl<B>(v, n, p, norms, packed)
  SADDLE_QUANT_DISPATCH_BITS(p.bits, SADDLE_CALL)
#undef SADDLE_CALL
}

void quantize_symbols(const float* v, int64_t n, const QuantParams& p, float* norms,
                      uint8_t* symbols) {
  uint8_t* dst = symbols;
  quantize_stream(v, n, p, norms, [&dst](uint8_t* buf, int count) {
    std::memcpy(dst, buf, count);
    dst += count;
  });
}

void decode_fixed_into(const uint8_t* packed, int64_t n, const float* norms, const QuantParams& p,
                       float weight, bool assign, float* out, float* row) {
#define SADDLE_PICK(B, A, R) accumulate_fixed_pick<B, A, R>(packed, n, norms, p, weight, out, row)
#define SADDLE_CALL(B)              \
  if (assign) {                     \
    if (row)                        \
      SADDLE_PICK(B, true, true);   \
    else                            \
      SADDLE_PICK(B, true, false);  \
  } else {                          \
    if (row)                        \
      SADDLE_PICK(B, false, true);  \
    else                            \
      SADDLE_PICK(B, false, false); \
  }
  SADDLE_QUANT_DISPATCH_BITS(p.bits, SADDLE_CALL)
#undef SADDLE_CALL
#undef SADDLE_PICK
}

void accumulate_symbols(const uint8_t* symbols, int64_t n, const float* norms, const QuantParams& p,
                        float weight, float* out) {
  const uint8_t* src = symbols;
  accumulate_stream<false, false>(n, norms, p, weight, out, out, [&src](uint8_t* buf, int count) {
    std::memcpy(buf, src, count);
    src += count;
  });
}

void accumulate_statistics(const float* v, int64_t n, const QuantParams& p, double* stats) {
  double* w = stats;
  double* s1 = stats + kLevelStatBins;
  double* s2 = s1 + kLevelStatBins;
  for (int64_t first = 0; first < n; first += p.bucket) {
    const int64_t m = std::min(p.bucket, n - first);
    const float norm = bucket_norm(v + first, m, p.norm, first);
    if (norm == 0) continue;
    const double weight = static_cast<double>(norm) * norm, inv = 1.0 / norm;
    for (int64_t i = first; i < first + m; ++i) {
      const double r = std::min(1.0, std::fabs(v[i]) * inv);
      const int64_t k = std::min<int64_t>(kLevelStatBins - 1,
                                          static_cast<int64_t>(std::sqrt(r) * kLevelStatBins));
      w[k] += weight;
      s1[k] += weight * r;
      s2[k] += weight * r * r;
    }
  }
}

}  // namespace quant_detail
}  // namespace saddle
