// The GPU path, on a machine with a CUDA device (every test skips, saying why, elsewhere): the CUDA
// encoder writes the CPU encoder's bytes, the fused decode of K messages gives the CPU's bits,
// games run on the device, checkpoints move between GPU and CPU, and mixed precision keeps the
// operator float32 and finite.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <sstream>
#include <string>
#include <utility>

#include "codec_reference.h"
#include "paths.h"
#include "saddle/comm/exchange.h"
#include "saddle/comm/nccl.h"
#include "saddle/device.h"
#include "saddle/games/registry.h"
#include "saddle/games/wgan_gp.h"
#include "saddle/precision.h"
#include "saddle/run/runner.h"
#include "saddle/solver.h"

namespace {

using saddle::Codec;

bool have_gpu() { return saddle::cuda_device_count() > 0; }

#define SKIP_WITHOUT_GPU()                                                                  \
  if (!have_gpu()) {                                                                        \
    GTEST_SKIP() << (saddle::cuda_built() ? "no CUDA device is visible"                     \
                                          : "this build has no CUDA support (Debian's CPU " \
                                            "LibTorch)");                                   \
  }

const torch::Device kGpu(torch::kCUDA, 0);

// Both CUDA encoder kernels, with their names for failure messages.
constexpr std::pair<saddle::CudaEncoder, const char*> kEncoders[] = {
    {saddle::CudaEncoder::kBlock, "block"}, {saddle::CudaEncoder::kRegister, "register"}};

Codec reference_codec(const saddle::testing::ReferenceCase& c, const torch::Tensor& v,
                      saddle::CudaEncoder encoder = saddle::CudaEncoder::kBlock) {
  Codec codec(saddle::CodecOptions(c.options).cuda_encoder(encoder));
  if (codec.adaptive()) codec.adapt(codec.statistics(v));
  return codec;
}

// Where two messages of one codec first differ, in words: the header, a bucket's norm (both
// values), or a coordinate's symbol (both symbols, the input, and what quantize_math.h's own
// functions give on the host), so that a failure on the GPU machine says what to fix.
std::string first_difference(const Codec& codec, const torch::Tensor& v, const torch::Tensor& a,
                             const torch::Tensor& b, uint64_t seed, uint64_t stream) {
  const torch::Tensor x = a.cpu().contiguous(), y = b.cpu().contiguous();
  if (x.numel() != y.numel()) {
    return "lengths " + std::to_string(x.numel()) + " and " + std::to_string(y.numel());
  }
  const auto* p = x.data_ptr<uint8_t>();
  const auto* q = y.data_ptr<uint8_t>();
  int64_t first = -1, count = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (p[i] != q[i]) {
      if (first < 0) first = i;
      ++count;
    }
  }
  if (first < 0) return "equal";
  std::ostringstream out;
  out << count << " bytes differ, the first at byte " << first << " of " << x.numel() << ": ";
  const int64_t n = v.numel(), bucket = codec.options().bucket_size();
  const int64_t buckets = n == 0 ? 0 : (n - 1) / bucket + 1;
  const int64_t body = Codec::kHeaderBytes + 4 * buckets;
  if (first < Codec::kHeaderBytes) {
    out << "header byte " << first << " (" << int(p[first]) << " against " << int(q[first]) << ")";
    return out.str();
  }
  if (codec.is_cast() || codec.options().coder() != saddle::CoderKind::kFixed) {
    out << "body (cast or entropy coder)";
    return out.str();
  }
  if (first < body) {
    const int64_t b = (first - Codec::kHeaderBytes) / 4;
    float nx, ny;
    std::memcpy(&nx, p + Codec::kHeaderBytes + 4 * b, 4);
    std::memcpy(&ny, q + Codec::kHeaderBytes + 4 * b, 4);
    out << "norm of bucket " << b << ": " << std::hexfloat << nx << " against " << ny;
    return out.str();
  }
  const int bits = codec.options().bits();
  auto symbol = [&](const uint8_t* m, int64_t i) {
    unsigned s = 0;
    for (int k = 0; k < bits; ++k) {
      const int64_t bit = i * bits + k;
      s |= ((m[body + (bit >> 3)] >> (bit & 7)) & 1u) << k;
    }
    return s;
  };
  int64_t i = ((first - body) * 8) / bits;
  while (i < n && symbol(p, i) == symbol(q, i)) ++i;
  if (i >= n) {
    out << "padding bits past the last symbol";
    return out.str();
  }
  const float xi = v.cpu().data_ptr<float>()[i];
  float norm;
  std::memcpy(&norm, p + Codec::kHeaderBytes + 4 * (i / bucket), 4);
  out << "coordinate " << i << " (bucket " << i / bucket << ", x = " << std::hexfloat << xi
      << ", norm " << norm << "): symbols " << std::dec << symbol(p, i) << " against "
      << symbol(q, i) << "; levels";
  for (float l : codec.levels()) out << " " << std::hexfloat << l;
  (void)seed;
  (void)stream;
  return out.str();
}

TEST(Cuda, EncoderWritesTheCpuEncodersBytes) {
  SKIP_WITHOUT_GPU();
  int failures = 0;
  for (const auto& [encoder, kernel] : kEncoders) {
    for (const auto& c : saddle::testing::reference_cases()) {
      const torch::Tensor v = saddle::testing::reference_input(c.n, c.seed);
      const Codec codec = reference_codec(c, v, encoder);
      for (uint64_t stream : {0ULL, 3ULL, 123456789ULL}) {
        const torch::Tensor cpu = codec.encode(v, 7, stream);
        const torch::Tensor gpu = codec.encode(v.to(kGpu), 7, stream);
        ASSERT_TRUE(gpu.is_cuda()) << c.name;
        if (!torch::equal(cpu, gpu.cpu())) {
          ++failures;
          ADD_FAILURE() << kernel << " kernel, " << c.name << " stream " << stream << ": "
                        << first_difference(codec, v, cpu, gpu, 7, stream);
          break;
        }
      }
      if (failures >= 12) break;
    }
  }
}

TEST(Cuda, FusedDecodeOfKMessagesGivesTheCpuBits) {
  SKIP_WITHOUT_GPU();
  for (const auto& c : saddle::testing::reference_cases()) {
    const torch::Tensor v = saddle::testing::reference_input(c.n, c.seed);
    const Codec codec = reference_codec(c, v);
    for (int k : {1, 3, 8}) {
      std::vector<torch::Tensor> on_cpu, on_gpu;
      for (int r = 0; r < k; ++r) {
        on_cpu.push_back(codec.encode(v * (r + 1), 5, static_cast<uint64_t>(r)));
        on_gpu.push_back(on_cpu.back().to(kGpu));
      }
      torch::Tensor expected = torch::empty({c.n});
      codec.decode_average(on_cpu, expected, 1.0f / k);
      torch::Tensor got = torch::empty({c.n}, torch::TensorOptions().device(kGpu));
      codec.decode_average(on_gpu, got, 1.0f / k);
      ASSERT_TRUE(torch::equal(expected, got.cpu())) << c.name << " K=" << k;
      // An allgather's output: one buffer, messages back to back.
      if (c.options.coder() == saddle::CoderKind::kFixed) {
        const torch::Tensor all = torch::cat(on_gpu);
        std::vector<torch::Tensor> views;
        for (int r = 0; r < k; ++r) {
          views.push_back(all.narrow(0, r * on_gpu[0].numel(), on_gpu[0].numel()));
        }
        got.zero_();
        codec.decode_average(views, got, 1.0f / k);
        ASSERT_TRUE(torch::equal(expected, got.cpu())) << c.name << " K=" << k << " (one buffer)";
      }
    }
  }
}

// Buckets longer than the encoder's shared-memory chunk (2048 coordinates), whose chunks and
// buckets start on word boundaries (4096 x 4 bits) or not (5000 x 3 bits, 2500 x 5 bits), and a
// decode into an output that is not 16-byte aligned and whose length is not a multiple of 8.
TEST(Cuda, LongBucketsAndUnalignedOutputsMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  struct Case {
    const char* quantizer;
    int bits;
    int64_t bucket;
    saddle::CoderKind coder = saddle::CoderKind::kFixed;
  };
  // Buckets longer than the kernel's chunk, aligned to words or not, and the symbols that the
  // entropy coder packs on the CPU.
  for (const auto& [encoder, kernel] : kEncoders) {
    for (const Case& c : {Case{"alq", 3, 5000}, Case{"qsgd", 4, 4096}, Case{"nuq", 5, 2500},
                          Case{"qsgd-inf", 8, 3000}, Case{"alq", 7, 8192},
                          Case{"alq", 4, 1024, saddle::CoderKind::kEntropy}}) {
      const std::string name = std::string(kernel) + " kernel, " + c.quantizer + "/b" +
                               std::to_string(c.bits) + "/k" + std::to_string(c.bucket) + "/" +
                               saddle::coder_name(c.coder);
      const int64_t n = 12001;
      const torch::Tensor v = saddle::testing::reference_input(n, 17);
      Codec codec(saddle::CodecOptions()
                      .quantizer(c.quantizer)
                      .bits(c.bits)
                      .bucket_size(c.bucket)
                      .coder(c.coder)
                      .cuda_encoder(encoder));
      if (codec.adaptive()) codec.adapt(codec.statistics(v));
      std::vector<torch::Tensor> on_cpu, on_gpu;
      for (uint64_t r = 0; r < 3; ++r) {
        on_cpu.push_back(codec.encode(v * static_cast<float>(r + 1), 9, r));
        on_gpu.push_back(codec.encode((v * static_cast<float>(r + 1)).to(kGpu), 9, r));
        ASSERT_TRUE(torch::equal(on_cpu.back(), on_gpu.back().cpu()))
            << name << " message " << r << ": "
            << first_difference(codec, v * static_cast<float>(r + 1), on_cpu.back(), on_gpu.back(),
                                9, r);
      }
      torch::Tensor expected = torch::empty({n});
      codec.decode_average(on_cpu, expected, 1.0f / 3);
      torch::Tensor storage = torch::zeros({n + 1}, torch::TensorOptions().device(kGpu));
      torch::Tensor got = storage.narrow(0, 1, n);  // 4 bytes past an aligned start
      codec.decode_average(on_gpu, got, 1.0f / 3);
      ASSERT_TRUE(torch::equal(expected, got.cpu())) << name << " (unaligned output)";
    }
  }
}

// Both encoder kernels (the register kernel: buckets a multiple of 32 coordinates, up to 8192; the
// block kernel: any, here 97) on the norm's edges: sums of squares that underflow (x 1e-20) or
// overflow (x 1e18) float32 and take the double path, subnormal inputs (x 1e-42) whose norm needs
// the wide scale, the L-inf norm, 3 and 7 bits (symbols
// straddling words), a last bucket and a last row of 32 cut short, the entropy coder's symbols, and
// a vector that is a piece of a longer one (Codec::encode's `first`).
TEST(Cuda, EncodersMatchTheCpuAtExtremeScales) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 5000;  // 1024-buckets: the last one holds 904 coordinates, 28 rows and 8 more
  const torch::Tensor base = saddle::testing::reference_input(n, 23);
  int failures = 0;
  for (const auto& [encoder, kernel] : kEncoders) {
    for (const char* quantizer : {"alq", "qsgd", "qsgd-inf", "nuq"}) {
      for (int bits : {2, 3, 4, 7}) {
        for (int64_t bucket : {32, 97, 256, 1024, 8192}) {  // 97: the block kernel
          for (double scale : {1.0, 1e-20, 1e18, 1e-42}) {
            const auto coder = bits == 4 && bucket == 256 ? saddle::CoderKind::kEntropy
                                                          : saddle::CoderKind::kFixed;
            const torch::Tensor v = base * scale;
            Codec codec(saddle::CodecOptions()
                            .quantizer(quantizer)
                            .bits(bits)
                            .bucket_size(bucket)
                            .coder(coder)
                            .cuda_encoder(encoder));
            if (codec.adaptive()) codec.adapt(codec.statistics(v));
            // Also as a piece of a longer vector whose stream index crosses a key boundary
            // (2^32) in the second bucket of 1024.
            for (int64_t first : {int64_t{0}, (int64_t{1} << 32) - 2000}) {
              if (first != 0 && scale != 1.0) continue;
              const torch::Tensor cpu = codec.encode(v, 4, 2, first);
              const torch::Tensor gpu = codec.encode(v.to(kGpu), 4, 2, first);
              if (!torch::equal(cpu, gpu.cpu())) {
                ADD_FAILURE() << kernel << " kernel, " << quantizer << "/b" << bits << "/k"
                              << bucket << "/x" << scale << "/first " << first << "/"
                              << saddle::coder_name(coder) << ": "
                              << first_difference(codec, v, cpu, gpu, 4, 2);
                if (++failures >= 8) return;
              }
            }
          }
        }
      }
    }
  }
}

TEST(Cuda, MalformedDeviceMessagesAreRejectedWithTheirIndex) {
  SKIP_WITHOUT_GPU();
  Codec codec(saddle::CodecOptions().quantizer("qsgd").bits(4).bucket_size(64));
  const torch::Tensor v = saddle::testing::reference_input(1000, 1);
  std::vector<torch::Tensor> messages = {codec.encode(v.to(kGpu), 1, 0),
                                         codec.encode(v.to(kGpu), 1, 1)};
  torch::Tensor bad = messages[1].clone();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  bad.narrow(0, Codec::kHeaderBytes + 4 * 3, 4)
      .copy_(torch::from_blob(const_cast<float*>(&nan), {4}, torch::kUInt8));
  torch::Tensor out = torch::full({1000}, 3.0f, torch::TensorOptions().device(kGpu));
  try {
    codec.decode_average({messages[0], bad}, out, 0.5f);
    ADD_FAILURE() << "a NaN norm was accepted";
  } catch (const saddle::MalformedMessage& e) {
    EXPECT_EQ(e.index(), 1);
  }
  EXPECT_TRUE(torch::equal(out.cpu(), torch::full({1000}, 3.0f))) << "output touched on error";
  torch::Tensor header = messages[0].clone();
  header[5] = 1;  // another quantizer's wire id
  EXPECT_THROW(codec.decode_average({header, messages[1]}, out, 0.5f), saddle::MalformedMessage);
  EXPECT_THROW(codec.encode(torch::full({100}, nan, torch::TensorOptions().device(kGpu)), 0, 0),
               saddle::Error);
}

TEST(Cuda, StatisticsMatchTheCpuUpToSummationOrder) {
  SKIP_WITHOUT_GPU();
  for (const char* q : {"alq", "amq", "qsgd-inf"}) {
    Codec codec(saddle::CodecOptions().quantizer(q).bits(3).bucket_size(97));
    const torch::Tensor v = saddle::testing::reference_input(20000, 5);
    const torch::Tensor cpu = codec.statistics(v);
    const torch::Tensor gpu = codec.statistics(v.to(kGpu));
    ASSERT_FALSE(gpu.is_cuda());
    EXPECT_TRUE(torch::allclose(cpu, gpu, 1e-12, 1e-30)) << q;
  }
}

TEST(Cuda, ExchangeAveragesOnTheDevice) {
  SKIP_WITHOUT_GPU();
  auto comm = saddle::make_single_process_communicator();
  saddle::Logger logger(saddle::LogLevel::kWarn);
  for (const char* q : {"none", "bf16", "alq"}) {
    saddle::Exchange cpu(
        *comm, saddle::ExchangeOptions().codec(saddle::CodecOptions().quantizer(q)), logger);
    saddle::Exchange gpu(
        *comm, saddle::ExchangeOptions().codec(saddle::CodecOptions().quantizer(q)), logger);
    const torch::Tensor v = saddle::testing::reference_input(5000, 9);
    const torch::Tensor a = cpu.average(v);
    const torch::Tensor b = gpu.average(v.to(kGpu));
    ASSERT_TRUE(b.is_cuda());
    const torch::Tensor differ = a != b.cpu();
    EXPECT_TRUE(torch::equal(a, b.cpu()))
        << q << ": " << differ.sum().item<int64_t>() << " of " << a.numel()
        << " coordinates differ, by at most " << (a - b.cpu()).abs().max().item<double>();
    EXPECT_EQ(cpu.ledger().bytes_sent, gpu.ledger().bytes_sent);
  }
}

TEST(Cuda, GamesRunOnTheDeviceWithTheCpuSamples) {
  SKIP_WITHOUT_GPU();
  for (const char* name : {"bilinear", "quadratic", "mog8"}) {
    saddle::GameOptions cpu_options;
    cpu_options.noise = std::string(name) == "mog8" ? "none" : "relative";
    saddle::GameOptions gpu_options = cpu_options;
    gpu_options.device = kGpu;
    auto on_cpu = saddle::make_game(name, cpu_options);
    auto on_gpu = saddle::make_game(name, gpu_options);
    ASSERT_TRUE(on_gpu->params().is_cuda()) << name;
    EXPECT_TRUE(torch::equal(on_cpu->params(), on_gpu->params().cpu())) << name;
    at::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(4);
    at::Generator g2 = at::make_generator<at::CPUGeneratorImpl>(4);
    const torch::Tensor a = on_cpu->operator_at(g1);
    const torch::Tensor b = on_gpu->operator_at(g2);
    ASSERT_TRUE(b.is_cuda()) << name;
    EXPECT_TRUE(torch::allclose(a, b.cpu(), 1e-4, 1e-5)) << name;
  }
}

TEST(Cuda, ShortSolveConvergesOnTheGpu) {
  SKIP_WITHOUT_GPU();
  saddle::GameOptions options;
  options.device = kGpu;
  auto game = saddle::make_game("bilinear", options);
  auto solver =
      saddle::make_solver("eg", game->params(), game->players(), saddle::SolverOptions().lr(0.5));
  auto comm = saddle::make_single_process_communicator();
  saddle::Logger logger(saddle::LogLevel::kWarn);
  saddle::Exchange exchange(
      *comm, saddle::ExchangeOptions().codec(saddle::CodecOptions().quantizer("alq")), logger);
  const saddle::RunResult result = saddle::run(
      *game, *solver, exchange, saddle::RunOptions().iterations(3000).progress(false), logger);
  EXPECT_LT(*saddle::find_metric(result.final_metrics, "distance_sq"), 1e-8);
  EXPECT_EQ(result.summary["device"].get<std::string>().rfind("cuda:0", 0), 0u);
}

// A run checkpointed on one device continues on the other: the checkpoint holds CPU tensors.
TEST(Cuda, CheckpointsMoveBetweenGpuAndCpu) {
  SKIP_WITHOUT_GPU();
  const saddle::testing::Path dir = saddle::testing::fresh_temp_dir("saddle_cuda_ckpt");
  auto run_on = [&](const torch::Device& device, int64_t iterations, bool resume) {
    saddle::GameOptions options;
    options.noise = "relative";
    options.device = device;
    auto game = saddle::make_game("bilinear", options);
    auto solver = saddle::make_solver("extra-adam", game->params(), game->players(),
                                      saddle::SolverOptions().lr(0.01));
    auto comm = saddle::make_single_process_communicator();
    saddle::Logger logger(saddle::LogLevel::kWarn);
    saddle::Exchange exchange(
        *comm, saddle::ExchangeOptions().codec(saddle::CodecOptions().quantizer("qsgd")), logger);
    saddle::run(
        *game, *solver, exchange,
        saddle::RunOptions().iterations(iterations).out_dir(dir).resume(resume).progress(false),
        logger);
    return game->params().cpu();
  };
  const torch::Tensor straight = run_on(kGpu, 40, false);
  saddle::remove_tree(dir);
  run_on(kGpu, 20, false);
  const torch::Tensor resumed_on_cpu = run_on(torch::kCPU, 40, true);
  // Different devices round differently; the trajectories stay close over 20 steps.
  EXPECT_TRUE(torch::allclose(straight, resumed_on_cpu, 1e-3, 1e-4));
  saddle::remove_tree(dir);
  run_on(torch::kCPU, 20, false);
  const torch::Tensor resumed_on_gpu = run_on(kGpu, 40, true);
  EXPECT_TRUE(torch::allclose(straight, resumed_on_gpu, 1e-3, 1e-4));
  saddle::remove_tree(dir);
}

// A small WGAN-GP on the GPU, and noise images in place of Fashion-MNIST: the arithmetic is what
// the tests below check, not the data.
saddle::GameOptions small_gan_on_gpu() {
  saddle::GameOptions options;
  options.device = kGpu;
  options.filters = 16;
  options.batch = 16;
  return options;
}

torch::Tensor noise_images(int64_t batch, at::Generator& gen) {
  return torch::rand({batch, 1, 32, 32}, gen) * 2 - 1;
}

TEST(Cuda, MixedPrecisionKeepsTheOperatorFloat32AndFinite) {
  SKIP_WITHOUT_GPU();
  auto game = std::make_unique<saddle::WganGpGame>(small_gan_on_gpu(), noise_images, 1);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const torch::Tensor state = gen.get_state();
  const torch::Tensor exact = game->operator_at(gen);
  for (auto precision : {saddle::Precision::kBf16, saddle::Precision::kFp16}) {
    gen.set_state(state);
    saddle::AutocastScope autocast(precision, kGpu);
    game->set_loss_scale(precision == saddle::Precision::kFp16 ? 1024.0 : 1.0);
    const torch::Tensor mixed = game->operator_at(gen);
    game->set_loss_scale(1.0);
    EXPECT_EQ(mixed.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(torch::isfinite(mixed).all().item<bool>());
    const double cosine = (mixed * exact).sum().item<double>() /
                          (mixed.norm().item<double>() * exact.norm().item<double>());
    EXPECT_GT(cosine, 0.95) << saddle::precision_name(precision);
  }
}

// The CUDA graph of the WGAN-GP operator replays what an eager evaluation computes at the same z
// and draw, while z moves between draws, without a second capture; its warm-up leaves the
// batch-norm statistics as eager evaluations do; a new loss scale or precision captures again.
// (Two solvers are not compared: Adam's first steps are nearly sign steps, so the last bits of
// near-zero gradient entries, which cuDNN's atomics already vary, would decide the comparison.)
TEST(Cuda, WganGpGraphReplaysTheEagerOperator) {
  SKIP_WITHOUT_GPU();
  saddle::GameOptions eager_options = small_gan_on_gpu();
  eager_options.cuda_graphs = false;
  saddle::WganGpGame graphed(small_gan_on_gpu(), noise_images, 1);
  saddle::WganGpGame eager(eager_options, noise_images, 1);
  at::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(3);
  at::Generator g2 = at::make_generator<at::CPUGeneratorImpl>(3);
  torch::NoGradGuard no_grad;
  for (int step = 0; step < 5; ++step) {
    eager.params().copy_(graphed.params());
    const torch::Tensor a = graphed.operator_at(g1);
    const torch::Tensor b = eager.operator_at(g2);
    ASSERT_TRUE(torch::isfinite(a).all().item<bool>()) << "step " << step;
    const double error = (a - b).norm().item<double>() / b.norm().item<double>();
    EXPECT_LT(error, 1e-4) << "step " << step;
    // z moves between draws: the replays must read the new parameters.
    graphed.params().sub_(a, 1e-2);
  }
  EXPECT_EQ(graphed.graph_captures(), 1);
  EXPECT_EQ(eager.graph_captures(), 0);
  const auto graphed_state = graphed.state();
  const auto eager_state = eager.state();
  ASSERT_EQ(graphed_state.size(), eager_state.size());
  for (size_t i = 0; i < eager_state.size(); ++i) {
    EXPECT_TRUE(torch::allclose(graphed_state[i].second.to(torch::kDouble),
                                eager_state[i].second.to(torch::kDouble), 1e-3, 1e-5))
        << eager_state[i].first;
  }
  graphed.set_loss_scale(1024.0);
  graphed.operator_at(g1);
  EXPECT_EQ(graphed.graph_captures(), 2);
  {
    saddle::AutocastScope autocast(saddle::Precision::kBf16, kGpu);
    EXPECT_TRUE(torch::isfinite(graphed.operator_at(g1)).all().item<bool>());
  }
  EXPECT_EQ(graphed.graph_captures(), 3);
}

TEST(Cuda, NcclAllGatherOnOneRank) {
  SKIP_WITHOUT_GPU();
  if (!saddle::nccl_built()) GTEST_SKIP() << "this build has no NCCL";
  auto host = saddle::make_single_process_communicator();
  auto nccl = saddle::make_nccl_communicator(*host, kGpu);
  ASSERT_TRUE(nccl->device_collectives(kGpu));
  const torch::Tensor message =
      torch::arange(100, torch::TensorOptions().dtype(torch::kUInt8).device(kGpu));
  const auto all = nccl->allgather_bytes(message);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_TRUE(torch::equal(all[0].cpu(), message.cpu()));
}

}  // namespace
