// Graph optimization passes run by Session::compile (DESIGN.md §6, step 2):
// prune, constant folding, common-subexpression elimination, algebraic
// simplification and elementwise fusion. Each pass edits the graph in place,
// can be switched off through PassOptions, and reports what it changed.
//
//   auto reports = run_passes(g, PassOptions{}, {g.edge(y)}, {train_step_id});
//   for (auto& r : reports) log(r.pass, r.nodes_before, "->", r.nodes_after, r.detail);
//
// Contract with the executor: the nodes named by fetches and targets keep
// their ids and output indices (a pass that would remove one rewrites it in
// place, e.g. into an identity of its replacement), and no pass renumbers
// nodes (Graph::compact is the caller's choice, after it has remapped its
// fetches). Named graph outputs are rewired by Graph::replace_uses; a named
// output whose node is pruned is dropped from the compiled graph.
#pragma once

#include <string>
#include <vector>

#include "core/graph.h"
#include "runtime/session.h"

namespace ndflow {

struct PassReport {
  std::string pass;          // "prune", "constant_folding", "cse", "algebraic", "fusion"
  int64_t nodes_before = 0;  // live nodes when the pass started
  int64_t nodes_after = 0;
  std::string detail;        // what changed, for humans ("merged 3 nodes: ...")
};

// What the passes must keep: the fetched outputs and the target nodes.
class NDF_EXPORT PassContext {
 public:
  // ValueError naming the fetch or target that does not exist in `g`.
  PassContext(const Graph& g, std::vector<NodeOutput> fetches, std::vector<int64_t> targets);
  const std::vector<NodeOutput>& fetches() const { return fetches_; }
  const std::vector<int64_t>& targets() const { return targets_; }
  // A fetched or target node: it keeps its id and outputs.
  bool preserved(int64_t node) const {
    return node >= 0 && node < static_cast<int64_t>(preserved_.size()) && preserved_[static_cast<size_t>(node)];
  }

 private:
  std::vector<NodeOutput> fetches_;
  std::vector<int64_t> targets_;
  std::vector<bool> preserved_;
};

// Runs the enabled passes in order — prune, constant folding, CSE, algebraic
// simplification, fusion, prune again — and returns one report per pass run.
NDF_EXPORT std::vector<PassReport> run_passes(Graph& g, const PassOptions& opt,
                                              const std::vector<NodeOutput>& fetches,
                                              const std::vector<int64_t>& targets);

// ---- the passes, each usable alone (runtime/passes/<name>.cc)

// Removes every node that no fetch or target needs through data or control
// edges. Side-effecting nodes that a target needs are kept; those nothing
// asks for are not run, as in TensorFlow's Session::Run.
NDF_EXPORT PassReport prune_pass(Graph& g, const PassContext& ctx);

// Folded tensors larger than this stay computed at run time: a graph should
// not grow by megabytes to save one cheap op.
inline constexpr int64_t kMaxFoldedElements = int64_t{1} << 20;
// Evaluates nodes whose inputs are all constants and replaces them by
// constants. Never folds Variables, stateful or random ops, side effects, or
// results of more than `max_elements` elements.
NDF_EXPORT PassReport constant_folding_pass(Graph& g, const PassContext& ctx,
                                            int64_t max_elements = kMaxFoldedElements);

// Merges nodes with the same op, inputs (either order for commutative ops),
// control inputs, device and equal attributes. Never merges stateful, random
// or side-effecting nodes.
NDF_EXPORT PassReport cse_pass(Graph& g, const PassContext& ctx);

// Rewrites x*1, 1*x, x+0, 0+x, x-0, x/1, neg(neg(x)) and cast(x) to x's own
// dtype into x where that leaves every value, shape and dtype unchanged;
// composes permute(permute(x)) and reshape(reshape(x)), dropping them when
// the result is x itself.
NDF_EXPORT PassReport algebraic_pass(Graph& g, const PassContext& ctx);

// Turns trees of elementwise ops with single-consumer intermediates of one
// shape into fused_elementwise nodes (ops/fused.cc).
NDF_EXPORT PassReport fusion_pass(Graph& g, const PassContext& ctx);

// One line per report: "cse: 12 -> 9 nodes (merged 3 ...)".
NDF_EXPORT std::string to_string(const std::vector<PassReport>& reports);

}  // namespace ndflow
