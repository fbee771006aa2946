// CUDA graphs for a game's operator evaluation (stage 1 of game -> exchange -> solver -> metrics).
//
// A WGAN-GP operator evaluation launches about a thousand small kernels (forward, the penalty's
// double backward, backward); on a GPU their launch cost, not their arithmetic, sets the time of
// an iteration. A DeviceGraph records that sequence once and replays it with one launch. It can
// only replay what it recorded: the same kernels on the same addresses. So the work must read its
// inputs from tensors that stay allocated (copy each new sample into them before replay()), keep
// the tensors it writes (they live in the graph's memory pool and are overwritten by every replay),
// launch everything on the current stream, and never wait for the device (no .item(), no copy to
// the host). Games check the rest through context(): a graph is captured again when the autocast
// precision, the loss scale or the parameters' storage changes.
//
// CUDA builds only; in a CPU build supported() is false and capture() throws.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace saddle {

class DeviceGraph {
 public:
  // Whether graphs can be captured for tensors on `device` (a CUDA device, CUDA build).
  static bool supported(const torch::Device& device);

  // What the recorded kernels depend on besides their inputs' contents: the autocast state of
  // `device` (enabled, dtype) and the caller's `extra` (loss scale, parameter addresses), in one
  // string. Capture again when it differs from the one captured with.
  static std::string context(const torch::Device& device, const std::string& extra);

  explicit DeviceGraph(const torch::Device& device);
  ~DeviceGraph();
  DeviceGraph(const DeviceGraph&) = delete;
  DeviceGraph& operator=(const DeviceGraph&) = delete;

  // Runs `work` `warmup` times on a side stream (lazy initialisation, cuDNN's autotuner and the
  // allocator settle there), then once more while recording it as a graph. The warm-up runs are
  // real (undo their side effects, such as batch-norm statistics, if they matter); the recorded
  // one is not run: replay() runs it. Autocast's weight cache is off while recording (a cached
  // cast would be a stale copy at replay). Throws saddle::Error naming what failed.
  void capture(const std::function<void()>& work, int warmup = 2);
  // Launches the recorded work on the current stream.
  void replay();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  torch::Device device_;
};

}  // namespace saddle
