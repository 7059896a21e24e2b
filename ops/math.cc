// Elementwise math: unary functions, binary arithmetic with NumPy
// broadcasting and type promotion, comparisons, logical ops, where, clamp.
// Gradients are written with ops; sum_to_like undoes broadcasting.
#include <cmath>
#include <limits>

#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow {

namespace {

using G = const GradContext&;
using Grads = std::vector<Tensor>;

Tensor zero_like_scalar(const Tensor& g) { return scalar(0.0, g.dtype()); }

// Registers a unary elementwise op with y = f(x).
OpDef& unary(OpRegistry& r, const char* name, const char* doc) {
  return r.add(OpDef(name).input("x").output("y").doc(doc).elementwise().infer(same_as_input(0)));
}

// Registers a binary broadcasting op whose inputs are promoted to a common dtype.
OpDef& binary(OpRegistry& r, const char* name, const char* doc, bool to_float = false) {
  return r.add(OpDef(name).input("a").input("b").output("y").doc(doc).elementwise()
                   .promote_inputs({}, to_float).infer(broadcast_inputs()));
}

OpDef& comparison(OpRegistry& r, const char* name, const char* doc) {
  return r.add(OpDef(name).input("a").input("b").output("y").doc(doc).elementwise()
                   .promote_inputs().infer(broadcast_inputs(DType::boolean)));
}

}  // namespace

void register_math_ops(OpRegistry& r) {
  // ---- unary
  unary(r, "neg", "-x").saves({}, {}).grad([](G g) { return Grads{neg(g.grad_output(0))}; });
  unary(r, "abs", "|x|").grad([](G g) { return Grads{mul(g.grad_output(0), sign(g.input(0)))}; });
  unary(r, "exp", "e^x").saves({}, {0}).grad([](G g) { return Grads{mul(g.grad_output(0), g.output(0))}; });
  unary(r, "log", "natural logarithm").grad([](G g) { return Grads{div(g.grad_output(0), g.input(0))}; });
  unary(r, "log1p", "log(1 + x), accurate for small x").grad([](G g) {
    return Grads{div(g.grad_output(0), g.input(0) + 1.0)};
  });
  unary(r, "sqrt", "square root").saves({}, {0}).grad([](G g) {
    return Grads{div(g.grad_output(0), g.output(0) * 2.0)};
  });
  unary(r, "rsqrt", "1 / sqrt(x)").saves({}, {0}).grad([](G g) {
    const Tensor& y = g.output(0);  // d/dx x^-1/2 = -1/2 y^3
    return Grads{mul(g.grad_output(0), mul(y, square(y)) * -0.5)};
  });
  unary(r, "square", "x * x").grad([](G g) { return Grads{mul(g.grad_output(0), g.input(0) * 2.0)}; });
  unary(r, "sin", "sine").grad([](G g) { return Grads{mul(g.grad_output(0), cos(g.input(0)))}; });
  unary(r, "cos", "cosine").grad([](G g) { return Grads{neg(mul(g.grad_output(0), sin(g.input(0))))}; });
  unary(r, "tanh", "hyperbolic tangent").saves({}, {0}).grad([](G g) {
    const Tensor& y = g.output(0);
    return Grads{mul(g.grad_output(0), 1.0 - square(y))};
  });
  unary(r, "sigmoid", "1 / (1 + e^-x), computed without overflow").saves({}, {0}).grad([](G g) {
    const Tensor& y = g.output(0);
    return Grads{mul(g.grad_output(0), mul(y, 1.0 - y))};
  });
  unary(r, "relu", "max(x, 0)").grad([](G g) {
    static const OpDef& op = op_def("relu_grad");
    return Grads{call_op1(op, {g.input(0), g.grad_output(0)})};
  });
  // One pass instead of a comparison and a select over the whole tensor.
  r.add(OpDef("relu_grad").input("x").input("grad").output("dx").elementwise()
            .doc("backward of relu: grad where x > 0, else 0")
            .infer(same_as_input(1)));
  unary(r, "leaky_relu", "x if x > 0 else negative_slope * x")
      .attr("negative_slope", AttrType::Float, 0.01)
      .grad([](G g) {
        static const OpDef& op = op_def("leaky_relu_grad");
        return Grads{call_op1(op, {g.input(0), g.grad_output(0)}, g.attrs())};
      });
  r.add(OpDef("leaky_relu_grad").input("x").input("grad").output("dx").elementwise()
            .attr("negative_slope", AttrType::Float, 0.01)
            .doc("backward of leaky_relu: grad * (x > 0 ? 1 : negative_slope)")
            .infer(same_as_input(1)));
  unary(r, "gelu", "exact GELU, x * Phi(x)").grad([](G g) {
    static const OpDef& op = op_def("gelu_grad");
    return Grads{call_op1(op, {g.input(0), g.grad_output(0)})};
  });
  r.add(OpDef("gelu_grad").input("x").input("grad").output("dx").elementwise()
            .doc("backward of gelu: grad * (Phi(x) + x * phi(x))").infer(same_as_input(1)));
  unary(r, "softplus", "log(1 + e^x), computed stably").grad([](G g) {
    return Grads{mul(g.grad_output(0), sigmoid(g.input(0)))};
  });
  unary(r, "sign", "-1, 0 or 1 (no gradient)");
  unary(r, "floor", "round towards -inf (no gradient)");
  unary(r, "ceil", "round towards +inf (no gradient)");
  unary(r, "round", "round half to even (no gradient)");
  r.add(OpDef("logical_not").input("x").output("y").elementwise().doc("!x, as bool")
            .infer(same_shape_with_dtype(0, DType::boolean)));

  // ---- binary arithmetic
  binary(r, "add", "a + b").commutative().saves({0, 1}, {}).grad([](G g) {
    const Tensor& go = g.grad_output(0);
    return Grads{g.needs_input_grad(0) ? sum_to_like(go, g.input(0)) : Tensor(),
                 g.needs_input_grad(1) ? sum_to_like(go, g.input(1)) : Tensor()};
  });
  binary(r, "sub", "a - b").grad([](G g) {
    const Tensor& go = g.grad_output(0);
    return Grads{g.needs_input_grad(0) ? sum_to_like(go, g.input(0)) : Tensor(),
                 g.needs_input_grad(1) ? sum_to_like(neg(go), g.input(1)) : Tensor()};
  });
  binary(r, "mul", "a * b").commutative().grad([](G g) {
    const Tensor &go = g.grad_output(0), &a = g.input(0), &b = g.input(1);
    return Grads{g.needs_input_grad(0) ? sum_to_like(mul(go, b), a) : Tensor(),
                 g.needs_input_grad(1) ? sum_to_like(mul(go, a), b) : Tensor()};
  });
  binary(r, "div", "a / b (true division: integers give f32)", true).grad([](G g) {
    const Tensor &go = g.grad_output(0), &a = g.input(0), &b = g.input(1);
    return Grads{g.needs_input_grad(0) ? sum_to_like(div(go, b), a) : Tensor(),
                 g.needs_input_grad(1) ? sum_to_like(neg(div(mul(go, a), square(b))), b) : Tensor()};
  });
  binary(r, "pow", "a ^ b (integers are computed in f32)", true).saves({0, 1}, {0}).grad([](G g) {
    const Tensor &go = g.grad_output(0), &a = g.input(0), &b = g.input(1), &y = g.output(0);
    Tensor ga, gb;
    if (g.needs_input_grad(0)) ga = sum_to_like(mul(go, mul(b, pow(a, b - 1.0))), a);
    if (g.needs_input_grad(1)) {
      // d/db a^b = a^b log a, defined for a > 0; 0 elsewhere (as PyTorch does at a = 0).
      Tensor safe_log = log(where(a > 0.0, a, scalar_like(1.0, a)));
      gb = sum_to_like(mul(go, mul(y, safe_log)), b);
    }
    return Grads{ga, gb};
  });
  auto minmax_grad = [](bool is_max) {
    return [is_max](G g) {
      const Tensor &go = g.grad_output(0), &a = g.input(0), &b = g.input(1);
      // Ties split the gradient evenly, as in PyTorch.
      Tensor a_wins = (is_max ? gt(a, b) : lt(a, b)).to(go.dtype());
      Tensor tie = eq(a, b).to(go.dtype()) * 0.5;
      Tensor wa = a_wins + tie;
      return Grads{g.needs_input_grad(0) ? sum_to_like(mul(go, wa), a) : Tensor(),
                   g.needs_input_grad(1) ? sum_to_like(mul(go, 1.0 - wa), b) : Tensor()};
    };
  };
  binary(r, "maximum", "elementwise max (NaN propagates)").commutative().grad(minmax_grad(true));
  binary(r, "minimum", "elementwise min (NaN propagates)").commutative().grad(minmax_grad(false));

  // ---- comparisons and logic (bool results, no gradient)
  comparison(r, "eq", "a == b").commutative();
  comparison(r, "ne", "a != b").commutative();
  comparison(r, "lt", "a < b");
  comparison(r, "le", "a <= b");
  comparison(r, "gt", "a > b");
  comparison(r, "ge", "a >= b");
  comparison(r, "logical_and", "a && b").commutative();
  comparison(r, "logical_or", "a || b").commutative();

  r.add(OpDef("where").input("cond").input("a").input("b").output("y").elementwise()
            .doc("cond ? a : b with broadcasting; cond is bool")
            .promote_inputs({1, 2})
            .saves({0, 1, 2}, {})
            .infer([](const InferContext& c) {
              NDF_CHECK(c.input(0).dtype == DType::boolean, TypeError, "[where] cond must be bool, got ",
                        dtype_name(c.input(0).dtype), " (compare with a value first, e.g. x > 0)");
              TensorMeta m = c.input(1);
              m.shape = broadcast_shapes(broadcast_shapes(c.input(0).shape, c.input(1).shape, "where"),
                                         c.input(2).shape, "where");
              return std::vector<TensorMeta>{m};
            })
            .grad([](G g) {
              const Tensor &go = g.grad_output(0), &c = g.input(0);
              Tensor z = zero_like_scalar(go);
              return Grads{Tensor(),
                           g.needs_input_grad(1) ? sum_to_like(where(c, go, z), g.input(1)) : Tensor(),
                           g.needs_input_grad(2) ? sum_to_like(where(c, z, go), g.input(2)) : Tensor()};
            }));

  r.add(OpDef("clamp").input("x").output("y").elementwise()
            .doc("min(max(x, lo), hi); gradient passes where lo <= x <= hi")
            .attr("lo", AttrType::Float, -std::numeric_limits<double>::infinity())
            .attr("hi", AttrType::Float, std::numeric_limits<double>::infinity())
            .infer([](const InferContext& c) {
              double lo = c.attrs.get<double>("lo", -INFINITY), hi = c.attrs.get<double>("hi", INFINITY);
              NDF_CHECK(!(lo > hi), ValueError, "[clamp] lo (", lo, ") is greater than hi (", hi, ")");
              return std::vector<TensorMeta>{c.input(0)};
            })
            .grad([](G g) {
              const Tensor &x = g.input(0), &go = g.grad_output(0);
              double lo = g.attrs().get<double>("lo", -INFINITY), hi = g.attrs().get<double>("hi", INFINITY);
              Tensor inside = logical_and(ge(x, scalar_like(lo, x)), le(x, scalar_like(hi, x)));
              return Grads{where(inside, go, zero_like_scalar(go))};
            }));
}

// ------------------------------------------------------------------ the API

#define NDF_UNARY_API(fn)                                   \
  Tensor fn(const Tensor& x) {                              \
    static const OpDef& op = op_def(#fn);                   \
    return call_op1(op, {x});                               \
  }
NDF_UNARY_API(neg)
NDF_UNARY_API(abs)
NDF_UNARY_API(exp)
NDF_UNARY_API(log)
NDF_UNARY_API(log1p)
NDF_UNARY_API(sqrt)
NDF_UNARY_API(rsqrt)
NDF_UNARY_API(square)
NDF_UNARY_API(sin)
NDF_UNARY_API(cos)
NDF_UNARY_API(tanh)
NDF_UNARY_API(sigmoid)
NDF_UNARY_API(relu)
NDF_UNARY_API(gelu)
NDF_UNARY_API(softplus)
NDF_UNARY_API(sign)
NDF_UNARY_API(floor)
NDF_UNARY_API(ceil)
NDF_UNARY_API(round)
NDF_UNARY_API(logical_not)
#undef NDF_UNARY_API

#define NDF_BINARY_API(fn)                                  \
  Tensor fn(const Tensor& a, const Tensor& b) {             \
    static const OpDef& op = op_def(#fn);                   \
    return call_op1(op, {a, b});                            \
  }
NDF_BINARY_API(add)
NDF_BINARY_API(sub)
NDF_BINARY_API(mul)
NDF_BINARY_API(div)
NDF_BINARY_API(pow)
NDF_BINARY_API(maximum)
NDF_BINARY_API(minimum)
NDF_BINARY_API(eq)
NDF_BINARY_API(ne)
NDF_BINARY_API(lt)
NDF_BINARY_API(le)
NDF_BINARY_API(gt)
NDF_BINARY_API(ge)
NDF_BINARY_API(logical_and)
NDF_BINARY_API(logical_or)
#undef NDF_BINARY_API

Tensor leaky_relu(const Tensor& x, double negative_slope) {
  static const OpDef& op = op_def("leaky_relu");
  return call_op1(op, {x}, Attrs{{"negative_slope", negative_slope}});
}

Tensor silu(const Tensor& x) { return mul(x, sigmoid(x)); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  static const OpDef& op = op_def("where");
  return call_op1(op, {cond, a, b});
}

Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi) {
  static const OpDef& op = op_def("clamp");
  return call_op1(op, {x}, Attrs{{"lo", lo.value_or(-INFINITY)}, {"hi", hi.value_or(INFINITY)}});
}

Tensor scalar_like(double value, const Tensor& like) {
  DType dt = like.dtype();
  bool integral_value = std::floor(value) == value && std::abs(value) < 9.2e18;
  if (!is_floating(dt)) dt = integral_value ? (dt == DType::boolean ? DType::i64 : dt) : DType::f32;
  return scalar(value, dt);
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double b) { return add(a, scalar_like(b, a)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_like(b, a)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_like(b, a)); }
Tensor operator/(const Tensor& a, double b) { return div(a, scalar_like(b, a)); }
Tensor operator+(double a, const Tensor& b) { return add(scalar_like(a, b), b); }
Tensor operator-(double a, const Tensor& b) { return sub(scalar_like(a, b), b); }
Tensor operator*(double a, const Tensor& b) { return mul(scalar_like(a, b), b); }
Tensor operator/(double a, const Tensor& b) { return div(scalar_like(a, b), b); }
Tensor operator==(const Tensor& a, const Tensor& b) { return eq(a, b); }
Tensor operator!=(const Tensor& a, const Tensor& b) { return ne(a, b); }
Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
Tensor operator>(const Tensor& a, double b) { return gt(a, scalar_like(b, a)); }
Tensor operator<(const Tensor& a, double b) { return lt(a, scalar_like(b, a)); }

}  // namespace ndflow
