// Header-only measurement of this machine's fp32 FMA peak, shared by
// bench/peak_fma.cc and the benchmarks that report "% of peak".
//
//   double gf = ndflow_bench::measure_fma_peak(/*threads=*/2);   // GFLOP/s
//   auto basis = ndflow_bench::peak_basis(gf, 2);  // what "% of peak" divides by
//
// Each thread runs kChains independent FMA accumulator chains (AVX-512 when the
// CPU has it, else AVX2+FMA) in a hot loop; the best of several repeats counts.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace ndflow_bench {

// BENCHMARKING.md: 117 GFLOP/s per core, 233 GFLOP/s on 2 cores (Zen 4 VM).
inline constexpr double kReferencePeak2Cores = 233.0;
inline double reference_peak(int threads) { return kReferencePeak2Cores / 2.0 * threads; }

// NOTE: the chains must outnumber FMA latency × FMA ports (4 × 2 on Zen 4/5),
// or the loop measures latency instead of throughput; 16 leaves margin.
inline constexpr int kChains = 16;

// Returns a value derived from every accumulator so the loop cannot be
// removed. Each iteration performs kChains FMAs on 16 floats (2 flops each).
__attribute__((target("avx512f"), noinline)) inline float fma_loop_avx512(int64_t iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(0.5f + 0.01f * i);
  // acc = acc * a + b converges to b / (1 - a) = 1: no overflow, no denormals.
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  float r = 0;
  for (float v : out) r += v;
  return r;
}

// Same with 8-float AVX2 registers. NOTE: 16 accumulators fill all 16 ymm
// registers, so each chain squares itself (acc = acc * acc + b, converging to
// 0.25) with b a memory operand. Written in assembly: from intrinsics the
// compiler hoists b into a register and spills accumulators in the loop.
__attribute__((target("avx2,fma"), noinline)) inline float fma_loop_avx2(int64_t iters) {
  static_assert(kChains == 16, "the assembly below names 16 accumulators");
  alignas(32) float acc[kChains * 8];
  for (int i = 0; i < kChains * 8; ++i) acc[i] = 0.2f + 0.01f * static_cast<float>(i / 8);
  alignas(32) static const float b_mem[8] = {0.1875f, 0.1875f, 0.1875f, 0.1875f,
                                             0.1875f, 0.1875f, 0.1875f, 0.1875f};
  if (iters <= 0) return 0;
  asm volatile(
      "vmovups 0(%[acc]), %%ymm0\n\t"
      "vmovups 32(%[acc]), %%ymm1\n\t"
      "vmovups 64(%[acc]), %%ymm2\n\t"
      "vmovups 96(%[acc]), %%ymm3\n\t"
      "vmovups 128(%[acc]), %%ymm4\n\t"
      "vmovups 160(%[acc]), %%ymm5\n\t"
      "vmovups 192(%[acc]), %%ymm6\n\t"
      "vmovups 224(%[acc]), %%ymm7\n\t"
      "vmovups 256(%[acc]), %%ymm8\n\t"
      "vmovups 288(%[acc]), %%ymm9\n\t"
      "vmovups 320(%[acc]), %%ymm10\n\t"
      "vmovups 352(%[acc]), %%ymm11\n\t"
      "vmovups 384(%[acc]), %%ymm12\n\t"
      "vmovups 416(%[acc]), %%ymm13\n\t"
      "vmovups 448(%[acc]), %%ymm14\n\t"
      "vmovups 480(%[acc]), %%ymm15\n\t"
      "1:\n\t"
      "vfmadd213ps %[b], %%ymm0, %%ymm0\n\t"
      "vfmadd213ps %[b], %%ymm1, %%ymm1\n\t"
      "vfmadd213ps %[b], %%ymm2, %%ymm2\n\t"
      "vfmadd213ps %[b], %%ymm3, %%ymm3\n\t"
      "vfmadd213ps %[b], %%ymm4, %%ymm4\n\t"
      "vfmadd213ps %[b], %%ymm5, %%ymm5\n\t"
      "vfmadd213ps %[b], %%ymm6, %%ymm6\n\t"
      "vfmadd213ps %[b], %%ymm7, %%ymm7\n\t"
      "vfmadd213ps %[b], %%ymm8, %%ymm8\n\t"
      "vfmadd213ps %[b], %%ymm9, %%ymm9\n\t"
      "vfmadd213ps %[b], %%ymm10, %%ymm10\n\t"
      "vfmadd213ps %[b], %%ymm11, %%ymm11\n\t"
      "vfmadd213ps %[b], %%ymm12, %%ymm12\n\t"
      "vfmadd213ps %[b], %%ymm13, %%ymm13\n\t"
      "vfmadd213ps %[b], %%ymm14, %%ymm14\n\t"
      "vfmadd213ps %[b], %%ymm15, %%ymm15\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vmovups %%ymm0, 0(%[acc])\n\t"
      "vmovups %%ymm1, 32(%[acc])\n\t"
      "vmovups %%ymm2, 64(%[acc])\n\t"
      "vmovups %%ymm3, 96(%[acc])\n\t"
      "vmovups %%ymm4, 128(%[acc])\n\t"
      "vmovups %%ymm5, 160(%[acc])\n\t"
      "vmovups %%ymm6, 192(%[acc])\n\t"
      "vmovups %%ymm7, 224(%[acc])\n\t"
      "vmovups %%ymm8, 256(%[acc])\n\t"
      "vmovups %%ymm9, 288(%[acc])\n\t"
      "vmovups %%ymm10, 320(%[acc])\n\t"
      "vmovups %%ymm11, 352(%[acc])\n\t"
      "vmovups %%ymm12, 384(%[acc])\n\t"
      "vmovups %%ymm13, 416(%[acc])\n\t"
      "vmovups %%ymm14, 448(%[acc])\n\t"
      "vmovups %%ymm15, 480(%[acc])\n\t"
      : [n] "+r"(iters)
      : [acc] "r"(acc), [b] "m"(*reinterpret_cast<const float(*)[8]>(b_mem))
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
  float r = 0;
  for (float v : acc) r += v;
  return r;
}

inline bool have_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}
inline const char* fma_isa_name() { return have_avx512() ? "AVX-512 (zmm)" : "AVX2 (ymm)"; }

// fp32 GFLOP/s of `threads` threads each running the FMA loop for about
// `seconds`; the best of `repeats` runs. Threads start together on a flag and
// the slowest thread's time counts, so the figure is sustained, not summed.
inline double measure_fma_peak(int threads, int repeats = 15, double seconds = 0.05) {
  const bool avx512 = have_avx512();
  const int lanes = avx512 ? 16 : 8;
  const double flops_per_iter = 2.0 * lanes * kChains;
  auto run = [avx512](int64_t iters) { return avx512 ? fma_loop_avx512(iters) : fma_loop_avx2(iters); };

  // Calibrate on one thread: grow until a run takes >= 10 ms. Short runs, many
  // of them: on a shared VM the best short window is the uncontended one.
  int64_t iters = 1 << 16;
  volatile float sink = 0;
  for (;;) {
    auto t0 = std::chrono::steady_clock::now();
    sink = sink + run(iters);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt >= 0.01) {
      iters = std::max<int64_t>(1, static_cast<int64_t>(iters * seconds / dt));
      break;
    }
    iters *= 2;
  }

  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<double> secs(threads, 0.0);
    std::vector<float> out(threads, 0.0f);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) {}
        auto t0 = std::chrono::steady_clock::now();
        out[t] = run(iters);
        secs[t] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      });
    }
    while (ready.load() < threads) {}
    go.store(true, std::memory_order_release);
    for (auto& th : pool) th.join();
    double slowest = *std::max_element(secs.begin(), secs.end());
    for (float v : out) sink = sink + v;
    best = std::max(best, flops_per_iter * static_cast<double>(iters) * threads / slowest / 1e9);
  }
  return best;
}

// What "% of peak" divides by: the measured peak, unless it is below 90% of
// the reference (a contended or throttled run), then the reference.
struct PeakBasis {
  double gflops;     // the divisor
  bool reference;    // true when the reference was used
  std::string label() const { return reference ? "reference" : "measured"; }
};
inline PeakBasis peak_basis(double measured, int threads) {
  double ref = reference_peak(threads);
  if (measured < 0.9 * ref) return {ref, true};
  return {measured, false};
}

}  // namespace ndflow_bench
