// --device, --transport and --precision: where each rank runs and how operators travel.
#include <ATen/Context.h>
#include <fmt/format.h>

#include <unistd.h>

#include <cstring>

#include "commands.h"
#include "saddle/comm/nccl.h"
#include "saddle/device.h"
#include "saddle/error.h"

namespace saddle::cli {

namespace {
constexpr const char* kDeviceHelp =
    "Where each rank runs: auto (a CUDA device when there is one), cpu, cuda (the node-local rank "
    "modulo the visible GPUs) or cuda:N";
constexpr const char* kTransportHelp =
    "How operators travel between ranks: auto (NCCL between CUDA devices, else MPI), nccl or mpi "
    "(host-staged from GPUs)";
constexpr const char* kPrecisionHelp =
    "Arithmetic of the operator evaluations: fp32, bf16 (autocast, CUDA or CPU) or fp16 (autocast "
    "with loss scaling, CUDA)";
constexpr const char* kGraphsHelp =
    "GPU runs: on (replay the game's operator evaluation as a CUDA graph, one launch instead of "
    "hundreds; wgan-gp) or off";
}  // namespace

void DeviceFlags::add_to(ConfigBinder& binder) {
  binder.add("device", device, kDeviceHelp);
  binder.add("transport", transport, kTransportHelp);
  binder.add("precision", precision, kPrecisionHelp);
  binder.add("cuda-graphs", cuda_graphs, kGraphsHelp);
}

void DeviceFlags::add_to(CLI::App& app) {
  app.add_option("--device", device, kDeviceHelp)->capture_default_str();
  app.add_option("--transport", transport, kTransportHelp)->capture_default_str();
  app.add_option("--precision", precision, kPrecisionHelp)->capture_default_str();
  app.add_option("--cuda-graphs", cuda_graphs, kGraphsHelp)->capture_default_str();
}

void DeviceFlags::check_syntax() const {
  // The device with no GPU visible: only the spelling is checked here.
  const bool known =
      device == "auto" || device == "cpu" || device == "cuda" || device.rfind("cuda:", 0) == 0;
  SADDLE_CHECK(known, "invalid --device '", device, "' (expected auto, cpu, cuda or cuda:N)");
  if (device.rfind("cuda:", 0) == 0) resolve_device(device, 0, 1024);
  SADDLE_CHECK(transport == "auto" || transport == "nccl" || transport == "mpi",
               "invalid --transport '", transport, "' (expected auto, nccl or mpi)");
  parse_precision(precision);
  SADDLE_CHECK(cuda_graphs == "on" || cuda_graphs == "off", "invalid --cuda-graphs '", cuda_graphs,
               "' (expected on or off)");
}

RunDevice::RunDevice(const DeviceFlags& flags, Communicator& comm, const Logger& logger)
    : host_(comm) {
  flags.check_syntax();
  device_ = resolve_device(flags.device, comm.local_rank(), cuda_device_count());
  precision_ = parse_precision(flags.precision);
  check_precision(precision_, device_);
  cuda_graphs_ = flags.cuda_graphs == "on" && device_.is_cuda();
  // Every rank's host and device (a collective: every rank takes part), for the log line on rank 0
  // and for the transport: NCCL needs a GPU per rank.
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string mine = std::string(host) + " " + device_.str() + "\t" + describe_device(device_);
  torch::Tensor bytes = torch::empty({static_cast<int64_t>(mine.size())}, torch::kUInt8);
  std::memcpy(bytes.data_ptr(), mine.data(), mine.size());
  const std::vector<torch::Tensor> all = comm.allgather_bytes(bytes);
  std::vector<std::string> placements;
  std::string line;
  for (size_t r = 0; r < all.size(); ++r) {
    const std::string text(static_cast<const char*>(all[r].data_ptr()),
                           static_cast<size_t>(all[r].numel()));
    const size_t tab = text.find('\t');
    placements.push_back(text.substr(0, tab));
    line += fmt::format("{}rank {} on {}", r == 0 ? "" : ", ", r,
                        tab == std::string::npos ? text : text.substr(tab + 1));
  }
  transport_ = resolve_transport(flags.transport, device_, comm.size(), gpu_shared(placements));
  // The games' shapes never change, so cuDNN's autotuner pays off: it times the convolution
  // algorithms once per shape and keeps the fastest (7.5% off a WGAN-GP iteration on an H100,
  // measured with the bench on 2026-11-28). Runs on a GPU were not bit-reproducible before either.
  if (device_.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  logger.info("devices: {}; transport {}; precision {}{}", line, transport_,
              precision_name(precision_), cuda_graphs_ ? "; CUDA graphs" : "");
  if (transport_ == "nccl") nccl_ = make_nccl_communicator(comm, device_);
}

}  // namespace saddle::cli
