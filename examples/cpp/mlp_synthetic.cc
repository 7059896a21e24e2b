// Trains a two-layer MLP with hand-rolled SGD on a synthetic 3-class problem
// (three noisy interleaved spirals), using only the public C++ API:
//
//   mlp_synthetic [--steps N] [--lr X] [--hidden H] [--seed S] [--quiet]
//
// It prints the loss as it falls and the final training accuracy, and exits
// with status 1 if training did not reduce the loss (so scripts can check it).
#include <ndflow/ndflow.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

using namespace ndflow;

namespace {

struct Options {
  int steps = 500;
  double lr = 0.5;
  int hidden = 64;
  uint64_t seed = 0;
  bool quiet = false;
};

void usage() {
  std::puts(
      "usage: mlp_synthetic [--steps N] [--lr X] [--hidden H] [--seed S] [--quiet]\n"
      "Trains a 2-layer MLP (2 -> H -> 3) with SGD on three noisy spirals and\n"
      "prints the loss and accuracy. Exit status 1 if the loss did not fall.");
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "mlp_synthetic: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    try {
      if (a == "--steps") o.steps = std::stoi(value());
      else if (a == "--lr") o.lr = std::stod(value());
      else if (a == "--hidden") o.hidden = std::stoi(value());
      else if (a == "--seed") o.seed = std::stoull(value());
      else if (a == "--quiet") o.quiet = true;
      else if (a == "-h" || a == "--help") { usage(); std::exit(0); }
      else { std::fprintf(stderr, "mlp_synthetic: unknown option %s\n", a.c_str()); usage(); std::exit(2); }
    } catch (const std::logic_error&) {
      std::fprintf(stderr, "mlp_synthetic: bad value for %s\n", a.c_str());
      std::exit(2);
    }
  }
  if (o.steps < 1 || o.hidden < 1 || !(o.lr > 0)) {
    std::fprintf(stderr, "mlp_synthetic: --steps and --hidden must be >= 1 and --lr > 0\n");
    std::exit(2);
  }
  return o;
}

// Three spirals of `per_class` points each, with Gaussian noise.
void make_spirals(int per_class, Tensor& x, Tensor& y) {
  const int classes = 3;
  std::vector<float> xs;
  std::vector<int64_t> ys;
  Tensor noise = normal({classes * per_class, 2}, 0.0, 0.15);
  auto nv = noise.to_vector<float>();
  for (int c = 0; c < classes; ++c)
    for (int i = 0; i < per_class; ++i) {
      float r = static_cast<float>(i) / per_class;
      float t = 4.0f * c + 4.0f * r;
      int k = c * per_class + i;
      xs.push_back(r * std::sin(t) + nv[2 * k]);
      xs.push_back(r * std::cos(t) + nv[2 * k + 1]);
      ys.push_back(c);
    }
  x = tensor(xs, {classes * per_class, 2});
  y = tensor(ys, {classes * per_class});
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse(argc, argv);
  try {
    manual_seed(opt.seed);
    Tensor x, y;
    make_spirals(300, x, y);

    // He-style initialization.
    Tensor w1 = (randn({2, opt.hidden}) * std::sqrt(2.0 / 2)).set_requires_grad();
    Tensor b1 = zeros({opt.hidden}).set_requires_grad();
    Tensor w2 = (randn({opt.hidden, 3}) * std::sqrt(2.0 / opt.hidden)).set_requires_grad();
    Tensor b2 = zeros({3}).set_requires_grad();
    std::vector<Tensor> params = {w1, b1, w2, b2};

    auto forward = [&](const Tensor& in) { return matmul(relu(matmul(in, w1) + b1), w2) + b2; };

    double first = 0, last = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (int step = 1; step <= opt.steps; ++step) {
      Tensor loss = cross_entropy(forward(x), y);
      loss.backward();
      {
        NoGradGuard no_grad;  // the update itself is not part of the model
        for (Tensor& p : params) {
          p.sub_(p.grad() * opt.lr);
          p.zero_grad();
        }
      }
      last = loss.item<double>();
      if (step == 1) first = last;
      if (!opt.quiet && (step == 1 || step % std::max(1, opt.steps / 10) == 0))
        std::printf("step %5d  loss %.4f\n", step, last);
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    NoGradGuard no_grad;
    Tensor pred = argmax(forward(x), 1);
    double acc = mean(eq(pred, y).to(DType::f32)).item<double>();
    std::printf("loss %.4f -> %.4f, training accuracy %.1f%%, %.0f steps/s\n", first, last,
                100 * acc, opt.steps / secs);
    if (!(last < first)) {
      std::fprintf(stderr, "mlp_synthetic: the loss did not fall (%.4f -> %.4f)\n", first, last);
      return 1;
    }
    return 0;
  } catch (const ndflow::Error& e) {
    std::fprintf(stderr, "mlp_synthetic: %s\n", e.what());
    return 1;
  }
}
