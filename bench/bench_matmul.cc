// ndflow::matmul f32 GFLOP/s at n x n x n beside the machine's FMA peak and
// PyTorch's torch.matmul, on 1 and 2 threads. ndflow runs in this process, the
// peer in its own (bench/peer_torch.py), alternated round by round.
//
//   build/bench/bench_matmul [--sizes 256,1024,2048] [--threads 1,2] [--rounds 4]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <ndflow/ndflow.h>

#include "bench_util.h"
#include "peak.h"

using namespace ndflow_bench;

namespace {

// A few entries of c = a @ b against a float64 dot product, so that a broken
// kernel is not benchmarked as a fast one.
bool spot_check(const ndflow::Tensor& a, const ndflow::Tensor& b, const ndflow::Tensor& c) {
  const int64_t n = a.size(0);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  const float* pc = c.data<float>();
  for (int64_t probe = 0; probe < 8; ++probe) {
    int64_t i = (probe * 7919) % n, j = (probe * 104729 + 13) % n;
    double ref = 0, mag = 0;
    for (int64_t k = 0; k < n; ++k) {
      ref += double(pa[i * n + k]) * pb[k * n + j];
      mag += std::fabs(double(pa[i * n + k]) * pb[k * n + j]);
    }
    if (std::fabs(pc[i * n + j] - ref) > 1e-4 * mag + 1e-5) {
      std::printf("  ndflow::matmul n=%lld: c[%lld][%lld] = %g, expected %g -- not benchmarking\n",
                  (long long)n, (long long)i, (long long)j, pc[i * n + j], ref);
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  init_bench_process();
  std::vector<int> sizes = {256, 1024, 2048}, thread_counts = {1, 2};
  int rounds = 4;
  const int samples = 3;  // per side per round
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--sizes")) sizes = parse_int_list(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) thread_counts = parse_int_list(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rounds")) rounds = std::max(1, std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: %s [--sizes 256,1024,2048] [--threads 1,2] [--rounds 4]\n", argv[0]);
      return 2;
    }
  }

  std::printf("== matmul f32, C = A @ B, n x n x n (2n^3 flops); %d rounds x %d samples per side,\n"
              "   ndflow and PyTorch alternated; GFLOP/s from the min time (best) and the median\n",
              rounds, samples);
  PeerCheck peer = check_torch_peer();

  double per_core = 0;  // the 1-thread peak, once measured
  for (int t : thread_counts) {
    // The peak is re-measured next to the runs it scales (the machine is noisy).
    double measured = measure_fma_peak(t, 10, 0.05);
    if (t == 1) per_core = measured;
    PeakBasis basis = peak_basis(measured, t);
    std::printf("\n-- %d thread%s: FMA peak measured %.1f GFLOP/s, reference %.1f; %% of peak "
                "against the %s figure (%.1f)\n",
                t, t == 1 ? "" : "s", measured, reference_peak(t), basis.label().c_str(), basis.gflops);
    if (t > 1 && !basis.reference && per_core > 0 && measured < 0.8 * t * per_core)
      std::printf("   NOTE: only %.2fx the 1-thread peak on %d threads: the machine is busy; the\n"
                  "   %% of peak below is flattered (ndflow/torch ratios still compare like with like)\n",
                  measured / per_core, t);
    ndflow::set_num_threads(t);
    Peer torch;
    bool have_peer = peer.installed && start_python_peer(torch, t);
    std::printf("   %5s | %-22s | %-22s | %-14s | ndflow\n", "", "ndflow GFLOP/s", "torch GFLOP/s",
                "ndflow/torch");
    std::printf("   %5s | %7s %7s %6s | %7s %7s %6s | %-14s | cores busy\n", "n", "best", "median",
                "%peak", "best", "median", "%peak", "speed best/med");
    for (int n : sizes) {
      ndflow::Generator gen(42);
      ndflow::Tensor a = ndflow::randn({int64_t(n), int64_t(n)}, ndflow::DType::f32, &gen);
      ndflow::Tensor b = ndflow::randn({int64_t(n), int64_t(n)}, ndflow::DType::f32, &gen);
      ndflow::Tensor c = ndflow::matmul(a, b);  // warm-up: allocation, primitive creation
      if (!spot_check(a, b, c)) continue;
      auto run = [&] { c = ndflow::matmul(a, b); };
      run();
      int64_t calls = calibrate(run, 0.05);
      const double flops = 2.0 * n * n * n;

      AB ab = alternate(run, calls, samples, rounds, have_peer ? &torch : nullptr,
                        {fmt("matmul %d", n)});
      if (!ab.peer_error.empty()) std::printf("   peer failed: %s\n", ab.peer_error.c_str());
      const std::vector<double>& theirs = ab.theirs[0];
      Stats so = stats(ab.ours);
      double gf_best = flops / so.min / 1e9, gf_med = flops / so.median / 1e9;
      std::string ours_s = fmt("%7.1f %7.1f %5.0f%%", gf_best, gf_med, 100 * gf_best / basis.gflops);
      std::string theirs_s = "-", ratio_s = "-";
      double tg_best = 0, tg_med = 0;
      if (!theirs.empty()) {
        Stats st = stats(theirs);
        tg_best = flops / st.min / 1e9;
        tg_med = flops / st.median / 1e9;
        theirs_s = fmt("%7.1f %7.1f %5.0f%%", tg_best, tg_med, 100 * tg_best / basis.gflops);
        ratio_s = peer.trusted() ? fmt("%.2fx / %.2fx", gf_best / tg_best, gf_med / tg_med)
                                 : "(peer misconfigured)";
      }
      std::printf("   %5d | %-22s | %-22s | %-14s | %.1f\n", n, ours_s.c_str(), theirs_s.c_str(),
                  ratio_s.c_str(), ab.ours_cpu_s / ab.ours_wall_s);
      summary("matmul f32", fmt("n=%d %dt", n, t),
              fmt("%.1f GFLOP/s (%.0f%% of %s peak)", gf_best, 100 * gf_best / basis.gflops,
                  basis.reference ? "ref" : "meas"),
              theirs.empty() ? "-" : fmt("torch %.1f GFLOP/s", tg_best),
              ratio_s == "-" ? "-" : (peer.trusted() ? fmt("%.2fx speed", gf_best / tg_best) : "no ratio"));
    }
  }
  return 0;
}
