// Eager dispatch overhead: ns per call of ndflow::add on f32 tensors of 1
// element and of 64 x 64, no grad, against the same call through libtorch's C++
// dispatcher (bench/peer/torch_dispatch.cc, built by tools/bench.sh). Without
// that program the peer falls back to torch.add timed from Python minus the
// Python cost of calling a no-op C function (said so in the output).
//
//   build/bench/bench_dispatch [--threads 1,2] [--rounds 5]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <ndflow/ndflow.h>

#include "bench_util.h"

using namespace ndflow_bench;

namespace {

bool add_is_right(const ndflow::Tensor& a, const ndflow::Tensor& b, const ndflow::Tensor& c) {
  auto va = a.to_vector<float>(), vb = b.to_vector<float>(), vc = c.to_vector<float>();
  if (vc.size() != va.size()) return false;
  for (size_t i = 0; i < va.size(); ++i)
    if (std::fabs(vc[i] - (va[i] + vb[i])) > 1e-6f * (1 + std::fabs(va[i] + vb[i]))) return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  init_bench_process();
  std::vector<int> thread_counts = {1, 2};
  int rounds = 5;
  const int samples = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) thread_counts = parse_int_list(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rounds")) rounds = std::max(1, std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: %s [--threads 1,2] [--rounds 5]\n", argv[0]);
      return 2;
    }
  }
  std::printf("== eager dispatch: ns per call of add(a, b), f32, no grad; %d rounds x %d batches\n"
              "   per side, ndflow and the peer alternated; min and median over batches\n",
              rounds, samples);
  PeerCheck check = check_torch_peer();

  for (int t : thread_counts) {
    ndflow::set_num_threads(t);
    Peer peer;
    bool cpp = check.installed && start_libtorch_peer(peer, t);
    bool py = false;
    if (!cpp && check.installed) {
      py = start_python_peer(peer, t);
      if (py)
        std::printf("peer: FALLBACK -- torch.add timed from Python minus the Python cost of a\n"
                    "      two-argument no-op C call (operator.is_): an estimate of C++ dispatch\n");
    }
    const std::string peer_name = cpp ? "libtorch" : "torch(py-noop)";
    std::printf("\n-- %d thread%s\n", t, t == 1 ? "" : "s");
    std::printf("   %-12s | %-21s | %-21s | %s\n", "", "ndflow ns/call", peer_name.c_str(),
                "ndflow/peer time");
    std::printf("   %-12s | %10s %10s | %10s %10s | %s\n", "shape", "min", "median", "min", "median",
                "min / median");

    for (int n : {1, 64}) {
      ndflow::Generator gen(7);
      ndflow::Shape shape = n == 1 ? ndflow::Shape{1} : ndflow::Shape{n, n};
      ndflow::Tensor a = ndflow::randn(shape, ndflow::DType::f32, &gen);
      ndflow::Tensor b = ndflow::randn(shape, ndflow::DType::f32, &gen);
      ndflow::NoGradGuard no_grad;
      ndflow::Tensor c = ndflow::add(a, b);
      if (!add_is_right(a, b, c)) {
        std::printf("   ndflow::add gives wrong values for shape %s -- not benchmarking\n",
                    n == 1 ? "[1]" : "[64,64]");
        continue;
      }
      auto fn = [&] { c = ndflow::add(a, b); };
      for (int i = 0; i < 1000; ++i) fn();  // warm-up: allocator caches, first-call paths
      int64_t calls = calibrate(fn, 0.02);

      std::vector<std::string> cmds;
      if (cpp) cmds = {fmt("add %d", n)};
      else if (py) cmds = {fmt("add %d", n), "noop"};
      AB ab = alternate(fn, calls, samples, rounds, (cpp || py) ? &peer : nullptr, cmds);
      Stats so = stats(ab.ours);
      const std::string label = n == 1 ? "[1]" : "[64,64]";
      std::string peer_s = "-", ratio_s = "-";
      double pmin = 0;
      if (ab.peer_ok()) {
        Stats sp = stats(ab.theirs[0]);
        if (py) {  // subtract Python's share of the call
          Stats sn = stats(ab.theirs[1]);
          sp.min -= sn.min;
          sp.median -= sn.median;
        }
        pmin = sp.min;
        peer_s = fmt("%10.0f %10.0f", sp.min * 1e9, sp.median * 1e9);
        ratio_s = check.trusted() ? fmt("%.2fx / %.2fx", so.min / sp.min, so.median / sp.median)
                                  : "(peer misconfigured: no ratio)";
      } else if (!ab.peer_error.empty()) {
        std::printf("   peer failed: %s\n", ab.peer_error.c_str());
      }
      std::printf("   %-12s | %10.0f %10.0f | %-21s | %s\n", label.c_str(), so.min * 1e9,
                  so.median * 1e9, peer_s.c_str(), ratio_s.c_str());
      summary("dispatch add f32 " + label, fmt("%dt", t), fmt("%.0f ns", so.min * 1e9),
              pmin > 0 ? fmt("%s %.0f ns", peer_name.c_str(), pmin * 1e9) : "-",
              pmin <= 0 ? "-" : check.trusted() ? fmt("%.2fx time", so.min / pmin) : "no ratio (peer)");
    }
  }
  return 0;
}
