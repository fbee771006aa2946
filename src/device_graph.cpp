#include "saddle/device_graph.h"

#include <fmt/format.h>

#include "saddle/error.h"

#if SADDLE_WITH_CUDA
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace saddle {

#if SADDLE_WITH_CUDA

struct DeviceGraph::Impl {
  at::cuda::CUDAGraph graph;
  bool captured = false;
};

bool DeviceGraph::supported(const torch::Device& device) { return device.is_cuda(); }

std::string DeviceGraph::context(const torch::Device& device, const std::string& extra) {
  if (!device.is_cuda()) return extra;
  const bool autocast = at::autocast::is_autocast_enabled(at::kCUDA);
  return fmt::format("{} autocast={} {}", device.str(),
                     autocast ? c10::toString(at::autocast::get_autocast_dtype(at::kCUDA)) : "off",
                     extra);
}

DeviceGraph::DeviceGraph(const torch::Device& device) : device_(device) {
  SADDLE_CHECK(device.is_cuda(), "CUDA graphs need a CUDA device, not ", device.str());
  impl_ = std::make_unique<Impl>();  // after the check: it initialises CUDA
}

DeviceGraph::~DeviceGraph() = default;

namespace {

// Restores autocast's weight cache setting when it goes out of scope.
class AutocastCacheOff {
 public:
  AutocastCacheOff() : was_(at::autocast::is_autocast_cache_enabled()) {
    at::autocast::set_autocast_cache_enabled(false);
  }
  ~AutocastCacheOff() { at::autocast::set_autocast_cache_enabled(was_); }
  AutocastCacheOff(const AutocastCacheOff&) = delete;
  AutocastCacheOff& operator=(const AutocastCacheOff&) = delete;

 private:
  bool was_;
};

// The first line of a LibTorch error (the rest is its C++ backtrace).
std::string first_line(const std::string& what) { return what.substr(0, what.find('\n')); }

}  // namespace

void DeviceGraph::capture(const std::function<void()>& work, int warmup) {
  SADDLE_CHECK(warmup >= 0, "DeviceGraph: invalid warm-up count ", warmup);
  const auto index = device_.index();
  c10::cuda::CUDAGuard device_guard(index);
  // Recording needs a stream of its own (the default stream cannot be captured); it starts after
  // and ends before the caller's stream, as if the work had run there.
  c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream(index);
  c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index);
  at::cuda::CUDAEvent before, after;
  before.record(caller);
  before.block(side);
  impl_->graph.reset();
  impl_->captured = false;
  try {
    c10::cuda::CUDAStreamGuard stream_guard(side);
    for (int i = 0; i < warmup; ++i) work();
    AutocastCacheOff no_cache;
    impl_->graph.capture_begin();
    try {
      work();
    } catch (...) {
      try {
        impl_->graph.capture_end();  // ends the recording; the graph is discarded below
      } catch (...) {
      }
      impl_->graph.reset();
      throw;
    }
    impl_->graph.capture_end();
  } catch (const std::exception& e) {
    throw Error(
        fmt::format("could not capture the operator evaluation as a CUDA graph on {} ({}); "
                    "run with --cuda-graphs off",
                    device_.str(), first_line(e.what())));
  }
  after.record(side);
  after.block(caller);
  impl_->captured = true;
}

void DeviceGraph::replay() {
  SADDLE_CHECK(impl_->captured, "DeviceGraph::replay before a capture");
  c10::cuda::CUDAGuard device_guard(device_.index());
  impl_->graph.replay();
}

#else  // a build without CUDA

struct DeviceGraph::Impl {};

bool DeviceGraph::supported(const torch::Device&) { return false; }

std::string DeviceGraph::context(const torch::Device&, const std::string& extra) { return extra; }

DeviceGraph::DeviceGraph(const torch::Device& device) : device_(device) {
  throw Error("CUDA graphs need a CUDA build of saddle (bash scripts/setup.sh --torch pip)");
}

DeviceGraph::~DeviceGraph() = default;

void DeviceGraph::capture(const std::function<void()>&, int) {
  throw Error("CUDA graphs need a CUDA build of saddle");
}

void DeviceGraph::replay() { throw Error("CUDA graphs need a CUDA build of saddle"); }

#endif

}  // namespace saddle
