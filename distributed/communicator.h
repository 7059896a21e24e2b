// Collectives over the ranks of a cluster (DESIGN.md §7 "Data parallel").
// A Communicator reduces, broadcasts and gathers tensors in place across every
// rank. Backends implement four primitives on contiguous buffers; the base
// class validates the tensors (errors name the collective, the shape and the
// dtype), checks that every rank issued the same collective (on by default:
// a small allreduce of a signature hash before each call; a mismatch is an
// error listing each rank's call instead of a hang or silent garbage) and
// serializes the calls of this process, so ranks must only agree on order.
// Graph collectives (ops all_reduce, ...) use the nonblocking, unchecked
// start_* entry points through distributed/collective_queue.h instead.
//
//   auto& comm = ndflow::distributed::world();   // host tensors: MPI, or a cluster of one
//   comm.allreduce(grad, ReduceOp::Mean);        // in place, on every rank
//   comm.broadcast(weights, /*root=*/0);
//   Tensor all = comm.allgather(x);              // [world_size, *x.shape]
//
// Backends: "mpi" (host tensors, under mpirun), "local" (a cluster of one).
// GPU tensors get an NCCL backend registered for DeviceType::CUDA (its unique
// id shared over MPI) by the CUDA issue; see register_backend().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"

namespace ndflow::distributed {

enum class ReduceOp : uint8_t { Sum, Mean, Max };
NDF_EXPORT std::string_view reduce_op_name(ReduceOp op);
// "sum", "mean", "max" (also "avg"); ValueError otherwise.
NDF_EXPORT ReduceOp reduce_op_from_name(std::string_view name);

class NDF_EXPORT Communicator {
 public:
  virtual ~Communicator() = default;

  virtual std::string_view backend() const = 0;  // "mpi", "local" (later "nccl")
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Whether this backend takes tensors on `device` (mpi: cpu; nccl: cuda).
  virtual bool supports(Device device) const = 0;

  // t = op over all ranks of t, in place on every rank. Every rank passes a
  // contiguous tensor of the same shape and dtype (f32, f64, i32, i64, u8;
  // Mean only for f32/f64; integer sums wrap as in C).
  void allreduce(const Tensor& t, ReduceOp op = ReduceOp::Sum);
  // The same for several tensors of one dtype, sent as one message (a bucket
  // of gradients): packed into one buffer, reduced, unpacked.
  void allreduce_coalesced(const std::vector<Tensor>& tensors, ReduceOp op = ReduceOp::Sum);
  // t = root's t, in place on every rank.
  void broadcast(const Tensor& t, int root = 0);
  // Every rank's t stacked along a new first axis: [size(), *t.shape()].
  Tensor allgather(const Tensor& t);
  void barrier();

  // Whether every collective first checks that all ranks issued the same one.
  void set_check_signatures(bool on) { check_signatures_ = on; }
  bool check_signatures() const { return check_signatures_; }

  // ---- for graph collectives (distributed/collective_queue.h)
  // Nonblocking, on contiguous buffers, WITHOUT the per-call signature check:
  // the queue checks a compiled graph's whole collective sequence once, then
  // issues them in plan order. The buffers must stay alive until test() has
  // returned true; a Request destroyed before that leaks the operation (only
  // done when the job is about to abort).
  class NDF_EXPORT Request {
   public:
    virtual ~Request() = default;
    virtual bool test() = 0;  // true once complete (idempotent afterwards)
  };
  // Blocking forms (the communication thread's: backends' tuned blocking
  // collectives outpace the nonblocking ones, several times over when ranks
  // share cores); Mean divides by size(); counts must fit an int.
  void allreduce_unchecked(void* data, int64_t count, DType dtype, ReduceOp op);
  void broadcast_unchecked(void* data, int64_t count, DType dtype, int root);
  void allgather_unchecked(const void* send, void* recv, int64_t count, DType dtype);
  // Nonblocking forms (the plan check: small messages that must time out).
  std::unique_ptr<Request> start_allreduce(void* data, int64_t count, DType dtype, ReduceOp op);
  std::unique_ptr<Request> start_broadcast(void* data, int64_t count, DType dtype, int root);
  // recv holds size() * count elements, rank r's at r * count.
  std::unique_ptr<Request> start_allgather(const void* send, void* recv, int64_t count, DType dtype);

  // Stall diagnosis, over a side channel that never mixes with collectives.
  // serve_progress answers the progress queries of other ranks with
  // `progress` (call it often from one thread; cheap when there are none).
  // query_progress asks every other rank and waits up to `wait_s` seconds
  // for the answers, serving queries meanwhile: one value per rank, this
  // rank's own `progress`, and -1 for ranks that did not answer.
  virtual void serve_progress(int64_t progress) {}
  virtual std::vector<int64_t> query_progress(int64_t progress, double wait_s) {
    return std::vector<int64_t>(static_cast<size_t>(size()), progress);
  }

 protected:
  // Nonblocking primitives; the defaults run the blocking ones and return a
  // finished request (enough for the local backend).
  virtual std::unique_ptr<Request> iallreduce_raw(void* data, int64_t count, DType dtype, ReduceOp op);
  virtual std::unique_ptr<Request> ibroadcast_raw(void* data, int64_t count, DType dtype, int root);
  virtual std::unique_ptr<Request> iallgather_raw(const void* send, void* recv, int64_t count, DType dtype);

  // Backend primitives on contiguous buffers of `count` elements (count fits
  // an int: the base class splits larger buffers). `op` is Sum or Max.
  virtual void allreduce_raw(void* data, int64_t count, DType dtype, ReduceOp op) = 0;
  virtual void broadcast_raw(void* data, int64_t count, DType dtype, int root) = 0;
  virtual void allgather_raw(const void* send, void* recv, int64_t count, DType dtype) = 0;
  virtual void barrier_raw() = 0;

 private:
  // Verifies that every rank issued the collective described by `sig`
  // (fixed-size: kind, dtype, op, root, numel, rank, dims); throws
  // ValueError naming each rank's call otherwise.
  void check_same_everywhere(const std::vector<int64_t>& sig);
  void allreduce_chunked(void* data, int64_t count, DType dtype, ReduceOp op);

  std::mutex mu_;
  bool check_signatures_ = true;
};

// The communicator over all ranks for tensors on `device` (initializes the
// cluster): MPI for host tensors under mpirun, "local" for a cluster of one.
// A device type without a backend is a NotFoundError.
NDF_EXPORT Communicator& world(Device device = Device::cpu());

// Makes the communicator for a device type (called once, by world()). The
// CUDA issue registers NCCL here; registering replaces the previous factory.
using CommunicatorFactory = std::function<std::unique_ptr<Communicator>()>;
NDF_EXPORT void register_backend(DeviceType type, CommunicatorFactory factory);

// The built-in backends.
NDF_EXPORT std::unique_ptr<Communicator> make_mpi_communicator();    // needs uses_mpi()
NDF_EXPORT std::unique_ptr<Communicator> make_local_communicator();  // a cluster of one

}  // namespace ndflow::distributed
