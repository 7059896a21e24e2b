// Normalization and embedding (PyTorch semantics): batch_norm,
// batch_norm_inference, layer_norm, embedding, their fused backward ops, and
// batch_norm_update_stats, the in-place update of the running statistics.
//
// Batch norm views x [N, C, *] as [N, C, S] and normalizes each channel over
// its N*S values. Training and inference are two ops:
//   batch_norm(x, [weight, bias]) -> y, mean, var   batch statistics (biased var)
//   batch_norm_inference(x, mean, var, [weight, bias]) -> y
// The running statistics are Variables (buffers) that only
// batch_norm_update_stats writes (OpDef::mutates), so in a traced step the
// update is a graph node like an optimizer update, and the tape never saves a
// tensor that the update then bumps. batch_norm_backward gives dx, dweight
// and dbias in one pass over (grad, x) per channel; with the gradients of the
// batch statistics as two more inputs (zeros unless something downstream
// read mean or var) the training op is differentiable in all its outputs.
//
// layer_norm normalizes over the trailing normalized_shape dims; its
// backward recomputes the row statistics from x (the row is read anyway)
// instead of keeping them. embedding gathers rows of weight [V, D];
// embedding_backward scatter-adds the gradient rows into zeros [V, D], so only
// the rows that were looked up are nonzero, and never into padding_idx.
//
// Backward ops are not differentiable themselves (no second derivatives of
// batch_norm / layer_norm), except embedding_backward, which is linear.
#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow {

namespace {

using G = const GradContext&;
using Grads = std::vector<Tensor>;
using Ints = std::vector<int64_t>;

bool dims_match(int64_t a, int64_t b) { return a == b || a == -1 || b == -1; }

bool shapes_match(const Shape& a, const Shape& b) {
  if (a.size() != b.size()) return false;
  for (size_t d = 0; d < a.size(); ++d)
    if (!dims_match(a[d], b[d])) return false;
  return true;
}

void check_float(const std::string& op, const TensorMeta& t, const char* what) {
  NDF_CHECK(t.dtype == DType::f32 || t.dtype == DType::f64, TypeError, "[", op, "] ", what,
            " must be f32 or f64, got ", dtype_name(t.dtype), " (shape ", shape_str(t.shape), ")");
}

// ---------------------------------------------------------------- batch norm

// x [N, C, *]: returns C (-1 when unknown).
int64_t bn_channels(const std::string& op, const TensorMeta& x, const char* what = "input") {
  NDF_CHECK(x.shape.size() >= 2, ShapeError, "[", op, "] ", what,
            " must have at least 2 dims [N, C, ...], got shape ", shape_str(x.shape));
  check_float(op, x, what);
  return x.shape[1];
}

// A per-channel vector [C].
void check_channel_vector(const std::string& op, const TensorMeta& t, const char* what, int64_t C,
                          const Shape& x) {
  NDF_CHECK(t.shape.size() == 1 && dims_match(t.shape[0], C), ShapeError, "[", op, "] ", what,
            " must have shape [", C, "] (one value per channel), got ", shape_str(t.shape),
            " (input shape ", shape_str(x), ")");
}

// Values per channel, N * S (-1 when unknown).
int64_t bn_count(const Shape& x) {
  int64_t n = 1;
  for (size_t d = 0; d < x.size(); ++d) {
    if (d == 1) continue;
    if (x[d] < 0) return -1;
    n *= x[d];
  }
  return n;
}

// Optional affine inputs from `first` on: none, or weight and bias.
void check_affine(const InferContext& c, size_t first, int64_t C) {
  const std::string& op = c.op.name();
  size_t n = c.inputs.size() - first;
  NDF_CHECK(n == 0 || n == 2, ValueError, "[", op, "] takes weight and bias together or neither, got ", n,
            " affine input", n == 1 ? "" : "s", " (pass ones/zeros for the missing one)");
  if (n == 2) {
    check_channel_vector(op, c.input(first), "weight", C, c.input(0).shape);
    check_channel_vector(op, c.input(first + 1), "bias", C, c.input(0).shape);
  }
}

void check_eps(const std::string& op, const Attrs& a) {
  double eps = a.get<double>("eps");
  NDF_CHECK(eps >= 0, ValueError, "[", op, "] eps must be >= 0, got ", eps);
}

std::vector<TensorMeta> infer_batch_norm(const InferContext& c) {
  const std::string& op = c.op.name();
  check_eps(op, c.op.complete_attrs(c.attrs));
  const TensorMeta& x = c.input(0);
  int64_t C = bn_channels(op, x);
  check_affine(c, 1, C);
  int64_t n = bn_count(x.shape);
  NDF_CHECK(n != 1 && n != 0, ValueError, "[", op, "] training needs more than one value per channel "
            "to compute batch statistics, got input shape ", shape_str(x.shape),
            " (use eval mode, or a larger batch)");
  TensorMeta stat{Shape{C}, x.dtype, x.device};
  return {x, stat, stat};
}

std::vector<TensorMeta> infer_batch_norm_inference(const InferContext& c) {
  const std::string& op = c.op.name();
  check_eps(op, c.op.complete_attrs(c.attrs));
  const TensorMeta& x = c.input(0);
  int64_t C = bn_channels(op, x);
  check_channel_vector(op, c.input(1), "mean", C, x.shape);
  check_channel_vector(op, c.input(2), "var", C, x.shape);
  check_affine(c, 3, C);
  return {x};
}

// batch_norm_backward(grad, x, mean, var, weight, [g_mean, g_var]).
std::vector<TensorMeta> infer_batch_norm_backward(const InferContext& c) {
  const std::string& op = c.op.name();
  Attrs a = c.op.complete_attrs(c.attrs);
  check_eps(op, a);
  const TensorMeta &g = c.input(0), &x = c.input(1);
  int64_t C = bn_channels(op, x);
  NDF_CHECK(shapes_match(g.shape, x.shape), ShapeError, "[", op, "] grad has shape ", shape_str(g.shape),
            " but the input has shape ", shape_str(x.shape));
  check_channel_vector(op, c.input(2), "mean", C, x.shape);
  check_channel_vector(op, c.input(3), "var", C, x.shape);
  check_channel_vector(op, c.input(4), "weight", C, x.shape);
  size_t extra = c.inputs.size() - 5;
  NDF_CHECK(extra == 0 || extra == 2, ValueError, "[", op, "] takes the gradients of the batch mean "
            "and var together or neither, got ", extra, " of them");
  if (extra == 2) {
    NDF_CHECK(a.get<bool>("training"), ValueError, "[", op, "] g_mean and g_var are gradients of batch "
              "statistics, which exist only with training = true");
    check_channel_vector(op, c.input(5), "g_mean", C, x.shape);
    check_channel_vector(op, c.input(6), "g_var", C, x.shape);
  }
  TensorMeta stat{Shape{C}, x.dtype, x.device};
  return {x, stat, stat};
}

// batch_norm_update_stats(running_mean, running_var, mean, var, x_like).
std::vector<TensorMeta> infer_update_stats(const InferContext& c) {
  const std::string& op = c.op.name();
  double m = c.op.complete_attrs(c.attrs).get<double>("momentum");
  NDF_CHECK(m >= 0 && m <= 1, ValueError, "[", op, "] momentum must be in [0, 1], got ", m);
  const TensorMeta& x = c.input(4);
  NDF_CHECK(x.shape.size() >= 2, ShapeError, "[", op, "] x_like must have at least 2 dims [N, C, ...], got "
            "shape ", shape_str(x.shape));
  int64_t C = x.shape[1];
  const char* names[] = {"running_mean", "running_var", "mean", "var"};
  for (size_t i = 0; i < 4; ++i) {
    check_float(op, c.input(i), names[i]);
    check_channel_vector(op, c.input(i), names[i], C, x.shape);
  }
  int64_t n = bn_count(x.shape);
  NDF_CHECK(n != 1 && n != 0, ValueError, "[", op, "] the unbiased variance needs more than one value per "
            "channel, got input shape ", shape_str(x.shape));
  return {};
}

Tensor bn_backward(const Tensor& g, const Tensor& x, const Tensor& mean, const Tensor& var,
                   const Tensor& weight, const Tensor& g_mean, const Tensor& g_var, double eps,
                   bool training, std::vector<Tensor>* dw_db) {
  static const OpDef& op = op_def("batch_norm_backward");
  Tensor w = weight.defined() ? weight : ones_like(mean);
  Attrs a{{"eps", eps}, {"training", training}};
  std::vector<Tensor> outs = g_mean.defined() ? call_op(op, std::vector<Tensor>{g, x, mean, var, w, g_mean, g_var}, a)
                                              : call_op(op, std::vector<Tensor>{g, x, mean, var, w}, a);
  *dw_db = {outs[1], outs[2]};
  return outs[0];
}

Grads grad_batch_norm(G g) {
  bool affine = g.num_inputs() == 3;
  std::vector<Tensor> dw_db;
  Tensor dx = bn_backward(g.grad_output(0), g.input(0), g.output(1), g.output(2),
                          affine ? g.input(1) : Tensor(), g.grad_output(1), g.grad_output(2),
                          g.attrs().get<double>("eps", 1e-5), true, &dw_db);
  Grads r{dx};
  if (affine) r.insert(r.end(), dw_db.begin(), dw_db.end());
  return r;
}

Grads grad_batch_norm_inference(G g) {
  bool affine = g.num_inputs() == 5;
  const Tensor &mean = g.input(1), &var = g.input(2);
  Tensor w = affine ? g.input(3) : Tensor();
  double eps = g.attrs().get<double>("eps", 1e-5);
  std::vector<Tensor> dw_db;
  Tensor dx = bn_backward(g.grad_output(0), g.input(0), mean, var, w, Tensor(), Tensor(), eps, false, &dw_db);
  Grads r{dx, Tensor(), Tensor()};
  if (g.needs_input_grad(1) || g.needs_input_grad(2)) {
    // y = (x - mean) * invstd * w + b: dmean = -w * invstd * dbias,
    // dvar = -1/2 * w * invstd^2 * dweight (dweight = sum of grad * xhat).
    Tensor invstd = rsqrt(var + eps);
    Tensor scale = affine ? w * invstd : invstd;
    if (g.needs_input_grad(1)) r[1] = -(scale * dw_db[1]);
    if (g.needs_input_grad(2)) r[2] = scale * invstd * dw_db[0] * -0.5;
  }
  if (affine) r.insert(r.end(), dw_db.begin(), dw_db.end());
  return r;
}

// ---------------------------------------------------------------- layer norm

// The normalized trailing dims of x, checked against the attribute.
Ints ln_shape(const std::string& op, const TensorMeta& x, const Attrs& a) {
  Ints ns = a.get<Ints>("normalized_shape");
  NDF_CHECK(!ns.empty(), ValueError, "[", op, "] normalized_shape must name at least one dim");
  for (int64_t d : ns)
    NDF_CHECK(d >= 1, ValueError, "[", op, "] normalized_shape must be positive, got ", shape_str(ns));
  bool ok = ns.size() <= x.shape.size();
  for (size_t i = 0; ok && i < ns.size(); ++i) ok = dims_match(x.shape[x.shape.size() - ns.size() + i], ns[i]);
  NDF_CHECK(ok, ShapeError, "[", op, "] input of shape ", shape_str(x.shape),
            " does not end with normalized_shape ", shape_str(ns));
  return ns;
}

void check_ln_param(const std::string& op, const TensorMeta& t, const char* what, const Ints& ns) {
  NDF_CHECK(shapes_match(t.shape, Shape(ns)), ShapeError, "[", op, "] ", what, " must have the normalized "
            "shape ", shape_str(ns), ", got ", shape_str(t.shape));
}

std::vector<TensorMeta> infer_layer_norm(const InferContext& c) {
  const std::string& op = c.op.name();
  Attrs a = c.op.complete_attrs(c.attrs);
  check_eps(op, a);
  const TensorMeta& x = c.input(0);
  check_float(op, x, "input");
  Ints ns = ln_shape(op, x, a);
  size_t n = c.inputs.size() - 1;
  NDF_CHECK(n == 0 || n == 2, ValueError, "[", op, "] takes weight and bias together or neither, got ", n,
            " affine input", n == 1 ? "" : "s");
  if (n == 2) {
    check_ln_param(op, c.input(1), "weight", ns);
    check_ln_param(op, c.input(2), "bias", ns);
  }
  return {x};
}

// layer_norm_backward(grad, x, [weight]) -> dx, dweight, dbias.
std::vector<TensorMeta> infer_layer_norm_backward(const InferContext& c) {
  const std::string& op = c.op.name();
  Attrs a = c.op.complete_attrs(c.attrs);
  check_eps(op, a);
  const TensorMeta &g = c.input(0), &x = c.input(1);
  check_float(op, x, "input");
  NDF_CHECK(shapes_match(g.shape, x.shape), ShapeError, "[", op, "] grad has shape ", shape_str(g.shape),
            " but the input has shape ", shape_str(x.shape));
  Ints ns = ln_shape(op, x, a);
  if (c.inputs.size() == 3) check_ln_param(op, c.input(2), "weight", ns);
  TensorMeta p{Shape(ns), x.dtype, x.device};
  return {x, p, p};
}

Grads grad_layer_norm(G g) {
  static const OpDef& op = op_def("layer_norm_backward");
  bool affine = g.num_inputs() == 3;
  Attrs a{{"normalized_shape", g.attrs().get<Ints>("normalized_shape")}, {"eps", g.attrs().get<double>("eps", 1e-5)}};
  std::vector<Tensor> outs = affine ? call_op(op, std::vector<Tensor>{g.grad_output(0), g.input(0), g.input(1)}, a)
                                    : call_op(op, std::vector<Tensor>{g.grad_output(0), g.input(0)}, a);
  if (!affine) return {outs[0]};
  return outs;
}

// ----------------------------------------------------------------- embedding

void check_indices(const std::string& op, const TensorMeta& t) {
  NDF_CHECK(t.dtype == DType::i32 || t.dtype == DType::i64, TypeError, "[", op, "] indices must be i32 or "
            "i64, got ", dtype_name(t.dtype), " (shape ", shape_str(t.shape), ")");
}

void check_padding_idx(const std::string& op, int64_t pad, int64_t V) {
  NDF_CHECK(pad >= -1 && (V < 0 || pad < V), ValueError, "[", op, "] padding_idx must be in [0, ", V,
            ") or -1 for none, got ", pad);
}

std::vector<TensorMeta> infer_embedding(const InferContext& c) {
  const std::string& op = c.op.name();
  const TensorMeta &w = c.input(0), &idx = c.input(1);
  NDF_CHECK(w.shape.size() == 2, ShapeError, "[", op, "] weight must be 2-d [num_embeddings, dim], got shape ",
            shape_str(w.shape));
  check_float(op, w, "weight");
  check_indices(op, idx);
  check_padding_idx(op, c.op.complete_attrs(c.attrs).get<int64_t>("padding_idx"), w.shape[0]);
  Shape y = idx.shape;
  y.push_back(w.shape[1]);
  return {TensorMeta{y, w.dtype, w.device}};
}

// embedding_backward(grad [*idx, D], indices) -> [num_rows, D].
std::vector<TensorMeta> infer_embedding_backward(const InferContext& c) {
  const std::string& op = c.op.name();
  Attrs a = c.op.complete_attrs(c.attrs);
  const TensorMeta &g = c.input(0), &idx = c.input(1);
  check_float(op, g, "grad");
  check_indices(op, idx);
  int64_t V = a.get<int64_t>("num_rows");
  NDF_CHECK(V >= 0, ValueError, "[", op, "] num_rows must be >= 0, got ", V);
  check_padding_idx(op, a.get<int64_t>("padding_idx"), V);
  bool ok = g.shape.size() == idx.shape.size() + 1;
  for (size_t d = 0; ok && d < idx.shape.size(); ++d) ok = dims_match(g.shape[d], idx.shape[d]);
  NDF_CHECK(ok, ShapeError, "[", op, "] grad must have shape indices.shape + [dim] = ",
            shape_str(idx.shape), " + [dim], got ", shape_str(g.shape));
  return {TensorMeta{Shape{V, g.shape.back()}, g.dtype, g.device}};
}

Tensor embedding_backward_op(const Tensor& grad, const Tensor& indices, int64_t num_rows, int64_t padding_idx) {
  static const OpDef& op = op_def("embedding_backward");
  return call_op1(op, {grad, indices}, Attrs{{"num_rows", num_rows}, {"padding_idx", padding_idx}});
}

Tensor embedding_op(const Tensor& weight, const Tensor& indices, int64_t padding_idx) {
  static const OpDef& op = op_def("embedding");
  return call_op1(op, {weight, indices}, Attrs{{"padding_idx", padding_idx}});
}

Grads grad_embedding(G g) {
  const Tensor& w = g.input(0);
  int64_t V = w.shape()[0];
  NDF_CHECK(V >= 0, ValueError, "[embedding] the weight gradient needs the number of rows, but the weight "
            "has shape ", shape_str(w.shape()));
  return {embedding_backward_op(g.grad_output(0), g.input(1), V, g.attrs().get<int64_t>("padding_idx", -1)),
          Tensor()};
}

// embedding_backward is linear in grad; its adjoint looks rows up again,
// except that the padding row received nothing and so passes nothing back.
Grads grad_embedding_backward(G g) {
  Tensor u = g.grad_output(0);
  int64_t pad = g.attrs().get<int64_t>("padding_idx", -1);
  if (pad >= 0) {
    int64_t V = g.attrs().get<int64_t>("num_rows");
    std::vector<double> keep(static_cast<size_t>(V), 1.0);
    keep[static_cast<size_t>(pad)] = 0.0;
    u = u * tensor(keep, {V, 1}).to(u.dtype());
  }
  return {embedding_op(u, g.input(1), -1), Tensor()};
}

}  // namespace

void register_norm_ops(OpRegistry& r) {
  const auto F = AttrType::Float;
  r.add(OpDef("batch_norm").input("x").variadic_input("affine", 0).output("y").output("mean").output("var")
            .doc("training-mode batch normalization of x [N, C, *] per channel over N and the trailing dims, "
                 "then * weight + bias when given (affine: weight and bias [C], or neither); also returns "
                 "the batch mean and biased variance [C]")
            .attr("eps", F, 1e-5)
            .promote_inputs()
            .saves({0, 1}, {1, 2})
            .infer(infer_batch_norm)
            .grad(grad_batch_norm));
  r.add(OpDef("batch_norm_inference").input("x").input("mean").input("var").variadic_input("affine", 0)
            .output("y")
            .doc("(x - mean) / sqrt(var + eps) * weight + bias per channel of x [N, C, *], with given "
                 "statistics (the running ones in eval mode); affine: weight and bias [C], or neither")
            .attr("eps", F, 1e-5)
            .promote_inputs()
            .saves({0, 1, 2, 3}, {})
            .infer(infer_batch_norm_inference)
            .grad(grad_batch_norm_inference));
  r.add(OpDef("batch_norm_backward").input("grad").input("x").input("mean").input("var").input("weight")
            .variadic_input("stat_grads", 0)
            .output("dx").output("dweight").output("dbias")
            .doc("gradients of batch_norm (training = true: mean/var are the batch statistics, and the "
                 "optional stat_grads g_mean, g_var [C] are gradients reaching them) or of "
                 "batch_norm_inference (training = false) in one pass")
            .attr("eps", F, 1e-5)
            .attr("training", AttrType::Bool, true)
            .promote_inputs()
            .infer(infer_batch_norm_backward));
  r.add(OpDef("batch_norm_update_stats").input("running_mean").input("running_var").input("mean").input("var")
            .input("x_like").mutates({0, 1})
            .doc("running_mean <- (1 - momentum) * running_mean + momentum * mean, and running_var likewise "
                 "with the unbiased var * n / (n - 1), n = values per channel of x_like (whose values are "
                 "not read); in place")
            .attr("momentum", F, 0.1)
            .saves({}, {})
            .infer(infer_update_stats));

  r.add(OpDef("layer_norm").input("x").variadic_input("affine", 0).output("y")
            .doc("normalizes x over its trailing normalized_shape dims (mean 0, biased var 1, eps added to "
                 "the var), then * weight + bias of that shape when given")
            .attr("normalized_shape", AttrType::Ints)
            .attr("eps", F, 1e-5)
            .promote_inputs()
            .saves({0, 1}, {})
            .infer(infer_layer_norm)
            .grad(grad_layer_norm));
  r.add(OpDef("layer_norm_backward").input("grad").input("x").variadic_input("weight", 0)
            .output("dx").output("dweight").output("dbias")
            .doc("gradients of layer_norm in one pass over each row (the row statistics are recomputed from x)")
            .attr("normalized_shape", AttrType::Ints)
            .attr("eps", F, 1e-5)
            .promote_inputs()
            .infer(infer_layer_norm_backward));

  r.add(OpDef("embedding").input("weight").input("indices").output("y")
            .doc("rows of weight [V, D] at integer indices of any shape: y [*indices.shape, D]; the "
                 "gradient skips padding_idx (-1: none)")
            .attr("padding_idx", AttrType::Int, int64_t{-1})
            .saves({0, 1}, {})
            .infer(infer_embedding)
            .grad(grad_embedding));
  r.add(OpDef("embedding_backward").input("grad").input("indices").output("dweight")
            .doc("zeros [num_rows, D] with each row grad[i] added at indices[i], except at padding_idx")
            .attr("num_rows", AttrType::Int)
            .attr("padding_idx", AttrType::Int, int64_t{-1})
            .saves({1}, {})
            .infer(infer_embedding_backward)
            .grad(grad_embedding_backward));
}

// ------------------------------------------------------------------ the API

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum, double eps) {
  NDF_CHECK(running_mean.defined() == running_var.defined(), ValueError,
            "[batch_norm] pass running_mean and running_var together or neither");
  std::vector<Tensor> in{x};
  if (weight.defined() || bias.defined()) {
    in.push_back(weight.defined() ? weight : ones_like(bias));
    in.push_back(bias.defined() ? bias : zeros_like(weight));
  }
  if (!training) {
    NDF_CHECK(running_mean.defined(), ValueError, "[batch_norm] inference (training = false) needs "
              "running_mean and running_var");
    static const OpDef& op = op_def("batch_norm_inference");
    in.insert(in.begin() + 1, {running_mean, running_var});
    return call_op1(op, in, Attrs{{"eps", eps}});
  }
  static const OpDef& op = op_def("batch_norm");
  std::vector<Tensor> outs = call_op(op, in, Attrs{{"eps", eps}});
  if (running_mean.defined()) batch_norm_update_stats(running_mean, running_var, outs[1], outs[2], x, momentum);
  return outs[0];
}

void batch_norm_update_stats(const Tensor& running_mean, const Tensor& running_var, const Tensor& mean,
                             const Tensor& var, const Tensor& x_like, double momentum) {
  static const OpDef& op = op_def("batch_norm_update_stats");
  call_op(op, std::vector<Tensor>{running_mean, running_var, mean, var, x_like}, Attrs{{"momentum", momentum}});
}

Tensor layer_norm(const Tensor& x, const std::vector<int64_t>& normalized_shape, const Tensor& weight,
                  const Tensor& bias, double eps) {
  static const OpDef& op = op_def("layer_norm");
  Attrs a{{"normalized_shape", normalized_shape}, {"eps", eps}};
  if (!weight.defined() && !bias.defined()) return call_op1(op, {x}, a);
  return call_op1(op, {x, weight.defined() ? weight : ones_like(bias), bias.defined() ? bias : zeros_like(weight)},
                  a);
}

Tensor embedding(const Tensor& weight, const Tensor& indices, std::optional<int64_t> padding_idx) {
  int64_t pad = -1;
  if (padding_idx) {
    int64_t V = weight.shape().empty() ? -1 : weight.shape()[0];
    pad = *padding_idx < 0 && V >= 0 ? *padding_idx + V : *padding_idx;
    NDF_CHECK(pad >= 0 && (V < 0 || pad < V), ValueError, "[embedding] padding_idx ", *padding_idx,
              " is out of range for ", V, " embeddings (weight shape ", shape_str(weight.shape()), ")");
  }
  return embedding_op(weight, indices, pad);
}

Tensor embedding_backward(const Tensor& grad, const Tensor& indices, int64_t num_rows, int64_t padding_idx) {
  return embedding_backward_op(grad, indices, num_rows, padding_idx);
}

}  // namespace ndflow
