// The partitioner (DESIGN.md §6 step 4): cuts a placed graph into one graph
// per device. Every data edge between devices becomes a `send` in the
// producer's partition and a `recv` in the consumer's, both keyed by (source
// device, destination device, edge, step); a tensor travels once to each
// device that needs it, however many nodes there read it. A control edge
// between devices becomes a one-byte token sent the same way, so ordering
// (e.g. a Variable read before its update) survives the cut.
//
// Fetches reach every worker of the cluster: a fetched tensor produced on
// another worker is sent to this worker's cpu:0, so every rank of a
// model-parallel program gets the same results. Every partition takes the
// step number as the placeholder kStepFeed (an i64 scalar).
//
//   Placement p = place(g, opt);
//   PartitionedGraph parts = partition(g, p, fetches, targets, rendezvous_id);
#pragma once

#include <string>
#include <vector>

#include "runtime/passes/pipeline.h"
#include "runtime/placer.h"

namespace ndflow {

inline constexpr const char* kStepFeed = "__ndflow_step";

struct GraphPartition {
  int device = -1;                   // index into Placement::devices
  Graph graph;
  std::vector<std::string> feeds;    // the source graph's placeholders it holds (plus kStepFeed)
  // (fetch index, "node:k" in this graph) for the fetches this partition delivers.
  std::vector<std::pair<int, std::string>> fetches;
  std::vector<std::string> targets;  // node names run for their effects: sends and source targets
  // Per recv node of this graph: its id and the edge of the placed graph it carries.
  std::vector<std::pair<int64_t, NodeOutput>> recvs;
  int64_t num_sends = 0;
};

struct PartitionedGraph {
  // One per device that has nodes, or receives fetches (every worker), in device order.
  std::vector<GraphPartition> parts;
  int64_t num_sends = 0;
  int64_t num_recvs = 0;
};

// `placed` must have come through place() with the same Placement. The
// send/recv nodes name `rendezvous_id` (see distributed/rendezvous.h).
NDF_EXPORT PartitionedGraph partition(const Graph& placed, const Placement& placement,
                                      const std::vector<NodeOutput>& fetches, const std::vector<int64_t>& targets,
                                      int64_t rendezvous_id);

// Output metadata of every node of `g` at concrete placeholder shapes:
// result[node id][output]. `feeds` maps placeholder names to their metas; a
// placeholder left out must have a fully known shape. Errors name the node.
NDF_EXPORT std::vector<std::vector<TensorMeta>> concrete_metas(
    const Graph& g, const std::vector<std::pair<std::string, TensorMeta>>& feeds);

}  // namespace ndflow
