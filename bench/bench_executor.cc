// Executor overhead per node: a chain of 1000 tiny adds (y = y + x, x a fed
// 1-element f32 placeholder) run by a Session with every pass off, so each
// node is one kernel launch. Prints kernels executed per run (from RunStats;
// must be 1000), ns per node (min / median over batches) and, as the peer,
// the same 1000 adds dispatched eagerly in this process. Then peak bytes of
// one step of an elementwise-heavy graph with and without memory planning.
//
//   build/bench/bench_executor [--rounds 5]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <ndflow/ndflow.h>

#include "bench_util.h"
#include "runtime/session.h"

using namespace ndflow_bench;

namespace {

constexpr int kChain = 1000;

ndflow::Graph add_chain() {
  ndflow::Graph g;
  ndflow::GraphScope scope(g);
  ndflow::Tensor x = g.placeholder("x", {1});
  ndflow::Tensor y = x;
  for (int i = 0; i < kChain; ++i) y = ndflow::add(y, x);
  g.mark_output("y", y);
  return g;
}

// Runs the chain through a session; returns ns per node per batch.
std::vector<double> time_graph(ndflow::Session& sess, const ndflow::Tensor& x, int batches) {
  std::vector<std::pair<std::string, ndflow::Tensor>> feeds = {{"x", x}};
  std::vector<std::string> fetches = {"y"};
  auto once = [&] { sess.run(feeds, fetches); };
  int64_t calls = calibrate(once, 0.05);
  std::vector<double> per_run = time_batches(once, calls, batches);
  for (double& v : per_run) v = v * 1e9 / kChain;
  return per_run;
}

std::vector<double> time_eager(const ndflow::Tensor& x, int batches) {
  ndflow::NoGradGuard no_grad;
  auto once = [&] {
    ndflow::Tensor y = x;
    for (int i = 0; i < kChain; ++i) y = ndflow::add(y, x);
  };
  int64_t calls = calibrate(once, 0.05);
  std::vector<double> per_run = time_batches(once, calls, batches);
  for (double& v : per_run) v = v * 1e9 / kChain;
  return per_run;
}

// A [512, 512] f32 elementwise chain and a small matmul tail, passes off
// except memory planning: peak bytes of one step.
size_t peak_bytes(bool planning) {
  ndflow::Generator gen(3);
  ndflow::Tensor w = ndflow::randn({512, 32}, ndflow::DType::f32, &gen);
  ndflow::Graph g;
  {
    ndflow::GraphScope scope(g);
    ndflow::Tensor x = g.placeholder("x", {-1, 512});
    ndflow::Tensor h = x;
    for (int i = 0; i < 8; ++i) h = ndflow::tanh(ndflow::exp(h) * 0.5);
    g.mark_output("y", ndflow::matmul(h, w));
  }
  ndflow::SessionOptions o;
  o.passes = ndflow::PassOptions::none();
  o.passes.prune = true;
  o.passes.memory_planning = planning;
  ndflow::Session sess(g, o);
  ndflow::Tensor x = ndflow::randn({512, 512}, ndflow::DType::f32, &gen);
  sess.run({{"x", x}}, {"y"});  // first run builds the plan
  sess.run({{"x", x}}, {"y"});
  return sess.last_run_stats().peak_bytes;
}

}  // namespace

int main(int argc, char** argv) {
  init_bench_process();
  int rounds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--rounds")) rounds = std::max(1, std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: %s [--rounds 5]\n", argv[0]);
      return 2;
    }
  }
  ndflow::Tensor x = ndflow::tensor(std::vector<float>{0.5f}, {1});
  ndflow::Graph g = add_chain();
  std::printf("== executor: ns per node, a chain of %d adds on a fed f32[1]; passes off;\n"
              "   peer: the same adds dispatched eagerly; %d rounds alternated, min and median\n",
              kChain, rounds);
  std::printf("   %-22s | %10s %10s | %10s %10s | %s\n", "config", "graph min", "median", "eager min",
              "median", "graph/eager (min)");
  for (bool planning : {false, true}) {
    ndflow::SessionOptions o;
    o.passes = ndflow::PassOptions::none();
    o.passes.memory_planning = planning;
    o.inter_op_threads = 1;
    ndflow::Session sess(g, o);
    std::vector<ndflow::Tensor> out = sess.run({{"x", x}}, {"y"});
    int64_t kernels = sess.last_run_stats().kernels_executed;
    float want = 0.5f * (kChain + 1);
    if (kernels != kChain || std::abs(out[0].item<float>() - want) > 1e-3f) {
      std::printf("   wrong: %lld kernels (want %d), y = %g (want %g)\n", static_cast<long long>(kernels), kChain,
                  out[0].item<double>(), static_cast<double>(want));
      return 1;
    }
    std::vector<double> gs, es;
    for (int r = 0; r < rounds; ++r) {
      auto a = time_graph(sess, x, 3);
      auto b = time_eager(x, 3);
      gs.insert(gs.end(), a.begin(), a.end());
      es.insert(es.end(), b.begin(), b.end());
    }
    Stats sg = stats(gs), se = stats(es);
    std::string config = planning ? "passes off + planning" : "passes off";
    std::printf("   %-22s | %10.1f %10.1f | %10.1f %10.1f | %.2f   (kernels executed: %lld)\n", config.c_str(),
                sg.min, sg.median, se.min, se.median, sg.min / se.min, static_cast<long long>(kernels));
    summary("executor ns/node", config, fmt("%.1f", sg.min), fmt("%.1f eager", se.min), fmt("%.2f", sg.min / se.min));
  }
  size_t without = peak_bytes(false), with = peak_bytes(true);
  std::printf("\n== peak bytes of one step, [512,512] f32 elementwise chain of 16 ops + matmul\n"
              "   without memory planning: %zu\n   with memory planning:    %zu  (%.2fx)\n",
              without, with, static_cast<double>(without) / static_cast<double>(with));
  summary("executor peak bytes", "planning off/on", fmt("%zu", with), fmt("%zu (off)", without),
          fmt("%.2f", static_cast<double>(with) / static_cast<double>(without)));
  return 0;
}
