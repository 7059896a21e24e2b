// Elementwise fusion: a tree of elementwise ops becomes one fused_elementwise
// node (ops/fused.cc) that reads its inputs and writes its output once,
// instead of writing and re-reading every intermediate tensor.
//
// Grouping is the greedy producer-into-consumer rule of XLA's instruction
// fusion and TVM's FuseOps, restricted to elementwise ops: starting from the
// last node of the graph, a group absorbs a producer when the group is its
// only consumer, its result has the group's shape (so no element is computed
// twice; the group's external inputs may still broadcast) and dtype, and it
// is not fetched. A producer used by two consumers stays a separate node —
// duplicating its work into both would trade memory traffic for recompute.
#include <algorithm>
#include <sstream>
#include <unordered_map>

#include "kernels/fused_ops.h"
#include "runtime/passes/rewrite.h"

namespace ndflow {

namespace {

// Programs longer than this are split: the kernel's per-thread block buffers
// grow with the number of instructions.
constexpr size_t kMaxFusedOps = 64;

// The table row of a node the fused kernel can evaluate exactly as the op's
// own kernel would: one float dtype in and out, so no promotion in between.
const fused::FusableOp* fusable(const Graph& g, const Node& n) {
  if (!n.op->is_elementwise() || !passes::is_pure(n) || n.outputs.size() != 1) return nullptr;
  const fused::FusableOp* f = fused::find_fusable(n.op->name());
  if (!f || n.inputs.size() != static_cast<size_t>(f->arity)) return nullptr;
  DType dt = n.outputs[0].dtype;
  if (dt != DType::f32 && dt != DType::f64) return nullptr;
  for (const NodeOutput& e : n.inputs)
    if (g.meta(e).dtype != dt) return nullptr;
  return f;
}

class GroupBuilder {
 public:
  GroupBuilder(const Graph& g, const std::vector<int64_t>& members) : g_(g) {
    for (int64_t m : members) in_group_[m] = true;
  }

  // Emits the instructions computing edge e; returns its provisional operand
  // code: -(k + 1) for external input k, j for instruction j.
  int32_t emit(NodeOutput e) {
    if (!in_group_.count(e.node)) {
      for (size_t k = 0; k < externals_.size(); ++k)
        if (externals_[k] == e) return -static_cast<int32_t>(k) - 1;
      externals_.push_back(e);
      return -static_cast<int32_t>(externals_.size());
    }
    if (auto it = reg_.find(e.node); it != reg_.end()) return it->second;
    const Node& n = *g_.node(e.node);
    fused::Instr in;
    in.op = fused::find_fusable(n.op->name());
    for (int k = 0; k < in.op->arity; ++k) in.args[static_cast<size_t>(k)] = emit(n.inputs[static_cast<size_t>(k)]);
    for (size_t k = 0; k < 2; ++k)
      if (!in.op->params[k].empty()) in.params[k] = n.attrs.get<double>(in.op->params[k]);
    instrs_.push_back(in);
    int32_t r = static_cast<int32_t>(instrs_.size()) - 1;
    reg_[e.node] = r;
    return r;
  }

  // The program with final operand indices (inputs first, then results).
  fused::Program program() const {
    fused::Program p;
    p.num_inputs = static_cast<int32_t>(externals_.size());
    p.instrs = instrs_;
    for (auto& in : p.instrs)
      for (int k = 0; k < in.op->arity; ++k) {
        int32_t& a = in.args[static_cast<size_t>(k)];
        a = a < 0 ? -a - 1 : p.num_inputs + a;
      }
    return p;
  }
  const std::vector<NodeOutput>& externals() const { return externals_; }

 private:
  const Graph& g_;
  std::unordered_map<int64_t, bool> in_group_;
  std::unordered_map<int64_t, int32_t> reg_;
  std::vector<NodeOutput> externals_;
  std::vector<fused::Instr> instrs_;
};

}  // namespace

PassReport fusion_pass(Graph& g, const PassContext& ctx) {
  PassReport rep{"fusion", static_cast<int64_t>(g.num_nodes()), 0, ""};
  const OpDef& fused_op = op_def(fused::kOpName);
  // Use lists as of the start. Fusing a group only replaces its members by
  // its root, so a stale list can overstate a node's consumers but never
  // understate them: the rule below stays safe.
  const passes::Uses uses = passes::find_uses(g);
  std::vector<bool> taken(static_cast<size_t>(g.id_bound()), false);
  int64_t groups = 0, ops_fused = 0;
  size_t largest = 0;
  auto order = g.topological_order();
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const int64_t root = *it;
    const Node* r = g.node(root);
    if (!r || taken[static_cast<size_t>(root)] || !fusable(g, *r)) continue;
    const TensorMeta& shape_of_group = r->outputs[0];
    std::vector<int64_t> members = {root}, stack = {root};
    taken[static_cast<size_t>(root)] = true;
    while (!stack.empty() && members.size() < kMaxFusedOps) {
      const Node& m = *g.node(stack.back());
      stack.pop_back();
      for (const NodeOutput& e : m.inputs) {
        const Node* p = g.node(e.node);
        const auto& consumers = uses.data[static_cast<size_t>(e.node)];
        bool absorb = !taken[static_cast<size_t>(e.node)] && fusable(g, *p) && !ctx.preserved(p->id) &&
                      !uses.control[static_cast<size_t>(p->id)] &&
                      !uses.graph_output[static_cast<size_t>(p->id)] && consumers.size() == 1 &&
                      consumers[0] == m.id && p->outputs[0].dtype == shape_of_group.dtype &&
                      p->outputs[0].shape == shape_of_group.shape && p->device == r->device &&
                      members.size() < kMaxFusedOps;
        if (!absorb) continue;
        taken[static_cast<size_t>(p->id)] = true;
        members.push_back(p->id);
        stack.push_back(p->id);
      }
    }
    if (members.size() < 2) continue;

    GroupBuilder b(g, members);
    b.emit({root, 0});
    fused::Program prog = b.program();
    Attrs attrs = fused_op.complete_attrs(fused::encode(prog));
    std::vector<TensorMeta> metas;
    for (const NodeOutput& e : b.externals()) metas.push_back(g.meta(e));
    TensorMeta inferred = fused_op.run_infer(metas, attrs).at(0);
    NDF_CHECK(inferred.dtype == shape_of_group.dtype && inferred.shape.size() == shape_of_group.shape.size(),
              InternalError, "fusion: the fused node for '", r->name, "' infers ", dtype_name(inferred.dtype),
              shape_str(inferred.shape), " but the group computes ", dtype_name(shape_of_group.dtype),
              shape_str(shape_of_group.shape));
    // The group runs when every member could have: it inherits their control inputs.
    std::vector<int64_t> ctl;
    for (int64_t m : members)
      for (int64_t c : g.node(m)->control_inputs)
        if (std::find(members.begin(), members.end(), c) == members.end() &&
            std::find(ctl.begin(), ctl.end(), c) == ctl.end())
          ctl.push_back(c);
    // The root is rewritten in place: it keeps its id, name and consumers.
    Node& fused_node = *g.mutable_node(root);
    fused_node.op = &fused_op;
    fused_node.inputs = b.externals();
    fused_node.attrs = std::move(attrs);
    fused_node.control_inputs = std::move(ctl);
    for (int64_t m : members)
      if (m != root) g.remove_node(m);
    ++groups;
    ops_fused += static_cast<int64_t>(members.size());
    largest = std::max(largest, members.size());
  }
  rep.nodes_after = static_cast<int64_t>(g.num_nodes());
  std::ostringstream d;
  d << "fused " << ops_fused << " elementwise ops into " << groups << " fused_elementwise nodes";
  if (groups) d << " (largest: " << largest << " ops)";
  rep.detail = d.str();
  return rep;
}

}  // namespace ndflow
