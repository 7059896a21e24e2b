// The data-parallel rewrite (runtime/passes/data_parallel.h).
#include "runtime/passes/data_parallel.h"

#include <algorithm>
#include <map>


namespace ndflow {

namespace {

struct Gradient {
  NodeOutput edge;
  int64_t position = 0;  // of its producer in the topological order
  int64_t bytes = 0;
  DType dtype = DType::f32;
};

int64_t known_bytes(const TensorMeta& m) {
  int64_t n = 1;
  for (int64_t d : m.shape) n *= d < 0 ? 1 : d;
  return n * static_cast<int64_t>(dtype_size(m.dtype));
}

// Nodes that `roots` depend on, through data and control edges (inclusive).
std::vector<char> ancestors(const Graph& g, const std::vector<NodeOutput>& roots) {
  std::vector<char> seen(static_cast<size_t>(g.id_bound()), 0);
  std::vector<int64_t> stack;
  for (const NodeOutput& e : roots) stack.push_back(e.node);
  while (!stack.empty()) {
    int64_t id = stack.back();
    stack.pop_back();
    if (seen[static_cast<size_t>(id)]) continue;
    seen[static_cast<size_t>(id)] = 1;
    const Node* n = g.node(id);
    for (const NodeOutput& e : n->inputs) stack.push_back(e.node);
    for (int64_t c : n->control_inputs) stack.push_back(c);
  }
  return seen;
}

std::string bytes_str(int64_t b) {
  if (b >= (int64_t{1} << 20)) return str_cat(static_cast<double>(b) / (1 << 20), " MB");
  if (b >= 1024) return str_cat(static_cast<double>(b) / 1024, " KB");
  return str_cat(b, " B");
}

}  // namespace

bool is_gradient_update(const OpDef& op) {
  const auto& names = op.input_names();
  return !op.mutated_inputs().empty() && names.size() > 1 && names[1] == "grad";
}

PassReport data_parallel_pass(Graph& g, const DataParallelOptions& options) {
  NDF_CHECK(options.bucket_bytes > 0, ValueError, "[data_parallel] bucket_bytes must be positive, got ",
            options.bucket_bytes);
  PassReport rep{"data_parallel", static_cast<int64_t>(g.num_nodes()), 0, ""};
  const std::vector<int64_t> order = g.topological_order();
  std::vector<int64_t> position(static_cast<size_t>(g.id_bound()), -1);
  for (size_t i = 0; i < order.size(); ++i) position[static_cast<size_t>(order[i])] = static_cast<int64_t>(i);

  // The gradients the updates read, once each.
  std::vector<Gradient> grads;
  int64_t already = 0;
  for (int64_t id : order) {
    const Node& n = *g.node(id);
    if (!is_gradient_update(*n.op) || n.inputs.size() < 2) continue;
    const NodeOutput e = n.inputs[1];
    const Node& producer = *g.node(e.node);
    if (producer.op->name() == "all_reduce" || producer.op->name() == "all_reduce_coalesced") {
      ++already;
      continue;
    }
    if (std::any_of(grads.begin(), grads.end(), [&](const Gradient& x) { return x.edge == e; })) continue;
    const TensorMeta& m = g.meta(e);
    NDF_CHECK(is_floating(m.dtype), TypeError, "[data_parallel] the gradient '", producer.name, "' read by '",
              n.name, "' (", n.op->name(), ") is ", dtype_name(m.dtype), shape_str(m.shape),
              "; a mean all_reduce needs f32 or f64");
    grads.push_back({e, position[static_cast<size_t>(e.node)], known_bytes(m), m.dtype});
  }
  std::stable_sort(grads.begin(), grads.end(),
                   [](const Gradient& a, const Gradient& b) { return a.position < b.position; });

  // Buckets: one open bucket per dtype, closed when the next gradient would
  // overflow it.
  std::vector<std::vector<size_t>> buckets;
  std::vector<int64_t> sizes;
  std::map<DType, size_t> open;
  for (size_t i = 0; i < grads.size(); ++i) {
    auto it = open.find(grads[i].dtype);
    if (it == open.end() || sizes[it->second] + grads[i].bytes > options.bucket_bytes) {
      buckets.emplace_back();
      sizes.push_back(0);
      it = open.insert_or_assign(grads[i].dtype, buckets.size() - 1).first;
    }
    buckets[it->second].push_back(i);
    sizes[it->second] += grads[i].bytes;
  }

  // One all_reduce_coalesced(mean) per bucket; readers rewired.
  static const OpDef& coalesced = op_def("all_reduce_coalesced");
  const Attrs attrs = coalesced.complete_attrs(Attrs{{"op", std::string("mean")}});
  const std::vector<std::vector<int64_t>> consumers = g.consumers();
  int64_t rewired = 0, total_bytes = 0;
  std::string per_bucket;
  for (size_t b = 0; b < buckets.size(); ++b) {
    Node n;
    n.op = &coalesced;
    n.attrs = attrs;
    std::string device = g.node(grads[buckets[b][0]].edge.node)->device;
    for (size_t i : buckets[b]) {
      n.inputs.push_back(grads[i].edge);
      n.outputs.push_back(g.meta(grads[i].edge));
      if (g.node(grads[i].edge.node)->device != device) device.clear();
    }
    n.device = device;  // the gradients' device when they agree
    std::string name = str_cat("data_parallel/bucket_", b);
    n.name = g.find(name) ? "" : name;
    const std::vector<char> upstream = ancestors(g, n.inputs);
    const std::vector<NodeOutput> inputs = n.inputs;
    const int64_t id = g.add_node(std::move(n));
    for (size_t j = 0; j < inputs.size(); ++j) {
      const NodeOutput from = inputs[j], to{id, static_cast<int>(j)};
      for (int64_t c : consumers[static_cast<size_t>(from.node)]) {
        // NOTE: a reader upstream of the bucket (its gradient feeds another
        // gradient of the bucket) keeps the local value: rewiring it would
        // make a cycle.
        if (upstream[static_cast<size_t>(c)]) continue;
        for (NodeOutput& e : g.mutable_node(c)->inputs)
          if (e == from) {
            e = to;
            ++rewired;
          }
      }
      for (auto& [out_name, o] : g.data()->outputs)
        if (o == from) o = to;
    }
    per_bucket += str_cat(b ? "; " : "", buckets[b].size(), " x ", dtype_name(grads[buckets[b][0]].dtype), " ",
                          bytes_str(sizes[b]));
    total_bytes += sizes[b];
  }
  rep.nodes_after = static_cast<int64_t>(g.num_nodes());
  rep.detail = grads.empty()
                   ? str_cat("no gradients to reduce", already ? str_cat(" (", already, " already reduced)") : "")
                   : str_cat(buckets.size(), " bucket(s) of all_reduce_coalesced(mean) for ", grads.size(),
                             " gradients, ", bytes_str(total_bytes), ", bucket cap ", bytes_str(options.bucket_bytes),
                             " [", per_bucket, "]; ", rewired, " reads rewired");
  return rep;
}

}  // namespace ndflow
