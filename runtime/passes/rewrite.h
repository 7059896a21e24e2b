// Graph-editing helpers shared by the passes in runtime/passes/: which nodes
// a pass may touch, which tensors may change under it (Variables and buffers
// written in place), and rewiring that keeps both data and control order.
#pragma once

#include <vector>

#include "runtime/passes/pass.h"

namespace ndflow::passes {

// No state, no side effects, no in-place writes and not a structural node
// (placeholder, variable): the node may be evaluated early, merged or removed.
bool is_pure(const Node& n);

// The node an edge's storage belongs to: follows view ops (reshape, permute,
// identity, ...) back through their input 0.
int64_t view_root(const Graph& g, NodeOutput e);

// Nodes whose storage can change while a graph runs: Variables and every node
// whose output (or a view of it) some op writes in place.
class MutableStorage {
 public:
  explicit MutableStorage(const Graph& g);
  // Whether the tensor on edge `e` may be rewritten in place during a run: a
  // pass must not replace a computed copy of it by the tensor itself, nor
  // treat it as a constant.
  bool may_change(const Graph& g, NodeOutput e) const;

 private:
  std::vector<bool> root_;
};

// Removes node `id` after pointing every use of its output j at repl[j]
// (data edges and named graph outputs). Its data consumers inherit its
// control inputs and its control consumers wait for the replacements'
// nodes and its control inputs instead, so no ordering is lost. A
// preserved (fetched or target) node is kept: a single-output node becomes
// identity(repl[0]); otherwise nothing changes and false is returned.
bool replace_node(Graph& g, int64_t id, const std::vector<NodeOutput>& repl, const PassContext& ctx);

// Removes pure, unpreserved nodes that nothing consumes and no named output
// refers to, repeatedly; returns how many went.
int64_t remove_dead(Graph& g, const PassContext& ctx);

// Ids of the nodes consuming each node's outputs through data edges (one
// entry per consuming node), and whether any node waits on it by control edge.
struct Uses {
  std::vector<std::vector<int64_t>> data;
  std::vector<bool> control;
  std::vector<bool> graph_output;  // a named output refers to it
};
Uses find_uses(const Graph& g);

}  // namespace ndflow::passes
