// The transport choice, and what a build without NCCL says when asked for it.
#include "saddle/comm/nccl.h"

#include "saddle/device.h"
#include "saddle/error.h"

namespace saddle {

bool nccl_built() { return SADDLE_WITH_NCCL != 0; }

std::string resolve_transport(const std::string& spec, const torch::Device& device, int ranks) {
  if (spec == "auto") return device.is_cuda() && ranks > 1 && nccl_built() ? "nccl" : "mpi";
  if (spec == "mpi") return spec;
  if (spec == "nccl") {
    SADDLE_CHECK(nccl_built(),
                 "--transport nccl: this build of saddle has no NCCL (build it "
                 "against the CUDA LibTorch: bash scripts/setup.sh --torch pip)");
    SADDLE_CHECK(device.is_cuda(), "--transport nccl needs a CUDA device (--device is ",
                 device.str(), ")");
    return spec;
  }
  throw Error("invalid --transport '" + spec + "' (expected auto, nccl or mpi)");
}

#if !SADDLE_WITH_NCCL
std::unique_ptr<Communicator> make_nccl_communicator(Communicator&, const torch::Device&,
                                                     const NcclOptions&) {
  throw Error(
      "this build of saddle has no NCCL transport (build it against the CUDA LibTorch: "
      "bash scripts/setup.sh --torch pip)");
}
#endif

}  // namespace saddle
