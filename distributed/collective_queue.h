// Graph collectives in plan order (DESIGN.md §7; ops/collective.cc). A
// compiled graph numbers its collective nodes once, in the executor's
// topological order (CollectivePlan::create); their kernels do not talk to
// MPI themselves but hand the work to one communication thread per process,
// which issues collective k of a step only after k-1 — never in whatever
// order the dataflow of this rank happens to make them ready — and polls the
// nonblocking operation, so no executor thread ever blocks on the network.
//
//   // executor, once per compiled graph:
//   plan->collectives = CollectivePlan::create(entries);   // null: none
//   // executor, around each step (RAII):
//   CollectiveStep step = plan->collectives->begin_step(slot_meta, &cancelled);
//   // kernel:
//   AsyncDone done = ctx.defer();
//   CollectivePlan::find(key)->submit(index, std::move(work));
//
// Before the first step of each new sequence of collective shapes, every
// rank allgathers a hash of its sequence (ops, reduce ops, roots, dtypes,
// shapes, order); a mismatch is a ValueError on every rank that names the
// first differing collective and the ranks. A collective that does not
// complete within NDFLOW_COLLECTIVE_TIMEOUT seconds (default 60) fails its
// step with a TimeoutError naming it, the step and the ranks that have not
// reached it (asked over the communicator's progress side channel). After a
// timeout the queue stays failed: MPI cannot cancel a collective, so every
// later graph collective of this process fails at once. Under mpirun the
// Python excepthook of ndflow.distributed then aborts the job.
//
// Steps of graphs that contain collectives are serialized within a process;
// run them from one thread, or in the same order on every rank. A step that
// waits longer than the timeout for another one to end fails (TimeoutError):
// e.g. collectives in two partitions of one multi-device graph, which run
// side by side, are not supported — keep a worker's collectives on one device.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "core/graph.h"
#include "distributed/communicator.h"

namespace ndflow::distributed {

// Whether `op` is a graph collective (all_reduce, all_reduce_coalesced,
// broadcast, all_gather).
NDF_EXPORT bool is_collective_op(const OpDef& op);

// Seconds a graph collective may wait: NDFLOW_COLLECTIVE_TIMEOUT (a positive
// number) or 60. ValueError for a malformed value.
NDF_EXPORT double collective_timeout();

// One collective, prepared by its kernel: `buffer` is reduced or broadcast in
// place (all_gather: receives every rank's `send`); `unpack` lists outputs
// that are slices of `buffer` to copy out afterwards (a coalesced bucket).
struct CollectiveWork {
  enum class Kind : uint8_t { AllReduce, Broadcast, AllGather } kind = Kind::AllReduce;
  ReduceOp op = ReduceOp::Sum;
  int root = 0;
  Tensor buffer;  // contiguous
  Tensor send;    // all_gather only; contiguous
  std::vector<Tensor> unpack;  // in buffer order, contiguous
  AsyncDone done;
};

class CollectivePlan;

// RAII over one step of a compiled graph with collectives: holds the
// process's collective-step lock and tells the communication thread which
// plan's collectives to expect. Destroy it after the step has completed.
class NDF_EXPORT CollectiveStep {
 public:
  CollectiveStep() = default;
  CollectiveStep(CollectiveStep&& o) noexcept;
  CollectiveStep& operator=(CollectiveStep&& o) noexcept;
  ~CollectiveStep();

 private:
  friend class CollectivePlan;
  explicit CollectiveStep(std::unique_lock<std::timed_mutex> lock) : lock_(std::move(lock)), active_(true) {}
  void release();
  std::unique_lock<std::timed_mutex> lock_;  // the process's collective-step lock
  bool active_ = false;                // the communication thread expects this step
};

class NDF_EXPORT CollectivePlan {
 public:
  struct Entry {
    Node* node = nullptr;              // its attrs get plan_key and plan_index
    std::vector<int32_t> input_slots;  // to read the concrete input shapes per step
  };
  // Numbers the collective nodes in the order given (the executor's
  // topological order: collective k never depends on k+1); null if none.
  static std::shared_ptr<CollectivePlan> create(std::vector<Entry> entries);
  // The live plan a kernel's plan_key attribute names, or null.
  static std::shared_ptr<CollectivePlan> find(int64_t key);
  ~CollectivePlan();
  CollectivePlan(const CollectivePlan&) = delete;
  CollectivePlan& operator=(const CollectivePlan&) = delete;

  // Before each step, with the concrete metadata of every slot of the step
  // and the flag the executor sets when it cancels the step. Runs the plan
  // check for a sequence of shapes not seen before (ValueError on a
  // mismatch, TimeoutError when a rank does not take part).
  CollectiveStep begin_step(std::span<const TensorMeta> slot_meta, const std::atomic<bool>* cancelled);
  // From the kernel of collective `index`: completes work.done exactly once
  // (with an error if the step was cancelled or the queue has failed).
  void submit(int64_t index, CollectiveWork work);

  size_t size() const { return entries_.size(); }
  int64_t key() const { return key_; }
  const Node& node(size_t k) const { return *entries_[k].node; }
  // "#k all_reduce(sum) 'name' f32[3]" for messages.
  std::string describe(size_t k, std::span<const TensorMeta> slot_meta, bool with_name = true) const;

 private:
  CollectivePlan() = default;
  void check_plan(std::span<const TensorMeta> slot_meta, uint64_t hash, const std::string& text,
                  double timeout_s);

  int64_t key_ = 0;
  std::vector<Entry> entries_;
  int64_t steps_ = 0;                   // steps begun (guarded by the step lock)
  std::vector<uint64_t> verified_;      // sequence hashes all ranks agreed on
};

}  // namespace ndflow::distributed
