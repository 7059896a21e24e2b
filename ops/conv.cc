// Convolution and pooling over NCHW images, with PyTorch's semantics.
// conv2d (optional bias, stride, padding, dilation, groups, and a fused
// activation: "none" or "relu") has two backward ops, conv2d_backward_data
// and conv2d_backward_weight; all three are bilinear, so each one's gradient
// is written with the other two and second derivatives come for free. The
// bias gradient is a sum. max_pool2d and avg_pool2d have backward ops of
// their own; max_pool2d_backward recomputes the argmax from the input (no
// indices are kept between the passes).
//
// Output size per spatial dim: (in + 2*pad - dilation*(k-1) - 1) / stride + 1,
// rounded down — or, for pooling with ceil_mode, up, except that the last
// window must start inside the input or its left padding (as PyTorch does).
#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow {

namespace {

using G = const GradContext&;
using Grads = std::vector<Tensor>;
using Ints = std::vector<int64_t>;

// A (height, width) attribute; `min` is the smallest valid entry.
Ints pair_attr(const Attrs& a, const std::string& op, const char* name, int64_t min) {
  Ints v = a.get<Ints>(name);
  NDF_CHECK(v.size() == 2, ValueError, "[", op, "] ", name, " needs 2 values (height, width), got ",
            shape_str(v));
  NDF_CHECK(v[0] >= min && v[1] >= min, ValueError, "[", op, "] ", name, " must be >= ", min,
            " in each dim, got ", shape_str(v));
  return v;
}

bool dims_match(int64_t a, int64_t b) { return a == b || a == -1 || b == -1; }

void check_float(const std::string& op, const TensorMeta& t, const char* what) {
  NDF_CHECK(t.dtype == DType::f32 || t.dtype == DType::f64, TypeError, "[", op, "] ", what,
            " must be f32 or f64, got ", dtype_name(t.dtype), " (shape ", shape_str(t.shape), ")");
}

void check_nchw(const std::string& op, const TensorMeta& t, const char* what) {
  NDF_CHECK(t.shape.size() == 4, ShapeError, "[", op, "] ", what,
            " must be 4-d [N, C, H, W], got shape ", shape_str(t.shape),
            t.shape.size() == 3 ? " (add a batch dim with unsqueeze(x, 0))" : "");
}

// ---------------------------------------------------------------- conv2d

struct ConvAttrs {
  Ints stride, padding, dilation;
  int64_t groups;
};

ConvAttrs conv_attrs(const Attrs& a, const std::string& op) {
  ConvAttrs c{pair_attr(a, op, "stride", 1), pair_attr(a, op, "padding", 0),
              pair_attr(a, op, "dilation", 1), a.get<int64_t>("groups")};
  NDF_CHECK(c.groups >= 1, ValueError, "[", op, "] groups must be >= 1, got ", c.groups);
  return c;
}

// Output spatial dim of a convolution (-1 when `in` is unknown).
int64_t conv_out_dim(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  return in < 0 ? -1 : (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

// Checks x [N,C,H,W] against w [O,C/groups,kh,kw] and returns y's shape.
Shape conv_output_shape(const std::string& op, const Shape& x, const Shape& w, const ConvAttrs& a) {
  auto shapes = [&] { return " (input shape " + shape_str(x) + ", weight shape " + shape_str(w) + ")"; };
  int64_t C = x[1], O = w[0], g = a.groups;
  NDF_CHECK(O < 0 || O % g == 0, ShapeError, "[", op, "] groups = ", g, " does not divide the ",
            O, " output channels", shapes());
  NDF_CHECK(C < 0 || C % g == 0, ShapeError, "[", op, "] groups = ", g, " does not divide the ",
            C, " input channels", shapes());
  if (C >= 0 && w[1] >= 0 && C != w[1] * g) {
    if (g == 1)
      fail<ShapeError>("[", op, "] input has ", C, " channels but weight expects ", w[1], shapes());
    fail<ShapeError>("[", op, "] input has ", C, " channels but weight expects ", w[1], " per group x ",
                     g, " groups = ", w[1] * g, shapes());
  }
  Shape y{x[0], O, -1, -1};
  for (int d = 0; d < 2; ++d) {
    int64_t in = x[2 + d], k = w[2 + d];
    NDF_CHECK(k >= 1 || k == -1, ShapeError, "[", op, "] kernel size must be >= 1", shapes());
    if (in < 0 || k < 0) continue;
    int64_t span = a.dilation[d] * (k - 1) + 1, padded = in + 2 * a.padding[d];
    NDF_CHECK(span <= padded, ShapeError, "[", op, "] kernel ", w[2], "x", w[3], " (dilation ",
              a.dilation[0], "x", a.dilation[1], ") spans ", span, " ", d ? "columns" : "rows",
              " but the padded input has only ", padded, shapes(), ", padding ", shape_str(a.padding),
              "; use a smaller kernel or dilation, or more padding");
    y[2 + d] = conv_out_dim(in, k, a.stride[d], a.padding[d], a.dilation[d]);
  }
  return y;
}

std::vector<TensorMeta> infer_conv2d(const InferContext& c) {
  const std::string& op = c.op.name();
  Attrs attrs = c.op.complete_attrs(c.attrs);
  NDF_CHECK(c.inputs.size() <= 3, ValueError, "[conv2d] takes x, weight and an optional bias, got ",
            c.inputs.size(), " inputs");
  const TensorMeta &x = c.input(0), &w = c.input(1);
  check_nchw(op, x, "input");
  NDF_CHECK(w.shape.size() == 4, ShapeError, "[conv2d] weight must be 4-d [O, C/groups, kh, kw], got shape ",
            shape_str(w.shape), " (input shape ", shape_str(x.shape), ")");
  check_float(op, x, "input");
  ConvAttrs a = conv_attrs(attrs, op);
  Shape y = conv_output_shape(op, x.shape, w.shape, a);
  if (c.inputs.size() == 3) {
    const Shape& b = c.input(2).shape;
    NDF_CHECK(b.size() == 1 && dims_match(b[0], w.shape[0]), ShapeError, "[conv2d] bias must have shape [",
              w.shape[0], "] (one value per output channel), got ", shape_str(b), " (weight shape ",
              shape_str(w.shape), ")");
  }
  std::string act = attrs.get<std::string>("activation");
  NDF_CHECK(act == "none" || act == "relu", ValueError,
            "[conv2d] activation must be 'none' or 'relu', got '", act, "'");
  return {TensorMeta{y, x.dtype, x.device}};
}

// conv2d_backward_data(grad, weight, input_like): input_like gives only the shape.
std::vector<TensorMeta> infer_conv2d_backward_data(const InferContext& c) {
  const std::string& op = c.op.name();
  const TensorMeta &g = c.input(0), &w = c.input(1), &x = c.input(2);
  check_nchw(op, g, "grad");
  check_nchw(op, x, "input_like");
  NDF_CHECK(w.shape.size() == 4, ShapeError, "[", op, "] weight must be 4-d, got shape ", shape_str(w.shape));
  check_float(op, g, "grad");
  Shape y = conv_output_shape(op, x.shape, w.shape, conv_attrs(c.op.complete_attrs(c.attrs), op));
  bool ok = true;
  for (int d = 0; d < 4; ++d) ok = ok && dims_match(y[d], g.shape[d]);
  NDF_CHECK(ok, ShapeError, "[", op, "] grad has shape ", shape_str(g.shape),
            " but the convolution's output has shape ", shape_str(y), " (input shape ",
            shape_str(x.shape), ", weight shape ", shape_str(w.shape), ")");
  return {TensorMeta{x.shape, g.dtype, g.device}};
}

// conv2d_backward_weight(x, grad) with attribute kernel_size.
std::vector<TensorMeta> infer_conv2d_backward_weight(const InferContext& c) {
  const std::string& op = c.op.name();
  const TensorMeta &x = c.input(0), &g = c.input(1);
  check_nchw(op, x, "input");
  check_nchw(op, g, "grad");
  check_float(op, x, "input");
  Attrs attrs = c.op.complete_attrs(c.attrs);
  ConvAttrs a = conv_attrs(attrs, op);
  Ints k = pair_attr(attrs, op, "kernel_size", 1);
  int64_t C = x.shape[1];
  NDF_CHECK(C < 0 || C % a.groups == 0, ShapeError, "[", op, "] groups = ", a.groups,
            " does not divide the ", C, " input channels (input shape ", shape_str(x.shape), ")");
  Shape w{g.shape[1], C < 0 ? -1 : C / a.groups, k[0], k[1]};
  Shape y = conv_output_shape(op, x.shape, w, a);
  bool ok = true;
  for (int d = 0; d < 4; ++d) ok = ok && dims_match(y[d], g.shape[d]);
  NDF_CHECK(ok, ShapeError, "[", op, "] grad has shape ", shape_str(g.shape),
            " but the convolution's output has shape ", shape_str(y), " (input shape ",
            shape_str(x.shape), ", weight shape ", shape_str(w), ")");
  return {TensorMeta{w, x.dtype, x.device}};
}

Attrs without_activation(const Attrs& a) {
  Attrs r;
  for (const char* k : {"stride", "padding", "dilation", "groups"})
    if (const AttrValue* v = a.find(k)) r.set(k, *v);
  return r;
}

Attrs with_kernel_size(const Attrs& a, const Tensor& w) {
  const Shape& s = w.shape();
  NDF_CHECK(s.size() == 4 && s[2] > 0 && s[3] > 0, ValueError, "[conv2d] the gradient of the weight "
            "needs its kernel size, but the weight has shape ", shape_str(s));
  Attrs r = without_activation(a);
  r.set("kernel_size", Ints{s[2], s[3]});
  return r;
}

Tensor backward_data(const Tensor& grad, const Tensor& w, const Tensor& x_like, const Attrs& a) {
  static const OpDef& op = op_def("conv2d_backward_data");
  return call_op1(op, {grad, w, x_like}, without_activation(a));
}

Tensor backward_weight(const Tensor& x, const Tensor& grad, const Tensor& w_like, const Attrs& a) {
  static const OpDef& op = op_def("conv2d_backward_weight");
  return call_op1(op, {x, grad}, with_kernel_size(a, w_like));
}

Tensor conv_no_bias(const Tensor& x, const Tensor& w, const Attrs& a) {
  static const OpDef& op = op_def("conv2d");
  return call_op1(op, {x, w}, without_activation(a));
}

Grads grad_conv2d(G g) {
  Tensor go = g.grad_output(0);
  if (g.attrs().get<std::string>("activation", "none") == "relu") {
    static const OpDef& relu_grad = op_def("relu_grad");  // y > 0 exactly where the input of relu was
    go = call_op1(relu_grad, {g.output(0), go});
  }
  const Tensor &x = g.input(0), &w = g.input(1);
  Grads r(g.num_inputs());
  if (g.needs_input_grad(0)) r[0] = backward_data(go, w, x, g.attrs());
  if (g.needs_input_grad(1)) r[1] = backward_weight(x, go, w, g.attrs());
  if (g.num_inputs() == 3 && g.needs_input_grad(2)) r[2] = sum(go, {0, 2, 3});
  return r;
}

// dx = backward_data(grad, w) is bilinear in (grad, w): for an incoming
// gradient u of dx, d/dgrad = conv2d(u, w) and d/dw = backward_weight(u, grad).
Grads grad_conv2d_backward_data(G g) {
  const Tensor &grad = g.input(0), &w = g.input(1);
  const Tensor& u = g.grad_output(0);
  Grads r(3);
  if (g.needs_input_grad(0)) r[0] = conv_no_bias(u, w, g.attrs());
  if (g.needs_input_grad(1)) r[1] = backward_weight(u, grad, w, g.attrs());
  return r;
}

// dw = backward_weight(x, grad): for an incoming gradient v of dw,
// d/dx = backward_data(grad, v) and d/dgrad = conv2d(x, v).
Grads grad_conv2d_backward_weight(G g) {
  const Tensor &x = g.input(0), &grad = g.input(1);
  const Tensor& v = g.grad_output(0);
  Grads r(2);
  if (g.needs_input_grad(0)) r[0] = backward_data(grad, v, x, g.attrs());
  if (g.needs_input_grad(1)) r[1] = conv_no_bias(x, v, g.attrs());
  return r;
}

// --------------------------------------------------------------- pooling

struct PoolAttrs {
  Ints kernel, stride, padding;
  bool ceil_mode;
  Ints dilation{1, 1};  // max pooling only
};

PoolAttrs pool_attrs(const Attrs& a, const std::string& op) {
  PoolAttrs p{pair_attr(a, op, "kernel_size", 1), a.get<Ints>("stride"), pair_attr(a, op, "padding", 0),
              a.get<bool>("ceil_mode")};
  if (a.has("dilation")) p.dilation = pair_attr(a, op, "dilation", 1);
  if (a.has("divisor_override"))
    NDF_CHECK(a.get<int64_t>("divisor_override") >= 0, ValueError, "[", op, "] divisor_override must be >= 0 "
              "(0: divide by the window's size), got ", a.get<int64_t>("divisor_override"));
  if (p.stride.empty()) p.stride = p.kernel;  // PyTorch's stride=None
  else p.stride = pair_attr(a, op, "stride", 1);
  for (int d = 0; d < 2; ++d)
    NDF_CHECK(2 * p.padding[d] <= p.kernel[d], ValueError, "[", op, "] padding ", shape_str(p.padding),
              " must be at most half the kernel size ", shape_str(p.kernel), " in each dim");
  return p;
}

// PyTorch's pooling_output_shape: the last window must start inside the
// input or its left padding, or it is dropped (ceil_mode only).
int64_t pool_out_dim(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  if (in < 0) return -1;
  int64_t span = in + 2 * p - k;
  int64_t out = (span + (ceil_mode ? s - 1 : 0)) / s + 1;
  if (span < 0) return 0;  // reported by the caller
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

Shape pool_output_shape(const std::string& op, const Shape& x, const PoolAttrs& p) {
  Shape y{x[0], x[1], -1, -1};
  for (int d = 0; d < 2; ++d) {
    if (x[2 + d] < 0) continue;
    int64_t padded = x[2 + d] + 2 * p.padding[d];
    const int64_t span = p.dilation[d] * (p.kernel[d] - 1) + 1;  // what a dilated window covers
    NDF_CHECK(span <= padded, ShapeError, "[", op, "] kernel ", shape_str(p.kernel),
              p.dilation == Ints{1, 1} ? "" : str_cat(" with dilation ", shape_str(p.dilation)),
              " is larger than the padded input ", x[2] + 2 * p.padding[0], "x", x[3] + 2 * p.padding[1],
              " (input shape ", shape_str(x), ", padding ", shape_str(p.padding), ")");
    y[2 + d] = pool_out_dim(x[2 + d], span, p.stride[d], p.padding[d], p.ceil_mode);
  }
  return y;
}

std::vector<TensorMeta> infer_pool(const InferContext& c) {
  const std::string& op = c.op.name();
  const TensorMeta& x = c.input(0);
  check_nchw(op, x, "input");
  check_float(op, x, "input");
  Shape y = pool_output_shape(op, x.shape, pool_attrs(c.op.complete_attrs(c.attrs), op));
  return {TensorMeta{y, x.dtype, x.device}};
}

// max_pool2d_indices: the shape of max_pool2d's output, i64.
std::vector<TensorMeta> infer_pool_indices(const InferContext& c) {
  std::vector<TensorMeta> y = infer_pool(c);
  y[0].dtype = DType::i64;
  return y;
}

// Backward ops take (x, grad); grad has the forward output's shape.
std::vector<TensorMeta> infer_pool_backward(const InferContext& c) {
  const std::string& op = c.op.name();
  const TensorMeta &x = c.input(0), &g = c.input(1);
  check_nchw(op, x, "input");
  check_nchw(op, g, "grad");
  check_float(op, g, "grad");
  Shape y = pool_output_shape(op, x.shape, pool_attrs(c.op.complete_attrs(c.attrs), op));
  bool ok = true;
  for (int d = 0; d < 4; ++d) ok = ok && dims_match(y[d], g.shape[d]);
  NDF_CHECK(ok, ShapeError, "[", op, "] grad has shape ", shape_str(g.shape),
            " but pooling the input of shape ", shape_str(x.shape), " gives ", shape_str(y));
  return {TensorMeta{x.shape, g.dtype, g.device}};
}

OpDef& pool_op(OpRegistry& r, const char* name, const char* doc) {
  return r.add(OpDef(name).input("x").output("y").doc(doc)
                   .attr("kernel_size", AttrType::Ints)
                   .attr("stride", AttrType::Ints, Ints{})
                   .attr("padding", AttrType::Ints, Ints{0, 0})
                   .attr("ceil_mode", AttrType::Bool, false)
                   .infer(infer_pool));
}

OpDef& pool_backward_op(OpRegistry& r, const char* name, const char* doc) {
  return r.add(OpDef(name).input("x").input("grad").output("dx").doc(doc)
                   .attr("kernel_size", AttrType::Ints)
                   .attr("stride", AttrType::Ints, Ints{})
                   .attr("padding", AttrType::Ints, Ints{0, 0})
                   .attr("ceil_mode", AttrType::Bool, false)
                   .infer(infer_pool_backward));
}

OpDef& with_conv_attrs(OpDef& d) {
  return d.attr("stride", AttrType::Ints, Ints{1, 1})
      .attr("padding", AttrType::Ints, Ints{0, 0})
      .attr("dilation", AttrType::Ints, Ints{1, 1})
      .attr("groups", AttrType::Int, int64_t{1});
}

}  // namespace

void register_conv_ops(OpRegistry& r) {
  // NOTE: conv2d saves its output for the relu mask; with activation "none"
  // the tape holds it too, which costs nothing in the usual net where the
  // next op (relu, pooling) keeps it alive anyway.
  with_conv_attrs(r.add(OpDef("conv2d").input("x").input("weight").variadic_input("bias", 0)
                            .output("y")
                            .doc("2-d cross-correlation of x [N, C, H, W] with weight [O, C/groups, kh, kw], "
                                 "plus an optional bias [O], then `activation` ('none' or 'relu')")
                            .attr("activation", AttrType::String, std::string("none"))
                            .promote_inputs()
                            .saves({0, 1}, {0})
                            .infer(infer_conv2d)
                            .grad(grad_conv2d)));
  with_conv_attrs(r.add(OpDef("conv2d_backward_data").input("grad").input("weight").input("input_like")
                            .output("dx")
                            .doc("gradient of conv2d's input: the transposed convolution of grad with "
                                 "weight, shaped like input_like (whose values are not read)")
                            .promote_inputs({0, 1})
                            .saves({0, 1}, {})
                            .infer(infer_conv2d_backward_data)
                            .grad(grad_conv2d_backward_data)));
  with_conv_attrs(r.add(OpDef("conv2d_backward_weight").input("x").input("grad").output("dw")
                            .doc("gradient of conv2d's weight [O, C/groups, kernel_size...] from its "
                                 "input x and output gradient grad")
                            .attr("kernel_size", AttrType::Ints)
                            .promote_inputs()
                            .infer(infer_conv2d_backward_weight)
                            .grad(grad_conv2d_backward_weight)));

  pool_op(r, "max_pool2d", "maximum over kernel_size windows of each plane of x [N, C, H, W]; "
                           "padding counts as -inf; dilation spaces the window's taps")
      .attr("dilation", AttrType::Ints, Ints{1, 1})
      .grad([](G g) {
        static const OpDef& op = op_def("max_pool2d_backward");
        return Grads{call_op1(op, {g.input(0), g.grad_output(0)}, g.attrs())};
      });
  pool_op(r, "avg_pool2d", "mean over kernel_size windows of each plane of x [N, C, H, W]; "
                           "count_include_pad: padding counts in the divisor; divisor_override > 0: "
                           "every window's sum is divided by it instead")
      .attr("count_include_pad", AttrType::Bool, true)
      .attr("divisor_override", AttrType::Int, int64_t{0})
      .grad([](G g) {
        static const OpDef& op = op_def("avg_pool2d_backward");
        return Grads{call_op1(op, {g.input(0), g.grad_output(0)}, g.attrs())};
      });
  // Not differentiable (integer output), like argmax.
  r.add(OpDef("max_pool2d_indices").input("x").output("indices")
            .doc("where max_pool2d's maxima come from: per output, the flat index h * W + w of its window's "
                 "first maximum in x's plane (torch's return_indices; max_unpool2d's input)")
            .attr("kernel_size", AttrType::Ints)
            .attr("stride", AttrType::Ints, Ints{})
            .attr("padding", AttrType::Ints, Ints{0, 0})
            .attr("ceil_mode", AttrType::Bool, false)
            .attr("dilation", AttrType::Ints, Ints{1, 1})
            .infer(infer_pool_indices));
  pool_backward_op(r, "max_pool2d_backward",
                   "gradient of max_pool2d: grad routed to the first maximum of each window of x "
                   "(recomputed from x)")
      .attr("dilation", AttrType::Ints, Ints{1, 1})
      .promote_inputs();
  // Linear in grad: its own gradient is avg_pool2d of the incoming one.
  pool_backward_op(r, "avg_pool2d_backward",
                   "gradient of avg_pool2d: grad spread evenly over each window; x gives only the shape")
      .attr("count_include_pad", AttrType::Bool, true)
      .attr("divisor_override", AttrType::Int, int64_t{0})
      .saves({}, {})
      .grad([](G g) {
        static const OpDef& op = op_def("avg_pool2d");
        return Grads{Tensor(), call_op1(op, {g.grad_output(0)}, g.attrs())};
      });
}

// ------------------------------------------------------------------ the API

namespace {
Ints ints(Size2 s) { return Ints{s.h, s.w}; }
}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2 stride, Size2 padding,
              Size2 dilation, int64_t groups, const std::string& activation) {
  static const OpDef& op = op_def("conv2d");
  Attrs a{{"stride", ints(stride)}, {"padding", ints(padding)}, {"dilation", ints(dilation)},
          {"groups", groups}, {"activation", activation}};
  if (bias.defined()) return call_op1(op, {x, weight, bias}, a);
  return call_op1(op, {x, weight}, a);
}

Tensor max_pool2d(const Tensor& x, Size2 kernel_size, std::optional<Size2> stride, Size2 padding,
                  bool ceil_mode, Size2 dilation) {
  static const OpDef& op = op_def("max_pool2d");
  return call_op1(op, {x}, Attrs{{"kernel_size", ints(kernel_size)},
                                 {"stride", stride ? ints(*stride) : Ints{}},
                                 {"padding", ints(padding)}, {"ceil_mode", ceil_mode},
                                 {"dilation", ints(dilation)}});
}

Tensor max_pool2d_indices(const Tensor& x, Size2 kernel_size, std::optional<Size2> stride, Size2 padding,
                          bool ceil_mode, Size2 dilation) {
  static const OpDef& op = op_def("max_pool2d_indices");
  return call_op1(op, {x}, Attrs{{"kernel_size", ints(kernel_size)},
                                 {"stride", stride ? ints(*stride) : Ints{}},
                                 {"padding", ints(padding)}, {"ceil_mode", ceil_mode},
                                 {"dilation", ints(dilation)}});
}

Tensor avg_pool2d(const Tensor& x, Size2 kernel_size, std::optional<Size2> stride, Size2 padding,
                  bool ceil_mode, bool count_include_pad, int64_t divisor_override) {
  static const OpDef& op = op_def("avg_pool2d");
  return call_op1(op, {x}, Attrs{{"kernel_size", ints(kernel_size)},
                                 {"stride", stride ? ints(*stride) : Ints{}},
                                 {"padding", ints(padding)}, {"ceil_mode", ceil_mode},
                                 {"count_include_pad", count_include_pad},
                                 {"divisor_override", divisor_override}});
}

}  // namespace ndflow
