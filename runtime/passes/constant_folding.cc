// Constant folding: a pure node whose inputs are all constants is evaluated
// once, now, with the op's own kernel (call_op, so eager and folded values
// are the same numbers), and becomes a constant. Visiting nodes in
// topological order folds whole constant subgraphs in one sweep. As in
// TensorFlow's grappler ConstantFolding, nothing stateful is folded —
// Variables change between runs, random ops draw anew — and large results
// are left to run time so the graph does not bloat.
#include <sstream>
#include <unordered_map>

#include "runtime/eager.h"
#include "runtime/passes/rewrite.h"

namespace ndflow {

namespace {

// Op calls inside the pass run eagerly even when the caller is building a
// graph (a GraphScope on this thread), and record nothing for autograd.
struct EagerNoGradScope {
  EagerScope eager;
  NoGradGuard no_grad;
};

bool is_constant(const Node& n) { return n.op->name() == "constant"; }

// Generators without inputs (full, arange, eye, ...) are cheap to run and
// small to store: folding one alone would only copy its result into the
// graph. They are evaluated when a consumer folds, and otherwise left as is.
bool is_generator(const Node& n) { return n.inputs.empty() && passes::is_pure(n) && !is_constant(n); }

bool fits(const Node& n, int64_t max_elements) {
  for (const TensorMeta& m : n.outputs) {
    for (int64_t d : m.shape)
      if (d < 0) return false;
    if (shape_numel(m.shape) > max_elements) return false;
  }
  return true;
}

}  // namespace

PassReport constant_folding_pass(Graph& g, const PassContext& ctx, int64_t max_elements) {
  PassReport rep{"constant_folding", static_cast<int64_t>(g.num_nodes()), 0, ""};
  const OpDef& constant_op = op_def("constant");
  passes::MutableStorage mut(g);
  EagerNoGradScope eager;
  int64_t folded = 0, too_big = 0, failed = 0;
  std::string first_failure;
  std::unordered_map<int64_t, std::vector<Tensor>> generated;
  for (int64_t id : g.topological_order()) {
    const Node* n = g.node(id);
    // Single-output nodes only: a folded node becomes a constant in place,
    // keeping its id (which fetches and targets refer to).
    if (!n || is_constant(*n) || is_generator(*n) || !passes::is_pure(*n) || n->outputs.size() != 1) continue;
    // A result that some op later writes in place is not a constant either.
    bool foldable = !mut.may_change(g, {id, 0});
    for (const NodeOutput& e : n->inputs) {
      const Node* src = g.node(e.node);
      // A constant that some op writes in place is not constant.
      foldable = foldable && (is_constant(*src) || is_generator(*src)) && !mut.may_change(g, e);
    }
    if (!foldable) continue;
    // The cap is on what folding adds to the graph: the result, and any
    // generator evaluated for it (constant inputs are there already).
    bool small = fits(*n, max_elements);
    for (const NodeOutput& e : n->inputs)
      small = small && (is_constant(*g.node(e.node)) || fits(*g.node(e.node), max_elements));
    if (!small) {
      ++too_big;
      continue;
    }
    std::vector<Tensor> values;
    try {
      std::vector<Tensor> args;
      for (const NodeOutput& e : n->inputs) {
        const Node* src = g.node(e.node);
        if (is_constant(*src)) {
          args.push_back(src->attrs.get<Tensor>("value"));
          continue;
        }
        auto it = generated.find(src->id);
        if (it == generated.end())
          it = generated.emplace(src->id, call_op(*src->op, std::span<const Tensor>{}, src->attrs)).first;
        args.push_back(it->second[static_cast<size_t>(e.index)]);
      }
      values = call_op(*n->op, args, n->attrs);
    } catch (const Error& err) {
      // Left in place: the run reports the error at this node, as it would unfolded.
      if (first_failure.empty()) first_failure = n->name + ": " + err.what();
      ++failed;
      continue;
    }
    Tensor value = values[0].is_contiguous() ? values[0] : values[0].contiguous();
    Node& m = *g.mutable_node(id);  // keeps its name and control inputs
    m.op = &constant_op;
    m.inputs.clear();
    m.attrs = Attrs{{"value", value}};
    m.outputs = {TensorMeta{value.shape(), value.dtype(), value.device()}};
    ++folded;
  }
  int64_t dead = passes::remove_dead(g, ctx);
  rep.nodes_after = static_cast<int64_t>(g.num_nodes());
  std::ostringstream d;
  d << "folded " << folded << " nodes into constants, removed " << dead << " inputs left unused";
  if (too_big) d << "; " << too_big << " left unfolded (result over " << max_elements << " elements)";
  if (failed) d << "; " << failed << " left to fail at run time (first: " << first_failure << ")";
  rep.detail = d.str();
  return rep;
}

}  // namespace ndflow
