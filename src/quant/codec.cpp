#include "saddle/quant/codec.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstring>

#include "kernels.h"
#include "saddle/error.h"
#include "saddle/quant/level_set.h"

namespace saddle {
namespace {

using quant_detail::bucket_count;
using quant_detail::packed_bytes;

enum QuantizerId : uint8_t { kNone, kFp16, kBf16, kQsgd, kQsgdInf, kNuq, kTernGrad, kAlq, kAmq, kQuantizerCount };

// Wire header, little-endian: magic "SDQM", version, quantizer, coder, norm, bits, 3 zero bytes,
// level hash (u32), element count (u64), bucket size (u64). Casts write bits 32/16 and zero norm,
// coder, bucket and hash, so their messages do not depend on options they ignore.
constexpr uint8_t kMagic[4] = {'S', 'D', 'Q', 'M'};
constexpr uint8_t kVersion = 1;
static_assert(Codec::kHeaderBytes == 32, "header layout below is 32 bytes");

struct Header {
  uint8_t quantizer = 0, coder = 0, norm = 0, bits = 0;
  uint32_t hash = 0;
  uint64_t count = 0, bucket = 0;
};

void write_header(const Header& h, uint8_t* p) {
  std::memset(p, 0, Codec::kHeaderBytes);
  std::memcpy(p, kMagic, 4);
  p[4] = kVersion;
  p[5] = h.quantizer;
  p[6] = h.coder;
  p[7] = h.norm;
  p[8] = h.bits;
  std::memcpy(p + 12, &h.hash, 4);
  std::memcpy(p + 16, &h.count, 8);
  std::memcpy(p + 24, &h.bucket, 8);
}

Header read_header(const uint8_t* p, int64_t size) {
  SADDLE_CHECK(size >= Codec::kHeaderBytes, "codec message truncated: ", size, " bytes, the header alone needs ",
               Codec::kHeaderBytes);
  SADDLE_CHECK(std::memcmp(p, kMagic, 4) == 0, "codec message has a bad magic number (not a saddle codec message)");
  SADDLE_CHECK(p[4] == kVersion, "codec message has format version ", int{p[4]}, " (this build reads version ",
               int{kVersion}, ")");
  SADDLE_CHECK(p[9] == 0 && p[10] == 0 && p[11] == 0, "codec message has non-zero reserved header bytes");
  Header h;
  h.quantizer = p[5];
  h.coder = p[6];
  h.norm = p[7];
  h.bits = p[8];
  std::memcpy(&h.hash, p + 12, 4);
  std::memcpy(&h.count, p + 16, 8);
  std::memcpy(&h.bucket, p + 24, 8);
  return h;
}

bool is_cast(int id) { return id == kNone || id == kFp16 || id == kBf16; }
int cast_bits(int id) { return id == kNone ? 32 : 16; }

std::string quantizer_label(int id) {
  return id < kQuantizerCount ? "'" + quantizer_names()[id] + "'" : "id " + std::to_string(id);
}

void check_vector(const torch::Tensor& t, const char* what) {
  SADDLE_CHECK(t.defined(), what, " is undefined");
  SADDLE_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.dim() == 1 && t.is_contiguous(),
               what, " must be a 1-D contiguous float32 CPU tensor, got ", t.scalar_type(), " of shape ",
               t.sizes(), t.is_contiguous() ? "" : " (non-contiguous)");
}

}  // namespace

NormKind parse_norm(const std::string& name) {
  if (name == "l2") return NormKind::kL2;
  if (name == "linf") return NormKind::kLinf;
  throw Error("unknown norm '" + name + "' (expected l2 or linf)");
}
const char* norm_name(NormKind kind) { return kind == NormKind::kL2 ? "l2" : "linf"; }

CoderKind parse_coder(const std::string& name) {
  if (name == "fixed") return CoderKind::kFixed;
  if (name == "entropy") return CoderKind::kEntropy;
  throw Error("unknown coder '" + name + "' (expected fixed or entropy)");
}
const char* coder_name(CoderKind kind) { return kind == CoderKind::kFixed ? "fixed" : "entropy"; }

const std::vector<std::string>& quantizer_names() {
  static const std::vector<std::string> names = {"none", "fp16",     "bf16", "qsgd", "qsgd-inf",
                                                 "nuq",  "terngrad", "alq",  "amq"};
  return names;
}

Codec::Codec(const CodecOptions& options) : options_(options) {
  const auto& names = quantizer_names();
  quantizer_id_ = -1;
  for (size_t k = 0; k < names.size(); ++k)
    if (names[k] == options.quantizer()) quantizer_id_ = static_cast<int>(k);
  if (quantizer_id_ < 0) {
    std::string all;
    for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
    throw Error("unknown quantizer '" + options.quantizer() + "' (expected one of: " + all + ")");
  }
  SADDLE_CHECK(options.bits() >= 2 && options.bits() <= 8, "invalid --bits ", options.bits(), " (expected 2..8)");
  SADDLE_CHECK(options.bucket_size() >= 1 && options.bucket_size() <= kMaxBucketSize, "invalid --bucket-size ",
               options.bucket_size(), " (expected 1..", kMaxBucketSize, ")");
  SADDLE_CHECK(options.norm() == NormKind::kL2 || options.norm() == NormKind::kLinf, "invalid --norm value ",
               static_cast<int>(options.norm()));
  SADDLE_CHECK(options.coder() == CoderKind::kFixed || options.coder() == CoderKind::kEntropy,
               "invalid --coder value ", static_cast<int>(options.coder()));
  if (quantizer_id_ == kTernGrad) options_.bits(2).norm(NormKind::kLinf);
  if (quantizer_id_ == kQsgdInf) options_.norm(NormKind::kLinf);
  if (is_cast(quantizer_id_)) return;
  const int count = level_count(options_.bits());
  if (quantizer_id_ == kQsgd || quantizer_id_ == kQsgdInf || quantizer_id_ == kTernGrad) {
    levels_ = uniform_levels(count);
  } else {
    levels_ = exponential_levels(count, 0.5);  // NUQSGD's levels; ALQ and AMQ start there
  }
  rebuild_tables();
}

bool Codec::adaptive() const { return quantizer_id_ == kAlq || quantizer_id_ == kAmq; }

void Codec::set_levels(std::vector<float> levels) {
  SADDLE_CHECK(adaptive(), "quantizer '", options_.quantizer(), "' has fixed levels; only alq and amq accept new ones");
  check_levels(levels, level_count(options_.bits()));
  levels_ = std::move(levels);
  rebuild_tables();
}

void Codec::rebuild_tables() {
  const int count = static_cast<int>(levels_.size());
  levels_hash_ = levels_hash(levels_);
  inv_gap_.assign(count, 0.0f);
  for (int j = 0; j + 1 < count; ++j) inv_gap_[j] = 1.0f / (levels_[j + 1] - levels_[j]);
  level_lut_.assign(quant_detail::kLutCells, 0);
  int j = 0;
  for (int c = 0; c < quant_detail::kLutCells; ++c) {
    const float lo = static_cast<float>(c) / quant_detail::kLutCells;
    const float hi = static_cast<float>(c + 1) / quant_detail::kLutCells;
    while (j < count - 2 && levels_[j + 1] <= lo) ++j;
    // The kernel's one comparison covers a single level inside the cell; more need its scan.
    const bool scan = j + 2 <= count - 2 && levels_[j + 2] <= hi;
    level_lut_[c] = j | (scan ? quant_detail::kLutScan : 0);
  }
}

int64_t Codec::max_encoded_bytes(int64_t n) const {
  if (is_cast(quantizer_id_)) return kHeaderBytes + n * cast_bits(quantizer_id_) / 8;
  const int64_t base = kHeaderBytes + 4 * bucket_count(n, options_.bucket_size());
  if (options_.coder() == CoderKind::kFixed) return base + packed_bytes(n, options_.bits());
  return base + quant_detail::rans_max_bytes(n, 1 << options_.bits());
}

namespace {

quant_detail::QuantParams params_of(const CodecOptions& o, int id, const std::vector<float>& levels,
                                    const std::vector<float>& inv_gap, const std::vector<int32_t>& lut) {
  quant_detail::QuantParams p;
  p.bits = o.bits();
  p.count = static_cast<int>(levels.size());
  p.uniform = id == kQsgd || id == kQsgdInf || id == kTernGrad;
  p.norm = o.norm();
  p.bucket = o.bucket_size();
  p.levels = levels.data();
  p.inv_gap = inv_gap.data();
  p.lut = lut.data();
  return p;
}

}  // namespace

torch::Tensor Codec::encode(const torch::Tensor& v, uint64_t seed, uint64_t stream) const {
  check_vector(v, "codec input");
  const int64_t n = v.numel();
  const float* x = v.data_ptr<float>();
  Header h;
  h.quantizer = static_cast<uint8_t>(quantizer_id_);
  h.count = static_cast<uint64_t>(n);
  if (is_cast(quantizer_id_)) {
    h.bits = static_cast<uint8_t>(cast_bits(quantizer_id_));
    auto message = torch::empty({max_encoded_bytes(n)}, torch::kUInt8);
    uint8_t* p = message.data_ptr<uint8_t>();
    write_header(h, p);
    p += kHeaderBytes;
    if (quantizer_id_ == kNone) {
      std::memcpy(p, x, n * sizeof(float));
    } else if (quantizer_id_ == kFp16) {
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t bits = c10::Half(x[i]).x;
        std::memcpy(p + 2 * i, &bits, 2);
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t bits = c10::BFloat16(x[i]).x;  // rounds to nearest even
        std::memcpy(p + 2 * i, &bits, 2);
      }
    }
    return message;
  }
  h.coder = static_cast<uint8_t>(options_.coder());
  h.norm = static_cast<uint8_t>(options_.norm());
  h.bits = static_cast<uint8_t>(options_.bits());
  h.hash = levels_hash_;
  h.bucket = static_cast<uint64_t>(options_.bucket_size());
  auto params = params_of(options_, quantizer_id_, levels_, inv_gap_, level_lut_);
  params.seed = seed;
  params.stream = stream;
  const int64_t buckets = bucket_count(n, options_.bucket_size());
  std::vector<float> norms(buckets);
  if (options_.coder() == CoderKind::kFixed) {
    auto message = torch::empty({max_encoded_bytes(n)}, torch::kUInt8);
    uint8_t* p = message.data_ptr<uint8_t>();
    write_header(h, p);
    quant_detail::encode_fixed(x, n, params, norms.data(), p + kHeaderBytes + 4 * buckets);
    std::memcpy(p + kHeaderBytes, norms.data(), 4 * buckets);
    return message;
  }
  std::vector<uint8_t> symbols(n);
  quant_detail::quantize_symbols(x, n, params, norms.data(), symbols.data());
  const std::vector<uint8_t> coded = quant_detail::rans_encode(symbols.data(), n, 1 << options_.bits());
  auto message = torch::empty({kHeaderBytes + 4 * buckets + static_cast<int64_t>(coded.size())}, torch::kUInt8);
  uint8_t* p = message.data_ptr<uint8_t>();
  write_header(h, p);
  std::memcpy(p + kHeaderBytes, norms.data(), 4 * buckets);
  std::memcpy(p + kHeaderBytes + 4 * buckets, coded.data(), coded.size());
  return message;
}

void Codec::decode_accumulate(const torch::Tensor& message, torch::Tensor& out, float weight) const {
  SADDLE_CHECK(message.defined() && message.device().is_cpu() && message.scalar_type() == torch::kUInt8 &&
                   message.dim() == 1 && message.is_contiguous(),
               "codec message must be a 1-D contiguous kUInt8 CPU tensor");
  check_vector(out, "codec output");
  const uint8_t* p = message.data_ptr<uint8_t>();
  const int64_t size = message.numel();
  const Header h = read_header(p, size);

  // The message must have been written by a codec configured like this one.
  SADDLE_CHECK(h.quantizer == quantizer_id_, "codec message was encoded by quantizer ", quantizer_label(h.quantizer),
               " but this codec uses '", options_.quantizer(), "'");
  const bool cast = is_cast(quantizer_id_);
  const int expected_bits = cast ? cast_bits(quantizer_id_) : options_.bits();
  SADDLE_CHECK(h.bits == expected_bits, "codec message has ", int{h.bits}, " bits per coordinate (expected ",
               expected_bits, ")");
  const int expected_coder = cast ? 0 : static_cast<int>(options_.coder());
  SADDLE_CHECK(h.coder == expected_coder, "codec message coder id ", int{h.coder}, " (expected ", expected_coder, ")");
  const int expected_norm = cast ? 0 : static_cast<int>(options_.norm());
  SADDLE_CHECK(h.norm == expected_norm, "codec message norm id ", int{h.norm}, " (expected ", expected_norm, ")");
  const uint64_t expected_bucket = cast ? 0 : static_cast<uint64_t>(options_.bucket_size());
  SADDLE_CHECK(h.bucket == expected_bucket, "codec message has bucket size ", h.bucket, " (expected ",
               expected_bucket, ")");
  const uint32_t expected_hash = cast ? 0 : levels_hash_;
  SADDLE_CHECK(h.hash == expected_hash, "codec message level-set hash ", h.hash, " differs from this codec's ",
               expected_hash, " (ranks hold different levels)");
  SADDLE_CHECK(h.count == static_cast<uint64_t>(out.numel()), "codec message declares ", h.count,
               " coordinates but the output has ", out.numel());
  const int64_t n = out.numel();
  float* o = out.data_ptr<float>();
  const uint8_t* body = p + kHeaderBytes;

  if (cast) {
    const int64_t expected = max_encoded_bytes(n);
    SADDLE_CHECK(size == expected, "codec message has ", size, " bytes (expected ", expected, " for ", n,
                 " coordinates)");
    if (quantizer_id_ == kNone) {
      for (int64_t i = 0; i < n; ++i) {
        float x;
        std::memcpy(&x, body + 4 * i, 4);
        o[i] += weight * x;
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        uint16_t bits;
        std::memcpy(&bits, body + 2 * i, 2);
        const float x = quantizer_id_ == kFp16 ? c10::detail::fp16_ieee_to_fp32_value(bits)
                                                : c10::detail::f32_from_bits(bits);
        o[i] += weight * x;
      }
    }
    return;
  }

  const int64_t buckets = bucket_count(n, options_.bucket_size());
  const int64_t norms_end = kHeaderBytes + 4 * buckets;
  SADDLE_CHECK(size >= norms_end, "codec message truncated: ", size, " bytes, the header and ", buckets,
               " bucket norms need ", norms_end);
  std::vector<float> norms(buckets);
  std::memcpy(norms.data(), body, 4 * buckets);
  for (int64_t b = 0; b < buckets; ++b) {
    SADDLE_CHECK(std::isfinite(norms[b]) && norms[b] >= 0, "codec message has invalid norm ", norms[b],
                 " for bucket ", b);
  }
  auto params = params_of(options_, quantizer_id_, levels_, inv_gap_, level_lut_);
  if (options_.coder() == CoderKind::kFixed) {
    const int64_t expected = norms_end + packed_bytes(n, options_.bits());
    SADDLE_CHECK(size == expected, "codec message has ", size, " bytes (expected ", expected, " for ", n,
                 " coordinates)");
    quant_detail::accumulate_fixed(p + norms_end, n, norms.data(), params, weight, o);
    return;
  }
  // Decode every symbol before touching `out`: only the end of the stream proves it intact.
  std::vector<uint8_t> symbols(n);
  quant_detail::rans_decode(p + norms_end, size - norms_end, n, 1 << options_.bits(), symbols.data());
  quant_detail::accumulate_symbols(symbols.data(), n, norms.data(), params, weight, o);
}

torch::Tensor Codec::statistics(const torch::Tensor& v) const {
  SADDLE_CHECK(!is_cast(quantizer_id_), "quantizer '", options_.quantizer(), "' has no levels to gather statistics for");
  check_vector(v, "statistics input");
  auto stats = torch::zeros({3, kLevelStatBins}, torch::kFloat64);
  const auto params = params_of(options_, quantizer_id_, levels_, inv_gap_, level_lut_);
  quant_detail::accumulate_statistics(v.data_ptr<float>(), v.numel(), params, stats.data_ptr<double>());
  return stats;
}

double Codec::predicted_variance(const torch::Tensor& summed_statistics) const {
  SADDLE_CHECK(!is_cast(quantizer_id_), "quantizer '", options_.quantizer(), "' has no levels");
  return expected_variance(levels_, summed_statistics);
}

double Codec::adapt(const torch::Tensor& summed_statistics) {
  SADDLE_CHECK(adaptive(), "quantizer '", options_.quantizer(), "' is not adaptive (only alq and amq adapt)");
  if (quantizer_id_ == kAlq) {
    levels_ = fit_alq_levels(levels_, summed_statistics);
  } else {
    levels_ = fit_amq_levels(static_cast<int>(levels_.size()), summed_statistics);
  }
  rebuild_tables();
  return expected_variance(levels_, summed_statistics);
}

}  // namespace saddle
