// Cross-device transfer (DESIGN.md §6 step 4): the partitioner replaces every
// edge between devices by a `send` on the producer's device and a `recv` on
// the consumer's, naming one rendezvous key (source device, destination
// device, edge, step). Users never write them; they are ordinary ops so that
// the executor, the file format and the passes treat them like any other.
// Both take the step number as an input (a scalar the runner feeds), which
// makes every run's key distinct without per-run graph edits.
#include "core/op_registry.h"

namespace ndflow {

namespace {

void check_step(const InferContext& c, size_t i) {
  const TensorMeta& s = c.input(i);
  NDF_CHECK(s.dtype == DType::i64 && s.shape.empty(), TypeError, "[", c.op.name(),
            "] the step input must be an i64 scalar, got ", dtype_name(s.dtype), shape_str(s.shape));
}

OpDef& endpoint_attrs(OpDef& op) {
  return op.attr("src_device", AttrType::String)
      .attr("dst_device", AttrType::String)
      .attr("edge", AttrType::String)
      .attr("rendezvous", AttrType::Int, int64_t{0});
}

}  // namespace

void register_transfer_ops(OpRegistry& r) {
  OpDef send("send");
  send.input("x").input("step").side_effects().stateful().asynchronous()
      .doc("hands x to the recv with the same (src_device, dst_device, edge, step) key; completes "
           "once x's buffer may be reused")
      .infer([](const InferContext& c) {
        check_step(c, 1);
        return std::vector<TensorMeta>{};
      });
  r.add(std::move(endpoint_attrs(send)));

  OpDef recv("recv");
  recv.input("step").output("y").stateful().asynchronous()
      .attr("dtype", AttrType::DType).attr("shape", AttrType::Ints)
      .doc("the tensor sent under the same key; waits (without blocking a thread) until it arrives, "
           "failing after the rendezvous timeout with an error naming the peer")
      .infer([](const InferContext& c) {
        check_step(c, 0);
        return std::vector<TensorMeta>{
            {Shape(c.attrs.get<std::vector<int64_t>>("shape")), c.attrs.get<DType>("dtype"), Device::cpu()}};
      });
  r.add(std::move(endpoint_attrs(recv)));
}

}  // namespace ndflow
