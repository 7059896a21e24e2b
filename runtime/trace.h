// Building graphs with the ordinary op API (DESIGN.md §5): inside a
// GraphScope every op call adds a node to the graph and returns symbolic
// tensors; trace() turns a C++ function of tensors into a Graph.
//
//   Graph g;
//   {
//     GraphScope scope(g);
//     Tensor x = g.placeholder("x", {-1, 4});
//     g.mark_output("y", relu(x) * 2.0);
//   }
//   TracedFunction f = trace([](const std::vector<Tensor>& in) {
//     return std::vector<Tensor>{softmax(in[0])};
//   }, {randn({8, 10})});
#pragma once

#include <functional>

#include "core/graph.h"
#include "runtime/eager.h"

namespace ndflow {

// While alive, op calls on this thread add nodes to `g` instead of running.
// Scopes nest; the innermost wins.
class NDF_EXPORT GraphScope {
 public:
  explicit GraphScope(Graph& g);
  ~GraphScope();
  GraphScope(const GraphScope&) = delete;
  GraphScope& operator=(const GraphScope&) = delete;

 private:
  std::unique_ptr<GraphBuilder> builder_;
  GraphBuilder* prev_;
};

struct TracedFunction {
  Graph graph;
  std::vector<std::string> input_names;   // placeholders "input_0", ... in argument order
  std::vector<std::string> output_names;  // "output_0", ...
};

// Runs `fn` once on placeholders shaped like `example_inputs` and records
// the ops it calls. Variables among the tensors fn captures are read by
// reference; other eager tensors become constants.
NDF_EXPORT TracedFunction trace(
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
    const std::vector<Tensor>& example_inputs);

// Symbolic autograd: extends the graph of `ys` with gradient nodes built by
// the ops' own grad functions and returns d(sum ys·grad_ys)/d xs. Gradients
// over several paths are summed. An x that no y depends on gets an undefined
// tensor, or zeros when `zeros_for_unused` is set. Must be called inside a
// GraphScope of the graph the tensors belong to.
NDF_EXPORT std::vector<Tensor> gradients(const std::vector<Tensor>& ys,
                                         const std::vector<Tensor>& xs,
                                         const std::vector<Tensor>& grad_ys = {},
                                         bool zeros_for_unused = false);

// The Variables that require grad and that `ys` depend on (the parameters a
// symbolic `loss.backward()` differentiates), in graph order.
NDF_EXPORT std::vector<Tensor> trainable_variables(const std::vector<Tensor>& ys);

}  // namespace ndflow
