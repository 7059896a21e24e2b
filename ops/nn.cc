// Neural-network ops. softmax, log_softmax and cross_entropy are primitives
// with dedicated backward ops: a stable fused kernel beats its composition
// (exp/sum/div, or log_softmax + gather + mean) by a wide margin, most of all
// at training sizes like 128 x 10 where each extra op is pure overhead.
// mse_loss and dropout are compositions of other ops, so they need no kernels
// or gradients of their own.
#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow {

namespace {

using G = const GradContext&;
using Grads = std::vector<Tensor>;

// Output like input 0; checks that `axis` is valid for it.
std::vector<TensorMeta> infer_along_axis(const InferContext& c) {
  normalize_axis(c.attrs.get<int64_t>("axis", -1), static_cast<int64_t>(c.input(0).shape.size()),
                 c.op.name());
  return {c.input(0)};
}

// Backward ops take (y, g) of one shape.
std::vector<TensorMeta> infer_backward(const InferContext& c) {
  const Shape &y = c.input(0).shape, &g = c.input(1).shape;
  bool same = y.size() == g.size();
  for (size_t i = 0; same && i < y.size(); ++i) same = y[i] == g[i] || y[i] == -1 || g[i] == -1;
  NDF_CHECK(same, ShapeError, "[", c.op.name(), "] y has shape ", shape_str(y),
            " but grad has shape ", shape_str(g), "; they must be equal");
  return infer_along_axis(c);
}

OpDef& along_axis(OpRegistry& r, const char* name, const char* doc) {
  return r.add(OpDef(name).input("x").output("y").doc(doc)
                   .attr("axis", AttrType::Int, int64_t{-1})
                   .promote_inputs({}, true)
                   .infer(infer_along_axis));
}

OpDef& backward_op(OpRegistry& r, const char* name, const char* doc) {
  return r.add(OpDef(name).input("y").input("grad").output("dx").doc(doc)
                   .attr("axis", AttrType::Int, int64_t{-1})
                   .promote_inputs({}, true)
                   .infer(infer_backward));
}

Tensor reduce(const Tensor& loss, Reduction r) {
  switch (r) {
    case Reduction::Mean: return mean(loss);
    case Reduction::Sum: return sum(loss);
    case Reduction::None: return loss;
  }
  fail<ValueError>("invalid Reduction value ", static_cast<int>(r));
}

bool dims_match(int64_t a, int64_t b) { return a == b || a == -1 || b == -1; }

const char* reduction_name(Reduction r) {
  switch (r) {
    case Reduction::Mean: return "mean";
    case Reduction::Sum: return "sum";
    case Reduction::None: return "none";
  }
  fail<ValueError>("[cross_entropy] invalid Reduction value ", static_cast<int>(r));
}

// logits [N, C, d...] (or [C]) with integer labels [N, d...] (or []): the
// loss has the labels' shape, or is 0-d when reduced.
std::vector<TensorMeta> infer_cross_entropy(const InferContext& c) {
  const TensorMeta &x = c.input(0), &y = c.input(1);
  const Shape &ls = x.shape, &ys = y.shape;
  NDF_CHECK(is_floating(x.dtype), TypeError, "[cross_entropy] logits must be floating point, got ",
            dtype_name(x.dtype), " (shape ", shape_str(ls), ")");
  NDF_CHECK(is_integral(y.dtype), TypeError, "[cross_entropy] labels must be an integer tensor "
            "of class indices, got ", dtype_name(y.dtype), " (shape ", shape_str(ys), ")");
  bool ok = ls.size() == 1 ? ys.size() == 0
                           : ls.size() >= 2 && ys.size() == ls.size() - 1 && dims_match(ls[0], ys[0]);
  for (size_t i = 2; ok && i < ls.size(); ++i) ok = dims_match(ls[i], ys[i - 1]);
  NDF_CHECK(ok, ShapeError, "[cross_entropy] logits of shape ", shape_str(ls),
            " need labels of shape [N, d...] = logits' shape without the class axis 1 "
            "(or [] for logits [C]); got labels of shape ", shape_str(ys));
  std::string red = c.attrs.get<std::string>("reduction", "mean");
  NDF_CHECK(red == "mean" || red == "sum" || red == "none", ValueError,
            "[cross_entropy] reduction must be 'mean', 'sum' or 'none', got '", red, "'");
  return {TensorMeta{red == "none" ? ys : Shape{}, x.dtype, x.device}};
}

std::vector<TensorMeta> infer_cross_entropy_backward(const InferContext& c) {
  TensorMeta loss = infer_cross_entropy(c)[0];
  const Shape& g = c.input(2).shape;
  bool same = g.size() == loss.shape.size();
  for (size_t i = 0; same && i < g.size(); ++i) same = dims_match(g[i], loss.shape[i]);
  NDF_CHECK(same, ShapeError, "[cross_entropy_backward] grad has shape ", shape_str(g),
            " but the loss has shape ", shape_str(loss.shape));
  return {c.input(0)};
}

}  // namespace

void register_nn_ops(OpRegistry& r) {
  along_axis(r, "softmax", "exp(x - max) / sum(exp(x - max)) along `axis`")
      .saves({}, {0})
      .grad([](G g) {
        static const OpDef& op = op_def("softmax_backward");
        return Grads{call_op1(op, {g.output(0), g.grad_output(0)}, g.attrs())};
      });
  along_axis(r, "log_softmax", "x - max - log(sum(exp(x - max))) along `axis`")
      .saves({}, {0})
      .grad([](G g) {
        static const OpDef& op = op_def("log_softmax_backward");
        return Grads{call_op1(op, {g.output(0), g.grad_output(0)}, g.attrs())};
      });
  backward_op(r, "softmax_backward",
              "backward of softmax from its output y: y * (grad - sum(grad * y, axis))");
  backward_op(r, "log_softmax_backward",
              "backward of log_softmax from its output y: grad - exp(y) * sum(grad, axis)");

  r.add(OpDef("cross_entropy").input("logits").input("labels").output("loss")
            .doc("-log_softmax(logits, axis 1)[label] per sample, then 'mean', 'sum' or 'none'; "
                 "labels must lie in [0, C)")
            .attr("reduction", AttrType::String, std::string("mean"))
            .infer(infer_cross_entropy)
            .grad([](G g) {
              static const OpDef& op = op_def("cross_entropy_backward");
              return Grads{call_op1(op, {g.input(0), g.input(1), g.grad_output(0)}, g.attrs()),
                           Tensor()};
            }));
  r.add(OpDef("cross_entropy_backward").input("logits").input("labels").input("grad")
            .output("dlogits")
            .doc("backward of cross_entropy: (softmax(logits) - onehot(labels)) * grad, "
                 "divided by the sample count for 'mean'")
            .attr("reduction", AttrType::String, std::string("mean"))
            .promote_inputs({0, 2})
            .infer(infer_cross_entropy_backward));
}

// ------------------------------------------------------------------ the API

Tensor softmax(const Tensor& x, int64_t axis) {
  static const OpDef& op = op_def("softmax");
  return call_op1(op, {x}, Attrs{{"axis", axis}});
}

Tensor log_softmax(const Tensor& x, int64_t axis) {
  static const OpDef& op = op_def("log_softmax");
  return call_op1(op, {x}, Attrs{{"axis", axis}});
}

Tensor cross_entropy(const Tensor& logits, const Tensor& labels, Reduction reduction) {
  static const OpDef& op = op_def("cross_entropy");
  return call_op1(op, {logits, labels}, Attrs{{"reduction", std::string(reduction_name(reduction))}});
}

Tensor mse_loss(const Tensor& pred, const Tensor& target, Reduction reduction) {
  const Shape &p = pred.shape(), &t = target.shape();
  bool same = p.size() == t.size();
  for (size_t i = 0; same && i < p.size(); ++i) same = dims_match(p[i], t[i]);
  // NOTE: broadcasting is refused on purpose: pred [N,1] against target [N]
  // would silently average an N x N matrix of differences.
  NDF_CHECK(same, ShapeError, "[mse_loss] pred has shape ", shape_str(p), " but target has shape ",
            shape_str(t), "; they must be equal (reshape one of them)");
  NDF_CHECK(is_floating(pred.dtype()) || is_floating(target.dtype()), TypeError,
            "[mse_loss] needs floating-point inputs, got pred ", dtype_name(pred.dtype()),
            " and target ", dtype_name(target.dtype()));
  return reduce(square(sub(pred, target)), reduction);
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  NDF_CHECK(p >= 0.0 && p < 1.0, ValueError, "[dropout] p must be in [0, 1), got ", p);
  NDF_CHECK(is_floating(x.dtype()), TypeError, "[dropout] needs a floating-point tensor, got ",
            dtype_name(x.dtype()), " (shape ", shape_str(x.shape()), ")");
  if (!training || p == 0.0) return x;
  // The kept elements are scaled by 1/(1-p) so that the expectation is unchanged.
  Tensor mask = bernoulli(x.shape(), 1.0 - p, x.dtype(), gen);
  return mul(x, mul(mask, scalar(1.0 / (1.0 - p), x.dtype())));
}

}  // namespace ndflow
