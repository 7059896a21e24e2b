// CPU kernels of send and recv (ops/transfer.cc). Both are asynchronous:
// they hand the work to a Rendezvous — the in-process one between logical
// devices of this worker, MPI between workers — and complete from its
// callback, so no executor thread ever waits for a peer.
#include "core/op_registry.h"
#include "distributed/rendezvous.h"

namespace ndflow::cpu {

namespace {

using distributed::Rendezvous;
using distributed::RendezvousKey;

RendezvousKey key_of(const KernelContext& c, const Tensor& step) {
  return {c.attrs.get<std::string>("src_device"), c.attrs.get<std::string>("dst_device"),
          c.attrs.get<std::string>("edge"), *step.data<int64_t>()};
}

std::shared_ptr<Rendezvous> rendezvous_for(const KernelContext& c, const RendezvousKey& key) {
  if (key.src_worker() != key.dst_worker()) return distributed::mpi_rendezvous();
  return distributed::find_rendezvous(c.attrs.get<int64_t>("rendezvous"));
}

void send(KernelContext& c) {
  RendezvousKey key = key_of(c, c.input(1));
  std::shared_ptr<Rendezvous> rv = rendezvous_for(c, key);
  AsyncDone done = c.defer();
  rv->send(key, c.input(0), [done](std::exception_ptr error) { done(std::move(error)); });
}

void recv(KernelContext& c) {
  RendezvousKey key = key_of(c, c.input(0));
  std::shared_ptr<Rendezvous> rv = rendezvous_for(c, key);
  Tensor* out = &c.outputs[0];  // a slot of the step, alive until done() is called
  DType dtype = out->dtype();
  Shape shape = out->shape();
  AsyncDone done = c.defer();
  rv->recv(key, dtype, shape, [done, out](std::exception_ptr error, Tensor value) {
    // The received buffer becomes the output: no second copy.
    if (!error) *out = std::move(value);
    done(std::move(error));
  });
}

}  // namespace

void register_transfer_kernels(KernelRegistry& r) {
  const std::vector<DType> all = {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8, DType::boolean};
  r.add("send", DeviceType::CPU, all, send);
  r.add("recv", DeviceType::CPU, {DType::i64}, recv);
}

}  // namespace ndflow::cpu
