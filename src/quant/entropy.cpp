// The entropy coder: static rANS (Duda 2013; byte-wise renormalization after Giesen's rans_byte)
// with the symbols' frequencies, quantized to kScaleBits, sent ahead of the stream. Unlike a
// per-symbol Huffman code it spends fractional bits per symbol, which matters here: at low bit
// widths most coordinates round to level 0 and the symbol entropy is well under 2 bits.
#include <algorithm>
#include <cstring>

#include "kernels.h"
#include "saddle/error.h"

namespace saddle {
namespace quant_detail {
namespace {

constexpr int kScaleBits = 14;
constexpr uint32_t kScale = 1u << kScaleBits;
constexpr uint32_t kRansLow = 1u << 23;  // the state lives in [kRansLow, 2^31)

// Quantizes counts to frequencies summing to kScale, every occurring symbol at least 1.
std::vector<uint32_t> normalize(const std::vector<uint64_t>& counts, int64_t n) {
  const int alphabet = static_cast<int>(counts.size());
  std::vector<uint32_t> freq(alphabet, 0);
  if (n == 0) {
    freq[0] = kScale;  // any valid table; nothing is coded
    return freq;
  }
  int64_t sum = 0;
  int largest = 0;
  for (int s = 0; s < alphabet; ++s) {
    if (counts[s] == 0) continue;
    const double exact = static_cast<double>(counts[s]) * kScale / static_cast<double>(n);
    freq[s] = std::max<uint32_t>(1, static_cast<uint32_t>(exact + 0.5));
    sum += freq[s];
    if (counts[s] > counts[largest]) largest = s;
  }
  // Settle the rounding error on the largest frequencies, where it costs the fewest bits.
  int64_t excess = sum - kScale;
  while (excess != 0) {
    int s = largest;
    if (excess > 0) {
      for (int t = 0; t < alphabet; ++t)
        if (freq[t] > freq[s]) s = t;
      const int64_t take = std::min<int64_t>(excess, freq[s] - 1);
      freq[s] -= static_cast<uint32_t>(take);
      excess -= take;
    } else {
      freq[s] += static_cast<uint32_t>(-excess);
      excess = 0;
    }
  }
  return freq;
}

void put_u32(uint8_t* p, uint32_t x) { std::memcpy(p, &x, 4); }
uint32_t get_u32(const uint8_t* p) {
  uint32_t x;
  std::memcpy(&x, p, 4);
  return x;
}

}  // namespace

int64_t rans_max_bytes(int64_t n, int alphabet) {
  // Each symbol grows the state by at most kScale / 1, i.e. kScaleBits bits, plus the final state.
  return 2 * alphabet + 4 + (n * kScaleBits + 7) / 8 + 8;
}

std::vector<uint8_t> rans_encode(const uint8_t* symbols, int64_t n, int alphabet) {
  std::vector<uint64_t> counts(alphabet, 0);
  for (int64_t i = 0; i < n; ++i) ++counts[symbols[i]];
  const std::vector<uint32_t> freq = normalize(counts, n);
  std::vector<uint32_t> cum(alphabet + 1, 0);
  for (int s = 0; s < alphabet; ++s) cum[s + 1] = cum[s] + freq[s];

  const int64_t table_bytes = 2 * alphabet + 4;
  std::vector<uint8_t> out(rans_max_bytes(n, alphabet));
  uint8_t* const begin = out.data() + table_bytes;
  uint8_t* ptr = out.data() + out.size();
  // rANS is last-in first-out: encode backwards so that the decoder reads forwards.
  uint32_t x = kRansLow;
  for (int64_t i = n; i-- > 0;) {
    const uint32_t s = symbols[i], f = freq[s];
    const uint32_t x_max = ((kRansLow >> kScaleBits) << 8) * f;
    while (x >= x_max) {
      *--ptr = static_cast<uint8_t>(x & 0xff);
      x >>= 8;
    }
    x = ((x / f) << kScaleBits) + (x % f) + cum[s];
  }
  ptr -= 4;
  put_u32(ptr, x);
  SADDLE_CHECK(ptr >= begin, "internal error: rANS output exceeded its bound");
  const int64_t stream_bytes = out.data() + out.size() - ptr;
  for (int s = 0; s < alphabet; ++s) {
    const uint16_t f16 = static_cast<uint16_t>(freq[s]);  // kScale = 2^14 fits 16 bits
    std::memcpy(out.data() + 2 * s, &f16, 2);
  }
  put_u32(out.data() + 2 * alphabet, static_cast<uint32_t>(stream_bytes));
  std::memmove(begin, ptr, stream_bytes);
  out.resize(table_bytes + stream_bytes);
  return out;
}

void rans_decode(const uint8_t* data, int64_t size, int64_t n, int alphabet, uint8_t* symbols) {
  const int64_t table_bytes = 2 * alphabet + 4;
  SADDLE_CHECK(size >= table_bytes + 4, "codec message truncated: entropy section has ", size,
               " bytes, needs at least ", table_bytes + 4);
  std::vector<uint32_t> freq(alphabet), cum(alphabet + 1, 0);
  uint64_t total = 0;
  for (int s = 0; s < alphabet; ++s) {
    uint16_t f16;
    std::memcpy(&f16, data + 2 * s, 2);
    freq[s] = f16;
    total += f16;
  }
  SADDLE_CHECK(total == kScale, "codec message entropy-coder frequencies sum to ", total,
               " (expected ", kScale, ")");
  for (int s = 0; s < alphabet; ++s) cum[s + 1] = cum[s] + freq[s];
  const uint32_t stream_bytes = get_u32(data + 2 * alphabet);
  SADDLE_CHECK(static_cast<int64_t>(stream_bytes) == size - table_bytes,
               "codec message entropy stream declares ", stream_bytes, " bytes but ",
               size - table_bytes, " follow");

  std::vector<uint8_t> slot_symbol(kScale);
  for (int s = 0; s < alphabet; ++s)
    std::fill(slot_symbol.begin() + cum[s], slot_symbol.begin() + cum[s + 1],
              static_cast<uint8_t>(s));
  const uint8_t* p = data + table_bytes;
  const uint8_t* const end = p + stream_bytes;
  uint32_t x = get_u32(p);
  p += 4;
  SADDLE_CHECK(x >= kRansLow && x < (1u << 31), "codec message has an invalid entropy-coder state");
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t slot = x & (kScale - 1);
    const uint8_t s = slot_symbol[slot];
    x = freq[s] * (x >> kScaleBits) + slot - cum[s];
    while (x < kRansLow) {
      SADDLE_CHECK(p < end, "codec message entropy stream ends early (", i + 1, " of ", n,
                   " symbols)");
      x = (x << 8) | *p++;
    }
    symbols[i] = s;
  }
  SADDLE_CHECK(p == end && x == kRansLow, "codec message entropy stream is corrupt (", end - p,
               " bytes left, final state ", x, ")");
}

}  // namespace quant_detail
}  // namespace saddle
