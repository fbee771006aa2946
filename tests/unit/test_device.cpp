// Device placement, transport, precision and energy counters, as far as a machine without a GPU
// can check them: option parsing and its errors, the rank-to-GPU mapping, bf16 autocast on the
// CPU, loss scaling, and the RAPL reader on a directory laid out like /sys/class/powercap.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <string>

#include "paths.h"
#include "saddle/comm/nccl.h"
#include "saddle/device.h"
#include "saddle/device_graph.h"
#include "saddle/error.h"
#include "saddle/games/registry.h"
#include "saddle/games/wgan_gp.h"
#include "saddle/precision.h"
#include "saddle/run/energy.h"

namespace {

using saddle::Error;
using saddle::resolve_device;

template <typename Fn>
void expect_error(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no saddle::Error; expected one containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Device, AutoTakesAGpuByNodeLocalRankOrTheCpu) {
  EXPECT_EQ(resolve_device("auto", 0, 0), torch::Device(torch::kCPU));
  EXPECT_EQ(resolve_device("auto", 3, 0), torch::Device(torch::kCPU));
  EXPECT_EQ(resolve_device("auto", 0, 4), torch::Device(torch::kCUDA, 0));
  EXPECT_EQ(resolve_device("auto", 5, 4), torch::Device(torch::kCUDA, 1));
  EXPECT_EQ(resolve_device("cpu", 2, 8), torch::Device(torch::kCPU));
}

TEST(Device, CudaMapsRanksModuloTheVisibleGpus) {
  // 8 ranks on a node with 8 GPUs take one each; 8 ranks on 2 GPUs share them 4 and 4.
  for (int rank = 0; rank < 8; ++rank) {
    EXPECT_EQ(resolve_device("cuda", rank, 8), torch::Device(torch::kCUDA, rank));
    EXPECT_EQ(resolve_device("cuda", rank, 2), torch::Device(torch::kCUDA, rank % 2));
  }
  EXPECT_EQ(resolve_device("cuda:3", 0, 4), torch::Device(torch::kCUDA, 3));
  EXPECT_EQ(resolve_device("cuda:3", 7, 4), torch::Device(torch::kCUDA, 3));
}

TEST(Device, BadOrUnavailableDevicesAreClearErrors) {
  expect_error([] { resolve_device("gpu", 0, 1); }, "invalid --device 'gpu'");
  expect_error([] { resolve_device("cuda:x", 0, 1); }, "invalid --device 'cuda:x'");
  expect_error([] { resolve_device("cuda:", 0, 1); }, "invalid --device 'cuda:'");
  expect_error([] { resolve_device("cuda:-1", 0, 1); }, "invalid --device");
  expect_error([] { resolve_device("cuda:2", 0, 2); }, "only 2 CUDA device(s) are visible");
  const std::string none = saddle::cuda_built() ? "no CUDA device is visible"
                                                : "this build of saddle has no CUDA support";
  expect_error([] { resolve_device("cuda", 0, 0); }, "--device cuda: ");
  expect_error([&] { resolve_device("cuda:0", 0, 0); }, none);
  EXPECT_EQ(saddle::describe_device(torch::Device(torch::kCPU)), "cpu");
}

TEST(Device, ThisMachineSeesNoGpuOrSaysWhich) {
  // Whatever the machine: the count is consistent with what LibTorch reports.
  if (!saddle::cuda_built()) EXPECT_EQ(saddle::cuda_device_count(), 0);
  EXPECT_GE(saddle::cuda_device_count(), 0);
}

// CUDA graphs: only for CUDA devices, a clear error elsewhere; a game asked for them on the CPU
// evaluates eagerly (the GPU tests check the replays).
TEST(DeviceGraph, OnlyCudaDevicesCaptureGraphs) {
  EXPECT_FALSE(saddle::DeviceGraph::supported(torch::kCPU));
  if (saddle::cuda_built()) {
    EXPECT_TRUE(saddle::DeviceGraph::supported(torch::Device(torch::kCUDA, 0)));
    expect_error([] { saddle::DeviceGraph graph(torch::kCPU); }, "CUDA graphs need a CUDA device");
  } else {
    expect_error([] { saddle::DeviceGraph graph(torch::Device(torch::kCUDA, 0)); },
                 "CUDA graphs need a CUDA build of saddle");
  }
  EXPECT_EQ(saddle::DeviceGraph::context(torch::kCPU, "scale=1"), "scale=1");
  saddle::GameOptions options;
  options.filters = 8;
  options.batch = 4;
  options.cuda_graphs = true;
  saddle::RealBatches noise = [](int64_t batch, at::Generator& gen) {
    return torch::rand({batch, 1, 32, 32}, gen) * 2 - 1;
  };
  saddle::WganGpGame game(options, noise, 1);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  EXPECT_TRUE(torch::isfinite(game.operator_at(gen)).all().item<bool>());
  EXPECT_EQ(game.graph_captures(), 0);
}

TEST(Transport, AutoPicksNcclOnlyBetweenCudaDevices) {
  const torch::Device cpu(torch::kCPU), gpu(torch::kCUDA, 0);
  EXPECT_EQ(saddle::resolve_transport("auto", cpu, 4), "mpi");
  EXPECT_EQ(saddle::resolve_transport("auto", gpu, 1), "mpi");
  EXPECT_EQ(saddle::resolve_transport("auto", gpu, 4), saddle::nccl_built() ? "nccl" : "mpi");
  EXPECT_EQ(saddle::resolve_transport("mpi", gpu, 4), "mpi");
  // Two ranks on one GPU (NCCL refuses them): auto takes MPI, nccl says why it cannot.
  EXPECT_EQ(saddle::resolve_transport("auto", gpu, 2, /*gpu_shared=*/true), "mpi");
  if (saddle::nccl_built()) {
    expect_error([&] { saddle::resolve_transport("nccl", gpu, 2, true); },
                 "some ranks share a GPU");
  }
  expect_error([&] { saddle::resolve_transport("tcp", cpu, 2); }, "invalid --transport 'tcp'");
  if (saddle::nccl_built()) {
    expect_error([&] { saddle::resolve_transport("nccl", cpu, 2); },
                 "--transport nccl needs a CUDA device");
  } else {
    expect_error([&] { saddle::resolve_transport("nccl", gpu, 2); }, "has no NCCL");
  }
}

TEST(Transport, RanksSharingAGpuAreSeenAcrossHosts) {
  EXPECT_FALSE(saddle::gpu_shared({"a cuda:0", "a cuda:1", "b cuda:0", "b cuda:1"}));
  EXPECT_TRUE(saddle::gpu_shared({"a cuda:0", "a cuda:1", "a cuda:0"}));
  EXPECT_FALSE(saddle::gpu_shared({"a cpu", "a cpu"}));
  EXPECT_FALSE(saddle::gpu_shared({}));
}

TEST(Precision, ParsingAndDeviceChecks) {
  EXPECT_EQ(saddle::parse_precision("fp32"), saddle::Precision::kFp32);
  EXPECT_EQ(saddle::parse_precision("bf16"), saddle::Precision::kBf16);
  EXPECT_EQ(saddle::parse_precision("fp16"), saddle::Precision::kFp16);
  expect_error([] { saddle::parse_precision("fp8"); }, "invalid --precision 'fp8'");
  expect_error([] { saddle::check_precision(saddle::Precision::kFp16, torch::kCPU); },
               "--precision fp16 needs a CUDA device");
  saddle::check_precision(saddle::Precision::kBf16, torch::kCPU);
  saddle::check_precision(saddle::Precision::kFp16, torch::Device(torch::kCUDA, 0));
}

TEST(Precision, Bf16AutocastOnTheCpuKeepsTheOperatorFloat32AndClose) {
  saddle::GameOptions options;
  options.batch = 64;
  options.latent = 2;
  options.filters = 32;
  auto game = saddle::make_game("mog8", options);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const torch::Tensor state = gen.get_state();
  const torch::Tensor exact = game->operator_at(gen);
  gen.set_state(state);
  torch::Tensor mixed;
  {
    saddle::AutocastScope autocast(saddle::Precision::kBf16, torch::kCPU);
    // Inside the scope a matrix product runs in bfloat16...
    EXPECT_EQ(torch::mm(torch::ones({2, 2}), torch::ones({2, 2})).scalar_type(), torch::kBFloat16);
    mixed = game->operator_at(gen);
  }
  // ... and after it in float32 again.
  EXPECT_EQ(torch::mm(torch::ones({2, 2}), torch::ones({2, 2})).scalar_type(), torch::kFloat32);
  EXPECT_EQ(mixed.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::isfinite(mixed).all().item<bool>());
  const double cosine = (mixed * exact).sum().item<double>() /
                        (mixed.norm().item<double>() * exact.norm().item<double>());
  EXPECT_GT(cosine, 0.99) << "bf16 operator far from the fp32 one";
  EXPECT_FALSE(torch::equal(mixed, exact)) << "autocast changed nothing";
}

TEST(Precision, LossScalerHalvesOnOverflowAndGrowsAfterAStreak) {
  saddle::LossScaler scaler(1024.0, 3);
  EXPECT_FALSE(scaler.update(false));
  EXPECT_EQ(scaler.scale(), 512.0);
  EXPECT_EQ(scaler.overflows_in_a_row(), 1);
  EXPECT_TRUE(scaler.update(true));
  EXPECT_TRUE(scaler.update(true));
  EXPECT_EQ(scaler.scale(), 512.0);
  EXPECT_TRUE(scaler.update(true));
  EXPECT_EQ(scaler.scale(), 1024.0);
  for (int i = 0; i < 20; ++i) scaler.update(false);
  EXPECT_EQ(scaler.scale(), 1.0) << "the scale never drops below 1";
  EXPECT_THROW(saddle::LossScaler(0.5), Error);
}

class Energy : public ::testing::Test {
 protected:
  void SetUp() override { root_ = saddle::testing::fresh_temp_dir("saddle_powercap"); }
  void TearDown() override { saddle::remove_tree(root_); }
  void domain(const std::string& name, uint64_t energy_uj, uint64_t range_uj) {
    const std::string dir = (root_ / name).string();
    saddle::create_directories(dir);
    std::ofstream(dir + "/energy_uj") << energy_uj << "\n";
    std::ofstream(dir + "/max_energy_range_uj") << range_uj << "\n";
  }
  saddle::testing::Path root_;
};

TEST_F(Energy, RaplPackagesAreSummedAcrossWrapArounds) {
  domain("intel-rapl:0", 1'000'000, 10'000'000);
  domain("intel-rapl:0:0", 500'000, 10'000'000);  // a sub-domain of package 0: not added again
  domain("intel-rapl:1", 9'000'000, 10'000'000);
  saddle::EnergyProbe probe =
      saddle::open_energy_meter(torch::kCPU, saddle::EnergyOptions().powercap_root(root_.string()));
  ASSERT_TRUE(probe.meter) << probe.unavailable;
  EXPECT_EQ(probe.meter->source(), "rapl intel-rapl:0 + intel-rapl:1");
  EXPECT_DOUBLE_EQ(probe.meter->joules(), 0.0);
  domain("intel-rapl:0", 3'500'000, 10'000'000);  // +2.5 J
  domain("intel-rapl:1", 500'000, 10'000'000);    // wrapped: +1.5 J
  EXPECT_NEAR(probe.meter->joules(), 4.0, 1e-9);
  domain("intel-rapl:0", 4'000'000, 10'000'000);  // +0.5 J
  EXPECT_NEAR(probe.meter->joules(), 4.5, 1e-9);
}

TEST_F(Energy, NoCounterSaysWhy) {
  saddle::EnergyProbe missing = saddle::open_energy_meter(
      torch::kCPU, saddle::EnergyOptions().powercap_root((root_ / "none").string()));
  EXPECT_FALSE(missing.meter);
  EXPECT_NE(missing.unavailable.find("does not exist"), std::string::npos) << missing.unavailable;
  saddle::create_directories((root_ / "intel-rapl:0").string());  // no energy_uj inside
  saddle::EnergyProbe unreadable =
      saddle::open_energy_meter(torch::kCPU, saddle::EnergyOptions().powercap_root(root_.string()));
  EXPECT_FALSE(unreadable.meter);
  EXPECT_NE(unreadable.unavailable.find("not readable"), std::string::npos)
      << unreadable.unavailable;
}

}  // namespace
