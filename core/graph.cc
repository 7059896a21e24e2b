#include "core/graph.h"

#include "core/device_name.h"

#include "runtime/eager.h"

#include <algorithm>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace ndflow {

namespace {

const OpDef& builtin(const char* name) { return OpRegistry::global().get(name); }

}  // namespace

Graph::Graph() : d_(std::make_shared<GraphData>()) {}

Graph Graph::of(const Tensor& t) {
  NDF_CHECK(t.is_symbolic(), ValueError, "expected a symbolic (graph) tensor, got an eager one");
  auto d = t.impl()->symbolic->graph.lock();
  NDF_CHECK(d, ValueError, "a symbolic tensor outlived the graph it belongs to; keep the Graph "
            "alive while its tensors are used");
  return Graph(std::move(d));
}

std::string Graph::unique_name(const std::string& base) {
  std::string name = base;
  while (find(name)) name = base + "_" + std::to_string(++d_->name_counter);
  return name;
}

int64_t Graph::add_node(Node n) {
  n.id = static_cast<int64_t>(d_->nodes.size());
  if (n.name.empty()) n.name = n.op ? n.op->name() : "node";
  if (find(n.name)) n.name = unique_name(n.name);
  d_->nodes.push_back(std::make_unique<Node>(std::move(n)));
  return d_->nodes.back()->id;
}

Tensor Graph::tensor(NodeOutput o) const {
  const Node* n = node(o.node);
  NDF_CHECK(n && o.index >= 0 && o.index < static_cast<int>(n->outputs.size()), ValueError,
            "graph: no output ", o.index, " of node ", o.node);
  auto impl = std::make_shared<TensorImpl>();
  const TensorMeta& m = n->outputs[static_cast<size_t>(o.index)];
  impl->shape = m.shape;
  impl->strides = contiguous_strides(m.shape);
  impl->dtype = m.dtype;
  impl->device = m.device;
  impl->symbolic = std::make_unique<SymbolicRef>(SymbolicRef{d_, o.node, o.index});
  return Tensor(std::move(impl));
}

NodeOutput Graph::edge(const Tensor& t) const {
  NDF_CHECK(t.is_symbolic(), ValueError, "graph: expected a symbolic tensor of this graph, got an eager one");
  const SymbolicRef& s = *t.impl()->symbolic;
  auto owner = s.graph.lock();
  NDF_CHECK(owner, ValueError, "a symbolic tensor outlived the graph it belongs to; keep the Graph "
            "alive while its tensors are used");
  NDF_CHECK(owner == d_, ValueError, "a symbolic tensor of another graph was used here (node ", s.node,
            "); tensors cannot cross graphs — feed it through a placeholder");
  NDF_CHECK(node(s.node), ValueError, "symbolic tensor refers to removed node ", s.node);
  return {s.node, s.output};
}

const TensorMeta& Graph::meta(NodeOutput o) const {
  const Node* n = node(o.node);
  NDF_CHECK(n && o.index >= 0 && o.index < static_cast<int>(n->outputs.size()), ValueError,
            "graph: no output ", o.index, " of node ", o.node);
  return n->outputs[static_cast<size_t>(o.index)];
}

Tensor Graph::placeholder(const std::string& name, const Shape& shape, DType dtype) {
  NDF_CHECK(!name.empty(), ValueError, "placeholder: a name is required (it is how inputs are fed)");
  NDF_CHECK(!find(name), ValueError, "placeholder: the name '", name, "' is already used in this graph");
  for (int64_t d : shape)
    NDF_CHECK(d >= -1, ValueError, "placeholder '", name, "': dims must be >= 0 or -1 (unknown), got ",
              shape_str(shape));
  Node n;
  n.op = &builtin("placeholder");
  n.name = name;
  n.device = DeviceScope::current();
  n.attrs = Attrs{{"shape", shape.vec()}, {"dtype", dtype}};
  n.outputs = {TensorMeta{shape, dtype, Device::cpu()}};
  int64_t id = add_node(std::move(n));
  d_->inputs.emplace_back(name, id);
  return tensor({id, 0});
}

Tensor Graph::constant(const Tensor& value, const std::string& name) {
  NDF_CHECK(value.defined() && !value.is_symbolic(), ValueError,
            "constant: needs an eager tensor with data");
  Node n;
  n.op = &builtin("constant");
  n.name = name.empty() ? "const" : name;
  Tensor stored = value;
  if (!value.is_contiguous()) {
    EagerScope eager;  // a copy now, not a node of the graph being built
    stored = value.contiguous();
  }
  n.attrs = Attrs{{"value", stored}};
  n.outputs = {TensorMeta{value.shape(), value.dtype(), value.device()}};
  return tensor({add_node(std::move(n)), 0});
}

Tensor Graph::variable(const Tensor& var) {
  NDF_CHECK(var.defined() && !var.is_symbolic(), ValueError, "variable: needs an eager tensor");
  // One node per Variable, however often it is used.
  for (auto& p : d_->nodes)
    if (p && p->op->name() == "variable" && p->attrs.get<Tensor>("value").same(var)) return tensor({p->id, 0});
  Node n;
  n.op = &builtin("variable");
  n.name = var.impl()->variable_name.empty() ? "variable" : var.impl()->variable_name;
  n.attrs = Attrs{{"value", var}};
  n.outputs = {TensorMeta{var.shape(), var.dtype(), var.device()}};
  return tensor({add_node(std::move(n)), 0});
}

namespace {
Tensor baked_copy(const Tensor& t) {
  EagerScope eager;
  NoGradGuard no_grad;
  return t.clone();
}
}  // namespace

std::vector<Tensor> Graph::add_op(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
                                  const std::string& name) {
  op.check_num_inputs(inputs.size());
  Node n;
  n.op = &op;
  n.name = name;
  n.device = DeviceScope::current();
  n.attrs = op.complete_attrs(attrs);
  std::vector<TensorMeta> metas;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    NDF_CHECK(t.defined(), ValueError, "[", op.name(), "] input ", i, " is an undefined tensor");
    // Any other eager tensor is baked in as it is now (DESIGN.md §5): a copy,
    // so that later writes to it change neither the graph nor its folding.
    Tensor sym = t.is_symbolic() ? t : (t.is_variable() ? variable(t) : constant(baked_copy(t)));
    NodeOutput e = edge(sym);
    n.inputs.push_back(e);
    metas.push_back(meta(e));
  }
  n.outputs = op.run_infer(metas, n.attrs);
  int64_t id = add_node(std::move(n));
  order_variable_accesses(id);
  std::vector<Tensor> outs;
  for (size_t j = 0; j < node(id)->outputs.size(); ++j) outs.push_back(tensor({id, static_cast<int>(j)}));
  return outs;
}

// The variable node an edge aliases (directly or through view ops), or -1.
int64_t Graph::variable_behind(NodeOutput e) const {
  for (const Node* n = node(e.node); n; n = n->inputs.empty() ? nullptr : node(n->inputs[0].node)) {
    if (n->op->name() == "variable") return n->id;
    if (!n->op->is_view()) return -1;
  }
  return -1;
}

void Graph::order_variable_accesses(int64_t id, bool add_edges) {
  Node& n = *mutable_node(id);
  auto add_ctl = [&](int64_t before) {
    if (add_edges && before >= 0 && before != id && node(before) &&
        std::find(n.control_inputs.begin(), n.control_inputs.end(), before) == n.control_inputs.end())
      n.control_inputs.push_back(before);
  };
  const auto& mutated = n.op->mutated_inputs();
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    int64_t var = variable_behind(n.inputs[i]);
    if (var < 0) continue;
    auto& acc = d_->variable_access[var];
    bool writes = std::find(mutated.begin(), mutated.end(), static_cast<int>(i)) != mutated.end();
    add_ctl(acc.last_writer);  // read-after-write and write-after-write
    if (writes) {
      for (int64_t r : acc.readers) add_ctl(r);  // write-after-read
      acc.readers.clear();
      acc.last_writer = id;
    } else if (!n.op->is_view()) {  // a view is not a read: its consumers are
      acc.readers.push_back(id);
    }
  }
}

void Graph::rebuild_variable_access() {
  d_->variable_access.clear();
  for (int64_t id : topological_order()) order_variable_accesses(id, /*add_edges=*/false);
}

void Graph::add_control_dependency(const Tensor& before, const Tensor& after) {
  NodeOutput b = edge(before), a = edge(after);
  auto& ctl = mutable_node(a.node)->control_inputs;
  if (std::find(ctl.begin(), ctl.end(), b.node) == ctl.end()) ctl.push_back(b.node);
}

void Graph::mark_output(const std::string& name, const Tensor& t) {
  NDF_CHECK(!name.empty(), ValueError, "mark_output: a name is required");
  NodeOutput e = edge(t);
  for (auto& [n, o] : d_->outputs)
    if (n == name) {
      o = e;
      return;
    }
  d_->outputs.emplace_back(name, e);
}

size_t Graph::num_nodes() const {
  size_t n = 0;
  for (auto& p : d_->nodes) n += p != nullptr;
  return n;
}

const Node* Graph::node(int64_t id) const {
  if (id < 0 || id >= id_bound()) return nullptr;
  return d_->nodes[static_cast<size_t>(id)].get();
}

Node* Graph::mutable_node(int64_t id) { return const_cast<Node*>(node(id)); }

std::vector<const Node*> Graph::nodes() const {
  std::vector<const Node*> v;
  for (auto& p : d_->nodes)
    if (p) v.push_back(p.get());
  return v;
}

const Node* Graph::find(const std::string& name) const {
  for (auto& p : d_->nodes)
    if (p && p->name == name) return p.get();
  return nullptr;
}

std::vector<std::vector<int64_t>> Graph::consumers() const {
  std::vector<std::vector<int64_t>> c(static_cast<size_t>(id_bound()));
  for (auto& p : d_->nodes) {
    if (!p) continue;
    for (auto& e : p->inputs)
      if (node(e.node)) c[static_cast<size_t>(e.node)].push_back(p->id);
    for (int64_t ctl : p->control_inputs)
      if (node(ctl)) c[static_cast<size_t>(ctl)].push_back(p->id);
  }
  for (auto& v : c) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
  }
  return c;
}

std::vector<int64_t> Graph::topological_order() const {
  // Kahn's algorithm; ties broken by id so the order is deterministic.
  size_t bound = static_cast<size_t>(id_bound());
  std::vector<int> pending(bound, 0);
  auto cons = consumers();
  for (auto& p : d_->nodes) {
    if (!p) continue;
    std::unordered_set<int64_t> preds;
    for (auto& e : p->inputs) preds.insert(e.node);
    for (int64_t c : p->control_inputs) preds.insert(c);
    pending[static_cast<size_t>(p->id)] = static_cast<int>(preds.size());
  }
  std::vector<int64_t> ready, order;
  for (auto& p : d_->nodes)
    if (p && pending[static_cast<size_t>(p->id)] == 0) ready.push_back(p->id);
  std::make_heap(ready.begin(), ready.end(), std::greater<>());
  while (!ready.empty()) {
    std::pop_heap(ready.begin(), ready.end(), std::greater<>());
    int64_t id = ready.back();
    ready.pop_back();
    order.push_back(id);
    for (int64_t c : cons[static_cast<size_t>(id)])
      if (--pending[static_cast<size_t>(c)] == 0) {
        ready.push_back(c);
        std::push_heap(ready.begin(), ready.end(), std::greater<>());
      }
  }
  if (order.size() != num_nodes()) {
    for (auto& p : d_->nodes)
      if (p && pending[static_cast<size_t>(p->id)] > 0)
        fail<ValueError>("graph has a cycle through node '", p->name, "' (", p->op->name(), ")");
  }
  return order;
}

void Graph::validate() const {
  for (auto& p : d_->nodes) {
    if (!p) continue;
    const Node& n = *p;
    NDF_CHECK(n.op, ValueError, "node '", n.name, "' has no op");
    try {
      n.op->check_num_inputs(n.inputs.size());
      n.op->complete_attrs(n.attrs);
    } catch (const Error& e) {
      fail<ValueError>("node '", n.name, "': ", e.what());
    }
    std::vector<TensorMeta> metas;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const NodeOutput& e = n.inputs[i];
      const Node* src = node(e.node);
      NDF_CHECK(src, ValueError, "node '", n.name, "' input ", i, " points at missing node ", e.node);
      NDF_CHECK(e.index >= 0 && e.index < static_cast<int>(src->outputs.size()), ValueError, "node '",
                n.name, "' input ", i, " points at output ", e.index, " of '", src->name, "', which has ",
                src->outputs.size(), " outputs");
      metas.push_back(src->outputs[static_cast<size_t>(e.index)]);
    }
    for (int64_t c : n.control_inputs)
      NDF_CHECK(node(c), ValueError, "node '", n.name, "' has a control input from missing node ", c);
    if (n.op->name() == "placeholder" || n.op->name() == "constant" || n.op->name() == "variable") continue;
    std::vector<TensorMeta> inferred;
    try {
      inferred = n.op->run_infer(metas, n.attrs);
    } catch (const Error& e) {
      fail<ShapeError>("node '", n.name, "': ", e.what());
    }
    NDF_CHECK(inferred.size() == n.outputs.size(), ValueError, "node '", n.name, "' records ",
              n.outputs.size(), " outputs but its op infers ", inferred.size());
    for (size_t j = 0; j < inferred.size(); ++j)
      NDF_CHECK(inferred[j].dtype == n.outputs[j].dtype && inferred[j].shape.size() == n.outputs[j].shape.size(),
                ValueError, "node '", n.name, "' output ", j, " is recorded as ", dtype_name(n.outputs[j].dtype),
                shape_str(n.outputs[j].shape), " but infers as ", dtype_name(inferred[j].dtype),
                shape_str(inferred[j].shape));
  }
  for (auto& [name, o] : d_->outputs)
    NDF_CHECK(node(o.node) && o.index < static_cast<int>(node(o.node)->outputs.size()), ValueError,
              "graph output '", name, "' points at a missing node output");
  topological_order();  // throws on cycles
}

void Graph::remove_node(int64_t id) {
  NDF_CHECK(node(id), ValueError, "remove_node: no node ", id);
  d_->nodes[static_cast<size_t>(id)].reset();
  auto& ins = d_->inputs;
  ins.erase(std::remove_if(ins.begin(), ins.end(), [&](auto& p) { return p.second == id; }), ins.end());
}

void Graph::replace_uses(NodeOutput from, NodeOutput to) {
  for (auto& p : d_->nodes) {
    if (!p) continue;
    for (auto& e : p->inputs)
      if (e == from) e = to;
  }
  for (auto& [name, o] : d_->outputs)
    if (o == from) o = to;
}

std::vector<int64_t> Graph::compact() {
  auto order = topological_order();
  std::vector<int64_t> remap(static_cast<size_t>(id_bound()), -1);
  for (size_t i = 0; i < order.size(); ++i) remap[static_cast<size_t>(order[i])] = static_cast<int64_t>(i);
  std::vector<std::unique_ptr<Node>> fresh(order.size());
  for (int64_t old : order) {
    auto n = std::move(d_->nodes[static_cast<size_t>(old)]);
    n->id = remap[static_cast<size_t>(old)];
    for (auto& e : n->inputs) e.node = remap[static_cast<size_t>(e.node)];
    for (auto& c : n->control_inputs) c = remap[static_cast<size_t>(c)];
    fresh[static_cast<size_t>(n->id)] = std::move(n);
  }
  d_->nodes = std::move(fresh);
  for (auto& [name, id] : d_->inputs) id = remap[static_cast<size_t>(id)];
  for (auto& [name, o] : d_->outputs) o.node = remap[static_cast<size_t>(o.node)];
  auto at = [&](int64_t old) { return old < 0 ? -1 : remap[static_cast<size_t>(old)]; };
  std::unordered_map<int64_t, GraphData::VariableAccess> access;
  for (auto& [var, acc] : d_->variable_access) {
    if (at(var) < 0) continue;
    GraphData::VariableAccess& a = access[at(var)];
    a.last_writer = at(acc.last_writer);
    for (int64_t r : acc.readers)
      if (at(r) >= 0) a.readers.push_back(at(r));
  }
  d_->variable_access = std::move(access);
  return remap;
}

Graph Graph::clone() const {
  Graph g;
  for (auto& p : d_->nodes) g.d_->nodes.push_back(p ? std::make_unique<Node>(*p) : nullptr);
  g.d_->inputs = d_->inputs;
  g.d_->outputs = d_->outputs;
  g.d_->name_counter = d_->name_counter;
  g.d_->variable_access = d_->variable_access;
  return g;
}

std::string Graph::to_string() const {
  std::ostringstream os;
  for (auto& p : d_->nodes) {
    if (!p) continue;
    os << p->id << " " << p->name << " = " << p->op->name() << "(";
    for (size_t i = 0; i < p->inputs.size(); ++i)
      os << (i ? ", " : "") << p->inputs[i].node << ":" << p->inputs[i].index;
    os << ")";
    for (auto& m : p->outputs) os << " -> " << dtype_name(m.dtype) << shape_str(m.shape);
    if (!p->control_inputs.empty()) {
      os << " after";
      for (int64_t c : p->control_inputs) os << " " << c;
    }
    os << "\n";
  }
  for (auto& [name, o] : d_->outputs) os << "output " << name << " = " << o.node << ":" << o.index << "\n";
  return os.str();
}

}  // namespace ndflow
