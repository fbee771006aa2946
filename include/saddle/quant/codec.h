// Codec: turns one rank's flattened operator into one self-describing kUInt8 message and back (the
// quantize -> encode and decode -> average steps of the "exchange" stage of game -> exchange ->
// solver -> metrics). Each bucket of `bucket_size` coordinates is normalized by its own norm (sent
// as a float32), every normalized magnitude is stochastically rounded to one of the neighbouring
// levels of a level set (level_set.h), so that E[decode(encode(v))] = v, and the (sign, level
// index) symbols are bit-packed (fixed coder) or rANS-coded (entropy coder). The random stream is a
// pure function of (seed, stream, coordinate index), so encoding is reproducible.
//
// Quantizers are the rows of one table (quantizer_specs()): "none" (fp32), "fp16", "bf16" (plain
// casts, ignore bits/bucket/norm/coder), "qsgd" (uniform levels), "qsgd-inf" (uniform, L-inf
// norm), "nuq" (NUQSGD's exponential levels), "terngrad" ({0, 1}, L-inf norm, 2 bits), "alq" and
// "amq" (adaptive levels, see adapt()).
//
// Tensors may live on the CPU or, in a CUDA build, on a CUDA device: the CUDA kernels write the
// same bytes as the CPU kernels for the same input and seed (the rANS entropy coder itself always
// runs on the CPU), so ranks on CPUs and GPUs can be mixed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#include "saddle/error.h"

namespace saddle {

enum class NormKind { kL2, kLinf };
NormKind parse_norm(const std::string& name);  // "l2" | "linf"
const char* norm_name(NormKind kind);

enum class CoderKind { kFixed, kEntropy };
// Which CUDA kernel quantizes and packs (the same bytes either way; src/cuda/codec_kernels.h):
// kRegister (the default), buckets of a multiple of 32 coordinates up to 8192, others falling
// back to kBlock; kBlock, any bucket size, 1.2-1.35x slower on an H200. CPU encodes ignore it.
enum class CudaEncoder { kBlock, kRegister };
// Which CPU kernels quantize, pack and decode (the same bytes and bits either way): kVector (the
// default), the hand-written AVX2 kernels where the CPU has AVX2; kPortable, the paths of a CPU
// without it, on any CPU (the codec's tests run both).
enum class CpuKernels { kVector, kPortable };
CoderKind parse_coder(const std::string& name);  // "fixed" | "entropy"
const char* coder_name(CoderKind kind);

// One row of the quantizer table. Adding a quantizer means adding a row (and, for a new level
// family or fit, its code); the CPU and CUDA kernels read the row.
enum class LevelFamily { kCast, kUniform, kExponential };
enum class CastKind { kFp32, kFp16, kBf16 };  // the order of the CUDA kernels' cast kinds
enum class LevelFit { kFixed, kAlq, kAmq };
struct QuantizerSpec {
  const char* name;
  // Written in every message header. Fixed for good: never derived from the row's position, never
  // reused or renumbered.
  uint8_t wire_id;
  LevelFamily family;
  CastKind cast;     // casts only
  LevelFit fit;      // how adapt() refits the levels (adaptive quantizers only)
  int forced_bits;   // 0: --bits decides
  bool forced_linf;  // L-inf bucket norm whatever --norm says
  const char* description;
};
const std::vector<QuantizerSpec>& quantizer_specs();
// The row named `name`; throws saddle::Error listing the names.
const QuantizerSpec& quantizer_spec(const std::string& name);
// The row with this wire id, or nullptr.
const QuantizerSpec* quantizer_spec_by_wire_id(int wire_id);
// The names of the table's rows, in its order.
const std::vector<std::string>& quantizer_names();

// A message that failed validation in Codec::decode_average: its index in the list and why.
class MalformedMessage : public Error {
 public:
  MalformedMessage(int index, const std::string& what) : Error(what), index_(index) {}
  int index() const { return index_; }

 private:
  int index_;
};

struct CodecOptions {
  TORCH_ARG(std::string, quantizer) = "none";
  TORCH_ARG(int, bits) = 4;  // 2..8 bits per coordinate, sign included
  TORCH_ARG(int64_t,
            bucket_size) = 1024;  // coordinates per bucket, each normalized by its own norm
  TORCH_ARG(NormKind, norm) = NormKind::kL2;  // qsgd-inf and terngrad force L-inf
  TORCH_ARG(CoderKind, coder) = CoderKind::kFixed;
  TORCH_ARG(CudaEncoder, cuda_encoder) = CudaEncoder::kRegister;
  TORCH_ARG(CpuKernels, cpu_kernels) = CpuKernels::kVector;
};

class Codec {
 public:
  // Bytes of the header that starts every message.
  static constexpr int64_t kHeaderBytes = 32;
  static constexpr int64_t kMaxBucketSize = int64_t{1} << 30;

  // Validates every option (saddle::Error naming the option and value). options() then reports the
  // effective configuration: terngrad's bits = 2, qsgd-inf's and terngrad's norm = linf.
  explicit Codec(const CodecOptions& options);

  // Quantizes and encodes a 1-D contiguous float32 tensor into one kUInt8 message on v's device.
  // Unbiased; the same (v, seed, stream, first) give the same bytes on every device. Throws on
  // non-finite input for level quantizers. `first` says that v holds coordinates [first, first +
  // n) of a longer vector: coordinate i draws the random number of index first + i, so a vector
  // encoded piece by piece, each piece starting on a bucket boundary, is quantized exactly as when
  // it is encoded whole (the overlapped exchange sends it so).
  torch::Tensor encode(const torch::Tensor& v, uint64_t seed, uint64_t stream,
                       int64_t first = 0) const;

  // Decodes an untrusted message and adds weight * decoded into `out` (1-D contiguous float32 CPU
  // of the length the message declares). Throws saddle::Error on any malformed or mismatched
  // message (truncated, oversized, wrong version, configuration or level hash, wrong length,
  // corrupt entropy stream); the whole message is validated before `out` is touched, so on error
  // `out` is unchanged.
  void decode_accumulate(const torch::Tensor& message, torch::Tensor& out, float weight) const;

  // out = sum over r, in order, of weight * decode(messages[r]): the same bits as decode_accumulate
  // of every message into a zeroed `out`. Every message is validated before `out` is written; a
  // bad one throws MalformedMessage naming its index. `out` and the messages live on one device;
  // on a CUDA device all messages are decoded in one launch.
  void decode_average(const std::vector<torch::Tensor>& messages, torch::Tensor& out,
                      float weight) const;
  // The same, and every message decoded at weight 1 into rows[r] (of out's length and device): the
  // bits of decode_average({messages[r]}, rows[r], 1). On the CPU with the fixed-width coder or a
  // cast each message is read once for both.
  void decode_average(const std::vector<torch::Tensor>& messages, torch::Tensor& out, float weight,
                      std::vector<torch::Tensor>& rows) const;

  // Level adaptation. statistics(v) summarizes v's normalized magnitudes (level_set.h's [3, bins]
  // kFloat64 sums) for any level quantizer; the exchange sums them over ranks and calls adapt() on
  // every rank, which refits the levels (alq, amq only) and returns the variance E||Q(v) - v||^2
  // the new levels predict on the summarized data.
  bool adaptive() const;
  torch::Tensor statistics(const torch::Tensor& v) const;
  double adapt(const torch::Tensor& summed_statistics);
  // The variance the current levels predict on `summed_statistics` (level quantizers only).
  double predicted_variance(const torch::Tensor& summed_statistics) const;

  const QuantizerSpec& spec() const { return *spec_; }
  bool is_cast() const { return spec_->family == LevelFamily::kCast; }

  // Magnitude levels in [0, 1], sorted, 0 and 1 included; empty for none/fp16/bf16.
  const std::vector<float>& levels() const { return levels_; }
  // Replaces the levels (adaptive quantizers only, e.g. from a checkpoint); validated.
  void set_levels(std::vector<float> levels);

  const CodecOptions& options() const { return options_; }
  // An upper bound on the bytes encode() produces for n coordinates (exact for the fixed coder).
  int64_t max_encoded_bytes(int64_t n) const;

 private:
  void rebuild_tables();
  // The header of a message of n coordinates (32 bytes).
  void write_header(int64_t n, uint8_t* out) const;
  // Throws a plain saddle::Error unless `message` is a well-formed message of this codec for `n`
  // coordinates (header, size; norms when `check_norms`).
  void check_message(const uint8_t* p, int64_t size, int64_t n, bool check_norms) const;
  // CPU, fixed-width coder or cast: validates every message (MalformedMessage names a bad one)
  // and the rows, then decodes each message once into out (the first one assigned, the others
  // added in order) and into its row. False, doing nothing, where this path does not apply.
  bool decode_average_in_one_pass(const std::vector<torch::Tensor>& messages, torch::Tensor& out,
                                  float weight, std::vector<torch::Tensor>* rows) const;
  // The levels and 1 / gaps on `device`, for the CUDA kernels (cached until the levels change).
  const torch::Tensor& device_tables(const torch::Device& device) const;

  CodecOptions options_;
  const QuantizerSpec* spec_ = nullptr;
  std::vector<float> levels_;
  uint32_t levels_hash_ = 0;
  // Level search for non-uniform sets: a grid over r gives the level just below the cell (bit 7
  // set when the cell holds two or more levels, so a short scan follows); inv_gap_[j] = 1 /
  // (l_{j+1} - l_j).
  std::vector<int32_t> level_lut_;
  std::vector<float> inv_gap_;
  mutable torch::Tensor device_tables_;  // [2, count] float: levels, inv_gap
};

}  // namespace saddle
