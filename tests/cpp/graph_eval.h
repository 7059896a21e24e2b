// Evaluates a graph as it is, for tests of graph passes: a Session
// (runtime/session.h) with every pass and memory planning off, so the values
// it returns are the graph's own — the reference a pass must not change.
// Feeds for placeholders the graph no longer has (pruned) are left out.
// The default generator's state is restored after each evaluation.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <ndflow/ndflow.h>

#include "runtime/session.h"

namespace ndflow::testing {

inline std::vector<Tensor> evaluate(const Graph& g, const std::vector<NodeOutput>& fetches,
                                    const std::map<std::string, Tensor>& feeds = {}) {
  SessionOptions options;
  options.passes = PassOptions::none();
  Session session(g, options);
  std::vector<std::string> names;
  for (const NodeOutput& f : fetches) {
    const Node* n = g.node(f.node);
    NDF_CHECK(n, ValueError, "evaluate: fetch of missing node ", f.node);
    names.push_back(n->name + ":" + std::to_string(f.index));
  }
  std::vector<std::pair<std::string, Tensor>> fed;
  for (const auto& [name, id] : g.inputs())
    if (auto it = feeds.find(name); it != feeds.end()) fed.emplace_back(name, it->second);
  // Random draws advance the default generator's state; putting it back makes
  // repeated evaluations draw the same numbers, which pass tests compare.
  Tensor rng = default_generator().state().clone();
  std::vector<Tensor> out = session.run(fed, names);
  Tensor(default_generator().state()).copy_(rng);
  // Copies: a fetch may alias a Variable or a constant that later runs change.
  for (Tensor& t : out) t = t.clone();
  return out;
}

// Number of live nodes in `g` running the op named `op`.
inline int64_t count_op(const Graph& g, const std::string& op) {
  int64_t n = 0;
  for (const Node* node : g.nodes()) n += node->op->name() == op;
  return n;
}

}  // namespace ndflow::testing
