#include "runtime/trace.h"

#include <unordered_map>
#include <unordered_set>

#include "ops/api.h"

namespace ndflow {

namespace {

class ScopeBuilder final : public GraphBuilder {
 public:
  explicit ScopeBuilder(Graph g) : g_(std::move(g)) {}
  std::vector<Tensor> add_op(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs) override {
    return g_.add_op(op, inputs, attrs);
  }

 private:
  Graph g_;  // a handle sharing the user's graph data
};

struct EdgeHash {
  size_t operator()(NodeOutput o) const { return std::hash<int64_t>()(o.node * 64 + o.index); }
};

}  // namespace

GraphScope::GraphScope(Graph& g)
    : builder_(std::make_unique<ScopeBuilder>(g)), prev_(current_graph_builder()) {
  set_current_graph_builder(builder_.get());
}

GraphScope::~GraphScope() { set_current_graph_builder(prev_); }

TracedFunction trace(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
                     const std::vector<Tensor>& example_inputs) {
  TracedFunction f;
  GraphScope scope(f.graph);
  std::vector<Tensor> args;
  for (size_t i = 0; i < example_inputs.size(); ++i) {
    const Tensor& e = example_inputs[i];
    NDF_CHECK(e.defined(), ValueError, "trace: example input ", i, " is undefined");
    f.input_names.push_back("input_" + std::to_string(i));
    args.push_back(f.graph.placeholder(f.input_names.back(), e.shape(), e.dtype()));
  }
  std::vector<Tensor> outs = fn(args);
  for (size_t j = 0; j < outs.size(); ++j) {
    Tensor o = outs[j];
    NDF_CHECK(o.defined(), ValueError, "trace: output ", j, " of the traced function is undefined");
    // An output that does not depend on the inputs is an eager tensor: store it as a constant.
    if (!o.is_symbolic()) o = o.is_variable() ? f.graph.variable(o) : f.graph.constant(o);
    f.output_names.push_back("output_" + std::to_string(j));
    f.graph.mark_output(f.output_names.back(), o);
  }
  return f;
}

std::vector<Tensor> gradients(const std::vector<Tensor>& ys, const std::vector<Tensor>& xs,
                              const std::vector<Tensor>& grad_ys, bool zeros_for_unused) {
  NDF_CHECK(!ys.empty(), ValueError, "gradients: no ys given");
  NDF_CHECK(grad_ys.empty() || grad_ys.size() == ys.size(), ValueError, "gradients: ", grad_ys.size(),
            " grad_ys for ", ys.size(), " ys");
  Graph g = Graph::of(ys[0]);
  GraphScope scope(g);  // gradient nodes go into the graph of ys

  std::vector<NodeOutput> y_edges, x_edges;
  for (auto& y : ys) y_edges.push_back(g.edge(y));
  for (auto& x : xs) {
    NDF_CHECK(x.defined(), ValueError, "gradients: an x is undefined");
    x_edges.push_back(g.edge(x.is_symbolic() ? x : (x.is_variable() ? g.variable(x) : x)));
  }

  // Only nodes between the xs and the ys take part.
  auto order = g.topological_order();
  std::unordered_set<int64_t> from_x, to_y;
  for (auto& e : x_edges) from_x.insert(e.node);
  for (int64_t id : order) {
    const Node* n = g.node(id);
    for (auto& e : n->inputs)
      if (from_x.count(e.node)) from_x.insert(id);
  }
  for (auto& e : y_edges) to_y.insert(e.node);
  for (auto it = order.rbegin(); it != order.rend(); ++it)
    if (to_y.count(*it))
      for (auto& e : g.node(*it)->inputs) to_y.insert(e.node);

  std::unordered_map<NodeOutput, Tensor, EdgeHash> grad;
  auto accumulate = [&](NodeOutput e, const Tensor& gt) {
    auto [it, fresh] = grad.try_emplace(e, gt);
    if (!fresh) it->second = add(it->second, gt);
  };
  for (size_t i = 0; i < ys.size(); ++i) {
    Tensor gy = grad_ys.empty() || !grad_ys[i].defined() ? ones_like(ys[i]) : grad_ys[i];
    accumulate(y_edges[i], gy);
  }

  // Gradients stop at the xs: what flows past them is not asked for.
  std::unordered_set<int64_t> x_nodes;
  for (auto& e : x_edges) x_nodes.insert(e.node);
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    int64_t id = *it;
    if (!to_y.count(id) || !from_x.count(id) || x_nodes.count(id)) continue;
    const Node* n = g.node(id);
    bool any = false;
    for (size_t j = 0; j < n->outputs.size(); ++j) any |= grad.count({id, static_cast<int>(j)}) > 0;
    if (!any || !n->op->differentiable()) continue;
    std::vector<Tensor> ins, outs, gouts;
    std::unique_ptr<bool[]> needs(new bool[n->inputs.size()]);
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      ins.push_back(g.tensor(n->inputs[i]));
      needs[i] = from_x.count(n->inputs[i].node) > 0 && is_floating(g.meta(n->inputs[i]).dtype);
    }
    for (size_t j = 0; j < n->outputs.size(); ++j) {
      outs.push_back(g.tensor({id, static_cast<int>(j)}));
      auto git = grad.find({id, static_cast<int>(j)});
      gouts.push_back(git != grad.end() ? git->second : zeros_like(outs.back()));
    }
    GradContext ctx(*n->op, ins, outs, gouts, n->attrs, {needs.get(), n->inputs.size()});
    std::vector<Tensor> gins = n->op->grad_fn()(ctx);
    NDF_CHECK(gins.size() == n->inputs.size(), InternalError, "[", n->op->name(), "] gradient returned ",
              gins.size(), " tensors for ", n->inputs.size(), " inputs");
    for (size_t i = 0; i < gins.size(); ++i)
      if (needs[i] && gins[i].defined()) accumulate(n->inputs[i], gins[i]);
  }

  std::vector<Tensor> result;
  for (size_t k = 0; k < xs.size(); ++k) {
    auto it = grad.find(x_edges[k]);
    if (it != grad.end()) result.push_back(it->second);
    else result.push_back(zeros_for_unused ? zeros_like(g.tensor(x_edges[k])) : Tensor());
  }
  return result;
}

std::vector<Tensor> trainable_variables(const std::vector<Tensor>& ys) {
  if (ys.empty()) return {};
  Graph g = Graph::of(ys[0]);
  std::vector<char> needed(static_cast<size_t>(g.id_bound()), 0);
  std::vector<int64_t> stack;
  for (const Tensor& y : ys) stack.push_back(g.edge(y).node);
  while (!stack.empty()) {
    int64_t id = stack.back();
    stack.pop_back();
    if (needed[static_cast<size_t>(id)]) continue;
    needed[static_cast<size_t>(id)] = 1;
    for (const NodeOutput& e : g.node(id)->inputs) stack.push_back(e.node);
  }
  std::vector<Tensor> vars;
  for (const Node* n : g.nodes()) {
    if (!needed[static_cast<size_t>(n->id)] || n->op->name() != "variable") continue;
    Tensor v = n->attrs.get<Tensor>("value");
    if (v.requires_grad()) vars.push_back(v);
  }
  return vars;
}

}  // namespace ndflow
