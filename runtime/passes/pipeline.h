// The graph-rewriting pass pipeline that Session compile runs (DESIGN.md §6
// step 2) on its private copy of the graph, before execution records are
// built. Each pass is a function over (Graph&, endpoints) in runtime/passes/,
// separately testable, enabled by its PassOptions flag, and adds one line
// saying what it changed to the log.
//
//   GraphEndpoints ends{fetch_edges, target_ids};
//   std::vector<std::string> log = run_passes(g, options.passes, ends);
//
// Memory planning is not a rewrite: it depends on concrete shapes, so the
// executor runs it per shape signature (runtime/passes/memory_planning.h).
#pragma once

#include <string>
#include <vector>

#include "core/graph.h"
#include "runtime/session.h"

namespace ndflow {

// What the compiled graph must compute. A pass that replaces a node must
// keep these pointing at live nodes (e.g. CSE merging a fetched output).
struct GraphEndpoints {
  std::vector<NodeOutput> fetches;
  std::vector<int64_t> targets;
};

// Runs the enabled passes in order — prune first, then the optimizations —
// and returns their log.
NDF_EXPORT std::vector<std::string> run_passes(Graph& g, const PassOptions& options,
                                               GraphEndpoints& ends);

// Removes every node that no fetch or target needs through data or control
// edges. Returns the number of nodes removed.
NDF_EXPORT int64_t prune(Graph& g, const GraphEndpoints& ends);

}  // namespace ndflow
