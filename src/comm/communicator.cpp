#include "saddle/comm/communicator.h"

#include "saddle/error.h"

namespace saddle {

void check_message_bytes(const torch::Tensor& bytes, const char* what) {
  SADDLE_CHECK(bytes.defined(), what, ": undefined tensor (expected a 1-D kUInt8 tensor)");
  SADDLE_CHECK(bytes.scalar_type() == torch::kUInt8, what, ": dtype ", bytes.scalar_type(),
               " (expected kUInt8)");
  SADDLE_CHECK(bytes.dim() == 1, what, ": ", bytes.dim(), "-D tensor (expected 1-D)");
  SADDLE_CHECK(bytes.device().is_cpu(), what, ": tensor on ", bytes.device(), " (expected CPU)");
  SADDLE_CHECK(bytes.is_contiguous(), what, ": non-contiguous tensor");
}

}  // namespace saddle
