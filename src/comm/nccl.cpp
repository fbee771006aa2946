// The transport choice, and what a build without NCCL says when asked for it.
#include "saddle/comm/nccl.h"

#include <set>

#include "saddle/device.h"
#include "saddle/error.h"

namespace saddle {

bool nccl_built() { return SADDLE_WITH_NCCL != 0; }

std::string resolve_transport(const std::string& spec, const torch::Device& device, int ranks,
                              bool gpu_shared) {
  if (spec == "auto") {
    return device.is_cuda() && ranks > 1 && nccl_built() && !gpu_shared ? "nccl" : "mpi";
  }
  if (spec == "mpi") return spec;
  if (spec == "nccl") {
    SADDLE_CHECK(nccl_built(),
                 "--transport nccl: this build of saddle has no NCCL (build it "
                 "against the CUDA LibTorch: bash scripts/setup.sh --torch pip)");
    SADDLE_CHECK(device.is_cuda(), "--transport nccl needs a CUDA device (--device is ",
                 device.str(), ")");
    SADDLE_CHECK(!gpu_shared,
                 "--transport nccl needs a GPU per rank, but some ranks share a GPU (use "
                 "--transport mpi, or start at most as many ranks per node as it has GPUs)");
    return spec;
  }
  throw Error("invalid --transport '" + spec + "' (expected auto, nccl or mpi)");
}

bool gpu_shared(const std::vector<std::string>& placements) {
  std::set<std::string> seen;
  for (const std::string& p : placements) {
    if (p.find(" cuda") == std::string::npos) continue;
    if (!seen.insert(p).second) return true;
  }
  return false;
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
