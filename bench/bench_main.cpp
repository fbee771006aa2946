// The one main() of saddle_bench: every benchmark file registers itself and runs single-threaded,
// so that figures compare kernels rather than thread pools.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

int main(int argc, char** argv) {
  torch::set_num_threads(1);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
