// Graph structure and state: placeholder and variable (graph-only nodes
// whose outputs the executor provides; constant lives in ops/creation.cc), identity, stop_gradient, and
// the in-place assign / assign_add updates of Variables.
#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow {

namespace {

using G = const GradContext&;
using Grads = std::vector<Tensor>;

Tensor alias(const Tensor& x, const Attrs&) { return Tensor::make_view(x, x.shape(), x.strides(), x.offset()); }

std::vector<TensorMeta> from_value_attr(const InferContext& c) {
  Tensor v = c.attrs.get<Tensor>("value");
  return {TensorMeta{v.shape(), v.dtype(), v.device()}};
}

// assign(var, value): value must already have var's shape; dtypes are cast.
std::vector<TensorMeta> check_assign(const InferContext& c) {
  NDF_CHECK(broadcast_shapes(c.input(0).shape, c.input(1).shape, c.op.name()) == c.input(0).shape,
            ShapeError, "[", c.op.name(), "] value of shape ", shape_str(c.input(1).shape),
            " does not broadcast to the variable's shape ", shape_str(c.input(0).shape));
  return {};
}

}  // namespace

void register_state_ops(OpRegistry& r) {
  r.add(OpDef("placeholder").output("y").graph_only()
            .attr("shape", AttrType::Ints).attr("dtype", AttrType::DType)
            .doc("a named graph input, fed at run time; -1 dims are unknown until then")
            .infer([](const InferContext& c) {
              return std::vector<TensorMeta>{{Shape(c.attrs.get<std::vector<int64_t>>("shape")),
                                              c.attrs.get<DType>("dtype"), Device::cpu()}};
            }));
  r.add(OpDef("variable").output("y").graph_only().stateful().attr("value", AttrType::Tensor)
            .doc("reads a Variable by reference: updates made by assign ops are seen by later steps")
            .infer(from_value_attr));
  r.add(OpDef("identity").input("x").output("y").view(alias).infer(same_as_input(0)).saves({}, {})
            .doc("y = x (shares storage)")
            .grad([](G g) { return Grads{g.grad_output(0)}; }));
  r.add(OpDef("stop_gradient").input("x").output("y").view(alias).infer(same_as_input(0))
            .doc("y = x, but no gradient flows back through it"));
  r.add(OpDef("assign").input("var").input("value").mutates({0}).infer(check_assign)
            .doc("var <- value (broadcast, cast to var's dtype), in place"));
  r.add(OpDef("assign_add").input("var").input("value").mutates({0}).infer(check_assign)
            .doc("var <- var + value, in place"));
}

Tensor identity(const Tensor& x) {
  static const OpDef& op = op_def("identity");
  return call_op1(op, {x});
}

Tensor stop_gradient(const Tensor& x) {
  static const OpDef& op = op_def("stop_gradient");
  return call_op1(op, {x});
}

void assign(const Tensor& var, const Tensor& value) {
  static const OpDef& op = op_def("assign");
  call_op(op, std::vector<Tensor>{var, value});
}

void assign_add(const Tensor& var, const Tensor& value) {
  static const OpDef& op = op_def("assign_add");
  call_op(op, std::vector<Tensor>{var, value});
}

}  // namespace ndflow
