// Memory planning (DESIGN.md §6): for one concrete shape signature, decides
// which node outputs take over a buffer instead of allocating — the buffer of
// a value that is dead by then (reuse), or of an input the op overwrites
// elementwise (in place). The executor applies the plan each step.
//
//   PlanGraph g = ...;            // nodes in topological order, values with sizes
//   MemoryPlan p = plan_memory(g);
//   p.reuse_of[b] == a            // b is written into a's buffer once a is dead
//
// The rule that keeps it safe under concurrent execution: A's buffer goes to
// B only if every consumer of A happens-before B's producer in the dataflow
// graph (reachability through data and control edges) — not merely earlier
// in one topological order, since the executor may run independent nodes in
// any order or at the same time. Variables, feeds, constants, fetched values,
// views and the bases of views are never reused (the caller marks which
// values are `reusable`).
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"

namespace ndflow {

// A value (one node output) as the planner sees it.
struct PlanValue {
  int32_t producer = -1;  // node index
  size_t bytes = 0;       // concrete size of its buffer
  DType dtype = DType::f32;
  Shape shape;
  bool fresh = false;     // the executor allocates it (a non-view kernel output): it may take a buffer
  bool reusable = false;  // its buffer may be handed on once it is dead (fresh, not fetched,
                          // not written in place by another op, never the base of a view)
};

struct PlanNode {
  std::vector<int32_t> preds;    // predecessor nodes through data and control edges
  std::vector<int32_t> inputs;   // values read
  std::vector<int32_t> outputs;  // values produced
  bool elementwise = false;      // out[i] depends only on in[i]: it may overwrite an input
};

struct PlanGraph {
  std::vector<PlanNode> nodes;   // in a topological order: every pred has a smaller index
  std::vector<PlanValue> values;
};

struct MemoryPlan {
  std::vector<int32_t> in_place_of;  // per value: the input whose buffer it overwrites, or -1
  std::vector<int32_t> reuse_of;     // per value: the dead value whose buffer it takes, or -1
  std::vector<int32_t> hand_to;      // per value: who takes its buffer once it is dead, or -1
  int64_t buffers_naive = 0;         // fresh values: one buffer each without a plan
  int64_t buffers_planned = 0;       // distinct buffers with the plan
  size_t bytes_naive = 0;            // their summed sizes
  size_t bytes_planned = 0;
  int64_t num_in_place = 0;
  int64_t num_reused = 0;
  // The graph had more nodes than the reachability table allows: only
  // in-place updates of single-consumer values were planned.
  bool reachability_limited = false;
};

// Nodes above this count skip the quadratic reachability table.
inline constexpr size_t kMaxPlannedReachabilityNodes = 8192;

// Plans buffer reuse and in-place updates; InternalError if `g` is not in
// topological order or refers to missing nodes or values.
NDF_EXPORT MemoryPlan plan_memory(const PlanGraph& g);

}  // namespace ndflow
