// Measures this machine's fp32 FMA peak on 1 and 2 threads (bench/peak.h) and
// prints it beside the reference figure of BENCHMARKING.md. Other benchmarks
// compute "% of peak" against the measured figure, or against the reference
// when the measurement falls below 90% of it (peak_basis in bench/peak.h).
//
//   build/bench/peak_fma [repeats]
#include <cstdio>
#include <cstdlib>

#include "bench_util.h"
#include "peak.h"

int main(int argc, char** argv) {
  using namespace ndflow_bench;
  init_bench_process();
  const int repeats = argc > 1 ? std::max(1, std::atoi(argv[1])) : 15;
  std::printf("== fp32 FMA peak: %d independent %s FMA chains per thread, best of %d runs\n",
              kChains, fma_isa_name(), repeats);
  double per_core = 0;
  for (int threads : {1, 2}) {
    double gf = measure_fma_peak(threads, repeats);
    if (threads == 1) per_core = gf;
    double ref = reference_peak(threads);
    std::printf("  %d thread%s: %7.1f GFLOP/s   reference %6.1f GFLOP/s   (%.0f%% of reference)\n",
                threads, threads == 1 ? " " : "s", gf, ref, 100.0 * gf / ref);
    summary("peak fp32 FMA", std::to_string(threads) + "t", fmt("%.1f GFLOP/s", gf),
            fmt("reference %.1f", ref), fmt("%.2fx ref", gf / ref));
    if (peak_basis(gf, threads).reference)
      std::printf("  below 90%% of the reference (a contended or throttled run): %% of peak on %d\n"
                  "  thread%s will be computed against the reference figure.\n",
                  threads, threads == 1 ? "" : "s");
    if (threads > 1 && gf < 0.8 * threads * per_core)
      std::printf("  NOTE: %d threads reach only %.2fx the 1-thread figure: the other core was busy\n"
                  "  (neighbours on this shared VM); rerun when it is quiet.\n", threads, gf / per_core);
  }
  return 0;
}
