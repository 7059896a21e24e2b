// Collective ops (ops/collective.h): all_reduce, all_reduce_coalesced,
// broadcast, all_gather. Their kernels (kernels/cpu/collective.cc) run
// eagerly through the world Communicator, or in a compiled graph through the
// plan-ordered queue of distributed/collective_queue.h, which sets the
// internal attributes plan_key and plan_index when the executor compiles the
// graph. The ops are stateful, so no pass folds, merges or drops them as if
// they were pure functions of their inputs, and asynchronous (they wait for
// peers), so their tests are tests/dist rather than per-op samples.
//
// Gradients follow PyTorch's differentiable collectives
// (torch.distributed.nn.functional): the gradient of a sum all_reduce is the
// sum all_reduce of the output gradient, likewise for mean; broadcast sends
// the summed gradient to the root; all_gather hands rank r row r of the
// summed gradient. Every rank issues the same collectives in its backward,
// whatever its rank, so the backward graphs match across ranks. Max has no
// gradient (an error naming the op says so).
#include "ops/collective.h"

#include "distributed/cluster.h"
#include "distributed/communicator.h"
#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow {

namespace {

using G = const GradContext&;
using Grads = std::vector<Tensor>;

bool supported(DType d) {
  return d == DType::f32 || d == DType::f64 || d == DType::i32 || d == DType::i64 || d == DType::u8;
}

void check_input(const InferContext& c, const TensorMeta& m) {
  NDF_CHECK(supported(m.dtype), TypeError, "[", c.op.name(), "] tensor ", dtype_name(m.dtype),
            shape_str(m.shape), " has dtype ", dtype_name(m.dtype), "; valid dtypes: f32, f64, i32, i64, u8");
}

// Validates the reduce op attribute against the dtype.
void check_reduce(const InferContext& c, DType d) {
  std::string op = c.attrs.get<std::string>("op", "sum");
  distributed::ReduceOp r = distributed::reduce_op_from_name(op);
  NDF_CHECK(r != distributed::ReduceOp::Mean || is_floating(d), TypeError, "[", c.op.name(),
            "] op 'mean' needs a floating tensor (f32, f64), got ", dtype_name(d), "; use 'sum' for integers");
}

std::vector<TensorMeta> infer_all_reduce(const InferContext& c) {
  check_input(c, c.input(0));
  check_reduce(c, c.input(0).dtype);
  return {c.input(0)};
}

std::vector<TensorMeta> infer_coalesced(const InferContext& c) {
  std::vector<TensorMeta> out;
  for (const TensorMeta& m : c.inputs) {
    check_input(c, m);
    NDF_CHECK(m.dtype == c.input(0).dtype, TypeError, "[all_reduce_coalesced] a bucket holds one dtype: got ",
              dtype_name(c.input(0).dtype), shape_str(c.input(0).shape), " and ", dtype_name(m.dtype),
              shape_str(m.shape), "; reduce each dtype in its own bucket");
    out.push_back(m);
  }
  check_reduce(c, c.input(0).dtype);
  return out;
}

std::vector<TensorMeta> infer_broadcast(const InferContext& c) {
  check_input(c, c.input(0));
  int64_t root = c.attrs.get<int64_t>("root", 0);
  NDF_CHECK(root >= 0, IndexError, "[broadcast] root must be a rank (>= 0), got ", root);
  return {c.input(0)};
}

std::vector<TensorMeta> infer_all_gather(const InferContext& c) {
  check_input(c, c.input(0));
  TensorMeta m = c.input(0);
  m.shape.insert(0, distributed::world_size());
  return {m};
}

// The reduce op of a differentiable all_reduce, or an error naming the op.
std::string grad_reduce(G g) {
  std::string op = g.attrs().get<std::string>("op", "sum");
  NDF_CHECK(op != "max", ValueError, "[", g.op().name(), "] op 'max' has no gradient (it is not ",
            "differentiable in ndflow); detach the input or use 'sum'/'mean'");
  return op;
}

Attrs reduce_attrs(const std::string& op) { return Attrs{{"op", op}}; }

}  // namespace

void register_collective_ops(OpRegistry& r) {
  const auto Int = AttrType::Int;
  const auto Str = AttrType::String;

  r.add(OpDef("all_reduce").input("x").output("y").stateful().asynchronous()
            .attr("op", Str, std::string("sum")).attr("plan_key", Int, int64_t{0}).attr("plan_index", Int, int64_t{-1})
            .doc("x reduced over every rank (op: sum, mean, max); a copy in a world of one")
            .infer(infer_all_reduce).saves({}, {})
            .grad([](G g) { return Grads{all_reduce(g.grad_output(0), grad_reduce(g))}; }));

  r.add(OpDef("all_reduce_coalesced").variadic_input("xs").output("ys").stateful().asynchronous()
            .attr("op", Str, std::string("sum")).attr("plan_key", Int, int64_t{0}).attr("plan_index", Int, int64_t{-1})
            .doc("all_reduce of several tensors of one dtype as one message (a gradient bucket)")
            .infer(infer_coalesced).saves({}, {})
            .grad([](G g) {
              // NOTE: every output gradient is reduced, needed or not, so the
              // bucket is the same message on every rank.
              std::vector<Tensor> gos;
              for (size_t i = 0; i < g.num_inputs(); ++i) gos.push_back(g.grad_output(i));
              return all_reduce_coalesced(gos, grad_reduce(g));
            }));

  r.add(OpDef("broadcast").input("x").output("y").stateful().asynchronous()
            .attr("root", Int, int64_t{0}).attr("plan_key", Int, int64_t{0}).attr("plan_index", Int, int64_t{-1})
            .doc("rank root's x, on every rank")
            .infer(infer_broadcast).saves({}, {})
            .grad([](G g) {
              Tensor sum = all_reduce(g.grad_output(0), "sum");
              if (distributed::rank() == g.attrs().get<int64_t>("root", 0)) return Grads{sum};
              return Grads{mul(sum, scalar(0.0, sum.dtype()))};
            }));

  r.add(OpDef("all_gather").input("x").output("y").stateful().asynchronous()
            .attr("plan_key", Int, int64_t{0}).attr("plan_index", Int, int64_t{-1})
            .doc("every rank's x stacked along a new first axis: [world_size, *x.shape]")
            .infer(infer_all_gather).saves({}, {})
            .grad([](G g) {
              Tensor sum = all_reduce(g.grad_output(0), "sum");
              int64_t r = distributed::rank();
              return Grads{squeeze(slice(sum, 0, r, r + 1), {0})};
            }));
}

// ------------------------------------------------------------------ the API

Tensor all_reduce(const Tensor& x, const std::string& op) {
  static const OpDef& def = op_def("all_reduce");
  return call_op1(def, {x}, def.complete_attrs(reduce_attrs(op)));
}

std::vector<Tensor> all_reduce_coalesced(const std::vector<Tensor>& xs, const std::string& op) {
  static const OpDef& def = op_def("all_reduce_coalesced");
  NDF_CHECK(!xs.empty(), ValueError, "[all_reduce_coalesced] needs at least one tensor");
  return call_op(def, xs, def.complete_attrs(reduce_attrs(op)));
}

Tensor broadcast_from(const Tensor& x, int64_t root) {
  static const OpDef& def = op_def("broadcast");
  return call_op1(def, {x}, def.complete_attrs(Attrs{{"root", root}}));
}

Tensor all_gather(const Tensor& x) {
  static const OpDef& def = op_def("all_gather");
  return call_op1(def, {x}, def.complete_attrs({}));
}

}  // namespace ndflow
