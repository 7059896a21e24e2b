// Measures this machine's fp32 FMA peak on 1 and 2 threads (bench/peak.h) and
// prints it beside the reference figure of BENCHMARKING.md.
//
//   build/bench/peak_fma [repeats]
#include <cstdio>
#include <cstdlib>

#include "bench_util.h"
#include "peak.h"

int main(int argc, char** argv) {
  using namespace ndflow_bench;
  const int repeats = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
  std::printf("== fp32 FMA peak: %d independent %s FMA chains per thread, best of %d runs\n",
              kChains, fma_isa_name(), repeats);
  bool below = false;
  for (int threads : {1, 2}) {
    double gf = measure_fma_peak(threads, repeats);
    double ref = reference_peak(threads);
    std::printf("  %d thread%s: %7.1f GFLOP/s   reference %6.1f GFLOP/s   (%.0f%% of reference)\n",
                threads, threads == 1 ? " " : "s", gf, ref, 100.0 * gf / ref);
    summary("peak fp32 FMA", std::to_string(threads) + "t", fmt("%.1f GFLOP/s", gf),
            fmt("reference %.1f", ref), fmt("%.2fx ref", gf / ref));
    if (gf < 0.9 * ref) below = true;
  }
  if (below)
    std::printf("  measured peak is below 90%% of the reference (contended or throttled run):\n"
                "  benchmarks compute %% of peak against the reference figure.\n");
  else
    std::printf("  benchmarks compute %% of peak against the measured figure.\n");
  return 0;
}
