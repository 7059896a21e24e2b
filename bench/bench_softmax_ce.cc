// softmax + cross-entropy, forward and backward, at batch 128 x 10 classes:
// ns per training-style call (loss = cross_entropy(logits, labels);
// loss.backward(); logits.zero_grad()) against the same in libtorch's C++ API
// (bench/peer/torch_dispatch.cc, built by tools/bench.sh), or, without that
// program, in PyTorch from Python (said so in the output).
//
//   build/bench/bench_softmax_ce [--threads 1,2] [--rounds 5]
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

constexpr int64_t kBatch = 128, kClasses = 10;

// The mean cross-entropy and its gradient (softmax - onehot) / N, in double,
// against ndflow's, so that a wrong kernel is not benchmarked.
bool ce_is_right(ndflow::Tensor& logits, const ndflow::Tensor& labels) {
  ndflow::Tensor loss = ndflow::cross_entropy(logits, labels);
  loss.backward();
  auto x = logits.detach().to_vector<float>();
  auto y = labels.to_vector<int64_t>();
  auto g = logits.grad().to_vector<float>();
  logits.zero_grad();
  double ref = 0;
  bool ok = g.size() == x.size();
  for (int64_t i = 0; i < kBatch && ok; ++i) {
    const float* row = &x[i * kClasses];
    double mx = row[0], z = 0;
    for (int64_t j = 1; j < kClasses; ++j) mx = std::max(mx, double(row[j]));
    for (int64_t j = 0; j < kClasses; ++j) z += std::exp(row[j] - mx);
    ref += (std::log(z) + mx - row[y[i]]) / kBatch;
    for (int64_t j = 0; j < kClasses; ++j) {
      double want = (std::exp(row[j] - mx) / z - (j == y[i] ? 1.0 : 0.0)) / kBatch;
      if (std::fabs(g[i * kClasses + j] - want) > 1e-5) ok = false;
    }
  }
  if (!ok || std::fabs(loss.item<double>() - ref) > 1e-4 * (1 + std::fabs(ref))) {
    std::printf("   ndflow::cross_entropy: loss %.6f (expected %.6f) or its gradient is wrong"
                " -- not benchmarking\n", loss.item<double>(), ref);
    return false;
  }
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
  std::printf("== softmax + cross_entropy (mean), logits [%lld, %lld] f32 requiring grad, i64 labels:\n"
              "   forward + backward + zero grad, ns per call; %d rounds x %d batches per side,\n"
              "   ndflow and the peer alternated; min and median over batches\n",
              (long long)kBatch, (long long)kClasses, rounds, samples);
  PeerCheck check = check_torch_peer();

  for (int t : thread_counts) {
    ndflow::set_num_threads(t);
    Peer peer;
    bool cpp = check.installed && start_libtorch_peer(peer, t);
    bool py = false;
    if (!cpp && check.installed) {
      py = start_python_peer(peer, t);
      if (py)
        std::printf("peer: FALLBACK -- PyTorch timed from Python (includes Python's overhead of\n"
                    "      ~3 calls per iteration; C++ vs C++ needs tools/bench.sh to build bench/peer)\n");
    }
    const std::string peer_name = cpp ? "libtorch" : "torch(python)";

    ndflow::Generator gen(0);
    ndflow::Tensor logits = ndflow::randn({kBatch, kClasses}, ndflow::DType::f32, &gen);
    logits.set_requires_grad();
    ndflow::Tensor labels = ndflow::randint(0, kClasses, {kBatch}, ndflow::DType::i64, &gen);
    if (!ce_is_right(logits, labels)) continue;
    auto fn = [&] {
      ndflow::Tensor loss = ndflow::cross_entropy(logits, labels);
      loss.backward();
      logits.zero_grad();
    };
    for (int i = 0; i < 200; ++i) fn();  // warm-up
    int64_t calls = calibrate(fn, 0.03);
    AB ab = alternate(fn, calls, samples, rounds, (cpp || py) ? &peer : nullptr, {"softmax_ce"});

    Stats so = stats(ab.ours);
    std::printf("\n-- %d thread%s\n", t, t == 1 ? "" : "s");
    std::printf("   ndflow         min %9.0f ns   median %9.0f ns\n", so.min * 1e9, so.median * 1e9);
    double pmin = 0;
    std::string ratio = "-";
    if (ab.peer_ok()) {
      Stats sp = stats(ab.theirs[0]);
      pmin = sp.min;
      std::printf("   %-14s min %9.0f ns   median %9.0f ns\n", peer_name.c_str(), sp.min * 1e9,
                  sp.median * 1e9);
      if (check.trusted()) {
        ratio = fmt("%.2fx time", so.min / sp.min);
        std::printf("   ndflow/peer time: %.2fx (min)  %.2fx (median)\n", so.min / sp.min,
                    so.median / sp.median);
      } else {
        std::printf("   (peer misconfigured: no ratio)\n");
        ratio = "no ratio (peer)";
      }
    } else if (!ab.peer_error.empty()) {
      std::printf("   peer failed: %s\n", ab.peer_error.c_str());
    }
    summary("softmax+CE fwd+bwd 128x10", fmt("%dt", t), fmt("%.0f ns", so.min * 1e9),
            pmin > 0 ? fmt("%s %.0f ns", peer_name.c_str(), pmin * 1e9) : "-", ratio);
  }
  return 0;
}
