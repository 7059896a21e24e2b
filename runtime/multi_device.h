// Runs a graph that the placer spread over several devices (DESIGN.md §6
// steps 3–5): the partitions of this worker's devices run side by side, each
// with its own executor thread, and meet through send/recv — the in-process
// rendezvous between this worker's devices, MPI between workers. Used by
// CompiledGraph when placement puts anything beyond this worker's cpu:0.
//
// Every run has a step number, counted the same way on every rank, that
// keys its transfers; a model-parallel program therefore calls run() in the
// same order on every rank (as any SPMD program does). Recv shapes are
// planned from the feeds' shapes, so with partitions on several workers
// every rank feeds every placeholder whose shape is not fully known.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "runtime/partition.h"
#include "runtime/session.h"

namespace ndflow {

class CompiledGraph;
class ThreadPool;
namespace distributed { class Rendezvous; }

class MultiDeviceRunner {
 public:
  // `placed` went through place() with `placement`; fetches/targets are its
  // endpoints; `feed_names` the order run() takes feeds in; `local_worker`
  // the worker whose partitions this process runs.
  MultiDeviceRunner(Graph placed, Placement placement, const std::vector<NodeOutput>& fetches,
                    const std::vector<int64_t>& targets, std::vector<std::string> feed_names, int local_worker,
                    const SessionOptions& options);
  ~MultiDeviceRunner();

  std::vector<Tensor> run(std::span<const Tensor> feeds, RunStats* stats);

  const PartitionedGraph& partitions() const { return parts_; }
  // Partitions this process runs (indices into partitions().parts).
  const std::vector<size_t>& local_partitions() const { return local_; }

 private:
  struct Compiled;
  std::shared_ptr<Compiled> compiled_for(std::span<const Tensor> feeds);

  Graph placed_;
  Placement placement_;
  PartitionedGraph parts_;
  std::vector<size_t> local_;
  std::vector<std::string> feed_names_;
  size_t num_fetches_ = 0;
  SessionOptions options_;
  std::shared_ptr<distributed::Rendezvous> rendezvous_;
  int64_t rendezvous_id_ = 0;
  std::vector<std::unique_ptr<ThreadPool>> drivers_;  // one thread per local partition but the first
  std::atomic<int64_t> next_step_{0};
  std::mutex mu_;  // guards cache_ and serializes runs (steps must not interleave their keys' order)
  std::map<std::string, std::shared_ptr<Compiled>> cache_;
};

}  // namespace ndflow
