// The libtorch (C++) peer of bench/bench_dispatch.cc and bench/bench_softmax_ce.cc.
// Built by tools/bench.sh as its own project (bench/peer/CMakeLists.txt) and
// driven over stdin/stdout with the protocol of bench/bench_util.h:
//   hello torch=<version> threads=<n> impl=libtorch
//   add <n> <calls> <samples>     torch::add of two f32 tensors ([1] for n=1,
//                                 else [n, n]) under NoGradGuard
//   softmax_ce <calls> <samples>  cross_entropy(logits[128,10], labels[128])
//                                 forward + backward, then grad reset to undefined
//   quit
// Each command answers "result s1 s2 ..." with seconds per call per sample.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::vector<double> timed(const std::function<void()>& fn, long calls, int samples) {
  std::vector<double> out;
  for (int s = 0; s < samples; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < calls; ++i) fn();
    out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                  static_cast<double>(calls));
  }
  return out;
}

}  // namespace

int main() {
  int threads = 1;
  if (const char* t = std::getenv("NDFLOW_PEER_THREADS")) threads = std::max(1, std::atoi(t));
  at::set_num_threads(threads);
  std::printf("hello torch=%d.%d.%d threads=%d impl=libtorch\n", TORCH_VERSION_MAJOR,
              TORCH_VERSION_MINOR, TORCH_VERSION_PATCH, at::get_num_threads());
  std::fflush(stdout);

  std::set<std::string> warm;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream ss(line);
    std::string cmd;
    if (!(ss >> cmd)) continue;
    if (cmd == "quit") break;
    std::vector<long> args;
    long v;
    while (ss >> v) args.push_back(v);
    std::vector<double> out;
    try {
      std::function<void()> fn;
      torch::Tensor a, b, logits, labels;
      bool grad = true;
      if (cmd == "add" && args.size() == 3) {
        long n = args[0];
        std::vector<int64_t> shape = n == 1 ? std::vector<int64_t>{1} : std::vector<int64_t>{n, n};
        a = torch::randn(shape);
        b = torch::randn(shape);
        grad = false;
        fn = [&] { torch::add(a, b); };
      } else if (cmd == "softmax_ce" && args.size() == 2) {
        torch::manual_seed(0);
        logits = torch::randn({128, 10}).requires_grad_(true);
        labels = torch::randint(0, 10, {128}, torch::kLong);
        fn = [&] {
          torch::nn::functional::cross_entropy(logits, labels).backward();
          logits.mutable_grad().reset();  // like `logits.grad = None`
        };
      } else {
        throw std::runtime_error("unknown command or wrong arguments: " + line);
      }
      long calls = args[args.size() - 2];
      int samples = static_cast<int>(args.back());
      torch::AutoGradMode mode(grad);
      std::string key = cmd + (cmd == "add" ? std::to_string(args[0]) : "");
      if (!warm.count(key)) {  // first calls: allocator, dispatcher caches
        for (int i = 0; i < 200; ++i) fn();
        warm.insert(key);
      }
      out = timed(fn, calls, samples);
    } catch (const std::exception& e) {
      std::string msg = e.what();
      for (char& c : msg)
        if (c == '\n') c = ' ';
      std::printf("error %s\n", msg.c_str());
      std::fflush(stdout);
      continue;
    }
    std::printf("result");
    for (double s : out) std::printf(" %.9g", s);
    std::printf("\n");
    std::fflush(stdout);
  }
  return 0;
}
