#include "codec_cuda.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstring>
#include <string>

#include "codec_kernels.h"
#include "saddle/error.h"

namespace saddle::cuda_detail {

namespace {

cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream().stream(); }

void check_launch(const char* what) {
  const std::string error = cuda_kernels::last_error();
  SADDLE_CHECK(error.empty(), "CUDA ", what, " failed: ", error);
}

cuda_kernels::QuantConfig config_of(const QuantSetup& q, uint64_t seed, uint64_t stream,
                                    int64_t first = 0) {
  SADDLE_CHECK(q.tables.defined() && q.tables.is_cuda() && q.tables.dim() == 2 &&
                   q.tables.size(0) == 2 && q.tables.size(1) == q.count && q.count <= 128,
               "codec: device level tables missing or of the wrong shape");
  cuda_kernels::QuantConfig c;
  c.bits = q.bits;
  c.count = q.count;
  c.uniform = q.uniform;
  c.linf = q.linf;
  c.bucket = q.bucket;
  c.register_encoder = q.register_encoder;
  c.seed = seed;
  c.stream = stream;
  c.first = first;
  c.levels = q.tables.data_ptr<float>();
  c.inv_gap = q.tables.data_ptr<float>() + q.count;
  return c;
}

// Device-side error slots, reset before the kernels that report into them.
torch::Tensor error_slots(const torch::Device& device) {
  torch::Tensor slots =
      torch::empty({2}, torch::TensorOptions().dtype(torch::kInt64).device(device));
  cuda_kernels::reset_errors(reinterpret_cast<cuda_kernels::DeviceErrors*>(slots.data_ptr()),
                             current_stream());
  return slots;
}

void throw_reported(const torch::Tensor& slots) {
  const torch::Tensor host = slots.to(torch::kCPU);  // waits for the kernels
  const auto* e = reinterpret_cast<const unsigned long long*>(host.data_ptr());
  SADDLE_CHECK(e[0] == cuda_kernels::kNoError,
               "cannot quantize a non-finite value (bucket starting at coordinate ", e[0], ")");
  SADDLE_CHECK(e[1] == cuda_kernels::kNoError,
               "bucket norm overflows float32 (bucket starting at coordinate ", e[1], ")");
}

// A message buffer of `bytes` bytes with its header; 4 bytes of slack past the end let the
// kernels write whole 32-bit words.
torch::Tensor new_message(const torch::Device& device, const uint8_t* header, int64_t bytes) {
  torch::Tensor storage =
      torch::empty({bytes + 4}, torch::TensorOptions().dtype(torch::kUInt8).device(device));
  cuda_kernels::HeaderBytes head;
  std::memcpy(head.bytes, header, sizeof head.bytes);
  cuda_kernels::write_header(storage.data_ptr<uint8_t>(), head, current_stream());
  check_launch("header write");
  return storage.narrow(0, 0, bytes);
}

int64_t bucket_count(int64_t n, int64_t bucket) { return n == 0 ? 0 : (n - 1) / bucket + 1; }

cuda_kernels::Messages messages_of(const torch::Tensor& all, int count, int64_t stride) {
  SADDLE_CHECK(all.is_cuda() && all.scalar_type() == torch::kUInt8 && all.is_contiguous() &&
                   all.numel() == stride * count,
               "codec: gathered messages must be one contiguous CUDA byte buffer");
  cuda_kernels::Messages m;
  m.base = all.data_ptr<uint8_t>();
  m.stride = stride;
  m.count = count;
  return m;
}

}  // namespace

torch::Tensor encode_fixed(const torch::Tensor& v, const QuantSetup& q, uint64_t seed,
                           uint64_t stream, int64_t first, const uint8_t* header,
                           int64_t message_bytes) {
  c10::cuda::CUDAGuard guard(v.device());
  const int64_t n = v.numel();
  const int64_t buckets = bucket_count(n, q.bucket);
  torch::Tensor message = new_message(v.device(), header, message_bytes);
  torch::Tensor errors = error_slots(v.device());
  uint8_t* base = message.data_ptr<uint8_t>();
  cuda_kernels::encode_fixed(v.data_ptr<float>(), n, config_of(q, seed, stream, first),
                             reinterpret_cast<float*>(base + 32), base + 32 + 4 * buckets,
                             reinterpret_cast<cuda_kernels::DeviceErrors*>(errors.data_ptr()),
                             current_stream());
  check_launch("quantize + pack");
  throw_reported(errors);
  return message;
}

torch::Tensor encode_cast(const torch::Tensor& v, int kind, const uint8_t* header,
                          int64_t message_bytes) {
  c10::cuda::CUDAGuard guard(v.device());
  torch::Tensor message = new_message(v.device(), header, message_bytes);
  // LibTorch's own conversion (round to nearest even, as c10::Half and c10::BFloat16 on the CPU)
  // written straight into the body, viewed as floats of the wire's width. The hand-written kernel
  // this replaces (a device memcpy of each value's two bytes) wrote wrong low bytes on an H100
  // (2026-11-27: a bf16 7.9375 decoded as 2.0, as if its low byte were zero).
  const auto dtype = kind == 0 ? torch::kFloat32 : kind == 1 ? torch::kHalf : torch::kBFloat16;
  const int64_t width = kind == 0 ? 4 : 2;
  if (v.numel() > 0) message.narrow(0, 32, width * v.numel()).view(dtype).copy_(v);
  return message;
}

void quantize_symbols(const torch::Tensor& v, const QuantSetup& q, uint64_t seed, uint64_t stream,
                      int64_t first, torch::Tensor* norms, torch::Tensor* symbols) {
  c10::cuda::CUDAGuard guard(v.device());
  const int64_t n = v.numel();
  const auto on_device = torch::TensorOptions().device(v.device());
  torch::Tensor d_norms =
      torch::empty({bucket_count(n, q.bucket)}, on_device.dtype(torch::kFloat32));
  torch::Tensor d_symbols = torch::empty({n}, on_device.dtype(torch::kUInt8));
  torch::Tensor errors = error_slots(v.device());
  cuda_kernels::quantize_symbols(v.data_ptr<float>(), n, config_of(q, seed, stream, first),
                                 d_norms.data_ptr<float>(), d_symbols.data_ptr<uint8_t>(),
                                 reinterpret_cast<cuda_kernels::DeviceErrors*>(errors.data_ptr()),
                                 current_stream());
  check_launch("quantize");
  throw_reported(errors);
  *norms = d_norms.to(torch::kCPU);
  *symbols = d_symbols.to(torch::kCPU);
}

MessageFacts inspect_messages(const torch::Tensor& all, int count, int64_t stride,
                              int64_t buckets) {
  c10::cuda::CUDAGuard guard(all.device());
  const cuda_kernels::Messages m = messages_of(all, count, stride);
  SADDLE_CHECK(stride >= 32, "codec message truncated: ", stride,
               " bytes, the header alone needs 32");
  // One device buffer, one copy to the host: the headers, then one flag per message.
  torch::Tensor facts =
      torch::empty({36 * static_cast<int64_t>(count)},
                   torch::TensorOptions().dtype(torch::kUInt8).device(all.device()));
  uint8_t* base = facts.data_ptr<uint8_t>();
  int* flags = reinterpret_cast<int*>(base + 32 * static_cast<int64_t>(count));
  if (count > 0 && cudaMemcpy2DAsync(base, 32, m.base, stride, 32, count, cudaMemcpyDeviceToDevice,
                                     current_stream()) != cudaSuccess) {
    SADDLE_CHECK(false, "CUDA header copy failed: ", cudaGetErrorString(cudaGetLastError()));
  }
  const bool checked = buckets >= 0 && stride >= 32 + 4 * buckets;
  if (checked) {
    cuda_kernels::check_norms(m, buckets, flags, current_stream());
    check_launch("norm check");
  } else if (count > 0 &&
             cudaMemsetAsync(flags, 0, sizeof(int) * count, current_stream()) != cudaSuccess) {
    SADDLE_CHECK(false, "CUDA memset failed: ", cudaGetErrorString(cudaGetLastError()));
  }
  const torch::Tensor host = facts.to(torch::kCPU);  // waits for the copies and the check
  MessageFacts out;
  out.headers = host.narrow(0, 0, 32 * static_cast<int64_t>(count));
  out.norms_checked = checked;
  out.first_bad_norms = -1;
  const auto* host_flags =
      reinterpret_cast<const int*>(host.data_ptr<uint8_t>() + 32 * static_cast<int64_t>(count));
  for (int r = 0; r < count && out.first_bad_norms < 0; ++r) {
    if (host_flags[r] != 0) out.first_bad_norms = r;
  }
  return out;
}

void decode_average_fixed(const torch::Tensor& all, int count, int64_t stride, const QuantSetup& q,
                          float weight, torch::Tensor& out) {
  c10::cuda::CUDAGuard guard(out.device());
  SADDLE_CHECK(
      stride >= 32 + 4 * bucket_count(out.numel(), q.bucket) + (out.numel() * q.bits + 7) / 8,
      "codec: messages of ", stride, " bytes are too short to decode");
  cuda_kernels::decode_average_fixed(messages_of(all, count, stride), out.numel(),
                                     config_of(q, 0, 0), weight, out.data_ptr<float>(),
                                     current_stream());
  check_launch("decode");
}

void decode_average_cast(const torch::Tensor& all, int count, int64_t stride, int kind,
                         float weight, torch::Tensor& out) {
  c10::cuda::CUDAGuard guard(out.device());
  cuda_kernels::decode_average_cast(messages_of(all, count, stride), out.numel(), kind, weight,
                                    out.data_ptr<float>(), current_stream());
  check_launch("decode");
}

torch::Tensor statistics(const torch::Tensor& v, const QuantSetup& q, int64_t bins) {
  c10::cuda::CUDAGuard guard(v.device());
  torch::Tensor stats =
      torch::zeros({3, bins}, torch::TensorOptions().dtype(torch::kFloat64).device(v.device()));
  torch::Tensor errors = error_slots(v.device());
  cuda_kernels::accumulate_statistics(
      v.data_ptr<float>(), v.numel(), config_of(q, 0, 0), stats.data_ptr<double>(), bins,
      reinterpret_cast<cuda_kernels::DeviceErrors*>(errors.data_ptr()), current_stream());
  check_launch("statistics");
  throw_reported(errors);
  return stats.to(torch::kCPU);
}

}  // namespace saddle::cuda_detail
