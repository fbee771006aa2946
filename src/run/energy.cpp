#include "saddle/run/energy.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "saddle/device.h"
#include "saddle/run/files.h"

#if SADDLE_WITH_CUDA
#include "../cuda/device_cuda.h"
#endif

namespace saddle {

namespace {

// RAPL: one counter per package domain (intel-rapl:N; its sub-domains intel-rapl:N:M are parts of
// it and are not added again), in microjoules, wrapping at max_energy_range_uj.
class RaplMeter final : public EnergyMeter {
 public:
  struct Domain {
    std::string path;
    uint64_t range = 0;
    uint64_t last = 0;
  };

  static EnergyProbe open(const std::string& root) {
    EnergyProbe probe;
    if (!is_directory(root)) {
      probe.unavailable = "no RAPL counters (" + root + " does not exist)";
      return probe;
    }
    auto meter = std::unique_ptr<RaplMeter>(new RaplMeter());
    std::string why;
    for (const std::string& name : list_directory(root)) {
      // Package domains only: "intel-rapl:0", not "intel-rapl:0:0" or "intel-rapl" itself.
      const size_t colon = name.find(':');
      if (colon == std::string::npos || name.find(':', colon + 1) != std::string::npos) continue;
      Domain d;
      d.path = join_path(join_path(root, name), "energy_uj");
      const auto now = read_counter(d.path, &why);
      const auto range =
          read_counter(join_path(join_path(root, name), "max_energy_range_uj"), &why);
      if (!now || !range) continue;
      d.last = *now;
      d.range = *range;
      meter->names_ += (meter->names_.empty() ? "" : " + ") + name;
      meter->domains_.push_back(d);
    }
    if (meter->domains_.empty()) {
      probe.unavailable = why.empty() ? "no RAPL package counters under " + root
                                      : "RAPL counters are not readable: " + why;
      return probe;
    }
    probe.meter = std::move(meter);
    return probe;
  }

  std::string source() const override { return "rapl " + names_; }

  double joules() override {
    for (auto& d : domains_) {
      std::string why;
      const auto now = read_counter(d.path, &why);
      if (!now) continue;  // a read that fails now counts nothing rather than failing the run
      microjoules_ += *now >= d.last ? *now - d.last : d.range - d.last + *now;
      d.last = *now;
    }
    return static_cast<double>(microjoules_) * 1e-6;
  }

 private:
  static std::optional<uint64_t> read_counter(const std::string& path, std::string* why) {
    try {
      const std::string text = read_file(path);
      char* end = nullptr;
      const unsigned long long value = std::strtoull(text.c_str(), &end, 10);
      if (end == text.c_str()) {
        *why = path + " does not hold a number";
        return std::nullopt;
      }
      return static_cast<uint64_t>(value);
    } catch (const std::exception& e) {
      *why = e.what();
      return std::nullopt;
    }
  }

  std::vector<Domain> domains_;
  std::string names_;
  uint64_t microjoules_ = 0;
};

// NVML, resolved with dlopen so that saddle neither links nor needs the driver's library.
//
// The driver takes milliseconds to read the counter (3.3 ms of CPU on an H200, driver 580: bench
// CudaEnergyRead), longer than a WGAN-GP iteration's phases, and the runner asks for it four times
// an iteration. So a thread of the meter reads it every kSamplePeriod, and joules() answers at
// once: the last reading extrapolated to now at the power between the last two readings, never
// less than its previous answer. Totals over a run are exact to a period's energy; the split
// between phases shorter than a period follows the time spent in them.
class NvmlMeter final : public EnergyMeter {
 public:
  using Init = int (*)();
  using Shutdown = int (*)();
  using HandleByBus = int (*)(const char*, void**);
  using TotalEnergy = int (*)(void*, unsigned long long*);

  static EnergyProbe open([[maybe_unused]] const torch::Device& device,
                          [[maybe_unused]] const std::string& library) {
    EnergyProbe probe;
#if SADDLE_WITH_CUDA
    void* lib = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      probe.unavailable = "NVML is not available (" + library + " cannot be loaded)";
      return probe;
    }
    auto meter = std::unique_ptr<NvmlMeter>(new NvmlMeter());
    meter->lib_ = lib;
    meter->shutdown_ = reinterpret_cast<Shutdown>(dlsym(lib, "nvmlShutdown"));
    const auto init = reinterpret_cast<Init>(dlsym(lib, "nvmlInit_v2"));
    const auto by_bus =
        reinterpret_cast<HandleByBus>(dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2"));
    meter->energy_ =
        reinterpret_cast<TotalEnergy>(dlsym(lib, "nvmlDeviceGetTotalEnergyConsumption"));
    if (init == nullptr || by_bus == nullptr || meter->energy_ == nullptr ||
        meter->shutdown_ == nullptr) {
      probe.unavailable = "NVML in " + library + " lacks the energy counter functions";
      return probe;
    }
    if (init() != 0) {
      meter->shutdown_ = nullptr;
      probe.unavailable = "NVML did not initialize (no NVIDIA driver?)";
      return probe;
    }
    const std::string bus = cuda_detail::pci_bus_id(device.index());
    if (bus.empty() || by_bus(bus.c_str(), &meter->handle_) != 0) {
      probe.unavailable = "NVML does not know " + device.str() + " (PCI bus '" + bus + "')";
      return probe;
    }
    unsigned long long mj = 0;
    if (meter->energy_(meter->handle_, &mj) != 0) {
      probe.unavailable = "this GPU has no NVML energy counter";
      return probe;
    }
    meter->start_ = mj;
    meter->name_ = "nvml " + describe_device(device);
    meter->record(mj);
    meter->sampler_ = std::thread([m = meter.get()] { m->sample_until_stopped(); });
    probe.meter = std::move(meter);
#else
    probe.unavailable = "this build has no CUDA support, so no GPU counter is read";
#endif
    return probe;
  }

  ~NvmlMeter() override {
    if (sampler_.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
      }
      wake_.notify_all();
      sampler_.join();
    }
    if (shutdown_ != nullptr) shutdown_();
    if (lib_ != nullptr) dlclose(lib_);
  }

  std::string source() const override { return name_; }

  double joules() override {
    std::lock_guard<std::mutex> lock(mutex_);
    const double ahead = std::min(seconds_since(read_at_), 2 * kSamplePeriod.count() * 1e-3);
    answered_ = std::max(answered_, read_joules_ + watts_ * ahead);
    return answered_;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kSamplePeriod{50};

  static double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  }

  // A reading of the counter (millijoules since the driver started) taken just now.
  void record(unsigned long long mj) {
    const Clock::time_point now = Clock::now();
    std::lock_guard<std::mutex> lock(mutex_);
    const double j = static_cast<double>(mj - start_) * 1e-3;
    const double dt = std::chrono::duration<double>(now - read_at_).count();
    if (read_at_ != Clock::time_point() && dt > 0) watts_ = std::max(0.0, (j - read_joules_) / dt);
    read_joules_ = j;
    read_at_ = now;
  }

  void sample_until_stopped() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!wake_.wait_for(lock, kSamplePeriod, [this] { return stop_; })) {
      lock.unlock();
      unsigned long long mj = 0;
      const bool ok = energy_(handle_, &mj) == 0;  // a failed read keeps the last one
      if (ok) record(mj);
      lock.lock();
    }
  }

  std::thread sampler_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  double read_joules_ = 0, watts_ = 0, answered_ = 0;
  Clock::time_point read_at_;
  void* lib_ = nullptr;
  void* handle_ = nullptr;
  Shutdown shutdown_ = nullptr;
  TotalEnergy energy_ = nullptr;
  unsigned long long start_ = 0;
  std::string name_;
};

}  // namespace

EnergyProbe open_energy_meter(const torch::Device& device, const EnergyOptions& options) {
  if (device.is_cuda()) return NvmlMeter::open(device, options.nvml_library());
  return RaplMeter::open(options.powercap_root());
}

}  // namespace saddle
