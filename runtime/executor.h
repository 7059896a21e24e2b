// The executor of one compiled graph (DESIGN.md §6 step 5). A CompiledGraph
// is built once from a Graph and the fetches/targets it must compute: prune,
// the pass pipeline (runtime/passes/pipeline.h), then flat per-node records
// (kernel, inputs, outputs, pending counts, consumers). Each run schedules
// ready nodes by dataflow — cheap ones inline on the current thread, others
// on the inter-op pool — frees every tensor after its last use, applies the
// memory plan of the feed shapes, and rethrows the first kernel error on the
// caller with the node's name prepended. Kernels may complete asynchronously
// (KernelContext::defer); no thread ever blocks waiting for them.
//
//   CompiledGraph cg(g, {"y"}, {}, SessionOptions{});
//   std::vector<Tensor> out = cg.run({{"x", x}});
//
// Usually reached through Session (runtime/session.h), which caches one per
// fetches/targets set. Runs of one CompiledGraph may overlap from several
// threads; each gets its own step state.
#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/passes/memory_planning.h"
#include "runtime/placer.h"
#include "runtime/session.h"

namespace ndflow {

class MultiDeviceRunner;
class ThreadPool;
struct ExecPlan;
struct ShapePlan;
struct StepState;

class NDF_EXPORT CompiledGraph {
 public:
  // Fetches name graph outputs (Graph::mark_output) or node outputs ("name",
  // "name:1"); targets name nodes run for their effects. `pool` is the
  // inter-op pool to share (the Session's); null makes one from `options`.
  CompiledGraph(const Graph& graph, const std::vector<std::string>& fetches,
                const std::vector<std::string>& targets, const SessionOptions& options = {},
                std::shared_ptr<ThreadPool> pool = nullptr);
  ~CompiledGraph();
  CompiledGraph(const CompiledGraph&) = delete;
  CompiledGraph& operator=(const CompiledGraph&) = delete;

  // Feeds by placeholder name. Feeding a placeholder these fetches do not
  // need is allowed; an unknown name, a missing feed, a wrong dtype or a
  // shape that contradicts a known dim is an error naming the placeholder.
  // Fetched Variables are copied at the end of the step (the value after it).
  std::vector<Tensor> run(const std::vector<std::pair<std::string, Tensor>>& feeds,
                          RunStats* stats = nullptr);
  // The same without names: one tensor per feed_names() entry, in order.
  std::vector<Tensor> run_ordered(std::span<const Tensor> feeds, RunStats* stats = nullptr);

  // The placeholders this graph needs, in the order run_ordered takes them.
  const std::vector<std::string>& feed_names() const;
  const Graph& graph() const;  // the private copy after prune and passes
  size_t num_nodes() const;    // nodes each step executes
  const std::vector<std::string>& pass_log() const;
  int inter_op_threads() const { return inter_threads_; }
  int intra_op_threads() const;
  // The memory plan for these (ordered) feeds' shapes, built on first use;
  // null when PassOptions::memory_planning is off.
  std::shared_ptr<const MemoryPlan> memory_plan(std::span<const Tensor> feeds);
  // Graph::id_bound() of the graph it was compiled from (Session uses it to
  // notice nodes added after compiling).
  int64_t source_id_bound() const { return source_bound_; }

  // Where each node runs and why (runtime/placer.h). Nodes placed beyond this
  // worker's cpu:0 make the graph run as partitions joined by send/recv
  // (runtime/multi_device.h); multi_device() is null otherwise.
  const Placement& placement() const { return placement_; }
  std::string placement_report() const;
  const MultiDeviceRunner* multi_device() const { return multi_.get(); }

 private:
  void setup_placement(const SessionOptions& options);
  std::shared_ptr<const ShapePlan> shape_plan(std::span<const Tensor> feeds);
  std::unique_ptr<StepState> acquire_state();
  void release_state(std::unique_ptr<StepState> s);

  std::unique_ptr<ExecPlan> plan_;
  Placement placement_;
  std::unique_ptr<MultiDeviceRunner> multi_;
  std::shared_ptr<ThreadPool> pool_;
  int inter_threads_ = 1;
  int64_t source_bound_ = 0;
  bool collect_stats_ = false;

  std::mutex mu_;  // guards the caches below
  std::shared_ptr<const ShapePlan> static_shapes_;  // when every feed shape is fully known
  std::unordered_map<std::string, std::shared_ptr<const ShapePlan>> shape_cache_;
  std::vector<std::string> shape_cache_order_;  // oldest first, for eviction
  std::vector<std::unique_ptr<StepState>> free_states_;
};

// Maximum shape signatures cached per compiled graph (oldest evicted first).
inline constexpr size_t kMaxShapePlans = 64;

}  // namespace ndflow
