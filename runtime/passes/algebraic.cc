// Algebraic simplification: peephole rewrites that remove work without
// changing any value, shape or dtype (the identities of TensorFlow grappler's
// ArithmeticOptimizer that hold exactly in IEEE arithmetic):
//
//   x*1, 1*x, x/1, x-0, x+0, 0+x  -> x   when the constant neither broadcasts x
//                                         to a larger shape nor promotes its dtype
//   neg(neg(x))                   -> x
//   cast(x, dtype of x)           -> x
//   permute(permute(x, p), q)     -> permute(x, p∘q), or x when that is the identity
//   reshape(reshape(x, a), b)     -> reshape(x, b), or x when b is x's shape
//   transpose(matmul(a, b))       -> matmul(transpose(b), transpose(a))  (last two
//                                    axes; the matmul used nowhere else)
//
// The last one is about layout, not work: GEMM takes transposed operands for
// free, and the product comes out contiguous instead of as a transposed view
// (a weight gradient, (x^T g)^T, then reaches the optimizer update row-major
// rather than with a stride of a whole row per element).
//
// NOTE: x+0 gives +0 where x is -0; the two compare equal, and grappler makes
// the same trade. x*1, x/1, x-0 and double negation are exact, NaN included.
//
// A rewrite that hands consumers x itself instead of a fresh copy of it is
// skipped when x's storage can change during the run (a Variable, or a
// buffer some op updates in place): the copy was a snapshot.
#include <algorithm>
#include <sstream>

#include "runtime/passes/rewrite.h"

namespace ndflow {

namespace {

using Ints = std::vector<int64_t>;

// Whether edge `e` is a tensor whose every element equals v.
bool is_value(const Graph& g, const passes::MutableStorage& mut, NodeOutput e, double v) {
  const Node* n = g.node(e.node);
  if (mut.may_change(g, e)) return false;
  const std::string& op = n->op->name();
  if (op == "full" || op == "full_like") return n->attrs.get<double>("value") == v;
  if (op != "constant") return false;
  Tensor t = n->attrs.get<Tensor>("value");
  // Large constants are weights, not identities: don't scan them.
  if (t.numel() == 0 || t.numel() > 4096) return false;
  for (double x : t.to_vector<double>())
    if (x != v) return false;
  return true;
}

// `other` broadcast against x leaves x's shape as it is, whatever the
// unknown (-1) dims turn out to be.
bool keeps_shape(const Shape& x, const Shape& other) {
  if (other.size() > x.size()) return false;
  size_t off = x.size() - other.size();
  for (size_t d = 0; d < other.size(); ++d)
    if (other[d] != 1 && !(other[d] == x[off + d] && x[off + d] >= 0)) return false;
  return true;
}

// For an identity-element pattern, the edge the node reduces to.
std::optional<NodeOutput> identity_operand(const Graph& g, const passes::MutableStorage& mut, const Node& n) {
  const std::string& op = n.op->name();
  if (n.inputs.size() != 2) return std::nullopt;
  NodeOutput a = n.inputs[0], b = n.inputs[1];
  std::optional<NodeOutput> x;
  NodeOutput other;
  if ((op == "mul" || op == "div") && is_value(g, mut, b, 1.0)) x = a, other = b;
  else if (op == "mul" && is_value(g, mut, a, 1.0)) x = b, other = a;
  else if ((op == "add" || op == "sub") && is_value(g, mut, b, 0.0)) x = a, other = b;
  else if (op == "add" && is_value(g, mut, a, 0.0)) x = b, other = a;
  if (!x) return std::nullopt;
  const TensorMeta &xm = g.meta(*x), &om = g.meta(other), &ym = n.outputs[0];
  if (ym.dtype != xm.dtype || !(ym.shape == xm.shape) || !keeps_shape(xm.shape, om.shape)) return std::nullopt;
  return x;
}

Ints normalized_axes(const Node& n) {
  Ints p = n.attrs.get<Ints>("axes");
  int64_t r = static_cast<int64_t>(p.size());
  for (auto& a : p) a = a < 0 ? a + r : a;
  return p;
}

bool is_identity_perm(const Ints& p) {
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] != static_cast<int64_t>(i)) return false;
  return true;
}

bool fully_known(const Shape& s) {
  for (int64_t d : s)
    if (d < 0) return false;
  return true;
}

struct Counts {
  int64_t identities = 0, double_neg = 0, casts = 0, permutes = 0, reshapes = 0, products = 0;
  int64_t total() const { return identities + double_neg + casts + permutes + reshapes + products; }
};

// Whether `p` swaps the last two axes and keeps the others.
bool is_last_two_swap(const Ints& p) {
  size_t r = p.size();
  if (r < 2 || p[r - 2] != static_cast<int64_t>(r - 1) || p[r - 1] != static_cast<int64_t>(r - 2)) return false;
  for (size_t i = 0; i + 2 < r; ++i)
    if (p[i] != static_cast<int64_t>(i)) return false;
  return true;
}

// transpose(matmul(a, b)) -> matmul(transpose(b), transpose(a)), rewriting the
// permute node `id` in place into the product.
bool transpose_product(Graph& g, const PassContext& ctx, int64_t id) {
  const Node& n = *g.node(id);
  Ints axes = normalized_axes(n);
  const Node* mm = g.node(n.inputs[0].node);
  if (!is_last_two_swap(axes) || mm->op->name() != "matmul" || !passes::is_pure(*mm) || ctx.preserved(mm->id))
    return false;
  size_t rank = axes.size();
  for (const NodeOutput& e : mm->inputs)
    if (g.meta(e).shape.size() != rank) return false;  // 1-d operands and broadcast ranks: leave them
  for (const auto& [name, e] : g.outputs())
    if (e.node == mm->id) return false;
  for (const Node* other : g.nodes()) {  // the product must have no other consumer
    if (other->id == id) continue;
    for (const NodeOutput& e : other->inputs)
      if (e.node == mm->id) return false;
    for (int64_t c : other->control_inputs)
      if (c == mm->id) return false;
  }
  auto transposed = [&](NodeOutput x) {
    Node t;
    t.op = &op_def("permute");
    t.name = g.node(x.node)->name + "_T";
    t.inputs = {x};
    t.attrs = t.op->complete_attrs(Attrs{{"axes", axes}});
    TensorMeta m = g.meta(x);
    std::swap(m.shape[rank - 2], m.shape[rank - 1]);
    t.outputs = {m};
    return NodeOutput{g.add_node(std::move(t)), 0};
  };
  NodeOutput a = mm->inputs[0], b = mm->inputs[1];
  Attrs mm_attrs = mm->attrs;
  std::vector<int64_t> ctl = mm->control_inputs;
  NodeOutput bt = transposed(b), at = transposed(a);
  Node& m = *g.mutable_node(id);
  m.op = &op_def("matmul");
  m.inputs = {bt, at};
  m.attrs = mm_attrs;
  for (int64_t c : ctl)
    if (std::find(m.control_inputs.begin(), m.control_inputs.end(), c) == m.control_inputs.end())
      m.control_inputs.push_back(c);
  return true;
}

// Tries every rule on node `id`; returns whether the graph changed.
bool simplify(Graph& g, const PassContext& ctx, const passes::MutableStorage& mut, int64_t id, Counts& c) {
  const Node* n = g.node(id);
  if (!n || !passes::is_pure(*n) || n->outputs.size() != 1) return false;
  // A result that some op updates in place is a buffer of its own; handing
  // out x instead would redirect the update into x.
  if (!n->op->is_view() && mut.may_change(g, {id, 0})) return false;
  const std::string& op = n->op->name();
  auto to = [&](NodeOutput x, int64_t& counter) {
    if (!passes::replace_node(g, id, {x}, ctx)) return false;
    ++counter;
    return true;
  };
  if (auto x = identity_operand(g, mut, *n); x && !mut.may_change(g, *x)) return to(*x, c.identities);
  if (op == "neg") {
    const Node* p = g.node(n->inputs[0].node);
    if (p->op == n->op && !mut.may_change(g, p->inputs[0])) return to(p->inputs[0], c.double_neg);
  }
  if (op == "cast") {
    NodeOutput x = n->inputs[0];
    if (g.meta(x).dtype == n->outputs[0].dtype && !mut.may_change(g, x)) return to(x, c.casts);
  }
  if (op == "permute" && transpose_product(g, ctx, id)) {
    ++c.products;
    return true;
  }
  if (op == "permute") {
    Ints outer = normalized_axes(*n);
    NodeOutput x = n->inputs[0];
    const Node* p = g.node(x.node);
    if (p->op == n->op && passes::is_pure(*p)) {
      // y[i] = p[outer[i]] = x[inner[outer[i]]]
      Ints inner = normalized_axes(*p), q(outer.size());
      for (size_t i = 0; i < q.size(); ++i) q[i] = inner[static_cast<size_t>(outer[i])];
      if (is_identity_perm(q)) return to(p->inputs[0], c.permutes);
      Node& m = *g.mutable_node(id);
      m.inputs = {p->inputs[0]};
      m.attrs.set("axes", q);
      ++c.permutes;
      return true;
    }
    if (is_identity_perm(outer)) return to(x, c.permutes);
  }
  if (op == "reshape") {
    NodeOutput x = n->inputs[0];
    // NOTE: reshape copies when the layout cannot be viewed; a copy of a
    // buffer that changes during the run must stay a copy.
    if (mut.may_change(g, x)) return false;
    const Node* p = g.node(x.node);
    if (p->op == n->op && passes::is_pure(*p)) {
      g.mutable_node(id)->inputs = {p->inputs[0]};
      ++c.reshapes;
      return true;
    }
    const Shape& xs = g.meta(x).shape;
    if (fully_known(xs) && xs == n->outputs[0].shape) return to(x, c.reshapes);
  }
  return false;
}

}  // namespace

PassReport algebraic_pass(Graph& g, const PassContext& ctx) {
  PassReport rep{"algebraic", static_cast<int64_t>(g.num_nodes()), 0, ""};
  Counts c;
  // Rewrites only ever point a node at an earlier one, so one sweep in
  // topological order handles chains (neg(neg(neg(neg(x))))); a second sweep
  // catches what a collapsed permute or reshape exposed.
  for (int round = 0; round < 4; ++round) {
    passes::MutableStorage mut(g);
    bool changed = false;
    for (int64_t id : g.topological_order()) {
      // A node may be rewritten several times in a row (reshape(reshape(
      // reshape(x))) first composes, then drops).
      for (int k = 0; k < 8 && simplify(g, ctx, mut, id, c); ++k) changed = true;
    }
    if (!changed) break;
  }
  int64_t dead = passes::remove_dead(g, ctx);
  rep.nodes_after = static_cast<int64_t>(g.num_nodes());
  std::ostringstream d;
  d << c.total() << " rewrites: " << c.identities << " identity-element ops, " << c.double_neg
    << " double negations, " << c.casts << " same-dtype casts, " << c.permutes << " permutes, " << c.reshapes
    << " reshapes, " << c.products << " transposed products; removed " << dead << " nodes left unused";
  rep.detail = d.str();
  return rep;
}

}  // namespace ndflow
