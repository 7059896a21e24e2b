// Common-subexpression elimination by value numbering over a topological
// order (the classic hash-based scheme, e.g. Cooper & Torczon, "Engineering a
// Compiler", §8.4.1): a node whose op, inputs, control inputs, device and
// attributes equal an earlier node's is replaced by that node. Since inputs
// are rewired as merges happen, a duplicated subgraph collapses in one sweep.
//
// Control inputs are part of the key: two reads of a Variable with the same
// data inputs but on different sides of an assign carry different control
// inputs (Graph::add_op orders them) and must stay apart.
#include <bit>
#include <map>
#include <sstream>
#include <unordered_map>

#include "runtime/passes/rewrite.h"

namespace ndflow {

namespace {

// Doubles compare by bit pattern: -0.0 and 0.0 are different attributes (a
// fill value, a clamp bound), and a NaN attribute equals itself.
bool same_bits(double a, double b) { return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b); }

bool attr_equal(const AttrValue& a, const AttrValue& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
      [&](const auto& x) -> bool {
        using T = std::decay_t<decltype(x)>;
        const T& y = std::get<T>(b);
        if constexpr (std::is_same_v<T, double>) {
          return same_bits(x, y);
        } else if constexpr (std::is_same_v<T, std::vector<double>>) {
          if (x.size() != y.size()) return false;
          for (size_t i = 0; i < x.size(); ++i)
            if (!same_bits(x[i], y[i])) return false;
          return true;
        } else if constexpr (std::is_same_v<T, Tensor>) {
          // Equal contents are not enough: a tensor attribute may be a
          // buffer someone updates (a Variable's value). Only the same handle
          // is the same attribute.
          return x.same(y);
        } else {
          return x == y;
        }
      },
      a);
}

bool attrs_equal(const Attrs& a, const Attrs& b) {
  if (a.items().size() != b.items().size()) return false;
  for (const auto& [name, v] : a.items()) {
    const AttrValue* w = b.find(name);
    if (!w || !attr_equal(v, *w)) return false;
  }
  return true;
}

size_t mix(size_t h, size_t v) { return h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)); }

size_t attr_hash(const AttrValue& v) {
  return std::visit(
      [](const auto& x) -> size_t {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, Tensor>) {
          return std::hash<const void*>()(x.impl());
        } else if constexpr (std::is_same_v<T, double>) {
          return std::hash<uint64_t>()(std::bit_cast<uint64_t>(x));
        } else if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>>) {
          size_t h = x.size();
          for (auto e : x) h = mix(h, std::hash<uint64_t>()(std::bit_cast<uint64_t>(e)));
          return h;
        } else if constexpr (std::is_same_v<T, DType>) {
          return static_cast<size_t>(x);
        } else {
          return std::hash<T>()(x);
        }
      },
      v);
}

// The merge key of a node: everything that determines what it computes.
struct Key {
  const Node* node;
  std::vector<NodeOutput> inputs;  // canonical order for commutative ops
  std::vector<int64_t> control;    // sorted
  size_t hash = 0;
};

Key make_key(const Node& n) {
  Key k{&n, n.inputs, n.control_inputs};
  if (n.op->is_commutative() && k.inputs.size() == 2) {
    auto less = [](NodeOutput a, NodeOutput b) { return a.node != b.node ? a.node < b.node : a.index < b.index; };
    if (less(k.inputs[1], k.inputs[0])) std::swap(k.inputs[0], k.inputs[1]);
  }
  std::sort(k.control.begin(), k.control.end());
  k.control.erase(std::unique(k.control.begin(), k.control.end()), k.control.end());
  size_t h = std::hash<const void*>()(n.op);
  for (const NodeOutput& e : k.inputs) h = mix(h, std::hash<int64_t>()(e.node * 64 + e.index));
  for (int64_t c : k.control) h = mix(h, std::hash<int64_t>()(c));
  h = mix(h, std::hash<std::string>()(n.device));
  // Order-independent over attributes: names and values, summed.
  size_t ah = 0;
  for (const auto& [name, v] : n.attrs.items()) ah += mix(std::hash<std::string>()(name), attr_hash(v));
  k.hash = mix(h, ah);
  return k;
}

bool same_computation(const Key& a, const Key& b) {
  const Node &x = *a.node, &y = *b.node;
  return x.op == y.op && a.inputs == b.inputs && a.control == b.control && x.device == y.device &&
         x.outputs.size() == y.outputs.size() && attrs_equal(x.attrs, y.attrs);
}

}  // namespace

PassReport cse_pass(Graph& g, const PassContext& ctx) {
  PassReport rep{"cse", static_cast<int64_t>(g.num_nodes()), 0, ""};
  std::unordered_map<size_t, std::vector<Key>> seen;
  std::map<std::string, int64_t> merged_by_op;
  int64_t merged = 0, aliased = 0;
  for (int64_t id : g.topological_order()) {
    const Node* n = g.node(id);
    // Only pure nodes; a constant is pure, and two constant nodes holding the
    // same tensor handle merge.
    if (!n || !passes::is_pure(*n)) continue;
    Key k = make_key(*n);
    auto& bucket = seen[k.hash];
    const Key* match = nullptr;
    for (const Key& other : bucket)
      if (same_computation(k, other)) {
        match = &other;
        break;
      }
    if (!match) {
      bucket.push_back(std::move(k));
      continue;
    }
    int64_t keep = match->node->id;
    std::vector<NodeOutput> repl;
    for (size_t j = 0; j < n->outputs.size(); ++j) repl.push_back({keep, static_cast<int>(j)});
    std::string op = n->op->name();
    bool preserved = ctx.preserved(id);
    if (!passes::replace_node(g, id, repl, ctx)) continue;
    ++merged_by_op[op];
    if (preserved) ++aliased; else ++merged;
  }
  rep.nodes_after = static_cast<int64_t>(g.num_nodes());
  std::ostringstream d;
  d << "merged " << merged << " duplicate nodes";
  if (aliased) d << ", turned " << aliased << " fetched duplicates into identities";
  if (!merged_by_op.empty()) {
    d << " (";
    bool first = true;
    for (auto& [op, c] : merged_by_op) {
      d << (first ? "" : ", ") << op << " x" << c;
      first = false;
    }
    d << ")";
  }
  rep.detail = d.str();
  return rep;
}

}  // namespace ndflow
