// Samples of fused_elementwise (ops/fused.cc, program format in
// kernels/fused_ops.h). Each expected value is the same expression computed
// by the unfused ops, which is what the fusion pass promises. The op has no
// gradient: fusion runs after gradients are built.
#include "op_samples.h"

namespace ndflow::testing {

namespace {

Attrs program(const std::string& ops, std::vector<int64_t> args, std::vector<double> params) {
  return Attrs{{"ops", ops}, {"args", std::move(args)}, {"params", std::move(params)}};
}

}  // namespace

SampleList fused_samples() {
  SampleList s;
  Tensor a = rnd({2, 3}, 31), b = rnd({3}, 32), c = rnd({2, 1}, 33);
  // relu(a * b + c): inputs 0..2, results 3.. — broadcasting along both axes
  s.push_back({"fused_elementwise", {a, b, c}, program("mul add relu", {0, 1, 3, 2, 4}, {0, 0, 0, 0, 0, 0}),
               {relu(a * b + c)}, false, {}, 0.0, 0.0});
  // a result used twice: exp(x) * exp(x) - x
  s.push_back({"fused_elementwise", {a}, program("exp mul sub", {0, 1, 1, 2, 0}, {0, 0, 0, 0, 0, 0}),
               {exp(a) * exp(a) - a}, false, {}, 0.0, 0.0});
  // op parameters, in f32: tanh(clamp(leaky_relu(x, 0.2), -0.5, 0.5))
  Tensor x32 = rnd({3, 4}, 34, -2, 2, DType::f32);
  s.push_back({"fused_elementwise", {x32}, program("leaky_relu clamp tanh", {0, 1, 2}, {0.2, 0, -0.5, 0.5, 0, 0}),
               {tanh(clamp(leaky_relu(x32, 0.2), -0.5, 0.5))}, false, {}, 0.0, 1.2e-7});
  // binary backward and power ops with a 0-d input: gelu_grad(x, g) / pow(|x| + 1, s) with s = 1.5
  Tensor g = rnd({2, 3}, 35), p = scalar(1.5, DType::f64);
  s.push_back({"fused_elementwise", {a, g, p},
               program("gelu_grad abs sqrt add pow div", {0, 1, 0, 4, 4, 5, 6, 2, 3, 7},
                       {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
               {div(call_op1(op_def("gelu_grad"), {a, g}), pow(abs(a) + sqrt(abs(a)), p))}, false, {}, 0.0, 0.0});
  return s;
}

}  // namespace ndflow::testing
