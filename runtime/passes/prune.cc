// Prune: keep only what the fetches and targets need (DESIGN.md §6, step 1).
// A node is needed when a fetch or target reaches it backwards through data
// or control edges; everything else — including side-effecting nodes that no
// target asks for and placeholders nothing reads — is not run, which is
// TensorFlow's Session::Run contract (only the requested subgraph executes).
#include <sstream>

#include "runtime/passes/rewrite.h"

namespace ndflow {

PassContext::PassContext(const Graph& g, std::vector<NodeOutput> fetches, std::vector<int64_t> targets)
    : fetches_(std::move(fetches)), targets_(std::move(targets)),
      preserved_(static_cast<size_t>(g.id_bound()), false) {
  for (const NodeOutput& f : fetches_) {
    const Node* n = g.node(f.node);
    NDF_CHECK(n, ValueError, "passes: fetch refers to node ", f.node, ", which is not in the graph");
    NDF_CHECK(f.index >= 0 && f.index < static_cast<int>(n->outputs.size()), ValueError, "passes: fetch ",
              n->name, ":", f.index, " names an output that node '", n->name, "' (", n->op->name(),
              ") does not have; it has ", n->outputs.size());
    preserved_[static_cast<size_t>(f.node)] = true;
  }
  for (int64_t t : targets_) {
    NDF_CHECK(g.node(t), ValueError, "passes: target refers to node ", t, ", which is not in the graph");
    preserved_[static_cast<size_t>(t)] = true;
  }
}

PassReport prune_pass(Graph& g, const PassContext& ctx) {
  PassReport rep{"prune", static_cast<int64_t>(g.num_nodes()), 0, ""};
  std::vector<bool> keep(static_cast<size_t>(g.id_bound()), false);
  std::vector<int64_t> stack;
  auto need = [&](int64_t id) {
    if (!keep[static_cast<size_t>(id)]) {
      keep[static_cast<size_t>(id)] = true;
      stack.push_back(id);
    }
  };
  for (const NodeOutput& f : ctx.fetches()) need(f.node);
  for (int64_t t : ctx.targets()) need(t);
  while (!stack.empty()) {
    const Node* n = g.node(stack.back());
    stack.pop_back();
    for (const NodeOutput& e : n->inputs) need(e.node);
    for (int64_t c : n->control_inputs) need(c);
  }
  int64_t effects = 0, inputs = 0;
  for (const Node* n : g.nodes()) {
    if (keep[static_cast<size_t>(n->id)]) continue;
    effects += n->op->has_side_effects();
    inputs += n->op->name() == "placeholder";
  }
  for (int64_t id = 0; id < g.id_bound(); ++id)
    if (g.node(id) && !keep[static_cast<size_t>(id)]) g.remove_node(id);
  // Named outputs of removed nodes would dangle: this compiled graph does
  // not produce them.
  auto& outs = g.data()->outputs;
  size_t dropped = outs.size();
  std::erase_if(outs, [&](const auto& o) { return !g.node(o.second.node); });
  dropped -= outs.size();

  rep.nodes_after = static_cast<int64_t>(g.num_nodes());
  std::ostringstream d;
  d << "removed " << rep.nodes_before - rep.nodes_after << " unneeded nodes";
  if (effects) d << " (" << effects << " with side effects that no target needs)";
  if (inputs) d << ", " << inputs << " unused placeholders";
  if (dropped) d << ", " << dropped << " named outputs not produced";
  rep.detail = d.str();
  return rep;
}

}  // namespace ndflow
