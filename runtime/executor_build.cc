// Compile half of the executor: fetch/target resolution, prune and the pass
// pipeline, flat per-node records, and the per-shape-signature plans (output
// shapes, inline decisions, memory plan).
#include <algorithm>
#include <charconv>
#include <unordered_map>

#include "distributed/collective_queue.h"
#include "runtime/executor_impl.h"
#include "runtime/passes/pipeline.h"
#include "runtime/thread_pool.h"

namespace ndflow {

namespace {

std::string list_names(const std::vector<std::string>& v) {
  if (v.empty()) return "none";
  std::string s;
  for (auto& n : v) s += (s.empty() ? "" : ", ") + n;
  return s;
}

std::vector<std::string> output_names(const Graph& g) {
  std::vector<std::string> v;
  for (auto& [name, o] : g.outputs()) v.push_back(name);
  return v;
}

// "y" (a graph output), "node" or "node:k".
NodeOutput resolve_fetch(const Graph& g, const std::string& f) {
  for (auto& [name, o] : g.outputs())
    if (name == f) return o;
  std::string node_name = f;
  int index = 0;
  if (auto colon = f.rfind(':'); colon != std::string::npos && !g.find(f)) {
    const char* b = f.data() + colon + 1;
    const char* e = f.data() + f.size();
    int parsed = 0;
    auto [p, ec] = std::from_chars(b, e, parsed);
    if (ec == std::errc() && p == e && b != e) {
      node_name = f.substr(0, colon);
      index = parsed;
    }
  }
  const Node* n = g.find(node_name);
  NDF_CHECK(n, NotFoundError, "fetch '", f, "' is neither a graph output (", list_names(output_names(g)),
            ") nor a node of the graph");
  NDF_CHECK(!n->outputs.empty(), ValueError, "fetch '", f, "': node '", n->name, "' (", n->op->name(),
            ") has no outputs; run it as a target instead");
  NDF_CHECK(index >= 0 && index < static_cast<int>(n->outputs.size()), IndexError, "fetch '", f,
            "': node '", n->name, "' (", n->op->name(), ") has ", n->outputs.size(), " outputs");
  return {n->id, index};
}

int64_t resolve_target(const Graph& g, const std::string& t) {
  if (const Node* n = g.find(t)) return n->id;
  for (auto& [name, o] : g.outputs())
    if (name == t) return o.node;
  fail<NotFoundError>("target '", t, "' is not a node of the graph");
}

NodeKind kind_of(const Node& n) {
  const std::string& op = n.op->name();
  if (op == "placeholder") return NodeKind::Placeholder;
  if (op == "variable") return NodeKind::Variable;
  if (op == "constant") return NodeKind::Constant;
  NDF_CHECK(!n.op->is_graph_only(), InternalError, "node '", n.name, "' (", op,
            ") is a graph-only op the executor cannot produce");
  return n.op->is_view() ? NodeKind::View : NodeKind::Kernel;
}

bool known(const Shape& s) {
  return std::none_of(s.begin(), s.end(), [](int64_t d) { return d < 0; });
}

}  // namespace

std::exception_ptr with_node_context(std::exception_ptr e, const Node& n) {
  std::string prefix = str_cat("node '", n.name, "' (", n.op->name(), "): ");
  try {
    std::rethrow_exception(e);
  } catch (const ShapeError& x) {
    return std::make_exception_ptr(ShapeError(prefix + x.what()));
  } catch (const TypeError& x) {
    return std::make_exception_ptr(TypeError(prefix + x.what()));
  } catch (const IndexError& x) {
    return std::make_exception_ptr(IndexError(prefix + x.what()));
  } catch (const ValueError& x) {
    return std::make_exception_ptr(ValueError(prefix + x.what()));
  } catch (const NotFoundError& x) {
    return std::make_exception_ptr(NotFoundError(prefix + x.what()));
  } catch (const InternalError& x) {
    return std::make_exception_ptr(InternalError(prefix + x.what()));
  } catch (const TimeoutError& x) {
    return std::make_exception_ptr(TimeoutError(prefix + x.what()));
  } catch (const CancelledError& x) {
    return std::make_exception_ptr(CancelledError(prefix + x.what()));
  } catch (const Error& x) {
    return std::make_exception_ptr(Error(prefix + x.what()));
  } catch (const std::bad_alloc&) {
    return std::make_exception_ptr(ValueError(prefix + "out of memory"));
  } catch (const std::exception& x) {
    return std::make_exception_ptr(InternalError(prefix + x.what()));
  } catch (...) {
    return std::make_exception_ptr(InternalError(prefix + "unknown exception"));
  }
}

std::unique_ptr<ExecPlan> build_exec_plan(const Graph& source, const std::vector<std::string>& fetches,
                                          const std::vector<std::string>& targets,
                                          const SessionOptions& options) {
  auto plan = std::make_unique<ExecPlan>();
  NDF_CHECK(!fetches.empty() || !targets.empty(), ValueError,
            "nothing to run: give at least one fetch or target");
  for (auto& [name, id] : source.inputs()) plan->source_placeholders.push_back(name);

  // Endpoints are resolved on the source graph; clone() keeps node ids.
  GraphEndpoints ends;
  for (auto& f : fetches) ends.fetches.push_back(resolve_fetch(source, f));
  for (auto& t : targets) ends.targets.push_back(resolve_target(source, t));
  plan->graph = source.clone();
  Graph& g = plan->graph;
  plan->pass_log = run_passes(g, options.passes, ends);
  g.validate();
  plan->ends = ends;

  // ---- nodes, in topological order
  std::vector<int64_t> order = g.topological_order();
  std::vector<int32_t> index(static_cast<size_t>(g.id_bound()), -1);
  for (size_t i = 0; i < order.size(); ++i) index[static_cast<size_t>(order[i])] = static_cast<int32_t>(i);
  auto& nodes = plan->nodes;
  nodes.resize(order.size());
  int32_t num_slots = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const Node& n = *g.node(order[i]);
    NodeRecord& r = nodes[i];
    r.graph_id = n.id;
    r.op = n.op;
    r.attrs = &n.attrs;
    r.kind = kind_of(n);
    r.elementwise = n.op->is_elementwise();
    r.out_begin = num_slots;
    r.num_out = static_cast<int32_t>(n.outputs.size());
    num_slots += r.num_out;
    switch (r.kind) {
      case NodeKind::Kernel:
        r.kernel = n.op->kernel(DeviceType::CPU);
        NDF_CHECK(r.kernel, NotFoundError, "node '", n.name, "' (", n.op->name(), ") has no CPU kernel");
        break;
      case NodeKind::View: r.view = n.op->view_fn(); break;
      case NodeKind::Variable:
      case NodeKind::Constant: r.value = &std::get<Tensor>(*n.attrs.find("value")); break;
      case NodeKind::Placeholder:
        r.feed_index = static_cast<int32_t>(plan->feed_names.size());
        plan->feed_names.push_back(n.name);
        plan->feed_nodes.push_back(static_cast<int32_t>(i));
        plan->all_feeds_static &= known(n.outputs[0].shape);
        break;
    }
  }

  // ---- slots, inputs, edges
  plan->slots.resize(static_cast<size_t>(num_slots));
  std::vector<std::vector<int32_t>> succ(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const Node& n = *g.node(order[i]);
    NodeRecord& r = nodes[i];
    for (int32_t j = 0; j < r.num_out; ++j) plan->slots[static_cast<size_t>(r.out_begin + j)].producer = static_cast<int32_t>(i);
    std::vector<TensorMeta> metas;
    for (auto& e : n.inputs) metas.push_back(g.meta(e));
    DType common = n.op->promotes() ? n.op->promoted_dtype(metas) : DType::f32;
    const auto& mutated = n.op->mutated_inputs();
    r.in_begin = static_cast<int32_t>(plan->input_slots.size());
    r.num_in = static_cast<int32_t>(n.inputs.size());
    r.mut_begin = static_cast<int32_t>(plan->mutated_slots.size());
    std::vector<int32_t> preds;
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const NodeRecord& src = nodes[static_cast<size_t>(index[static_cast<size_t>(n.inputs[k].node)])];
      int32_t slot = src.out_begin + n.inputs[k].index;
      SlotRecord& s = plan->slots[static_cast<size_t>(slot)];
      plan->input_slots.push_back(slot);
      ++s.initial_refs;
      bool writes = std::find(mutated.begin(), mutated.end(), static_cast<int>(k)) != mutated.end();
      // Casting a written input would update a temporary copy instead of the Variable.
      bool cast = n.op->promotes_input(k) && metas[k].dtype != common && !writes && r.kind == NodeKind::Kernel;
      plan->input_cast.push_back(cast ? static_cast<int8_t>(common) : int8_t{-1});
      r.has_casts |= cast;
      if (r.kind == NodeKind::View) s.view_base = true;
      if (writes) {
        NDF_CHECK(src.kind != NodeKind::Constant && src.kind != NodeKind::Placeholder, ValueError, "node '",
                  n.name, "' (", n.op->name(), ") updates input ", k, " in place, but it is ",
                  src.kind == NodeKind::Constant ? "a constant" : "a fed placeholder", " ('",
                  g.node(src.graph_id)->name, "'); updates need a Variable (Tensor::mark_variable)");
        s.mutated = true;
        plan->mutated_slots.push_back(slot);
      }
      preds.push_back(index[static_cast<size_t>(n.inputs[k].node)]);
    }
    for (int64_t c : n.control_inputs) preds.push_back(index[static_cast<size_t>(c)]);
    std::sort(preds.begin(), preds.end());
    preds.erase(std::unique(preds.begin(), preds.end()), preds.end());
    r.num_mut = static_cast<int32_t>(plan->mutated_slots.size()) - r.mut_begin;
    r.pred_begin = static_cast<int32_t>(plan->predecessors.size());
    r.num_pred = r.initial_pending = static_cast<int32_t>(preds.size());
    plan->predecessors.insert(plan->predecessors.end(), preds.begin(), preds.end());
    for (int32_t p : preds) succ[static_cast<size_t>(p)].push_back(static_cast<int32_t>(i));
    if (preds.empty()) plan->roots.push_back(static_cast<int32_t>(i));
    if (r.kind == NodeKind::Variable) plan->slots[static_cast<size_t>(r.out_begin)].variable_backed = true;
    if (r.kind == NodeKind::View && r.num_in > 0)
      plan->slots[static_cast<size_t>(r.out_begin)].variable_backed =
          plan->slots[static_cast<size_t>(plan->input_slots[static_cast<size_t>(r.in_begin)])].variable_backed;
  }
  for (size_t i = 0; i < order.size(); ++i) {
    nodes[i].succ_begin = static_cast<int32_t>(plan->successors.size());
    nodes[i].num_succ = static_cast<int32_t>(succ[i].size());
    plan->successors.insert(plan->successors.end(), succ[i].begin(), succ[i].end());
  }

  // ---- graph collectives, numbered in this topological order: the order every
  // rank issues them in (distributed/collective_queue.h)
  std::vector<distributed::CollectivePlan::Entry> collectives;
  for (const NodeRecord& r : nodes)
    if (distributed::is_collective_op(*r.op))
      collectives.push_back({g.mutable_node(r.graph_id), {plan->input_slots.begin() + r.in_begin,
                                                          plan->input_slots.begin() + r.in_begin + r.num_in}});
  plan->collectives = distributed::CollectivePlan::create(std::move(collectives));

  // ---- fetches: result indices grouped per slot
  std::vector<std::vector<int32_t>> fetch_at(static_cast<size_t>(num_slots));
  for (size_t k = 0; k < ends.fetches.size(); ++k) {
    const NodeOutput& f = ends.fetches[k];
    int32_t slot = nodes[static_cast<size_t>(index[static_cast<size_t>(f.node)])].out_begin + f.index;
    plan->fetch_slots.push_back(slot);
    fetch_at[static_cast<size_t>(slot)].push_back(static_cast<int32_t>(k));
  }
  for (size_t s = 0; s < fetch_at.size(); ++s) {
    SlotRecord& rec = plan->slots[s];
    rec.fetch_begin = static_cast<int32_t>(plan->fetch_of_slot.size());
    rec.num_fetch = static_cast<int32_t>(fetch_at[s].size());
    rec.fetched = rec.num_fetch > 0;
    plan->fetch_of_slot.insert(plan->fetch_of_slot.end(), fetch_at[s].begin(), fetch_at[s].end());
  }

  plan->intra_threads = resolve_intra_op_threads(options.intra_op_threads,
                                                  resolve_inter_op_threads(options.inter_op_threads));
  plan->memory_planning = options.passes.memory_planning;
  return plan;
}

void check_feeds(const ExecPlan& plan, const Tensor* feeds, size_t count) {
  NDF_CHECK(count == plan.feed_names.size(), ValueError, "run: got ", count, " feeds for ",
            plan.feed_names.size(), " placeholders (", list_names(plan.feed_names), ")");
  for (size_t i = 0; i < count; ++i) {
    const std::string& name = plan.feed_names[i];
    const Tensor& t = feeds[i];
    NDF_CHECK(t.defined(), ValueError, "feed for placeholder '", name, "' is an undefined tensor");
    NDF_CHECK(!t.is_symbolic(), ValueError, "feed for placeholder '", name,
              "' is a symbolic tensor; feeds must hold data");
    const Node& ph = *plan.graph.node(plan.nodes[static_cast<size_t>(plan.feed_nodes[i])].graph_id);
    const TensorMeta& want = ph.outputs[0];
    NDF_CHECK(t.dtype() == want.dtype, TypeError, "placeholder '", name, "' expects ", dtype_name(want.dtype),
              ", got a ", dtype_name(t.dtype()), " tensor of shape ", shape_str(t.shape()), "; cast it first");
    NDF_CHECK(t.device().is_cpu(), ValueError, "placeholder '", name, "' got a tensor on ", t.device().str(),
              "; this executor runs on cpu");
    bool fits = t.shape().size() == want.shape.size();
    for (size_t d = 0; fits && d < want.shape.size(); ++d) fits = want.shape[d] < 0 || want.shape[d] == t.shape()[d];
    NDF_CHECK(fits, ShapeError, "placeholder '", name, "' expects shape ", shape_str(want.shape),
              " (-1: any size), got ", shape_str(t.shape()));
  }
}

std::unique_ptr<ShapePlan> build_shape_plan(const ExecPlan& plan, const Tensor* feeds) {
  auto sp = std::make_unique<ShapePlan>();
  sp->slot_meta.resize(plan.slots.size());
  sp->run_inline.assign(plan.nodes.size(), 1);
  sp->forward_input.assign(plan.nodes.size(), 0);
  static const OpDef& sum_to_like_op = op_def("sum_to_like");
  std::vector<TensorMeta> metas;
  for (size_t i = 0; i < plan.nodes.size(); ++i) {
    const NodeRecord& r = plan.nodes[i];
    const Node& n = *plan.graph.node(r.graph_id);
    TensorMeta* out = &sp->slot_meta[static_cast<size_t>(r.out_begin)];
    switch (r.kind) {
      case NodeKind::Placeholder: {
        const Tensor& f = feeds[r.feed_index];
        *out = {f.shape(), f.dtype(), f.device()};
        continue;
      }
      case NodeKind::Variable:
      case NodeKind::Constant: *out = {r.value->shape(), r.value->dtype(), r.value->device()}; continue;
      case NodeKind::View:
      case NodeKind::Kernel: break;
    }
    metas.clear();
    int64_t elements = 0;
    for (int32_t k = 0; k < r.num_in; ++k) {
      metas.push_back(sp->slot_meta[static_cast<size_t>(plan.input_slots[static_cast<size_t>(r.in_begin + k)])]);
      elements += shape_numel(metas.back().shape);
    }
    std::vector<TensorMeta> inferred;
    try {
      inferred = n.op->run_infer(metas, n.attrs);
      NDF_CHECK(static_cast<int32_t>(inferred.size()) == r.num_out, InternalError, "infer returned ",
                inferred.size(), " outputs for ", r.num_out);
      for (auto& m : inferred)
        NDF_CHECK(r.kind == NodeKind::View || known(m.shape), InternalError, "output shape ",
                  shape_str(m.shape), " is still unknown with concrete inputs; the executor allocates "
                  "outputs before the kernel runs");
    } catch (...) {
      std::rethrow_exception(with_node_context(std::current_exception(), n));
    }
    for (int32_t j = 0; j < r.num_out; ++j) {
      out[j] = inferred[static_cast<size_t>(j)];
      if (r.kind == NodeKind::Kernel) elements += shape_numel(out[j].shape);
    }
    if (r.kind == NodeKind::Kernel) sp->run_inline[i] = elements <= kInlineElements;
    // NOTE: the output aliases the input, so neither may be written in place
    // (an update would show through the other) nor be a Variable's buffer
    // (a later update of the Variable would change the value); the memory
    // plan below treats the pair like a view and its base.
    if (r.op == &sum_to_like_op && !r.has_casts && out[0].shape == metas[0].shape &&
        out[0].dtype == metas[0].dtype) {
      const SlotRecord& in = plan.slots[static_cast<size_t>(plan.input_slots[static_cast<size_t>(r.in_begin)])];
      const SlotRecord& o = plan.slots[static_cast<size_t>(r.out_begin)];
      if (!in.mutated && !in.variable_backed && !o.mutated) sp->forward_input[i] = sp->run_inline[i] = 1;
    }
  }
  if (!plan.memory_planning) return sp;

  PlanGraph pg;
  pg.nodes.resize(plan.nodes.size());
  pg.values.resize(plan.slots.size());
  for (size_t i = 0; i < plan.nodes.size(); ++i) {
    const NodeRecord& r = plan.nodes[i];
    PlanNode& pn = pg.nodes[i];
    pn.elementwise = r.elementwise && !r.has_casts;
    pn.preds.assign(plan.predecessors.begin() + r.pred_begin, plan.predecessors.begin() + r.pred_begin + r.num_pred);
    pn.inputs.assign(plan.input_slots.begin() + r.in_begin, plan.input_slots.begin() + r.in_begin + r.num_in);
    for (int32_t j = 0; j < r.num_out; ++j) pn.outputs.push_back(r.out_begin + j);
  }
  std::vector<char> forwarded(plan.slots.size(), 0);  // passed on by a forwarding node: a view base
  for (size_t i = 0; i < plan.nodes.size(); ++i)
    if (sp->forward_input[i])
      forwarded[static_cast<size_t>(plan.input_slots[static_cast<size_t>(plan.nodes[i].in_begin)])] = 1;
  for (size_t s = 0; s < plan.slots.size(); ++s) {
    const SlotRecord& rec = plan.slots[s];
    PlanValue& v = pg.values[s];
    const TensorMeta& m = sp->slot_meta[s];
    v.producer = rec.producer;
    v.dtype = m.dtype;
    v.shape = m.shape;
    v.fresh = plan.nodes[static_cast<size_t>(rec.producer)].kind == NodeKind::Kernel &&
              !sp->forward_input[static_cast<size_t>(rec.producer)];
    v.bytes = v.fresh ? static_cast<size_t>(shape_numel(m.shape)) * dtype_size(m.dtype) : 0;
    v.reusable = v.fresh && !rec.fetched && !rec.view_base && !rec.mutated && !forwarded[s];
  }
  sp->memory = std::make_shared<const MemoryPlan>(plan_memory(pg));
  return sp;
}

}  // namespace ndflow
