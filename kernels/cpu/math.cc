// CPU kernels of the elementwise math ops (ops/math.cc): each maps the op's
// one scalar function (kernels/scalar_functions.h) over broadcast, strided
// operands with the loops of kernels/cpu/loops.h.
#include <cmath>

#include "core/op_registry.h"
#include "kernels/cpu/loops.h"
#include "kernels/scalar_functions.h"

namespace ndflow::cpu {

namespace {

using scalar::is_float_v;

// y = F(x) for f32/f64 inputs.
template <typename F>
void unary_float(KernelContext& c) {
  dispatch_float(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    unary_loop<T, T>(c.output(0), c.input(0), c.num_threads, F{});
  });
}

// y = F(x) for numeric inputs (ints included).
template <typename F>
void unary_numeric(KernelContext& c) {
  dispatch_numeric(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    unary_loop<T, T>(c.output(0), c.input(0), c.num_threads, F{});
  });
}

void leaky_relu(KernelContext& c) {
  scalar::LeakyRelu f{c.attrs.get<double>("negative_slope", 0.01)};
  dispatch_float(c.input(0).dtype(), "leaky_relu", [&]<typename T>() {
    unary_loop<T, T>(c.output(0), c.input(0), c.num_threads, f);
  });
}

void clamp(KernelContext& c) {
  scalar::Clamp f{c.attrs.get<double>("lo", -INFINITY), c.attrs.get<double>("hi", INFINITY)};
  dispatch_numeric(c.input(0).dtype(), "clamp", [&]<typename T>() {
    unary_loop<T, T>(c.output(0), c.input(0), c.num_threads, f);
  });
}

void logical_not(KernelContext& c) {
  dispatch_numeric_bool(c.input(0).dtype(), "logical_not", [&]<typename T>() {
    unary_loop<bool, T>(c.output(0), c.input(0), c.num_threads, scalar::LogicalNot{});
  });
}

// y = F(a, b); both inputs already promoted to one dtype.
template <typename F>
void binary_float(KernelContext& c) {
  dispatch_float(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    binary_loop<T, T>(c.output(0), c.input(0), c.input(1), c.num_threads, F{});
  });
}

template <typename F>
void binary_numeric(KernelContext& c) {
  dispatch_numeric(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    binary_loop<T, T>(c.output(0), c.input(0), c.input(1), c.num_threads, F{});
  });
}

template <typename F>
void compare(KernelContext& c) {
  dispatch_numeric_bool(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    binary_loop<bool, T>(c.output(0), c.input(0), c.input(1), c.num_threads, F{});
  });
}

// Backward ops of the form dx = F(x, grad).
template <typename F>
void backward_float(KernelContext& c, F f) {
  dispatch_float(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    binary_loop<T, T>(c.output(0), c.input(0), c.input(1), c.num_threads, f);
  });
}
void relu_grad(KernelContext& c) { backward_float(c, scalar::ReluGrad{}); }
void leaky_relu_grad(KernelContext& c) {
  backward_float(c, scalar::LeakyReluGrad{c.attrs.get<double>("negative_slope", 0.01)});
}
void gelu_grad(KernelContext& c) { backward_float(c, scalar::GeluGrad{}); }

void where(KernelContext& c) {
  dispatch_numeric_bool(c.input(1).dtype(), "where", [&]<typename T>() {
    ternary_loop<T, bool, T, T>(c.output(0), c.input(0), c.input(1), c.input(2), c.num_threads,
                                [](bool k, T a, T b) { return k ? a : b; });
  });
}

}  // namespace

void register_math_kernels(KernelRegistry& r) {
  constexpr auto CPU = DeviceType::CPU;
  const std::vector<DType> floats = {DType::f32, DType::f64};
  const std::vector<DType> numeric = {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8};
  std::vector<DType> all = numeric;
  all.push_back(DType::boolean);

  r.add("neg", CPU, numeric, unary_numeric<scalar::Neg>);
  r.add("abs", CPU, numeric, unary_numeric<scalar::Abs>);
  r.add("exp", CPU, floats, unary_float<scalar::Exp>);
  r.add("log", CPU, floats, unary_float<scalar::Log>);
  r.add("log1p", CPU, floats, unary_float<scalar::Log1p>);
  r.add("sqrt", CPU, floats, unary_float<scalar::Sqrt>);
  r.add("rsqrt", CPU, floats, unary_float<scalar::Rsqrt>);
  r.add("square", CPU, numeric, unary_numeric<scalar::Square>);
  r.add("sin", CPU, floats, unary_float<scalar::Sin>);
  r.add("cos", CPU, floats, unary_float<scalar::Cos>);
  r.add("tanh", CPU, floats, unary_float<scalar::Tanh>);
  r.add("sigmoid", CPU, floats, unary_float<scalar::Sigmoid>);
  r.add("relu", CPU, numeric, unary_numeric<scalar::Relu>);
  r.add("leaky_relu", CPU, floats, leaky_relu);
  r.add("relu_grad", CPU, floats, relu_grad);
  r.add("leaky_relu_grad", CPU, floats, leaky_relu_grad);
  r.add("gelu", CPU, floats, unary_float<scalar::Gelu>);
  r.add("gelu_grad", CPU, floats, gelu_grad);
  r.add("softplus", CPU, floats, unary_float<scalar::Softplus>);
  r.add("sign", CPU, numeric, unary_numeric<scalar::Sign>);
  r.add("floor", CPU, numeric, unary_numeric<scalar::Floor>);
  r.add("ceil", CPU, numeric, unary_numeric<scalar::Ceil>);
  r.add("round", CPU, numeric, unary_numeric<scalar::Round>);
  r.add("logical_not", CPU, all, logical_not);

  r.add("add", CPU, numeric, binary_numeric<scalar::Add>);
  r.add("sub", CPU, numeric, binary_numeric<scalar::Sub>);
  r.add("mul", CPU, numeric, binary_numeric<scalar::Mul>);
  r.add("div", CPU, floats, binary_float<scalar::Div>);
  r.add("pow", CPU, floats, binary_float<scalar::Pow>);
  r.add("maximum", CPU, numeric, binary_numeric<scalar::Maximum>);
  r.add("minimum", CPU, numeric, binary_numeric<scalar::Minimum>);
  r.add("eq", CPU, all, compare<scalar::Eq>);
  r.add("ne", CPU, all, compare<scalar::Ne>);
  r.add("lt", CPU, all, compare<scalar::Lt>);
  r.add("le", CPU, all, compare<scalar::Le>);
  r.add("gt", CPU, all, compare<scalar::Gt>);
  r.add("ge", CPU, all, compare<scalar::Ge>);
  r.add("logical_and", CPU, all, compare<scalar::LogicalAnd>);
  r.add("logical_or", CPU, all, compare<scalar::LogicalOr>);
  r.add("where", CPU, all, where);
  r.add("clamp", CPU, numeric, clamp);
}

}  // namespace ndflow::cpu
