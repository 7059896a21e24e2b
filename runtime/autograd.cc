#include "runtime/autograd.h"

#include <atomic>
#include <cmath>
#include <mutex>
#include <queue>
#include <random>
#include <unordered_map>

#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow {

namespace {
std::atomic<uint64_t> g_seq{0};

// Saved outputs are kept as aliases without grad_fn: an output that held its
// own TapeNode would form a reference cycle and leak.
Tensor alias_without_history(const Tensor& t) {
  auto impl = std::make_shared<TensorImpl>();
  const TensorImpl& s = *t.impl();
  impl->storage = s.storage;
  impl->offset = s.offset;
  impl->shape = s.shape;
  impl->strides = s.strides;
  impl->dtype = s.dtype;
  impl->device = s.device;
  return Tensor(std::move(impl));
}

// ------------------------------------------------ post-accumulate-grad hooks

struct HookEntry {
  uint64_t id;
  std::shared_ptr<PostAccumulateGradHook> fn;
};
struct LeafHooks {
  std::weak_ptr<TensorImpl> owner;  // weak: a hook never keeps its leaf alive
  std::vector<HookEntry> hooks;
};
struct HookRegistry {
  std::mutex mu;
  std::unordered_map<const TensorImpl*, LeafHooks> leaves;
  uint64_t next_id = 1;
};
// NOTE: leaked on purpose. Hooks may hold Python callables, which must not be
// destroyed by a static destructor after the interpreter has finalized.
HookRegistry& hook_registry() {
  static auto* r = new HookRegistry;
  return *r;
}
// How many leaves have hooks: backward() skips all hook bookkeeping at 0.
std::atomic<size_t> g_hooked_leaves{0};

// The callbacks queued during the backward running on this thread.
thread_local std::vector<std::function<void()>>* t_callbacks = nullptr;

// Entries whose leaf has died (the address may be reused by a new tensor).
// Called under the registry lock; the hooks are destroyed by the caller
// after unlocking, since destroying a Python hook takes the GIL.
void take_dead_entries(HookRegistry& r, std::vector<LeafHooks>& dead) {
  for (auto it = r.leaves.begin(); it != r.leaves.end();) {
    if (it->second.owner.expired()) {
      dead.push_back(std::move(it->second));
      it = r.leaves.erase(it);
    } else {
      ++it;
    }
  }
  g_hooked_leaves.store(r.leaves.size(), std::memory_order_release);
}

// The hooks registered now on `leaf`, in registration order.
std::vector<HookEntry> hooks_of(const TensorImpl* leaf) {
  auto& r = hook_registry();
  std::lock_guard lock(r.mu);
  auto it = r.leaves.find(leaf);
  if (it == r.leaves.end() || it->second.owner.expired()) return {};
  return it->second.hooks;
}

bool hook_registered(const TensorImpl* leaf, uint64_t id) {
  auto& r = hook_registry();
  std::lock_guard lock(r.mu);
  auto it = r.leaves.find(leaf);
  if (it == r.leaves.end()) return false;
  for (auto& h : it->second.hooks)
    if (h.id == id) return true;
  return false;
}

}  // namespace

uint64_t register_post_accumulate_grad_hook(const Tensor& leaf, PostAccumulateGradHook hook) {
  const char* what = "register_post_accumulate_grad_hook";
  NDF_CHECK(leaf.defined() && !leaf.is_symbolic(), ValueError, what,
            ": needs an eager tensor; a symbolic tensor of a graph has no .grad to accumulate");
  NDF_CHECK(leaf.requires_grad(), ValueError, what, ": the tensor (shape ", shape_str(leaf.shape()),
            ") does not require grad, so backward never accumulates into it; set requires_grad first");
  NDF_CHECK(!leaf.impl()->grad_fn, ValueError, what, ": the tensor (shape ", shape_str(leaf.shape()),
            ") was produced by [", leaf.impl()->grad_fn->op->name(), "] and accumulates no .grad; "
            "register the hook on the leaf (parameter) it was computed from");
  NDF_CHECK(static_cast<bool>(hook), ValueError, what, ": the hook is empty");
  auto fn = std::make_shared<PostAccumulateGradHook>(std::move(hook));
  std::vector<LeafHooks> dead;
  uint64_t id;
  {
    auto& r = hook_registry();
    std::lock_guard lock(r.mu);
    take_dead_entries(r, dead);
    LeafHooks& e = r.leaves[leaf.impl()];
    if (e.owner.expired()) e.owner = leaf.impl_ptr();
    id = r.next_id++;
    e.hooks.push_back({id, std::move(fn)});
    g_hooked_leaves.store(r.leaves.size(), std::memory_order_release);
  }
  return id;
}

bool remove_grad_hook(uint64_t id) {
  std::shared_ptr<PostAccumulateGradHook> removed;  // destroyed after unlocking
  auto& r = hook_registry();
  std::lock_guard lock(r.mu);
  for (auto it = r.leaves.begin(); it != r.leaves.end(); ++it) {
    auto& hs = it->second.hooks;
    for (auto h = hs.begin(); h != hs.end(); ++h) {
      if (h->id != id) continue;
      removed = std::move(h->fn);
      hs.erase(h);
      if (hs.empty()) r.leaves.erase(it);
      g_hooked_leaves.store(r.leaves.size(), std::memory_order_release);
      return true;
    }
  }
  return false;
}

void queue_backward_callback(std::function<void()> fn) {
  NDF_CHECK(t_callbacks != nullptr, ValueError, "queue_backward_callback: no backward() is running "
            "on this thread; call it from a gradient hook");
  t_callbacks->push_back(std::move(fn));
}

bool in_backward() { return t_callbacks != nullptr; }

void record_op(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
               std::span<Tensor> outputs) {
  auto node = std::make_shared<TapeNode>();
  node->op = &op;
  node->attrs = attrs;
  node->seq = g_seq.fetch_add(1, std::memory_order_relaxed);
  node->inputs.resize(inputs.size());
  node->next.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (op.saves_input(i)) node->inputs[i] = {t, t.impl()->storage ? t.impl()->storage->version() : 0};
    TensorImpl* ti = t.impl();
    if (!ti->requires_grad) continue;
    if (ti->grad_fn) {
      node->next[i].fn = ti->grad_fn;
      node->next[i].output_nr = ti->output_nr;
    } else {
      node->next[i].leaf = t.impl_ptr();
    }
  }
  node->outputs.resize(outputs.size());
  node->output_meta.reserve(outputs.size());
  for (size_t j = 0; j < outputs.size(); ++j) {
    Tensor& o = outputs[j];
    node->output_meta.push_back({o.shape(), o.dtype(), o.device()});
    if (op.saves_output(j)) node->outputs[j] = {alias_without_history(o), o.impl()->storage->version()};
  }
  for (size_t j = 0; j < outputs.size(); ++j) {
    TensorImpl* o = outputs[j].impl();
    if (!is_floating(o->dtype)) continue;  // integer outputs carry no gradient
    o->requires_grad = true;
    o->grad_fn = node;
    o->output_nr = static_cast<int>(j);
  }
}

namespace {

struct NodeState {
  int deps = 0;
  std::vector<Tensor> grads;  // one per output of the node
};

// A hooked leaf during one backward: edges into it not yet processed, and
// whether any of them brought a gradient.
struct PendingLeaf {
  int edges = 0;
  bool got = false;
};

// Makes the callback queue of a backward current on this thread, restoring
// the enclosing one (a hook may run a nested backward) however it ends.
class CallbackScope {
 public:
  CallbackScope() : prev_(t_callbacks) { t_callbacks = &queued_; }
  ~CallbackScope() { t_callbacks = prev_; }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;
  // Runs the queued callbacks, also those they queue.
  void run() {
    while (!queued_.empty()) {
      auto batch = std::move(queued_);
      queued_.clear();
      for (auto& fn : batch) fn();
    }
  }

 private:
  std::vector<std::function<void()>>* prev_;
  std::vector<std::function<void()>> queued_;
};

void add_into(Tensor& slot, const Tensor& g) { slot = slot.defined() ? add(slot, g) : g; }

void check_version(const TapeNode& n, const SavedTensor& s, const char* what, size_t i) {
  if (!s.tensor.defined() || !s.tensor.impl()->storage) return;
  uint64_t now = s.tensor.impl()->storage->version();
  NDF_CHECK(now == s.version, ValueError, "[", n.op->name(), "] backward needs ", what, " ", i,
            " (shape ", shape_str(s.tensor.shape()), ") which was modified in place after the op "
            "ran (version ", s.version, " -> ", now, "); clone it before modifying, or modify it "
            "under no_grad before using it");
}

// The core of backward() and grad(): propagates from `roots` and either
// accumulates into leaves (capture == nullptr) or returns the gradients
// arriving at the `capture` tensors.
std::vector<Tensor> run_backward(const std::vector<Tensor>& roots,
                                 const std::vector<Tensor>& root_grads, bool retain_graph,
                                 const std::vector<Tensor>* capture) {
  NDF_CHECK(!roots.empty(), ValueError, "backward: no outputs given");
  NDF_CHECK(root_grads.empty() || root_grads.size() == roots.size(), ValueError,
            "backward: got ", root_grads.size(), " output gradients for ", roots.size(), " outputs");
  NDF_CHECK(!current_graph_builder(), ValueError,
            "backward: eager backward called while building a graph; use gradients() in graph mode");

  CallbackScope callbacks;
  std::vector<Tensor> captured(capture ? capture->size() : 0);
  std::unordered_map<const TensorImpl*, size_t> capture_leaf;
  std::unordered_map<const TapeNode*, std::vector<std::pair<int, size_t>>> capture_node;
  if (capture) {
    for (size_t i = 0; i < capture->size(); ++i) {
      const Tensor& x = (*capture)[i];
      NDF_CHECK(x.defined() && x.requires_grad(), ValueError, "grad: input ", i,
                " does not require grad, so no gradient can flow to it");
      if (x.impl()->grad_fn) capture_node[x.impl()->grad_fn.get()].push_back({x.impl()->output_nr, i});
      else capture_leaf[x.impl()] = i;
    }
  }
  auto deliver_leaf = [&](const std::shared_ptr<TensorImpl>& leaf, const Tensor& g) {
    if (capture) {
      auto it = capture_leaf.find(leaf.get());
      if (it != capture_leaf.end()) add_into(captured[it->second], g);
      return;
    }
    if (!leaf->grad) {
      // A fresh tensor: the incoming gradient may alias a tensor the user holds.
      leaf->grad = g.impl()->storage.use_count() > 1 || !g.is_contiguous() ? g.clone().impl_ptr()
                                                                            : g.impl_ptr();
    } else {
      leaf->grad = add(Tensor(leaf->grad), g).impl_ptr();
    }
  };

  // Post-accumulate hooks: count the edges into each hooked leaf, and fire
  // its hooks when the last one has been processed. grad() fills no .grad.
  const bool watch_leaves = !capture && g_hooked_leaves.load(std::memory_order_acquire) > 0;
  std::unordered_map<const TensorImpl*, PendingLeaf> pending;
  auto finish_leaf_edge = [&](const std::shared_ptr<TensorImpl>& leaf, bool delivered) {
    if (pending.empty()) return;
    auto it = pending.find(leaf.get());
    if (it == pending.end()) return;
    it->second.got |= delivered;
    if (--it->second.edges > 0 || !it->second.got) return;
    Tensor t(leaf);
    for (auto& h : hooks_of(leaf.get()))
      if (hook_registered(leaf.get(), h.id)) (*h.fn)(t);  // an earlier hook may have removed it
  };

  // Count, for every node reachable from the roots, how many edges lead into it.
  std::unordered_map<const TapeNode*, NodeState> state;
  std::vector<TapeNode*> stack;
  for (auto& r : roots) {
    NDF_CHECK(r.defined() && r.requires_grad(), ValueError,
              "backward: output tensor (shape ", r.defined() ? shape_str(r.shape()) : "undefined",
              ") does not require grad; no input it depends on has requires_grad set");
    if (TapeNode* n = r.impl()->grad_fn.get(); n && !state.count(n)) {
      state[n];
      stack.push_back(n);
    }
  }
  while (!stack.empty()) {
    TapeNode* n = stack.back();
    stack.pop_back();
    for (auto& e : n->next) {
      if (watch_leaves && e.leaf) pending[e.leaf.get()].edges++;
      if (!e.fn) continue;
      auto [it, fresh] = state.try_emplace(e.fn.get());
      it->second.deps++;
      if (fresh) stack.push_back(e.fn.get());
    }
  }
  if (watch_leaves) {
    for (auto& r : roots)
      if (!r.impl()->grad_fn) pending[r.impl()].edges++;
    auto& reg = hook_registry();
    std::lock_guard lock(reg.mu);
    std::erase_if(pending, [&](const auto& kv) { return !reg.leaves.count(kv.first); });
  }

  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    Tensor g = root_grads.empty() ? Tensor() : root_grads[i];
    if (!g.defined()) {
      NDF_CHECK(r.numel() == 1, ValueError, "backward: an output gradient can only be implied "
                "for one-element outputs; this output has shape ", shape_str(r.shape()),
                ", so pass grad_output of that shape");
      g = ones(r.shape(), r.dtype());
    }
    NDF_CHECK(g.shape() == r.shape(), ShapeError, "backward: grad_output has shape ",
              shape_str(g.shape()), " but the output has shape ", shape_str(r.shape()));
    if (g.dtype() != r.dtype()) g = g.to(r.dtype());
    if (TapeNode* n = r.impl()->grad_fn.get()) {
      auto& gs = state[n].grads;
      gs.resize(n->output_meta.size());
      add_into(gs[r.impl()->output_nr], g);
    } else {
      deliver_leaf(r.impl_ptr(), g);
      finish_leaf_edge(r.impl_ptr(), true);
    }
  }

  auto later_first = [](const TapeNode* a, const TapeNode* b) { return a->seq < b->seq; };
  std::priority_queue<TapeNode*, std::vector<TapeNode*>, decltype(later_first)> ready(later_first);
  for (auto& [n, s] : state)
    if (s.deps == 0) ready.push(const_cast<TapeNode*>(n));

  NoGradGuard no_grad;  // gradients of gradients are not recorded
  while (!ready.empty()) {
    TapeNode* n = ready.top();
    ready.pop();
    NodeState& s = state[n];
    s.grads.resize(n->output_meta.size());
    if (capture) {
      auto it = capture_node.find(n);
      if (it != capture_node.end())
        for (auto [out_nr, idx] : it->second)
          if (s.grads[out_nr].defined()) add_into(captured[idx], s.grads[out_nr]);
    }
    NDF_CHECK(!n->released, ValueError, "[", n->op->name(), "] trying to backward through the "
              "graph a second time, but its saved tensors were freed by the first backward; "
              "pass retain_graph=true to the first backward() if you need to do this");
    for (size_t i = 0; i < n->inputs.size(); ++i) check_version(*n, n->inputs[i], "input", i);
    for (size_t i = 0; i < n->outputs.size(); ++i) check_version(*n, n->outputs[i], "output", i);

    bool any_grad = false;
    for (size_t j = 0; j < s.grads.size(); ++j) {
      if (s.grads[j].defined()) {
        any_grad = true;
      } else {
        const TensorMeta& m = n->output_meta[j];
        s.grads[j] = zeros(m.shape, m.dtype);
      }
    }
    std::vector<Tensor> in_grads;
    if (any_grad) {
      std::vector<Tensor> ins(n->inputs.size()), outs(n->outputs.size());
      for (size_t i = 0; i < ins.size(); ++i) ins[i] = n->inputs[i].tensor;
      for (size_t j = 0; j < outs.size(); ++j) outs[j] = n->outputs[j].tensor;
      std::unique_ptr<bool[]> needs(new bool[n->next.size()]);  // not vector<bool>: a span needs bools
      for (size_t i = 0; i < n->next.size(); ++i) needs[i] = n->next[i].valid();
      GradContext ctx(*n->op, ins, outs, s.grads, n->attrs, {needs.get(), n->next.size()});
      in_grads = n->op->grad_fn()(ctx);
      NDF_CHECK(in_grads.size() == n->next.size(), InternalError, "[", n->op->name(),
                "] gradient returned ", in_grads.size(), " tensors for ", n->next.size(), " inputs");
    }
    s.grads.clear();
    for (size_t i = 0; i < n->next.size(); ++i) {
      TapeEdge& e = n->next[i];
      if (!e.valid()) continue;
      const bool delivered = any_grad && in_grads[i].defined();
      if (delivered) {
        const Tensor& g = in_grads[i];
        const Shape& want = e.fn ? e.fn->output_meta[e.output_nr].shape : e.leaf->shape;
        NDF_CHECK(g.shape() == want, InternalError, "[", n->op->name(), "] gradient for input ", i,
                  " has shape ", shape_str(g.shape()), " but the input has shape ", shape_str(want));
        if (e.leaf) {
          deliver_leaf(e.leaf, g);
        } else {
          auto& gs = state[e.fn.get()].grads;
          gs.resize(e.fn->output_meta.size());
          add_into(gs[e.output_nr], g);
        }
      }
      if (e.fn && --state[e.fn.get()].deps == 0) ready.push(e.fn.get());
      if (e.leaf) finish_leaf_edge(e.leaf, delivered);
    }
    if (!retain_graph) {
      n->inputs.clear();
      n->outputs.clear();
      n->released = true;
    }
  }
  callbacks.run();
  return captured;
}

}  // namespace

void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs,
              bool retain_graph) {
  run_backward(outputs, grad_outputs, retain_graph, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph,
                         bool zeros_for_unused) {
  auto gs = run_backward(outputs, grad_outputs, retain_graph, &inputs);
  if (zeros_for_unused)
    for (size_t i = 0; i < gs.size(); ++i)
      if (!gs[i].defined()) gs[i] = zeros(inputs[i].shape(), inputs[i].dtype());
  return gs;
}

// ------------------------------------------------------------------ gradcheck

void gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
               const std::vector<Tensor>& inputs, const GradcheckOptions& opt) {
  NDF_CHECK(!current_graph_builder(), ValueError, "gradcheck runs eagerly; leave the graph scope");
  std::vector<Tensor> xs;
  for (auto& x : inputs) {
    Tensor c = x;
    if (is_floating(x.dtype()) && x.dtype() != DType::f64) {
      NoGradGuard ng;
      c = x.to(DType::f64);
    }
    // Leaves the check owns, so gradients never accumulate into the caller's tensors.
    if (x.requires_grad()) c = c.detach().set_requires_grad(true);
    else c = c.detach();
    if (c.requires_grad())
      for (int64_t d = 0; d < c.rank(); ++d)
        NDF_CHECK(c.strides()[d] != 0 || c.shape()[d] <= 1, ValueError,
                  "gradcheck: input has stride 0 along axis ", d,
                  " (an expanded view); perturbing one element would move several");
    xs.push_back(c);
  }

  Tensor y0 = f(xs);
  NDF_CHECK(y0.defined() && is_floating(y0.dtype()), ValueError,
            "gradcheck: f must return a floating-point tensor");
  // Project the output on a fixed random direction: one backward gives the
  // gradient of <w, f(x)>, which finite differences can check element by element.
  std::mt19937_64 rng(opt.seed);
  std::uniform_real_distribution<double> dist(0.5, 1.5);
  Tensor w = Tensor::empty(y0.shape(), DType::f64);
  double* wp = w.data<double>();
  for (int64_t i = 0; i < w.numel(); ++i) wp[i] = dist(rng) * ((rng() & 1) ? 1 : -1);
  auto project = [&](const Tensor& y) {
    return sum(mul(y.to(DType::f64), w));
  };

  std::vector<Tensor> wrt;
  std::vector<size_t> wrt_index;
  for (size_t i = 0; i < xs.size(); ++i)
    if (xs[i].requires_grad()) {
      wrt.push_back(xs[i]);
      wrt_index.push_back(i);
    }
  NDF_CHECK(!wrt.empty(), ValueError, "gradcheck: no input has requires_grad set");
  if (!y0.requires_grad()) {
    // Nothing on the tape: the function must then be constant in its inputs.
    y0 = zeros(y0.shape(), y0.dtype()).set_requires_grad(false);
  }
  std::vector<Tensor> analytic;
  if (y0.requires_grad()) analytic = grad({project(y0)}, wrt, {}, false, true);
  else for (auto& x : wrt) analytic.push_back(zeros(x.shape(), DType::f64));

  NoGradGuard ng;
  for (size_t k = 0; k < wrt.size(); ++k) {
    Tensor x = wrt[k];
    Tensor a = analytic[k].contiguous();
    const double* ap = a.data<double>();
    const Shape& shape = x.shape();
    int64_t n = x.numel();
    std::vector<int64_t> idx(shape.size(), 0);
    for (int64_t lin = 0; lin < n; ++lin) {
      int64_t off = x.offset();
      for (size_t d = 0; d < shape.size(); ++d) off += idx[d] * x.strides()[d];
      double* p = static_cast<double*>(x.impl()->storage->data()) + off;
      double orig = *p;
      *p = orig + opt.eps;
      double fp = project(f(xs)).item<double>();
      *p = orig - opt.eps;
      double fm = project(f(xs)).item<double>();
      *p = orig;
      double numeric = (fp - fm) / (2 * opt.eps);
      double an = ap[lin];
      if (std::abs(an - numeric) > opt.atol + opt.rtol * std::abs(numeric))
        fail<ValueError>("gradcheck: gradient mismatch for input ", wrt_index[k], " (shape ",
                         shape_str(shape), ") at flat element ", lin, ": analytic ", an,
                         ", numeric ", numeric);
      for (size_t d = shape.size(); d-- > 0;) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
  }
}

}  // namespace ndflow
