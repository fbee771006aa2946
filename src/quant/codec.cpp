#include "saddle/quant/codec.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstring>

#include "kernels.h"
#include "saddle/quant/level_set.h"

#if SADDLE_WITH_CUDA
#include "../cuda/codec_cuda.h"
#endif

namespace saddle {

using quant_detail::bucket_count;
using quant_detail::packed_bytes;

const std::vector<QuantizerSpec>& quantizer_specs() {
  using F = LevelFamily;
  using C = CastKind;
  using L = LevelFit;
  // name, wire id, levels, cast, fit, forced bits, forced L-inf, description
  static const std::vector<QuantizerSpec> kTable = {
      {"none", 0, F::kCast, C::kFp32, L::kFixed, 0, false, "float32, no compression"},
      {"fp16", 1, F::kCast, C::kFp16, L::kFixed, 0, false, "cast to IEEE half precision"},
      {"bf16", 2, F::kCast, C::kBf16, L::kFixed, 0, false, "cast to bfloat16"},
      {"qsgd", 3, F::kUniform, C::kFp32, L::kFixed, 0, false, "uniform levels (QSGD)"},
      {"qsgd-inf", 4, F::kUniform, C::kFp32, L::kFixed, 0, true,
       "uniform levels, L-inf bucket norm"},
      {"nuq", 5, F::kExponential, C::kFp32, L::kFixed, 0, false,
       "exponential levels with zero (NUQSGD)"},
      {"terngrad", 6, F::kUniform, C::kFp32, L::kFixed, 2, true, "{-1, 0, 1} x L-inf norm"},
      {"alq", 7, F::kExponential, C::kFp32, L::kAlq, 0, false,
       "levels refit by coordinate descent on the variance (ALQ)"},
      {"amq", 8, F::kExponential, C::kFp32, L::kAmq, 0, false,
       "exponential levels with a refit multiplier (AMQ)"},
  };
  return kTable;
}

const std::vector<std::string>& quantizer_names() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> names;
    for (const auto& spec : quantizer_specs()) names.push_back(spec.name);
    return names;
  }();
  return kNames;
}

const QuantizerSpec& quantizer_spec(const std::string& name) {
  for (const auto& spec : quantizer_specs()) {
    if (name == spec.name) return spec;
  }
  std::string all;
  for (const auto& n : quantizer_names()) all += (all.empty() ? "" : ", ") + n;
  throw Error("unknown quantizer '" + name + "' (expected one of: " + all + ")");
}

const QuantizerSpec* quantizer_spec_by_wire_id(int wire_id) {
  for (const auto& spec : quantizer_specs()) {
    if (spec.wire_id == wire_id) return &spec;
  }
  return nullptr;
}

namespace {

// Wire header, little-endian: magic "SDQM", version, quantizer wire id, coder, norm, bits, 3 zero
// bytes, level hash (u32), element count (u64), bucket size (u64). Casts write bits 32/16 and zero
// norm, coder, bucket and hash, so their messages do not depend on options they ignore.
constexpr uint8_t kMagic[4] = {'S', 'D', 'Q', 'M'};
constexpr uint8_t kVersion = 1;
static_assert(Codec::kHeaderBytes == 32, "header layout below is 32 bytes");

struct Header {
  uint8_t quantizer = 0, coder = 0, norm = 0, bits = 0;
  uint32_t hash = 0;
  uint64_t count = 0, bucket = 0;
};

void write_header_bytes(const Header& h, uint8_t* p) {
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
  SADDLE_CHECK(size >= Codec::kHeaderBytes, "codec message truncated: ", size,
               " bytes, the header alone needs ", Codec::kHeaderBytes);
  SADDLE_CHECK(std::memcmp(p, kMagic, 4) == 0,
               "codec message has a bad magic number (not a saddle codec message)");
  SADDLE_CHECK(p[4] == kVersion, "codec message has format version ", int{p[4]},
               " (this build reads version ", int{kVersion}, ")");
  SADDLE_CHECK(p[9] == 0 && p[10] == 0 && p[11] == 0,
               "codec message has non-zero reserved header bytes");
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

int cast_bits(CastKind kind) { return kind == CastKind::kFp32 ? 32 : 16; }

std::string quantizer_label(int wire_id) {
  const QuantizerSpec* spec = quantizer_spec_by_wire_id(wire_id);
  return spec != nullptr ? "'" + std::string(spec->name) + "'" : "id " + std::to_string(wire_id);
}

void check_vector(const torch::Tensor& t, const char* what) {
  SADDLE_CHECK(t.defined(), what, " is undefined");
  SADDLE_CHECK(t.scalar_type() == torch::kFloat32 && t.dim() == 1 && t.is_contiguous(), what,
               " must be a 1-D contiguous float32 tensor, got ", t.scalar_type(), " of shape ",
               t.sizes(), t.is_contiguous() ? "" : " (non-contiguous)");
  SADDLE_CHECK(t.device().is_cpu() || t.device().is_cuda(), what, " on ", t.device(),
               " (expected a CPU or CUDA tensor)");
#if !SADDLE_WITH_CUDA
  SADDLE_CHECK(t.device().is_cpu(), what, " is on ", t.device(),
               " but this build of saddle has no CUDA support (build it against the CUDA "
               "LibTorch: scripts/setup.sh --torch pip)");
#endif
}

void check_message_tensor(const torch::Tensor& message) {
  SADDLE_CHECK(message.defined() && message.scalar_type() == torch::kUInt8 && message.dim() == 1 &&
                   message.is_contiguous(),
               "codec message must be a 1-D contiguous kUInt8 tensor");
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

Codec::Codec(const CodecOptions& options)
    : options_(options), spec_(&quantizer_spec(options.quantizer())) {
  SADDLE_CHECK(options.bits() >= 2 && options.bits() <= 8, "invalid --bits ", options.bits(),
               " (expected 2..8)");
  SADDLE_CHECK(options.bucket_size() >= 1 && options.bucket_size() <= kMaxBucketSize,
               "invalid --bucket-size ", options.bucket_size(), " (expected 1..", kMaxBucketSize,
               ")");
  SADDLE_CHECK(options.norm() == NormKind::kL2 || options.norm() == NormKind::kLinf,
               "invalid --norm value ", static_cast<int>(options.norm()));
  SADDLE_CHECK(options.coder() == CoderKind::kFixed || options.coder() == CoderKind::kEntropy,
               "invalid --coder value ", static_cast<int>(options.coder()));
  if (spec_->forced_bits > 0) options_.bits(spec_->forced_bits);
  if (spec_->forced_linf) options_.norm(NormKind::kLinf);
  if (is_cast()) return;
  const int count = level_count(options_.bits());
  if (spec_->family == LevelFamily::kUniform) {
    levels_ = uniform_levels(count);
  } else {
    levels_ = exponential_levels(count, 0.5);  // NUQSGD's levels; ALQ and AMQ start there
  }
  rebuild_tables();
}

bool Codec::adaptive() const { return spec_->fit != LevelFit::kFixed; }

void Codec::set_levels(std::vector<float> levels) {
  SADDLE_CHECK(adaptive(), "quantizer '", options_.quantizer(),
               "' has fixed levels; only alq and amq accept new ones");
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
  device_tables_ = torch::Tensor();
}

const torch::Tensor& Codec::device_tables(const torch::Device& device) const {
  if (!device_tables_.defined() || device_tables_.device() != device) {
    const int64_t count = static_cast<int64_t>(levels_.size());
    torch::Tensor host = torch::empty({2, count}, torch::kFloat32);
    std::memcpy(host.data_ptr<float>(), levels_.data(), count * sizeof(float));
    std::memcpy(host.data_ptr<float>() + count, inv_gap_.data(), count * sizeof(float));
    device_tables_ = host.to(device);
  }
  return device_tables_;
}

int64_t Codec::max_encoded_bytes(int64_t n) const {
  if (is_cast()) return kHeaderBytes + n * cast_bits(spec_->cast) / 8;
  const int64_t base = kHeaderBytes + 4 * bucket_count(n, options_.bucket_size());
  if (options_.coder() == CoderKind::kFixed) return base + packed_bytes(n, options_.bits());
  return base + quant_detail::rans_max_bytes(n, 1 << options_.bits());
}

void Codec::write_header(int64_t n, uint8_t* out) const {
  Header h;
  h.quantizer = spec_->wire_id;
  h.count = static_cast<uint64_t>(n);
  if (is_cast()) {
    h.bits = static_cast<uint8_t>(cast_bits(spec_->cast));
  } else {
    h.coder = static_cast<uint8_t>(options_.coder());
    h.norm = static_cast<uint8_t>(options_.norm());
    h.bits = static_cast<uint8_t>(options_.bits());
    h.hash = levels_hash_;
    h.bucket = static_cast<uint64_t>(options_.bucket_size());
  }
  write_header_bytes(h, out);
}

namespace {

// out[i] = (assign ? 0 : out[i]) + weight * x_i and, unless row is null, row[i] = 0 + 1 * x_i, for
// the coordinates x of a cast message's body (fp16 and bf16 widened exactly).
template <CastKind C>
void decode_cast_body(const uint8_t* body, int64_t n, float weight, bool assign, float* o,
                      float* row) {
  for (int64_t i = 0; i < n; ++i) {
    float x;
    if constexpr (C == CastKind::kFp32) {
      std::memcpy(&x, body + 4 * i, 4);
    } else {
      uint16_t bits;
      std::memcpy(&bits, body + 2 * i, 2);
      x = C == CastKind::kFp16 ? c10::detail::fp16_ieee_to_fp32_value(bits)
                               : c10::detail::f32_from_bits(bits);
    }
    o[i] = (assign ? 0.0f : o[i]) + weight * x;
    if (row) row[i] = 0.0f + 1.0f * x;
  }
}

void decode_cast(CastKind cast, const uint8_t* body, int64_t n, float weight, bool assign, float* o,
                 float* row) {
  switch (cast) {
    case CastKind::kFp32: return decode_cast_body<CastKind::kFp32>(body, n, weight, assign, o, row);
    case CastKind::kFp16: return decode_cast_body<CastKind::kFp16>(body, n, weight, assign, o, row);
    case CastKind::kBf16: return decode_cast_body<CastKind::kBf16>(body, n, weight, assign, o, row);
  }
}

quant_detail::QuantParams params_of(const CodecOptions& o, const QuantizerSpec& spec,
                                    const std::vector<float>& levels,
                                    const std::vector<float>& inv_gap,
                                    const std::vector<int32_t>& lut) {
  quant_detail::QuantParams p;
  p.bits = o.bits();
  p.count = static_cast<int>(levels.size());
  p.uniform = spec.family == LevelFamily::kUniform;
  p.norm = o.norm();
  p.bucket = o.bucket_size();
  p.levels = levels.data();
  p.inv_gap = inv_gap.data();
  p.lut = lut.data();
  p.vector = o.cpu_kernels() == CpuKernels::kVector;
  return p;
}

#if SADDLE_WITH_CUDA
cuda_detail::QuantSetup cuda_setup(const CodecOptions& o, const QuantizerSpec& spec,
                                   const std::vector<float>& levels, torch::Tensor tables) {
  return {o.bits(),
          static_cast<int>(levels.size()),
          spec.family == LevelFamily::kUniform,
          o.norm() == NormKind::kLinf,
          o.bucket_size(),
          o.cuda_encoder() == CudaEncoder::kRegister,
          std::move(tables)};
}
#endif

}  // namespace

torch::Tensor Codec::encode(const torch::Tensor& v, uint64_t seed, uint64_t stream,
                            int64_t first) const {
  check_vector(v, "codec input");
  SADDLE_CHECK(first >= 0, "codec: the first coordinate's index is ", first, " (must be >= 0)");
  const int64_t n = v.numel();
  uint8_t header[kHeaderBytes];
  write_header(n, header);
#if SADDLE_WITH_CUDA
  if (v.is_cuda()) {
    const cuda_detail::QuantSetup setup = cuda_setup(
        options_, *spec_, levels_, is_cast() ? torch::Tensor() : device_tables(v.device()));
    if (is_cast()) {
      return cuda_detail::encode_cast(v, static_cast<int>(spec_->cast), header,
                                      max_encoded_bytes(n));
    }
    if (options_.coder() == CoderKind::kFixed) {
      return cuda_detail::encode_fixed(v, setup, seed, stream, first, header, max_encoded_bytes(n));
    }
    // The entropy coder runs on the CPU: the symbols come back from the device, the message goes
    // to it.
    torch::Tensor norms, symbols;
    cuda_detail::quantize_symbols(v, setup, seed, stream, first, &norms, &symbols);
    const std::vector<uint8_t> coded =
        quant_detail::rans_encode(symbols.data_ptr<uint8_t>(), n, 1 << options_.bits());
    const int64_t buckets = norms.numel();
    auto message = torch::empty({kHeaderBytes + 4 * buckets + static_cast<int64_t>(coded.size())},
                                torch::kUInt8);
    uint8_t* p = message.data_ptr<uint8_t>();
    std::memcpy(p, header, kHeaderBytes);
    std::memcpy(p + kHeaderBytes, norms.data_ptr<float>(), 4 * buckets);
    std::memcpy(p + kHeaderBytes + 4 * buckets, coded.data(), coded.size());
    return message.to(v.device());
  }
#endif
  const float* x = v.data_ptr<float>();
  if (is_cast()) {
    auto message = torch::empty({max_encoded_bytes(n)}, torch::kUInt8);
    uint8_t* p = message.data_ptr<uint8_t>();
    std::memcpy(p, header, kHeaderBytes);
    p += kHeaderBytes;
    if (spec_->cast == CastKind::kFp32) {
      if (n > 0) std::memcpy(p, x, n * sizeof(float));
    } else if (spec_->cast == CastKind::kFp16) {
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
  auto params = params_of(options_, *spec_, levels_, inv_gap_, level_lut_);
  params.seed = seed;
  params.stream = stream;
  params.first = first;
  const int64_t buckets = bucket_count(n, options_.bucket_size());
  std::vector<float> norms(buckets);
  if (options_.coder() == CoderKind::kFixed) {
    auto message = torch::empty({max_encoded_bytes(n)}, torch::kUInt8);
    uint8_t* p = message.data_ptr<uint8_t>();
    std::memcpy(p, header, kHeaderBytes);
    quant_detail::encode_fixed(x, n, params, norms.data(), p + kHeaderBytes + 4 * buckets);
    if (buckets > 0) std::memcpy(p + kHeaderBytes, norms.data(), 4 * buckets);
    return message;
  }
  std::vector<uint8_t> symbols(n);
  quant_detail::quantize_symbols(x, n, params, norms.data(), symbols.data());
  const std::vector<uint8_t> coded =
      quant_detail::rans_encode(symbols.data(), n, 1 << options_.bits());
  auto message = torch::empty({kHeaderBytes + 4 * buckets + static_cast<int64_t>(coded.size())},
                              torch::kUInt8);
  uint8_t* p = message.data_ptr<uint8_t>();
  std::memcpy(p, header, kHeaderBytes);
  if (buckets > 0) std::memcpy(p + kHeaderBytes, norms.data(), 4 * buckets);
  if (!coded.empty()) std::memcpy(p + kHeaderBytes + 4 * buckets, coded.data(), coded.size());
  return message;
}

void Codec::check_message(const uint8_t* p, int64_t size, int64_t n, bool check_norms) const {
  const Header h = read_header(p, size);
  // The message must have been written by a codec configured like this one.
  SADDLE_CHECK(h.quantizer == spec_->wire_id, "codec message was encoded by quantizer ",
               quantizer_label(h.quantizer), " but this codec uses '", options_.quantizer(), "'");
  const bool cast = is_cast();
  const int expected_bits = cast ? cast_bits(spec_->cast) : options_.bits();
  SADDLE_CHECK(h.bits == expected_bits, "codec message has ", int{h.bits},
               " bits per coordinate (expected ", expected_bits, ")");
  const int expected_coder = cast ? 0 : static_cast<int>(options_.coder());
  SADDLE_CHECK(h.coder == expected_coder, "codec message coder id ", int{h.coder}, " (expected ",
               expected_coder, ")");
  const int expected_norm = cast ? 0 : static_cast<int>(options_.norm());
  SADDLE_CHECK(h.norm == expected_norm, "codec message norm id ", int{h.norm}, " (expected ",
               expected_norm, ")");
  const uint64_t expected_bucket = cast ? 0 : static_cast<uint64_t>(options_.bucket_size());
  SADDLE_CHECK(h.bucket == expected_bucket, "codec message has bucket size ", h.bucket,
               " (expected ", expected_bucket, ")");
  const uint32_t expected_hash = cast ? 0 : levels_hash_;
  SADDLE_CHECK(h.hash == expected_hash, "codec message level-set hash ", h.hash,
               " differs from this codec's ", expected_hash, " (ranks hold different levels)");
  SADDLE_CHECK(h.count == static_cast<uint64_t>(n), "codec message declares ", h.count,
               " coordinates but the output has ", n);
  if (cast) {
    const int64_t expected = max_encoded_bytes(n);
    SADDLE_CHECK(size == expected, "codec message has ", size, " bytes (expected ", expected,
                 " for ", n, " coordinates)");
    return;
  }
  const int64_t buckets = bucket_count(n, options_.bucket_size());
  const int64_t norms_end = kHeaderBytes + 4 * buckets;
  SADDLE_CHECK(size >= norms_end, "codec message truncated: ", size, " bytes, the header and ",
               buckets, " bucket norms need ", norms_end);
  if (options_.coder() == CoderKind::kFixed) {
    const int64_t expected = norms_end + packed_bytes(n, options_.bits());
    SADDLE_CHECK(size == expected, "codec message has ", size, " bytes (expected ", expected,
                 " for ", n, " coordinates)");
  }
  if (!check_norms) return;
  for (int64_t b = 0; b < buckets; ++b) {
    float norm;
    std::memcpy(&norm, p + kHeaderBytes + 4 * b, 4);
    SADDLE_CHECK(std::isfinite(norm) && norm >= 0, "codec message has invalid norm ", norm,
                 " for bucket ", b);
  }
}

void Codec::decode_accumulate(const torch::Tensor& message, torch::Tensor& out,
                              float weight) const {
  check_message_tensor(message);
  check_vector(out, "codec output");
  SADDLE_CHECK(message.device() == out.device(), "codec message on ", message.device(),
               " but the output on ", out.device());
  if (!out.device().is_cpu()) {
    // Decoded on the CPU (the entropy coder's path of a CUDA run, and any single message).
    torch::Tensor host = out.to(torch::kCPU);
    decode_accumulate(message.to(torch::kCPU), host, weight);
    out.copy_(host);
    return;
  }
  const uint8_t* p = message.data_ptr<uint8_t>();
  const int64_t size = message.numel();
  const int64_t n = out.numel();
  check_message(p, size, n, /*check_norms=*/true);
  float* o = out.data_ptr<float>();
  const uint8_t* body = p + kHeaderBytes;

  if (is_cast()) {
    decode_cast(spec_->cast, body, n, weight, /*assign=*/false, o, /*row=*/nullptr);
    return;
  }

  const int64_t buckets = bucket_count(n, options_.bucket_size());
  const int64_t norms_end = kHeaderBytes + 4 * buckets;
  std::vector<float> norms(buckets);
  if (buckets > 0) std::memcpy(norms.data(), body, 4 * buckets);
  auto params = params_of(options_, *spec_, levels_, inv_gap_, level_lut_);
  if (options_.coder() == CoderKind::kFixed) {
    quant_detail::decode_fixed_into(p + norms_end, n, norms.data(), params, weight,
                                    /*assign=*/false, o, /*row=*/nullptr);
    return;
  }
  // Decode every symbol before touching `out`: only the end of the stream proves it intact.
  std::vector<uint8_t> symbols(n);
  quant_detail::rans_decode(p + norms_end, size - norms_end, n, 1 << options_.bits(),
                            symbols.data());
  quant_detail::accumulate_symbols(symbols.data(), n, norms.data(), params, weight, o);
}

void Codec::decode_average(const std::vector<torch::Tensor>& messages, torch::Tensor& out,
                           float weight) const {
  check_vector(out, "codec output");
  for (size_t r = 0; r < messages.size(); ++r) {
    try {
      check_message_tensor(messages[r]);
      SADDLE_CHECK(messages[r].device() == out.device(), "codec message on ", messages[r].device(),
                   " but the output on ", out.device());
    } catch (const Error& e) {
      throw MalformedMessage(static_cast<int>(r), e.what());
    }
  }
#if SADDLE_WITH_CUDA
  const bool fused = !(options_.coder() == CoderKind::kEntropy && !is_cast());
  if (out.is_cuda() && fused && !messages.empty()) {
    // One buffer of equal-sized messages (an allgather's output as is, else packed into one).
    const int64_t stride = messages[0].numel();
    bool packed = true;
    for (size_t r = 0; r < messages.size(); ++r) {
      packed = packed && messages[r].numel() == stride &&
               messages[r].data_ptr<uint8_t>() == messages[0].data_ptr<uint8_t>() + r * stride;
    }
    for (size_t r = 0; r < messages.size(); ++r) {
      if (messages[r].numel() != stride) {
        throw MalformedMessage(static_cast<int>(r),
                               detail::concat("codec message has ", messages[r].numel(),
                                              " bytes (expected ", stride, ")"));
      }
    }
    const torch::Tensor all =
        packed ? messages[0].as_strided({stride * static_cast<int64_t>(messages.size())}, {1})
               : torch::cat(messages);
    const int count = static_cast<int>(messages.size());
    // Headers (and sizes) on the host, norms on the device, before anything is decoded.
    const int64_t buckets = bucket_count(out.numel(), options_.bucket_size());
    const cuda_detail::MessageFacts facts =
        cuda_detail::inspect_messages(all, count, stride, is_cast() ? -1 : buckets);
    const torch::Tensor& headers = facts.headers;
    for (int r = 0; r < count; ++r) {
      try {
        check_message(headers.data_ptr<uint8_t>() + r * kHeaderBytes, stride, out.numel(),
                      /*check_norms=*/false);
      } catch (const MalformedMessage&) {
        throw;
      } catch (const Error& e) {
        throw MalformedMessage(r, e.what());
      }
    }
    const cuda_detail::QuantSetup setup = cuda_setup(
        options_, *spec_, levels_, is_cast() ? torch::Tensor() : device_tables(out.device()));
    if (is_cast()) {
      cuda_detail::decode_average_cast(all, count, stride, static_cast<int>(spec_->cast), weight,
                                       out);
      return;
    }
    // check_message refused messages too short to hold their norms, so they were checked.
    SADDLE_CHECK(facts.norms_checked, "codec: bucket norms of the messages were not checked");
    if (facts.first_bad_norms >= 0)
      throw MalformedMessage(facts.first_bad_norms,
                             "codec message has an invalid (negative or "
                             "non-finite) bucket norm");
    cuda_detail::decode_average_fixed(all, count, stride, setup, weight, out);
    return;
  }
#endif
  if (decode_average_in_one_pass(messages, out, weight, nullptr)) return;
  // Validate everything first, then decode: `out` changes only when every message is good.
  torch::Tensor sum = torch::zeros_like(out, torch::TensorOptions().device(torch::kCPU));
  for (size_t r = 0; r < messages.size(); ++r) {
    try {
      decode_accumulate(messages[r].to(torch::kCPU), sum, weight);
    } catch (const Error& e) {
      throw MalformedMessage(static_cast<int>(r), e.what());
    }
  }
  out.copy_(sum);
}

void Codec::decode_average(const std::vector<torch::Tensor>& messages, torch::Tensor& out,
                           float weight, std::vector<torch::Tensor>& rows) const {
  SADDLE_CHECK(rows.size() == messages.size(), "decode_average: ", rows.size(), " rows for ",
               messages.size(), " messages");
  if (decode_average_in_one_pass(messages, out, weight, &rows)) return;
  decode_average(messages, out, weight);
  for (size_t r = 0; r < messages.size(); ++r) decode_average({messages[r]}, rows[r], 1.0f);
}

bool Codec::decode_average_in_one_pass(const std::vector<torch::Tensor>& messages,
                                       torch::Tensor& out, float weight,
                                       std::vector<torch::Tensor>* rows) const {
  if (!out.device().is_cpu() || !(is_cast() || options_.coder() == CoderKind::kFixed)) {
    return false;
  }
  check_vector(out, "codec output");
  const int64_t n = out.numel();
  for (size_t r = 0; rows && r < rows->size(); ++r) {
    check_vector((*rows)[r], "codec row output");
    SADDLE_CHECK((*rows)[r].device().is_cpu() && (*rows)[r].numel() == n, "decode_average: row ", r,
                 " has ", (*rows)[r].numel(), " coordinates on ", (*rows)[r].device(),
                 " (expected ", n, " on the CPU)");
  }
  for (size_t r = 0; r < messages.size(); ++r) {
    try {
      check_message_tensor(messages[r]);
      SADDLE_CHECK(messages[r].device().is_cpu(), "codec message on ", messages[r].device(),
                   " but the output on the CPU");
      check_message(messages[r].data_ptr<uint8_t>(), messages[r].numel(), n, /*check_norms=*/true);
    } catch (const Error& e) {
      throw MalformedMessage(static_cast<int>(r), e.what());
    }
  }
  if (messages.empty()) {
    out.zero_();
    return true;
  }
  float* o = out.data_ptr<float>();
  const auto params = params_of(options_, *spec_, levels_, inv_gap_, level_lut_);
  const int64_t buckets = is_cast() ? 0 : bucket_count(n, options_.bucket_size());
  std::vector<float> norms(buckets);
  for (size_t r = 0; r < messages.size(); ++r) {
    const uint8_t* body = messages[r].data_ptr<uint8_t>() + kHeaderBytes;
    float* row = rows ? (*rows)[r].data_ptr<float>() : nullptr;
    const bool assign = r == 0;  // 0 + x: the bits of adding into zeros
    if (is_cast()) {
      decode_cast(spec_->cast, body, n, weight, assign, o, row);
    } else {
      if (buckets > 0) std::memcpy(norms.data(), body, 4 * buckets);
      quant_detail::decode_fixed_into(body + 4 * buckets, n, norms.data(), params, weight, assign,
                                      o, row);
    }
  }
  return true;
}

torch::Tensor Codec::statistics(const torch::Tensor& v) const {
  SADDLE_CHECK(!is_cast(), "quantizer '", options_.quantizer(),
               "' has no levels to gather statistics for");
  check_vector(v, "statistics input");
#if SADDLE_WITH_CUDA
  if (v.is_cuda()) {
    const cuda_detail::QuantSetup setup =
        cuda_setup(options_, *spec_, levels_, device_tables(v.device()));
    return cuda_detail::statistics(v, setup, kLevelStatBins);
  }
#endif
  auto stats = torch::zeros({3, kLevelStatBins}, torch::kFloat64);
  const auto params = params_of(options_, *spec_, levels_, inv_gap_, level_lut_);
  quant_detail::accumulate_statistics(v.data_ptr<float>(), v.numel(), params,
                                      stats.data_ptr<double>());
  return stats;
}

double Codec::predicted_variance(const torch::Tensor& summed_statistics) const {
  SADDLE_CHECK(!is_cast(), "quantizer '", options_.quantizer(), "' has no levels");
  return expected_variance(levels_, summed_statistics);
}

double Codec::adapt(const torch::Tensor& summed_statistics) {
  SADDLE_CHECK(adaptive(), "quantizer '", options_.quantizer(),
               "' is not adaptive (only alq and amq adapt)");
  if (spec_->fit == LevelFit::kAlq) {
    levels_ = fit_alq_levels(levels_, summed_statistics);
  } else {
    levels_ = fit_amq_levels(static_cast<int>(levels_.size()), summed_statistics);
  }
  rebuild_tables();
  return expected_variance(levels_, summed_statistics);
}

}  // namespace saddle
