// Samples of the fused optimizer updates (ops/optim.cc). The ops write their
// inputs in place and have no outputs, so nothing is compared here; the
// generic tests still run each sample through inference, the kernel and the
// strided (non-contiguous state and grad) path. Values after several steps
// are checked against torch.optim in test_optim.cc.
#include "op_samples.h"

namespace ndflow::testing {

namespace {
Tensor step0() { return zeros({}, DType::i64); }
Tensor lr(double v) { return scalar(v, DType::f64); }
Tensor param() { return rnd({2, 3}, 1); }
Tensor grad() { return rnd({2, 3}, 2); }
// Non-negative, valid as a second moment; square_avg above grad_avg^2 when lo >= 1.
Tensor slot(uint64_t seed, double lo = 0.0) { return rnd({2, 3}, seed, lo, lo + 1.0); }
Tensor none() { return zeros({0}, DType::f64); }
}  // namespace

SampleList optim_samples() {
  SampleList s;
  auto add = [&](const char* op, std::vector<Tensor> in, Attrs a) {
    s.push_back({op, std::move(in), std::move(a), {}, false});
  };
  add("apply_sgd", {param(), grad(), lr(0.1)}, Attrs{{"weight_decay", 0.01}});
  add("apply_momentum", {param(), grad(), slot(3), step0(), lr(0.1)}, Attrs{{"momentum", 0.9}});
  add("apply_momentum", {param(), grad(), slot(3), tensor(std::vector<int64_t>{4}, {}), lr(0.1)},
      Attrs{{"momentum", 0.9}, {"nesterov", true}, {"weight_decay", 0.1}});
  add("apply_adagrad", {param(), grad(), slot(3), step0(), lr(0.1)},
      Attrs{{"lr_decay", 0.01}, {"weight_decay", 0.1}});
  add("apply_rmsprop", {param(), grad(), slot(3), none(), none(), lr(0.01)}, {});
  add("apply_rmsprop", {param(), grad(), slot(3, 1.0), slot(4), slot(5), lr(0.01)},
      Attrs{{"momentum", 0.9}, {"centered", true}, {"weight_decay", 0.1}});
  add("apply_adam", {param(), grad(), slot(3), slot(4), none(), step0(), lr(1e-3)}, {});
  add("apply_adam", {param(), grad(), slot(3), slot(4), slot(5), scalar(2.0, DType::f64), lr(1e-3)},
      Attrs{{"amsgrad", true}, {"decoupled_weight_decay", true}, {"weight_decay", 0.01}});
  return s;
}

}  // namespace ndflow::testing
