// Reductions. Primitives (with kernels): sum, prod, max, min over a list of
// axes, argmax/argmin over one axis or the flattened tensor, and sum_to_like,
// which undoes NumPy broadcasting and so carries every broadcasting op's
// gradient. mean, var, std and logsumexp are compositions of those.
//
// Result dtypes follow PyTorch: sum and prod of bool or integer inputs give
// i64 (NumPy does the same on Linux, except that it keeps u8 sums unsigned);
// max/min keep the input dtype; argmax/argmin give i64; sum_to_like keeps the
// input dtype (it is a gradient helper: floats in, floats out). mean/var/std/
// logsumexp of integers compute in f32.
#include <algorithm>
#include <cmath>

#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow {

namespace {

using G = const GradContext&;
using Grads = std::vector<Tensor>;

std::vector<int64_t> attr_axes(const Attrs& a) { return a.get<std::vector<int64_t>>("axes", {}); }
bool attr_keepdims(const Attrs& a) { return a.get<bool>("keepdims", false); }

// Output shape of reducing `in` over the normalized `axes`.
Shape reduced_shape(const Shape& in, const std::vector<int64_t>& axes, bool keepdims) {
  Shape out;
  size_t k = 0;
  for (size_t d = 0; d < in.size(); ++d) {
    bool reduced = k < axes.size() && axes[k] == static_cast<int64_t>(d);
    if (reduced) ++k;
    if (!reduced)
      out.push_back(in[d]);
    else if (keepdims)
      out.push_back(1);
  }
  return out;
}

// NOTE: like NumPy, a reduction without an identity (max, argmax) over an
// empty axis is an error even when the result would be empty.
void check_nonempty(const OpDef& op, const Shape& in, const std::vector<int64_t>& axes) {
  for (int64_t a : axes)
    NDF_CHECK(in[a] != 0, ValueError, "[", op.name(), "] cannot reduce over axis ", a,
              " of size 0 (input shape ", shape_str(in), "): ", op.name(),
              " of an empty set is undefined; sum and prod are defined for empty axes");
}

DType accumulated_dtype(DType t) { return is_floating(t) ? t : DType::i64; }

// Inference of sum/prod/max/min; `widen` selects the sum/prod result dtype.
InferFn reduce_infer(bool widen, bool needs_nonempty) {
  return [widen, needs_nonempty](const InferContext& c) {
    const TensorMeta& x = c.input(0);
    auto axes =
        normalize_axes(attr_axes(c.attrs), static_cast<int64_t>(x.shape.size()), c.op.name());
    if (needs_nonempty) check_nonempty(c.op, x.shape, axes);
    TensorMeta y = x;
    y.shape = reduced_shape(x.shape, axes, attr_keepdims(c.attrs));
    if (widen) y.dtype = accumulated_dtype(x.dtype);
    return std::vector<TensorMeta>{y};
  };
}

std::vector<TensorMeta> arg_infer(const InferContext& c) {
  const TensorMeta& x = c.input(0);
  auto axis = c.attrs.get<std::vector<int64_t>>("axis", {});
  NDF_CHECK(axis.size() <= 1, ValueError, "[", c.op.name(),
            "] takes one axis, or none for the flattened tensor; got ", axis.size(), " axes ",
            shape_str(axis));
  std::vector<int64_t> axes =
      normalize_axes(axis, static_cast<int64_t>(x.shape.size()), c.op.name());
  check_nonempty(c.op, x.shape, axes);
  TensorMeta y{reduced_shape(x.shape, axes, attr_keepdims(c.attrs)), DType::i64, x.device};
  return {y};
}

std::vector<TensorMeta> sum_to_like_infer(const InferContext& c) {
  const Shape &xs = c.input(0).shape, &ls = c.input(1).shape;
  bool ok = ls.size() <= xs.size();
  for (size_t i = 0; ok && i < ls.size(); ++i) {
    int64_t l = ls[i], x = xs[xs.size() - ls.size() + i];
    ok = l == 1 || l == x || l == -1 || x == -1;
  }
  NDF_CHECK(ok, ShapeError, "[sum_to_like] cannot sum shape ", shape_str(xs), " down to ",
            shape_str(ls), ": the target must broadcast to the input (at most the same rank, "
            "each trailing dim equal or 1)");
  return {TensorMeta{ls, c.input(0).dtype, c.input(0).device}};
}

// `g` (the gradient of a reduction's result) with the reduced axes restored as
// size-1 dims, so that it broadcasts against the input of shape `xs`.
Tensor restore_reduced_dims(const Tensor& g, const Shape& xs, const std::vector<int64_t>& axes,
                            bool keepdims) {
  if (keepdims || axes.empty()) return g;
  Shape kept = xs;
  bool known = true;
  for (int64_t a : axes) kept[a] = 1;
  for (int64_t d : kept) known = known && d >= 0;
  if (known) return reshape(g, kept);
  Tensor r = g;  // graph mode with unknown dims: a reshape target cannot be spelled out
  for (int64_t a : axes) r = unsqueeze(r, a);
  return r;
}

struct ReduceGrad {
  std::vector<int64_t> axes;
  Tensor g;  // the incoming gradient, reduced axes restored
};
ReduceGrad reduce_grad_setup(G g) {
  const Tensor& x = g.input(0);
  auto axes = normalize_axes(attr_axes(g.attrs()), x.rank(), g.op().name());
  return {axes, restore_reduced_dims(g.grad_output(0), x.shape(), axes, attr_keepdims(g.attrs()))};
}

Grads sum_grad(G g) {
  ReduceGrad r = reduce_grad_setup(g);
  return {broadcast_like(r.g, g.input(0))};
}

// d prod / d x_i is the product of the other elements. y / x_i is wrong where
// x_i = 0, so the zeros are counted per reduced group: with none, y / x_i;
// with exactly one, the zero element gets the product of the others and the
// rest get 0; with two or more, every element gets 0 (as PyTorch does).
Grads prod_grad(G g) {
  const Tensor& x = g.input(0);
  ReduceGrad r = reduce_grad_setup(g);
  Tensor zero = scalar_like(0.0, x), one = scalar_like(1.0, x);
  Tensor is_zero = eq(x, zero);
  Tensor zeros_in_group = sum(is_zero, r.axes, true);  // i64
  Tensor x_safe = where(is_zero, one, x);
  Tensor others_prod = prod(x_safe, r.axes, true);  // product of the non-zero elements
  Tensor at_zero = where(eq(zeros_in_group, scalar(1.0, DType::i64)), others_prod, zero);
  Tensor at_nonzero =
      where(eq(zeros_in_group, scalar(0.0, DType::i64)), div(others_prod, x_safe), zero);
  return {mul(r.g, where(is_zero, at_zero, at_nonzero))};
}

// The gradient goes to the elements equal to the result, split evenly among
// ties (PyTorch's amax/amin rule). NOTE: where the result is NaN no element
// compares equal to it, so a NaN group gets a zero gradient.
Grads minmax_grad(G g) {
  const Tensor& x = g.input(0);
  ReduceGrad r = reduce_grad_setup(g);
  Tensor y = restore_reduced_dims(g.output(0), x.shape(), r.axes, attr_keepdims(g.attrs()));
  Tensor hit = eq(x, y);
  Tensor share = div(r.g, sum(hit, r.axes, true));
  return {where(hit, share, scalar_like(0.0, share))};
}

OpDef& reduction(OpRegistry& r, const char* name, const char* doc, bool widen,
                 bool needs_nonempty) {
  return r.add(OpDef(name)
                   .input("x")
                   .output("y")
                   .doc(doc)
                   .attr("axes", AttrType::Ints, std::vector<int64_t>{})
                   .attr("keepdims", AttrType::Bool, false)
                   .infer(reduce_infer(widen, needs_nonempty)));
}

OpDef& arg_reduction(OpRegistry& r, const char* name, const char* doc) {
  return r.add(OpDef(name)
                   .input("x")
                   .output("index")
                   .doc(doc)
                   .attr("axis", AttrType::Ints, std::vector<int64_t>{})
                   .attr("keepdims", AttrType::Bool, false)
                   .infer(arg_infer));
}

}  // namespace

void register_reduce_ops(OpRegistry& r) {
  reduction(r, "sum", "sum over `axes` (empty = all); bool/integers sum to i64; empty sum is 0",
            true, false)
      .saves({0}, {})
      .grad(sum_grad);
  reduction(r, "prod",
            "product over `axes` (empty = all); bool/integers give i64; empty product is 1", true,
            false)
      .saves({0}, {})
      .grad(prod_grad);
  reduction(r, "max", "maximum over `axes` (empty = all); NaN propagates; error on an empty axis",
            false, true)
      .saves({0}, {0})
      .grad(minmax_grad);
  reduction(r, "min", "minimum over `axes` (empty = all); NaN propagates; error on an empty axis",
            false, true)
      .saves({0}, {0})
      .grad(minmax_grad);
  arg_reduction(r, "argmax", "i64 index of the first maximum along `axis` (one axis, or none = "
                "flattened); a NaN counts as the maximum");
  arg_reduction(r, "argmin", "i64 index of the first minimum along `axis` (one axis, or none = "
                "flattened); a NaN counts as the minimum");
  r.add(OpDef("sum_to_like")
            .input("x")
            .input("like")
            .output("y")
            .doc("sums x down to like's shape, undoing NumPy broadcasting (leading dims summed "
                 "away, size-1 dims of like summed with keepdims); keeps x's dtype")
            .infer(sum_to_like_infer)
            .saves({0}, {})
            .grad([](G g) {
              return Grads{broadcast_like(g.grad_output(0), g.input(0)), Tensor()};
            }));
}

// ------------------------------------------------------------------ the API

namespace {

Tensor reduce_call(const OpDef& op, const Tensor& x, const Axes& axes, bool keepdims) {
  return call_op1(op, {x}, Attrs{{"axes", axes}, {"keepdims", keepdims}});
}

Tensor arg_call(const OpDef& op, const Tensor& x, std::optional<int64_t> axis, bool keepdims) {
  std::vector<int64_t> a;
  if (axis) a.push_back(*axis);
  return call_op1(op, {x}, Attrs{{"axis", a}, {"keepdims", keepdims}});
}

Tensor as_float(const Tensor& x) { return is_floating(x.dtype()) ? x : cast(x, DType::f32); }

// The number of elements each result of a reduction over `axes` (normalized)
// combines; -1 when a reduced dim is unknown (graph mode).
int64_t reduced_count(const Tensor& x, const std::vector<int64_t>& axes) {
  int64_t n = 1;
  for (int64_t a : axes) {
    if (x.shape()[a] < 0) return -1;
    n *= x.shape()[a];
  }
  return n;
}

// That count as a tensor broadcastable against the reduction of `x`, in the
// dtype of `like`: a scalar when the shape is known, else counted with ops.
Tensor count_tensor(const Tensor& x, const std::vector<int64_t>& axes, bool keepdims,
                    const Tensor& like) {
  int64_t n = reduced_count(x, axes);
  if (n >= 0) return scalar_like(static_cast<double>(n), like);
  return sum(ones_like(like.dtype() == x.dtype() ? x : cast(x, like.dtype())), axes, keepdims);
}

}  // namespace

Tensor sum(const Tensor& x, const Axes& axes, bool keepdims) {
  static const OpDef& op = op_def("sum");
  return reduce_call(op, x, axes, keepdims);
}
Tensor prod(const Tensor& x, const Axes& axes, bool keepdims) {
  static const OpDef& op = op_def("prod");
  return reduce_call(op, x, axes, keepdims);
}
Tensor max(const Tensor& x, const Axes& axes, bool keepdims) {
  static const OpDef& op = op_def("max");
  return reduce_call(op, x, axes, keepdims);
}
Tensor min(const Tensor& x, const Axes& axes, bool keepdims) {
  static const OpDef& op = op_def("min");
  return reduce_call(op, x, axes, keepdims);
}
Tensor argmax(const Tensor& x, std::optional<int64_t> axis, bool keepdims) {
  static const OpDef& op = op_def("argmax");
  return arg_call(op, x, axis, keepdims);
}
Tensor argmin(const Tensor& x, std::optional<int64_t> axis, bool keepdims) {
  static const OpDef& op = op_def("argmin");
  return arg_call(op, x, axis, keepdims);
}

Tensor sum_to_like(const Tensor& x, const Tensor& like) {
  static const OpDef& op = op_def("sum_to_like");
  const Shape &xs = x.shape(), &ls = like.shape();
  // The common case in gradients: nothing was broadcast. Unknown dims (-1)
  // could still differ at run time, so only fully known shapes take it.
  if (xs == ls && std::all_of(xs.begin(), xs.end(), [](int64_t d) { return d >= 0; })) return x;
  return call_op1(op, {x, like});
}

Tensor mean(const Tensor& x, const Axes& axes, bool keepdims) {
  auto ax = normalize_axes(axes, x.rank(), "mean");
  Tensor s = sum(x, ax, keepdims);
  // Integer sums are i64; dividing by an integer count gives f32 (true division).
  return div(s, count_tensor(x, ax, keepdims, s));
}

// Two passes (mean first, then squared deviations): the one-pass
// E[x^2] - E[x]^2 cancels catastrophically when |mean| >> std.
Tensor var(const Tensor& x, const Axes& axes, bool keepdims, int64_t correction) {
  auto ax = normalize_axes(axes, x.rank(), "var");
  Tensor xf = as_float(x);
  Tensor dev = sub(xf, mean(xf, ax, true));
  Tensor ss = sum(square(dev), ax, keepdims);
  // Like NumPy and PyTorch, n <= correction divides by 0 (inf or NaN), not by a negative number.
  int64_t n = reduced_count(x, ax);
  if (n >= 0)
    return div(ss, scalar_like(static_cast<double>(std::max<int64_t>(n - correction, 0)), ss));
  Tensor dof =
      sub(count_tensor(xf, ax, keepdims, ss), scalar_like(static_cast<double>(correction), ss));
  return div(ss, maximum(dof, scalar_like(0.0, ss)));
}

Tensor std(const Tensor& x, const Axes& axes, bool keepdims, int64_t correction) {
  auto ax = normalize_axes(axes, x.rank(), "std");
  return sqrt(var(x, ax, keepdims, correction));
}

// log(sum(exp(x - m))) + m with m the max over the axes, so that exp cannot
// overflow. m is a constant shift: it is computed without recording
// gradients (in a graph its gradient contributions cancel exactly).
Tensor logsumexp(const Tensor& x, const Axes& axes, bool keepdims) {
  auto ax = normalize_axes(axes, x.rank(), "logsumexp");
  Tensor xf = as_float(x);
  Tensor m;
  {
    NoGradGuard no_grad;
    if (reduced_count(x, ax) == 0) {
      m = sum(xf, ax, true);  // zeros: the empty logsumexp is log(0) = -inf
    } else {
      m = max(xf, ax, true);
      // An infinite max (all -inf, or a +inf) would make x - m NaN; a zero
      // shift is exact there: log(sum(exp(x))) gives -inf or +inf.
      m = where(eq(abs(m), scalar_like(INFINITY, m)), scalar_like(0.0, m), m);
    }
  }
  Tensor out = log(sum(exp(sub(xf, m)), ax, keepdims));
  return add(out, keepdims || ax.empty() ? m : squeeze(m, ax));
}

}  // namespace ndflow
