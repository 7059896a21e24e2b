// Ops created by graph passes rather than by users: fused_elementwise, the
// single node the fusion pass (runtime/passes/fusion.cc) makes of a tree of
// elementwise ops. Its program format and the table of fusable ops are in
// kernels/fused_ops.h; here are the schema and inference, which validates
// the program and re-derives shape and dtype from the inputs, so that a
// loaded or hand-written node is checked like any other.
#include "core/op_registry.h"
#include "kernels/fused_ops.h"

namespace ndflow {

namespace {

std::vector<TensorMeta> infer_fused(const InferContext& c) {
  fused::decode(c.attrs, c.inputs.size());
  TensorMeta out = c.input(0);
  NDF_CHECK(out.dtype == DType::f32 || out.dtype == DType::f64, TypeError,
            "[fused_elementwise] computes in f32 or f64; input 0 has dtype ", dtype_name(out.dtype));
  for (size_t i = 1; i < c.inputs.size(); ++i) {
    NDF_CHECK(c.input(i).dtype == out.dtype, TypeError, "[fused_elementwise] all inputs share one dtype; input ",
              i, " has ", dtype_name(c.input(i).dtype), " but input 0 has ", dtype_name(out.dtype));
    out.shape = broadcast_shapes(out.shape, c.input(i).shape, "fused_elementwise");
  }
  return {out};
}

}  // namespace

void register_fused_ops(OpRegistry& r) {
  // Not differentiable: fusion runs after gradients are built.
  r.add(OpDef("fused_elementwise").variadic_input("xs", 1).output("y").elementwise()
            .attr("ops", AttrType::String)
            .attr("args", AttrType::Ints)
            .attr("params", AttrType::Floats)
            .doc("a fused tree of elementwise ops evaluated in one pass over memory; inputs broadcast "
                 "and share one float dtype (program format: kernels/fused_ops.h)")
            .infer(infer_fused));
}

}  // namespace ndflow
