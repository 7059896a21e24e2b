// Graph IR of the static-graph mode (DESIGN.md §3, §6): nodes that each run
// one OpDef, data edges as (node, output index), control dependencies, typed
// attributes (core/op_registry.h Attrs), placeholders with partially known
// shapes (-1 dims), constants, and Variables captured by reference.
//
//   Graph g;
//   {
//     GraphScope scope(g);                      // runtime/trace.h: op calls add nodes
//     Tensor x = g.placeholder("x", {-1, 784});
//     Tensor y = relu(matmul(x, w));            // w: an eager Variable
//     g.mark_output("y", y);
//   }
//   g.validate();                               // Error naming the bad node
//
// Node ids are stable: removing a node leaves a hole, so passes can keep maps
// from ids; compact() renumbers when a dense graph is wanted.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/op_registry.h"

namespace ndflow {

struct NodeOutput {
  int64_t node = -1;
  int index = 0;
  friend bool operator==(NodeOutput a, NodeOutput b) { return a.node == b.node && a.index == b.index; }
};

struct Node {
  int64_t id = -1;
  std::string name;                   // unique within the graph
  const OpDef* op = nullptr;
  std::vector<NodeOutput> inputs;     // data edges
  std::vector<int64_t> control_inputs;  // nodes that must finish before this one starts
  Attrs attrs;                        // complete (defaults filled in)
  std::vector<TensorMeta> outputs;    // inferred metadata; dims may be -1
  std::string device;                 // requested device, e.g. "cpu:0"; "" = any
  std::string assigned_device;        // set by the placer
};

// The shared state behind a Graph handle; symbolic tensors hold it weakly.
struct GraphData {
  std::vector<std::unique_ptr<Node>> nodes;          // index = id; null = removed
  std::vector<std::pair<std::string, int64_t>> inputs;      // named placeholders
  std::vector<std::pair<std::string, NodeOutput>> outputs;  // named results
  int64_t name_counter = 0;
  // Per variable node, the accesses since its last in-place update: used to
  // order reads and writes of Variables in program order (see Graph::add_op).
  struct VariableAccess {
    std::vector<int64_t> readers;
    int64_t last_writer = -1;
  };
  std::unordered_map<int64_t, VariableAccess> variable_access;
};

class NDF_EXPORT Graph {
 public:
  Graph();
  explicit Graph(std::shared_ptr<GraphData> data) : d_(std::move(data)) {}
  // The graph a symbolic tensor belongs to (ValueError if gone or eager).
  static Graph of(const Tensor& symbolic);

  // ---- building (usually through GraphScope and ordinary op calls)
  // A named input; -1 dims are unknown until fed.
  Tensor placeholder(const std::string& name, const Shape& shape, DType dtype = DType::f32);
  // A node holding a copy of `value` in the graph.
  Tensor constant(const Tensor& value, const std::string& name = "");
  // A node that reads the Variable `var` (an eager tensor) by reference.
  Tensor variable(const Tensor& var);
  // Adds a node running `op`; eager tensors among `inputs` become constants
  // (or variable reads, for Variables). Returns the symbolic outputs.
  // Reads and in-place updates of a Variable keep their program order: an
  // update gets control inputs from every earlier reader (through views too),
  // and a later reader from the update — as TF2's automatic control
  // dependencies do — so a compiled training step never reads a half-updated
  // parameter.
  std::vector<Tensor> add_op(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
                             const std::string& name = "");
  // `after` does not start before `before` has finished.
  void add_control_dependency(const Tensor& before, const Tensor& after);
  void mark_output(const std::string& name, const Tensor& t);

  // ---- inspection
  size_t num_nodes() const;        // live nodes
  int64_t id_bound() const { return static_cast<int64_t>(d_->nodes.size()); }  // ids are < this
  const Node* node(int64_t id) const;  // null if removed or out of range
  Node* mutable_node(int64_t id);
  std::vector<const Node*> nodes() const;  // live nodes in id order
  const Node* find(const std::string& name) const;
  const std::vector<std::pair<std::string, int64_t>>& inputs() const { return d_->inputs; }
  const std::vector<std::pair<std::string, NodeOutput>>& outputs() const { return d_->outputs; }
  // The symbolic tensor for an edge source, and the edge of a symbolic tensor
  // (ValueError if it belongs to another graph or to none).
  Tensor tensor(NodeOutput o) const;
  NodeOutput edge(const Tensor& symbolic) const;
  const TensorMeta& meta(NodeOutput o) const;
  // Node ids with every data/control input before its consumers; ValueError
  // naming a node on the cycle if there is one.
  std::vector<int64_t> topological_order() const;
  // Checks edges, arities, attribute schemas, acyclicity and that shapes and
  // dtypes infer; throws an ndflow::Error naming the offending node.
  void validate() const;
  std::string to_string() const;  // one line per node, for debugging

  // ---- editing (passes)
  int64_t add_node(Node n);        // assigns id (and a name if empty); no checks
  void remove_node(int64_t id);    // the caller rewires its uses first
  // Points every use of `from` (data edges and graph outputs) at `to`.
  void replace_uses(NodeOutput from, NodeOutput to);
  // Ids of nodes that consume each node's outputs (data or control).
  std::vector<std::vector<int64_t>> consumers() const;
  // Renumbers nodes densely in topological order; returns old id -> new id (-1 if removed).
  std::vector<int64_t> compact();
  Graph clone() const;             // deep copy (constants and variables shared)
  // Recomputes the Variable access record that add_op keeps (who last wrote
  // each Variable and who read it since) from the graph's topological order,
  // for graphs assembled without add_op (loaded from a file), so that ops
  // added later are ordered after the accesses already there.
  void rebuild_variable_access();

  const std::shared_ptr<GraphData>& data() const { return d_; }

 private:
  std::string unique_name(const std::string& base);
  int64_t variable_behind(NodeOutput e) const;
  void order_variable_accesses(int64_t id, bool add_edges = true);
  std::shared_ptr<GraphData> d_;
};

}  // namespace ndflow
