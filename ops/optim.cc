// Fused optimizer updates (DESIGN.md §6: ApplySGD, ApplyMomentum, ApplyAdagrad,
// ApplyRMSProp, ApplyAdam). Each op rewrites its parameter and optimizer
// state in place in one pass (OpDef::mutates) with torch.optim's semantics,
// so an eager training loop and a compiled graph run the very same update.
//
// Input order is uniform: param, grad, slots..., [step], lr. Hyperparameters
// that a scheduler changes (lr) and the step count are tensors, not
// attributes, so a traced step captures them as Variables and never retraces
// (DESIGN.md §5, "Tracing and state"). The ops have no gradient and no type
// promotion: param, grad and the slots share one float dtype and one shape.
#include <cmath>

#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow {

namespace {

// Shapes equal, where a graph-mode -1 matches anything.
bool same_shape(const Shape& a, const Shape& b) {
  if (a.size() != b.size()) return false;
  for (size_t d = 0; d < a.size(); ++d)
    if (a[d] != b[d] && a[d] != -1 && b[d] != -1) return false;
  return true;
}

// One element (0-d, or every dim 1/unknown): the shape of lr and step.
bool one_element(const Shape& s) {
  for (int64_t d : s)
    if (d != 1 && d != -1) return false;
  return true;
}

// Validates one call's inputs against the shared schema conventions; every
// message names the op, the input and the shapes/dtypes involved.
class Checker {
 public:
  explicit Checker(const InferContext& c) : c_(c), op_(c.op.name()), param_(c.input(0)) {
    NDF_CHECK(param_.dtype == DType::f32 || param_.dtype == DType::f64, TypeError, "[", op_,
              "] param must be f32 or f64, got ", dtype_name(param_.dtype), " (shape ",
              shape_str(param_.shape), ")");
  }

  // A tensor that must match param exactly: grad and the slots.
  void dense(size_t i) const {
    const TensorMeta& t = c_.input(i);
    NDF_CHECK(t.dtype == param_.dtype, TypeError, "[", op_, "] ", name(i), " has dtype ",
              dtype_name(t.dtype), " but param has dtype ", dtype_name(param_.dtype),
              "; optimizer updates do not promote, cast ", name(i), " first");
    NDF_CHECK(same_shape(t.shape, param_.shape), ShapeError, "[", op_, "] ", name(i),
              " has shape ", shape_str(t.shape), " but param has shape ", shape_str(param_.shape));
  }

  // A slot that only some settings use (`why` names them). Unused, it may be
  // empty — callers need not allocate it — or param-shaped, and is left alone.
  void optional_slot(size_t i, bool used, const char* why) const {
    const TensorMeta& t = c_.input(i);
    bool empty = t.shape.size() == 1 && t.shape[0] == 0;
    if (!used && empty) {
      NDF_CHECK(t.dtype == param_.dtype, TypeError, "[", op_, "] ", name(i), " has dtype ",
                dtype_name(t.dtype), " but param has dtype ", dtype_name(param_.dtype));
      return;
    }
    NDF_CHECK(same_shape(t.shape, param_.shape), ShapeError, "[", op_, "] ", name(i),
              " has shape ", shape_str(t.shape), " but param has shape ", shape_str(param_.shape),
              used ? str_cat("; ", why, " needs it (e.g. zeros_like(param))")
                   : std::string("; pass an empty tensor (shape [0]) when it is unused"));
    dense(i);
  }

  // The update counter: a one-element i64 or f64 tensor the op increments.
  void step(size_t i) const {
    const TensorMeta& t = c_.input(i);
    NDF_CHECK(t.dtype == DType::i64 || t.dtype == DType::f64, TypeError, "[", op_,
              "] step must be an i64 (or f64) counter, got ", dtype_name(t.dtype));
    NDF_CHECK(one_element(t.shape), ShapeError, "[", op_, "] step must hold one element (0-d), got shape ",
              shape_str(t.shape));
  }

  // NOTE: lr may be f32 or f64 whatever param's dtype is: it is read once as a
  // double, and one scheduler Variable can then drive f32 and f64 parameters.
  void lr(size_t i) const {
    const TensorMeta& t = c_.input(i);
    NDF_CHECK(t.dtype == DType::f32 || t.dtype == DType::f64, TypeError, "[", op_,
              "] lr must be an f32 or f64 tensor, got ", dtype_name(t.dtype));
    NDF_CHECK(one_element(t.shape), ShapeError, "[", op_, "] lr must hold one element (0-d), got shape ",
              shape_str(t.shape), "; a per-element learning rate is not supported");
  }

 private:
  const std::string& name(size_t i) const { return c_.op.input_names()[i]; }
  const InferContext& c_;
  const std::string& op_;
  const TensorMeta& param_;
};

// Range checks on hyperparameters, as torch.optim's constructors make them.
// `!(x >= lo)` also rejects NaN.
void at_least(const Attrs& a, const std::string& op, const char* name, double lo) {
  double v = a.get<double>(name);
  NDF_CHECK(v >= lo, ValueError, "[", op, "] ", name, " must be >= ", lo, ", got ", v);
}
void in_unit_interval(const Attrs& a, const std::string& op, const char* name) {
  double v = a.get<double>(name);
  NDF_CHECK(v >= 0.0 && v < 1.0, ValueError, "[", op, "] ", name, " must be in [0, 1), got ", v);
}

// Builds an infer function: validate attributes and inputs, produce no outputs.
template <typename Validate>
InferFn no_outputs(Validate validate) {
  return [validate](const InferContext& c) {
    // complete_attrs rejects unknown names and wrong types and fills defaults,
    // so a typo'd hyperparameter fails here instead of silently defaulting.
    Attrs a = c.op.complete_attrs(c.attrs);
    Checker check(c);
    check.dense(1);  // grad
    validate(c, a, check);
    return std::vector<TensorMeta>{};
  };
}

const Tensor& or_empty(const Tensor& slot, const Tensor& param, Tensor& holder) {
  if (slot.defined() || !param.defined()) return slot;  // call_op reports an undefined param
  // A Variable, so that a graph may name it as an updated input (it is never written).
  holder = Tensor::empty(Shape{0}, param.dtype(), param.device());
  holder.mark_variable("unused_slot");
  return holder;
}

}  // namespace

void register_optim_ops(OpRegistry& r) {
  const auto F = AttrType::Float;
  const auto B = AttrType::Bool;

  r.add(OpDef("apply_sgd").input("param").input("grad").input("lr").mutates({0})
            .attr("weight_decay", F, 0.0)
            .doc("param -= lr * (grad + weight_decay * param), in place (torch.optim.SGD)")
            .infer(no_outputs([](const InferContext& c, const Attrs& a, const Checker& check) {
              at_least(a, c.op.name(), "weight_decay", 0.0);
              check.lr(2);
            })));

  // NOTE: torch.optim.SGD sets the buffer to the gradient on its first step
  // (not (1 - dampening) * grad); the op tells the first step by step == 0,
  // which is what makes dampening > 0 match PyTorch exactly.
  r.add(OpDef("apply_momentum").input("param").input("grad").input("velocity").input("step")
            .input("lr").mutates({0, 2, 3})
            .attr("momentum", F).attr("dampening", F, 0.0).attr("nesterov", B, false)
            .attr("weight_decay", F, 0.0)
            .doc("SGD with (Nesterov) momentum, in place, as torch.optim.SGD; velocity = grad on "
                 "the first step (step == 0) or with momentum 0, else momentum * velocity + "
                 "(1 - dampening) * grad")
            .infer(no_outputs([](const InferContext& c, const Attrs& a, const Checker& check) {
              const std::string& op = c.op.name();
              at_least(a, op, "momentum", 0.0);
              at_least(a, op, "weight_decay", 0.0);
              if (a.get<bool>("nesterov"))
                NDF_CHECK(a.get<double>("momentum") > 0 && a.get<double>("dampening") == 0, ValueError,
                          "[", op, "] nesterov needs momentum > 0 and dampening == 0, got momentum ",
                          a.get<double>("momentum"), " and dampening ", a.get<double>("dampening"));
              check.dense(2);
              check.step(3);
              check.lr(4);
            })));

  r.add(OpDef("apply_adagrad").input("param").input("grad").input("accum").input("step")
            .input("lr").mutates({0, 2, 3})
            .attr("eps", F, 1e-10).attr("weight_decay", F, 0.0).attr("lr_decay", F, 0.0)
            .doc("Adagrad, in place, as torch.optim.Adagrad: accum += g^2, param -= lr / (1 + "
                 "(step - 1) * lr_decay) * g / (sqrt(accum) + eps)")
            .infer(no_outputs([](const InferContext& c, const Attrs& a, const Checker& check) {
              const std::string& op = c.op.name();
              at_least(a, op, "eps", 0.0);
              at_least(a, op, "weight_decay", 0.0);
              at_least(a, op, "lr_decay", 0.0);
              check.dense(2);
              check.step(3);
              check.lr(4);
            })));

  r.add(OpDef("apply_rmsprop").input("param").input("grad").input("square_avg")
            .input("momentum_buffer").input("grad_avg").input("lr").mutates({0, 2, 3, 4})
            .attr("alpha", F, 0.99).attr("eps", F, 1e-8).attr("weight_decay", F, 0.0)
            .attr("momentum", F, 0.0).attr("centered", B, false)
            .doc("RMSprop, in place, as torch.optim.RMSprop; momentum_buffer is used when "
                 "momentum > 0 and grad_avg when centered (otherwise either may be empty)")
            .infer(no_outputs([](const InferContext& c, const Attrs& a, const Checker& check) {
              const std::string& op = c.op.name();
              at_least(a, op, "alpha", 0.0);
              at_least(a, op, "eps", 0.0);
              at_least(a, op, "weight_decay", 0.0);
              at_least(a, op, "momentum", 0.0);
              check.dense(2);
              check.optional_slot(3, a.get<double>("momentum") > 0, "momentum > 0");
              check.optional_slot(4, a.get<bool>("centered"), "centered");
              check.lr(5);
            })));

  r.add(OpDef("apply_adam").input("param").input("grad").input("m").input("v").input("max_v")
            .input("step").input("lr").mutates({0, 2, 3, 4, 5})
            .attr("beta1", F, 0.9).attr("beta2", F, 0.999).attr("eps", F, 1e-8)
            .attr("weight_decay", F, 0.0).attr("decoupled_weight_decay", B, false)
            .attr("amsgrad", B, false)
            .doc("Adam, in place, as torch.optim.Adam (AdamW with decoupled_weight_decay); step is "
                 "incremented before bias correction; max_v is used only with amsgrad")
            .infer(no_outputs([](const InferContext& c, const Attrs& a, const Checker& check) {
              const std::string& op = c.op.name();
              in_unit_interval(a, op, "beta1");
              in_unit_interval(a, op, "beta2");
              at_least(a, op, "eps", 0.0);
              at_least(a, op, "weight_decay", 0.0);
              check.dense(2);
              check.dense(3);
              check.optional_slot(4, a.get<bool>("amsgrad"), "amsgrad");
              check.step(5);
              check.lr(6);
            })));
}

// ------------------------------------------------------------------ the API

void apply_sgd(const Tensor& param, const Tensor& grad, const Tensor& lr, const SGDOptions& o) {
  static const OpDef& op = op_def("apply_sgd");
  call_op(op, std::vector<Tensor>{param, grad, lr}, Attrs{{"weight_decay", o.weight_decay}});
}

void apply_momentum(const Tensor& param, const Tensor& grad, const Tensor& velocity,
                    const Tensor& step, const Tensor& lr, const MomentumOptions& o) {
  static const OpDef& op = op_def("apply_momentum");
  call_op(op, std::vector<Tensor>{param, grad, velocity, step, lr},
          Attrs{{"momentum", o.momentum}, {"dampening", o.dampening}, {"nesterov", o.nesterov},
                {"weight_decay", o.weight_decay}});
}

void apply_adagrad(const Tensor& param, const Tensor& grad, const Tensor& accum, const Tensor& step,
                   const Tensor& lr, const AdagradOptions& o) {
  static const OpDef& op = op_def("apply_adagrad");
  call_op(op, std::vector<Tensor>{param, grad, accum, step, lr},
          Attrs{{"eps", o.eps}, {"weight_decay", o.weight_decay}, {"lr_decay", o.lr_decay}});
}

void apply_rmsprop(const Tensor& param, const Tensor& grad, const Tensor& square_avg,
                   const Tensor& lr, const RMSPropOptions& o, const Tensor& momentum_buffer,
                   const Tensor& grad_avg) {
  static const OpDef& op = op_def("apply_rmsprop");
  Tensor h1, h2;
  call_op(op,
          std::vector<Tensor>{param, grad, square_avg, or_empty(momentum_buffer, param, h1),
                              or_empty(grad_avg, param, h2), lr},
          Attrs{{"alpha", o.alpha}, {"eps", o.eps}, {"weight_decay", o.weight_decay},
                {"momentum", o.momentum}, {"centered", o.centered}});
}

void apply_adam(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                const Tensor& step, const Tensor& lr, const AdamOptions& o, const Tensor& max_v) {
  static const OpDef& op = op_def("apply_adam");
  Tensor h;
  call_op(op, std::vector<Tensor>{param, grad, m, v, or_empty(max_v, param, h), step, lr},
          Attrs{{"beta1", o.beta1}, {"beta2", o.beta2}, {"eps", o.eps},
                {"weight_decay", o.weight_decay},
                {"decoupled_weight_decay", o.decoupled_weight_decay}, {"amsgrad", o.amsgrad}});
}

}  // namespace ndflow
