// CPU kernels of the collective ops (ops/collective.cc). Each first writes
// its input into its (contiguous) output. Then, in a world of one, it is done;
// eagerly (no async host) it calls the world Communicator and blocks, with
// the per-call signature check; in a compiled graph it defers and hands the
// buffers to the plan-ordered queue (distributed/collective_queue.h), whose
// communication thread issues it after the graph's earlier collectives and
// completes the node — no executor thread waits on the network.
#include <cstring>

#include "core/op_registry.h"
#include "distributed/collective_queue.h"
#include "distributed/communicator.h"

namespace ndflow::cpu {

namespace {

namespace dist = ndflow::distributed;
using Kind = dist::CollectiveWork::Kind;

// dst (contiguous, preallocated) = src in any layout. The copy kernel is
// called directly: this thread may be inside a GraphScope, where op calls
// would add nodes instead of running.
void copy_into(const Tensor& dst, const Tensor& src, int threads) {
  if (src.is_contiguous()) {
    if (dst.raw_data() != src.raw_data()) std::memcpy(dst.raw_data(), src.raw_data(), src.nbytes());
    return;
  }
  static const OpDef& op = op_def("contiguous");
  Tensor out = dst;
  Attrs none;
  KernelContext ctx(op, std::span<const Tensor>(&src, 1), std::span<Tensor>(&out, 1), none, threads);
  op.kernel(DeviceType::CPU)(ctx);
}

// Hands prepared work to the compiled graph's queue; the node completes
// when the collective has.
void submit(KernelContext& c, dist::CollectiveWork w) {
  const int64_t key = c.attrs.get<int64_t>("plan_key", 0);
  const int64_t index = c.attrs.get<int64_t>("plan_index", -1);
  std::shared_ptr<dist::CollectivePlan> plan = dist::CollectivePlan::find(key);
  NDF_CHECK(plan && index >= 0 && index < static_cast<int64_t>(plan->size()), InternalError, "[", c.op.name(),
            "] was not numbered when its graph was compiled (plan_key ", key, ", plan_index ", index,
            "); graph collectives run through the executor's collective plan");
  w.done = c.defer();
  plan->submit(index, std::move(w));
}

dist::Communicator& comm_of(const KernelContext& c) { return dist::world(c.input(0).device()); }

dist::ReduceOp reduce_op(const KernelContext& c) {
  return dist::reduce_op_from_name(c.attrs.get<std::string>("op", "sum"));
}

void all_reduce(KernelContext& c) {
  const Tensor& y = c.output(0);
  copy_into(y, c.input(0), c.num_threads);
  dist::Communicator& comm = comm_of(c);
  if (comm.size() == 1) return;
  if (!c.async_host) return comm.allreduce(y, reduce_op(c));
  dist::CollectiveWork w;
  w.kind = Kind::AllReduce;
  w.op = reduce_op(c);
  w.buffer = y;
  submit(c, std::move(w));
}

void all_reduce_coalesced(KernelContext& c) {
  const size_t n = c.inputs.size();
  dist::Communicator& comm = comm_of(c);
  if (comm.size() == 1 || !c.async_host || n == 1) {
    for (size_t i = 0; i < n; ++i) copy_into(c.output(i), c.input(i), c.num_threads);
    if (comm.size() == 1) return;
    if (!c.async_host) return comm.allreduce_coalesced({c.outputs.begin(), c.outputs.end()}, reduce_op(c));
  }
  dist::CollectiveWork w;
  w.kind = Kind::AllReduce;
  w.op = reduce_op(c);
  if (n == 1) {
    w.buffer = c.output(0);
  } else {
    // One message: the inputs packed into one buffer, unpacked into the
    // outputs by the communication thread once reduced.
    int64_t total = 0;
    for (size_t i = 0; i < n; ++i) total += c.input(i).numel();
    w.buffer = Tensor::empty({total}, c.input(0).dtype(), c.input(0).device());
    auto* at = static_cast<std::byte*>(w.buffer.raw_data());
    for (size_t i = 0; i < n; ++i) {
      const Tensor& x = c.input(i);
      if (x.is_contiguous()) {
        std::memcpy(at, x.raw_data(), x.nbytes());
      } else {
        copy_into(c.output(i), x, c.num_threads);
        std::memcpy(at, c.output(i).raw_data(), x.nbytes());
      }
      at += x.nbytes();
      w.unpack.push_back(c.output(i));
    }
  }
  submit(c, std::move(w));
}

void broadcast(KernelContext& c) {
  const Tensor& y = c.output(0);
  copy_into(y, c.input(0), c.num_threads);
  dist::Communicator& comm = comm_of(c);
  const int64_t root = c.attrs.get<int64_t>("root", 0);
  NDF_CHECK(root >= 0 && root < comm.size(), IndexError, "[broadcast] root ", root, " is not a rank of this ",
            comm.size(), "-rank world (tensor ", dtype_name(y.dtype()), shape_str(y.shape()), ")");
  if (comm.size() == 1) return;
  if (!c.async_host) return comm.broadcast(y, static_cast<int>(root));
  dist::CollectiveWork w;
  w.kind = Kind::Broadcast;
  w.root = static_cast<int>(root);
  w.buffer = y;
  submit(c, std::move(w));
}

void all_gather(KernelContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& y = c.output(0);
  dist::Communicator& comm = comm_of(c);
  NDF_CHECK(y.rank() >= 1 && y.shape()[0] == comm.size(), ValueError, "[all_gather] the graph was built for a ",
            y.rank() ? y.shape()[0] : 0, "-rank world but runs in a ", comm.size(),
            "-rank one; trace it again in this world");
  if (comm.size() == 1) return copy_into(y, x, c.num_threads);
  Tensor send = x;
  if (!x.is_contiguous()) {
    send = Tensor::empty(x.shape(), x.dtype(), x.device());
    copy_into(send, x, c.num_threads);
  }
  if (!c.async_host) {
    Tensor all = comm.allgather(send);
    std::memcpy(y.raw_data(), all.raw_data(), y.nbytes());
    return;
  }
  dist::CollectiveWork w;
  w.kind = Kind::AllGather;
  w.send = send;
  w.buffer = y;
  submit(c, std::move(w));
}

}  // namespace

void register_collective_kernels(KernelRegistry& r) {
  constexpr auto CPU = DeviceType::CPU;
  const std::vector<DType> dtypes = {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8};
  r.add("all_reduce", CPU, dtypes, all_reduce);
  r.add("all_reduce_coalesced", CPU, dtypes, all_reduce_coalesced);
  r.add("broadcast", CPU, dtypes, broadcast);
  r.add("all_gather", CPU, dtypes, all_gather);
}

}  // namespace ndflow::cpu
