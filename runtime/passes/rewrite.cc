#include "runtime/passes/rewrite.h"

#include <algorithm>

namespace ndflow::passes {

bool is_pure(const Node& n) {
  const OpDef& op = *n.op;
  return !op.is_graph_only() && !op.is_stateful() && !op.has_side_effects() && op.mutated_inputs().empty();
}

int64_t view_root(const Graph& g, NodeOutput e) {
  const Node* n = g.node(e.node);
  while (n && n->op->is_view() && !n->inputs.empty()) n = g.node(n->inputs[0].node);
  return n ? n->id : -1;
}

MutableStorage::MutableStorage(const Graph& g) : root_(static_cast<size_t>(g.id_bound()), false) {
  for (const Node* n : g.nodes()) {
    if (n->op->name() == "variable") root_[static_cast<size_t>(n->id)] = true;
    for (int i : n->op->mutated_inputs()) {
      if (i < 0 || static_cast<size_t>(i) >= n->inputs.size()) continue;
      int64_t r = view_root(g, n->inputs[static_cast<size_t>(i)]);
      if (r >= 0) root_[static_cast<size_t>(r)] = true;
    }
  }
}

bool MutableStorage::may_change(const Graph& g, NodeOutput e) const {
  int64_t r = view_root(g, e);
  return r < 0 || (static_cast<size_t>(r) < root_.size() && root_[static_cast<size_t>(r)]);
}

namespace {

void add_unique(std::vector<int64_t>& v, int64_t x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

}  // namespace

bool replace_node(Graph& g, int64_t id, const std::vector<NodeOutput>& repl, const PassContext& ctx) {
  Node& old = *g.mutable_node(id);
  NDF_CHECK(repl.size() == old.outputs.size(), InternalError, "replace_node: node '", old.name, "' has ",
            old.outputs.size(), " outputs but ", repl.size(), " replacements were given");
  if (ctx.preserved(id)) {
    if (repl.size() != 1) return false;
    // The executor fetches this id: keep it as a zero-cost alias.
    old.op = &op_def("identity");
    old.inputs = {repl[0]};
    old.attrs = old.op->complete_attrs({});
    return true;
  }
  const std::vector<int64_t> ctl = old.control_inputs;
  for (int64_t k = 0; k < g.id_bound(); ++k) {
    Node* n = g.mutable_node(k);
    if (!n || k == id) continue;
    bool reads = false;
    for (auto& e : n->inputs)
      if (e.node == id) {
        e = repl[static_cast<size_t>(e.index)];
        reads = true;
      }
    if (reads)
      for (int64_t c : ctl) add_unique(n->control_inputs, c);
    auto& ci = n->control_inputs;
    if (std::find(ci.begin(), ci.end(), id) != ci.end()) {
      ci.erase(std::remove(ci.begin(), ci.end(), id), ci.end());
      for (const NodeOutput& r : repl)
        if (r.node != n->id) add_unique(ci, r.node);
      for (int64_t c : ctl) add_unique(ci, c);
    }
  }
  for (auto& [name, o] : g.data()->outputs)
    if (o.node == id) o = repl[static_cast<size_t>(o.index)];
  g.remove_node(id);
  return true;
}

Uses find_uses(const Graph& g) {
  size_t bound = static_cast<size_t>(g.id_bound());
  Uses u{std::vector<std::vector<int64_t>>(bound), std::vector<bool>(bound, false),
         std::vector<bool>(bound, false)};
  for (const Node* n : g.nodes()) {
    for (const NodeOutput& e : n->inputs) {
      auto& d = u.data[static_cast<size_t>(e.node)];
      if (d.empty() || d.back() != n->id) add_unique(d, n->id);
    }
    for (int64_t c : n->control_inputs) u.control[static_cast<size_t>(c)] = true;
  }
  for (const auto& [name, o] : g.outputs())
    if (o.node >= 0 && static_cast<size_t>(o.node) < bound) u.graph_output[static_cast<size_t>(o.node)] = true;
  return u;
}

int64_t remove_dead(Graph& g, const PassContext& ctx) {
  // Reverse topological order: a node's consumers are visited (and possibly
  // removed) before it, so one sweep removes whole dead chains.
  auto order = g.topological_order();
  std::vector<int64_t> uses(static_cast<size_t>(g.id_bound()), 0);
  for (const Node* n : g.nodes()) {
    for (const NodeOutput& e : n->inputs) ++uses[static_cast<size_t>(e.node)];
    for (int64_t c : n->control_inputs) ++uses[static_cast<size_t>(c)];
  }
  for (const auto& [name, o] : g.outputs()) ++uses[static_cast<size_t>(o.node)];
  int64_t removed = 0;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const Node* n = g.node(*it);
    if (uses[static_cast<size_t>(n->id)] > 0 || ctx.preserved(n->id) || !is_pure(*n)) continue;
    for (const NodeOutput& e : n->inputs) --uses[static_cast<size_t>(e.node)];
    for (int64_t c : n->control_inputs) --uses[static_cast<size_t>(c)];
    g.remove_node(n->id);
    ++removed;
  }
  return removed;
}

}  // namespace ndflow::passes
