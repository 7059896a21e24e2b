// The C++ optimizers (nn/optim.h): each against a hand-written reference of
// torch.optim's update rule, and their state: slots, parameter groups, state
// dicts and errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>

#include "nn_test_util.h"
#include "op_samples.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

// Hand-written torch.optim updates on plain doubles (one parameter vector).
struct RefState {
  std::vector<double> p, buf, sum, sq, gavg, m, v, vmax;
  int64_t step = 0;
};

using RefUpdate = std::function<void(RefState&, std::vector<double>, double)>;

RefUpdate ref_sgd(double momentum, double dampening, bool nesterov, double wd) {
  return [=](RefState& s, std::vector<double> g, double lr) {
    for (size_t i = 0; i < g.size(); ++i) {
      g[i] += wd * s.p[i];
      if (momentum != 0) {
        s.buf[i] = s.step == 0 ? g[i] : momentum * s.buf[i] + (1 - dampening) * g[i];
        g[i] = nesterov ? g[i] + momentum * s.buf[i] : s.buf[i];
      }
      s.p[i] -= lr * g[i];
    }
    ++s.step;
  };
}

RefUpdate ref_adagrad(double lr_decay, double wd, double eps) {
  return [=](RefState& s, std::vector<double> g, double lr) {
    ++s.step;
    double clr = lr / (1 + static_cast<double>(s.step - 1) * lr_decay);
    for (size_t i = 0; i < g.size(); ++i) {
      g[i] += wd * s.p[i];
      s.sum[i] += g[i] * g[i];
      s.p[i] -= clr * g[i] / (std::sqrt(s.sum[i]) + eps);
    }
  };
}

RefUpdate ref_rmsprop(double alpha, double eps, double wd, double momentum, bool centered) {
  return [=](RefState& s, std::vector<double> g, double lr) {
    for (size_t i = 0; i < g.size(); ++i) {
      g[i] += wd * s.p[i];
      s.sq[i] = alpha * s.sq[i] + (1 - alpha) * g[i] * g[i];
      double avg;
      if (centered) {
        s.gavg[i] = alpha * s.gavg[i] + (1 - alpha) * g[i];
        avg = std::sqrt(s.sq[i] - s.gavg[i] * s.gavg[i]) + eps;
      } else {
        avg = std::sqrt(s.sq[i]) + eps;
      }
      if (momentum > 0) {
        s.buf[i] = momentum * s.buf[i] + g[i] / avg;
        s.p[i] -= lr * s.buf[i];
      } else {
        s.p[i] -= lr * g[i] / avg;
      }
    }
  };
}

RefUpdate ref_adam(double b1, double b2, double eps, double wd, bool decoupled, bool amsgrad) {
  return [=](RefState& s, std::vector<double> g, double lr) {
    ++s.step;
    double bc1 = 1 - std::pow(b1, static_cast<double>(s.step));
    double bc2 = 1 - std::pow(b2, static_cast<double>(s.step));
    for (size_t i = 0; i < g.size(); ++i) {
      if (decoupled) s.p[i] *= 1 - lr * wd;
      else g[i] += wd * s.p[i];
      s.m[i] = b1 * s.m[i] + (1 - b1) * g[i];
      s.v[i] = b2 * s.v[i] + (1 - b2) * g[i] * g[i];
      s.vmax[i] = std::max(s.vmax[i], s.v[i]);
      double denom = std::sqrt(amsgrad ? s.vmax[i] : s.v[i]) / std::sqrt(bc2) + eps;
      s.p[i] -= lr / bc1 * s.m[i] / denom;
    }
  };
}

// Runs `opt` for 5 steps on two parameters in two groups (lr and lr/2) with
// gradients 0.5 p + cos(1.1 i + 0.5 t) and a learning rate lowered every step
// through set_lr, against the reference.
void check_optimizer(const std::function<std::unique_ptr<optim::Optimizer>(const std::vector<Tensor>&)>& make,
                     const std::function<void(optim::Optimizer&, const std::vector<Tensor>&)>& add_group,
                     const RefUpdate& ref, double lr0, double init_sum = 0) {
  const std::vector<double> p0 = {0.5, -1.2, 0.8, 2.0, -0.3, 0.05};
  Tensor a = nn::make_parameter(tensor(p0, {6}));
  Tensor b = nn::make_parameter(tensor(p0, {2, 3}) * 0.5);
  auto opt = make({a});
  add_group(*opt, {b});
  std::vector<RefState> refs(2);
  for (size_t k = 0; k < 2; ++k) {
    RefState& s = refs[k];
    s.p = p0;
    if (k == 1)
      for (double& v : s.p) v *= 0.5;
    s.buf = s.sq = s.gavg = s.m = s.v = s.vmax = std::vector<double>(6, 0.0);
    s.sum = std::vector<double>(6, init_sum);
  }
  for (int t = 0; t < 5; ++t) {
    double lr = lr0 * (1 - 0.1 * t);
    opt->set_lr(0, lr);
    opt->set_lr(1, lr / 2);
    opt->zero_grad();
    for (size_t k = 0; k < 2; ++k) {
      Tensor p = k == 0 ? a : b;
      std::vector<double> g(6);
      for (size_t i = 0; i < 6; ++i) g[i] = 0.5 * refs[k].p[i] + std::cos(1.1 * static_cast<double>(i) + 0.5 * t);
      p.set_grad(tensor(g, p.shape()));
      ref(refs[k], g, k == 0 ? lr : lr / 2);
    }
    opt->step();
  }
  REQUIRE_CLOSE(a, tensor(refs[0].p, {6}), 1e-12, 1e-10);
  REQUIRE_CLOSE(b, tensor(refs[1].p, {2, 3}), 1e-12, 1e-10);
}

template <typename Opt>
void check(const typename Opt::Options& o, const RefUpdate& ref, double init_sum = 0) {
  check_optimizer([&](const std::vector<Tensor>& ps) { return std::make_unique<Opt>(ps, o); },
                  [&](optim::Optimizer& opt, const std::vector<Tensor>& ps) {
                    static_cast<Opt&>(opt).add_param_group(ps);
                  },
                  ref, o.lr, init_sum);
}

}  // namespace

TEST_CASE("optimizers match torch.optim's update rules", "[nn][optim]") {
  SECTION("SGD") { check<optim::SGD>({.lr = 0.1, .weight_decay = 0.1}, ref_sgd(0, 0, false, 0.1)); }
  SECTION("SGD momentum + dampening") {
    check<optim::SGD>({.lr = 0.05, .momentum = 0.9, .dampening = 0.3, .weight_decay = 0.05},
                      ref_sgd(0.9, 0.3, false, 0.05));
  }
  SECTION("SGD Nesterov") {
    check<optim::SGD>({.lr = 0.1, .momentum = 0.8, .weight_decay = 0.1, .nesterov = true},
                      ref_sgd(0.8, 0, true, 0.1));
  }
  SECTION("Adagrad") {
    check<optim::Adagrad>({.lr = 0.2, .lr_decay = 0.05, .weight_decay = 0.1, .initial_accumulator_value = 0.1,
                           .eps = 1e-6},
                          ref_adagrad(0.05, 0.1, 1e-6), 0.1);
  }
  SECTION("RMSprop") { check<optim::RMSprop>({.lr = 0.01}, ref_rmsprop(0.99, 1e-8, 0, 0, false)); }
  SECTION("RMSprop centered + momentum") {
    check<optim::RMSprop>({.lr = 0.01, .alpha = 0.9, .eps = 1e-6, .weight_decay = 0.1, .momentum = 0.9,
                           .centered = true},
                          ref_rmsprop(0.9, 1e-6, 0.1, 0.9, true));
  }
  SECTION("Adam") { check<optim::Adam>({.lr = 0.1, .weight_decay = 0.05}, ref_adam(0.9, 0.999, 1e-8, 0.05, false, false)); }
  SECTION("Adam amsgrad") {
    check<optim::Adam>({.lr = 0.1, .beta1 = 0.8, .beta2 = 0.9, .amsgrad = true},
                       ref_adam(0.8, 0.9, 1e-8, 0, false, true));
  }
  SECTION("AdamW") {
    check_optimizer(
        [](const std::vector<Tensor>& ps) { return std::make_unique<optim::AdamW>(ps, optim::AdamW::Options{.lr = 0.1}); },
        [](optim::Optimizer& opt, const std::vector<Tensor>& ps) { static_cast<optim::AdamW&>(opt).add_param_group(ps); },
        ref_adam(0.9, 0.999, 1e-8, 1e-2, true, false), 0.1);
  }
}

TEST_CASE("optimizer state: slots, groups, state dicts and errors", "[nn][optim]") {
  Tensor w = nn::make_parameter(tensor(std::vector<float>{1, 2, 3}, {3}));
  optim::SGD sgd({w}, {.lr = 0.1, .momentum = 0.9});
  const optim::Slots& slots = sgd.state(w);
  REQUIRE(slots.size() == 2);
  CHECK(slots[0].first == "momentum_buffer");
  CHECK(slots[0].second.is_variable());
  CHECK(sgd.lr_variable().is_variable());
  CHECK(sgd.lr_variable().dtype() == DType::f64);
  CHECK(sgd.lr() == Approx(0.1));

  // Settings that need new slots create them and bump the version.
  optim::RMSprop rms({w}, {.lr = 0.01});
  uint64_t v0 = rms.hyperparameter_version();
  auto o = rms.options();
  o.momentum = 0.5;
  rms.set_options(0, o);
  CHECK(rms.hyperparameter_version() > v0);
  CHECK(rms.state(w).size() == 4);  // square_avg, both unused stand-ins, momentum_buffer
  o.alpha = -1;
  REQUIRE_THROWS_WITH(rms.set_options(0, o), Catch::Contains("alpha must be >= 0"));
  CHECK(rms.options().alpha == Approx(0.99));

  // A state dict restores an optimizer mid-run exactly.
  auto run = [](optim::Optimizer& opt, const Tensor& p, int from, int to) {
    for (int t = from; t < to; ++t) {
      opt.zero_grad();
      Tensor loss = sum(square(p - static_cast<double>(t)));
      loss.backward();
      opt.step();
    }
  };
  Tensor p1 = nn::make_parameter(tensor(std::vector<double>{0.5, -1, 2}, {3}));
  Tensor p2 = nn::make_parameter(tensor(std::vector<double>{0.5, -1, 2}, {3}));
  optim::Adam a1({p1}, {.lr = 0.05, .amsgrad = true}), a2({p2}, {.lr = 0.05, .amsgrad = true});
  run(a1, p1, 0, 3);
  a1.set_lr(0.03);
  optim::StateDict sd = a1.state_dict();
  CHECK(std::none_of(sd.begin(), sd.end(), [](const auto& e) { return e.first.find("unused") != std::string::npos; }));
  a2.load_state_dict(sd);
  {
    NoGradGuard ng;
    p2.copy_(p1);
  }
  CHECK(a2.lr() == Approx(0.03));
  run(a1, p1, 3, 6);
  run(a2, p2, 3, 6);
  REQUIRE_CLOSE(p2, p1, 0, 0);
  optim::StateDict wrong = {{"state.0.exp_avg", zeros({4}, DType::f64)}};
  REQUIRE_THROWS_WITH(a2.load_state_dict(wrong), Catch::Contains("expected [3]"));

  // Schedulers write the lr Variable.
  optim::StepLR sched(sgd, 2, 0.5);
  sched.step();
  CHECK(sgd.lr() == Approx(0.1));
  sched.step();
  CHECK(sgd.lr() == Approx(0.05));

  REQUIRE_THROWS_WITH(optim::SGD({w}, {.lr = -1}), Catch::Contains("lr must be >= 0"));
  REQUIRE_THROWS_WITH(optim::SGD({ones({2})}), Catch::Contains("is not a Variable"));
  REQUIRE_THROWS_WITH(optim::SGD({w, w}), Catch::Contains("appears twice"));
  REQUIRE_THROWS_WITH(optim::SGD({w}, {.nesterov = true}), Catch::Contains("Nesterov"));
}

// ------------------------------------------------------- compiled training

