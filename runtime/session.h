// Compile once, run many (DESIGN.md §6): a Session takes a Graph, and for
// each set of fetches/targets compiles it — passes, placement on the local
// CPU, per-node execution records — then runs it with feeds as often as
// asked. Runs are deterministic for the same feeds and seeds.
//
//   Session sess(g);
//   auto out = sess.run({{"x", x_batch}}, {"y"});     // fetch graph outputs by name
//   sess.run({{"x", xb}, {"label", yb}}, {}, {"train_step"});  // run targets only
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/graph.h"

namespace ndflow {

struct PassOptions {
  bool prune = true;
  bool constant_folding = true;
  bool cse = true;
  bool algebraic = true;
  bool fusion = true;
  bool memory_planning = true;
  static PassOptions none() { return {false, false, false, false, false, false}; }
};

struct SessionOptions {
  PassOptions passes;
  int inter_op_threads = 0;  // 0: 1 on machines with <= 4 cores, else cores / 2
  int intra_op_threads = 0;  // 0: cores / inter_op_threads (never oversubscribe)
  bool collect_stats = false;  // time spent inside kernels, per run
  // A requested device without a kernel for an op falls back to another
  // device of the same worker instead of failing (runtime/placer.h).
  bool soft_placement = false;
  // Off for the per-device partitions of a multi-device graph, which are
  // already placed: everything then runs on the calling executor.
  bool place = true;
};

struct RunStats {
  int64_t kernels_executed = 0;  // kernels actually launched (not structural nodes)
  double kernel_seconds = 0;     // summed wall time inside kernels (collect_stats)
  double total_seconds = 0;      // wall time of the whole run
  size_t peak_bytes = 0;         // peak allocator bytes in use during the run
};

class CompiledGraph;
class ThreadPool;

class NDF_EXPORT Session {
 public:
  explicit Session(Graph graph, SessionOptions options = {});
  ~Session();

  // Runs may overlap from several threads (last_run_stats() then reports
  // whichever finished last). Nodes added to the graph after a compile are
  // noticed and the fetches recompiled.
  //
  // Feeds are placeholder names -> tensors; fetches name graph outputs
  // (Graph::mark_output) or nodes ("name" or "name:1"); targets are node
  // names run for their effects (e.g. optimizer updates). Throws
  // ndflow::Error naming the node whose kernel failed.
  std::vector<Tensor> run(const std::vector<std::pair<std::string, Tensor>>& feeds,
                          const std::vector<std::string>& fetches,
                          const std::vector<std::string>& targets = {});
  const RunStats& last_run_stats() const;
  // The compiled form for these fetches/targets (compiled on first use).
  CompiledGraph& compiled(const std::vector<std::string>& fetches,
                          const std::vector<std::string>& targets = {});
  const Graph& graph() const { return graph_; }

 private:
  Graph graph_;
  SessionOptions options_;
  std::map<std::string, std::unique_ptr<CompiledGraph>> cache_;
  RunStats last_;
  // Compiled for an older state of the graph; kept alive because a run on
  // another thread may still be using them.
  std::vector<std::unique_ptr<CompiledGraph>> retired_;
  std::shared_ptr<ThreadPool> pool_;  // inter-op workers shared by every compiled graph
  std::mutex mu_;                     // guards cache_, retired_ and last_
};

}  // namespace ndflow
