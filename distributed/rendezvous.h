// Where a Send meets its Recv (DESIGN.md §6 step 4, §7). The partitioner
// turns every edge that crosses devices into a Send on the producer's device
// and a Recv on the consumer's; both name the same RendezvousKey, and the
// Rendezvous pairs them up, whichever arrives first. Neither side blocks a
// thread: send() and recv() return at once and call back when done.
//
//   auto rv = make_local_rendezvous();               // devices of one process
//   rv->send(key, t, [](std::exception_ptr e) { ... });   // buffer reusable
//   rv->recv(key, DType::f32, {4, 8}, [](std::exception_ptr e, Tensor t) { ... });
//
// Two implementations: in-process (logical devices of one process) and MPI
// (devices of other workers; a progress thread, tags derived from the key,
// the full key in every message and checked on receipt). A recv that waits
// longer than the timeout fails with an error naming the peer and the key —
// never a silent hang.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace ndflow::distributed {

struct RendezvousKey {
  std::string src_device;  // full names: "/worker:0/cpu:1"
  std::string dst_device;
  std::string edge;        // the tensor ("node:0") or "^node" for a control edge
  int64_t step = 0;        // the run of the compiled graph, counted the same on every rank

  // "src;dst;edge;step": unique per message, the same on both sides.
  std::string str() const;
  // The worker index in src_device / dst_device ("/worker:N/..."); 0 when absent.
  int src_worker() const;
  int dst_worker() const;
};

class NDF_EXPORT Rendezvous {
 public:
  using SendDone = std::function<void(std::exception_ptr error)>;
  using RecvDone = std::function<void(std::exception_ptr error, Tensor value)>;

  virtual ~Rendezvous() = default;

  // Hands `value` (any layout; sent as a contiguous copy where needed) to the
  // matching recv. `done` runs exactly once, from any thread, when the
  // caller may reuse value's buffer (or with the error if sending failed).
  virtual void send(const RendezvousKey& key, const Tensor& value, SendDone done) = 0;

  // Asks for the tensor sent under `key`. `done` runs exactly once, from any
  // thread: with the tensor (contiguous, on the CPU, owned by the receiver),
  // or with an error — when the sent dtype/shape differ from the expected
  // ones (the message names the key and both), when nothing arrives within
  // timeout() seconds (naming the peer worker and the key), or on abort().
  virtual void recv(const RendezvousKey& key, DType dtype, const Shape& shape, RecvDone done) = 0;

  // Fails every pending recv (and later calls) with `error`: the step is
  // cancelled. Only the in-process rendezvous recovers (reset()).
  virtual void abort(std::exception_ptr error) = 0;
  // Forgets an abort and any unmatched messages (in-process only; a no-op
  // for MPI, whose abort ends the job's use of it).
  virtual void reset() {}

  double timeout() const { return timeout_s_; }
  void set_timeout(double seconds) { timeout_s_ = seconds; }

 protected:
  double timeout_s_ = 60.0;
};

// Seconds a recv waits: NDFLOW_RENDEZVOUS_TIMEOUT from the environment
// (a positive number), else 60.
NDF_EXPORT double default_rendezvous_timeout();

// For the logical devices of this process. Sends copy the tensor (a
// device-to-device transfer), so the sender's buffer is free at once.
NDF_EXPORT std::shared_ptr<Rendezvous> make_local_rendezvous();

// The process's rendezvous with other workers over MPI (made on first use;
// needs uses_mpi()). Messages to its own worker are an error (use the local
// one). Sends are not copied: `done` runs once MPI no longer needs the buffer.
NDF_EXPORT std::shared_ptr<Rendezvous> mpi_rendezvous();

// The in-process rendezvous of compiled multi-device graphs, by the id their
// send/recv nodes carry (attr "rendezvous"): registered by the runner that
// owns it, looked up by the kernels.
NDF_EXPORT int64_t register_rendezvous(std::shared_ptr<Rendezvous> rendezvous);
NDF_EXPORT void unregister_rendezvous(int64_t id);
// NotFoundError naming the id when it is not (or no longer) registered.
NDF_EXPORT std::shared_ptr<Rendezvous> find_rendezvous(int64_t id);

}  // namespace ndflow::distributed
