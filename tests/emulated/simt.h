// A small SIMT emulator that runs CUDA kernels as host code, for tests of the kernels' logic on
// machines without a GPU (tests/emulated/test_codec_kernels.cpp includes src/cuda/codec_kernels.cu
// after this header). Each CUDA thread of a block is a fiber (ucontext) on the calling thread;
// blocks run one after another. A fiber runs until it reaches __syncthreads() (every thread of the
// block meets there) or a warp shuffle (the 32 lanes of its warp meet there, then each reads its
// source lane's value), so warp-synchronous code sees what it would see on a GPU: the same values
// in the same order. What it does not model: the memory system (alignment faults, coalescing,
// races between blocks), timing, and anything a kernel leaves undefined.
//
// Include it before any CUDA header is included: it includes the CUDA runtime's host headers
// (types, cudaError_t, half precision), then replaces CUDA C++'s keywords and built-ins.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <ucontext.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define SADDLE_SIMT_ASAN 1
#else
#define SADDLE_SIMT_ASAN 0
#endif

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

namespace saddle::simt {

struct Dim {
  unsigned x = 1, y = 1, z = 1;
};

class Machine {
 public:
  static Machine& get() {
    static Machine machine;
    return machine;
  }

  // Runs `body` once per thread of a grid of `grid` blocks of `block` threads (1-D).
  void run(unsigned grid, unsigned block, const std::function<void()>& body) {
    if (block == 0 || block > kMaxThreads) fail("a block needs 1 to 1024 threads, not", block);
    grid_.x = grid;
    block_.x = block;
    body_ = &body;
    for (unsigned b = 0; b < grid; ++b) run_block(b, block);
    body_ = nullptr;
  }

  const Dim& thread_index() const { return fibers_[current_].thread; }
  const Dim& block_index() const { return block_index_; }
  const Dim& grid_dim() const { return grid_; }
  const Dim& block_dim() const { return block_; }

  void sync_block() { wait(kAtBlockBarrier); }

  // The value `v` of lane `source(lane)` of this warp (this lane's own where the source is past
  // the warp), once every lane of the warp has offered its value.
  template <typename T, typename Source>
  T shuffle(T v, Source source) {
    static_assert(sizeof(T) <= sizeof(uint64_t), "shuffles of up to 8 bytes");
    Fiber& f = fibers_[current_];
    const unsigned lane = f.thread.x % 32, warp = f.thread.x / 32;
    const int phase = f.shuffles++ & 1;  // two slot sets: a lane may offer the next value while
                                         // others still read this one
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof v);
    slots_[phase][warp][lane] = bits;
    wait(kAtShuffle);
    const int from = source(static_cast<int>(lane));
    const uint64_t got = slots_[phase][warp][from >= 0 && from < lanes_in(warp) ? from : lane];
    T out;
    std::memcpy(&out, &got, sizeof out);
    return out;
  }

  // The OR of `part` over the warp's lanes.
  unsigned reduce_or(unsigned part) {
    Fiber& f = fibers_[current_];
    const unsigned warp = f.thread.x / 32;
    const int phase = f.shuffles++ & 1;
    slots_[phase][warp][f.thread.x % 32] = part;
    wait(kAtShuffle);
    unsigned all = 0;
    for (int l = 0; l < lanes_in(warp); ++l) all |= static_cast<unsigned>(slots_[phase][warp][l]);
    return all;
  }

  [[noreturn]] static void fail(const char* what, unsigned value) {
    std::fprintf(stderr, "simt emulator: %s", what);
    std::fprintf(stderr, " (%u)\n", value);
    std::abort();
  }

 private:
  static constexpr unsigned kMaxThreads = 1024;
  static constexpr size_t kStackBytes = 256 * 1024;
  enum State { kReady, kAtBlockBarrier, kAtShuffle, kDone };

  struct Fiber {
    ucontext_t context;
    std::vector<char> stack;
    Dim thread;
    State state = kReady;
    unsigned shuffles = 0;
    void* fake_stack = nullptr;  // AddressSanitizer's, while the fiber is switched out
  };

  int lanes_in(unsigned warp) const {
    const unsigned rest = block_.x - warp * 32;
    return static_cast<int>(rest < 32 ? rest : 32);
  }

  // AddressSanitizer is told of every switch between the scheduler's stack and a fiber's.
  void entered_fiber() {
#if SADDLE_SIMT_ASAN
    __sanitizer_finish_switch_fiber(fibers_[current_].fake_stack, &scheduler_bottom_,
                                    &scheduler_size_);
#endif
  }
  void leaving_fiber(bool exiting) {
#if SADDLE_SIMT_ASAN
    __sanitizer_start_switch_fiber(exiting ? nullptr : &fibers_[current_].fake_stack,
                                   scheduler_bottom_, scheduler_size_);
#else
    (void)exiting;
#endif
  }

  static void entry() {
    Machine& m = get();
    m.entered_fiber();
    (*m.body_)();
    m.fibers_[m.current_].state = kDone;
    m.leaving_fiber(true);
    // returning resumes uc_link: the scheduler
  }

  void wait(State state) {
    Fiber& f = fibers_[current_];
    f.state = state;
    leaving_fiber(false);
    if (swapcontext(&f.context, &scheduler_) != 0) fail("swapcontext failed", 0);
    entered_fiber();
  }

  void resume(unsigned t) {
    current_ = static_cast<int>(t);
#if SADDLE_SIMT_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, fibers_[t].stack.data(), fibers_[t].stack.size());
#endif
    if (swapcontext(&scheduler_, &fibers_[t].context) != 0) fail("swapcontext failed", t);
#if SADDLE_SIMT_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  }

  void run_block(unsigned b, unsigned threads) {
    block_index_.x = b;
    if (fibers_.size() < threads) fibers_.resize(threads);
    for (unsigned t = 0; t < threads; ++t) {
      Fiber& f = fibers_[t];
      if (f.stack.empty()) f.stack.resize(kStackBytes);
      f.thread.x = t;
      f.state = kReady;
      f.shuffles = 0;
      f.fake_stack = nullptr;
      if (getcontext(&f.context) != 0) fail("getcontext failed", t);
      f.context.uc_stack.ss_sp = f.stack.data();
      f.context.uc_stack.ss_size = f.stack.size();
      f.context.uc_link = &scheduler_;
      makecontext(&f.context, &Machine::entry, 0);
    }
    for (;;) {
      for (unsigned t = 0; t < threads; ++t) {
        if (fibers_[t].state != kReady) continue;
        resume(t);
      }
      // Every fiber now waits or is done: release the warps whose lanes all wait at a shuffle,
      // else the block once every live thread waits at the barrier.
      bool done = true, released = false;
      for (unsigned t = 0; t < threads; ++t) done = done && fibers_[t].state == kDone;
      if (done) break;
      const unsigned warps = (threads + 31) / 32;
      for (unsigned w = 0; w < warps; ++w) {
        bool all = true;
        for (unsigned t = w * 32; t < w * 32 + static_cast<unsigned>(lanes_in(w)); ++t) {
          all = all && fibers_[t].state == kAtShuffle;
        }
        if (!all) continue;
        for (unsigned t = w * 32; t < w * 32 + static_cast<unsigned>(lanes_in(w)); ++t) {
          fibers_[t].state = kReady;
        }
        released = true;
      }
      if (released) continue;
      bool all_at_barrier = true;
      for (unsigned t = 0; t < threads; ++t) {
        all_at_barrier =
            all_at_barrier && (fibers_[t].state == kAtBlockBarrier || fibers_[t].state == kDone);
      }
      // Else lanes of a warp wait at a shuffle that others of the warp never reach (a shuffle in
      // divergent code, or next to a barrier): a bug in the kernel.
      if (!all_at_barrier) fail("a warp's lanes wait at different points, in block", b);
      for (unsigned t = 0; t < threads; ++t) {
        if (fibers_[t].state == kAtBlockBarrier) fibers_[t].state = kReady;
      }
    }
  }

  Dim grid_, block_, block_index_;
  const std::function<void()>* body_ = nullptr;
  std::vector<Fiber> fibers_;
  int current_ = -1;
  ucontext_t scheduler_;
  const void* scheduler_bottom_ = nullptr;
  size_t scheduler_size_ = 0;
  uint64_t slots_[2][kMaxThreads / 32][32] = {};
};

// SADDLE_LAUNCH(grid, block, stream, kernel)(arguments), as codec_kernels.cu writes its launches.
template <typename Kernel>
struct Launch {
  unsigned grid, block;
  Kernel* kernel;
  template <typename... Args>
  void operator()(const Args&... args) const {
    Machine::get().run(grid, block, [&] { kernel(args...); });
  }
};
template <typename Kernel>
Launch<Kernel> launch(unsigned grid, unsigned block, Kernel* kernel) {
  return {grid, block, kernel};
}

}  // namespace saddle::simt

// CUDA C++'s keywords and built-ins, on the host.
#undef __device__
#undef __global__
#undef __host__
#undef __shared__
#undef __forceinline__
#undef __launch_bounds__
#define __device__
#define __global__
#define __host__
#define __shared__ static  // one instance for the block's fibers (blocks run one at a time)
#define __forceinline__ inline
#define __launch_bounds__(...)
#define SADDLE_LAUNCH(grid, block, stream, ...) ::saddle::simt::launch(grid, block, &__VA_ARGS__)

#define threadIdx (::saddle::simt::Machine::get().thread_index())
#define blockIdx (::saddle::simt::Machine::get().block_index())
#define blockDim (::saddle::simt::Machine::get().block_dim())
#define gridDim (::saddle::simt::Machine::get().grid_dim())

inline void __syncthreads() { ::saddle::simt::Machine::get().sync_block(); }
template <typename T>
T __shfl_sync(unsigned, T v, int source) {
  return ::saddle::simt::Machine::get().shuffle(v, [source](int) { return source; });
}
template <typename T>
T __shfl_down_sync(unsigned, T v, unsigned delta) {
  return ::saddle::simt::Machine::get().shuffle(
      v, [delta](int lane) { return lane + static_cast<int>(delta); });
}
template <typename T>
T __shfl_xor_sync(unsigned, T v, int mask) {
  return ::saddle::simt::Machine::get().shuffle(v, [mask](int lane) { return lane ^ mask; });
}
inline unsigned __reduce_or_sync(unsigned, unsigned v) {
  return ::saddle::simt::Machine::get().reduce_or(v);
}
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline float __uint_as_float(unsigned i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline double __longlong_as_double(long long i) {
  double d;
  std::memcpy(&d, &i, sizeof d);
  return d;
}
// Fibers share one OS thread and switch only at the points above: atomics are plain updates.
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  const unsigned long long old = *p;
  if (v < old) *p = v;
  return old;
}
inline unsigned atomicOr(unsigned* p, unsigned v) {
  const unsigned old = *p;
  *p |= v;
  return old;
}
inline double atomicAdd(double* p, double v) {
  const double old = *p;
  *p = old + v;
  return old;
}
inline int atomicOr(int* p, int v) {
  const int old = *p;
  *p |= v;
  return old;
}
